"""BIDS dataset discovery and derivative file naming.

:func:`find_scans` lists every PET scan of a dataset as a :class:`Scan` (subject, session, PET
image, blood recordings, segmentation); :func:`read_participants` reads ``participants.tsv``.
"""

from __future__ import annotations

import glob
import io
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import BIDSError, Sv2aWarning

__all__ = ["Scan", "Discovery", "discover", "find_scans", "read_participants", "scan_prefix",
           "strip_prefix"]

_PET_RE = re.compile(r"^(sub-[A-Za-z0-9]+)(_ses-[A-Za-z0-9]+)?(_.*)?_pet\.nii(\.gz)?$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")


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
    dseg_problem : str or None
        Why no segmentation was chosen although some exist (several apply to the scan);
        the pipeline reports it for the scan unless ``--atlas`` gives one for all scans.
    """

    subject: str
    session: str | None
    pet: Path
    blood: dict[str, Path] = field(default_factory=dict)
    dseg: Path | None = None
    dseg_problem: str | None = None

    @property
    def prefix(self) -> str:
        """``sub-01_ses-bl`` (or ``sub-01``)."""
        return scan_prefix(self.subject, self.session)

    @property
    def label(self) -> str:
        """``sub-01/ses-bl`` for messages and logs."""
        return f"sub-{self.subject}" + (f"/ses-{self.session}" if self.session else "")

    def input_files(self) -> list[Path]:
        """Every existing file of the dataset that feeds this scan's results.

        Returns
        -------
        list of Path
            The PET image and its JSON sidecars, each blood recording and its sidecars, the
            segmentation and its label table; sidecars include those inherited from the
            session, subject and dataset-root folders (BIDS inheritance principle, top to
            bottom after their data file); the label table is the nearest applicable one (the
            one that is read). Where several files apply at one folder level (not allowed;
            loading the scan fails with a message naming them) all of them are listed. Files
            that do not exist are left out.
        """
        from .sidecar import applicable_files

        cands: list[Path] = [self.pet, *applicable_files(self.pet, ".json", strict=False)]
        for rec in self.blood.values():
            cands += [rec, *applicable_files(rec, ".json", strict=False)]
        if self.dseg is not None:
            tables = applicable_files(self.dseg, ".tsv", strict=False)
            nearest = [t for t in tables if t.parent == tables[-1].parent] if tables else []
            cands += [self.dseg, *nearest]
        return [c for c in dict.fromkeys(cands) if c.is_file()]


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


def _entities(name: str, suffix: str) -> dict[str, str]:
    """The ``key-value`` entities of a BIDS file name before ``_<suffix>``."""
    stem = name.split(f"_{suffix}.")[0]
    return dict(part.split("-", 1) for part in stem.split("_") if "-" in part)


def _applicable(cands: list[Path], pet_entities: dict[str, str], suffix: str,
                ignore: tuple[str, ...] = ()) -> list[Path]:
    """The candidates whose entities (besides ``ignore``) all appear with the same value in
    the PET file's name, most specific (most entities) first."""
    keep = []
    for c in cands:
        ents = {k: v for k, v in _entities(c.name, suffix).items() if k not in ignore}
        if all(pet_entities.get(k) == v for k, v in ents.items()):
            keep.append((len(ents), c))
    return [c for _, c in sorted(keep, key=lambda kc: (-kc[0], kc[1].name))]


