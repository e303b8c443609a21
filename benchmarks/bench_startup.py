"""Start-up time and I/O of whole ``sv2a`` processes (what a user or a batch job pays).

Prints, each measured in a fresh Python process (best of ``--repeats``):

* import time of ``sv2a``, ``sv2a.models`` and ``sv2a.parametric`` (wall, and the cumulative
  ``-X importtime`` figure of the module), and which heavy libraries each one loads;
* ``sv2a --help`` and ``sv2a run --help`` (wall), and which heavy libraries they load;
* whole-process SUVR and SRTM2 maps: load a 96x96x64x27 ``.nii.gz`` (written here with
  nibabel, with a JSON sidecar and a reference mask), make the maps, write them with
  ``ds.sv2a.to_nifti`` -- wall and CPU time per phase, and whether scipy.signal / dask were
  imported; ``--profile`` adds the 15 most expensive calls (cProfile, cumulative, import
  machinery left out);
* ``--hrrt-read``: frame-by-frame reading (``DynamicPET.frame``) of a 256x256x207x30
  ``.nii.gz`` with and without indexed_gzip (needs ~2 GB in the temp dir; deleted after);
* ``--hrrt-write``: writing SRTM2-like maps at 256x256x207 (default maps vs all maps, zlib
  level 6 vs 1).

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --profile --hrrt-read --hrrt-write

Set PYTHONPATH to another checkout's root to measure that version (the before/after
comparison of a change).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

HEAVY = ("numpy", "xarray", "pandas", "scipy", "scipy.signal", "scipy.sparse", "matplotlib",
         "statsmodels", "dask", "nibabel", "skimage")


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``python -c code args``; wall (s), CPU user+sys (s) and stdout."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in (0,):
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), out.stdout


def best(code: str, *args: str, repeats: int) -> tuple[float, float, str]:
    runs = [run_child(code, *args) for _ in range(repeats)]
    return min(runs, key=lambda r: r[0])


def importtime(module: str) -> float:
    """Cumulative ``-X importtime`` of ``module`` (s)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True)
    for line in out.stderr.splitlines()[::-1]:
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
        if m and m.group(2) == module:
            return int(m.group(1)) / 1e6
    return float("nan")


LOADED = f"import sys, json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"


def bench_imports(repeats: int) -> None:
    print(f"import / start-up (fresh process, best of {repeats})")
    print(f"  {'':28s} {'wall s':>7s} {'importtime s':>12s}  heavy modules loaded")
    for mod in ("sv2a", "sv2a.models", "sv2a.parametric"):
        wall, _, out = best(f"import {mod}; {LOADED}", repeats=repeats)
        base, _, _ = best("pass", repeats=repeats)
        print(f"  import {mod:21s} {wall - base:7.3f} {importtime(mod):12.3f}  "
              f"{', '.join(json.loads(out)) or '-'}")
    for argv in (["--help"], ["run", "--help"], ["models", "--help"]):
        code = ("import sys; sys.argv = ['sv2a'] + sys.argv[1:]\nfrom sv2a.cli import main\n"
                f"try:\n    main()\nexcept SystemExit:\n    pass\n{LOADED}")
        wall, _, out = best(code, *argv, repeats=repeats)
        loaded = json.loads(out.strip().splitlines()[-1])
        print(f"  sv2a {' '.join(argv):23s} {wall:7.3f} {'':12s}  {', '.join(loaded) or '-'}")
    print(f"  (python -c pass: {best('pass', repeats=repeats)[0]:.3f} s; the import rows "
          "subtract it)")


MAP_SCRIPT = textwrap.dedent("""
    import json, sys, time, resource, warnings
    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
    t = [(time.perf_counter(), cpu())]
    import sv2a, nibabel as nib, numpy as np
    pet_path, ref_path, out_dir, model, profile = sys.argv[1:6]
    t.append((time.perf_counter(), cpu()))
    def work():
        pet = sv2a.load_pet(pet_path)
        lab = np.asarray(nib.load(ref_path).dataobj)
        ref, mask = lab == 6, (lab > 0) & (lab != 6)
        opts = {"window": (60.0, 90.0)} if model == "suvr" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = sv2a.parametric_maps(pet, model, reference=ref, mask=mask, **opts)
        t.append((time.perf_counter(), cpu()))
        ds.sv2a.to_nifti(out_dir, "sub-01_ses-bl")
        t.append((time.perf_counter(), cpu()))
    if profile == "1":
        import cProfile, io, pstats
        pr = cProfile.Profile(); pr.enable(); work(); pr.disable()
        s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(60)
        print(s.getvalue(), file=sys.stderr)
    else:
        work()
    heavy = [m for m in HEAVY if m in sys.modules]
    print(json.dumps({"t": t, "heavy": heavy}))
""").replace("HEAVY", repr(HEAVY))


