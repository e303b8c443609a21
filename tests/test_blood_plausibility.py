"""Blood inputs that would give a wrong number without a word (issue 14): unit and time
mix-ups, a missed bolus peak, sampling gaps, empty or mislabelled parent fractions.

Each test writes real BIDS blood files (``conftest.write_blood``) or uses a noise-free
phantom, and checks the class and the words of the refusal, or that valid data passes.
"""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_blood

import sv2a
from sv2a.bids import discover
from sv2a.blood import (
    TISSUE_PLASMA_RATIO,
    InputFunction,
    check_sampling,
    check_tissue_plasma,
)
from sv2a.errors import InputFunctionError, Sv2aWarning, UnitsError
from sv2a.phantom import make_subject


def _edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def _edit_column(path: Path, col: str, fn) -> None:
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    df[col] = [fn(v) for v in df[col]]
    df.to_csv(path, sep="\t", index=False)


@pytest.fixture
def blood(tmp_path) -> Path:
    return write_blood(tmp_path / "sub-01_recording-manual_blood.tsv")


@pytest.fixture(scope="module")
def phantom():
    """Noise-free human [11C]UCB-J phantom: regional TACs, frames and its blood input."""
    s = make_subject("human", "ucbj", seed=1, noise=0, image=False)
    return np.asarray(s.tacs.values, float), s.frames, s.input


# --------------------------------------------------------------------------- tissue / plasma
def test_tissue_plasma_ratio_of_valid_phantoms_is_inside():
    for species, tracer in (("human", "ucbj"), ("human", "synvest1"), ("human", "synvest2"),
                            ("rat", "synvest1"), ("mouse", "ucbj")):
        s = make_subject(species, tracer, seed=1, noise=0, image=False)
        r = check_tissue_plasma(s.input, s.frames.start, s.frames.end, s.tacs.values)
        lo, hi = TISSUE_PLASMA_RATIO
        assert 3 * lo < r < hi / 10, (species, tracer, r)


@pytest.mark.parametrize("factor,side", [(1000.0, "blood values are too high"),
                                         (1e-3, "blood values are too low")])
def test_tissue_plasma_ratio_refuses_blood_off_by_1000(phantom, factor, side):
    tacs, fr, inp = phantom
    wrong = InputFunction(time=inp.time, plasma=inp.plasma * factor, source="blood.tsv",
                          meta={"units": {"plasma_radioactivity": "kBq/mL"}})
    with pytest.raises(UnitsError, match=side) as exc:
        check_tissue_plasma(wrong, fr.start, fr.end, tacs, what="pet.nii.gz")
    assert "pet.nii.gz" in str(exc.value) and "'kBq/mL'" in str(exc.value)


def test_fit_refuses_pet_off_by_1000(phantom):
    """sv2a.fit runs the check for every plasma-input model, not for reference models."""
    tacs, fr, inp = phantom
    arr = sv2a.tacs_from_arrays(tacs / 1000.0, fr.start, fr.end,
                                [f"r{i}" for i in range(tacs.shape[0])])
    for model in ("logan", "1tcm", "ma1"):
        with pytest.raises(UnitsError, match="late tissue activity"):
            sv2a.fit(arr, model=model, input=inp)
    good = sv2a.tacs_from_arrays(tacs, fr.start, fr.end, [f"r{i}" for i in range(len(tacs))])
    assert float(sv2a.fit(good, model="logan", input=inp, tstar=30.0)["VT"][0]) > 5


def test_tissue_plasma_ratio_of_real_pbr28_data():
    """The ten [11C]PBR28 scans of tests/data (kinfitr comparisons): ratios 2.6-19."""
    data = Path(__file__).parent / "data" / "pbr28"
    tacs = pd.read_csv(data / "pbr28_tacs_test.csv")
    blood = pd.read_csv(data / "pbr28_procblood_test.csv")
    regions = ["FC", "TC", "STR", "THA", "WB", "CBL"]
    for pet in sorted(tacs.PET.unique()):
        s = tacs[(tacs.PET == pet) & (tacs.frame > 0)]
        b = blood[blood.PET == pet]
        inp = InputFunction(time=b.time_s.values / 60, plasma=b.plasma_parent_kBq_per_mL.values,
                            source=pet)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_sampling(inp)
        r = check_tissue_plasma(inp, s.t_start_s.values / 60,
                                (s.t_start_s + s.duration_s).values / 60, s[regions].values.T)
        assert 1.0 < r < 30.0, (pet, r)


