"""Static measures over a time window: SUVR (to a reference region) and SUV (to dose/weight).

Time in min, activity in kBq/mL. With ``w_i`` the minutes of frame ``i`` inside ``window``
(``frame_selection="overlap"``, default) or the full duration of the frames whose mid-time lies
in the window (``"mid"``, kinfitr)::

    SUVR = Σ_i w_i C_T,i / Σ_i w_i C_R,i
    SUV  = (Σ_i w_i C_T,i / Σ_i w_i) / (D / W)      D injected activity (MBq), W body weight (kg)

SUV is in g/mL (tissue density 1 g/mL); the dose is the injected activity decay-corrected to
injection time, as the TACs are. At transient equilibrium ``SUVR − 1`` approximates BPND; it
is biased upward while the reference still clears faster than the target. For [11C]UCB-J with
a centrum semiovale reference the 60–90 min window is the usual choice (Naganawa et al. 2021,
J Nucl Med 62:561-567).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import DataError, FrameTimingError, MetadataError, ModelError, Sv2aWarning
from ..frames import FrameSchedule
from .base import Kind, Model, ModelInputs, Scale, as_rows, check_reference, clean_rows, finish
from .registry import register

__all__ = ["SUVR", "SUV", "window_weights"]

FloatArray = NDArray[np.float64]
FrameSelection = Literal["overlap", "mid"]
_ATOL = 1e-6


#: A window that reaches past the scan is used clipped to the scan when the scan covers at
#: least this share of it (a delayed scan that starts at 62 instead of 60 min, or a patient
#: who left at 85 of 90 min: late ratios vary slowly), with a warning; less is refused.
MIN_WINDOW_COVERAGE = 2 / 3


def window_weights(frames: FrameSchedule, window: tuple[float, float], *,
                   selection: FrameSelection = "overlap", model: str = "suvr") -> FloatArray:
    """Per-frame weights (min) of a time window.

    Parameters
    ----------
    frames : FrameSchedule
        Frame timing (min).
    window : (float, float)
        Start and end (min after injection). A window reaching past the scan is clipped to it
        with a warning when the scan covers at least :data:`MIN_WINDOW_COVERAGE` of it.
    selection : {"overlap", "mid"}
        ``"overlap"``: minutes of each frame inside the window. ``"mid"``: the full duration
        of frames whose mid-time is in ``[t0, t1]``, 0 otherwise (kinfitr).
    model : str
        Model name, for messages.

    Returns
    -------
    array (n_frames,)
        Weights in minutes.

    Raises
    ------
    ModelError
        Malformed window or unknown ``selection``.
    FrameTimingError
        Window mostly outside the scan, or no frame in it.

    Examples
    --------
    >>> fr = FrameSchedule.from_durations([30.0, 30.0, 30.0])
    >>> window_weights(fr, (45.0, 90.0))
    array([ 0., 15., 30.])
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
        covered = max(0.0, min(t1, s1) - max(t0, s0)) / (t1 - t0)
        if covered < MIN_WINDOW_COVERAGE:
            raise FrameTimingError(
                f"{model}: window ({t0:g}, {t1:g}) min is outside the scan ({s0:g}-{s1:g} min"
                f"; it covers {covered:.0%} of the window, less than "
                f"{MIN_WINDOW_COVERAGE:.0%}); pass window= within the scan, e.g. "
                f"window=({max(s0, s1 - 30):g}, {s1:g})")
        c0, c1 = max(t0, s0), min(t1, s1)
        warnings.warn(f"{model}: window ({t0:g}, {t1:g}) min reaches past the scan "
                      f"({s0:g}-{s1:g} min); the {covered:.0%} inside it is used: "
                      f"({c0:g}, {c1:g}) min", Sv2aWarning, stacklevel=3)
        t0, t1 = c0, c1
    if selection == "overlap":
        w = np.asarray(frames.overlap_weights(t0, t1), dtype=float)
    elif selection == "mid":
        mid = frames.mid
        w = np.where((mid >= t0 - _ATOL) & (mid <= t1 + _ATOL), frames.duration, 0.0)
    else:
        raise ModelError(f"{model}: frame_selection must be 'overlap' or 'mid', got "
                         f"{selection!r}")
    if not np.any(w > 0):
        raise FrameTimingError(
            f"{model}: no frame {'mid-time ' if selection == 'mid' else ''}falls in the window "
            f"({t0:g}, {t1:g}) min (frame mid-times {np.round(frames.mid, 2).tolist()}); widen "
            "the window or use frame_selection='overlap'"
        )
    return w


