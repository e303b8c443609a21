import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from sv2a.bids import find_scans, read_participants
from sv2a.cli import main as cli_main
from sv2a.io import write_nifti
from sv2a.pipeline.config import PipelineConfig
from sv2a.validate import validate_dataset


def test_find_scans(small_bids):
    scans = find_scans(small_bids)
    assert [(s.subject, s.session) for s in scans] == [
        ("01", "baseline"), ("01", "followup"), ("02", "baseline"), ("02", "followup")]
    assert set(scans[0].blood) == {"manual"} and scans[2].blood == {}
    assert scans[0].dseg.name.endswith("_dseg.nii.gz")
    assert [s.subject for s in find_scans(small_bids, participant_label=["sub-02"])] == ["02"] * 2
    assert {s.session for s in find_scans(small_bids, session_label=["baseline"])} == {"baseline"}
    assert read_participants(small_bids).loc["02", "arm"] == "repeated"


#: The settings the 38-min scans of ``small_bids`` fit (the default SUVR window is 60-90 min).
FITS = PipelineConfig(window=(20.0, 38.0)).validate()


def test_clean_dataset_validates(small_bids, capsys):
    problems = validate_dataset(small_bids, config=FITS)
    assert [p for p in problems if p.severity == "error"] == []
    assert cli_main(["validate", str(small_bids), "--window", "20", "38"]) == 0
    assert "0 error(s)" in capsys.readouterr().out
    # without --window, as sv2a run without it: the SUVR window is past the scan end
    assert cli_main(["validate", str(small_bids)]) == 1
    out = capsys.readouterr().out
    assert "ConfigError (window): suvr window (60, 90) min (fit) is outside the scan" in out
    assert "4 error(s)" in out


