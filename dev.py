#!/usr/bin/env python3
"""Set up and run sv2a from a clone: the two Quickstart commands of README.md.

    python3 dev.py demo [OUT_DIR] [sv2a demo options]   install sv2a, run ``sv2a demo``
    python3 dev.py test [pytest arguments]              install sv2a[dev], run the checks

Both create a project-local virtual environment ``.venv`` (``python3 -m venv``) and install
this clone into it in editable mode with pip, so they work where the system pip refuses to
install (PEP 668, Debian/Ubuntu system Python) and source edits need no reinstall. The install
is skipped when .venv already holds this clone installed in editable mode with every
requirement of pyproject.toml (and the extras asked for) satisfied -- whether dev.py or a hand
install (README "Install") put it there; a new or changed requirement triggers a reinstall.

``test`` runs, in order, ``ruff check sv2a tests benchmarks``, ``mypy sv2a
--ignore-missing-imports``, ``mypy --strict --ignore-missing-imports --follow-imports=silent
sv2a/models`` and ``python -m pytest -q`` with the extra arguments (e.g. ``-m "not slow"``,
``tests/test_readme.py``, ``-x``); pytest also runs the doctests of the package (see
pyproject.toml). All of them run; the exit code is 1 if any failed. CI (``.ci/run``) runs
these two commands after README's install.

Only the standard library is used here: this file runs before anything is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
MIN_PYTHON = (3, 11)

CHECKS: list[tuple[str, list[str]]] = [
    ("ruff", ["-m", "ruff", "check", "sv2a", "tests", "benchmarks"]),
    ("mypy", ["-m", "mypy", "sv2a", "--ignore-missing-imports"]),
    ("mypy --strict (sv2a/models)",
     ["-m", "mypy", "--strict", "--ignore-missing-imports", "--follow-imports=silent",
      "sv2a/models"]),
]

USAGE = """usage: python3 dev.py demo [OUT_DIR] [sv2a demo options]
       python3 dev.py test [pytest arguments]

  demo   create .venv if needed, install sv2a into it, run `sv2a demo`
  test   create .venv if needed, install sv2a[dev] into it, run ruff, mypy and pytest
         (extra arguments go to pytest, e.g. -m "not slow" or tests/test_readme.py)"""


def venv_python() -> Path:
    """The interpreter of the project environment (POSIX or Windows layout)."""
    posix = VENV / "bin" / "python"
    return posix if posix.exists() or os.name != "nt" else VENV / "Scripts" / "python.exe"


def venv_script(name: str) -> Path:
    """A console script installed in the project environment."""
    return venv_python().parent / (name + (".exe" if os.name == "nt" else ""))


def fail(message: str) -> None:
    """Print an error for the user and exit with status 2."""
    print(f"dev.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def ensure_venv() -> None:
    """Create .venv with the running interpreter unless a working one exists."""
    py = venv_python()
    if py.exists() and subprocess.run([str(py), "-c", "import sys"],
                                      capture_output=True).returncode == 0:
        return
    print(f"dev.py: creating the virtual environment {VENV}", flush=True)
    done = subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)])
    if done.returncode != 0 or not venv_python().exists():
        fail("could not create the virtual environment .venv with `python3 -m venv`. On "
             "Debian/Ubuntu install the venv module first (`sudo apt install python3-venv`), "
             "then run this command again.")


#: Run with the project interpreter: exit 0 when this clone is installed in editable mode and
#: every requirement of pyproject.toml (base and the extras in argv[2]) is satisfied.
_INSTALLED = r"""
import json, sys, tomllib, importlib.metadata as md
from pathlib import Path
from pip._vendor.packaging.requirements import Requirement
root, extras = Path(sys.argv[1]), [e for e in sys.argv[2].split(",") if e]
try:
    url = json.loads(md.distribution("sv2a").read_text("direct_url.json") or "{}")
except md.PackageNotFoundError:
    sys.exit(1)
if not (url.get("dir_info", {}).get("editable")
        and Path(url.get("url", "").removeprefix("file://")).resolve() == root):
    sys.exit(1)
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
reqs = list(project.get("dependencies", []))
for e in extras:
    reqs += project.get("optional-dependencies", {}).get(e, [])
for text in reqs:
    req = Requirement(text)
    try:
        ok = req.specifier.contains(md.version(req.name), prereleases=True)
    except md.PackageNotFoundError:
        ok = False
    if not ok:
        sys.exit(1)
"""


def ensure_installed(extras: set[str]) -> None:
    """pip-install this clone (editable) with ``extras`` unless .venv already has it."""
    ensure_venv()
    # -I: the clone's own sv2a.egg-info (left by setuptools) must not shadow .venv's record
    have = subprocess.run([str(venv_python()), "-I", "-c", _INSTALLED, str(ROOT),
                           ",".join(sorted(extras))], capture_output=True)
    if have.returncode == 0:
        return
    target = "." + (f"[{','.join(sorted(extras))}]" if extras else "")
    print(f"dev.py: installing sv2a{target[1:]} into .venv (editable; once per change of the "
          "requirements)", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([str(venv_python()), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", "-e", target], cwd=ROOT)
    if done.returncode != 0:
        fail(f"`pip install -e \"{target}\"` failed in .venv (see pip's message above); fix "
             "the cause (network, a missing compiler) and run this command again.")
    print(f"dev.py: installed in {time.perf_counter() - t0:.0f} s", flush=True)


def run_demo(args: list[str]) -> int:
    """Install sv2a and run ``sv2a demo`` with ``args``; return its exit code."""
    ensure_installed(set())
    return subprocess.run([str(venv_script("sv2a")), "demo", *args], cwd=ROOT).returncode


def run_test(args: list[str]) -> int:
    """Install sv2a[dev], run ruff, both mypy checks and pytest ``args``; return 0 if all pass."""
    ensure_installed({"dev"})
    py = str(venv_python())
    steps = [*CHECKS, ("pytest", ["-m", "pytest", "-q", *args])]
    failed = []
    for name, cmd in steps:
        print(f"\n== {name}: python {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run([py, *cmd], cwd=ROOT).returncode
        print(f"== {name}: {'ok' if code == 0 else f'FAILED (exit {code})'} "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    print("\ndev.py test: " + (f"FAILED: {', '.join(failed)}" if failed else "all checks passed"))
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """Dispatch ``demo`` / ``test``; return the process exit code."""
    if sys.version_info < MIN_PYTHON:
        fail(f"sv2a needs Python >= {'.'.join(map(str, MIN_PYTHON))}; this is "
             f"{sys.version.split()[0]}. Run this file with a newer python3.")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        return run_demo(rest)
    if command == "test":
        return run_test(rest)
    print(USAGE, file=sys.stderr)
    fail(f"unknown command {command!r}: use `demo` or `test`")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
