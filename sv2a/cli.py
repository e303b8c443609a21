"""The ``sv2a`` command line.

Each sub-command lives in its own module, which defines ``add_arguments(parser)``,
``main(args) -> int`` and optionally an ``EXAMPLES`` string shown by ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import Sv2aError

_COMMANDS = {
    "demo": "sv2a.pipeline.demo",
    "phantom": "sv2a.phantom.cli",
    "validate": "sv2a.validate",
    "run": "sv2a.pipeline.cli",
    "models": "sv2a.pipeline.catalog",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``sv2a`` parser with one sub-parser per installed sub-command.

    Returns
    -------
    argparse.ArgumentParser
        Sub-commands set ``_module`` (the module whose ``main`` runs them).
    """
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
    for name, modname in _COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name and modname.startswith(exc.name):
                continue  # sub-command not installed in this build
            raise
        doc = (mod.__doc__ or name).strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc,
                           epilog=getattr(mod, "EXAMPLES", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


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
    parser = build_parser()
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
