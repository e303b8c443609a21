"""Whole-process time and peak memory of HRRT-size parametric maps (256x256x207x30 float32).

Writes an SRTM-consistent phantom (the TACs of benchmarks/bench_parametric.py, 30 frames over
90 min, 1.22 mm voxels, ~830,000 fitted brain voxels, a 20,000-voxel centrum-semiovale-like
reference, Gaussian noise with 15 % COV in the last frame of the BPND-3.5 region) as an
uncompressed BIDS NIfTI + JSON sidecar and a dseg atlas into a scratch folder, then runs each
map in a fresh Python process exactly as a user would (import sv2a, ``sv2a.load_pet``,
``sv2a.load_atlas``, ``sv2a.parametric_maps``, ``maps.sv2a.to_nifti``) and prints its wall
time, CPU time and peak resident memory (``ru_maxrss`` of that process).

    python benchmarks/bench_hrrt.py                   # SRTM, SRTM2 (k2' given / coupled)
    python benchmarks/bench_hrrt.py --gz              # read a .nii.gz instead
    python benchmarks/bench_hrrt.py --shape 96 96 64  # another grid (same voxel fraction)

Targets: SRTM and SRTM2 <= 20 s whole process in <= 4 GB peak RSS on 2 cores.
The helpers (:func:`write_phantom`, :func:`whole_process`) are shared by bench_scaling.py and
bench_niftypad.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HRRT = (256, 256, 207)
VOXEL_MM = 1.22
FIT_FRACTION = 830_000 / float(np.prod(HRRT))   # ~1.5 L of brain in the HRRT field of view
REF_FRACTION = 20_000 / float(np.prod(HRRT))
PROTOCOL30 = [(6, 30), (3, 60), (2, 120), (3, 180), (16, 300)]   # (count, seconds)
K2P = 0.135 / 3.8           # reference K1 / VT of the phantom (1/min)
REGIONS = ["r05", "r15", "r25", "r35", "r45", "centrum_semiovale"]   # labels 1..6

# One whole process: argv = pet, atlas, model, options (JSON), output folder. Prints a JSON
# line with the times (s) and peak RSS (bytes) of this process.
_RUN = r"""
import json, resource, sys, time, warnings
t0 = time.perf_counter()
import numpy as np
import sv2a
pet_path, atlas_path, model, opts, out = sys.argv[1:6]
t_import = time.perf_counter() - t0
pet = sv2a.load_pet(pet_path)
atlas = sv2a.load_atlas(atlas_path)
ref = atlas.mask("centrum_semiovale")
mask = (atlas.labels > 0) & ~ref
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    t1 = time.perf_counter()
    maps = sv2a.parametric_maps(pet, model, reference="centrum_semiovale", atlas=atlas,
                                mask=mask, **json.loads(opts))
    t_maps = time.perf_counter() - t1
maps.sv2a.to_nifti(out, "sub-01_ses-bl")
ru = resource.getrusage(resource.RUSAGE_SELF)
key = "BPND" if "BPND" in maps else "SUVR" if "SUVR" in maps else None
med = float(np.nanmedian(maps[key].values[mask])) if key else float("nan")
print(json.dumps({"wall": time.perf_counter() - t0, "import": t_import, "maps": t_maps,
                  "cpu": ru.ru_utime + ru.ru_stime, "rss": ru.ru_maxrss * 1024,
                  "median_BPND": med, "k2prime": str(maps.attrs.get("k2prime_used", ""))}))
