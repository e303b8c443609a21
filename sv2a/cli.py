"""The ``sv2a`` command line.

Each sub-command lives in its own module, which defines ``add_arguments(parser)``,
``main(args) -> int`` and optionally an ``EXAMPLES`` string shown by ``--help``. Only the
module of the sub-command being run is imported, so ``sv2a --help`` starts in a few tens of
milliseconds (no NumPy, xarray or SciPy); each sub-command's one-line summary is listed here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable
from pathlib import Path

from . import __version__
from .errors import Sv2aError

#: sub-command -> (module defining ``add_arguments``/``main``, one-line summary = the first
#: line of the module docstring; tests/test_startup_io.py checks they agree)
_COMMANDS = {
    "demo": ("sv2a.pipeline.demo",
             "Run the full pipeline on the bundled phantom dataset and print the report path."),
    "phantom": ("sv2a.phantom.cli",
                "Simulate an SV2A PET study (BIDS + ground truth) with the phantom generator."),
    "validate": ("sv2a.validate",
                 "Check a BIDS PET dataset: timing, sidecars, units, blood, segmentations."),
    "run": ("sv2a.pipeline.cli",
            "Process a BIDS PET dataset: participant level (TACs, fits, maps, reports) or "
            "group level."),
    "models": ("sv2a.pipeline.catalog",
               "List the kinetic models: kind, scales (regional fits, voxelwise maps), "
               "parameters, options."),
}


def _installed(modname: str) -> bool:
    """Whether the module's source file exists, found without importing its package."""
    base = Path(__file__).resolve().parent.joinpath(*modname.split(".")[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``sv2a`` parser with one sub-parser per installed sub-command.

    Parameters
    ----------
    commands : iterable of str, optional
        Sub-commands whose module is imported and whose arguments are added (default all).
        The others get a sub-parser with their summary only, enough for ``sv2a --help``:
        :func:`main` passes just the sub-command on the command line, so starting ``sv2a``
        imports nothing else.

    Returns
    -------
    argparse.ArgumentParser
        Sub-commands with arguments set ``_module`` (the module whose ``main`` runs them).

    Examples
    --------
    >>> p = build_parser(commands=[])
    >>> "validate" in p.format_help()
    True
    """
    full = set(_COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="sv2a",
        description="Synaptic density from SV2A PET: kinetic models, parametric maps, BIDS "
                    "batch processing and longitudinal statistics.",
        epilog="examples:\n  sv2a demo\n  sv2a validate /data/bids\n  sv2a models\n"
               "  sv2a run /data/bids /data/derivatives/sv2a participant --model srtm2 suvr",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sv2a {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (modname, summary) in _COMMANDS.items():
        if not _installed(modname):
            continue  # sub-command not installed in this build
        if name not in full:
            sub.add_parser(name, help=summary, description=summary)
            continue
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name and modname.startswith(exc.name):
                continue  # sub-command not installed in this build
            raise
        doc = (mod.__doc__ or summary).strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc,
                           epilog=getattr(mod, "EXAMPLES", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The sub-command named on the command line: the first argument not starting with ``-``
    (the top-level parser has only flags without values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Run the ``sv2a`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 success, 1 an sv2a error (printed as one line), 2 usage error or no
        sub-command, 130 interrupted.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd = _command_of(argv)
    parser = build_parser(commands=[cmd] if cmd in _COMMANDS else [])
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.main(args) or 0)
    except Sv2aError as exc:
        print(f"sv2a {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sv2a {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
