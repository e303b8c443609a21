"""Cross-sectional designs: different animals per time point (terminal rodent studies).

Per time point and region, a two-way ANOVA on the log outcome,
``log(y) ~ C(arm) * C(group)`` (type II sums of squares, statsmodels ``anova_lm``), with the
interaction dropped when some arm x group cell is empty and the group factor dropped when the
dataset has no ``group`` coordinate (one-way ANOVA). Each non-reference arm is reported as the
% difference of its geometric mean from the reference arm at the same time point, adjusted for
group (additive model ``log(y) ~ C(arm) + C(group)``), with a t-based CI; Welch's t test on the
log values is given as an assumption-light check.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..errors import DesignError, Sv2aWarning
from ._stats import adjust_pvalues, choose_reference_arm, hedges_g_ci, outcome_values
from .power import minimal_detectable_effect

__all__ = ["cross_sectional_anova"]


def cross_sectional_anova(
    ds: xr.Dataset,
    outcome: str = "BPND",
    *,
    reference_arm: str | None = None,
    group: str | None = "auto",
    level: float = 0.95,
    power: float = 0.8,
    require_converged: bool = True,
) -> pd.DataFrame:
    """Two-way ANOVA group x treatment per time point and region.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`collect`); each subject may have one or several sessions, each
        session is analysed as an independent time point.
    outcome : str
        Positive outcome parameter (analysed on the log scale).
    reference_arm : str, optional
        Arm that others are contrasted with (vehicle/control/placebo by default).
    group : str, None or 'auto'
        Subject coordinate of the second factor (e.g. ``group`` = control / CORT). 'auto' uses
        ``group`` when present with at least two levels; None = one-way ANOVA on arm.
    level : float
        Confidence level of the CIs (0-1).
    power : float
        Power (0-1) of the two-sample minimal detectable effect ``mde_pct``.
    require_converged : bool
        Treat fits with ``converged == 0`` as missing (with a warning).

    Returns
    -------
    pandas.DataFrame
        One row per region x arm x session: ``n``, ``geo_mean`` (outcome units),
        ``reference_arm``, ``mean_pct_change`` (% difference from the reference arm,
        group-adjusted), ``ci_low``, ``ci_high`` (%), ``p_between``, ``q_between`` (BH over
        regions), ``p_welch``, ``hedges_g``, ``g_ci_low``, ``g_ci_high`` (SD units),
        ``mde_pct`` (%) and the ANOVA terms of that region x session: ``F_arm p_arm F_group
        p_group F_interaction p_interaction eta2p_arm q_arm``.

    Raises
    ------
    DesignError
        ``group`` is not a subject coordinate, unknown reference arm, or nothing to analyse.

    Examples
    --------
    >>> import warnings
    >>> import sv2a.longitudinal as lg
    >>> ds = lg.simulate_design("ketamine-rodent", n_per_arm=4, seed=0, cross_sectional=True,
    ...                         regions=["cortex"])
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     table = lg.cross_sectional_anova(ds, "BPND")
    >>> sorted(set(table["session"])), table.attrs["reference_arm"]
    (['1w', '24h', '3w'], 'control_vehicle')
    """
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    y = outcome_values(ds, outcome, require_converged)
    arms_of = np.asarray([str(a) for a in ds["arm"].values])
    arm_names = sorted(set(arms_of))
    ref = choose_reference_arm(arm_names, reference_arm)
    if group == "auto":
        group = "group" if "group" in ds.coords else None
    if group is not None:
        if group not in ds.coords or ds[group].dims != ("subject",):
            raise DesignError(f"group factor '{group}' is not a subject coordinate.")
        grp = np.asarray([str(g) for g in ds[group].values])
        if len(set(grp)) < 2:
            group = None
    sessions = [str(s) for s in y["session"].values]
    regions = [str(r) for r in y["region"].values]
    vals = y.values
    rows = []
    skipped = []
    for j, ses in enumerate(sessions):
        for k, reg in enumerate(regions):
            v = vals[:, j, k]
            ok = np.isfinite(v) & (v > 0)
            if not ok.any():
                continue
            df = pd.DataFrame({"ly": np.log(v[ok]), "arm": arms_of[ok]})
            if group is not None:
                df["grp"] = grp[ok]
            present = sorted(set(df["arm"]))
            anova = {}
            est = {}
            if ref in present and len(present) >= 2 and len(df) > len(present) + 1:
                terms = f"C(arm, Treatment(reference={ref!r}))"
                add = terms + (" + C(grp)" if group is not None and df["grp"].nunique() > 1
                               else "")
                full = add
                if group is not None and df["grp"].nunique() > 1:
                    cells = df.groupby(["arm", "grp"]).size()
                    if len(cells) == df["arm"].nunique() * df["grp"].nunique() \
                            and len(df) > 2 * len(cells):
                        full = terms + " * C(grp)"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    mfull = smf.ols("ly ~ " + full, df).fit()
                    tab = anova_lm(mfull, typ=2)
                    madd = mfull if full == add else smf.ols("ly ~ " + add, df).fit()
                for name, key in ((terms, "arm"), ("C(grp)", "group"),
                                  (terms + ":C(grp)", "interaction")):
                    if name in tab.index:
                        anova[f"F_{key}"] = tab.loc[name, "F"]
                        anova[f"p_{key}"] = tab.loc[name, "PR(>F)"]
                ss_res = tab.loc["Residual", "sum_sq"]
                if terms in tab.index:
                    anova["eta2p_arm"] = tab.loc[terms, "sum_sq"] / (
                        tab.loc[terms, "sum_sq"] + ss_res)
                ci = madd.conf_int(alpha=1 - level)
                for a in present:
                    if a == ref:
                        continue
                    pname = f"{terms}[T.{a}]"
                    est[a] = (madd.params[pname], ci.loc[pname, 0], ci.loc[pname, 1],
                              madd.pvalues[pname])
            else:
                skipped.append(f"{ses}/{reg}")
            lr = df.loc[df["arm"] == ref, "ly"].to_numpy()
            for a in arm_names:
                la = df.loc[df["arm"] == a, "ly"].to_numpy()
                if len(la) == 0:
                    continue
                row = {"region": reg, "arm": a, "session": ses, "n": len(la),
                       "geo_mean": float(np.exp(la.mean())), "reference_arm": ref} | anova
                if a != ref and a in est and len(lr) >= 2 and len(la) >= 2:
                    b, lo, hi, p = est[a]
                    w = stats.ttest_ind(la, lr, equal_var=False)
                    tp = stats.ttest_ind(la, lr, equal_var=True).statistic
                    g, glo, ghi = hedges_g_ci(tp, len(la), len(lr), level)
                    sp = np.sqrt(((len(la) - 1) * la.var(ddof=1) + (len(lr) - 1)
                                  * lr.var(ddof=1)) / (len(la) + len(lr) - 2))
                    row.update({
                        "mean_pct_change": 100 * np.expm1(b), "ci_low": 100 * np.expm1(lo),
                        "ci_high": 100 * np.expm1(hi), "p_between": p, "p_welch": w.pvalue,
                        "hedges_g": g, "g_ci_low": glo, "g_ci_high": ghi,
                        "mde_pct": minimal_detectable_effect(len(la), sp, alpha=1 - level,
                                                             power=power, paired=False,
                                                             n2=len(lr))})
                elif a == ref:
                    row["note"] = "reference arm"
                else:
                    row["note"] = "fewer than 2 animals in this arm or the reference arm"
                rows.append(row)
    if skipped:
        warnings.warn(f"no ANOVA (reference arm '{ref}' absent or too few animals) for: "
                      f"{skipped[:10]}", Sv2aWarning, stacklevel=2)
    table = pd.DataFrame(rows)
    if table.empty:
        raise DesignError(f"no {outcome} values to analyse.")
    for c in ("mean_pct_change", "ci_low", "ci_high", "p_between", "p_welch", "hedges_g",
              "g_ci_low", "g_ci_high", "mde_pct", "F_arm", "p_arm", "F_group", "p_group",
              "F_interaction", "p_interaction", "eta2p_arm", "note"):
        if c not in table:
            table[c] = np.nan
    table["q_between"] = table.groupby(["arm", "session"])["p_between"].transform(
        lambda p: adjust_pvalues(p, "fdr_bh"))
    # one ANOVA per region x session: adjust p_arm over regions (one value per region)
    first = table.drop_duplicates(["session", "region"])
    q = first.groupby("session")["p_arm"].transform(lambda p: adjust_pvalues(p, "fdr_bh"))
    qmap = dict(zip(zip(first["session"], first["region"], strict=True), q, strict=True))
    table["q_arm"] = [qmap[(s, r)] for s, r in zip(table["session"], table["region"],
                                                     strict=True)]
    table.attrs.update({"outcome": outcome, "design": "cross-sectional", "reference_arm": ref,
                        "group_factor": group or "none", "level": level,
                        "mean_pct_change": "% difference of the geometric mean from the "
                                           "reference arm at the same time point "
                                           "(group-adjusted)",
                        "excluded": {}})
    return table
