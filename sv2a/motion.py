"""Frame realignment for head motion: :func:`realign` -> :class:`Realignment`.

Each frame of a dynamic scan is registered to a reference image with a rigid transform (six
degrees of freedom: three translations in mm, three rotations in degrees) and resliced into
one common space, so that regional TACs sample the same tissue in every frame.

Conventions
-----------
Coordinates are the image axes scaled to mm (the voxel sizes of the affine; anisotropic voxels
are handled) and centred on the centre of the volume. A parameter vector
``(trans_x, trans_y, trans_z, rot_x, rot_y, rot_z)`` is the rigid map ``q = R p + t`` with
``R = Rx(rot_x) Ry(rot_y) Rz(rot_z)`` (right-handed rotations about the x, y and z axes of the
image); it says that the tissue at position ``p`` of the output space is found at ``q`` in
the frame. The corrected frame is therefore ``corrected(p) = frame(R p + t)``, and a phantom
moved by the same parameters (:func:`sv2a.phantom.motion.apply_motion`) is restored exactly.

Procedure
---------
1. Frames starting at or after ``min_start`` (default 10 min) are *late* frames: they hold
   enough counts and a stable tracer distribution to be registered one by one. Earlier frames
   are low-count and their contrast changes from blood pool to perfusion to binding within
   minutes, so they are not registered one by one: by default (``early="sum"``) they are
   summed (duration-weighted) and the summed early image is registered once, every early
   frame taking its transform (the head is assumed still over the first ``min_start``
   minutes; early frames are marked ``registration = "early_sum"`` in the table).
   ``early="frames"`` instead registers each early frame to the summed early image (frames
   without counts keep the early-sum transform and are flagged).
2. The reference (``reference="late"``) is the duration-weighted mean of the late frames.
   Each late frame is registered to it; with ``passes=2`` (default) the reference is rebuilt
   from the realigned late frames and the frames are registered again, which removes the blur
   of the first reference.
3. Registration: a coarse translation by phase correlation
   (:func:`skimage.registration.phase_cross_correlation`), then L-BFGS-B
   (:func:`scipy.optimize.minimize`) over the six parameters of ``1 - NCC``, the normalised
   cross-correlation between the Gaussian-smoothed reference and the resampled frame
   (trilinear, :func:`scipy.ndimage.affine_transform`), with its analytic gradient. NCC is
   blind to the global scale of a frame, which changes with the tracer kinetics. The search
   runs coarse to fine on images block-averaged by ``levels`` (default 4 then 2).
4. Output space (``space="start"``, default): the position of the head at the start of the
   scan, i.e. of the summed early image (of the first frame when no frame starts before
   ``min_start``). This is the position the attenuation map is usually acquired in. The
   transforms found against the reference are composed with the inverse of the start's
   transform. ``space="reference"`` keeps the reference's (late-mean) position.
5. Every frame is resliced once, at full resolution, with B-splines of ``order`` (default 3;
   values outside the field of view are 0).

A frame whose optimisation fails (no convergence, a parameter at its bound, or a cost worse
than the start) is flagged ``converged = False`` and reported with a
:class:`~sv2a.errors.Sv2aWarning`; it is corrected with the best parameters found (the lowest
cost, which is never worse than the starting point).

Framewise displacement follows Power et al. (2012): ``FD = sum |d trans| + r sum |d rot|``
(rotations in radians, ``r`` = 50 mm, the radius of a head), between consecutive frames; the
first frame has FD 0.

References
----------
Power JD, Barnes KA, Snyder AZ, Schlaggar BL, Petersen SE (2012) Spurious but systematic
correlations in functional connectivity MRI networks arise from subject motion. NeuroImage
59:2142-2154.
Jenkinson M, Smith S (2001) A global optimisation method for robust affine registration of
brain images. Medical Image Analysis 5:143-156.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .errors import ConfigError, DataError, ShapeMismatchError, Sv2aWarning

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .pet import DynamicPET

__all__ = [
    "Realignment",
    "realign",
    "register_rigid",
    "resample_rigid",
    "rigid_matrix",
    "params_from_matrix",
    "framewise_displacement",
    "default_levels",
    "write_motion_table",
    "plot_motion",
    "PARAM_COLUMNS",
    "MOTION_COLUMNS",
]

#: the six rigid parameters: translations (mm), then rotations (degrees)
PARAM_COLUMNS = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
#: columns of the motion table of :func:`realign`
MOTION_COLUMNS = ["frame", "frame_start", "frame_end", *PARAM_COLUMNS,
                  "framewise_displacement", "converged", "cost", "registration"]

_DESCRIPTIONS = {
    "frame": ("frame index (0-based)", None),
    "frame_start": ("frame start after injection", "min"),
    "frame_end": ("frame end after injection", "min"),
    "trans_x": ("translation along the image x axis: tissue at p is found at R p + t", "mm"),
    "trans_y": ("translation along the image y axis", "mm"),
    "trans_z": ("translation along the image z axis", "mm"),
    "rot_x": ("rotation about the image x axis (R = Rx Ry Rz, about the volume centre)",
              "degree"),
    "rot_y": ("rotation about the image y axis", "degree"),
    "rot_z": ("rotation about the image z axis", "degree"),
    "framewise_displacement": ("framewise displacement (Power et al. 2012; 50 mm radius)",
                               "mm"),
    "converged": ("the registration of this frame converged", None),
    "cost": ("final cost 1 - NCC at the finest level (0 = identical)", None),
    "registration": ("how the frame was registered: frame, early_sum, reference, none", None),
}


# ------------------------------------------------------------------ rigid transforms
def _rotations(angles_deg: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """R = Rx Ry Rz and its derivatives with respect to each angle (per degree)."""
    a, b, g = np.deg2rad(np.asarray(angles_deg, dtype=float))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cg, -sg, 0], [sg, cg, 0], [0, 0, 1]])
    drx = np.array([[0, 0, 0], [0, -sa, -ca], [0, ca, -sa]])
    dry = np.array([[-sb, 0, cb], [0, 0, 0], [-cb, 0, -sb]])
    drz = np.array([[-sg, -cg, 0], [cg, -sg, 0], [0, 0, 0]])
    k = np.pi / 180.0
    return rx @ ry @ rz, [k * drx @ ry @ rz, k * rx @ dry @ rz, k * rx @ ry @ drz]


def rigid_matrix(params: Any) -> np.ndarray:
    """The 4x4 homogeneous matrix of six rigid parameters.

    Parameters
    ----------
    params : array_like, shape (6,)
        ``trans_x, trans_y, trans_z`` (mm) and ``rot_x, rot_y, rot_z`` (degrees); the map
        ``q = R p + t`` with ``R = Rx Ry Rz``, in centred mm coordinates.

    Returns
    -------
    ndarray, shape (4, 4)
        Homogeneous matrix (mm).

    Examples
    --------
    >>> A = rigid_matrix([1.0, 2.0, 3.0, 0.0, 0.0, 90.0])
    >>> np.round(A @ [10.0, 0.0, 0.0, 1.0], 6).tolist()
    [1.0, 12.0, 3.0, 1.0]
    """
    p = np.asarray(params, dtype=float).reshape(6)
    out = np.eye(4)
    out[:3, :3] = _rotations(p[3:])[0]
    out[:3, 3] = p[:3]
    return out


def params_from_matrix(matrix: Any) -> np.ndarray:
    """The six rigid parameters of a 4x4 rigid matrix (inverse of :func:`rigid_matrix`).

    Parameters
    ----------
    matrix : array_like, shape (4, 4)
        Rigid homogeneous matrix (mm), rotation part ``R = Rx Ry Rz``.

    Returns
    -------
    ndarray, shape (6,)
        ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z`` (degrees; rot_y in
        [-90, 90]).

    Examples
    --------
    >>> p = [0.5, -1.0, 2.0, 3.0, -4.0, 5.0]
    >>> bool(np.allclose(params_from_matrix(rigid_matrix(p)), p))
    True
    """
    m = np.asarray(matrix, dtype=float)
    r = m[:3, :3]
    b = np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    a = np.arctan2(-r[1, 2], r[2, 2])
    g = np.arctan2(-r[0, 1], r[0, 0])
    return np.concatenate([m[:3, 3], np.rad2deg([a, b, g])])


def framewise_displacement(params: Any, *, radius_mm: float = 50.0) -> np.ndarray:
    """Framewise displacement (Power et al. 2012) of a series of rigid parameters.

    Parameters
    ----------
    params : array_like or DataFrame, shape (n_frames, 6)
        Translations (mm) and rotations (degrees) per frame, in the order of
        :data:`PARAM_COLUMNS` (a DataFrame is read by those column names).
    radius_mm : float
        Radius (mm) that turns rotations into arc lengths (50 mm: a head).

    Returns
    -------
    ndarray, shape (n_frames,)
        ``sum |d trans| + radius * sum |d rot (rad)|`` between each frame and the previous one
        (mm); 0 for the first frame.

    Examples
    --------
    >>> framewise_displacement([[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0]])
    array([0.        , 1.        , 0.87266463])
    """
    if isinstance(params, pd.DataFrame):
        arr = params[PARAM_COLUMNS].to_numpy(dtype=float)
    else:
        arr = np.asarray(params, dtype=float).reshape(-1, 6)
    d = np.abs(np.diff(arr, axis=0))
    fd = d[:, :3].sum(axis=1) + radius_mm * np.deg2rad(d[:, 3:]).sum(axis=1)
    return np.concatenate([[0.0], fd])


def _centre(shape: tuple[int, ...]) -> np.ndarray:
    return (np.asarray(shape[:3], dtype=float) - 1.0) / 2.0


def _index_map(params: np.ndarray, voxel_mm: np.ndarray, centre: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) of the voxel-index map i -> S^-1 (R S (i - c) + t) + c."""
    rot = _rotations(params[3:])[0]
    m = (rot * voxel_mm[None, :]) / voxel_mm[:, None]
    off = centre - m @ centre + params[:3] / voxel_mm
    return m, off


