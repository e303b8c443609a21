"""Loading BIDS PET images: :func:`load_pet` -> :class:`DynamicPET`.

The image stays on disk until voxels are needed (a nibabel array proxy); every read is
scaled to kBq/mL and, when the file is not decay corrected, decay corrected to injection.
Frame timing comes from the JSON sidecar as a :class:`~sv2a.frames.FrameSchedule` in minutes.
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, MetadataError, ShapeMismatchError, Sv2aWarning, UnitsError
from .frames import FrameSchedule
from .plausibility import check_activity_units
from .sidecar import (
    check_types,
    dataset_root,
    describe_sources,
    field_source,
    read_json,
    read_metadata,
    sidecar_places,
)
from .units import activity_factor, to_mbq, weight_factor
from .units import half_life as _half_life

__all__ = ["DynamicPET", "load_pet", "check_voxel_values"]

_Key = tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class DynamicPET:
    """A (dynamic) PET image with its frame timing and metadata.

    Parameters
    ----------
    dataobj : array-like
        The raw image, 3D or 4D (a nibabel array proxy: nothing is read until needed; a NumPy
        or dask array).
    frames : FrameSchedule
        Frame timing (min).
    affine : ndarray, shape (4, 4)
        Voxel index -> scanner coordinates (mm).
    meta : dict
        Sidecar fields plus ``tracer``, ``radionuclide``, ``injected_mbq`` (MBq),
        ``body_weight_kg`` (kg), ``original_units`` and ``sidecar_files`` (the JSON files the
        fields came from, dataset root first).
    path : Path or None
        File it came from.
    scale : float
        Factor applied on read to give kBq/mL (kBq/mL per file unit).
    frame_scale : ndarray, shape (n_frames,), optional
        Extra per-frame factor applied on read (decay correction to injection of images
        stored uncorrected; dimensionless).
    """

    dataobj: Any
    frames: FrameSchedule
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    scale: float = 1.0
    frame_scale: np.ndarray | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_array(cls, data: Any, frames: FrameSchedule, affine: Any = None, *,
                   meta: Mapping[str, Any] | None = None) -> DynamicPET:
        """Wrap an in-memory 3D/4D array and its frames.

        Parameters
        ----------
        data : array_like or dask array, shape (x, y, z[, frame])
            Activity concentration (kBq/mL), decay corrected to injection.
        frames : FrameSchedule
            One frame per volume (min).
        affine : array_like, shape (4, 4), optional
            Voxel index -> mm (default: identity, 1 mm voxels).
        meta : mapping, optional
            Metadata kept as :attr:`meta`.

        Returns
        -------
        DynamicPET
            The image (4D; a 3D array becomes one frame).

        Raises
        ------
        ShapeMismatchError
            The array is not 3D/4D or its frame count differs from ``frames``.
        """
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
        """Image shape (x, y, z, frames), voxels; a static image has one frame."""
        s = tuple(int(n) for n in self.dataobj.shape)
        if len(s) == 4:
            return (s[0], s[1], s[2], s[3])
        return (s[0], s[1], s[2], 1)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return self.shape[3]

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel edge lengths (mm), shape (3,)."""
        return np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel (mL)."""
        return float(np.prod(self.voxel_size) / 1000.0)

    def _read(self, key: _Key) -> np.ndarray:
        try:
            arr = np.asarray(self.dataobj[key], dtype=np.float32)
        except (OSError, EOFError, ValueError, gzip.BadGzipFile) as exc:
            raise DataError(
                f"{self.path}: cannot read image data ({exc}); the file is truncated or "
                "corrupt — re-export or re-copy it"
            ) from exc
        return arr

    def _read_block(self, key: _Key = (slice(None),) * 4) -> np.ndarray:
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
        """One frame, reading only that frame from the file when possible.

        Parameters
        ----------
        i : int
            Frame index.

        Returns
        -------
        ndarray, shape (x, y, z)
            float32 activity concentration (kBq/mL), decay corrected to injection.
        """
        if "data" in self._cache:
            return np.asarray(self._cache["data"][..., i])
        if len(self.dataobj.shape) == 3 and i != 0:
            raise IndexError(f"static image has one frame, asked for frame {i}")
        arr = self._read_block((slice(None), slice(None), slice(None), i))
        if self.path is not None and not np.isfinite(arr).any():
            raise DataError(_nan_frames_message(str(self.path), [int(i) % self.n_frames],
                                                self.n_frames))
        self._check_units(arr, int(i) % self.n_frames)
        return arr

    def _check_units(self, frame: np.ndarray, i: int) -> None:
        """Once per image, on the first frame read from a file: is the activity unit
        plausible given the injected dose and body weight (:mod:`sv2a.plausibility`)?

        The last frame is always the one checked (read for the check when another frame is
        read first), so that every path through the data (whole image, frame by frame in any
        order) gives the same verdict; early frames can hold almost no activity. Images built
        in memory are not checked. A last frame that is all zero raises
        :class:`~sv2a.errors.DataError` (no unit makes zero plausible: the data, not the
        unit, are wrong).
        """
        if self.path is None or "units_checked" in self._cache:
            return
        dose, bw = self.meta.get("injected_mbq"), self.meta.get("body_weight_kg")
        if dose is None or bw is None:
            self._cache["units_checked"] = True
            return
        last = self.n_frames - 1
        if i != last:
            frame, i = self._read_block((slice(None), slice(None), slice(None), last)), last
        if not np.any(frame):
            raise DataError(
                f"{self.path}: frame {i} (a late frame, read to check the activity unit) is all "
                "zero, so the image is all zero or that frame's reconstruction failed; "
                "re-export the image"
            )
        check_activity_units(frame, injected_mbq=float(dose), body_weight_kg=float(bw),
                             units=str(self.meta.get("original_units", "?")),
                             source=str(self.path), frame_index=i,
                             tracer=self.meta.get("tracer"),
                             decay_corrected=not self.meta.get("decay_corrected_on_load", False))
        self._cache["units_checked"] = True  # after the check: a failure repeats on each read

    @property
    def data(self) -> Any:
        """The whole 4D image (float32, kBq/mL, decay corrected); read once and cached.

        A dask-backed image is returned as the (lazy) dask array. An image read from a file
        is checked first (:func:`check_voxel_values`): all zero, or a frame without a finite
        value, raises :class:`~sv2a.errors.DataError`.
        """
        if "data" not in self._cache:
            if hasattr(self.dataobj, "chunks") and not isinstance(self.dataobj, np.ndarray):
                return self.dataobj  # dask array: stays lazy
            data = self._read_block()
            if self.path is not None:
                check_voxel_values(data, str(self.path))
            self._check_units(data[..., -1], self.n_frames - 1)
            self._cache["data"] = data
        return self._cache["data"]

    @property
    def nbytes(self) -> int:
        """Size of the whole 4D image as float32 (bytes): what :attr:`data` would hold."""
        return int(np.prod(self.shape)) * 4

    def slab_chunks(self, max_bytes: float = 128e6) -> tuple[int, int, int]:
        """Spatial block shape of whole x-y planes in z-slabs: the blocks of :meth:`to_dask`.

        Parameters
        ----------
        max_bytes : float
            Largest block (bytes, float32, all frames); a block holds at least one plane.

        Returns
        -------
        tuple of int
            Block shape (x, y, z) in voxels.
        """
        nx, ny, nz, nt = self.shape
        return (nx, ny, max(1, min(nz, int(max_bytes // (nx * ny * nt * 4)))))

    def to_dask(self, chunks: tuple[int, int, int] | None = None) -> Any:
        """The 4D image as a lazy dask array, read from the file per block.

        Nothing is read until the array is computed; each block reads only its part of the
        file (a memory map for ``.nii``; a ``.nii.gz`` is decompressed up to the block, so
        uncompressed files are much faster out of core).

        Parameters
        ----------
        chunks : (int, int, int), optional
            Spatial block shape (voxels); every block holds all frames, as the voxelwise
            models need whole TACs. Default: :meth:`slab_chunks` (z-slabs of <= 128 MB).

        Returns
        -------
        dask.array.Array, shape (x, y, z, frame)
            float32 activity concentration (kBq/mL), decay corrected to injection.

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
        """Frame-duration-weighted mean image over a time window.

        Parameters
        ----------
        t0, t1 : float, optional
            Window start and end (min after injection); default: the whole scan.

        Returns
        -------
        ndarray, shape (x, y, z)
            float32 mean activity concentration (kBq/mL).
        """
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

    def __getitem__(self, key: Any) -> np.ndarray:
        key = tuple(key) + (slice(None),) * (4 - len(tuple(key)))
        return self.pet._read_block(key)


