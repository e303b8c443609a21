"""Does baseline synaptic density (or its early change) predict treatment response?

:func:`predict_response` fits an L2-penalised logistic regression of a binary responder label
on regional features (log outcome at baseline, or log ratio follow-up / baseline) and judges
it only on subjects the model did not see:

* every preprocessing step is inside the cross-validation folds: features are standardised
  with the mean and SD of the training subjects of each fold (the penalty acts on standardised
  coefficients); there is no feature selection -- the features are the regions you pass;
* ``cv='loo'``: each subject's probability comes from a model fitted without it (for the
  calibration and the ROC curve); the AUC is the leave-pair-out estimate (every responder /
  non-responder pair held out together, Airola et al. 2011, Comput Stat Data Anal 55:1828),
  because the AUC of pooled leave-one-out predictions is biased below 0.5 when there is no
  signal;
* ``cv='repeated-kfold'``: stratified k-fold repeated ``n_repeats`` times; the AUC counts the
  responder / non-responder pairs that fall in the same test fold (scored by one model);
* CI: percentile bootstrap over subjects (responders and non-responders resampled
  separately) of the cross-validated pair concordances; p-value: the whole cross-validation
  rerun on ``n_permutations`` label permutations, ``p = (1 + #{AUC_perm >= AUC}) /
  (1 + n_permutations)``;
* calibration of the out-of-fold probabilities: slope of ``logit P(y) = a + b logit(p)`` and
  the calibration-in-the-large intercept (``b`` fixed at 1), plus a table by predicted-risk
  bins.

With fewer than 10 subjects in a class the AUC is reported, with a :class:`Sv2aWarning` and
``result.adequate = False``: its CI is then too wide to support a claim either way.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from ..errors import DataError, DesignError, Sv2aWarning
from ._stats import check_baseline, outcome_values
from .scores import _check_subjects, _score_source, as_scores, score_values

__all__ = ["predict_response", "ResponsePrediction", "plot_roc", "MIN_PER_CLASS"]

#: Fewer subjects than this in either class makes the result "inadequate" (with a warning).
MIN_PER_CLASS = 10
_PENALTY = {"ridge": 1.0, "logistic": 1e-4}
_TRUE = {"1", "1.0", "true", "yes", "y", "responder", "response", "remitter", "remission"}
_FALSE = {"0", "0.0", "false", "no", "n", "nonresponder", "non-responder", "non_responder",
          "nonremitter", "none"}


@dataclass(frozen=True)
class ResponsePrediction:
    """Cross-validated prediction of a binary response.

    Attributes
    ----------
    auc : float
        Cross-validated area under the ROC curve (0-1; 0.5 = chance).
    auc_ci_low, auc_ci_high : float
        Percentile bootstrap CI of ``auc``.
    p_permutation : float
        Permutation p-value of ``auc`` (NaN when ``n_permutations=0``).
    n, n_responders, n_nonresponders : int
        Subjects analysed and per class.
    calibration_slope, calibration_intercept : float
        Calibration of the out-of-fold probabilities (slope 1 and intercept 0 = calibrated;
        slope < 1 = over-confident predictions).
    calibration : pandas.DataFrame
        Bins of predicted probability: ``bin n mean_predicted observed_fraction``.
    predictions : pandas.DataFrame
        Per subject: ``subject arm responder probability`` (out-of-fold).
    coefficients : pandas.DataFrame
        Per feature: ``feature coefficient`` of the model fitted on all subjects (per SD of
        the feature; log odds), ``odds_ratio_per_sd``, for description only.
    features : tuple of str
        Feature names (``baseline:cortex``, ``change:hippocampus``).
    settings : dict
        The options used (model, penalty, cv, folds, repeats, seed, responder rule ...).
    excluded : dict
        Subject -> reason for subjects left out.
    adequate : bool
        False when a class has fewer than :data:`MIN_PER_CLASS` subjects.
    note : str
        Why the result is inadequate (empty otherwise).
    null_aucs : numpy.ndarray
        AUCs of the permutation runs.
    """

    auc: float
    auc_ci_low: float
    auc_ci_high: float
    p_permutation: float
    n: int
    n_responders: int
    n_nonresponders: int
    calibration_slope: float
    calibration_intercept: float
    calibration: pd.DataFrame
    predictions: pd.DataFrame
    coefficients: pd.DataFrame
    features: tuple[str, ...]
    settings: dict
    excluded: dict
    adequate: bool
    note: str
    null_aucs: np.ndarray = field(repr=False)

    def summary(self) -> pd.DataFrame:
        """One-row table of the headline numbers.

        Returns
        -------
        pandas.DataFrame
            Columns ``n n_responders n_nonresponders auc auc_ci_low auc_ci_high
            p_permutation calibration_slope calibration_intercept model cv features adequate
            note`` (AUC unitless, 0-1).
        """
        return pd.DataFrame([{
            "n": self.n, "n_responders": self.n_responders,
            "n_nonresponders": self.n_nonresponders, "auc": self.auc,
            "auc_ci_low": self.auc_ci_low, "auc_ci_high": self.auc_ci_high,
            "p_permutation": self.p_permutation, "calibration_slope": self.calibration_slope,
            "calibration_intercept": self.calibration_intercept,
            "model": self.settings.get("model"), "cv": self.settings.get("cv"),
            "features": ", ".join(self.features), "adequate": self.adequate,
            "note": self.note}])


# --------------------------------------------------------------------------- logistic fits

def _fit_batch(X: np.ndarray, Y: np.ndarray, M: np.ndarray, lam: float, iters: int = 60
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Penalised logistic fits, one per row of the training masks ``M`` (F, n).

    Features are standardised with the training rows' mean and SD of each fit; the penalty
    ``lam / 2 |beta|^2`` acts on the standardised slopes (not the intercept). Returns
    ``beta`` (F, p + 1), ``mu`` (F, p), ``sd`` (F, p).
    """
    F, n = M.shape
    w = M / M.sum(axis=1, keepdims=True)
    mu = w @ X
    sd = np.sqrt(np.maximum(w @ (X * X) - mu * mu, 0.0))
    sd[sd <= 1e-12] = 1.0
    Xs = (X[None, :, :] - mu[:, None, :]) / sd[:, None, :]
    Xs = np.concatenate([np.ones((F, n, 1)), Xs], axis=2)
    p1 = Xs.shape[2]
    P = lam * np.eye(p1)
    P[0, 0] = 0.0
    beta = np.zeros((F, p1))
    active = np.ones(F, bool)
    for _ in range(iters):
        a = np.flatnonzero(active)
        if a.size == 0:
            break
        Xa = Xs[a]
        eta = np.einsum("fnp,fp->fn", Xa, beta[a])
        pr = special.expit(eta)
        W = M[a] * pr * (1 - pr)
        g = np.einsum("fnp,fn->fp", Xa, M[a] * (Y[a] - pr)) - beta[a] @ P
        H = np.einsum("fnp,fn,fnq->fpq", Xa, W, Xa) + P + 1e-10 * np.eye(p1)
        step = np.linalg.solve(H, g[:, :, None])[:, :, 0]
        step = np.clip(step, -5, 5)
        beta[a] += step
        active[a] = np.abs(step).max(axis=1) > 1e-8
    return beta, mu, sd