def test_every_problem_is_reported(small_bids, capsys):
    pet_dir = small_bids / "sub-01" / "ses-baseline" / "pet"
    # 1. overlapping frames in one sidecar
    sc = pet_dir / "sub-01_ses-baseline_trc-ucbj_pet.json"
    meta = json.loads(sc.read_text())
    meta["FrameDuration"][0] = 120
    sc.write_text(json.dumps(meta))
    # 2. blood that stops before the end of the scan in another session
    blood = (small_bids / "sub-01/ses-followup/pet"
             / "sub-01_ses-followup_trc-ucbj_recording-manual_blood.tsv")
    lines = blood.read_text().splitlines()
    blood.write_text("\n".join(lines[:-2]) + "\n")
    # 3. a truncated image
    img = small_bids / "sub-02/ses-followup/pet/sub-02_ses-followup_trc-ucbj_pet.nii.gz"
    raw = img.read_bytes()
    img.write_bytes(raw[: len(raw) // 2])
    # 4. missing sidecar field
    sc2 = small_bids / "sub-02/ses-baseline/pet/sub-02_ses-baseline_trc-ucbj_pet.json"
    meta2 = json.loads(sc2.read_text())
    del meta2["Units"]
    sc2.write_text(json.dumps(meta2))

    problems = validate_dataset(small_bids, config=FITS)
    errors = [p for p in problems if p.severity == "error"]
    text = "\n".join(str(p) for p in errors)
    assert "frames overlap" in text and "ses-baseline_trc-ucbj_pet.json" in text
    assert "input function ends at" in text
    assert "truncated or corrupt" in text
    assert "'Units' is missing" in text
    assert len(errors) == 4
    assert cli_main(["validate", str(small_bids), "--window", "20", "38"]) == 1
    assert "4 error(s)" in capsys.readouterr().out


def test_atlas_grid_mismatch_reported(small_bids):
    d = small_bids / "sub-02/ses-baseline/anat/sub-02_ses-baseline_desc-regions_dseg.nii.gz"
    write_nifti(d, np.ones((3, 3, 3)), np.eye(4), dtype=np.int16)
    problems = validate_dataset(small_bids, read_data=False, config=FITS)
    assert any("ShapeMismatchError: " in p.message
               and "not on the PET grid (shape (3, 3, 3)" in p.message for p in problems)


def test_not_a_bids_dir(tmp_path):
    problems = validate_dataset(tmp_path)
    assert any("dataset_description.json" in p.message for p in problems)
    assert any("no sub-* folders" in p.message for p in problems)


def _several_problems(root):
    """Four scans, four different problems: an atlas 30 mm off, a reference region missing
    from a label table, a sidecar without Units and a blood file that cannot be read."""
    import nibabel as nib

    dseg = root / "sub-01/ses-baseline/anat/sub-01_ses-baseline_desc-regions_dseg.nii.gz"
    img = nib.load(str(dseg))
    aff = img.affine.copy()
    aff[0, 3] += 30.0
    write_nifti(dseg, np.asarray(img.dataobj), aff, dtype=np.int16)
    (root / "sub-02/ses-baseline/anat/sub-02_ses-baseline_desc-regions_dseg.tsv").write_text(
        "index\tname\n1\tLeft-Cortex\n2\tRight-Cortex\n3\tpons\n")
    sc = root / "sub-02/ses-followup/pet/sub-02_ses-followup_trc-ucbj_pet.json"
    meta = json.loads(sc.read_text())
    del meta["Units"]
    sc.write_text(json.dumps(meta))
    (root / "sub-01/ses-followup/pet/sub-01_ses-followup_trc-ucbj_recording-manual_blood.tsv"
     ).write_text("nothing\tuseful\n")


def test_every_problem_of_every_scan_in_one_pass(small_bids, monkeypatch):
    import sv2a.pet

    _several_problems(small_bids)
    # and a bug: an unexpected Python exception while checking one more scan's image
    real = sv2a.pet.load_pet

    def buggy(path, **kw):
        if "sub-02_ses-baseline" in str(path):
            raise ZeroDivisionError("float division by zero")
        return real(path, **kw)

    monkeypatch.setattr(sv2a.pet, "load_pet", buggy)
    errors = [p for p in validate_dataset(small_bids, config=FITS) if p.severity == "error"]
    by_file = {Path(p.file).name: p.message for p in errors}
    assert by_file["sub-01_ses-baseline_desc-regions_dseg.nii.gz"].startswith(
        "ShapeMismatchError: ") and "origin offset 30 mm" in by_file[
        "sub-01_ses-baseline_desc-regions_dseg.nii.gz"]
    assert by_file["sub-02_ses-followup_trc-ucbj_pet.nii.gz"].startswith("MetadataError: ")
    assert "sub-01_ses-followup_trc-ucbj_recording-manual_blood.tsv" in by_file
    bug = by_file["sub-02_ses-baseline_trc-ucbj_pet.nii.gz"]
    assert "ConfigError (reference)" in bug or "unexpected ZeroDivisionError" in bug
    texts = [p.message for p in errors if p.file.endswith("sub-02_ses-baseline_trc-ucbj_pet"
                                                          ".nii.gz")]
    assert any(t.startswith("ConfigError (reference): reference region 'centrum_semiovale'")
               for t in texts)
    assert any(t.startswith("unexpected ZeroDivisionError: float division by zero (this is a "
                            "bug in sv2a") and "report it" in t for t in texts)
    assert len(errors) == 5


def test_validate_command_lists_every_problem_without_traceback(small_bids):
    _several_problems(small_bids)
    proc = subprocess.run([sys.executable, "-m", "sv2a.cli", "validate", str(small_bids),
                           "--window", "20", "38"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "4 error(s)" in proc.stdout
    for cls in ("ShapeMismatchError", "ConfigError (reference)", "MetadataError"):
        assert cls in proc.stdout
    assert "sv2a validate: 4/4 scans checked (4 with errors)" in proc.stderr


def test_validate_takes_the_run_options(small_bids, tmp_path, capsys):
    # a plasma model for scans without blood: an error exactly when run would refuse it
    opts = ["validate", str(small_bids), "--quick", "--participant-label", "02"]
    assert cli_main([*opts, "--model", "1tcm"]) == 1
    assert "ConfigError (blood): every requested regional model (1tcm)" in capsys.readouterr().out
    assert cli_main([*opts, "--model", "1tcm", "--input", "idif"]) == 0
    capsys.readouterr()
    cfg = tmp_path / "sv2a.yaml"
    cfg.write_text("model: [1tcm]\n")
    assert cli_main([*opts, "--config", str(cfg)]) == 1
    assert cli_main([*opts, "--config", str(cfg), "--model", "srtm2"]) == 0
    # a bad option is refused as run refuses it
    assert cli_main([*opts, "--model", "nosuchmodel"]) == 1
    assert "nosuchmodel" in capsys.readouterr().err
