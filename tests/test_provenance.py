"""Provenance: every input of a scan is content-hashed in its done-marker; an edit of any of
them redoes exactly the scans it feeds (with the reason in the logs), ``touch`` does not;
readers see only committed scans."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from sv2a.commits import commits_under_way, committed_scans, committed_view
from sv2a.pipeline import PipelineConfig, run_participant
from sv2a.pipeline.provenance import changed_inputs, file_digest, input_digests
from sv2a.report import subject_report

B1 = "sub-01_ses-baseline_trc-ucbj"
CFG = dict(models=["suvr"], model_options={"suvr": {"window": [8, 38]}}, figures=False)


def _run(bids: Path, out: Path, **extra) -> tuple[list[str], list[str]]:
    s = run_participant(bids, out, PipelineConfig(**{**CFG, **extra}).validate(), quiet=True)
    assert not s.failed and not s.invalid
    return sorted(r["stem"] for r in s.done), sorted(s.skipped)


def _marker(out: Path, stem: str) -> Path:
    sub, ses = stem.split("_")[:2]
    return out / sub / ses / "pet" / f".{stem}_sv2a-done.json"


def _edit_json(path: Path, **kv) -> None:
    d = json.loads(path.read_text())
    d.update(kv)
    path.write_text(json.dumps(d))


@pytest.fixture
def done(small_bids, tmp_path):
    out = tmp_path / "out"
    assert len(_run(small_bids, out)[0]) == 4
    return small_bids, out


def test_marker_records_content_hash_of_every_input(done):
    bids, out = done
    inputs = json.loads(_marker(out, B1).read_text())["inputs"]
    pet = f"sub-01/ses-baseline/pet/{B1}"
    for key in (f"{pet}_pet.nii.gz", f"{pet}_pet.json", f"{pet}_recording-manual_blood.tsv",
                f"{pet}_recording-manual_blood.json",
                "sub-01/ses-baseline/anat/sub-01_ses-baseline_desc-regions_dseg.nii.gz",
                "sub-01/ses-baseline/anat/sub-01_ses-baseline_desc-regions_dseg.tsv"):
        assert len(inputs[key]["blake2b"]) == 32 and inputs[key]["size"] > 0, key
    assert set(inputs["participants.tsv[sub-01]"]) == {"blake2b"}
    assert "configuration" in inputs
    assert "participants.tsv" not in inputs  # the row, not the whole file


@pytest.mark.parametrize("what", ["pet_json", "blood_json", "dseg_tsv", "pet_image"])
def test_an_edited_input_redoes_its_scan_only(done, what, caplog):
    bids, out = done
    pet = bids / "sub-01/ses-baseline/pet"
    if what == "pet_json":
        path = pet / f"{B1}_pet.json"
        _edit_json(path, InjectedRadioactivity=500.0)
    elif what == "blood_json":
        path = pet / f"{B1}_recording-manual_blood.json"
        _edit_json(path, plasma_radioactivity={"Units": "Bq/mL"})
    elif what == "dseg_tsv":
        path = bids / "sub-01/ses-baseline/anat/sub-01_ses-baseline_desc-regions_dseg.tsv"
        path.write_text(path.read_text().replace("Left-Cortex", "Left-Cortex-Grey"))
    else:
        from conftest import write_small_pet

        path = pet / f"{B1}_pet.nii.gz"
        write_small_pet(path, seed=7)
    with caplog.at_level(logging.INFO, logger="sv2a.pipeline"):
        ran, skipped = _run(bids, out)
    assert ran == [B1] and len(skipped) == 3
    rel = path.relative_to(bids).as_posix()
    assert f"redoing sub-01/ses-baseline: {rel} changed" in caplog.text
    assert f"{rel} changed" in (out / f"logs/{B1}.log").read_text()
    # now up to date again
    assert _run(bids, out) == ([], sorted([B1, "sub-01_ses-followup_trc-ucbj",
                                           "sub-02_ses-baseline_trc-ucbj",
                                           "sub-02_ses-followup_trc-ucbj"]))


def test_participants_row_edit_redoes_that_subject_only(done, caplog):
    bids, out = done
    tsv = bids / "participants.tsv"
    tsv.write_text(tsv.read_text().replace("sub-02\trepeated\t80", "sub-02\trepeated\t82.5"))
    with caplog.at_level(logging.INFO, logger="sv2a.pipeline"):
        ran, skipped = _run(bids, out)
    assert ran == ["sub-02_ses-baseline_trc-ucbj", "sub-02_ses-followup_trc-ucbj"]
    assert "participants.tsv[sub-02] changed" in caplog.text
    # sub-01's weight 70 now reads as 70.0 (the column became float): not a change
    assert all(s.startswith("sub-01") for s in skipped) and len(skipped) == 2


def test_config_change_is_named(done, caplog):
    bids, out = done
    with caplog.at_level(logging.INFO, logger="sv2a.pipeline"):
        ran, _ = _run(bids, out, exclude_regions=["Right-Cortex"])
    assert len(ran) == 4 and "configuration changed" in caplog.text


def test_touch_alone_redoes_nothing_and_is_recorded(done):
    bids, out = done
    path = bids / f"sub-01/ses-baseline/pet/{B1}_pet.nii.gz"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _run(bids, out)[0] == []
    rec = json.loads(_marker(out, B1).read_text())["inputs"]
    key = path.relative_to(bids).as_posix()
    assert rec[key]["mtime_ns"] == st.st_mtime_ns + 10**9  # no rehash next time


def test_recorded_hash_reused_when_size_and_mtime_unchanged(tmp_path):
    """The documented shortcut: same size and mtime_ns -> the file is not read again."""
    f = tmp_path / "a.bin"
    f.write_bytes(b"abcd")
    d1 = file_digest(f)
    st = f.stat()
    f.write_bytes(b"wxyz")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_digest(f, d1) == d1
    assert file_digest(f)["blake2b"] != d1["blake2b"]  # read again without a record
    assert changed_inputs({"x": d1}, {"x": file_digest(f)}) == ["x changed"]
    assert changed_inputs({"x": d1}, {}) == ["x was removed"]
    rec = input_digests([f, None], tmp_path, {"v": [1, 2]})
    assert set(rec) == {"a.bin", "v"}


def test_interrupted_commit_is_invisible_and_redone(done):
    """Outputs moved into place but no marker (a kill inside the commit): readers do not
    see the scan, the next run redoes it and removes the outputs of the broken commit."""
    bids, out = done
    pet = out / "sub-01/ses-baseline/pet"
    mk = _marker(out, B1)
    outputs = json.loads(mk.read_text())["outputs"]
    stray = f"sub-01/ses-baseline/pet/{B1}_seg-regions_model-SRTM2_kinpar.tsv"
    (out / stray).write_text("region\tBPND\nLeft-Cortex\t99\n")
    (pet / f".{B1}_sv2a-commit.json").write_text(json.dumps({"outputs": [*outputs, stray]}))
    mk.unlink()
    assert B1 not in committed_scans(out) and len(committed_scans(out)) == 3
    with committed_view(out) as view:
        seen = sorted(p.name for p in view.rglob("*_kinpar.tsv"))
    assert len(seen) == 3 and not any(B1 in s for s in seen)
    assert commits_under_way(out) == {B1}
    html = subject_report(out, "01").read_text()  # the half-committed session is not shown
    assert "sub-01_ses-followup" in html and f'id="{B1.replace("_", "-")}' not in html
    # an output deleted by hand: the scan's other files stay visible, the scan is redone
    mk2 = _marker(out, "sub-02_ses-baseline_trc-ucbj")
    listed = json.loads(mk2.read_text())["outputs"]
    gone = next(r for r in listed if r.endswith("_tacs.tsv"))
    (out / gone).unlink()
    assert set(committed_scans(out)["sub-02_ses-baseline_trc-ucbj"]) == set(listed) - {gone}
    ran, _ = _run(bids, out)
    assert ran == [B1, "sub-02_ses-baseline_trc-ucbj"]
    assert not (out / stray).exists() and not (pet / f".{B1}_sv2a-commit.json").exists()
    assert len(committed_scans(out)) == 4


def test_group_level_reads_only_committed_scans(tmp_path):
    from sv2a.phantom import make_cohort
    from sv2a.pipeline import run_group

    bids = tmp_path / "bids"
    make_cohort(bids, design="ketamine-human", seed=1, n_subjects=4, voxel_mm=8.0, noise=0,
                fwhm=0)
    out = tmp_path / "out"
    cfg = PipelineConfig(models=["srtm2"], figures=False).validate()
    assert run_participant(bids, out, cfg, quiet=True).ok
    first = sorted(out.glob("sub-01/ses-*/pet/.*_sv2a-done.json"))[0]
    first.unlink()  # sub-01's first session: half-committed
    res = run_group(bids, out, PipelineConfig(models=["srtm2"], figures=False,
                                              group_model="srtm2").validate(), quiet=True)
    import xarray as xr

    ds = xr.open_dataset(res.netcdf)
    ses = first.name.split("_")[1].removeprefix("ses-")
    assert ds["BPND"].sel(subject="01", session=ses).isnull().all()
    assert ds["BPND"].sel(subject="02", session=ses).notnull().any()
    assert ds.attrs["source"] == str(out)
    assert not list(out.glob(".sv2a-view-*"))
    ds.close()
    fails = out / "logs/failures.tsv"
    assert not fails.exists() or pd.read_csv(fails, sep="\t").empty
