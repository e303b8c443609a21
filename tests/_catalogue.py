"""The bad-input catalogue: one valid phantom scan, and one corruption of it per case.

Each :class:`Case` names what is broken, how to break a copy of the valid scan (a function
of the case's :class:`Files`), and what sv2a must do about it at each of the three levels
that ``tests/test_bad_input_catalogue.py`` checks:

* ``api``: the public loaders and fitters (:func:`api_chain`: ``sv2a.load_pet`` ->
  ``.data`` -> ``sv2a.load_atlas(pet=)`` -> ``sv2a.extract_tacs`` -> ``sv2a.fit`` SRTM ->
  ``sv2a.load_blood`` with its coverage check -> ``sv2a.fit`` Logan); the step named by
  ``stage`` must raise the exact class, the steps before it must not;
* ``validate``: :func:`sv2a.validate.validate_dataset`;
* ``run``: ``sv2a run`` (:func:`sv2a.pipeline.run_participant`) and its ``logs/failures.tsv``.

An expectation is an :mod:`sv2a.errors` class name (the input is refused with that class),
``"ok"`` (the input is legal: the scan is processed, with the result of the valid copy where
``same_result``) or ``"warn"`` (usable, with a warning that says ``says``). Where today's
code does not do what the catalogue asks, ``xfail`` holds the reason per level; the test
marks that level ``xfail(strict=True)``, so it flips to a failure when the code is fixed and
the mark must then go.

Every case of :data:`CASES` is one subject of one corrupted dataset (``sub-c01`` ...), so the
whole catalogue costs one ``validate`` and one ``run``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

#: Session of every catalogue scan, the regions kept from the phantom atlas, the models run.
SES = "bl"
REGIONS = {1: "frontal_cortex", 12: "putamen", 17: "centrum_semiovale"}
REFERENCE = "centrum_semiovale"
MODELS = ["srtm", "logan"]
MODEL_OPTIONS = {"logan": {"tstar": 30.0}}  # min; the noise-free first frame is 0
VALID = "ref"  # the label of the untouched copy in the corrupted dataset
DROP = object()  # sidecar value that removes the field


# --------------------------------------------------------------------------- files of a scan
@dataclass(frozen=True)
class Files:
    """The files of one catalogue subject (``sub-<label>/ses-bl``)."""

    root: Path
    label: str
    ses: str = SES

    @property
    def prefix(self) -> str:
        return f"sub-{self.label}_ses-{self.ses}"

    @property
    def sub_dir(self) -> Path:
        return self.root / f"sub-{self.label}"

    @property
    def pet(self) -> Path:
        return self.sub_dir / f"ses-{self.ses}" / "pet" / f"{self.prefix}_pet.nii.gz"

    @property
    def pet_json(self) -> Path:
        return self.pet.with_name(f"{self.prefix}_pet.json")

    @property
    def blood(self) -> Path:
        return self.pet.with_name(f"{self.prefix}_recording-manual_blood.tsv")

    @property
    def blood_json(self) -> Path:
        return self.blood.with_suffix(".json")

    @property
    def dseg(self) -> Path:
        return self.sub_dir / f"ses-{self.ses}" / "anat" / f"{self.prefix}_dseg.nii.gz"

    @property
    def dseg_tsv(self) -> Path:
        return self.dseg.with_name(f"{self.prefix}_dseg.tsv")


# --------------------------------------------------------------------------- the valid scan
def make_template(where: Path) -> Files:
    """Write the one valid scan every case starts from: a noise-free 8 mm human [11C]UCB-J
    phantom (24 x 28 x 24 voxels, 39 frames over 90 min, manual arterial blood) with three
    regions kept (frontal cortex, putamen and the centrum semiovale reference).

    Parameters
    ----------
    where : Path
        An empty folder; the phantom is simulated in ``where/phantom`` and the template
        written as subject ``sub-ref`` of ``where/template``.

    Returns
    -------
    Files
        The template's files.
    """
    from sv2a.phantom import make_cohort

    ph = where / "phantom"
    make_cohort(ph, design="ketamine-human", seed=1, n_subjects=1, voxel_mm=8.0, noise=0,
                fwhm=0, blood="all", scores=False)
    src = ph / "sub-01" / "ses-baseline"
    f = Files(where / "template", VALID)
    for d in (f.pet.parent, f.dseg.parent):
        d.mkdir(parents=True)
    old = "sub-01_ses-baseline"
    for name in ("_pet.nii.gz", "_pet.json", "_recording-manual_blood.tsv",
                 "_recording-manual_blood.json"):
        shutil.copy(src / "pet" / f"{old}{name}", f.pet.parent / f"{f.prefix}{name}")
    seg = nib.load(src / "anat" / f"{old}_dseg.nii.gz")
    lab = np.asarray(seg.dataobj).astype(np.int16)
    lab[~np.isin(lab, list(REGIONS))] = 0
    _save(f.dseg, lab, seg.affine, np.int16)
    write_table(f.dseg_tsv, REGIONS)
    return f


def write_table(path: Path, table: dict[int, str]) -> None:
    """A ``dseg.tsv`` label table."""
    path.write_text("index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in table.items()))


def _save(path: Path, data: np.ndarray, affine: np.ndarray, dtype: Any = np.float32) -> None:
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), np.asarray(affine, float))
    img.set_data_dtype(dtype)
    nib.save(img, str(path))


def add_subject(template: Files, root: Path, label: str, ses: str = SES) -> Files:
    """Copy the template scan into ``root`` as ``sub-<label>/ses-<ses>``.

    Parameters
    ----------
    template : Files
        :func:`make_template`'s scan.
    root : Path
        The dataset root.
    label, ses : str
        The new subject and session labels.

    Returns
    -------
    Files
        The copy's files.
    """
    f = Files(root, label, ses)
    for src_dir, dst_dir in ((template.pet.parent, f.pet.parent),
                             (template.dseg.parent, f.dseg.parent)):
        dst_dir.mkdir(parents=True, exist_ok=True)
        for p in src_dir.iterdir():
            shutil.copy(p, dst_dir / p.name.replace(template.prefix, f.prefix))
    return f


def write_dataset_files(root: Path, rows: dict[str, dict[str, Any]]) -> None:
    """``dataset_description.json`` and ``participants.tsv`` (one row per label).

    Parameters
    ----------
    root : Path
        The dataset root.
    rows : dict
        ``{label: {column: value}}``; every row has the same columns.
    """
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "sv2a bad-input catalogue", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
    cols = list(next(iter(rows.values())))
    lines = ["\t".join(["participant_id", *cols])]
    lines += ["\t".join([f"sub-{k}", *(str(v[c]) for c in cols)]) for k, v in rows.items()]
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")


PARTICIPANT = {"arm": "A", "age": 42, "weight": 86.2}


# --------------------------------------------------------------------------- corruptions
Corrupt = Callable[[Files], None]


def _meta(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def sidecar(**changes: Any) -> Corrupt:
    """Set (or, with :data:`DROP`, remove) fields of the PET sidecar."""
    def corrupt(f: Files) -> None:
        meta = _meta(f.pet_json)
        for k, v in changes.items():
            if v is DROP:
                meta.pop(k, None)
            else:
                meta[k] = v
        f.pet_json.write_text(json.dumps(meta))
    return corrupt


def frames(fn: Callable[[list[float], list[float]], tuple[list, list]]) -> Corrupt:
    """Rewrite ``FrameTimesStart`` and ``FrameDuration`` (seconds) with ``fn(starts, durs)``."""
    def corrupt(f: Files) -> None:
        meta = _meta(f.pet_json)
        meta["FrameTimesStart"], meta["FrameDuration"] = fn(
            list(meta["FrameTimesStart"]), list(meta["FrameDuration"]))
        f.pet_json.write_text(json.dumps(meta))
    return corrupt


def text(attr: str, content: str) -> Corrupt:
    """Replace a file's content."""
    def corrupt(f: Files) -> None:
        getattr(f, attr).write_text(content)
    return corrupt


