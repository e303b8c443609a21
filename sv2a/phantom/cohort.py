"""Simulated longitudinal SV2A PET studies written as BIDS datasets with ground truth.

:func:`make_cohort` draws subjects for a study design (arms x sessions, effects on specific
binding, between-subject variability, test-retest variability, an optional flow confound),
simulates every scan with :func:`~sv2a.phantom.subject.make_subject` and writes::

    OUT/dataset_description.json, README, participants.tsv/.json (participant_id arm age sex
        weight), truth.tsv, design.json
    OUT/sub-01/sub-01_sessions.tsv                        (session_id, time_since_dose in h)
    OUT/sub-01/ses-baseline/pet/sub-01_ses-baseline_pet.nii.gz + .json
    OUT/sub-01/ses-baseline/pet/sub-01_ses-baseline_recording-manual_blood.tsv + .json
    OUT/sub-01/ses-baseline/anat/sub-01_ses-baseline_dseg.nii.gz + _dseg.tsv

Designs (*design* values of this package, not measurements): ``ketamine-human`` (baseline +
24 h or 7 d after one dose, independent arms, no change; ``ketamine-human-pcc``: PCC +5 % at
24 h, +3 % at 7 d; ``ketamine-human-flow``: K1 +10 % after dosing), ``ketamine-rodent``
(rat [18F]SynVesT-1; control/stress x vehicle/single/repeated ketamine at baseline, 24 h, 1 w,
3 w; stress -10 % globally, repeated dosing +4 % at 1 w and +11 % at 3 w;
``ketamine-rodent-flow`` adds K1 +10 % after dosing), or a user design (dict or JSON file, see
:func:`normalise_design`).

Variability (log-normal): subject level ``VS x exp(N(0, between_subject_cv))`` globally and
``exp(N(0, regional_fraction x cv))`` per region, ``VND x exp(N(0, vnd_cv))``,
``K1 x exp(N(0, k1_cv))``; session level ``VS x exp(N(0, within_subject_sd))`` globally and per
region (regional fraction). Effects multiply VS (1TCM: ``VT = VND + VS``, ``k2 = K1/VT``;
2TCM: ``k3``); flow effects multiply K1 (and k2 for the 2TCM, keeping VND). Every scan's true
parameters after all of this are in ``truth.tsv``.

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
from .geometry import make_anatomy
from .simulate import complete_params, region_table
from .subject import TRUTH_COLUMNS, make_subject
from .tracers import TracerPreset, get_preset

__all__ = ["make_cohort", "Cohort", "DESIGNS", "normalise_design", "scan_parameters"]

_HUMAN_VAR = {"between_subject_cv": 0.12, "within_subject_sd": 0.075, "regional_fraction": 0.3,
              "vnd_cv": 0.08, "k1_cv": 0.10}
_RODENT_VAR = {"between_subject_cv": 0.10, "within_subject_sd": 0.08, "regional_fraction": 0.3,
               "vnd_cv": 0.08, "k1_cv": 0.10}

DESIGNS: dict[str, dict] = {
    "ketamine-human": {
        "description": "Healthy volunteers, [11C]UCB-J PET at baseline and 24 h or 7 d after "
                       "one IV ketamine dose (two independent arms); no SV2A change",
        "species": "human", "tracer": "ucbj", "n_subjects": 12,
        "arms": {"ketamine_24h": {"sessions": ["baseline", "24h"]},
                 "ketamine_7d": {"sessions": ["baseline", "7d"]}},
        "effects": {}, "flow_effects": {},
        "time_since_dose_h": {"baseline": None, "24h": 24, "7d": 168},
        "variability": _HUMAN_VAR,
        "demographics": {"sex": "M", "age": [25, 60], "age_units": "years",
                         "body_weight_kg": [78.0, 10.0], "injected_mbq": [600.0, 40.0]},
    },
    "ketamine-rodent": {
        "description": "Rat chronic stress model, [18F]SynVesT-1 PET at baseline, 24 h, 1 w and "
                       "3 w after single or repeated (3x) ketamine or vehicle",
        "species": "rat", "tracer": "synvest1", "n_subjects": 16,
        "sessions": ["baseline", "24h", "1w", "3w"],
        "arms": {"control_vehicle": {}, "stress_vehicle": {}, "stress_single": {},
                 "stress_repeated": {}},
        "effects": {
            "stress_vehicle": {"*": {"*": -0.10}},
            "stress_single": {"*": {"*": -0.10}, "24h": {"*": 0.0}},
            "stress_repeated": {"*": {"*": -0.10}, "1w": {"*": 0.04}, "3w": {"*": 0.11}},
        },
        "flow_effects": {},
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
    "flow_effects": {"stress_single": {"24h": {"*": 0.10}},
                     "stress_repeated": {"24h": {"*": 0.10}}},
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
        effects flow_effects variability demographics time_since_dose_h`` (times in h).

    Raises
    ------
    DesignError
        Unknown design, invalid JSON, unknown arm / session / region / key, or an effect
        <= -1.

    Examples
    --------
    >>> d = normalise_design("ketamine-human-pcc")
    >>> d["species"], d["tracer"], d["sessions"]
    ('human', 'ucbj', ['baseline', '24h', '7d'])
    >>> d["demographics"]["injected_mbq"], d["demographics"]["body_weight_kg"]
    ([600.0, 40.0], [78.0, 10.0])
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
    regions = set(preset.regions)
    for key in ("effects", "flow_effects"):
        eff = d.get(key) or {}
        if not isinstance(eff, Mapping):
            raise DesignError(f"design '{key}' must be a dict arm -> session -> region -> value")
        for a, by_ses in eff.items():
            if a not in norm_arms:
                raise DesignError(f"{key}: unknown arm {a!r}; arms are {list(norm_arms)}")
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
    return d


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


def _factor(table: Mapping, arm: str, session: str, region: str) -> float:
    by_ses = table.get(arm) or {}
    f = 1.0
    for key in ("*", session):
        by_reg = by_ses.get(key)
        if by_reg:
            v = by_reg.get(region, by_reg.get("*", 0.0))
            f *= 1.0 + float(v)
    return f


_TIED = {"centrum_semiovale": "white_matter"}  # CS is the eroded core of the WM: same tissue


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
        One row per scan: participant_id, session, arm, pet, blood (path or None), dseg.
    """

    path: Path
    design: dict
    participants: pd.DataFrame
    truth: pd.DataFrame
    scans: pd.DataFrame = field(default_factory=pd.DataFrame)


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


