"""Brain-behaviour association: does the change in synaptic density track a score?

Per region (and follow-up session), :func:`associate` relates the outcome's % change from
baseline ``100 (y1 / y0 - 1)`` (or its baseline value) to a behavioural or clinical score
(``sucrose_preference``, ``madrs``) or to the score's change from baseline:

* ``method='pearson'``: Pearson r with a Fisher-z CI ``tanh(atanh r +- z / sqrt(n - 3))`` and
  the t test on n - 2 degrees of freedom;
* ``method='spearman'``: Spearman rho with a percentile bootstrap CI (subjects resampled) and
  the t-approximation p-value (``scipy.stats.spearmanr``);
* ``method='partial'``: partial Pearson correlation given covariates (and, pooled over arms,
  arm as a factor): the correlation of the residuals of both variables regressed on the
  covariates, Fisher-z CI with ``sqrt(n - 3 - k)`` and t test on ``n - 2 - k`` degrees of
  freedom for k covariate columns.

Every row also gives the least-squares slope of the score on the outcome (same adjustment)
with its t CI. Within-arm (``by_arm=True``) or pooled; Benjamini-Hochberg and Holm adjustment
across regions. Subjects without a score or a baseline are listed, never dropped silently.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..errors import DataError, DesignError, Sv2aWarning
from ._stats import adjust_pvalues, check_baseline, outcome_values
from .scores import _check_subjects, _score_source, as_scores, score_values

__all__ = ["associate", "association_data", "plot_association"]

_COLUMNS = ["region", "session", "arm", "method", "n", "r", "ci_low", "ci_high", "p", "q_bh",
            "p_holm", "slope", "slope_ci_low", "slope_ci_high", "p_slope", "adjusted_for",
            "excluded", "note"]


def association_data(
    ds: xr.Dataset,
    scores: pd.DataFrame | str | os.PathLike[str],
    *,
    score: str,
    outcome: str = "BPND",
    change: bool = True,
    score_change: bool | None = None,
    baseline: str = "baseline",
    sessions: Sequence[str] | None = None,
    score_session: str | None = None,
    covariates: Sequence[str] | None = None,
    unknown_subjects: str = "raise",
    require_converged: bool = True,
) -> pd.DataFrame:
    """The per-subject pairs (outcome, score) that :func:`associate` correlates.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`~sv2a.longitudinal.collect`).
    scores : pandas.DataFrame, str or path-like
        Scores (:func:`~sv2a.longitudinal.load_scores`, a DataFrame with ``participant_id``
        [+ ``session_id``] and score columns, or a BIDS directory).
    score : str
        Score column.
    outcome : str
        Positive outcome parameter (``BPND``, ``VT``, ...).
    change : bool
        x = % change of the outcome from baseline at each follow-up session (True), or the
        baseline value (False).
    score_change : bool, optional
        y = score at the session minus score at baseline (session-level scores only). Default:
        True when ``change`` and the score was measured at baseline, else False.
    baseline : str
        Baseline session label (of the PET and of session-level scores).
    sessions : sequence of str, optional
        Follow-up sessions to use (default all with data).
    score_session : str, optional
        Take a session-level score at this session instead of the PET session (for scores
        measured at other visits, e.g. ``'day7'``).
    covariates : sequence of str, optional
        Participant columns (subject coordinates of ``ds``, or subject-level scores) carried
        along for the partial correlation.
    unknown_subjects : {'raise', 'exclude'}
        Scores of subjects who are not in ``ds``: refuse (DataError listing them) or leave
        them out (listed in ``attrs['unknown_subjects']``).
    require_converged : bool
        Treat kinetic fits with ``converged == 0`` as missing.

    Returns
    -------
    pandas.DataFrame
        One row per subject x session x region with ``subject arm session region x y`` and
        the covariates. ``x``: % change of the outcome (%), or its baseline value (outcome
        units); ``y``: score (or score change) in the score's units. Pairs with a missing
        value are kept with NaN. ``attrs``: ``x_label``, ``y_label``, ``excluded``
        {subject: reason}, ``unknown_subjects``, ``_score_source``.

    Raises
    ------
    DataError
        Unknown or non-numeric score, scores for subjects not in ``ds``, a score session that
        is not in the scores table.
    DesignError
        Baseline session not in ``ds``, unknown follow-up session or covariate.
    """
    sc = as_scores(scores)
    src = _score_source(sc, score)
    vals = score_values(sc, score)
    num = vals.apply(pd.to_numeric, errors="coerce") if isinstance(vals, pd.DataFrame) \
        else pd.to_numeric(vals, errors="coerce")
    if (num.isna() & vals.notna()).to_numpy().any():
        bad = vals[num.isna() & vals.notna()]
        bad_vals = (bad.stack() if isinstance(bad, pd.DataFrame) else bad).astype(str)
        raise DataError(f"score '{score}' in {src} is not numeric (values like "
                        f"{sorted(set(bad_vals))[:5]}); correlations need numbers. Recode it "
                        f"(e.g. 0/1) or choose a numeric column.")
    y = outcome_values(ds, outcome, require_converged)
    check_baseline(y, baseline)
    subs = [str(s) for s in y["subject"].values]
    unknown = _check_subjects(sc[sc[score].notna()], subs, f"score '{score}' ({src})",
                             unknown_subjects)
    if unknown:
        warnings.warn(f"scores of subjects not in the group dataset left out: "
                      f"{['sub-' + s for s in unknown]}", Sv2aWarning, stacklevel=2)
    arms = np.asarray([str(a) for a in ds["arm"].values])
    all_ses = [str(s) for s in y["session"].values]
    b = all_ses.index(baseline)
    v = np.asarray(y.values, float)
    v = np.where(v > 0, v, np.nan)
    if change:
        targets = [s for j, s in enumerate(all_ses) if j != b and np.isfinite(v[:, j]).any()]
        if sessions is not None:
            bad = [s for s in sessions if s not in all_ses]
            if bad:
                raise DesignError(f"sessions {bad} not in the dataset; sessions: {all_ses}.")
            targets = [s for s in targets if s in sessions]
    else:
        targets = [baseline]
    session_level = isinstance(num, pd.DataFrame)
    if score_change is None:
        score_change = bool(change and session_level and baseline in num.columns)
    if score_change and not session_level:
        raise DataError(f"score_change=True needs a session-level score; '{score}' in {src} "
                        f"has one value per subject (no session_id column).")
    if session_level:
        need = [score_session] if score_session else targets
        if score_change:
            need = need + [baseline]
        missing = [s for s in need if s not in num.columns]
        if missing:
            raise DataError(f"score '{score}' ({src}) has no values at session(s) {missing}; "
                            f"sessions with values: {list(num.columns)}. Pass "
                            f"score_session='<session>' to use another visit.")
    cov_cols: dict[str, np.ndarray] = {}
    for c in covariates or []:
        if c in ds.coords and ds[c].dims == ("subject",):
            cov_cols[c] = ds[c].values
        elif sc.attrs.get("levels", {}).get(c) == "subject":
            cv = score_values(sc, c)
            cov_cols[c] = np.asarray([cv.get(s, np.nan) for s in subs], dtype=object)
        else:
            raise DesignError(f"covariate '{c}' is neither a participant column of the group "
                              f"dataset nor a subject-level score; add it to participants.tsv.")
    excluded: dict[str, str] = {}
    rows = []
    regions = [str(r) for r in y["region"].values]
    for ses in targets:
        j = all_ses.index(ses)
        for i, s in enumerate(subs):
            if session_level:
                at = score_session or ses
                sv = num.at[s, at] if s in num.index else np.nan
                if score_change:
                    sv = sv - (num.at[s, baseline] if s in num.index else np.nan)
            else:
                sv = num.get(s, np.nan)
            if not np.isfinite(sv) and np.isfinite(v[i, j]).any():
                # scanned at this session but no score: left out (a subject of an arm that
                # has no scan at this session is simply not part of it)
                excluded.setdefault("sub-" + s, f"no '{score}' value"
                                    f"{' change' if score_change else ''} in {src}")
            if change and not np.isfinite(v[i, b]).any() and np.isfinite(v[i, j]).any():
                excluded.setdefault("sub-" + s, f"no {outcome} at {baseline}")
            for k, reg in enumerate(regions):
                x = 100 * (v[i, j, k] / v[i, b, k] - 1) if change else v[i, b, k]
                row = {"subject": s, "arm": arms[i], "session": ses, "region": reg, "x": x,
                       "y": float(sv)}
                row.update({c: a[i] for c, a in cov_cols.items()})
                rows.append(row)
    data = pd.DataFrame(rows)
    if excluded:
        warnings.warn(f"subjects without a usable pair are left out of the association: "
                      f"{excluded}", Sv2aWarning, stacklevel=2)
    ylab = f"{score}{' change from ' + baseline if score_change else ''}"
    if session_level and not score_change:
        ylab += f" at {score_session}" if score_session else ""
    desc = sc.attrs.get("descriptions", {}).get(score, {})
    if isinstance(desc, dict) and desc.get("Units"):
        ylab += f" ({desc['Units']})"
    data.attrs.update({
        "x_label": f"{outcome} % change from {baseline}" if change else f"{outcome} at "
                                                                       f"{baseline}",
        "y_label": ylab, "excluded": excluded, "unknown_subjects": ["sub-" + s for s in unknown],
        "_score_source": src, "score": score, "outcome": outcome, "change": change,
        "score_change": score_change, "covariates": list(cov_cols)})
    return data


def _design(df: pd.DataFrame, covs: Sequence[str], with_arm: bool) -> tuple[np.ndarray, list]:
    cols = [np.ones(len(df))]
    names: list[str] = []
    for c in list(covs) + (["arm"] if with_arm else []):
        x = df[c]
        num = pd.to_numeric(x, errors="coerce")
        if num.notna().sum() == x.notna().sum() and c != "arm":
            cols.append(num.to_numpy(float))
            names.append(c)
        else:
            levels = sorted(set(x.astype(str)))
            for lev in levels[1:]:
                cols.append((x.astype(str) == lev).to_numpy(float))
                names.append(f"{c}[{lev}]")
    return np.column_stack(cols), names


def _slope(x: np.ndarray, y: np.ndarray, Z: np.ndarray, level: float) -> tuple:
    X = np.column_stack([x, Z])
    n, p = X.shape
    if n - p < 1:
        return (np.nan,) * 4
    XtXi = np.linalg.pinv(X.T @ X)
    beta = XtXi @ X.T @ y
    s2 = float(np.sum((y - X @ beta) ** 2)) / (n - p)
    se = float(np.sqrt(s2 * XtXi[0, 0]))
    q = stats.t.ppf(0.5 + level / 2, n - p)
    t = beta[0] / se if se > 0 else np.nan
    return (float(beta[0]), float(beta[0] - q * se), float(beta[0] + q * se),
            float(2 * stats.t.sf(abs(t), n - p)) if np.isfinite(t) else np.nan)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    den = np.sqrt((xc @ xc) * (yc @ yc))
    return float(xc @ yc / den) if den > 0 else np.nan


def _one(x: np.ndarray, y: np.ndarray, Z: np.ndarray, method: str, level: float, n_boot: int,
         rng: np.random.Generator) -> dict:
    n = len(x)
    k = Z.shape[1] - 1
    zq = stats.norm.ppf(0.5 + level / 2)
    out: dict = {"n": n}
    if n - k < 4:
        return out | {"note": f"too few subjects (n={n}) for a correlation"}
    if method == "partial":
        hat = Z @ np.linalg.pinv(Z)
        rx, ry = x - hat @ x, y - hat @ y
        r = _corr(rx, ry)
    elif method == "spearman":
        r = _corr(stats.rankdata(x), stats.rankdata(y))
    else:
        r = _corr(x, y)
    df = n - 2 - k
    if not np.isfinite(r):
        return out | {"note": "a variable is constant"}
    rr = float(np.clip(r, -1 + 1e-15, 1 - 1e-15))
    t = rr * np.sqrt(df / (1 - rr * rr))
    out.update(r=r, p=float(2 * stats.t.sf(abs(t), df)))
    if method == "spearman":
        if n_boot > 0:
            idx = rng.integers(0, n, size=(n_boot, n))
            rx = stats.rankdata(x[idx], axis=1)
            ry = stats.rankdata(y[idx], axis=1)
            rx -= rx.mean(axis=1, keepdims=True)
            ry -= ry.mean(axis=1, keepdims=True)
            with np.errstate(all="ignore"):
                rb = (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
            rb = rb[np.isfinite(rb)]
            a = (1 - level) / 2
            out.update(ci_low=float(np.quantile(rb, a)), ci_high=float(np.quantile(rb, 1 - a)))
    else:
        se = 1 / np.sqrt(n - 3 - k)
        z = np.arctanh(rr)
        out.update(ci_low=float(np.tanh(z - zq * se)), ci_high=float(np.tanh(z + zq * se)))
    s = _slope(x, y, Z if method == "partial" else Z[:, :1], level)
    out.update(slope=s[0], slope_ci_low=s[1], slope_ci_high=s[2], p_slope=s[3])
    return out


def associate(
    ds: xr.Dataset,
    scores: pd.DataFrame | str | os.PathLike[str],
    *,
    score: str = "sucrose_preference",
    outcome: str = "BPND",
    change: bool = True,
    score_change: bool | None = None,
    baseline: str = "baseline",
    sessions: Sequence[str] | None = None,
    score_session: str | None = None,
    by_arm: bool = False,
    covariates: Sequence[str] | None = None,
    method: str = "pearson",
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    unknown_subjects: str = "raise",
    require_converged: bool = True,
) -> pd.DataFrame:
    """Correlate the outcome's change (or baseline) with a score, per region.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`~sv2a.longitudinal.collect`).
    scores : pandas.DataFrame, str or path-like
        Scores (:func:`~sv2a.longitudinal.load_scores`, a DataFrame with ``participant_id``
        [+ ``session_id``] and score columns, or a BIDS directory).
    score : str
        Score column (numeric).
    outcome : str
        Positive outcome parameter.
    change : bool
        Use the % change of the outcome from baseline (True) or its baseline value (False).
    score_change : bool, optional
        Use the score's change from baseline (session-level scores; default: when ``change``
        and the score has a baseline value).
    baseline : str
        Baseline session label.
    sessions : sequence of str, optional
        Follow-up sessions (default all).
    score_session : str, optional
        Session of a session-level score to use instead of the PET session.
    by_arm : bool
        One correlation per arm (True) or pooled over arms (False; the ``partial`` method then
        adjusts for arm as a factor).
    covariates : sequence of str, optional
        Participant columns to adjust for (``method='partial'`` only).
    method : {'pearson', 'spearman', 'partial'}
        Correlation (see the module description).
    level : float
        Confidence level (0-1).
    n_boot : int
        Bootstrap resamples of the Spearman CI.
    seed : int
        Seed of the bootstrap.
    unknown_subjects : {'raise', 'exclude'}
        What to do with scores of subjects not in ``ds``.
    require_converged : bool
        Treat kinetic fits with ``converged == 0`` as missing.

    Returns
    -------
    pandas.DataFrame
        One row per region x session (x arm): ``region session arm method n r ci_low ci_high
        p q_bh p_holm slope slope_ci_low slope_ci_high p_slope adjusted_for excluded note``.
        ``arm`` is ``'all'`` when pooled. ``r`` and its CI unitless; ``slope`` in score units
        per % change of the outcome (per outcome unit when ``change=False``); ``q_bh`` /
        ``p_holm`` adjusted across regions within session x arm. ``excluded`` lists the
        subjects without a pair in that row and why. ``attrs``: score, outcome, method,
        x_label, y_label, excluded, unknown_subjects, level.

    Raises
    ------
    DataError
        Unknown or non-numeric score, scores for unknown subjects.
    DesignError
        Unknown method, covariates with a method other than ``partial``, baseline not in the
        data.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> rng = np.random.default_rng(1)
    >>> n = 30
    >>> change = rng.normal(0.0, 0.1, n)
    >>> bl = np.exp(rng.normal(1.0, 0.1, n))
    >>> ds = xr.Dataset({"BPND": (("subject", "session", "region"),
    ...                            np.stack([bl, bl * np.exp(change)], 1)[:, :, None])},
    ...                 coords={"subject": [f"{i:02d}" for i in range(n)],
    ...                         "session": ["baseline", "3w"], "region": ["cortex"],
    ...                         "arm": ("subject", ["ketamine"] * n)})
    >>> scores = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(n)],
    ...                        "sucrose_preference": 0.7 + 2 * change + rng.normal(0, 0.1, n)})
    >>> t = associate(ds, scores, score="sucrose_preference")
    >>> bool(t.loc[0, "r"] > 0.5 and t.loc[0, "p"] < 0.01)
    True
    """
    if method not in ("pearson", "spearman", "partial"):
        raise DesignError(f"method must be 'pearson', 'spearman' or 'partial', not {method!r}")
    if covariates and method != "partial":
        raise DesignError(f"covariates={list(covariates)} need method='partial' (a partial "
                          f"correlation); Pearson and Spearman take none.")
    data = association_data(ds, scores, score=score, outcome=outcome, change=change,
                            score_change=score_change, baseline=baseline, sessions=sessions,
                            score_session=score_session, covariates=covariates,
                            unknown_subjects=unknown_subjects,
                            require_converged=require_converged)
    covs = list(covariates or [])
    rng = np.random.default_rng(seed)
    keys = ["session", "arm", "region"] if by_arm else ["session", "region"]
    rows = []
    for key, g in data.groupby(keys, sort=False):
        key_d = dict(zip(keys, key, strict=True))
        ok = np.isfinite(g["x"].to_numpy(float)) & np.isfinite(g["y"].to_numpy(float))
        for c in covs:
            ok &= g[c].notna().to_numpy() & (g[c].astype(str) != "n/a").to_numpy()
        gg = g[ok]
        miss = g.loc[~ok, "subject"].tolist()
        reasons = data.attrs["excluded"]
        exc = "; ".join(f"sub-{s}: {reasons.get('sub-' + s, 'missing ' + data.attrs['x_label'])}"
                        for s in miss)
        with_arm = method == "partial" and not by_arm and gg["arm"].nunique() > 1
        Z, znames = _design(gg, covs if method == "partial" else [], with_arm)
        res = _one(gg["x"].to_numpy(float), gg["y"].to_numpy(float), Z, method, level, n_boot,
                   rng)
        rows.append({"arm": "all"} | key_d | {"method": method, "adjusted_for": ", ".join(znames),
                                             "excluded": exc} | res)
    table = pd.DataFrame(rows)
    if table.empty:
        raise DesignError(f"no follow-up session with {outcome} values to correlate.")
    for c in _COLUMNS:
        if c not in table:
            table[c] = np.nan
    g2 = table.groupby(["session", "arm"], sort=False)["p"]
    table["q_bh"] = g2.transform(lambda p: adjust_pvalues(p, "fdr_bh"))
    table["p_holm"] = g2.transform(lambda p: adjust_pvalues(p, "holm"))
    table = table[_COLUMNS]
    table.attrs.update({k: data.attrs[k] for k in ("x_label", "y_label", "excluded",
                                                   "unknown_subjects", "score", "outcome")})
    table.attrs.update({"method": method, "level": level, "by_arm": by_arm})
    return table


def plot_association(data: pd.DataFrame, *, region: str, session: str | None = None,
                     path: str | os.PathLike[str] | None = None, level: float = 0.95):
    """Scatter of score against outcome change with the least-squares line and its CI band.

    Parameters
    ----------
    data : pandas.DataFrame
        Pairs from :func:`association_data`.
    region : str
        Region to plot.
    session : str, optional
        Session to plot (default the first in ``data``).
    path : str or path-like, optional
        Also write the figure here (.png, .svg, .pdf).
    level : float
        Confidence level of the band for the mean of y given x (0-1).

    Returns
    -------
    matplotlib.figure.Figure
        Points coloured by arm, the pooled fit line ``y = a + b x`` and its pointwise CI band;
        title with Pearson r and n. Axis units: x in % (or outcome units), y in score units.

    Raises
    ------
    DesignError
        Unknown region or session.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"subject": list("abcde"), "arm": ["k"] * 5, "session": ["3w"] * 5,
    ...                   "region": ["cortex"] * 5, "x": [1.0, 2, 3, 4, 5],
    ...                   "y": [2.0, 2.5, 3.9, 4.2, 5.1]})
    >>> fig = plot_association(d, region="cortex")
    >>> fig.axes[0].get_xlabel()
    'x'
    """
    from .plots import _COLORS, _figure, _save

    if region not in set(data["region"]):
        raise DesignError(f"region '{region}' not in the data; regions: "
                          f"{sorted(set(data['region']))}")
    session = session if session is not None else str(data["session"].iloc[0])
    d = data[(data["region"] == region) & (data["session"] == session)]
    if d.empty:
        raise DesignError(f"session '{session}' not in the data; sessions: "
                          f"{sorted(set(data['session']))}")
    d = d[np.isfinite(d["x"].astype(float)) & np.isfinite(d["y"].astype(float))]
    fig = _figure(4.2, 3.4)
    ax = fig.subplots()
    for i, (arm, g) in enumerate(d.groupby("arm", sort=True)):
        ax.scatter(g["x"], g["y"], s=22, color=_COLORS[i % len(_COLORS)], label=str(arm),
                   edgecolor="k", linewidth=0.4)
    x, y = d["x"].to_numpy(float), d["y"].to_numpy(float)
    title = f"{region}, {session}"
    if len(x) >= 3 and np.ptp(x) > 0:
        X = np.column_stack([np.ones_like(x), x])
        XtXi = np.linalg.inv(X.T @ X)
        beta = XtXi @ X.T @ y
        s2 = float(np.sum((y - X @ beta) ** 2)) / (len(x) - 2)
        grid = np.linspace(x.min(), x.max(), 100)
        G = np.column_stack([np.ones_like(grid), grid])
        se = np.sqrt(s2 * np.einsum("ij,jk,ik->i", G, XtXi, G))
        q = stats.t.ppf(0.5 + level / 2, len(x) - 2)
        fit = G @ beta
        ax.plot(grid, fit, color="k", lw=1.4)
        ax.fill_between(grid, fit - q * se, fit + q * se, color="0.5", alpha=0.25, lw=0,
                        label=f"{int(round(100 * level))} % CI")
        title += f": r = {_corr(x, y):.2f}, n = {len(x)}"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(data.attrs.get("x_label", "x"), fontsize=8)
    ax.set_ylabel(data.attrs.get("y_label", "y"), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    if path is not None:
        _save(fig, Path(path))
    return fig