@dataclass(frozen=True, kw_only=True)
class SUVROptions:
    """SUVR options.

    Attributes
    ----------
    window : (float, float)
        Minutes after injection; default (60, 90).
    frame_selection : {"overlap", "mid"}
        How frames count in the window (default ``"overlap"``).
    """

    window: tuple[float, float] = (60.0, 90.0)
    frame_selection: FrameSelection = "overlap"


@dataclass(frozen=True, kw_only=True)
class SUVOptions(SUVROptions):
    """SUV options: those of :class:`SUVROptions` and

    Attributes
    ----------
    injected_mbq : float, optional
        Injected activity (MBq); default from the data (``tacs.attrs`` or the PET sidecar's
        ``InjectedRadioactivity``).
    body_weight_kg : float, optional
        Body weight (kg); default from the data (sidecar or participants.tsv ``BodyWeight``).
    """

    injected_mbq: float | None = None
    body_weight_kg: float | None = None


class _Window(Model):
    scales: ClassVar[frozenset[Scale]] = frozenset({"region", "voxel"})
    predicts: ClassVar[bool] = False

    def __init__(self, inputs: ModelInputs, options: Any) -> None:
        super().__init__(inputs, options)
        self.w = window_weights(self.frames, options.window, selection=options.frame_selection,
                                model=self.name)
        used = np.flatnonzero(self.w > 0)
        self.n_fitted = 0
        mid = options.frame_selection == "mid"
        self.settings.update(
            window=np.array([float(options.window[0]), float(options.window[1])]),
            frame_selection=options.frame_selection, window_frames=used.tolist(),
            window_start_min=float(self.frames.start[used[0]]) if mid
            else float(options.window[0]),
            window_end_min=float(self.frames.end[used[-1]]) if mid else float(options.window[1]))


@register
class SUVR(_Window):
    """SUVR: window-mean activity of each target over that of the reference.

    See :mod:`sv2a.models.suvr`.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> fr = FrameSchedule.from_durations([30.0, 30.0, 30.0])
    >>> inputs = ModelInputs(frames=fr, weights=np.ones(3), reference=np.array([1.0, 2, 2]))
    >>> SUVR(inputs, SUVROptions(window=(30.0, 90.0))).solve(np.array([[1.0, 5.0, 6.0]]))["SUVR"]
    array([2.75])
    """

    name: ClassVar[str] = "suvr"
    kind: ClassVar[Kind] = "reference"
    parameters: ClassVar[tuple[str, ...]] = ("SUVR",)
    units: ClassVar[Mapping[str, str]] = {"SUVR": "1"}
    description: ClassVar[str] = "Standardised uptake value ratio over a time window"
    Options: ClassVar[type] = SUVROptions

    def __init__(self, inputs: ModelInputs, options: SUVROptions) -> None:
        super().__init__(inputs, options)
        self.reference = check_reference(inputs.reference, self.frames.n)
        self.den = float(self.reference @ self.w)
        if not self.den > 0:
            raise DataError(
                f"suvr: the reference has mean activity {self.den / self.w.sum():.4g} kBq/mL "
                f"<= 0 in the window {tuple(options.window)} min; check the reference region "
                "and the window")
        self.settings["reference_mean_kBq_per_mL"] = self.den / float(self.w.sum())

    def solve(self, tacs: NDArray[Any], *, se: bool = False) -> dict[str, NDArray[Any]]:
        """SUVR of every row of ``tacs`` (n, n_frames).

        Parameters
        ----------
        tacs : array (n, n_frames)
            Target TACs (kBq/mL), one row per region or voxel.
        se : bool
            Also return standard errors ``<name>_se``.

        Returns
        -------
        dict
            ``name -> array (n,)``: ``SUVR``,
            ``n_frames`` and ``flag`` (see :meth:`sv2a.models.base.Model.solve`).
        """
        y, bad = clean_rows(as_rows(tacs, self.frames.n))
        out = {"SUVR": (y @ self.w) / self.den}
        return finish(out, np.zeros(y.shape[0], np.uint8), bad, int((self.w > 0).sum()))