# --------------------------------------------------------------------------- blood times
def test_blood_far_longer_than_the_scan_is_refused(blood):
    df = pd.read_csv(blood, sep="\t", dtype=str, keep_default_na=False)
    zero = pd.DataFrame([{"time": "5", "whole_blood_radioactivity": "0",
                          "plasma_radioactivity": "0", "metabolite_parent_fraction": "1"}])
    pd.concat([zero, df]).to_csv(blood, sep="\t", index=False)  # a 0 before the peak
    _edit_json(blood.with_suffix(".json"), lambda m: m["time"].update(Units="min"))
    inp = sv2a.load_blood(blood)  # 2400 "min"
    with pytest.raises(InputFunctionError, match="seconds labelled 'min'"):
        inp.check_covers(40.0, what="the scan")
    inp.check_covers(2400.0 / 8)  # a scan truncated to 1/8 of the blood is legal
    real = sv2a.load_blood(write_blood(blood.with_name("sub-02_recording-manual_blood.tsv")))
    real.check_covers(3.0)  # an early window (K1) of a scan with 40 min of blood


def test_blood_far_shorter_than_the_scan_names_the_unit(blood):
    _edit_column(blood, "time", lambda v: repr(float(v) / 3600))
    inp = sv2a.load_blood(blood)
    with pytest.raises(InputFunctionError, match="ends at .*hours labelled as seconds"):
        inp.check_covers(40.0)


# --------------------------------------------------------------------------- sampling
def test_late_first_sample_missing_the_peak_is_refused(blood):
    df = pd.read_csv(blood, sep="\t", dtype=str, keep_default_na=False)
    df[df["time"].astype(float) >= 300].to_csv(blood, sep="\t", index=False)
    with pytest.raises(InputFunctionError, match="first blood sample is at 5 min.*peak"):
        sv2a.load_blood(blood)


