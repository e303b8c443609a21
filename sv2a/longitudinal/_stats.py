"""Statistics and data-access helpers shared by the longitudinal analyses.

:mod:`~sv2a.longitudinal.compare`, :mod:`~sv2a.longitudinal.crosssectional`,
:mod:`~sv2a.longitudinal.mixed` and :mod:`~sv2a.longitudinal.baseline` all import from here
and this module imports none of them, so the dependency between the analysis modules goes one
way only:

* :func:`adjust_pvalues` -- Benjamini-Hochberg q-values or Holm-adjusted p-values;
* :func:`hedges_g_ci` -- Hedges g with a non-central-t confidence interval;
* :func:`choose_reference_arm` -- the arm every other arm is contrasted with;
* :func:`outcome_values` -- the outcome array of a group dataset with non-converged fits
  masked;
* :func:`is_cross_sectional` / :func:`check_baseline` -- design checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike
from scipy import special, stats

from ..errors import DataError, DesignError, Sv2aWarning
from .collect import _is_baseline_like

__all__ = ["adjust_pvalues", "hedges_g_ci", "choose_reference_arm", "outcome_values",
           "is_cross_sectional", "check_baseline", "REFERENCE_NAMES"]

#: Arm names taken as the no-treatment reference (compared after lower-casing, ``-`` -> ``_``).
REFERENCE_NAMES = ("control", "vehicle", "placebo", "sham", "saline", "test_retest",
                   "retest", "trt")


def adjust_pvalues(p: ArrayLike, method: str = "fdr_bh") -> np.ndarray:
    """Multiple-comparison adjustment across a family of tests, ignoring NaNs.

    Parameters
    ----------
    p : array_like of float
        Unadjusted p-values (unitless, 0-1); NaN entries are left out of the family and stay
        NaN.
    method : {'fdr_bh', 'holm'}
        ``'fdr_bh'``: Benjamini-Hochberg (1995) q-values
        (``scipy.stats.false_discovery_control``); ``'holm'``: Holm (1979) step-down adjusted
        ``p_(i) = max_(j<=i) min(1, (m - j + 1) p_(j))``.

    Returns
    -------
    numpy.ndarray of float
        Adjusted p-values (unitless, 0-1), same shape as ``p``.

    Raises
    ------
    ValueError
        Unknown ``method``.

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, float("nan"), 0.03], "holm").round(3).tolist()
    [0.03, 0.06, nan, 0.06]
    """
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if method not in ("fdr_bh", "holm"):
        raise ValueError(f"method must be 'fdr_bh' or 'holm', not {method!r}")
    if not ok.any():
        return out
    x = p[ok]
    if method == "fdr_bh":
        out[ok] = stats.false_discovery_control(x, method="bh")
    else:
        m = len(x)
        order = np.argsort(x)
        adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * x[order]))
        res = np.empty(m)
        res[order] = adj
        out[ok] = res
    return out


def _nct_ci(t: float, df: float, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the non-centrality parameter given an observed t."""
    if not (np.isfinite(t) and df > 0):
        return (np.nan, np.nan)
    a = (1 - level) / 2
    # scipy.special.nctdtrinc inverts the non-central t CDF with respect to the ncp
    lo, hi = special.nctdtrinc(df, [1 - a, a], [t, t])
    return (float(lo), float(hi))


def hedges_g_ci(t: float, n1: int, n2: int | None = None, level: float = 0.95
                ) -> tuple[float, float, float]:
    """Hedges g and its confidence interval from a t statistic.

    One sample / paired (``n2`` None): ``d_z = t / sqrt(n)``, df = n - 1. Two samples
    (pooled SD): ``d = t sqrt(1/n1 + 1/n2)``, df = n1 + n2 - 2. ``g = J d`` with
    ``J = 1 - 3 / (4 df - 1)``; the CI limits are the non-central-t limits of the
    non-centrality parameter scaled the same way (Hedges & Olkin 1985; Cumming & Finch 2001).

    Parameters
    ----------
    t : float
        Observed t statistic (one-sample/paired, or pooled two-sample).
    n1 : int
        Number of pairs (paired) or subjects in sample 1.
    n2 : int, optional
        Subjects in sample 2 (two-sample design); None for one sample / paired.
    level : float
        Confidence level of the interval (0-1).

    Returns
    -------
    tuple of float
        ``(g, ci_low, ci_high)``, standardised effect sizes (unitless, in SD units); all NaN
        when df < 1 or ``t`` is not finite.

    Examples
    --------
    >>> g, lo, hi = hedges_g_ci(3.0, 10)
    >>> round(g, 3), lo < g < hi
    (0.867, True)
    """
    if n2 is None:
        df, scale = n1 - 1, np.sqrt(1.0 / n1)
    else:
        df, scale = n1 + n2 - 2, np.sqrt(1.0 / n1 + 1.0 / n2)
    if df < 1 or not np.isfinite(t):
        return (np.nan, np.nan, np.nan)
    j = 1 - 3 / (4 * df - 1)
    lo, hi = _nct_ci(t, df, level)
    return (float(j * t * scale), float(j * lo * scale), float(j * hi * scale))


