"""BIDS inheritance principle: sidecars and label tables shared at the session, subject or
dataset level apply to every data file below them whose entities they match."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_small_pet

import sv2a
from sv2a.bids import discover, find_scans
from sv2a.errors import MetadataError
from sv2a.pipeline import PipelineConfig, run_participant
from sv2a.sidecar import applicable_files, read_metadata
from sv2a.validate import validate_dataset

WRONG_DOSE = 1.0  # MBq, in the root pet.json; every scan overrides it


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """2 subjects x 2 sessions, noise-free, 8 mm voxels, manual blood for sub-01; every
    sidecar and label table beside its data file."""
    from sv2a.phantom import make_cohort

    root = tmp_path_factory.mktemp("phantom") / "bids"
    make_cohort(root, design="ketamine-human", seed=1, n_subjects=2, voxel_mm=8.0, noise=0,
                fwhm=0, blood=["sub-01"])
    return root


def _inherit(src: Path, dst: Path, *, dseg: bool = True) -> Path:
    """Copy ``src`` to ``dst`` and move its metadata up the hierarchy: the PET fields all scans
    share to ``pet.json`` (with a wrong InjectedRadioactivity that every scan overrides), those
    a subject's scans share to ``sub-XX/sub-XX_pet.json``, the rest in each scan's own
    sidecar; one root ``recording-manual_blood.json`` and (``dseg``) one root ``dseg.tsv``."""
    shutil.copytree(src, dst)
    scs = sorted(dst.glob("sub-*/ses-*/pet/*_pet.json"))
    metas = {p: json.loads(p.read_text()) for p in scs}
    first = metas[scs[0]]
    common = {k: v for k, v in first.items() if all(m.get(k) == v for m in metas.values())}
    assert "FrameTimesStart" in common and "InjectedRadioactivity" not in common
    (dst / "pet.json").write_text(json.dumps({**common, "InjectedRadioactivity": WRONG_DOSE}))
    for sub in sorted(p for p in dst.glob("sub-*") if p.is_dir()):
        mine = [p for p in scs if sub in p.parents]
        shared = {k: v for k, v in metas[mine[0]].items()
                  if k not in common and all(metas[p].get(k) == v for p in mine)}
        if shared:
            (sub / f"{sub.name}_pet.json").write_text(json.dumps(shared))
        for p in mine:
            rest = {k: v for k, v in metas[p].items() if k not in common and k not in shared}
            rest.setdefault("InjectedRadioactivity", metas[p]["InjectedRadioactivity"])
            p.write_text(json.dumps(rest))
    blood = sorted(dst.glob("sub-*/ses-*/pet/*_recording-manual_blood.json"))
    assert len({b.read_text() for b in blood}) == 1
    shutil.move(blood[0], dst / "recording-manual_blood.json")
    for b in blood[1:]:
        b.unlink()
    if dseg:
        tabs = sorted(dst.glob("sub-*/ses-*/anat/*_dseg.tsv"))
        assert len({t.read_text() for t in tabs}) == 1
        shutil.move(tabs[0], dst / "dseg.tsv")
        for t in tabs[1:]:
            t.unlink()
    return dst


@pytest.fixture(scope="module")
def inherited(phantom, tmp_path_factory) -> Path:
    """The phantom with shared PET and blood sidecars and a root ``dseg.tsv``."""
    return _inherit(phantom, tmp_path_factory.mktemp("inherited") / "bids")


@pytest.fixture(scope="module")
def inherited_json(phantom, tmp_path_factory) -> Path:
    """The phantom with shared PET and blood sidecars; label tables beside the images."""
    return _inherit(phantom, tmp_path_factory.mktemp("inherited_json") / "bids", dseg=False)


def _quiet(fn, *args, **kw):
    """``fn(*args, **kw)`` without the phantom's expected warnings (e.g. no parent fraction)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


