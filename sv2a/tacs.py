"""Regional time-activity curves (TACs) as ``xr.DataArray`` (region x frame).

Coordinates: ``region`` (snake_case names), ``frame`` (index), ``frame_start``, ``frame_end``,
``frame_mid``, ``frame_duration`` (min) on ``frame``; ``volume_ml`` (mL) and ``n_voxels`` on
``region``. Values are kBq/mL. :func:`frames_of` recovers the :class:`FrameSchedule`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import xarray as xr

from .errors import DataError, RegionError, ShapeMismatchError, Sv2aWarning
from .frames import FrameSchedule, as_times
from .plausibility import check_decay_correction
from .regions import name_list, region_name

__all__ = ["tacs_from_arrays", "frames_of", "region_name", "extract_tacs", "LabelAtlas"]


@runtime_checkable
class LabelAtlas(Protocol):
    """What :func:`extract_tacs` needs of an atlas (:class:`sv2a.atlas.Atlas` provides it).

    Attributes
    ----------
    labels : ndarray of int, shape (x, y, z)
        Label image, 0 = background.
    names : list of str
        Region names in label order.
    index_of : dict
        Region name -> label value.
    voxel_volume_ml : float
        Volume of one voxel (mL).
    source : str
        Where the atlas came from (for messages).
    """

    @property
    def labels(self) -> np.ndarray:
        """Label image (int, shape (x, y, z)), 0 = background."""

    @property
    def source(self) -> str:
        """Where the atlas came from (for messages)."""

    @property
    def names(self) -> list[str]:
        """Region names in label order."""

    @property
    def index_of(self) -> dict[str, int]:
        """Region name -> label value."""

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel (mL)."""

    def check_grid(self, shape: Sequence[int], affine: npt.ArrayLike, *,
                   atol: float = 1e-3) -> None:
        """Raise :class:`ShapeMismatchError` unless the atlas is on a voxel grid.

        Parameters
        ----------
        shape : sequence of int
            Grid shape (voxels).
        affine : array_like, shape (4, 4)
            Voxel index -> mm of the grid.
        atol : float
            Largest allowed difference of affine entries (mm).

        Returns
        -------
        None
        """