def _predict(X: np.ndarray, beta: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Linear predictor of every subject under every fit: (F, n)."""
    Xs = (X[None, :, :] - mu[:, None, :]) / sd[:, None, :]
    return beta[:, :1] + np.einsum("fnp,fp->fn", Xs, beta[:, 1:])


def _cv_plan(y: np.ndarray, cv: str, n_splits: int, n_repeats: int,
             rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Training masks, and per fit the held-out subjects whose pairs/probabilities it gives.

    Returns ``masks`` (F, n), ``pair_tests`` (per fit, the held-out subjects scored together,
    for the AUC) and ``prob_tests`` (per fit, held-out subjects for the probabilities; empty
    for leave-pair-out fits).
    """
    n = len(y)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    masks, pair_tests, prob_tests = [], [], []
    if cv == "loo":
        for i in pos.tolist():
            for j in neg.tolist():
                m = np.ones(n)
                m[[i, j]] = 0
                masks.append(m)
                pair_tests.append(np.array([i, j]))
                prob_tests.append(np.array([], int))
        for i in range(n):
            m = np.ones(n)
            m[i] = 0
            masks.append(m)
            pair_tests.append(np.array([], int))
            prob_tests.append(np.array([i]))
    else:
        for _ in range(n_repeats):
            fold = np.empty(n, int)
            for cls in (pos, neg):
                perm = rng.permutation(cls)
                fold[perm] = (np.arange(len(perm)) + rng.integers(n_splits)) % n_splits
            for f in range(n_splits):
                test = np.flatnonzero(fold == f)
                if test.size == 0:
                    continue
                m = np.ones(n)
                m[test] = 0
                masks.append(m)
                pair_tests.append(test)
                prob_tests.append(test)
    return np.asarray(masks), pair_tests, prob_tests


def _run_cv(X: np.ndarray, y: np.ndarray, cv: str, n_splits: int, n_repeats: int, lam: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pair concordance matrix (n_pos, n_neg; NaN = pair never scored together) and the mean
    out-of-fold probability of every subject."""
    masks, pair_tests, prob_tests = _cv_plan(y, cv, n_splits, n_repeats, rng)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    ip = {s: k for k, s in enumerate(pos)}
    jn = {s: k for k, s in enumerate(neg)}
    conc = np.zeros((len(pos), len(neg)))
    cnt = np.zeros((len(pos), len(neg)))
    psum = np.zeros(len(y))
    pcnt = np.zeros(len(y))
    chunk = max(1, 200000 // max(1, len(y) * (X.shape[1] + 1)))
    for s0 in range(0, len(masks), chunk):
        M = masks[s0:s0 + chunk]
        beta, mu, sd = _fit_batch(X, np.broadcast_to(y, M.shape).astype(float), M, lam)
        eta = _predict(X, beta, mu, sd)
        for f in range(M.shape[0]):
            test = pair_tests[s0 + f]
            if test.size:
                tp = [t for t in test if y[t] == 1]
                tn = [t for t in test if y[t] == 0]
                if tp and tn:
                    e_p = eta[f, tp][:, None]
                    e_n = eta[f, tn][None, :]
                    c = (e_p > e_n) + 0.5 * (e_p == e_n)
                    rows = [ip[t] for t in tp]
                    cols = [jn[t] for t in tn]
                    conc[np.ix_(rows, cols)] += c
                    cnt[np.ix_(rows, cols)] += 1
            pt = prob_tests[s0 + f]
            if pt.size:
                psum[pt] += special.expit(eta[f, pt])
                pcnt[pt] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return conc / np.where(cnt > 0, cnt, np.nan), psum / np.where(pcnt > 0, pcnt, np.nan)


def _calibration(y: np.ndarray, p: np.ndarray) -> tuple[float, float, pd.DataFrame]:
    lp = special.logit(np.clip(p, 1e-6, 1 - 1e-6))
    X = lp[:, None]
    beta, _, _ = _fit_batch(X, y[None, :].astype(float), np.ones((1, len(y))), 1e-8)
    slope = float(beta[0, 1] / np.std(lp)) if np.std(lp) > 0 else np.nan
    a = 0.0
    for _ in range(50):  # intercept with logit(p) as offset
        pr = special.expit(a + lp)
        h = float(np.sum(pr * (1 - pr)))
        if h <= 0:
            break
        step = float(np.sum(y - pr)) / h
        a += step
        if abs(step) < 1e-10:
            break
    nb = int(max(2, min(5, len(y) // 5)))
    edges = np.unique(np.quantile(p, np.linspace(0, 1, nb + 1)))
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    tab = pd.DataFrame({"bin": b, "p": p, "y": y}).groupby("bin").agg(
        n=("y", "size"), mean_predicted=("p", "mean"), observed_fraction=("y", "mean"))
    return slope, float(a), tab.reset_index()


# --------------------------------------------------------------------------- responder

def _as_binary(s: pd.Series, where: str) -> pd.Series:
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().sum() == s.notna().sum():
        bad = sorted(set(num.dropna()) - {0.0, 1.0})
        if bad:
            raise DataError(f"{where} is numeric but not 0/1 (values {bad[:5]}); give a rule "
                            f"like responder='madrs <= -50%' instead.")
        return num
    def one(v: Any) -> float:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.nan
        k = str(v).strip().lower()
        if k in _TRUE:
            return 1.0
        if k in _FALSE:
            return 0.0
        raise DataError(f"{where}: value {v!r} is not a yes/no response; use true/false, "
                        f"1/0 or responder/nonresponder.")
    return s.map(one).astype(float)


_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+]?\d*\.?\d+)\s*(%?)\s*$")


def _responder(scores: pd.DataFrame, responder: Any, subjects: list[str], baseline: str,
               response_session: str | None) -> tuple[pd.Series, str]:
    """Responder label per subject (1/0/NaN) and a description of the rule."""
    if isinstance(responder, pd.Series):
        s = responder.copy()
        s.index = [str(i).removeprefix("sub-") for i in s.index]
        return _as_binary(s, "responder series").reindex(subjects), "given labels"
    if not isinstance(responder, str):
        raise DesignError("responder must be a score column name, a rule like "
                          "'madrs <= -50%' or a pandas Series of 0/1 per subject.")
    m = _RULE.match(responder)
    name = m.group(1) if m else responder
    vals = score_values(scores, name)
    src = _score_source(scores, name)
    if isinstance(vals, pd.DataFrame):
        after = [c for c in vals.columns if c != baseline]
        ses = response_session or (after[0] if len(after) == 1 else None)
        if ses is None or ses not in vals.columns:
            raise DataError(f"'{name}' ({src}) is measured at sessions {list(vals.columns)}; "
                            f"pass response_session='<session>' to say which one defines "
                            f"response.")
        at = vals[ses]
    else:
        ses = None
        at = vals
    if m is None:
        return _as_binary(at, f"responder column '{name}' ({src})").reindex(subjects), name
    op, thr, pct = m.group(2), float(m.group(3)), m.group(4) == "%"
    at = pd.to_numeric(at, errors="coerce")
    if pct:
        if not isinstance(vals, pd.DataFrame) or baseline not in vals.columns:
            raise DataError(f"rule {responder!r} needs '{name}' at '{baseline}' and at a later "
                            f"session ({src}); it has no baseline value.")
        base = pd.to_numeric(vals[baseline], errors="coerce")
        value = 100 * (at - base) / base
    else:
        value = at
    ops = {"<=": np.less_equal, ">=": np.greater_equal, "<": np.less, ">": np.greater}
    lab = pd.Series(np.where(value.notna(), ops[op](value, thr), np.nan), index=value.index,
                    dtype=float)
    desc = (f"{name}: % change from {baseline} to {ses} {op} {thr:g} %" if pct
            else f"{name}{' at ' + ses if ses else ''} {op} {thr:g}")
    return lab.reindex(subjects), desc


# --------------------------------------------------------------------------- main

def predict_response(
    ds: xr.Dataset,
    scores: pd.DataFrame | str | os.PathLike[str],
    *,
    responder: Any = "madrs_response",
    outcome: str = "BPND",
    predictors: Sequence[str] = ("baseline",),
    regions: Sequence[str] | None = None,
    baseline: str = "baseline",
    session: str | None = None,
    response_session: str | None = None,
    model: str = "ridge",
    penalty: float | None = None,
    cv: str = "repeated-kfold",
    n_splits: int = 5,
    n_repeats: int = 20,
    n_boot: int = 2000,
    n_permutations: int = 200,
    seed: int = 0,
    level: float = 0.95,
    unknown_subjects: str = "raise",
    require_converged: bool = True,
) -> ResponsePrediction:
    """Cross-validated logistic prediction of treatment response from regional SV2A measures.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`~sv2a.longitudinal.collect`).
    scores : pandas.DataFrame, str or path-like
        Scores (:func:`~sv2a.longitudinal.load_scores` or a DataFrame with
        ``participant_id`` [+ ``session_id``]).
    responder : str or pandas.Series
        A binary score column (1/0, true/false, responder/nonresponder), a rule on a score
        ``'madrs <= -50%'`` (% change from baseline to ``response_session``) or
        ``'madrs <= 10'`` (value at ``response_session``), or a Series subject -> 0/1.
    outcome : str
        Positive outcome parameter.
    predictors : sequence of {'baseline', 'change'}
        Features per region: log outcome at baseline, and/or log ratio ``session`` / baseline.
    regions : sequence of str, optional
        Regions used as features (default all; keep few with small samples).
    baseline : str
        Baseline session label.
    session : str, optional
        Follow-up session of the ``change`` feature (default: the only follow-up).
    response_session : str, optional
        Session of a session-level responder score (default: the only non-baseline one).
    model : {'ridge', 'logistic'}
        L2-penalised logistic regression (``penalty`` 1 on standardised features, as
        scikit-learn's default C = 1) or plain logistic regression (``penalty`` 1e-4, enough to
        keep estimates finite under separation).
    penalty : float, optional
        Override the L2 penalty (>= 0) on standardised coefficients.
    cv : {'repeated-kfold', 'loo'}
        Cross-validation (see the module description).
    n_splits, n_repeats : int
        Folds and repeats of ``repeated-kfold``.
    n_boot : int
        Bootstrap resamples of the AUC CI.
    n_permutations : int
        Label permutations for the p-value (0 = skip).
    seed : int
        Seed of the fold assignment, bootstrap and permutations.
    level : float
        Confidence level of the AUC CI (0-1).
    unknown_subjects : {'raise', 'exclude'}
        Scores of subjects not in ``ds``: refuse, or leave out (listed).
    require_converged : bool
        Treat kinetic fits with ``converged == 0`` as missing.

    Returns
    -------
    ResponsePrediction
        AUC with CI and permutation p, calibration, out-of-fold probabilities, coefficients,
        exclusions, and ``adequate`` / ``note`` (False / the reason when a class has fewer
        than :data:`MIN_PER_CLASS` subjects).

    Raises
    ------
    DesignError
        Unknown model, cv or predictor; a class with fewer than 2 subjects; baseline or
        session not in the data.
    DataError
        Unknown or non-binary responder column, scores for unknown subjects, region not in the
        data.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> n = 40
    >>> resp = np.repeat([1, 0], 20)
    >>> bl = np.exp(1.0 + 0.15 * resp[:, None] + rng.normal(0, 0.1, (n, 1)))
    >>> ds = xr.Dataset({"BPND": (("subject", "session", "region"), bl[:, None, :])},
    ...                 coords={"subject": [f"{i:02d}" for i in range(n)],
    ...                         "session": ["baseline"], "region": ["cortex"],
    ...                         "arm": ("subject", ["ketamine"] * n)})
    >>> scores = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(n)],
    ...                        "madrs_response": resp})
    >>> r = predict_response(ds, scores, n_permutations=0, n_repeats=5)
    >>> bool(r.auc > 0.7), r.n_responders, r.adequate
    (True, 20, True)
    """
    if model not in _PENALTY:
        raise DesignError(f"model must be one of {sorted(_PENALTY)}, not {model!r}")
    if cv not in ("loo", "repeated-kfold"):
        raise DesignError(f"cv must be 'loo' or 'repeated-kfold', not {cv!r}")
    bad_pred = [p for p in predictors if p not in ("baseline", "change")]
    if bad_pred or not predictors:
        raise DesignError(f"predictors must be 'baseline' and/or 'change', not "
                          f"{list(predictors)}")
    lam = float(_PENALTY[model] if penalty is None else penalty)
    if lam < 0:
        raise DesignError(f"penalty must be >= 0, not {lam}")
    sc = as_scores(scores)
    y = outcome_values(ds, outcome, require_converged)
    check_baseline(y, baseline)
    subs = [str(s) for s in y["subject"].values]
    unknown = _check_subjects(sc, subs, "scores", unknown_subjects)
    all_regions = [str(r) for r in y["region"].values]
    regions = list(regions) if regions is not None else all_regions
    miss_r = [r for r in regions if r not in all_regions]
    if miss_r:
        raise DataError(f"regions {miss_r} not in the dataset; regions: {all_regions}.")
    sessions = [str(s) for s in y["session"].values]
    b = sessions.index(baseline)
    v = np.asarray(y.sel(region=regions).values, float)
    with np.errstate(all="ignore"):
        lv = np.log(np.where(v > 0, v, np.nan))
    feats, names = [], []
    if "baseline" in predictors:
        feats.append(lv[:, b, :])
        names += [f"baseline:{r}" for r in regions]
    if "change" in predictors:
        follow = [s for j, s in enumerate(sessions) if j != b and np.isfinite(lv[:, j]).any()]
        ses = session or (follow[0] if len(follow) == 1 else None)
        if ses is None or ses not in sessions or ses == baseline:
            raise DesignError(f"predictor 'change' needs session= one follow-up session; "
                              f"sessions with data: {follow}.")
        feats.append(lv[:, sessions.index(ses), :] - lv[:, b, :])
        names += [f"change:{r}" for r in regions]
    X = np.concatenate(feats, axis=1)
    lab, rule = _responder(sc, responder, subs, baseline, response_session)
    excluded: dict[str, str] = {}
    for i, s in enumerate(subs):
        if not np.isfinite(lab.iloc[i]):
            excluded["sub-" + s] = f"no responder label ({rule})"
        elif not np.isfinite(X[i]).all():
            lack = [nm for nm, x in zip(names, X[i], strict=True) if not np.isfinite(x)]
            excluded["sub-" + s] = f"missing features {lack[:4]}"
    keep = np.array(["sub-" + s not in excluded for s in subs])
    if excluded:
        warnings.warn(f"subjects left out of the response prediction: {excluded}",
                      Sv2aWarning, stacklevel=2)
    Xk, yk = X[keep], lab.to_numpy(float)[keep].astype(int)
    n1, n0 = int(yk.sum()), int((1 - yk).sum())
    if min(n1, n0) < 2:
        raise DesignError(f"need at least 2 responders and 2 non-responders with data; have "
                          f"{n1} responders and {n0} non-responders ({rule}).")
    note = ""
    adequate = min(n1, n0) >= MIN_PER_CLASS
    if not adequate:
        note = (f"only {n1} responders and {n0} non-responders (fewer than {MIN_PER_CLASS} in "
                f"a class): the cross-validated AUC is too imprecise to show or exclude a "
                f"useful prediction; treat it as descriptive.")
        warnings.warn(note, Sv2aWarning, stacklevel=2)
    k = int(min(n_splits, n1, n0))
    if cv == "repeated-kfold" and k < 2:
        raise DesignError("repeated-kfold needs at least 2 folds; use cv='loo'.")
    rng = np.random.default_rng(seed)
    conc, prob = _run_cv(Xk, yk, cv, k, n_repeats, lam, rng)
    auc = float(np.nanmean(conc))
    a = (1 - level) / 2
    if n_boot > 0:
        ip = rng.integers(0, n1, (n_boot, n1))
        jn = rng.integers(0, n0, (n_boot, n0))
        boots = np.array([np.nanmean(conc[np.ix_(ip[i], jn[i])]) for i in range(n_boot)])
        lo, hi = (float(x) for x in np.nanquantile(boots, [a, 1 - a]))
    else:
        lo = hi = np.nan
    nulls = np.array([float(np.nanmean(_run_cv(Xk, rng.permutation(yk), cv, k, n_repeats, lam,
                                                rng)[0]))
                      for _ in range(n_permutations)])
    p_perm = float((1 + np.sum(nulls >= auc - 1e-12)) / (1 + len(nulls))) if len(nulls) \
        else np.nan
    slope, intercept, cal = _calibration(yk, prob)
    beta, _, _ = _fit_batch(Xk, yk[None, :].astype(float), np.ones((1, len(yk))), lam)
    coefs = pd.DataFrame({"feature": names, "coefficient": beta[0, 1:],
                          "odds_ratio_per_sd": np.exp(beta[0, 1:])})
    arms = np.asarray([str(x) for x in ds["arm"].values])[keep]
    preds = pd.DataFrame({"subject": np.asarray(subs)[keep], "arm": arms, "responder": yk,
                          "probability": prob})
    settings = {"model": model, "penalty": lam, "cv": cv, "n_splits": k if cv != "loo" else 0,
                "n_repeats": n_repeats if cv != "loo" else 0, "n_boot": n_boot,
                "n_permutations": n_permutations, "seed": seed, "responder": rule,
                "outcome": outcome, "predictors": list(predictors), "regions": regions,
                "level": level, "unknown_subjects": ["sub-" + s for s in unknown],
                "auc_method": "leave-pair-out" if cv == "loo" else
                              "pairs within test folds, averaged over repeats",
                "preprocessing": "standardisation inside each training fold; no feature "
                                 "selection"}
    return ResponsePrediction(auc, lo, hi, p_perm, int(len(yk)), n1, n0, slope, intercept, cal,
                              preds, coefs, tuple(names), settings, excluded, adequate, note,
                              nulls)


def plot_roc(result: ResponsePrediction, path: str | os.PathLike[str] | None = None):
    """ROC curve of the out-of-fold probabilities, with the cross-validated AUC and its CI.

    Parameters
    ----------
    result : ResponsePrediction
        From :func:`predict_response`.
    path : str or path-like, optional
        Also write the figure here (.png, .svg, .pdf).

    Returns
    -------
    matplotlib.figure.Figure
        False-positive rate (x, 0-1) against true-positive rate (y, 0-1), chance diagonal;
        the title gives the AUC (CI, permutation p).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> preds = pd.DataFrame({"responder": [1, 1, 0, 0], "probability": [0.9, 0.4, 0.5, 0.1]})
    >>> r = ResponsePrediction(0.75, 0.2, 1.0, float("nan"), 4, 2, 2, 1.0, 0.0, pd.DataFrame(),
    ...                        preds, pd.DataFrame(), ("baseline:cortex",), {}, {}, False,
    ...                        "small", np.array([]))
    >>> plot_roc(r).axes[0].get_xlabel()
    'false-positive rate (1 - specificity)'
    """
    from .plots import _figure, _save

    p = result.predictions["probability"].to_numpy(float)
    yv = result.predictions["responder"].to_numpy(int)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], yv[order]
    distinct = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]
    tps = np.cumsum(ys)[distinct]
    fps = np.cumsum(1 - ys)[distinct]
    tpr = np.r_[0, tps / max(ys.sum(), 1)]
    fpr = np.r_[0, fps / max((1 - ys).sum(), 1)]
    fig = _figure(3.6, 3.6)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=0.8)
    ax.step(fpr, tpr, where="post", color="#d95f02", lw=1.6)
    pv = "" if not np.isfinite(result.p_permutation) else f", p = {result.p_permutation:.3f}"
    ax.set_title(f"cross-validated AUC {result.auc:.2f} ({result.auc_ci_low:.2f}-"
                 f"{result.auc_ci_high:.2f}){pv}\nn = {result.n_responders} responders / "
                 f"{result.n_nonresponders} non-responders"
                 f"{'' if result.adequate else ' (too few)'}", fontsize=8)
    ax.set_xlabel("false-positive rate (1 - specificity)", fontsize=8)
    ax.set_ylabel("true-positive rate (sensitivity)", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.tick_params(labelsize=7)
    if path is not None:
        _save(fig, Path(path))
    return fig
