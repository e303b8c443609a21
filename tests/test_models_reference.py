"""Reference-tissue models (SRTM, SRTM2, MRTM, MRTM2, reference Logan).

Validation: (1) real PiB data against kinfitr 0.9.1 and TPCCLIB ``logan`` (tests/data/pib),
(2) kinfitr's simulated reference-tissue set (tests/data/simref), (3) TACs generated here from
the model itself (1TCM target + 1TCM reference, analytic convolution with a Feng input), noise
free and noisy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sv2a
from sv2a.errors import (
    DataError,
    FitError,
    ModelError,
    RegionError,
    ShapeMismatchError,
    Sv2aError,
)
from sv2a.frames import frames_from_counts
from sv2a.models import _kinetics as K
from sv2a.tacs import tacs_from_arrays

DATA = Path(__file__).parent / "data"
# kinfitr fits SRTM/SRTM2 by nonlinear least squares (nls): compare with the exact optimum
KINFITR = {"sampling": "mid", "convolution": "kinfitr", "method": "nonlinear"}

# ----------------------------------------------------------------------------- phantom TACs
# Feng input (DOMAIN §3 design values), kBq/mL, min
A1, A2, A3, L1, L2, L3 = 1150.0, 36.0, 9.0, 4.0, 0.40, 0.003


def conv_1tcm(k1: float, k2: float, t: np.ndarray) -> np.ndarray:
    """Analytic K1 e^{-k2 t} ⊗ Cp(t) for the Feng input."""
    t = np.asarray(t, float)

    def e(lam):
        return (np.exp(-lam * t) - np.exp(-k2 * t)) / (k2 - lam)

    def te(lam):
        a = k2 - lam
        return (t / a - 1 / a**2) * np.exp(-lam * t) + np.exp(-k2 * t) / a**2

    return k1 * (A1 * te(L1) - (A2 + A3) * e(L1) + A2 * e(L2) + A3 * e(L3))


def frame_average(f, frames, n=24):
    x, wq = np.polynomial.legendre.leggauss(n)
    s, e = frames.start[:, None], frames.end[:, None]
    return (f((s + e) / 2 + (e - s) / 2 * x[None]) * wq).sum(1) / 2


FRAMES = frames_from_counts([(6, 10), (3, 20), (2, 30), (2, 60), (2, 120), (16, 300)],
                            half_life=20.4)
K1_REF, VND = 0.15, 4.0
K2P = K1_REF / VND
TARGETS = {"high": (0.45, 18.0), "mid": (0.35, 12.0), "low": (0.20, 6.0)}  # K1, VT
TRUE_BP = np.array([vt / VND - 1 for _, vt in TARGETS.values()])
TRUE_R1 = np.array([k1 / K1_REF for k1, _ in TARGETS.values()])


def phantom_values() -> np.ndarray:
    rows = [frame_average(lambda t: conv_1tcm(K1_REF, K2P, t), FRAMES)]
    for k1, vt in TARGETS.values():
        rows.append(frame_average(lambda t, k1=k1, vt=vt: conv_1tcm(k1, k1 / vt, t), FRAMES))
    return np.array(rows)


@pytest.fixture(scope="module")
def phantom():
    return tacs_from_arrays(phantom_values(), FRAMES.start, FRAMES.end,
                            ["ref", *TARGETS], half_life=20.4)


# ----------------------------------------------------------------------------- real data


def pib_tacs(subject: str):
    d = pd.read_csv(DATA / "pib" / "pib_tacs_merged_kBq_per_mL.csv")
    a = d[d.subject == subject]
    regs = [c for c in d.columns if c not in ("subject", "frame", "t_start_s", "t_end_s")]
    return tacs_from_arrays(a[regs].values.T, a.t_start_s.values / 60, a.t_end_s.values / 60,
                            regs, half_life=20.4)


def simref_tacs(pet: str):
    d = pd.read_csv(DATA / "simref" / "simref_tacs.csv")
    a = d[(d.PET == pet) & (d.duration_min > 0)]  # drop kinfitr's prepended zero row
    regs = ["Reference", "ROI1", "ROI2", "ROI3"]
    t = tacs_from_arrays(a[regs].values.T, a.t_start_min.values,
                         a.t_start_min.values + a.duration_min.values, regs)
    return t, a.weight_kinfitr.values


def pct_diff(ds, rows, col, kcol):
    out = []
    for region, r in rows.set_index("region").iterrows():
        name = region.lower()
        if name in ("cerebellum", "reference"):
            continue
        out.append(100 * (float(ds[col].sel(region=name)) / r[kcol] - 1))
    return np.array(out)


# kinfitr config -> (model, sv2a options); k2' from MRTM1 on totalcortical (uniform, all frames)
PIB_CONFIGS = [
    ("SRTM", "uw_kinfitr_default_bounds", "srtm", KINFITR),
    ("SRTM2", "uw_k2prime_from_MRTM1_totalcortical", "srtm2",
     {**KINFITR, "k2prime": "mrtm", "k2prime_region": "totalcortical"}),
    ("MRTM1", "uw_allframes_trapz", "mrtm", {}),
    ("MRTM1", "uw_allframes_framecumsum", "mrtm", {"integration": "framecumsum"}),
    ("MRTM2", "uw_allframes_trapz_k2prime_from_MRTM1_totalcortical", "mrtm2",
     {"k2prime": "mrtm", "k2prime_region": "totalcortical"}),
    ("MRTM2", "uw_allframes_trapz_k2prime0.2", "mrtm2", {"k2prime": 0.2}),
    ("refLogan", "uw_last11frames(start>=20min)_trapz_k2prime0.2", "logan_ref",
     {"k2prime": 0.2, "tstar": 20}),
    ("refLogan", "uw_last11frames(start>=20min)_trapz_k2prime_from_MRTM1_totalcortical",
     "logan_ref", {"k2prime": "mrtm", "k2prime_region": "totalcortical", "n_frames": 11}),
]


@pytest.mark.parametrize("subject", ["AD06", "AD07"])
@pytest.mark.parametrize("kmodel,config,model,opts", PIB_CONFIGS)
def test_pib_matches_kinfitr(subject, kmodel, config, model, opts):
    # Issue requirement: within 1 %. Measured agreement is < 0.001 % (linear methods are exact
    # to rounding; SRTM/SRTM2 differ only by optimiser tolerance), so 0.05 % guards against
    # regressions while leaving room for LM's stopping rule in kinfitr.
    k = pd.read_csv(DATA / "pib" / "kinfitr_reference_tissue_models.csv")
    rows = k[(k.PET == subject) & (k.model == kmodel) & (k.config == config)]
    assert len(rows) == 9
    ds = sv2a.fit(pib_tacs(subject), model=model, reference="cerebellum", **opts)
    d = pct_diff(ds, rows, "BPND", "bp")
    assert d.size == 9 and np.all(np.abs(d) < 0.05), d
    if kmodel == "MRTM1":
        assert np.all(np.abs(pct_diff(ds, rows, "k2prime", "k2prime")) < 0.05)
    if "from_MRTM1" in config:
        assert ds.attrs["k2prime_used"] == pytest.approx(rows.k2prime_used.iloc[0], rel=1e-6)


@pytest.mark.parametrize("subject", ["AD06", "AD07"])
def test_pib_suvr_matches_kinfitr(subject):
    k = pd.read_csv(DATA / "pib" / "kinfitr_reference_tissue_models.csv")
    rows = k[(k.PET == subject) & (k.model == "SUVR")]
    t = pib_tacs(subject)
    for frames in ("mid", "overlap"):  # the 50-70 min window falls on frame edges
        ds = sv2a.fit(t, model="suvr", reference="cerebellum", window=(50, 70),
                      frame_selection=frames)
        d = pct_diff(ds, rows, "SUVR", "SUVR")
        assert np.all(np.abs(d) < 1e-6), d


@pytest.mark.parametrize("with_k2", [False, True])
def test_pib_logan_matches_tpcclib(with_k2):
    # TPCCLIB logan 0.6.17 (-C -mid=y), frames 24..34 (start >= 20 min); DVR within 1e-3
    tp = pd.read_csv(DATA / "pib" / "tpcclib_logan_AD06.csv").set_index("region")
    col = "DVR_TPCCLIB_logan_k2_0.2" if with_k2 else "DVR_TPCCLIB_logan_nok2"
    ds = sv2a.fit(pib_tacs("AD06"), model="logan_ref", reference="cerebellum", tstar=20,
                  k2prime=0.2 if with_k2 else None)
    targets = [r for r in tp.index if r != "cerebellum"]
    diff = np.array([float(ds.DVR.sel(region=r)) - tp.loc[r, col] for r in targets])
    assert len(diff) == 16
    assert np.all(np.abs(diff) < 1e-3), diff
    assert np.all(ds.n_frames.values == 11) and np.all(ds.tstar.values == 22.5)


SIMREF_CONFIGS = [
    ("SRTM", "uw_kinfitr_default_bounds", "srtm", KINFITR, False),
    ("SRTM", "w_kinfitr_default_bounds", "srtm", KINFITR, True),
    ("SRTM2", "w_k2prime_from_MRTM1", "srtm2",
     {**KINFITR, "k2prime": "mrtm", "k2prime_region": "roi1"}, True),
    ("MRTM1", "uw_allframes_trapz", "mrtm", {}, False),
    ("MRTM1", "uw_allframes_framecumsum", "mrtm", {"integration": "framecumsum"}, False),
    ("MRTM2", "uw_allframes_trapz_k2prime_from_MRTM1", "mrtm2",
     {"k2prime": "mrtm", "k2prime_region": "roi1"}, False),
    ("refLogan", "uw_last10frames_trapz_k2prime_from_MRTM1", "logan_ref",
     {"k2prime": "mrtm", "k2prime_region": "roi1", "n_frames": 10}, False),
    ("SUVR", "durweighted_mid_in_60_91_min", "suvr", {"window": (60, 91), "frame_selection": "mid"},
     False),
]


@pytest.mark.parametrize("kmodel,config,model,opts,weighted", SIMREF_CONFIGS)
def test_simref_matches_kinfitr(kmodel, config, model, opts, weighted):
    # all 20 simulated PETs x 3 ROIs; issue tolerance 1 %, measured max 0.0025 % -> 0.05 %
    k = pd.read_csv(DATA / "simref" / "kinfitr_reference_tissue_models.csv")
    col, kcol = ("SUVR", "SUVR") if model == "suvr" else ("BPND", "bp")
    diffs = []
    for pet in k.PET.unique():
        t, w = simref_tacs(pet)
        o = dict(opts, weights=w) if weighted else opts
        ds = sv2a.fit(t, model=model, reference="reference", **o)
        rows = k[(k.PET == pet) & (k.model == kmodel) & (k.config == config)]
        diffs.append(pct_diff(ds, rows, col, kcol))
    d = np.concatenate(diffs)
    assert d.size == 60
    assert np.all(np.abs(d) < 0.05), np.abs(d).max()


# ----------------------------------------------------------------------------- phantoms

RECOVERY = [
    ("srtm", {}), ("srtm", {"sampling": "mid"}), ("srtm", {"method": "nonlinear"}),
    ("srtm2", {"k2prime": K2P}), ("srtm2", {"k2prime": "srtm"}), ("srtm2", {}), ("mrtm", {}),
    ("mrtm", {"integration": "framecumsum"}), ("mrtm2", {"k2prime": K2P}),
    ("logan_ref", {"k2prime": K2P, "tstar": 30}),
]


@pytest.mark.parametrize("model,opts", RECOVERY)
def test_noise_free_recovery(phantom, model, opts):
    # 1TCM target + 1TCM reference satisfy every model's assumptions exactly; what remains is
    # the discretisation of frame data (interpolated reference, trapezoid integrals) and, for
    # the default basis method, the quadratic refinement between grid points (5.5 % steps;
    # about 1e-4 relative from the exact optimum). Tolerance 0.5 %; measured below 0.1 %.
    ds = sv2a.fit(phantom, model=model, reference="ref", **opts)
    assert list(ds.region.values) == list(TARGETS)
    np.testing.assert_allclose(ds.BPND.values, TRUE_BP, rtol=5e-3)
    if "R1" in ds:
        np.testing.assert_allclose(ds.R1.values, TRUE_R1, rtol=5e-3)
    assert ds.converged.all() and not ds.at_bound.any()
    # with k2' estimated (coupled SRTM2), the discretisation error of every target enters
    # k2' too: measured 0.25 %; otherwise the methods do much better than 0.5 %
    exact = 5e-3 if model == "srtm2" and "k2prime" not in opts else 1e-3
    np.testing.assert_allclose(ds.BPND.values, TRUE_BP, rtol=exact)


def test_noise_free_derived_parameters(phantom):
    ds = sv2a.fit(phantom, model="srtm", reference="ref")
    k2a_true = np.array([k1 / vt for k1, vt in TARGETS.values()])
    # k2 and k2a are less well determined than their ratio; discretisation error ~0.35 %
    np.testing.assert_allclose(ds.k2a.values, k2a_true, rtol=5e-3)
    np.testing.assert_allclose(ds.k2.values, TRUE_R1 * K2P, rtol=5e-3)
    np.testing.assert_allclose(ds.k2prime.values, K2P, rtol=5e-3)
    np.testing.assert_allclose(ds.DVR.values, TRUE_BP + 1, rtol=1e-3)
    m = sv2a.fit(phantom, model="mrtm", reference="ref")
    np.testing.assert_allclose(m.k2prime.values, K2P, rtol=2e-3)


@pytest.mark.parametrize("model,opts", [("mrtm2", {"k2prime": K2P}), ("mrtm", {}),
                                        ("logan_ref", {"k2prime": K2P, "tstar": 30})])
def test_frame_integration_removes_mid_time_error(phantom, model, opts):
    # the data are frame means: frame-averaged integrals make the operational equation exact
    # between frame averages, so only the reference's within-frame shape is left
    trap = sv2a.fit(phantom, model=model, reference="ref", **opts)
    frame = sv2a.fit(phantom, model=model, reference="ref", integration="frame", **opts)
    e_trap = np.abs(trap.BPND.values / TRUE_BP - 1).max()
    e_frame = np.abs(frame.BPND.values / TRUE_BP - 1).max()
    # with these short early frames both are accurate (measured <= 4.3e-4); the gain shows
    # with coarse early frames (tests/test_parametric.py)
    assert max(e_frame, e_trap) < 1e-3, (e_frame, e_trap)
    assert frame.attrs["integration"] == "frame"


def test_logan_without_k2prime_is_biased_low(phantom):
    # without the C_R/k2' term the plot is only asymptotically linear: DVR biased low here
    ds = sv2a.fit(phantom, model="logan_ref", reference="ref", tstar=30)
    assert np.all(ds.BPND.values < TRUE_BP) and np.isnan(ds.k2prime.values).all()


# noisy: target noise var = a·C·e^{λt}/Δt with 3 % CV in the 5-min frame at 60 min; the
# reference (a large region) is kept noise free so that replicates can be fitted as regions.
# Bounds: |bias| <= measured + ~3 SE of the mean (N = 300) and SD <= measured x 1.25.
NOISY = [
    ("srtm", {"weights": "variance"}, 1.5, 7.5),
    ("srtm2", {"k2prime": K2P, "weights": "variance"}, 0.8, 3.0),
    ("mrtm", {}, 4.0, 16.5),
    ("mrtm2", {"k2prime": K2P}, 0.8, 3.0),
    ("logan_ref", {"k2prime": K2P, "tstar": 30}, 2.5, 4.5),
]


@pytest.fixture(scope="module")
def noisy():
    vals = phantom_values()
    tg = vals[1]
    lam = np.log(2) / 20.4
    shape = tg * np.exp(lam * FRAMES.mid) / FRAMES.duration
    i60 = int(np.argmin(abs(FRAMES.mid - 62.5)))
    sd = np.sqrt((0.03 * tg[i60]) ** 2 / shape[i60] * shape)
    rng = np.random.default_rng(20240601)
    n = 300
    y = tg + rng.standard_normal((n, FRAMES.n)) * sd
    return tacs_from_arrays(np.vstack([vals[0], y]), FRAMES.start, FRAMES.end,
                            ["ref"] + [f"rep{i}" for i in range(n)], half_life=20.4)


@pytest.mark.parametrize("model,opts,max_bias,max_sd", NOISY)
def test_noisy_bias_and_sd(noisy, model, opts, max_bias, max_sd):
    ds = sv2a.fit(noisy, model=model, reference="ref", **opts)
    e = 100 * (ds.BPND.values / TRUE_BP[0] - 1)
    # MRTM: at this noise a few replicates have a non-negative ∫C_T coefficient (flagged,
    # not converged); the others must converge
    assert ds.converged.mean() >= (0.98 if model == "mrtm" else 1.0)
    assert abs(e.mean()) < max_bias, e.mean()
    assert e.std() < max_sd, e.std()
    if model == "mrtm":
        return  # OLS SEs assume equal variances; wrong under this heteroscedastic noise
    # reported standard errors are of the right size (within a factor 2 of the spread)
    se = 100 * np.median(ds.BPND_se.values) / TRUE_BP[0]
    assert 0.5 * e.std() < se < 2 * e.std()


# ----------------------------------------------------------------------------- behaviour


def test_registry_and_result_layout(phantom):
    assert {"srtm", "srtm2", "mrtm", "mrtm2", "logan_ref"} <= set(sv2a.models.available())
    ds = sv2a.fit(phantom, model="srtm2", reference="ref", k2prime=K2P)
    for v in ("BPND", "BPND_se", "R1", "k2", "k2a", "k2prime", "DVR", "rss", "aic",
              "n_frames", "tstar", "converged", "at_bound", "message"):
        assert v in ds, v
    assert ds.attrs["model"] == "srtm2" and ds.attrs["reference"] == "ref"
    assert ds.attrs["k2prime_used"] == K2P and ds.attrs["weights"] == "uniform"
    assert ds.n_frames.values.tolist() == [FRAMES.n] * 3
    lin = sv2a.fit(phantom, model="mrtm1", reference="ref", tstar=10)
    # the tstar attr and variable hold the first frame mid-time used (min)
    assert lin.attrs["tstar"] >= 10 and np.all(lin.tstar.values == lin.attrs["tstar"])


def test_reference_as_array_matches_named(phantom):
    a = sv2a.fit(phantom, model="mrtm", reference="ref")
    b = sv2a.fit(phantom.sel(region=list(TARGETS)), model="mrtm",
                 reference=phantom.sel(region="ref").values)
    np.testing.assert_allclose(a.BPND.values, b.BPND.values, rtol=1e-12)
    assert b.attrs["reference"] == "array"


def test_k2prime_estimates(phantom):
    # default: coupled SRTM2 over all targets (joint least squares of the shared k2')
    ds = sv2a.fit(phantom, model="srtm2", reference="ref")
    assert "coupled" in ds.attrs["k2prime_source"]
    assert ds.attrs["k2prime_used"] == pytest.approx(K2P, rel=5e-3)
    m = sv2a.fit(phantom, model="mrtm2", reference="ref", k2prime_region=["high", "mid"])
    assert m.attrs["k2prime_used"] == pytest.approx(K2P, rel=5e-3)
    np.testing.assert_allclose(m.BPND.values, TRUE_BP, rtol=5e-3)
    for how in ("srtm", "mrtm"):  # first-pass fit of the mean TAC of k2prime_region
        f = sv2a.fit(phantom, model="srtm2", reference="ref", k2prime=how,
                     k2prime_region="high")
        assert f.attrs["k2prime_used"] == pytest.approx(K2P, rel=5e-3)
        assert how.upper() in f.attrs["k2prime_source"]


def test_basis_grid_edge_flags_at_bound(phantom):
    ds = sv2a.fit(phantom, model="srtm", reference="ref", rate_range=(0.2, 1.0))
    assert ds.at_bound.all() and "grid edge" in str(ds.message.values[0])
    ds = sv2a.fit(phantom, model="srtm", reference="ref", method="nonlinear",
                  rate_range=(0.2, 1.0))
    assert ds.at_bound.all()


def test_weighted_logan_uses_transformed_weights(phantom):
    a = sv2a.fit(phantom, model="logan_ref", reference="ref", k2prime=K2P, tstar=30,
                 weights="duration")
    b = sv2a.fit(phantom, model="logan_ref", reference="ref", k2prime=K2P, tstar=30,
                 weights="duration", transform_weights=False)
    np.testing.assert_allclose(a.BPND.values, TRUE_BP, rtol=1e-3)
    assert not np.allclose(a.rss.values, b.rss.values)


def test_failing_region_is_isolated(phantom):
    vals = phantom.values.copy()
    t = tacs_from_arrays(np.vstack([vals, vals[0]]), FRAMES.start, FRAMES.end,
                         ["ref", *TARGETS, "copy_of_ref"])
    ds = sv2a.fit(t, model="mrtm", reference="ref")
    bad = ds.sel(region="copy_of_ref")
    assert np.isnan(float(bad.BPND)) and not bool(bad.converged)
    assert "copy_of_ref" in str(bad.message.values)
    good = ds.sel(region=list(TARGETS))
    assert good.converged.all()
    np.testing.assert_allclose(good.BPND.values, TRUE_BP, rtol=5e-3)


@pytest.mark.parametrize("model", ["srtm", "srtm2", "mrtm", "mrtm2", "logan_ref"])
def test_missing_reference_lists_regions(phantom, model):
    opts = {"k2prime": 0.1} if model in ("srtm2", "mrtm2", "logan_ref") else {}
    with pytest.raises(RegionError, match="'high'"):
        sv2a.fit(phantom, model=model, reference="cerebellum", **opts)
    with pytest.raises(RegionError, match="reference"):
        sv2a.fit(phantom, model=model)


def test_bad_options_and_inputs(phantom):
    with pytest.raises(ModelError, match="valid options"):
        sv2a.fit(phantom, model="srtm", reference="ref", tstar=10)
    with pytest.raises(ModelError, match="sampling='mid'"):
        sv2a.fit(phantom, model="srtm", reference="ref", convolution="kinfitr")
    with pytest.raises(ModelError):
        sv2a.fit(phantom, model="srtm", reference="ref", method="lm")
    with pytest.raises(ModelError, match="k2prime"):
        sv2a.fit(phantom, model="mrtm2", reference="ref", k2prime=-1)
    with pytest.raises(ModelError, match="k2prime"):
        sv2a.fit(phantom, model="srtm2", reference="ref", k2prime="guess")
    with pytest.raises(RegionError, match="k2prime_region"):
        sv2a.fit(phantom, model="srtm2", reference="ref", k2prime_region="nowhere")
    with pytest.raises(FitError, match="t\\*"):
        sv2a.fit(phantom, model="logan_ref", reference="ref", tstar=85)
    with pytest.raises(ShapeMismatchError):
        sv2a.fit(phantom, model="mrtm", reference=np.ones(5))
    with pytest.raises(ModelError, match="unknown model"):
        sv2a.fit(phantom, model="srtm3", reference="ref")
    nan = phantom.copy()
    nan.values[0, 3] = np.nan  # a non-finite reference fails the whole fit
    with pytest.raises(DataError, match="reference"):
        sv2a.fit(nan, model="srtm", reference="ref")
    neg = phantom.copy()
    neg.values[2, 20] = -5.0
    with pytest.raises(Sv2aError):
        sv2a.fit(neg, model="mrtm", reference="ref")


def test_solver_vectorises_over_rows(phantom):
    # one solver for regions and voxels: a batch gives the same answer as single rows
    from sv2a.models.base import ModelInputs
    from sv2a.models.mrtm import MRTM
    from sv2a.models.srtm import SRTM

    y = phantom.values[1:]
    cr = phantom.values[0]
    inputs = ModelInputs(frames=FRAMES, weights=np.ones(FRAMES.n), reference=cr)
    for cls in (SRTM, MRTM):
        solver = cls(inputs, cls.Options())
        batch = solver.solve(y)
        single = [solver.solve(y[i:i + 1])["BPND"][0] for i in range(3)]
        np.testing.assert_allclose(batch["BPND"], single, rtol=1e-12)
        np.testing.assert_allclose(batch["BPND"], TRUE_BP, rtol=5e-3)
    conv = K.exp_conv_pwlinear([0, 1, 2], [0, 1, 1], [0.5], [2.0])
    # ∫_0^2 C(s) e^{-0.5 (2-s)} ds with C = s on [0,1], 1 on [1,2], by quadrature
    s = np.linspace(0, 2, 200001)
    c = np.minimum(s, 1)
    assert conv[0, 0] == pytest.approx(np.trapezoid(c * np.exp(-0.5 * (2 - s)), s), rel=1e-8)


@pytest.mark.parametrize("model", ["srtm", "srtm2"])
def test_basis_refinement_close_to_exact_optimum(phantom, model):
    # method="basis" refines k2a by quadratic interpolation of the basis between grid points
    # (5.5 % apart); method="nonlinear" finds the exact least-squares optimum. On noisy TACs
    # they agree to measured <= 6e-4 relative in BPND; tolerance 2e-3.
    rng = np.random.default_rng(0)
    noisy = phantom.copy()
    noisy.values[1:] *= 1 + 0.03 * rng.standard_normal(noisy.values[1:].shape)
    kw = {"k2prime": K2P} if model == "srtm2" else {}
    a = sv2a.fit(noisy, model=model, reference="ref", **kw)
    b = sv2a.fit(noisy, model=model, reference="ref", method="nonlinear", **kw)
    np.testing.assert_allclose(a.BPND.values, b.BPND.values, rtol=2e-3)
    np.testing.assert_allclose(a.R1.values, b.R1.values, rtol=2e-3)
    with pytest.raises(ModelError, match="step"):
        sv2a.fit(noisy, model=model, reference="ref", convolution="step", sampling="mid", **kw)