def choose_reference_arm(arms: Sequence[str], reference_arm: str | None = None) -> str:
    """The arm every other arm is contrasted with.

    Parameters
    ----------
    arms : sequence of str
        Arm names of the study.
    reference_arm : str, optional
        Explicit choice; must be one of ``arms``.

    Returns
    -------
    str
        ``reference_arm`` if given, else an arm named like a no-treatment arm
        (:data:`REFERENCE_NAMES`: control, vehicle, placebo, sham, saline, test_retest, retest,
        trt, in that order of preference), else a factorial cell whose levels are all such
        names (``control_vehicle``), else the first arm in sorted order.

    Raises
    ------
    DesignError
        ``reference_arm`` is not one of ``arms``.

    Examples
    --------
    >>> choose_reference_arm(["ketamine", "Placebo"])
    'Placebo'
    >>> choose_reference_arm(["stress_vehicle", "control_repeated", "control_vehicle"])
    'control_vehicle'
    >>> choose_reference_arm(["b", "a"])
    'a'
    """
    names = [str(a) for a in arms]
    if reference_arm is not None:
        if reference_arm not in names:
            raise DesignError(f"reference_arm '{reference_arm}' is not an arm; arms: {names}.")
        return str(reference_arm)
    for name in REFERENCE_NAMES:
        for a in names:
            if a.lower().replace("-", "_") == name:
                return a
    # factorial cells named by their levels (control_vehicle): every level a reference name
    for a in sorted(names):
        parts = a.lower().replace("-", "_").split("_")
        if len(parts) > 1 and all(p in REFERENCE_NAMES for p in parts):
            return a
    return sorted(names)[0]


def outcome_values(ds: xr.Dataset, outcome: str, require_converged: bool = True
                   ) -> xr.DataArray:
    """The outcome of a group dataset, with non-converged fits set to NaN (with a warning).

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset from :func:`~sv2a.longitudinal.collect` (dims subject, session, region;
        ``arm`` coordinate on subject).
    outcome : str
        Data variable to return (``BPND``, ``VT``, ...).
    require_converged : bool
        Mask values whose ``converged`` flag is 0.

    Returns
    -------
    xr.DataArray
        ``ds[outcome]`` as float, dims ``(subject, session, region)``, in the outcome's own
        units (unitless for BPND / DVR / SUVR, mL/cm3 for VT).

    Raises
    ------
    DataError
        ``ds`` is not a group dataset or lacks ``outcome``.
    DesignError
        No ``arm`` coordinate, or subjects without an arm.
    """
    if not isinstance(ds, xr.Dataset):
        raise DataError(f"expected the group xr.Dataset from collect(), got {type(ds).__name__}")
    missing_dims = [d for d in ("subject", "session", "region") if d not in ds.dims]
    if missing_dims:
        raise DataError(f"group dataset lacks dims {missing_dims}; build it with collect().")
    if outcome not in ds.data_vars:
        raise DataError(f"outcome '{outcome}' is not in the group dataset; available: "
                        f"{[v for v in ds.data_vars if v != 'converged']}.")
    if "arm" not in ds.coords:
        raise DesignError("group dataset has no 'arm' coordinate on subject; collect it with a "
                          "participants table that has an 'arm' column.")
    arms = ds["arm"].values
    bad = [s for s, a in zip(ds["subject"].values, arms, strict=True)
           if a is None or str(a) in ("", "nan", "n/a", "None")]
    if bad:
        raise DesignError(f"subjects without an arm: {['sub-' + str(s) for s in bad]}; set "
                          f"their arm in participants.tsv or exclude them explicitly.")
    y = ds[outcome].transpose("subject", "session", "region").astype(float)
    if require_converged and "converged" in ds.data_vars and outcome != "converged":
        nc = (ds["converged"] == 0) & np.isfinite(y)
        if bool(nc.any()):
            stacked = nc.stack(c=("subject", "session", "region"))
            cells = stacked.c.values[stacked.values]
            listed = [f"sub-{a}/ses-{b}/{c}" for a, b, c in cells[:10]]
            warnings.warn(f"{len(cells)} non-converged fit value(s) of {outcome} are treated "
                          f"as missing (pass require_converged=False to keep them): {listed}"
                          f"{' ...' if len(cells) > 10 else ''}", Sv2aWarning, stacklevel=3)
            y = y.where(~nc)
    return y


def is_cross_sectional(y: xr.DataArray, baseline: str | None) -> bool:
    """Whether a design is cross-sectional (no subject scanned at baseline and follow-up).

    Parameters
    ----------
    y : xr.DataArray
        Outcome with dims ``(subject, session, region)`` (:func:`outcome_values`).
    baseline : str or None
        Baseline session label; None (or a label not in the data) asks whether any subject has
        values at two sessions at all.

    Returns
    -------
    bool
        True when no subject has a finite baseline value and a finite follow-up value.
    """
    fin = np.isfinite(y.values).any(axis=2)  # subject x session
    if baseline is None or baseline not in list(y["session"].values):
        return bool(fin.sum(axis=1).max(initial=0) < 2)
    b = list(y["session"].values).index(baseline)
    other = np.delete(fin, b, axis=1).any(axis=1)
    return not bool((fin[:, b] & other).any())


def check_baseline(y: xr.DataArray, baseline: str) -> None:
    """Raise :class:`DesignError` when ``baseline`` is not a session of ``y``.

    Parameters
    ----------
    y : xr.DataArray
        Outcome with a ``session`` dimension.
    baseline : str
        Baseline session label.

    Returns
    -------
    None
        The message of the error names the sessions present and suggests a baseline-like
        label (``bl``, ``pre``, ...) when there is one.
    """
    sessions = [str(s) for s in y["session"].values]
    if baseline not in sessions:
        like = [s for s in sessions if _is_baseline_like(s)]
        hint = f" Did you mean baseline='{like[0]}'?" if like else ""
        raise DesignError(f"baseline session '{baseline}' not in the dataset; sessions: "
                          f"{sessions}.{hint}")
