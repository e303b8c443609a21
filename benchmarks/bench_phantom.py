"""Phantom generator speed and calibration numbers; prints a table.

Usage: python benchmarks/bench_phantom.py [--cohort] [--nprocs N]
Targets: one human scan (96 x 112 x 96, UCB-J protocol) <= 10 s simulated, <= 20 s with the
compressed NIfTI, <= 2 GB peak; 12-subject x 2-session human cohort <= 5 min.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from sv2a.io import write_nifti
from sv2a.phantom import make_cohort, make_subject


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cohort", action="store_true", help="also time the 12 x 2 human cohort")
    ap.add_argument("--nprocs", type=int, default=1, metavar="N",
                    help="parallel worker processes for --cohort (default 1)")
    args = ap.parse_args()
    make_subject(voxel_mm=8.0)  # imports, caches
    t0 = time.perf_counter()
    s = make_subject("human", "ucbj", seed=1)
    t_sim = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    write_nifti(tmp / "x_pet.nii.gz", s.image, s.affine)
    t_write = time.perf_counter() - t0
    size = (tmp / "x_pet.nii.gz").stat().st_size / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"human scan {s.image.shape}: simulate {t_sim:.2f} s, write {t_write:.2f} s "
          f"({size:.0f} MB), total {t_sim + t_write:.2f} s, peak RSS {peak:.0f} MB")

    e = make_subject("human", "ucbj", noise=0, fwhm=0, image=False)
    suv = e.tacs / (e.meta["injected_mbq"] / e.meta["body_weight_kg"])
    w = e.frames.overlap_weights(60, 90)
    print(f"{'region':22s} {'SUVpeak':>8s} {'SUV60-90':>9s} {'SUVR_CS':>8s} {'DVR_CS':>7s} "
          f"{'bias%':>6s}")
    for r in e.truth.index:
        x = suv.sel(region=r).values
        t = e.truth.loc[r]
        print(f"{r:22s} {x.max():8.2f} {(x * w).sum() / w.sum():9.2f} {t.SUVR_CS:8.3f} "
              f"{t.DVR_CS:7.3f} {100 * (t.SUVR_CS / t.DVR_CS - 1):6.1f}")
    if args.cohort:
        out = tmp / "cohort"
        t0 = time.perf_counter()
        c = make_cohort(out, "ketamine-human", seed=0, n_subjects=12, nprocs=args.nprocs)
        dt = time.perf_counter() - t0
        print(f"cohort 12 x 2 human ({len(c.scans)} scans, nprocs={args.nprocs}): {dt:.1f} s "
              f"({dt / len(c.scans):.1f} s/scan)")
    shutil.rmtree(tmp, ignore_errors=True)
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