# ------------------------------------------------------------------ (a) merged PET sidecars
def test_root_pet_json_merged_with_lower_levels(phantom, inherited):
    """Root pet.json + subject-level + per-scan sidecars load with the values of the original
    per-scan sidecars; the lowest level wins (InjectedRadioactivity)."""
    assert not any(p.name == "pet.json" for p in phantom.iterdir())
    for scan in find_scans(inherited):
        rel = scan.pet.relative_to(inherited)
        new = _quiet(sv2a.load_pet, scan.pet)
        old = _quiet(sv2a.load_pet, phantom / rel)
        assert new.meta["injected_mbq"] == old.meta["injected_mbq"] != WRONG_DOSE
        assert new.meta["body_weight_kg"] == old.meta["body_weight_kg"]
        np.testing.assert_array_equal(new.frames.start, old.frames.start)
        np.testing.assert_array_equal(new.frames.duration, old.frames.duration)
        assert new.meta["tracer"] == old.meta["tracer"] == "UCB-J"
        sub = inherited / f"sub-{scan.subject}"
        want = [inherited / "pet.json", sub / f"{sub.name}_pet.json",
                scan.pet.with_name(scan.pet.name.replace(".nii.gz", ".json"))]
        assert new.meta["sidecar_files"] == [str(w) for w in want if w.exists()]
        assert len(new.meta["sidecar_files"]) >= 2


def test_subject_level_override_without_scan_sidecar(small_bids):
    """No sidecar beside the image: the subject-level file overrides the root one key by
    key, and the root one supplies the rest."""
    pet = small_bids / "sub-01/ses-baseline/pet/sub-01_ses-baseline_trc-ucbj_pet.nii.gz"
    own = pet.with_name(pet.name.replace(".nii.gz", ".json"))
    meta = json.loads(own.read_text())
    own.unlink()
    (small_bids / "pet.json").write_text(json.dumps(meta))
    (small_bids / "sub-01" / "sub-01_trc-ucbj_pet.json").write_text(
        json.dumps({"InjectedRadioactivity": 250.0}))
    p = sv2a.load_pet(pet)
    assert p.meta["injected_mbq"] == 250.0 and p.meta["body_weight_kg"] == 75.0
    merged, files = read_metadata(pet)
    assert files == [small_bids / "pet.json", small_bids / "sub-01/sub-01_trc-ucbj_pet.json"]
    assert merged == {**meta, "InjectedRadioactivity": 250.0}
    # the other subject's scans do not see sub-01's file
    other = small_bids / "sub-02/ses-baseline/pet/sub-02_ses-baseline_trc-ucbj_pet.nii.gz"
    assert [f.name for f in applicable_files(other)] == ["pet.json", "sub-02_ses-baseline_trc-"
                                                         "ucbj_pet.json"]


def test_scan_sidecar_name_one_level_up_applies(small_bids):
    """The scan's own sidecar name in the subject folder applies (all entities match)."""
    pet = small_bids / "sub-01/ses-baseline/pet/sub-01_ses-baseline_trc-ucbj_pet.nii.gz"
    own = pet.with_name(pet.name.replace(".nii.gz", ".json"))
    up = small_bids / "sub-01" / own.name
    shutil.move(own, up)
    assert sv2a.load_pet(pet).meta["sidecar_files"] == [str(up)]


def test_bad_value_names_the_file_it_came_from(small_bids):
    pet = small_bids / "sub-01/ses-baseline/pet/sub-01_ses-baseline_trc-ucbj_pet.nii.gz"
    (small_bids / "pet.json").write_text(json.dumps({"ImageDecayCorrected": "false"}))
    with pytest.raises(MetadataError, match=r"pet\.json: field 'ImageDecayCorrected'") as info:
        sv2a.load_pet(pet)
    assert str(small_bids / "pet.json") in str(info.value)


def test_missing_sidecar_message_lists_shared_places(small_bids):
    pet = small_bids / "sub-01/ses-baseline/pet/sub-01_ses-baseline_trc-ucbj_pet.nii.gz"
    pet.with_name(pet.name.replace(".nii.gz", ".json")).unlink()
    with pytest.raises(MetadataError, match="missing JSON sidecar") as info:
        sv2a.load_pet(pet)
    msg = str(info.value)
    assert "sub-01_ses-baseline_trc-ucbj_pet.json" in msg and "dataset-root" in msg
    assert "pet.json" in msg.replace("_pet.json", "")


