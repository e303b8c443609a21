"""PET frame timing: :class:`FrameSchedule` (minutes) built from BIDS sidecars.

BIDS stores ``FrameTimesStart`` and ``FrameDuration`` in seconds; inside sv2a every time is in
minutes. The schedule validates the timing (equal lengths, sorted, non-overlapping, positive
durations, the right number of frames for the image) and gives radioactive-decay factors.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import FrameTimingError, Sv2aWarning
from .units import half_life as _half_life
from .units import time_factor

__all__ = ["FrameSchedule", "frames_from_counts", "as_times"]

_ATOL_MIN = 1e-6  # minutes; BIDS files are written with finite precision
#: Overlaps and gaps between consecutive frames up to 1 s are rounding of frame times (whole
#: seconds from DICOM): accepted without a word (minutes).
_ROUNDING_MIN = 1.0 / 60


def as_times(name: str, values: npt.ArrayLike, source: str) -> np.ndarray:
    """Frame times as a 1-D float array, checked to be non-empty and finite.

    Parameters
    ----------
    name : str
        What the values are (for messages, e.g. ``'FrameTimesStart'``).
    values : array_like
        One time per frame (any unit; not converted).
    source : str
        Where the values came from (for messages).

    Returns
    -------
    ndarray of float, shape (n,)
        The values, flattened.

    Raises
    ------
    FrameTimingError
        Not numbers, empty, or non-finite.
    """
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise FrameTimingError(
            f"{source}: {name} must be a list of numbers, got {values!r}"
        ) from exc
    if arr.size == 0:
        raise FrameTimingError(f"{source}: {name} is empty; list one value per frame")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise FrameTimingError(
            f"{source}: {name} has non-finite values at frame index {bad.tolist()}; "
            "every frame needs a finite time"
        )
    return arr


@dataclass(frozen=True, eq=False)
class FrameSchedule:
    """Start and end of each PET frame, in minutes after injection.

    Parameters
    ----------
    start, end : array_like
        Frame start and end times (min). Must be sorted, non-overlapping, ``end > start``.
    half_life : float, optional
        Physical half-life of the radionuclide (min), used by :meth:`decay_factors`.
    decay_corrected : bool
        Whether the image values are decay corrected to injection (BIDS ``ImageDecayCorrected``).
    source : str
        Where the timing came from, used in error messages.

    Examples
    --------
    >>> fs = FrameSchedule.from_bids([0, 60, 120], [60, 60, 180])
    >>> fs.mid.tolist()
    [0.5, 1.5, 3.5]
    """

    start: np.ndarray
    end: np.ndarray
    half_life: float | None = None
    decay_corrected: bool = True
    source: str = "frame timing"

    def __post_init__(self) -> None:
        start = as_times("frame start", self.start, self.source)
        end = as_times("frame end", self.end, self.source)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        start.setflags(write=False)
        end.setflags(write=False)
        self._validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bids(
        cls,
        frame_times_start: npt.ArrayLike,
        frame_duration: npt.ArrayLike,
        *,
        n_volumes: int | None = None,
        time_unit: str = "s",
        radionuclide: str | None = None,
        decay_corrected: bool = True,
        source: str = "sidecar",
    ) -> FrameSchedule:
        """Build a schedule from BIDS ``FrameTimesStart`` and ``FrameDuration``.

        Parameters
        ----------
        frame_times_start, frame_duration : array_like
            One value per frame, in ``time_unit`` (BIDS: seconds).
        n_volumes : int, optional
            The 4th dimension of the image; a different number of frames raises
            :class:`FrameTimingError` naming both numbers.
        time_unit : str
            Unit of the times (``'s'``, ``'min'``, ``'h'``).
        radionuclide : str, optional
            BIDS ``TracerRadionuclide`` (e.g. ``'C11'``), giving the half-life (min).
        decay_corrected : bool
            Whether the image is decay corrected to injection.
        source : str
            Where the timing came from (for messages).

        Returns
        -------
        FrameSchedule
            Frame start and end times in minutes.

        Raises
        ------
        FrameTimingError
            Lengths differ, the frame count differs from ``n_volumes``, durations are not
            positive, look cumulative, the frames are unsorted or overlap, the times look like
            minutes read as seconds, or the scan ends more than 20 half-lives after injection
            (e.g. times in milliseconds).
        UnitsError
            Unknown ``time_unit`` or radionuclide.
        """
        fts = as_times("FrameTimesStart", frame_times_start, source)
        fdur = as_times("FrameDuration", frame_duration, source)
        if fts.size != fdur.size:
            raise FrameTimingError(
                f"{source}: FrameTimesStart has {fts.size} values but FrameDuration has "
                f"{fdur.size}; both need one value per frame"
            )
        if n_volumes is not None and fts.size != n_volumes:
            raise FrameTimingError(
                f"{source}: the sidecar lists {fts.size} frames but the image has {n_volumes} "
                "volumes (4th dimension); fix FrameTimesStart/FrameDuration or the image"
            )
        _check_cumulative(fts, fdur, source)
        nonpos = np.flatnonzero(fdur <= 0)
        if nonpos.size:
            raise FrameTimingError(
                f"{source}: FrameDuration is zero or negative at frame index {nonpos.tolist()} "
                f"(values {fdur[nonpos].tolist()}); durations must be positive"
            )
        f = time_factor(time_unit)
        hl = _half_life(radionuclide) if radionuclide else None
        _check_minutes_as_seconds(fts, fdur, f, hl, source)
        _check_scan_length(fts, fdur, f, hl, source)
        return cls(fts * f, (fts + fdur) * f, half_life=hl, decay_corrected=decay_corrected,
                   source=source)

    @classmethod
    def from_durations(cls, durations: npt.ArrayLike, *, start: float = 0.0,
                       **kwargs: Any) -> FrameSchedule:
        """Contiguous frames of the given durations.

        Parameters
        ----------
        durations : array_like
            Frame durations (min).
        start : float
            Start of the first frame (min after injection).
        **kwargs
            ``half_life`` (min), ``decay_corrected``, ``source``: see :class:`FrameSchedule`.

        Returns
        -------
        FrameSchedule
            The schedule (min).
        """
        d = np.asarray(durations, dtype=float)
        edges = start + np.concatenate([[0.0], np.cumsum(d)])
        return cls(edges[:-1], edges[1:], **kwargs)

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        s, e, src = self.start, self.end, self.source
        if s.size != e.size:
            raise FrameTimingError(
                f"{src}: {s.size} frame starts but {e.size} frame ends; give one of each per frame"
            )
        if np.any(s < -_ATOL_MIN):
            neg = np.flatnonzero(s < -_ATOL_MIN).tolist()
            raise FrameTimingError(
                f"{src}: frame start before injection (negative time) at frame index {neg}; "
                "sv2a needs times relative to the injection: remove frames acquired before "
                "it, and give FrameTimesStart from the injection time"
            )
        dur = e - s
        bad = np.flatnonzero(dur <= 0)
        if bad.size:
            raise FrameTimingError(
                f"{src}: frame duration is zero or negative at frame index {bad.tolist()}; "
                "each frame must end after it starts"
            )
        back = np.flatnonzero(np.diff(s) <= 0)
        if back.size:
            i = int(back[0]) + 1
            raise FrameTimingError(
                f"{src}: frame starts are not sorted: frame {i} starts at {s[i]:.4g} min, "
                f"not after "
                f"frame {i - 1} ({s[i - 1]:.4g} min); sort the frames (and the image volumes)"
            )
        overlap = np.flatnonzero(s[1:] < e[:-1] - _ROUNDING_MIN)
        if overlap.size:
            i = int(overlap[0]) + 1
            raise FrameTimingError(
                f"{src}: frames overlap: frame {i} starts at {s[i]:.4g} min before frame {i - 1} "
                f"ends at {e[i - 1]:.4g} min; check FrameDuration (is it in seconds?)"
            )
        gaps = np.flatnonzero(s[1:] > e[:-1] + _ROUNDING_MIN)
        if gaps.size:
            warnings.warn(
                f"{src}: gaps between frames before frame index {(gaps + 1).tolist()} "
                f"(largest {np.max(s[1:] - e[:-1]):.3g} min); integrals bridge them linearly",
                Sv2aWarning, stacklevel=3,
            )

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Number of frames."""
        return int(self.start.size)

    def __len__(self) -> int:
        return self.n

    @property
    def duration(self) -> np.ndarray:
        """Frame durations (min)."""
        return self.end - self.start

    @property
    def mid(self) -> np.ndarray:
        """Frame mid-times (min)."""
        return 0.5 * (self.start + self.end)

    @property
    def decay_constant(self) -> float:
        """ln 2 / half-life (1/min); raises if no half-life is known."""
        if self.half_life is None:
            raise FrameTimingError(
                f"{self.source}: no half-life known; set TracerRadionuclide in the sidecar "
                "(e.g. 'C11') or pass half_life="
            )
        return float(np.log(2.0) / self.half_life)

    def decay_factors(self) -> np.ndarray:
        """Per-frame factor that decay-corrects a frame average to injection time.

        ``f = λ Δt / (exp(−λ t_s) (1 − exp(−λ Δt)))`` with ``λ`` the decay constant (1/min),
        ``t_s`` the frame start and ``Δt`` its duration (min).

        Returns
        -------
        ndarray, shape (n,)
            Dimensionless factors: multiply uncorrected frame means by them.

        Raises
        ------
        FrameTimingError
            No half-life is known.
        """
        lam = self.decay_constant
        d = self.duration
        return lam * d / (np.exp(-lam * self.start) * -np.expm1(-lam * d))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameSchedule):
            return NotImplemented
        return (self.n == other.n and np.allclose(self.start, other.start)
                and np.allclose(self.end, other.end))

    def __hash__(self) -> int:
        return hash((self.n, tuple(np.round(self.start, 6)), tuple(np.round(self.end, 6))))

    def to_bids(self) -> dict[str, list[float]]:
        """The timing as written in a BIDS sidecar.

        Returns
        -------
        dict
            ``FrameTimesStart`` and ``FrameDuration`` lists in seconds (rounded to µs).
        """
        return {
            "FrameTimesStart": [round(float(x) * 60.0, 6) for x in self.start],
            "FrameDuration": [round(float(x) * 60.0, 6) for x in self.duration],
        }

    def overlap_weights(self, t0: float, t1: float) -> np.ndarray:
        """How much of each frame lies inside a time window.

        Parameters
        ----------
        t0, t1 : float
            Window start and end (min after injection).

        Returns
        -------
        ndarray, shape (n,)
            Minutes of each frame inside ``[t0, t1]`` (0 for frames outside).
        """
        return np.clip(np.minimum(self.end, t1) - np.maximum(self.start, t0), 0.0, None)