def _find_dseg(anat: Path, prefix: str, pet_entities: dict[str, str]
               ) -> tuple[Path | None, str | None]:
    """The one segmentation of a scan, or ``None`` and why when several apply (twins
    ``.nii``/``.nii.gz``, or different ``desc-``/``space-`` ... of one subject/session)."""
    if not anat.is_dir():
        return None, None
    cands = sorted(p for p in anat.iterdir()
                   if p.name.startswith(prefix) and re.search(r"_dseg\.nii(\.gz)?$", p.name))
    # entities a PET file does not carry (space, desc, seg, label, res, den) do not select
    pet_like = {k: v for k, v in pet_entities.items() if k not in ("sub", "ses")}
    usable = [c for c in cands if all(pet_like.get(k, v) == v for k, v in
                                      _entities(c.name, "dseg").items() if k in pet_like)]
    if len(usable) <= 1:
        return (usable[0] if usable else None), None
    return None, (f"{len(usable)} segmentations apply to this scan ("
                  + ", ".join(c.name for c in usable) + "); which one to use would be a "
                  "guess: keep one in anat/ (or move the others to derivatives), or give one "
                  "for all scans with --atlas PATH --atlas-labels TSV")


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found in a BIDS dataset.

    Attributes
    ----------
    scans : list of Scan
        The PET scans, sorted by subject and session.
    skipped : list of (str, str)
        ``(path, reason)`` of each ``sub-*``/``ses-*`` folder and ``*_pet.nii[.gz]`` file that
        was not used: labels that are not alphanumeric, PET file names that do not follow the
        BIDS pattern or name another subject/session than their folder.
    """

    scans: list[Scan]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _bad_label(folder: Path, entity: str) -> str | None:
    """Why a ``sub-``/``ses-`` folder name is not a valid BIDS label (None: it is)."""
    label = strip_prefix(folder.name, entity)
    if _LABEL_RE.match(label):
        return None
    return (f"'{label}' is not a valid BIDS {entity} label (letters and digits only); "
            f"rename the folder and the files in it, e.g. {entity}-"
            f"{re.sub(r'[^A-Za-z0-9]', '', label) or '01'}")


def discover(bids_dir: str | os.PathLike[str], *,
             participant_label: Iterable[str] | None = None,
             session_label: Iterable[str] | None = None) -> Discovery:
    """Every PET scan in a BIDS dataset, and every folder or PET file that was not used.

    Parameters
    ----------
    bids_dir : path
        Dataset root (holds ``sub-*`` folders).
    participant_label, session_label : iterable of str, optional
        Keep only these subjects / sessions (with or without ``sub-``/``ses-``).

    Returns
    -------
    Discovery
        The scans (one per ``*_pet.nii[.gz]`` file, with its blood recordings and
        segmentation) and the skipped entries with the reason for each. Nothing is skipped
        without being listed.

    Raises
    ------
    BIDSError
        The folder is missing, has no ``sub-*`` folders with a valid label, or a requested
        participant is absent or its label is not alphanumeric.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for sub in ("sub-01", "sub-01_a"):
    ...         (Path(d) / sub / "pet").mkdir(parents=True)
    ...         _ = (Path(d) / sub / "pet" / f"{sub}_pet.nii.gz").write_bytes(b"")
    ...     found = discover(d)
    >>> [s.subject for s in found.scans], [Path(p).name for p, _ in found.skipped]
    (['01'], ['sub-01_a'])
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise BIDSError(f"BIDS directory not found: {root}")
    skipped: list[tuple[str, str]] = []
    subs = []
    for p in sorted(p for p in root.glob("sub-*") if p.is_dir()):
        why = _bad_label(p, "sub")
        if why:
            skipped.append((str(p), why))
        else:
            subs.append(p)
    if not subs:
        extra = (f"; folders with invalid labels: {[Path(p).name for p, _ in skipped]} "
                 "(BIDS labels are letters and digits only)" if skipped else "")
        raise BIDSError(f"{root}: no sub-* folders{extra}; is this a BIDS dataset root?")
    want_sub = {strip_prefix(s, "sub") for s in participant_label} if participant_label else None
    want_ses = {strip_prefix(s, "ses") for s in session_label} if session_label else None
    if want_sub:
        bad = sorted(s for s in want_sub if not _LABEL_RE.match(s))
        if bad:
            raise BIDSError(f"{root}: participant label(s) {bad} are not valid BIDS labels "
                            "(letters and digits only); rename those folders")
        missing = want_sub - {strip_prefix(p.name, "sub") for p in subs}
        if missing:
            raise BIDSError(f"{root}: participant(s) {sorted(missing)} not found")
    scans: list[Scan] = []
    for sub_dir in subs:
        sub = strip_prefix(sub_dir.name, "sub")
        if want_sub and sub not in want_sub:
            continue
        ses_dirs: list[Path | None] = []
        for p in sorted(p for p in sub_dir.glob("ses-*") if p.is_dir()):
            why = _bad_label(p, "ses")
            if why:
                skipped.append((str(p), why))
            else:
                ses_dirs.append(p)
        if not ses_dirs and not any(p.is_dir() for p in sub_dir.glob("ses-*")):
            ses_dirs = [None]
        elif (sub_dir / "pet").is_dir():
            skipped.append((str(sub_dir / "pet"), "the subject has ses-* folders, so data "
                            "outside them is not BIDS and is not used: move it into a session "
                            f"folder (e.g. {sub_dir.name}/ses-01/pet)"))
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
                    if re.search(r"_pet\.nii(\.gz)?$", pet.name):
                        skipped.append((str(pet), "the file name does not follow the BIDS "
                                        "pattern sub-<label>[_ses-<label>][_<entities>]_pet.nii"
                                        "[.gz] with letter-and-digit labels"))
                    continue
                if m.group(1) != f"sub-{sub}" or (m.group(2) or "") != (
                        f"_ses-{ses}" if ses else ""):
                    skipped.append((str(pet), f"the file name names "
                                    f"{m.group(1)}{m.group(2) or ''} but it lies in the folder "
                                    f"of {scan_prefix(sub, ses)}; rename or move it"))
                    continue
                stem = pet.name.split("_pet.nii")[0]
                twins = sorted(pet_dir.glob(f"{glob.escape(stem)}_pet.nii*"))
                if len([t for t in twins if re.search(r"_pet\.nii(\.gz)?$", t.name)]) > 1:
                    skipped.append((str(pet), f"{stem} has both a .nii and a .nii.gz image; "
                                    "which one holds the data would be a guess: keep one"))
                    continue
                ents = _entities(pet.name, "pet")
                blood: dict[str, Path] = {}
                for rec in ("manual", "autosampler"):
                    cands = sorted(pet_dir.glob(f"{scan_prefix(sub, ses)}*recording-{rec}"
                                                "_blood.tsv"))
                    # only recordings whose entities (trc, rec, run, ...) are the PET's
                    fit = _applicable(cands, ents, "blood", ignore=("recording",))
                    if fit:
                        blood[rec] = fit[0]
                skipped.extend(e for e in _unread_blood(pet_dir, scan_prefix(sub, ses))
                               if e not in skipped)
                dseg, why = _find_dseg(base / "anat", scan_prefix(sub, ses), ents)
                scans.append(Scan(sub, ses, pet, blood, dseg, why))
    return Discovery(scans, skipped)


