"""Plasma-input models (1TCM, 2TCM, Logan, MA1): real-data agreement with kinfitr, phantom
recovery, options, bad input and per-region failure isolation."""

from __future__ import annotations

from pathlib import Path

import _plasma_phantom as ph
import numpy as np
import pandas as pd
import pytest

import sv2a.models as models
from sv2a.blood import InputFunction
from sv2a.errors import DataError, FitError, InputFunctionError, ModelError
from sv2a.models import fit
from sv2a.models._kinetics import make_grid
from sv2a.models.plasma import _CompartmentProblem
from sv2a.tacs import frames_of, tacs_from_arrays

DATA = Path(__file__).parent / "data" / "pbr28"
REGIONS = ["FC", "TC", "STR", "THA", "WB", "CBL"]
# kinfitr's bounds (realdata README) so that both codes search the same box
KB1 = {"K1": (1e-4, 1), "k2": (1e-4, 0.5), "vB": (0.01, 0.1)}
KB2 = {"K1": (1e-4, 1), "k2": (1e-4, 0.5), "k3": (1e-4, 0.5), "k4": (1e-4, 0.5),
       "vB": (0.01, 0.1)}


# --------------------------------------------------------------------------- real data (pbr28)
@pytest.fixture(scope="module")
def pbr28():
    tacs = pd.read_csv(DATA / "pbr28_tacs_test.csv")
    blood = pd.read_csv(DATA / "pbr28_procblood_test.csv")
    out = {}
    for pet in sorted(tacs.PET.unique()):
        s = tacs[(tacs.PET == pet) & (tacs.frame > 0)]  # drop kinfitr's prepended zero row
        t = tacs_from_arrays(s[REGIONS].values.T, s.t_start_s.values / 60,
                             (s.t_start_s + s.duration_s).values / 60, REGIONS, half_life=20.4)
        b = blood[blood.PET == pet]
        inp = InputFunction(time=b.time_s.values / 60, plasma=b.plasma_parent_kBq_per_mL.values,
                            whole_blood=b.blood_dispcorr_kBq_per_mL.values, source=pet)
        out[pet] = (t, inp, s.weight_kinfitr.values)
    return out


@pytest.fixture(scope="module")
def kinfitr():
    return (pd.read_csv(DATA / "kinfitr_plasma_input_models.csv"),
            pd.read_csv(DATA / "kinfitr_2TCM_multistart.csv"))


def _compare(pbr28, ref, model, opts, weighted):
    pct = []
    for pet, (t, inp, w) in pbr28.items():
        o = dict(opts)
        if weighted:
            o["weights"] = w
        r = fit(t, model, input=inp, **o)
        k = ref[ref.PET == pet].set_index("region")
        for reg in REGIONS:
            rr = r.sel(region=reg.lower())
            if isinstance(k.loc[reg, "note"], str) or bool(rr.at_bound):
                continue  # a fit at a bound (either code) is not an agreement check
            pct.append(100 * (float(rr.VT) / k.loc[reg, "Vt"] - 1))
    return np.abs(np.array(pct))


@pytest.mark.parametrize("convolution", ["kinfitr", "exact"])
def test_1tcm_matches_kinfitr(pbr28, kinfitr, convolution):
    # Issue 4 §7: within 1 % of kinfitr w_inpshift0_vB0.05fixed (mid-point sampling, kinfitr
    # weights). With kinfitr's own convolution the codes agree to ~0.01 %; sv2a's exact
    # convolution differs from kinfitr's rectangle sum by ~0.2 % at most, inside the 1 %.
    ref = kinfitr[0]
    ref = ref[(ref.model == "1TCM") & (ref.config == "w_inpshift0_vB0.05fixed")]
    d = _compare(pbr28, ref, "1tcm", dict(vB=0.05, delay=0.0, sampling="mid", bounds=KB1,
                                          convolution=convolution), weighted=True)
    assert d.size >= 50
    assert d.max() < 1.0
    if convolution == "kinfitr":
        assert np.median(d) < 0.01


def test_1tcm_vbfit_matches_kinfitr(pbr28, kinfitr):
    ref = kinfitr[0]
    ref = ref[(ref.model == "1TCM") & (ref.config == "w_inpshift0_vBfit")]
    d = _compare(pbr28, ref, "1tcm", dict(vB="fit", delay=0.0, sampling="mid", bounds=KB1,
                                          convolution="kinfitr"), weighted=True)
    assert d.size >= 40 and d.max() < 1.0


@pytest.mark.parametrize("integration,config", [
    ("trapezoid", "uw_vB0_inpshift0_last10frames_trapz"),
    ("framecumsum", "uw_vB0_inpshift0_last10frames_framecumsum"),
])
def test_logan_matches_kinfitr(pbr28, kinfitr, integration, config):
    # within 0.5 % (issue 4 §7); the codes differ only in the plasma-integral grid
    ref = kinfitr[0]
    ref = ref[(ref.model == "Logan") & (ref.config == config)]
    d = _compare(pbr28, ref, "logan", dict(n_frames=10, integration=integration),
                 weighted=False)
    assert d.size == 60 and d.max() < 0.5