def make_inputs(d: Path) -> tuple[Path, Path]:
    """96x96x64x27 SRTM phantom (.nii.gz, nibabel's own gzip) + sidecar + label image (1-5
    targets, 6 reference)."""
    import nibabel as nib

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_parametric import N_BRAIN, N_REF, make_image, tp

    fr = tp.FRAMES27
    img, lab, _, _ = make_image((96, 96, 64), fr, N_BRAIN, N_REF)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    pet = d / "sub-01_ses-bl_pet.nii.gz"
    nib.save(nib.Nifti1Image(img, aff), pet)
    side = {"Units": "kBq/mL", "TracerName": "UCB-J", "TracerRadionuclide": "C11",
            "FrameTimesStart": (fr.start * 60).tolist(),
            "FrameDuration": (fr.duration * 60).tolist(),
            "ImageDecayCorrected": True, "InjectedRadioactivity": 500.0,
            "InjectedRadioactivityUnits": "MBq", "BodyWeight": 75.0}
    (d / "sub-01_ses-bl_pet.json").write_text(json.dumps(side))
    ref = d / "labels.nii.gz"
    nib.save(nib.Nifti1Image(lab.astype(np.uint8), aff), ref)
    return pet, ref


def bench_maps(d: Path, repeats: int, profile: bool) -> None:
    pet, ref = make_inputs(d)
    print(f"\nwhole-process maps, 96x96x64x27 .nii.gz in ({pet.stat().st_size / 1e6:.0f} MB) "
          f"and out, best of {repeats}")
    print(f"  {'model':6s} {'wall s':>7s} {'CPU s':>6s} | {'import':>6s} {'load+map':>8s} "
          f"{'write':>6s} (wall s)  heavy modules loaded")
    for model in ("suvr", "srtm2"):
        runs = []
        for _ in range(repeats):
            out = d / f"out_{model}"
            shutil.rmtree(out, ignore_errors=True)
            runs.append(run_child(MAP_SCRIPT, str(pet), str(ref), str(out), model, "0"))
        wall, cpu, stdout = min(runs, key=lambda r: r[0])
        info = json.loads(stdout.strip().splitlines()[-1])
        tt = [w for w, _ in info["t"]]
        n_files = len(list((d / f"out_{model}").glob("*.nii.gz")))
        print(f"  {model:6s} {wall:7.2f} {cpu:6.2f} | {tt[1] - tt[0]:6.2f} {tt[2] - tt[1]:8.2f} "
              f"{tt[3] - tt[2]:6.2f}  {', '.join(info['heavy'])}  ({n_files} maps written)")
        if profile:
            r = subprocess.run([sys.executable, "-c", MAP_SCRIPT, str(pet), str(ref),
                                str(d / "prof"), model, "1"], capture_output=True, text=True)
            skip = ("frozen importlib", "builtins.exec", "builtins.__import__",
                    "importlib/__init__", "List reduced", "Ordered by")
            lines = [ln for ln in r.stderr.splitlines()
                     if ln.strip() and not any(k in ln for k in skip)]
            print(textwrap.indent("\n".join(lines[:17]), "    "))


READ_SCRIPT = textwrap.dedent("""
    import sys, time
    import nibabel._compression as c
    if sys.argv[2] != "igzip":
        c.HAVE_INDEXED_GZIP = False
    import sv2a, sv2a.pet
    if sys.argv[2] == "reopen":  # sv2a <= 0.1.0: each frame decompresses from the start
        sv2a.pet._keep_file_open = lambda p: None
    t0 = time.perf_counter()
    pet = sv2a.load_pet(sys.argv[1])
    s = 0.0
    for i in range(pet.n_frames):
        s += float(pet.frame(i)[128, 128, 100])
    print(time.perf_counter() - t0)
""")