def _unread_blood(pet_dir: Path, prefix: str) -> list[tuple[str, str]]:
    """Blood recordings beside a PET file that discovery does not read (BIDS blood
    recordings are ``*_blood.tsv`` with a ``.json``; a compressed ``.tsv.gz`` is not one; a
    recording label other than ``manual``/``autosampler``), each with the fix."""
    out = [(str(p), "a blood recording must be an uncompressed *_blood.tsv (BIDS does not "
            f"allow .tsv.gz for blood); decompress it: gunzip {p.name}")
           for p in sorted(pet_dir.glob(f"{prefix}*_blood.tsv.gz"))]
    for p in sorted(pet_dir.glob(f"{prefix}*_recording-*_blood.tsv")):
        label = _entities(p.name, "blood").get("recording")
        if label not in ("manual", "autosampler"):
            out.append((str(p), f"blood recording '{label}' is not read: sv2a reads "
                        "recording-manual (discrete samples) and recording-autosampler "
                        "(continuous); rename it to the one it is"))
    return out


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
        One per ``*_pet.nii[.gz]`` file, with its blood recordings and segmentation. Folders
        and PET files that cannot be used (see :func:`discover`) are named in one
        :class:`~sv2a.errors.Sv2aWarning`.

    Raises
    ------
    BIDSError
        The folder is missing, has no ``sub-*`` folders, or a requested participant is absent.
    """
    found = discover(bids_dir, participant_label=participant_label,
                     session_label=session_label)
    if found.skipped:
        warnings.warn(
            f"{bids_dir}: {len(found.skipped)} folder(s)/file(s) were not used: "
            + "; ".join(f"{p}: {why}" for p, why in found.skipped), Sv2aWarning, stacklevel=2)
    return found.scans


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
        The file is not UTF-8 or has a row with more fields than the header, the first column
        is not ``participant_id``, or a participant has more than one row.
    """
    from .sidecar import read_utf8

    p = Path(bids_dir) / "participants.tsv"
    if not p.exists():
        return pd.DataFrame(index=pd.Index([], name="participant_id"))
    text = read_utf8(p, BIDSError)
    lines = text.splitlines()
    width = len(lines[0].split("\t")) if lines else 0
    for ln_no, line in enumerate(lines[1:], 2):
        n = len(line.split("\t"))
        if line.strip() and n != width:
            raise BIDSError(f"{p}: line {ln_no} has {n} tab-separated "
                            f"value(s) but the header has {width}: {line!r}; every row needs "
                            "one value per column, or values would shift into the wrong column")
    df = pd.read_csv(io.StringIO(text), sep="\t", na_values=["n/a"],
                     dtype={"participant_id": str})
    if "participant_id" not in df.columns:
        raise BIDSError(f"{p}: first column must be 'participant_id'")
    df["participant_id"] = df["participant_id"].map(lambda s: strip_prefix(s, "sub"))
    dup = sorted(set(df.loc[df["participant_id"].duplicated(), "participant_id"]))
    if dup:
        raise BIDSError(f"{p}: participant(s) {['sub-' + d for d in dup]} are listed more than "
                        "once; which row's arm, weight or covariates apply would be a guess: "
                        "keep one row per participant")
    return df.set_index("participant_id")
