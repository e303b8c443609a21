"""BIDS dataset discovery and derivative file naming.

:func:`find_scans` lists every PET scan of a dataset as a :class:`Scan` (subject, session, PET
image, blood recordings, segmentation); :func:`read_participants` reads ``participants.tsv``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import BIDSError

__all__ = ["Scan", "find_scans", "read_participants", "scan_prefix", "strip_prefix"]

_PET_RE = re.compile(r"^(sub-[A-Za-z0-9]+)(_ses-[A-Za-z0-9]+)?(_.*)?_pet\.nii(\.gz)?$")


def strip_prefix(label: str, prefix: str) -> str:
    """Remove a BIDS entity prefix from a label, if present.

    Parameters
    ----------
    label : str
        A label with or without the prefix (``'sub-01'`` or ``'01'``).
    prefix : str
        The entity (``'sub'``, ``'ses'``).

    Returns
    -------
    str
        The label without ``<prefix>-`` (``'sub-01'`` -> ``'01'``).
    """
    label = str(label)
    return label[len(prefix) + 1:] if label.startswith(prefix + "-") else label


@dataclass(frozen=True)
class Scan:
    """One PET acquisition in a BIDS dataset.

    Attributes
    ----------
    subject, session : str
        Labels without the ``sub-``/``ses-`` prefix (``session`` is ``None`` when the dataset
        has no sessions).
    pet : Path
        ``*_pet.nii[.gz]``.
    blood : dict
        ``{"manual": Path, "autosampler": Path}`` for the recordings that exist.
    dseg : Path or None
        Segmentation (``anat/*_dseg.nii[.gz]``) of this subject/session, if any.
    """

    subject: str
    session: str | None
    pet: Path
    blood: dict[str, Path] = field(default_factory=dict)
    dseg: Path | None = None

    @property
    def prefix(self) -> str:
        """``sub-01_ses-bl`` (or ``sub-01``)."""
        return scan_prefix(self.subject, self.session)

    @property
    def label(self) -> str:
        """``sub-01/ses-bl`` for messages and logs."""
        return f"sub-{self.subject}" + (f"/ses-{self.session}" if self.session else "")


def scan_prefix(subject: str, session: str | None) -> str:
    """BIDS file-name prefix of a subject/session.

    Parameters
    ----------
    subject : str
        Subject label without ``sub-``.
    session : str or None
        Session label without ``ses-`` (None: no session).

    Returns
    -------
    str
        ``'sub-01_ses-bl'`` (or ``'sub-01'``).
    """
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


def _find_dseg(anat: Path, prefix: str) -> Path | None:
    if not anat.is_dir():
        return None
    cands = sorted(p for p in anat.iterdir()
                   if p.name.startswith(prefix) and re.search(r"_dseg\.nii(\.gz)?$", p.name))
    return cands[0] if cands else None


def find_scans(bids_dir: str | os.PathLike[str], *, participant_label: Iterable[str] | None = None,
               session_label: Iterable[str] | None = None) -> list[Scan]:
    """Every PET scan in a BIDS dataset, sorted by subject and session.

    Parameters
    ----------
    bids_dir : path
        Dataset root (holds ``sub-*`` folders).
    participant_label, session_label : iterable of str, optional
        Keep only these subjects / sessions (with or without ``sub-``/``ses-``).

    Returns
    -------
    list of Scan
        One per ``*_pet.nii[.gz]`` file, with its blood recordings and segmentation.

    Raises
    ------
    BIDSError
        The folder is missing, has no ``sub-*`` folders, or a requested participant is absent.
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise BIDSError(f"BIDS directory not found: {root}")
    subs = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subs:
        raise BIDSError(f"{root}: no sub-* folders; is this a BIDS dataset root?")
    want_sub = {strip_prefix(s, "sub") for s in participant_label} if participant_label else None
    want_ses = {strip_prefix(s, "ses") for s in session_label} if session_label else None
    if want_sub:
        missing = want_sub - {strip_prefix(p.name, "sub") for p in subs}
        if missing:
            raise BIDSError(f"{root}: participant(s) {sorted(missing)} not found")
    scans: list[Scan] = []
    for sub_dir in subs:
        sub = strip_prefix(sub_dir.name, "sub")
        if want_sub and sub not in want_sub:
            continue
        ses_dirs: list[Path | None] = [
            *sorted(p for p in sub_dir.glob("ses-*") if p.is_dir())] or [None]
        for ses_dir in ses_dirs:
            ses = strip_prefix(ses_dir.name, "ses") if ses_dir else None
            if want_ses and ses not in want_ses:
                continue
            base = ses_dir or sub_dir
            pet_dir = base / "pet"
            if not pet_dir.is_dir():
                continue
            for pet in sorted(pet_dir.iterdir()):
                m = _PET_RE.match(pet.name)
                if not m:
                    continue
                stem = pet.name.split("_pet.nii")[0]
                blood: dict[str, Path] = {}
                for rec in ("manual", "autosampler"):
                    cands = sorted(pet_dir.glob(f"{scan_prefix(sub, ses)}*recording-{rec}"
                                                "_blood.tsv"))
                    # prefer the recording with the same entities as the PET file
                    same = [c for c in cands if c.name.startswith(stem)]
                    if same or cands:
                        blood[rec] = (same or cands)[0]
                scans.append(Scan(sub, ses, pet, blood,
                                  _find_dseg(base / "anat", scan_prefix(sub, ses))))
    return scans


def read_participants(bids_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a dataset's ``participants.tsv``.

    Parameters
    ----------
    bids_dir : str or path-like
        Dataset root.

    Returns
    -------
    pandas.DataFrame
        One row per participant, indexed by the label without ``sub-`` (``n/a`` as NaN);
        an empty frame when the file is absent.

    Raises
    ------
    BIDSError
        The first column is not ``participant_id``.
    """
    p = Path(bids_dir) / "participants.tsv"
    if not p.exists():
        return pd.DataFrame(index=pd.Index([], name="participant_id"))
    df = pd.read_csv(p, sep="\t", na_values=["n/a"], dtype={"participant_id": str})
    if "participant_id" not in df.columns:
        raise BIDSError(f"{p}: first column must be 'participant_id'")
    df["participant_id"] = df["participant_id"].map(lambda s: strip_prefix(s, "sub"))
    return df.set_index("participant_id")
