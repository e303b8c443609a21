"""Reference-tissue models: SRTM, SRTM2, MRTM (MRTM1), MRTM2 and reference Logan.

All models take the TACs of the target regions and a reference-region TAC (a region of the
TACs, named with ``reference=``, or an array) and return binding potentials relative to the
non-displaceable compartment (``BPND``), the relative delivery ``R1 = K1/K1'`` and the rate
constants that apply. Every model is registered with :mod:`sv2a.models.registry`::

    sv2a.fit(tacs, model="srtm", reference="centrum_semiovale")
    sv2a.fit(tacs, model="srtm2", reference="centrum_semiovale", k2prime=0.04)
    sv2a.fit(tacs, model="mrtm2", reference="cerebellum", k2prime="mrtm", k2prime_region="frontal")
    sv2a.fit(tacs, model="logan_ref", reference="cerebellum", k2prime=0.2, tstar=20)

Conventions (time in min, rates in 1/min, activity in kBq/mL)
--------------------------------------------------------------
* The reference TAC is a continuous curve built by linear interpolation of the frame values at
  the frame mid-times, with (0, 0) prepended, and linear extrapolation of the last segment to
  the end of the last frame.
* Compartment models (SRTM, SRTM2) convolve that curve **exactly** with ``exp(-k2a t)``
  (closed form for a piecewise-linear input) and by default compare the **frame average** of
  the model with the data (``sampling="frame"``); ``sampling="mid"`` samples at mid-times.
  ``convolution="kinfitr"`` reproduces kinfitr 0.9 (reference interpolated onto 1024 points
  between 0 and the last mid-time, rectangle-rule discrete convolution, model linearly
  interpolated at the mid-times); it implies ``sampling="mid"``. ``convolution="step"`` holds
  the reference at its frame mean inside each frame, the discretisation of the voxelwise maps
  (:mod:`sv2a.models.basis`), for like-for-like regional vs voxel comparisons.
* Linear methods (MRTM, MRTM2, reference Logan) use integrals at the frame mid-times by the
  trapezoid rule with (0, 0) prepended (``integration="trapezoid"``, as kinfitr and TPCCLIB
  ``logan -mid=y``) or kinfitr's ``framecumsum`` (``Σ_{j<i} C_j Δt_j + C_i Δt_i / 2``).
* Weights (``weights=``): ``"uniform"`` (default, as kinfitr and TPCCLIB), ``"duration"``,
  ``"kinfitr"``, ``"variance"`` or an array (see :mod:`sv2a.weights`). Reference Logan
  propagates non-uniform frame weights to the plot ordinate with the delta method
  (:func:`sv2a.weights.logan_weights`); ``"uniform"`` means an unweighted regression.
* A named reference region is not fitted against itself: it is left out of the result
  (its BPND is 0 by definition).

Array cores
-----------
The numerical work is done by functions over 2-D arrays (rows = TACs): convolutions and
integrals come from :mod:`sv2a.models._kinetics` (:func:`srtm_regressors` is
:func:`~sv2a.models._kinetics.tac_convolution`), then :func:`srtm_grid_fit`,
:func:`srtm_refine`, :func:`srtm2_grid_fit`, :func:`srtm2_refine`, :func:`mrtm_arrays`,
:func:`mrtm2_arrays` and :func:`logan_ref_arrays` (batch WLS: :func:`._common.wls_batch`).

References
----------
Lammertsma AA, Hume SP (1996) Simplified reference tissue model for PET receptor studies.
NeuroImage 4:153-158. Gunn RN, Lammertsma AA, Hume SP, Cunningham VJ (1997) Parametric imaging
of ligand-receptor binding in PET using a simplified reference region model. NeuroImage
6:279-287. Wu Y, Carson RE (2002) Noise reduction in the simplified reference tissue model for
neuroreceptor functional imaging. JCBFM 22:1440-1452. Ichise M et al. (2003) Linearized
reference tissue parametric imaging methods. JCBFM 23:1096-1112. Logan J et al. (1996)
Distribution volume ratios without blood sampling from graphical analysis of PET data. JCBFM
16:834-840.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import FitError, ModelError, RegionError, ShapeMismatchError
from ..tacs import region_name
from ..weights import frame_weights, logan_weights
from ._common import aic, check_options, select_frames, tac_matrix, wls_batch
from ._kinetics import integral_matrix, rate_grid, tac_convolution
from .registry import register
from .result import build_result

__all__ = [
    "srtm",
    "srtm2",
    "mrtm",
    "mrtm2",
    "logan_ref",
    "srtm_regressors",
    "srtm_grid_fit",
    "srtm_refine",
    "srtm2_grid_fit",
    "srtm2_refine",
    "mrtm_arrays",
    "mrtm2_arrays",
    "logan_ref_arrays",
]

_UNITS = {"BPND": "1", "DVR": "1", "R1": "1", "k2": "1/min", "k2a": "1/min",
          "k2prime": "1/min"}


# =====================================================================================
# Array cores (rows = TACs)
# =====================================================================================


#: Regressors of the SRTM operational equation ``C_T = R1 x1 + θ2 B(k2a)``: ``x1`` the reference
#: TAC and ``B(k) = C_R ⊗ e^{−kt}`` (K, n_frames), frame averages or mid-time samples; see
#: :func:`sv2a.models._kinetics.tac_convolution` (the name is kept for callers).
srtm_regressors = tac_convolution


def _moments(x1, b, y, w):
    """Weighted moments of ``y ≈ θ1 x1 + θ2 b`` for the SRTM-type regressions.

    ``b`` is a basis family (K, f) shared by all rows (grid search: moments (n, K)) or one
    basis per row (n, f) (refinement: moments (n,)). Returns ``a11 a12 a22 b1 b2 yy``.
    """
    wx1 = w * x1
    if b.shape == y.shape:
        wb = w * b
        return ((wx1 * x1).sum(1), (wx1 * b).sum(1), (wb * b).sum(1), (wx1 * y).sum(1),
                (wb * y).sum(1), (w * y * y).sum(1))
    wy = w * y
    return ((wx1 * x1).sum(1)[:, None], wx1 @ b.T, w @ (b * b).T, (wy * x1).sum(1)[:, None],
            wy @ b.T, (wy * y).sum(1)[:, None])


def _srtm_rss(x1, b, y, w):
    """SRTM: both coefficients free. Returns ``rss`` (inf where singular), ``θ1``, ``θ2``."""
    a11, a12, a22, b1, b2, yy = _moments(x1, b, y, w)
    det = a11 * a22 - a12 * a12
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (a22 * b1 - a12 * b2) / det
        t2 = (a11 * b2 - a12 * b1) / det
    rss = yy - t1 * b1 - t2 * b2
    return np.where(np.isfinite(rss) & (det > 0), rss, np.inf), t1, t2


def _srtm2_rss(x1, b, y, w, kp, k):
    """SRTM2: ``y ≈ R1 (x1 + (k2' − k2a) b)``. ``kp`` (n,), ``k`` (K,) with a family or (n,)
    with one basis per row. Returns ``rss`` (inf where undefined) and ``R1``."""
    if b.shape == y.shape:  # one basis per row: form the regressor (no cancellation)
        x = x1 + (kp - k)[:, None] * b
        sxx = (w * x * x).sum(1)
        sxy = (w * x * y).sum(1)
        yy = (w * y * y).sum(1)
    else:                   # a family: expand in the SRTM moments, (n, K) at once
        a11, a12, a22, b1, b2, yy = _moments(x1, b, y, w)
        c = kp[:, None] - k[None, :]
        sxx = a11 + 2.0 * c * a12 + c * c * a22
        sxy = b1 + c * b2
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = sxy / sxx
    rss = yy - r1 * sxy
    return np.where(np.isfinite(rss) & (sxx > 0), rss, np.inf), r1


def srtm_grid_fit(x1, b, y, w) -> dict[str, np.ndarray]:
    """Basis-function SRTM (Gunn 1997): for each basis ``B_j`` solve the 2-parameter weighted
    least squares ``y ≈ θ1 x1 + θ2 B_j`` and keep, per row, the basis with the least RSS.

    Parameters
    ----------
    x1 : array (f,)
    b : array (K, f)
        Basis functions for the k2a grid.
    y : array (n, f)
        Target TACs.
    w : array (n, f) or (f,)
        Frame weights (per row: unlike :class:`sv2a.models.basis.SRTMBasis`, which needs
        weights common to all rows).

    Returns
    -------
    dict with ``index`` (n,) best basis, ``theta1``, ``theta2``, ``rss`` (n,), and ``rss_all``
    (n, K).
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    w = np.broadcast_to(np.asarray(w, dtype=float), y.shape)
    rss, t1, t2 = _srtm_rss(x1, b, y, w)
    j = np.argmin(rss, axis=1)
    r = np.arange(y.shape[0])
    return {"index": j, "theta1": t1[r, j], "theta2": t2[r, j], "rss": rss[r, j],
            "rss_all": rss}


def _golden(fun: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
            n_iter: int = 48) -> np.ndarray:
    """Vectorised golden-section minimisation of ``fun`` (rows independent) on [lo, hi]."""
    g = (np.sqrt(5.0) - 1) / 2
    a, b = lo.copy(), hi.copy()
    c = b - g * (b - a)
    d = a + g * (b - a)
    fc, fd = fun(c), fun(d)
    for _ in range(n_iter):
        left = fc < fd
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        nc = np.where(left, b - g * (b - a), d)
        nd = np.where(left, c, a + g * (b - a))
        fnew = fun(np.where(left, nc, nd))
        fc, fd = np.where(left, fnew, fd), np.where(left, fc, fnew)
        c, d = nc, nd
    return (a + b) / 2


def _bracket(grid: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lg = np.log(grid)
    lo = lg[np.clip(j - 1, 0, grid.size - 1)]
    hi = lg[np.clip(j + 1, 0, grid.size - 1)]
    return lo, hi


def srtm_refine(frames, cr, y, w, grid, j, *, sampling="frame", convolution="exact"):
    """Refine the basis-function SRTM solution to the exact nonlinear least-squares optimum.

    The SRTM model is linear in (R1, θ2) for fixed k2a, so the nonlinear problem reduces to a
    one-dimensional minimisation of the profiled RSS over ``log k2a`` (variable projection),
    done by golden section inside the bracket of the best grid point, vectorised over rows.

    Returns dict ``k2a``, ``theta1``, ``theta2``, ``rss`` (n,).
    """
    y = np.atleast_2d(y)
    w = np.broadcast_to(w, y.shape)

    def rows(lk):
        x1, b = _regressors_rows(frames, cr, np.exp(lk), sampling, convolution)
        return x1, b

    def f(lk):
        x1, b = rows(lk)
        return _srtm_rss(x1, b, y, w)[0]

    lo, hi = _bracket(grid, j)
    lk = _golden(f, lo, hi)
    x1, b = rows(lk)
    rss, t1, t2 = _srtm_rss(x1, b, y, w)
    return {"k2a": np.exp(lk), "theta1": t1, "theta2": t2, "rss": rss}


def _regressors_rows(frames, cr, k, sampling, convolution):
    x1, b = srtm_regressors(frames, cr, k, sampling=sampling, convolution=convolution)
    return x1[None, :], b


def srtm2_grid_fit(x1, b, y, w, grid, k2prime) -> dict[str, np.ndarray]:
    """Basis-function SRTM2 (Wu & Carson 2002) with ``k2'`` fixed.

    ``C_T = R1 [x1 + (k2' − k2a) B(k2a)]``: one linear parameter per basis; keep the best.
    ``k2prime`` is a scalar or an array (n,) (one value per row).

    Returns dict ``index``, ``R1``, ``rss`` (n,).
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    w = np.broadcast_to(np.asarray(w, dtype=float), y.shape)
    kp = np.broadcast_to(np.asarray(k2prime, dtype=float), (y.shape[0],))
    rss, r1 = _srtm2_rss(x1, b, y, w, kp, np.asarray(grid, dtype=float))
    j = np.argmin(rss, axis=1)
    r = np.arange(y.shape[0])
    best = rss[r, j]
    return {"index": j, "R1": np.where(np.isfinite(best), r1[r, j], np.nan), "rss": best}


def srtm2_refine(frames, cr, y, w, grid, j, k2prime, *, sampling="frame",
                 convolution="exact"):
    """Exact nonlinear least-squares SRTM2 by a profiled 1-D search over ``log k2a``.

    Returns dict ``k2a``, ``R1``, ``rss`` (n,).
    """
    y = np.atleast_2d(y)
    w = np.broadcast_to(w, y.shape)
    kp = np.broadcast_to(np.asarray(k2prime, dtype=float), (y.shape[0],))

    def f(lk):
        k = np.exp(lk)
        x1, b = _regressors_rows(frames, cr, k, sampling, convolution)
        return _srtm2_rss(x1, b, y, w, kp, k)[0]

    lo, hi = _bracket(grid, j)
    lk = _golden(f, lo, hi)
    k = np.exp(lk)
    x1, b = _regressors_rows(frames, cr, k, sampling, convolution)
    rss, r1 = _srtm2_rss(x1, b, y, w, kp, k)
    return {"k2a": k, "R1": r1, "rss": rss}


def mrtm_arrays(frames, cr, y, w, mask, *, integration="trapezoid") -> dict[str, np.ndarray]:
    """MRTM (Ichise 2003, "MRTM1"): ``C_T(t) = γ1 ∫C_R + γ2 ∫C_T + γ3 C_R`` over the frames in
    ``mask``; ``γ1 = R1 k2'``, ``γ2 = −k2a``, ``γ3 = R1``.

    Returns the WLS dict of :func:`wls_batch` plus derived ``BPND = −(γ1/γ2 + 1)``,
    ``R1 = γ3``, ``k2 = γ1``, ``k2a = −γ2``, ``k2prime = γ1/γ3`` with delta-method SEs.
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    n = y.shape[0]
    a = integral_matrix(frames.mid, method=integration, durations=frames.duration)
    icr = a @ np.asarray(cr, dtype=float)
    ict = y @ a.T
    x = np.empty((n, int(mask.sum()), 3))
    x[:, :, 0] = icr[mask]
    x[:, :, 1] = ict[:, mask]
    x[:, :, 2] = np.asarray(cr)[mask]
    ww = np.broadcast_to(w, y.shape)[:, mask]
    out = wls_batch(x, y[:, mask], ww)
    g1, g2, g3 = out["beta"].T
    cov = out["cov"]
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = {
            "BPND": (-(g1 / g2 + 1), np.stack([-1 / g2, g1 / g2**2, 0 * g1], 1)),
            "R1": (g3, np.stack([0 * g1, 0 * g1, 1 + 0 * g1], 1)),
            "k2": (g1, np.stack([1 + 0 * g1, 0 * g1, 0 * g1], 1)),
            "k2a": (-g2, np.stack([0 * g1, -1 + 0 * g1, 0 * g1], 1)),
            "k2prime": (g1 / g3, np.stack([1 / g3, 0 * g1, -g1 / g3**2], 1)),
        }
    _add_derived(out, derived, cov)
    return out


def mrtm2_arrays(frames, cr, y, w, mask, k2prime, *, integration="trapezoid"):
    """MRTM2 (Ichise 2003): ``C_T = γ1 (∫C_R + C_R/k2') + γ2 ∫C_T`` with ``k2'`` fixed;
    ``γ1 = R1 k2' = k2``, ``γ2 = −k2a``; ``BPND = −(γ1/γ2 + 1)``, ``R1 = γ1/k2'``."""
    y = np.atleast_2d(np.asarray(y, dtype=float))
    n = y.shape[0]
    kp = float(k2prime)
    a = integral_matrix(frames.mid, method=integration, durations=frames.duration)
    icr = a @ np.asarray(cr, dtype=float)
    ict = y @ a.T
    x = np.empty((n, int(mask.sum()), 2))
    x[:, :, 0] = (icr + np.asarray(cr) / kp)[mask]
    x[:, :, 1] = ict[:, mask]
    ww = np.broadcast_to(w, y.shape)[:, mask]
    out = wls_batch(x, y[:, mask], ww)
    g1, g2 = out["beta"].T
    z = 0 * g1
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = {
            "BPND": (-(g1 / g2 + 1), np.stack([-1 / g2, g1 / g2**2], 1)),
            "R1": (g1 / kp, np.stack([z + 1 / kp, z], 1)),
            "k2": (g1, np.stack([z + 1, z], 1)),
            "k2a": (-g2, np.stack([z, z - 1], 1)),
        }
    _add_derived(out, derived, out["cov"])
    return out


def logan_ref_arrays(frames, cr, y, w, mask, k2prime=None, *, integration="trapezoid",
                     transform_weights=True):
    """Reference Logan plot (Logan 1996):
    ``∫C_T/C_T = DVR · (∫C_R + C_R/k2')/C_T + b`` over the frames in ``mask`` (without
    ``k2'`` the ``C_R/k2'`` term is dropped). ``BPND = DVR − 1``.

    Non-uniform weights are propagated to the ordinate with the delta method when
    ``transform_weights`` (rows whose weights are all equal are fitted unweighted).
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    n, f = y.shape
    cr = np.asarray(cr, dtype=float)
    a = integral_matrix(frames.mid, method=integration, durations=frames.duration)
    icr = a @ cr
    ict = y @ a.T
    num = icr + (cr / float(k2prime) if k2prime is not None else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xv = num[None, :] / y
        yv = ict / y
    w = np.broadcast_to(np.asarray(w, dtype=float), y.shape)
    if transform_weights:
        uniform = np.all(w == w[:, :1], axis=1)
        if not uniform.all():
            w = w.copy()
            for i in np.flatnonzero(~uniform):
                w[i] = logan_weights(w[i], y[i], a)
    bad_frames = ~np.isfinite(xv[:, mask]) | ~np.isfinite(yv[:, mask])
    xm = np.where(bad_frames, 0.0, xv[:, mask])
    ym = np.where(bad_frames, 0.0, yv[:, mask])
    wm = np.where(bad_frames, 0.0, w[:, mask])
    x = np.stack([xm, np.ones_like(xm)], axis=2)
    out = wls_batch(x, ym, wm)
    out["DVR"] = out["beta"][:, 0]
    out["DVR_se"] = np.sqrt(out["cov"][:, 0, 0])
    out["intercept"] = out["beta"][:, 1]
    out["BPND"] = out["DVR"] - 1
    out["BPND_se"] = out["DVR_se"]
    return out


def _add_derived(out: dict, derived: dict, cov: np.ndarray) -> None:
    for name, (val, grad) in derived.items():
        out[name] = val
        with np.errstate(invalid="ignore"):
            out[f"{name}_se"] = np.sqrt(np.clip(np.einsum("np,npq,nq->n", grad, cov, grad),
                                                0, None))


# =====================================================================================
# Data handling shared by the model functions
# =====================================================================================

_COMMON_DEFAULTS: dict[str, Any] = {"weights": "uniform", "half_life": None}


def _prepare(tacs, reference, model: str, *, exclude_reference: bool = True):
    """Validated target matrix, region names, frames, reference TAC and its label."""
    if reference is None:
        raise RegionError(
            f"{model}: a reference region is required: pass reference='<region name>' (one of "
            "the TAC regions) or an array with one value per frame"
        )
    values, regions, frames = tac_matrix(tacs, model)
    if isinstance(reference, str):
        key = region_name(reference)
        if key not in regions:
            raise RegionError(
                f"{model}: reference region '{reference}' is not among the TAC regions "
                f"{regions}; pass one of these names or the reference TAC as an array"
            )
        i = regions.index(key)
        cr = values[i].copy()
        label = key
        if exclude_reference:
            keep = [j for j in range(len(regions)) if j != i]
            values = values[keep]
            regions = [regions[j] for j in keep]
    else:
        cr = np.asarray(getattr(reference, "values", reference), dtype=float).reshape(-1)
        label = "array"
        if cr.size != frames.n:
            raise ShapeMismatchError(
                f"{model}: the reference TAC has {cr.size} values but the TACs have {frames.n} "
                "frames; give one reference value per frame"
            )
        _, _, _ = tac_matrix(cr[None, :], model, frames=frames, regions=["reference"])
    if not regions:
        raise RegionError(f"{model}: no target regions left to fit besides the reference")
    return values, regions, frames, cr, label


def _weights(opts, values, frames):
    return frame_weights(opts["weights"], values, frames, half_life=opts["half_life"])


def _weights_label(w) -> str:
    return w if isinstance(w, str) else "array"


def _finish(model, regions, vals: dict, settings: dict, n_par: int) -> xr.Dataset:
    n = len(regions)
    ok = np.asarray(vals.pop("ok", np.ones(n, bool)), bool)
    msgs = np.asarray(vals.pop("message", np.full(n, "", dtype=object)), dtype=object)
    for i in np.flatnonzero(~ok):
        if not msgs[i]:
            msgs[i] = (f"{model} fit failed for region '{regions[i]}': singular or "
                       "ill-conditioned design (e.g. target identical to the reference or "
                       "too few informative frames)")
    for k in list(vals):
        if k not in ("converged", "at_bound", "n_frames"):
            v = np.asarray(vals[k], dtype=float).copy()
            v[~ok] = np.nan
            vals[k] = v
    vals["converged"] = ok & np.asarray(vals.get("converged", ok), bool)
    vals["at_bound"] = np.asarray(vals.get("at_bound", np.zeros(n, bool)), bool) & ok
    vals["aic"] = np.where(ok, aic(vals["rss"], np.maximum(vals["n_frames"], 1), n_par), np.nan)
    vals["message"] = msgs.astype(str)
    return build_result(model, regions, vals, attrs=settings, units=_UNITS)


def _region_index(regions: Sequence[str], name, model: str) -> list[int]:
    names = [name] if isinstance(name, str) else list(name)
    idx = []
    for nm in names:
        key = region_name(nm)
        if key not in regions:
            raise RegionError(
                f"{model}: k2prime_region '{nm}' is not a target region; choose from {regions}"
            )
        idx.append(regions.index(key))
    return idx


def _estimate_k2prime(values, regions, frames, cr, opts, model: str) -> tuple[float, dict]:
    """k2' from a first-pass SRTM or MRTM fit on a chosen region, a list of regions (mean),
    or -- by default -- the high-binding regions (first-pass BPND at or above the 75th
    percentile of the targets; mean of their k2')."""
    method = opts["k2prime"]
    if method not in ("srtm", "mrtm"):
        raise ModelError(
            f"{model}: k2prime must be a positive number (1/min), 'srtm' or 'mrtm' (estimate "
            f"it from a first-pass fit), got {method!r}"
        )
    sel = opts["k2prime_region"]
    idx = (list(range(len(regions))) if sel is None else _region_index(regions, sel, model))
    y = values[idx]
    if method == "mrtm":
        mask = np.ones(frames.n, bool)
        w = np.ones(frames.n)
        out = mrtm_arrays(frames, cr, y, w, mask, integration=opts.get("integration",
                                                                       "trapezoid"))
        bp, kp = out["BPND"], out["k2prime"]
        src = "MRTM (uniform weights, all frames)"
    else:
        w = _weights(opts, y, frames)
        out = _srtm_core(frames, cr, y, w, opts, method="nonlinear")
        bp, kp = out["BPND"], out["k2prime"]
        src = "SRTM"
    good = np.isfinite(kp) & (kp > 0) & np.isfinite(bp)
    if sel is None:
        if not good.any():
            raise FitError(f"{model}: no region gave a usable first-pass k2' ({src})")
        thr = np.percentile(bp[good], 75)
        use = good & (bp >= thr - 1e-12)
    else:
        use = good
        if not use.all():
            bad = [regions[idx[i]] for i in np.flatnonzero(~good)]
            raise FitError(
                f"{model}: the first-pass {src} fit gave no usable k2' for {bad}; choose other "
                "k2prime_region(s) or give k2prime= as a number"
            )
    used = [regions[idx[i]] for i in np.flatnonzero(use)]
    k2p = float(np.mean(kp[use]))
    info = {"k2prime_source": f"{src} on {used}" + (" (mean)" if len(used) > 1 else ""),
            "k2prime_regions": used, "k2prime_estimated": k2p}
    return k2p, info


def _resolve_k2prime(values, regions, frames, cr, opts, model, *, allow_none=False):
    kp = opts["k2prime"]
    if kp is None:
        if allow_none:
            return None, {"k2prime_source": "none (no k2' term)"}
        raise ModelError(f"{model}: needs k2prime= (a number, 'srtm' or 'mrtm')")
    if isinstance(kp, str):
        return _estimate_k2prime(values, regions, frames, cr, opts, model)
    try:
        kpf = float(kp)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{model}: k2prime must be a number, 'srtm' or 'mrtm', got {kp!r}") \
            from exc
    if not np.isfinite(kpf) or kpf <= 0:
        raise ModelError(f"{model}: k2prime must be > 0 (1/min), got {kp!r}")
    return kpf, {"k2prime_source": "given"}


# =====================================================================================
# SRTM / SRTM2
# =====================================================================================

_SRTM_DEFAULTS = {
    **_COMMON_DEFAULTS,
    "method": "nonlinear",
    "sampling": "frame",
    "convolution": "exact",
    "k2a_min": 0.005,
    "k2a_max": 1.0,
    "n_basis": 100,
}


def _check_conv_opts(opts, model):
    if opts["method"] not in ("nonlinear", "basis"):
        raise ModelError(f"{model}: method must be 'nonlinear' or 'basis', got {opts['method']!r}")
    if opts["sampling"] not in ("frame", "mid"):
        raise ModelError(f"{model}: sampling must be 'frame' or 'mid', got {opts['sampling']!r}")
    if opts["convolution"] not in ("exact", "kinfitr", "step"):
        raise ModelError(
            f"{model}: convolution must be 'exact', 'kinfitr' or 'step', got "
            f"{opts['convolution']!r}")
    if opts["convolution"] == "kinfitr" and opts["sampling"] == "frame":
        raise ModelError(
            f"{model}: convolution='kinfitr' samples the model at mid-times; pass "
            "sampling='mid' with it"
        )
    if opts["convolution"] == "step" and opts["sampling"] == "mid":
        raise ModelError(
            f"{model}: convolution='step' (TAC held at the frame mean, as the voxelwise maps) "
            "gives frame averages; use sampling='frame' with it"
        )


def _srtm_core(frames, cr, y, w, opts, *, method=None):
    method = method or opts["method"]
    grid = rate_grid(opts["k2a_min"], opts["k2a_max"], opts["n_basis"],
                     what="k2a_min/k2a_max")
    smp, cnv = opts["sampling"], opts["convolution"]
    x1, b = srtm_regressors(frames, cr, grid, sampling=smp, convolution=cnv)
    g = srtm_grid_fit(x1, b, y, w)
    if method == "basis":
        k = grid[g["index"]]
        t1, t2, rss = g["theta1"], g["theta2"], g["rss"]
        edge = (g["index"] == 0) | (g["index"] == grid.size - 1)
    else:
        r = srtm_refine(frames, cr, y, w, grid, g["index"], sampling=smp, convolution=cnv)
        k, t1, t2, rss = r["k2a"], r["theta1"], r["theta2"], r["rss"]
        edge = (np.abs(np.log(k / grid[0])) < 1e-6) | (np.abs(np.log(k / grid[-1])) < 1e-6)
    r1 = t1
    k2 = t2 + r1 * k
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = k2 / k - 1
        kp = k2 / r1
    # standard errors: Jacobian in (R1, θ2, k2a), delta method to derived parameters
    h = 1e-4
    _, bp_ = _regressors_rows(frames, cr, k * (1 + h), smp, cnv)
    _, bm_ = _regressors_rows(frames, cr, k * (1 - h), smp, cnv)
    x1r, b0 = _regressors_rows(frames, cr, k, smp, cnv)
    db = (bp_ - bm_) / (2 * h * k[:, None])
    n = y.shape[0]
    jac = np.stack([np.broadcast_to(x1r, b0.shape), b0, t2[:, None] * db], axis=2)
    cov = _gn_cov(jac, w, rss, 3)
    z = 0 * k
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = {
            "R1": (r1, np.stack([z + 1, z, z], 1)),
            "k2": (k2, np.stack([k, z + 1, r1], 1)),
            "BPND": (bp, np.stack([z + 1, 1 / k, -t2 / k**2], 1)),
            "k2a": (k, np.stack([z, z, z + 1], 1)),
            "k2prime": (kp, np.stack([-t2 / r1**2, 1 / r1, z + 1], 1)),
        }
    out = {"rss": rss, "at_bound": edge, "ok": np.isfinite(rss) & np.isfinite(bp)}
    _add_derived(out, derived, cov)
    out["n_frames"] = (np.broadcast_to(w, y.shape) > 0).sum(1)
    assert out["n_frames"].shape == (n,)
    return out


def _gn_cov(jac, w, rss, p):
    """Gauss-Newton covariance ``s² (JᵀWJ)⁻¹`` per row; jac (n, f, p)."""
    w = np.broadcast_to(w, jac.shape[:2])
    a = np.einsum("nfp,nf,nfq->npq", jac, w, jac)
    m = (w > 0).sum(1)
    s2 = rss / np.maximum(m - p, 1)
    cov = np.full(a.shape, np.nan)
    good = np.isfinite(a).all(axis=(1, 2))
    if good.any():
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            cond = np.linalg.cond(a[good])
        idx = np.flatnonzero(good)[cond < 1e14]
        if idx.size:
            cov[idx] = np.linalg.inv(a[idx]) * s2[idx, None, None]
    return cov


def _settings(model, label, frames, opts, extra=None) -> dict:
    s = {"reference": label, "weights": _weights_label(opts["weights"]),
         "scan_end_min": float(frames.end[-1]), "n_frames_scan": frames.n}
    for k, v in opts.items():
        if k == "weights":
            continue
        s[k] = v
    s.update(extra or {})
    return s


@register("srtm", kind="reference", parameters=("BPND", "R1", "k2", "k2a", "k2prime", "DVR"),
          description="Simplified reference tissue model (Lammertsma & Hume 1996; basis "
                      "functions Gunn 1997)")
def srtm(tacs: xr.DataArray, *, input=None, reference=None, **options) -> xr.Dataset:
    """Simplified reference tissue model (SRTM).

    Equation (Lammertsma & Hume 1996)::

        C_T(t) = R1 C_R(t) + (k2 − R1 k2 / (1 + BPND)) · C_R(t) ⊗ exp(−k2a t),
        k2a = k2 / (1 + BPND)

    Assumptions: target and reference are each one-tissue compartment (fast exchange between
    free and bound), the reference has no specific binding, equal ``K1/k2`` (VND) in target and
    reference, negligible blood volume.

    Parameters
    ----------
    tacs : xr.DataArray (region x frame)
        Target (and reference) TACs, kBq/mL, times in min.
    reference : str or array (n_frames,)
        Reference-region name (left out of the result) or TAC.
    method : {"nonlinear", "basis"}
        ``"basis"``: Gunn et al. (1997) basis functions over ``n_basis`` (100) log-spaced k2a
        values in ``[k2a_min, k2a_max]`` (0.005–1 /min), linear least squares per basis, best
        RSS. ``"nonlinear"`` (default): the same followed by an exact 1-D refinement of k2a
        (variable projection), i.e. the nonlinear least-squares optimum with k2a bounded to
        the grid range.
    sampling : {"frame", "mid"}
        Frame-averaged (default) or mid-time model values.
    convolution : {"exact", "kinfitr", "step"}
        See the module notes; ``"kinfitr"`` needs ``sampling="mid"``, ``"step"`` the default
        ``sampling="frame"``.
    weights : str or array
        ``"uniform"`` (default), ``"duration"``, ``"kinfitr"``, ``"variance"`` or an array.
    half_life : float, optional
        Half-life (min) for TAC-dependent weights when the TACs carry none.

    Returns
    -------
    xr.Dataset
        ``BPND R1 k2 k2a k2prime (= k2/R1) DVR`` with ``*_se`` (Gauss–Newton covariance,
        delta method), ``rss aic n_frames converged at_bound`` (k2a at the end of its range).
    """
    opts = check_options("srtm", options, _SRTM_DEFAULTS)
    _check_conv_opts(opts, "srtm")
    values, regions, frames, cr, label = _prepare(tacs, reference, "srtm")
    w = _weights(opts, values, frames)
    out = _srtm_core(frames, cr, values, w, opts)
    out["DVR"] = out["BPND"] + 1
    out["DVR_se"] = out["BPND_se"]
    out["tstar"] = np.full(len(regions), np.nan)
    return _finish("srtm", regions, out, _settings("srtm", label, frames, opts), 3)


_SRTM2_DEFAULTS = {**_SRTM_DEFAULTS, "k2prime": "srtm", "k2prime_region": None}


@register("srtm2", kind="reference", parameters=("BPND", "R1", "k2", "k2a", "k2prime", "DVR"),
          description="SRTM with k2' fixed (Wu & Carson 2002)")
def srtm2(tacs: xr.DataArray, *, input=None, reference=None, **options) -> xr.Dataset:
    """SRTM2: SRTM with the reference efflux rate ``k2'`` fixed (Wu & Carson 2002).

    Equation::

        C_T(t) = R1 [C_R(t) + (k2' − k2a) · C_R(t) ⊗ exp(−k2a t)],   k2a = R1 k2' / (1 + BPND)

    Two parameters (R1, BPND) per region; ``k2 = R1 k2'``. Assumptions as SRTM, plus a common
    ``k2'`` for all target regions.

    Parameters
    ----------
    k2prime : float or {"srtm", "mrtm"}
        A value (1/min), or estimate it: ``"srtm"`` (default) from a first-pass SRTM fit
        (``k2' = k2/R1``, same weights and sampling), ``"mrtm"`` from MRTM1 (uniform weights,
        all frames, trapezoid integrals).
    k2prime_region : str, list of str or None
        Region(s) whose first-pass k2' is used (mean over a list). ``None`` (default): the
        high-binding regions, i.e. those whose first-pass BPND is at or above the 75th
        percentile of the target regions; their k2' values are averaged.
    method, sampling, convolution, weights, k2a_min, k2a_max, n_basis, half_life
        As :func:`srtm`.

    Returns
    -------
    xr.Dataset
        ``BPND R1 k2 k2a k2prime DVR`` (+ ``*_se``; ``k2prime_se`` is 0 for a fixed value),
        diagnostics; attrs ``k2prime_used`` and ``k2prime_source``.
    """
    opts = check_options("srtm2", options, _SRTM2_DEFAULTS)
    _check_conv_opts(opts, "srtm2")
    values, regions, frames, cr, label = _prepare(tacs, reference, "srtm2")
    kp, info = _resolve_k2prime(values, regions, frames, cr, opts, "srtm2")
    w = _weights(opts, values, frames)
    grid = rate_grid(opts["k2a_min"], opts["k2a_max"], opts["n_basis"],
                     what="k2a_min/k2a_max")
    smp, cnv = opts["sampling"], opts["convolution"]
    x1, b = srtm_regressors(frames, cr, grid, sampling=smp, convolution=cnv)
    g = srtm2_grid_fit(x1, b, values, w, grid, kp)
    if opts["method"] == "basis":
        k, r1, rss = grid[g["index"]], g["R1"], g["rss"]
        edge = (g["index"] == 0) | (g["index"] == grid.size - 1)
    else:
        r = srtm2_refine(frames, cr, values, w, grid, g["index"], kp, sampling=smp,
                         convolution=cnv)
        k, r1, rss = r["k2a"], r["R1"], r["rss"]
        edge = (np.abs(np.log(k / grid[0])) < 1e-6) | (np.abs(np.log(k / grid[-1])) < 1e-6)
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = r1 * kp / k - 1
    h = 1e-4
    _, bp_ = _regressors_rows(frames, cr, k * (1 + h), smp, cnv)
    _, bm_ = _regressors_rows(frames, cr, k * (1 - h), smp, cnv)
    x1r, b0 = _regressors_rows(frames, cr, k, smp, cnv)
    db = (bp_ - bm_) / (2 * h * k[:, None])
    xr_ = x1r + (kp - k)[:, None] * b0
    jac = np.stack([xr_, r1[:, None] * (-b0 + (kp - k)[:, None] * db)], axis=2)
    cov = _gn_cov(jac, w, rss, 2)
    z = 0 * k
    out = {"rss": rss, "at_bound": edge, "ok": np.isfinite(rss) & np.isfinite(bp)}
    with np.errstate(divide="ignore", invalid="ignore"):
        _add_derived(out, {
            "R1": (r1, np.stack([z + 1, z], 1)),
            "BPND": (bp, np.stack([kp / k, -r1 * kp / k**2], 1)),
            "k2a": (k, np.stack([z, z + 1], 1)),
            "k2": (r1 * kp, np.stack([z + kp, z], 1)),
        }, cov)
    out["k2prime"] = np.full(len(regions), kp)
    out["k2prime_se"] = np.zeros(len(regions))
    out["DVR"] = bp + 1
    out["DVR_se"] = out["BPND_se"]
    out["n_frames"] = (np.broadcast_to(w, values.shape) > 0).sum(1)
    out["tstar"] = np.full(len(regions), np.nan)
    st = _settings("srtm2", label, frames, opts, {"k2prime_used": kp, **info})
    return _finish("srtm2", regions, out, st, 2)


# =====================================================================================
# MRTM / MRTM2 / reference Logan
# =====================================================================================

_LIN_DEFAULTS = {**_COMMON_DEFAULTS, "integration": "trapezoid", "tstar": None,
                 "n_frames": None}


def _check_integration(opts, model):
    if opts["integration"] not in ("trapezoid", "framecumsum"):
        raise ModelError(
            f"{model}: integration must be 'trapezoid' or 'framecumsum', got "
            f"{opts['integration']!r}"
        )


def _linear_finish(model, regions, frames, out, w, mask, settings, n_par, keep):
    n = len(regions)
    vals = {k: out[k] for k in keep if k in out}
    vals["rss"] = out["rss"]
    vals["ok"] = out["ok"] & np.isfinite(out["BPND"])
    vals["n_frames"] = (np.broadcast_to(w, (n, frames.n))[:, mask] > 0).sum(1)
    vals["tstar"] = np.full(n, float(frames.mid[mask][0]))
    return _finish(model, regions, vals, settings, n_par)


@register("mrtm", kind="reference", parameters=("BPND", "R1", "k2", "k2a", "k2prime", "DVR"),
          description="Multilinear reference tissue model MRTM1 (Ichise 2003)")
def mrtm(tacs: xr.DataArray, *, input=None, reference=None, **options) -> xr.Dataset:
    """MRTM ("MRTM1", Ichise et al. 2003): three-parameter multilinear reference tissue model.

    Equation::

        C_T(T) = γ1 ∫_0^T C_R + γ2 ∫_0^T C_T + γ3 C_R(T)
        γ1 = R1 k2',  γ2 = −k2a,  γ3 = R1;   BPND = −(γ1/γ2 + 1),  k2' = γ1/γ3

    Assumptions: as SRTM for all frames used (or a ``tstar`` after which the target behaves as
    one tissue compartment). Linear least squares; noise in ∫C_T makes it slightly biased at
    high noise.

    Parameters
    ----------
    tstar : float, optional
        Use frames with mid-time >= tstar (min). ``n_frames``: the last N frames instead.
        Default: all frames.
    integration : {"trapezoid", "framecumsum"}
        Trapezoid on mid-times with (0, 0) (default, as kinfitr) or kinfitr's framecumsum.
    weights : str or array
        Default ``"uniform"`` (ordinary least squares, as kinfitr).

    Returns
    -------
    xr.Dataset
        ``BPND R1 k2 (= γ1) k2a k2prime DVR`` (+ ``*_se`` by the delta method), ``rss aic
        n_frames tstar converged``.
    """
    opts = check_options("mrtm", options, _LIN_DEFAULTS)
    _check_integration(opts, "mrtm")
    values, regions, frames, cr, label = _prepare(tacs, reference, "mrtm")
    mask = select_frames(frames.mid, tstar=opts["tstar"], n_frames=opts["n_frames"],
                         model="mrtm", min_frames=4)
    w = _weights(opts, values, frames)
    out = mrtm_arrays(frames, cr, values, w, mask, integration=opts["integration"])
    out["DVR"], out["DVR_se"] = out["BPND"] + 1, out["BPND_se"]
    keep = [f"{p}{s}" for p in ("BPND", "R1", "k2", "k2a", "k2prime", "DVR") for s in ("", "_se")]
    return _linear_finish("mrtm", regions, frames, out, w, mask,
                          _settings("mrtm", label, frames, opts), 3, keep)


_MRTM2_DEFAULTS = {**_LIN_DEFAULTS, "k2prime": "mrtm", "k2prime_region": None}


@register("mrtm2", kind="reference", parameters=("BPND", "R1", "k2", "k2a", "k2prime", "DVR"),
          description="MRTM2 with k2' fixed (Ichise 2003)")
def mrtm2(tacs: xr.DataArray, *, input=None, reference=None, **options) -> xr.Dataset:
    """MRTM2 (Ichise et al. 2003): two-parameter multilinear model with ``k2'`` fixed.

    Equation::

        C_T(T) = γ1 (∫_0^T C_R + C_R(T)/k2') + γ2 ∫_0^T C_T
        γ1 = R1 k2' = k2,  γ2 = −k2a;   BPND = −(γ1/γ2 + 1),  R1 = γ1/k2'

    Parameters
    ----------
    k2prime : float or {"mrtm", "srtm"}
        Fixed value (1/min) or estimated from a first-pass MRTM1 (default) / SRTM fit on
        ``k2prime_region`` (a region, a list -> mean, or None -> high-binding regions, see
        :func:`srtm2`).
    tstar, n_frames, integration, weights
        As :func:`mrtm`.

    Returns
    -------
    xr.Dataset
        ``BPND R1 k2 k2a k2prime DVR`` (+ ``*_se``), diagnostics; attrs ``k2prime_used``.
        (kinfitr's MRTM2 "R1" column holds 1 + BPND; sv2a's R1 is ``γ1/k2'``.)
    """
    opts = check_options("mrtm2", options, _MRTM2_DEFAULTS)
    _check_integration(opts, "mrtm2")
    values, regions, frames, cr, label = _prepare(tacs, reference, "mrtm2")
    mask = select_frames(frames.mid, tstar=opts["tstar"], n_frames=opts["n_frames"],
                         model="mrtm2", min_frames=3)
    kp, info = _resolve_k2prime(values, regions, frames, cr, _srtm_opts_for(opts), "mrtm2")
    w = _weights(opts, values, frames)
    out = mrtm2_arrays(frames, cr, values, w, mask, kp, integration=opts["integration"])
    out["DVR"], out["DVR_se"] = out["BPND"] + 1, out["BPND_se"]
    out["k2prime"] = np.full(len(regions), kp)
    out["k2prime_se"] = np.zeros(len(regions))
    keep = [f"{p}{s}" for p in ("BPND", "R1", "k2", "k2a", "k2prime", "DVR") for s in ("", "_se")]
    st = _settings("mrtm2", label, frames, opts, {"k2prime_used": kp, **info})
    return _linear_finish("mrtm2", regions, frames, out, w, mask, st, 2, keep)


def _srtm_opts_for(opts: dict) -> dict:
    """Options for a first-pass SRTM when a linear model estimates k2' with k2prime='srtm'."""
    o = dict(_SRTM_DEFAULTS)
    o.update({k: opts[k] for k in ("weights", "half_life", "k2prime", "k2prime_region",
                                   "integration") if k in opts})
    return o


_LOGAN_DEFAULTS = {**_LIN_DEFAULTS, "k2prime": None, "k2prime_region": None,
                   "transform_weights": True}


@register("logan_ref", kind="reference", parameters=("DVR", "BPND", "k2prime"),
          description="Reference Logan plot (Logan 1996), with or without k2'")
def logan_ref(tacs: xr.DataArray, *, input=None, reference=None, **options) -> xr.Dataset:
    """Reference-tissue Logan plot (Logan et al. 1996).

    Equation (linear for t > t*)::

        ∫_0^T C_T / C_T(T) = DVR · [∫_0^T C_R + C_R(T)/k2'] / C_T(T) + b,   BPND = DVR − 1

    Without ``k2'`` (``k2prime=None``, default) the ``C_R/k2'`` term is dropped (valid when
    it is small relative to ∫C_R late in the scan; TPCCLIB ``logan`` without ``-k2``).

    Parameters
    ----------
    k2prime : None, float or {"mrtm", "srtm"}
        No ``k2'`` term (default), a value (1/min), or estimated from a first-pass fit on
        ``k2prime_region`` (see :func:`srtm2`).
    tstar : float, optional
        First frame used: mid-time >= tstar (min). Or ``n_frames`` (last N frames). One of the
        two is required in practice; by default all frames are used (rarely appropriate).
    integration : {"trapezoid", "framecumsum"}
    weights : str or array
        ``"uniform"`` (default: unweighted regression, as kinfitr/TPCCLIB); other frame weights
        are propagated to the plot ordinate by the delta method unless
        ``transform_weights=False``.

    Returns
    -------
    xr.Dataset
        ``DVR BPND k2prime`` (+ ``DVR_se BPND_se``), ``rss aic n_frames tstar converged``.
    """
    opts = check_options("logan_ref", options, _LOGAN_DEFAULTS)
    _check_integration(opts, "logan_ref")
    values, regions, frames, cr, label = _prepare(tacs, reference, "logan_ref")
    mask = select_frames(frames.mid, tstar=opts["tstar"], n_frames=opts["n_frames"],
                         model="logan_ref", min_frames=3)
    kp, info = _resolve_k2prime(values, regions, frames, cr, _srtm_opts_for(opts),
                                "logan_ref", allow_none=True)
    w = _weights(opts, values, frames)
    out = logan_ref_arrays(frames, cr, values, w, mask, kp, integration=opts["integration"],
                           transform_weights=opts["transform_weights"])
    n = len(regions)
    out["k2prime"] = np.full(n, np.nan if kp is None else kp)
    keep = ["DVR", "DVR_se", "BPND", "BPND_se", "k2prime"]
    st = _settings("logan_ref", label, frames, opts,
                   {"k2prime_used": "none" if kp is None else kp, **info})
    return _linear_finish("logan_ref", regions, frames, out, w, mask, st, 2, keep)
