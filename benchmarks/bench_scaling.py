"""How whole-process time and peak memory of parametric maps grow with the image size.

For each grid from 48x48x32 to the HRRT's 256x256x207 (30 frames, float32, the same fraction
of fitted and reference voxels as benchmarks/bench_hrrt.py), writes the phantom NIfTI into a
scratch folder under /tmp, runs each map in a fresh Python process (``sv2a.load_pet`` ->
``sv2a.parametric_maps`` -> ``to_nifti``) and prints wall time, CPU time and peak RSS, then
the cost of each extra million voxels from one grid to the next and the exponent p of
(cost - start-up) ~ voxels^p, the start-up being the whole process on a 16x16x12 grid (p = 1:
linear in voxels; below 1: sub-linear, fixed costs still amortising).

    python benchmarks/bench_scaling.py
    python benchmarks/bench_scaling.py --models srtm srtm2     # srtm2 = coupled k2'
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hrrt import whole_process, write_phantom  # noqa: E402

#: the first grid is the start-up reference: (a few thousand voxels: imports, interpreter)
SHAPES = [(16, 16, 12), (48, 48, 32), (96, 96, 64), (128, 128, 104), (192, 192, 156),
          (256, 256, 207)]


def _line(n: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares a + b n."""
    b, a = np.polyfit(n, y, 1)
    return float(a), float(b)


def _exponent(n: np.ndarray, y: np.ndarray) -> float:
    """p of ``y - y[0] ∝ (n - n[0])^p`` over the grids after the first (least squares in
    log-log): 1 linear, below 1 sub-linear (fixed costs still amortising), above 1 worse."""
    dn, dy = n[1:] - n[0], y[1:] - y[0]
    ok = dy > 0
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(dn[ok]), np.log(dy[ok]), 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["srtm", "srtm2"])
    ap.add_argument("--repeats", type=int, default=3, help="processes per grid (median)")
    args = ap.parse_args(argv)
    rows: dict[str, list[tuple[int, dict]]] = {m: [] for m in args.models}
    print(f"{'grid':>16s} {'voxels':>10s} {'model':6s} {'wall s':>7s} {'cpu s':>7s} "
          f"{'maps s':>7s} {'peak RSS MiB':>12s} {'cpu us/vox':>10s}")
    for shape in SHAPES:
        folder = Path(tempfile.mkdtemp(prefix="sv2a_scaling_", dir="/tmp"))
        try:
            pet, atlas = write_phantom(folder, shape)
            n = int(np.prod(shape))
            for model in args.models:
                runs = [whole_process(pet, atlas, model, {}, folder / "out")
                        for _ in range(args.repeats)]
                r = {k: float(np.median([x[k] for x in runs]))
                     for k in ("wall_outside", "cpu", "maps", "rss")}
                rows[model].append((n, r))
                print(f"{'x'.join(map(str, shape)):>16s} {n:10d} {model:6s} "
                      f"{r['wall_outside']:7.2f} {r['cpu']:7.2f} {r['maps']:7.2f} "
                      f"{r['rss'] / 2**20:12.0f} {1e6 * r['cpu'] / n:10.3f}", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nabove start-up (the {'x'.join(map(str, SHAPES[0]))} grid): cost per extra Mvoxel "
          "from one grid to the next, and the exponent p of (cost - start-up) ~ voxels^p "
          "(1: linear; below 1: sub-linear)")
    for model, rs in rows.items():
        n = np.array([x for x, _ in rs], dtype=float)
        for key, unit, scale in [("wall_outside", "s", 1.0), ("cpu", "s", 1.0),
                                 ("rss", "MiB", 2.0**-20)]:
            y = np.array([r[key] for _, r in rs]) * scale
            steps = np.diff(y)[1:] / np.diff(n)[1:] * 1e6
            a, b = _line(n, y)
            print(f"  {model:6s} {key:12s} per Mvoxel: "
                  + " ".join(f"{v:7.3f}" for v in steps)
                  + f" {unit}   p = {_exponent(n, y):4.2f}   (line: a = {a:.2f} {unit}, "
                  f"b = {b * 1e6:.3f} {unit}/Mvoxel)")
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = main()
    print(f"({time.perf_counter() - t0:.0f} s)")
    sys.exit(rc)
