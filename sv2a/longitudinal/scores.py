"""Behavioural and clinical scores of a BIDS study, as one table.

BIDS keeps per-subject and per-session measures outside the imaging files:

* ``participants.tsv`` -- one row per subject (``participant_id``, ``age``, ``sex``, ...);
* ``sub-XX/sub-XX_sessions.tsv`` -- one row per session of that subject (``session_id``,
  ``time_since_dose``, ...);
* ``phenotype/<measure>.tsv`` -- questionnaires and tests (``participant_id``, optional
  ``session_id``, one column per score), each with a ``<measure>.json`` sidecar whose keys are
  the column names and whose values give ``Description``, ``Units`` and ``Levels``.

:func:`load_scores` reads all of them into one long table with columns ``subject`` (label
without ``sub-``), ``session`` (label without ``ses-``; missing for subject-level measures)
and one column per score. Each score is either subject-level (one value per subject) or
session-level (one value per subject and session); ``table.attrs`` records which, the file
each column came from and its sidecar description.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, DesignError

__all__ = ["load_scores", "as_scores", "score_values"]

_NA = ["n/a", "N/A", "NA", "nan", "NaN", ""]
_KEYS = ("participant_id", "session_id", "subject", "session")


def _strip(label: Any, prefix: str) -> str:
    s = str(label).strip()
    return s[len(prefix):] if s.startswith(prefix) else s


def _read_tsv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", na_values=_NA, keep_default_na=True,
                           dtype={"participant_id": str, "session_id": str})
    except Exception as exc:  # pragma: no cover - pandas error types vary
        raise DataError(f"cannot read {path}: {exc}. Scores tables must be tab-separated "
                        f"with a header row.") from exc


def _numeric_or_text(s: pd.Series, where: str) -> pd.Series:
    """A column as float when every non-missing entry is a number, else as text.

    A column where most entries are numbers but some are not is a typo, not a categorical
    variable: it is refused, naming the rows.
    """
    present = s.notna()
    if not present.any():
        return s.astype(float)
    num = pd.to_numeric(s, errors="coerce")
    bad = present & num.isna()
    if not bad.any():
        return num.astype(float)
    if bad.sum() < present.sum() and (present & num.notna()).sum() >= bad.sum():
        vals = s[bad].astype(str).tolist()[:5]
        rows = [int(i) + 2 for i in np.flatnonzero(bad.to_numpy())[:5]]
        raise DataError(f"{where}: non-numeric value(s) {vals} in an otherwise numeric column "
                        f"(file lines {rows}). Write missing values as 'n/a' and numbers with "
                        f"a decimal point.")
    return s.astype(object).where(present, None)


def _normalise(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """subject/session key columns without prefixes; score columns numeric where possible."""
    df = df.copy()
    if "participant_id" in df.columns:
        df = df.rename(columns={"participant_id": "subject"})
    if "session_id" in df.columns:
        df = df.rename(columns={"session_id": "session"})
    if "subject" not in df.columns:
        raise DataError(f"{source}: no 'participant_id' column (columns: {list(df.columns)}); "
                        f"add one with values like 'sub-01'.")
    if df["subject"].isna().any():
        rows = [int(i) + 2 for i in np.flatnonzero(df["subject"].isna().to_numpy())[:5]]
        raise DataError(f"{source}: empty participant_id at file lines {rows}; fill them in.")
    df["subject"] = [_strip(s, "sub-") for s in df["subject"]]
    if "session" in df.columns:
        if df["session"].isna().any():
            raise DataError(f"{source}: empty session_id values; fill them in (e.g. "
                            f"'ses-baseline') or drop the session_id column for "
                            f"subject-level measures.")
        df["session"] = [_strip(s, "ses-") for s in df["session"]]
        keys = ["subject", "session"]
    else:
        keys = ["subject"]
    dup = df[df.duplicated(keys, keep=False)]
    if not dup.empty:
        listed = sorted({"/".join(str(v) for v in r) for r in dup[keys].itertuples(index=False)})
        raise DataError(f"{source}: rows repeated for {listed[:5]}; keep one row per "
                        f"{' and '.join(keys)}.")
    for c in df.columns:
        if c not in keys:
            df[c] = _numeric_or_text(df[c], f"{source}, column '{c}'")
    return df


def _sidecar(path: Path) -> dict:
    js = path.with_suffix(".json")
    if not js.is_file():
        return {}
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the sidecar {js}: {exc}; fix the JSON.") from exc
    return meta if isinstance(meta, dict) else {}


def _combine(tables: list[tuple[pd.DataFrame, str, dict]]) -> pd.DataFrame:
    """Merge normalised tables into the long (subject, session) layout."""
    subject_level: pd.DataFrame | None = None
    session_level: pd.DataFrame | None = None
    sources: dict[str, str] = {}
    meta: dict[str, dict] = {}
    levels: dict[str, str] = {}
    for df, source, side in tables:
        is_ses = "session" in df.columns
        keys = ["subject", "session"] if is_ses else ["subject"]
        cols = [c for c in df.columns if c not in keys]
        for c in cols:
            if c in sources:
                raise DataError(f"score column '{c}' is in both {sources[c]} and {source}; "
                                f"rename one of them.")
            sources[c] = source
            levels[c] = "session" if is_ses else "subject"
            if isinstance(side.get(c), Mapping):
                meta[c] = dict(side[c])
        if is_ses:
            session_level = df if session_level is None else session_level.merge(
                df, on=keys, how="outer")
        else:
            subject_level = df if subject_level is None else subject_level.merge(
                df, on=keys, how="outer")
    parts = []
    if subject_level is not None:
        s = subject_level.copy()
        s.insert(1, "session", None)
        parts.append(s)
    if session_level is not None:
        parts.append(session_level)
    if not parts:
        raise DataError("no scores found.")
    out = pd.concat(parts, ignore_index=True, sort=False)
    cols = ["subject", "session"] + [c for c in sources]
    out = out[cols]
    out["session"] = out["session"].astype(object).where(out["session"].notna(), None)
    out.attrs.update({"sources": sources, "descriptions": meta, "levels": levels})
    return out


def load_scores(bids_dir: str | os.PathLike[str], *, participants: bool = True,
                sessions: bool = True, phenotype: bool = True) -> pd.DataFrame:
    """Read participants.tsv, the sessions.tsv files and phenotype/*.tsv of a BIDS dataset.

    Parameters
    ----------
    bids_dir : str or path-like
        Root of the BIDS dataset.
    participants, sessions, phenotype : bool
        Which tables to read: ``participants.tsv`` (subject-level), every
        ``sub-*/sub-*_sessions.tsv`` (session-level) and every ``phenotype/*.tsv``
        (subject-level, or session-level when it has a ``session_id`` column).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject`` (without ``sub-``), ``session`` (without ``ses-``; None on the
        rows of subject-level measures) and one column per score, numeric (float) when every
        value is a number, else text; units as given in the sidecars. ``attrs``:
        ``sources`` {column: file}, ``levels`` {column: 'subject' or 'session'},
        ``descriptions`` {column: sidecar entry (Description, Units, Levels)}.

    Raises
    ------
    DataError
        Missing directory or no table, unreadable table, a table without ``participant_id``,
        duplicated rows, a numeric column with non-numeric entries, or a column name used by
        two tables.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = Path(tmp)
    ...     _ = (root / "participants.tsv").write_text(
    ...         "participant_id\\tarm\\tage\\nsub-01\\tketamine\\t34\\nsub-02\\tplacebo\\t41\\n")
    ...     (root / "phenotype").mkdir()
    ...     _ = (root / "phenotype" / "madrs.tsv").write_text(
    ...         "participant_id\\tsession_id\\tmadrs\\nsub-01\\tses-baseline\\t30\\n"
    ...         "sub-01\\tses-24h\\t12\\nsub-02\\tses-baseline\\t28\\nsub-02\\tses-24h\\t25\\n")
    ...     scores = load_scores(root)
    >>> scores.attrs["levels"]
    {'arm': 'subject', 'age': 'subject', 'madrs': 'session'}
    >>> score_values(scores, "madrs").loc["01"].to_dict()
    {'24h': 12.0, 'baseline': 30.0}
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise DataError(f"BIDS directory not found: {root}")
    tables: list[tuple[pd.DataFrame, str, dict]] = []
    if participants and (root / "participants.tsv").is_file():
        p = root / "participants.tsv"
        tables.append((_normalise(_read_tsv(p), str(p)), str(p), _sidecar(p)))
    if sessions:
        frames = []
        for p in sorted(root.glob("sub-*/sub-*_sessions.tsv")):
            t = _read_tsv(p)
            if "participant_id" not in t.columns:
                t.insert(0, "participant_id", p.name.split("_")[0])
            if "session_id" not in t.columns:
                raise DataError(f"{p}: no 'session_id' column; BIDS sessions.tsv needs one.")
            frames.append(t)
        if frames:
            src = str(root / "sub-*" / "sub-*_sessions.tsv")
            tables.append((_normalise(pd.concat(frames, ignore_index=True), src), src, {}))
    if phenotype:
        for p in sorted((root / "phenotype").glob("*.tsv")):
            tables.append((_normalise(_read_tsv(p), str(p)), str(p), _sidecar(p)))
    if not tables:
        raise DataError(f"no participants.tsv, sessions.tsv or phenotype/*.tsv under {root}.")
    return _combine(tables)


