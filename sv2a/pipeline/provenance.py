"""Content hashes of every input of a scan, and which of them changed since its last run.

The done-marker of a scan records, per input, a BLAKE2b content hash: every file of
:meth:`sv2a.bids.Scan.input_files` (PET image and sidecar, blood tables and sidecars,
segmentation and label table, inherited sidecars), the atlas and label table given in the
configuration, the values of the subject's row of ``participants.tsv`` (not the whole file:
editing another subject's row does not redo this scan) and the participant-level settings.
A scan is redone when any hash differs; ``touch`` alone does not redo it.

To keep the skip check cheap on multi-GB images, a file whose size and ``mtime_ns`` are those
recorded in the marker is not read again: its recorded hash is reused. A content change that
keeps both size and modification time (rare; e.g. a tool that restores the time stamp) is
therefore not seen; ``--force`` redoes such a scan.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["HASH", "file_digest", "value_digest", "input_digests", "changed_inputs",
           "changed_files", "same_stat"]

#: Name of the hash in the records (``hashlib.blake2b`` with a 16-byte digest).
HASH = "blake2b"

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str], previous: Mapping[str, Any] | None = None
                ) -> dict[str, Any] | None:
    """Size, modification time and content hash of a file.

    Parameters
    ----------
    path : path
        The file.
    previous : mapping, optional
        Its record from the last run; its hash is reused when size and ``mtime_ns`` match.

    Returns
    -------
    dict or None
        ``{"size": bytes, "mtime_ns": ns, "blake2b": hex}``; ``None`` when the file cannot be
        read.
    """
    p = Path(path)
    try:
        st = p.stat()
        if (previous and previous.get("size") == st.st_size
                and previous.get("mtime_ns") == st.st_mtime_ns and previous.get(HASH)):
            return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, HASH: previous[HASH]}
        h = hashlib.blake2b(digest_size=16)
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, HASH: h.hexdigest()}


def value_digest(value: Any) -> dict[str, str]:
    """Content hash of plain values (a participants row, settings).

    Parameters
    ----------
    value : JSON-like
        Dicts, lists, strings, numbers (other types by their ``str``).

    Returns
    -------
    dict
        ``{"blake2b": hex}`` of the canonical JSON text (sorted keys).
    """
    text = json.dumps(value, sort_keys=True, default=str)
    return {HASH: hashlib.blake2b(text.encode(), digest_size=16).hexdigest()}


def _key(path: Path, root: Path) -> str:
    """The record key of a file: relative to the dataset when inside it, else absolute."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def input_digests(files: Iterable[str | os.PathLike[str] | None], root: str | os.PathLike[str],
                  values: Mapping[str, Any], previous: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The input record of a scan: a digest per file and per named value.

    Parameters
    ----------
    files : iterable of path or None
        Input files (``None`` entries are left out).
    root : path
        The dataset root; keys of files inside it are relative to it.
    values : mapping
        ``{name: JSON-like value}`` (e.g. ``"participants.tsv[sub-01]"``: the row's values,
        ``"configuration"``: the settings); each hashed with :func:`value_digest`.
    previous : mapping, optional
        The record of the last run (file hashes reused when size and mtime are unchanged).

    Returns
    -------
    dict
        ``{key: digest}`` (``None`` for an unreadable file), keys sorted.
    """
    prev = previous or {}
    out: dict[str, Any] = {}
    for f in files:
        if f is None:
            continue
        key = _key(Path(f), Path(root))
        old = prev.get(key)
        out[key] = file_digest(f, old if isinstance(old, Mapping) else None)
    for name, v in values.items():
        out[name] = value_digest(v)
    return dict(sorted(out.items()))


def _hash_of(d: Any) -> Any:
    return d.get(HASH) if isinstance(d, Mapping) else d


def changed_inputs(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]
                   ) -> list[str]:
    """What differs between the inputs recorded in a done-marker and the current ones.

    Parameters
    ----------
    recorded : mapping or None
        ``inputs`` of the done-marker (``None``: a marker without a record).
    current : mapping
        :func:`input_digests` now.

    Returns
    -------
    list of str
        ``"<key> changed"`` (keys: file paths relative to the dataset, absolute outside
        it, or value names), ``"<key> is new"``, ``"<key> was removed"`` or
        ``"<key> unreadable"``; empty when nothing changed.
    """
    if recorded is None:
        return ["the input record (the scan was done by an older sv2a)"]
    out = []
    for key in sorted(set(recorded) | set(current)):
        name = key
        if key not in recorded:
            out.append(f"{name} is new")
        elif key not in current:
            out.append(f"{name} was removed")
        elif current[key] is None:
            out.append(f"{name} unreadable")
        elif _hash_of(recorded[key]) != _hash_of(current[key]):
            out.append(f"{name} changed")
    return out


def changed_files(recorded: Mapping[str, Any] | None, root: str | os.PathLike[str]
                  ) -> list[str]:
    """Which recorded input files differ now (the recorded values, such as a participants
    row or the settings, are not looked at).

    Parameters
    ----------
    recorded : mapping or None
        ``inputs`` of a done-marker (:func:`input_digests`).
    root : path
        The dataset root the recorded keys are relative to.

    Returns
    -------
    list of str
        ``"<key> changed"`` or ``"<key> is missing"``; empty when every file is as recorded
        (a recorded hash is reused when size and mtime are unchanged).
    """
    out = []
    for key, old in (recorded or {}).items():
        if not isinstance(old, Mapping) or "size" not in old:  # a value, not a file
            continue
        now = file_digest(Path(key) if Path(key).is_absolute() else Path(root) / key, old)
        if now is None:
            out.append(f"{key} is missing")
        elif now[HASH] != old.get(HASH):
            out.append(f"{key} changed")
    return out


def same_stat(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> bool:
    """Whether sizes and modification times equal those recorded (no rehash needed next time).

    Parameters
    ----------
    recorded : mapping or None
        ``inputs`` of the done-marker.
    current : mapping
        :func:`input_digests` now.

    Returns
    -------
    bool
        False when a file's ``mtime_ns`` or size differs (e.g. after ``touch``).
    """
    if not recorded:
        return False
    for key, d in current.items():
        old = recorded.get(key)
        if isinstance(d, Mapping) and "mtime_ns" in d and (
                not isinstance(old, Mapping) or old.get("mtime_ns") != d["mtime_ns"]
                or old.get("size") != d["size"]):
            return False
    return True
