"""Speed, memory and accuracy of voxelwise parametric maps.

Builds an SRTM-consistent phantom on a 96x96x64x27 grid (193,650 fitted brain voxels, five
target regions with BPND 0.5-4.5, a centrum-semiovale-like 1TCM reference of 4,000 voxels,
Gaussian noise var = Pc C e^(λt)/Δt with 15 % COV in the last frame of the BPND-3.5 region),
then times each map model and prints peak traced memory (tracemalloc, numpy allocations) as a
multiple of the 4D image, and the bias/SD of BPND per region (noisy and noise-free).

    python benchmarks/bench_parametric.py            # 96x96x64 image
    python benchmarks/bench_parametric.py --hrrt     # also a 256x256x207x30 image
    PYTHONPATH=/path/to/niftypad python benchmarks/bench_parametric.py   # + NiftyPAD ratio

The TACs are exact (closed-form 1TCM convolutions of a Feng input, :mod:`sv2a.phantom`), with
the same kinetic parameters as the phantom of tests/test_parametric.py.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
import warnings

import numpy as np

from sv2a.frames import frames_from_counts
from sv2a.parametric import parametric_maps
from sv2a.phantom.simulate import frame_average, noise_sd, pet_curve
from sv2a.phantom.tracers import FengInput


class tp:  # noqa: N801 - phantom constants, as in tests/test_parametric.py
    """SRTM-consistent phantom: 1TCM reference and five 1TCM targets, 27 frames over 90 min."""

    FRAMES27 = frames_from_counts([(6, 30), (3, 60), (2, 120), (16, 300)], half_life=20.4)
    INPUT = FengInput(A1=1150.0, A2=36.0, A3=9.0, lambda1=4.0, lambda2=0.4, lambda3=0.003,
                      delay=0.25, parent_plateau=0.2, parent_tau=9.0)
    REF = {"K1": 0.135, "VT": 3.8}
    BPS = np.array([0.5, 1.5, 2.5, 3.5, 4.5])
    K1S = np.array([0.30, 0.35, 0.40, 0.42, 0.45])
    K2P = REF["K1"] / REF["VT"]

    @classmethod
    def srtm_phantom(cls, frames):
        """Reference TAC (n_frames,) and target TACs (5, n_frames), noise-free, frame means."""
        def tac(k1, k2):
            return frame_average(lambda t: pet_curve(cls.INPUT, {"K1": k1, "k2": k2}, t),
                                 frames, delay=cls.INPUT.delay)

        cr = tac(cls.REF["K1"], cls.K2P)
        ct = np.array([tac(k1, k1 / (cls.REF["VT"] * (1 + bp)))
                       for bp, k1 in zip(cls.BPS, cls.K1S, strict=True)])
        return cr, ct

    @staticmethod
    def noise_sd(c, frames, pc=1.0):
        """var = Pc C exp(λ t_mid) / Δt (decay-corrected frame means)."""
        return noise_sd(c, frames, pc)

N_BRAIN = 193_650
N_REF = 4_000


def make_image(shape, frames, n_fit, n_ref, *, noise=True, seed=0, voxel_mm=2.0):
    """Phantom image (float32), label map (0 background, 1..5 regions, 6 reference)."""
    cr, ct = tp.srtm_phantom(frames)
    nx, ny, nz = shape
    g = np.stack(np.meshgrid(*(np.arange(s) - (s - 1) / 2 for s in shape), indexing="ij"))
    r = np.sqrt((g[0] / (nx * 0.45)) ** 2 + (g[1] / (ny * 0.45)) ** 2 + (g[2] / (nz * 0.47)) ** 2)
    order = np.argsort(r.ravel(), kind="stable")
    lab = np.zeros(r.size, np.int8)
    inner = order[: n_fit + n_ref]
    lab[inner[:n_ref]] = 6                       # central blob = reference (white matter)
    fit = inner[n_ref:]
    ang = np.arctan2(g[1].ravel()[fit], g[0].ravel()[fit])
    lab[fit] = 1 + np.minimum(((ang + np.pi) / (2 * np.pi) * 5).astype(int), 4)
    lab = lab.reshape(shape)
    tacs = np.vstack([np.zeros(frames.n), ct, cr])
    pc = (0.15 * ct[3, -1] / tp.noise_sd(ct[3], frames)[-1]) ** 2
    sd = np.vstack([tp.noise_sd(c, frames, pc) for c in tacs])
    rng = np.random.default_rng(seed)
    img = np.empty((*shape, frames.n), np.float32)
    for z in range(nz):  # slab by slab keeps temporaries small
        lz = lab[:, :, z]
        sl = tacs[lz]
        if noise:
            sl = sl + sd[lz] * rng.standard_normal(sl.shape)
        img[:, :, z] = sl
    img[lab == 6] = cr  # the reference region TAC is a regional mean (noise-free here)
    return img, lab, cr, ct


def timed(fn, repeats=3):
    """Best wall time of ``repeats`` runs (tracemalloc off), then one traced run for memory."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return out, best, peak


