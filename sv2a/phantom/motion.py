"""Head motion for phantoms: per-frame rigid motion with recorded truth.

:func:`draw_motion` draws a motion trace for a level; :func:`apply_motion` moves every frame of
a 4-D image by it. ``make_subject(..., motion=LEVEL)`` does both after the image is made and
keeps the truth in :attr:`PhantomSubject.motion`.

Levels (linear in ``level``; 0 = still): each translation stays within ``4 x level`` mm and
each rotation within ``2 x level`` degrees (level 1: up to 4 mm / 2 deg, a restless but
cooperative subject; level 2: up to 8 mm / 4 deg, a poor scan). The head is still until
``onset`` (default 10 min: the early frames and the attenuation map share the start
position), then drifts slowly (a smooth random curve reaching 30-60 % of the limit by the end
of the scan) and makes one to three sudden jumps (steps of up to 60 % of the limit) at random
frame boundaries. Motion is between frames only: each frame is moved as a whole (no
intra-frame blur).

The parameters follow :mod:`sv2a.motion` (translations in mm, rotations in degrees about the
volume centre, ``R = Rx Ry Rz``): the tissue at ``p`` of the still image is at ``R p + t`` in
the moved frame, so :func:`sv2a.motion.realign` estimates the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ModelError, ShapeMismatchError
from ..frames import FrameSchedule
from ..motion import PARAM_COLUMNS, framewise_displacement, resample_rigid

__all__ = ["draw_motion", "apply_motion", "motion_limits", "TRUTH_MOTION_COLUMNS"]

#: columns of a motion truth table
TRUTH_MOTION_COLUMNS = ["frame", "frame_start", "frame_end", *PARAM_COLUMNS,
                        "framewise_displacement"]


def motion_limits(level: float) -> tuple[float, float]:
    """Largest translation (mm) and rotation (degrees) of a motion level.

    Parameters
    ----------
    level : float
        Motion level >= 0 (1 = up to 4 mm / 2 deg, 2 = up to 8 mm / 4 deg).

    Returns
    -------
    tuple of float
        (max translation in mm, max rotation in degrees), per axis.

    Raises
    ------
    ModelError
        ``level`` is negative or not finite.

    Examples
    --------
    >>> motion_limits(1), motion_limits(2)
    ((4.0, 2.0), (8.0, 4.0))
    """
    lv = float(level)
    if not np.isfinite(lv) or lv < 0:
        raise ModelError(f"motion level must be a number >= 0 (1 = up to 4 mm / 2 deg), got "
                         f"{level!r}")
    return 4.0 * lv, 2.0 * lv


def draw_motion(frames: FrameSchedule, level: float,
                seed: int | np.random.Generator | None = 0, *, onset: float = 10.0
                ) -> pd.DataFrame:
    """Draw a per-frame rigid head-motion trace (the truth of a phantom with motion).

    Parameters
    ----------
    frames : FrameSchedule
        Frame timing (min).
    level : float
        Motion level (0 = still; 1 = up to 4 mm / 2 deg; 2 = up to 8 mm / 4 deg).
    seed : int or numpy Generator
        Random stream of the trace.
    onset : float
        Time (min) before which the head is still; frames starting earlier are not moved.

    Returns
    -------
    pandas.DataFrame
        :data:`TRUTH_MOTION_COLUMNS`: frame, frame_start/frame_end (min), trans_x/y/z (mm),
        rot_x/y/z (degrees), framewise_displacement (mm).

    Raises
    ------
    ModelError
        Negative level.

    Examples
    --------
    >>> fr = FrameSchedule.from_durations([5.0] * 4 + [10.0] * 6)
    >>> m = draw_motion(fr, 1.0, seed=0)
    >>> bool((m.loc[m.frame_start < 10, "trans_x"] == 0).all())
    True
    >>> bool(m[["trans_x", "trans_y", "trans_z"]].abs().max().max() <= 4.0)
    True
    """
    max_t, max_r = motion_limits(level)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    start, end = np.asarray(frames.start, float), np.asarray(frames.end, float)
    mid = (start + end) / 2
    moving = start >= onset - 1e-9
    n = frames.n
    params = np.zeros((n, 6))
    if max_t > 0 and moving.any():
        t0, t1 = float(start[moving][0]), float(end[-1])
        u = np.clip((mid - t0) / max(t1 - t0, 1e-9), 0.0, 1.0)
        limits = np.array([max_t] * 3 + [max_r] * 3)
        for k in range(6):
            # slow drift: a smooth curve from 0 reaching 30-60 % of the limit at the end
            amp = rng.uniform(0.3, 0.6) * rng.choice([-1.0, 1.0])
            bend = rng.uniform(0.5, 2.0)
            wiggle = 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * u + rng.uniform(0, 6.3))
            params[:, k] = limits[k] * (amp * u**bend + wiggle * u)
        idx = np.flatnonzero(moving)
        for _ in range(int(rng.integers(1, 4))):  # sudden jumps at frame boundaries
            j = int(rng.choice(idx[1:] if idx.size > 1 else idx))
            step = rng.uniform(-0.6, 0.6, 6) * limits
            params[j:] += step
        params = np.clip(params, -limits, limits)
        params[~moving] = 0.0
    out = pd.DataFrame({"frame": np.arange(n), "frame_start": start, "frame_end": end})
    for k, c in enumerate(PARAM_COLUMNS):
        out[c] = params[:, k]
    out["framewise_displacement"] = framewise_displacement(params)
    return out


def apply_motion(image: Any, motion: pd.DataFrame, voxel_mm: Any, *, order: int = 3
                 ) -> np.ndarray:
    """Move every frame of a 4-D image by its rigid parameters (inverse mapping).

    Parameters
    ----------
    image : array_like, shape (x, y, z, frames)
        Still image (kBq/mL).
    motion : pandas.DataFrame
        One row per frame with :data:`~sv2a.motion.PARAM_COLUMNS` (mm, degrees), as from
        :func:`draw_motion`.
    voxel_mm : array_like, shape (3,)
        Voxel edge lengths (mm).
    order : int
        Spline order of the interpolation (1 = trilinear, default: no overshoot at the sharp
        edges of noise-free phantoms; 3 = cubic B-spline).

    Returns
    -------
    ndarray, shape (x, y, z, frames), float32
        Moved image (kBq/mL): ``moved(R p + t) = image(p)``; tissue moved in from outside the
        field of view is 0. Frames without motion are copied unchanged.

    Raises
    ------
    ShapeMismatchError
        The image is not 4-D or the table has a different number of frames.

    Examples
    --------
    >>> img = np.zeros((8, 8, 8, 2), np.float32); img[3:5, 3:5, 3:5] = 1.0
    >>> m = pd.DataFrame({c: [0.0, 0.0] for c in PARAM_COLUMNS}); m.loc[1, "trans_x"] = 2.0
    >>> moved = apply_motion(img, m, [2.0, 2.0, 2.0])
    >>> float(moved[4:6, 3:5, 3:5, 1].min()), bool((moved[..., 0] == img[..., 0]).all())
    (1.0, True)
    """
    arr = np.asarray(image)
    if arr.ndim != 4 or arr.shape[3] != len(motion):
        raise ShapeMismatchError(f"apply_motion needs a 4-D image with one frame per motion row;"
                                 f" got shape {arr.shape} and {len(motion)} rows")
    p = motion[PARAM_COLUMNS].to_numpy(dtype=float)
    out = np.empty(arr.shape, dtype=np.float32, order="F")
    for f in range(arr.shape[3]):
        if np.allclose(p[f], 0.0):
            out[..., f] = arr[..., f]
        else:
            out[..., f] = resample_rigid(arr[..., f], p[f], voxel_mm, order=order,
                                         inverse=True)
    return out
