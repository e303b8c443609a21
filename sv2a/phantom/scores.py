"""Behavioural and clinical scores with a known correlation to the true change of SV2A.

A design's ``scores`` section names measures (a rodent sucrose preference test, a clinical
rating scale, ...) with their mean per arm and session, their spread, the region(s) whose
change of specific binding they track and the true correlation ``r``. For subject *i* in arm
*a*, with baseline session *b* and follow-up session *s*::

    y[b] = mean[a, b] + sd[a] * e0
    y[s] = y[b] + (mean[a, s] - mean[a, b]) + change_sd[a, s] * (r * z[s] + sqrt(1 - r^2) * e[s])
    D[s] = mean over the score's regions of log(VS[s] / VS[b])        (true VS, no noise)
    z[s] = (D[s] - E[D[s] | a, s]) / SD(D[s] | a, s)

with ``e0, e[s] ~ N(0, 1)`` independent of everything else. Within each arm x session the
correlation between the score change ``y[s] - y[b]`` and the true regional change ``D[s]`` is
``r`` (the arm means carry the group differences, so ``r`` is also the correlation pooled over
arms after removing the arm x session means). A subject seen at one session only (a
cross-sectional design) gets ``y[s] = mean[a, s] + sqrt(sd^2 + change_sd^2) (r z + sqrt(1 -
r^2) e)`` with ``z`` the standardised true log VS at that session. Values are then clipped to
``bounds`` and rounded to ``decimals`` (both change ``r`` by well under 1 % for the presets).
A ``response`` rule adds a true/false column: a reduction from baseline of at least a given
fraction (e.g. MADRS response: >= 50 % reduction).

The scores are written as BIDS phenotype files, ``phenotype/<measure>.tsv`` (participant_id,
session_id, score columns) with a ``phenotype/<measure>.json`` data dictionary.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DesignError

__all__ = ["normalise_scores", "draw_scores", "write_phenotype", "phenotype_sidecar",
           "change_sd_of_log_mean", "SCORE_FORMULA"]

#: The generating model of every score, as recorded in ``design.json``.
SCORE_FORMULA = (
    "y[baseline] = mean[arm, baseline] + sd[arm] * e0; "
    "y[s] = y[baseline] + (mean[arm, s] - mean[arm, baseline]) "
    "+ change_sd[arm, s] * (r * z[s] + sqrt(1 - r^2) * e[s]); "
    "z[s] = (D[s] - E[D[s] | arm, s]) / SD(D[s] | arm, s), D[s] = mean over the score's regions "
    "of log(VS[s] / VS[baseline]) (true VS); e0, e[s] ~ N(0, 1) independent; "
    "subjects with one session only: y[s] = mean[arm, s] + sqrt(sd^2 + change_sd^2) * "
    "(r * z + sqrt(1 - r^2) * e), z = standardised true log VS; then clipped to bounds and "
    "rounded to decimals"
)

_KEYS = ("description", "units", "column", "mean", "sd", "change_sd", "regions", "r",
         "bounds", "decimals", "response", "levels_description")
_REQUIRED = ("units", "mean", "sd", "change_sd", "regions", "r")


def _by_arm_session(measure: str, key: str, value: Any, arms: Mapping[str, Sequence[str]],
                    *, per_session: bool) -> dict:
    """Expand ``{arm or '*': {session or '*': number}}`` (or a number) to every arm/session."""
    def number(v: Any, where: str) -> float:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise DesignError(f"scores[{measure!r}][{key!r}]{where}: {v!r} is not a number") \
                from None
        if not np.isfinite(x) or (key != "mean" and x < 0):
            raise DesignError(f"scores[{measure!r}][{key!r}]{where} = {v!r}: must be a finite "
                              + ("number" if key == "mean" else "number >= 0"))
        return x

    if not isinstance(value, Mapping):
        value = {"*": value}
    unknown = [a for a in value if a != "*" and a not in arms]
    if unknown:
        raise DesignError(f"scores[{measure!r}][{key!r}]: unknown arm(s) {unknown}; arms are "
                          f"{list(arms)} (or '*' for every arm)")
    out: dict[str, Any] = {}
    for arm, sessions in arms.items():
        v = value.get(arm, value.get("*"))
        if v is None:
            raise DesignError(f"scores[{measure!r}][{key!r}]: no value for arm {arm!r}; give "
                              "it or a '*' default")
        if not per_session:
            if isinstance(v, Mapping):
                raise DesignError(f"scores[{measure!r}][{key!r}][{arm!r}]: one number per arm "
                                  "(the baseline SD), not per session")
            out[arm] = number(v, f"[{arm!r}]")
            continue
        if not isinstance(v, Mapping):
            v = {"*": v}
        # a '*' arm default may name sessions that only some arms have
        bad = [s for s in v if s != "*" and s not in sessions and arm in value]
        if bad:
            raise DesignError(f"scores[{measure!r}][{key!r}][{arm!r}]: arm has no session(s) "
                              f"{bad} (sessions {list(sessions)})")
        out[arm] = {}
        for s in sessions:
            x = v.get(s, v.get("*"))
            if x is None:
                raise DesignError(f"scores[{measure!r}][{key!r}][{arm!r}]: no value for "
                                  f"session {s!r}; give it or a '*' default")
            out[arm][s] = number(x, f"[{arm!r}][{s!r}]")
    return out


def normalise_scores(scores: Mapping | None, arms: Mapping[str, Sequence[str]],
                     regions: Sequence[str]) -> dict:
    """A complete, validated ``scores`` section of a design.

    Each measure is a dict::

        {"description": "sucrose preference test (1 % sucrose vs water, 24 h)",
         "units": "%", "column": "sucrose_preference",         # default: the measure name
         "mean": {"*": {"*": 80.0}, "stress_vehicle": {"*": 62.0}},   # arm -> session -> mean
         "sd": 6.0,                                            # baseline SD (per arm or '*')
         "change_sd": {"*": {"*": 6.0}},                       # SD of the change from baseline
         "regions": ["hippocampus"], "r": 0.5,                 # true r with D = log VS change
         "bounds": [0, 100], "decimals": 1,
         "response": {"column": "madrs_response", "reduction": 0.5}}  # optional

    ``'*'`` is the default for every arm or session. ``response`` adds a true/false column:
    a reduction of at least ``reduction`` (fraction) from the baseline value.

    Parameters
    ----------
    scores : mapping or None
        Measure name -> spec as above (None or empty: no scores).
    arms : mapping
        Arm -> its sessions (the first is its baseline).
    regions : sequence of str
        Region names the scores may refer to.

    Returns
    -------
    dict
        Measure -> spec with ``mean`` and ``change_sd`` expanded to every arm and session,
        ``sd`` to every arm, ``regions`` a list, ``bounds`` a list or None, ``decimals`` an
        int or None, ``response`` a dict or None; units as given.

    Raises
    ------
    DesignError
        Unknown key, arm, session or region; a missing value; ``r`` outside [-1, 1]; a
        negative SD; a measure name that is not a BIDS-safe file name.

    Examples
    --------
    >>> s = normalise_scores({"spt": {"units": "%", "mean": 70, "sd": 5, "change_sd": 4,
    ...                               "regions": "cortex", "r": 0.5}},
    ...                      {"a": ["baseline", "3w"]}, ["cortex"])
    >>> s["spt"]["mean"], s["spt"]["regions"]
    ({'a': {'baseline': 70.0, '3w': 70.0}}, ['cortex'])
    """
    if not scores:
        return {}
    if not isinstance(scores, Mapping):
        raise DesignError("design 'scores' must be a dict measure -> {units, mean, sd, "
                          "change_sd, regions, r, ...}")
    out = {}
    for measure, spec in scores.items():
        m = str(measure)
        if not m.replace("_", "").isalnum():
            raise DesignError(f"scores: measure name {m!r} must be letters, digits and '_' "
                              "(it names phenotype/<measure>.tsv)")
        if not isinstance(spec, Mapping):
            raise DesignError(f"scores[{m!r}] must be a dict with keys {list(_REQUIRED)}")
        unknown = [k for k in spec if k not in _KEYS]
        if unknown:
            raise DesignError(f"scores[{m!r}]: unknown key(s) {unknown}; allowed: "
                              f"{list(_KEYS)}")
        missing = [k for k in _REQUIRED if k not in spec]
        if missing:
            raise DesignError(f"scores[{m!r}]: missing key(s) {missing}")
        d = copy.deepcopy(dict(spec))
        regs = [d["regions"]] if isinstance(d["regions"], str) else list(d["regions"])
        bad = [r for r in regs if r not in regions]
        if not regs or bad:
            raise DesignError(f"scores[{m!r}]['regions']: unknown region(s) {bad or regs}; "
                              f"regions: {sorted(regions)}")
        r = float(d["r"])
        if not -1.0 <= r <= 1.0:
            raise DesignError(f"scores[{m!r}]['r'] = {d['r']!r}: a correlation lies in "
                              "[-1, 1]")
        bounds = d.get("bounds")
        if bounds is not None:
            if len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
                raise DesignError(f"scores[{m!r}]['bounds'] = {bounds!r}: give [low, high]")
            bounds = [float(bounds[0]), float(bounds[1])]
        resp = d.get("response")
        if resp is not None:
            if not isinstance(resp, Mapping) or set(resp) - {"column", "reduction"} \
                    or not 0 < float(resp.get("reduction", 0.5)) <= 1:
                raise DesignError(f"scores[{m!r}]['response']: give {{'column': name, "
                                  "'reduction': fraction in (0, 1]}")
            resp = {"column": str(resp.get("column", f"{m}_response")),
                    "reduction": float(resp.get("reduction", 0.5))}
        out[m] = {
            "description": str(d.get("description", m)), "units": str(d["units"]),
            "column": str(d.get("column", m)),
            "mean": _by_arm_session(m, "mean", d["mean"], arms, per_session=True),
            "sd": _by_arm_session(m, "sd", d["sd"], arms, per_session=False),
            "change_sd": _by_arm_session(m, "change_sd", d["change_sd"], arms,
                                         per_session=True),
            "regions": regs, "r": r, "bounds": bounds,
            "decimals": None if d.get("decimals") is None else int(d["decimals"]),
            "response": resp,
        }
        if "levels_description" in d:
            out[m]["levels_description"] = str(d["levels_description"])
    return out


def change_sd_of_log_mean(sd_common: float, sd_regional: float, n_regions: int) -> float:
    """SD of a mean over regions of a log difference of two sessions.

    Each session adds a term shared by all regions (SD ``sd_common``) and an independent term
    per region (SD ``sd_regional``); the mean over ``n_regions`` regions of the difference of
    two sessions then has variance ``2 (sd_common^2 + sd_regional^2 / n_regions)``.

    Parameters
    ----------
    sd_common : float
        SD of the session term shared by the regions (log scale, fraction).
    sd_regional : float
        SD of the independent regional session term (log scale, fraction).
    n_regions : int
        Number of regions averaged.

    Returns
    -------
    float
        SD of the change (log scale, fraction).

    Examples
    --------
    >>> round(change_sd_of_log_mean(0.08, 0.024, 1), 4)
    0.1181
    """
    return float(np.sqrt(2.0 * (sd_common ** 2 + sd_regional ** 2 / max(int(n_regions), 1))))


def draw_scores(scores: Mapping, participants: Sequence[str], arms: Sequence[str],
                sessions: Sequence[Sequence[str]], z: Mapping[str, Mapping[tuple[int, str],
                                                                           float]],
                *, seed: Sequence[int]) -> dict[str, pd.DataFrame]:
    """Draw every measure's scores for a cohort (the model in the module docstring).

    Parameters
    ----------
    scores : mapping
        Normalised ``scores`` section (:func:`normalise_scores`).
    participants : sequence of str
        Participant ids (``sub-XX``), one per subject.
    arms : sequence of str
        Each subject's arm.
    sessions : sequence of sequence of str
        Each subject's sessions in order; when a subject has two or more, the first is its
        baseline.
    z : mapping
        Measure -> ``{(subject index, session): z}``, the standardised true regional change
        from the subject's baseline (its standardised true log VS when the subject has one
        session). Missing entries count as 0 (no information on the region).
    seed : sequence of int
        Prefix of the random streams: subject *i*'s draws for measure *m* (index in
        ``scores``) come from ``default_rng([*seed, i, m])`` alone.

    Returns
    -------
    dict of pandas.DataFrame
        Measure -> table with ``participant_id``, ``session_id`` (``ses-<label>``), the score
        column (the measure's units) and, with a ``response`` rule, a boolean response column
        (missing at baseline).

    Examples
    --------
    >>> s = normalise_scores({"spt": {"units": "%", "mean": {"*": {"baseline": 70, "3w": 75}},
    ...                               "sd": 5, "change_sd": 4, "regions": "cortex",
    ...                               "r": 0.5}}, {"a": ["baseline", "3w"]}, ["cortex"])
    >>> t = draw_scores(s, ["sub-01"], ["a"], [["baseline", "3w"]], {"spt": {}}, seed=[0])
    >>> t["spt"].columns.tolist(), t["spt"]["session_id"].tolist()
    (['participant_id', 'session_id', 'spt'], ['ses-baseline', 'ses-3w'])
    """
    out = {}
    for m_index, (measure, spec) in enumerate(scores.items()):
        r = float(spec["r"])
        q = float(np.sqrt(max(0.0, 1.0 - r * r)))
        zm = z.get(measure, {})
        rows: list[dict[str, Any]] = []
        for i, (pid, arm, ses) in enumerate(zip(participants, arms, sessions, strict=True)):
            g = np.random.default_rng([*[int(x) for x in seed], i, m_index])
            e = g.standard_normal(1 + len(ses))
            mean, cs = spec["mean"][arm], spec["change_sd"][arm]
            sd0 = float(spec["sd"][arm])
            vals = {}
            if len(ses) == 1:
                s = ses[0]
                zz = float(zm.get((i, s), 0.0))
                vals[s] = mean[s] + np.hypot(sd0, cs[s]) * (r * zz + q * e[1])
            else:
                b = ses[0]
                y0 = mean[b] + sd0 * e[0]
                vals[b] = y0
                for k, s in enumerate(ses[1:], start=2):
                    zz = float(zm.get((i, s), 0.0))
                    vals[s] = y0 + (mean[s] - mean[b]) + cs[s] * (r * zz + q * e[k])
            for s, v in vals.items():
                if spec["bounds"] is not None:
                    v = float(np.clip(v, *spec["bounds"]))
                if spec["decimals"] is not None:
                    v = round(float(v), spec["decimals"])
                rows.append({"participant_id": pid, "session_id": f"ses-{s}",
                             spec["column"]: float(v)})
            resp = spec.get("response")
            if resp is not None:
                mine = rows[-len(ses):]
                base = float(mine[0][spec["column"]]) if len(ses) > 1 else np.nan
                for row, s in zip(mine, ses, strict=True):
                    if len(ses) == 1 or s == ses[0] or not np.isfinite(base) or base <= 0:
                        row[resp["column"]] = None
                    else:
                        y = float(row[spec["column"]])
                        row[resp["column"]] = bool((base - y) / base >= resp["reduction"])
        table = pd.DataFrame(rows)
        if resp is not None:
            table[resp["column"]] = table[resp["column"]].astype("boolean")
        out[measure] = table
    return out


def phenotype_sidecar(measure: str, spec: Mapping) -> dict:
    """The BIDS data dictionary (``phenotype/<measure>.json``) of one measure.

    Parameters
    ----------
    measure : str
        Measure name.
    spec : mapping
        Its normalised spec (:func:`normalise_scores`).

    Returns
    -------
    dict
        ``MeasurementToolMetadata`` and one entry per column (Description, Units, Levels).
    """
    side: dict[str, Any] = {
        "MeasurementToolMetadata": {"Description": spec["description"]},
        "participant_id": {"Description": "participant label"},
        "session_id": {"Description": "BIDS session label of the visit"},
        spec["column"]: {"Description": spec["description"], "Units": spec["units"]},
    }
    if spec.get("bounds") is not None:
        side[spec["column"]]["MinValue"], side[spec["column"]]["MaxValue"] = spec["bounds"]
    resp = spec.get("response")
    if resp is not None:
        pct = f"{100 * resp['reduction']:g}"
        side[resp["column"]] = {
            "Description": f"response: {spec['column']} reduced by at least {pct} % from the "
                           "participant's baseline (n/a at baseline)",
            "Levels": {"true": f"responder (reduction >= {pct} %)",
                       "false": f"non-responder (reduction < {pct} %)"},
            "Derivative": True,
        }
    return side


def write_phenotype(root: str | os.PathLike, tables: Mapping[str, pd.DataFrame],
                    scores: Mapping) -> list[Path]:
    """Write ``phenotype/<measure>.tsv`` and ``.json`` for every measure.

    Parameters
    ----------
    root : path
        BIDS dataset root (``phenotype/`` is created under it).
    tables : mapping
        Measure -> table from :func:`draw_scores`.
    scores : mapping
        The normalised ``scores`` section (for the data dictionaries).

    Returns
    -------
    list of Path
        The TSV files written.
    """
    from ..atomic import write_json, write_tsv

    out = []
    for measure, table in tables.items():
        t = table.copy()
        for c in t.columns:
            if str(t[c].dtype) == "boolean":
                t[c] = t[c].map(lambda v: "n/a" if v is pd.NA else ("true" if v else "false"))
        path = Path(root) / "phenotype" / f"{measure}.tsv"
        write_tsv(path, t)
        write_json(path.with_suffix(".json"), phenotype_sidecar(measure, scores[measure]))
        out.append(path)
    return out
