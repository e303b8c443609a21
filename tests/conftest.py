"""Shared fixtures: small, real BIDS PET datasets written with nibabel into tmp dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sv2a.io import write_json, write_nifti

FRAMES_S = [(0, 60), (60, 60), (120, 120), (240, 240), (480, 600), (1080, 1200)]  # start, dur


def write_small_pet(path: Path, *, shape=(6, 5, 4), frames=FRAMES_S, units="kBq/mL",
                    sidecar_extra: dict | None = None, data=None, drop: tuple = (),
                    seed: int = 0) -> tuple[Path, np.ndarray]:
    """Write a 4D PET NIfTI + sidecar; returns the path and the data written (file units)."""
    rng = np.random.default_rng(seed)
    n = len(frames)
    if data is None:
        data = rng.uniform(1.0, 10.0, size=(*shape, n)).astype(np.float32)
    sidecar = {
        "FrameTimesStart": [float(s) for s, _ in frames],
        "FrameDuration": [float(d) for _, d in frames],
        "Units": units,
        "TracerName": "UCB-J",
        "TracerRadionuclide": "C11",
        "InjectedRadioactivity": 600.0,
        "InjectedRadioactivityUnits": "MBq",
        "BodyWeight": 75.0,
        "ImageDecayCorrected": True,
    }
    sidecar.update(sidecar_extra or {})
    for k in drop:
        sidecar.pop(k, None)
    write_nifti(path, data, np.diag([2.0, 2.0, 2.0, 1.0]), sidecar=sidecar)
    return path, data


def write_small_dseg(path: Path, shape=(6, 5, 4), affine=None) -> np.ndarray:
    """Two hemispheres + a small central region; writes the NIfTI and its dseg.tsv."""
    lab = np.zeros(shape, dtype=np.int16)
    lab[: shape[0] // 2] = 1
    lab[shape[0] // 2:] = 2
    lab[0, 0, 0] = 0
    lab[shape[0] // 2, shape[1] // 2, shape[2] // 2] = 3
    write_nifti(path, lab, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine,
                dtype=np.int16)
    tsv = Path(str(path).split(".nii")[0] + ".tsv")
    tsv.write_text("index\tname\n1\tLeft-Cortex\n2\tRight-Cortex\n3\tcentrum_semiovale\n")
    return lab


def write_blood(path: Path, *, t_end_s: float = 2400.0, units: str = "kBq/mL",
                recording: str = "manual") -> Path:
    t = np.array([10, 30, 60, 120, 300, 600, 1200, t_end_s], float)
    wb = 50 * np.exp(-t / 200) + 2
    pl = wb * 1.1
    pf = 0.3 + 0.7 * np.exp(-t / 500)
    rows = ["time\twhole_blood_radioactivity\tplasma_radioactivity\tmetabolite_parent_fraction"]
    for i in range(t.size):
        pfv = "n/a" if i == 0 else f"{pf[i]:.4f}"
        rows.append(f"{t[i]:g}\t{wb[i]:.5f}\t{pl[i]:.5f}\t{pfv}")
    path.write_text("\n".join(rows) + "\n")
    write_json(path.with_name(path.name.replace(".tsv", ".json")), {
        "time": {"Units": "s"},
        "whole_blood_radioactivity": {"Units": units},
        "plasma_radioactivity": {"Units": units},
        "metabolite_parent_fraction": {"Units": "unitless"},
        "PlasmaAvail": True, "MetaboliteAvail": True, "WholeBloodAvail": True,
    })
    return path


@pytest.fixture
def small_bids(tmp_path: Path) -> Path:
    """A 2-subject x 2-session BIDS dataset with PET, blood (sub-01) and dseg."""
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "tiny", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
    (root / "participants.tsv").write_text(
        "participant_id\tarm\tweight\nsub-01\tsingle\t70\nsub-02\trepeated\t80\n")
    for sub in ("01", "02"):
        for ses in ("baseline", "followup"):
            d = root / f"sub-{sub}" / f"ses-{ses}"
            pre = f"sub-{sub}_ses-{ses}"
            write_small_pet(d / "pet" / f"{pre}_trc-ucbj_pet.nii.gz", seed=int(sub))
            write_small_dseg(d / "anat" / f"{pre}_desc-regions_dseg.nii.gz")
            if sub == "01":
                write_blood(d / "pet" / f"{pre}_trc-ucbj_recording-manual_blood.tsv")
    return root
