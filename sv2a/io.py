"""Reading BIDS PET, blood and writing outputs atomically.

* :func:`load_pet` -> :class:`DynamicPET` (lazy NIfTI data in kBq/mL + :class:`FrameSchedule`).
* :func:`load_blood` -> :class:`~sv2a.blood.InputFunction` from BIDS ``_blood.tsv`` + ``.json``.
* :func:`write_nifti`, :func:`write_json`, :func:`write_tsv`: write to a temporary file in the
  target directory and rename, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from .blood import InputFunction
from .errors import DataError, InputFunctionError, MetadataError, ShapeMismatchError, Sv2aWarning
from .frames import FrameSchedule
from .units import activity_factor, time_factor, to_mbq

__all__ = [
    "DynamicPET",
    "load_pet",
    "load_blood",
    "read_json",
    "sidecar_path",
    "atomic_path",
    "write_nifti",
    "write_json",
    "write_tsv",
]


# ---------------------------------------------------------------------------------- helpers
def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar beside a NIfTI or TSV file (``x.nii.gz`` -> ``x.json``)."""
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".nii", ".tsv.gz", ".tsv"):
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file, raising :class:`MetadataError` (with the path) when missing/invalid."""
    p = Path(path)
    if not p.exists():
        raise MetadataError(f"missing JSON sidecar: expected {p}")
    try:
        with open(p, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise MetadataError(f"{p}: a sidecar must hold a JSON object, not {type(obj).__name__}")
    return obj


# ---------------------------------------------------------------------------------- writers
_UMASK = os.umask(0)
os.umask(_UMASK)

@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    The temporary name keeps the extension (nibabel chooses gzip from ``.gz``). On any
    exception the temporary file is removed and the target is left untouched.

    Examples
    --------
    >>> with atomic_path("/tmp/x.txt") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("done")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}.", suffix=suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs are shared files
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Mapping) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return Path(path)


def write_tsv(path: str | os.PathLike, table: pd.DataFrame, *, index: bool = False) -> Path:
    """Write a DataFrame as a BIDS TSV (tab separated, ``n/a`` for missing), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=index, na_rep="n/a", float_format="%.10g")
    return Path(path)


_GZ_CHUNK = 8 << 20  # bytes per gzip member (fixed, so the output does not depend on cores)