"""


def frames30():
    """The 30-frame, 90-min schedule of the phantom (sv2a FrameSchedule, minutes)."""
    from sv2a.frames import frames_from_counts

    return frames_from_counts(PROTOCOL30, half_life=20.4)


def labels(shape: tuple[int, int, int], fit_fraction: float = FIT_FRACTION) -> np.ndarray:
    """Label image: 0 outside, 1..5 five angular sectors of an ellipsoidal brain, 6 the
    reference blob at its centre; by default the fitted and reference voxel counts are the
    HRRT fractions of the grid."""
    n = int(np.prod(shape))
    n_fit, n_ref = round(fit_fraction * n), max(8, round(REF_FRACTION * n))
    g = np.meshgrid(*(np.arange(s, dtype=np.float32) - (s - 1) / 2 for s in shape),
                    indexing="ij", sparse=True)
    r = ((g[0] / (shape[0] * 0.45)) ** 2 + (g[1] / (shape[1] * 0.45)) ** 2
         + (g[2] / (shape[2] * 0.47)) ** 2).ravel()
    inner = np.argpartition(r, n_fit + n_ref)[: n_fit + n_ref]
    inner = inner[np.argsort(r[inner], kind="stable")]
    lab = np.zeros(n, np.uint8)
    lab[inner[:n_ref]] = 6
    fit = inner[n_ref:]
    ix, iy, _ = np.unravel_index(fit, shape)
    ang = np.arctan2(iy - (shape[1] - 1) / 2, ix - (shape[0] - 1) / 2)
    lab[fit] = 1 + np.minimum(((ang + np.pi) / (2 * np.pi) * 5).astype(int), 4)
    return lab.reshape(shape)


def write_phantom(folder: str | Path, shape: tuple[int, int, int] = HRRT, *, seed: int = 1,
                  gz: bool = False, fit_fraction: float = FIT_FRACTION) -> tuple[Path, Path]:
    """Write ``sub-01_ses-bl_pet.nii[.gz]`` (+ .json) and ``..._dseg.nii.gz`` (+ .tsv).

    The 4-D image is built frame by frame in column (Fortran) order, as nibabel stores and
    reads it, so generating an HRRT image needs the image and one frame of memory.
    """
    import nibabel as nib

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_parametric import tp

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fr = frames30()
    cr, ct = tp.srtm_phantom(fr)
    lab = labels(shape, fit_fraction)
    tacs = np.vstack([np.zeros(fr.n), ct, cr])
    pc = (0.15 * ct[3, -1] / tp.noise_sd(ct[3], fr)[-1]) ** 2
    sd = np.vstack([tp.noise_sd(c, fr, pc) for c in tacs])
    sd[[0, 6]] = 0.0                    # background zero; reference = its regional mean
    rng = np.random.default_rng(seed)
    img = np.empty((*shape, fr.n), np.float32, order="F")
    for k in range(fr.n):
        v = rng.standard_normal(shape, dtype=np.float32)
        v *= sd[:, k].astype(np.float32)[lab]
        v += tacs[:, k].astype(np.float32)[lab]
        img[..., k] = v
    aff = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    aff[:3, 3] = -VOXEL_MM * (np.asarray(shape) - 1) / 2
    pet = folder / ("sub-01_ses-bl_pet.nii" + (".gz" if gz else ""))
    nib.save(nib.Nifti1Image(img, aff), str(pet))
    del img
    side = {"FrameTimesStart": (fr.start * 60).tolist(),
            "FrameDuration": ((fr.end - fr.start) * 60).tolist(),
            "Units": "kBq/mL", "TracerName": "UCB-J", "TracerRadionuclide": "C11",
            "ImageDecayCorrected": True}
    (folder / "sub-01_ses-bl_pet.json").write_text(json.dumps(side))
    atlas = folder / "sub-01_ses-bl_dseg.nii.gz"
    nib.save(nib.Nifti1Image(lab, aff), str(atlas))
    (folder / "sub-01_ses-bl_dseg.tsv").write_text(
        "index\tname\n" + "".join(f"{i}\t{n}\n" for i, n in enumerate(REGIONS, start=1)))
    return pet, atlas


def whole_process(pet: Path, atlas: Path, model: str, options: dict, out: Path) -> dict:
    """Run one map in a fresh Python process; its times (s), peak RSS (bytes), median BPND."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get(
        "PYTHONPATH", "")
    # as installed: pip compiles an installed package's bytecode once; a checkout run with
    # PYTHONDONTWRITEBYTECODE would compile sv2a's modules from source in every process
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "sv2a-bench-pyc"))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _RUN, str(pet), str(atlas), model,
                        json.dumps(options), str(out)], capture_output=True, text=True,
                       env=env, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{model} {options}: the process failed:\n{p.stderr[-3000:]}")
    res: dict = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_outside"] = wall
    shutil.rmtree(out, ignore_errors=True)
    return res


RUNS = [("srtm", {}), ("srtm2", {"k2prime": K2P}), ("srtm2", {})]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=list(HRRT))
    ap.add_argument("--gz", action="store_true", help="write and read a .nii.gz")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a new one in /tmp)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch folder (and reuse a phantom already there)")
    ap.add_argument("--models", nargs="*", default=None,
                    help="subset of: srtm srtm2 srtm2-coupled")
    args = ap.parse_args(argv)
    shape = tuple(args.shape)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="sv2a_hrrt_", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        pet = folder / ("sub-01_ses-bl_pet.nii" + (".gz" if args.gz else ""))
        atlas = folder / "sub-01_ses-bl_dseg.nii.gz"
        if not (args.keep and pet.exists() and atlas.exists()):   # --keep reuses the phantom
            pet, atlas = write_phantom(folder, shape, gz=args.gz)
        size = os.path.getsize(pet) / 2**30
        print(f"phantom {shape + (30,)} float32 -> {pet.name} ({size:.2f} GiB) written in "
              f"{time.perf_counter() - t0:.0f} s")
        print(f"{'model':22s} {'wall s':>7s} {'cpu s':>7s} {'import':>7s} {'maps s':>7s} "
              f"{'peak RSS GiB':>12s} {'median BPND':>11s}")
        for model, kw in RUNS:
            label = model + (" (k2' given)" if "k2prime" in kw else
                             " (k2' coupled)" if model == "srtm2" else "")
            key = "srtm2-coupled" if label.endswith("coupled)") else model
            if args.models and key not in args.models:
                continue
            r = whole_process(pet, atlas, model, kw, folder / "out")
            print(f"{label:22s} {r['wall_outside']:7.1f} {r['cpu']:7.1f} {r['import']:7.2f} "
                  f"{r['maps']:7.1f} {r['rss'] / 2**30:12.2f} {r['median_BPND']:11.3f}",
                  flush=True)
        print("targets: SRTM/SRTM2 <= 20 s wall, <= 4 GiB peak RSS (HRRT grid, 2 cores)")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