def resample_rigid(volume: Any, params: Any, voxel_mm: Any, *, order: int = 3,
                   inverse: bool = False) -> np.ndarray:
    """Resample a 3-D volume through a rigid transform about its centre.

    Parameters
    ----------
    volume : array_like, shape (x, y, z)
        Image (any unit; returned in the same unit).
    params : array_like, shape (6,)
        Rigid parameters: translations (mm), rotations (degrees), see :func:`rigid_matrix`.
    voxel_mm : array_like, shape (3,)
        Voxel edge lengths (mm).
    order : int
        Spline order of the interpolation (0-5; 1 = trilinear).
    inverse : bool
        False: ``out(p) = volume(R p + t)`` (undo a motion: realignment). True:
        ``out(q) = volume(R^-1 (q - t))`` (apply a motion: phantoms).

    Returns
    -------
    ndarray, shape (x, y, z), float32
        Resampled volume; points outside the field of view are 0.

    Examples
    --------
    A translation and its inverse cancel (inside the field of view):

    >>> v = np.zeros((8, 8, 8)); v[3:5, 3:5, 3:5] = 1.0
    >>> moved = resample_rigid(v, [2.0, 0, 0, 0, 0, 0], [2.0, 2.0, 2.0], order=1, inverse=True)
    >>> float(moved[4:6, 3:5, 3:5].min()), float(moved[3, 3:5, 3:5].max())
    (1.0, 0.0)
    >>> back = resample_rigid(moved, [2.0, 0, 0, 0, 0, 0], [2.0, 2.0, 2.0], order=1)
    >>> bool(np.allclose(back, v))
    True
    """
    from scipy import ndimage

    arr = np.asarray(volume, dtype=np.float32)
    if arr.ndim != 3:
        raise ShapeMismatchError(f"resample_rigid needs a 3-D volume, got shape {arr.shape}")
    p = np.asarray(params, dtype=float).reshape(6)
    vox = np.asarray(voxel_mm, dtype=float).reshape(3)
    if inverse:
        p = params_from_matrix(np.linalg.inv(rigid_matrix(p)))
    m, off = _index_map(p, vox, _centre(arr.shape))
    return ndimage.affine_transform(arr, m, offset=off, order=int(order), mode="constant",
                                    cval=0.0, output=np.float32)


