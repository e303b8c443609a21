"""Regional-level simulation of longitudinal SV2A designs, for validation.

No images, no TACs: each subject has true regional specific binding ``VS`` and a
non-displaceable volume ``VND``; treatment multiplies ``VS`` (a change of synaptic density
changes the SV2A available for specific binding, not the free and non-specifically bound
tracer); the measured outcome carries multiplicative scan noise. The output has
the exact shape of :func:`sv2a.longitudinal.collect`, so the statistics are validated on the
same code path users run.

Model (log scale, subject *i*, region *r*, session *s*)::

    VS_true[i, r, s] = VS_r * exp(b_i + u_ir + sqrt(f) t_isr) * F[arm_i, s, r] * (1 + g[group_i])
    BPND_obs         = VS_true / VND * exp(sqrt(1 - f) e_isr)
    VT_obs           = (VND + VS_true) * exp(sqrt(1 - f) e_isr)

``b_i ~ N(0, rho_b cv_b^2)`` (global) and ``u_ir ~ N(0, (1 - rho_b) cv_b^2)`` give a
between-subject CV ``cv_b`` with between-region correlation ``rho_b``; scan noise
``e_isr = sqrt(rho_e) c_is + sqrt(1 - rho_e) d_isr`` with SD ``trt_sd / sqrt(2)`` so that the
SD of the log ratio of two scans without change is ``trt_sd`` (a test-retest SD read as the SD
of the % difference between two scans: 7.5 % in the human designs, the order reported for
[11C]UCB-J by Finnema et al. 2018, J Cereb Blood Flow Metab 38:2041; 8 % assumed for rat
[18F]SynVesT-1). ``t_isr`` is an independent copy of ``e_isr``: a fraction ``f``
(``true_fraction``) of the session-to-session variance is true change of SV2A, the rest
measurement noise, so the observed outcome has the same distribution whatever ``f``.
``F[arm, s, r] = (1 + effect[arm, '*', r]) (1 + effect[arm, s, r])``: a ``'*'`` effect applies
at every session (e.g. chronic stress before the baseline scan).

``ketamine-rodent`` is the factorial design of :data:`sv2a.phantom.DESIGNS`: context
(control, stress) x treatment (vehicle, single, repeated ketamine), six arms
``control_vehicle`` ... ``stress_repeated`` with ``context`` and ``treatment`` subject
coordinates; stress -10 % at every session, repeated ketamine +4 % at 1 w and +11 % at 3 w in
stressed animals only. With ``scores=True`` the design's behavioural / clinical scores
(:mod:`sv2a.phantom.scores`) are drawn with their true correlation to the true regional
change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DesignError

__all__ = ["DESIGNS", "simulate_design", "true_pct_change", "write_derivatives"]

_RAT_REGIONS = {  # rat [18F]SynVesT-1 phantom preset: (VND = K1/k2, BPND = k3/k4)
    "cortex": (2.4, 7.5), "hippocampus": (2.2, 6.25), "striatum": (2.4, 8.0),
    "thalamus": (2.6, 6.5), "cerebellum": (2.4, 5.5), "brainstem": (2.2, 3.0),
}
_HUMAN_VT = {  # human UCB-J preset VT (mL/cm3), VND = 2.8
    "frontal_cortex": 18.0, "anterior_cingulate": 18.5, "posterior_cingulate": 19.0,
    "temporal_cortex": 19.0, "parietal_cortex": 17.5, "occipital_cortex": 17.0,
    "insula": 20.0, "hippocampus": 13.0, "amygdala": 16.5, "caudate": 16.0,
    "putamen": 20.0, "thalamus": 14.0, "cerebellum_cortex": 15.0, "brainstem": 9.0,
}

_CONTEXT = ("control", "stress")
_TREATMENT = ("vehicle", "single", "repeated")

#: Design presets, the same study designs as :data:`sv2a.phantom.DESIGNS` at the regional
#: level. ``arms`` maps arm -> session (``'*'`` = every session) -> fractional change of VS (a
#: number, or {region: number}); ``factors`` maps factor -> {arm: level} (subject
#: coordinates); ``groups`` maps group -> fractional change of VS at every session (every
#: arm is then simulated in every group); ``true_fraction`` is the part of the
#: session-to-session variance that is true change; ``scores`` names the
#: :data:`sv2a.phantom.DESIGNS` entry whose scores the design uses.
DESIGNS: dict[str, dict] = {
    "ketamine-rodent": {
        "sessions": ["baseline", "24h", "1w", "3w"],
        "arms": {**{f"{c}_{t}": {} for c in _CONTEXT for t in _TREATMENT},
                 "stress_vehicle": {"*": -0.10}, "stress_single": {"*": -0.10},
                 "stress_repeated": {"*": -0.10, "1w": 0.04, "3w": 0.11}},
        "factors": {"context": {f"{c}_{t}": c for c in _CONTEXT for t in _TREATMENT},
                    "treatment": {f"{c}_{t}": t for c in _CONTEXT for t in _TREATMENT}},
        "groups": None,
        "between_cv": 0.10, "trt_sd": 0.08, "n_per_arm": 12, "true_fraction": 0.5,
        "scores": "ketamine-rodent",
        "regions": {r: {"VND": v, "VS": v * b} for r, (v, b) in _RAT_REGIONS.items()},
    },
    "ketamine-human": {
        "sessions": ["baseline", "24h", "7d"],
        "arms": {"single_24h": {}, "single_7d": {}},
        "arm_sessions": {"single_24h": ["baseline", "24h"], "single_7d": ["baseline", "7d"]},
        "groups": None,
        "between_cv": 0.12, "trt_sd": 0.075, "n_per_arm": 6, "true_fraction": 0.5,
        "scores": "ketamine-human",
        "regions": {r: {"VND": 2.8, "VS": vt - 2.8} for r, vt in _HUMAN_VT.items()},
    },
    "ketamine-human-pcc": {
        "base": "ketamine-human",
        "arms": {"single_24h": {"24h": {"posterior_cingulate": 0.05}},
                 "single_7d": {"7d": {"posterior_cingulate": 0.03}}},
    },
    "null": {
        "sessions": ["baseline", "followup"],
        "arms": {"A": {}, "B": {}},
        "groups": None,
        "between_cv": 0.12, "trt_sd": 0.075, "n_per_arm": 8,
        "regions": {r: {"VND": 2.8, "VS": vt - 2.8} for r, vt in _HUMAN_VT.items()},
    },
}


def _resolve(design: str | Mapping) -> dict:
    if isinstance(design, Mapping):
        spec = dict(design)
    else:
        if design not in DESIGNS:
            raise DesignError(f"unknown design '{design}'; choose one of {sorted(DESIGNS)} or "
                              f"pass a dict like sv2a.longitudinal.simulate.DESIGNS['null'].")
        spec = dict(DESIGNS[design])
    if "base" in spec:
        base = _resolve(spec.pop("base"))
        base.update(spec)
        spec = base
    return spec


def _one(e: Any, region: str) -> float:
    if isinstance(e, Mapping):
        return float(e.get(region, e.get("*", 0.0)))
    return float(e)


def _effect(spec: Mapping[str, Any], arm: str, session: str, region: str) -> float:
    """Fractional change of VS of an arm x session x region (``'*'`` session entries apply
    at every session and multiply the session's own)."""
    by_ses = spec["arms"].get(arm, {})
    f = 1.0 + _one(by_ses.get("*", 0.0), region)
    if session != "*":
        f *= 1.0 + _one(by_ses.get(session, 0.0), region)
    return f - 1.0


def _check_arm(spec: Mapping[str, Any], arm: str) -> None:
    if arm in spec["arms"] or arm == "test_retest":
        return
    hint = ""
    for f, levels in (spec.get("factors") or {}).items():
        cells = [a for a, lv in levels.items() if lv == arm]
        if cells:
            hint = (f"; {arm!r} is a level of the factor {f!r}, not an arm: the arms are the "
                    f"factor cells, here {cells}")
    if arm in (spec.get("groups") or {}) or arm.upper() == "CORT":
        hint = "; the stress group is now the 'stress' level of the factor 'context'"
    raise DesignError(f"unknown arm {arm!r}; arms: {list(spec['arms'])}{hint}")


def simulate_design(
    design: str | Mapping = "ketamine-rodent",
    *,
    n_per_arm: int | None = None,
    seed: int | np.random.Generator | None = 0,
    cross_sectional: bool = False,
    between_cv: float | None = None,
    trt_sd: float | None = None,
    rho_between: float = 0.8,
    rho_noise: float = 0.5,
    test_retest_arm: int = 0,
    missing_fraction: float = 0.0,
    regions: Sequence[str] | None = None,
    true_fraction: float | None = None,
    scores: bool = False,
) -> xr.Dataset:
    """Simulate one regional dataset of a longitudinal (or cross-sectional) design.

    Parameters
    ----------
    design : str or dict
        ``'ketamine-rodent'`` (context control/stress x treatment vehicle/single/repeated,
        six arms ``control_vehicle`` ... ``stress_repeated``; stress -10 % at every session;
        repeated +4 % at 1 w and +11 % at 3 w on VS in stressed animals only),
        ``'ketamine-human'`` (two
        independent arms, baseline + 24 h or baseline + 7 d, no change),
        ``'ketamine-human-pcc'`` (PCC +5 % at 24 h, +3 % at 7 d), ``'null'`` (two arms, no
        change), or a dict shaped like :data:`DESIGNS` entries.
    n_per_arm : int, optional
        Subjects per arm (per arm x group in designs with groups); default the design's.
    seed : int, numpy Generator or None
        Random seed (same seed -> same dataset).
    cross_sectional : bool
        Different animals per time point: each subject is scanned once, at one follow-up
        session (no baseline), as in terminal ex vivo designs.
    between_cv : float, optional
        Between-subject CV of VS (fraction, 0.1 = 10 %); default the design's.
    trt_sd : float, optional
        Test-retest SD (fraction: SD of the log ratio of two scans); default the design's.
    rho_between : float
        Between-region correlation (0-1) of the subject effects.
    rho_noise : float
        Between-region correlation (0-1) of the scan noise.
    test_retest_arm : int
        Add an arm ``test_retest`` with this many subjects scanned twice (``baseline`` and
        ``retest``) without treatment (a null for regression-to-the-mean checks).
    missing_fraction : float
        Fraction of follow-up scans set to NaN at random (missing data).
    regions : sequence of str, optional
        Simulate only these regions of the design.
    true_fraction : float, optional
        Fraction (0-1) of the session-to-session variance that is true change of VS (the
        rest is measurement noise); default the design's (0.5 for the ketamine designs, 0
        for ``'null'``). It does not change the distribution of the observed outcomes.
    scores : bool
        Add the design's behavioural / clinical scores (:mod:`sv2a.phantom.scores`) as
        (subject, session) variables named by their columns (response columns 1/0, NaN at
        baseline), ``true_change_<measure>`` (the true regional change the score correlates
        with: mean over its regions of log(VS_true / VS_true at baseline), unitless) and
        ``attrs['scores']`` (JSON: the normalised spec with ``r`` and the formula).

    Returns
    -------
    xr.Dataset
        Like :func:`collect`: ``BPND``, ``VT``, ``converged`` over (subject, session, region),
        ``arm`` (and ``group``) on subject; ``attrs['truth']`` is a JSON table of the true %
        change per arm x session x region for each outcome (see :func:`true_pct_change`).
        ``BPND`` is unitless, ``VT`` in mL/cm3. Factorial designs add their factors
        (``context``, ``treatment``) as subject coordinates.

    Raises
    ------
    DesignError
        Unknown design or region, a test-retest arm in a cross-sectional design,
        ``true_fraction`` outside [0, 1], or ``scores=True`` for a design without scores.

    Examples
    --------
    >>> ds = simulate_design("ketamine-human", n_per_arm=3, seed=1, regions=["insula"])
    >>> dict(ds.sizes), sorted(set(ds["arm"].values.tolist()))
    ({'subject': 6, 'session': 3, 'region': 1}, ['single_24h', 'single_7d'])
    >>> r = simulate_design("ketamine-rodent", n_per_arm=2, seed=0, scores=True,
    ...                     regions=["cortex", "hippocampus"])
    >>> sorted(set(r["treatment"].values.tolist())), r["sucrose_preference"].dims
    (['repeated', 'single', 'vehicle'], ('subject', 'session'))
    """
    spec = _resolve(design)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = int(n_per_arm or spec.get("n_per_arm", 8))
    cv_b = float(spec["between_cv"] if between_cv is None else between_cv)
    sd_t = float(spec["trt_sd"] if trt_sd is None else trt_sd)
    if regions is not None:
        unknown = [r for r in regions if r not in spec["regions"]]
        if unknown:
            raise DesignError(f"regions {unknown} not in design; regions: {list(spec['regions'])}")
        spec["regions"] = {r: spec["regions"][r] for r in regions}
    regions = list(spec["regions"])
    vnd = np.array([spec["regions"][r]["VND"] for r in regions])
    vs = np.array([spec["regions"][r]["VS"] for r in regions])
    sessions = list(spec["sessions"])
    groups = spec.get("groups") or {None: 0.0}
    arm_sessions = spec.get("arm_sessions", {})

    subj_arm: list[str] = []
    subj_group: list[str | None] = []
    subj_sessions: list[list[str]] = []
    for arm in spec["arms"]:
        for grp in groups:
            ses_arm = arm_sessions.get(arm, sessions)
            if cross_sectional:
                for s in ses_arm[1:]:
                    for _ in range(n):
                        subj_arm.append(arm)
                        subj_group.append(grp)
                        subj_sessions.append([s])
            else:
                for _ in range(n):
                    subj_arm.append(arm)
                    subj_group.append(grp)
                    subj_sessions.append(list(ses_arm))
    if test_retest_arm:
        if cross_sectional:
            raise DesignError("a test-retest arm needs repeated scans (cross_sectional=False)")
        sessions = sessions + ["retest"]
        for _ in range(int(test_retest_arm)):
            subj_arm.append("test_retest")
            subj_group.append(next(iter(groups)))
            subj_sessions.append(["baseline", "retest"])

    ns, ne, nr = len(subj_arm), len(sessions), len(regions)
    b = rng.normal(0, cv_b * np.sqrt(rho_between), (ns, 1))
    u = rng.normal(0, cv_b * np.sqrt(1 - rho_between), (ns, nr))
    sd_scan = sd_t / np.sqrt(2)
    e = sd_scan * (np.sqrt(rho_noise) * rng.normal(0, 1, (ns, ne, 1))
                   + np.sqrt(1 - rho_noise) * rng.normal(0, 1, (ns, ne, nr)))
    f_true = float(spec.get("true_fraction", 0.0) if true_fraction is None else true_fraction)
    if not 0.0 <= f_true <= 1.0:
        raise DesignError(f"true_fraction must lie in [0, 1], got {f_true}")
    eff = np.array([[[_effect(spec, a, s, r) for r in regions] for s in sessions]
                    for a in subj_arm])
    g = np.array([groups[k] for k in subj_group])[:, None, None]
    scanned = np.zeros((ns, ne), bool)
    for i, ss in enumerate(subj_sessions):
        scanned[i, [sessions.index(s) for s in ss]] = True
    if missing_fraction > 0:
        follow = scanned.copy()
        follow[:, 0] = False
        drop = follow & (rng.random((ns, ne)) < missing_fraction)
        scanned &= ~drop
    t_true = np.zeros((ns, ne, nr))
    if f_true > 0:  # drawn after the other streams: f = 0 reproduces earlier versions
        t_true = sd_scan * (np.sqrt(rho_noise) * rng.normal(0, 1, (ns, ne, 1))
                            + np.sqrt(1 - rho_noise) * rng.normal(0, 1, (ns, ne, nr)))
        e = np.sqrt(1 - f_true) * e
    vs_true = (vs[None, None, :] * np.exp(b + u)[:, None, :] * np.exp(np.sqrt(f_true) * t_true)
               * (1 + eff) * (1 + g))
    bpnd = vs_true / vnd * np.exp(e)
    vt = (vnd + vs_true) * np.exp(e)
    bpnd[~scanned] = np.nan
    vt[~scanned] = np.nan
    conv = np.where(scanned[:, :, None], 1.0, np.nan) * np.ones((1, 1, nr))

    subjects = [f"{i + 1:02d}" if ns < 100 else f"{i + 1:03d}" for i in range(ns)]
    ds = xr.Dataset(
        {"BPND": (("subject", "session", "region"), bpnd),
         "VT": (("subject", "session", "region"), vt),
         "converged": (("subject", "session", "region"), conv)},
        coords={"subject": subjects, "session": sessions, "region": regions,
                "arm": ("subject", np.array(subj_arm, dtype=str))},
    )
    if spec.get("groups"):
        ds = ds.assign_coords(group=("subject", np.array(subj_group, dtype=str)))
    for fac, levels in (spec.get("factors") or {}).items():
        ds = ds.assign_coords({fac: ("subject", np.array(
            [str(levels.get(a, "n/a")) for a in subj_arm], dtype=str))})
    score_attrs = ""
    if scores:
        score_vars, score_attrs = _simulate_scores(
            spec, regions, sessions, subjects, subj_arm, subj_sessions, scanned,
            np.log(vs_true), np.log(vs[None, None, :] * (1 + eff) * (1 + g)),
            sd_b=cv_b, rho_b=rho_between, sd_t=float(np.sqrt(f_true)) * sd_scan,
            rho_t=rho_noise, seed=int(rng.integers(2**31)))
        ds = ds.assign(score_vars)
    keep = [s for s in sessions if scanned[:, sessions.index(s)].any()]
    ds = ds.sel(session=keep)
    truth = true_pct_change(spec, regions, keep, sorted(set(subj_arm), key=subj_arm.index))
    ds.attrs.update({
        "sv2a_group_dataset": 1, "source": "simulate_design", "model": "SIM",
        "design": design if isinstance(design, str) else "custom",
        "cross_sectional": int(cross_sectional), "between_cv": cv_b, "trt_sd": sd_t,
        "true_fraction": f_true, "truth": truth.to_json(orient="records"),
    })
    if score_attrs:
        ds.attrs["scores"] = score_attrs
    return ds


def _simulate_scores(spec: Mapping[str, Any], regions: list[str], sessions: list[str],
                     subjects: list[str], subj_arm: list[str], subj_sessions: list[list[str]],
                     scanned: np.ndarray, log_vs: np.ndarray, log_expected: np.ndarray, *,
                     sd_b: float, rho_b: float, sd_t: float, rho_t: float, seed: int
                     ) -> tuple[dict, str]:
    """Score variables (subject x session) and the JSON of their spec (module docstring)."""
    from ..phantom.cohort import DESIGNS as PHANTOM_DESIGNS
    from ..phantom.scores import SCORE_FORMULA, draw_scores, normalise_scores

    raw = spec.get("scores")
    if isinstance(raw, str):
        raw = PHANTOM_DESIGNS[raw].get("scores")
    if not raw:
        raise DesignError("scores=True: this design has no 'scores' section; add one (see "
                          "sv2a.phantom.scores.normalise_scores) or use 'ketamine-rodent' / "
                          "'ketamine-human'")
    arm_ses = {a: spec.get("arm_sessions", {}).get(a, spec["sessions"]) for a in spec["arms"]}
    sc = normalise_scores(raw, arm_ses, regions + [r for r in _all_regions() if r not in
                                                    regions])
    missing = sorted({r for m in sc.values() for r in m["regions"] if r not in regions})
    if missing:
        raise DesignError(f"scores=True: the scores need region(s) {missing}; include them "
                          "in regions=")
    use = [i for i, a in enumerate(subj_arm) if a in spec["arms"]]
    out: dict[str, Any] = {}
    z: dict[str, dict] = {}
    for m, ms in sc.items():
        idx = [regions.index(r) for r in ms["regions"]]
        k = len(idx)
        d = (log_vs[:, :, idx] - log_expected[:, :, idx]).mean(axis=2)  # subject x session
        sd_change = float(np.sqrt(2.0) * sd_t * np.sqrt(rho_t + (1 - rho_t) / k))
        sd_level = float(np.sqrt(sd_b ** 2 * (rho_b + (1 - rho_b) / k)
                                 + (sd_t ** 2) * (rho_t + (1 - rho_t) / k)))
        zz = {}
        true_change = np.full((len(subjects), len(sessions)), np.nan)
        for jj, i in enumerate(use):
            ss = subj_sessions[i]
            if len(ss) == 1:
                j = sessions.index(ss[0])
                if sd_level > 0:
                    zz[(jj, ss[0])] = float(d[i, j] / sd_level)
                continue
            j0 = sessions.index(ss[0])
            for s in ss[1:]:
                j = sessions.index(s)
                true_change[i, j] = (log_vs[i, j, idx] - log_vs[i, j0, idx]).mean()
                if sd_change > 0:
                    zz[(jj, s)] = float((d[i, j] - d[i, j0]) / sd_change)
        z[m] = zz
        out[f"true_change_{m}"] = (("subject", "session"), true_change)
    tables = draw_scores(sc, [subjects[i] for i in use], [subj_arm[i] for i in use],
                         [subj_sessions[i] for i in use], z, seed=[seed])
    for m, ms in sc.items():
        t = tables[m]
        cols = [ms["column"]] + ([ms["response"]["column"]] if ms["response"] else [])
        for c in cols:
            arr = np.full((len(subjects), len(sessions)), np.nan)
            pos = {p: k for k, p in enumerate(subjects)}
            for p_id, ses_id, v in zip(t["participant_id"], t["session_id"], t[c],
                                       strict=True):
                if v is not pd.NA and v is not None:
                    arr[pos[p_id], sessions.index(ses_id[4:])] = float(v)
            arr[~scanned] = np.nan
            out[c] = (("subject", "session"), arr)
    return out, json.dumps({m: {**ms, "formula": SCORE_FORMULA} for m, ms in sc.items()})


def _all_regions() -> list[str]:
    return sorted(set(_RAT_REGIONS) | set(_HUMAN_VT))


def true_pct_change(spec: str | Mapping[str, Any], regions: Sequence[str],
                    sessions: Sequence[str], arms: Sequence[str]) -> pd.DataFrame:
    """True % change from baseline per arm x session x region.

    Parameters
    ----------
    spec : str or mapping
        A :data:`DESIGNS` name or a design dict.
    regions, sessions, arms : sequence of str
        The cells to tabulate (arms not in the design get 0 %).

    Returns
    -------
    pandas.DataFrame
        Columns ``arm session region BPND_pct VT_pct`` (%), the change from the arm's first
        session: ``BPND_pct = 100 (F[s] / F[first] - 1)`` with ``F`` the arm's VS factor
        (BPND is proportional to VS); ``VT_pct = 100 VS (F[s] - F[first]) / (VND + VS
        F[first])`` of the population values (VND unchanged). Group effects are not included.

    Raises
    ------
    DesignError
        An arm that is not in the design (``test_retest`` gives 0 %).

    Examples
    --------
    >>> t = true_pct_change("ketamine-rodent", ["cortex"], ["3w"],
    ...                     ["stress_repeated", "control_repeated"])
    >>> t["BPND_pct"].round(6).tolist()
    [11.0, 0.0]
    """
    spec = _resolve(spec) if isinstance(spec, str) else spec
    arm_sessions = spec.get("arm_sessions", {})
    rows = []
    for arm in arms:
        _check_arm(spec, arm)
        first = arm_sessions.get(arm, spec["sessions"])[0]
        for s in sessions:
            for r in regions:
                f1, f0 = 1.0, 1.0
                if arm in spec["arms"]:
                    f1 = 1 + _effect(spec, arm, s, r)
                    f0 = 1 + _effect(spec, arm, first, r)
                reg = spec["regions"][r]
                rows.append({"arm": arm, "session": s, "region": r,
                             "BPND_pct": 100 * (f1 / f0 - 1),
                             "VT_pct": 100 * reg["VS"] * (f1 - f0) / (reg["VND"]
                                                                      + reg["VS"] * f0)})
    return pd.DataFrame(rows)


def write_derivatives(ds: xr.Dataset, out_dir: str | os.PathLike[str], *,
                      model: str = "SRTM2", atlas: str = "phantom") -> Path:
    """Write a group dataset as an sv2a derivatives tree plus ``participants.tsv``.

    The layout is the one ``sv2a run ... participant`` writes:
    ``sub-XX/ses-YY/pet/sub-XX_ses-YY_seg-<atlas>_model-<MODEL>_kinpar.tsv``; used to test
    :func:`~sv2a.longitudinal.collect` on real files.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (e.g. from :func:`simulate_design`).
    out_dir : str or path-like
        Derivatives root (created if needed).
    model : str
        ``model-`` entity of the file names.
    atlas : str
        ``seg-`` entity of the file names.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = [v for v in ds.data_vars]
    for sub in ds["subject"].values:
        for ses in ds["session"].values:
            cell = ds.sel(subject=sub, session=ses)
            if all(np.isnan(cell[p].values).all() for p in params):
                continue
            d = out / f"sub-{sub}" / f"ses-{ses}" / "pet"
            d.mkdir(parents=True, exist_ok=True)
            t = pd.DataFrame({"region": ds["region"].values})
            for p in params:
                v = cell[p].values
                t[p] = (np.where(np.isnan(v), np.nan, v == 1) if p == "converged" else v)
            if "converged" in t:
                t["converged"] = ["n/a" if pd.isna(v) else str(bool(v)) for v in t["converged"]]
            t.to_csv(d / f"sub-{sub}_ses-{ses}_seg-{atlas}_model-{model}_kinpar.tsv",
                     sep="\t", index=False, na_rep="n/a")
    cols: dict[str, Any] = {"participant_id": ["sub-" + s for s in ds["subject"].values],
            "arm": ds["arm"].values}
    for c, v in ds.coords.items():
        if v.dims == ("subject",) and c not in ("subject", "arm"):
            cols[str(c)] = v.values
    pd.DataFrame(cols).to_csv(out / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    (out / "dataset_description.json").write_text(json.dumps(
        {"Name": "simulated", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "sv2a.longitudinal.simulate"}]}, indent=1))
    return out
