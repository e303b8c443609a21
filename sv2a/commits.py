"""What readers of a derivatives folder may see: only committed scans.

A scan is committed when its done-marker (``sub-*/[ses-*/]pet/.<stem>_sv2a-done.json``,
written last by :func:`sv2a.pipeline.participant.process_scan`) is valid JSON naming its
stem and listing its outputs; readers see exactly the listed files (those still on disk: one
deleted by hand later is simply absent, and the participant level redoes that scan). Files
of a scan whose commit was interrupted (outputs moved, marker not yet written) and files no
marker lists are invisible: :func:`committed_view` gives readers a folder holding hard links
to the committed outputs only, a consistent snapshot even while another run commits.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["done_markers", "committed_scans", "committed_view", "journal_path",
           "commits_under_way"]


def journal_path(marker: str | os.PathLike[str]) -> Path:
    """The commit journal beside a scan's done-marker, present while its commit is under way
    (or after it was interrupted).

    Parameters
    ----------
    marker : path
        ``.../pet/.<stem>_sv2a-done.json``.

    Returns
    -------
    Path
        ``.../pet/.<stem>_sv2a-commit.json``.
    """
    m = Path(marker)
    return m.with_name(m.name.replace("_sv2a-done.json", "_sv2a-commit.json"))


def commits_under_way(out_dir: str | os.PathLike[str]) -> set[str]:
    """Stems of the scans whose commit is under way or was interrupted (a journal exists):
    their files on disk may mix two runs and must not be read.

    Parameters
    ----------
    out_dir : path
        Derivatives root.

    Returns
    -------
    set of str
        Scan stems (``sub-01_ses-bl``).
    """
    return {j.name[1:-len("_sv2a-commit.json")]
            for j in Path(out_dir).glob("sub-*/**/pet/.*_sv2a-commit.json")}


def _safe_rel(rel: object) -> str | None:
    """A marker's output path when it is a plain relative path inside OUT, else None."""
    if not isinstance(rel, str) or not rel:
        return None
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        return None
    return p.as_posix()


def done_markers(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The readable done-markers of a derivatives folder.

    Parameters
    ----------
    out_dir : path
        Derivatives root.

    Returns
    -------
    dict
        ``{stem: marker content}`` of every ``.<stem>_sv2a-done.json`` that holds a JSON
        object naming its own stem (unreadable or foreign markers are left out).
    """
    found: dict[str, dict[str, Any]] = {}
    for mk in sorted(Path(out_dir).glob("sub-*/**/pet/.*_sv2a-done.json")):
        try:
            m = json.loads(mk.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        stem = mk.name[1:-len("_sv2a-done.json")]
        if isinstance(m, dict) and m.get("stem") == stem:
            found[stem] = m
    return found


def committed_scans(out_dir: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The committed scans of a derivatives folder and their outputs.

    Parameters
    ----------
    out_dir : path
        Derivatives root.

    Returns
    -------
    dict
        ``{stem: [output paths relative to OUT]}`` of every scan whose done-marker is valid,
        its listed outputs that exist (a marker that lists failed models still commits the
        other outputs).
    """
    out = Path(out_dir)
    found: dict[str, list[str]] = {}
    for stem, m in done_markers(out).items():
        if not isinstance(m.get("outputs"), list):
            continue
        rels = [_safe_rel(r) for r in m["outputs"]]
        if None in rels:
            continue
        found[stem] = [r for r in rels if r is not None and (out / r).is_file()]
    return found


def _link(src: Path, dst: Path) -> None:
    """Hard link (a snapshot), else symbolic link, else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        try:
            dst.symlink_to(src.resolve())
        except OSError:
            shutil.copy2(src, dst)


@contextlib.contextmanager
def committed_view(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder laid out like OUT that holds only the committed scans' outputs.

    Parameters
    ----------
    out_dir : path
        Derivatives root.

    Returns
    -------
    contextmanager of Path
        The folder (hidden, inside OUT; removed on exit). It also holds OUT's top-level
        files and ``sub-*/sub-*_sessions.tsv`` tables.
    """
    out = Path(out_dir)
    view = Path(tempfile.mkdtemp(dir=out, prefix=".sv2a-view-"))
    try:
        for files in committed_scans(out).values():
            for rel in files:
                with contextlib.suppress(FileNotFoundError):  # replaced meanwhile
                    _link(out / rel, view / rel)
        extra = [p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")]
        extra += list(out.glob("sub-*/sub-*_sessions.tsv"))
        for p in extra:
            _link(p, view / p.relative_to(out))
        yield view
    finally:
        shutil.rmtree(view, ignore_errors=True)