def check_voxel_values(data: np.ndarray, source: str) -> None:
    """Refuse voxel data that cannot give a number: an image that is all zero, or frames
    without a single finite value (a failed reconstruction or export). A few NaN voxels are
    legal (a reconstruction mask; :mod:`sv2a.tacs` leaves them out of the regional means).

    Parameters
    ----------
    data : ndarray, shape (x, y, z, frame)
        The image (kBq/mL).
    source : str
        The file (for messages).

    Returns
    -------
    None
        Returns when the data are usable.

    Raises
    ------
    DataError
        The image is all zero (checked first: then no unit check can judge it), or frames
        hold only NaN or infinite values (the message lists them).
    """
    if not np.any(data):
        raise DataError(
            f"{source}: the image is all zero (every voxel of every frame); the export or "
            "reconstruction failed — re-export the image"
        )
    dead = [i for i in range(data.shape[3]) if not np.isfinite(data[..., i]).any()]
    if dead:
        raise DataError(_nan_frames_message(source, dead, data.shape[3]))


def _nan_frames_message(source: str, frames: list[int], n: int) -> str:
    """The error for frames without a finite value."""
    which = f"frame {frames[0]}" if len(frames) == 1 else f"frames {frames}"
    return (f"{source}: {which} (0-based, of {n}) entirely NaN (no finite voxel value); the "
            "reconstruction or export of that frame failed — re-export the image, or remove "
            "the frame from the image and from FrameTimesStart/FrameDuration")


