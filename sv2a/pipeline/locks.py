"""One lock per scan, so that two sv2a runs on one output folder never work on the same scan.

A run takes ``OUT/.sv2a-work/locks/<stem>.lock`` with :func:`fcntl.flock` (exclusive,
non-blocking) around the processing of a scan and writes its pid, host and start time into
it. The operating system releases the lock when the process dies, so a lock file left by a
killed run is harmless: the next run simply takes it. A scan's staging folders
(``OUT/.sv2a-work/staging/<stem>.<host>.<pid>.<random>``) belong to whoever holds its lock:
a folder whose lock can be taken has no live owner and is removed (:func:`clean_work`).

Where :mod:`fcntl` does not exist (Windows) no lock is taken and runs are not protected
against each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["WORK_DIR", "lock_path", "acquire", "release", "holder_text", "staging_dir",
           "clean_staging", "clean_work"]

WORK_DIR = ".sv2a-work"


def lock_path(out_dir: str | os.PathLike[str], stem: str) -> Path:
    """The lock file of a scan.

    Parameters
    ----------
    out_dir : path
        Derivatives root.
    stem : str
        Scan stem (``sub-01_ses-bl``).

    Returns
    -------
    Path
        ``OUT/.sv2a-work/locks/<stem>.lock``.
    """
    return Path(out_dir) / WORK_DIR / "locks" / f"{stem}.lock"


def _open_locked(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path`` (created if needed), or ``None`` when
    another process holds it. Retries when the file was removed or replaced meanwhile."""
    for _ in range(20):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed by a cleanup: make it again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # removed by a cleanup between open and flock: take the new file
    raise OSError(f"{path}: could not take the lock (the file keeps being replaced)")


def acquire(path: str | os.PathLike[str]) -> int | None:
    """Take a scan lock without waiting and record who holds it.

    Parameters
    ----------
    path : path
        The lock file (:func:`lock_path`).

    Returns
    -------
    int or None
        A handle for :func:`release` (``-1`` where locks are not supported); ``None`` when
        another live process holds the lock.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return -1
    fd = _open_locked(Path(path))
    if fd is None:
        return None
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd


def release(fd: int | None) -> None:
    """Release a lock taken by :func:`acquire` (the file stays for the next run).

    Parameters
    ----------
    fd : int or None
        The handle returned by :func:`acquire`.

    Returns
    -------
    None
    """
    if fd is None or fd < 0:
        return
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def holder_text(path: str | os.PathLike[str]) -> str:
    """Who holds a scan lock, for messages.

    Parameters
    ----------
    path : path
        The lock file.

    Returns
    -------
    str
        ``"pid 123 on host since 2026-01-01T10:00:00"`` (or ``"an unknown process"``).
    """
    try:
        info: Any = json.loads(Path(path).read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "an unknown process"


def staging_dir(out_dir: str | os.PathLike[str], stem: str) -> Path:
    """A new private staging folder of a scan (for the holder of the scan's lock).

    Parameters
    ----------
    out_dir : path
        Derivatives root.
    stem : str
        Scan stem.

    Returns
    -------
    Path
        ``OUT/.sv2a-work/staging/<stem>.<host>.<pid>.<random>`` (not created).
    """
    name = f"{stem}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    return Path(out_dir) / WORK_DIR / "staging" / name


def clean_staging(out_dir: str | os.PathLike[str], stem: str) -> None:
    """Remove a scan's staging folders left by dead runs; the caller holds the scan's lock.

    Parameters
    ----------
    out_dir : path
        Derivatives root.
    stem : str
        Scan stem.

    Returns
    -------
    None
    """
    root = Path(out_dir) / WORK_DIR / "staging"
    if root.is_dir():
        for d in root.iterdir():
            if d.name.split(".", 1)[0] == stem:
                shutil.rmtree(d, ignore_errors=True)


def clean_work(out_dir: str | os.PathLike[str]) -> None:
    """Remove what dead or finished runs left in ``OUT/.sv2a-work``; never what a live run
    uses (staging folders and locks of scans whose lock is held are kept).

    Parameters
    ----------
    out_dir : path
        Derivatives root.

    Returns
    -------
    None
    """
    work = Path(out_dir) / WORK_DIR
    if not work.is_dir():
        return
    stems = set()
    staging = work / "staging"
    if staging.is_dir():
        stems |= {d.name.split(".", 1)[0] for d in staging.iterdir()}
    locks = work / "locks"
    if locks.is_dir():
        stems |= {p.stem for p in locks.glob("*.lock")}
    for stem in sorted(stems):
        path = lock_path(out_dir, stem)
        fd = acquire(path)
        if fd is None:
            continue  # a live run works on this scan
        try:
            clean_staging(out_dir, stem)
            path.unlink(missing_ok=True)  # while held: a waiting opener retries
        finally:
            release(fd)
    for d in (staging, locks, work):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty
    for p in work.glob("*") if work.is_dir() else []:  # leftovers of older sv2a versions
        if p.name not in ("staging", "locks"):
            shutil.rmtree(p, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.rmdir()
