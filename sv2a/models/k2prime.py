"""The reference efflux rate ``k2'``: one estimation rule for regions and voxels.

``k2' = K1'/k2'`` of the reference region is shared by every target, so SRTM2, MRTM2 and
reference Logan fix it. :func:`resolve_k2prime` turns the ``k2prime`` option into a number:

``float``
    Used as given (1/min).
``"coupled"``
    The value minimising the summed weighted SRTM2 residuals of all target TACs (rows
    weighted by region volume at region scale, one weight per voxel at voxel scale): the
    joint least-squares estimate of the shared ``k2'``. Bounded Brent search over
    ``log k2'`` in (0.001, 1) /min; no selection of "high-binding" targets, so no selection
    bias from noise. With more than 20,000 rows an evenly spaced subset is used.
``"srtm"`` / ``"mrtm"``
    A first-pass SRTM / MRTM fit of every target TAC (``k2' = k2/R1``); the estimate is the
    weighted median of the usable values (rows weighted as above), robust to noisy rows.

The targets are the rows given by the adapter: ``k2prime_region`` (region names, or a mask at
voxel scale) or, by default, all target TACs. Because the rule only sees rows and their
weights, an image whose voxels carry their region's TAC gives the same ``k2'`` as the
regional fit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import DataError, FitError, ModelError
from ..frames import FrameSchedule
from .base import ModelInputs

__all__ = ["resolve_k2prime", "weighted_median", "K2PRIME_BOUNDS", "MAX_ROWS"]

FloatArray = NDArray[np.float64]

#: Search interval of the coupled estimate (1/min).
K2PRIME_BOUNDS = (1e-3, 1.0)
#: Most target rows used by an estimate (an evenly spaced subset beyond).
MAX_ROWS = 20_000


def weighted_median(x: FloatArray, w: FloatArray) -> float:
    """Weighted median (the lower one at an exact half).

    Parameters
    ----------
    x : array (n,)
        Values.
    w : array (n,)
        Positive weights.

    Returns
    -------
    float

    Examples
    --------
    >>> weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1.0, 3.0]))
    10.0
    """
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cw, 0.5 * cw[-1] * (1 - 1e-12))])


def resolve_k2prime(options: Any, *, model: str, frames: FrameSchedule, reference: FloatArray,
                    rows: FloatArray, row_weights: FloatArray | None, weights: FloatArray,
                    allow_none: bool = False) -> tuple[float | None, dict[str, Any]]:
    """The ``k2'`` (1/min) asked for by ``options.k2prime``.

    Parameters
    ----------
    options : dataclass
        The model's options (``k2prime`` and, when present, the basis settings
        ``rate_range``, ``n_basis``, ``sampling``, ``convolution``, ``integration``).
    model : str
        Model name, for messages.
    frames : FrameSchedule
        Frame timing (min).
    reference : array (n_frames,)
        Reference TAC (kBq/mL).
    rows : array (n, n_frames)
        Target TACs used for the estimate (kBq/mL).
    row_weights : array (n,), optional
        Weight of each row (region volumes); default equal.
    weights : array (n_frames,)
        Frame weights.
    allow_none : bool
        ``k2prime=None`` is allowed (reference Logan without the ``C_R/k2'`` term).

    Returns
    -------
    (float or None, dict)
        ``k2'`` and provenance (``k2prime_source`` and details) for the result attrs.

    Raises
    ------
    ModelError
        Invalid ``k2prime``.
    DataError
        No finite target TAC.
    FitError
        The estimate is not usable (coupled search at its bound, first-pass ``k2' <= 0``).
    """
    from .srtm import check_k2prime

    spec = options.k2prime
    if spec is None:
        if allow_none:
            return None, {"k2prime_source": "none (no k2' term)"}
        raise ModelError(f"{model}: needs k2prime= (a number, 'coupled', 'srtm' or 'mrtm')")
    if not isinstance(spec, str):
        return check_k2prime(spec, model), {"k2prime_source": "given"}
    if spec not in ("coupled", "srtm", "mrtm"):
        raise ModelError(f"{model}: k2prime must be a number (1/min), 'coupled', 'srtm' or "
                         f"'mrtm', got {spec!r}")
    y = np.asarray(rows, dtype=float)
    rw = np.ones(y.shape[0]) if row_weights is None else np.asarray(row_weights, dtype=float)
    good = np.all(np.isfinite(y), axis=1) & np.isfinite(rw) & (rw > 0)
    y, rw = y[good], rw[good]
    if y.shape[0] == 0:
        raise DataError(f"{model}: no finite target TAC to estimate k2' from")
    if spec == "coupled":
        return _coupled(options, model, frames, reference, y, rw, weights)
    if y.shape[0] > MAX_ROWS:
        sel = np.linspace(0, y.shape[0] - 1, MAX_ROWS).astype(int)
        y, rw = y[sel], rw[sel]
    return _first_pass(spec, options, model, frames, reference, y, rw, weights)


def _basis_options(options: Any) -> dict[str, Any]:
    keys = ("weights", "half_life", "sampling", "convolution", "rate_range", "n_basis")
    return {k: getattr(options, k) for k in keys if hasattr(options, k)}


def _coupled(options: Any, model: str, frames: FrameSchedule, reference: FloatArray,
             y: FloatArray, rw: FloatArray, weights: FloatArray
             ) -> tuple[float, dict[str, Any]]:
    from scipy.optimize import minimize_scalar

    from ._kinetics import rate_grid, tac_convolution
    from .basis_ls import BasisLS
    from .srtm2 import SRTM2Options

    if y.shape[0] > MAX_ROWS:
        sel = np.linspace(0, y.shape[0] - 1, MAX_ROWS).astype(int)
        y, rw = y[sel], rw[sel]
    o = SRTM2Options(**{k: v for k, v in _basis_options(options).items()
                        if k not in ("weights", "half_life")})
    thetas = rate_grid(*o.rate_range, o.n_basis, what="rate_range")
    x1, conv = tac_convolution(frames, reference, thetas, sampling=o.sampling,
                               convolution=o.convolution)
    x1 = np.asarray(x1, dtype=float)
    rw = rw / rw.sum()

    def total_rss(log_k: float) -> float:
        fam = x1[None, :] + (np.exp(log_k) - thetas)[:, None] * conv
        rss = BasisLS(fam, thetas, weights, r0=None, refine=True).solve(y)["rss"]
        return float(rw @ np.asarray(rss, dtype=float))

    lo, hi = np.log(K2PRIME_BOUNDS[0]), np.log(K2PRIME_BOUNDS[1])
    xatol = 1e-4  # 0.01 % in k2'; far below its statistical uncertainty
    res = minimize_scalar(total_rss, bounds=(lo, hi), method="bounded",
                          options={"xatol": xatol})
    k = float(np.exp(res.x))
    if min(res.x - lo, hi - res.x) < 100 * xatol:
        raise FitError(
            f"{model}: the coupled k2' estimate hit the edge of its search range "
            f"{K2PRIME_BOUNDS} 1/min (k2' = {k:.4g}); the reference TAC may be wrong, or pass "
            "k2prime= as a number")
    return k, {"k2prime_source": f"coupled SRTM2 over {y.shape[0]} target TACs",
               "k2prime_evaluations": int(res.nfev)}


def _first_pass(spec: str, options: Any, model: str, frames: FrameSchedule,
                reference: FloatArray, y: FloatArray, rw: FloatArray, weights: FloatArray
                ) -> tuple[float, dict[str, Any]]:
    inputs = ModelInputs(frames=frames, weights=weights, reference=reference)
    if spec == "srtm":
        from .srtm import SRTM, SRTMOptions

        kw = {k: v for k, v in _basis_options(options).items()
              if k not in ("weights", "half_life")}
        out = SRTM(inputs, SRTMOptions(**kw)).solve(y)
        src = "SRTM"
    else:
        from .mrtm import MRTM, MRTMOptions

        integ: Any = getattr(options, "integration", "trapezoid")
        out = MRTM(dataclasses.replace(inputs, weights=np.ones(frames.n)),
                   MRTMOptions(integration=integ)).solve(y)
        src = "MRTM (uniform weights, all frames)"
    kp = np.asarray(out["k2prime"], dtype=float)
    ok = np.isfinite(kp) & (kp > 0)
    if not ok.any():
        raise FitError(
            f"{model}: the first-pass {src} fits gave no usable k2'; choose other "
            "k2prime_region(s) or give k2prime= as a number")
    k = weighted_median(kp[ok], rw[ok])
    return k, {"k2prime_source": f"{src} fits of {int(ok.sum())} target TACs (weighted "
                                 "median)"}
