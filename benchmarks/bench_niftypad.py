"""Whole-process comparison of sv2a and NiftyPAD voxel maps on the same image.

Writes one phantom (benchmarks/bench_hrrt.py: SRTM-consistent TACs, 30 frames over 90 min;
default grid 96x96x64 with a third of the voxels fitted, as benchmarks/bench_parametric.py)
as a NIfTI + JSON sidecar under /tmp, then, model by model, alternates whole processes of
sv2a (``sv2a.load_pet`` -> ``sv2a.parametric_maps`` -> ``to_nifti``) and NiftyPAD (nibabel
load, reference TAC, basis functions, ``image_to_parametric_files``: NiftyPAD's own
load-fit-write path) and prints CPU and wall time of each and the NiftyPAD / sv2a ratios.

Pairs compared (same frames, same reference, k2' = the phantom's reference K1/VT, t* 20 min):
SRTM (sv2a ``srtm``, NiftyPAD ``srtmb_basis``), SRTM2 with k2' given (``srtm2`` /
``srtmb_k2p_basis``; NiftyPAD has no coupled SRTM2), MRTM2 (``mrtm2`` / ``mrtm_k2p``) and
reference Logan (``logan_ref`` / ``logan_ref_k2p``), and SUVR over 60-90 min (``suvr`` /
``image_to_suvr_with_reference_tac``, written with nibabel). NiftyPAD runs with its API
defaults (40 basis functions over 0.01-0.3 1/min, no weights).

NiftyPAD is installed from PyPI into its own virtual environment (default
/tmp/sv2a-niftypad-venv, made on first use); when that fails the script says why and prints
sv2a's numbers alone.

    python benchmarks/bench_niftypad.py                       # 96x96x64, 1 run each
    python benchmarks/bench_niftypad.py --shape 64 64 48 --repeats 3
    python benchmarks/bench_niftypad.py --gz --models suvr srtm     # read a .nii.gz
    python benchmarks/bench_niftypad.py --niftypad-python /path/to/python   # existing install

Target: NiftyPAD / sv2a whole-process CPU time >= 200x for SRTM, SRTM2, MRTM2, Logan, and
for SUVR sv2a at least as fast as NiftyPAD (ratio >= 1). The
"bound" column is NiftyPAD's time over the CPU time of a process that only imports NumPy,
nibabel and xarray: no whole process that reads the image with nibabel and returns xarray
maps can have a higher ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hrrt import K2P, whole_process, write_phantom  # noqa: E402

TSTAR_MIN = 20.0

PAIRS = [
    ("SRTM", "srtm", {}, "srtmb_basis"),
    ("SRTM2 (k2' given)", "srtm2", {"k2prime": K2P}, "srtmb_k2p_basis"),
    ("MRTM2", "mrtm2", {"k2prime": K2P, "tstar": TSTAR_MIN}, "mrtm_k2p"),
    ("reference Logan", "logan_ref", {"k2prime": K2P, "tstar": TSTAR_MIN}, "logan_ref_k2p"),
    ("SUVR 60-90 min", "suvr", {"window": (60.0, 90.0)}, "suvr"),
]

# NiftyPAD whole process: argv = pet, sidecar, target mask, reference mask, model, out folder.
_NIFTYPAD = r"""
import json, resource, sys, time, warnings
t0 = time.perf_counter()
from pathlib import Path
import nibabel as nib
import numpy as np
from niftypad import basis
from niftypad.image_process.parametric_image import image_to_parametric_files
from niftypad.models import get_model_inputs
from niftypad.tac import Ref
pet_path, side, targets, refmask, model, out, k2p_min, tstar_min = sys.argv[1:9]
warnings.simplefilter("ignore")
meta = json.loads(Path(side).read_text())
start = np.asarray(meta["FrameTimesStart"], float)
dt = np.vstack([start, start + np.asarray(meta["FrameDuration"], float)])
pet_img = nib.load(pet_path)
img = np.asanyarray(pet_img.dataobj)
rm = np.asanyarray(nib.load(refmask).dataobj) > 0
Path(out).mkdir(parents=True, exist_ok=True)
if model == "suvr":  # NiftyPAD's SUVR of the frames inside 60-90 min, written as NIfTI
    from niftypad.image_process.parametric_image import image_to_suvr_with_reference_tac
    sel = np.flatnonzero((dt[0] >= 3600 - 1) & (dt[1] <= 5400 + 1))
    suvr = image_to_suvr_with_reference_tac(img, dt, img[rm].mean(axis=0), sel)
    nib.save(nib.Nifti1Image(suvr.astype(np.float32), pet_img.affine),
             str(Path(out) / ("suvr" + "".join(Path(pet_path).suffixes))))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    bp = suvr