def _check_cumulative(fts: np.ndarray, fdur: np.ndarray, source: str) -> None:
    """Detect ``FrameDuration`` holding cumulative end times instead of durations."""
    if fts.size < 3:
        return
    ends_if_cumulative = fdur[:-1]
    looks_cumulative = np.allclose(ends_if_cumulative, fts[1:], rtol=0, atol=1e-3) and np.all(
        np.diff(fdur) > 0
    )
    contiguous = np.allclose(fts[:-1] + fdur[:-1], fts[1:], rtol=0, atol=1e-3)
    if looks_cumulative and not contiguous:
        raise FrameTimingError(
            f"{source}: FrameDuration looks like cumulative frame END times ({fdur[:4].tolist()} "
            "...), not durations: each value equals the next frame's start. Fix: FrameDuration = "
            "end - start, i.e. subtract FrameTimesStart from these values"
        )


#: A dynamic scan read as seconds that ends by this time (s) is too short for a radionuclide
#: of :data:`_LONG_LIVED_MIN` or more: under 0.15 half-lives of C-11.
_SHORTEST_SCAN_S = 180.0
#: Radionuclides living at least this long (min: C-11, F-18, Ga-68, ...) have no dynamic
#: protocol of a few minutes; O-15, Rb-82 and N-13 do and are not judged.
_LONG_LIVED_MIN = 20.0
#: After this many half-lives 2^-20 ~ 1e-6 of the dose is left: nothing to image.
_MAX_HALF_LIVES = 20.0


