"""Static (single-window) measures: SUV and SUVR.

``SUV = C̄ / (injected dose / body weight)`` with ``C̄`` the time-weighted mean activity
(kBq/mL) over a window, dose in MBq and body weight in kg (so SUV is in g/mL, ≈ unitless).
``SUVR = C̄_T / C̄_R``, the ratio of window means of target and reference.

Window means weight each frame by the minutes it overlaps the window (``frames="overlap"``,
default: a frame half inside the window counts half), or -- as kinfitr does -- take the frames
whose mid-time lies in the window with frame-duration weights (``frames="mid"``).

The default window is 60-90 min after injection, the SUVR window validated for [11C]UCB-J
(Koole 2019; Young 2024); pass ``window=(t0, t1)`` (min) for other tracers or protocols.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import FrameTimingError, MetadataError, ModelError
from ..frames import FrameSchedule
from ._common import check_options, tac_matrix
from .reference import _prepare
from .registry import register
from .result import build_result

__all__ = ["suv", "suvr", "window_weights", "window_mean"]

_ATOL = 1e-6


def window_weights(frames: FrameSchedule, window, *, selection: str = "overlap",
                   model: str = "suvr") -> np.ndarray:
    """Per-frame weights (min) of a time window.

    Parameters
    ----------
    frames : FrameSchedule
    window : (t0, t1)
        Minutes after injection; must lie within the scan (first frame start to last frame end).
    selection : {"overlap", "mid"}
        ``"overlap"``: minutes of each frame inside the window. ``"mid"``: the full duration of
        frames whose mid-time is in ``[t0, t1]``, 0 otherwise (kinfitr).

    Raises
    ------
    ModelError
        Malformed window or unknown ``selection``.
    FrameTimingError
        Window outside the scan, or no frame in it.
    """
    try:
        t0, t1 = (float(x) for x in window)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{model}: window must be (start, end) in minutes, got {window!r}") \
            from exc
    if not (np.isfinite(t0) and np.isfinite(t1)) or t1 <= t0:
        raise ModelError(f"{model}: window ({t0:g}, {t1:g}) min must have start < end")
    s0, s1 = float(frames.start[0]), float(frames.end[-1])
    if t0 < s0 - _ATOL or t1 > s1 + _ATOL:
        raise FrameTimingError(
            f"{model}: window ({t0:g}, {t1:g}) min is outside the scan ({s0:g}-{s1:g} min); "
            f"pass window= within the scan, e.g. window=({max(s0, s1 - 30):g}, {s1:g})"
        )
    if selection == "overlap":
        w = frames.overlap_weights(t0, t1)
    elif selection == "mid":
        mid = frames.mid
        w = np.where((mid >= t0 - _ATOL) & (mid <= t1 + _ATOL), frames.duration, 0.0)
    else:
        raise ModelError(f"{model}: frames must be 'overlap' or 'mid', got {selection!r}")
    if not np.any(w > 0):
        raise FrameTimingError(
            f"{model}: no frame {'mid-time ' if selection == 'mid' else ''}falls in the window "
            f"({t0:g}, {t1:g}) min (frame mid-times {np.round(frames.mid, 2).tolist()}); widen "
            "the window or use frames='overlap'"
        )
    return w


def window_mean(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean over frames of each row of ``values`` (n, f) with weights ``w`` (f,)."""
    return np.atleast_2d(values) @ w / w.sum()


def _window_settings(frames, w, window, selection):
    used = np.flatnonzero(w > 0)
    return {"window": np.array([float(window[0]), float(window[1])]), "frames": selection,
            "window_frames": used.tolist(),
            "window_start_min": float(frames.start[used[0]]) if selection == "mid"
            else float(window[0]),
            "window_end_min": float(frames.end[used[-1]]) if selection == "mid"
            else float(window[1])}


_SUVR_DEFAULTS = {"window": (60.0, 90.0), "frames": "overlap"}


@register("suvr", kind="static", parameters=("SUVR",),
          description="Standardised uptake value ratio over a time window")