def _require(meta: Mapping[str, Any], key: str, path: Path | str, hint: str) -> Any:
    if key not in meta or meta[key] in (None, "", []):
        raise MetadataError(f"{path}: required field '{key}' is missing; {hint}")
    return meta[key]


def load_pet(path: str | os.PathLike[str], *, sidecar: str | os.PathLike[str] | None = None,
             participants: Mapping[str, Any] | None = None) -> DynamicPET:
    """Load a BIDS PET image and its JSON sidecar.

    Parameters
    ----------
    path : str or path-like
        ``*_pet.nii`` or ``*_pet.nii.gz`` (3D static or 4D dynamic).
    sidecar : str or path-like, optional
        JSON sidecar. Default: every applicable ``*_pet.json`` by BIDS's inheritance
        principle (beside the image, or shared at the session, subject or dataset level, e.g.
        ``pet.json`` or ``trc-UCBJ_pet.json``), merged from the root down.
        ``FrameTimesStart`` and ``FrameDuration`` are in seconds; ``Units`` is the activity
        unit of the voxels.
    participants : mapping, optional
        Fields from ``participants.tsv`` for this subject (``weight``, kg, used for SUV when
        the sidecar has no ``BodyWeight``).

    Returns
    -------
    DynamicPET
        Lazy: the voxel data are read frame by frame (``.frame(i)``) or all at once
        (``.data``), converted to kBq/mL and decay corrected to injection; frame times in
        minutes.

    Raises
    ------
    MetadataError
        Sidecar missing (the message names where it may lie), two sidecars at one folder
        level, or a required field absent.
    FrameTimingError
        Timing inconsistent or the number of frames differs from the image.
    UnitsError
        Unknown ``Units``.
    DataError
        Missing, unreadable or truncated file.
    """
    import nibabel as nib
    from nibabel.spatialimages import SpatialImage

    p = Path(path)
    if not p.exists():
        raise DataError(f"PET image not found: {p}")
    meta, files = _read_sidecars(p, sidecar)
    sc = describe_sources(files)
    try:
        img = nib.load(str(p), keep_file_open=_keep_file_open(p))
    except Exception as exc:  # nibabel raises several types for corrupt headers
        raise DataError(f"{p}: not a readable NIfTI image ({exc})") from exc
    if not isinstance(img, SpatialImage):
        raise DataError(f"{p}: not a volume image ({type(img).__name__})")
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
    decay_corrected = _require(meta, "ImageDecayCorrected", sc, "say whether the image is "
                               "decay corrected: \"ImageDecayCorrected\": true (or false)")
    _check_injection_start(meta, sc)
    frames = FrameSchedule.from_bids(fts, fdur, n_volumes=n_vol, radionuclide=nuclide,
                                     decay_corrected=True, source=_timing_source(files))
    frame_scale = None
    if not decay_corrected:
        if not nuclide:
            raise MetadataError(
                f"{sc}: ImageDecayCorrected is false but TracerRadionuclide is missing, so the "
                "image cannot be decay corrected; add TracerRadionuclide (e.g. 'C11')"
            )
        frame_scale = frames.decay_factors()
    else:
        to_injection = _decay_time_factor(meta, sc, nuclide)
        if to_injection != 1.0:
            frame_scale = np.full(frames.n, to_injection)
    info = dict(meta)
    info["sidecar_files"] = [str(f) for f in files]
    info["original_units"] = units
    info["tracer"] = meta.get("TracerName")
    info["radionuclide"] = nuclide
    info["decay_corrected_on_load"] = not decay_corrected
    if "InjectedRadioactivity" in meta:
        u = _require(meta, "InjectedRadioactivityUnits", sc, "give the unit of "
                     "InjectedRadioactivity, e.g. \"InjectedRadioactivityUnits\": \"MBq\"")
        info["injected_mbq"] = _positive(to_mbq(meta["InjectedRadioactivity"], u),
                                         f"{sc}: InjectedRadioactivity", "MBq")
    bw = meta.get("BodyWeight")
    row_bw = _participant_weight(participants, p) if participants else None
    if bw is not None:
        info["body_weight_kg"] = _body_weight(bw, meta.get("BodyWeightUnits", "kg"), sc)
        ratio = info["body_weight_kg"] / row_bw if row_bw else 1.0
        if not 2 / 3 <= ratio <= 1.5:  # a unit slip, not weight change between visits
            warnings.warn(f"{sc}: BodyWeight {info['body_weight_kg']:g} kg is {ratio:.3g} times "
                          f"the weight {row_bw:g} kg of {_participants_row(p)}; the sidecar's "
                          "(the weight on the scan day) is used for SUV: is one of them in "
                          "another unit?", Sv2aWarning, stacklevel=2)
    elif row_bw is not None:
        info["body_weight_kg"] = _body_weight(row_bw, "kg", _participants_row(p))
    if "injected_mbq" not in info or "body_weight_kg" not in info:
        missing = " and ".join(k for k, v in (("InjectedRadioactivity", "injected_mbq"),
                                              ("BodyWeight", "body_weight_kg")) if v not in info)
        warnings.warn(f"{sc}: the activity unit ({units!r}) cannot be checked for plausibility "
                      f"without {missing} (sidecar, or weight in participants.tsv); a unit "
                      "error would go unnoticed and SUV cannot be computed", Sv2aWarning,
                      stacklevel=2)
    return DynamicPET(img.dataobj, frames, np.asarray(img.affine), info, p, scale, frame_scale)