def _positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"suv: {name} is not a number: {value!r}") from exc
    if not np.isfinite(v) or v <= 0:
        raise MetadataError(f"suv: {name} must be > 0, got {value!r}")
    return v


@register
class SUV(_Window):
    """SUV: window-mean activity over injected activity per body weight (g/mL).

    See :mod:`sv2a.models.suvr`.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> fr = FrameSchedule.from_durations([30.0, 30.0, 30.0])
    >>> opts = SUVOptions(window=(30.0, 90.0), injected_mbq=400.0, body_weight_kg=80.0)
    >>> SUV(ModelInputs(frames=fr, weights=np.ones(3)), opts).solve(np.array([[1.0, 20, 30]]))
    {'SUV': array([5.]), 'flag': array([0], dtype=uint8), 'n_frames': array([2])}
    """

    name: ClassVar[str] = "suv"
    kind: ClassVar[Kind] = "static"
    parameters: ClassVar[tuple[str, ...]] = ("SUV",)
    units: ClassVar[Mapping[str, str]] = {"SUV": "g/mL"}
    description: ClassVar[str] = "Standardised uptake value over a time window"
    Options: ClassVar[type] = SUVOptions

    def __init__(self, inputs: ModelInputs, options: SUVOptions) -> None:
        super().__init__(inputs, options)
        dose = options.injected_mbq if options.injected_mbq is not None else inputs.injected_mbq
        bw = (options.body_weight_kg if options.body_weight_kg is not None
              else inputs.body_weight_kg)
        missing = [n for n, v in (("injected activity (injected_mbq)", dose),
                                  ("body weight (body_weight_kg)", bw)) if v is None]
        if missing:
            raise MetadataError(
                f"suv: missing {' and '.join(missing)}; pass injected_mbq=/body_weight_kg= or "
                "set them in the data (BIDS: InjectedRadioactivity in the PET sidecar, "
                "BodyWeight in the sidecar or participants.tsv)")
        self.injected_mbq = _positive(dose, "injected_mbq")
        self.body_weight_kg = _positive(bw, "body_weight_kg")
        self.scale_w = self.w / self.w.sum() * self.body_weight_kg / self.injected_mbq
        self.settings.update(injected_mbq=self.injected_mbq, body_weight_kg=self.body_weight_kg)

    def solve(self, tacs: NDArray[Any], *, se: bool = False) -> dict[str, NDArray[Any]]:
        """SUV of every row of ``tacs`` (n, n_frames).

        Parameters
        ----------
        tacs : array (n, n_frames)
            Target TACs (kBq/mL), one row per region or voxel.
        se : bool
            Also return standard errors ``<name>_se``.

        Returns
        -------
        dict
            ``name -> array (n,)``: ``SUV`` (g/mL),
            ``n_frames`` and ``flag`` (see :meth:`sv2a.models.base.Model.solve`).
        """
        y, bad = clean_rows(as_rows(tacs, self.frames.n))
        return finish({"SUV": y @ self.scale_w}, np.zeros(y.shape[0], np.uint8), bad,
                      int((self.w > 0).sum()))
