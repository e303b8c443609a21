"""Voxelwise group inference: family-wise error rate under the null, power, and timing.

Simulates small smooth-noise cohorts (16 x 16 x 8 voxels of 2 mm, 2 arms x 10 subjects,
baseline and follow-up maps, log-change noise smoothed with a Gaussian of sigma 1 voxel) and
runs :func:`sv2a.longitudinal.voxelwise_change` (paired change in arm A, sign flipping) and
:func:`sv2a.longitudinal.voxelwise_arm_contrast` (Welch A - B, label permutation) on each.

Prints, per test, the family-wise rejection rate (fraction of null images with any voxel at
FWE p <= 0.05) for the voxel max-t, max-TFCE and cluster-extent corrections with a 95 %
binomial (Wilson) interval; the target is 0.03-0.07. Then the power to detect a planted
blob (sphere of radius 2.5 voxels with a -3 % or -5 % change in arm A) and the time of one
image at 1000 permutations.

    python benchmarks/bench_voxelwise_stats.py [--images 500] [--n-perm 100] [--power 50]

With ``n_perm`` rearrangements including the data, ``p <= 0.05`` is exactly a 5 % test when
``0.05 n_perm`` is an integer (100 and 200 are).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import ndimage

import sv2a.longitudinal as lg

SHAPE = (16, 16, 8)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def smooth_noise(rng: np.random.Generator, shape=SHAPE, sigma: float = 1.0) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed with a Gaussian kernel (sigma in voxels)."""
    x = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return x / x.std()


def blob(center=(8, 8, 4), radius: float = 2.5, shape=SHAPE) -> np.ndarray:
    """Boolean sphere."""
    g = np.indices(shape).astype(float)
    d2 = sum((g[i] - center[i]) ** 2 for i in range(3))
    return d2 <= radius ** 2


def cohort(rng: np.random.Generator, n_per_arm: int = 10, sd: float = 0.05,
           effect_pct: float = 0.0, where: np.ndarray | None = None):
    """Maps DataArray: arms A, B; follow-up = baseline x exp(noise) (x effect in A's blob)."""
    src, arms = {}, {}
    for i in range(2 * n_per_arm):
        sub = f"{i:02d}"
        arm = "A" if i < n_per_arm else "B"
        bl = 2.0 * np.exp(0.1 * smooth_noise(rng))
        ch = sd * smooth_noise(rng)
        if arm == "A" and effect_pct and where is not None:
            ch = ch + np.where(where, np.log1p(effect_pct / 100.0), 0.0)
        src[(sub, "baseline")] = bl
        src[(sub, "followup")] = bl * np.exp(ch)
        arms[sub] = arm
    return lg.load_maps(src, participants=arms, affine=AFFINE)


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a binomial proportion."""
    z = 1.96
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return c - h, c + h


def rejections(res, alpha: float = 0.05) -> tuple[bool, bool, bool]:
    """(max-t, TFCE, cluster) family-wise rejection of one result."""
    m = res.maps
    clu = bool((res.clusters["p_fwe"] <= alpha).any()) if len(res.clusters) else False
    return (bool(np.nanmin(m["pfwe"].values) <= alpha),
            bool(np.nanmin(m["tfcepfwe"].values) <= alpha), clu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500, help="null images (>= 100)")
    ap.add_argument("--n-perm", type=int, default=100, help="rearrangements per image")
    ap.add_argument("--power", type=int, default=50, help="images per planted effect")
    ap.add_argument("--seed", type=int, default=2024)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(a.seed)

    tests = {
        "paired change (sign flip)": lambda da, s: lg.voxelwise_change(
            da, arm="A", n_perm=a.n_perm, seed=s),
        "Welch A-B (label perm.)": lambda da, s: lg.voxelwise_arm_contrast(
            da, arms=("A", "B"), n_perm=a.n_perm, seed=s),
    }
    counts = {k: np.zeros(3, int) for k in tests}
    t0 = time.perf_counter()
    for i in range(a.images):
        da = cohort(rng)
        for name, fn in tests.items():
            counts[name] += np.array(rejections(fn(da, i)))
    dt = time.perf_counter() - t0
    print(f"null: {a.images} images {SHAPE}, n=10 per arm, {a.n_perm} rearrangements each, "
          f"{dt:.0f} s ({dt / a.images / len(tests):.2f} s per image and test)")
    print(f"{'test':28s} {'correction':10s} {'FWE rate':>8s}  95% CI        target 0.03-0.07")
    for name in tests:
        for j, corr in enumerate(("max-t", "TFCE", "cluster")):
            k = int(counts[name][j])
            lo, hi = wilson(k, a.images)
            print(f"{name:28s} {corr:10s} {k / a.images:8.3f}  [{lo:.3f}, {hi:.3f}]")

    where = blob()
    for eff in (-3.0, -5.0):
        hits = np.zeros(3, int)
        loc_ok = 0
        for i in range(a.power):
            da = cohort(rng, effect_pct=eff, where=where)
            res = lg.voxelwise_change(da, arm="A", n_perm=a.n_perm, seed=i)
            r = rejections(res)
            hits += np.array(r)
            sig = res.clusters[res.clusters["p_fwe"] <= 0.05]
            if len(sig):
                pk = sig.iloc[0][["peak_x_mm", "peak_y_mm", "peak_z_mm"]].to_numpy(float)
                loc_ok += int(np.linalg.norm(pk - np.array([16.0, 16.0, 8.0])) <= 2 * 2.5)
        print(f"power, paired change {eff:+.0f} % in a 2.5-voxel-radius blob (effect/SD = "
              f"{abs(np.log1p(eff / 100)) / 0.05:.1f}), {a.power} images: max-t "
              f"{hits[0] / a.power:.2f}, TFCE {hits[1] / a.power:.2f}, cluster "
              f"{hits[2] / a.power:.2f}; significant cluster peak within 5 mm of the blob "
              f"centre in {loc_ok}/{max(hits[2], 1)}")

    da = cohort(rng)
    for name, fn in (("paired change", lambda: lg.voxelwise_change(
                         da, arm="A", n_perm=1000, seed=0)),
                     ("Welch A-B", lambda: lg.voxelwise_arm_contrast(
                         da, arms=("A", "B"), n_perm=1000, seed=0)),
                     ("GLM arm (Freedman-Lane)", lambda: lg.voxelwise_glm(
                         da, "arm", contrast="arm[T.B]", n_perm=1000, seed=0))):
        t1 = time.perf_counter()
        fn()
        print(f"timing: {name}, {SHAPE} ({int(np.prod(SHAPE))} voxels), 20 subjects, 1000 "
              f"permutations, TFCE + clusters: {time.perf_counter() - t1:.2f} s")


if __name__ == "__main__":
    main()
