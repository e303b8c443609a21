"""Phantom cohorts written as BIDS: files, truth, designs, validation, seeds, CLI."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from sv2a.errors import BIDSError, ConfigError, DesignError
from sv2a.phantom import get_preset, make_cohort, normalise_design, scan_parameters
from sv2a.phantom.subject import TRUTH_COLUMNS

ZERO_VAR = {"between_subject_cv": 0.0, "within_subject_sd": 0.0, "vnd_cv": 0.0, "k1_cv": 0.0}


@pytest.fixture(scope="module")
def exact_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("coh") / "bids"
    c = make_cohort(out, "ketamine-human-pcc", seed=7, n_subjects=2, noise=0, fwhm=0,
                    voxel_mm=8.0, blood=["01"])
    return c


def test_bids_layout_and_tables(exact_cohort):
    c = exact_cohort
    root = c.path
    assert list(c.participants.columns) == ["participant_id", "arm", "age", "sex", "weight"]
    parts = pd.read_csv(root / "participants.tsv", sep="\t")
    assert parts["participant_id"].tolist() == ["sub-01", "sub-02"]
    assert parts["arm"].tolist() == ["ketamine_24h", "ketamine_7d"]
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["BIDSVersion"] and desc["GeneratedBy"][0]["Name"] == "sv2a"
    truth = pd.read_csv(root / "truth.tsv", sep="\t")
    assert list(truth.columns) == ["participant_id", "session", "region", *TRUTH_COLUMNS,
                                   "arm", "effect_VS_pct", "effect_K1_pct", "change_VS_pct"]
    assert set(truth["session"]) == {"baseline", "24h", "7d"}
    assert truth["k3"].isna().all()  # 1TCM tracer: k3/k4 empty
    design = json.loads((root / "design.json").read_text())
    for key in ("name", "arms", "sessions", "effects", "seed", "noise", "fwhm_mm"):
        assert key in design
    assert design["seed"] == 7 and design["name"] == "ketamine-human-pcc"
    pet = root / "sub-01/ses-24h/pet/sub-01_ses-24h_pet.json"
    side = json.loads(pet.read_text())
    for key in ("FrameTimesStart", "FrameDuration", "Units", "TracerName", "TracerRadionuclide",
                "InjectedRadioactivity", "InjectedRadioactivityUnits", "BodyWeight",
                "ImageDecayCorrected"):
        assert key in side, key
    assert side["Units"] == "kBq/mL" and side["ImageDecayCorrected"] is True
    assert side["InjectedRadioactivityUnits"] == "MBq" and side["TracerRadionuclide"] == "C11"
    blood = root / "sub-01/ses-24h/pet/sub-01_ses-24h_recording-manual_blood.tsv"
    bt = pd.read_csv(blood, sep="\t")
    assert list(bt.columns) == ["time", "whole_blood_radioactivity", "plasma_radioactivity",
                                "metabolite_parent_fraction"]
    bj = json.loads(blood.with_suffix(".json").read_text())
    assert bj["time"]["Units"] == "s" and bj["plasma_radioactivity"]["Units"] == "kBq/mL"
    assert bj["PlasmaAvail"] is True
    assert not list((root / "sub-02").rglob("*_blood.tsv"))  # blood only for sub-01
    dseg = pd.read_csv(root / "sub-02/ses-7d/anat/sub-02_ses-7d_dseg.tsv", sep="\t")
    assert list(dseg.columns) == ["index", "name"] and "centrum_semiovale" in set(dseg["name"])
    ses = pd.read_csv(root / "sub-02/sub-02_sessions.tsv", sep="\t")
    assert ses["session_id"].tolist() == ["ses-baseline", "ses-7d"]


def test_written_dataset_passes_validate(exact_cohort):
    from sv2a.validate import validate_dataset

    problems = validate_dataset(exact_cohort.path)
    assert [p for p in problems if p.severity == "error"] == []
    assert problems == []


def test_files_reload_to_truth(exact_cohort):
    """noise 0, fwhm 0: the regional means of the written image equal the truth TACs."""
    from sv2a import extract_tacs, load_atlas, load_blood, load_pet
    from sv2a.phantom import make_subject

    root = exact_cohort.path
    pet = load_pet(root / "sub-01/ses-24h/pet/sub-01_ses-24h_pet.nii.gz")
    atlas = load_atlas(root / "sub-01/ses-24h/anat/sub-01_ses-24h_dseg.nii.gz")
    tacs = extract_tacs(pet, atlas)
    truth = exact_cohort.truth
    row = truth[(truth.participant_id == "sub-01") & (truth.session == "24h")].set_index("region")
    # recompute the exact TAC of this scan from its true parameters
    params = row[["K1", "k2", "k3", "k4", "vB", "VT", "VND", "VS"]]
    s = make_subject("human", "ucbj", noise=0, fwhm=0, image=False,
                     params=_with_csf(params), injected_mbq=pet.meta["injected_mbq"],
                     body_weight_kg=pet.meta["body_weight_kg"])
    for r in ("posterior_cingulate", "centrum_semiovale", "putamen"):
        np.testing.assert_allclose(tacs.sel(region=r).values, s.tacs.sel(region=r).values,
                                   rtol=1e-5)
    inp = load_blood(root / "sub-01/ses-24h/pet/sub-01_ses-24h_recording-manual_blood.tsv")
    t = np.array([2.0, 10.0, 60.0])
    np.testing.assert_allclose(inp.plasma_at(t), s.input.plasma_at(t), rtol=1e-6)


def _with_csf(params):
    p = params.copy()
    p.loc["ventricles"] = [0.0, 0.0, np.nan, np.nan, 0.0, 0.0, 0.0, 0.0]
    return p


def test_pcc_effect_and_flow_confound_on_true_parameters():
    p = get_preset("human", "ucbj")
    d = normalise_design({"base": "ketamine-human-pcc", "variability": ZERO_VAR})

    def params(arm, ses):
        return scan_parameters(p, d, arm, ses, np.random.default_rng(1),
                               np.random.default_rng(2))

    bl, post = params("ketamine_24h", "baseline"), params("ketamine_24h", "24h")
    ratio = post.VS / bl.VS
    assert ratio["posterior_cingulate"] == pytest.approx(1.05, rel=1e-12)
    assert ratio.drop("posterior_cingulate").dropna().sub(1).abs().max() < 1e-12
    assert params("ketamine_7d", "7d").loc["posterior_cingulate", "VS"] == pytest.approx(
        1.03 * bl.loc["posterior_cingulate", "VS"])
    np.testing.assert_allclose(post.VND, bl.VND)
    f = normalise_design({"base": "ketamine-human-flow", "variability": ZERO_VAR})
    fl = scan_parameters(p, f, "ketamine_24h", "24h", np.random.default_rng(1),
                         np.random.default_rng(2))
    brain = bl.VT > 0
    np.testing.assert_allclose(fl.K1[brain] / bl.K1[brain], 1.10, rtol=1e-12)
    np.testing.assert_allclose(fl.VT, bl.VT, rtol=1e-12)  # flow changes K1, not binding


def test_rodent_design_effects():
    p = get_preset("rat")
    d = normalise_design({"base": "ketamine-rodent", "variability": ZERO_VAR})
    rng = np.random.default_rng

    def vs(arm, ses):
        return scan_parameters(p, d, arm, ses, rng(0), rng(1))

    brain = [r for r in get_preset("rat").regions if r != "harderian_gland"]
    ctrl = vs("control_vehicle", "3w").loc[brain]

    def ratio(arm, ses):
        return (vs(arm, ses).loc[brain].VS / ctrl.VS).dropna()

    np.testing.assert_allclose(ratio("stress_vehicle", "baseline"), 0.90)
    np.testing.assert_allclose(ratio("stress_single", "24h"), 0.90)
    np.testing.assert_allclose(ratio("stress_repeated", "1w"), 0.90 * 1.04)
    np.testing.assert_allclose(ratio("stress_repeated", "3w"), 0.90 * 1.11)
    for arm in ("control_single", "control_repeated"):  # ketamine without stress: no change
        np.testing.assert_allclose(ratio(arm, "3w"), 1.0)
    np.testing.assert_allclose(vs("stress_repeated", "3w").VND, vs("control_vehicle", "3w").VND)
    gland = vs("stress_repeated", "3w").loc["harderian_gland", "VS"]
    assert gland == pytest.approx(vs("control_vehicle", "3w").loc["harderian_gland", "VS"])


def test_between_subject_and_session_variability():
    p = get_preset("human", "ucbj")
    d = normalise_design("ketamine-human")
    vt_bl, vt_fu = [], []
    for i in range(200):
        a = scan_parameters(p, d, "ketamine_24h", "baseline", np.random.default_rng([i, 1]),
                            np.random.default_rng([i, 2, 0]))
        b = scan_parameters(p, d, "ketamine_24h", "24h", np.random.default_rng([i, 1]),
                            np.random.default_rng([i, 2, 1]))
        vt_bl.append(a.loc["frontal_cortex", "VT"])
        vt_fu.append(b.loc["frontal_cortex", "VT"])
        assert a.loc["centrum_semiovale", "VT"] == a.loc["white_matter", "VT"]
    vt_bl, vt_fu = np.array(vt_bl), np.array(vt_fu)
    cv = vt_bl.std() / vt_bl.mean()
    assert 0.09 < cv < 0.17  # design 12 % between-subject VT CV (n = 200: SE ~0.6 %)
    sd = np.std(np.log(vt_fu / vt_bl)) / np.sqrt(2)
    assert 0.05 < sd < 0.09  # design within-subject SD 7.5 %


def test_user_design_dict_and_json(tmp_path):
    design = {"name": "mini", "species": "human", "tracer": "synvest1",
              "sessions": ["baseline", "post"], "arms": {"placebo": {}, "drug": {"n": 1}},
              "effects": {"drug": {"post": {"hippocampus": -0.1}}}}
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(design))
    d = normalise_design(str(path))
    assert d["name"] == "mini" and d["tracer"] == "synvest1"
    assert d["arms"]["drug"]["sessions"] == ["baseline", "post"]
    with pytest.raises(DesignError, match="unknown region"):
        normalise_design({**design, "effects": {"drug": {"post": {"pcc": 0.1}}}})
    with pytest.raises(DesignError, match="unknown arm"):
        normalise_design({**design, "effects": {"active": {"post": {"*": 0.1}}}})
    with pytest.raises(DesignError, match="no session"):
        normalise_design({**design, "effects": {"drug": {"week2": {"*": 0.1}}}})
    with pytest.raises(DesignError, match="unknown design"):
        normalise_design("ketamine-monkey")


def test_same_seed_identical_files_and_refuses_overwrite(tmp_path):
    kw = dict(n_subjects=1, noise=1.0, voxel_mm=8.0, blood="all")
    a = make_cohort(tmp_path / "a", "ketamine-human", seed=3, **kw)
    b = make_cohort(tmp_path / "b", "ketamine-human", seed=3, **kw, nprocs=2)
    c = make_cohort(tmp_path / "c", "ketamine-human", seed=4, **kw)

    def digest(root):
        return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    da, db, dc = digest(a.path), digest(b.path), digest(c.path)
    assert da == db  # byte-identical, whatever the number of worker processes
    pet = "sub-01/ses-baseline/pet/sub-01_ses-baseline_pet.nii.gz"
    assert da[pet] != dc[pet]
    with pytest.raises(BIDSError, match="not empty"):
        make_cohort(a.path, "ketamine-human", seed=3, **kw)
    make_cohort(a.path, "ketamine-human", seed=5, force=True, **kw)
    assert json.loads((a.path / "design.json").read_text())["seed"] == 5


def test_rodent_cohort_validates(tmp_path):
    from sv2a.pipeline.config import PipelineConfig
    from sv2a.validate import validate_dataset

    c = make_cohort(tmp_path / "rat", "ketamine-rodent", seed=0, n_subjects=6, voxel_mm=1.2,
                    blood="none")
    assert len(c.scans) == 24 and c.scans["blood"].isna().all()
    assert c.participants["arm"].tolist() == list(c.design["arms"])  # one animal per cell
    assert c.truth["k3"].notna().all() and c.truth["DVR_CS"].isna().all()
    # run's defaults (centrum semiovale, 60-90 min SUVR window) do not fit rodents: validate
    # with the settings a rodent study runs, as run would
    cfg = PipelineConfig(models=["srtm2", "suvr"], reference="brainstem",
                         window=(30, 60)).validate()
    errors = [p for p in validate_dataset(c.path, config=cfg) if p.severity == "error"]
    assert errors == []


def test_cli(tmp_path, capsys):
    from sv2a.cli import main

    out = tmp_path / "cli"
    rc = main(["phantom", str(out), "--design", "ketamine-human", "--subjects", "1",
               "--noise", "0", "--fwhm", "0", "--voxel-size", "8", "--seed", "2",
               "--nprocs", "1"])
    assert rc == 0 and (out / "truth.tsv").exists()
    assert "wrote 1 subjects, 2 scans" in capsys.readouterr().out
    assert main(["phantom", str(out), "--subjects", "1", "--voxel-size", "8"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["phantom", "--list-designs"]) == 0
    assert "ketamine-rodent" in capsys.readouterr().out


def test_cli_worker_option_is_nprocs(tmp_path, capsys):
    """Workers are --nprocs / nprocs= as in 'sv2a run'; the old spellings are refused."""
    import argparse

    from sv2a.phantom import cli

    parser = argparse.ArgumentParser(epilog=cli.EXAMPLES)
    cli.add_arguments(parser)
    assert parser.parse_args(["out", "--nprocs", "3"]).nprocs == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["out", "--jobs", "2"])
    assert "--nprocs" in cli.EXAMPLES and "--jobs" not in cli.EXAMPLES
    with pytest.raises(TypeError):
        make_cohort(tmp_path / "x", "ketamine-human", n_subjects=1, n_jobs=2)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="nprocs"):
        make_cohort(tmp_path / "y", "ketamine-human", n_subjects=1, nprocs=0)
    assert not (tmp_path / "y").exists()


def test_design_keys_are_checked_and_named_like_the_api():
    d = normalise_design({"base": "ketamine-human",
                          "demographics": {"body_weight_kg": [70.0, 5.0],
                                           "injected_mbq": [550.0, 20.0]}})
    assert d["demographics"]["body_weight_kg"] == [70.0, 5.0]
    with pytest.raises(DesignError, match="'weight_kg' -> 'body_weight_kg'"):
        normalise_design({"base": "ketamine-human", "demographics": {"weight_kg": [70, 5]}})
    with pytest.raises(DesignError, match="'dose_mbq' -> 'injected_mbq'"):
        normalise_design({"base": "ketamine-human", "demographics": {"dose_mbq": [500, 5]}})
    with pytest.raises(DesignError, match="variability"):
        normalise_design({"base": "ketamine-human", "variability": {"between_cv": 0.1}})


def test_size_estimate_matches_written_dataset(tmp_path):
    """estimate_cohort predicts the bytes make_cohort writes (same first scan, same encoder)."""
    from sv2a.phantom.cohort import estimate_cohort, raw_bytes

    kw = dict(n_subjects=2, noise=1.0, voxel_mm=4.0, blood="all")
    est = estimate_cohort("ketamine-human", seed=2, **kw)
    c = make_cohort(tmp_path / "e", "ketamine-human", seed=2, **kw)
    written = sum(p.stat().st_size for p in c.path.rglob("*") if p.is_file())
    first = c.path / c.scans.loc[0, "pet"]
    assert est.n_scans == len(c.scans) == 4
    assert est.pet_bytes == first.stat().st_size  # the first scan, encoded identically
    # the other scans differ only by dose and parameters: within 15 % in total
    assert abs(est.total_bytes - written) < 0.15 * written
    assert est.total_seconds > 0 and "scans: about" in est.describe()
    # the raw float32 bound is above the compressed dataset
    assert raw_bytes("ketamine-human", n_subjects=2, voxel_mm=4.0) > written


def test_noisy_pet_stored_as_scaled_int16_within_noise(tmp_path):
    """Voxel-noise PET is int16 x scl_slope: rounding error <= step / 2 <= 1/20 noise SD."""
    import nibabel as nib

    c = make_cohort(tmp_path / "q", "ketamine-human", seed=1, n_subjects=1, voxel_mm=4.0)
    pet = c.path / c.scans.loc[0, "pet"]
    img = nib.load(pet)
    step = json.loads(pet.with_name(pet.name.replace(".nii.gz", ".json")).read_text())[
        "sv2aPhantom"]["storage_step"]
    assert img.get_data_dtype() == np.int16
    assert (img.dataobj.slope, img.dataobj.inter) == (step, 0.0)  # nibabel applies scl_slope
    # the same cohort stored as float32 holds the unrounded image
    f = make_cohort(tmp_path / "f", "ketamine-human", seed=1, n_subjects=1, voxel_mm=4.0,
                    pet_storage="float32")
    full = nib.load(f.path / f.scans.loc[0, "pet"])
    assert full.get_data_dtype() == np.float32
    err = np.asarray(img.dataobj, dtype=np.float64) - np.asarray(full.dataobj)
    assert np.abs(err).max() <= step / 2 * (1 + 1e-6)  # rounding to the nearest step
    # the same cohort without noise (same parameters and doses) gives the noise itself:
    # rounding error RMS / noise RMS in the activity-bearing voxels ~ 1/sqrt(12) / 10 or less
    e = make_cohort(tmp_path / "x", "ketamine-human", seed=1, n_subjects=1, voxel_mm=4.0,
                    noise=0)
    assert nib.load(e.path / e.scans.loc[0, "pet"]).get_data_dtype() == np.float32
    exact = np.asarray(nib.load(e.path / e.scans.loc[0, "pet"]).dataobj)
    hot = exact > 0.05 * exact.max()
    ratio = np.sqrt(np.mean(err[hot] ** 2) / np.mean((full.get_fdata()[hot] - exact[hot]) ** 2))
    assert 0 < ratio < 1 / np.sqrt(12) / 10 * 1.2  # 1.2: the noise SD varies over frames
