"""The ``.bidsignore`` of a phantom dataset: the files that released BIDS does not define.

A phantom dataset (and the demo dataset made from one) passes the official bids-validator
with zero errors. Four kinds of files that sv2a writes and reads are not part of released
BIDS raw data; they stay where sv2a and its users expect them and are listed in
``.bidsignore`` (the mechanism BIDS provides for files it does not cover):

* ``truth.tsv`` and ``design.json`` at the root -- the simulation's ground truth and
  settings;
* ``anat/*_dseg.nii.gz`` + ``_dseg.tsv`` beside the PET -- BIDS defines segmentations for
  derivative datasets only; sv2a reads a scan's atlas from ``anat/`` of the raw dataset;
* ``pet/*_desc-motiontruth_timeseries.tsv`` + ``.json`` -- the true head motion of a scan;
* ``phenotype/<measure>.tsv`` + ``.json`` with a ``session_id`` column -- one row per
  participant and session, as the BIDS phenotype proposal (BEP036) has it; released BIDS
  allows one row per participant only.

Only the kinds present in the dataset are listed, so the file says what the folder holds.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["bidsignore_lines", "write_bidsignore"]

_HEADER = ["# sv2a phantom: files that released BIDS raw data does not define (see",
           "# sv2a.phantom.bidsignore); every other file follows BIDS."]


def _session_phenotypes(root: Path) -> list[str]:
    """Names of the ``phenotype/*.tsv`` files with a ``session_id`` column."""
    out = []
    for p in sorted((root / "phenotype").glob("*.tsv")):
        with p.open(encoding="utf-8") as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
        if "session_id" in header:
            out.append(p.stem)
    return out


def bidsignore_lines(root: str | os.PathLike[str]) -> list[str]:
    """The patterns of a phantom dataset's ``.bidsignore`` for the files it holds.

    Parameters
    ----------
    root : path
        Dataset root.

    Returns
    -------
    list of str
        gitignore-style patterns (``#`` lines are comments), one group per kind of file
        present: ground truth, segmentations, true motion, session-level phenotype tables.
    """
    root = Path(root)
    lines = list(_HEADER)
    simulation = [f"/{n}" for n in ("truth.tsv", "design.json") if (root / n).is_file()]
    if simulation:
        lines += ["# simulation ground truth and settings", *simulation]
    if any(root.glob("sub-*/**/anat/*_dseg.nii*")):
        lines += ["# segmentations beside the PET (BIDS defines dseg for derivatives only)",
                  "sub-*/**/anat/*_dseg.nii.gz", "sub-*/**/anat/*_dseg.nii",
                  "sub-*/**/anat/*_dseg.tsv"]
    if any(root.glob("sub-*/**/pet/*_desc-motiontruth_timeseries.tsv")):
        lines += ["# true head motion of the simulation",
                  "sub-*/**/pet/*_desc-motiontruth_timeseries.tsv",
                  "sub-*/**/pet/*_desc-motiontruth_timeseries.json"]
    phen = _session_phenotypes(root)
    if phen:
        lines.append("# scores per participant and session (session_id column, BEP036)")
        for name in phen:
            lines += [f"/phenotype/{name}.tsv", f"/phenotype/{name}.json"]
    return lines


def write_bidsignore(root: str | os.PathLike[str]) -> Path:
    """Write ``ROOT/.bidsignore`` for the files the phantom dataset holds now.

    Parameters
    ----------
    root : path
        Dataset root, with every file already written.

    Returns
    -------
    Path
        The file (:func:`bidsignore_lines`, one per line).
    """
    from ..atomic import atomic_path

    path = Path(root) / ".bidsignore"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(bidsignore_lines(root)) + "\n", encoding="utf-8")
    return path
