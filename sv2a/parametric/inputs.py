"""Inputs of the voxel adapter: the 4-D image, masks, smoothing, the reference and k2' rows.

Everything here turns user inputs into arrays on the PET grid; the fitting itself is the
model's solver (:mod:`sv2a.models`), run over voxel chunks by :mod:`sv2a.parametric.engine`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import DataError, ModelError, RegionError, ShapeMismatchError
from ..frames import FrameSchedule
from ..models.base import check_reference

__all__ = ["resolve_pet", "is_dask", "as_mask", "sigma_vox", "smooth_numpy", "smooth_block",
           "region_mask", "reference_tac", "rows_of", "mask_rows"]

FloatArray = NDArray[np.float64]


def is_dask(a: Any) -> bool:
    """Whether ``a`` is a dask array (or another lazy array with ``chunks``/``compute``).

    Parameters
    ----------
    a : object
        Any array-like.

    Returns
    -------
    bool
    """
    return hasattr(a, "chunks") and hasattr(a, "compute") and not isinstance(a, np.ndarray)


def resolve_pet(pet: Any, frames: FrameSchedule | None, affine: Any,
                chunks: tuple[int, ...] | None = None
                ) -> tuple[Any, FrameSchedule, FloatArray, dict[str, Any]]:
    """The 4-D data, frames, affine and metadata of a :class:`~sv2a.DynamicPET` or array.

    Parameters
    ----------
    pet : DynamicPET or array (x, y, z, frame)
        The image (kBq/mL).
    frames : FrameSchedule, optional
        Frame timing (min); required for plain arrays.
    affine : array (4, 4), optional
        Voxel-to-mm affine (default the image's, or identity for plain arrays).
    chunks : tuple of int, optional
        Spatial chunk shape: a file-backed image is then read block by block as a dask
        array, never whole.

    Returns
    -------
    data, frames, affine, meta
        ``data`` numpy or dask (x, y, z, frame); ``meta`` the image metadata
        (``injected_mbq``, ``body_weight_kg``, ...).

    Raises
    ------
    ModelError
        A plain array without ``frames=``.
    ShapeMismatchError
        Not 4-D, frame count differing from the schedule, or a malformed affine.
    """
    if hasattr(pet, "frames") and hasattr(type(pet), "data"):  # DynamicPET (no read here)
        fr = pet.frames if frames is None else frames
        aff = np.asarray(pet.affine if affine is None else affine, dtype=float)
        meta = dict(getattr(pet, "meta", {}) or {})
        data = pet.to_dask(tuple(chunks)[:3]) if chunks is not None else pet.data
    else:
        if frames is None:
            raise ModelError(
                "parametric_maps: a plain array needs frames= (a sv2a.FrameSchedule); or pass "
                "a sv2a.DynamicPET (sv2a.load_pet / DynamicPET.from_array)")
        fr, data, meta = frames, pet, {}
        aff = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    if not isinstance(fr, FrameSchedule):
        raise ModelError(f"frames must be a sv2a.FrameSchedule, got {type(fr).__name__}")
    if not is_dask(data):
        data = np.asarray(data)
    if data.ndim != 4:
        raise ShapeMismatchError(
            f"parametric maps need a 4D image (x, y, z, frame); got shape {tuple(data.shape)}")
    if data.shape[3] != fr.n:
        raise ShapeMismatchError(
            f"the image has {data.shape[3]} frames but the frame schedule lists {fr.n}")
    if aff.shape != (4, 4):
        raise ShapeMismatchError(f"affine must be 4x4, got shape {aff.shape}")
    return data, fr, aff, meta


def as_mask(m: Any, shape3: tuple[int, ...], what: str) -> NDArray[np.bool_]:
    """A boolean 3-D mask on the image grid.

    Parameters
    ----------
    m : array (x, y, z)
        Boolean or numeric (non-zero = inside) mask.
    shape3 : tuple of int
        The image grid.
    what : str
        Name, for messages.

    Returns
    -------
    bool array (x, y, z)

    Raises
    ------
    ShapeMismatchError
        Another grid.
    DataError
        Non-finite values.
    """
    arr = np.asarray(m.compute() if is_dask(m) else m)
    if arr.shape != tuple(shape3):
        raise ShapeMismatchError(
            f"{what} has shape {arr.shape} but the image grid is {tuple(shape3)}; resample it "
            "to the PET grid first")
    if arr.dtype != bool:
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{what} has non-finite values; give a boolean mask")
        arr = arr != 0
    return arr


def sigma_vox(fwhm: Any, affine: FloatArray) -> tuple[float, float, float, float] | None:
    """Gaussian sigma in voxels (x, y, z, frame = 0) of a FWHM in mm.

    Parameters
    ----------
    fwhm : float or (float, float, float) or None
        Full width at half maximum (mm); None or 0 for no smoothing.
    affine : array (4, 4)
        Voxel-to-mm affine.

    Returns
    -------
    tuple of float or None

    Raises
    ------
    ModelError
        Negative or non-finite FWHM.
    """
    if fwhm is None or (np.isscalar(fwhm) and fwhm == 0):
        return None
    f = np.broadcast_to(np.asarray(fwhm, dtype=float), (3,))
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ModelError(f"fwhm must be a non-negative number of mm (or three), got {fwhm!r}")
    vox = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    sig = f / (2.0 * math.sqrt(2.0 * math.log(2.0))) / vox
    return (float(sig[0]), float(sig[1]), float(sig[2]), 0.0)


def smooth_numpy(data: NDArray[Any], sigma: tuple[float, ...]) -> NDArray[np.float32]:
    """Gaussian smoothing of each frame of a 4-D image (float32).

    Parameters
    ----------
    data : array (x, y, z, frame)
    sigma : tuple of float
        Sigma in voxels (x, y, z, frame).

    Returns
    -------
    array (x, y, z, frame), float32
    """
    from scipy.ndimage import gaussian_filter

    out = np.empty(data.shape, dtype=np.float32)
    for k in range(data.shape[3]):  # frame by frame keeps the temporary small
        out[..., k] = gaussian_filter(np.asarray(data[..., k], dtype=np.float32), sigma[:3],
                                      mode="nearest", truncate=4.0)
    return out


def smooth_block(block: NDArray[Any], sigma: tuple[float, ...]) -> NDArray[np.float32]:
    """Gaussian smoothing of one dask block (used with ``map_overlap``).

    Parameters
    ----------
    block : array (bx, by, bz, frame)
    sigma : tuple of float
        Sigma in voxels (x, y, z, frame = 0).

    Returns
    -------
    array, float32
    """
    from scipy.ndimage import gaussian_filter

    out: NDArray[np.float32] = gaussian_filter(np.asarray(block, dtype=np.float32), sigma,
                                               mode="nearest", truncate=4.0)
    return out


def region_mask(spec: Any, atlas: Any, shape3: tuple[int, ...], what: str
                ) -> NDArray[np.bool_]:
    """A boolean mask from a region name (with an atlas) or a mask.

    Parameters
    ----------
    spec : str, sequence of str or bool array (x, y, z)
        Region name(s) of ``atlas`` or a mask on the PET grid.
    atlas : Atlas or None
        Needed for names; must be on the PET grid.
    shape3 : tuple of int
        The image grid.
    what : str
        Name, for messages.

    Returns
    -------
    bool array (x, y, z)

    Raises
    ------
    RegionError
        A name without ``atlas=``, or an empty mask.
    """
    names = None
    if isinstance(spec, str):
        names = [spec]
    elif isinstance(spec, list | tuple) and spec and all(isinstance(s, str) for s in spec):
        names = list(spec)
    if names is not None:
        if atlas is None:
            raise RegionError(
                f"{what}={spec!r} names a region; pass atlas= (an sv2a.Atlas on the PET grid) "
                "or give a boolean mask / TAC instead")
        m = as_mask(atlas.mask(names), shape3, f"{what} ({', '.join(names)})")
    else:
        m = as_mask(spec, shape3, what)
    if not m.any():
        raise RegionError(f"the {what} mask is empty (no voxel set); check the atlas label and "
                          "that the mask is on the PET grid")
    return m


def rows_of(data: Any, m: NDArray[np.bool_], n_frames: int, dask: bool) -> FloatArray:
    """The TACs (n_voxels, n_frames) of the voxels of a mask, as float64.

    Parameters
    ----------
    data : numpy or dask array (x, y, z, frame)
    m : bool array (x, y, z)
    n_frames : int
    dask : bool
        Whether ``data`` is a dask array.

    Returns
    -------
    array (n_voxels, n_frames)
    """
    if dask:
        idx = np.flatnonzero(m.ravel())
        return np.asarray(data.reshape(-1, n_frames)[idx].compute(), dtype=np.float64)
    return np.asarray(mask_rows(data, m), dtype=np.float64)


def mask_rows(data: NDArray[Any], m: NDArray[np.bool_]) -> NDArray[Any]:
    """The TACs of the voxels of a mask, in the image's dtype, without copying the image.

    Rows follow the C order of the mask (the order of ``data[m]``). nibabel returns images
    in column (Fortran) order, where ``data.reshape(-1, n_frames)`` would copy the whole 4-D
    image; here each frame is read once, in its memory order.

    Parameters
    ----------
    data : array (x, y, z, frame)
        The image (any memory layout).
    m : bool array (x, y, z)
        The voxels.

    Returns
    -------
    array (n_voxels, n_frames)
        C-contiguous, dtype of ``data``; equal to ``data[m]``.

    Examples
    --------
    >>> img = np.asfortranarray(np.arange(24.0).reshape(2, 3, 1, 4))
    >>> m = np.array([[[True], [False], [True]], [[False], [True], [False]]])
    >>> bool(np.array_equal(mask_rows(img, m), img[m]))
    True
    """
    a = np.asarray(data)
    n_frames = a.shape[3]
    if a.flags.c_contiguous:
        return np.ascontiguousarray(a.reshape(-1, n_frames)[np.flatnonzero(m.ravel())])
    out = np.empty((int(np.count_nonzero(m)), n_frames), dtype=a.dtype)
    if not all(a[..., k].flags.f_contiguous for k in range(n_frames)):
        for k in range(n_frames):
            out[:, k] = a[..., k][m]
        return out
    # frames in column order: gather each frame sequentially (column order) into a row of a
    # (frame, voxel) buffer, then scatter the voxels once to their rows in the mask's C order
    m_f = m.ravel(order="F")
    row = np.empty(m.shape, dtype=np.intp, order="F")
    row[m] = np.arange(out.shape[0])
    row_f = row.ravel(order="F")[m_f]              # the C-order row of each column-order voxel
    buf = np.empty((n_frames, out.shape[0]), dtype=a.dtype)
    for k in range(n_frames):
        np.compress(m_f, a[..., k].ravel(order="K"), out=buf[k])
    out[row_f] = buf.T
    return out


def reference_tac(reference: Any, data: Any, mask: NDArray[np.bool_], frames: FrameSchedule,
                  *, atlas: Any, allow_overlap: bool, dask: bool
                  ) -> tuple[FloatArray, dict[str, Any]]:
    """Reference TAC from a region name, a boolean mask or a TAC, and a description.

    Parameters
    ----------
    reference : str, bool array (x, y, z) or array (n_frames,)
        The reference region (its mean TAC, unsmoothed) or its TAC.
    data : numpy or dask array (x, y, z, frame)
        The image (kBq/mL).
    mask : bool array (x, y, z)
        Target voxels.
    frames : FrameSchedule
        Frame timing.
    atlas : Atlas or None
        For a region name.
    allow_overlap : bool
        Allow the reference to overlap the target mask.
    dask : bool
        Whether ``data`` is a dask array.

    Returns
    -------
    tac : array (n_frames,)
    info : dict
        ``reference`` description and ``reference_n_voxels``.

    Raises
    ------
    RegionError
        Missing reference, empty mask, or overlap with the targets.
    ShapeMismatchError, DataError
        A TAC of the wrong length, non-finite or non-positive.
    """
    if reference is None:
        raise RegionError(
            "reference-tissue maps need reference= (a region name with atlas=, a boolean 3D "
            "mask of the reference region, e.g. atlas.mask('centrum_semiovale'), or its TAC)")
    arr = None if isinstance(reference, str | list | tuple) else np.asarray(
        getattr(reference, "values", reference))
    if arr is not None and arr.ndim == 1:
        return check_reference(arr, frames.n), {"reference": "TAC given"}
    rmask = region_mask(reference, atlas, tuple(data.shape[:3]), "reference")
    nref = int(rmask.sum())
    overlap = int(np.count_nonzero(rmask & mask))
    if overlap and not allow_overlap:
        raise RegionError(
            f"the reference mask overlaps the target mask in {overlap} voxel(s) "
            f"({100.0 * overlap / nref:.3g} % of the reference); pass mask=mask & ~reference, "
            "or allow_overlap=True to also map the reference voxels")
    if dask:
        import dask.array as da

        r = da.from_array(rmask, chunks=data.chunks[:3])[..., None]
        tac = np.asarray((data.astype(np.float64) * r).sum(axis=(0, 1, 2)).compute()) / nref
    else:
        tac = rows_of(data, rmask, frames.n, False).mean(axis=0)
    label = reference if isinstance(reference, str) else "mask"
    return check_reference(tac, frames.n), {"reference": f"{label} ({nref} voxels)",
                                            "reference_n_voxels": nref}