#: Plausible body weights (kg): from a mouse pup to the heaviest patients a PET bed holds.
BODY_WEIGHT_RANGE_KG = (0.001, 400.0)


def _positive(value: float, what: str, unit: str) -> float:
    """``value`` when finite and positive, else a :class:`MetadataError` naming ``what``."""
    if not (np.isfinite(value) and value > 0):
        raise MetadataError(f"{what} is {value:g} {unit}; it must be a positive number "
                            "(or leave the field out)")
    return float(value)


def _body_weight(value: Any, unit: Any, source: Any) -> float:
    """Body weight in kg from a value and its unit; refused outside
    :data:`BODY_WEIGHT_RANGE_KG` (a weight in g or lb given as kg, say)."""
    try:
        factor = weight_factor(unit)
    except UnitsError:
        raise UnitsError(f"{source}: BodyWeightUnits {unit!r} is not a weight unit; give the "
                         "weight in kg (or set BodyWeightUnits to kg, g or lb)") from None
    kg = _positive(float(value) * factor, f"{source}: BodyWeight", "kg")
    lo, hi = BODY_WEIGHT_RANGE_KG
    if not lo <= kg <= hi:
        raise UnitsError(f"{source}: body weight {kg:g} kg is outside the plausible {lo:g}–"
                         f"{hi:g} kg; is it in g or lb? Give it in kg (BIDS BodyWeight is in kg)")
    return kg


