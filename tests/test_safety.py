"""Nothing dropped in silence, and HTML safe in every context.

* extract_tacs names the atlas regions that have no voxels in the image;
* BIDS discovery lists the folders and PET files it cannot use;
* compare_arms says clearly when no arm has two paired subjects;
* subject and group reports escape every string read from files.
"""

import json
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_small_dseg, write_small_pet

import sv2a
import sv2a.longitudinal as lg
from sv2a.atlas import Atlas
from sv2a.bids import discover, find_scans
from sv2a.errors import BIDSError, DesignError, Sv2aWarning
from sv2a.report import group_report, subject_report
from sv2a.validate import validate_dataset

SCRIPT = '"><script>alert(1)</script>'
MOUSE = '" onmouseover="x'


# --------------------------------------------------------------------------- TACs
def test_region_without_voxels_is_named_and_recorded(tmp_path):
    p, data = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    lab = write_small_dseg(tmp_path / "sub-01_dseg.nii.gz")
    pet = sv2a.load_pet(p)
    ref = sv2a.load_atlas(tmp_path / "sub-01_dseg.nii.gz", pet=pet)
    # label 4 is in the table but nowhere in the image
    atlas = Atlas(lab, {1: "left_cortex", 2: "right_cortex", 3: "centrum_semiovale",
                        4: "thalamus"}, ref.affine, "test-atlas")
    with pytest.warns(Sv2aWarning, match=r"thalamus \(label 4: 0 voxels"):
        tacs = sv2a.extract_tacs(pet, atlas)
    assert tacs.attrs["empty_regions"] == ["thalamus"]
    assert list(tacs.region.values) == ["left_cortex", "right_cortex", "centrum_semiovale"]
    # the kept regions are untouched: exact means of their voxels (float32 data -> rtol 1e-6)
    np.testing.assert_allclose(tacs.sel(region="left_cortex").values,
                               data[lab == 1].mean(axis=0), rtol=1e-6)
    # a full atlas records an empty list, and warns nothing about regions
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sv2a.extract_tacs(pet, ref).attrs["empty_regions"] == []


def test_region_below_min_voxels_is_named(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    write_small_dseg(tmp_path / "sub-01_dseg.nii.gz")
    pet = sv2a.load_pet(p)
    atlas = sv2a.load_atlas(tmp_path / "sub-01_dseg.nii.gz", pet=pet)
    # centrum_semiovale has a single voxel
    with pytest.warns(Sv2aWarning, match=r"centrum_semiovale \(label 3: 1 voxels, fewer than 2"):
        tacs = sv2a.extract_tacs(pet, atlas, min_voxels=2)
    assert tacs.attrs["empty_regions"] == ["centrum_semiovale"]


# --------------------------------------------------------------------------- BIDS
def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def _odd_dataset(root: Path) -> Path:
    _touch(root / "sub-01" / "pet" / "sub-01_pet.nii.gz")
    _touch(root / "sub-01_a" / "pet" / "sub-01_a_pet.nii.gz")
    _touch(root / "sub-01-x" / "pet" / "sub-01-x_pet.nii.gz")
    _touch(root / "sub-02" / "ses-bl" / "pet" / "sub-02_ses-bl_pet.nii.gz")
    _touch(root / "sub-02" / "ses-fu.1" / "pet" / "sub-02_ses-fu.1_pet.nii.gz")
    # a PET file naming another subject than its folder
    _touch(root / "sub-03" / "pet" / "sub-04_pet.nii.gz")
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    return root


def test_discovery_lists_what_it_skips(tmp_path):
    root = _odd_dataset(tmp_path)
    found = discover(root)
    assert [(s.subject, s.session) for s in found.scans] == [("01", None), ("02", "bl")]
    skipped = {Path(p).name: why for p, why in found.skipped}
    assert set(skipped) == {"sub-01_a", "sub-01-x", "ses-fu.1", "sub-04_pet.nii.gz"}
    assert "not a valid BIDS sub label" in skipped["sub-01_a"]
    assert "not a valid BIDS ses label" in skipped["ses-fu.1"]
    assert "folder of sub-03" in skipped["sub-04_pet.nii.gz"]
    with pytest.warns(Sv2aWarning, match="4 folder") as rec:
        scans = find_scans(root)
    assert scans == found.scans
    text = str(rec[0].message)
    assert all(name in text for name in skipped)
    with pytest.raises(BIDSError, match="not valid BIDS labels"):
        discover(root, participant_label=["01_a"])


def test_validate_reports_skipped_folders(tmp_path):
    root = _odd_dataset(tmp_path)
    messages = " ".join(p.message for p in validate_dataset(root, read_data=False))
    for name in ("sub-01_a", "sub-01-x", "ses-fu.1", "sub-04_pet.nii.gz"):
        assert name in messages


def test_only_invalid_subject_folders(tmp_path):
    _touch(tmp_path / "sub-01_a" / "pet" / "sub-01_a_pet.nii.gz")
    with pytest.raises(BIDSError, match="invalid labels: \\['sub-01_a'\\]"):
        discover(tmp_path)


# --------------------------------------------------------------------------- group stats
def test_compare_arms_without_two_paired_subjects():
    ds = lg.simulate_design("null", n_per_arm=2, seed=0, regions=["frontal_cortex"])
    # one follow-up missing in each arm: every arm has a single paired subject
    ds["BPND"].loc[{"subject": ["02", "04"], "session": "followup"}] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Sv2aWarning)
        with pytest.raises(DesignError, match=r"at least 2 subjects .* arm 'A' / followup: 1"):
            lg.compare_arms(ds, "BPND", n_boot=0)


