"""Voxelwise parametric maps: the voxel adapter over the models' solvers.

:func:`parametric_maps` fits a registered model (``sv2a.models.available(scale="voxel")``) to
every voxel of a mask with the same solver that :func:`sv2a.fit` uses for regions, so an image
whose voxels carry their region's TAC gives the regional estimates. Voxels are solved in
chunks (numpy) or per spatial block (dask; images larger than memory, dask clusters); see
:mod:`.inputs` (image, masks, reference), :mod:`.engine` (chunks and blocks) and
:mod:`.accessor` (the labelled result and ``ds.sv2a.to_nifti``).

Examples
--------
>>> maps = sv2a.parametric_maps(pet, model="srtm2", reference="centrum_semiovale",
...                             atlas=atlas, mask=brain)                  # doctest: +SKIP
>>> maps.sv2a.to_nifti("out/sub-01/ses-bl/pet", "sub-01_ses-bl")          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from ..blood import check_tissue_plasma
from ..errors import RegionError, Sv2aNotice
from ..frames import FrameSchedule
from ..models.base import ModelInputs, check_enough_frames, describe_flags, parse_options
from ..models.k2prime import MAX_ROWS as K2PRIME_MAX_ROWS
from ..models.k2prime import resolve_k2prime
from ..models.regional import check_kind, common_weights, option_attrs
from ..models.registry import require
from ..threads import one_blas_thread
from .accessor import Sv2aMapsAccessor, assemble, map_filename
from .engine import run_dask, run_numpy
from .inputs import (
    as_mask,
    is_dask,
    mask_rows,
    reference_tac,
    region_mask,
    resolve_pet,
    rows_of,
    sigma_vox,
    smooth_block,
    smooth_numpy,
)

__all__ = ["parametric_maps", "map_filename", "Sv2aMapsAccessor"]


@one_blas_thread
def parametric_maps(
    pet: Any,
    model: str = "srtm2",
    *,
    reference: Any = None,
    input: Any = None,
    mask: Any = None,
    atlas: Any = None,
    frames: FrameSchedule | None = None,
    affine: Any = None,
    fwhm: float | tuple[float, float, float] | None = None,
    chunk_size: int | None = None,
    chunks: tuple[int, int, int] | None = None,
    progress: bool = False,
    warn: bool = True,
    allow_overlap: bool = False,
    **options: Any,
) -> xr.Dataset:
    """Voxelwise parametric maps of a dynamic PET image.

    Parameters
    ----------
    pet : sv2a.DynamicPET or array (x, y, z, frame)
        The image in kBq/mL (decay corrected). Plain arrays need ``frames=`` (and
        ``affine=`` for NIfTI output). A dask array (or ``chunks=``) runs as a dask graph.
    model : str
        A name from ``sv2a.models.available(scale="voxel")``.
    reference : str, bool array (x, y, z) or array (n_frames,)
        Reference region for reference-tissue models and SUVR: a region name (needs
        ``atlas=``), a boolean mask (its mean TAC, unsmoothed) or the reference TAC.
    input : InputFunction
        Metabolite-corrected plasma input, for plasma-input models.
    mask : bool array (x, y, z), optional
        Voxels to fit (default: voxels positive in some frame). Must not overlap the
        reference unless ``allow_overlap=True``.
    atlas : Atlas, optional
        Label image on the PET grid, to resolve region names in ``reference=`` and
        ``k2prime_region=``.
    frames : FrameSchedule, optional
        Frame timing (min) of a plain array.
    affine : array (4, 4), optional
        Voxel-to-mm affine of a plain array.
    fwhm : float or (float, float, float), optional
        Gaussian pre-smoothing of the targets (mm); default none.
    chunk_size : int, optional
        Voxels per chunk in memory (default automatic).
    chunks : (int, int, int), optional
        Spatial dask chunk shape; implies the dask path (a file-backed image is read block
        by block, never whole).
    progress : bool
        Progress bar on stderr (voxel chunks, or dask tasks).
    warn : bool
        One :class:`~sv2a.errors.Sv2aNotice` (a :class:`~sv2a.errors.Sv2aWarning`)
        summarising flagged voxels.
    allow_overlap : bool
        Also map voxels of the reference region.
    **options
        The model's options, the same as for :func:`sv2a.fit` with the same defaults (e.g.
        ``weights``, ``method``, ``rate_range``, ``k2prime``, ``tstar``, ``window``). TAC-
        dependent weights are computed from the mean TAC of the mask, common to all voxels.

    Returns
    -------
    xr.Dataset
        3-D maps over ``(x, y, z)`` (float32, NaN outside the mask, units in attrs), a
        ``flag`` map (uint8 bit field: 1 grid edge or bound, 2 non-finite, 4 negative
        denominator, 8 negative rate or amplitude, 16 not converged) and the settings in
        attrs. Write with ``maps.sv2a.to_nifti(out_dir, stem)``.

    Raises
    ------
    ModelError
        Unknown model, one without voxel maps, or an option it does not take.
    RegionError
        Empty mask or reference; reference overlapping the mask; a region name without atlas.
    InputFunctionError
        A plasma-input model without ``input=``.
    DataError, ShapeMismatchError
        Reference TAC non-finite or zero; masks or TACs of the wrong shape.
    FitError
        Too few frames after ``tstar`` or in the SUV/SUVR window.

    Notes
    -----
    Voxels with a non-finite value in any frame get NaN and flag 2; the others are
    unaffected. The solver is the model's (see :mod:`sv2a.models`).
    """
    cls = require(model, scale="voxel")
    opts: Any = parse_options(cls.Options, options, cls.name)
    check_kind(cls, input, reference)
    data, frames, aff, meta = resolve_pet(pet, frames, affine, chunks)
    shape3 = tuple(int(s) for s in data.shape[:3])
    dask = is_dask(data) or chunks is not None
    if dask:
        data = _as_dask(data, chunks)
    mask = _target_mask(mask, data, shape3, dask)
    settings: dict[str, Any] = {"n_voxels": int(mask.sum()),
                                "frames_start_min": frames.start.tolist(),
                                "frames_end_min": frames.end.tolist(),
                                "fwhm_mm": 0.0 if fwhm is None else fwhm}
    ref = None
    if cls.kind == "reference":
        ref, info = reference_tac(reference, data, mask, frames, atlas=atlas,
                                  allow_overlap=allow_overlap, dask=dask)
        settings.update(info)
    data, rows = _smoothed_targets(data, mask, sigma_vox(fwhm, aff), frames, dask)
    sample = _MaskSample(data, mask, rows, frames.n)
    if cls.kind == "plasma":  # the unit check of the regional fits
        check_tissue_plasma(input, frames.start, frames.end, sample.mean()[None, :],
                            what=str(meta.get("path") or "the PET image"))
    weights = np.ones(frames.n)
    if hasattr(opts, "weights"):
        tac_dependent = not isinstance(opts.weights, str) or opts.weights not in ("uniform",
                                                                                  "duration")
        weights = common_weights(opts, sample.mean()[None, :] if tac_dependent
                                 else np.ones((1, frames.n)), None, frames)
        settings["frame_weights"] = np.round(weights, 6).tolist()
    if hasattr(opts, "k2prime") and not (cls.name == "srtm" and opts.k2prime is None):
        opts = _resolve_map_k2prime(cls.name, opts, frames, ref, sample, data, atlas, shape3,
                                    dask, settings)

    solver = cls(ModelInputs(frames=frames, weights=weights, reference=ref, input=input,
                             injected_mbq=meta.get("injected_mbq"),
                             body_weight_kg=meta.get("body_weight_kg"), scale="voxel"), opts)
    check_enough_frames(solver)
    names = list(cls.parameters) + (["rss"] if solver.n_fitted else [])
    desc = f"maps {cls.name}"
    if dask:
        stack = run_dask(solver, data, mask, names, progress=progress, desc=desc)
        maps = {nm: stack[..., i] for i, nm in enumerate(names)}
        flag = np.where(mask, stack[..., -1], 0).astype(np.uint8)
    else:
        assert rows is not None
        vals, fl = run_numpy(solver, rows, names, chunk_size=chunk_size, progress=progress,
                             desc=desc)
        where = np.flatnonzero(mask.ravel())
        maps = {nm: _scatter(vals[nm], where, shape3, np.float32, np.nan) for nm in names}
        flag = _scatter(fl, where, shape3, np.uint8, 0)

    counts = describe_flags(flag[mask])
    settings.update(option_attrs(opts))
    settings.update(solver.settings)
    settings["flag_counts"] = counts
    ds = assemble(cls.name, maps, flag, aff, settings, cls.units)
    # stacklevel 3: the caller of parametric_maps, past the one_blas_thread wrapper
    if warn and counts:
        n_vox = int(mask.sum())
        n_flag = int(np.count_nonzero(flag[mask]))
        detail = ", ".join(f"{v} {k}" for k, v in counts.items())
        warnings.warn(
            f"parametric_maps({cls.name}): {n_flag} of {n_vox} voxels "
            f"({100.0 * n_flag / n_vox:.2g} %) flagged ({detail}); see the 'flag' map",
            Sv2aNotice, stacklevel=3)
    if warn and cls.name == "srtm" and getattr(opts, "k2prime", None) is None:
        warnings.warn(
            "parametric_maps(srtm): k2' is free in every voxel, and at voxel noise the "
            "regional mean of such BPND maps is biased upwards (+5 to +28 % on SRTM phantoms "
            "at 15 % noise, most at low BPND); for unbiased maps pass k2prime='srtm' (two-step "
            "SRTM, Wu & Carson 2002: one k2' for all voxels) or use model='srtm2'",
            Sv2aNotice, stacklevel=3)
    return ds


def _as_dask(data: Any, chunks: tuple[int, ...] | None) -> Any:
    """The image as a dask array chunked over space, time in one chunk."""
    import dask.array as da

    if not is_dask(data):
        cs = tuple(chunks)[:3] if chunks is not None else ("auto",) * 3
        data = da.from_array(data, chunks=(*cs, -1))
    elif chunks is not None:
        data = data.rechunk((*tuple(chunks)[:3], -1))
    return data.rechunk({3: -1})


def _target_mask(mask: Any, data: Any, shape3: tuple[int, ...], dask: bool
                 ) -> NDArray[np.bool_]:
    """The voxels to fit (default: positive in some frame); an empty mask raises."""
    if mask is None:
        if dask:
            m = np.asarray((data > 0).any(axis=3).compute())
        else:  # frame by frame: no 4-D temporary
            m = np.zeros(shape3, dtype=bool)
            for k in range(data.shape[3]):
                m |= data[..., k] > 0
    else:
        m = as_mask(mask, shape3, "mask")
    if not m.any():
        raise RegionError("the mask is empty (no voxel to fit); check the brain mask and that "
                          "it is on the PET grid")
    return np.asarray(m, dtype=bool)


def _smoothed_targets(data: Any, mask: NDArray[np.bool_], sigma: Any, frames: FrameSchedule,
                      dask: bool) -> tuple[Any, NDArray[Any] | None]:
    """Smooth the targets (the reference was taken before); in memory also cut the rows."""
    if dask:
        if sigma is not None:
            depth = {i: int(4.0 * sigma[i] + 0.5) + 1 for i in range(3)}
            depth[3] = 0
            data = data.map_overlap(smooth_block, depth=depth, boundary="nearest",
                                    dtype=np.float32, sigma=sigma)
        return data, None
    src = smooth_numpy(data, sigma) if sigma is not None else data
    return data, mask_rows(src, mask)


class _MaskSample:
    """Target TACs for pooled estimates: :meth:`rows` gives at most 20,000 evenly spaced mask
    voxels (the subset the k2' estimate uses, as float64), :meth:`mean` the mean TAC of all
    finite mask voxels (for TAC-dependent weights). Read once, without copying the image."""

    def __init__(self, data: Any, mask: NDArray[np.bool_], rows: NDArray[Any] | None,
                 n_frames: int) -> None:
        self.data, self.mask, self.src, self.n_frames = data, mask, rows, n_frames
        self._rows: NDArray[np.float64] | None = None
        self._mean: NDArray[np.float64] | None = None

    def rows(self) -> NDArray[np.float64]:
        if self._rows is None:
            n = int(self.mask.sum())
            sub = np.linspace(0, n - 1, min(n, K2PRIME_MAX_ROWS)).astype(int)
            if self.src is not None:
                self._rows = np.asarray(self.src[sub], dtype=np.float64)
            else:
                idx = np.flatnonzero(self.mask.ravel())[sub]
                flat = self.data.reshape(-1, self.n_frames)
                self._rows = np.asarray(flat[idx].compute(), dtype=np.float64)
        return self._rows

    def mean(self) -> NDArray[np.float64]:
        if self._mean is None:
            if self.src is not None:
                fin = np.all(np.isfinite(self.src), axis=1)
                self._mean = np.asarray(self.src[fin].mean(axis=0, dtype=np.float64))
            else:
                self._mean = np.nanmean(self.rows(), axis=0)
        return self._mean


def _resolve_map_k2prime(name: str, opts: Any, frames: FrameSchedule, ref: Any,
                         sample: _MaskSample, data: Any, atlas: Any, shape3: tuple[int, ...],
                         dask: bool, settings: dict[str, Any]) -> Any:
    """Options with ``k2prime`` resolved to a number, by the rule of the regional fit."""
    if isinstance(opts.k2prime, str):
        region = getattr(opts, "k2prime_region", None)
        if region is None:
            k_rows, src_desc = sample.rows(), "target mask"
        else:
            arr = None if isinstance(region, str | list | tuple) else np.asarray(region)
            if arr is not None and arr.ndim <= 2 and arr.shape[-1] == frames.n:
                k_rows, src_desc = arr.reshape(-1, frames.n).astype(float), "given TAC(s)"
            else:
                km = region_mask(region, atlas, shape3, "k2prime_region")
                k_rows, src_desc = rows_of(data, km, frames.n, dask), "k2prime_region"
        if ref is None:
            raise RegionError(f"{name}: k2prime estimation needs a reference region")
        k2p, info = resolve_k2prime(opts, model=name, frames=frames, reference=ref,
                                    rows=k_rows, row_weights=None,
                                    weights=common_weights(opts, k_rows, None, frames),
                                    allow_none=name == "logan_ref")
        opts = dataclasses.replace(opts, k2prime=k2p, k2prime_region=None)
        settings.update(info)
        settings["k2prime_rows"] = src_desc
    settings["k2prime_used"] = "none" if opts.k2prime is None else opts.k2prime
    return opts


def _scatter(values: NDArray[Any], where: NDArray[np.intp], shape3: tuple[int, ...],
             dtype: Any, fill: float) -> NDArray[Any]:
    """Values of the masked voxels (C-order flat indices ``where``) back on the 3-D grid."""
    out = np.full(int(np.prod(shape3)), fill, dtype=dtype)
    out[where] = values
    return out.reshape(shape3)
