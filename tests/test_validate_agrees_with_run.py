"""``sv2a validate`` and ``sv2a run`` give the same verdict on corrupted datasets.

Each case corrupts a copy of the tiny ``small_bids`` dataset (conftest) and runs both
commands with the same options on one scan (sub-02, baseline; SRTM2 only, no figures):

* validate's verdict: the error classes named in its ``ERROR`` lines, and its exit status;
* run's verdict: the ``error_type`` of each scan in ``logs/failures.tsv`` (with
  ``--skip-invalid``, so that a request refused before any scan is listed as ``ConfigError``),
  and its exit status; without ``--skip-invalid`` a refused request exits 1 before any scan.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_small_pet

from sv2a.cli import main as cli_main
from sv2a.io import write_nifti

SCAN = ["--participant-label", "02", "--session-label", "baseline"]
FAST = ["--model", "srtm2", *SCAN]
ANAT = "sub-02/ses-baseline/anat/sub-02_ses-baseline_desc-regions_dseg"


def _validate(bids: Path, opts: list[str], capsys) -> tuple[int, set[str], str]:
    """Exit status, error classes and the output of ``sv2a validate``."""
    capsys.readouterr()
    rc = cli_main(["validate", str(bids), *opts])
    out = capsys.readouterr().out
    classes = set(re.findall(r"^ERROR +.*?: (?:unexpected )?(\w+Error)\b", out, re.M))
    return rc, classes, out


def _run(bids: Path, out: Path, opts: list[str], capsys) -> tuple[int, set[str], str]:
    """Exit status, the error types of ``logs/failures.tsv`` and stderr of ``sv2a run``
    (``--skip-invalid``: a refused request is listed there as ConfigError)."""
    capsys.readouterr()
    rc = cli_main(["run", str(bids), str(out), "participant", "--no-figures", "--quiet",
                   "--skip-invalid", *opts])
    err = capsys.readouterr().err
    tsv = out / "logs" / "failures.tsv"
    rows = pd.read_csv(tsv, sep="\t") if tsv.exists() else pd.DataFrame(
        columns=["scan_status", "error_type"])
    # errors only: 'warning' (usable result) and 'not_used' rows are validate's warnings
    types = set(rows.loc[~rows["scan_status"].isin(["warning", "not_used"]), "error_type"])
    return rc, types, err


def _verdicts(bids: Path, tmp_path: Path, opts: list[str], capsys) -> tuple[set, set]:
    """Both verdicts; the exit statuses must agree (0 exactly when nothing is an error)."""
    v_rc, v_classes, v_out = _validate(bids, opts, capsys)
    r_rc, r_types, r_err = _run(bids, tmp_path / "out", opts, capsys)
    assert "Traceback" not in v_out + r_err
    assert (v_rc, r_rc) in ((0, 0), (1, 1)), (v_out, r_err)
    assert (v_rc == 0) == (not v_classes)
    return v_classes, r_types


def _shift_atlas(bids: Path, shift_mm: float) -> None:
    """The segmentation's header origin moved by ``shift_mm`` along x (same matrix)."""
    import nibabel as nib

    path = bids / f"{ANAT}.nii.gz"
    img = nib.load(str(path))
    aff = img.affine.copy()
    aff[0, 3] += shift_mm
    write_nifti(path, np.asarray(img.dataobj), aff, dtype=np.int16)


def _fine_atlas(bids: Path) -> None:
    """The segmentation at 1 mm on the PET's field of view (another grid, same anatomy)."""
    import nibabel as nib

    path = bids / f"{ANAT}.nii.gz"
    lab = np.asarray(nib.load(str(path)).dataobj)
    fine = lab.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = -0.5  # voxel centres of the 2 mm grid at 0, 2, 4, ... mm
    write_nifti(path, fine, aff, dtype=np.int16)


@pytest.fixture
def bids(small_bids: Path) -> Path:
    return small_bids


def test_clean_scan_passes_both(bids, tmp_path, capsys):
    assert _verdicts(bids, tmp_path, FAST, capsys) == (set(), set())


