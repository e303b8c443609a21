"""Benchmark: regional TAC extraction from a large dynamic image.

Writes a synthetic 256x256x207x30 float32 NIfTI (1.6 GB, HRRT size) and a 100-region label
image, then compares ``sv2a.extract_tacs`` with one plain read of the data. Target: extraction
takes at most ~2x the read and peaks at most ~1.5x the image size in memory.

    python benchmarks/bench_tacs.py [--shape 256 256 207 30] [--regions 100] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np

import sv2a
from sv2a.atlas import Atlas
from sv2a.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=4, default=[256, 256, 207, 30])
    ap.add_argument("--regions", type=int, default=100)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    nx, ny, nz, nt = args.shape
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "sub-bench_pet.nii"
        rng = np.random.default_rng(0)
        # write frame by frame so the benchmark itself stays within memory
        hdr = nib.Nifti1Header()
        hdr.set_data_shape((nx, ny, nz, nt))
        hdr.set_data_dtype(np.float32)
        img = nib.Nifti1Image(np.zeros((1, 1, 1, 1), np.float32), np.diag([1.2, 1.2, 1.2, 1]))
        hdr.set_qform(img.affine, 1)
        hdr.set_sform(img.affine, 1)
        t0 = time.perf_counter()
        with open(path, "wb") as fh:
            hdr.write_to(fh)
            fh.seek(hdr.get_data_offset())
            for _ in range(nt):
                fh.write(np.asfortranarray(rng.random((nx, ny, nz), np.float32)).tobytes("F"))
        write_json(path.with_suffix(".json"), {
            "FrameTimesStart": list(np.arange(nt) * 180.0),
            "FrameDuration": [180.0] * nt, "Units": "kBq/mL", "TracerRadionuclide": "C11"})
        size_gb = nx * ny * nz * nt * 4 / 1e9
        print(f"image {nx}x{ny}x{nz}x{nt} float32 = {size_gb:.2f} GB "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        # label image: random blobs via coarse blocks -> 100 regions
        blocks = rng.integers(0, args.regions + 1, size=(nx // 16 + 1, ny // 16 + 1, nz // 16 + 1))
        labels = np.repeat(np.repeat(np.repeat(blocks, 16, 0), 16, 1), 16, 2)[:nx, :ny, :nz]
        atlas = Atlas(labels.astype(np.int32), {i: f"r{i}" for i in range(1, args.regions + 1)},
                      np.diag([1.2, 1.2, 1.2, 1]))

        pet = sv2a.load_pet(path)
        t_read = np.inf
        for _ in range(3):  # warm the page cache so both timings read from memory; best of 3
            t0 = time.perf_counter()
            total = 0.0
            for f in range(nt):
                total += float(np.asarray(pet.dataobj[..., f]).sum())
            t_read = min(t_read, time.perf_counter() - t0)
        print(f"one read of the data:       {t_read:6.2f} s")

        # time without tracemalloc (it slows every allocation), best of 3 like the read
        t_ext = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            tacs = sv2a.extract_tacs(pet, atlas)
            t_ext = min(t_ext, time.perf_counter() - t0)
        tracemalloc.start()
        sv2a.extract_tacs(pet, atlas)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"extract_tacs ({tacs.sizes['region']} regions): {t_ext:6.2f} s  "
              f"= {t_ext / t_read:.2f}x the read (target <= 2x)")
        print(f"peak memory (numpy, tracemalloc): {peak / 1e9:.3f} GB = "
              f"{peak / (size_gb * 1e9):.3f}x the image (target <= 1.5x; labels included)")


if __name__ == "__main__":
    main()
