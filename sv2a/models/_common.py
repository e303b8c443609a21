"""Helpers shared by every regional model (plasma input, reference tissue, static).

Each model function follows the same pattern::

    opts = check_options("1tcm", options, DEFAULTS)            # unknown option -> ModelError
    values, regions, frames = tac_matrix(tacs, "1tcm")          # NaN/negative -> DataError
    sel = select_frames(frames.mid, tstar=..., n_frames=..., model="logan")   # -> FitError
    out = fit_regions(regions, fit_one, names, model="1tcm")    # one failing region -> NaN
    return build_result("1tcm", regions, out, attrs=settings)

so that options, error messages and failure handling are identical across models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError, FitError, ModelError, Sv2aError
from ..frames import FrameSchedule
from ..tacs import frames_of

__all__ = [
    "check_options",
    "tac_matrix",
    "select_frames",
    "fit_regions",
    "aic",
    "jacobian_se",
    "at_bound",
    "wls_batch",
    "NEGATIVE_TOLERANCE",
]

#: Negative TAC values are accepted only down to this fraction of the region's peak
#: (counting noise around zero in early frames); below it :func:`tac_matrix` raises.
NEGATIVE_TOLERANCE = 0.02


def check_options(model: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """Merge user ``options`` into ``defaults``; unknown names raise :class:`ModelError`.

    Parameters
    ----------
    model : str
        Model name, used in the message.
    options : mapping
        Keyword options the user passed to ``sv2a.fit``.
    defaults : mapping
        Every valid option name with its default value.

    Returns
    -------
    dict
        ``defaults`` updated with ``options``.

    Raises
    ------
    ModelError
        If an option is not in ``defaults``; the message lists the valid options.
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ModelError(
            f"model '{model}' does not take option(s) {unknown}; valid options: "
            f"{', '.join(sorted(defaults))}"
        )
    out = dict(defaults)
    out.update(options)
    return out


def tac_matrix(
    tacs: xr.DataArray | np.ndarray,
    model: str,
    *,
    frames: FrameSchedule | None = None,
    regions: Sequence[str] | None = None,
    negative_tolerance: float = NEGATIVE_TOLERANCE,
) -> tuple[np.ndarray, list[str], FrameSchedule]:
    """Validated TAC values ``(n_regions, n_frames)``, region names and frame schedule.

    Parameters
    ----------
    tacs : xr.DataArray (region x frame) or array
        TACs from :func:`sv2a.tacs_from_arrays`/:func:`sv2a.extract_tacs`. A plain array needs
        ``frames=`` (and optionally ``regions=``); a 1-D array is one region.
    model : str
        Model name, used in messages.
    frames : FrameSchedule, optional
        Frame timing for plain arrays (ignored for a DataArray, which carries its own).
    regions : sequence of str, optional
        Names for plain arrays (default ``region_0``, ``region_1``, ...).
    negative_tolerance : float
        Values below ``-negative_tolerance * max(region)`` raise; smaller negatives (noise
        around zero before the bolus arrives) are kept.

    Raises
    ------
    DataError
        NaN/inf values, or clearly negative values, naming the region and frame index; an
        all-zero region.
    """
    if isinstance(tacs, xr.DataArray):
        if "region" not in tacs.dims or "frame" not in tacs.dims:
            raise DataError(
                f"{model}: TACs must have dims ('region', 'frame'), got {tacs.dims}; build them "
                "with sv2a.tacs_from_arrays or sv2a.extract_tacs"
            )
        t = tacs.transpose("region", "frame")
        values = np.asarray(t.values, dtype=float)
        names = [str(r) for r in t["region"].values]
        frames = frames_of(t)
    else:
        if frames is None:
            raise DataError(f"{model}: plain-array TACs need frames= (a FrameSchedule)")
        values = np.asarray(tacs, dtype=float)
        if values.ndim == 1:
            values = values[None, :]
        names = list(regions) if regions is not None else [
            f"region_{i}" for i in range(values.shape[0])]
    if values.ndim != 2 or values.shape[1] != frames.n or values.shape[0] != len(names):
        raise DataError(
            f"{model}: TAC values have shape {values.shape}; expected ({len(names)}, {frames.n}) "
            "(regions x frames)"
        )
    bad = ~np.isfinite(values)
    if bad.any():
        r, f = np.argwhere(bad)[0]
        raise DataError(
            f"{model}: non-finite TAC value in region '{names[r]}' at frame index {f} "
            f"({int(bad.sum())} in all); fix or drop the region before fitting"
        )
    peak = np.max(np.abs(values), axis=1)
    zero = np.flatnonzero(peak == 0)
    if zero.size:
        raise DataError(
            f"{model}: region '{names[zero[0]]}' is zero in every frame; check the atlas "
            "label and the image"
        )
    neg = values < -negative_tolerance * peak[:, None]
    if neg.any():
        r, f = np.argwhere(neg)[0]
        raise DataError(
            f"{model}: negative TAC value {values[r, f]:.4g} kBq/mL in region '{names[r]}' at "
            f"frame index {f} (more than {100 * negative_tolerance:g} % of the region's peak); "
            "check the background/scatter correction and the units"
        )
    return values, names, frames