def test_ma1_matches_kinfitr(pbr28, kinfitr):
    ref = kinfitr[0]
    ref = ref[(ref.model == "MA1") & (ref.config == "uw_vB0_inpshift0_last10frames_trapz")]
    d = _compare(pbr28, ref, "ma1", dict(n_frames=10), weighted=False)
    assert d.size == 60 and d.max() < 0.5


def _twotcm_check(pbr28, ms, config, vb):
    ref = ms[ms.config == config]
    pct, worse = [], []
    for pet, (t, inp, w) in pbr28.items():
        r = fit(t, "2tcm", input=inp, vB=vb, delay=0.0, weights=w, sampling="mid",
                convolution="kinfitr", bounds=KB2)
        k = ref[ref.PET == pet].set_index("region")
        fr = frames_of(t)
        grid = make_grid(inp, fr.start, fr.end, sampling="mid", scheme="kinfitr")
        for i, reg in enumerate(REGIONS):
            rr = r.sel(region=reg.lower())
            # sv2a's minimum vs kinfitr's parameters under the same objective
            x = [k.loc[reg, c] for c in ("K1", "k2", "k3", "k4")]
            if vb == "fit":
                x.append(k.loc[reg, "vB"])
            prob = _CompartmentProblem("2tcm", grid, t.values[i], w,
                                       None if vb == "fit" else vb, False)
            f, _ = prob.evaluate(np.array(x, float))
            worse.append(float(rr.rss) / float(f @ f) - 1)
            if isinstance(k.loc[reg, "note"], str) or bool(rr.at_bound):
                continue
            pct.append(100 * (float(rr.VT) / k.loc[reg, "Vt"] - 1))
    return np.abs(np.array(pct)), np.array(worse)


def test_2tcm_matches_kinfitr_multistart(pbr28, kinfitr):
    # Issue 4 §7: VT within 2 % of kinfitr's 50-start fits (rows not at a bound), and sv2a's
    # weighted RSS <= the RSS of kinfitr's parameter set under the same objective (1e-9
    # relative slack for floating point). kinfitr's printed wrss differs from this objective
    # by up to ~1 % (model evaluation details), so the parameters are compared, not the
    # printed numbers.
    d, worse = _twotcm_check(pbr28, kinfitr[1], "w_inpshift0_vB0.05fixed_multstart50", 0.05)
    assert d.size >= 50 and d.max() < 2.0
    assert np.all(worse <= 1e-9)


@pytest.mark.slow
def test_2tcm_vbfit_matches_kinfitr_multistart(pbr28, kinfitr):
    d, worse = _twotcm_check(pbr28, kinfitr[1], "w_inpshift0_vBfit_multstart50", "fit")
    assert d.size >= 35 and d.max() < 2.0
    assert np.all(worse <= 1e-9)


# --------------------------------------------------------------------------- phantom recovery
@pytest.fixture(scope="module")
def phantom_input():
    return ph.input_function()


def _phantom_tacs(curves, names=None):
    t0, t1 = ph.frames()
    vals = np.array([ph.frame_average(c, t0, t1) for c in curves])
    return tacs_from_arrays(vals, t0, t1, names or [f"r{i}" for i in range(len(curves))],
                            half_life=20.4)


TRUE_1TCM = [(0.35, 0.35 / 18.0, 0.05), (0.15, 0.15 / 4.0, 0.03), (0.45, 0.45 / 22.0, 0.05)]


@pytest.mark.parametrize("vb_mode", ["fixed", "fit"])
def test_1tcm_noise_free_recovery(phantom_input, vb_mode):
    # Noise-free curves from the analytic model: VT and K1 within 0.5 % (issue 4 §8). The only
    # error source is the 1-s linear interpolation of the input samples (~1e-4).
    curves = [lambda t, p=p: ph.pet(t, lambda s: ph.tissue_1tcm(s, p[0], p[1]), vB=p[2])
              for p in TRUE_1TCM]
    tacs = _phantom_tacs(curves)
    for i, (K1, k2, vb) in enumerate(TRUE_1TCM):
        r = fit(tacs.isel(region=[i]), "1tcm", input=phantom_input,
                vB=vb if vb_mode == "fixed" else "fit")
        assert float(r.VT[0]) == pytest.approx(K1 / k2, rel=5e-3)
        assert float(r.K1[0]) == pytest.approx(K1, rel=5e-3)
        if vb_mode == "fit":
            assert float(r.vB[0]) == pytest.approx(vb, abs=2e-3)
        assert bool(r.converged[0]) and not bool(r.at_bound[0])