def _check_injection_start(meta: Mapping[str, Any], sc: Any) -> None:
    """Frame and blood times must count from the injection: a non-zero ``InjectionStart``
    (relative to TimeZero) would shift every time silently, so it is refused."""
    start = meta.get("InjectionStart")
    if start is None:
        return
    try:
        value = float(start)
    except (TypeError, ValueError):
        raise MetadataError(f"{sc}: InjectionStart is {start!r}, not a number (s)") from None
    if abs(value) > 0.5:
        when = f"{value:g} s after" if value > 0 else f"{-value:g} s before"
        raise MetadataError(
            f"{sc}: InjectionStart says the injection was {when} TimeZero; sv2a needs frame "
            "and blood times relative to the injection (TimeZero = injection time): subtract "
            f"{value:g} s from FrameTimesStart, from the blood time column and from "
            "ImageDecayCorrectionTime, then set \"InjectionStart\": 0 (frames that end "
            "before the injection must be removed from the image)")


def _decay_time_factor(meta: Mapping[str, Any], sc: Any, nuclide: Any) -> float:
    """Factor that takes an image decay corrected to ``ImageDecayCorrectionTime`` (s after
    the injection) back to the injection: ``2 ** (t / half-life)``; 1 when the time is 0."""
    t = meta.get("ImageDecayCorrectionTime")
    if t is None:
        return 1.0
    try:
        t_s = float(t)
    except (TypeError, ValueError):
        raise MetadataError(f"{sc}: ImageDecayCorrectionTime is {t!r}, not a number (s)"
                            ) from None
    if abs(t_s) <= 0.5:
        return 1.0
    if not nuclide:
        raise MetadataError(f"{sc}: ImageDecayCorrectionTime is {t_s:g} s, not the injection, "
                            "and TracerRadionuclide is missing, so the image cannot be "
                            "corrected to the injection; add TracerRadionuclide (e.g. 'C11')")
    half_life_min = float(_half_life(str(nuclide)))
    if t_s < 0:
        raise MetadataError(f"{sc}: ImageDecayCorrectionTime is {t_s:g} s, before the "
                            "injection; give it relative to the injection (InjectionStart 0)")
    return float(2.0 ** (t_s / 60.0 / half_life_min))


def _read_sidecars(p: Path, sidecar: str | os.PathLike[str] | None
                   ) -> tuple[dict[str, Any], list[Path]]:
    """The PET metadata of ``p`` and the files it came from (top to bottom): ``sidecar`` alone
    when given, else every applicable ``*_pet.json`` (BIDS inheritance), each type-checked."""
    if sidecar is not None:
        sc = Path(sidecar)
        if not sc.exists():
            raise MetadataError(f"{p}: missing JSON sidecar; expected {sc} with "
                                "FrameTimesStart, FrameDuration, Units and TracerRadionuclide")
        meta = read_json(sc)
        check_types(meta, sc)
        return meta, [sc]
    meta, files = read_metadata(p, check=check_types)
    if not files:
        raise MetadataError(
            f"{p}: missing JSON sidecar; expected {sidecar_places(p)}, with FrameTimesStart, "
            "FrameDuration, Units and TracerRadionuclide"
        )
    return meta, files


def _timing_source(files: list[Path]) -> str:
    """The sidecar(s) that gave ``FrameTimesStart`` and ``FrameDuration``, for messages."""
    if len(files) == 1:
        return str(files[0])
    srcs = dict.fromkeys(str(field_source(files, k) or files[-1])
                         for k in ("FrameTimesStart", "FrameDuration"))
    return " and ".join(srcs)