def select_frames(
    t_mid: np.ndarray,
    *,
    tstar: float | None = None,
    n_frames: int | None = None,
    model: str,
    min_frames: int = 3,
) -> np.ndarray:
    """Boolean mask of the frames used by a linear (graphical) fit.

    Parameters
    ----------
    t_mid : array (n_frames,)
        Frame mid-times (min).
    tstar : float, optional
        Use frames whose mid-time is ``>= tstar`` (min).
    n_frames : int, optional
        Use the last ``n_frames`` frames (kinfitr's ``last10frames`` is ``n_frames=10``).
        Exactly one of ``tstar``/``n_frames`` may be given; with neither, all frames are used.
    model : str
        Model name, used in messages.
    min_frames : int
        Fewest frames a regression may use (at least parameters + 1).

    Raises
    ------
    ModelError
        Both ``tstar`` and ``n_frames`` given, or invalid values.
    FitError
        Fewer than ``min_frames`` frames after ``tstar`` (names t* and the last mid-time).
    """
    t_mid = np.asarray(t_mid, dtype=float)
    n = t_mid.size
    if tstar is not None and n_frames is not None:
        raise ModelError(f"{model}: give tstar= or n_frames=, not both")
    if n_frames is not None:
        if int(n_frames) != n_frames or n_frames < 1:
            raise ModelError(f"{model}: n_frames must be a positive integer, got {n_frames!r}")
        if n_frames < min_frames or n_frames > n:
            raise FitError(
                f"{model}: n_frames={n_frames} but the fit needs {min_frames}..{n} frames "
                f"(the scan has {n})"
            )
        mask = np.zeros(n, bool)
        mask[n - int(n_frames):] = True
        return mask
    if tstar is None:
        mask = np.ones(n, bool)
    else:
        tstar = float(tstar)
        if not np.isfinite(tstar) or tstar < 0:
            raise ModelError(f"{model}: tstar must be a time >= 0 min, got {tstar!r}")
        mask = t_mid >= tstar - 1e-9
    if mask.sum() < min_frames:
        raise FitError(
            f"{model}: only {int(mask.sum())} frame(s) have mid-time >= t* = {tstar} min (last "
            f"mid-time {t_mid[-1]:.4g} min); the fit needs at least {min_frames}. Use an "
            "earlier tstar= or n_frames="
        )
    return mask


def fit_regions(
    regions: Sequence[str],
    fit_one: Callable[[int], Mapping[str, Any]],
    names: Sequence[str],
    *,
    model: str,
    catch: tuple[type[BaseException], ...] = (Sv2aError, np.linalg.LinAlgError, ValueError,
                                                FloatingPointError, ZeroDivisionError),
) -> dict[str, np.ndarray]:
    """Run ``fit_one(i)`` for every region, isolating failures.

    Parameters
    ----------
    regions : sequence of str
        Region names (for messages).
    fit_one : callable(i) -> mapping
        Fits region ``i``; returns a mapping of result names (parameters, ``<p>_se``, ``rss``,
        ``aic``, ``n_frames``, ``tstar``, ``converged``, ``at_bound``, optional ``message``).
    names : sequence of str
        All numeric result names to collect (missing ones are NaN).
    model : str
        Model name for messages.
    catch : tuple of exception types
        Exceptions that mark only this region as failed. A region that fails gets NaN for every
        number, ``converged=False``, ``at_bound=False`` and ``message`` = the reason; the other
        regions are still fitted.

    Returns
    -------
    dict name -> array (n_regions,)
        Ready for :func:`sv2a.models.result.build_result`.
    """
    n = len(regions)
    out: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in names}
    out["converged"] = np.zeros(n, bool)
    out["at_bound"] = np.zeros(n, bool)
    messages = np.full(n, "", dtype=object)
    for i in range(n):
        try:
            res = fit_one(i)
        except catch as exc:
            messages[i] = f"{model} fit failed for region '{regions[i]}': {exc}"
            continue
        for k, v in res.items():
            if k == "message":
                messages[i] = str(v)
            elif k in ("converged", "at_bound"):
                out[k][i] = bool(v)
            else:
                if k not in out:
                    out[k] = np.full(n, np.nan)
                out[k][i] = float(v)
    out["message"] = messages.astype(str)
    return out


