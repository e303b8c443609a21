"""Speed of the reference-tissue models on 34-frame TACs (one core).

Targets: >= 500 SRTM basis-function fits/s and >= 5,000 graphical fits/s
(MRTM, MRTM2, reference Logan). Fits are vectorised over regions, so the rate is measured on
a batch of regions sharing one reference TAC (as in a regional analysis of many subjects'
regions, or a voxel chunk). Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_regional_reference.py``
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

import sv2a  # noqa: E402
from sv2a.frames import frames_from_counts  # noqa: E402
from sv2a.phantom.simulate import pet_curve  # noqa: E402
from sv2a.phantom.tracers import FengInput  # noqa: E402
from sv2a.tacs import tacs_from_arrays  # noqa: E402

# PiB-like 34-frame, 90-min schedule
FR = frames_from_counts([(4, 15), (8, 30), (9, 60), (2, 180), (8, 300), (3, 600)])
# Feng input, all parent; exact 1TCM tissue curves from the phantom module
INPUT = FengInput(A1=1150.0, A2=36.0, A3=9.0, lambda1=4.0, lambda2=0.40, lambda3=0.003,
                  delay=0.0, parent_plateau=1.0, parent_tau=1.0)


def conv_1tcm(k1, k2, t):
    return pet_curve(INPUT, {"K1": k1, "k2": k2}, t)


def make(n, seed=0):
    rng = np.random.default_rng(seed)
    t = FR.mid
    ref = conv_1tcm(0.15, 0.0375, t)
    k1 = rng.uniform(0.2, 0.5, n)
    vt = rng.uniform(6, 20, n)
    y = np.array([conv_1tcm(a, a / b, t) for a, b in zip(k1, vt, strict=True)])
    y *= 1 + 0.03 * rng.standard_normal(y.shape)
    return tacs_from_arrays(np.vstack([ref, y]), FR.start, FR.end,
                            ["ref"] + [f"r{i}" for i in range(n)], half_life=20.4)


def rate(model, tacs, n, repeat=3, **opts):
    sv2a.fit(tacs, model=model, reference="ref", **opts)  # warm up
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        sv2a.fit(tacs, model=model, reference="ref", **opts)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    print(f"reference-tissue models, {FR.n} frames, one core")
    print(f"{'model':34s} {'regions':>8s} {'fits/s':>10s}  target")
    cases = [
        ("srtm (basis)", "srtm", {"method": "basis"}, 500),
        ("srtm (nonlinear, exact VP)", "srtm", {"method": "nonlinear"}, None),
        ("srtm2 (basis, k2' fixed)", "srtm2", {"method": "basis", "k2prime": 0.0375}, 500),
        ("srtm2 (nonlinear, k2' fixed)", "srtm2", {"method": "nonlinear", "k2prime": 0.0375},
         None),
        ("srtm2 (basis, k2' coupled)", "srtm2", {}, None),
        ("mrtm", "mrtm", {}, 5000),
        ("mrtm2 (k2' fixed)", "mrtm2", {"k2prime": 0.0375}, 5000),
        ("logan_ref (k2' fixed, t*=30)", "logan_ref", {"k2prime": 0.0375, "tstar": 30}, 5000),
    ]
    for n in (34, 1000):
        tacs = make(n)
        for label, model, opts, target in cases:
            r = rate(model, tacs, n, **opts)
            ok = "" if target is None else (f">= {target}: " + ("yes" if r >= target else "NO"))
            print(f"{label:34s} {n:8d} {r:10.0f}  {ok}")


if __name__ == "__main__":
    main()