def _keep_file_open(p: Path) -> bool | None:
    """``keep_file_open`` for nibabel: ``None`` (its default) unless ``p`` is gzipped and the
    optional ``indexed_gzip`` is missing.

    With indexed_gzip (``pip install "sv2a[fast]"``) nibabel seeks in a ``.nii.gz`` through an
    index of decompression points, so frames and slabs are read without decompressing the
    file from its start each time. Without it, a gzip stream kept open decompresses each
    frame read in increasing order from where the previous one ended (one pass over the file
    for :meth:`DynamicPET.frame` in a loop, instead of one pass per frame); the handle closes
    when the image is garbage collected, and pickled images (dask, process pools) reopen it.
    """
    if not p.name.endswith(".gz"):
        return None
    try:
        from nibabel import _compression

        have_igzip = bool(getattr(_compression, "HAVE_INDEXED_GZIP", False))
    except ImportError:  # pragma: no cover - nibabel moved its private module
        have_igzip = False
    return None if have_igzip else True


def _check_size(p: Path, img: Any) -> None:
    """Catch truncated uncompressed NIfTI files at load time (gzip is checked on read)."""
    if p.name.endswith(".nii"):
        hdr = img.header
        need = int(hdr.get_data_offset()) + int(np.prod(img.shape)) * hdr.get_data_dtype().itemsize
        have = p.stat().st_size
        if have < need:
            raise DataError(
                f"{p}: file is truncated ({have} bytes, the header needs {need}); re-copy it"
            )


def _participant_weight(participants: Mapping[str, Any], pet_path: Path) -> float | None:
    """Body weight (kg) from a subject's ``participants.tsv`` row; ``n/a``/empty -> None.

    Text that is not a number (``'72 kg'``, ``'72,5'``) raises :class:`MetadataError` naming the
    file and row, instead of a bare ``ValueError`` or a silently missing SUV.
    """
    col = "weight" if "weight" in participants else "body_weight"
    bw = participants.get(col)
    if bw is None:
        return None
    if isinstance(bw, bool):
        raise MetadataError(f"{_participants_row(pet_path)}: column '{col}' is {bw!r}; "
                            "give the body weight in kg as a number, e.g. 72.5")
    if isinstance(bw, str):
        text = bw.strip()
        if text.lower() in ("", "n/a", "nan", "na"):
            return None
        try:
            value = float(text)
        except ValueError:
            raise MetadataError(
                f"{_participants_row(pet_path)}: column '{col}' holds {bw!r}, not a number; "
                "give the body weight in kg as a plain number with a decimal point (e.g. 72.5; "
                "no unit, no decimal comma) or n/a"
            ) from None
    else:
        try:
            value = float(bw)
        except (TypeError, ValueError):
            raise MetadataError(
                f"{_participants_row(pet_path)}: column '{col}' holds {bw!r}, not a number; "
                "give the body weight in kg, e.g. 72.5, or n/a"
            ) from None
    if not np.isfinite(value):
        return None
    if value <= 0:
        raise MetadataError(f"{_participants_row(pet_path)}: column '{col}' is {value:g}; "
                            "the body weight (kg) must be positive (or n/a)")
    return value * _participants_weight_factor(pet_path, col)


def _participants_weight_factor(pet_path: Path, col: str) -> float:
    """kg per unit of the participants.tsv weight column: its ``Units`` in the dataset's
    ``participants.json`` (BIDS data dictionary; kg when absent)."""
    root = dataset_root(pet_path)
    side = root / "participants.json" if root is not None else None
    if side is None or not side.is_file():
        return 1.0
    unit = (read_json(side).get(col) or {})
    unit = unit.get("Units", "kg") if isinstance(unit, dict) else "kg"
    try:
        return weight_factor(unit)
    except UnitsError:
        raise UnitsError(f"{side}: Units {unit!r} of column '{col}' is not a weight unit; "
                         "give kg, g or lb") from None


def _participants_row(pet_path: Path) -> str:
    """'<dataset>/participants.tsv, row sub-XX' for the subject whose scan ``pet_path`` is."""
    for parent in pet_path.parents:
        if parent.name.startswith("sub-"):
            return f"{parent.parent / 'participants.tsv'}, row {parent.name}"
    return f"participants.tsv, row of the subject of {pet_path.name}"
