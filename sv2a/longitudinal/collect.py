"""Assemble a group dataset (subject x session x region) from regional fits.

The group dataset is the single input of every longitudinal analysis in this package:

``xr.Dataset`` with dims ``("subject", "session", "region")``, one float variable per kinetic
parameter (``BPND``, ``VT``, ``SUVR``, ``converged`` as 1/0, ...; NaN where a subject has no
fit for that session/region), the coordinate ``arm`` on ``subject`` plus every other column of
``participants.tsv`` (age, sex, group, ...) as subject coordinates, and session-level
covariates (``time_since_dose``) on ``session`` or ``(subject, session)``.

Subject labels are stored without the ``sub-`` prefix and sessions without ``ses-``
(``"01"``, ``"bl"``); :func:`to_tidy` writes BIDS ``participant_id`` (``sub-01``) again.
Everything the collector had to leave out (subjects without data, sessions not requested,
files it could not read) is listed in ``ds.attrs`` *and* in a warning; nothing is dropped
silently.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError, DesignError, Sv2aWarning

__all__ = [
    "collect",
    "to_tidy",
    "from_tidy",
    "save",
    "load",
    "session_order",
    "BASELINE_SYNONYMS",
]

#: Session labels that mean "before treatment" (compared after lower-casing, dropping _-).
BASELINE_SYNONYMS = ("baseline", "bl", "base", "pre", "predose", "pretreatment", "scan1")

_ENTITY_RE = re.compile(r"^(?P<key>[a-z]+)-(?P<value>[A-Za-z0-9]+)$")


def _kinpar_entities(name: str) -> dict[str, str] | None:
    """The BIDS entities of a ``*_kinpar.tsv`` file name (``sub``, ``ses``, ``seg``, ``desc``,
    ``model`` and any others such as ``trc``, ``run``), or ``None`` when the name is not
    ``sub-<label>[_<key>-<value>...]_model-<label>[...]_kinpar.tsv``."""
    if not name.endswith("_kinpar.tsv"):
        return None
    ents: dict[str, str] = {}
    for part in name[: -len("_kinpar.tsv")].split("_"):
        m = _ENTITY_RE.match(part)
        if m is None or m.group("key") in ents:
            return None
        ents[m.group("key")] = m.group("value")
    if "sub" not in ents or "model" not in ents or next(iter(ents)) != "sub":
        return None
    return ents


_NA_VALUES = ["n/a", "N/A", "NA", "nan", "NaN", ""]
_TIME_UNITS_MIN = {"min": 1.0, "m": 1.0, "h": 60.0, "hr": 60.0, "d": 1440.0, "day": 1440.0,
                   "days": 1440.0, "w": 10080.0, "wk": 10080.0, "week": 10080.0,
                   "weeks": 10080.0, "mo": 43200.0, "y": 525600.0}


# --------------------------------------------------------------------------- labels

def _strip(label: Any, prefix: str) -> str:
    s = str(label).strip()
    return s[len(prefix):] if s.startswith(prefix) else s


def _norm_key(label: str) -> str:
    return re.sub(r"[^0-9a-z]", "", label.lower())


def _is_baseline_like(label: str) -> bool:
    return _norm_key(label) in BASELINE_SYNONYMS


def _duration_minutes(label: str) -> float | None:
    """Parse a session label like ``24h``, ``7d``, ``3w``, ``wk3`` into minutes (None if not)."""
    key = label.lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]+)", key) or None
    if m and m.group(2) in _TIME_UNITS_MIN:
        return float(m.group(1)) * _TIME_UNITS_MIN[m.group(2)]
    m = re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)?)", key)
    if m and m.group(1) in _TIME_UNITS_MIN and m.group(1) not in ("m",):
        return float(m.group(2)) * _TIME_UNITS_MIN[m.group(1)]
    return None


def session_order(labels: Iterable[str], time_since_dose: Mapping[str, float] | None = None
                  ) -> list[str]:
    """Order session labels chronologically as far as the labels tell.

    Parameters
    ----------
    labels : iterable of str
        Session labels without ``ses-`` (duplicates are dropped).
    time_since_dose : mapping {label: float}, optional
        Time since the (drug) dose of each session, any one unit for all labels (sessions.tsv
        ``time_since_dose``, usually hours); NaN = unknown.

    Returns
    -------
    list of str
        Baseline-like labels (:data:`BASELINE_SYNONYMS`) first, then labels with a known
        ``time_since_dose`` in that order, then labels that encode a duration
        (``24h < 7d < 3w``), then the rest alphabetically.

    Examples
    --------
    >>> session_order(["3w", "24h", "followup", "bl", "7d"])
    ['bl', '24h', '7d', '3w', 'followup']
    """
    labels = list(dict.fromkeys(labels))
    tsd = dict(time_since_dose or {})

    def key(lab: str):
        if _is_baseline_like(lab):
            return (0, 0.0, lab)
        if lab in tsd and np.isfinite(tsd[lab]):
            return (1, float(tsd[lab]), lab)
        d = _duration_minutes(lab)
        if d is not None:
            return (2, d, lab)
        return (3, 0.0, lab)

    return sorted(labels, key=key)


def _check_session_names(sessions_by_subject: Mapping[str, set[str]]) -> None:
    """Raise DesignError when two labels look like the same session but are used by disjoint
    sets of subjects (``bl`` vs ``baseline``, ``24h`` vs ``1d``, ``Baseline`` vs ``baseline``)."""
    users: dict[str, set[str]] = {}
    for sub, labs in sessions_by_subject.items():
        for lab in labs:
            users.setdefault(lab, set()).add(sub)

    def canon(lab: str) -> str:
        k = _norm_key(lab)
        if k in BASELINE_SYNONYMS:
            return "baseline"
        d = _duration_minutes(lab)
        return f"t{d:g}" if d is not None else k

    groups: dict[str, list[str]] = {}
    for lab in users:
        groups.setdefault(canon(lab), []).append(lab)
    problems = []
    for similar in groups.values():
        if len(similar) < 2:
            continue
        similar = sorted(similar)
        # labels used together by one subject are genuinely different sessions
        together = any(len([lab for lab in similar if lab in s]) > 1
                       for s in sessions_by_subject.values())
        if not together:
            desc = "; ".join(f"'{lab}' ({', '.join('sub-' + s for s in sorted(users[lab])[:4])}"
                             f"{', ...' if len(users[lab]) > 4 else ''})" for lab in similar)
            problems.append(desc)
    if problems:
        raise DesignError(
            "sessions are named inconsistently across subjects: " + " | ".join(problems)
            + ". These labels look like the same time point. Rename the sessions in the "
            "dataset, or pass sessions={'old_label': 'new_label'} to collect() to map them.")


# --------------------------------------------------------------------------- tables

def _read_table(path_or_df, what: str) -> pd.DataFrame:
    if isinstance(path_or_df, pd.DataFrame):
        return path_or_df.copy()
    p = Path(path_or_df)
    if not p.is_file():
        raise DesignError(f"{what} file not found: {p}. Pass the path of the BIDS {what} "
                          f"table (tab-separated) or a pandas DataFrame.")
    try:
        return pd.read_csv(p, sep="\t", na_values=_NA_VALUES, keep_default_na=True,
                           dtype={"participant_id": str, "session_id": str})
    except Exception as exc:  # pragma: no cover - pandas error types vary
        raise DataError(f"cannot read {what} table {p}: {exc}") from exc


def _participants_table(participants, subjects_with_data: Sequence[str]) -> pd.DataFrame:
    """Return participants indexed by subject label (no 'sub-'), with an 'arm' column."""
    if participants is None:
        raise DesignError(
            "no participants table: pass participants='participants.tsv' (BIDS, with an 'arm' "
            "column), a DataFrame, or a dict {subject: arm}.")
    if isinstance(participants, Mapping):
        df = pd.DataFrame({"participant_id": [str(k) for k in participants],
                           "arm": [None if v is None else str(v)
                                   for v in participants.values()]})
    else:
        df = _read_table(participants, "participants")
    if "participant_id" not in df.columns:
        raise DesignError(f"participants table has no 'participant_id' column "
                          f"(columns: {list(df.columns)}); add it (values like 'sub-01').")
    if "arm" not in df.columns:
        raise DesignError(f"participants table has no 'arm' column (columns: "
                          f"{list(df.columns)}); add a column 'arm' naming each subject's "
                          f"treatment arm (e.g. single_dose, repeated_dose, test_retest).")
    df = df.copy()
    df["participant_id"] = [_strip(s, "sub-") for s in df["participant_id"]]
    dup = df["participant_id"][df["participant_id"].duplicated()].tolist()
    if dup:
        raise DesignError(f"participants table lists subjects more than once: "
                          f"{['sub-' + d for d in dup]}; keep one row per subject.")
    df = df.set_index("participant_id")
    no_arm = [s for s in subjects_with_data
              if s not in df.index or pd.isna(df.loc[s, "arm"]) or str(df.loc[s, "arm"]) == ""]
    if no_arm:
        raise DesignError(
            f"subjects without an arm: {['sub-' + s for s in no_arm]}. Every subject with data "
            f"needs a value in the 'arm' column of participants.tsv; add it, or leave the "
            f"subject out explicitly with collect(..., exclude=[...]).")
    df["arm"] = df["arm"].astype(str)
    _check_arm_spelling(df.loc[[s for s in subjects_with_data if s in df.index], "arm"])
    return df


def _check_arm_spelling(arms: pd.Series) -> None:
    """Arm labels that differ only in case, spaces or punctuation (the key that also matches
    session labels, :func:`_norm_key`) are one arm spelt two ways: taken as is they split the
    arm into groups of a few subjects each, so they are refused."""
    groups: dict[str, set[str]] = {}
    for a in arms.unique():
        groups.setdefault(_norm_key(str(a)), set()).add(str(a))
    clash = [sorted(v) for v in groups.values() if len(v) > 1]
    if clash:
        raise DesignError(
            "participants.tsv spells one arm in several ways: "
            + "; ".join(" / ".join(repr(a) for a in c) for c in clash)
            + " (they differ only in case, spaces or punctuation); write each arm the same way "
            "for all its subjects, or they are analysed as separate arms")


def _sessions_table(sessions, source_dir: Path | None) -> pd.DataFrame | None:
    """Session-level covariates: DataFrame with session_id [+ participant_id] columns."""
    frames = []
    if isinstance(sessions, str | os.PathLike | pd.DataFrame):
        frames.append(_read_table(sessions, "sessions"))
    elif sessions is None and source_dir is not None:
        for p in sorted(source_dir.glob("sub-*/sub-*_sessions.tsv")):
            t = _read_table(p, "sessions")
            if "participant_id" not in t.columns:
                t["participant_id"] = p.name.split("_")[0]
            frames.append(t)
    if not frames:
        return None
    t = pd.concat(frames, ignore_index=True)
    if "session_id" not in t.columns:
        raise DesignError(f"sessions table has no 'session_id' column (columns: "
                          f"{list(t.columns)}); BIDS sessions.tsv needs one (values 'ses-bl').")
    t["session_id"] = [_strip(s, "ses-") for s in t["session_id"]]
    if "participant_id" in t.columns:
        t["participant_id"] = [_strip(s, "sub-") for s in t["participant_id"]]
    return t


# --------------------------------------------------------------------------- readers

def _parse_bool_column(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s.astype(float)
    m = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}
    return s.map(lambda v: np.nan if pd.isna(v) else m.get(str(v).strip().lower(), np.nan))


def _read_kinpar(path: Path) -> pd.DataFrame:
    try:
        t = pd.read_csv(path, sep="\t", na_values=_NA_VALUES, keep_default_na=True)
    except Exception as exc:
        raise DataError(f"cannot read kinetic-parameter table {path}: {exc}") from exc
    if t.shape[1] == 0 or t.columns[0] != "region":
        raise DataError(f"{path}: first column must be 'region' (found "
                        f"{list(t.columns[:3])}); this is not an sv2a *_kinpar.tsv file.")
    if t["region"].duplicated().any():
        raise DataError(f"{path}: region(s) listed twice: "
                        f"{t['region'][t['region'].duplicated()].tolist()}")
    t = t.set_index("region")
    out = {}
    for c in t.columns:
        if c in ("converged", "at_bound"):
            out[c] = _parse_bool_column(t[c])
        elif pd.api.types.is_numeric_dtype(t[c]):
            out[c] = t[c].astype(float)
        # strings (message, ...) are diagnostics, not outcomes: not collected
    return pd.DataFrame(out, index=t.index)


def _scan_derivatives(root: Path, model: str | None, atlas: str | None,
                      desc: str | None = None
                      ) -> tuple[dict[tuple[str, str], pd.DataFrame], dict]:
    files = sorted(root.glob("sub-*/**/*_kinpar.tsv"))
    if not files:
        raise DataError(f"no '*_kinpar.tsv' files under {root}. Expected "
                        f"sub-XX/ses-YY/pet/sub-XX_ses-YY_seg-<atlas>_model-<MODEL>_kinpar.tsv "
                        f"(run 'sv2a run ... participant' first).")
    parsed = []
    unparsed = []
    for f in files:
        ents = _kinpar_entities(f.name)
        if ents is None:
            unparsed.append(str(f))
            continue
        if ents.get("desc") != desc:  # desc-gtm: partial-volume corrected fits, kept apart
            continue
        parsed.append((f, ents["sub"], ents.get("ses"), ents.get("seg"), ents["model"]))
    if unparsed:
        warnings.warn(f"{len(unparsed)} kinpar file(s) with names sv2a cannot parse were not "
                      f"collected: {unparsed[:5]}", Sv2aWarning, stacklevel=3)
    if not parsed:
        raise DataError(f"no '*_kinpar.tsv' files with desc-{desc} under {root}"
                        if desc else f"no '*_kinpar.tsv' files without a desc- entity under "
                        f"{root}; pass desc= (e.g. 'gtm') to collect corrected fits")
    models = sorted({p[4] for p in parsed})
    if model is None:
        if len(models) > 1:
            raise DesignError(f"{root} holds results of several models {models}; choose one "
                              f"with collect(..., model='SRTM2').")
        model = models[0]
    sel = [p for p in parsed if p[4].upper() == str(model).upper().replace("_", "")]
    if not sel:
        raise DesignError(f"no results for model '{model}' under {root}; models found: "
                          f"{models}.")
    segs = sorted({p[3] or "" for p in sel})
    if atlas is None and len(segs) > 1:
        raise DesignError(f"{root} holds model-{model} results for several atlases {segs}; "
                          f"choose one with collect(..., atlas='...').")
    if atlas is not None:
        sel = [p for p in sel if (p[3] or "") == atlas]
        if not sel:
            raise DesignError(f"no model-{model} results for atlas '{atlas}'; found {segs}.")
    out: dict[tuple[str, str], pd.DataFrame] = {}
    no_session = []
    for f, sub, ses, _seg, _m in sel:
        if ses is None:
            no_session.append(f"sub-{sub}")
            ses = "none"
        if (sub, ses) in out:
            raise DataError(f"two kinpar files for sub-{sub} ses-{ses} (model {model}): "
                            f"{f}; keep one per subject/session.")
        out[(sub, ses)] = _read_kinpar(f)
    if no_session:
        warnings.warn(f"results without a session entity were labelled session 'none': "
                      f"{sorted(set(no_session))}", Sv2aWarning, stacklevel=3)
    info = {"source": str(root), "model": sel[0][4], "atlas": sel[0][3] or "none",
            "desc": desc or "none"}
    return out, info


def _from_fit_datasets(source) -> tuple[dict[tuple[str, str], pd.DataFrame], dict]:
    items: list[tuple[Any, xr.Dataset]]
    if isinstance(source, Mapping):
        items = list(source.items())
    else:
        items = []
        for i, el in enumerate(source):
            if isinstance(el, tuple) and len(el) == 2 and isinstance(el[1], xr.Dataset):
                items.append(el)
            elif isinstance(el, xr.Dataset):
                sub = el.attrs.get("subject", el.attrs.get("participant_id"))
                ses = el.attrs.get("session", el.attrs.get("session_id"))
                if sub is None or ses is None:
                    raise DesignError(f"fit Dataset #{i} has no 'subject'/'session' attrs; pass "
                                      f"a dict {{(subject, session): fit}} instead.")
                items.append(((sub, ses), el))
            else:
                raise DesignError(f"element #{i} of source is {type(el).__name__}; expected an "
                                  f"xr.Dataset fit result or a ((subject, session), fit) pair.")
    out: dict[tuple[str, str], pd.DataFrame] = {}
    models = set()
    for key, fit in items:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise DesignError(f"fit key {key!r} must be a (subject, session) pair.")
        sub, ses = _strip(key[0], "sub-"), _strip(key[1], "ses-")
        if not isinstance(fit, xr.Dataset) or "region" not in fit.dims:
            raise DataError(f"fit for sub-{sub} ses-{ses} is not an xr.Dataset over 'region'.")
        if (sub, ses) in out:
            raise DataError(f"two fits given for sub-{sub} ses-{ses}; keep one.")
        cols = {}
        for name, var in fit.data_vars.items():
            if var.dims != ("region",):
                continue
            if var.dtype == bool:
                cols[name] = var.values.astype(float)
            elif np.issubdtype(var.dtype, np.number):
                cols[name] = var.values.astype(float)
        out[(sub, ses)] = pd.DataFrame(cols, index=pd.Index(
            [str(r) for r in fit["region"].values], name="region"))
        if "model" in fit.attrs:
            models.add(str(fit.attrs["model"]))
    if not out:
        raise DataError("no fit results given to collect().")
    info = {"source": "fit datasets", "model": ",".join(sorted(models)) or "unknown",
            "atlas": "unknown"}
    return out, info


# --------------------------------------------------------------------------- collect

def collect(
    source,
    participants=None,
    sessions=None,
    outcome: str | Sequence[str] | None = None,
    model: str | None = None,
    *,
    atlas: str | None = None,
    desc: str | None = None,
    exclude: Sequence[str] | None = None,
) -> xr.Dataset:
    """Build the group dataset (subject x session x region) from regional fits.

    Parameters
    ----------
    source : path, mapping or sequence
        An sv2a derivatives directory (as written by ``sv2a run ... participant``:
        ``sub-XX/ses-YY/pet/sub-XX_ses-YY_seg-<atlas>_model-<MODEL>_kinpar.tsv``), a mapping
        ``{(subject, session): fit}`` of fit ``xr.Dataset`` objects over ``region``, or a
        sequence of such Datasets carrying ``subject``/``session`` attrs.
    participants : path, DataFrame or mapping
        BIDS ``participants.tsv`` with ``participant_id`` and ``arm`` (other columns such as
        ``age``, ``sex``, ``group`` become subject coordinates), or ``{subject: arm}``. When
        None and ``source`` is a directory, ``source/participants.tsv`` is used if present.
    sessions : None, sequence, mapping, path or DataFrame
        None: all sessions, auto-ordered (baseline first, then ``time_since_dose`` or the
        duration in the label). A sequence: these sessions in this order (others are left out
        *with a warning*). A mapping: rename labels (``{'bl': 'baseline'}``). A path/DataFrame:
        a sessions table (``session_id`` [+ ``participant_id``], ``time_since_dose``, ...)
        whose columns become coordinates. With None, ``sub-*/sub-*_sessions.tsv`` files inside
        ``source`` are read.
    outcome : str or sequence of str, optional
        Keep only these parameters (plus ``converged`` when present). Default: all numeric
        parameter columns.
    model : str, optional
        Model to collect when the directory holds several (``'SRTM2'``; case-insensitive).
    atlas : str, optional
        ``seg-`` label to collect when the directory holds several atlases.
    desc : str, optional
        ``desc-`` label of the fits to collect, e.g. ``"gtm"`` for partial-volume corrected
        ones; default the fits without a ``desc`` entity.
    exclude : sequence of str, optional
        Subjects to leave out on purpose; recorded in ``attrs['excluded_by_user']``.

    Returns
    -------
    xr.Dataset
        Dims ``(subject, session, region)``; coordinate ``arm`` on subject. ``attrs`` record
        source, model, atlas, and lists (JSON strings) of anything left out.

    Raises
    ------
    DesignError
        Subject without an arm, inconsistent session labels, ambiguous model/atlas.
    DataError
        Unreadable files, requested outcome absent, duplicated results.

    Examples
    --------
    From fit results in memory (one ``xr.Dataset`` over ``region`` per subject and session):

    >>> import numpy as np, xarray as xr
    >>> def fit(bpnd):
    ...     return xr.Dataset({"BPND": ("region", np.array(bpnd))},
    ...                       coords={"region": ["cortex", "hippocampus"]})
    >>> fits = {("01", "baseline"): fit([3.1, 2.4]), ("01", "24h"): fit([3.3, 2.5]),
    ...         ("02", "baseline"): fit([2.9, 2.2]), ("02", "24h"): fit([3.0, 2.3])}
    >>> ds = collect(fits, participants={"01": "ketamine", "02": "ketamine"})
    >>> dict(ds.sizes), ds["session"].values.tolist(), ds["arm"].values.tolist()
    ({'subject': 2, 'session': 2, 'region': 2}, ['baseline', '24h'], ['ketamine', 'ketamine'])
    """
    source_dir = None
    if isinstance(source, str | os.PathLike):
        source_dir = Path(source)
        if not source_dir.is_dir():
            raise DataError(f"derivatives directory not found: {source_dir}")
        tables, info = _scan_derivatives(source_dir, model, atlas, desc)
        if participants is None and (source_dir / "participants.tsv").is_file():
            participants = source_dir / "participants.tsv"
    else:
        tables, info = _from_fit_datasets(source)

    excluded_by_user = sorted({_strip(s, "sub-") for s in (exclude or [])})
    tables = {k: v for k, v in tables.items() if k[0] not in excluded_by_user}

    # session relabelling / selection
    dropped_sessions: list[str] = []
    if isinstance(sessions, Mapping):
        ren = {_strip(k, "ses-"): _strip(v, "ses-") for k, v in sessions.items()}
        new = {}
        for (sub, ses), t in tables.items():
            key = (sub, ren.get(ses, ses))
            if key in new:
                raise DesignError(f"sessions mapping {sessions} makes two sessions of sub-{sub} "
                                  f"both '{key[1]}'.")
            new[key] = t
        tables = new
    requested = None
    if isinstance(sessions, Sequence) and not isinstance(sessions, str):
        requested = [_strip(s, "ses-") for s in sessions]
        present = {k[1] for k in tables}
        missing = [s for s in requested if s not in present]
        if missing:
            raise DesignError(f"requested session(s) {missing} not found; sessions present: "
                              f"{sorted(present)}.")
        dropped_sessions = sorted(present - set(requested))
        if dropped_sessions:
            warnings.warn(f"sessions not requested and left out: {dropped_sessions}",
                          Sv2aWarning, stacklevel=2)
        tables = {k: v for k, v in tables.items() if k[1] in requested}
    sessions_table = _sessions_table(
        None if isinstance(sessions, Mapping | list | tuple) else sessions, source_dir)

    by_subject: dict[str, set[str]] = {}
    for sub, ses in tables:
        by_subject.setdefault(sub, set()).add(ses)
    _check_session_names(by_subject)
    subjects = sorted(by_subject)

    ptab = _participants_table(participants, subjects)
    no_data = sorted(set(ptab.index) - set(subjects) - set(excluded_by_user))
    if no_data:
        warnings.warn(f"participants without any result (model {info['model']}): "
                      f"{['sub-' + s for s in no_data]}; they are not in the group dataset.",
                      Sv2aWarning, stacklevel=2)

    # regions and variables
    regions = list(dict.fromkeys(r for t in tables.values() for r in t.index))
    variables = list(dict.fromkeys(c for t in tables.values() for c in t.columns))
    if outcome is not None:
        wanted = [outcome] if isinstance(outcome, str) else list(outcome)
        absent = [o for o in wanted if o not in variables]
        if absent:
            raise DataError(f"outcome {absent} not in the results (model {info['model']}); "
                            f"available parameters: {variables}.")
        variables = wanted + (["converged"] if "converged" in variables
                              and "converged" not in wanted else [])
    missing_regions = []
    for (sub, ses), t in sorted(tables.items()):
        lack = [r for r in regions if r not in t.index]
        if lack:
            missing_regions.append(f"sub-{sub} ses-{ses}: {lack}")
    if missing_regions:
        warnings.warn("some results lack regions (stored as NaN): "
                      + "; ".join(missing_regions[:10]), Sv2aWarning, stacklevel=2)

    tsd_by_session = {}
    if sessions_table is not None and "time_since_dose" in sessions_table.columns:
        g = sessions_table.groupby("session_id")["time_since_dose"]
        tsd_by_session = pd.to_numeric(g.median(), errors="coerce").to_dict()
    ses_labels = requested or session_order({k[1] for k in tables}, tsd_by_session)

    si = {s: i for i, s in enumerate(subjects)}
    ei = {s: i for i, s in enumerate(ses_labels)}
    ri = {r: i for i, r in enumerate(regions)}
    arr = {v: np.full((len(subjects), len(ses_labels), len(regions)), np.nan)
           for v in variables}
    for (sub, ses), t in tables.items():
        rows = [ri[r] for r in t.index]
        for v in variables:
            if v in t.columns:
                arr[v][si[sub], ei[ses], rows] = t[v].to_numpy(float)

    ds = xr.Dataset(
        {v: (("subject", "session", "region"), a) for v, a in arr.items()},
        coords={"subject": subjects, "session": ses_labels, "region": regions},
    )
    ds = ds.assign_coords(arm=("subject", ptab.loc[subjects, "arm"].to_numpy(str)))
    for c in ptab.columns:
        if c == "arm":
            continue
        ds = ds.assign_coords({c: ("subject", _coord_values(ptab.loc[subjects, c]))})
    if sessions_table is not None:
        ds = _add_session_covariates(ds, sessions_table)
    if "converged" in ds:
        ds["converged"].attrs["description"] = "1 = fit converged, 0 = not, NaN = no fit"

    for arm, n in zip(*np.unique(ds["arm"].values, return_counts=True), strict=True):
        if n < 2:
            warnings.warn(f"arm '{arm}' has only {n} subject; within-arm statistics need at "
                          f"least 2.", Sv2aWarning, stacklevel=2)

    ds.attrs.update({
        "sv2a_group_dataset": 1,
        "source": info["source"],
        "model": info["model"],
        "atlas": info["atlas"],
        "excluded_by_user": json.dumps(["sub-" + s for s in excluded_by_user]),
        "participants_without_data": json.dumps(["sub-" + s for s in no_data]),
        "sessions_left_out": json.dumps(dropped_sessions),
        "missing_regions": json.dumps(missing_regions),
    })
    return ds


def _coord_values(s: pd.Series) -> np.ndarray:
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().sum() == s.notna().sum():
        return num.to_numpy(float)
    return np.array(["n/a" if pd.isna(v) else str(v) for v in s], dtype=str)


def _add_session_covariates(ds: xr.Dataset, st: pd.DataFrame) -> xr.Dataset:
    cols = [c for c in st.columns if c not in ("session_id", "participant_id")]
    for c in cols:
        if "participant_id" in st.columns:
            vals = np.full((ds.sizes["subject"], ds.sizes["session"]), np.nan, dtype=object)
            lut = {(r.participant_id, r.session_id): getattr(r, c)
                   for r in st.itertuples(index=False)}
            for i, sub in enumerate(ds["subject"].values):
                for j, ses in enumerate(ds["session"].values):
                    vals[i, j] = lut.get((sub, ses), np.nan)
            flat = pd.Series(vals.ravel())
            ds = ds.assign_coords({c: (("subject", "session"),
                                       _coord_values(flat).reshape(vals.shape))})
        else:
            lut = st.groupby("session_id")[c].first().to_dict()
            flat = pd.Series([lut.get(s, np.nan) for s in ds["session"].values])
            ds = ds.assign_coords({c: ("session", _coord_values(flat))})
    return ds


# --------------------------------------------------------------------------- tidy / io

def to_tidy(ds: xr.Dataset) -> pd.DataFrame:
    """The group dataset as a long table.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`collect`).

    Returns
    -------
    pandas.DataFrame
        One row per subject x session x region with ``participant_id`` (``sub-XX``),
        ``session``, ``arm``, the subject (and session) covariates, ``region`` and one column
        per parameter (in the parameter's units). Rows where every parameter is NaN (no scan)
        are left out.
    """
    df = ds.reset_coords().to_dataframe().reset_index()
    params = [v for v in ds.data_vars]
    df = df.dropna(subset=params, how="all")
    df.insert(0, "participant_id", ["sub-" + str(s) for s in df.pop("subject")])
    first = ["participant_id", "session", "arm"]
    rest = [c for c in df.columns if c not in first + ["region"] + params]
    return df[first + rest + ["region"] + params].reset_index(drop=True)


def from_tidy(df: pd.DataFrame) -> xr.Dataset:
    """Inverse of :func:`to_tidy`.

    Parameters
    ----------
    df : pandas.DataFrame
        Long table with ``participant_id``, ``session``, ``region``, ``arm`` and one column
        per parameter; other columns constant within a subject become subject coordinates.

    Returns
    -------
    xr.Dataset
        Group dataset (dims subject, session, region), sessions ordered by
        :func:`session_order`.
    """
    df = df.copy()
    df["subject"] = [_strip(s, "sub-") for s in df.pop("participant_id")]
    params = [c for c in df.columns if c not in ("subject", "session", "region", "arm")
              and pd.api.types.is_numeric_dtype(df[c])
              and df.groupby("subject")[c].nunique(dropna=False).max() > 1]
    ds = df.set_index(["subject", "session", "region"])[params].to_xarray()
    subj = df.groupby("subject").first()
    ds = ds.assign_coords(arm=("subject", subj.loc[ds["subject"].values, "arm"].astype(str)
                               .to_numpy()))
    for c in subj.columns:
        if c in params or c in ("session", "region", "arm"):
            continue
        ds = ds.assign_coords({c: ("subject", _coord_values(subj.loc[ds["subject"].values, c]))})
    order = session_order(ds["session"].values.tolist())
    return ds.sel(session=order)


def save(ds: xr.Dataset, path: str | os.PathLike[str], *, tidy: bool = True) -> Path:
    """Write the group dataset as NetCDF (h5netcdf engine), optionally with a tidy TSV.

    Writes go to a temporary file first, then are renamed (atomic).

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset.
    path : str or path-like
        NetCDF path (parent folders are created).
    tidy : bool
        Also write :func:`to_tidy` as a TSV beside it (same stem, ``.tsv``, ``n/a`` for
        missing values).

    Returns
    -------
    pathlib.Path
        The NetCDF path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".nc.tmp")
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if tidy:
        tsv = path.with_suffix(".tsv")
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tsv.tmp")
        os.close(fd)
        try:
            to_tidy(ds).to_csv(tmp, sep="\t", index=False, na_rep="n/a")
            os.replace(tmp, tsv)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return path


def load(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a group dataset written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
        The NetCDF file, or the tidy ``.tsv`` (read with :func:`from_tidy`).

    Returns
    -------
    xr.Dataset
        The group dataset, loaded into memory (the file is closed).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sv2a.longitudinal import simulate_design
    >>> ds = simulate_design("null", n_per_arm=2, seed=0, regions=["insula"])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     nc = save(ds, Path(tmp) / "group.nc")
    ...     back = load(nc)
    >>> bool((back["BPND"] == ds["BPND"]).sum() == 8)
    True
    """
    path = Path(path)
    if path.suffix == ".tsv":
        return from_tidy(pd.read_csv(path, sep="\t", na_values=_NA_VALUES,
                                     dtype={"participant_id": str, "session": str}))
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