def test_compare_arms_one_arm_too_small_still_runs():
    ds = lg.simulate_design("null", n_per_arm=3, seed=1, regions=["frontal_cortex"])
    ds["BPND"].loc[{"subject": ["05", "06"], "session": "followup"}] = np.nan
    with pytest.warns(Sv2aWarning, match="fewer than 2 paired subjects"):
        table = lg.compare_arms(ds, "BPND", n_boot=0)
    a = table[table["arm"] == "A"].iloc[0]
    b = table[table["arm"] == "B"].iloc[0]
    assert a["n"] == 3 and np.isfinite(a["p_within"])
    assert b["n"] == 1 and np.isnan(b["p_within"])


# --------------------------------------------------------------------------- HTML
class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _assert_safe(text: str) -> list[tuple[str, dict[str, str | None]]]:
    assert "<script" not in text.lower()
    parser = _Tags()
    parser.feed(text)
    tags = parser.tags
    assert "script" not in {t for t, _ in tags}
    for tag, attrs in tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert set(attrs) <= {"id", "href", "class", "alt", "src", "lang", "charset"}, attrs
        if "id" in attrs:
            assert re.fullmatch(r"[A-Za-z0-9_-]+", attrs["id"] or ""), attrs
        if "href" in attrs:
            assert re.fullmatch(r"#[A-Za-z0-9_-]+", attrs["href"] or ""), attrs
        if "src" in attrs:
            assert (attrs["src"] or "").startswith("data:image/")
    ids = [a["id"] for _, a in tags if "id" in a]
    assert len(ids) == len(set(ids))
    assert {a["href"][1:] for _, a in tags if "href" in a} <= set(ids)
    return tags


def _tiny_png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(0.5, 0.5))
    fig.savefig(path, format="png")
    plt.close(fig)


def test_subject_report_escapes_every_string(tmp_path):
    out = tmp_path / "derivatives"
    pet_dir = out / "sub-01" / "ses-bl" / "pet"
    pet_dir.mkdir(parents=True)
    stems = [f"sub-01_ses-bl{MOUSE}", f"sub-01_ses-bl{MOUSE}"[:-1] + "y"]
    for k, stem in enumerate(stems):
        kp = pet_dir / f"kinpar{k}.tsv"
        pd.DataFrame({"region": [SCRIPT, MOUSE], "VT": [12.5, 13.5],
                      "converged": [1, 1]}).to_csv(kp, sep="\t", index=False)
        kp.with_suffix(".json").write_text(json.dumps({"Units": {"VT": SCRIPT}}))
        (pet_dir / f".{k}_sv2a-summary.json").write_text(json.dumps({
            "stem": stem, "session": "bl", "atlas": SCRIPT, "reference": MOUSE,
            "corrections": [SCRIPT], "notes": [SCRIPT, MOUSE],
            "models": {f"srtm{SCRIPT}": kp.relative_to(out).as_posix()},
            "pvc_models": {MOUSE: kp.relative_to(out).as_posix()},
            "maps": {MOUSE: {}}}))
    fig_dir = out / "sub-01" / "figures"
    fig_dir.mkdir()
    # file names can carry quotes and angle brackets (no slash)
    _tiny_png(fig_dir / f'{stems[0]}_desc-tacs"><script>alert(1)_plot.png')
    (out / "logs").mkdir()
    pd.DataFrame({"participant_id": ["sub-01"], "session": [SCRIPT], "stage": [MOUSE],
                  "message": [SCRIPT], "log": [MOUSE]}).to_csv(
        out / "logs" / "failures.tsv", sep="\t", index=False)
    text = subject_report(out, "01").read_text(encoding="utf-8")
    tags = _assert_safe(text)
    # the hostile strings are shown, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "onmouseover=&quot;x" in text
    # both sessions got their own anchor; the figure is embedded with its name as alt text
    assert len([a for t, a in tags if t == "h2" and "id" in a]) == 2
    alts = [a["alt"] for t, a in tags if t == "img"]
    assert alts == [f'{stems[0]}_desc-tacs"><script>alert(1)_plot.png']


def test_group_report_escapes_every_string(tmp_path):
    fig = tmp_path / f"group{MOUSE}.png"
    _tiny_png(fig)
    table = pd.DataFrame({"region": [SCRIPT], MOUSE: [SCRIPT], "n": [3]})
    sections = [{"title": SCRIPT, "id": MOUSE, "reading": SCRIPT, "text": MOUSE,
                 "notes": [SCRIPT], "figures": [(fig, SCRIPT), fig], "table": table,
                 "tables": [(SCRIPT, table)]},
                {"title": MOUSE, "id": SCRIPT},
                {"title": "third", "id": MOUSE}]
    text = group_report(tmp_path, sections, notes=[SCRIPT, MOUSE]).read_text(encoding="utf-8")
    tags = _assert_safe(text)
    assert len([a for t, a in tags if t == "h2" and "id" in a]) == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
