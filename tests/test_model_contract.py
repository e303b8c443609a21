"""The model contract, run over every registered model (conformance suite).

For each model in ``sv2a.models.available()`` (and each scale it offers):
output dimensions, units in attrs, NaN isolation, ``predict`` of a noise-free fit reproduces
the data, regional fit == voxel map on an image whose voxels carry their region's TAC
(default options on both sides), dask == numpy, and building the dask graph computes nothing.

The phantom is independent of the solvers: 1TCM tissue curves of a Feng (1993) input in
closed form (:mod:`sv2a.phantom.simulate`), frame-averaged by quadrature; the reference is a
centrum-semiovale-like 1TCM region with the targets' VND, so reference-tissue models hold.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

import sv2a
from sv2a.atlas import Atlas
from sv2a.blood import InputFunction
from sv2a.frames import frames_from_counts
from sv2a.models import available, get
from sv2a.phantom.simulate import frame_average, pet_curve
from sv2a.phantom.tracers import FengInput

FRAMES = frames_from_counts([(6, 30), (3, 60), (2, 120), (16, 300)], half_life=20.4)
FENG = FengInput(A1=1150.0, A2=36.0, A3=9.0, lambda1=4.0, lambda2=0.4, lambda3=0.003,
                 delay=0.25, parent_plateau=0.2, parent_tau=9.0)
REF = {"K1": 0.135, "VT": 3.8}
BPS = np.array([0.8, 2.0, 3.5])
K1S = np.array([0.30, 0.38, 0.45])
REGIONS = ["frontal", "temporal", "putamen"]
#: voxels per target region in the image (unequal, so pooled estimates weight by volume)
NVOX = [6, 4, 8]


def _tac(k1: float, k2: float, vb: float = 0.0) -> np.ndarray:
    return frame_average(lambda t: pet_curve(FENG, {"K1": k1, "k2": k2, "vB": vb}, t), FRAMES,
                         delay=FENG.delay)


@pytest.fixture(scope="module")
def phantom():
    """Regional TACs, the image whose voxels carry them, atlas, input function."""
    cr = _tac(REF["K1"], REF["K1"] / REF["VT"])
    ct = np.array([_tac(k1, k1 / (REF["VT"] * (1 + bp)))
                   for bp, k1 in zip(BPS, K1S, strict=True)])
    labels = np.zeros((6, 4, 2), int)
    flat = labels.reshape(-1)
    pos = 0
    for lab, n in enumerate(NVOX, start=1):
        flat[pos:pos + n] = lab
        pos += n
    flat[pos:pos + 5] = 4                       # reference region, 5 voxels
    labels = flat.reshape(labels.shape)
    atlas = Atlas(labels, {1: REGIONS[0], 2: REGIONS[1], 3: REGIONS[2],
                           4: "centrum_semiovale"})
    img = np.zeros((*labels.shape, FRAMES.n), np.float32)
    for lab, tac in enumerate([*ct, cr], start=1):
        img[labels == lab] = tac
    pet = sv2a.DynamicPET.from_array(img, FRAMES, meta={"injected_mbq": 400.0,
                                                       "body_weight_kg": 80.0})
    tacs = sv2a.extract_tacs(pet, atlas)
    tacs.attrs.update(injected_mbq=400.0, body_weight_kg=80.0)
    t = np.concatenate([np.arange(0, 3, 1 / 60), np.arange(3, 95, 0.5)])
    inp = InputFunction(time=t, plasma=FENG.plasma(t), whole_blood=FENG.whole_blood(t))
    target = (labels >= 1) & (labels <= 3)
    return {"tacs": tacs, "pet": pet, "atlas": atlas, "input": inp, "labels": labels,
            "target": target, "cr": cr, "ct": ct}


def _inputs(model: str, ph, scale: str) -> dict:
    cls = get(model)
    if cls.kind == "plasma":
        return {"input": ph["input"]}
    if cls.kind == "reference":
        if scale == "region":
            return {"reference": "centrum_semiovale"}
        return {"reference": "centrum_semiovale", "atlas": ph["atlas"]}
    return {}


def _regional(model: str, ph, **opts) -> xr.Dataset:
    tacs = ph["tacs"]
    if get(model).kind == "plasma":
        tacs = tacs.sel(region=REGIONS)
    return sv2a.fit(tacs, model=model, **_inputs(model, ph, "region"), **opts)


def _maps(model: str, ph, **kw) -> xr.Dataset:
    return sv2a.parametric_maps(ph["pet"], model=model, mask=ph["target"],
                                **_inputs(model, ph, "voxel"), warn=False, **kw)


BOTH = sorted(set(available(scale="region")) & set(available(scale="voxel")))


def test_registry_describes_every_model():
    for name in available():
        cls = get(name)
        assert cls.kind in ("plasma", "reference", "static")
        assert cls.scales and set(cls.scales) <= {"region", "voxel"}
        assert cls.parameters and set(cls.parameters) <= set(cls.units)
        assert dataclasses.is_dataclass(cls.Options)
        assert cls.__doc__ and "Examples" in cls.__doc__, f"{name}: no Examples section"
    assert "2tcm" not in available(scale="voxel")


@pytest.mark.parametrize("model", available(scale="region"))
def test_regional_result_shape_and_units(model, phantom):
    res = _regional(model, phantom)
    cls = get(model)
    expected = REGIONS + (["centrum_semiovale"] if cls.kind == "static" else [])
    assert res["region"].values.tolist() == expected
    for p in cls.parameters:
        assert p in res, f"{model}: parameter {p} missing"
        assert res[p].dims == ("region",)
        assert res[p].attrs.get("units") == cls.units[p]
    for d in ("n_frames", "converged", "at_bound", "message"):
        assert d in res
    if cls.predicts:  # fitted models
        assert {"rss", "aic"} <= set(res.data_vars)
        assert all(f"{p}_se" in res for p in cls.parameters)
    assert res.attrs["model"] == model


@pytest.mark.parametrize("model", BOTH)
def test_regional_equals_voxel(model, phantom):
    """Maps of an image whose voxels carry their region's TAC equal the regional fit (1e-6),
    with default options on both sides.

    The absolute floor 1e-7 is for parameters whose true value is 0 (vB of this phantom):
    there rounding differences between matrix products of different sizes (18 voxel rows vs 3
    region rows) are amplified to ~1e-8 absolute, far below any meaningful vB."""
    res = _regional(model, phantom)
    maps = _maps(model, phantom)
    for i, region in enumerate(REGIONS):
        sel = phantom["labels"] == i + 1
        for p in get(model).parameters:
            vox = np.asarray(maps[p].values[sel], float)
            reg = float(res[p].sel(region=region))
            np.testing.assert_allclose(vox, reg, rtol=1e-6, atol=1e-7,
                                       err_msg=f"{model} {p} {region}")


@pytest.mark.parametrize("model", available(scale="region"))
def test_nan_isolation_regional(model, phantom):
    """A region with a NaN frame gets NaN and a message; the others are unchanged.

    k2' is fixed here: a pooled k2' estimate legitimately leaves the bad region out."""
    opts = {"k2prime": 0.035} if "k2prime" in get(model).option_names() else {}
    tacs = phantom["tacs"]
    if get(model).kind == "plasma":
        tacs = tacs.sel(region=REGIONS)
    bad = tacs.copy()
    bad.loc[{"region": "temporal"}] = np.where(np.arange(FRAMES.n) == 5, np.nan,
                                               bad.sel(region="temporal").values)
    ref = sv2a.fit(tacs, model=model, **_inputs(model, phantom, "region"), **opts)
    out = sv2a.fit(bad, model=model, **_inputs(model, phantom, "region"), **opts)
    p = get(model).parameters[0]
    assert np.isnan(out[p].sel(region="temporal"))
    assert "non-finite" in str(out["message"].sel(region="temporal").values)
    for r in ("frontal", "putamen"):
        assert float(out[p].sel(region=r)) == pytest.approx(float(ref[p].sel(region=r)),
                                                            rel=1e-9)


@pytest.mark.parametrize("model", available(scale="voxel"))
def test_nan_isolation_voxel(model, phantom):
    pet = phantom["pet"]
    img = np.array(pet.data)
    x, y, z = np.argwhere(phantom["labels"] == 1)[0]
    img[x, y, z, 3] = np.nan
    bad = sv2a.DynamicPET.from_array(img, FRAMES, meta=pet.meta)
    ph2 = dict(phantom, pet=bad)
    opts = {"k2prime": 0.035} if "k2prime" in get(model).option_names() else {}
    good_maps = _maps(model, phantom, **opts)
    maps = _maps(model, ph2, **opts)
    p = get(model).parameters[0]
    assert np.isnan(maps[p].values[x, y, z]) and maps["flag"].values[x, y, z] & 2
    others = phantom["target"].copy()
    others[x, y, z] = False
    np.testing.assert_array_equal(maps[p].values[others], good_maps[p].values[others])


@pytest.mark.parametrize("model", [m for m in available(scale="region") if get(m).predicts])
def test_predict_reproduces_noise_free_data(model, phantom):
    # graphical methods are fitted after t* = 20 min (their linear phase); reference Logan
    # with the C_R/k2' term (k2' of the phantom), without which it is only asymptotic
    opts = {"logan": {"tstar": 20.0}, "ma1": {"tstar": 20.0},
            "logan_ref": {"tstar": 20.0, "k2prime": REF["K1"] / REF["VT"]}}.get(model, {})
    res = _regional(model, phantom, **opts)
    tacs = phantom["tacs"].sel(region=REGIONS)
    pred = sv2a.models.predict_fit(res, phantom["tacs"], input=phantom["input"])
    data = tacs.values
    # compartment / basis models: the fitted model reproduces the data closely; linear
    # (graphical) methods estimate the operational equation with trapezoid integrals of
    # frame data, so their implied curves agree to a few percent
    linear = model in ("logan", "ma1", "logan_ref", "mrtm", "mrtm2")
    late = FRAMES.mid >= 20
    tol = 0.03 if linear else 0.005
    err = np.abs(pred[:, late] - data[:, late]) / np.abs(data[:, late]).max(axis=1,
                                                                           keepdims=True)
    assert err.max() < tol, f"{model}: max relative error {err.max():.3g}"


def _voxel_solver(model: str, ph):
    """The model's solver as parametric_maps builds it (k2' fixed, default options)."""
    from sv2a.models.base import ModelInputs, parse_options

    cls = get(model)
    opts = {"k2prime": REF["K1"] / REF["VT"]} if "k2prime" in cls.option_names() else {}
    inputs = ModelInputs(frames=FRAMES, weights=np.ones(FRAMES.n), reference=ph["cr"],
                         input=ph["input"], injected_mbq=400.0, body_weight_kg=80.0,
                         scale="voxel")
    return cls(inputs, parse_options(cls.Options, opts, model))


@pytest.mark.parametrize("model", ["logan", "ma1"])
def test_plasma_graphical_frame_integration(model, phantom):
    # frame-averaged plasma and tissue integrals on frame-mean data: VT closer to the truth
    vt = REF["VT"] * (1 + BPS)
    trap = _regional(model, phantom, tstar=20.0)
    frame = _regional(model, phantom, tstar=20.0, integration="frame")
    e_trap = np.abs(trap.VT.values / vt - 1).max()
    e_frame = np.abs(frame.VT.values / vt - 1).max()
    assert e_frame < e_trap and e_frame < 2e-3, (e_frame, e_trap)


@pytest.mark.parametrize("model", available(scale="voxel"))
def test_dask_equals_numpy_and_graph_is_lazy(model, phantom):
    pytest.importorskip("dask")
    import dask
    import dask.array as da

    from sv2a.parametric.engine import run_dask

    def refuse(dsk, keys, **kwargs):
        raise AssertionError("the dask graph was computed while being built")

    lazy = da.from_array(np.asarray(phantom["pet"].data), chunks=(3, 2, 2, -1))
    solver = _voxel_solver(model, phantom)
    names = list(get(model).parameters)
    with dask.config.set(scheduler=refuse):      # building the graph computes nothing
        graph = run_dask(solver, lazy, phantom["target"], names, progress=False, desc="",
                         compute=False)
    stack = np.asarray(graph.compute())           # computing it gives the numpy numbers
    rows = np.asarray(phantom["pet"].data)[phantom["target"]].astype(float)
    direct = solver.solve(rows)
    for i, p in enumerate(names):
        np.testing.assert_allclose(stack[..., i][phantom["target"]], direct[p], rtol=1e-6,
                                   equal_nan=True, err_msg=f"{model} {p}")
    # and the public path: a dask-backed image gives the in-memory maps
    pet = sv2a.DynamicPET.from_array(lazy, FRAMES, meta=phantom["pet"].meta)
    dask_maps = sv2a.parametric_maps(pet, model=model, mask=phantom["target"],
                                     **_inputs(model, phantom, "voxel"), warn=False)
    numpy_maps = _maps(model, phantom)
    for p in names:
        np.testing.assert_allclose(dask_maps[p].values, numpy_maps[p].values, rtol=1e-6,
                                   equal_nan=True, err_msg=f"{model} {p}")


BAD = [  # (what, options that are wrong, error) -- the same class at both scales
    ("late tstar", {"tstar": 85.0}, sv2a.errors.FitError),
    ("negative k2prime", {"k2prime": -0.1}, sv2a.errors.ModelError),
    ("bad choice", {"sampling": "centre"}, sv2a.errors.ModelError),
    ("window outside scan", {"window": (80.0, 120.0)}, sv2a.errors.FrameTimingError),
]


@pytest.mark.parametrize("model", BOTH)
@pytest.mark.parametrize("what,opts,err", BAD, ids=[b[0] for b in BAD])
def test_same_bad_condition_same_error_at_both_scales(model, phantom, what, opts, err):
    if not set(opts) <= set(get(model).option_names()):
        pytest.skip(f"{model} has no option {list(opts)}")
    with pytest.raises(err):
        _regional(model, phantom, **opts)
    with pytest.raises(err):
        _maps(model, phantom, **opts)


@pytest.mark.parametrize("model", [m for m in BOTH if get(m).kind == "reference"])
def test_bad_reference_same_error_at_both_scales(model, phantom):
    zero = np.zeros(FRAMES.n)
    targets = phantom["tacs"].sel(region=REGIONS)
    with pytest.raises(sv2a.errors.DataError, match="reference"):
        sv2a.fit(targets, model=model, reference=zero)
    with pytest.raises(sv2a.errors.DataError, match="reference"):
        sv2a.parametric_maps(phantom["pet"], model=model, reference=zero,
                             mask=phantom["target"])
    with pytest.raises(sv2a.errors.ShapeMismatchError):
        sv2a.fit(targets, model=model, reference=np.ones(3))
    with pytest.raises(sv2a.errors.ShapeMismatchError):
        sv2a.parametric_maps(phantom["pet"], model=model, reference=np.ones(3),
                             mask=phantom["target"])


@pytest.mark.parametrize("model", available())
def test_unknown_option_refused_same_error_both_scales(model, phantom):
    with pytest.raises(sv2a.errors.ModelError, match="does not take option"):
        _regional(model, phantom, not_an_option=1)
    if "voxel" in get(model).scales:
        with pytest.raises(sv2a.errors.ModelError, match="does not take option"):
            _maps(model, phantom, not_an_option=1)


def test_unsupported_scale_refused_with_list():
    with pytest.raises(sv2a.errors.ModelError, match="does not offer voxelwise maps.*srtm2"):
        sv2a.parametric_maps(np.zeros((2, 2, 2, FRAMES.n)), model="2tcm", frames=FRAMES)


@pytest.mark.parametrize("model", [m for m in BOTH if get(m).predicts])
def test_dynamic_model_refuses_a_static_scan(model, phantom):
    """A one-frame (static) image is refused by every fitted model, at both scales, with the
    same error, instead of a 'converged' fit of one number."""
    one = sv2a.FrameSchedule.from_durations([30.0], start=60.0)
    tacs = sv2a.tacs_from_arrays(phantom["tacs"].values[:, -1:], one.start, one.end,
                                 [str(r) for r in phantom["tacs"].region.values])
    kw = _inputs(model, phantom, "region")
    with pytest.raises((sv2a.errors.FitError, sv2a.errors.FrameTimingError,
                        sv2a.errors.InputFunctionError)) as reg:
        sv2a.fit(tacs if get(model).kind != "plasma" else tacs.sel(region=REGIONS),
                 model=model, **kw)
    img = np.asarray(phantom["pet"].data)[..., -1:]
    pet = sv2a.DynamicPET.from_array(img, one, meta=phantom["pet"].meta)
    with pytest.raises(type(reg.value)):
        sv2a.parametric_maps(pet, model=model, mask=phantom["target"],
                             **_inputs(model, phantom, "voxel"), warn=False)
