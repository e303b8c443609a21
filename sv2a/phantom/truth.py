"""True effects of a phantom design, per cell and as factorial contrasts.

A design's ``effects[arm][session][region]`` are fractional changes of the specific binding VS
(``flow_effects``: of K1) relative to the untreated population: ``"*"`` entries apply to every
session / region, a session entry multiplies the ``"*"`` entry and a named region overrides
``"*"``. :func:`true_effects` tabulates them per arm x session (as % of the population value
and as % change from the arm's first session); :func:`true_contrasts` gives, for factorial
designs, each level's simple effect against the reference level within every level of the
other factors and the two-factor interactions (ratio of ratios), at every session, on the VS
level and on its change from baseline.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["effect_factor", "true_effects", "true_contrasts"]

#: Regions without effects of their own that share another region's (the centrum semiovale
#: is the eroded core of the white matter).
TIED = {"centrum_semiovale": "white_matter"}


def effect_factor(table: Mapping, arm: str, session: str, region: str) -> float:
    """Multiplicative factor of one arm x session x region from an effects table.

    Parameters
    ----------
    table : mapping
        ``effects`` or ``flow_effects`` of a normalised design (arm -> session -> region ->
        fractional change).
    arm, session, region : str
        The cell (``region`` may be ``"*"``: any region without an entry of its own).

    Returns
    -------
    float
        ``(1 + e_*) (1 + e_session)`` (unitless; 1 = no change).

    Examples
    --------
    >>> eff = {"drug": {"*": {"*": -0.1}, "3w": {"*": 0.11}}}
    >>> round(effect_factor(eff, "drug", "3w", "cortex"), 4)
    0.999
    """
    by_ses = table.get(arm) or {}
    f = 1.0
    for key in ("*", session):
        by_reg = by_ses.get(key)
        if by_reg:
            v = by_reg.get(region, by_reg.get("*", 0.0))
            f *= 1.0 + float(v)
    return f


def _named_regions(design: Mapping) -> list[str]:
    out = ["*"]
    for key in ("effects", "flow_effects"):
        for by_ses in (design.get(key) or {}).values():
            for by_reg in (by_ses or {}).values():
                out += [r for r in (by_reg or {}) if r not in out]
    return out


def true_effects(design: Mapping) -> pd.DataFrame:
    """The design's true effects per arm x session x region.

    Parameters
    ----------
    design : mapping
        Normalised design (:func:`sv2a.phantom.normalise_design`).

    Returns
    -------
    pandas.DataFrame
        Columns ``arm``, one per factor, ``session``, ``region`` (``"*"`` = every region
        without an entry of its own), ``VS_pct`` and ``K1_pct`` (% difference from the
        untreated population), ``VS_change_pct`` and ``K1_change_pct`` (% change from the
        arm's first session).

    Examples
    --------
    >>> from sv2a.phantom import normalise_design
    >>> t = true_effects(normalise_design("ketamine-rodent"))
    >>> row = t[(t.arm == "stress_repeated") & (t.session == "3w") & (t.region == "*")]
    >>> row[["VS_pct", "VS_change_pct"]].round(2).values.tolist()
    [[-0.1, 11.0]]
    """
    factors = design.get("factors") or {}
    rows = []
    for arm, spec in design["arms"].items():
        first = spec["sessions"][0]
        for s in spec["sessions"]:
            for r in _named_regions(design):
                fv = effect_factor(design["effects"], arm, s, r)
                fk = effect_factor(design["flow_effects"], arm, s, r)
                f0v = effect_factor(design["effects"], arm, first, r)
                f0k = effect_factor(design["flow_effects"], arm, first, r)
                rows.append({"arm": arm, **{f: spec.get(f) for f in factors}, "session": s,
                             "region": r, "VS_pct": 100 * (fv - 1), "K1_pct": 100 * (fk - 1),
                             "VS_change_pct": 100 * (fv / f0v - 1),
                             "K1_change_pct": 100 * (fk / f0k - 1)})
    return pd.DataFrame(rows)


def true_contrasts(design: Mapping) -> pd.DataFrame:
    """True factorial contrasts of the specific binding (VS) at every session.

    For each factor, each non-reference level is compared with the reference level (the
    first level) within every combination of the other factors' levels (simple effects);
    for each pair of factors, the interaction is the ratio of the two simple effects
    ``(VS[l1, l2] / VS[l1, ref2]) / (VS[ref1, l2] / VS[ref1, ref2])``. Contrasts are given
    on the VS level at a session and on the change from baseline (ratios of the changes).

    Parameters
    ----------
    design : mapping
        Normalised design with ``factors``; cells missing from the design are skipped.

    Returns
    -------
    pandas.DataFrame
        Columns ``contrast`` (``"simple"`` or ``"interaction"``), ``factor`` (for
        interactions ``"f1:f2"``), ``level``, ``reference``, ``within`` (the other factors'
        levels, e.g. ``"context=stress"``), ``session``, ``region``, ``VS_pct`` (%
        difference of VS) and ``VS_change_pct`` (% difference of the change from baseline,
        as a ratio of ratios). Empty without factors.

    Examples
    --------
    >>> from sv2a.phantom import normalise_design
    >>> c = true_contrasts(normalise_design("ketamine-rodent"))
    >>> ix = c[(c.contrast == "interaction") & (c.level == "stress:repeated")
    ...        & (c.session == "3w") & (c.region == "*")]
    >>> round(float(ix["VS_change_pct"].iloc[0]), 2)
    11.0
    """
    factors = design.get("factors") or {}
    names = list(factors)
    cell = {tuple(spec.get(f) for f in names): a for a, spec in design["arms"].items()}
    cols = ["contrast", "factor", "level", "reference", "within", "session", "region",
            "VS_pct", "VS_change_pct"]
    if not names:
        return pd.DataFrame(columns=cols)

    def value(levels: tuple, s: str, r: str) -> tuple[float, float]:
        arm = cell.get(levels)
        if arm is None or s not in design["arms"][arm]["sessions"]:
            return np.nan, np.nan
        first = design["arms"][arm]["sessions"][0]
        f = effect_factor(design["effects"], arm, s, r)
        return f, f / effect_factor(design["effects"], arm, first, r)

    rows = []
    for s in design["sessions"]:
        for r in _named_regions(design):
            for k, f in enumerate(names):
                lv = list(factors[f])
                others = [list(factors[g]) for g in names if g != f]
                for combo in itertools.product(*others):
                    within = ", ".join(f"{g}={v}" for g, v in
                                       zip([g for g in names if g != f], combo, strict=True))
                    for level in lv[1:]:
                        a = list(combo)
                        b = list(combo)
                        a.insert(k, level)
                        b.insert(k, lv[0])
                        (xa, ca), (xb, cb) = value(tuple(a), s, r), value(tuple(b), s, r)
                        if np.isfinite(xa) and np.isfinite(xb):
                            rows.append(["simple", f, level, lv[0], within, s, r,
                                         100 * (xa / xb - 1), 100 * (ca / cb - 1)])
            for i, j in itertools.combinations(range(len(names)), 2):
                fi, fj = names[i], names[j]
                li, lj = list(factors[fi]), list(factors[fj])
                rest = [g for g in names if g not in (fi, fj)]
                for combo in itertools.product(*[list(factors[g]) for g in rest]):
                    for a_i in li[1:]:
                        for a_j in lj[1:]:
                            lev = dict(zip(rest, combo, strict=True))
                            v = []
                            for x, y in ((a_i, a_j), (a_i, lj[0]), (li[0], a_j),
                                         (li[0], lj[0])):
                                lev[fi], lev[fj] = x, y
                                v.append(value(tuple(lev[g] for g in names), s, r))
                            if all(np.isfinite(x[0]) for x in v):
                                lvl = (v[0][0] / v[1][0]) / (v[2][0] / v[3][0])
                                chg = (v[0][1] / v[1][1]) / (v[2][1] / v[3][1])
                                within = ", ".join(f"{g}={c}" for g, c in
                                                   zip(rest, combo, strict=True))
                                rows.append(["interaction", f"{fi}:{fj}", f"{a_i}:{a_j}",
                                             f"{li[0]}:{lj[0]}", within, s, r,
                                             100 * (lvl - 1), 100 * (chg - 1)])
    return pd.DataFrame(rows, columns=cols)


def with_effects(truth: pd.DataFrame, design: Mapping, arm_of: Mapping[str, str]
                 ) -> pd.DataFrame:
    """``truth.tsv`` with each scan's arm, factor levels, design effects and true VS change.

    Parameters
    ----------
    truth : pandas.DataFrame
        ``participant_id session region`` + true parameters (``VS`` in mL/cm3).
    design : mapping
        Normalised design.
    arm_of : mapping
        Participant id -> arm.

    Returns
    -------
    pandas.DataFrame
        ``truth`` plus ``arm``, one column per factor, ``effect_VS_pct`` and
        ``effect_K1_pct`` (the design's effect on this scan, % of the untreated population)
        and ``change_VS_pct`` (% change of the true VS from the participant's first session,
        including session-to-session variability; NaN at that session and where VS is 0).
    """
    t = truth.copy()
    arm = t["participant_id"].map(dict(arm_of))
    factors = design.get("factors") or {}
    extra = {"arm": arm}
    for f in factors:
        extra[f] = arm.map({a: s.get(f) for a, s in design["arms"].items()})
    eff_named = {r for by_ses in design["effects"].values() for by_reg in by_ses.values()
                 for r in by_reg}

    def region_key(r: str) -> str:
        return r if (r in eff_named or r not in TIED) else TIED[r]

    extra["effect_VS_pct"] = pd.Series(
        [100 * (effect_factor(design["effects"], a, s, region_key(r)) - 1)
         for a, s, r in zip(arm, t["session"], t["region"], strict=True)], index=t.index)
    extra["effect_K1_pct"] = pd.Series(
        [100 * (effect_factor(design["flow_effects"], a, s, r) - 1)
         for a, s, r in zip(arm, t["session"], t["region"], strict=True)], index=t.index)
    first = {a: spec["sessions"][0] for a, spec in design["arms"].items()}
    is_first = t["session"] == arm.map(first)
    base = t[is_first].set_index(["participant_id", "region"])["VS"]
    b = pd.Series(list(zip(t["participant_id"], t["region"], strict=True)),
                  index=t.index).map(base.to_dict())
    with np.errstate(divide="ignore", invalid="ignore"):
        ch = 100 * (t["VS"].to_numpy(float) / b.to_numpy(float) - 1)
    ch[is_first.to_numpy() | ~np.isfinite(ch)] = np.nan
    extra["change_VS_pct"] = pd.Series(ch, index=t.index)
    for k, v in extra.items():
        t[k] = v
    return t


def score_z(design: Mapping, model: str, population_vs: Mapping[str, float],
            truth: pd.DataFrame, participants: list[str]) -> dict:
    """Standardised true regional change per measure, participant and session.

    ``D = mean over the measure's regions of log(VS[s] / VS[first session])``, standardised
    with its mean and SD given the arm (the design's effects and the session-to-session
    variability ``within_subject_sd``, with regional fraction). A participant with one
    session gets the standardised true log VS instead (between-subject variability added).

    Parameters
    ----------
    design : mapping
        Normalised design with ``scores`` and ``variability``.
    model : str
        The preset's kinetic model (``"1tcm"`` or ``"2tcm"``; for the 2TCM the subject's
        VND draw also scales VS).
    population_vs : mapping
        Region -> population VS (mL/cm3).
    truth : pandas.DataFrame
        ``participant_id session region VS`` (mL/cm3).
    participants : list of str
        Participant ids in cohort order (the subject index of the score streams).

    Returns
    -------
    dict
        Measure -> ``{(subject index, session): z}``; empty entries where the SD is 0.
    """
    var = design["variability"]
    ws, bs = float(var["within_subject_sd"]), float(var["between_subject_cv"])
    rf = float(var.get("regional_fraction", 0.3))
    vnd = float(var.get("vnd_cv", 0.0)) if model != "1tcm" else 0.0
    vs = truth.set_index(["participant_id", "session", "region"])["VS"].to_dict()
    arm_of = dict(zip(truth["participant_id"], truth.get("arm", pd.Series(dtype=str)),
                      strict=False))
    out: dict[str, dict] = {}
    for measure, spec in design["scores"].items():
        regs = list(spec["regions"])
        k = len(regs)
        sd_change = float(np.sqrt(2.0 * (ws ** 2 + (ws * rf) ** 2 / k)))
        sd_level = float(np.sqrt(bs ** 2 + (bs * rf) ** 2 / k + vnd ** 2
                                 + ws ** 2 + (ws * rf) ** 2 / k))
        zz = {}
        for i, pid in enumerate(participants):
            arm = arm_of.get(pid)
            if arm is None:
                continue
            ses = design["arms"][arm]["sessions"]
            for s in ses if len(ses) == 1 else ses[1:]:
                try:
                    now = np.array([vs[(pid, s, r)] for r in regs], float)
                    ref = (np.array([vs[(pid, ses[0], r)] for r in regs], float)
                           if len(ses) > 1 else
                           np.array([population_vs[r] for r in regs], float))
                except KeyError:
                    continue
                f_now = np.array([effect_factor(design["effects"], arm, s, r) for r in regs])
                f_ref = (np.array([effect_factor(design["effects"], arm, ses[0], r)
                                   for r in regs]) if len(ses) > 1 else np.ones(k))
                d = np.mean(np.log(now / ref)) - np.mean(np.log(f_now / f_ref))
                sd = sd_change if len(ses) > 1 else sd_level
                if sd > 0 and np.isfinite(d):
                    zz[(i, s)] = float(d / sd)
        out[measure] = zz
    return out