def _check_minutes_as_seconds(fts: np.ndarray, fdur: np.ndarray, factor: float,
                              half_life_min: float | None, source: str) -> None:
    """Detect frame times written in minutes but read as seconds.

    Fires only when all hold: the times are read as seconds; the radionuclide lives at least
    20 min (C-11, F-18, Ga-68, ...: not O-15, N-13 or Rb-82, whose real dynamic scans last a
    few minutes); at least 2 frames (a dynamic scan); every duration is at most 10; the scan
    ends between 10 and 180 in the given numbers; and, for fewer than 10 frames, the first
    frame starts at 10 or later. Read as seconds that is a dynamic scan that ends within
    3 min of injection, under 0.15 half-lives of C-11 — no kinetic protocol for such tracers
    (and a short one that also starts 10 s or more after injection misses the bolus it could
    only have been meant to catch); read as minutes it is an ordinary 10–180 min protocol of
    frames up to 10 min (e.g. a late 40–90 min window of 5-min frames).
    """
    if half_life_min is None or half_life_min < _LONG_LIVED_MIN or abs(factor - 1 / 60) > 1e-12:
        return
    end = float(np.max(fts + fdur))
    short_ok = fts.size >= 10 or (fts.size >= 2 and float(fts.min()) >= 10.0)
    if short_ok and np.all(fdur <= 10.0) and 10.0 <= end <= _SHORTEST_SCAN_S:
        raise FrameTimingError(
            f"{source}: the frame times look like minutes, not seconds: {fts.size} frames "
            f"ending at {end:g} would be a {end:g} s dynamic scan with frames of at most "
            f"{float(fdur.max()):g} s for a tracer with a {half_life_min:.4g} min half-life; "
            "BIDS FrameTimesStart and FrameDuration are in seconds: multiply both by 60"
        )