def test_atlas_30mm_off_refused_by_both(bids, tmp_path, capsys):
    _shift_atlas(bids, 30.0)
    assert _verdicts(bids, tmp_path, FAST, capsys) == ({"ShapeMismatchError"},
                                                       {"ShapeMismatchError"})
    # even when resampling is asked for: the header disagrees with the PET's
    shutil.rmtree(tmp_path / "out")
    v, r = _verdicts(bids, tmp_path, [*FAST, "--atlas-resample"], capsys)
    assert v == r == {"ShapeMismatchError"}
    _, _, out = _validate(bids, [*FAST, "--atlas-resample"], capsys)
    assert "origin is 30 mm away" in out


def test_atlas_on_another_grid_needs_atlas_resample(bids, tmp_path, capsys):
    _fine_atlas(bids)
    assert _verdicts(bids, tmp_path, FAST, capsys) == ({"ShapeMismatchError"},
                                                       {"ShapeMismatchError"})
    _, _, out = _validate(bids, FAST, capsys)
    assert "shape (12, 10, 8) vs PET (6, 5, 4); voxel size 1 x 1 x 1 mm vs PET 2 x 2 x 2" in out
    shutil.rmtree(tmp_path / "out")
    assert _verdicts(bids, tmp_path, [*FAST, "--atlas-resample"], capsys) == (set(), set())
    assert (tmp_path / "out/sub-02/ses-baseline/pet").is_dir()
    # the setting also comes from a configuration file
    shutil.rmtree(tmp_path / "out")
    cfg = tmp_path / "sv2a.yaml"
    cfg.write_text("atlas_resample: true\n")
    assert _verdicts(bids, tmp_path, [*FAST, "--config", str(cfg)], capsys) == (set(), set())


def test_plasma_model_without_blood(bids, tmp_path, capsys):
    v, r = _verdicts(bids, tmp_path, ["--model", "1tcm", *SCAN], capsys)
    assert v == r == {"ConfigError"}
    # without --skip-invalid run refuses before any scan, exit 1
    capsys.readouterr()
    assert cli_main(["run", str(bids), str(tmp_path / "o2"), "participant", "--no-figures",
                     "--quiet", "--model", "1tcm", *SCAN]) == 1
    assert "cannot run with these settings" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "sub-02").exists()


def test_reference_region_missing_from_label_table(bids, tmp_path, capsys):
    (bids / f"{ANAT}.tsv").write_text("index\tname\n1\tLeft-Cortex\n2\tRight-Cortex\n3\tpons\n")
    v, r = _verdicts(bids, tmp_path, FAST, capsys)
    assert v == r == {"ConfigError"}


def test_reference_region_without_voxels(bids, tmp_path, capsys):
    # in the label table, but its one voxel is background in the image: a RegionError in both
    import nibabel as nib

    path = bids / f"{ANAT}.nii.gz"
    img = nib.load(str(path))
    lab = np.asarray(img.dataobj).copy()
    lab[lab == 3] = 1
    write_nifti(path, lab, img.affine, dtype=np.int16)
    v, r = _verdicts(bids, tmp_path, FAST, capsys)
    assert v == r == {"RegionError"}


def test_missing_dataset_description_is_a_warning_in_both(bids, tmp_path, capsys):
    (bids / "dataset_description.json").unlink()
    assert _verdicts(bids, tmp_path, FAST, capsys) == (set(), set())
    _, _, out = _validate(bids, FAST, capsys)
    assert "WARNING" in out and "dataset_description.json is missing" in out


def test_non_bids_label_folder_is_skipped_with_a_warning_in_both(bids, tmp_path, capsys):
    write_small_pet(bids / "sub-03_x" / "pet" / "sub-03_x_pet.nii.gz")
    assert _verdicts(bids, tmp_path, FAST, capsys) == (set(), set())
    _, _, out = _validate(bids, FAST, capsys)
    assert re.search(r"^WARNING .*sub-03_x: .*sv2a run skips it", out, re.M)
    rows = pd.read_csv(tmp_path / "out" / "logs" / "failures.tsv", sep="\t")
    assert rows[["participant_id", "scan_status", "error_type"]].values.tolist() == [
        ["sub-03_x", "not_used", "BIDSError"]]


