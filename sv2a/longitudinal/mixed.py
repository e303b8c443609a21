"""Linear mixed model ``log(y) ~ arm x session + (1 | subject)`` (statsmodels MixedLM).

The fixed effects are parametrised as cell means of change so that designs where arms have
different follow-up sessions (independent 24 h and 7 d arms) stay estimable::

    log y_ij = alpha_arm(i) + sum_(a, s) delta_(a, s) [arm(i) = a, session(j) = s] + u_i + e_ij

``alpha_a`` is arm a's baseline mean, ``delta_(a, s)`` its change from baseline at session s
(the arm x session interaction of the usual treatment coding), ``u_i ~ N(0, tau^2)`` a random
subject intercept, ``e_ij ~ N(0, sigma^2)``. This is the same model as
``log(y) ~ C(arm) * C(session)`` restricted to the cells that exist. Subjects with a missing
session still contribute (unlike the paired analysis). Between-arm contrasts of change are
linear combinations ``delta_(a, s) - delta_(ref, s)``; a joint Wald test of all of them is the
arm x session interaction test.

``region = 'all_regions'`` is the same model on the composite ``mean_r log y_ijr`` (the log of
the geometric mean over regions) of subject-sessions with every region present.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..errors import DesignError, Sv2aWarning
from ._stats import adjust_pvalues, check_baseline, choose_reference_arm, outcome_values

__all__ = ["mixed_model", "COMPOSITE"]

COMPOSITE = "all_regions"


def mixed_model(
    ds: xr.Dataset,
    outcome: str = "BPND",
    baseline: str = "baseline",
    *,
    regions: Sequence[str] | str | None = None,
    composite: bool = True,
    reference_arm: str | None = None,
    level: float = 0.95,
    reml: bool = True,
    require_converged: bool = True,
) -> pd.DataFrame:
    """Fit ``log(outcome) ~ arm x session + (1 | subject)`` globally and per region.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`~sv2a.longitudinal.collect`).
    outcome : str
        Positive outcome parameter (modelled on the natural-log scale).
    baseline : str
        Baseline session label.
    regions : sequence of str, 'none' or None
        Regions to fit one by one (default all; ``'none'`` only the composite).
    composite : bool
        Also fit the all-regions composite (row ``region == 'all_regions'``).
    reference_arm : str, optional
        Arm the others are contrasted with (default as
        :func:`~sv2a.longitudinal.choose_reference_arm`).
    level : float
        Confidence level of ``pct_ci_*`` (0-1).
    reml : bool
        REML (default) or ML estimation.
    require_converged : bool
        Treat kinetic fits with ``converged == 0`` as missing (with a warning).

    Returns
    -------
    pandas.DataFrame
        Rows per region x arm x follow-up session with ``contrast`` = ``'change'`` (change from
        baseline within the arm) or ``'vs <ref>'`` (difference in change from the reference
        arm), plus one ``'arm x session (joint Wald)'`` row per region. Columns ``region arm
        session contrast estimate se z p pct_change pct_ci_low pct_ci_high q_regions
        n_subjects n_obs subject_sd residual_sd converged``; estimates on the natural-log scale,
        ``pct_* = 100 (exp(.) - 1)`` in %; ``subject_sd`` / ``residual_sd`` on the log scale;
        ``q_regions`` is BH over regions (composite excluded). The joint Wald row holds the
        chi-square statistic in ``estimate`` and its degrees of freedom in ``df``.

    Raises
    ------
    DesignError
        Baseline absent, unknown regions, or no arm with baseline and follow-up values.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    y = outcome_values(ds, outcome, require_converged)
    check_baseline(y, baseline)
    subjects = np.asarray([str(s) for s in y["subject"].values])
    sessions = [str(s) for s in y["session"].values]
    arms_of = np.asarray([str(a) for a in ds["arm"].values])
    arm_names = sorted(set(arms_of))
    ref = choose_reference_arm(arm_names, reference_arm)
    vals = y.values.copy()
    vals[~(vals > 0)] = np.nan  # logs need positive values (warned by compare_arms too)

    targets: list[tuple[str, np.ndarray]] = []
    if composite:
        lv = np.log(vals)
        full = np.isfinite(lv).all(axis=2)
        part = np.isfinite(lv).any(axis=2) & ~full
        if part.any():
            idx = np.argwhere(part)[:10]
            warnings.warn(f"subject-sessions with some regions missing are left out of the "
                          f"'{COMPOSITE}' composite: "
                          f"{[f'sub-{subjects[i]}/ses-{sessions[j]}' for i, j in idx]}",
                          Sv2aWarning, stacklevel=2)
        comp = np.full(full.shape, np.nan)
        comp[full] = lv[full].mean(axis=-1)
        targets.append((COMPOSITE, comp))
    reg_list = [str(r) for r in y["region"].values]
    if isinstance(regions, str) and regions == "none":
        reg_list = []
    elif regions is not None:
        unknown = [r for r in regions if r not in reg_list]
        if unknown:
            raise DesignError(f"regions {unknown} not in the dataset; regions: {reg_list}")
        reg_list = list(regions)
    for r in reg_list:
        k = [str(x) for x in y["region"].values].index(r)
        targets.append((r, np.log(vals[:, :, k])))

    b = sessions.index(baseline)
    rows = []
    dropped_arms = set()
    for name, ly in targets:
        ii, jj = np.nonzero(np.isfinite(ly))
        endog = ly[ii, jj]
        obs_arm = arms_of[ii]
        cols, labels, cells = [], [], []
        for a in arm_names:
            has_base = np.any((obs_arm == a) & (jj == b))
            if not has_base:
                if np.any(obs_arm == a):
                    dropped_arms.add(a)
                continue
            cols.append((obs_arm == a).astype(float))
            labels.append(f"arm[{a}]")
        kept = [a for a in arm_names if f"arm[{a}]" in labels]
        keep_obs = np.isin(obs_arm, kept)
        for a in kept:
            for j, s in enumerate(sessions):
                if j == b:
                    continue
                ind = ((obs_arm == a) & (jj == j)).astype(float)
                if ind.sum() > 0:
                    cols.append(ind)
                    labels.append(f"arm[{a}]:session[{s}]")
                    cells.append((a, s, len(labels) - 1))
        if not cells:
            continue
        X = np.column_stack(cols)[keep_obs]
        endog_k, groups = endog[keep_obs], subjects[ii][keep_obs]
        n_subj = len(set(groups))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = sm.MixedLM(endog_k, X, groups=groups).fit(reml=reml, method="lbfgs")
            except (np.linalg.LinAlgError, ValueError) as exc:
                warnings.warn(f"mixed model failed for region {name}: {exc}", Sv2aWarning,
                              stacklevel=2)
                continue
        converged = bool(res.converged)
        notes = sorted({str(w.message).splitlines()[0] for w in caught
                        if issubclass(w.category, ConvergenceWarning | RuntimeWarning)})
        fe = np.asarray(res.fe_params)
        cov = np.asarray(res.cov_params())[: len(fe), : len(fe)]
        common = {"region": name, "n_subjects": n_subj, "n_obs": len(endog_k),
                  "subject_sd": float(np.sqrt(max(np.asarray(res.cov_re)[0, 0], 0.0))),
                  "residual_sd": float(np.sqrt(res.scale)), "converged": converged,
                  "fit_warning": "; ".join(notes)}
        zq = stats.norm.ppf(0.5 + level / 2)

        def row(arm, ses, contrast, L, common=common, fe=fe, cov=cov, zq=zq):
            est = float(L @ fe)
            se = float(np.sqrt(L @ cov @ L))
            z = est / se if se > 0 else np.nan
            return common | {
                "arm": arm, "session": ses, "contrast": contrast, "estimate": est, "se": se,
                "z": z, "p": 2 * stats.norm.sf(abs(z)) if np.isfinite(z) else np.nan,
                "pct_change": 100 * np.expm1(est), "pct_ci_low": 100 * np.expm1(est - zq * se),
                "pct_ci_high": 100 * np.expm1(est + zq * se)}

        ref_cells = {s: c for a, s, c in cells if a == ref}
        joint = []
        for a, s, c in cells:
            L = np.zeros(len(fe))
            L[c] = 1
            rows.append(row(a, s, "change", L))
            if a == ref:
                continue
            rc = ref_cells.get(s)
            if rc is None and len(ref_cells) == 1 and sum(x[0] == a for x in cells) == 1:
                rc = next(iter(ref_cells.values()))
            if rc is not None:
                L2 = L.copy()
                L2[rc] -= 1
                joint.append(L2)
                rows.append(row(a, s, f"vs {ref}", L2))
        if joint:
            Lj = np.vstack(joint)
            d = Lj @ fe
            V = Lj @ cov @ Lj.T
            try:
                chi2 = float(d @ np.linalg.solve(V, d))
                p = float(stats.chi2.sf(chi2, Lj.shape[0]))
            except np.linalg.LinAlgError:
                chi2, p = np.nan, np.nan
            rows.append(common | {"arm": "all", "session": "all",
                                  "contrast": "arm x session (joint Wald)",
                                  "estimate": chi2, "se": np.nan, "z": np.nan, "p": p,
                                  "df": Lj.shape[0]})
    if dropped_arms:
        warnings.warn(f"arms without any '{baseline}' value cannot be modelled and were left "
                      f"out: {sorted(dropped_arms)}", Sv2aWarning, stacklevel=2)
    table = pd.DataFrame(rows)
    if table.empty:
        raise DesignError(f"no arm has '{baseline}' and follow-up {outcome} values; the mixed "
                          f"model has nothing to estimate.")
    regional = table["region"] != COMPOSITE
    table["q_regions"] = np.nan
    if regional.any():
        table.loc[regional, "q_regions"] = table[regional].groupby(
            ["arm", "session", "contrast"])["p"].transform(lambda p: adjust_pvalues(p, "fdr_bh"))
    cols = ["region", "arm", "session", "contrast", "estimate", "se", "z", "p", "pct_change",
            "pct_ci_low", "pct_ci_high", "q_regions", "n_subjects", "n_obs", "subject_sd",
            "residual_sd", "converged", "fit_warning"]
    table = table[cols + [c for c in table.columns if c not in cols]]
    table.attrs.update({"outcome": outcome, "baseline": baseline, "reference_arm": ref,
                        "model": "log(y) ~ arm x session + (1|subject), statsmodels MixedLM "
                                 + ("REML" if reml else "ML"),
                        "level": level})
    if not table["converged"].all():
        bad = sorted(set(table.loc[~table["converged"].astype(bool), "region"]))
        warnings.warn(f"mixed model did not converge cleanly for: {bad}", Sv2aWarning,
                      stacklevel=2)
    return table
