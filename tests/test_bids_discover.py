"""Discovery never guesses: blood, images and segmentations are matched to a PET file by
their BIDS entities, and ambiguous or misplaced files are listed as not used."""

from __future__ import annotations

from pathlib import Path

from sv2a.bids import discover
from sv2a.pipeline import PipelineConfig
from sv2a.pipeline.preflight import check_scans


def _touch(root: Path, *names: str) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_blood_of_another_run_is_not_used(tmp_path):
    pet = "sub-01/ses-bl/pet/sub-01_ses-bl"
    _touch(tmp_path, f"{pet}_run-1_pet.nii.gz", f"{pet}_run-2_pet.nii.gz",
           f"{pet}_run-1_recording-manual_blood.tsv")
    scans = {s.pet.name: s for s in discover(tmp_path).scans}
    assert scans["sub-01_ses-bl_run-1_pet.nii.gz"].blood["manual"].name == (
        "sub-01_ses-bl_run-1_recording-manual_blood.tsv")
    assert scans["sub-01_ses-bl_run-2_pet.nii.gz"].blood == {}


def test_session_blood_applies_and_the_most_specific_wins(tmp_path):
    pet = "sub-01/ses-bl/pet/sub-01_ses-bl"
    _touch(tmp_path, f"{pet}_trc-UCBJ_run-1_pet.nii.gz", f"{pet}_trc-UCBJ_run-2_pet.nii.gz",
           f"{pet}_recording-manual_blood.tsv", f"{pet}_run-2_recording-manual_blood.tsv",
           f"{pet}_trc-OTHER_recording-autosampler_blood.tsv")
    scans = {s.pet.name: s for s in discover(tmp_path).scans}
    one = scans["sub-01_ses-bl_trc-UCBJ_run-1_pet.nii.gz"].blood
    two = scans["sub-01_ses-bl_trc-UCBJ_run-2_pet.nii.gz"].blood
    assert one["manual"].name == "sub-01_ses-bl_recording-manual_blood.tsv"
    assert two["manual"].name == "sub-01_ses-bl_run-2_recording-manual_blood.tsv"
    assert "autosampler" not in one and "autosampler" not in two  # another tracer's


def test_nii_and_nii_gz_twins_are_not_used(tmp_path):
    pet = "sub-01/ses-bl/pet/sub-01_ses-bl"
    _touch(tmp_path, f"{pet}_pet.nii", f"{pet}_pet.nii.gz",
           "sub-02/ses-bl/pet/sub-02_ses-bl_pet.nii.gz")
    found = discover(tmp_path)
    assert [s.subject for s in found.scans] == ["02"]
    assert sorted(Path(p).name for p, _ in found.skipped) == [
        "sub-01_ses-bl_pet.nii", "sub-01_ses-bl_pet.nii.gz"]
    assert all("both a .nii and a .nii.gz" in why for _, why in found.skipped)


def test_two_segmentations_are_a_problem_of_the_scan_unless_atlas_is_given(tmp_path):
    _touch(tmp_path, "sub-01/ses-bl/pet/sub-01_ses-bl_pet.nii.gz",
           "sub-01/ses-bl/anat/sub-01_ses-bl_dseg.nii.gz",
           "sub-01/ses-bl/anat/sub-01_ses-bl_desc-brain_dseg.nii.gz")
    (scan,) = discover(tmp_path).scans
    assert scan.dseg is None and "2 segmentations apply" in scan.dseg_problem
    cfg = PipelineConfig(models=["suvr"], model_options={"suvr": {"window": [0, 1]}})
    (problem,) = [p for p in check_scans([scan], cfg.validate()) if p.check == "atlas"]
    assert problem.error == "RegionError" and "desc-brain" in problem.message
    atlas = tmp_path / "atlas_dseg.nii.gz"
    atlas.write_bytes(b"")
    (tmp_path / "atlas_dseg.tsv").write_text("index\tname\n1\tcortex\n")
    cfg = PipelineConfig(models=["suvr"], atlas=str(atlas),
                         atlas_labels=str(tmp_path / "atlas_dseg.tsv"),
                         reference="cortex", model_options={"suvr": {"window": [0, 1]}})
    assert not [p for p in check_scans([scan], cfg.validate()) if p.check == "atlas"]


def test_data_outside_the_sessions_of_a_subject_is_listed(tmp_path):
    _touch(tmp_path, "sub-01/pet/sub-01_pet.nii.gz",
           "sub-01/ses-bl/pet/sub-01_ses-bl_pet.nii.gz")
    found = discover(tmp_path)
    assert [s.session for s in found.scans] == ["bl"]
    (skipped,) = found.skipped
    assert skipped[0].endswith("sub-01/pet") and "ses-* folders" in skipped[1]


def test_blood_with_another_recording_label_is_listed(tmp_path):
    pet = "sub-01/ses-bl/pet/sub-01_ses-bl"
    _touch(tmp_path, f"{pet}_pet.nii.gz", f"{pet}_recording-arterial_blood.tsv")
    found = discover(tmp_path)
    assert found.scans[0].blood == {}
    (skipped,) = found.skipped
    assert skipped[0].endswith("recording-arterial_blood.tsv") and "'arterial'" in skipped[1]