def delete(attr: str) -> Corrupt:
    """Remove a file."""
    def corrupt(f: Files) -> None:
        getattr(f, attr).unlink()
    return corrupt


def truncate(attr: str) -> Corrupt:
    """Cut a file to half its bytes (a copy interrupted half way)."""
    def corrupt(f: Files) -> None:
        p = getattr(f, attr)
        raw = p.read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
    return corrupt


def _duplicate_units_key(f: Files) -> None:
    """The PET sidecar with ``Units`` written twice (JSON allows it; the last would win)."""
    text = json.dumps(_meta(f.pet_json))
    f.pet_json.write_text('{"Units": "Bq/mL", ' + text[1:])


def _half_life_min(nuclide: str) -> float:
    from sv2a.units import half_life

    return float(half_life(nuclide))


def _undo_decay_correction(f: Files) -> None:
    """The scan's voxels as a scanner writes them without decay correction (the sidecar
    still says corrected)."""
    from sv2a.frames import FrameSchedule

    meta = _meta(f.pet_json)
    fs = FrameSchedule.from_bids(meta["FrameTimesStart"], meta["FrameDuration"],
                                 radionuclide=meta["TracerRadionuclide"])
    img = nib.load(f.pet)
    _save(f.pet, np.asarray(img.dataobj) / fs.decay_factors().astype(np.float32),
          np.asarray(img.affine, float))


def image(fn: Callable[[np.ndarray], np.ndarray], attr: str = "pet",
          affine: Callable[[np.ndarray], np.ndarray] | None = None,
          dtype: Any = np.float32) -> Corrupt:
    """Rewrite an image's voxels (``fn(data) -> data``) and optionally its affine."""
    def corrupt(f: Files) -> None:
        p = getattr(f, attr)
        img = nib.load(p)
        data = np.asarray(img.dataobj)
        aff = np.asarray(img.affine, float)
        _save(p, fn(data), affine(aff) if affine else aff, dtype)
    return corrupt


def blood_rows(fn: Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]]
               ) -> Corrupt:
    """Rewrite the blood table (header cells, rows of cells) with ``fn``."""
    def corrupt(f: Files) -> None:
        lines = f.blood.read_text().splitlines()
        header, rows = fn(lines[0].split("\t"), [ln.split("\t") for ln in lines[1:]])
        f.blood.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return corrupt


def _background_row(header: list[str], rows: list[list[str]]
                    ) -> tuple[list[str], list[list[str]]]:
    """A first row 30 s before the injection holding background (0.1 % of the first row's
    activities)."""
    row = list(rows[0])
    for i, name in enumerate(header):
        if name == "time":
            row[i] = "-30"
        elif name.endswith("radioactivity") and row[i] not in ("n/a", ""):
            row[i] = f"{float(row[i]) * 1e-3:.6g}"
    return header, [row, *rows]


def _replicate_row(header: list[str], rows: list[list[str]]
                   ) -> tuple[list[str], list[list[str]]]:
    """Row 10 drawn twice: its activities 2 % higher in the replicate."""
    row = list(rows[10])
    for i, name in enumerate(header):
        if name.endswith("radioactivity") and row[i] not in ("n/a", ""):
            row[i] = f"{float(row[i]) * 1.02:.6g}"
    return header, [*rows[:11], row, *rows[11:]]