else:
    ref = Ref(img[rm].mean(axis=0), dt)
    ref.run_interp(input_interp_method="linear")
    k2p = float(k2p_min) / 60.0
    beta_lim = [0.01 / 60, 0.3 / 60]
    b = basis.make_basis(ref.input_interp_1, dt, beta_lim=beta_lim, n_beta=40, w=None,
                         k2p=k2p)
    user = {"dt": dt, "inputf1": ref.input_interp_1, "fig": False, "w": None, "r1": 1,
            "ref": ref, "k2p": k2p, "beta_lim": beta_lim, "n_beta": 40, "b": b,
            "linear_phase_start": float(tstar_min) * 60.0, "linear_phase_end": None}
    image_to_parametric_files(Path(pet_path), dt, model, get_model_inputs(user, model),
                              ["R1", "k2", "BP"], mask_file=targets, save_path=out)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    bp = nib.load(str(next(Path(out).glob("*_bp.nii*")))).get_fdata()
tm = np.asanyarray(nib.load(targets).dataobj) > 0
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime,
                  "rss": ru.ru_maxrss * 1024, "median_BPND": float(np.median(bp[tm]))}))
"""


_FLOOR = ("import json, resource, numpy, nibabel, xarray; ru = resource.getrusage("
          "resource.RUSAGE_SELF); print(json.dumps({'cpu': ru.ru_utime + ru.ru_stime}))")


def import_floor(repeats: int = 5) -> float:
    """Median CPU time (s) of a process that only imports what every sv2a map needs (NumPy,
    nibabel, xarray, which brings pandas) -- the least any whole process returning xarray
    maps read by nibabel can take; NiftyPAD's time over it bounds the attainable ratio."""
    cpu = []
    for _ in range(repeats):
        p = subprocess.run([sys.executable, "-c", _FLOOR], capture_output=True, text=True,
                           check=True)
        cpu.append(json.loads(p.stdout)["cpu"])
    return float(np.median(cpu))


def _ratio(x: float) -> str:
    """``123x``, or ``1.23x`` below 10."""
    return f"{x:.0f}x" if x >= 10 else f"{x:.2f}x"


def niftypad_python(venv: Path, given: str | None) -> tuple[str | None, str]:
    """A Python that imports NiftyPAD (installing it into ``venv`` if needed), or a reason."""
    check = ["-c", "import niftypad.models, niftypad.image_process.parametric_image"]
    if given:
        p = subprocess.run([given, *check], capture_output=True, text=True, check=False)
        return (given, "") if p.returncode == 0 else (None, p.stderr.strip()[-500:])
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"installing NiftyPAD from PyPI into {venv} ...", flush=True)
        steps = [[sys.executable, "-m", "venv", str(venv)],
                 [str(py), "-m", "pip", "install", "-q", "niftypad", "scipy"]]
        for cmd in steps:
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                return None, f"{' '.join(cmd[-3:])} failed: {p.stderr.strip()[-500:]}"
    p = subprocess.run([str(py), *check], capture_output=True, text=True, check=False)
    return (str(py), "") if p.returncode == 0 else (None, p.stderr.strip()[-500:])


