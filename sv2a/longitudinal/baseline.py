"""Does change depend on baseline? Regression to the mean done properly.

"Patients with low baseline SV2A increased after ketamine" (Holmes 2022, post hoc) is the kind
of claim regression to the mean (RTM) produces on its own: with ``x0 = T + e0`` and
``x1 = T + D + e1`` (log scale, scan noise variance ``s_w^2``), the naive regression of the
change ``x1 - x0`` on ``x0`` has expected slope ``-s_w^2 / var(x0)`` even when ``D`` does not
depend on ``T``.

Reported per region x arm x follow-up session:

* naive: slope, Pearson r and p of ``log(y1/y0)`` on ``log(y0)`` (biased towards negative);
* Oldham's method (Oldham 1962, J Chronic Dis 15:969; Tu & Gilthorpe 2007): correlation of the
  change with the subject mean ``(x0 + x1) / 2``, free of the RTM artefact when the two
  occasions have equal variance;
* when a test-retest arm exists: its scan-noise variance ``s_w^2 = var(x1 - x0) / 2`` gives the
  RTM-null slope ``b_null = -s_w^2 / var(x0)``; ``slope_excess = slope - b_null`` with a z test
  (``p_vs_null``; the SE combines the slope's SE and the null slope's, from the chi-square
  sampling variance of ``s_w^2``) says whether the dependence exceeds what noise alone makes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..errors import DesignError, Sv2aWarning
from ._stats import check_baseline, outcome_values

__all__ = ["baseline_dependence", "find_retest_arm"]


def find_retest_arm(arms: Iterable[object]) -> str | None:
    """The arm whose name says test-retest.

    Parameters
    ----------
    arms : iterable
        Arm names.

    Returns
    -------
    str or None
        The first arm whose name (lower case, ``-`` read as ``_``) contains ``retest`` or is
        ``trt``; None when there is none.

    Examples
    --------
    >>> find_retest_arm(["ketamine", "Test-Retest"])
    'Test-Retest'
    """
    for a in arms:
        k = str(a).lower().replace("-", "_")
        if "retest" in k or k in ("trt", "test_retest"):
            return str(a)
    return None


def baseline_dependence(
    ds: xr.Dataset,
    outcome: str = "BPND",
    baseline: str = "baseline",
    *,
    retest_arm: str | None = "auto",
    require_converged: bool = True,
) -> pd.DataFrame:
    """Change versus baseline with regression-to-the-mean corrections.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`~sv2a.longitudinal.collect`).
    outcome : str
        Positive outcome parameter (analysed on the natural-log scale).
    baseline : str
        Baseline session label.
    retest_arm : str, 'auto' or None
        Arm of subjects scanned twice without treatment ('auto': an arm whose name contains
        'retest' or is 'trt'); None disables the test-retest null.
    require_converged : bool
        Treat fits with ``converged == 0`` as missing (with a warning).

    Returns
    -------
    pandas.DataFrame
        Columns ``region arm session n slope_naive r_naive p_naive oldham_r oldham_p
        oldham_ci_low oldham_ci_high`` and, with a test-retest arm, ``retest_arm n_retest
        sw_log slope_null slope_excess slope_excess_se p_vs_null``. Slopes are of the log
        change on the log baseline (unitless), ``sw_log`` is the scan-noise SD on the log
        scale (0.05 ~ 5 %), correlations and p-values are unitless.

    Raises
    ------
    DesignError
        Baseline session absent or unknown ``retest_arm``.
    """
    y = outcome_values(ds, outcome, require_converged)
    check_baseline(y, baseline)
    sessions = [str(s) for s in y["session"].values]
    regions = [str(r) for r in y["region"].values]
    arms_of = np.asarray([str(a) for a in ds["arm"].values])
    arm_names = sorted(set(arms_of))
    if retest_arm == "auto":
        retest_arm = find_retest_arm(arm_names)
    elif retest_arm is not None and retest_arm not in arm_names:
        raise DesignError(f"retest_arm '{retest_arm}' is not an arm; arms: {arm_names}")
    vals = y.values.copy()
    vals[~(vals > 0)] = np.nan
    lv = np.log(vals)
    b = sessions.index(baseline)

    sw2 = {}
    if retest_arm is not None:
        m = arms_of == retest_arm
        fu = [j for j in range(len(sessions)) if j != b and np.isfinite(lv[m, j]).any()]
        if not fu:
            warnings.warn(f"test-retest arm '{retest_arm}' has no second scan; no RTM null.",
                          Sv2aWarning, stacklevel=2)
            retest_arm = None
        else:
            d = lv[m][:, fu[0], :] - lv[m][:, b, :]
            for k, r in enumerate(regions):
                dk = d[:, k][np.isfinite(d[:, k])]
                if len(dk) >= 3:
                    sw2[r] = (float(np.var(dk, ddof=1) / 2), len(dk))
    rows = []
    for arm in arm_names:
        m = arms_of == arm
        for j, ses in enumerate(sessions):
            if j == b or not np.isfinite(lv[m, j]).any():
                continue
            for k, reg in enumerate(regions):
                x0, x1 = lv[m, b, k], lv[m, j, k]
                ok = np.isfinite(x0) & np.isfinite(x1)
                x0, x1 = x0[ok], x1[ok]
                n = len(x0)
                row = {"region": reg, "arm": arm, "session": ses, "n": n}
                if n >= 3 and np.ptp(x0) > 0:
                    ch = x1 - x0
                    lr = stats.linregress(x0, ch)
                    row.update({"slope_naive": lr.slope, "r_naive": lr.rvalue,
                                "p_naive": lr.pvalue})
                    mean = (x0 + x1) / 2
                    if np.ptp(ch) > 0 and np.ptp(mean) > 0:
                        pr = stats.pearsonr(ch, mean)
                        ci = pr.confidence_interval(0.95) if n > 3 else None
                        row.update({"oldham_r": pr.statistic, "oldham_p": pr.pvalue,
                                    "oldham_ci_low": ci.low if ci else np.nan,
                                    "oldham_ci_high": ci.high if ci else np.nan})
                    if reg in sw2 and arm != retest_arm:
                        s2, nt = sw2[reg]
                        bnull = -s2 / np.var(x0, ddof=1)
                        # uncertainty of the null slope: var(s_w^2 estimate) = 2 s_w^4/(nt-1)
                        se_null = abs(bnull) * np.sqrt(2.0 / (nt - 1))
                        se = np.hypot(lr.stderr, se_null)
                        z = (lr.slope - bnull) / se if se > 0 else np.nan
                        row.update({"retest_arm": retest_arm, "n_retest": nt,
                                    "sw_log": np.sqrt(s2), "slope_null": bnull,
                                    "slope_excess": lr.slope - bnull,
                                    "slope_excess_se": se,
                                    "p_vs_null": 2 * stats.t.sf(abs(z), n - 2)})
                else:
                    row["note"] = "n < 3 or no spread in baseline: no regression"
                rows.append(row)
    table = pd.DataFrame(rows)
    cols = ["region", "arm", "session", "n", "slope_naive", "r_naive", "p_naive", "oldham_r",
            "oldham_p", "oldham_ci_low", "oldham_ci_high"]
    for c in cols:
        if c not in table:
            table[c] = np.nan
    table = table[cols + [c for c in table.columns if c not in cols]]
    table.attrs.update({"outcome": outcome, "baseline": baseline,
                        "retest_arm": retest_arm or "none",
                        "method": "naive regression of log change on log baseline; Oldham "
                                  "correlation of change with mean; test-retest RTM null"})
    return table
