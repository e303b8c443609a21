"""Simulate an SV2A PET study (BIDS + ground truth) with the phantom generator.

``sv2a phantom OUT_DIR --design ketamine-human`` writes a BIDS dataset (PET images with
sidecars, manual arterial blood, segmentations) plus ``truth.tsv`` (true parameters per scan
and region) and ``design.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

__all__ = ["add_arguments", "main", "EXAMPLES"]

#: Datasets larger than this (bytes) get a size and time estimate before anything is written.
_ANNOUNCE_BYTES = 10**9

EXAMPLES = """examples:
  sv2a phantom ketamine_bids --design ketamine-human --subjects 12 --seed 1
  sv2a phantom pcc_bids --design ketamine-human-pcc --noise 1 --fwhm 4.5
  sv2a phantom exact_bids --design ketamine-human --noise 0 --fwhm 0      # exact data
  sv2a phantom rat_bids --design ketamine-rodent --subjects 8 --voxel-size 0.6
  sv2a phantom small_bids --design my_design.json --voxel-size 4 --blood 0.5 --nprocs 2
  sv2a phantom moving_bids --design ketamine-human --voxel-size 3 --motion 1
  sv2a phantom --list-designs

designs: ketamine-human, ketamine-human-pcc, ketamine-human-flow, ketamine-rodent,
ketamine-rodent-flow, or a JSON file {"species", "tracer", "arms", "sessions", "effects", ...}
(see sv2a.phantom.normalise_design).
"""


def _fwhm(values: list[float] | None) -> float | tuple[float, ...] | None:
    if values is None:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) == 3:
        return tuple(values)
    raise argparse.ArgumentTypeError("--fwhm takes one value or three (x y z) in mm")


def _blood(value: str) -> str | float | list[str]:
    v = value.strip().lower()
    if v in ("all", "none"):
        return v
    try:
        return float(v)
    except ValueError:
        return [s for s in value.replace(",", " ").split() if s]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sv2a phantom`` options to a parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``phantom`` sub-command parser (``--nprocs`` for parallel workers, as in
        ``sv2a run``).

    Returns
    -------
    None
        ``parser`` is modified in place.
    """
    parser.add_argument("out_dir", nargs="?", help="output BIDS directory (must be empty)")
    parser.add_argument("--design", default="ketamine-human",
                        help="design name or JSON file (default: ketamine-human)")
    parser.add_argument("--subjects", type=int, default=None, metavar="N",
                        help="total number of subjects, split evenly over the arms")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--noise", type=float, default=1.0, metavar="X",
                        help="noise level relative to the calibrated preset (1 = design "
                             "15%% voxel CV late in human cortex; 0 = noise free)")
    parser.add_argument("--fwhm", type=float, nargs="+", default=None, metavar="MM",
                        help="PSF FWHM in mm, one value or x y z (default: preset, e.g. 4.5 "
                             "human PET/MR; 0 = no blurring)")
    parser.add_argument("--species", choices=["human", "rat", "mouse"], default=None,
                        help="override the design's species")
    parser.add_argument("--tracer", default=None,
                        help="override the design's tracer (ucbj, synvest1, synvest2)")
    parser.add_argument("--voxel-size", type=float, default=None, metavar="MM",
                        help="voxel size in mm (default: human 2, rat 0.3, mouse 0.15)")
    parser.add_argument("--blood", type=_blood, default="all",
                        help="who gets arterial blood files: all, none, a fraction 0-1, or "
                             "ids (default: all)")
    parser.add_argument("--noise-mode", choices=["voxel", "region"], default="voxel",
                        help="independent voxel noise (default) or one value per region")
    parser.add_argument("--noise-fwhm", type=float, default=0.0, metavar="MM",
                        help="spatial correlation of voxel noise (Gaussian FWHM, mm)")
    parser.add_argument("--frame-average", choices=["uniform", "decay"], default="uniform",
                        help="frame average of the decay-corrected curve: plain (default) or "
                             "decay weighted like a scanner")
    parser.add_argument("--motion", type=float, default=0.0, metavar="LEVEL",
                        help="head motion after 10 min: 0 = still (default), 1 = up to 4 mm "
                             "/ 2 deg, 2 = up to 8 mm / 4 deg; the truth is written as "
                             "*_desc-motiontruth_timeseries.tsv beside each PET")
    parser.add_argument("--nprocs", type=int, default=None, metavar="N",
                        help="parallel worker processes, one scan each (default: the CPU "
                             "cores, at most 4; the files do not depend on N)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty directory (replaces a previous phantom)")
    parser.add_argument("--list-designs", action="store_true",
                        help="print the built-in designs and presets and exit")


def main(args: argparse.Namespace) -> int:
    """Run ``sv2a phantom``: write a simulated BIDS study, or list the designs.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`add_arguments`.

    Returns
    -------
    int
        Exit status (0 = success); errors are raised as :class:`sv2a.errors.Sv2aError` for
        the top-level CLI to report.
    """
    from ..errors import BIDSError
    from .cohort import DESIGNS, estimate_cohort, make_cohort, raw_bytes
    from .tracers import available_presets

    if args.list_designs:
        for name, d in sorted(DESIGNS.items()):
            print(f"{name:22s} {d['species']:6s} {d['tracer']:9s} {d['description']}")
        print("presets: " + ", ".join(available_presets()))
        return 0
    if not args.out_dir:
        raise BIDSError("give an output directory: sv2a phantom OUT_DIR --design ...")
    design = args.design
    if design.endswith(".json") and not Path(design).is_file():
        raise BIDSError(f"design file not found: {design}")
    nprocs = args.nprocs if args.nprocs is not None else max(1, min(os.cpu_count() or 1, 4))
    opts = dict(design=design, seed=args.seed, n_subjects=args.subjects, noise=args.noise,
                fwhm=_fwhm(args.fwhm), voxel_mm=args.voxel_size, blood=args.blood,
                species=args.species, tracer=args.tracer, noise_mode=args.noise_mode,
                noise_fwhm=args.noise_fwhm, frame_average=args.frame_average, nprocs=nprocs,
                motion=args.motion)
    if raw_bytes(design, n_subjects=args.subjects, voxel_mm=args.voxel_size,
                 species=args.species, tracer=args.tracer) > _ANNOUNCE_BYTES:
        est = estimate_cohort(**opts)  # type: ignore[arg-type]
        if est.total_bytes > _ANNOUNCE_BYTES:
            print(f"estimate: {est.describe()} with {nprocs} process(es)", flush=True)
    cohort = make_cohort(args.out_dir, force=args.force, progress=True,
                         **opts)  # type: ignore[arg-type]
    n_scans = len(cohort.scans)
    print(f"wrote {len(cohort.participants)} subjects, {n_scans} scans "
          f"({cohort.design['name']}, {cohort.design['species']} {cohort.design['tracer_name']}) "
          f"to {cohort.path}")
    print(f"ground truth: {cohort.path / 'truth.tsv'}; design: {cohort.path / 'design.json'}")
    arms = {a: len(v) for a, v in cohort.design["subjects"].items()}
    print("arms: " + json.dumps(arms))
    return 0