def test_suvr_window_past_scan_end(bids, tmp_path, capsys):
    # the default SUVR window (60-90 min) is past the end of these 38-min scans
    v, r = _verdicts(bids, tmp_path, ["--model", "suvr", *SCAN], capsys)
    assert v == r == {"ConfigError"}
    shutil.rmtree(tmp_path / "out")
    assert _verdicts(bids, tmp_path, ["--model", "suvr", "--window", "20", "38", *SCAN],
                     capsys) == (set(), set())


def test_corrupt_sidecar_fails_both_at_load(bids, tmp_path, capsys):
    sc = bids / "sub-02/ses-baseline/pet/sub-02_ses-baseline_trc-ucbj_pet.json"
    meta = json.loads(sc.read_text())
    del meta["Units"]
    sc.write_text(json.dumps(meta))
    v, r = _verdicts(bids, tmp_path, FAST, capsys)
    assert v == r and len(v) == 1


def _config(tmp_path: Path, text: str) -> list[str]:
    """``--config FILE`` options for a YAML configuration holding ``text``."""
    cfg = tmp_path / "sv2a.yaml"
    cfg.write_text(text)
    return ["--config", str(cfg)]


def test_tstar_past_the_scan_end_refused_by_both(bids, tmp_path, capsys):
    # t* = 200 min on a 38-min scan leaves no frame: every MRTM fit would fail (FitError)
    opts = [*SCAN, *_config(tmp_path, "models: [mrtm]\nmodel_options: {mrtm: {tstar: 200}}\n")]
    v, r = _verdicts(bids, tmp_path, opts, capsys)
    assert v == r == {"ConfigError"}
    _, _, out = _validate(bids, opts, capsys)
    assert re.search(r"mrtm \(fit\): only 0 frame\(s\) have mid-time >= t\* = 200", out), out
    assert "the scan is 0-38 min" in out
    # a t* that leaves the 4 frames MRTM needs (mid-times 3, 6, 13, 28 min) passes both
    shutil.rmtree(tmp_path / "out")
    opts = [*SCAN, *_config(tmp_path, "models: [mrtm]\nmodel_options: {mrtm: {tstar: 3}}\n")]
    assert _verdicts(bids, tmp_path, opts, capsys) == (set(), set())
    # without --skip-invalid run refuses before any scan
    capsys.readouterr()
    bad = [*SCAN, *_config(tmp_path, "models: [mrtm]\nmodel_options: {mrtm: {tstar: 200}}\n")]
    assert cli_main(["run", str(bids), str(tmp_path / "o2"), "participant", "--no-figures",
                     "--quiet", *bad]) == 1
    assert "cannot run with these settings" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "sub-02").exists()


def test_exclude_regions_typo_refused_by_both(bids, tmp_path, capsys):
    # a name in no scan's label table would exclude nothing, silently
    opts = [*FAST, "--exclude-regions", "left_cortx"]
    v, r = _verdicts(bids, tmp_path, opts, capsys)
    assert v == r == {"ConfigError"}
    _, _, out = _validate(bids, opts, capsys)
    assert "did you mean 'left_cortex'?" in out
    # a name of the label table (any spelling region_name normalises) passes both
    shutil.rmtree(tmp_path / "out")
    assert _verdicts(bids, tmp_path, [*FAST, "--exclude-regions", "Left-Cortex"],
                     capsys) == (set(), set())
    kinpar, = (tmp_path / "out/sub-02/ses-baseline/pet").glob("*model-SRTM2_kinpar.tsv")
    rows = pd.read_csv(kinpar, sep="\t")
    assert "Left-Cortex" not in set(rows["region"]) and "left_cortex" not in set(rows["region"])