# ------------------------------------------------------------- (b) two files at one level
def test_two_applicable_files_at_one_level_is_an_error(small_bids):
    pet = small_bids / "sub-01/ses-baseline/pet/sub-01_ses-baseline_trc-ucbj_pet.nii.gz"
    (small_bids / "pet.json").write_text("{}")
    (small_bids / "trc-ucbj_pet.json").write_text("{}")
    with pytest.raises(MetadataError, match="2 metadata files apply at one folder level") as e:
        sv2a.load_pet(pet)
    assert str(small_bids / "pet.json") in str(e.value)
    assert str(small_bids / "trc-ucbj_pet.json") in str(e.value)
    errors = [p for p in validate_dataset(small_bids, read_data=False)
              if p.severity == "error"]
    named = {p.file for p in errors if "trc-ucbj_pet.json" in p.message
             and "one folder level" in p.message}
    assert len(named) == 4  # every scan


def test_two_files_at_one_level_fail_that_scan_only(inherited_json, tmp_path):
    """``sv2a run``: the scan with two sidecars at one level fails with the message naming
    both (both are in its input files); the other scans are processed."""
    bids = tmp_path / "bids"
    shutil.copytree(inherited_json, bids)
    extra = bids / "sub-01" / "sub-01_ses-baseline_pet.json"  # beside sub-01_pet.json
    extra.write_text(json.dumps({"BodyWeight": 70.0}))
    scan = next(s for s in find_scans(bids) if s.subject == "01" and s.session == "baseline")
    assert {bids / "sub-01/sub-01_pet.json", extra} <= set(scan.input_files())
    cfg = PipelineConfig(models=["suvr"], figures=False).validate()
    s = _quiet(run_participant, bids, tmp_path / "out", cfg, quiet=True)
    assert len(s.done) == 3 and [f["stem"] for f in s.failed] == ["sub-01_ses-baseline"]
    assert "sub-01_pet.json" in s.failed[0]["message"] and extra.name in s.failed[0]["message"]


def test_two_label_tables_at_one_level_is_an_error(small_bids):
    dseg = small_bids / "sub-01/ses-baseline/anat/sub-01_ses-baseline_desc-regions_dseg.nii.gz"
    shutil.copy(dseg.with_name(dseg.name.replace(".nii.gz", ".tsv")),
                dseg.with_name("sub-01_ses-baseline_dseg.tsv"))
    with pytest.raises(MetadataError, match="apply at one folder level"):
        sv2a.load_atlas(dseg)


# ------------------------------------------------------ (c) shared blood sidecar, dseg.tsv
def test_root_blood_json_and_dseg_tsv(phantom, inherited):
    scan = next(s for s in find_scans(inherited) if s.blood)
    rec = scan.blood["manual"]
    assert not rec.with_name(rec.name.replace(".tsv", ".json")).exists()
    new = _quiet(sv2a.load_blood, rec)
    old = _quiet(sv2a.load_blood, phantom / rec.relative_to(inherited))
    np.testing.assert_array_equal(new.time, old.time)
    np.testing.assert_array_equal(new.plasma, old.plasma)
    _, meta = sv2a.blood_io.read_blood_table(rec)
    assert meta["sidecar_files"] == [str(inherited / "recording-manual_blood.json")]
    assert scan.dseg is not None
    atlas = _quiet(sv2a.load_atlas, scan.dseg)
    ref = _quiet(sv2a.load_atlas, phantom / scan.dseg.relative_to(inherited))
    assert atlas.label_names == ref.label_names and len(atlas.label_names) > 3
    np.testing.assert_array_equal(atlas.labels, ref.labels)


def test_nearest_label_table_wins(small_bids):
    """A subject-level dseg.tsv overrides the root one (no merging) for that subject only."""
    for t in small_bids.glob("sub-*/ses-*/anat/*_dseg.tsv"):
        t.unlink()
    (small_bids / "dseg.tsv").write_text("index\tname\n1\tLeft-Cortex\n2\tRight-Cortex\n"
                                         "3\tcentrum_semiovale\n")
    (small_bids / "sub-02" / "sub-02_dseg.tsv").write_text(
        "index\tname\n1\tleft\n2\tright\n3\twhite\n")
    a1 = sv2a.load_atlas(small_bids / "sub-01/ses-baseline/anat/"
                         "sub-01_ses-baseline_desc-regions_dseg.nii.gz")
    a2 = sv2a.load_atlas(small_bids / "sub-02/ses-baseline/anat/"
                         "sub-02_ses-baseline_desc-regions_dseg.nii.gz")
    assert a1.names == ["left_cortex", "right_cortex", "centrum_semiovale"]
    assert a2.names == ["left", "right", "white"]


