"""Change from baseline within arms and contrasts between arms.

For each region x arm x follow-up session, with ``y0`` the baseline and ``y1`` the follow-up
value of the same subject:

* % change ``100 (y1 / y0 - 1)``: mean with t-based 95 % CI, mean and median with percentile
  bootstrap 95 % CIs; geometric mean change ``100 (exp(mean log(y1/y0)) - 1)`` with its CI;
* within-arm paired tests on log values: one-sample t on ``log(y1/y0)`` (``p_within``) and
  the Wilcoxon signed-rank test (``p_wilcoxon``); Benjamini-Hochberg (``q_within``) and Holm
  (``p_holm``) adjustment across regions within each arm x session;
* Hedges g_z = J mean(d) / sd(d) of the log change, J = 1 - 3 / (4 (n - 1) - 1), with a CI from
  the non-central t distribution (Hedges & Olkin 1985; Cumming & Finch 2001);
* the minimal detectable effect at 80 % power for that n and the observed SD (``mde_pct``);
* between arms, against the reference arm: ANCOVA ``log(y1) ~ log(y0) + arm [+ covariates]``
  (statsmodels OLS; Vickers & Altman 2001, BMJ 323:1123) reported as the % difference in
  adjusted follow-up, and Welch's t test on the % changes (difference in percentage points),
  Hedges g of the % changes between arms, and the two-sample MDE.

Changes are analysed on ratios / logs because scan noise and between-subject differences of
SV2A binding are multiplicative. A non-significant change is reported next to its minimal
detectable effect: with a test-retest SD of ~7 % (the order reported for [11C]UCB-J by
Finnema et al. 2018, J Cereb Blood Flow Metab 38:2041) and 5-6 subjects per arm, only
changes of ~10-19 % are detectable at 80 % power
(:func:`~sv2a.longitudinal.minimal_detectable_effect`), so a non-significant result reads
"smaller than the MDE, if anything", never "no effect".

Cross-sectional datasets (no subject has both a baseline and a follow-up) are handed to
:func:`sv2a.longitudinal.cross_sectional_anova` automatically.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..errors import DesignError, Sv2aWarning
from ._stats import (
    adjust_pvalues,
    check_baseline,
    choose_reference_arm,
    hedges_g_ci,
    is_cross_sectional,
    outcome_values,
)
from .crosssectional import cross_sectional_anova
from .power import minimal_detectable_effect

__all__ = ["compare_arms", "write_table"]


# --------------------------------------------------------------------------- main

def compare_arms(
    ds: xr.Dataset,
    outcome: str = "BPND",
    baseline: str = "baseline",
    *,
    reference_arm: str | None = None,
    covariates: Sequence[str] = (),
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    power: float = 0.8,
    require_converged: bool = True,
    design: str = "auto",
    group: str | None = "auto",
    contrasts: bool = True,
) -> pd.DataFrame:
    """Within-arm change from baseline and between-arm contrasts, per region.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset from :func:`collect` (dims subject, session, region; ``arm`` on subject).
    outcome : str
        Parameter to analyse (``BPND``, ``VT``, ``DVR``, ``SUVR``, ...); must be positive
        (changes are computed on ratios / logs).
    baseline : str
        Label of the baseline session.
    reference_arm : str, optional
        Arm other arms are contrasted with (see :func:`choose_reference_arm`).
    covariates : sequence of str
        Subject coordinates (age, sex, ...) added to the ANCOVA. Refused (DesignError) for a
        cross-sectional design, whose ANOVA takes no covariates.
    n_boot : int
        Bootstrap resamples for ``boot_ci_*`` and ``median_ci_*`` (0 = skip; longitudinal
        designs only: the cross-sectional ANOVA has no bootstrap).
    seed : int
        Seed of the bootstrap resampling.
    level : float
        Confidence level of every CI (0-1; default 0.95).
    power : float
        Power (0-1) at which the minimal detectable effects ``mde_*`` are computed.
    require_converged : bool
        Treat fits with ``converged == 0`` as missing (with a warning listing them).
    design : {'auto', 'longitudinal', 'cross-sectional'}
        'auto' switches to :func:`cross_sectional_anova` when no subject has both a baseline
        and a follow-up.
    group : str, None or 'auto'
        Subject coordinate used as second factor in the cross-sectional ANOVA ('auto':
        ``group`` if present). An explicit name is refused for a longitudinal design (put it
        in ``covariates`` to adjust the ANCOVA for it).
    contrasts : bool
        Compute the between-arm contrasts (False leaves those columns NaN; for large
        simulations that need only the within-arm statistics).

    Returns
    -------
    pandas.DataFrame
        One row per region x arm x follow-up session, columns ``region arm session n
        baseline_mean followup_mean mean_pct_change sd_pct_change ci_low ci_high
        median_pct_change boot_ci_low boot_ci_high median_ci_low median_ci_high
        geo_pct_change geo_ci_low geo_ci_high t_within p_within p_wilcoxon q_within p_holm
        q_wilcoxon hedges_g g_ci_low g_ci_high sd_log_change mde_pct contrast_arm
        contrast_session n_contrast ancova_pct_diff ancova_ci_low ancova_ci_high p_ancova
        q_ancova p_ancova_holm welch_diff_pp welch_ci_low welch_ci_high p_welch g_between
        g_between_ci_low g_between_ci_high mde_between_pct excluded note``.
        ``contrast_arm`` is the reference arm, ``contrast_session`` its session used (the same
        label, or each arm's only follow-up when arms were scanned at different times),
        ``n_contrast`` the reference arm's n; ``ancova_*`` are % differences in adjusted
        follow-up, ``welch_*`` differences in mean % change (percentage points).
        ``excluded`` lists the arm's subjects missing from that row and why.
        Units: ``baseline_mean`` / ``followup_mean`` in the outcome's units, ``*_pct_*`` and
        ``mde_*`` in %, ``welch_*`` in percentage points, ``hedges_g`` / ``g_*`` in SD units,
        ``p_*`` / ``q_*`` unitless. ``attrs``: outcome, baseline, reference_arm, level,
        ``excluded`` (subject -> reason). A cross-sectional design returns the table of
        :func:`cross_sectional_anova` instead.

    Raises
    ------
    DataError
        Outcome missing.
    DesignError
        Baseline session absent, subject without an arm, unknown reference arm, unknown
        ``design``, or an option the chosen analysis cannot use (``covariates`` with a
        cross-sectional design, ``group`` with a longitudinal one), or no arm x follow-up
        with at least 2 subjects who have both a baseline and a follow-up value.

    Examples
    --------
    >>> import sv2a.longitudinal as lg
    >>> ds = lg.simulate_design("null", n_per_arm=6, seed=0, regions=["frontal_cortex"])
    >>> table = lg.compare_arms(ds, "BPND", n_boot=0)
    >>> print(table[["region", "arm", "session", "n"]].to_string(index=False))
            region arm  session  n
    frontal_cortex   A followup  6
    frontal_cortex   B followup  6
    >>> table.attrs["reference_arm"]
    'A'
    """
    if design not in ("auto", "longitudinal", "cross-sectional"):
        raise DesignError(f"design must be 'auto', 'longitudinal' or 'cross-sectional', not "
                          f"{design!r}")
    y = outcome_values(ds, outcome, require_converged)
    if design == "auto":
        cross = is_cross_sectional(y, baseline)
    else:
        cross = design == "cross-sectional"
    if cross:
        if covariates:
            raise DesignError(f"covariates={list(covariates)} cannot be used: the data are "
                              f"cross-sectional (no subject has both a '{baseline}' and a "
                              f"follow-up value) and the two-way ANOVA takes no covariates; "
                              f"use group= for a second factor.")
        warnings.warn("no subject has both a baseline and a follow-up value: analysing as a "
                      "cross-sectional design (two-way ANOVA per time point).", Sv2aWarning,
                      stacklevel=2)
        return cross_sectional_anova(ds, outcome, reference_arm=reference_arm, group=group,
                                     level=level, power=power,
                                     require_converged=require_converged)
    if group not in ("auto", None):
        raise DesignError(f"group={group!r} is the second factor of the cross-sectional ANOVA; "
                          f"these data are longitudinal. Add it to covariates=[...] to adjust "
                          f"the between-arm ANCOVA for it.")
    check_baseline(y, baseline)

    subjects = np.asarray([str(s) for s in y["subject"].values])
    sessions = [str(s) for s in y["session"].values]
    regions = [str(r) for r in y["region"].values]
    arms_of = np.asarray([str(a) for a in ds["arm"].values])
    arm_names = list(dict.fromkeys(sorted(arms_of)))
    ref = choose_reference_arm(arm_names, reference_arm)
    vals = y.values  # subject x session x region
    b = sessions.index(baseline)
    y0 = vals[:, b, :]
    scanned = np.isfinite(vals).any(axis=2)

    # subjects with follow-up data but no baseline at all: excluded, loudly
    excluded: dict[str, str] = {}
    for i, s in enumerate(subjects):
        if not scanned[i, b] and np.delete(scanned[i], b).any():
            excluded["sub-" + s] = f"no {baseline} session"
    if excluded:
        warnings.warn(f"subjects without a '{baseline}' {outcome} value are excluded from the "
                      f"change analysis: {sorted(excluded)} (listed in table.attrs['excluded'] "
                      f"and the 'excluded' column; the mixed model can still use them).",
                      Sv2aWarning, stacklevel=2)
    nonpos = (np.isfinite(vals) & (vals <= 0))
    if nonpos.any():
        idx = np.argwhere(nonpos)[:10]
        warnings.warn(f"{int(nonpos.sum())} non-positive {outcome} value(s) cannot enter a "
                      f"ratio/log and are treated as missing: "
                      f"{[f'sub-{subjects[i]}/ses-{sessions[j]}/{regions[k]}' for i, j, k in idx]}",
                      Sv2aWarning, stacklevel=2)
    covmat = _covariate_matrix(ds, covariates, subjects)

    rng = np.random.default_rng(seed)
    rows = []
    arm_followups: dict[str, list[str]] = {}
    for arm in arm_names:
        members = np.flatnonzero(arms_of == arm)
        fu = [s for j, s in enumerate(sessions) if j != b and scanned[members, j].any()]
        arm_followups[arm] = fu
        if not fu:
            warnings.warn(f"arm '{arm}' has no follow-up session with {outcome} values; it "
                          f"appears in no row of the comparison table.", Sv2aWarning,
                          stacklevel=2)
    small = []
    for arm in arm_names:
        members = np.flatnonzero(arms_of == arm)
        for ses in arm_followups[arm]:
            j = sessions.index(ses)
            y1 = vals[:, j, :]
            for k, reg in enumerate(regions):
                row = _within(members, y0[:, k], y1[:, k], subjects, ses, baseline, level,
                              power, n_boot, rng)
                row.update({"region": reg, "arm": arm, "session": ses})
                if row["n"] < 2:
                    small.append(f"{arm}/{ses}/{reg} (n={row['n']})")
                rows.append(row)
    if small:
        warnings.warn(f"fewer than 2 paired subjects, no statistics for: {small[:10]}"
                      f"{' ...' if len(small) > 10 else ''}", Sv2aWarning, stacklevel=2)
    table = pd.DataFrame(rows)
    if table.empty:
        raise DesignError(f"no arm has both '{baseline}' and follow-up {outcome} values; "
                          f"nothing to compare.")
    if not (table["n"] >= 2).any():
        have = table.groupby(["arm", "session"], sort=False)["n"].max()
        raise DesignError(
            f"compare_arms needs at least 2 subjects with a '{baseline}' and a follow-up "
            f"{outcome} value in some arm; have "
            + ", ".join(f"arm '{a}' / {s}: {int(n)}" for (a, s), n in have.items())
            + ". Add subjects, or report the individual changes without statistics.")
    for c in ("p_within", "p_wilcoxon"):
        if c not in table:  # every row of a column's statistic may be missing (all d == 0)
            table[c] = np.nan

    # between-arm contrasts
    contrast = []
    for _, r in table.iterrows():
        arm, ses = r["arm"], r["session"]
        if arm == ref:
            contrast.append({"note_between": "reference arm"})
            continue
        if not contrasts:
            contrast.append({})
            continue
        cses = ses if ses in arm_followups.get(ref, []) else None
        if cses is None and len(arm_followups.get(ref, [])) == 1 \
                and len(arm_followups[arm]) == 1:
            cses = arm_followups[ref][0]
        if cses is None:
            contrast.append({"contrast_arm": ref,
                             "note_between": f"reference arm '{ref}' has no session '{ses}'"})
            continue
        k = regions.index(r["region"])
        ja, jr = sessions.index(ses), sessions.index(cses)
        contrast.append(_between(
            np.flatnonzero(arms_of == arm), np.flatnonzero(arms_of == ref),
            y0[:, k], vals[:, ja, k], vals[:, jr, k], covmat, level, power)
            | {"contrast_arm": ref, "contrast_session": cses})
    table = pd.concat([table, pd.DataFrame(contrast, index=table.index)], axis=1)

    # multiplicity across regions within each arm x session
    for col in ("contrast_arm", "contrast_session", "note_between"):
        if col not in table:
            table[col] = np.nan
    for c in ("p_ancova", "p_welch"):
        if c not in table:
            table[c] = np.nan
    g = table.groupby(["arm", "session"], sort=False)
    table["q_within"] = g["p_within"].transform(lambda p: adjust_pvalues(p, "fdr_bh"))
    table["p_holm"] = g["p_within"].transform(lambda p: adjust_pvalues(p, "holm"))
    table["q_wilcoxon"] = g["p_wilcoxon"].transform(lambda p: adjust_pvalues(p, "fdr_bh"))
    table["q_ancova"] = g["p_ancova"].transform(lambda p: adjust_pvalues(p, "fdr_bh"))
    table["p_ancova_holm"] = g["p_ancova"].transform(lambda p: adjust_pvalues(p, "holm"))
    table["note"] = [
        "; ".join(x for x in (a, bnote) if isinstance(x, str) and x)
        for a, bnote in zip(table.pop("note_within"), table.pop("note_between"), strict=True)]

    order = ["region", "arm", "session", "n", "baseline_mean", "followup_mean",
             "mean_pct_change", "sd_pct_change", "ci_low", "ci_high", "median_pct_change",
             "boot_ci_low", "boot_ci_high", "median_ci_low", "median_ci_high",
             "geo_pct_change", "geo_ci_low", "geo_ci_high", "t_within", "p_within",
             "p_wilcoxon", "q_within", "p_holm", "q_wilcoxon", "hedges_g", "g_ci_low",
             "g_ci_high", "sd_log_change", "mde_pct", "contrast_arm", "contrast_session",
             "n_contrast", "ancova_pct_diff", "ancova_ci_low", "ancova_ci_high", "p_ancova",
             "q_ancova", "p_ancova_holm", "welch_diff_pp", "welch_ci_low", "welch_ci_high",
             "p_welch", "g_between", "g_between_ci_low", "g_between_ci_high",
             "mde_between_pct", "excluded", "note"]
    for c in order:
        if c not in table:
            table[c] = np.nan
    table = table[order + [c for c in table.columns if c not in order]]
    sort_reg = {r: i for i, r in enumerate(regions)}
    sort_ses = {s: i for i, s in enumerate(sessions)}
    table = table.sort_values(["arm", "session", "region"],
                              key=lambda s: s.map(sort_ses) if s.name == "session"
                              else (s.map(sort_reg) if s.name == "region" else s),
                              kind="stable").reset_index(drop=True)
    table.attrs.update({"outcome": outcome, "baseline": baseline, "reference_arm": ref,
                        "level": level, "design": "longitudinal",
                        "excluded": excluded, "covariates": list(covariates),
                        "source": ds.attrs.get("source", ""), "model": ds.attrs.get("model", "")})
    return table


def _covariate_matrix(ds: xr.Dataset, covariates: Sequence[str], subjects) -> np.ndarray | None:
    if not covariates:
        return None
    cols = []
    for c in covariates:
        if c not in ds.coords or ds[c].dims != ("subject",):
            avail = [k for k, v in ds.coords.items() if v.dims == ("subject",)]
            raise DesignError(f"covariate '{c}' is not a subject coordinate of the dataset; "
                              f"available: {avail}")
        v = pd.Series(ds[c].values)
        num = pd.to_numeric(v, errors="coerce")
        if num.notna().sum() == (v.astype(str) != "n/a").sum():
            cols.append(num.to_numpy(float)[:, None] - np.nanmean(num))
        else:
            d = pd.get_dummies(v.astype(str), drop_first=True, dtype=float)
            cols.append(d.to_numpy())
    return np.hstack(cols)


def _within(members, y0, y1, subjects, ses, baseline, level, power, n_boot, rng) -> dict:
    """Within-arm statistics for one arm x session x region."""
    a0, a1 = y0[members], y1[members]
    ok = np.isfinite(a0) & np.isfinite(a1) & (a0 > 0) & (a1 > 0)
    reasons = []
    for i, m in enumerate(members):
        if ok[i]:
            continue
        if not np.isfinite(a0[i]):
            why = f"no {baseline}"
        elif not np.isfinite(a1[i]):
            why = f"no {ses}"
        else:
            why = "non-positive value"
        reasons.append(f"sub-{subjects[m]} ({why})")
    n = int(ok.sum())
    row: dict = {"n": n, "excluded": "; ".join(reasons),
                 "note_within": "n < 2: no statistics" if n < 2 else ""}
    if n == 0:
        return row
    x0, x1 = a0[ok], a1[ok]
    pct = 100.0 * (x1 / x0 - 1.0)
    d = np.log(x1 / x0)
    row.update({"baseline_mean": x0.mean(), "followup_mean": x1.mean(),
                "mean_pct_change": pct.mean(), "median_pct_change": float(np.median(pct))})
    if n < 2:
        return row
    tq = stats.t.ppf(0.5 + level / 2, n - 1)
    sd, sdl = pct.std(ddof=1), d.std(ddof=1)
    se, sel = sd / np.sqrt(n), sdl / np.sqrt(n)
    t = d.mean() / sel if sel > 0 else np.nan
    row.update({
        "sd_pct_change": sd, "ci_low": pct.mean() - tq * se, "ci_high": pct.mean() + tq * se,
        "geo_pct_change": 100 * np.expm1(d.mean()),
        "geo_ci_low": 100 * np.expm1(d.mean() - tq * sel),
        "geo_ci_high": 100 * np.expm1(d.mean() + tq * sel),
        "t_within": t, "p_within": 2 * stats.t.sf(abs(t), n - 1) if np.isfinite(t) else np.nan,
        "sd_log_change": sdl,
        "mde_pct": minimal_detectable_effect(n, sdl, alpha=1 - level, power=power),
    })
    if np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
    g, glo, ghi = hedges_g_ci(t, n, level=level)
    row.update({"hedges_g": g, "g_ci_low": glo, "g_ci_high": ghi})
    if n_boot and n >= 2:
        idx = rng.integers(0, n, size=(int(n_boot), n))
        bs = pct[idx]
        a = (1 - level) / 2 * 100
        row["boot_ci_low"], row["boot_ci_high"] = np.percentile(bs.mean(axis=1), [a, 100 - a])
        row["median_ci_low"], row["median_ci_high"] = np.percentile(np.median(bs, axis=1),
                                                                    [a, 100 - a])
    return row


def _between(ma, mr, y0, y1a, y1r, covmat, level, power) -> dict:
    """ANCOVA and Welch contrasts of arm (members ma, follow-up y1a) vs reference (mr, y1r)."""
    import statsmodels.api as sm

    def pairs(members, y1):
        ok = np.isfinite(y0[members]) & np.isfinite(y1[members]) \
             & (y0[members] > 0) & (y1[members] > 0)
        return members[ok], y0[members][ok], y1[members][ok]

    ia, a0, a1 = pairs(ma, y1a)
    ir, r0, r1 = pairs(mr, y1r)
    out: dict = {"n_contrast": int(len(ir))}
    if len(ia) < 2 or len(ir) < 2:
        out["note_between"] = "fewer than 2 subjects in an arm: no contrast"
        return out
    pa, pr = 100 * (a1 / a0 - 1), 100 * (r1 / r0 - 1)
    w = stats.ttest_ind(pa, pr, equal_var=False)
    ci = w.confidence_interval(level)
    out.update({"welch_diff_pp": pa.mean() - pr.mean(), "welch_ci_low": ci.low,
                "welch_ci_high": ci.high, "p_welch": w.pvalue})
    tp = stats.ttest_ind(pa, pr, equal_var=True).statistic
    g, glo, ghi = hedges_g_ci(tp, len(pa), len(pr), level)
    sp = np.sqrt(((len(pa) - 1) * np.var(np.log1p(pa / 100), ddof=1)
                  + (len(pr) - 1) * np.var(np.log1p(pr / 100), ddof=1))
                 / (len(pa) + len(pr) - 2))
    out.update({"g_between": g, "g_between_ci_low": glo, "g_between_ci_high": ghi,
                "mde_between_pct": minimal_detectable_effect(
                    len(pa), sp, alpha=1 - level, power=power, paired=False, n2=len(pr))})
    yy = np.log(np.concatenate([a1, r1]))
    lb = np.log(np.concatenate([a0, r0]))
    cols = [np.ones_like(yy), lb - lb.mean(),
            np.r_[np.ones(len(a1)), np.zeros(len(r1))]]
    if covmat is not None:
        cols.extend(covmat[np.concatenate([ia, ir])].T)
    X = np.column_stack(cols)
    if X.shape[0] - np.linalg.matrix_rank(X) < 1:
        out["note_between"] = "ANCOVA has no residual degrees of freedom"
        return out
    fit = sm.OLS(yy, X).fit()
    lo, hi = fit.conf_int(alpha=1 - level)[2]
    out.update({"ancova_pct_diff": 100 * np.expm1(fit.params[2]),
                "ancova_ci_low": 100 * np.expm1(lo), "ancova_ci_high": 100 * np.expm1(hi),
                "p_ancova": float(fit.pvalues[2])})
    return out


def write_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a comparison table as TSV with its attrs in a JSON sidecar.

    Both files are written atomically (temporary file, then rename); missing values are
    written as ``n/a``.

    Parameters
    ----------
    table : pandas.DataFrame
        A table from :func:`compare_arms`, :func:`~sv2a.longitudinal.mixed_model`, ... Its
        ``attrs`` (outcome, baseline, reference arm, excluded subjects, ...) go to the sidecar.
    path : str or path-like
        Output ``.tsv`` path; the sidecar is the same stem with ``.json``. Parent folders are
        created.

    Returns
    -------
    pathlib.Path
        The TSV path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, text in ((path, table.to_csv(sep="\t", index=False, na_rep="n/a")),
                         (path.with_suffix(".json"),
                          json.dumps(table.attrs, default=str, indent=1))):
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    return path