def _gzip_members(raw: bytes, compresslevel: int) -> Iterator[bytes]:
    """Compress ``raw`` as consecutive gzip members of fixed size, in parallel threads.

    RFC 1952 allows several members in one file (nibabel, zlib's gzread, FSL and AFNI read
    them); zlib writes each header itself with mtime 0 and no file name, so the same data
    always give the same bytes, whatever the number of cores.
    """
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    view = memoryview(raw)
    pieces = [view[i:i + _GZ_CHUNK] for i in range(0, len(view), _GZ_CHUNK)] or [view]

    def comp(b) -> bytes:
        return zlib.compress(b, compresslevel, wbits=31)  # wbits=31: gzip wrapper

    workers = min(len(pieces), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            yield from ex.map(comp, pieces)
    else:
        yield from map(comp, pieces)


def write_nifti(path: str | os.PathLike, data, affine, *, sidecar: Mapping | None = None,
                dtype=np.float32, compresslevel: int = 6) -> Path:
    """Write a NIfTI image (and optionally its JSON sidecar), atomically and reproducibly.

    ``.nii.gz`` files are compressed in parallel (zlib releases the GIL) into fixed-size gzip
    members with zero timestamps, so identical data give identical bytes. Integer label
    images get the NIfTI ``label`` intent. ``compresslevel`` 1 is ~3x faster for noisy floats.
    """
    arr = np.asarray(data)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm", "sec")
    if arr.ndim == 3 and np.issubdtype(arr.dtype, np.integer):
        img.header.set_intent("label")
    p = Path(path)
    with atomic_path(p) as tmp:
        if p.name.endswith(".gz"):
            with open(tmp, "wb") as fh:
                for block in _gzip_members(img.to_bytes(), compresslevel):
                    fh.write(block)
        else:
            nib.save(img, tmp)
    if sidecar is not None:
        write_json(sidecar_path(p), sidecar)
    return p


# ---------------------------------------------------------------------------------- PET
@dataclass(frozen=True, eq=False)
class DynamicPET:
    """A (dynamic) PET image with its frame timing and metadata.

    Attributes
    ----------
    dataobj : array-like
        The raw image (a nibabel array proxy: nothing is read until needed) or an array.
    frames : FrameSchedule
        Frame timing (min).
    affine : ndarray (4, 4)
        Voxel -> scanner mm.
    meta : dict
        Sidecar fields plus ``tracer``, ``radionuclide``, ``injected_mbq``, ``body_weight_kg``,
        ``original_units``.
    path : Path or None
        File it came from.
    scale : float
        Factor applied on read to give kBq/mL.
    """

    dataobj: Any
    frames: FrameSchedule
    affine: np.ndarray
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    scale: float = 1.0
    frame_scale: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_array(cls, data, frames: FrameSchedule, affine=None, *, meta: dict | None = None
                   ) -> DynamicPET:
        """Wrap an in-memory 3D/4D array (kBq/mL) and its frames."""
        arr = np.asarray(data) if not hasattr(data, "chunks") else data
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4:
            raise ShapeMismatchError(f"PET data must be 3D or 4D, got shape {arr.shape}")
        if arr.shape[3] != frames.n:
            raise ShapeMismatchError(
                f"PET data has {arr.shape[3]} frames but the frame schedule lists {frames.n}"
            )
        return cls(arr, frames, np.eye(4) if affine is None else np.asarray(affine, float),
                   dict(meta or {}))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        s = tuple(self.dataobj.shape)
        return s if len(s) == 4 else (*s, 1)

    @property
    def n_frames(self) -> int:
        return self.shape[3]

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel edge lengths (mm)."""
        return np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.voxel_size) / 1000.0)

    def _read(self, key) -> np.ndarray:
        try:
            arr = np.asarray(self.dataobj[key], dtype=np.float32)
        except (OSError, EOFError, ValueError, gzip.BadGzipFile) as exc:
            raise DataError(
                f"{self.path}: cannot read image data ({exc}); the file is truncated or "
                "corrupt — re-export or re-copy it"
            ) from exc
        return arr

    def _read_block(self, key: tuple = (slice(None),) * 4) -> np.ndarray:
        """Voxels ``key`` = (x, y, z, frame; frame an int or a slice) as float32 kBq/mL.

        The one place where raw values are scaled to kBq/mL (``scale`` and the per-frame
        ``frame_scale``), shared by :meth:`frame`, :attr:`data` and :meth:`to_dask`.
        """
        sx, sy, sz, st = key
        if len(self.dataobj.shape) == 3:  # static image: one frame
            arr = self._read((sx, sy, sz))[..., None][..., st]
        else:
            arr = self._read(key)
        f = np.float32(self.scale)
        if self.frame_scale is not None:
            return arr * (f * np.asarray(self.frame_scale, dtype=np.float32)[st])
        return arr * f if f != 1.0 else arr

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as a 3D float32 array in kBq/mL (reads only that frame if possible)."""
        if "data" in self._cache:
            return self._cache["data"][..., i]
        if len(self.dataobj.shape) == 3 and i != 0:
            raise IndexError(f"static image has one frame, asked for frame {i}")
        return self._read_block((slice(None), slice(None), slice(None), i))

    @property
    def data(self) -> np.ndarray:
        """The whole 4D image (float32, kBq/mL, decay corrected); read once and cached."""
        if "data" not in self._cache:
            if hasattr(self.dataobj, "chunks") and not isinstance(self.dataobj, np.ndarray):
                return self.dataobj  # dask array: stays lazy
            self._cache["data"] = self._read_block()
        return self._cache["data"]

    @property
    def nbytes(self) -> int:
        """Size of the whole 4D image as float32 (bytes): what :attr:`data` would hold."""
        return int(np.prod(self.shape)) * 4

    def slab_chunks(self, max_bytes: float = 128e6) -> tuple[int, int, int]:
        """Spatial block shape of whole x-y planes in z-slabs of at most ``max_bytes`` (float32,
        all frames; at least one plane): the out-of-core blocks of :meth:`to_dask`."""
        nx, ny, nz, nt = self.shape
        return (nx, ny, max(1, min(nz, int(max_bytes // (nx * ny * nt * 4)))))

    def to_dask(self, chunks: tuple[int, int, int] | None = None):
        """The 4D image as a lazy dask array (float32, kBq/mL), read from the file per block.

        Nothing is read until the array is computed; each block reads only its part of the
        file (a memory map for ``.nii``; a ``.nii.gz`` is decompressed up to the block, so
        uncompressed files are much faster out of core).

        Parameters
        ----------
        chunks : (int, int, int), optional
            Spatial block shape (voxels); every block holds all frames, as the voxelwise
            models need whole TACs. Default: :meth:`slab_chunks` (z-slabs of <= 128 MB).

        Examples
        --------
        >>> pet = sv2a.load_pet("sub-01_pet.nii")                       # doctest: +SKIP
        >>> maps = sv2a.parametric_maps(pet.to_dask(), "srtm2", ...)    # doctest: +SKIP
        """
        import dask.array as da

        nt = self.shape[3]
        cs = (*tuple(self.slab_chunks() if chunks is None else chunks)[:3], nt)
        if "data" in self._cache:
            return da.from_array(self._cache["data"], chunks=cs)
        if hasattr(self.dataobj, "chunks") and not isinstance(self.dataobj, np.ndarray):
            arr = self.dataobj if self.dataobj.ndim == 4 else self.dataobj[..., None]
            return arr.astype(np.float32).rechunk(cs)
        return da.from_array(_BlockReader(self), chunks=cs, asarray=True, fancy=False,
                             name=False)

    def mean_image(self, t0: float | None = None, t1: float | None = None) -> np.ndarray:
        """Frame-duration-weighted mean image over ``[t0, t1]`` min (default: whole scan)."""
        fs = self.frames
        w = fs.overlap_weights(fs.start[0] if t0 is None else t0, fs.end[-1] if t1 is None else t1)
        out = np.zeros(self.shape[:3], dtype=np.float64)
        for i in np.flatnonzero(w > 0):
            out += w[i] * self.frame(int(i))
        return (out / w.sum()).astype(np.float32)


class _BlockReader:
    """Array-like view of a :class:`DynamicPET` for ``dask.array.from_array``: each block is
    read through the lazy proxy by :meth:`DynamicPET._read_block`."""

    def __init__(self, pet: DynamicPET):
        self.pet = pet
        self.shape = pet.shape
        self.dtype = np.dtype(np.float32)
        self.ndim = 4

    def __getitem__(self, key) -> np.ndarray:
        key = tuple(key) + (slice(None),) * (4 - len(tuple(key)))
        return self.pet._read_block(key)


def _require(meta: dict, key: str, path: Path, hint: str):
    if key not in meta or meta[key] in (None, "", []):
        raise MetadataError(f"{path}: required field '{key}' is missing; {hint}")
    return meta[key]


def load_pet(path: str | os.PathLike, *, sidecar: str | os.PathLike | None = None,
             participants: Mapping | None = None) -> DynamicPET:
    """Load a BIDS PET image and its JSON sidecar.

    Parameters
    ----------
    path : path
        ``*_pet.nii`` or ``*_pet.nii.gz`` (3D static or 4D dynamic).
    sidecar : path, optional
        JSON sidecar (default: beside the image, same stem).
    participants : mapping, optional
        Fields from ``participants.tsv`` for this subject (``weight`` used for SUV when the
        sidecar has no ``BodyWeight``).

    Returns
    -------
    DynamicPET
        Lazy: the voxel data are read frame by frame (``.frame(i)``) or all at once
        (``.data``), converted to kBq/mL and decay corrected to injection.

    Raises
    ------
    MetadataError
        Sidecar missing (the message names the expected path) or a required field absent.
    FrameTimingError
        Timing inconsistent or the number of frames differs from the image.
    UnitsError
        Unknown ``Units``.
    DataError
        Unreadable/truncated file.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"PET image not found: {p}")
    sc = Path(sidecar) if sidecar is not None else sidecar_path(p)
    if not sc.exists():
        raise MetadataError(
            f"{p}: missing JSON sidecar; expected {sc} with FrameTimesStart, FrameDuration, "
            "Units and TracerRadionuclide"
        )
    meta = read_json(sc)
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises several types for corrupt headers
        raise DataError(f"{p}: not a readable NIfTI image ({exc})") from exc
    shape = img.shape
    if len(shape) not in (3, 4):
        raise DataError(f"{p}: expected a 3D or 4D image, got shape {shape}")
    _check_size(p, img)
    n_vol = 1 if len(shape) == 3 else shape[3]
    units = _require(meta, "Units", sc, "add e.g. \"Units\": \"Bq/mL\"")
    scale = activity_factor(units)
    fts = _require(meta, "FrameTimesStart", sc, "list each frame's start in seconds")
    fdur = _require(meta, "FrameDuration", sc, "list each frame's duration in seconds")
    nuclide = meta.get("TracerRadionuclide")
    if not nuclide:
        warnings.warn(f"{sc}: TracerRadionuclide missing; decay factors unavailable",
                      Sv2aWarning, stacklevel=2)
    decay_corrected = bool(meta.get("ImageDecayCorrected", True))
    frames = FrameSchedule.from_bids(fts, fdur, n_volumes=n_vol, radionuclide=nuclide,
                                     decay_corrected=True, source=str(sc))
    frame_scale = None
    if not decay_corrected:
        if not nuclide:
            raise MetadataError(
                f"{sc}: ImageDecayCorrected is false but TracerRadionuclide is missing, so the "
                "image cannot be decay corrected; add TracerRadionuclide (e.g. 'C11')"
            )
        frame_scale = frames.decay_factors()
    info = dict(meta)
    info["original_units"] = units
    info["tracer"] = meta.get("TracerName")
    info["radionuclide"] = nuclide
    info["decay_corrected_on_load"] = not decay_corrected
    if "InjectedRadioactivity" in meta:
        u = meta.get("InjectedRadioactivityUnits", "MBq")
        info["injected_mbq"] = to_mbq(meta["InjectedRadioactivity"], u)
    bw = meta.get("BodyWeight")
    if bw is None and participants:
        bw = participants.get("weight", participants.get("body_weight"))
    if bw is not None and str(bw) not in ("n/a", "nan"):
        info["body_weight_kg"] = float(bw)
    return DynamicPET(img.dataobj, frames, img.affine, info, p, scale, frame_scale)


def _check_size(p: Path, img) -> None:
    """Catch truncated uncompressed NIfTI files at load time (gzip is checked on read)."""
    if p.name.endswith(".nii"):
        hdr = img.header
        need = int(hdr.get_data_offset()) + int(np.prod(img.shape)) * hdr.get_data_dtype().itemsize
        have = p.stat().st_size
        if have < need:
            raise DataError(
                f"{p}: file is truncated ({have} bytes, the header needs {need}); re-copy it"
            )


# ---------------------------------------------------------------------------------- blood
_BLOOD_COLUMNS = {
    "whole_blood": "whole_blood_radioactivity",
    "plasma": "plasma_radioactivity",
    "parent_fraction": "metabolite_parent_fraction",
}


def _read_blood_table(path: Path) -> tuple[pd.DataFrame, dict]:
    if not path.exists():
        raise InputFunctionError(f"blood file not found: {path}")
    sc = sidecar_path(path)
    if not sc.exists():
        raise MetadataError(
            f"{path}: missing blood JSON sidecar; expected {sc} with the units of each column"
        )
    meta = read_json(sc)
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a", "N/A", "NaN", "nan", ""])
    except Exception as exc:
        raise DataError(f"{path}: cannot read TSV ({exc})") from exc
    if "time" not in df.columns:
        raise InputFunctionError(
            f"{path}: first column must be 'time' (seconds); found {list(df.columns)[:5]}"
        )
    out = pd.DataFrame({"time": df["time"].astype(float) * _col_time_factor(meta, path)})
    found = False
    for key, col in _BLOOD_COLUMNS.items():
        if col in df.columns:
            vals = pd.to_numeric(df[col], errors="coerce").astype(float)
            if key == "parent_fraction":
                unit = _col_unit(meta, col)
                if unit in ("%", "percent"):
                    vals = vals / 100.0
            else:
                unit = _col_unit(meta, col)
                if unit is None:
                    raise MetadataError(
                        f"{sc}: no Units for column '{col}'; add \"{col}\": {{\"Units\": "
                        "\"kBq/mL\"}"
                    )
                vals = vals * activity_factor(unit)
            out[key] = vals
            found = True
    if not found:
        raise InputFunctionError(
            f"{path}: no blood columns; expected one of {list(_BLOOD_COLUMNS.values())}"
        )
    return out, meta


def _col_unit(meta: dict, col: str) -> str | None:
    entry = meta.get(col)
    if isinstance(entry, dict):
        return entry.get("Units")
    return None


def _col_time_factor(meta: dict, path: Path) -> float:
    unit = _col_unit(meta, "time") or "s"
    return time_factor(unit)


def _sibling(path: Path, recording: str) -> Path | None:
    name = path.name
    for rec in ("manual", "autosampler"):
        tag = f"recording-{rec}"
        if tag in name:
            cand = path.with_name(name.replace(tag, f"recording-{recording}"))
            return cand if cand.exists() else None
    return None


def load_blood(path: str | os.PathLike | list, *, merge: bool = False) -> InputFunction:
    """Load a BIDS blood recording as an :class:`InputFunction` (minutes, kBq/mL).

    Parameters
    ----------
    path : path or list of paths
        ``*_recording-manual_blood.tsv`` and/or ``*_recording-autosampler_blood.tsv``; the
        ``.json`` beside each gives column units (``time`` in s).
    merge : bool
        With one path, also read the other recording beside it and merge them: autosampler
        whole blood while it runs, then manual samples; plasma from the autosampler when
        measured, otherwise autosampler whole blood times the manual plasma/blood ratio
        (interpolated, held constant outside the samples); parent fraction from the manual
        samples (1 at t = 0 when not sampled there).

    Notes
    -----
    ``n/a`` entries are skipped per column. Without ``metabolite_parent_fraction`` the input
    is the total plasma and a warning says so.
    """
    paths = [Path(p) for p in path] if isinstance(path, list | tuple) else [Path(path)]
    if merge and len(paths) == 1:
        for rec in ("manual", "autosampler"):
            sib = _sibling(paths[0], rec)
            if sib is not None and sib != paths[0]:
                paths.append(sib)
    tables = [(_read_blood_table(p)[0], p) for p in paths]
    if len(tables) == 1:
        df, src = tables[0]
        return _input_from_table(df, str(src))
    auto = [t for t, p in tables if "autosampler" in p.name]
    manual = [t for t, p in tables if "autosampler" not in p.name]
    if len(auto) != 1 or len(manual) != 1:
        raise InputFunctionError(
            "merging needs one manual and one autosampler recording, got "
            f"{[str(p) for _, p in tables]}"
        )
    return _merge(auto[0], manual[0], " + ".join(str(p) for _, p in tables))


def _valid(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    if col not in df:
        return np.array([]), np.array([])
    m = df[col].notna() & df["time"].notna()
    return df.loc[m, "time"].to_numpy(float), df.loc[m, col].to_numpy(float)


def _input_from_table(df: pd.DataFrame, source: str) -> InputFunction:
    tp, cp = _valid(df, "plasma")
    tb, cb = _valid(df, "whole_blood")
    tf, pf = _valid(df, "parent_fraction")
    if tp.size == 0:
        if tb.size == 0:
            raise InputFunctionError(f"{source}: neither plasma nor whole blood values")
        warnings.warn(f"{source}: no plasma column; whole blood is used as the input",
                      Sv2aWarning, stacklevel=3)
        tp, cp = tb, cb
    meta = {"source": source}
    if tf.size:
        pf_at = _parent_interp(tf, pf, tp)
        meta["parent_fraction_samples"] = {"time": tf.tolist(), "value": pf.tolist()}
        return InputFunction(time=tp, plasma=cp, parent_fraction=pf_at,
                             whole_blood=cb if tb.size else None,
                             whole_blood_time=tb if tb.size else None, meta=meta, source=source)
    warnings.warn(f"{source}: no metabolite_parent_fraction; the input is total plasma "
                  "(not metabolite corrected)", Sv2aWarning, stacklevel=3)
    return InputFunction(time=tp, plasma=cp, whole_blood=cb if tb.size else None,
                         whole_blood_time=tb if tb.size else None, meta=meta, source=source)


def _parent_interp(tf: np.ndarray, pf: np.ndarray, t: np.ndarray) -> np.ndarray:
    if tf[0] > 0:
        tf, pf = np.concatenate([[0.0], tf]), np.concatenate([[1.0], pf])
    return np.interp(t, tf, pf)


def _merge(auto: pd.DataFrame, manual: pd.DataFrame, source: str) -> InputFunction:
    ta, ba = _valid(auto, "whole_blood")
    if ta.size == 0:
        raise InputFunctionError(f"{source}: the autosampler recording has no whole blood")
    tm_b, bm = _valid(manual, "whole_blood")
    tm_p, pm = _valid(manual, "plasma")
    tf, pf = _valid(manual, "parent_fraction")
    t_end_auto = ta.max()
    late_b = tm_b > t_end_auto
    tb = np.concatenate([ta, tm_b[late_b]])
    cb = np.concatenate([ba, bm[late_b]])
    tpa, pa = _valid(auto, "plasma")
    if tpa.size:
        late_p = tm_p > tpa.max()
        tp = np.concatenate([tpa, tm_p[late_p]])
        cp = np.concatenate([pa, pm[late_p]])
    else:
        both = np.intersect1d(tm_b, tm_p)
        if both.size == 0:
            raise InputFunctionError(
                f"{source}: cannot derive plasma for the autosampler: no manual sample has both "
                "whole blood and plasma"
            )
        ratio = (pm[np.isin(tm_p, both)] / bm[np.isin(tm_b, both)])
        pa = ba * np.interp(ta, both, ratio)
        late_p = tm_p > t_end_auto
        tp = np.concatenate([ta, tm_p[late_p]])
        cp = np.concatenate([pa, pm[late_p]])
    meta = {"source": source, "merged": True}
    if tf.size:
        meta["parent_fraction_samples"] = {"time": tf.tolist(), "value": pf.tolist()}
        return InputFunction(time=tp, plasma=cp, parent_fraction=_parent_interp(tf, pf, tp),
                             whole_blood=cb, whole_blood_time=tb, meta=meta, source=source)
    warnings.warn(f"{source}: no metabolite_parent_fraction; the input is total plasma",
                  Sv2aWarning, stacklevel=3)
    return InputFunction(time=tp, plasma=cp, whole_blood=cb, whole_blood_time=tb, meta=meta,
                         source=source)