def _scan_job(job: dict) -> dict:
    """Simulate and write one scan (runs in a worker process when nprocs > 1)."""
    from ..io import write_json, write_nifti, write_tsv

    preset = get_preset(job["species"], job["tracer"])
    design = job["design"]
    seed, i, j = job["seed"], job["index"], job["session_index"]
    table = scan_parameters(preset, design, job["arm"], job["session"],
                            np.random.default_rng([seed, 1, i]),
                            np.random.default_rng([seed, 2, i, j]))
    subj = make_subject(preset.species, preset.tracer, np.random.default_rng([seed, 3, i, j]),
                        params=table, injected_mbq=job["injected_mbq"],
                        body_weight_kg=job["body_weight_kg"], **job["sim"])
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
    write_nifti(pet_path, subj.image, subj.affine, compresslevel=job["compresslevel"])
    write_json(pet_dir / f"{prefix}_pet.json", sidecar)
    blood_path = None
    if job["blood"]:
        blood_path = pet_dir / f"{prefix}_recording-manual_blood.tsv"
        write_tsv(blood_path, subj.blood)
        write_json(pet_dir / f"{prefix}_recording-manual_blood.json", subj.blood_sidecar())
    dseg = anat_dir / f"{prefix}_dseg.nii.gz"
    write_nifti(dseg, subj.labels, subj.affine, dtype=np.uint8)
    write_tsv(anat_dir / f"{prefix}_dseg.tsv",
              pd.DataFrame({"index": list(subj.label_names),
                            "name": list(subj.label_names.values())}))
    truth = subj.truth.reset_index()
    truth.insert(0, "session", ses)
    truth.insert(0, "participant_id", pid)
    return {"truth": truth, "pet": str(pet_path), "blood": None if blood_path is None
            else str(blood_path), "dseg": str(dseg)}


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
    compresslevel: int = 1,
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
    compresslevel : int
        gzip level of the PET images (1 = fast; the data are noisy floats).

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
    arms = _assign_arms(d, n_subjects)
    width = max(2, len(str(len(arms))))
    ids = [f"sub-{i + 1:0{width}d}" for i in range(len(arms))]
    with_blood = _blood_subjects(blood, ids, seed)

    demo = d["demographics"]
    rows, jobs = [], []
    fwhm_val = preset.fwhm_mm if fwhm is None else fwhm
    sim = {"noise": float(noise), "fwhm": fwhm_val, "voxel_mm": voxel_mm,
           "noise_mode": noise_mode, "noise_fwhm": float(noise_fwhm),
           "frame_average": frame_average}
    make_anatomy(preset.species, voxel_mm)  # fail early on a bad voxel size
    for i, (pid, arm) in enumerate(zip(ids, arms, strict=True)):
        r = np.random.default_rng([seed, 0, i])
        lo, hi = demo["age"]
        age = int(r.integers(int(lo), int(hi) + 1))
        wm, wsd = demo["body_weight_kg"]
        weight = float(np.round(np.clip(r.normal(wm, wsd), 0.6 * wm, 1.5 * wm),
                                1 if preset.species == "human" else 4))
        rows.append({"participant_id": pid, "arm": arm, "age": age, "sex": demo["sex"],
                     "weight": weight})
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
                         "root": str(root), "compresslevel": int(compresslevel)})
    participants = pd.DataFrame(rows)

    results = _run_jobs(jobs, nprocs, progress)

    truth = pd.concat([res["truth"] for res in results], ignore_index=True)
    truth = truth[["participant_id", "session", "region", *TRUTH_COLUMNS]]
    scans = pd.DataFrame([{"participant_id": jb["participant_id"], "session": jb["session"],
                           "arm": jb["arm"], "pet": res["pet"], "blood": res["blood"],
                           "dseg": res["dseg"]} for jb, res in zip(jobs, results, strict=True)])

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
    })
    tsd = d.get("time_since_dose_h") or {}
    for pid, arm in zip(ids, arms, strict=True):
        ses = d["arms"][arm]["sessions"]
        write_tsv(root / pid / f"{pid}_sessions.tsv", pd.DataFrame({
            "session_id": [f"ses-{s}" for s in ses],
            "time_since_dose": [tsd.get(s) if tsd.get(s) is not None else np.nan for s in ses],
        }))
    write_tsv(root / "truth.tsv", truth)
    design_out = {
        **d, "seed": seed, "noise": float(noise), "fwhm_mm": fwhm_val,
        "voxel_mm": make_anatomy(preset.species, voxel_mm).voxel_mm, "noise_mode": noise_mode,
        "noise_fwhm_mm": float(noise_fwhm), "frame_average": frame_average,
        "blood": sorted(with_blood), "n_subjects": len(ids),
        "subjects": {a: [p for p, x in zip(ids, arms, strict=True) if x == a] for a in d["arms"]},
        "preset": preset.key, "model": preset.model, "tracer_name": preset.tracer_name,
        "reference_region": preset.reference, "suvr_window_min": list(preset.suvr_window),
        "truth_columns": "participant_id session region " + " ".join(TRUTH_COLUMNS),
        "notes": "session = BIDS session label without 'ses-'; effects are fractional changes "
                 "of VS (flow_effects: of K1); time_since_dose in hours",
        "sv2a_version": __version__,
    }
    write_json(root / "design.json", design_out)
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
