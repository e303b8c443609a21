"""Time and disk of the README's rodent phantom example and of ``sv2a demo``; prints both.

Usage: python benchmarks/bench_phantom_cohort.py [--subjects N] [--nprocs N] [--skip-demo]
Targets (2 cores): ``sv2a phantom OUT --design ketamine-rodent --subjects 24 --seed 1 --noise 1
--fwhm 1.5`` (96 scans on the 80 x 216 x 88 rat grid, 0.3 mm) <= 60 s, its size estimated
before writing; ``sv2a demo`` <= 15 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return dt, res.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=24, help="rats (default 24, as README)")
    ap.add_argument("--nprocs", type=int, default=None, help="phantom --nprocs (default: CLI's)")
    ap.add_argument("--skip-demo", action="store_true", help="only the phantom example")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    sv2a = [sys.executable, "-c", "import sys; from sv2a.cli import main; sys.exit(main())"]
    try:
        out = tmp / "sim"
        cmd = [*sv2a, "phantom", str(out), "--design", "ketamine-rodent", "--subjects",
               str(args.subjects), "--seed", "1", "--noise", "1", "--fwhm", "1.5"]
        if args.nprocs is not None:
            cmd += ["--nprocs", str(args.nprocs)]
        dt, stdout = _run(cmd)
        est = [ln for ln in stdout.splitlines() if ln.startswith("estimate")]
        pets = list(out.rglob("*_pet.nii.gz"))
        size = _du(out)
        print(f"phantom ketamine-rodent x {args.subjects} ({len(pets)} scans, "
              f"{os.cpu_count()} cores): {dt:.1f} s, {size / 1e9:.2f} GB on disk "
              f"({sum(p.stat().st_size for p in pets) / max(len(pets), 1) / 1e6:.1f} MB per "
              f"PET); target <= 60 s")
        print("  " + (est[0] if est else "no estimate printed (< 1 GB)"))
        shutil.rmtree(out, ignore_errors=True)
        if not args.skip_demo:
            dt, _ = _run([*sv2a, "demo", str(tmp / "demo")])
            print(f"sv2a demo: {dt:.1f} s wall, {_du(tmp / 'demo') / 1e6:.1f} MB written; "
                  "target <= 15 s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