def bias_table(name, ds, lab, param="BPND", truth=tp.BPS):
    rows = []
    for i in range(5):
        v = ds[param].values[lab == i + 1]
        v = v[np.isfinite(v)]
        rows.append((100 * (v.mean() / truth[i] - 1), 100 * v.std() / truth[i]))
    cells = "  ".join(f"{b:+6.2f} ({s:4.1f})" for b, s in rows)
    print(f"  {name:44s} {cells}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hrrt", action="store_true", help="also run a 256x256x207x30 image")
    ap.add_argument("--niftypad-voxels", type=int, default=2000)
    args = ap.parse_args(argv)

    fr = tp.FRAMES27
    shape = (96, 96, 64)
    t0 = time.perf_counter()
    img, lab, cr, ct = make_image(shape, fr, N_BRAIN, N_REF)
    print(f"phantom {shape + (fr.n,)} built in {time.perf_counter() - t0:.1f} s; "
          f"fitted voxels {(lab > 0).sum() - (lab == 6).sum()}, reference {(lab == 6).sum()}")
    ref, mask = lab == 6, (lab > 0) & (lab < 6)
    img_mb = img.nbytes / 2**20
    print(f"4D image {img_mb:.0f} MiB (float32)\n")
    runs = [
        ("srtm", {}),
        ("srtm2", {"k2prime": tp.K2P}),
        ("srtm2", {}),
        ("mrtm2", {"k2prime": tp.K2P}),
        ("mrtm2", {}),
        ("logan_ref", {"k2prime": tp.K2P, "tstar": 20.0}),
        ("suvr", {}),
        # non-default options that suit voxel noise and coarse early frames
        ("srtm", {"rate_range": (0.01, 1.0), "weights": "variance"}),
        ("mrtm2", {"k2prime": tp.K2P, "integration": "frame"}),
        ("logan_ref", {"k2prime": tp.K2P, "tstar": 20.0, "integration": "frame"}),
        # two-step SRTM (Wu & Carson 2002): pooled k2', then R1 and k2a per voxel
        ("srtm", {"k2prime": "coupled"}),
        ("srtm", {"k2prime": "srtm"}),
    ]
    print(f"{'model':44s} {'time (s)':>9s} {'peak MiB':>9s} {'x image':>8s}")
    width = 44
    results = {}
    for model, kw in runs:
        label = model + (" two-step (k2' " + kw["k2prime"] + ")"
                         if isinstance(kw.get("k2prime"), str) else
                         " (k2' given)" if "k2prime" in kw and model != "logan_ref" else
                         " (k2' coupled)" if model in ("srtm2", "mrtm2") else "")
        extra = {k: v for k, v in kw.items() if k not in ("k2prime", "tstar")}
        if extra:
            label += " " + ",".join(f"{k}={v}" for k, v in extra.items()).replace(" ", "")
        ds, dt, peak = timed(lambda m=model, k=kw: parametric_maps(
            img, m, reference=ref, mask=mask, frames=fr, **k))
        results[label] = ds
        print(f"{label:{width}s} {dt:9.2f} {peak / 2**20:9.0f} {peak / img.nbytes:8.2f}")

    print("\nBPND mean bias % (SD %) per region, noisy (15 % COV); regions BPND "
          + ", ".join(f"{b:g}" for b in tp.BPS))
    for label, ds in results.items():
        if "BPND" in ds:
            bias_table(label, ds, lab)
    kc = results["srtm2 (k2' coupled)"].attrs["k2prime_used"]
    print(f"  (coupled k2' = {kc:.5f}, true {tp.K2P:.5f})")

    img0, *_ = make_image(shape, fr, N_BRAIN, N_REF, noise=False)
    print("\nnoise-free BPND bias %:")
    for model, kw in runs:
        if model == "suvr":
            continue
        ds = parametric_maps(img0, model, reference=ref, mask=mask, frames=fr, warn=False, **kw)
        b = [100 * (np.nanmean(ds["BPND"].values[lab == i + 1]) / tp.BPS[i] - 1)
             for i in range(5)]
        print(f"  {model:10s} {str(kw):70s} " + " ".join(f"{x:+6.3f}" for x in b))
    del img0

    _two_step_low_r1()

    # dask path: same numbers
    try:
        import dask.array as da

        d = da.from_array(img, chunks=(48, 48, 32, -1))
        ds_d, dt, _ = timed(lambda: parametric_maps(d, "srtm2", reference=ref, mask=mask,
                                                    frames=fr, k2prime=tp.K2P))
        ref_map = results["srtm2 (k2' given)"]["BPND"].values
        diff = np.nanmax(np.abs(ds_d["BPND"].values - ref_map))
        print(f"\ndask path (48x48x32 chunks) srtm2: {dt:.2f} s, max |diff| vs numpy {diff:.2e}")
    except ImportError:
        print("\n(dask not installed)")

    _niftypad(img, ref, mask, fr, args.niftypad_voxels, results)

    if args.hrrt:
        _hrrt()
    return 0