def test_1tcm_delay_recovery(phantom_input):
    K1, k2, vb, delay = 0.35, 0.35 / 18, 0.05, 0.2
    tacs = _phantom_tacs([lambda t: ph.pet(t, lambda s: ph.tissue_1tcm(s, K1, k2), vB=vb,
                                           delay=delay)])
    r = fit(tacs, "1tcm", input=phantom_input, vB="fit", delay="fit")
    assert float(r.delay[0]) == pytest.approx(delay, abs=0.01)
    assert float(r.VT[0]) == pytest.approx(K1 / k2, rel=5e-3)
    # ignoring the delay biases the fit: the RSS is clearly worse
    r0 = fit(tacs, "1tcm", input=phantom_input, vB="fit", delay=0.0)
    assert float(r0.rss[0]) > 10 * float(r.rss[0])


def test_2tcm_noise_free_recovery(phantom_input):
    # SynVesT-1-like 2TCM kinetics; VT, K1 and BPND within 0.5 %
    K1, k2, k3, k4, vb = 0.30, 0.12, 0.08, 0.02, 0.04
    tacs = _phantom_tacs([lambda t: ph.pet(t, lambda s: ph.tissue_2tcm(s, K1, k2, k3, k4),
                                           vB=vb)])
    r = fit(tacs, "2tcm", input=phantom_input, vB="fit")
    vt = K1 / k2 * (1 + k3 / k4)
    assert float(r.VT[0]) == pytest.approx(vt, rel=5e-3)
    assert float(r.K1[0]) == pytest.approx(K1, rel=5e-3)
    assert float(r.BPND[0]) == pytest.approx(k3 / k4, rel=5e-3)
    assert float(r.VND[0]) == pytest.approx(K1 / k2, rel=5e-3)
    assert float(r.VS[0]) == pytest.approx(vt - K1 / k2, rel=5e-3)


def test_graphical_noise_free_recovery(phantom_input):
    # Logan and MA1 on frame-mid samples of a 1TCM tissue curve (vB = 0): exact in theory
    # after equilibrium; the trapezoid tissue integral on mid-times limits accuracy to ~0.3 %.
    K1, k2 = 0.35, 0.35 / 18
    tacs = _phantom_tacs([lambda t: ph.pet(t, lambda s: ph.tissue_1tcm(s, K1, k2))])
    for model in ("logan", "ma1"):
        r = fit(tacs, model, input=phantom_input, tstar=30.0)
        assert float(r.VT[0]) == pytest.approx(K1 / k2, rel=5e-3), model
        assert int(r.n_frames[0]) == int((frames_of(tacs).mid >= 30).sum())


def test_1tcm_noisy_bias_small(phantom_input):
    # 40 noisy realisations at the DOMAIN §3 regional noise level (Pc = 0.004 → ~2 % CV in
    # late frames): mean VT within 2 % of truth, SD below 5 % (bounds ~4 SE wide).
    K1, k2, vb = 0.35, 0.35 / 18, 0.05
    tacs = _phantom_tacs([lambda t: ph.pet(t, lambda s: ph.tissue_1tcm(s, K1, k2), vB=vb)])
    fr = frames_of(tacs)
    rng = np.random.default_rng(7)
    clean = tacs.values[0]
    sd = np.sqrt(0.004 * np.clip(clean, 1e-6, None) * np.exp(np.log(2) / 20.4 * fr.mid)
                 / fr.duration)
    vals = clean + rng.standard_normal((40, clean.size)) * sd
    noisy = tacs_from_arrays(vals, fr.start, fr.end, [f"n{i}" for i in range(40)],
                             half_life=20.4)
    r = fit(noisy, "1tcm", input=phantom_input, vB="fit", weights="variance")
    vt = r.VT.values
    assert abs(vt.mean() / (K1 / k2) - 1) < 0.02
    assert vt.std() / (K1 / k2) < 0.05


# --------------------------------------------------------------------------- API and options
def test_registry_and_docstrings():
    for name in ("1tcm", "2tcm", "logan", "ma1"):
        assert name in models.available("plasma")
        spec = models.get(name)
        assert spec.func.__doc__ and "Parameters" in spec.func.__doc__ or name in ("2tcm", "ma1")