def aic(rss: float | np.ndarray, n: int | np.ndarray, k: int) -> float | np.ndarray:
    """Akaike information criterion of a least-squares fit.

    ``AIC = n ln(RSS/n) + 2k`` (Akaike 1974; for weighted fits RSS is the weighted residual sum
    of squares). ``k`` counts fitted parameters; Gaussian errors up to a constant.
    """
    rss = np.asarray(rss, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = n * np.log(np.maximum(rss, 1e-300) / n) + 2.0 * k
    return val if val.ndim else float(val)


def jacobian_se(jac: np.ndarray, rss: float, n: int) -> np.ndarray:
    """Asymptotic standard errors from the Jacobian of the weighted residuals.

    ``cov = s² (JᵀJ)⁻¹`` with ``s² = RSS/(n − p)`` (Gauss–Newton covariance, as nls/minpack.lm
    report). Columns that are all zero (fixed or at-bound parameters) get NaN.

    Parameters
    ----------
    jac : array (n, p)
        d(weighted residual)/d(parameter) at the solution.
    rss : float
        Weighted residual sum of squares.
    n : int
        Number of (weighted, non-zero-weight) data points.
    """
    jac = np.asarray(jac, dtype=float)
    p = jac.shape[1]
    dof = max(n - p, 1)
    s2 = rss / dof
    se = np.full(p, np.nan)
    live = np.any(jac != 0, axis=0)
    if not live.any():
        return se
    j = jac[:, live]
    try:
        cov = np.linalg.pinv(j.T @ j) * s2
        se[live] = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        pass
    return se


def at_bound(x: np.ndarray, lb: np.ndarray, ub: np.ndarray, rtol: float = 1e-4) -> bool:
    """Whether any parameter sits on (within ``rtol`` of the range of) its lower/upper bound."""
    x, lb, ub = (np.asarray(a, dtype=float) for a in (x, lb, ub))
    tol = rtol * np.where(np.isfinite(ub - lb), ub - lb, np.maximum(np.abs(x), 1.0))
    return bool(np.any((x - lb <= tol) | (ub - x <= tol)))


def wls_batch(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted least squares for many rows at once.

    Parameters
    ----------
    x : array (n, f, p)
        Design matrices (one per row).
    y : array (n, f)
    w : array (n, f)
        Weights (0 excludes a frame).

    Returns
    -------
    dict ``beta`` (n, p), ``cov`` (n, p, p) (``s² (XᵀWX)⁻¹`` with ``s² = RSS/(m − p)``, m the
    frames with non-zero weight, as R's ``lm``), ``rss`` (n,), ``m`` (n,), ``ok`` (n,) bool
    (False when the normal matrix is singular or ill-conditioned).
    """
    n, f, p = x.shape
    xtw = x * w[:, :, None]
    a = np.einsum("nfp,nfq->npq", xtw, x)
    bvec = np.einsum("nfp,nf->np", xtw, y)
    # scale columns to make the conditioning test meaningful
    scale = np.sqrt(np.clip(np.einsum("npp->np", a), 1e-300, None))
    a_s = a / scale[:, :, None] / scale[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cond = np.linalg.cond(a_s)
    ok = np.isfinite(cond) & (cond < 1e12)
    a_s[~ok] = np.eye(p)
    inv_s = np.linalg.inv(a_s)
    inv = inv_s / scale[:, :, None] / scale[:, None, :]
    beta = np.einsum("npq,nq->np", inv, bvec)
    res = y - np.einsum("nfp,np->nf", x, beta)
    rss = (w * res * res).sum(1)
    m = (w > 0).sum(1)
    s2 = rss / np.maximum(m - p, 1)
    cov = inv * s2[:, None, None]
    beta[~ok] = np.nan
    cov[~ok] = np.nan
    rss = np.where(ok, rss, np.nan)
    return {"beta": beta, "cov": cov, "rss": rss, "m": m, "ok": ok}