def blood_cell(row: int, col: str, value: str) -> Corrupt:
    """Set one cell of the blood table (row index after the header, column name)."""
    def fn(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
        rows[row][header.index(col)] = value
        return header, rows
    return blood_rows(fn)


def blood_column(col: str, fn: Callable[[str], str]) -> Corrupt:
    """Rewrite every cell of one blood column with ``fn(cell)``."""
    def rows_fn(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
        i = header.index(col)
        for r in rows:
            r[i] = fn(r[i])
        return header, rows
    return blood_rows(rows_fn)


def blood_meta(fn: Callable[[dict[str, Any]], None]) -> Corrupt:
    """Edit the blood sidecar in place with ``fn(meta)``."""
    def corrupt(f: Files) -> None:
        meta = _meta(f.blood_json)
        fn(meta)
        f.blood_json.write_text(json.dumps(meta))
    return corrupt


def _gzip_blood(f: Files) -> None:
    """Replace the blood table by ``*_blood.tsv.gz`` (not a BIDS blood file)."""
    import gzip

    data = f.blood.read_bytes()
    f.blood.unlink()
    f.blood.with_name(f.blood.name + ".gz").write_bytes(gzip.compress(data))


def _blood_unit_factor(factor: float) -> Corrupt:
    """Both blood activity columns times ``factor`` (units unchanged)."""
    return both(blood_column("plasma_radioactivity", _scaled(lambda v: v * factor)),
                blood_column("whole_blood_radioactivity", _scaled(lambda v: v * factor)))


def both(*fns: Corrupt) -> Corrupt:
    """Apply several corruptions in order."""
    def corrupt(f: Files) -> None:
        for fn in fns:
            fn(f)
    return corrupt


def _shuffle_rows(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    order = np.random.default_rng(3).permutation(len(rows))
    return header, [rows[i] for i in order]


def _scaled(fn: Callable[[float], float]) -> Callable[[str], str]:
    return lambda cell: cell if cell == "n/a" else repr(fn(float(cell)))


def _swap(i: int, j: int) -> Callable[[list[float], list[float]], tuple[list, list]]:
    def fn(s: list[float], d: list[float]) -> tuple[list, list]:
        s[i], s[j] = s[j], s[i]
        d[i], d[j] = d[j], d[i]
        return s, d
    return fn


def _set_duration(i: int, value: float) -> Callable[[list[float], list[float]], tuple]:
    def fn(s: list[float], d: list[float]) -> tuple[list, list]:
        d[i] = value
        return s, d
    return fn


def _gap(s: list[float], d: list[float]) -> tuple[list, list]:
    return s[:30] + [v + 60.0 for v in s[30:]], d


def _cumulative(s: list[float], d: list[float]) -> tuple[list, list]:
    return s, [a + b for a, b in zip(s, d, strict=True)]


def _last_frames_in_minutes(f: Files) -> None:
    """Keep the last nine frames (45-90 min, 5 min each), their times written in minutes."""
    image(lambda d: d[..., 30:])(f)
    frames(lambda s, d: ([v / 60 for v in s[30:]], [v / 60 for v in d[30:]]))(f)


def _one_frame_sidecar(f: Files) -> None:
    meta = _meta(f.pet_json)
    meta["FrameTimesStart"] = meta["FrameTimesStart"][-1:]
    meta["FrameDuration"] = meta["FrameDuration"][-1:]
    f.pet_json.write_text(json.dumps(meta))


def _nan_frame(d: np.ndarray) -> np.ndarray:
    d = d.astype(np.float32)
    d[..., 20] = np.nan
    return d


def _nan_voxels(f: Files) -> None:
    """Three voxels of the frontal cortex NaN in every frame (a reconstruction mask)."""
    inside = np.argwhere(np.asarray(nib.load(f.dseg).dataobj) == 1)[:3]
    def fn(d: np.ndarray) -> np.ndarray:
        d = d.astype(np.float32)
        d[tuple(inside.T)] = np.nan
        return d
    image(fn)(f)


def _shift(mm: float) -> Callable[[np.ndarray], np.ndarray]:
    def fn(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[0, 3] += mm
        return a
    return fn


def _coarser(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[:3, :3] *= 2.0
    return a


def _drop_label(label: int) -> Corrupt:
    """Remove a region: its voxels become background and its table row goes."""
    return both(image(lambda d: np.where(d == label, 0, d), "dseg", dtype=np.int16),
                text("dseg_tsv", "index\tname\n" + "".join(
                    f"{k}\t{v}\n" for k, v in REGIONS.items() if k != label)))


def _move_pet(new_name: str) -> Corrupt:
    """Rename the PET image and its sidecar (``{prefix}`` in ``new_name`` is the subject's)."""
    def corrupt(f: Files) -> None:
        name = new_name.format(prefix=f.prefix, label=f.label)
        f.pet.rename(f.pet.with_name(f"{name}_pet.nii.gz"))
        f.pet_json.rename(f.pet.with_name(f"{name}_pet.json"))
    return corrupt


def _rename_subject(new: str) -> Corrupt:
    """Rename the subject folder (and the file names in it) to ``sub-<new>``."""
    def corrupt(f: Files) -> None:
        name = new.format(label=f.label)
        for p in sorted(f.sub_dir.rglob("*"), reverse=True):
            if p.is_file():
                p.rename(p.with_name(p.name.replace(f"sub-{f.label}", f"sub-{name}")))
        f.sub_dir.rename(f.root / f"sub-{name}")
    return corrupt


def _rename_session(new: str) -> Corrupt:
    """Rename the session folder (and the file names in it) to ``ses-<new>``."""
    def corrupt(f: Files) -> None:
        ses = f.sub_dir / f"ses-{f.ses}"
        for p in sorted(ses.rglob("*"), reverse=True):
            if p.is_file():
                p.rename(p.with_name(p.name.replace(f"_ses-{f.ses}", f"_ses-{new}")))
        ses.rename(f.sub_dir / f"ses-{new}")
    return corrupt


def _no_session_level(f: Files) -> None:
    """Move the scan up to ``sub-<label>/pet`` and ``anat`` (a dataset without sessions for
    this subject; legal BIDS)."""
    ses = f.sub_dir / f"ses-{f.ses}"
    for d in ("pet", "anat"):
        (ses / d).rename(f.sub_dir / d)
        for p in (f.sub_dir / d).iterdir():
            p.rename(p.with_name(p.name.replace(f"_ses-{f.ses}", "")))
    ses.rmdir()


def _encoded(attr: str, content: str, encoding: str) -> Corrupt:
    """Replace a text file's content, written in ``encoding`` (``latin-1``, ``utf-8-sig``)."""
    def corrupt(f: Files) -> None:
        getattr(f, attr).write_bytes(content.encode(encoding))
    return corrupt


def _latin1_sidecar(f: Files) -> None:
    """The PET sidecar saved as Latin-1 with an accented institution name."""
    meta = _meta(f.pet_json)
    meta["InstitutionName"] = "Hôpital Érasme"
    f.pet_json.write_bytes(json.dumps(meta, ensure_ascii=False).encode("latin-1"))


def _label_header(fn: Callable[[Any, np.ndarray], None]) -> Corrupt:
    """Rewrite the segmentation (int16) after ``fn(image, affine)`` edits its header."""
    def corrupt(f: Files) -> None:
        old = nib.load(f.dseg)
        aff = np.asarray(old.affine, float)
        img = nib.Nifti1Image(np.asarray(old.dataobj).astype(np.int16), aff)
        img.set_data_dtype(np.int16)
        fn(img, aff)
        nib.save(img, str(f.dseg))
    return corrupt


def _forms(sform_mm: float, qform_mm: float) -> Callable[[Any, np.ndarray], None]:
    """sform (code 2) and qform (code 1) shifted along x by the given mm."""
    def fn(img: Any, aff: np.ndarray) -> None:
        img.set_sform(_shift(sform_mm)(aff), 2)
        img.set_qform(_shift(qform_mm)(aff), 1)
    return fn


def _slope(img: Any, aff: np.ndarray) -> None:
    img.header.set_slope_inter(2.0, 0.0)


# --------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One bad input and what sv2a must do about it.

    Attributes
    ----------
    area : str
        timing, units, image, sidecar, blood, atlas or layout.
    what : str
        The corruption, in words.
    corrupt : callable
        Applies it to a copy of the valid scan.
    expect : str
        Error class name, ``"ok"`` or ``"warn"``, at every level unless overridden.
    stage : str
        The step of :func:`api_chain` that must raise (or warn).
    says : str
        A regular expression the error message (or warning) must match at every level.
    api, validate, run : str or None
        Per-level expectation overriding ``expect`` (``"skip"``: the level does not apply).
    xfail : dict
        ``{level: reason}`` where today's code does not meet the expectation.
    participant : dict
        Changes to the subject's ``participants.tsv`` row.
    same_result : bool
        ``"ok"`` cases: the results must equal those of the valid copy (within
        ``result_rtol``).
    result_rtol : float
        Relative tolerance of ``same_result``: 1e-6 (rounding of the fits), more where the
        corruption rewrites float32 voxels (their rounding moves residual-based SEs).
    """

    area: str
    what: str
    corrupt: Corrupt
    expect: str
    stage: str = "pet"
    says: str = ""
    api: str | None = None
    validate: str | None = None
    run: str | None = None
    xfail: dict[str, str] = field(default_factory=dict)
    participant: dict[str, Any] = field(default_factory=dict)
    same_result: bool = False
    result_rtol: float = 1e-6

    def at(self, level: str) -> str:
        """The expectation at ``api``, ``validate`` or ``run``."""
        return getattr(self, level) or self.expect


_T = "timing"
_U = "units"
_I = "image"
_S = "sidecar"
_B = "blood"
_A = "atlas"
_L = "layout"
_FTE = "FrameTimingError"
_MDE = "MetadataError"

CASE_LIST: list[Case] = [
    # ---------------------------------------------------------------- timing
    Case(_T, "frame times in minutes labelled as seconds",
         frames(lambda s, d: ([v / 60 for v in s], [v / 60 for v in d])), _FTE,
         says="look like minutes"),
    Case(_T, "frame times in minutes labelled as seconds, a 9-frame 45-90 min scan",
         _last_frames_in_minutes, _FTE, says="minutes"),
    Case(_T, "frame times in milliseconds labelled as seconds",
         frames(lambda s, d: ([v * 1000 for v in s], [v * 1000 for v in d])), _FTE,
         says="millisecond"),
    Case(_T, "overlapping frames", frames(_set_duration(3, 20.0)), _FTE, says="overlap"),
    Case(_T, "unsorted frames", frames(_swap(20, 21)), _FTE, says="not sorted"),
    Case(_T, "FrameDuration and FrameTimesStart one frame short of the image",
         frames(lambda s, d: (s[:-1], d[:-1])), _FTE,
         says="38 frames but the image has 39"),
    Case(_T, "FrameDuration one value shorter than FrameTimesStart",
         frames(lambda s, d: (s, d[:-1])), _FTE, says="FrameTimesStart has 39 values"),
    Case(_T, "negative frame duration", frames(_set_duration(5, -10.0)), _FTE,
         says="zero or negative"),
    Case(_T, "zero frame duration", frames(_set_duration(5, 0.0)), _FTE,
         says="zero or negative"),
    Case(_T, "FrameTimesStart missing", sidecar(FrameTimesStart=DROP), _MDE,
         says="'FrameTimesStart' is missing"),
    Case(_T, "FrameDuration missing", sidecar(FrameDuration=DROP), _MDE,
         says="'FrameDuration' is missing"),
    Case(_T, "FrameDuration holds cumulative end times", frames(_cumulative), _FTE,
         says="cumulative"),
    Case(_T, "null inside FrameTimesStart",
         frames(lambda s, d: (s[:3] + [None] + s[4:], d)), _MDE, says="FrameTimesStart"),
    Case(_T, "a 60 s gap between frames 29 and 30", frames(_gap), "warn",
         says="gaps between frames"),
    # ---------------------------------------------------------------- units
    Case(_U, "kBq/mL data labelled Bq/mL", sidecar(Units="Bq/mL"), "UnitsError",
         stage="data", says="'Bq/mL'"),
    Case(_U, "Bq/mL data labelled kBq/mL", image(lambda d: d * 1000.0), "UnitsError",
         stage="data", says="Bq/mL"),
    Case(_U, "kBq/mL data labelled nCi/cc", sidecar(Units="nCi/cc"), "UnitsError",
         stage="data", says="nCi/cc"),
    Case(_U, "unknown activity unit", sidecar(Units="counts"), "UnitsError", says="'counts'"),
    Case(_U, "injected dose in kBq labelled MBq", sidecar(InjectedRadioactivityUnits="kBq"),
         "UnitsError", stage="data", says="InjectedRadioactivity"),
    Case(_U, "unknown InjectedRadioactivityUnits",
         sidecar(InjectedRadioactivityUnits="Curies please"), "UnitsError",
         says="Curies please"),
    Case(_U, "body weight in grams", sidecar(BodyWeight=86200.0), "UnitsError",
         stage="pet", says="body weight 86200 kg"),
    Case(_U, "unknown radionuclide", sidecar(TracerRadionuclide="C12"), "UnitsError",
         says="C12"),
    Case(_U, "decay-corrected image labelled ImageDecayCorrected false (corrected twice)",
         sidecar(ImageDecayCorrected=False), _MDE, stage="tacs",
         says="ImageDecayCorrected.*already decay corrected"),
    Case(_U, "image not decay corrected but labelled corrected",
         _undo_decay_correction, "UnitsError", stage="data",
         says="not decay corrected although ImageDecayCorrected is true"),
    Case(_U, "image decay corrected to 10 min, stated in ImageDecayCorrectionTime",
         both(image(lambda d: d * np.float32(2.0 ** (-10.0 / _half_life_min("C11")))),
              sidecar(ImageDecayCorrectionTime=600)), "ok", same_result=True,
         result_rtol=1e-4),  # rescaled float32 voxels: SEs move by ~1e-5
    Case(_U, "ImageDecayCorrected missing (BIDS requires it)",
         sidecar(ImageDecayCorrected=DROP), _MDE, says="ImageDecayCorrected"),
    Case(_U, "InjectedRadioactivityUnits missing (BIDS requires it)",
         sidecar(InjectedRadioactivityUnits=DROP), _MDE, says="InjectedRadioactivityUnits"),
    Case(_U, "injection 60 s after TimeZero (InjectionStart)",
         sidecar(InjectionStart=60), _MDE, says="injection was 60 s after TimeZero"),
    Case(_U, "body weight 700 kg", sidecar(BodyWeight=700.0), "UnitsError",
         says="body weight 700 kg"),
    Case(_U, "sidecar BodyWeight in lb (190) beside the participants.tsv weight in kg",
         sidecar(BodyWeight=190.0), "warn", stage="pet", says="times the weight",
         participant={"weight": 86.2}),
    Case(_U, "BodyWeightUnits that is not a weight unit",
         sidecar(BodyWeightUnits="stone-ish"), "UnitsError", says="stone-ish"),
    Case(_U, "injected dose zero", sidecar(InjectedRadioactivity=0.0), _MDE,
         says="InjectedRadioactivity is 0"),
    Case(_U, "no dose and no weight: the unit cannot be checked",
         sidecar(BodyWeight=DROP, InjectedRadioactivity=DROP), "warn", stage="pet",
         says="cannot be checked for plausibility"),
    Case(_U, "participants.tsv weight with a decimal comma (no BodyWeight in the sidecar)",
         sidecar(BodyWeight=DROP), _MDE, says="86,2", participant={"weight": "86,2"}),
    Case(_U, "blood plasma Units missing",
         blood_meta(lambda m: m["plasma_radioactivity"].pop("Units")), _MDE,
         stage="blood", says="plasma_radioactivity"),
    Case(_U, "unknown blood activity unit",
         blood_meta(lambda m: m["plasma_radioactivity"].update(Units="counts")),
         "UnitsError", stage="blood", says="counts"),
    Case(_U, "unknown blood time unit",
         blood_meta(lambda m: m["time"].update(Units="fortnights")), "UnitsError",
         stage="blood", says="fortnights"),
    Case(_U, "blood plasma in kBq/mL labelled Bq/mL (whole blood kBq/mL)",
         blood_meta(lambda m: m["plasma_radioactivity"].update(Units="Bq/mL")),
         "UnitsError", stage="blood", says="plasma"),
    Case(_U, "blood times in minutes labelled seconds",
         blood_column("time", _scaled(lambda t: t / 60.0)), "InputFunctionError",
         stage="blood", says="ends at"),
    # ---------------------------------------------------------------- image
    Case(_I, "truncated .nii.gz", truncate("pet"), "DataError", stage="data",
         says="truncated or corrupt"),
    Case(_I, "not a NIfTI file", text("pet", "this is not an image\n"), "DataError",
         says="not a readable NIfTI"),
    Case(_I, "one frame all NaN", image(_nan_frame), "DataError", stage="data",
         says="NaN"),
    Case(_I, "a few NaN voxels", _nan_voxels, "warn", stage="data", says="NaN"),
    Case(_I, "all-zero image", image(np.zeros_like), "DataError", stage="data",
         says="all zero"),
    Case(_I, "3-D image (one frame) for dynamic models",
         both(image(lambda d: d[..., -1]), _one_frame_sidecar), "FitError", stage="srtm",
         says="frame"),
    Case(_I, "4th dimension one frame short of the sidecar", image(lambda d: d[..., :-1]),
         _FTE, says="39 frames but the image has 38"),
    Case(_I, "5-D image", image(lambda d: np.stack([d, d], axis=-1)), "DataError",
         says="3D or 4D"),
    # ---------------------------------------------------------------- sidecar types
    Case(_S, '"false" (a string) for ImageDecayCorrected', sidecar(ImageDecayCorrected="false"),
         _MDE, says="ImageDecayCorrected"),
    Case(_S, "0 (a number) for ImageDecayCorrected", sidecar(ImageDecayCorrected=0),
         _MDE, says="ImageDecayCorrected"),
    Case(_S, "InjectedRadioactivity as text", sidecar(InjectedRadioactivity="609.16"),
         _MDE, says="InjectedRadioactivity"),
    Case(_S, "InjectedRadioactivity as a list", sidecar(InjectedRadioactivity=[609.16]),
         _MDE, says="InjectedRadioactivity"),
    Case(_S, "BodyWeight as text with a unit", sidecar(BodyWeight="86.2 kg"), _MDE,
         says="BodyWeight"),
    Case(_S, "BodyWeight as a boolean", sidecar(BodyWeight=True), _MDE, says="BodyWeight"),
    Case(_S, "a key given twice in the PET sidecar (Units)", _duplicate_units_key, _MDE,
         says="'Units' is given twice"),
    Case(_S, "Units as a number", sidecar(Units=1000), _MDE, says="'Units'"),
    Case(_S, "FrameDuration as strings",
         frames(lambda s, d: (s, [str(v) for v in d])), _MDE, says="FrameDuration"),
    Case(_S, "FrameTimesStart as a scalar", sidecar(FrameTimesStart=0), _MDE,
         says="FrameTimesStart"),
    Case(_S, "TracerRadionuclide as a list", sidecar(TracerRadionuclide=["C11"]), _MDE,
         says="TracerRadionuclide"),
    Case(_S, "DecayCorrectionFactor as text", sidecar(DecayCorrectionFactor="1.0"), _MDE,
         says="DecayCorrectionFactor"),
    Case(_S, "invalid JSON", text("pet_json", '{"Units": "kBq/mL",'), _MDE,
         says="invalid JSON"),
    Case(_S, "a JSON array instead of an object", text("pet_json", "[1, 2]"), _MDE,
         says="JSON object"),
    Case(_S, "Units missing", sidecar(Units=DROP), _MDE, says="'Units' is missing"),
    Case(_S, "PET sidecar missing", delete("pet_json"), _MDE, says="sidecar"),
    Case(_S, "not decay corrected and no TracerRadionuclide",
         sidecar(ImageDecayCorrected=False, TracerRadionuclide=DROP), _MDE,
         says="TracerRadionuclide"),
    Case(_S, "blood column Units as a number",
         blood_meta(lambda m: m["plasma_radioactivity"].update(Units=1000)), _MDE,
         stage="blood", says="requires a string"),
    Case(_S, "blood sidecar invalid JSON", text("blood_json", "{time: s}"), _MDE,
         stage="blood", says="invalid JSON"),
    Case(_S, "PET sidecar not UTF-8 (Latin-1)", _latin1_sidecar, _MDE,
         says=r"_pet\.json: not UTF-8 \(BIDS requires UTF-8\): byte 0xf4 at line 1"),
    # ---------------------------------------------------------------- blood
    Case(_B, "decimal comma in a plasma value", blood_cell(5, "plasma_radioactivity", "35,2"),
         "DataError", stage="blood", says="decimal comma"),
    Case(_B, "text with a unit in a blood value",
         blood_cell(5, "whole_blood_radioactivity", "35 kBq"), "DataError", stage="blood",
         says="35 kBq"),
    Case(_B, "rows in random order (legal BIDS)", blood_rows(_shuffle_rows), "ok",
         stage="logan", same_result=True),
    Case(_B, "parent fraction above 1", blood_cell(8, "metabolite_parent_fraction", "1.2"),
         "InputFunctionError", stage="blood", says=r"\[0, 1\]"),
    Case(_B, "parent fraction in percent labelled unitless",
         blood_column("metabolite_parent_fraction", _scaled(lambda v: v * 100.0)),
         "InputFunctionError", stage="blood", says="divided by 100"),
    Case(_B, "blood ends at 30 min of a 90 min scan",
         blood_rows(lambda h, r: (h, [x for x in r if float(x[0]) <= 1800])),
         "InputFunctionError", stage="blood", says="ends at"),
    Case(_B, "no time column",
         blood_rows(lambda h, r: (["sample_time", *h[1:]], r)), "InputFunctionError",
         stage="blood", says="'time'"),
    Case(_B, "no activity column",
         blood_rows(lambda h, r: ([h[0], h[3]], [[x[0], x[3]] for x in r])),
         "InputFunctionError", stage="blood", says="neither plasma nor whole blood"),
    Case(_B, "every plasma and whole-blood value n/a",
         both(blood_column("plasma_radioactivity", lambda c: "n/a"),
              blood_column("whole_blood_radioactivity", lambda c: "n/a")),
         "InputFunctionError", stage="blood", says="neither plasma nor whole blood"),
    Case(_B, "negative plasma value", blood_cell(6, "plasma_radioactivity", "-40"),
         "InputFunctionError", stage="blood", says="negative"),
    Case(_B, "a background sample 30 s before the injection (legal)",
         blood_rows(_background_row), "warn", stage="blood", says="before the injection"),
    Case(_B, "a replicate draw at one time, within 2 % (legal)",
         blood_rows(_replicate_row), "warn", stage="blood", says="replicate samples"),
    Case(_B, "repeated sample time with another value (a mistyped time)",
         blood_cell(6, "time", "60"), "InputFunctionError", stage="blood",
         says="samples at 1 min that disagree"),
    Case(_B, "blood sidecar missing", delete("blood_json"), _MDE, stage="blood",
         says="sidecar"),
    Case(_B, "header only, no rows", blood_rows(lambda h, r: (h, [])),
         "InputFunctionError", stage="blood", says="neither plasma nor whole blood"),
    Case(_B, "no plasma column (whole blood only)",
         blood_rows(lambda h, r: ([h[0], h[1], h[3]], [[x[0], x[1], x[3]] for x in r])),
         "warn", stage="blood", says="whole blood is used as the input"),
    Case(_B, "no parent fraction column (not metabolite corrected)",
         blood_rows(lambda h, r: (h[:3], [x[:3] for x in r])), "warn", stage="blood",
         says="not metabolite corrected"),
    Case(_B, "blood in Bq/mL labelled kBq/mL in both plasma and whole blood",
         _blood_unit_factor(1000.0), "UnitsError", stage="logan", says="late tissue activity"),
    Case(_B, "PET in kBq/mL labelled Bq/mL without dose or weight (SUV check impossible)",
         both(image(lambda d: d / np.float32(1000.0)),
              sidecar(BodyWeight=DROP, InjectedRadioactivity=DROP)), "UnitsError",
         stage="logan", says="late tissue activity"),
    Case(_B, "parent fraction as fractions labelled %",
         blood_meta(lambda m: m["metabolite_parent_fraction"].update(Units="%")),
         "InputFunctionError", stage="blood", says="are these fractions"),
    Case(_B, "parent fraction labelled kBq/mL",
         blood_meta(lambda m: m["metabolite_parent_fraction"].update(Units="kBq/mL")),
         "UnitsError", stage="blood", says="'kBq/mL'.*parent fraction"),
    Case(_B, "blood times in seconds labelled min",
         blood_meta(lambda m: m["time"].update(Units="min")), "InputFunctionError",
         stage="blood", says="seconds labelled 'min'"),
    Case(_B, "blood times in milliseconds labelled s",
         blood_column("time", _scaled(lambda t: t * 1000.0)), "InputFunctionError",
         stage="blood", says="milliseconds labelled 's'"),
    Case(_B, "blood sampling starts at 5 min, after the peak",
         blood_rows(lambda h, r: (h, [x for x in r if float(x[0]) >= 300])),
         "InputFunctionError", stage="blood", says="peak"),
    Case(_B, "no blood samples from 2 to 20 min",
         blood_rows(lambda h, r: (h, [x for x in r if not 120 < float(x[0]) < 1200])),
         "warn", stage="blood", says="gap in blood sampling from 2 to 20 min"),
    Case(_B, "every parent fraction n/a (MetaboliteAvail true)",
         blood_column("metabolite_parent_fraction", lambda c: "n/a"), "InputFunctionError",
         stage="blood", says="column is empty"),
    Case(_B, "every parent fraction 0",
         blood_column("metabolite_parent_fraction", lambda c: "0"), "InputFunctionError",
         stage="blood", says="0 at every sample"),
    Case(_B, "every plasma value n/a (whole blood present)",
         blood_column("plasma_radioactivity", lambda c: "n/a"), "warn", stage="blood",
         says="plasma_radioactivity has no values"),
    Case(_B, "blood table compressed (.tsv.gz, not BIDS)", _gzip_blood, "warn", stage="blood",
         says="gunzip|no blood recording given", api="InputFunctionError", run="BIDSError"),
    # ---------------------------------------------------------------- atlas
    Case(_A, "segmentation header 30 mm off the PET",
         image(lambda d: d, "dseg", affine=_shift(30.0), dtype=np.int16),
         "ShapeMismatchError", stage="atlas", says="30"),
    Case(_A, "segmentation on another grid (16 mm voxels)",
         image(lambda d: d[::2, ::2, ::2], "dseg", affine=_coarser, dtype=np.int16),
         "ShapeMismatchError", stage="atlas", says="grid|shape"),
    Case(_A, "label table missing", delete("dseg_tsv"), _MDE, stage="atlas",
         says="dseg.tsv|label table"),
    Case(_A, "label table with a duplicate index",
         text("dseg_tsv", "index\tname\n1\tfrontal_cortex\n12\tputamen\n12\tcaudate\n"
              "17\tcentrum_semiovale\n"), _MDE, stage="atlas", says="12"),
    Case(_A, "label table with a duplicate name",
         text("dseg_tsv", "index\tname\n1\tputamen\n12\tputamen\n17\tcentrum_semiovale\n"),
         "RegionError", stage="atlas", says="putamen"),
    Case(_A, "region in the table without voxels",
         text("dseg_tsv", "index\tname\n1\tfrontal_cortex\n9\thippocampus\n12\tputamen\n"
              "17\tcentrum_semiovale\n"), "warn", stage="atlas", says="hippocampus"),
    Case(_A, "label value without a name (a trimmed table: left out with a warning)",
         image(lambda d: np.where(d == 12, 99, d), "dseg", dtype=np.int16),
         "warn", stage="atlas", says=r"label values \[99\] have no name"),
    Case(_A, "label table without a name column",
         text("dseg_tsv", "index\tlabel\n1\tfrontal_cortex\n12\tputamen\n"
              "17\tcentrum_semiovale\n"), _MDE, stage="atlas", says="'name'"),
    Case(_A, "non-integer label values",
         image(lambda d: np.where(d == 12, 12.5, d), "dseg"), "DataError", stage="atlas",
         says="non-integer"),
    Case(_A, "reference region absent from the atlas", _drop_label(17), "RegionError",
         stage="srtm", says="centrum_semiovale", validate="ConfigError", run="ConfigError"),
    Case(_A, "reference region in the table but without voxels",
         image(lambda d: np.where(d == 17, 0, d), "dseg", dtype=np.int16), "RegionError",
         stage="srtm", says="centrum_semiovale"),
    Case(_A, "truncated segmentation", truncate("dseg"), "DataError", stage="atlas",
         says="cannot read"),
    Case(_A, "4-D label image with two volumes",
         image(lambda d: np.stack([d, d], axis=-1), "dseg", dtype=np.int16),
         "ShapeMismatchError", stage="atlas", says="3D"),
    Case(_A, "region names NA (nucleus accumbens) and None in the label table",
         text("dseg_tsv", "index\tname\n1\tNA\n12\tNone\n17\tcentrum_semiovale\n"), "ok",
         stage="logan"),
    Case(_A, "label table row with an empty name",
         text("dseg_tsv", "index\tname\n1\t\n12\tputamen\n17\tcentrum_semiovale\n"), _MDE,
         stage="atlas", says="line 2: index '1' has no name"),
    Case(_A, "label table not UTF-8 (Latin-1)",
         _encoded("dseg_tsv", "index\tname\n1\tcórtex_frontal\n12\tputamen\n"
                  "17\tcentrum_semiovale\n", "latin-1"), _MDE, stage="atlas",
         says=r"not UTF-8 \(BIDS requires UTF-8\): byte 0xf3 at line 2"),
    Case(_A, "label table row with a trailing tab",
         text("dseg_tsv", "index\tname\n1\tfrontal_cortex\t\n12\tputamen\n"
              "17\tcentrum_semiovale\n"), _MDE, stage="atlas", says="line 2 .*trailing tab"),
    Case(_A, "label table with a UTF-8 byte-order mark (Excel)",
         _encoded("dseg_tsv", "index\tname\n1\tfrontal_cortex\n12\tputamen\n"
                  "17\tcentrum_semiovale\n", "utf-8-sig"), "ok", stage="logan",
         same_result=True),
    Case(_A, "space-separated label table",
         text("dseg_tsv", "index name\n1 frontal_cortex\n12 putamen\n17 centrum_semiovale\n"),
         _MDE, stage="atlas", says="not tabs"),
    Case(_A, "label table with a '0 Unknown' background row (FreeSurfer, PETPrep)",
         text("dseg_tsv", "index\tname\n0\tUnknown\n1\tfrontal_cortex\n12\tputamen\n"
              "17\tcentrum_semiovale\n"), "ok", stage="logan", same_result=True),
    Case(_A, "float label image with NaN background (NaN is background)",
         image(lambda d: np.where(d == 0, np.nan, d), "dseg"), "ok", stage="logan",
         same_result=True),
    Case(_A, "int16 label image with scl_slope 2", _label_header(_slope), "DataError",
         stage="atlas", says="scl_slope 2"),
    Case(_A, "segmentation qform 20 mm off its (right) sform",
         _label_header(_forms(0.0, 20.0)), "warn", stage="atlas",
         says=r"sform \(code 2\) and qform \(code 1\) disagree.* 20 mm"),
    Case(_A, "segmentation sform 20 mm off the PET, its qform on the PET grid",
         _label_header(_forms(20.0, 0.0)), "ShapeMismatchError", stage="atlas",
         says=r"qform \(code 1\) does agree with the PET"),
    Case(_A, "accented region names (córtex_frontal)",
         _encoded("dseg_tsv", "index\tname\n1\tcórtex_frontal\n12\tputámen\n"
                  "17\tcentrum_semiovale\n", "utf-8"), "ok", stage="logan"),
    # ---------------------------------------------------------------- layout
    Case(_L, "subject label with an underscore", _rename_subject("{label}_x"), "warn",
         stage="discover", says=r"'{label}_x' is not a valid BIDS sub label",
         run="BIDSError"),
    Case(_L, "session label with a dot", _rename_session("b.l"), "warn", stage="discover",
         says=r"'b\.l' is not a valid BIDS ses label", run="BIDSError"),
    Case(_L, "PET file named for another subject", _move_pet("sub-zz{label}_ses-" + SES),
         "warn", stage="discover",
         says="names sub-zz{label}_ses-bl but it lies in the folder of sub-{label}_ses-bl",
         run="BIDSError"),
    Case(_L, "PET file name not in the BIDS pattern", _move_pet("sub-{label}.ses-" + SES),
         "warn", stage="discover",
         says=r"sub-{label}\.ses-bl_pet\.nii\.gz: the file name does not follow the BIDS",
         run="BIDSError"),
    Case(_L, "no session level for this subject (legal BIDS)", _no_session_level, "ok",
         stage="logan", same_result=True),
]

#: The cases by subject label (``c01`` ...), in table order.
CASES: dict[str, Case] = {f"c{i + 1:02d}": c for i, c in enumerate(CASE_LIST)}


def build_catalogue(template: Files, root: Path, cases: dict[str, Case]) -> dict[str, Files]:
    """Write the corrupted dataset: the valid copy ``sub-ref`` and one subject per case.

    Parameters
    ----------
    template : Files
        The valid scan.
    root : Path
        Dataset root to create.
    cases : dict
        ``{label: Case}``.

    Returns
    -------
    dict
        ``{label: Files}`` of every subject (before any layout rename).
    """
    root.mkdir(parents=True)
    rows = {VALID: dict(PARTICIPANT)}
    files = {VALID: add_subject(template, root, VALID)}
    for label, case in cases.items():
        f = add_subject(template, root, label)
        rows[label] = {**PARTICIPANT, **case.participant}
        files[label] = f
    write_dataset_files(root, rows)
    for label, case in cases.items():
        case.corrupt(files[label])
    return files


# --------------------------------------------------------------------------- the three levels
#: The steps of :func:`api_step`, in order.
API_STAGES = ("discover", "pet", "data", "atlas", "tacs", "srtm", "blood", "logan")


def api_step(stage: str, st: dict[str, Any]) -> None:
    """One step of the public-API chain on one subject; results go into ``st``.

    ``st`` starts as ``{"root": dataset root, "label": subject label, "participant": its
    participants.tsv row}``.
    """
    import sv2a
    from sv2a.bids import find_scans

    if stage == "discover":
        mine = [s for s in find_scans(st["root"]) if s.subject == st["label"]]
        st["scan"] = mine[0] if mine else None
    elif stage == "pet":
        st["pet"] = sv2a.load_pet(st["scan"].pet, participants=st["participant"])
    elif stage == "data":
        _ = st["pet"].data
    elif stage == "atlas":
        st["atlas"] = sv2a.load_atlas(st["scan"].dseg, pet=st["pet"])
    elif stage == "tacs":
        st["tacs"] = sv2a.extract_tacs(st["pet"], st["atlas"])
    elif stage == "srtm":
        st["srtm"] = sv2a.fit(st["tacs"], model="srtm", reference=REFERENCE)
    elif stage == "blood":
        inp = sv2a.load_blood(st["scan"].blood.get("manual"))
        inp.check_covers(float(st["pet"].frames.end[-1]), what=st["scan"].pet.name)
        st["input"] = inp
    elif stage == "logan":
        st["logan"] = sv2a.fit(st["tacs"], model="logan", input=st["input"],
                               **MODEL_OPTIONS["logan"])
    else:  # pragma: no cover - a typo in the case table
        raise ValueError(stage)


def participant_row(root: Path, label: str) -> dict[str, Any]:
    """The subject's ``participants.tsv`` row as ``sv2a run`` passes it (NaN dropped)."""
    from sv2a.bids import read_participants

    parts = read_participants(root)
    if label not in parts.index:
        return {}
    return {str(k): v for k, v in parts.loc[label].to_dict().items()
            if not (isinstance(v, float) and np.isnan(v))}


def subject_re(label: str) -> str:
    """Regular expression of a subject's folder or file names (``sub-c07``, ``sub-c07_x``;
    not ``sub-c070``)."""
    return rf"sub-{label}(?![0-9A-Za-z])"


# --------------------------------------------------------------------------- dataset level
def _no_description(root: Path) -> None:
    (root / "dataset_description.json").unlink()


def _participants_text(content: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        (root / "participants.tsv").write_text(content)
    return corrupt


def _participants_bytes(content: bytes) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        (root / "participants.tsv").write_bytes(content)
    return corrupt


@dataclass(frozen=True)
class DatasetCase:
    """A corruption of a dataset-level file, checked on its own one-subject dataset (subject
    ``sub-d``); fields as in :class:`Case` (``api``: ``sv2a.bids.find_scans`` and
    ``sv2a.bids.read_participants``; ``run``: :func:`sv2a.pipeline.run_participant` raises the
    class, or processes the scan for ``"ok"``)."""

    what: str
    corrupt: Callable[[Path], None]
    expect: str
    says: str = ""
    api: str | None = None
    validate: str | None = None
    run: str | None = None
    xfail: dict[str, str] = field(default_factory=dict)

    def at(self, level: str) -> str:
        """The expectation at ``api``, ``validate`` or ``run``."""
        return getattr(self, level) or self.expect


DATASET_CASES: dict[str, DatasetCase] = {
    "d1": DatasetCase("dataset_description.json missing", _no_description, "ok",
                      says="dataset_description.json", validate="warn"),
    "d2": DatasetCase("participants.tsv without a participant_id column",
                      _participants_text("subject\tarm\tweight\nsub-d\tA\t86.2\n"), "BIDSError",
                      says="participant_id"),
    "d3": DatasetCase("participants.tsv lists the subject twice",
                      _participants_text("participant_id\tarm\tweight\nsub-d\tA\t86.2\n"
                                         "sub-d\tB\t70\n"), "BIDSError", says="sub-d"),
    "d4": DatasetCase("participants.tsv not UTF-8 (Latin-1)",
                      _participants_bytes("participant_id\tarm\tweight\tsite\n"
                                          "sub-d\tA\t86.2\tMünster\n".encode("latin-1")),
                      "BIDSError", says=r"not UTF-8 \(BIDS requires UTF-8\).* line 2"),
    "d5": DatasetCase("participants.tsv row with an extra field",
                      _participants_text("participant_id\tarm\tweight\n"
                                         "sub-d\tA\t86.2\t70\n"), "BIDSError", says="line 2"),
}


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ConfigCase:
    """A bad ``sv2a run`` setting: ``file`` is the content of a ``--config`` JSON file (or
    ``None``), ``cli`` the same settings as :func:`sv2a.pipeline.resolve_config` takes them
    from the command line and ``flags`` as ``sv2a run``/``sv2a validate`` options. Every level
    must raise :class:`~sv2a.errors.ConfigError` with a message matching ``says``."""

    what: str
    says: str
    file: str | None = None
    cli: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    xfail: dict[str, str] = field(default_factory=dict)


CONFIG_CASES: dict[str, ConfigCase] = {
    "k1": ConfigCase("unknown model", "srtm3", cli={"models": ["srtm3"]},
                     flags=("--model", "srtm3")),
    "k2": ConfigCase("unknown key in the config file", "modles", file='{"modles": ["srtm"]}'),
    "k3": ConfigCase('"false" (a string) for voxelwise', "voxelwise",
                     file='{"voxelwise": "false"}'),
    "k4": ConfigCase("text for a number", "reference_erode",
                     file='{"reference_erode": "2 mm"}'),
    "k5": ConfigCase("config file that is not valid JSON", "cannot parse",
                     file='{"models": ["srtm"],,}'),
    "k6": ConfigCase("unknown model option", "k2", file='{"model_options": {"srtm": {"k2": 1}}}'),
    "k7": ConfigCase("zero worker processes", "nprocs", file='{"nprocs": 0}'),
    "k8": ConfigCase("a list instead of a mapping of settings", "mapping", file='["srtm"]'),
    # model options that would give a wrong number or fail every scan (issue 14)
    "o1": ConfigCase("k2prime written in 1/h (BPND 2.57 instead of 3.68)", "divide by 60",
                     file='{"models": ["srtm2"], "model_options": {"srtm2": {"k2prime": 3.0}}}'),
    "o2": ConfigCase("k2prime written in 1/s (BPND -0.42)", "multiply by 60",
                     file='{"models": ["srtm2"], '
                          '"model_options": {"srtm2": {"k2prime": 0.00083}}}'),
    "o3": ConfigCase("k2prime of a map 40 /min", "k2prime=40 /min is outside",
                     file='{"models": ["srtm2"], "voxelwise": true, '
                          '"voxelwise_options": {"srtm2": {"k2prime": 40}}}'),
    "o4": ConfigCase("negative k2prime", "positive rate",
                     file='{"models": ["srtm2"], "model_options": {"srtm2": {"k2prime": -0.1}}}'),
    "o5": ConfigCase("infinite Logan t*", "tstar must be a time >= 0",
                     file='{"models": ["logan_ref"], '
                          '"model_options": {"logan_ref": {"tstar": Infinity}}}'),
    "o6": ConfigCase("the reference region excluded", "exclude_regions holds the reference",
                     cli={"models": ["srtm2", "suvr"], "exclude_regions": ["centrum_semiovale"]},
                     flags=("--model", "srtm2", "suvr", "--exclude-regions",
                            "Centrum-Semiovale")),
    "o7": ConfigCase("options of a model that is not requested", "'logan', which is not "
                     "requested", file='{"models": ["srtm"], '
                                       '"model_options": {"logan": {"tstar": 30}}}'),
    "o8": ConfigCase("a key given twice in the config file (last one would win)",
                     "'models' is given twice",
                     file='{"models": ["srtm"], "models": ["logan"]}'),
}
