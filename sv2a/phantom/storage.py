"""Compact NIfTI storage of noisy phantom PET images: 16-bit integers with a scale factor.

A noisy PET frame carries no information below a small fraction of its noise SD, yet float32
keeps 24 significant bits that gzip cannot compress. Where the voxel noise allows,
:func:`write_pet` therefore stores ``round(x / step)`` as int16 with ``scl_slope = step``
(NIfTI readers, nibabel included, return ``step * stored``). The step is a power of two
(kBq/mL) no larger than ``STEP_FRACTION`` (1/10) of the smallest voxel noise SD of the preset's
noise-calibration region over the frames where that region holds at least 10 % of its peak
activity: the rounding error (uniform, SD ``step / sqrt(12)``) is then at most 2.9 % of that
noise SD and adds at most 0.04 % to the noise SD. Noise-free images, region noise and images
whose range does not fit 16 bits at that step stay float32 (exact).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .simulate import noise_sd

if TYPE_CHECKING:
    from .subject import PhantomSubject

__all__ = ["STEP_FRACTION", "storage_step", "quantise", "encode_pet", "write_pet"]

#: Largest quantisation step as a fraction of the reference voxel noise SD.
STEP_FRACTION = 0.1


def storage_step(subject: PhantomSubject, image: np.ndarray | None = None) -> float | None:
    """Quantisation step (kBq/mL) for storing a phantom's image as int16, or None for float32.

    Parameters
    ----------
    subject : PhantomSubject
        A simulated scan (its ``meta`` gives the noise mode and Pc, its ``tacs`` the noise-free
        activity of the noise-calibration region).
    image : numpy.ndarray, optional
        The image to store (kBq/mL; default ``subject.image``): its largest absolute value must
        fit 16 bits at the step.

    Returns
    -------
    float or None
        A power of two (kBq/mL) at most :data:`STEP_FRACTION` times the smallest voxel noise SD
        of the noise region over the frames where it holds >= 10 % of its peak; None (keep
        float32) without voxel noise or when the image's range needs a finer step than int16
        can hold.

    Examples
    --------
    >>> from sv2a.phantom import make_subject
    >>> storage_step(make_subject("human", seed=0, noise=0, fwhm=0, voxel_mm=8.0)) is None
    True
    >>> s = make_subject("human", seed=0, voxel_mm=8.0)
    >>> step = storage_step(s)
    >>> step > 0 and math.log2(step).is_integer()
    True
    """
    img = subject.image if image is None else image
    meta = subject.meta
    pc = float(meta.get("pc", 0.0))
    if img is None or meta.get("noise_mode") != "voxel" or not pc > 0:
        return None
    region = subject.preset.noise_region
    if region not in subject.tacs.region.values:
        return None
    tac = np.asarray(subject.tacs.sel(region=region).values, dtype=float)
    keep = tac >= 0.1 * tac.max()
    if not np.any(keep) or not tac.max() > 0:
        return None
    sd = noise_sd(tac, subject.frames, pc)[keep].min()
    step = 2.0 ** math.floor(math.log2(STEP_FRACTION * sd))
    peak = max(float(img.max()), -float(img.min())) if img.size else 0.0
    if not np.isfinite(peak) or peak / step > 32767.0:
        return None
    return step


def quantise(image: np.ndarray, step: float) -> np.ndarray:
    """Round an image to multiples of ``step``, as int16 counts of the step.

    Parameters
    ----------
    image : numpy.ndarray
        Values (kBq/mL); ``|image| / step`` must be <= 32767.
    step : float
        Quantisation step (kBq/mL).

    Returns
    -------
    numpy.ndarray of int16
        ``round(image / step)``, same shape and memory order (Fortran stays Fortran).

    Examples
    --------
    >>> quantise(np.array([0.0, 1.26, -3.74]), 0.5).tolist()
    [0, 3, -7]
    """
    image = np.asarray(image)
    order: Literal["C", "F"] = ("F" if image.flags.f_contiguous
                                and not image.flags.c_contiguous else "C")
    out: np.ndarray = np.empty(image.shape, dtype=np.int16, order=order)
    if image.ndim < 2:
        out[...] = np.rint(image * (1.0 / step))
        return out
    # one slab at a time (a frame of an F-ordered 4D image): the buffer stays in cache
    slabs = (image[..., i] for i in range(image.shape[-1])) if order == "F" else iter(image)
    outs = (out[..., i] for i in range(out.shape[-1])) if order == "F" else iter(out)
    inv = np.float32(1.0 / step)
    buf = np.empty(out[..., 0].shape if order == "F" else out[0].shape, dtype=np.float32,
                   order=order)
    for src, dst in zip(slabs, outs, strict=True):
        np.multiply(src, inv, out=buf, casting="unsafe")
        np.rint(buf, out=buf)
        dst[...] = buf
    return out


def encode_pet(image: np.ndarray, affine: np.ndarray, *, step: float | None,
               compresslevel: int = 1) -> bytes:
    """A gzipped NIfTI-1 file (bytes) of a PET image: int16 x ``step`` or float32.

    Parameters
    ----------
    image : numpy.ndarray
        3D or 4D image (kBq/mL).
    affine : numpy.ndarray (4, 4)
        Voxel -> RAS mm.
    step : float or None
        Quantisation step (kBq/mL, :func:`storage_step`) stored as ``scl_slope``; None writes
        float32.
    compresslevel : int
        zlib level 1-9.

    Returns
    -------
    bytes
        The ``.nii.gz`` file: fixed-size gzip members with zero timestamps (the same data
        always give the same bytes); spatial units mm, time s.

    Examples
    --------
    >>> import gzip, io, nibabel as nib
    >>> img = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 0.25
    >>> raw = encode_pet(img, np.eye(4), step=0.25)
    >>> back = nib.Nifti1Image.from_bytes(gzip.decompress(raw))
    >>> back.get_data_dtype().name, bool(np.array_equal(back.get_fdata(), img))
    ('int16', True)
    """
    import nibabel as nib

    from ..atomic import nifti_gz_members

    data = quantise(image, step) if step is not None else np.asarray(image, dtype=np.float32)
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm", "sec")
    if step is not None:
        img.header.set_slope_inter(float(step), 0.0)
    return b"".join(nifti_gz_members(img, compresslevel))


def write_pet(path: str | os.PathLike, image: np.ndarray, affine: np.ndarray, *,
              step: float | None, compresslevel: int = 1) -> Path:
    """Write a phantom PET image as ``.nii.gz`` (int16 x ``step``, or float32), atomically.

    Parameters
    ----------
    path : path
        Output ``.nii.gz`` file.
    image : numpy.ndarray
        3D or 4D image (kBq/mL).
    affine : numpy.ndarray (4, 4)
        Voxel -> RAS mm.
    step : float or None
        Quantisation step (kBq/mL, :func:`storage_step`); None writes float32.
    compresslevel : int
        zlib level 1-9.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, nibabel as nib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = write_pet(tmp + "/x_pet.nii.gz", np.ones((2, 2, 2, 3)), np.eye(4), step=0.5)
    ...     float(nib.load(p).get_fdata().sum())
    24.0
    """
    from ..atomic import atomic_path

    blob = encode_pet(image, affine, step=step, compresslevel=compresslevel)
    p = Path(path)
    with atomic_path(p) as tmp:
        Path(tmp).write_bytes(blob)
    return p