def suvr(tacs: xr.DataArray, *, input=None, reference=None, **options) -> xr.Dataset:
    """SUVR: ratio of the time-weighted mean activity of each target to the reference over
    ``window``.

    ``SUVR = Σ_i w_i C_T,i / Σ_i w_i C_R,i`` with ``w_i`` the minutes of frame ``i`` in the
    window (``frames="overlap"``) or the frame duration of frames whose mid-time is in the
    window (``frames="mid"``, kinfitr). At transient equilibrium SUVR − 1 approximates BPND
    (biased upward when the reference still clears faster than the target).

    Parameters
    ----------
    tacs : xr.DataArray (region x frame)
    reference : str or array
        Reference region (left out of the result) or its TAC.
    window : (t0, t1)
        Minutes after injection; default (60, 90).
    frames : {"overlap", "mid"}

    Returns
    -------
    xr.Dataset
        ``SUVR``, ``n_frames`` (frames used), ``converged`` (always True), attrs with the
        window and the frames used.
    """
    opts = check_options("suvr", options, _SUVR_DEFAULTS)
    values, regions, frames, cr, label = _prepare(tacs, reference, "suvr")
    w = window_weights(frames, opts["window"], selection=opts["frames"], model="suvr")
    mt = window_mean(values, w)
    mr = float(window_mean(cr, w)[0])
    if mr <= 0:
        raise ModelError(
            f"suvr: the reference ({label}) has mean activity {mr:.4g} kBq/mL <= 0 in the window "
            f"{tuple(opts['window'])} min; check the reference region and the window"
        )
    n = len(regions)
    vals = {"SUVR": mt / mr, "n_frames": np.full(n, int((w > 0).sum())),
            "converged": np.ones(n, bool), "at_bound": np.zeros(n, bool),
            "message": np.full(n, "")}
    attrs = {"reference": label, **_window_settings(frames, w, opts["window"], opts["frames"]),
             "reference_mean_kBq_per_mL": mr}
    return build_result("suvr", regions, vals, attrs=attrs, units={"SUVR": "1"})


_SUV_DEFAULTS = {"window": (60.0, 90.0), "frames": "overlap", "injected_mbq": None,
                 "body_weight_kg": None}


def _positive(value, name: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"suv: {name} from {where} is not a number: {value!r}") from exc
    if not np.isfinite(v) or v <= 0:
        raise MetadataError(f"suv: {name} from {where} must be > 0, got {value!r}")
    return v


@register("suv", kind="static", parameters=("SUV",),
          description="Standardised uptake value over a time window")
def suv(tacs: xr.DataArray, *, input=None, reference=None, **options) -> xr.Dataset:
    """SUV: time-weighted mean activity over ``window`` normalised by dose per body weight.

    ``SUV = C̄ [kBq/mL] / (D [MBq] / W [kg])`` (= g/mL). The dose is the injected activity
    decay-corrected to injection time, as the TACs are.

    Parameters
    ----------
    tacs : xr.DataArray (region x frame)
    injected_mbq, body_weight_kg : float, optional
        Injected activity (MBq) and body weight (kg). Default: ``tacs.attrs['injected_mbq']``
        and ``tacs.attrs['body_weight_kg']``; :class:`MetadataError` if either is missing.
    window : (t0, t1)
        Minutes after injection; default (60, 90).
    frames : {"overlap", "mid"}

    Returns
    -------
    xr.Dataset
        ``SUV``, ``n_frames``; attrs with dose, weight and window.
    """
    opts = check_options("suv", options, _SUV_DEFAULTS)
    if reference is not None:
        raise ModelError("suv: does not use a reference region; use model='suvr' for ratios")
    values, regions, frames = tac_matrix(tacs, "suv")
    attrs = getattr(tacs, "attrs", {}) or {}
    dose, bw = opts["injected_mbq"], opts["body_weight_kg"]
    src_d = "the injected_mbq option"
    src_w = "the body_weight_kg option"
    if dose is None:
        dose, src_d = attrs.get("injected_mbq"), "tacs.attrs['injected_mbq']"
    if bw is None:
        bw, src_w = attrs.get("body_weight_kg"), "tacs.attrs['body_weight_kg']"
    missing = [n for n, v in (("injected dose (injected_mbq)", dose),
                              ("body weight (body_weight_kg)", bw)) if v is None]
    if missing:
        raise MetadataError(
            f"suv: missing {' and '.join(missing)}; pass injected_mbq=/body_weight_kg= to "
            "sv2a.fit or set them in tacs.attrs (BIDS: InjectedRadioactivity in the PET "
            "sidecar, BodyWeight in the sidecar or participants.tsv)"
        )
    dose = _positive(dose, "injected_mbq", src_d)
    bw = _positive(bw, "body_weight_kg", src_w)
    w = window_weights(frames, opts["window"], selection=opts["frames"], model="suv")
    n = len(regions)
    vals = {"SUV": window_mean(values, w) / (dose / bw),
            "n_frames": np.full(n, int((w > 0).sum())), "converged": np.ones(n, bool),
            "at_bound": np.zeros(n, bool), "message": np.full(n, "")}
    a = {"injected_mbq": dose, "body_weight_kg": bw,
         **_window_settings(frames, w, opts["window"], opts["frames"])}
    return build_result("suv", regions, vals, attrs=a, units={"SUV": "g/mL"})