def _two_step_low_r1(n_vox=8000, seed=3):
    """Voxel BPND bias/SD of SRTM, two-step SRTM and SRTM2 on a phantom with R1 1-2.5.

    Same input, reference and noise model as the main phantom (15 % COV in the last frame of
    the BPND-3.5 region), targets with R1 = K1/K1' 1.0, 1.4, 1.8, 2.2, 2.5; ``n_vox`` voxels
    per region, reference TAC noise-free.
    """
    fr = tp.FRAMES27
    r1s = np.array([1.0, 1.4, 1.8, 2.2, 2.5])
    k1r = tp.REF["K1"]

    def tac(k1, k2):
        return frame_average(lambda t: pet_curve(tp.INPUT, {"K1": k1, "k2": k2}, t), fr,
                             delay=tp.INPUT.delay)

    cr = tac(k1r, tp.K2P)
    ct = np.array([tac(r1 * k1r, r1 * k1r / (tp.REF["VT"] * (1 + bp)))
                   for bp, r1 in zip(tp.BPS, r1s, strict=True)])
    pc = (0.15 * ct[3, -1] / tp.noise_sd(ct[3], fr)[-1]) ** 2
    rng = np.random.default_rng(seed)
    img = np.empty((n_vox, 6, 1, fr.n), np.float32)
    for i in range(5):
        img[:, i, 0] = ct[i] + tp.noise_sd(ct[i], fr, pc) * rng.standard_normal((n_vox, fr.n))
    img[:, 5, 0] = cr
    lab = np.broadcast_to(np.arange(1, 7)[None, :, None], img.shape[:3])
    ref = lab == 6
    print(f"\nR1 1-2.5 phantom ({5 * n_vox} voxels, 15 % COV): BPND mean bias % (SD %) per "
          "region, BPND " + ", ".join(f"{b:g}" for b in tp.BPS) + "; time")
    for model, kw in [("srtm", {}), ("srtm", {"k2prime": "coupled"}),
                      ("srtm", {"k2prime": "srtm"}), ("srtm2", {})]:
        ds, dt, _ = timed(lambda m=model, k=kw: parametric_maps(
            img, m, reference=ref, mask=~ref, frames=fr, **k), repeats=1)
        label = f"{model} {kw}" if kw else f"{model} (default)"
        bias_table(f"{label} {dt:.2f} s", ds, lab)
    _niftypad_bias(img, lab, cr, fr)