# ------------------------------------------------------------------ registration core
def _block_mean(vol: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return vol
    n = [s // k for s in vol.shape]
    v = vol[: n[0] * k, : n[1] * k, : n[2] * k]
    return v.reshape(n[0], k, n[1], k, n[2], k).mean(axis=(1, 3, 5), dtype=np.float32)


@dataclass
class _Level:
    """One resolution level of an image pair (block mean, smoothing, gradients)."""

    factor: int
    voxel_mm: np.ndarray
    centre: np.ndarray
    fixed: np.ndarray  # centred, unit norm, flattened
    coords: np.ndarray  # (3, n) centred mm of the fixed grid
    shape: tuple[int, int, int]


def _prepare(vol: np.ndarray, k: int, voxel_mm: np.ndarray, fwhm_vox: float) -> np.ndarray:
    from scipy import ndimage

    v = _block_mean(vol, k)
    if fwhm_vox > 0:
        v = ndimage.gaussian_filter(v, fwhm_vox / 2.3548, mode="constant")
    return np.asarray(v, dtype=np.float32)


def _fixed_level(fixed: np.ndarray, k: int, voxel_mm: np.ndarray, fwhm_vox: float,
                 full_shape: tuple[int, ...]) -> _Level:
    v = _prepare(fixed, k, voxel_mm, fwhm_vox).astype(np.float64)
    # block k covers fine voxels k i .. k i + k - 1: its centre is k i + (k - 1) / 2
    centre = (_centre(full_shape) - (k - 1) / 2.0) / k
    vox = voxel_mm * k
    f = v.ravel() - v.mean()
    nrm = np.sqrt(np.dot(f, f))
    f = f / nrm if nrm > 0 else f
    grid = np.indices(v.shape, dtype=np.float64).reshape(3, -1)
    coords = (grid - centre[:, None]) * vox[:, None]
    shp = (v.shape[0], v.shape[1], v.shape[2])
    return _Level(k, vox, centre, f, coords, shp)


class _Objective:
    """Residual ``w / |w| - f`` (centred) of the moving level resampled by the parameters.

    ``|r|^2 = 2 (1 - NCC)``, so least squares on ``r`` maximises the normalised
    cross-correlation. The Jacobian uses the image gradient of the resampled frame, mapped
    back to the frame's axes (chain rule through the rigid map).
    """

    def __init__(self, level: _Level, moving: np.ndarray) -> None:
        self.level = level
        self.moving = moving
        self._key: bytes | None = None
        self._w = np.zeros(0)
        self.best: tuple[float, np.ndarray] = (np.inf, np.zeros(6))

    def warp(self, p: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        lv = self.level
        m, off = _index_map(p, lv.voxel_mm, lv.centre)
        return ndimage.affine_transform(self.moving, m, offset=off, output_shape=lv.shape,
                                        order=1, mode="nearest", output=np.float32)

    def _warped(self, p: np.ndarray) -> np.ndarray:
        key = np.asarray(p, dtype=float).tobytes()
        if key != self._key:
            self._w, self._key = self.warp(p), key
        return self._w

    def cost(self, p: np.ndarray) -> float:
        """1 - NCC at ``p`` (dimensionless)."""
        w = self._warped(p).ravel().astype(np.float64)
        wc = w - w.mean()
        nw = np.sqrt(_dot(wc, wc))
        c = 1.0 - (_dot(wc, self.level.fixed) / nw if nw > 0 else 0.0)
        if c < self.best[0]:
            self.best = (c, np.array(p, dtype=float))
        return c

    def residual(self, p: np.ndarray) -> np.ndarray:
        w = self._warped(p).ravel().astype(np.float64)
        wc = w - w.mean()
        nw = np.sqrt(_dot(wc, wc))
        r = (wc / nw if nw > 0 else wc) - self.level.fixed
        self.cost(p)
        return r

    def jacobian(self, p: np.ndarray) -> np.ndarray:
        lv = self.level
        wimg = self._warped(p)
        w = wimg.ravel().astype(np.float64)
        wc = w - w.mean()
        nw = np.sqrt(_dot(wc, wc))
        if nw == 0:
            return np.zeros((w.size, 6))
        m, _ = _index_map(p, lv.voxel_mm, lv.centre)
        gi = np.stack([g.ravel() for g in np.gradient(wimg.astype(np.float64))])  # d w / d i
        # gradient of the frame at the sampled points, per mm along the frame's axes:
        # d w / d i = M^T d F / d j  ->  dF/dq_a = (M^-T d w / d i)_a / s_a
        u = np.einsum("ba,bv->av", np.linalg.inv(m), gi) / lv.voxel_mm[:, None]
        _, dr = _rotations(p[3:])
        jac = np.empty((w.size, 6))
        jac[:, :3] = u.T
        ux = np.einsum("av,bv->abv", u, lv.coords)
        for r in range(3):
            jac[:, 3 + r] = np.einsum("ab,abv->v", dr[r], ux)
        jac -= jac.mean(axis=0)
        what = wc / nw
        proj = np.einsum("v,vk->k", what, jac)
        jac -= what[:, None] * proj[None, :]
        return jac / nw


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum, not BLAS: a threaded BLAS dot is slow on small vectors on busy machines
    return float(np.einsum("i,i->", a, b))


@dataclass(frozen=True)
class _RegResult:
    params: np.ndarray
    cost: float
    converged: bool
    message: str


def register_rigid(moving: Any, fixed: Any, voxel_mm: Any, *, init: Any = None,
                   levels: tuple[int, ...] = (4, 2), fwhm_mm: float = 0.0,
                   phase_correlation: bool = True, max_translation_mm: float = 30.0,
                   max_rotation_deg: float = 20.0, max_iter: int = 100
                   ) -> tuple[np.ndarray, float, bool]:
    """Rigid registration of one 3-D volume to another (six degrees of freedom).

    Parameters
    ----------
    moving : array_like, shape (x, y, z)
        Image to align (any activity unit: NCC ignores the scale).
    fixed : array_like, shape (x, y, z)
        Target image, same grid as ``moving``.
    voxel_mm : array_like, shape (3,)
        Voxel edge lengths (mm).
    init : array_like, shape (6,), optional
        Starting parameters (mm, degrees); default a translation from phase correlation.
    levels : tuple of int
        Block-averaging factors, coarse to fine (1 = full resolution).
    fwhm_mm : float
        Extra Gaussian smoothing (mm) at each level, on top of one voxel of the level.
    phase_correlation : bool
        Start from the phase-correlation translation (when ``init`` is not given) if it
        lowers the cost.
    max_translation_mm, max_rotation_deg : float
        Bounds of the search (mm, degrees); a result on a bound is not converged.
    max_iter : int
        L-BFGS-B iterations per level.

    Returns
    -------
    params : ndarray, shape (6,)
        ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z`` (degrees) such that
        ``moving(R p + t)`` matches ``fixed(p)`` (see :func:`resample_rigid`).
    cost : float
        Final ``1 - NCC`` at the finest level (dimensionless).
    converged : bool
        The optimiser converged at every level, inside the bounds.

    Raises
    ------
    ShapeMismatchError
        The volumes differ in shape or are not 3-D.
    DataError
        ``fixed`` has no counts (all zero or constant).

    Examples
    --------
    Two Gaussian blobs moved by 2.5 mm and 3.6 degrees are found again within 0.1 mm/deg:

    >>> z, y, x = np.indices((32, 32, 32)) - 15.5
    >>> blob = (np.exp(-((z / 6) ** 2 + (y / 4) ** 2 + (x / 3) ** 2))
    ...         + np.exp(-((z - 5) ** 2 + (y + 4) ** 2 + x ** 2) / 8))
    >>> true = [2.0, -1.0, 1.5, 3.0, 0.0, -2.0]
    >>> moved = resample_rigid(blob, true, [2.0, 2.0, 2.0], order=3, inverse=True)
    >>> p, cost, ok = register_rigid(moved, blob, [2.0, 2.0, 2.0], levels=(2, 1))
    >>> bool(ok), bool(np.abs(p - true).max() < 0.1)
    (True, True)
    """
    res = _register(np.asarray(moving, dtype=np.float32), np.asarray(fixed, dtype=np.float32),
                    np.asarray(voxel_mm, dtype=float).reshape(3),
                    None if init is None else np.asarray(init, dtype=float).reshape(6),
                    tuple(int(k) for k in levels), float(fwhm_mm), bool(phase_correlation),
                    float(max_translation_mm), float(max_rotation_deg), int(max_iter))
    return res.params, res.cost, res.converged


def _register(moving: np.ndarray, fixed: np.ndarray, voxel_mm: np.ndarray,
              init: np.ndarray | None, levels: tuple[int, ...], fwhm_mm: float,
              phase_correlation: bool, max_t: float, max_r: float, max_iter: int,
              fixed_levels: dict[int, _Level] | None = None) -> _RegResult:
    from scipy.optimize import least_squares

    if moving.ndim != 3 or moving.shape != fixed.shape:
        raise ShapeMismatchError(f"register_rigid needs two 3-D volumes of one shape, got "
                                 f"{moving.shape} and {fixed.shape}")
    if not levels or any(k < 1 for k in levels):
        raise ConfigError(f"levels must be block factors >= 1, coarse to fine; got {levels}")
    fx = np.nan_to_num(fixed, nan=0.0, posinf=0.0, neginf=0.0)
    if not np.any(fx != fx.flat[0]):
        raise DataError("the registration reference has no counts (constant or all zero); "
                        "choose frames with activity as the reference")
    mv = np.nan_to_num(moving, nan=0.0, posinf=0.0, neginf=0.0)
    p0 = np.zeros(6) if init is None else init.copy()
    p = p0.copy()
    converged, cost, msg = True, np.nan, ""
    for li, k in enumerate(levels):
        fwhm_vox = 1.0 + fwhm_mm / float(np.min(voxel_mm * k))
        if fixed_levels is not None and k in fixed_levels:
            lv = fixed_levels[k]
        else:
            lv = _fixed_level(fx, k, voxel_mm, fwhm_vox, fx.shape)
        obj = _Objective(lv, _prepare(mv, k, voxel_mm, fwhm_vox))
        obj.cost(p)
        if li == 0 and init is None and phase_correlation:
            q = p.copy()
            q[:3] = _phase_translation(lv, obj.moving)
            if np.all(np.abs(q[:3]) < max_t):
                obj.cost(q)
        p = obj.best[1].copy()
        try:
            r = least_squares(obj.residual, p, jac=obj.jacobian, method="lm", xtol=1e-4,
                              ftol=1e-8, gtol=1e-8, max_nfev=max_iter)
            ok = bool(r.status > 0)
            msg = str(r.message)
        except (ValueError, np.linalg.LinAlgError) as exc:  # singular image (no structure)
            ok, msg = False, str(exc)
        cost, p = obj.best
        p = p.copy()
        converged = converged and ok
    if np.any(np.abs(p[:3]) > max_t) or np.any(np.abs(p[3:]) > max_r):
        # implausible motion: a failed search, not a correction; keep the starting point
        return _RegResult(p0, float(cost), False, f"outside the bounds: {np.round(p, 2)}")
    return _RegResult(p, float(cost), bool(converged), msg)


def _phase_translation(level: _Level, moving: np.ndarray) -> np.ndarray:
    """Translation (mm) that best aligns ``moving`` with the fixed level (phase correlation)."""
    from skimage.registration import phase_cross_correlation

    fixed = level.fixed.reshape(level.shape)
    shift, _, _ = phase_cross_correlation(fixed, moving - moving.mean(), upsample_factor=4,
                                          normalization=None)
    # moving shifted by `shift` matches fixed: fixed(i) = moving(i - shift), so t = -shift
    return -np.asarray(shift, dtype=float) * level.voxel_mm


# ------------------------------------------------------------------ realignment
def default_levels(voxel_mm: Any, shape: Any = (256, 256, 256)) -> tuple[int, ...]:
    """Block-averaging factors giving voxels of about 8 mm, then about 4 mm.

    A coarse grid keeps at least 16 (coarse level) and 32 (fine level) voxels along its
    shortest axis, so small (rodent) images are not reduced to a few voxels.

    Parameters
    ----------
    voxel_mm : array_like, shape (3,)
        Voxel edge lengths (mm).
    shape : tuple of int
        Image shape (voxels).

    Returns
    -------
    tuple of int
        Factors, coarse to fine (at least one; 1 = full resolution).

    Examples
    --------
    >>> default_levels([2.0] * 3, (96, 112, 96)), default_levels([4.0] * 3, (48, 56, 48))
    ((4, 2), (2, 1))
    >>> default_levels([0.3] * 3, (80, 100, 60))
    (3, 1)
    """
    v = float(np.max(np.asarray(voxel_mm, dtype=float)))
    n = int(np.min(np.asarray(shape, dtype=int)[:3]))
    out: list[int] = []
    for target, min_vox in ((8.0, 16), (4.0, 32)):
        k = max(1, min(int(round(target / v)), n // min_vox))
        if k not in out:
            out.append(k)
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Realignment:
    """Result of :func:`realign`.

    Attributes
    ----------
    pet : DynamicPET
        Corrected image (kBq/mL), same frames and affine; ``meta["sv2aRealignment"]`` holds
        the settings.
    table : pandas.DataFrame
        One row per frame, :data:`MOTION_COLUMNS`: frame, frame_start/frame_end (min),
        trans_x/y/z (mm), rot_x/y/z (degrees), framewise_displacement (mm), converged,
        cost (1 - NCC), registration.
    reference : ndarray (x, y, z)
        The final reference image (kBq/mL, in the reference's position).
    settings : dict
        The options used.
    """

    pet: DynamicPET
    table: pd.DataFrame
    reference: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def max_displacement_mm(self) -> float:
        """Largest framewise displacement (mm)."""
        return float(self.table["framewise_displacement"].max())


def _weighted_mean(data: np.ndarray, idx: list[int], weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)[idx]
    out = np.zeros(data.shape[:3], dtype=np.float64)
    for i, wi in zip(idx, w, strict=True):
        out += wi * np.nan_to_num(data[..., i])
    return (out / w.sum()).astype(np.float32)


def realign(
    pet: DynamicPET,
    *,
    reference: Literal["late", "mean"] | int | Any = "late",
    min_start: float = 10.0,
    early: Literal["sum", "frames"] = "sum",
    space: Literal["start", "reference"] = "start",
    passes: int = 2,
    levels: tuple[int, ...] | None = None,
    fwhm_mm: float = 0.0,
    order: int = 3,
    max_translation_mm: float = 30.0,
    max_rotation_deg: float = 20.0,
    max_iter: int = 100,
) -> Realignment:
    """Realign the frames of a dynamic PET scan for head motion (rigid, 6 parameters).

    See the module documentation for the procedure, the conventions and the treatment of
    early frames.

    Parameters
    ----------
    pet : DynamicPET
        Dynamic image (kBq/mL), frames in minutes, affine voxel -> mm.
    reference : "late", "mean", int or array_like
        Registration target: ``"late"`` (default) the duration-weighted mean of the frames
        starting at or after ``min_start``; ``"mean"`` of all frames; a frame index; or a
        3-D image on the PET grid. Rebuilt from the realigned frames when ``passes`` > 1
        (not an explicit image).
    min_start : float
        Frames starting before this time (min) are early frames (default 10 min).
    early : {"sum", "frames"}
        Early frames take the transform of their duration-weighted sum (default), or are each
        registered to that sum.
    space : {"start", "reference"}
        Output space: the head position of the early sum (scan start; default) or of the
        reference.
    passes : int
        Registration passes over the late frames (the reference is rebuilt between passes).
    levels : tuple of int, optional
        Block-averaging factors of the coarse-to-fine search; default
        :func:`default_levels` (voxels of about 8 then 4 mm: 4, 2 for 2 mm voxels).
    fwhm_mm : float
        Extra Gaussian smoothing (mm) of both images at every level.
    order : int
        Spline order of the final reslicing (3 default; 1 = trilinear, faster).
    max_translation_mm, max_rotation_deg : float
        Search bounds (mm, degrees); a frame ending on a bound is flagged not converged.
    max_iter : int
        L-BFGS-B iterations per level and frame.

    Returns
    -------
    Realignment
        Corrected image, motion table (mm, degrees, min), final reference and settings.

    Raises
    ------
    DataError
        The reference image has no counts.
    FrameTimingError
        No frame starts at or after ``min_start`` for ``reference="late"``.
    ConfigError
        An option has an invalid value.

    Warns
    -----
    Sv2aWarning
        A frame's registration did not converge (it is corrected with the best parameters
        found and flagged ``converged = False``).

    Examples
    --------
    A still scan gives identity transforms:

    >>> import sv2a
    >>> z, y, x = np.indices((24, 24, 24)) - 11.5
    >>> blob = np.exp(-((z / 5) ** 2 + (y / 4) ** 2 + (x / 3) ** 2)).astype(np.float32)
    >>> frames = sv2a.FrameSchedule.from_durations([5.0, 10.0, 20.0, 20.0])
    >>> pet = sv2a.DynamicPET.from_array(np.stack([blob * k for k in (1, 2, 3, 3)], -1),
    ...                                  frames, np.diag([2.0, 2.0, 2.0, 1.0]))
    >>> res = realign(pet, levels=(2,), passes=1)
    >>> bool(res.table["framewise_displacement"].max() < 0.05)
    True
    >>> list(res.table["registration"])  # frames 0 and 1 start before 10 min
    ['early_sum', 'early_sum', 'frame', 'frame']
    """
    from .errors import FrameTimingError

    if early not in ("sum", "frames"):
        raise ConfigError(f"early must be 'sum' or 'frames', got {early!r}")
    if space not in ("start", "reference"):
        raise ConfigError(f"space must be 'start' or 'reference', got {space!r}")
    if int(passes) < 1:
        raise ConfigError(f"passes must be >= 1, got {passes!r}")
    if int(order) not in range(6):
        raise ConfigError(f"order must be a spline order 0-5, got {order!r}")
    fr = pet.frames
    data = np.asarray(pet.data, dtype=np.float32)
    nx, ny, nz, nt = data.shape
    vox = np.asarray(pet.voxel_size, dtype=float)
    dur = np.asarray(fr.duration, dtype=float)
    late = [i for i in range(nt) if fr.start[i] >= min_start - 1e-9]
    early_idx = [i for i in range(nt) if i not in late]
    if reference == "late" and not late:
        raise FrameTimingError(
            f"no frame starts at or after min_start={min_start} min (last frame starts at "
            f"{fr.start[-1]:g} min); lower min_start or pass reference='mean'")
    if levels is None:
        levels = default_levels(vox, data.shape)
    reg: dict[str, Any] = dict(levels=tuple(int(k) for k in levels), fwhm_mm=float(fwhm_mm),
               phase_correlation=True, max_t=float(max_translation_mm),
               max_r=float(max_rotation_deg), max_iter=int(max_iter))

    explicit = not isinstance(reference, str | int | np.integer)
    if isinstance(reference, str):
        if reference not in ("late", "mean"):
            raise ConfigError(f"reference must be 'late', 'mean', a frame index or an image, "
                              f"got {reference!r}")
        ref_idx = late if reference == "late" else list(range(nt))
        ref = _weighted_mean(data, ref_idx, dur)
    elif isinstance(reference, int | np.integer):
        if not -nt <= int(reference) < nt:
            raise ConfigError(f"reference frame {reference} out of range (0..{nt - 1})")
        ref_idx = [int(reference) % nt]
        ref = np.nan_to_num(data[..., ref_idx[0]]).astype(np.float32)
    else:
        ref = np.asarray(reference, dtype=np.float32)
        if ref.shape != (nx, ny, nz):
            raise ShapeMismatchError(f"reference image has shape {ref.shape}, the PET grid is "
                                     f"{(nx, ny, nz)}")
        ref_idx = []
    if not np.any(np.nan_to_num(ref) > 0):
        raise DataError(f"{pet.path or 'PET'}: the realignment reference (frames "
                        f"{ref_idx or 'given'}) has no counts; check the image or choose "
                        "another reference")

    params = np.zeros((nt, 6))
    conv = np.ones(nt, dtype=bool)
    cost = np.full(nt, np.nan)
    how = np.array(["frame"] * nt, dtype=object)
    early_sum = _weighted_mean(data, early_idx, dur) if early_idx else None
    anchor = early_idx[0] if early_idx else 0
    has_counts = [bool(np.any(np.nan_to_num(data[..., i]) > 0)) for i in range(nt)]

    n_pass = 1 if explicit else int(passes)
    for ip in range(n_pass):
        first = ip == 0
        # later passes refine the previous estimates at the finest level only
        reg_ip = reg if first else {**reg, "levels": reg["levels"][-1:]}
        fixed_cache = _levels_of(ref, vox, reg_ip, {})
        for i in late:
            if not has_counts[i]:
                conv[i], how[i] = False, "none"
                continue
            r = _register(data[..., i], ref, vox, None if first else params[i], **reg_ip,
                          fixed_levels=fixed_cache)
            params[i], cost[i], conv[i] = r.params, r.cost, r.converged
        if early_sum is not None and np.any(early_sum > 0):
            r = _register(early_sum, ref, vox, None if first else params[early_idx[0]],
                          **reg_ip, fixed_levels=fixed_cache)
            for i in early_idx:
                params[i], cost[i], conv[i], how[i] = r.params, r.cost, r.converged, "early_sum"
        if ip < n_pass - 1:  # rebuild the reference from the realigned reference frames
            idx = [i for i in ref_idx if has_counts[i]]
            acc = np.zeros((nx, ny, nz), dtype=np.float64)
            for i in idx:
                acc += dur[i] * resample_rigid(data[..., i], params[i], vox, order=1)
            ref = (acc / dur[idx].sum()).astype(np.float32)

    if early == "frames" and early_sum is not None:
        esum_a = rigid_matrix(params[anchor])
        for i in early_idx:
            if not has_counts[i]:
                conv[i] = False
                continue
            r = _register(data[..., i], early_sum, vox, None, **reg)
            # frame relative to the early sum, composed with the early sum relative to ref
            params[i] = params_from_matrix(rigid_matrix(r.params) @ esum_a)
            cost[i], conv[i], how[i] = r.cost, r.converged, "frame"

    if space == "start":
        inv_a = np.linalg.inv(rigid_matrix(params[anchor] if early_sum is not None
                                           else params[0]))
        params = np.array([params_from_matrix(rigid_matrix(p) @ inv_a) for p in params])

    bad = [i for i in range(nt) if not conv[i] and has_counts[i] and how[i] != "none"]
    if bad:
        warnings.warn(
            f"{pet.path or 'PET'}: the realignment of frame(s) {bad} did not converge; they "
            "are corrected with the best parameters found inside the bounds (or left at the "
            "start) and flagged converged=False in the motion table. Check them (motion "
            "larger than the bounds, or too few counts).", Sv2aWarning, stacklevel=2)
    empty = [i for i in range(nt) if not has_counts[i] and (i in late or early == "frames")]
    if empty:
        warnings.warn(
            f"{pet.path or 'PET'}: frame(s) {empty} have no counts and were not registered "
            "(flagged converged=False)", Sv2aWarning, stacklevel=2)

    out = np.empty_like(data)
    for i in range(nt):
        if np.allclose(params[i], 0.0, atol=1e-9):
            out[..., i] = data[..., i]
        else:
            out[..., i] = resample_rigid(np.nan_to_num(data[..., i]), params[i], vox,
                                         order=int(order))
    table = pd.DataFrame({"frame": np.arange(nt), "frame_start": fr.start,
                          "frame_end": fr.end})
    for j, c in enumerate(PARAM_COLUMNS):
        table[c] = params[:, j]
    table["framewise_displacement"] = framewise_displacement(params)
    table["converged"] = conv
    table["cost"] = cost
    table["registration"] = how
    settings = {"reference": reference if not explicit else "image", "min_start_min": min_start,
                "early": early, "space": space, "passes": n_pass, "levels": list(reg["levels"]),
                "fwhm_mm": float(fwhm_mm), "order": int(order),
                "max_translation_mm": float(max_translation_mm),
                "max_rotation_deg": float(max_rotation_deg), "similarity": "NCC",
                "optimiser": "L-BFGS-B", "method": "sv2a.motion.realign"}
    meta = dict(pet.meta)
    meta["sv2aRealignment"] = settings
    from .pet import DynamicPET as _PET

    corrected = _PET.from_array(out, fr, pet.affine, meta=meta)
    return Realignment(corrected, table, ref, settings)


def _levels_of(ref: np.ndarray, vox: np.ndarray, reg: dict[str, Any],
               cache: dict[int, _Level]) -> dict[int, _Level]:
    """Fill ``cache`` with the fixed levels of the reference (shared by every frame)."""
    fx = np.nan_to_num(ref)
    for k in reg["levels"]:
        fwhm_vox = 1.0 + reg["fwhm_mm"] / float(np.min(vox * k))
        cache[k] = _fixed_level(fx, k, vox, fwhm_vox, fx.shape)
    return cache


# ------------------------------------------------------------------ output
def write_motion_table(table: pd.DataFrame, path: str | os.PathLike[str], *,
                       description: str = "head motion estimated by frame realignment "
                                          "(sv2a.motion.realign)") -> Any:
    """Write a motion table as a BIDS-style ``*_desc-motion_timeseries.tsv`` + ``.json``.

    Parameters
    ----------
    table : pandas.DataFrame
        Motion table of :func:`realign` (or a phantom's truth): frame, frame_start/frame_end
        (min), trans_x/y/z (mm), rot_x/y/z (degrees), framewise_displacement (mm), ...
    path : str or path-like
        Output TSV (``..._timeseries.tsv``); the JSON sidecar is written beside it.
    description : str
        ``Description`` of the sidecar.

    Returns
    -------
    pathlib.Path
        The TSV path.

    Raises
    ------
    ShapeMismatchError
        The table lacks a motion parameter column.

    Examples
    --------
    >>> import tempfile, json, pathlib
    >>> t = pd.DataFrame({"frame": [0, 1], "frame_start": [0.0, 10.0], "frame_end": [10.0, 20.0],
    ...                   **{c: [0.0, 0.5] for c in PARAM_COLUMNS}})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_motion_table(t, pathlib.Path(d) / "sub-01_desc-motion_timeseries.tsv")
    ...     side = json.loads(p.with_suffix(".json").read_text())
    >>> side["trans_x"]["Units"], side["rot_x"]["Units"]
    ('mm', 'degree')
    """
    from pathlib import Path

    from .io import write_json, write_tsv

    missing = [c for c in PARAM_COLUMNS if c not in table.columns]
    if missing:
        raise ShapeMismatchError(f"motion table lacks column(s) {missing}; expected "
                                 f"{MOTION_COLUMNS}")
    p = Path(path)
    out = table.copy()
    for c in ("converged",):
        if c in out.columns:
            out[c] = out[c].map({True: "true", False: "false"}).fillna("n/a")
    write_tsv(p, out)
    side: dict[str, Any] = {"Description": description}
    for c in out.columns:
        desc, unit = _DESCRIPTIONS.get(c, (c, None))
        side[c] = {"Description": desc, **({"Units": unit} if unit else {})}
    name = p.name[:-4] if p.name.endswith(".tsv") else p.name
    write_json(p.with_name(name + ".json"), side)
    return p


def plot_motion(table: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Translations, rotations and framewise displacement against time.

    Parameters
    ----------
    table : pandas.DataFrame
        Motion table (:func:`realign`): frame_start/frame_end (min), trans_* (mm), rot_*
        (degrees), framewise_displacement (mm); a ``converged`` column marks failed frames.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels sharing the time axis (frame mid-time, min).

    Examples
    --------
    >>> t = pd.DataFrame({"frame_start": [0.0, 10.0], "frame_end": [10.0, 20.0],
    ...                   **{c: [0.0, 0.5] for c in PARAM_COLUMNS}})
    >>> t["framewise_displacement"] = framewise_displacement(t)
    >>> fig = plot_motion(t)
    >>> len(fig.axes)
    3
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure as _Figure

    mid = (table["frame_start"].to_numpy(float) + table["frame_end"].to_numpy(float)) / 2
    fig = _Figure(figsize=(7.0, 6.0))
    axes = fig.subplots(3, 1, sharex=True)
    for c, col in zip(PARAM_COLUMNS[:3], ("C0", "C1", "C2"), strict=True):
        axes[0].plot(mid, table[c], "o-", ms=3, color=col, label=c.split("_")[1])
    axes[0].set_ylabel("translation (mm)")
    for c, col in zip(PARAM_COLUMNS[3:], ("C0", "C1", "C2"), strict=True):
        axes[1].plot(mid, table[c], "o-", ms=3, color=col, label=c.split("_")[1])
    axes[1].set_ylabel("rotation (deg)")
    fd = table["framewise_displacement"] if "framewise_displacement" in table else \
        pd.Series(framewise_displacement(table))
    axes[2].bar(mid, fd, width=np.maximum(table["frame_end"] - table["frame_start"], 0.2) * 0.8,
                color="0.5")
    if "converged" in table:
        bad = ~table["converged"].astype(bool).to_numpy()
        if bad.any():
            axes[2].plot(mid[bad], np.asarray(fd)[bad], "rx", label="not converged")
            axes[2].legend(loc="upper left", fontsize=8)
    axes[2].set_ylabel("FD (mm)")
    axes[2].set_xlabel("time (min)")
    for ax in axes[:2]:
        ax.legend(loc="upper left", fontsize=8, ncol=3)
        ax.axhline(0.0, color="0.8", lw=0.8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
