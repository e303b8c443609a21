"""Check a BIDS PET dataset: timing, sidecars, units, blood, segmentations.

``sv2a validate BIDS_DIR`` prints every problem (file, what, how to fix) and exits 1 if any is
an error.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bids import discover, read_participants
from .errors import Sv2aError
from .progress import Progress

__all__ = ["Problem", "validate_dataset", "add_arguments", "main"]

EXAMPLES = """examples:
  sv2a validate /data/ketamine_bids
  sv2a validate /data/ketamine_bids --quick     # headers and sidecars only
"""


@dataclass(frozen=True)
class Problem:
    """One finding of the validator.

    Parameters
    ----------
    severity : str
        ``"error"`` (the dataset cannot be processed as is) or ``"warning"``.
    file : str
        The file or folder concerned.
    message : str
        What is wrong and how to fix it.
    """

    severity: str  # "error" or "warning"
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.file}: {self.message}"


def _catch(problems: list[Problem], file: str, func: Callable[..., Any], *args: Any,
           **kwargs: Any) -> Any:
    """Run ``func``; record Sv2aErrors as errors and sv2a warnings as warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = func(*args, **kwargs)
        except Sv2aError as exc:
            problems.append(Problem("error", file, str(exc)))
            result = None
    for w in caught:
        problems.append(Problem("warning", file, str(w.message)))
    return result


def validate_dataset(bids_dir: str | os.PathLike[str], *, read_data: bool = True,
                     progress: bool = False) -> list[Problem]:
    """Validate a BIDS PET dataset and return every problem found.

    Checks: ``dataset_description.json``; ``participants.tsv`` (and its ``arm`` column);
    each PET image with its sidecar (frame timing vs image, units, radionuclide, injected
    dose), and with ``read_data`` the voxel data (truncation, NaNs); each blood recording
    (units, parent fraction range, coverage of the scan); each segmentation (label table,
    grid equal to the PET grid, empty regions).

    Parameters
    ----------
    bids_dir : str or path-like
        Dataset root.
    read_data : bool
        Also read every image's voxels (slower); otherwise headers and sidecars only.
    progress : bool
        Report progress on stderr: the number of scans first, then a bar on a terminal or
        one line per checked scan (with the number that had errors and the elapsed time) in
        a log or batch job (:mod:`sv2a.progress`).

    Returns
    -------
    list of Problem
        Every error and warning, in the order found (empty: nothing to report).
    """
    root = Path(bids_dir)
    problems: list[Problem] = []
    if not (root / "dataset_description.json").exists():
        problems.append(Problem("error", str(root), "dataset_description.json is missing; "
                                "every BIDS dataset needs one (Name, BIDSVersion)"))
    parts = _catch(problems, str(root / "participants.tsv"), read_participants, root)
    disc = _catch(problems, str(root), discover, root)
    for path, reason in (disc.skipped if disc is not None else []):
        problems.append(Problem("error", str(path), f"{Path(path).name}: {reason}"))
    scans = disc.scans if disc is not None else None
    if not scans:
        if scans is not None:
            problems.append(Problem("error", str(root), "no PET images (sub-*/[ses-*/]pet/"
                                    "*_pet.nii[.gz]) found"))
        return problems
    if parts is not None:
        pfile = str(root / "participants.tsv")
        if parts.empty:
            problems.append(Problem("warning", pfile, "missing or empty; arms and body weights "
                                    "cannot be read"))
        else:
            subs = sorted({s.subject for s in scans})
            absent = [s for s in subs if s not in parts.index]
            if absent:
                problems.append(Problem("warning", pfile, f"subjects {absent} are not listed"))
            if "arm" in parts.columns:
                no_arm = [s for s in subs if s in parts.index and
                          (not isinstance(parts.loc[s, "arm"], str) or not parts.loc[s, "arm"])]
                if no_arm:
                    problems.append(Problem("warning", pfile, f"subjects {no_arm} have no 'arm'"
                                            " value; group comparisons will exclude them"))
    with Progress(len(scans), label="sv2a validate", unit="scans", verb="checked",
                  failed_word="with errors", enabled=progress) as bar:
        for scan in scans:
            n_err = sum(p.severity == "error" for p in problems)
            _check_scan(problems, scan, parts, read_data)
            bar.update(failed=sum(p.severity == "error" for p in problems) > n_err,
                       note=scan.pet.name)
    return problems


def _check_scan(problems: list[Problem], scan: Any, parts: Any, read_data: bool) -> None:
    """Check one scan's image, sidecar, blood recordings and segmentation."""
    from .atlas import load_atlas
    from .blood_io import load_blood
    from .pet import load_pet

    pfile = str(scan.pet)
    p_meta = parts.loc[scan.subject].to_dict() if (
        parts is not None and scan.subject in parts.index) else None
    pet = _catch(problems, pfile, load_pet, scan.pet, participants=p_meta)
    if pet is None:
        return
    if "injected_mbq" not in pet.meta:
        problems.append(Problem("warning", pfile, "InjectedRadioactivity missing in the "
                                "sidecar; SUV cannot be computed"))
    if read_data:
        data = _catch(problems, pfile, lambda p=pet: p.data)
        if data is not None:
            n_nan = int(np.isnan(data).sum())
            if n_nan:
                problems.append(Problem("warning", pfile, f"{n_nan} NaN voxel values "
                                        "(excluded from regional means)"))
            if not np.any(data):
                problems.append(Problem("error", pfile, "the image is all zero"))
    for path in scan.blood.values():
        inp = _catch(problems, str(path), load_blood, path)
        if inp is not None:
            _catch(problems, str(path), inp.check_covers, float(pet.frames.end[-1]),
                   what=f"the PET scan ({scan.pet.name})")
    if scan.dseg is None:
        problems.append(Problem("warning", pfile, "no anat/*_dseg segmentation for this "
                                "scan; regional analysis needs one (or --atlas)"))
    else:
        atlas = _catch(problems, str(scan.dseg), load_atlas, scan.dseg, pet=pet)
        if atlas is not None:
            present = set(np.unique(atlas.labels).tolist()) - {0}
            empty = [n for k, n in atlas.label_names.items() if k not in present]
            if empty:
                problems.append(Problem("warning", str(scan.dseg), f"regions {empty} "
                                        "have no voxels"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sv2a validate`` arguments to a parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.

    Returns
    -------
    None
    """
    parser.add_argument("bids_dir", help="BIDS dataset root")
    parser.add_argument("--quick", action="store_true",
                        help="check headers and sidecars only (do not read voxel data)")


def main(args: argparse.Namespace) -> int:
    """Run ``sv2a validate``: print every problem and a summary line.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``bids_dir``, ``quick``).

    Returns
    -------
    int
        Exit status: 1 if any problem is an error, else 0.
    """
    problems = validate_dataset(args.bids_dir, read_data=not args.quick, progress=True)
    for p in problems:
        print(p)
    n_err = sum(p.severity == "error" for p in problems)
    n_warn = len(problems) - n_err
    print(f"{n_err} error(s), {n_warn} warning(s) in {args.bids_dir}")
    return 1 if n_err else 0