def tacs_from_arrays(
    values: npt.ArrayLike,
    frame_start: npt.ArrayLike,
    frame_end: npt.ArrayLike,
    regions: Sequence[str],
    *,
    volume_ml: npt.ArrayLike | None = None,
    n_voxels: npt.ArrayLike | None = None,
    half_life: float | None = None,
    decay_corrected: bool = True,
    allow_nan: bool = False,
    source: str = "arrays",
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Build a TAC array from plain arrays.

    Parameters
    ----------
    values : array_like, shape (n_regions, n_frames)
        Activity concentration (kBq/mL), decay corrected to injection.
    frame_start, frame_end : array_like, shape (n_frames,)
        Frame times in **minutes**.
    regions : sequence of str
        Region names (normalised to snake_case).
    volume_ml, n_voxels : array_like, optional
        Per-region volume (mL) and voxel count.
    half_life : float, optional
        Physical half-life of the radionuclide (min), kept as ``attrs["half_life_min"]``.
    decay_corrected : bool
        Whether ``values`` are decay corrected to injection.
    allow_nan : bool
        By default NaN/inf values raise :class:`DataError`.
    source : str
        Where the values came from (for messages).
    attrs : mapping, optional
        Extra attributes of the result.

    Returns
    -------
    xr.DataArray, shape (n_regions, n_frames)
        The TACs (kBq/mL) with the coordinates described in the module docstring.

    Raises
    ------
    ShapeMismatchError
        ``values`` do not match the region names or the frame times.
    RegionError
        Duplicate region names (after normalisation).
    DataError
        Non-finite values (unless ``allow_nan``).

    Examples
    --------
    >>> t = tacs_from_arrays([[1, 2, 3]], [0, 1, 2], [1, 2, 3], ["Frontal Cortex"])
    >>> t.region.values.tolist(), t.frame_mid.values.tolist()
    (['frontal_cortex'], [0.5, 1.5, 2.5])
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[None, :]
    names = [region_name(r) for r in regions]
    if v.ndim != 2 or v.shape[0] != len(names):
        raise ShapeMismatchError(
            f"{source}: values have shape {v.shape} but {len(names)} region names were given; "
            "values must be (n_regions, n_frames)"
        )
    fs = FrameSchedule(as_times("frame start", frame_start, source),
                       as_times("frame end", frame_end, source), half_life=half_life,
                       decay_corrected=decay_corrected, source=source)
    if v.shape[1] != fs.n:
        raise ShapeMismatchError(
            f"{source}: values have {v.shape[1]} frames but the frame times list {fs.n}"
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RegionError(f"{source}: duplicate region names {dup}; names must be unique")
    if not allow_nan:
        bad = ~np.isfinite(v)
        if bad.any():
            r, f = np.argwhere(bad)[0]
            raise DataError(
                f"{source}: non-finite value in region '{names[r]}' at frame index {f} "
                f"({int(bad.sum())} in all); remove the region or fix the data"
            )
    coords: dict[str, Any] = {
        "region": names,
        "frame": np.arange(fs.n),
        "frame_start": ("frame", fs.start.copy()),
        "frame_end": ("frame", fs.end.copy()),
        "frame_mid": ("frame", fs.mid),
        "frame_duration": ("frame", fs.duration),
    }
    if volume_ml is not None:
        coords["volume_ml"] = ("region", np.asarray(volume_ml, dtype=float).reshape(-1))
    if n_voxels is not None:
        coords["n_voxels"] = ("region", np.asarray(n_voxels, dtype=int).reshape(-1))
    a: dict[str, Any] = {"units": "kBq/mL", "time_units": "min",
                         "decay_corrected": int(decay_corrected)}
    if half_life is not None:
        a["half_life_min"] = float(half_life)
    a.update(attrs or {})
    return xr.DataArray(v, dims=("region", "frame"), coords=coords, name="tac", attrs=a)


def frames_of(tacs: xr.DataArray | xr.Dataset) -> FrameSchedule:
    """The frame schedule of a TAC array, from its ``frame_start``/``frame_end`` coordinates.

    Parameters
    ----------
    tacs : xr.DataArray or xr.Dataset
        TACs (or a result holding their frame coordinates, min).

    Returns
    -------
    FrameSchedule
        Frame start and end times (min), with the half-life (min) and decay-correction flag
        from the attributes.

    Raises
    ------
    ShapeMismatchError
        The frame coordinates are missing.
    """
    try:
        start, end = tacs["frame_start"].values, tacs["frame_end"].values
    except KeyError as exc:
        raise ShapeMismatchError(
            "TACs need 'frame_start' and 'frame_end' coordinates (min); build them with "
            "sv2a.tacs_from_arrays or sv2a.extract_tacs"
        ) from exc
    return FrameSchedule(start, end, half_life=tacs.attrs.get("half_life_min"),
                         decay_corrected=bool(tacs.attrs.get("decay_corrected", 1)),
                         source="tacs")


class _LabelRuns:
    """Label image flattened in one memory order, with its runs of equal labels.

    Atlases are made of contiguous blobs, so the flattened label image consists of runs;
    summing each run with ``np.add.reduceat`` and then the runs per label touches every voxel
    once with a streaming pass, about 2x faster than ``np.bincount`` over all voxels.
    """

    def __init__(self, labels: np.ndarray, order: Literal["C", "F"], nbins: int):
        self.flat = labels.reshape(-1, order=order).astype(np.intp)
        self.nbins = nbins
        change = np.flatnonzero(self.flat[1:] != self.flat[:-1]) + 1
        self.starts = np.concatenate([[0], change])
        self.run_labels = self.flat[self.starts]
        # runs pay off only when they are long; random labels fall back to bincount
        self.use_runs = self.starts.size < self.flat.size // 4

    def sums(self, vol: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-label sums of ``vol`` (1-D, same order), and NaN counts if it has NaNs."""
        if self.use_runs:
            run_sums = np.add.reduceat(vol, self.starts)
            if np.isfinite(run_sums).all():
                return np.bincount(self.run_labels, weights=run_sums, minlength=self.nbins), None
        nan = np.isnan(vol)
        if not nan.any():
            return np.bincount(self.flat, weights=vol, minlength=self.nbins), None
        nan_counts = np.bincount(self.flat, weights=nan, minlength=self.nbins)
        clean = np.where(nan, 0.0, vol)
        return np.bincount(self.flat, weights=clean, minlength=self.nbins), nan_counts


def _label_sums(pet: Any, labels: np.ndarray, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of each label's voxels per frame, reading each frame once.

    The next frame is read in a background thread (file reads release the GIL) while the
    current one is reduced, so the pass costs little more than one read of the data.
    """
    from concurrent.futures import ThreadPoolExecutor

    nfr = pet.n_frames
    sums = np.empty((nbins, nfr))
    nan_counts = np.zeros((nbins, nfr), dtype=np.int64)
    runs: dict[str, _LabelRuns] = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(pet.frame, 0)
        for f in range(nfr):
            frame = np.asarray(nxt.result())
            if f + 1 < nfr:
                nxt = pool.submit(pet.frame, f + 1)
            # flatten in the frame's own memory order: no transposing copy
            order: Literal["C", "F"] = (
                "F" if frame.flags.f_contiguous and not frame.flags.c_contiguous else "C")
            if order not in runs:
                runs[order] = _LabelRuns(labels, order, nbins)
            sums[:, f], nans = runs[order].sums(frame.reshape(-1, order=order))
            if nans is not None:
                nan_counts[:, f] = nans
    return sums, nan_counts


def extract_tacs(pet: Any, atlas: LabelAtlas, *, regions: Sequence[str] | None = None,
                 min_voxels: int = 1) -> xr.DataArray:
    """Mean activity per atlas region and frame, in one pass over the image.

    Parameters
    ----------
    pet : DynamicPET
        From :func:`sv2a.load_pet` (kBq/mL; frame times in minutes).
    atlas : Atlas
        From :func:`sv2a.load_atlas`, on the PET grid (see ``Atlas.resample_to``); any object
        with the attributes of :class:`LabelAtlas` is accepted.
    regions : sequence of str, optional
        Regions to return (default: every region in the atlas). Requested regions that are not
        in the atlas raise :class:`RegionError`.
    min_voxels : int
        Regions with fewer voxels inside the image (or with a frame in which every voxel is
        NaN) raise :class:`RegionError` when requested, or are left out with a
        :class:`~sv2a.errors.Sv2aWarning` naming them when not explicitly requested.

    Returns
    -------
    xr.DataArray, shape (n_regions, n_frames)
        Mean activity (kBq/mL) per region and frame, with region volumes (mL) and voxel
        counts; see :func:`tacs_from_arrays`. ``attrs["empty_regions"]`` lists the atlas
        regions left out for having no valid voxels (empty list: none).

    Raises
    ------
    TypeError
        ``atlas`` is not an atlas.
    ShapeMismatchError
        The atlas is not on the PET grid.
    RegionError
        A requested region is missing or empty, or no region has voxels in the image.

    Notes
    -----
    Each frame is read once and reduced with ``np.bincount`` over the label image, so time
    and memory do not grow with the number of regions. Voxels whose value is NaN are excluded
    from the region mean (with a warning giving the count).
    """
    if not isinstance(atlas, LabelAtlas):
        raise TypeError("atlas must be an sv2a.Atlas (use sv2a.load_atlas)")
    atlas.check_grid(pet.shape[:3], pet.affine)
    labels = np.asarray(atlas.labels)
    names = atlas.names
    if regions is None:
        wanted = list(names)
        explicit = False
    else:
        wanted = [region_name(r) for r in regions]
        explicit = True
        missing = [r for r in wanted if r not in atlas.index_of]
        if missing:
            raise RegionError(
                f"regions {missing} are not in the atlas ({atlas.source}); available: "
                f"{sorted(names)[:20]}{' ...' if len(names) > 20 else ''}"
            )
    idx = np.array([atlas.index_of[r] for r in wanted], dtype=np.int64)
    flat_labels = labels.reshape(-1).astype(np.intp, copy=False)  # bincount wants intp
    if flat_labels.min() < 0:
        raise RegionError(f"{atlas.source}: negative labels in the label image")
    nbins = int(max(flat_labels.max(), idx.max() if idx.size else 0)) + 1
    counts = np.bincount(flat_labels, minlength=nbins)
    sums, nan_counts = _label_sums(pet, labels, nbins)
    any_nan = bool(nan_counts.any())
    n_valid = counts[:, None] - nan_counts
    keep, dropped, why = [], [], []
    for k, (name, i) in enumerate(zip(wanted, idx, strict=True)):
        if counts[i] < min_voxels or np.any(n_valid[i] == 0):
            if explicit:
                raise RegionError(
                    f"region '{name}' (label {i}) has {counts[i]} voxels in the PET field of view "
                    f"({atlas.source}); it is empty or entirely NaN. Check the atlas registration "
                    "or leave the region out"
                )
            dropped.append(name)
            why.append(f"{name} (label {i}: " + (
                f"{counts[i]} voxels, fewer than {min_voxels}" if counts[i] < min_voxels
                else "NaN in every voxel of some frame") + ")")
        else:
            keep.append(k)
    if dropped:
        warnings.warn(
            f"{atlas.source}: regions with no valid voxels were left out: {name_list(dropped)} "
            f"({'; '.join(why[:10])}{'; ...' if len(why) > 10 else ''}); they have no TAC and "
            "are listed in attrs['empty_regions']. "
            "Check the segmentation and its registration to the PET.",
            Sv2aWarning, stacklevel=2)
    if not keep:
        raise RegionError(f"no region of {atlas.source} has voxels inside the PET image")
    if any_nan:
        n = int(nan_counts[idx[keep]].sum())
        warnings.warn(f"{n} NaN voxel values inside regions were excluded from the means",
                      Sv2aWarning, stacklevel=2)
    sel = idx[keep]
    means = sums[sel] / n_valid[sel]
    vox_ml = atlas.voxel_volume_ml
    fs = pet.frames
    meta = getattr(pet, "meta", {}) or {}
    infusion = "infusion" in str(meta.get("ModeOfAdministration", "")).lower()
    if getattr(pet, "path", None) is not None and not infusion:  # read from a file; a
        # (bolus plus) constant infusion keeps plasma rising, so its curves may rise too
        check_decay_correction(
            np.average(means, axis=0, weights=counts[sel]), fs.start, fs.end,
            half_life=fs.half_life, source=str(pet.path),
            corrected_on_load=bool(getattr(pet, "meta", {}).get("decay_corrected_on_load")))
    return tacs_from_arrays(
        means, fs.start, fs.end, [wanted[k] for k in keep],
        volume_ml=counts[sel] * vox_ml, n_voxels=counts[sel], half_life=fs.half_life,
        decay_corrected=True, source=str(pet.path),
        attrs={"pet": str(pet.path), "atlas": str(atlas.source), "empty_regions": dropped},
    )