def _niftypad_bias(img, lab, cr, fr, n_sub=400):
    """NiftyPAD 2.0.0's SRTM and SRTM2 (basis functions, its API defaults: 40 bases over
    0.01-0.3 1/min, no weights; SRTM2 with the true k2') on the first ``n_sub`` voxels of each
    region of the R1 1-2.5 phantom, in the table of :func:`_two_step_low_r1`."""
    try:
        from niftypad import basis as nbasis
        from niftypad import models as nmodels
    except ImportError:
        print("  (niftypad not importable: its rows skipped)")
        return
    from types import SimpleNamespace

    dt = np.vstack([fr.start * 60.0, fr.end * 60.0])
    inputf1 = np.interp(np.arange(int(np.amax(dt))), fr.mid * 60.0, cr.astype(float))
    sub = img[:n_sub, :5, 0].astype(float)                      # (n_sub, 5 regions, frames)
    sub_lab = np.broadcast_to(np.arange(1, 6)[None, :], sub.shape[:2])
    lim = [0.01 / 60, 0.3 / 60]
    for name, fn, k2p in [("srtmb_basis", nmodels.srtmb_basis, None),
                          ("srtmb_k2p_basis", nmodels.srtmb_k2p_basis, tp.K2P / 60.0)]:
        b = nbasis.make_basis(inputf1, dt, beta_lim=lim, n_beta=40, w=None,
                              **({} if k2p is None else {"k2p": k2p}))
        t0 = time.perf_counter()
        bp = np.array([[fn(v.copy(), b)["bp"] for v in row] for row in sub])
        dt_s = time.perf_counter() - t0
        bias_table(f"niftypad {name} ({sub.size // fr.n} vox) {dt_s:.1f} s",
                   {"BPND": SimpleNamespace(values=bp)}, sub_lab)


def _niftypad(img, ref, mask, fr, n_vox, results):
    try:
        from niftypad import basis as nbasis
        from niftypad import models as nmodels
    except ImportError:
        print("\nniftypad not importable: skipped (pip install niftypad to compare)")
        return
    dt = np.vstack([fr.start * 60.0, fr.end * 60.0])
    cref = img[ref].mean(axis=0).astype(float)
    t1 = np.arange(int(np.amax(dt)))
    inputf1 = np.interp(t1, fr.mid * 60.0, cref)
    b = nbasis.make_basis(inputf1, dt, beta_lim=[0.01 / 60, 1.0 / 60], n_beta=100, w=None)
    y = img[mask][:: max(1, mask.sum() // n_vox)][:n_vox].astype(float)
    t0 = time.perf_counter()
    bp = np.array([nmodels.srtmb_basis(v.copy(), b)["bp"] for v in y])
    per = (time.perf_counter() - t0) / y.shape[0]
    full = per * mask.sum()
    ours = None
    t0 = time.perf_counter()
    parametric_maps(img, "srtm", reference=ref, mask=mask, frames=fr, warn=False)
    ours = time.perf_counter() - t0
    print(f"\nniftypad srtmb_basis: {per * 1e3:.2f} ms/voxel on {y.shape[0]} voxels -> "
          f"{full:.0f} s projected for {mask.sum()} voxels; sv2a srtm {ours:.2f} s; "
          f"ratio {full / ours:.0f}x; niftypad median BPND on the subset {np.median(bp):.3f}")


def _hrrt():
    shape = (256, 256, 207)
    fr = frames_from_counts([(6, 30), (3, 60), (2, 120), (3, 180), (16, 300)], half_life=20.4)
    n_fit = 830_000  # ~1.5 L brain at 1.22 mm voxels
    t0 = time.perf_counter()
    img, lab, *_ = make_image(shape, fr, n_fit, 20_000, seed=1)
    print(f"\nHRRT phantom {shape + (fr.n,)} ({img.nbytes / 2**30:.2f} GiB) built in "
          f"{time.perf_counter() - t0:.0f} s; {n_fit} fitted voxels")
    ref, mask = lab == 6, (lab > 0) & (lab < 6)
    for model, kw in [("srtm", {}), ("srtm2", {}), ("mrtm2", {"k2prime": tp.K2P})]:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parametric_maps(img, model, reference=ref, mask=mask, frames=fr, **kw)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  {model:6s} {str(kw):30s} {time.perf_counter() - t0:6.1f} s   "
              f"process peak RSS so far {rss:.2f} GiB")


if __name__ == "__main__":
    sys.exit(main())