def test_late_first_sample_of_a_rising_curve_is_accepted():
    inp = InputFunction(time=[3.0, 4.0, 6.0, 10.0, 20.0, 60.0],
                        plasma=[10.0, 20.0, 15.0, 8.0, 4.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sampling(inp)


def test_early_gap_warns_and_the_phantom_schedule_does_not(blood, phantom):
    inp = InputFunction(time=[0.2, 0.5, 1.0, 2.0, 20.0, 40.0], plasma=[5, 60, 40, 20, 5, 2])
    with pytest.warns(Sv2aWarning, match="gap in blood sampling from 2 to 20 min"):
        check_sampling(inp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sv2a.load_blood(blood)
        check_sampling(phantom[2])


# --------------------------------------------------------------------------- parent fraction
def test_fractions_labelled_percent_are_refused(blood):
    _edit_json(blood.with_suffix(".json"),
               lambda m: m["metabolite_parent_fraction"].update(Units="%"))
    with pytest.raises(InputFunctionError, match="are these fractions"):
        sv2a.load_blood(blood)


def test_percent_labelled_percent_is_read(blood, tmp_path):
    ref = sv2a.load_blood(blood)
    _edit_json(blood.with_suffix(".json"),
               lambda m: m["metabolite_parent_fraction"].update(Units="%"))
    _edit_column(blood, "metabolite_parent_fraction",
                 lambda v: v if v == "n/a" else repr(float(v) * 100))
    np.testing.assert_allclose(sv2a.load_blood(blood).plasma, ref.plasma, rtol=1e-9)


@pytest.mark.parametrize("unit", ["kBq/mL", "s"])
def test_parent_fraction_with_an_activity_unit_is_refused(blood, unit):
    _edit_json(blood.with_suffix(".json"),
               lambda m: m["metabolite_parent_fraction"].update(Units=unit))
    with pytest.raises(UnitsError, match=f"'{unit}'.*parent fraction"):
        sv2a.load_blood(blood)


def test_empty_parent_fraction_column(blood):
    _edit_column(blood, "metabolite_parent_fraction", lambda v: "n/a")
    with pytest.raises(InputFunctionError, match="column is empty.*MetaboliteAvail: true"):
        sv2a.load_blood(blood)
    _edit_json(blood.with_suffix(".json"), lambda m: m.update(MetaboliteAvail=False))
    with pytest.warns(Sv2aWarning, match="not metabolite corrected"):
        sv2a.load_blood(blood)


def test_parent_fraction_all_zero_is_refused(blood):
    _edit_column(blood, "metabolite_parent_fraction", lambda v: "0")
    with pytest.raises(InputFunctionError, match="0 at every sample"):
        sv2a.load_blood(blood)


def test_empty_plasma_column_is_named(blood):
    _edit_column(blood, "plasma_radioactivity", lambda v: "n/a")
    with pytest.warns(Sv2aWarning, match="plasma_radioactivity has no values"):
        sv2a.load_blood(blood)


# --------------------------------------------------------------------------- files
def test_load_blood_none_is_a_clear_error():
    with pytest.raises(InputFunctionError, match="no blood recording given"):
        sv2a.load_blood(None)


def test_merge_with_a_zero_first_sample_gives_no_numpy_warning(tmp_path):
    man = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv")
    _edit_column(man, "whole_blood_radioactivity", lambda v: v)
    df = pd.read_csv(man, sep="\t", dtype=str, keep_default_na=False)
    zero = pd.DataFrame([{"time": "0", "whole_blood_radioactivity": "0",
                          "plasma_radioactivity": "0", "metabolite_parent_fraction": "1"}])
    pd.concat([zero, df]).to_csv(man, sep="\t", index=False)
    ta = np.arange(0, 601, 1.0)
    wba = np.where(ta > 0, 50 * np.exp(-ta / 200) + 2, 0.0)
    auto = tmp_path / "sub-01_recording-autosampler_blood.tsv"
    auto.write_text("time\twhole_blood_radioactivity\n" +
                    "\n".join(f"{a:g}\t{b:.6f}" for a, b in zip(ta, wba, strict=True)) + "\n")
    auto.with_suffix(".json").write_text(json.dumps(
        {"time": {"Units": "s"}, "whole_blood_radioactivity": {"Units": "kBq/mL"}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        inp = sv2a.load_blood([man, auto])
    assert np.all(np.isfinite(inp.plasma)) and inp.time.size > 600


def test_compressed_blood_is_listed_as_not_used(small_bids):
    pet_dir = next(small_bids.glob("sub-01/ses-*/pet"))
    tsv = next(pet_dir.glob("*_blood.tsv"))
    gz = tsv.with_name(tsv.name + ".gz")
    gz.write_bytes(gzip.compress(tsv.read_bytes()))
    tsv.unlink()
    found = discover(small_bids)
    scan = next(s for s in found.scans if s.pet.parent == pet_dir)
    assert scan.blood == {}
    assert any(p == str(gz) and "gunzip" in why for p, why in found.skipped)


# --------------------------------------------------------------------------- through sv2a run
def test_pet_in_kbq_labelled_bq_without_weight_is_refused_by_api_and_run(tmp_path):
    """kBq/mL PET labelled Bq/mL with no body weight (the SUV-based unit check cannot run):
    the plasma-input fit refuses, through the API and in ``sv2a run``'s failures.tsv."""
    from _catalogue import (
        DROP,
        MODEL_OPTIONS,
        PARTICIPANT,
        REFERENCE,
        add_subject,
        api_step,
        make_template,
        participant_row,
        sidecar,
        write_dataset_files,
    )

    from sv2a.pipeline import PipelineConfig, run_participant

    tpl = make_template(tmp_path / "w")
    root = tmp_path / "bids"
    f = add_subject(tpl, root, "x")
    write_dataset_files(root, {"x": {**PARTICIPANT, "weight": "n/a"}})
    sidecar(BodyWeight=DROP, Units="Bq/mL")(f)
    st = {"root": root, "label": "x", "participant": participant_row(root, "x")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for stage in ("discover", "pet", "data", "atlas", "tacs", "blood"):
            api_step(stage, st)
    with pytest.raises(UnitsError, match="late tissue activity .* blood values are too high"):
        api_step("logan", st)
    cfg = PipelineConfig(models=["srtm", "logan"], reference=REFERENCE, figures=False,
                         model_options=MODEL_OPTIONS, skip_invalid=True).validate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_participant(root, tmp_path / "out", cfg, quiet=True)
    rows = pd.read_csv(tmp_path / "out" / "logs" / "failures.tsv", sep="\t", dtype=str,
                       keep_default_na=False)
    errors = rows[rows["scan_status"] != "warning"]
    assert set(errors["error_type"]) == {"UnitsError"}
    assert all("late tissue activity" in m for m in errors["message"])