def bench_hrrt_read(d: Path) -> None:
    from sv2a.io import write_nifti

    shape = (256, 256, 207, 30)
    rng = np.random.default_rng(0)
    img = np.empty(shape, np.float32)
    base = rng.gamma(4.0, 2.0, size=shape[:3]).astype(np.float32)
    for i in range(shape[3]):
        img[..., i] = base * (1 + 0.02 * i)
    img[::2] += np.float32(0.1)  # not exactly proportional frames
    p = d / "sub-hrrt_pet.nii.gz"
    t0 = time.perf_counter()
    write_nifti(p, img, np.diag([1.22, 1.22, 1.22, 1.0]), compresslevel=1)
    t_write = time.perf_counter() - t0
    del img
    fr = {"Units": "kBq/mL", "TracerRadionuclide": "C11", "ImageDecayCorrected": True,
          "FrameTimesStart": [60.0 * 3 * i for i in range(30)], "FrameDuration": [180.0] * 30}
    (d / "sub-hrrt_pet.json").write_text(json.dumps(fr))
    print(f"\nframe-by-frame read (DynamicPET.frame, 30 frames) of a 256x256x207x30 .nii.gz "
          f"({p.stat().st_size / 1e9:.2f} GB; written in {t_write:.1f} s at level 1)")
    try:
        import indexed_gzip  # noqa: F401
        modes = ["igzip", "gzip", "reopen"]
    except ImportError:
        print("  indexed_gzip not installed: pip install indexed_gzip (or '.[fast]')")
        modes = ["gzip", "reopen"]
    labels = {"igzip": "indexed_gzip", "gzip": "gzip kept open (no indexed_gzip)",
              "reopen": "gzip reopened per frame (sv2a 0.1.0)"}
    for mode in modes:
        wall, cpu, out = run_child(READ_SCRIPT, str(p), mode)
        print(f"  {labels[mode]:38s}: {float(out.split()[0]):6.1f} s reading (process "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU)")
    p.unlink()


def bench_hrrt_write(d: Path) -> None:
    from sv2a.parametric.accessor import assemble

    shape = (256, 256, 207)
    rng = np.random.default_rng(1)
    g = np.stack(np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij"))
    brain = (g ** 2).sum(0) < 0.8
    maps = {}
    for nm, mu in (("BPND", 3.0), ("R1", 1.0), ("k2", 0.2), ("k2a", 0.05), ("rss", 10.0)):
        a = np.full(shape, np.nan, np.float32)
        a[brain] = mu * (1 + 0.2 * rng.standard_normal(int(brain.sum())))
        maps[nm] = a
    flag = np.zeros(shape, np.uint8)
    flag[brain] = (rng.random(int(brain.sum())) < 0.01).astype(np.uint8)
    ds = assemble("srtm2", maps, flag, np.eye(4), {}, {})
    print(f"\nwriting SRTM2-like maps at 256x256x207 ({os.cpu_count()} cores)")
    for label, params in (("default", None), ("all", "all")):
        for level in (6, 1):
            out = d / f"w_{label}_{level}"
            t0 = time.perf_counter()
            ds.sv2a.to_nifti(out, "sub-01", params=params, compresslevel=level)
            dt = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in out.glob("*.nii.gz"))
            n = len(list(out.glob("*.nii.gz")))
            print(f"  {label:7s} maps ({n}) level {level}: {dt:5.2f} s, {size / 1e6:6.1f} MB")
            shutil.rmtree(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile of the map processes")
    ap.add_argument("--hrrt-read", action="store_true", help="256x256x207x30 read, ~2 GB disk")
    ap.add_argument("--hrrt-write", action="store_true", help="256x256x207 map writing")
    ap.add_argument("--skip-maps", action="store_true")
    args = ap.parse_args(argv)
    bench_imports(args.repeats)
    with tempfile.TemporaryDirectory(prefix="sv2a_bench_startup_") as tmp:
        d = Path(tmp)
        if not args.skip_maps:
            bench_maps(d, args.repeats, args.profile)
        if args.hrrt_read:
            bench_hrrt_read(d)
        if args.hrrt_write:
            bench_hrrt_write(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
