"""Speed of regional kinetic-model fits (one core), table-driven.

Each CASE names a model, its options, the number of regions fitted per call and the target
(fits/s). Run: ``python benchmarks/bench_regional.py [--repeat N] [--model M]``.
Regional TACs are 39-frame 1TCM/2TCM curves from a Feng input (human [11C]UCB-J-like)
with ~2 % noise. Every case goes through ``sv2a.fit`` (the regional adapter). CPU time of this
process is reported (robust to other load on the machine) together with wall time.
Reference-tissue models: benchmarks/bench_regional_reference.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _plasma_phantom as ph  # noqa: E402

from sv2a.models import fit  # noqa: E402
from sv2a.tacs import tacs_from_arrays  # noqa: E402

# (label, model, options, regions per call, target fits/s)
CASES = [
    ("1TCM basis vB fixed", "1tcm", {"vB": 0.05}, 20, 1000),
    ("1TCM basis vB fit", "1tcm", {"vB": "fit"}, 20, 1000),
    ("1TCM LM vB fixed", "1tcm", {"vB": 0.05, "method": "nonlinear"}, 20, 1000),
    ("1TCM LM vB fit", "1tcm", {"vB": "fit", "method": "nonlinear"}, 20, 1000),
    ("1TCM LM vB+delay fit", "1tcm", {"vB": "fit", "delay": "fit", "method": "nonlinear"},
     10, None),
    ("1TCM LM kinfitr mid", "1tcm", {"vB": 0.05, "sampling": "mid", "convolution": "kinfitr",
                                     "method": "nonlinear"}, 20, None),
    ("2TCM multistart vB fixed", "2tcm", {"vB": 0.05}, 5, 100),
    ("2TCM multistart vB fit", "2tcm", {"vB": "fit"}, 5, 100),
    ("Logan (t*=30)", "logan", {"tstar": 30.0}, 2000, 5000),
    ("MA1 (t*=30)", "ma1", {"tstar": 30.0}, 2000, 5000),
    ("Logan weighted", "logan", {"tstar": 30.0, "weights": "variance"}, 2000, 5000),
]


def make_tacs(n: int, kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    t0, t1 = ph.frames()
    vals = []
    for _ in range(n):
        vt = rng.uniform(4, 22)
        K1 = rng.uniform(0.15, 0.45)
        if kind == "2tcm":
            k2, k3, k4 = K1 / 3.0, 0.06, 0.06 / (vt / 3.0 - 1)
            clean = ph.frame_average(lambda t, a=(K1, k2, k3, k4): ph.pet(
                t, lambda s: ph.tissue_2tcm(s, *a), vB=0.05), t0, t1, n=16)
        else:
            clean = ph.frame_average(lambda t, a=(K1, K1 / vt): ph.pet(
                t, lambda s: ph.tissue_1tcm(s, *a), vB=0.05), t0, t1, n=16)
        vals.append(clean * (1 + 0.02 * rng.standard_normal(clean.size)))
    return tacs_from_arrays(np.array(vals), t0, t1, [f"r{i}" for i in range(n)],
                            half_life=20.4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=None, help="only cases whose model matches")
    args = ap.parse_args()
    inp = ph.input_function()
    cache = {}
    print(f"{'case':28s} {'regions':>7s} {'fits/s (cpu)':>13s} {'fits/s (wall)':>14s} "
          f"{'target':>7s}  ok")
    for label, model, opts, n, target in CASES:
        if args.model and args.model != model:
            continue
        key = ("2tcm" if model == "2tcm" else "1tcm", n)
        if key not in cache:
            cache[key] = make_tacs(n, key[0])
        tacs = cache[key]
        fit(tacs.isel(region=[0]), model, input=inp, **opts)  # warm-up
        best_cpu = best_wall = np.inf
        for _ in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            res = fit(tacs, model, input=inp, **opts)
            best_cpu = min(best_cpu, time.process_time() - c0)
            best_wall = min(best_wall, time.perf_counter() - w0)
        conv = float(np.mean(res["converged"].values))
        rate_c, rate_w = n / best_cpu, n / best_wall
        ok = "" if target is None else ("yes" if rate_c >= target else "NO")
        print(f"{label:28s} {n:7d} {rate_c:13.1f} {rate_w:14.1f} "
              f"{'' if target is None else target:>7} {ok}  (converged {conv:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