def test_outputs_settings_and_se(phantom_input):
    K1, k2 = 0.35, 0.35 / 18
    tacs = _phantom_tacs([lambda t: ph.pet(t, lambda s: ph.tissue_1tcm(s, K1, k2), vB=0.05)])
    fr = frames_of(tacs)
    noisy = tacs.copy(data=tacs.values * (1 + 0.01 * np.sin(np.arange(fr.n))))
    r = fit(noisy, "1tcm", input=phantom_input, vB=0.05, delay=0.0, weights="duration",
            sampling="mid")
    for v in ("K1", "k2", "vB", "delay", "VT", "K1_se", "k2_se", "VT_se", "rss", "aic",
              "n_frames", "converged", "at_bound"):
        assert v in r
    assert float(r.vB[0]) == 0.05 and np.isnan(float(r.vB_se[0]))
    assert 0 < float(r.VT_se[0]) < 0.1 * float(r.VT[0])
    assert r.attrs["weights"] == "duration" and r.attrs["sampling"] == "mid"
    assert r.attrs["model"] == "1tcm" and r.attrs["vB"] == 0.05
    assert int(r.n_frames[0]) == fr.n


def test_weights_change_fit_but_not_noise_free_truth(phantom_input):
    K1, k2 = 0.35, 0.35 / 18
    tacs = _phantom_tacs([lambda t: ph.pet(t, lambda s: ph.tissue_1tcm(s, K1, k2), vB=0.05)])
    n = frames_of(tacs).n
    for w in ("uniform", "duration", "kinfitr", "variance", np.linspace(0.2, 1, n)):
        r = fit(tacs, "1tcm", input=phantom_input, vB=0.05, weights=w)
        assert float(r.VT[0]) == pytest.approx(K1 / k2, rel=5e-3)


# --------------------------------------------------------------------------- bad input
def test_bad_input_errors(phantom_input):
    K1, k2 = 0.35, 0.35 / 18
    tacs = _phantom_tacs([lambda t: ph.pet(t, lambda s: ph.tissue_1tcm(s, K1, k2))])
    with pytest.raises(InputFunctionError, match="needs a plasma input"):
        fit(tacs, "1tcm")
    short = InputFunction(time=phantom_input.time[phantom_input.time < 40],
                          plasma=phantom_input.plasma[phantom_input.time < 40])
    with pytest.raises(InputFunctionError, match="ends at"):
        fit(tacs, "1tcm", input=short)
    with pytest.raises(InputFunctionError, match="ends at"):
        fit(tacs, "logan", input=short, tstar=30)
    with pytest.raises(ModelError, match="valid options"):
        fit(tacs, "1tcm", input=phantom_input, tstar=3)
    with pytest.raises(ModelError, match="unknown model"):
        fit(tacs, "3tcm", input=phantom_input)
    with pytest.raises(ModelError, match="'fit'"):
        fit(tacs, "1tcm", input=phantom_input, vB="estimate")
    with pytest.raises(FitError, match="t\\*"):
        fit(tacs, "logan", input=phantom_input, tstar=89.0)
    with pytest.raises(ModelError, match="not both"):
        fit(tacs, "ma1", input=phantom_input, tstar=30, n_frames=10)
    fr = frames_of(tacs)
    vals = tacs.values.copy()
    vals[0, 5] = np.nan
    bad = tacs_from_arrays(vals, fr.start, fr.end, ["cortex"], allow_nan=True)
    with pytest.raises(DataError, match="'cortex' at frame index 5"):
        fit(bad, "1tcm", input=phantom_input)
    vals = tacs.values.copy()
    vals[0, 20] = -5.0
    with pytest.raises(DataError, match="negative.*frame index 20"):
        fit(tacs.copy(data=vals), "ma1", input=phantom_input, tstar=30)


def test_one_region_failing_does_not_stop_others(phantom_input):
    # A region whose activity is zero after t* (e.g. it left the field of view) cannot be
    # Logan-linearised: NaN + converged False + the reason, while the other region fits.
    K1, k2 = 0.35, 0.35 / 18
    t0, t1 = ph.frames()
    good = ph.frame_average(lambda t: ph.pet(t, lambda s: ph.tissue_1tcm(s, K1, k2)), t0, t1)
    lost = np.where(0.5 * (t0 + t1) < 30, good, 0.0)
    tacs = tacs_from_arrays(np.vstack([good, lost]), t0, t1, ["good", "lost"])
    r = fit(tacs, "logan", input=phantom_input, tstar=30)
    assert float(r.VT.sel(region="good")) == pytest.approx(K1 / k2, rel=5e-3)
    assert np.isnan(float(r.VT.sel(region="lost")))
    assert not bool(r.converged.sel(region="lost"))
    assert "lost" in str(r.message.sel(region="lost").values)
    assert bool(r.converged.sel(region="good"))


def test_fit_regions_isolates_exceptions():
    from sv2a.models._common import fit_regions

    def one(i):
        if i == 1:
            raise FitError("singular design")
        return {"VT": 1.0 + i, "converged": True, "at_bound": False}

    out = fit_regions(["a", "b", "c"], one, ["VT"], model="x")
    assert out["VT"][0] == 1.0 and np.isnan(out["VT"][1]) and out["VT"][2] == 3.0
    assert list(out["converged"]) == [True, False, True]
    assert "singular design" in out["message"][1] and "'b'" in out["message"][1]