def _check_scan_length(fts: np.ndarray, fdur: np.ndarray, factor: float,
                       half_life_min: float | None, source: str) -> None:
    """Refuse a scan that ends more than :data:`_MAX_HALF_LIVES` half-lives after injection.

    After 20 half-lives 2^-20 (about one millionth) of the dose is left: 6.8 h of C-11,
    37 h of F-18, 65 days of Zr-89; the longest real protocols (late F-18 or Zr-89 imaging)
    end after a few half-lives. A 90 min scan written in milliseconds ends after 1500 h; the
    message says "milliseconds" when the end divided by 1000 is a scan of 1 min or more
    within the limit.
    """
    if half_life_min is None:
        return
    end_min = float(np.max(fts + fdur)) * factor
    limit = _MAX_HALF_LIVES * half_life_min
    if end_min <= limit:
        return
    hint = ("the times look like milliseconds: divide FrameTimesStart and FrameDuration by "
            "1000 (BIDS wants seconds)" if 1.0 <= end_min / 1000.0 <= limit else
            "check the unit of FrameTimesStart and FrameDuration (BIDS: seconds)")
    raise FrameTimingError(
        f"{source}: the scan ends {end_min / 60.0:.4g} h after injection, "
        f"{end_min / half_life_min:.3g} half-lives of a {half_life_min:.4g} min radionuclide "
        f"(at most {_MAX_HALF_LIVES:g} are plausible: then about a millionth of the dose is "
        f"left); {hint}"
    )


def frames_from_counts(n_by_seconds: Iterable[tuple[int, float]],
                       **kwargs: Any) -> FrameSchedule:
    """Contiguous frames from a protocol written as (count, duration) pairs.

    Parameters
    ----------
    n_by_seconds : iterable of (int, float)
        Frame counts and their duration in seconds, e.g. ``[(6, 10), (3, 20), (14, 300)]``.
    **kwargs
        ``start`` (min) and the :class:`FrameSchedule` options.

    Returns
    -------
    FrameSchedule
        The schedule (min).

    Examples
    --------
    >>> frames_from_counts([(2, 30), (1, 60)]).duration.tolist()
    [0.5, 0.5, 1.0]
    """
    durs = np.concatenate([np.full(int(n), float(s) / 60.0) for n, s in n_by_seconds])
    return FrameSchedule.from_durations(durs, **kwargs)
