"""Factorial designs: every main effect, interaction and custom contrast, per region.

Participants carry any number of factors (columns of ``participants.tsv``, subject
coordinates of the group dataset), e.g. ``context`` = control / stress and ``treatment`` =
vehicle / single / repeated. :func:`contrast` fits, per region, a linear model given by a
formula over those factors (Wilkinson-Rogers notation, as statsmodels / patsy), on the log
scale because SV2A binding changes and scan noise are multiplicative:

* ``method='ols'``, longitudinal data (default): per follow-up session, the change model
  ``log(y1) - log(y0) ~ formula [+ covariates] [+ log(y0)]`` (ordinary least squares; the
  centred log baseline as covariate when ``adjust_baseline=True``, the ANCOVA of change,
  Vickers & Altman 2001, BMJ 323:1123);
* ``method='ols'``, cross-sectional data (no subject with a baseline and a follow-up, or one
  session): per session, ``log(y) ~ formula [+ covariates]``;
* ``method='mixed'``: all sessions at once, ``log(y) ~ session * (formula) [+ covariates] +
  (1 | subject)`` (statsmodels MixedLM, REML); the coefficients of ``session[s] x term`` are
  the same change effects as the OLS change model at session ``s`` (subjects with missing
  sessions still contribute; covariates adjust the level, not the change).

Factors use treatment coding with a chosen reference level; numeric covariates are centred at
the mean of the analysed subjects. Every coefficient, every term (type II F test for OLS, the
sums of squares of statsmodels ``anova_lm(typ=2)``; for the mixed model the Wald statistic
of the term's coefficients divided by its df, referred to F with the between-subject residual
df ``n_subjects - p``, exact for complete balanced data), every cell (mean change of one factor
combination) and any custom contrast is one row of a tidy table, with the estimate as % change
``100 (exp(b) - 1)`` and its CI, p, Holm and Benjamini-Hochberg adjustment across regions and
partial eta squared (``SS_term / (SS_term + SS_residual)``; ``t^2 / (t^2 + df)`` for one
coefficient).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..errors import DesignError, Sv2aWarning
from ._stats import (
    adjust_pvalues,
    check_baseline,
    choose_reference_arm,
    is_cross_sectional,
    outcome_values,
)

__all__ = ["contrast", "formula_variables"]

_FUNCS = {"C", "Treatment", "Sum", "Diff", "Helmert", "Poly", "I", "np", "log", "exp",
          "center", "standardize", "scale", "reference", "levels", "Q", "T"}
_COLUMNS = ["region", "session", "kind", "term", "estimate", "se", "pct", "pct_ci_low",
            "pct_ci_high", "statistic", "df_num", "df_den", "p", "p_holm", "q_bh",
            "eta2_partial", "n", "excluded", "note"]


# --------------------------------------------------------------------------- formula

def formula_variables(formula: str) -> list[str]:
    """The variable names a right-hand-side formula uses.

    Parameters
    ----------
    formula : str
        Right-hand side in Wilkinson-Rogers notation (``"treatment * context"``,
        ``"C(treatment) + age"``); no ``~``.

    Returns
    -------
    list of str
        Variable names in order of appearance (functions such as ``C``, ``np.log``,
        ``Treatment`` and quoted strings are skipped).

    Raises
    ------
    DesignError
        The formula has a left-hand side (``~``) or no variable.

    Examples
    --------
    >>> formula_variables("C(treatment, Treatment('vehicle')) * context + age")
    ['treatment', 'context', 'age']
    """
    if not isinstance(formula, str) or "~" in formula:
        raise DesignError(f"formula {formula!r} must be the right-hand side only (e.g. "
                          f"'treatment * context'); the outcome is given by outcome=.")
    s = re.sub(r"(['\"]).*?\1", " ", formula)
    out: list[str] = []
    for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(\s*\()?", s):
        name = m.group(0)
        if m.group(1) or name.split(".")[0] in _FUNCS:
            continue
        if re.match(r"\s*=", s[m.end():]):  # keyword argument of a function
            continue
        if name not in out:
            out.append(name)
    if not out:
        raise DesignError(f"formula {formula!r} names no variable; write e.g. "
                          f"'treatment * context'.")
    return out


def _pretty(name: str) -> str:
    return name.replace("[T.", "[")


def _subject_frame(ds: xr.Dataset, variables: Sequence[str], covariates: Sequence[str],
                   reference: Mapping[str, str] | None, formula: str
                   ) -> tuple[pd.DataFrame, dict[str, list[str]], dict[str, str]]:
    """Subject x variable frame (factors as Categorical, reference first) and exclusions."""
    subs = [str(s) for s in ds["subject"].values]
    frame = pd.DataFrame(index=pd.Index(subs, name="subject"))
    available = sorted(str(c) for c in ds.coords
                       if ds[c].dims == ("subject",) and c != "subject")
    excluded: dict[str, str] = {}
    for v in list(variables) + [c for c in covariates if c not in variables]:
        if v not in ds.coords or ds[v].dims != ("subject",):
            where = "formula" if v in variables else "covariates"
            raise DesignError(
                f"{where} names '{v}', which is not a participant column of the group dataset; "
                f"participant columns: {available}. Add a column '{v}' to participants.tsv "
                f"(and collect() again) or fix the {where}.")
        vals = ds[v].values
        if np.issubdtype(vals.dtype, np.number):
            x = vals.astype(float)
            miss = ~np.isfinite(x)
            frame[v] = x
        else:
            sv = np.asarray([str(a) for a in vals], dtype=object)
            miss = np.isin(sv, ["", "n/a", "nan", "None", "NA"])
            frame[v] = sv
        for s in np.asarray(subs)[miss]:
            excluded.setdefault("sub-" + s, f"no value for '{v}' in participants.tsv")
    levels: dict[str, list[str]] = {}
    reference = dict(reference or {})
    unknown = [f for f in reference if f not in variables and f not in covariates]
    if unknown:
        raise DesignError(f"reference= names {unknown}, which are not variables of the formula "
                          f"{formula!r} or covariates.")
    keep = [s for s in subs if "sub-" + s not in excluded]
    for v in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[v]):
            continue
        present = sorted({str(x) for x in frame.loc[keep, v]})
        if v in reference and reference[v] not in present:
            raise DesignError(f"reference level '{reference[v]}' of '{v}' is not a level; "
                              f"levels: {present}.")
        ref = choose_reference_arm(present, reference.get(v)) if present else ""
        levels[v] = [ref] + [lev for lev in present if lev != ref]
    return frame, levels, excluded


def _categorical(frame: pd.DataFrame, levels: Mapping[str, list[str]], rows) -> pd.DataFrame:
    f = frame.loc[rows].copy()
    for v, lev in levels.items():
        f[v] = pd.Categorical(f[v], categories=lev)
    for v in f.columns:
        if v not in levels:
            f[v] = f[v] - f[v].mean()
    return f


def _check_levels(frame: pd.DataFrame, levels: Mapping[str, list[str]], factors: Sequence[str],
                  formula: str) -> None:
    for v in factors:
        counts = frame[v].value_counts()
        few = {str(k): int(n) for k, n in counts.items() if n < 2}
        if few:
            subs = {lev: ["sub-" + s for s in frame.index[frame[v] == lev]] for lev in few}
            raise DesignError(
                f"factor '{v}' has level(s) with fewer than 2 analysable subjects: {subs}. "
                f"A level needs at least 2 subjects to be estimated; merge or drop the level in "
                f"participants.tsv, or exclude those subjects with collect(..., exclude=[...]).")
    if len(factors) > 1 and ("*" in formula or ":" in formula):
        seen = set(frame[list(factors)].astype(str).itertuples(index=False, name=None))
        empty = [dict(zip(factors, k, strict=True))
                 for k in product(*[levels[f] for f in factors]) if k not in seen]
        if empty:
            raise DesignError(
                f"the formula {formula!r} has an interaction but these factor combinations have "
                f"no subject: {empty[:6]}. An interaction with an empty cell cannot be "
                f"estimated; use '+' instead of '*' (main effects only) or drop the level.")


class _Design:
    """A patsy design of the between-subject formula over the analysed subjects."""

    def __init__(self, formula: str, frame: pd.DataFrame, levels: Mapping[str, list[str]],
                 covariates: Sequence[str], with_covariates: bool = True):
        import patsy

        rhs = formula + "".join(f" + {c}" for c in covariates if with_covariates)
        self.frame = frame
        self.levels = dict(levels)
        try:
            X = patsy.dmatrix(rhs, frame, return_type="dataframe", NA_action="raise")
        except Exception as exc:
            raise DesignError(f"cannot build the design of formula {formula!r}: {exc}") from exc
        self.info = X.design_info
        self.X = X.to_numpy(float)
        self.names = [_pretty(c) for c in X.columns]
        self.terms = []  # (name, column slice, set of factor names)
        numeric = {c for c in frame.columns
                   if not isinstance(frame[c].dtype, pd.CategoricalDtype)}
        self.slopes: set[str] = set()  # columns that are slopes of numeric variables, not %
        for term, sl in self.info.term_slices.items():
            facs = frozenset(f.name() for f in term.factors)
            self.terms.append((_pretty(term.name()), sl, facs))
            if any(re.search(rf"\b{re.escape(v)}\b", code) for v in numeric for code in facs):
                self.slopes |= set(self.names[sl])
        if np.linalg.matrix_rank(self.X) < self.X.shape[1]:
            raise DesignError(f"the design of formula {formula!r} is not of full rank (a "
                              f"variable is constant, or two are confounded); simplify the "
                              f"formula.")

    def rows_for(self, spec: Mapping[str, str]) -> np.ndarray:
        """Mean design row of a cell: factors set per ``spec``, others averaged over levels."""
        import patsy

        for k, v in spec.items():
            if k not in self.levels:
                raise DesignError(f"contrast names factor '{k}', which is not a factor of the "
                                  f"formula; factors: {sorted(self.levels)}.")
            if v not in self.levels[k]:
                raise DesignError(f"contrast names level '{v}' of '{k}'; levels: "
                                  f"{self.levels[k]}.")
        free = [f for f in self.levels if f not in spec]
        rows = []
        for combo in product(*[self.levels[f] for f in free]):
            nd = self.frame.copy()
            for k, v in list(spec.items()) + list(zip(free, combo, strict=True)):
                nd[k] = pd.Categorical([v] * len(nd), categories=self.levels[k])
            (m,) = patsy.build_design_matrices([self.info], nd)
            rows.append(np.asarray(m, float).mean(axis=0))
        return np.mean(rows, axis=0)


def _parse_contrast(name: str, spec: Any, design: _Design, extra: int) -> np.ndarray:
    """L vector (over the columns of the design + ``extra`` trailing columns)."""
    p = design.X.shape[1]
    if isinstance(spec, Mapping):
        L = np.zeros(p + extra)
        for k, w in spec.items():
            if k not in design.names:
                raise DesignError(f"contrast '{name}': coefficient '{k}' unknown; coefficients: "
                                  f"{design.names}.")
            L[design.names.index(k)] = float(w)
        return L
    if isinstance(spec, str):
        s = spec.strip()
        pat = re.compile(r"\s*([+-])?\s*(\d*\.?\d+)?\s*\*?\s*\[([^\]]*)\]\s*")
        pos, L = 0, np.zeros(p + extra)
        first = True
        while pos < len(s):
            m = pat.match(s, pos)
            if m is None or (m.group(1) is None and not first):
                raise DesignError(
                    f"contrast '{name}': cannot read {spec!r} at character {pos}. Write a "
                    f"linear combination of cells, e.g. '[treatment=repeated, context=stress] "
                    f"- [treatment=vehicle, context=stress]' (factors left out are averaged "
                    f"over their levels), a dict {{coefficient: weight}} or a vector.")
            sign = -1.0 if m.group(1) == "-" else 1.0
            w = float(m.group(2)) if m.group(2) else 1.0
            cell = {}
            for part in re.split(r"[,&]", m.group(3)):
                if not part.strip():
                    continue
                if "=" not in part:
                    raise DesignError(f"contrast '{name}': '{part.strip()}' must be "
                                      f"factor=level.")
                k, v = (x.strip() for x in part.split("=", 1))
                cell[k] = v
            L[:p] += sign * w * design.rows_for(cell)
            pos = m.end()
            first = False
        return L
    vec = np.asarray(spec, float).ravel()
    if vec.size != p + extra:
        raise DesignError(f"contrast '{name}' has {vec.size} weights; the model has "
                          f"{p + extra} coefficients: {design.names}"
                          f"{' + log_baseline' if extra else ''}.")
    return vec


def _cells(design: _Design) -> list[dict[str, str]]:
    facs = list(design.levels)
    return [dict(zip(facs, c, strict=True)) for c in product(*[design.levels[f]
                                                               for f in facs])]


# --------------------------------------------------------------------------- fits

def _ols(y: np.ndarray, X: np.ndarray):
    n, p = X.shape
    XtX_inv = np.linalg.pinv(X.T @ X)
    b = XtX_inv @ X.T @ y
    rss = float(np.sum((y - X @ b) ** 2))
    df = n - p
    s2 = rss / df if df > 0 else np.nan
    return b, s2 * XtX_inv, rss, df


def _rss(y: np.ndarray, X: np.ndarray) -> tuple[float, int]:
    if X.shape[1] == 0:
        return float(y @ y), 0
    b, *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(np.sum((y - X @ b) ** 2)), int(np.linalg.matrix_rank(X))


def _row(est: float, se: float, df: float, q: float) -> dict:
    t = est / se if se > 0 else np.nan
    if np.isfinite(df):
        p = 2 * stats.t.sf(abs(t), df) if np.isfinite(t) else np.nan
        eta = t * t / (t * t + df) if np.isfinite(t) else np.nan
    else:
        p = 2 * stats.norm.sf(abs(t)) if np.isfinite(t) else np.nan
        eta = np.nan
    return {"estimate": est, "se": se, "pct": 100 * np.expm1(est),
            "pct_ci_low": 100 * np.expm1(est - q * se), "pct_ci_high": 100 * np.expm1(est + q * se),
            "statistic": t, "df_num": 1.0, "df_den": df, "p": p, "eta2_partial": eta}


def _ols_rows(y: np.ndarray, X: np.ndarray, names: list[str], terms: list, contrasts: dict,
              cells: list[tuple[str, np.ndarray]], level: float, pct_cov: set[str]) -> list[dict]:
    b, cov, rss, df = _ols(y, X)
    if df < 1:
        return [{"kind": "model", "term": "", "note": f"no residual degrees of freedom "
                 f"(n={len(y)}, {X.shape[1]} coefficients)"}]
    q = stats.t.ppf(0.5 + level / 2, df)
    rows = []
    for j, nm in enumerate(names):
        r = _row(float(b[j]), float(np.sqrt(cov[j, j])), df, q)
        if nm in pct_cov:
            r.update(pct=np.nan, pct_ci_low=np.nan, pct_ci_high=np.nan)
        rows.append({"kind": "coefficient", "term": nm} | r)
    for tname, cols, facs in terms:
        if tname == "Intercept":
            continue
        contain = [c for t2, c2, f2 in terms if f2 > facs for c in c2]
        drop = set(cols) | set(contain)
        a_cols = [c for c in range(X.shape[1]) if c not in drop]
        rss_a, rank_a = _rss(y, X[:, a_cols])
        rss_b, rank_b = _rss(y, X[:, sorted(set(a_cols) | set(cols))])
        ss, dfn = rss_a - rss_b, rank_b - rank_a
        F = (ss / dfn) / (rss / df) if dfn > 0 and rss > 0 else np.nan
        rows.append({"kind": "term", "term": tname, "statistic": F, "df_num": float(dfn),
                     "df_den": float(df), "p": stats.f.sf(F, dfn, df) if np.isfinite(F)
                     else np.nan, "eta2_partial": ss / (ss + rss) if rss > 0 else np.nan})
    for kind, items in (("cell", cells), ("contrast", list(contrasts.items()))):
        for nm, L in items:
            rows.append({"kind": kind, "term": nm}
                        | _row(float(L @ b), float(np.sqrt(max(L @ cov @ L, 0.0))), df, q))
    return rows


# --------------------------------------------------------------------------- main

def contrast(
    ds: xr.Dataset,
    formula: str = "arm",
    outcome: str = "BPND",
    baseline: str = "baseline",
    *,
    covariates: Sequence[str] | None = None,
    adjust_baseline: bool | None = None,
    method: str = "ols",
    reference: Mapping[str, str] | None = None,
    contrasts: Mapping[str, Any] | None = None,
    sessions: Sequence[str] | None = None,
    design: str = "auto",
    cells: bool = True,
    level: float = 0.95,
    require_converged: bool = True,
) -> pd.DataFrame:
    """Main effects, interactions, cells and custom contrasts of a factorial design, per region.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`~sv2a.longitudinal.collect`); the formula's variables are
        subject coordinates (columns of ``participants.tsv``).
    formula : str
        Right-hand side over participant columns, e.g. ``"treatment * context"`` (main effects
        and interaction), ``"treatment + context"``, ``"arm"``. String columns are factors
        (treatment coding), numeric columns enter linearly (centred).
    outcome : str
        Positive outcome parameter (``BPND``, ``VT``, ...), analysed on the natural-log scale.
    baseline : str
        Baseline session label (longitudinal designs).
    covariates : sequence of str, optional
        Further participant columns added to the model (``age``, ``sex``); numeric ones are
        centred at the analysed subjects' mean.
    adjust_baseline : bool, optional
        OLS change model only: add the centred log baseline as covariate (default True).
        Refused with ``method='mixed'`` and for cross-sectional data.
    method : {'ols', 'mixed'}
        Per-session OLS of change (or of log values, cross-sectional), or one mixed model over
        all sessions ``log(y) ~ session * (formula) + covariates + (1 | subject)``.
    reference : mapping {factor: level}, optional
        Reference level of each factor (default: a level named like control / vehicle /
        placebo, else the first in sorted order).
    contrasts : mapping {name: spec}, optional
        Custom contrasts. ``spec`` is a string combining cells, e.g.
        ``"[treatment=repeated, context=stress] - [treatment=vehicle, context=stress]"``
        (factors not named are averaged over their levels; weights like ``0.5*[...]``
        allowed), a mapping ``{coefficient name: weight}``, or a vector of weights over the
        coefficients (``table.attrs['coefficients']``).
    sessions : sequence of str, optional
        Follow-up (or, cross-sectional, all) sessions to analyse; default all.
    design : {'auto', 'longitudinal', 'cross-sectional'}
        'auto': cross-sectional when no subject has a baseline and a follow-up value.
    cells : bool
        Add one row per factor combination (its mean change; longitudinal designs).
    level : float
        Confidence level of the CIs (0-1).
    require_converged : bool
        Treat kinetic fits with ``converged == 0`` as missing (with a warning).

    Returns
    -------
    pandas.DataFrame
        One row per region x session x (coefficient, term, cell, contrast). Columns:
        ``region session kind term estimate se pct pct_ci_low pct_ci_high statistic df_num
        df_den p p_holm q_bh eta2_partial n excluded note``. ``kind``: ``coefficient``
        (``term`` named like ``treatment[repeated]:context[stress]``; ``Intercept`` is the
        change of the reference cell, or its log level cross-sectionally), ``term`` (F test,
        type II; Wald F for the mixed model),
        ``cell`` (mean change of ``treatment=...,context=...``) or ``contrast`` (the name
        given). Mixed model: t and Wald-F with ``n_subjects - p`` denominator df.
        ``estimate``/``se``: log scale (natural log; for ``log_baseline`` and numeric
        covariates, per log unit / per unit); ``pct``, ``pct_ci_*``: % change or % difference
        ``100 (exp(b) - 1)``; ``statistic``: t or F;
        ``eta2_partial`` unitless (NaN for the mixed model); ``p_holm`` / ``q_bh``: Holm and
        Benjamini-Hochberg across regions within session x kind x term; ``n`` subjects;
        ``excluded``: subjects left out of that region's fit and why. ``attrs``: outcome,
        baseline, formula, method, design, model (the fitted formula), reference, levels,
        coefficients, excluded (subject -> reason), level.

    Raises
    ------
    DesignError
        A formula or covariate naming a column that is not in ``participants.tsv``, a factor
        level with fewer than 2 subjects, an empty cell under an interaction, an unknown
        reference level, a baseline session that is not in the data, or an option the design
        cannot use.
    DataError
        The outcome is not in the dataset.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> n = 24
    >>> bl = np.exp(rng.normal(1.0, 0.1, n))
    >>> treat = np.repeat(["vehicle", "ketamine"], 12)
    >>> fu = bl * np.where(treat == "ketamine", 1.10, 1.0) * np.exp(rng.normal(0, 0.05, n))
    >>> ds = xr.Dataset({"BPND": (("subject", "session", "region"),
    ...                            np.stack([bl, fu], 1)[:, :, None])},
    ...                 coords={"subject": [f"{i:02d}" for i in range(n)],
    ...                         "session": ["baseline", "24h"], "region": ["cortex"],
    ...                         "arm": ("subject", treat), "treatment": ("subject", treat)})
    >>> t = contrast(ds, "treatment")
    >>> r = t[(t.kind == "coefficient") & (t.term == "treatment[ketamine]")].iloc[0]
    >>> bool(r.pct_ci_low < 10 < r.pct_ci_high), t.attrs["reference"]
    (True, {'treatment': 'vehicle'})
    """
    if method not in ("ols", "mixed"):
        raise DesignError(f"method must be 'ols' or 'mixed', not {method!r}")
    if design not in ("auto", "longitudinal", "cross-sectional"):
        raise DesignError(f"design must be 'auto', 'longitudinal' or 'cross-sectional', not "
                          f"{design!r}")
    covariates = list(covariates or [])
    variables = formula_variables(formula)
    y = outcome_values(ds, outcome, require_converged)
    frame, levels, excluded = _subject_frame(ds, variables, covariates, reference, formula)
    cross = is_cross_sectional(y, baseline) if design == "auto" else design == "cross-sectional"
    if cross and method == "mixed":
        raise DesignError("method='mixed' needs repeated sessions of the same subjects; these "
                          "data are cross-sectional. Use method='ols'.")
    if adjust_baseline and (cross or method == "mixed"):
        raise DesignError("adjust_baseline=True applies to the OLS change model only (not to "
                          f"{'cross-sectional data' if cross else 'the mixed model'}); leave it "
                          f"unset.")
    adjust = bool(adjust_baseline if adjust_baseline is not None else not cross)
    all_sessions = [str(s) for s in y["session"].values]
    if not cross:
        check_baseline(y, baseline)
    subs = [str(s) for s in y["subject"].values]
    regions = [str(r) for r in y["region"].values]
    vals = np.asarray(y.values, float)
    nonpos = np.isfinite(vals) & (vals <= 0)
    if nonpos.any():
        warnings.warn(f"{int(nonpos.sum())} non-positive {outcome} value(s) cannot be logged "
                      f"and are treated as missing.", Sv2aWarning, stacklevel=2)
        vals = np.where(nonpos, np.nan, vals)
    with np.errstate(all="ignore"):
        logv = np.log(vals)
    ok_subject = np.array(["sub-" + s not in excluded for s in subs])
    scanned = np.isfinite(logv).any(axis=2)
    if not cross:
        b = all_sessions.index(baseline)
        for i, s in enumerate(subs):
            if ok_subject[i] and not scanned[i, b] and scanned[i].any() and method == "ols":
                excluded.setdefault("sub-" + s, f"no {baseline} session")
    use = np.array(["sub-" + s not in excluded for s in subs]) & scanned.any(axis=1)
    if excluded:
        warnings.warn(f"subjects left out of the factorial analysis: {excluded} (listed in "
                      f"table.attrs['excluded'] and the 'excluded' column).", Sv2aWarning,
                      stacklevel=2)
    factors = [v for v in levels if v in variables]
    cov_factors = [v for v in levels if v not in variables]
    used_subs = [s for s, u in zip(subs, use, strict=True) if u]
    if len(used_subs) < 3:
        raise DesignError(f"only {len(used_subs)} subject(s) can be analysed; need at least 3.")
    _check_levels(frame.loc[used_subs], levels, factors + cov_factors, formula)
    fr = _categorical(frame, levels, used_subs)
    fdesign = _Design(formula, fr, {k: levels[k] for k in factors}, covariates, True)
    contrasts = dict(contrasts or {})

    rows: list[dict] = []
    idx_used = np.flatnonzero(use)
    if method == "mixed":
        rows, model_desc = _mixed(logv[idx_used], all_sessions, regions, baseline, formula, fr,
                                  {k: levels[k] for k in factors}, covariates, contrasts, cells,
                                  level, sessions)
    else:
        extra = 1 if adjust else 0
        Ls = {nm: _parse_contrast(nm, sp, fdesign, extra) for nm, sp in contrasts.items()}
        cell_L = []
        if cells and not cross:
            for cell in _cells(fdesign):
                cell_L.append((", ".join(f"{k}={v}" for k, v in cell.items()),
                               np.concatenate([fdesign.rows_for(cell), np.zeros(extra)])))
        names = fdesign.names + (["log_baseline"] if adjust else [])
        terms = list(fdesign.terms)
        if adjust:
            p = fdesign.X.shape[1]
            terms.append(("log_baseline", slice(p, p + 1), frozenset({"log_baseline"})))
        terms = [(t, list(range(sl.start, sl.stop)), f) for t, sl, f in terms]
        non_pct = {"log_baseline"} | fdesign.slopes
        if cross:
            targets = [s for s in all_sessions if sessions is None or s in sessions]
        else:
            targets = [s for j, s in enumerate(all_sessions)
                       if j != b and (sessions is None or s in sessions)
                       and scanned[idx_used, j].any()]
        if sessions is not None:
            bad = [s for s in sessions if s not in all_sessions]
            if bad:
                raise DesignError(f"sessions {bad} not in the dataset; sessions: "
                                  f"{all_sessions}.")
        for ses in targets:
            j = all_sessions.index(ses)
            for k, reg in enumerate(regions):
                if cross:
                    yy = logv[idx_used, j, k]
                    X = fdesign.X
                else:
                    y0 = logv[idx_used, b, k]
                    yy = logv[idx_used, j, k] - y0
                    X = fdesign.X
                    if adjust:
                        X = np.column_stack([X, y0 - np.nanmean(y0[np.isfinite(yy)])])
                ok = np.isfinite(yy)
                if adjust and not cross:
                    ok &= np.isfinite(X[:, -1])
                if not ok.any():
                    continue
                miss = [f"sub-{used_subs[i]}: no {outcome} at "
                        f"{'ses-' + ses if cross else f'{baseline} and {ses}'}"
                        for i in np.flatnonzero(~ok)]
                common = {"region": reg, "session": ses, "n": int(ok.sum()),
                          "excluded": "; ".join(miss)}
                Xo = X[ok]
                if np.linalg.matrix_rank(Xo) < Xo.shape[1]:
                    rows.append(common | {"kind": "model", "term": "", "note":
                                          "design not estimable with the subjects that have "
                                          "data here (an empty cell or level)"})
                    continue
                for r in _ols_rows(yy[ok], Xo, names, terms, Ls, cell_L, level, non_pct):
                    rows.append(common | r)
        if cross:
            model_desc = f"OLS per session: log({outcome}) ~ {formula}" + "".join(
                f" + {c}" for c in covariates)
        else:
            model_desc = (f"OLS per follow-up session: log({outcome}) - log({outcome} at "
                          f"{baseline}) ~ {formula}" + "".join(f" + {c}" for c in covariates)
                          + (" + log_baseline (centred)" if adjust else ""))
    table = pd.DataFrame(rows)
    if table.empty:
        raise DesignError(f"nothing to analyse: no session has {outcome} values for the "
                          f"formula {formula!r}.")
    for c in _COLUMNS:
        if c not in table:
            table[c] = np.nan
    g = table.groupby(["session", "kind", "term"], sort=False)["p"]
    table["p_holm"] = g.transform(lambda p: adjust_pvalues(p, "holm"))
    table["q_bh"] = g.transform(lambda p: adjust_pvalues(p, "fdr_bh"))
    table = table[_COLUMNS].reset_index(drop=True)
    table.attrs.update({
        "outcome": outcome, "baseline": None if cross else baseline, "formula": formula,
        "method": method, "design": "cross-sectional" if cross else "longitudinal",
        "model": model_desc, "reference": {k: levels[k][0] for k in levels},
        "levels": {k: list(v) for k, v in levels.items()},
        "coefficients": fdesign.names + (["log_baseline"] if method == "ols" and adjust
                                         else []),
        "excluded": dict(excluded), "level": level,
        "pct": "100 (exp(estimate) - 1): % change (longitudinal) or % difference "
               "(cross-sectional); NaN for numeric covariates and log_baseline"})
    json.dumps(table.attrs["excluded"])  # stays serialisable for reports
    return table


def _mixed(logv: np.ndarray, sessions: list[str], regions: list[str], baseline: str,
           formula: str, fr: pd.DataFrame, levels: dict[str, list[str]],
           covariates: list[str], contrasts: Mapping[str, Any], cells: bool, level: float,
           wanted: Sequence[str] | None) -> tuple[list[dict], str]:
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    fdes = _Design(formula, fr, levels, covariates, with_covariates=False)
    Xf = fdes.X
    p = Xf.shape[1]
    Xc = np.empty((len(fr), 0))
    if covariates:
        cdes = _Design("1", fr, {}, covariates, True)
        Xc = cdes.X[:, 1:]
    b = sessions.index(baseline)
    follow = [s for j, s in enumerate(sessions) if j != b and np.isfinite(logv[:, j]).any()
              and (wanted is None or s in wanted)]
    Ls = {nm: _parse_contrast(nm, sp, fdes, 0) for nm, sp in contrasts.items()}
    cell_L = [(", ".join(f"{k}={v}" for k, v in c.items()), fdes.rows_for(c))
              for c in _cells(fdes)] if cells else []
    rows: list[dict] = []
    n_sub = len(fr)
    for k, reg in enumerate(regions):
        endog, exog, groups = [], [], []
        for j, ses in enumerate(sessions):
            if j != b and ses not in follow:
                continue
            blocks = [Xf, Xc]
            for s in follow:
                blocks.append(Xf * (1.0 if s == ses else 0.0))
            Xj = np.column_stack(blocks)
            v = logv[:, j, k]
            ok = np.isfinite(v)
            endog.append(v[ok])
            exog.append(Xj[ok])
            groups.append(np.arange(n_sub)[ok])
        e, X, g = np.concatenate(endog), np.vstack(exog), np.concatenate(groups)
        n = len(set(g.tolist()))
        if np.linalg.matrix_rank(X) < X.shape[1]:
            rows.append({"region": reg, "session": "all", "kind": "model", "term": "", "n": n,
                         "note": "design not estimable with the subjects that have data"})
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res, err = None, ""
            for opt in ("lbfgs", "bfgs", "powell"):  # lbfgs can fail at a zero variance
                try:
                    res = sm.MixedLM(e, X, groups=g).fit(reml=True, method=opt)
                    break
                except (np.linalg.LinAlgError, ValueError) as exc:
                    err = str(exc)
            if res is None:
                rows.append({"region": reg, "session": "all", "kind": "model", "term": "",
                             "n": n, "note": f"mixed model failed: {err}"})
                continue
        note = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught
                                 if issubclass(w.category, ConvergenceWarning)}))
        fe = np.asarray(res.fe_params)
        cov = np.asarray(res.cov_params())[: len(fe), : len(fe)]
        off0 = p + Xc.shape[1]
        # small-sample reference: t / F with the between-subject residual df of the change
        # model (exact for complete, balanced data, where the fit equals OLS on differences)
        dfm = float(max(n - p - Xc.shape[1], 1))
        for si, ses in enumerate(follow):
            off = off0 + si * p
            common = {"region": reg, "session": ses, "n": n, "note": note, "excluded": ""}

            def emit(kind: str, name: str, L: np.ndarray, common=common, off=off, fe=fe,
                     cov=cov, dfm=dfm) -> None:
                full = np.zeros(len(fe))
                full[off:off + p] = L
                r = _row(float(full @ fe), float(np.sqrt(max(full @ cov @ full, 0.0))),
                         dfm, stats.t.ppf(0.5 + level / 2, dfm))
                rows.append(common | {"kind": kind, "term": name} | r
                            | {"eta2_partial": np.nan})

            for j2, nm in enumerate(fdes.names):
                L = np.zeros(p)
                L[j2] = 1
                emit("coefficient", nm, L)
                if nm in fdes.slopes:
                    rows[-1].update(pct=np.nan, pct_ci_low=np.nan, pct_ci_high=np.nan)
            for tname, sl, _ in fdes.terms:
                if tname == "Intercept":
                    continue
                idx = np.arange(off + sl.start, off + sl.stop)
                d = fe[idx]
                V = cov[np.ix_(idx, idx)]
                try:
                    chi2 = float(d @ np.linalg.solve(V, d))
                except np.linalg.LinAlgError:
                    chi2 = np.nan
                F = chi2 / len(idx)
                rows.append(common | {"kind": "term", "term": tname, "statistic": F,
                                      "df_num": float(len(idx)), "df_den": dfm,
                                      "p": float(stats.f.sf(F, len(idx), dfm))
                                      if np.isfinite(F) else np.nan})
            for nm, L in cell_L:
                emit("cell", nm, L)
            for nm, L in Ls.items():
                emit("contrast", nm, L)
    desc = (f"MixedLM (REML): log(y) ~ session * ({formula})"
            + "".join(f" + {c}" for c in covariates) + " + (1 | subject)")
    return rows, desc
