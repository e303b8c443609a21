"""Frame weights for kinetic-model fits.

:func:`frame_weights` returns one weight per frame (relative inverse variances, max 1) for the
schemes below:

``"uniform"``
    All frames weight 1.
``"duration"``
    ``w = Δt / max Δt`` -- counts grow with frame length.
``"kinfitr"``
    kinfitr's default (``weights_create`` method 2; Matheson, kinfitr, MIT):
    ``w = sqrt(Δt · C_uncor)``, ``C_uncor`` the decay-uncorrected frame mean, normalised to a
    robust maximum of 1 and floored at ``minweight`` by a linear rescaling of ``[min w, 1]``
    onto ``[minweight, 1]``. (kinfitr 0.9.1 has an operator-precedence slip in that rescaling;
    sv2a applies the rescaling as documented there. Frames of zero duration get 0.)
``"variance"``
    Turku / TPCCLIB model: ``var = Pc · C · e^(λ t_mid) / Δt`` (decay-corrected C), weights
    ``1/var`` normalised to max 1 (``Pc`` cancels in the normalisation).
array
    User weights, one per frame (or per region and frame); must be finite and >= 0.

Graphical methods fit transformed data; :func:`sv2a.models.logan.logan_weights` propagates
frame weights to the Logan ordinate with the delta method.
"""

from __future__ import annotations

import numpy as np

from .errors import ModelError, ShapeMismatchError
from .frames import FrameSchedule

__all__ = ["SCHEMES", "frame_weights", "normalise"]

SCHEMES = ("uniform", "duration", "kinfitr", "variance")


def normalise(w: np.ndarray) -> np.ndarray:
    """Scale weights so that the largest (per row) is 1; all-zero rows stay zero.

    Parameters
    ----------
    w : array (..., n_frames)
        Non-negative weights.

    Returns
    -------
    array
        Same shape, maximum 1 per row.
    """
    w = np.asarray(w, dtype=float)
    m = np.max(w, axis=-1, keepdims=True)
    return np.divide(w, m, out=np.zeros_like(w), where=m > 0)


def _half_life(frames: FrameSchedule, half_life: float | None, scheme: str) -> float:
    hl = half_life if half_life is not None else frames.half_life
    if hl is None:
        raise ModelError(
            f"weights='{scheme}' needs the radionuclide half-life: pass half_life= (min) or "
            "give the TACs a half_life (tacs_from_arrays(..., half_life=20.4) for C-11)"
        )
    return float(hl)


def frame_weights(
    scheme,
    tacs_values,
    frames: FrameSchedule,
    *,
    half_life: float | None = None,
    minweight: float = 0.5,
    weight_checkn: int = 5,
    decay_corrected: bool | None = None,
) -> np.ndarray:
    """Weights for each frame.

    Parameters
    ----------
    scheme : str or array_like
        ``"uniform" | "duration" | "kinfitr" | "variance"`` or an array of weights of shape
        ``(n_frames,)`` or the shape of ``tacs_values``.
    tacs_values : array_like, shape (n_frames,) or (n_regions, n_frames)
        TAC values (kBq/mL, decay corrected unless ``decay_corrected=False``). TAC-dependent
        schemes weight each row by its own TAC; pass one high-count TAC (e.g. whole brain) to
        get a single weight vector, as kinfitr does.
    frames : FrameSchedule
        Frame timing (min).
    half_life : float, optional
        Radionuclide half-life (min); default ``frames.half_life``. Needed by ``"kinfitr"`` and
        ``"variance"``.
    minweight : float
        Floor of the ``"kinfitr"`` scheme (kinfitr default 0.5).
    weight_checkn : int
        ``"kinfitr"``: if one of the ``weight_checkn`` largest weights is below half the
        maximum, the median of those is used as the maximum (robust to one spiky frame).
    decay_corrected : bool, optional
        Whether ``tacs_values`` are decay corrected (default ``frames.decay_corrected``).

    Returns
    -------
    np.ndarray
        Same shape as ``tacs_values``; relative weights with maximum 1.

    Raises
    ------
    ModelError
        Unknown scheme, or a scheme needing a half-life that is unknown.
    ShapeMismatchError
        Array weights of the wrong shape, negative or non-finite.
    """
    c = np.asarray(tacs_values, dtype=float)
    n = frames.n
    if c.shape[-1] != n:
        raise ShapeMismatchError(
            f"weights: TAC values have {c.shape[-1]} frames but the schedule has {n}"
        )
    dur = frames.duration
    if not isinstance(scheme, str):
        w = np.asarray(scheme, dtype=float)
        if w.shape not in ((n,), c.shape):
            raise ShapeMismatchError(
                f"weights: array of shape {w.shape}; give one weight per frame ({n},) or one per "
                f"region and frame {c.shape}"
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            i = int(np.flatnonzero(~np.isfinite(w.ravel()) | (w.ravel() < 0))[0]) % n
            raise ShapeMismatchError(
                f"weights: non-finite or negative weight at frame index {i}; weights must be >= 0"
            )
        if not np.any(w > 0):
            raise ShapeMismatchError("weights: all weights are zero")
        return np.broadcast_to(normalise(w), c.shape).copy()
    s = scheme.lower()
    if s == "uniform":
        return np.ones(c.shape)
    if s == "duration":
        return np.broadcast_to(dur / dur.max(), c.shape).copy()
    if s not in SCHEMES:
        raise ModelError(
            f"unknown weights scheme {scheme!r}; use one of {', '.join(SCHEMES)} or an array"
        )
    hl = _half_life(frames, half_life, s)
    lam = np.log(2.0) / hl
    dc = frames.decay_corrected if decay_corrected is None else decay_corrected
    cpos = np.clip(c, 0.0, None)
    if s == "variance":
        # var ∝ C e^{λt} / Δt for decay-corrected C (counts ∝ C e^{-λt} Δt)
        floor = 0.01 * np.max(cpos, axis=-1, keepdims=True)
        cc = np.maximum(cpos, np.maximum(floor, 1e-12))
        decay = np.exp(lam * frames.mid) if dc else 1.0
        w = dur / (cc * decay)
        return normalise(w)
    # kinfitr method 2
    f = FrameSchedule(frames.start, frames.end, half_life=hl).decay_factors()
    c_unc = cpos / f if dc else cpos
    w = np.sqrt(dur * c_unc)
    w = np.where(dur > 0, w, 0.0)
    return np.apply_along_axis(_kinfitr_scale, -1, w, minweight, weight_checkn, dur > 0) \
        if w.ndim > 1 else _kinfitr_scale(w, minweight, weight_checkn, dur > 0)


def _kinfitr_scale(w: np.ndarray, minweight: float, checkn: int, live: np.ndarray) -> np.ndarray:
    w = w.astype(float).copy()
    wmax = np.max(w)
    top = np.sort(w)[-checkn:]
    if np.min(top) < 0.5 * wmax:
        wmax = float(np.median(top))
    if wmax <= 0:
        return np.where(live, 1.0, 0.0)
    w = np.minimum(w, wmax) / wmax
    if np.any(w[live] < minweight):
        wmin = np.min(w[live])
        w = minweight + (w - wmin) / (1.0 - wmin) * (1.0 - minweight) if wmin < 1 else w
    return np.where(live, w, 0.0)