def test_without_dataset_root_only_the_own_folder_counts(tmp_path):
    """A bare file (no dataset_description.json above it): a pet.json one folder up is not
    used, one beside the image is."""
    (tmp_path / "scans").mkdir()
    p, _ = write_small_pet(tmp_path / "scans" / "sub-01_pet.nii.gz")
    sc = tmp_path / "scans" / "sub-01_pet.json"
    shutil.move(sc, tmp_path / "pet.json")
    with pytest.raises(MetadataError, match="missing JSON sidecar"):
        sv2a.load_pet(p)
    shutil.move(tmp_path / "pet.json", tmp_path / "scans" / "pet.json")
    assert sv2a.load_pet(p).meta["sidecar_files"] == [str(tmp_path / "scans" / "pet.json")]


# --------------------------------------------------------- (d) validate and run, same numbers
def test_validate_reports_no_error_on_inherited_dataset(inherited):
    problems = validate_dataset(inherited)
    assert [p for p in problems if p.severity == "error"] == []
    found = discover(inherited)
    assert len(found.scans) == 4 and found.skipped == []


def test_run_gives_the_same_numbers(phantom, inherited, tmp_path):
    """``sv2a run`` (SUVR, and 1TCM with the shared blood sidecar) on the inherited dataset
    gives the regional values of the per-file one."""
    bids = inherited
    cfg = PipelineConfig(models=["suvr", "1tcm"], figures=False).validate()
    outs = {}
    for name, root in (("per_file", phantom), ("inherited", bids)):
        outs[name] = tmp_path / f"out_{name}"
        s = _quiet(run_participant, root, outs[name], cfg, quiet=True)
        assert s.ok and len(s.done) == 4, s.failed
    tables = sorted(p.relative_to(outs["per_file"])
                    for p in outs["per_file"].rglob("*_kinpar.tsv"))
    assert len(tables) == 6  # 4 SUVR + 2 1TCM (sub-01 has blood)
    for rel in tables + sorted(p.relative_to(outs["per_file"])
                               for p in outs["per_file"].rglob("*_tacs.tsv")):
        a = pd.read_csv(outs["per_file"] / rel, sep="\t")
        b = pd.read_csv(outs["inherited"] / rel, sep="\t")
        pd.testing.assert_frame_equal(a, b)


# ------------------------------------------------------------------ (e) Scan.input_files
def test_input_files_lists_inherited_files(inherited):
    scan = next(s for s in find_scans(inherited) if s.subject == "01" and
                s.session == "baseline")
    sub = inherited / "sub-01"
    pet_dir = sub / "ses-baseline" / "pet"
    want = [scan.pet, inherited / "pet.json", sub / "sub-01_pet.json",
            pet_dir / "sub-01_ses-baseline_pet.json",
            pet_dir / "sub-01_ses-baseline_recording-manual_blood.tsv",
            inherited / "recording-manual_blood.json",
            sub / "ses-baseline/anat/sub-01_ses-baseline_dseg.nii.gz", inherited / "dseg.tsv"]
    assert scan.input_files() == want


# -------------------------------------------------------------------- (f) entity mismatch
def test_entity_mismatch_does_not_apply(small_bids):
    pet = small_bids / "sub-01/ses-baseline/pet/sub-01_ses-baseline_trc-ucbj_pet.nii.gz"
    own = pet.with_name(pet.name.replace(".nii.gz", ".json"))
    meta = json.loads(own.read_text())
    own.unlink()
    (small_bids / "trc-OTHER_pet.json").write_text(json.dumps(meta))
    (small_bids / "sub-02_pet.json").write_text(json.dumps(meta))
    (small_bids / "sub-01_blood.json").write_text(json.dumps(meta))  # another suffix
    assert applicable_files(pet) == []
    with pytest.raises(MetadataError, match="missing JSON sidecar"):
        sv2a.load_pet(pet)
    (small_bids / "sub-01_trc-ucbj_pet.json").write_text(json.dumps(meta))
    assert sv2a.load_pet(pet).meta["sidecar_files"] == [
        str(small_bids / "sub-01_trc-ucbj_pet.json")]
