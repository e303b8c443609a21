"""Run the full pipeline on the bundled phantom dataset and print the report path.

``sv2a demo [OUT_DIR]`` runs the participant level (1TCM where blood exists, SRTM2 and SUVR
with the centrum semiovale, voxelwise SRTM2) and the group level (SRTM2 BPND, % change from
baseline per arm) on ``demo_data/`` — a phantom ketamine study (2 arms x 3 subjects x 2
sessions, [11C]UCB-J, 7 mm voxels, arterial blood for some subjects) made by
``demo_data/code/make_demo.py``. If ``demo_data/`` is not found (e.g. a wheel install) the same
dataset is simulated first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..phantom.cohort import Cohort

__all__ = ["add_arguments", "main", "make_demo_data", "find_demo_data", "DEMO_SETTINGS",
           "EXAMPLES"]

EXAMPLES = """examples:
  sv2a demo                  # writes ./sv2a_demo/, prints the report path
  sv2a demo /tmp/demo --nprocs 2
  sv2a demo --regenerate     # simulate the phantom dataset afresh instead of demo_data/
"""

#: Arguments of :func:`sv2a.phantom.make_cohort` for the demo dataset.
DEMO_SETTINGS: dict[str, Any] = {
    "design": "ketamine-human-pcc",  # posterior cingulate +5 % at 24 h, +3 % at 7 d
    "seed": 2025,
    "n_subjects": 6,                 # 2 arms x 3 subjects, baseline + one follow-up each
    "voxel_mm": 7.0,                 # coarse grid: 27 x 32 x 27 voxels, 39 frames
    "noise": 0.5,
    "blood": ["sub-01", "sub-02", "sub-04"],
    "compresslevel": 9,
}


def make_demo_data(out_dir: str | os.PathLike[str], *, force: bool = False,
                   nprocs: int = 1) -> Cohort:
    """Simulate the demo dataset (BIDS + ``truth.tsv`` + ``design.json``).

    Parameters
    ----------
    out_dir : path
        Dataset root.
    force : bool
        Overwrite a phantom dataset already there.
    nprocs : int
        Scans simulated in parallel processes (the files do not depend on it).

    Returns
    -------
    sv2a.phantom.Cohort
        What :func:`sv2a.phantom.make_cohort` wrote.
    """
    from ..phantom import make_cohort

    return make_cohort(out_dir, force=force, nprocs=nprocs, **DEMO_SETTINGS)


def find_demo_data() -> Path | None:
    """The bundled demo dataset.

    Returns
    -------
    Path or None
        ``demo_data/`` of the package data or the source tree, or ``./demo_data``; ``None``
        when none is found.
    """
    from ..resources import demo_data_dir

    for cand in (demo_data_dir(), Path.cwd() / "demo_data"):
        if (cand / "dataset_description.json").exists() and any(cand.glob("sub-*")):
            return cand
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``sv2a demo`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``demo`` sub-command parser.

    Returns
    -------
    None
    """
    parser.add_argument("out_dir", nargs="?", default="sv2a_demo",
                        help="output folder (default ./sv2a_demo)")
    parser.add_argument("--nprocs", type=int, default=None,
                        help="parallel processes (default: min(2, CPU count))")
    parser.add_argument("--regenerate", action="store_true",
                        help="simulate the phantom dataset into OUT_DIR/bids first")
    parser.add_argument("--force", action="store_true", help="recompute everything")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    """Run ``sv2a demo``: simulate the data if needed, then the participant and group levels.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (:func:`add_arguments`).

    Returns
    -------
    int
        0 when every scan succeeded, else 1.
    """
    from .config import PipelineConfig
    from .execute import run_participant
    from .group import run_group

    t0 = time.perf_counter()
    out = Path(args.out_dir)
    # the same rule as `sv2a run`: an explicit value must be >= 1 (PipelineConfig checks it)
    nprocs = (args.nprocs if args.nprocs is not None
              else max(1, min(2, os.cpu_count() or 1)))
    if nprocs < 1:
        raise ConfigError(f"--nprocs must be an integer >= 1, got {nprocs}")
    bids = None if args.regenerate else find_demo_data()
    if bids is None:
        bids = out / "bids"
        if not (bids / "dataset_description.json").exists() or args.regenerate:
            print(f"simulating the demo dataset into {bids} ...", file=sys.stderr)
            make_demo_data(bids, force=True, nprocs=nprocs)
    deriv = out / "derivatives"
    cfg = PipelineConfig(models=["1tcm", "srtm2", "suvr"], voxelwise=True,
                         voxelwise_models=["srtm2"], nprocs=nprocs, force=args.force,
                         exclude_regions=["ventricles", "scalp", "white_matter"],
                         group_model="srtm2", outcome="BPND").validate()
    summary = run_participant(bids, deriv, cfg, quiet=args.quiet)
    print(summary.line(deriv))
    res = run_group(bids, deriv, cfg, quiet=args.quiet)
    print(res.line())
    subs = sorted(deriv.glob("sub-*.html"))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; open the reports:")
    print(f"  {Path(res.report).resolve()}")
    if subs:
        print(f"  {subs[0].resolve()} (one per subject)")
    return 0 if summary.ok else 1
