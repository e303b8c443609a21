"""Simulated longitudinal SV2A PET studies written as BIDS datasets with ground truth.

:func:`make_cohort` draws subjects for a study design (arms x sessions, effects on specific
binding, between-subject variability, test-retest variability, an optional flow confound),
simulates every scan with :func:`~sv2a.phantom.subject.make_subject` and writes::

    OUT/dataset_description.json, README, participants.tsv/.json (participant_id arm
        [factor columns] age sex weight), truth.tsv, design.json, .bidsignore
    OUT/phenotype/<measure>.tsv + .json                  (participant_id session_id score)
    OUT/sessions.json, OUT/sub-01/sub-01_sessions.tsv     (session_id, time_since_dose in h)
    OUT/sub-01/ses-baseline/pet/sub-01_ses-baseline_pet.nii.gz + .json
    OUT/sub-01/ses-baseline/pet/sub-01_ses-baseline_recording-manual_blood.tsv + .json
    OUT/sub-01/ses-baseline/anat/sub-01_ses-baseline_dseg.nii.gz + _dseg.tsv

Designs (*design* values of this package, not measurements): ``ketamine-human`` (adults
with depression, baseline + 24 h or 7 d after one dose, independent arms, no SV2A change, MADRS
at every visit; ``ketamine-human-pcc``: PCC +5 % at 24 h, +3 % at 7 d; ``ketamine-human-flow``:
K1 +10 % after dosing), ``ketamine-rodent`` (rat [18F]SynVesT-1; factorial context {control,
stress} x treatment {vehicle, single, repeated ketamine}, six arms ``control_vehicle`` ...
``stress_repeated``, scans at baseline, 24 h, 1 w, 3 w; chronic stress -10 % in every brain
region at every session (stress precedes the baseline scan); repeated ketamine +4 % at 1 w and
+11 % at 3 w in stressed animals only; a single dose and ketamine in control animals 0 %;
sucrose preference and social interaction scores; ``ketamine-rodent-flow`` adds K1 +10 % at
24 h in the ketamine arms), or a user design (dict or JSON file, see :func:`normalise_design`).
Factorial designs name their factors (``factors``) and give each arm its level of each; the
levels are columns of ``participants.tsv``. ``scores`` (:mod:`sv2a.phantom.scores`) add
behavioural or clinical measures with a known correlation to the true regional change,
written as BIDS ``phenotype/<measure>.tsv`` + ``.json``.

Variability (log-normal): subject level ``VS x exp(N(0, between_subject_cv))`` globally and
``exp(N(0, regional_fraction x cv))`` per region, ``VND x exp(N(0, vnd_cv))``,
``K1 x exp(N(0, k1_cv))``; session level ``VS x exp(N(0, within_subject_sd))`` globally and per
region (regional fraction). Effects multiply VS (1TCM: ``VT = VND + VS``, ``k2 = K1/VT``;
2TCM: ``k3``); flow effects multiply K1 (and k2 for the 2TCM, keeping VND). Every scan's true
parameters after all of this are in ``truth.tsv``.

The files that released BIDS raw data does not define (ground truth, segmentations beside the
PET, true motion, session-level phenotype tables) are listed in ``.bidsignore``
(:mod:`sv2a.phantom.bidsignore`), so that the official bids-validator reports no error on
them; ``tests/test_bids_validator.py`` runs it on phantom datasets.

Random streams: ``default_rng([seed, stream, subject, session])``, so a scan's data depend only
on the seed and its position, and the same seed gives byte-identical files.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BIDSError, ConfigError, DesignError, ModelError
from .bidsignore import write_bidsignore
from .geometry import make_anatomy
from .scores import SCORE_FORMULA, draw_scores, normalise_scores, write_phenotype
from .simulate import complete_params, region_table
from .subject import TRUTH_COLUMNS, make_subject
from .tracers import TracerPreset, get_preset
from .truth import TIED, effect_factor, score_z, true_contrasts, true_effects, with_effects

__all__ = ["make_cohort", "Cohort", "DESIGNS", "normalise_design", "scan_parameters",
           "estimate_cohort", "CohortEstimate", "raw_bytes"]

#: Data dictionary of the ``sub-*_sessions.tsv`` columns, written once at the root
#: (``sessions.json``, inherited by every subject's table).
SESSIONS_SIDECAR = {
    "session_id": {"Description": "session label"},
    "time_since_dose": {"Description": "time from the treatment dose to the scan (n/a: no "
                                       "dose before this session)", "Units": "h"},
}

_HUMAN_VAR = {"between_subject_cv": 0.12, "within_subject_sd": 0.075, "regional_fraction": 0.3,
              "vnd_cv": 0.08, "k1_cv": 0.10}
_RODENT_VAR = {"between_subject_cv": 0.10, "within_subject_sd": 0.08, "regional_fraction": 0.3,
               "vnd_cv": 0.08, "k1_cv": 0.10}

#: Rodent chronic stress x ketamine: factor levels (the first is the reference).
_RODENT_FACTORS = {
    "context": {"control": "no stress (handled controls)",
                "stress": "chronic stress, started before the baseline scan and continued"},
    "treatment": {"vehicle": "saline i.p.", "single": "one ketamine dose (10 mg/kg i.p.)",
                  "repeated": "repeated ketamine (10 mg/kg i.p., 3 doses)"},
}
_RODENT_ARMS = [f"{c}_{t}" for c in _RODENT_FACTORS["context"]
                for t in _RODENT_FACTORS["treatment"]]


def _brain(x: float) -> dict:
    """An effect in every brain region (not the extracerebral Harderian glands)."""
    return {"*": x, "harderian_gland": 0.0}


def _rodent_means(control: float, stress_vehicle: float, single: dict, repeated: dict) -> dict:
    """Score means per arm and session: controls and stressed vehicle flat."""
    out: dict[str, dict] = {a: {"*": control} for a in _RODENT_ARMS if a.startswith("control")}
    out["stress_vehicle"] = {"*": stress_vehicle}
    out["stress_single"] = {"baseline": stress_vehicle, **single}
    out["stress_repeated"] = {"baseline": stress_vehicle, **repeated}
    return out


DESIGNS: dict[str, dict] = {
    "ketamine-human": {
        "description": "Adults with depression, [11C]UCB-J PET and MADRS at baseline and 24 h "
                       "or 7 d after one IV ketamine dose (two independent arms); no SV2A "
                       "change",
        "species": "human", "tracer": "ucbj", "n_subjects": 12,
        "arms": {"ketamine_24h": {"sessions": ["baseline", "24h"]},
                 "ketamine_7d": {"sessions": ["baseline", "7d"]}},
        "effects": {}, "flow_effects": {},
        "time_since_dose_h": {"baseline": None, "24h": 24, "7d": 168},
        "variability": _HUMAN_VAR,
        "demographics": {"sex": "M", "age": [25, 60], "age_units": "years",
                         "body_weight_kg": [78.0, 10.0], "injected_mbq": [600.0, 40.0]},
        "scores": {"madrs": {
            "description": "Montgomery-Asberg Depression Rating Scale total score (10 items "
                           "rated 0-6)",
            "units": "points", "column": "madrs",
            "mean": {"*": {"baseline": 32.0, "24h": 16.0, "7d": 21.0}},
            "sd": 5.0, "change_sd": {"*": {"*": 9.0}},
            "regions": ["posterior_cingulate"], "r": -0.4,
            "bounds": [0, 60], "decimals": 0,
            "response": {"column": "madrs_response", "reduction": 0.5},
        }},
    },
    "ketamine-rodent": {
        "description": "Rat chronic stress model, context (control, stress) x treatment "
                       "(vehicle, single or repeated ketamine); [18F]SynVesT-1 PET, sucrose "
                       "preference and social interaction at baseline, 24 h, 1 w and 3 w",
        "species": "rat", "tracer": "synvest1", "n_subjects": 24,
        "sessions": ["baseline", "24h", "1w", "3w"],
        "factors": _RODENT_FACTORS,
        "arms": {f"{c}_{t}": {"context": c, "treatment": t}
                 for c in _RODENT_FACTORS["context"] for t in _RODENT_FACTORS["treatment"]},
        "effects": {
            "stress_vehicle": {"*": _brain(-0.10)},
            "stress_single": {"*": _brain(-0.10)},
            "stress_repeated": {"*": _brain(-0.10), "1w": _brain(0.04), "3w": _brain(0.11)},
        },
        "flow_effects": {},
        "scores": {
            "sucrose_preference": {
                "description": "sucrose preference: 1 % sucrose intake / total fluid intake "
                               "in a 24 h two-bottle test",
                "units": "%", "column": "sucrose_preference",
                "mean": _rodent_means(80.0, 62.0, {"24h": 72.0, "1w": 66.0, "3w": 63.0},
                                      {"24h": 72.0, "1w": 74.0, "3w": 76.0}),
                "sd": 6.0, "change_sd": {"*": {"*": 6.0}},
                "regions": ["hippocampus"], "r": 0.5, "bounds": [0, 100], "decimals": 1,
            },
            "social_interaction": {
                "description": "time in active social interaction with an unfamiliar "
                               "conspecific in a 10 min test",
                "units": "s", "column": "social_interaction",
                "mean": _rodent_means(120.0, 80.0, {"24h": 95.0, "1w": 85.0, "3w": 80.0},
                                      {"24h": 95.0, "1w": 100.0, "3w": 105.0}),
                "sd": 25.0, "change_sd": {"*": {"*": 20.0}},
                "regions": ["cortex"], "r": 0.3, "bounds": [0, 600], "decimals": 1,
            },
        },
        "time_since_dose_h": {"baseline": None, "24h": 24, "1w": 168, "3w": 504},
        "variability": _RODENT_VAR,
        "demographics": {"sex": "M", "age": [9, 11], "age_units": "weeks",
                         "body_weight_kg": [0.30, 0.03], "injected_mbq": [20.0, 2.0]},
    },
}
DESIGNS["ketamine-human-pcc"] = {
    **copy.deepcopy(DESIGNS["ketamine-human"]),
    "description": "ketamine-human with posterior cingulate VS +5 % at 24 h and +3 % at 7 d",
    "effects": {"ketamine_24h": {"24h": {"posterior_cingulate": 0.05}},
                "ketamine_7d": {"7d": {"posterior_cingulate": 0.03}}},
}
DESIGNS["ketamine-human-flow"] = {
    **copy.deepcopy(DESIGNS["ketamine-human"]),
    "description": "ketamine-human with a flow confound: K1 +10 % after dosing, VT unchanged",
    "flow_effects": {"ketamine_24h": {"24h": {"*": 0.10}}, "ketamine_7d": {"7d": {"*": 0.10}}},
}
DESIGNS["ketamine-rodent-flow"] = {
    **copy.deepcopy(DESIGNS["ketamine-rodent"]),
    "description": "ketamine-rodent with K1 +10 % at 24 h in the ketamine arms",
    "flow_effects": {a: {"24h": {"*": 0.10}} for a in _RODENT_ARMS
                     if not a.endswith("_vehicle")},
}

_DEMO_DEFAULT = {
    "human": {"sex": "M", "age": [25, 60], "age_units": "years", "body_weight_kg": [78.0, 10.0]},
    "rat": {"sex": "M", "age": [9, 11], "age_units": "weeks", "body_weight_kg": [0.30, 0.03]},
    "mouse": {"sex": "M", "age": [9, 11], "age_units": "weeks", "body_weight_kg": [0.025, 0.002]},
}


# ------------------------------------------------------------------ design handling
def normalise_design(design: str | os.PathLike | Mapping, *, species: str | None = None,
                     tracer: str | None = None) -> dict:
    """A complete, validated design dict from a preset name, a JSON file or a dict.

    A user design is a dict like::

        {"name": "my-study", "species": "human", "tracer": "ucbj", "n_subjects": 10,
         "sessions": ["baseline", "post"],            # default sessions of every arm
         "arms": {"placebo": {}, "drug": {"sessions": ["baseline", "post"], "n": 6}},
         "effects": {"drug": {"post": {"posterior_cingulate": 0.05, "*": 0.0}}},
         "flow_effects": {"drug": {"post": {"*": 0.10}}},
         "variability": {"between_subject_cv": 0.12, "within_subject_sd": 0.075},
         "time_since_dose_h": {"post": 24}}

    A factorial design names its factors and gives every arm one level of each (the first
    level listed is the reference; the levels become ``participants.tsv`` columns)::

        "factors": {"context": {"control": "description", "stress": "..."},
                    "treatment": ["vehicle", "drug"]},
        "arms": {"control_vehicle": {"context": "control", "treatment": "vehicle"}, ...}

    ``scores`` adds behavioural or clinical measures correlated with the true regional change
    (:func:`sv2a.phantom.scores.normalise_scores`; ``"scores": {}`` drops a base design's).

    ``effects[arm][session][region]`` is the fractional change of the specific binding VS
    (``"*"`` = every session / every region; a session-specific entry multiplies the ``"*"``
    entry; a named region overrides ``"*"``). ``demographics`` may set ``sex``, ``age``
    ([min, max]), ``age_units``, ``body_weight_kg`` ([mean, SD], kg) and ``injected_mbq``
    ([mean, SD], MBq). Unknown arms, sessions, regions or keys raise :class:`DesignError`.

    Parameters
    ----------
    design : str, path or mapping
        A :data:`DESIGNS` name, a JSON file or a dict (``"base"`` names a design to start from).
    species : {"human", "rat", "mouse"}, optional
        Override the design's species (the tracer then defaults to the species' own unless
        ``tracer`` is given).
    tracer : str, optional
        Override the design's tracer.

    Returns
    -------
    dict
        The complete design: ``name description species tracer n_subjects sessions arms
        factors effects flow_effects variability demographics time_since_dose_h scores``
        (times in h; ``factors`` maps factor -> {level: description}, ``{}`` if none).

    Raises
    ------
    DesignError
        Unknown design, invalid JSON, unknown arm / session / region / key, an effect
        <= -1, an arm without a level of a factor, two arms with the same levels, an invalid
        ``scores`` section, or a key of older versions (``groups``: make each group x
        treatment cell an arm and name the factors).

    Examples
    --------
    >>> d = normalise_design("ketamine-human-pcc")
    >>> d["species"], d["tracer"], d["sessions"]
    ('human', 'ucbj', ['baseline', '24h', '7d'])
    >>> d["demographics"]["injected_mbq"], d["demographics"]["body_weight_kg"]
    ([600.0, 40.0], [78.0, 10.0])
    >>> r = normalise_design("ketamine-rodent")
    >>> list(r["factors"]), r["arms"]["stress_repeated"]["treatment"], list(r["scores"])
    (['context', 'treatment'], 'repeated', ['sucrose_preference', 'social_interaction'])
    """
    if isinstance(design, Mapping):
        d = copy.deepcopy(dict(design))
        d.setdefault("name", "custom")
        if "base" in d:
            base = normalise_design(d.pop("base"))
            base.update({k: v for k, v in d.items()})
            d = base
    else:
        s = str(design)
        if s in DESIGNS:
            d = copy.deepcopy(DESIGNS[s])
            d["name"] = s
        elif s.endswith(".json") or Path(s).is_file():
            p = Path(s)
            if not p.is_file():
                raise DesignError(f"design file not found: {p}")
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DesignError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
            if not isinstance(d, dict):
                raise DesignError(f"{p}: a design must be a JSON object")
            d.setdefault("name", p.stem)
            return normalise_design(d, species=species, tracer=tracer)
        else:
            raise DesignError(
                f"unknown design {s!r}; use one of {', '.join(sorted(DESIGNS))}, a JSON file or "
                "a dict"
            )
    for old in ("groups", "group"):
        if old in d:
            raise DesignError(
                f"design key {old!r} is no longer used: make every group x treatment cell an "
                "arm and name the factors, e.g. 'factors': {'context': ['control', 'stress'], "
                "'treatment': ['vehicle', 'repeated']} with 'arms': {'stress_repeated': "
                "{'context': 'stress', 'treatment': 'repeated'}, ...} (see the "
                "'ketamine-rodent' design)")
    if species is not None:
        if tracer is None and str(species).lower() != str(d.get("species", "human")).lower():
            d["tracer"] = None  # the new species' default tracer
        d["species"] = species
    if tracer is not None:
        d["tracer"] = tracer
    d.setdefault("species", "human")
    preset = get_preset(d["species"], d.get("tracer"))
    d["species"], d["tracer"] = preset.species, preset.tracer
    arms = d.get("arms")
    if not arms:
        arms = {"all": {}}
    if isinstance(arms, list | tuple):
        arms = {str(a): {} for a in arms}
    if not isinstance(arms, Mapping):
        raise DesignError("design 'arms' must be a dict arm -> {sessions, n} or a list of names")
    default_sessions = list(d.get("sessions") or ["baseline"])
    norm_arms = {}
    for a, spec in arms.items():
        spec = dict(spec or {})
        ses = [str(x) for x in spec.get("sessions", default_sessions)]
        for x in ses:
            if not x.isalnum():
                raise DesignError(f"arm {a!r}: session label {x!r} must be alphanumeric (BIDS)")
        norm_arms[str(a)] = {"sessions": ses, **{k: v for k, v in spec.items()
                                                 if k != "sessions"}}
    d["arms"] = norm_arms
    all_ses = []
    for spec in norm_arms.values():
        all_ses += [x for x in spec["sessions"] if x not in all_ses]
    d["sessions"] = all_ses
    d["factors"] = _check_factors(d.get("factors") or {}, norm_arms)
    regions = set(preset.regions)
    for key in ("effects", "flow_effects"):
        eff = d.get(key) or {}
        if not isinstance(eff, Mapping):
            raise DesignError(f"design '{key}' must be a dict arm -> session -> region -> value")
        for a, by_ses in eff.items():
            if a not in norm_arms:
                raise DesignError(f"{key}: unknown arm {a!r}; arms are {list(norm_arms)}"
                                  + _level_hint(a, d["factors"], norm_arms))
            for ses, by_reg in (by_ses or {}).items():
                if ses != "*" and ses not in norm_arms[a]["sessions"]:
                    raise DesignError(f"{key}[{a!r}]: arm has no session {ses!r} "
                                      f"(sessions {norm_arms[a]['sessions']})")
                if not isinstance(by_reg, Mapping):
                    by_reg = {"*": by_reg}
                    eff[a][ses] = by_reg
                for r, v in by_reg.items():
                    if r != "*" and r not in regions:
                        raise DesignError(f"{key}[{a!r}][{ses!r}]: unknown region {r!r} for "
                                          f"{preset.key}; regions: {sorted(regions)}")
                    if not np.isfinite(float(v)) or float(v) <= -1:
                        raise DesignError(f"{key}[{a!r}][{ses!r}][{r!r}] = {v!r}: a fractional "
                                          "change must be a number > -1")
        d[key] = {a: dict(v) for a, v in eff.items()}
    base_var = _HUMAN_VAR if preset.species == "human" else _RODENT_VAR
    _check_keys("variability", d.get("variability") or {}, base_var)
    d["variability"] = {**base_var, **dict(d.get("variability") or {})}
    _check_keys("demographics", d.get("demographics") or {}, _DEMO_KEYS)
    demo = {**_DEMO_DEFAULT[preset.species], **dict(d.get("demographics") or {})}
    demo.setdefault("injected_mbq", [preset.injected_mbq, 0.07 * preset.injected_mbq])
    d["demographics"] = demo
    d.setdefault("time_since_dose_h", {})
    d.setdefault("description", "")
    try:
        d["scores"] = normalise_scores(d.get("scores"), {a: s["sessions"]
                                                         for a, s in norm_arms.items()},
                                       sorted(regions))
    except DesignError as exc:
        raise DesignError(f"{exc}{_level_hint(str(exc), d['factors'], norm_arms)} (a design "
                          "built on a base design keeps its scores: give 'scores' for the "
                          "new arms, or 'scores': {} for none)") from None
    return d


_RESERVED_COLUMNS = ("participant_id", "arm", "age", "sex", "weight", "sessions", "n")


def _check_factors(factors: Mapping | Any, arms: Mapping[str, dict]) -> dict:
    """Validate the factors of a factorial design; return factor -> {level: description}."""
    if not isinstance(factors, Mapping):
        raise DesignError("design 'factors' must be a dict factor -> levels (a list, or a "
                          "dict level -> description)")
    out: dict[str, dict[str, str]] = {}
    for f, levels in factors.items():
        f = str(f)
        if not f.isidentifier() or f in _RESERVED_COLUMNS:
            raise DesignError(f"factor name {f!r} must be an identifier other than "
                              f"{list(_RESERVED_COLUMNS)} (it becomes a participants.tsv column)")
        if isinstance(levels, Mapping):
            lv = {str(k): str(v) for k, v in levels.items()}
        elif isinstance(levels, list | tuple) and levels:
            lv = {str(k): str(k) for k in levels}
        else:
            raise DesignError(f"factor {f!r}: give its levels as a list or a dict level -> "
                              "description")
        if len(lv) < 2:
            raise DesignError(f"factor {f!r} needs at least two levels, got {list(lv)}")
        out[f] = lv
    cells: dict[tuple, str] = {}
    for a, spec in arms.items():
        for f, lv in out.items():
            if f not in spec:
                raise DesignError(f"arm {a!r} has no level of factor {f!r}; add "
                                  f"'{f}': one of {list(lv)} to the arm")
            if str(spec[f]) not in lv:
                raise DesignError(f"arm {a!r}: {f} = {spec[f]!r} is not a level of {f!r} "
                                  f"({list(lv)})")
            spec[f] = str(spec[f])
        if out:
            key = tuple(spec[f] for f in out)
            if key in cells:
                raise DesignError(f"arms {cells[key]!r} and {a!r} have the same factor levels "
                                  f"{dict(zip(out, key, strict=True))}; each arm is one cell")
            cells[key] = a
    return out


def _level_hint(name: str, factors: Mapping[str, Mapping], arms: Mapping) -> str:
    """A hint when a name used as an arm is a factor level (the arms are the cells)."""
    for f, lv in factors.items():
        for level in lv:
            if f"'{level}'" in name or name == level:
                cells = [a for a, s in arms.items() if s.get(f) == level]
                return (f"; {level!r} is a level of factor {f!r}, not an arm: the arms are the "
                        f"factor cells, here {cells}")
    return ""


_DEMO_KEYS = ("sex", "age", "age_units", "body_weight_kg", "injected_mbq")
_RENAMED = {"weight_kg": "body_weight_kg", "weight": "body_weight_kg",
            "dose_mbq": "injected_mbq", "injected_dose": "injected_mbq", "dose": "injected_mbq"}


def _check_keys(section: str, given: Mapping, allowed: Iterable[str]) -> None:
    """Refuse keys of a design section that the simulation would not use."""
    allowed = list(allowed)
    unknown = [k for k in given if k not in allowed]
    if unknown:
        hints = [f"{k!r} -> {_RENAMED[k]!r}" for k in unknown if k in _RENAMED]
        raise DesignError(f"design {section!r}: unknown key(s) {unknown}; allowed: {allowed}"
                          + (f" (renamed: {', '.join(hints)})" if hints else ""))


_factor = effect_factor
_TIED = TIED  # CS is the eroded core of the WM: same tissue


def scan_parameters(preset: TracerPreset, design: Mapping, arm: str, session: str,
                    subject_rng: np.random.Generator, session_rng: np.random.Generator
                    ) -> pd.DataFrame:
    """True kinetic parameters of one scan of a design.

    Parameters
    ----------
    preset : TracerPreset
        Species x tracer preset (population parameters).
    design : mapping
        Normalised design (:func:`normalise_design`): variability, effects, flow effects.
    arm, session : str
        The scan's arm and session label.
    subject_rng : numpy.random.Generator
        Stream of the subject-level draws; create it afresh for each session from the
        subject's seed so these draws are identical across that subject's sessions.
    session_rng : numpy.random.Generator
        Stream of the session-level (test-retest) draws.

    Returns
    -------
    pandas.DataFrame
        Complete parameter table as :func:`~sv2a.phantom.simulate.region_table`: ``K1``
        (mL/cm3/min), ``k2 k3 k4`` (1/min), ``vB``, ``VT VND VS`` (mL/cm3).
    """
    var = design["variability"]
    base = region_table(preset)
    names = list(base.index)
    n = len(names)
    rf = float(var.get("regional_fraction", 0.3))
    bs, ws = float(var["between_subject_cv"]), float(var["within_subject_sd"])
    g_vs = np.exp(bs * subject_rng.standard_normal())
    r_vs = np.exp(bs * rf * subject_rng.standard_normal(n))
    g_vnd = np.exp(float(var.get("vnd_cv", 0.0)) * subject_rng.standard_normal())
    g_k1 = np.exp(float(var.get("k1_cv", 0.0)) * subject_rng.standard_normal())
    s_vs = np.exp(ws * session_rng.standard_normal())
    sr_vs = np.exp(ws * rf * session_rng.standard_normal(n))
    for a, b in _TIED.items():
        if a in names and b in names:
            r_vs[names.index(a)] = r_vs[names.index(b)]
            sr_vs[names.index(a)] = sr_vs[names.index(b)]
    rows = {}
    for i, name in enumerate(names):
        p = base.loc[name].to_dict()
        eff_name = name if name not in _TIED else _TIED[name]
        vs_f = g_vs * r_vs[i] * s_vs * sr_vs[i] * _factor(design["effects"], arm, session,
                                                           name if _has(design["effects"], name)
                                                           else eff_name)
        k1_f = g_k1 * _factor(design["flow_effects"], arm, session, name)
        brain = p["VS"] > 0
        if preset.model == "1tcm":
            if p["VT"] <= 0:
                rows[name] = p
                continue
            vnd = p["VND"] * (g_vnd if brain else 1.0)
            vs = p["VS"] * vs_f
            rows[name] = complete_params({"K1": p["K1"] * k1_f, "VT": vnd + vs, "VND": vnd,
                                          "vB": p["vB"]}, "1tcm")
        else:
            K1 = p["K1"] * k1_f * (g_vnd if brain else 1.0)
            k2 = p["k2"] * k1_f
            rows[name] = complete_params({"K1": K1, "k2": k2, "k3": p["k3"] * vs_f,
                                          "k4": p["k4"], "vB": p["vB"]}, "2tcm")
    return pd.DataFrame.from_dict(rows, orient="index")[list(base.columns)]


def _has(effects: Mapping, region: str) -> bool:
    return any(region in (by_reg or {}) for by_ses in effects.values()
               for by_reg in (by_ses or {}).values())


# ------------------------------------------------------------------ writing
@dataclass(frozen=True)
class Cohort:
    """What :func:`make_cohort` wrote.

    Attributes
    ----------
    path : Path
        Dataset root.
    design : dict
        The normalised design (as in ``design.json``).
    participants : DataFrame
        ``participants.tsv``.
    truth : DataFrame
        ``truth.tsv``.
    scans : DataFrame
        One row per scan: participant_id, session, arm, pet, blood (path or None), dseg,
        motion (true-motion table path or None).
    """

    path: Path
    design: dict
    participants: pd.DataFrame
    truth: pd.DataFrame
    scans: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class CohortEstimate:
    """Disk space and time :func:`make_cohort` will need, from one scan simulated in memory.

    Attributes
    ----------
    n_scans : int
        Number of scans (subjects x sessions).
    pet_bytes : int
        Compressed PET image of the first scan (bytes).
    scan_bytes : int
        All files of the first scan (PET, segmentation, sidecars, blood; bytes).
    total_bytes : int
        Whole dataset (bytes): ``n_scans x scan_bytes`` plus the top-level files.
    seconds_per_scan : float
        Simulating and encoding the first scan (s, one core; includes one-off caches).
    total_seconds : float
        ``n_scans x seconds_per_scan / min(nprocs, n_scans)`` (s).
    """

    n_scans: int
    pet_bytes: int
    scan_bytes: int
    total_bytes: int
    seconds_per_scan: float
    total_seconds: float

    def describe(self) -> str:
        """One line for users: disk space and time.

        Returns
        -------
        str
            e.g. ``"96 scans: about 1.1 GB on disk (11 MB per scan), about 55 s"``.
        """
        return (f"{self.n_scans} scans: about {_size(self.total_bytes)} on disk "
                f"({_size(self.scan_bytes)} per scan), about {self.total_seconds:.0f} s")


def _size(n: float) -> str:
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:.1f} {unit}"
    return f"{int(n)} B"


def raw_bytes(design: str | os.PathLike | Mapping = "ketamine-human", *,
              n_subjects: int | None = None, voxel_mm: float | None = None,
              species: str | None = None, tracer: str | None = None) -> int:
    """Uncompressed float32 size of all PET images of a cohort (an upper bound, bytes).

    Parameters
    ----------
    design : str, path or dict
        As :func:`make_cohort`.
    n_subjects : int, optional
        As :func:`make_cohort`.
    voxel_mm : float, optional
        Voxel size (mm).
    species, tracer : str, optional
        Override the design's species / tracer.

    Returns
    -------
    int
        ``voxels x frames x 4`` summed over scans (bytes).

    Examples
    --------
    >>> raw_bytes("ketamine-rodent", n_subjects=24) // 10**9
    20
    """
    d = normalise_design(design, species=species, tracer=tracer)
    preset = get_preset(d["species"], d["tracer"])
    arms = _assign_arms(d, n_subjects)
    n_scans = sum(len(d["arms"][a]["sessions"]) for a in arms)
    nvox = int(np.prod(make_anatomy(preset.species, voxel_mm).shape))
    return n_scans * nvox * preset.frames().n * 4


def estimate_cohort(
    design: str | os.PathLike | Mapping = "ketamine-human",
    seed: int = 0,
    *,
    n_subjects: int | None = None,
    noise: float = 1.0,
    fwhm: float | tuple | None = None,
    voxel_mm: float | None = None,
    blood: str | float | list | None = "all",
    species: str | None = None,
    tracer: str | None = None,
    noise_mode: str = "voxel",
    noise_fwhm: float = 0.0,
    frame_average: str = "uniform",
    nprocs: int = 1,
    compresslevel: int = 1,
    motion: float = 0.0,
    pet_storage: str = "auto",
) -> CohortEstimate:
    """Disk space and time of :func:`make_cohort` with the same arguments, before writing.

    The first scan is simulated and encoded in memory exactly as :func:`make_cohort` would
    write it; every scan of a cohort has the same grid and protocol, so its size times the
    number of scans predicts the dataset (within a few per cent: doses differ between scans).

    Parameters
    ----------
    design, seed, n_subjects, noise, fwhm, voxel_mm, blood, species, tracer, noise_mode
        As :func:`make_cohort`.
    noise_fwhm, frame_average, nprocs, compresslevel, motion, pet_storage
        As :func:`make_cohort`.

    Returns
    -------
    CohortEstimate
        Scans, bytes (PET, per scan, total) and seconds (per scan, total with ``nprocs``).

    Raises
    ------
    DesignError
        Invalid design or number of subjects.
    ConfigError
        Invalid ``nprocs`` or ``pet_storage``.

    Examples
    --------
    >>> e = estimate_cohort("ketamine-rodent", n_subjects=6, voxel_mm=1.2)
    >>> e.n_scans, e.total_bytes > 6 * 4 * e.pet_bytes
    (24, True)
    """
    import time

    from ..atomic import gzip_compressor
    from .storage import encode_pet, storage_step

    if isinstance(nprocs, bool) or not isinstance(nprocs, int | np.integer) or nprocs < 1:
        raise ConfigError(f"nprocs must be an integer >= 1, got {nprocs!r}")
    d = normalise_design(design, species=species, tracer=tracer)
    preset = get_preset(d["species"], d["tracer"])
    sim = {"noise": float(noise), "fwhm": preset.fwhm_mm if fwhm is None else fwhm,
           "voxel_mm": voxel_mm, "noise_mode": noise_mode, "noise_fwhm": float(noise_fwhm),
           "frame_average": frame_average, "motion": float(motion)}
    _, _, _, jobs, _ = _plan(d, preset, int(seed), n_subjects, blood, sim, Path("."),
                             int(compresslevel), pet_storage)
    t0 = time.perf_counter()
    subj = _simulate_job(jobs[0])
    assert subj.image is not None  # make_subject renders an image by default
    step = storage_step(subj) if pet_storage == "auto" else None
    pet = len(encode_pet(subj.image, subj.affine, step=step, compresslevel=int(compresslevel)))
    dt = time.perf_counter() - t0
    # the dseg as write_nifti stores it: uint8, the cohort's level, the same compressor
    dseg = len(gzip_compressor(int(compresslevel))(
        subj.labels.astype(np.uint8).tobytes(order="F"))) + 400
    small = 12_000 + (8_000 if jobs[0]["blood"] else 0)  # sidecars, blood, dseg.tsv
    n = len(jobs)
    per_scan = pet + dseg + small
    return CohortEstimate(n, pet, per_scan, n * per_scan + 50_000, dt,
                          n * dt / min(int(nprocs), n))


def _blood_subjects(blood, ids: list[str], seed: int) -> set[str]:
    if blood is None or blood is False or blood == "none":
        return set()
    if blood is True or blood == "all":
        return set(ids)
    if isinstance(blood, str):
        try:
            blood = float(blood)
        except ValueError:
            raise DesignError(f"blood={blood!r}: use 'all', 'none', a fraction 0-1 or a list "
                              "of participant ids") from None
    if isinstance(blood, int | float):
        if not 0 <= blood <= 1:
            raise DesignError(f"blood fraction must lie in [0, 1], got {blood}")
        k = int(round(blood * len(ids)))
        rng = np.random.default_rng([seed, 4])
        return {ids[i] for i in sorted(rng.permutation(len(ids))[:k])}
    want = {s if str(s).startswith("sub-") else f"sub-{s}" for s in blood}
    unknown = want - set(ids)
    if unknown:
        raise DesignError(f"blood: unknown participants {sorted(unknown)}")
    return want


def _assign_arms(design: dict, n_subjects: int | None) -> list[str]:
    arms = list(design["arms"])
    fixed = [design["arms"][a].get("n") for a in arms]
    if n_subjects is None and all(n is not None for n in fixed):
        counts = [int(n) for n in fixed]
    else:
        total = int(n_subjects if n_subjects is not None else design.get("n_subjects", 12))
        if total < 1:
            raise DesignError(f"n_subjects must be >= 1, got {total}")
        counts = [total // len(arms) + (1 if i < total % len(arms) else 0)
                  for i in range(len(arms))]
    out = []
    for a, c in zip(arms, counts, strict=True):
        out += [a] * c
    return out


def _simulate_job(job: dict):
    """The simulated scan of one job (same random streams as :func:`make_cohort`)."""
    preset = get_preset(job["species"], job["tracer"])
    design = job["design"]
    seed, i, j = job["seed"], job["index"], job["session_index"]
    table = scan_parameters(preset, design, job["arm"], job["session"],
                            np.random.default_rng([seed, 1, i]),
                            np.random.default_rng([seed, 2, i, j]))
    return make_subject(preset.species, preset.tracer, np.random.default_rng([seed, 3, i, j]),
                        params=table, injected_mbq=job["injected_mbq"],
                        body_weight_kg=job["body_weight_kg"], **job["sim"])


def _scan_job(job: dict) -> dict:
    """Simulate and write one scan (runs in a worker process when nprocs > 1)."""
    from ..io import write_json, write_nifti, write_tsv
    from .storage import storage_step, write_pet

    subj = _simulate_job(job)
    seed = job["seed"]
    root = Path(job["root"])
    pid, ses = job["participant_id"], job["session"]
    prefix = f"{pid}_ses-{ses}"
    pet_dir = root / pid / f"ses-{ses}" / "pet"
    anat_dir = root / pid / f"ses-{ses}" / "anat"
    sidecar = subj.pet_sidecar()
    sidecar["sv2aPhantom"].update(seed=seed, arm=job["arm"], session=ses)
    pet_path = pet_dir / f"{prefix}_pet.nii.gz"
    if subj.image is None:  # make_subject renders an image unless image=False
        raise ModelError(f"{prefix}: the phantom has no image")
    step = storage_step(subj) if job.get("pet_storage", "auto") == "auto" else None
    if step is not None:
        sidecar["sv2aPhantom"]["storage_step"] = step
    write_pet(pet_path, subj.image, subj.affine, step=step, compresslevel=job["compresslevel"])
    write_json(pet_dir / f"{prefix}_pet.json", sidecar)
    blood_path = None
    if job["blood"]:
        blood_path = pet_dir / f"{prefix}_recording-manual_blood.tsv"
        write_tsv(blood_path, subj.blood)
        write_json(pet_dir / f"{prefix}_recording-manual_blood.json", subj.blood_sidecar())
    dseg = anat_dir / f"{prefix}_dseg.nii.gz"
    write_nifti(dseg, subj.labels, subj.affine, dtype=np.uint8,
                compresslevel=job["compresslevel"])
    write_tsv(anat_dir / f"{prefix}_dseg.tsv",
              pd.DataFrame({"index": list(subj.label_names),
                            "name": list(subj.label_names.values())}))
    truth = subj.truth.reset_index()
    truth.insert(0, "session", ses)
    truth.insert(0, "participant_id", pid)
    motion_path = None
    if subj.motion is not None:  # true head motion, beside the PET it was applied to
        from ..motion import write_motion_table

        motion_path = write_motion_table(
            subj.motion, pet_dir / f"{prefix}_desc-motiontruth_timeseries.tsv",
            description="true head motion applied by the phantom (sv2a.phantom.motion)")
    return {"truth": truth, "pet": str(pet_path), "blood": None if blood_path is None
            else str(blood_path), "dseg": str(dseg),
            "motion": None if motion_path is None else str(motion_path)}


def _plan(d: dict, preset: TracerPreset, seed: int, n_subjects: int | None, blood, sim: dict,
          root: Path, compresslevel: int, pet_storage: str
          ) -> tuple[list[str], list[str], list[dict], list[dict], set[str]]:
    """Participants (ids, arms, participants.tsv rows) and one job per scan."""
    if pet_storage not in ("auto", "float32"):
        raise ConfigError(f"pet_storage must be 'auto' or 'float32', got {pet_storage!r}")
    arms = _assign_arms(d, n_subjects)
    width = max(2, len(str(len(arms))))
    ids = [f"sub-{i + 1:0{width}d}" for i in range(len(arms))]
    with_blood = _blood_subjects(blood, ids, seed)
    demo = d["demographics"]
    rows, jobs = [], []
    make_anatomy(preset.species, sim["voxel_mm"])  # fail early on a bad voxel size
    for i, (pid, arm) in enumerate(zip(ids, arms, strict=True)):
        r = np.random.default_rng([seed, 0, i])
        lo, hi = demo["age"]
        age = int(r.integers(int(lo), int(hi) + 1))
        wm, wsd = demo["body_weight_kg"]
        weight = float(np.round(np.clip(r.normal(wm, wsd), 0.6 * wm, 1.5 * wm),
                                1 if preset.species == "human" else 4))
        rows.append({"participant_id": pid, "arm": arm,
                     **{f: d["arms"][arm][f] for f in d["factors"]},
                     "age": age, "sex": demo["sex"], "weight": weight})
        dm, dsd = demo["injected_mbq"]
        for j, ses in enumerate(d["arms"][arm]["sessions"]):
            rj = np.random.default_rng([seed, 5, i, j])
            dose = float(np.round(np.clip(rj.normal(dm, dsd), 0.6 * dm, 1.25 * dm), 2))
            if preset.species == "human":
                dose = min(dose, 740.0)
            jobs.append({"species": preset.species, "tracer": preset.tracer, "design": d,
                         "seed": seed, "index": i, "session_index": j, "arm": arm,
                         "session": ses, "participant_id": pid, "body_weight_kg": weight,
                         "injected_mbq": dose, "blood": pid in with_blood, "sim": sim,
                         "root": str(root), "compresslevel": compresslevel,
                         "pet_storage": pet_storage})
    return ids, arms, rows, jobs, with_blood


def make_cohort(
    out_dir: str | os.PathLike,
    design: str | os.PathLike | Mapping = "ketamine-human",
    seed: int = 0,
    *,
    n_subjects: int | None = None,
    noise: float = 1.0,
    fwhm: float | tuple | None = None,
    voxel_mm: float | None = None,
    blood: str | float | list | None = "all",
    species: str | None = None,
    tracer: str | None = None,
    noise_mode: str = "voxel",
    noise_fwhm: float = 0.0,
    frame_average: str = "uniform",
    force: bool = False,
    nprocs: int = 1,
    progress: bool = False,
    scores: bool = True,
    compresslevel: int = 1,
    motion: float = 0.0,
    pet_storage: str = "auto",
) -> Cohort:
    """Simulate a study and write it as a BIDS dataset with ``truth.tsv`` and ``design.json``.

    Parameters
    ----------
    out_dir : path
        Dataset root; must be empty or absent unless ``force`` (which first removes the
        ``sub-*`` folders of a previous phantom written there).
    design : str, path or dict
        ``ketamine-human`` (default), ``ketamine-human-pcc``, ``ketamine-human-flow``,
        ``ketamine-rodent``, ``ketamine-rodent-flow``, a JSON file or a dict
        (:func:`normalise_design`).
    seed : int
        Master seed: the same seed and arguments give byte-identical files.
    n_subjects : int, optional
        Total number of subjects, split evenly over the arms in order (sub-01.. arm 1, ...);
        default the design's (12 human, 16 rodent) or the arms' ``n``.
    noise, fwhm, voxel_mm, noise_mode, noise_fwhm, frame_average
        As :func:`~sv2a.phantom.subject.make_subject` (``noise=0, fwhm=0``: exact data).
    motion : float
        Head-motion level of every scan (0 = still; 1 = up to 4 mm / 2 deg; see
        :mod:`sv2a.phantom.motion`). The true motion of each scan is written beside its PET
        as ``<scan>_desc-motiontruth_timeseries.tsv`` (+ ``.json``; mm, degrees, min) and
        listed in ``scans["motion"]``.
    blood : "all", "none", float or list
        Which participants get a ``_recording-manual_blood`` file: all, none, a random fraction
        (drawn from ``seed``) or a list of ids.
    species, tracer : str, optional
        Override the design's species / tracer.
    nprocs : int
        Parallel worker processes (scans are independent; the files do not depend on
        ``nprocs``).
    progress : bool
        Show a progress bar.
    scores : bool
        Write the design's behavioural / clinical scores (``phenotype/<measure>.tsv`` +
        ``.json``; :mod:`sv2a.phantom.scores`). They use their own random stream, so the
        images do not depend on this option.
    compresslevel : int
        gzip level of the PET images and segmentations (1 = fast; the data are noisy).
    pet_storage : {"auto", "float32"}
        ``auto``: noisy images (voxel noise) are stored as int16 with a scale factor
        (``scl_slope``), rounded to a power-of-two step of at most 1/10 of the voxel noise SD
        (:mod:`sv2a.phantom.storage`: about 4x smaller files, rounding error SD <= 2.9 % of
        the noise SD; the step is in the sidecar as ``sv2aPhantom.storage_step``, kBq/mL);
        noise-free images stay float32. ``float32``: always float32.

    Returns
    -------
    Cohort
        Dataset root, normalised design, participants, truth and one row per scan with the
        written paths. Per scan, the injected activity (MBq) is drawn from the design's
        ``demographics.injected_mbq`` and the body weight (kg) per subject from
        ``demographics.body_weight_kg``; both are in the PET sidecars
        (``InjectedRadioactivity``, ``BodyWeight``) and the weight in ``participants.tsv``
        (``weight``, kg).

    Raises
    ------
    BIDSError
        ``out_dir`` is not empty (without ``force``) or not a directory.
    ConfigError
        ``nprocs`` is not an integer >= 1.
    DesignError
        Invalid design, ``blood`` selection or number of subjects.

    Examples
    --------
    Slow-ish (one exact scan per subject and session on an 8 mm grid):

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +SKIP
    ...     c = make_cohort(tmp + "/bids", "ketamine-human", seed=0, n_subjects=2, noise=0,
    ...                     fwhm=0, voxel_mm=8.0)
    ...     print(len(c.scans), sorted(c.design["subjects"]))
    4 ['ketamine_24h', 'ketamine_7d']
    """
    from ..io import write_json, write_tsv

    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**32))
    seed = int(seed)
    if isinstance(nprocs, bool) or not isinstance(nprocs, int | np.integer) or nprocs < 1:
        raise ConfigError(f"nprocs must be an integer >= 1, got {nprocs!r}")
    d = normalise_design(design, species=species, tracer=tracer)
    preset = get_preset(d["species"], d["tracer"])
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise BIDSError(f"{root} exists and is not a directory")
    if root.exists() and any(root.iterdir()):
        if not force:
            raise BIDSError(f"{root} is not empty; choose a new directory or pass force=True "
                            "(--force) to overwrite")
        if (root / "design.json").exists():
            for p in root.glob("sub-*"):
                if p.is_dir():
                    shutil.rmtree(p)
    root.mkdir(parents=True, exist_ok=True)
    fwhm_val = preset.fwhm_mm if fwhm is None else fwhm
    sim = {"noise": float(noise), "fwhm": fwhm_val, "voxel_mm": voxel_mm,
           "noise_mode": noise_mode, "noise_fwhm": float(noise_fwhm),
           "frame_average": frame_average, "motion": float(motion)}
    ids, arms, rows, jobs, with_blood = _plan(d, preset, seed, n_subjects, blood, sim, root,
                                              int(compresslevel), pet_storage)
    demo = d["demographics"]
    participants = pd.DataFrame(rows)

    results = _run_jobs(jobs, nprocs, progress)

    truth = pd.concat([res["truth"] for res in results], ignore_index=True)
    truth = with_effects(truth[["participant_id", "session", "region", *TRUTH_COLUMNS]], d,
                         dict(zip(ids, arms, strict=True)))
    scans = pd.DataFrame([{"participant_id": jb["participant_id"], "session": jb["session"],
                           "arm": jb["arm"], "pet": res["pet"], "blood": res["blood"],
                           "dseg": res["dseg"], "motion": res.get("motion")}
                          for jb, res in zip(jobs, results, strict=True)])

    from .. import __version__

    write_json(root / "dataset_description.json", {
        "Name": f"sv2a phantom: {d['name']}",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["sv2a phantom generator"],
        "GeneratedBy": [{"Name": "sv2a", "Version": __version__,
                         "Description": "sv2a.phantom.make_cohort (synthetic data)"}],
    })
    (root / "README").write_text(
        f"Synthetic SV2A PET dataset made by sv2a {__version__} (sv2a.phantom.make_cohort).\n"
        f"Design: {d['name']} - {d['description']}\nSpecies {preset.species}, tracer "
        f"{preset.tracer_name}, seed {seed}, noise {noise}, FWHM {fwhm_val} mm.\n"
        "Ground truth per scan and region: truth.tsv; design and settings: design.json.\n",
        encoding="utf-8")
    write_tsv(root / "participants.tsv", participants)
    write_json(root / "participants.json", {
        "participant_id": {"Description": "participant label"},
        "arm": {"Description": "study arm (group)",
                "Levels": {a: str(d["arms"][a].get("description", a)) for a in d["arms"]}},
        "age": {"Description": "age at baseline", "Units": demo.get("age_units", "years")},
        "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
        "weight": {"Description": "body weight", "Units": "kg"},
        **{f: {"Description": f"level of the design factor {f!r} (the first is the "
                              "reference)", "Levels": dict(lv)}
           for f, lv in d["factors"].items()},
    })
    tsd = d.get("time_since_dose_h") or {}
    for pid, arm in zip(ids, arms, strict=True):
        ses = d["arms"][arm]["sessions"]
        write_tsv(root / pid / f"{pid}_sessions.tsv", pd.DataFrame({
            "session_id": [f"ses-{s}" for s in ses],
            "time_since_dose": [tsd.get(s) if tsd.get(s) is not None else np.nan for s in ses],
        }))
    write_json(root / "sessions.json", SESSIONS_SIDECAR)  # applies to every sessions.tsv
    write_tsv(root / "truth.tsv", truth)
    phenotype = []
    if scores and d["scores"]:
        tables = draw_scores(d["scores"], ids, arms, [d["arms"][a]["sessions"] for a in arms],
                             score_z(d, preset.model, region_table(preset)["VS"].to_dict(),
                                     truth, ids), seed=[seed, 6])
        phenotype = [str(p.relative_to(root)) for p in write_phenotype(root, tables,
                                                                       d["scores"])]
    design_out = {
        **d, "seed": seed, "noise": float(noise), "fwhm_mm": fwhm_val,
        "voxel_mm": make_anatomy(preset.species, voxel_mm).voxel_mm, "noise_mode": noise_mode,
        "noise_fwhm_mm": float(noise_fwhm), "frame_average": frame_average,
        "motion": float(motion), "blood": sorted(with_blood), "n_subjects": len(ids),
        "subjects": {a: [p for p, x in zip(ids, arms, strict=True) if x == a] for a in d["arms"]},
        "preset": preset.key, "model": preset.model, "tracer_name": preset.tracer_name,
        "reference_region": preset.reference, "suvr_window_min": list(preset.suvr_window),
        "truth_columns": " ".join(truth.columns),
        "true_effects": true_effects(d).to_dict(orient="records"),
        "true_contrasts": true_contrasts(d).to_dict(orient="records"),
        "scores": {m: {**sp, "formula": SCORE_FORMULA} for m, sp in d["scores"].items()}
        if scores else {},
        "phenotype": phenotype,
        "notes": "session = BIDS session label without 'ses-'; effects are fractional changes "
                 "of VS (flow_effects: of K1) relative to the untreated population; truth.tsv "
                 "effect_*_pct: the design's effect on the scan (%), change_VS_pct: true VS "
                 "change from the participant's first session (%, with session-to-session "
                 "variability); true_effects / true_contrasts in %; scores: the true "
                 "within-arm correlation r of each score's change with the mean over its "
                 "regions of log(VS / VS at baseline); time_since_dose in hours",
        "sv2a_version": __version__,
    }
    write_json(root / "design.json", design_out)
    write_bidsignore(root)
    return Cohort(root, design_out, participants, truth, scans)


def _run_jobs(jobs: list[dict], nprocs: int, progress: bool) -> list[dict]:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="phantom scans", unit="scan")
    out: list[Any] = []
    try:
        if nprocs <= 1 or len(jobs) <= 1:
            for jb in jobs:
                out.append(_scan_job(jb))
                if bar is not None:
                    bar.update()
        else:
            with ProcessPoolExecutor(max_workers=int(nprocs)) as ex:
                for res in ex.map(_scan_job, jobs):
                    out.append(res)
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()
    return out
