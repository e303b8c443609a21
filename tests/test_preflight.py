"""Up-front check of a participant-level request, and models that fail inside a scan.

A rodent phantom (6 rats x 4 sessions, 1 mm voxels, no noise, 60-min scans, no centrum
semiovale in its atlas) is generated once; only the tests that keep what worked process
scans (one subject, one session).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sv2a.errors import ConfigError
from sv2a.pipeline.config import PipelineConfig
from sv2a.pipeline.execute import FAILURE_COLUMNS, run_participant
from sv2a.pipeline.preflight import check_scans


@pytest.fixture(scope="module")
def rodent(tmp_path_factory):
    from sv2a.phantom import make_cohort

    root = tmp_path_factory.mktemp("rodent") / "bids"
    make_cohort(root, design="ketamine-rodent", voxel_mm=1.0, n_subjects=6, noise=0, seed=1)
    return root


def _scans(bids):
    from sv2a.bids import find_scans

    return find_scans(bids)


def test_missing_reference_stops_before_any_scan(rodent, tmp_path, capsys):
    from sv2a.cli import main

    out = tmp_path / "out"
    rc = main(["run", str(rodent), str(out), "participant", "--model", "srtm2",
               "--reference", "centrum_semiovale", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()  # nothing processed, nothing written
    assert "24 of 24 scan(s) cannot run with these settings; nothing was processed" in err
    assert "reference region 'centrum_semiovale' is not in the atlas" in err
    assert "brainstem" in err and "all 24 scans" in err and "--skip-invalid" in err


def test_problems_grouped_with_their_scans(rodent):
    scans = [s for s in _scans(rodent) if s.subject in ("01", "02")]
    cfg = PipelineConfig(models=["srtm2", "suvr"], reference="centrum_semiovale").validate()
    problems = check_scans(scans, cfg)
    # every scan: the reference, and the default 60-90 min SUVR window past the 60-min end
    assert sorted({p.check for p in problems}) == ["reference", "window"]
    assert len(problems) == 2 * len(scans)
    win = [p for p in problems if p.check == "window"][0].message
    assert "suvr window (60, 90) min (fit) is outside the scan (0-60 min)" in win
    assert "--window 30 60" in win


def test_window_past_scan_end_is_a_preflight_error(rodent, tmp_path):
    cfg = PipelineConfig(models=["suvr"], reference="brainstem", participant_label=["01"],
                         window=(40, 75)).validate()
    with pytest.raises(ConfigError, match=r"suvr window \(40, 75\) min \(fit\) is outside"):
        run_participant(rodent, tmp_path / "out", cfg, quiet=True)
    assert not (tmp_path / "out").exists()
    # a window in the voxelwise options of the SUV maps is checked too
    cfg = PipelineConfig(models=["srtm2"], reference="brainstem", voxelwise=True,
                         voxelwise_models=["suv"],
                         voxelwise_options={"suv": {"window": [50, 70]}}).validate()
    assert {p.message.split(" (")[0] for p in check_scans(_scans(rodent)[:1], cfg)} == {
        "suv window"}


def test_plasma_models_need_blood_or_idif(rodent, tmp_path):
    scans = _scans(rodent)[:2]
    no_blood = [type(s)(s.subject, s.session, s.pet, {}, s.dseg) for s in scans]
    only_plasma = PipelineConfig(models=["1tcm"]).validate()
    probs = check_scans(no_blood, only_plasma)
    assert [p.check for p in probs] == ["blood", "blood"]
    assert "--input idif" in probs[0].message
    # with a reference model beside it the plasma model is skipped with a note, not refused
    assert not check_scans(no_blood, PipelineConfig(models=["1tcm", "srtm2"],
                                                    reference="brainstem").validate())
    assert not check_scans(no_blood, PipelineConfig(models=["1tcm"], input="idif").validate())
    assert not check_scans(scans, only_plasma)


def test_atlas_and_label_table_checked(rodent, tmp_path):
    from sv2a.bids import Scan

    s = _scans(rodent)[0]
    cfg = PipelineConfig(models=["srtm2"], reference="brainstem").validate()
    assert [p.check for p in check_scans([Scan(s.subject, s.session, s.pet)], cfg)] == ["atlas"]
    img = tmp_path / "atlas.nii.gz"
    img.write_bytes(s.dseg.read_bytes())
    cfg = PipelineConfig(models=["srtm2"], reference="brainstem", atlas=str(img)).validate()
    [p] = check_scans([s], cfg)
    assert p.check == "atlas" and "atlas.tsv is missing" in p.message
    cfg = PipelineConfig(models=["srtm2"], reference="brainstem", input="idif",
                         idif_region="aorta").validate()
    assert [p.check for p in check_scans([s], cfg)] == ["idif_region"]


def test_skip_invalid_lists_the_scans_in_failures(rodent, tmp_path, capsys):
    from sv2a.cli import main

    out = tmp_path / "out"
    rc = main(["run", str(rodent), str(out), "participant", "--model", "srtm2",
               "--reference", "centrum_semiovale", "--participant-label", "01", "02",
               "--skip-invalid", "-q"])
    assert rc == 1
    assert "8 invalid (not run)" in capsys.readouterr().out
    fails = pd.read_csv(out / "logs/failures.tsv", sep="\t")
    assert list(fails.columns) == FAILURE_COLUMNS and len(fails) == 8
    assert set(fails["scan_status"]) == {"invalid"} and set(fails["stage"]) == {"preflight"}
    assert fails["message"].str.contains("'centrum_semiovale' is not in the atlas").all()
    assert not list(out.glob("sub-*/ses-*/pet/*"))


def test_failing_model_keeps_the_rest_and_is_retried(rodent, tmp_path):
    """srtm2 with a k2prime_region that is not in the atlas fails at fit time; the TACs and
    SUVR of the scan are committed, the failure is in failures.tsv, the log and the report,
    and the re-run redoes the scan (the done-marker records the failure)."""
    out = tmp_path / "out"
    cfg = PipelineConfig(models=["srtm2", "suvr"], reference="brainstem", window=(30, 60),
                         model_options={"srtm2": {"k2prime_region": "nucleus_accumbens"}},
                         participant_label=["01"], session_label=["baseline"]).validate()
    s = run_participant(rodent, out, cfg, quiet=True)
    assert len(s.done) == 1 and not s.failed and not s.ok and len(s.partial) == 1
    assert "1 with failed models" in s.line(out)
    pet = out / "sub-01/ses-baseline/pet"
    assert (pet / "sub-01_ses-baseline_seg-dseg_tacs.tsv").exists()
    suvr = pd.read_csv(pet / "sub-01_ses-baseline_seg-dseg_model-SUVR_kinpar.tsv", sep="\t")
    assert len(suvr) > 3 and not list(pet.glob("*model-SRTM2*"))
    side = json.loads((pet / "sub-01_ses-baseline_seg-dseg_model-SUVR_kinpar.json")
                      .read_text())
    assert side["Settings"]["window"] == [30, 60]
    fails = pd.read_csv(out / "logs/failures.tsv", sep="\t")
    assert len(fails) == 1
    row = fails.iloc[0]
    assert (row["participant_id"], row["session"], row["scan_status"], row["stage"],
            row["model"], row["error_type"]) == ("sub-01", "ses-baseline", "partial",
                                                 "fit:srtm2", "srtm2", "RegionError")
    assert "nucleus_accumbens" in row["message"]
    log = (out / "logs/sub-01_ses-baseline.log").read_text()
    assert "FAILED at stage 'fit:srtm2'" in log
    html = (out / "sub-01.html").read_text()
    assert "regional fit srtm2 failed" in html
    marker = json.loads((pet / ".sub-01_ses-baseline_sv2a-done.json").read_text())
    assert marker["failures"][0]["model"] == "srtm2"
    # the next run redoes the scan; with a valid region everything is done and clean
    s2 = run_participant(rodent, out, cfg, quiet=True)
    assert len(s2.done) == 1 and not s2.skipped
    ok = PipelineConfig(**{**cfg.to_dict(), "model_options": {}}).validate()
    s3 = run_participant(rodent, out, ok, quiet=True)
    assert s3.ok and len(s3.done) == 1 and not (out / "logs/failures.tsv").exists()
    assert list(pet.glob("*model-SRTM2_kinpar.tsv"))
    assert "regional fit srtm2 failed" not in (out / "sub-01.html").read_text()
    assert run_participant(rodent, out, ok, quiet=True).skipped


def test_report_rewritten_when_the_scan_fails_again(rodent, tmp_path):
    """A re-run whose scan fails leaves no stale report: it is rewritten with the failure."""
    import shutil

    bids = tmp_path / "bids"
    shutil.copytree(rodent / "sub-01", bids / "sub-01")
    for f in ("dataset_description.json", "participants.tsv"):
        shutil.copy(rodent / f, bids / f)
    out = tmp_path / "out"
    cfg = PipelineConfig(models=["suvr"], reference="brainstem", window=(30, 60),
                         session_label=["baseline"]).validate()
    assert run_participant(bids, out, cfg, quiet=True).ok
    old = (out / "sub-01.html").read_text()
    pet = bids / "sub-01/ses-baseline/pet/sub-01_ses-baseline_pet.nii.gz"
    pet.write_bytes(pet.read_bytes()[:1000])  # corrupt: the scan now fails at load
    s = run_participant(bids, out, PipelineConfig(**{**cfg.to_dict(), "force": True})
                        .validate(), quiet=True)
    assert len(s.failed) == 1
    new = (out / "sub-01.html").read_text()
    assert new != old and "failed" in new and "DataError" not in old
    assert "truncated or corrupt" in new


def test_exclude_regions_name_must_be_in_some_scans_atlas(small_bids):
    scans = _scans(small_bids)
    assert len(scans) > 1
    # one scan's atlas has no left cortex: excluding it there does nothing, and is fine
    tsv = next(small_bids.glob("sub-02/ses-baseline/anat/*_dseg.tsv"))
    tsv.write_text("index\tname\n1\tLeft-Striatum\n2\tRight-Cortex\n3\tcentrum_semiovale\n")
    ok = PipelineConfig(models=["srtm2"], exclude_regions=["Left-Cortex"]).validate()
    assert check_scans(scans, ok) == []
    # a name in no scan's atlas is a typo: a ConfigError for every scan, with the close name
    bad = PipelineConfig(models=["srtm2"], exclude_regions=["left_cortx", "Right-Cortex"])
    problems = check_scans(scans, bad.validate())
    assert len(problems) == len(scans)
    assert {(p.check, p.error) for p in problems} == {("exclude_regions", "ConfigError")}
    assert ("exclude_regions: 'left_cortx' (did you mean 'left_cortex'?) is in no selected "
            "scan's atlas") in problems[0].message


@pytest.mark.parametrize("options,says", [
    ({"tstar": 30}, "only 0 frame(s) have mid-time >= t* = 30 min"),  # mid-times to 28 min
    ({"n_frames": 10}, "n_frames=10 but the fit needs 4..6 frames"),
])
def test_graphical_frame_selection_checked_against_each_scan(small_bids, options, says):
    scans = _scans(small_bids)
    cfg = PipelineConfig(models=["srtm2", "mrtm"], model_options={"mrtm": options}).validate()
    problems = check_scans(scans, cfg)
    assert len(problems) == len(scans) and {p.check for p in problems} == {"tstar"}
    assert says in problems[0].message and "(the scan is 0-38 min)" in problems[0].message
    ok = PipelineConfig(models=["mrtm"], model_options={"mrtm": {"tstar": 3}}).validate()
    assert check_scans(scans, ok) == []