def run_niftypad(py: str, pet: Path, targets: Path, refmask: Path, model: str,
                 out: Path) -> dict:
    """One NiftyPAD whole process; its times (s), peak RSS (bytes) and median BP."""
    side = pet.parent / (pet.name.split(".")[0] + ".json")
    t0 = time.perf_counter()
    p = subprocess.run([py, "-c", _NIFTYPAD, str(pet), str(side), str(targets), str(refmask),
                        model, str(out), repr(K2P), repr(TSTAR_MIN)],
                       capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"NiftyPAD {model} failed:\n{p.stderr[-3000:]}")
    res: dict = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_outside"] = wall
    shutil.rmtree(out, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 96, 64])
    ap.add_argument("--fit-fraction", type=float, default=1 / 3)
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs per model")
    ap.add_argument("--sv2a-runs", type=int, default=5,
                    help="sv2a processes per alternating run (each takes ~0.5 s; NiftyPAD's "
                         "minute-long runs vary by ~1 %%, sv2a's by ~5 %%)")
    ap.add_argument("--gz", action="store_true", help="write and read a .nii.gz image")
    ap.add_argument("--venv", default="/tmp/sv2a-niftypad-venv")
    ap.add_argument("--niftypad-python", default=None)
    ap.add_argument("--models", nargs="*", default=None, help="subset of: srtm srtm2 mrtm2 "
                    "logan_ref suvr")
    args = ap.parse_args(argv)
    import nibabel as nib

    py, why = niftypad_python(Path(args.venv), args.niftypad_python)
    if py is None:
        print(f"NiftyPAD unavailable ({why}); printing sv2a's numbers only")
    folder = Path(tempfile.mkdtemp(prefix="sv2a_niftypad_", dir="/tmp"))
    try:
        shape = tuple(args.shape)
        pet, atlas = write_phantom(folder, shape, fit_fraction=args.fit_fraction, gz=args.gz)
        img = nib.load(str(atlas))
        lab = np.asarray(img.dataobj)
        targets, refmask = folder / "targets.nii.gz", folder / "reference.nii.gz"
        nib.save(nib.Nifti1Image(((lab > 0) & (lab < 6)).astype(np.uint8), img.affine),
                 str(targets))
        nib.save(nib.Nifti1Image((lab == 6).astype(np.uint8), img.affine), str(refmask))
        # untimed: the first process compiles sv2a's bytecode, as pip does at install
        whole_process(pet, atlas, "srtm2", {"k2prime": K2P}, folder / "out")
        print(f"image {shape + (30,)} float32, {int(((lab > 0) & (lab < 6)).sum())} fitted "
              f"voxels, {int((lab == 6).sum())} reference voxels; {args.repeats} alternating "
              "run(s) per model, median shown\n")
        floor = import_floor()
        print(f"{'model':20s} {'sv2a cpu':>8s} {'wall':>6s} {'BPND':>6s}   "
              f"{'NiftyPAD cpu':>12s} {'wall':>7s} {'BP':>6s}   {'cpu ratio':>9s} "
              f"{'wall ratio':>10s} {'bound':>6s}")
        for label, model, opts, np_model in PAIRS:
            if args.models and model not in args.models:
                continue
            ours, theirs = [], []
            for _ in range(args.repeats):
                ours += [whole_process(pet, atlas, model, opts, folder / "out")
                         for _ in range(args.sv2a_runs)]
                if py is not None:
                    theirs.append(run_niftypad(py, pet, targets, refmask, np_model,
                                               folder / "np_out"))
            oc = float(np.median([r["cpu"] for r in ours]))
            ow = float(np.median([r["wall_outside"] for r in ours]))
            ob = ours[-1]["median_BPND"]
            line = f"{label:20s} {oc:8.2f} {ow:6.2f} {ob:6.3f}   "
            if theirs:
                tc = float(np.median([r["cpu"] for r in theirs]))
                tw = float(np.median([r["wall_outside"] for r in theirs]))
                line += (f"{tc:12.1f} {tw:7.1f} {theirs[-1]['median_BPND']:6.3f}   "
                         f"{_ratio(tc / oc):>9s} {_ratio(tw / ow):>10s} "
                         f"{_ratio(tc / floor):>6s}")
            print(line, flush=True)
        print(f"\nbound: NiftyPAD / the import floor, {floor:.2f} s CPU: a process that only "
              "imports numpy, nibabel and xarray")
        print("target: NiftyPAD / sv2a >= 200x (whole process, CPU)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