def as_scores(scores: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    """Bring a scores table into the layout of :func:`load_scores`.

    Parameters
    ----------
    scores : pandas.DataFrame, str or path-like
        The result of :func:`load_scores` (returned unchanged), a BIDS directory (read with
        :func:`load_scores`), or any DataFrame with ``participant_id`` (or ``subject``),
        optional ``session_id`` (or ``session``) and score columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``session``, scores; ``attrs`` as :func:`load_scores`.

    Raises
    ------
    DataError
        No subject column, duplicated rows, or a numeric column with non-numeric entries.

    Examples
    --------
    >>> import pandas as pd
    >>> s = as_scores(pd.DataFrame({"participant_id": ["sub-01", "sub-02"],
    ...                             "sucrose_preference": [0.8, 0.6]}))
    >>> s.attrs["levels"], s["subject"].tolist()
    ({'sucrose_preference': 'subject'}, ['01', '02'])
    """
    if isinstance(scores, str | os.PathLike):
        return load_scores(scores)
    if not isinstance(scores, pd.DataFrame):
        raise DataError(f"scores must be a DataFrame or a BIDS directory, not "
                        f"{type(scores).__name__}.")
    if "levels" in scores.attrs and {"subject", "session"} <= set(scores.columns):
        return scores
    df = scores.copy()
    if "session" in df.columns and df["session"].isna().all():
        df = df.drop(columns="session")
    return _combine([(_normalise(df, "scores table"), "scores table", {})])


def score_values(scores: pd.DataFrame, score: str) -> pd.Series | pd.DataFrame:
    """One score, shaped by its level.

    Parameters
    ----------
    scores : pandas.DataFrame
        Scores table (:func:`load_scores` / :func:`as_scores`).
    score : str
        Score column.

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Subject-level score: a Series indexed by subject. Session-level score: a DataFrame
        subject x session (NaN where not measured). Values in the score's own units.

    Raises
    ------
    DataError
        Unknown column (the message lists the score columns and their files).

    Examples
    --------
    >>> import pandas as pd
    >>> s = as_scores(pd.DataFrame({"participant_id": ["01"], "sucrose_preference": [0.8]}))
    >>> score_values(s, "sucrose_preference").to_dict()
    {'01': 0.8}
    """
    scores = as_scores(scores)
    levels = scores.attrs.get("levels", {})
    if score not in levels:
        listed = {c: scores.attrs.get("sources", {}).get(c, "?") for c in levels}
        raise DataError(f"score '{score}' not found; score columns (file): {listed}. Check the "
                        f"column name in participants.tsv / sessions.tsv / phenotype/*.tsv.")
    if levels[score] == "subject":
        s = scores[scores["session"].isna()].set_index("subject")[score]
        return s[s.notna()]
    t = scores[scores["session"].notna()]
    wide = t.pivot(index="subject", columns="session", values=score)
    wide.columns.name = None
    return wide


def _score_source(scores: pd.DataFrame, score: str) -> str:
    """The file a score column came from (``'scores table'`` for an in-memory table)."""
    return str(scores.attrs.get("sources", {}).get(score, "scores table"))


def _check_subjects(scores: pd.DataFrame, subjects: list[str], what: str,
                   unknown_subjects: str) -> list[str]:
    """Subjects of the scores that are not in the group dataset: raise, or return them."""
    if unknown_subjects not in ("raise", "exclude"):
        raise DesignError(f"unknown_subjects must be 'raise' or 'exclude', not "
                          f"{unknown_subjects!r}")
    known = set(subjects)
    unknown = sorted({str(s) for s in scores["subject"]} - known)
    if unknown and unknown_subjects == "raise":
        raise DataError(f"{what} lists subjects that are not in the group dataset: "
                        f"{['sub-' + s for s in unknown[:20]]}"
                        f"{' ...' if len(unknown) > 20 else ''}. Remove them from the table, "
                        f"check the participant_id spelling, or pass "
                        f"unknown_subjects='exclude' to leave them out (they are then listed "
                        f"in the result).")
    return unknown
