"""Arterial (or image-derived) input functions.

:class:`InputFunction` holds the measured blood curves in minutes and kBq/mL:

* ``plasma`` -- the metabolite-corrected (parent) plasma curve, the input of plasma-input models;
* ``whole_blood`` -- whole-blood activity, used for the blood-volume term ``vB``;
* ``total_plasma`` and ``parent_fraction`` when they were measured.

Curves are interpolated linearly; before the first sample the curve rises linearly from 0 at
t = 0 (injection), which is what kinfitr and PMOD do. After the last sample the curve is held
at its last value.

Processing helpers (all times in minutes):

* :meth:`InputFunction.on_grid` -- the curves on a uniform fine grid (default 1 s);
* :func:`fit_parent_fraction` -- parent-fraction models fitted to HPLC samples
  (``"exp_plateau"`` ``f = a + (1 − a) e^{−t/τ}``, ``"hill"`` ``f = 1 − a t^b/(c + t^b)``,
  ``"biexp"``), :meth:`InputFunction.with_parent_model` applies one to total plasma;
* :meth:`InputFunction.shifted` -- input delay (estimated by
  :func:`sv2a.models.one_tcm.estimate_delay`);
* :func:`dispersion_correct` -- autosampler dispersion correction with a known τ;
* :meth:`InputFunction.check_covers` / :func:`coverage` -- does the input cover the scan;
* :func:`image_derived_input` -- an input from a blood pool in the image (:mod:`sv2a.idif`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from .errors import FitError, InputFunctionError, Sv2aWarning, UnitsError

FloatArray = NDArray[np.float64]

__all__ = ["InputFunction", "ParentFractionFit", "fit_parent_fraction", "dispersion_correct",
           "coverage", "image_derived_input", "check_sampling", "check_tissue_plasma",
           "TISSUE_PLASMA_RATIO", "BLOOD_OVERRUN", "BLOOD_MAX_MIN", "LATE_FIRST_SAMPLE_MIN",
           "EARLY_GAP_MIN", "EARLY_GAP_START_MIN"]

#: Accepted ratio of late tissue activity to late metabolite-corrected plasma (mL/cm3; see
#: :func:`check_tissue_plasma`). Late in a scan this ratio is close to the volume of
#: distribution VT (a little above it while the tracer still washes out), and VT of brain
#: PET tracers lies between about 0.3 and 100 mL/cm3 (SV2A tracers 3-60). The bounds are
#: about a factor 6 below and 20 above that: a PET or blood column in Bq/mL labelled kBq/mL
#: (or the reverse), a factor 1000, moves any ratio above 2 over the upper bound and any
#: ratio below 50 under the lower one (an SV2A mean over regions of 5-40 ends at 0.005-0.04
#: or 5000-40000). A factor 37 (kBq/mL vs uCi/mL) or 27 (vs nCi/mL) cannot be told from
#: tracer-to-tracer differences by a range valid for every tracer; sv2a's other unit checks
#: (SUV range of the image, plasma/whole-blood ratio of a recording) are the ones for them.
TISSUE_PLASMA_RATIO = (0.05, 2000.0)

#: Blood samples may run past the end of the scan by at most this factor (unitless; see
#: :meth:`InputFunction.check_covers`). Blood longer than the scan is normal (the scan may be
#: truncated for a time-stability analysis, e.g. 30 of 120 min, a factor 4); times in
#: seconds labelled minutes give a factor 60, milliseconds labelled seconds 1000.
BLOOD_OVERRUN = 10.0

#: ... and only when they also run past this time (min after injection): 10 h, 30 half-lives
#: of carbon-11 and 5.5 of fluorine-18, longer than any blood recording of a brain PET scan.
#: A model fitted on an early window (e.g. the first 8 min, for K1) of a scan with 90 min of
#: blood is thus not refused; seconds labelled minutes of a 30-min or longer recording are.
BLOOD_MAX_MIN = 600.0

#: First blood sample later than this (min after injection) while the plasma curve only falls
#: after it: the bolus peak was not sampled (:func:`check_sampling`). A bolus peaks within
#: about 0.5-2 min; linear interpolation from 0 at injection to a first sample at 5 min
#: misses most of the early area under the curve (Logan VT +37 % on the catalogue phantom).
LATE_FIRST_SAMPLE_MIN = 2.0

#: Gaps between blood samples longer than this (min) that start in the first
#: ``EARLY_GAP_START_MIN`` minutes draw a warning (:func:`check_sampling`). Sampling schedules
#: put samples every few seconds to 2 min in the first 10 min, where the curve falls fastest
#: (the phantom's widest early gap is 5 min, from 10 to 15 min); a gap from 2 to 20 min
#: moves the plasma integral enough to bias VT by about -20 %.
EARLY_GAP_MIN = 5.0
EARLY_GAP_START_MIN = 10.0


def _curve(name: str, t: npt.ArrayLike, y: npt.ArrayLike,
           source: str) -> tuple[FloatArray, FloatArray]:
    """Validated curve: finite samples sorted by time, no duplicates, t >= 0, y >= 0."""
    return _check_curve(name, np.asarray(t, dtype=float).reshape(-1),
                        np.asarray(y, dtype=float).reshape(-1), source)


def _check_curve(name: str, t: FloatArray, y: FloatArray,
                 source: str) -> tuple[FloatArray, FloatArray]:
    """:func:`_curve` on 1-D float arrays."""
    if t.size != y.size:
        raise InputFunctionError(
            f"{source}: {name} has {y.size} values but its time vector has {t.size}; "
            "give one value per sample time"
        )
    keep = np.isfinite(t) & np.isfinite(y)  # 'n/a' samples are dropped, not zero-filled
    t, y = t[keep], y[keep]
    if t.size < 2:
        raise InputFunctionError(
            f"{source}: {name} has fewer than 2 valid samples; an input function needs a curve"
        )
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    if np.any(np.diff(t) == 0):
        t, y = _average_replicates(name, t, y, source)
    if np.any(t < 0):
        t, y = _drop_background(name, t, y, source)
    if np.any(y < -1e-3 * max(np.max(np.abs(y)), 1e-12)):
        i = int(np.argmin(y))
        raise InputFunctionError(
            f"{source}: {name} has negative activity ({y[i]:.4g} kBq/mL at {t[i]:.3g} min); "
            "check the units and the background subtraction"
        )
    return t, y


#: Replicate draws at one time are averaged when they agree within this relative spread
#: (duplicate counting); more apart, one time is probably mistyped, and the curve is refused.
REPLICATE_SPREAD = 0.2
#: Samples before the injection (an autosampler started early, a background draw) are left
#: out when none exceeds this fraction of the curve's peak; a higher one means the times are
#: shifted, and the curve is refused.
BACKGROUND_FRACTION = 0.05


def _average_replicates(name: str, t: FloatArray, y: FloatArray,
                        source: str) -> tuple[FloatArray, FloatArray]:
    """One sample per time: replicates averaged (with a warning) when they agree."""
    times, inverse = np.unique(t, return_inverse=True)
    out = np.zeros(times.size)
    for k in np.flatnonzero(np.bincount(inverse) > 1):
        vals = y[inverse == k]
        spread = (vals.max() - vals.min()) / max(abs(vals.mean()), 1e-12)
        if spread > REPLICATE_SPREAD:
            raise InputFunctionError(
                f"{source}: {name} has {vals.size} samples at {times[k]:.4g} min that disagree "
                f"({', '.join(f'{v:.4g}' for v in vals)} kBq/mL); is one time mistyped? Fix it "
                "or average true replicate draws")
    np.add.at(out, inverse, y)
    out /= np.bincount(inverse)
    warnings.warn(f"{source}: {name}: replicate samples at the same time were averaged "
                  f"({t.size - times.size} row(s))", Sv2aWarning, stacklevel=4)
    return times, out


def _drop_background(name: str, t: FloatArray, y: FloatArray,
                     source: str) -> tuple[FloatArray, FloatArray]:
    """Samples before the injection left out (with a warning) when they are background."""
    before = t < 0
    if "fraction" in name:  # a fraction before the injection says nothing: left out
        return t[~before], y[~before]
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if np.any(y[before] > BACKGROUND_FRACTION * peak):
        i = int(np.flatnonzero(before)[np.argmax(y[before])])
        raise InputFunctionError(
            f"{source}: {name} has {y[i]:.4g} kBq/mL at {t[i]:.3g} min, before the injection "
            f"and above {BACKGROUND_FRACTION:.0%} of the peak: are the times shifted? Times "
            "must be relative to the injection")
    warnings.warn(f"{source}: {name}: {int(before.sum())} sample(s) before the injection "
                  "(background) left out", Sv2aWarning, stacklevel=4)
    return t[~before], y[~before]


def _interp(tq: npt.ArrayLike, t: FloatArray, y: FloatArray) -> FloatArray:
    """Linear interpolation, rising from 0 at t = 0 and held after the last sample."""
    tqa = np.asarray(tq, dtype=float)
    if t[0] > 0:
        t = np.concatenate([[0.0], t])
        y = np.concatenate([[0.0], y])
    out: FloatArray = np.interp(tqa, t, y, left=0.0, right=y[-1])
    return out


@dataclass(frozen=True, eq=False)
class InputFunction:
    """Blood input of a PET scan (minutes, kBq/mL).

    Parameters
    ----------
    time : array_like
        Sample times (min after injection) of ``plasma``.
    plasma : array_like
        Metabolite-corrected (parent) plasma activity (kBq/mL). If ``parent_fraction`` is also
        given, ``plasma`` is **total** plasma and the input is ``plasma * parent_fraction``.
    whole_blood : array_like, optional
        Whole-blood activity (kBq/mL), for the ``vB`` term of compartment models.
    parent_fraction : array_like, optional
        Parent fraction (0..1) at ``time``.
    whole_blood_time : array_like, optional
        Sample times of ``whole_blood`` when they differ from ``time``.
    meta : dict, optional
        Provenance (files, original units).

    Examples
    --------
    >>> import numpy as np
    >>> inp = InputFunction(time=[0.5, 1, 5, 60], plasma=[50, 30, 5, 1])
    >>> float(inp.plasma_at(0.25))
    25.0
    """

    time: Any
    plasma: Any
    whole_blood: Any = None
    parent_fraction: Any = None
    whole_blood_time: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "input function"
    #: ``(time, total plasma)`` when built with ``parent_fraction`` (min, kBq/mL), else None.
    total_plasma: tuple[FloatArray, FloatArray] | None = field(init=False, repr=False,
                                                               default=None)
    #: ``(time, measured parent fraction)`` when given, else None.
    _parent: tuple[FloatArray, FloatArray] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        src = self.source
        raw_time = np.asarray(self.time, dtype=float).reshape(-1)
        if self.parent_fraction is not None:
            pf = np.asarray(self.parent_fraction, dtype=float).reshape(-1)
            tot = np.asarray(self.plasma, dtype=float).reshape(-1)
            if pf.size != tot.size:
                raise InputFunctionError(
                    f"{src}: parent_fraction has {pf.size} values but plasma has {tot.size}"
                )
            finite = pf[np.isfinite(pf)]
            if finite.size and (finite.min() < 0 or finite.max() > 1.0 + 1e-6):
                raise InputFunctionError(
                    f"{src}: parent_fraction must lie in [0, 1] (found {finite.min():.3g}.."
                    f"{finite.max():.3g}); percentages must be divided by 100"
                )
            if finite.size and finite.max() == 0:
                raise InputFunctionError(
                    f"{src}: the parent fraction is 0 at every sample, so the metabolite-"
                    "corrected plasma is 0 and no plasma-input model can be fitted; check the "
                    "metabolite_parent_fraction column (fractions 0..1, e.g. 1 at injection)"
                )
            tt, tot_c = _curve("total plasma", self.time, tot, src)
            tp, pf_c = _curve("parent fraction", self.time, pf, src)
            object.__setattr__(self, "total_plasma", (tt, tot_c))
            object.__setattr__(self, "_parent", (tp, pf_c))
            t, y = _curve("plasma", self.time, tot * pf, src)
        else:
            object.__setattr__(self, "total_plasma", None)
            object.__setattr__(self, "_parent", None)
            t, y = _curve("plasma", self.time, self.plasma, src)
        object.__setattr__(self, "time", t)
        object.__setattr__(self, "plasma", y)
        if self.whole_blood is not None:
            wt = raw_time if self.whole_blood_time is None else self.whole_blood_time
            tb, yb = _curve("whole blood", wt, self.whole_blood, src)
            object.__setattr__(self, "whole_blood_time", tb)
            object.__setattr__(self, "whole_blood", yb)

    # ------------------------------------------------------------------ evaluation
    @property
    def t_end(self) -> float:
        """Time of the last plasma sample (min)."""
        return float(self.time[-1])

    def plasma_at(self, t: npt.ArrayLike) -> FloatArray:
        """Metabolite-corrected plasma at times ``t``, linear interpolation.

        Parameters
        ----------
        t : array_like
            Times (min after injection).

        Returns
        -------
        np.ndarray
            Plasma activity (kBq/mL), shape of ``t``.
        """
        return _interp(t, self.time, self.plasma)

    def whole_blood_at(self, t: npt.ArrayLike) -> FloatArray:
        """Whole blood at ``t``; falls back to plasma when not measured.

        Parameters
        ----------
        t : array_like
            Times (min after injection).

        Returns
        -------
        np.ndarray
            Whole-blood activity (kBq/mL), shape of ``t``.
        """
        if self.whole_blood is None:
            return self.plasma_at(t)
        return _interp(t, self.whole_blood_time, self.whole_blood)

    def parent_fraction_at(self, t: npt.ArrayLike) -> FloatArray | None:
        """Measured parent fraction at ``t`` (linear interpolation).

        Parameters
        ----------
        t : array_like
            Times (min after injection).

        Returns
        -------
        np.ndarray or None
            Parent fraction (0..1) at ``t``, or None if no fractions were measured.
        """
        if self._parent is None:
            return None
        tp, pf = self._parent
        out: FloatArray = np.interp(np.asarray(t, dtype=float), tp, pf)
        return out

    @property
    def has_whole_blood(self) -> bool:
        """Whether whole blood was measured (otherwise plasma stands in for it)."""
        return self.whole_blood is not None

    def on_grid(self, t_end: float, step: float = 1.0 / 60.0, *,
                delay: float = 0.0) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Curves on the uniform grid ``t = 0, step, ... >= t_end`` (min).

        Parameters
        ----------
        t_end : float
            Last time the grid must reach (min).
        step : float
            Grid step (min), default 1 s.
        delay : float
            Input delay (min); the curves are those of :meth:`shifted`.

        Returns
        -------
        t : np.ndarray
            Grid times (min).
        plasma, whole_blood : np.ndarray
            Activities (kBq/mL) at ``t``; whole blood falls back to plasma.
        """
        n = int(np.ceil(float(t_end) / step)) + 1
        t = np.arange(n, dtype=np.float64) * step
        return t, self.plasma_at(t - delay), self.whole_blood_at(t - delay)

    def integral_at(self, t: npt.ArrayLike) -> FloatArray:
        """``∫_0^t Cp`` of the piecewise-linear plasma curve, exactly.

        Parameters
        ----------
        t : array_like
            Times (min after injection); negative times give 0.

        Returns
        -------
        np.ndarray
            Running integral of the plasma (kBq·min/mL), shape of ``t``.

        Examples
        --------
        >>> inp = InputFunction(time=[1.0, 2.0], plasma=[10.0, 10.0])
        >>> inp.integral_at([1.0, 2.0, 3.0]).tolist()
        [5.0, 15.0, 25.0]
        """
        tt, yy = self.time, self.plasma
        if tt[0] > 0:
            tt = np.concatenate([[0.0], tt])
            yy = np.concatenate([[0.0], yy])
        cum = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(tt) * (yy[1:] + yy[:-1]))])
        tq = np.clip(np.asarray(t, dtype=float), 0.0, None)
        inside = np.interp(tq, tt, cum)
        # exact within a segment: add the quadratic part of the trapezoid
        k = np.clip(np.searchsorted(tt, tq, side="right") - 1, 0, tt.size - 2)
        h = tt[k + 1] - tt[k]
        u = np.clip(tq - tt[k], 0.0, h)
        slope = (yy[k + 1] - yy[k]) / h
        exact = cum[k] + yy[k] * u + 0.5 * slope * u**2
        out: FloatArray = np.where(tq <= tt[-1], exact, cum[-1] + yy[-1] * (tq - tt[-1]))
        del inside
        return out

    def shifted(self, delay: float) -> InputFunction:
        """The input delayed by ``delay`` min (``Cp(t − delay)``, samples moved later).

        Samples moved before t = 0 are dropped.

        Parameters
        ----------
        delay : float
            Delay (min); negative values move the samples earlier.

        Returns
        -------
        InputFunction
            The shifted plasma (and whole blood) curves (min, kBq/mL); ``meta["delay_min"]``
            records the delay.
        """
        def mv(t: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
            ts = np.asarray(t, float) + delay
            keep = ts >= 0
            return ts[keep], np.asarray(y, float)[keep]

        t, p = mv(self.time, self.plasma)
        kw: dict[str, FloatArray] = {}
        if self.whole_blood is not None:
            tb, b = mv(self.whole_blood_time, self.whole_blood)
            kw = {"whole_blood": b, "whole_blood_time": tb}
        return InputFunction(time=t, plasma=p, meta={**self.meta, "delay_min": delay},
                             source=f"{self.source} (shifted {delay:+.3g} min)", **kw)

    def with_parent_model(self, fit: ParentFractionFit) -> InputFunction:
        """Metabolite-corrected input = total plasma × fitted parent fraction.

        Requires that this input was built with ``parent_fraction=`` (``plasma`` = total).

        Parameters
        ----------
        fit : ParentFractionFit
            Parent-fraction model, e.g. from :func:`fit_parent_fraction`.

        Returns
        -------
        InputFunction
            Total plasma × ``fit.predict`` at the total-plasma sample times (min, kBq/mL);
            whole blood is kept.

        Raises
        ------
        InputFunctionError
            This input has no total-plasma curve.
        """
        if self.total_plasma is None:
            raise InputFunctionError(
                f"{self.source}: no total-plasma curve; build the InputFunction with "
                "plasma=<total plasma> and parent_fraction=<measured fractions>"
            )
        tt, tot = self.total_plasma
        kw: dict[str, Any] = {}
        if self.whole_blood is not None:
            kw = {"whole_blood": self.whole_blood, "whole_blood_time": self.whole_blood_time}
        return InputFunction(time=tt, plasma=tot * fit.predict(tt),
                             meta={**self.meta, "parent_model": fit.model,
                                   "parent_params": fit.params.tolist()},
                             source=f"{self.source} ({fit.model} parent fraction)", **kw)

    def check_covers(self, t_end: float, *, tolerance: float = 0.05,
                     what: str = "the scan") -> None:
        """Raise :class:`InputFunctionError` if samples stop before ``t_end`` (min), or run
        on far past it (:data:`BLOOD_OVERRUN` times): both mean a time unit mix-up or a
        recording of another scan.

        Parameters
        ----------
        t_end : float
            End of the scan (min).
        tolerance : float
            Fraction of ``t_end`` the input may stop short (it is then held at its last value).
        what : str
            What must be covered, for the message.

        Returns
        -------
        None

        Raises
        ------
        InputFunctionError
            The last sample is before ``t_end * (1 - tolerance)``, or after both
            ``t_end * BLOOD_OVERRUN`` and :data:`BLOOD_MAX_MIN`.
        """
        if t_end > 0 and self.t_end > max(t_end * BLOOD_OVERRUN, BLOOD_MAX_MIN):
            raise InputFunctionError(
                f"{self.source}: the blood samples run until {self.t_end:.4g} min but "
                f"{what} ends at {t_end:.3g} min ({self.t_end / t_end:.3g} times longer; "
                f"more than {BLOOD_OVERRUN:g} times and {BLOOD_MAX_MIN:g} min is not a real "
                "recording): the blood "
                "times are probably in a smaller unit than their label (seconds labelled "
                "'min', or milliseconds labelled 's'); fix 'Units' of 'time' in the blood "
                "sidecar (or convert the times)"
            )
        if self.t_end < t_end * (1.0 - tolerance):
            hint = ""
            if self.t_end * 20 < t_end:
                hint = (" (blood times in minutes or hours labelled as seconds? check 'Units' "
                        "of 'time' in the blood sidecar)")
            raise InputFunctionError(
                f"{self.source}: the input function ends at {self.t_end:.3g} min but {what} "
                f"lasts until {t_end:.3g} min{hint}; provide blood samples covering the whole "
                "scan or truncate the TACs (e.g. tacs.sel(frame=tacs.frame_end <= "
                f"{self.t_end:.3g}))"
            )


def check_sampling(inp: InputFunction) -> None:
    """Refuse a measured input whose sampling missed the bolus peak; warn about early gaps.

    A first plasma sample later than :data:`LATE_FIRST_SAMPLE_MIN` after injection with the
    highest value of the curve at that first sample means the peak was not sampled: the
    input rises linearly from 0 at injection to that sample, which leaves out most of the
    early area under the curve, so every plasma-input outcome is biased (by tens of %). This
    is refused rather than warned about: no model option repairs it, and an image-derived
    input or the autosampler recording (``merge``) covers the peak. A curve still rising
    after a late first sample (a slow infusion) is accepted. A gap longer than
    :data:`EARLY_GAP_MIN` starting within the first :data:`EARLY_GAP_START_MIN` minutes,
    where the curve falls fastest, draws an :class:`~sv2a.errors.Sv2aWarning` (the result is
    usable but biased; like a gap between frames).

    Parameters
    ----------
    inp : InputFunction
        A measured input (min, kBq/mL).

    Returns
    -------
    None

    Raises
    ------
    InputFunctionError
        The first sample is late and the curve falls from it on.
    """
    t, y = inp.time, inp.plasma
    if t[0] > LATE_FIRST_SAMPLE_MIN and int(np.argmax(y)) == 0:
        raise InputFunctionError(
            f"{inp.source}: the first blood sample is at {t[0]:.3g} min after injection and "
            "the plasma curve only falls after it, so the bolus peak (within about 2 min of "
            "injection) was not sampled and the input's area under the curve would be "
            "wrong; add the early samples (or the autosampler recording), or use an "
            "image-derived input (or, if the times are seconds, fix 'Units' of 'time' in the "
            "blood sidecar)"
        )
    gaps = np.diff(t)
    early = np.flatnonzero((gaps > EARLY_GAP_MIN) & (t[:-1] < EARLY_GAP_START_MIN))
    if early.size:
        i = int(early[0])
        warnings.warn(
            f"{inp.source}: a gap in blood sampling from {t[i]:.3g} to {t[i + 1]:.3g} min "
            f"(longer than {EARLY_GAP_MIN:g} min in the first {EARLY_GAP_START_MIN:g} min, "
            "where the curve falls fastest): the input is interpolated linearly across it and "
            "plasma-input outcomes may be biased; check for missing rows",
            Sv2aWarning, stacklevel=3)


def check_tissue_plasma(inp: InputFunction, start: npt.ArrayLike, end: npt.ArrayLike,
                        tissue: npt.ArrayLike, *, what: str = "the TACs",
                        tissue_units: str = "kBq/mL") -> float:
    """Refuse tissue and plasma whose late ratio no brain tracer can have: a unit error.

    The ratio is the mean tissue activity over the rows (regions or voxels) and the frames of
    the last third of the scan (frame mid-time after 2/3 of its end, duration weighted)
    divided by the metabolite-corrected plasma at the same frame mid-times. Late in a scan
    it is close to VT; outside :data:`TISSUE_PLASMA_RATIO` (0.05-2000 mL/cm3, see there for
    why) either the PET image or the blood is in another unit than its label says, which
    the plasma/whole-blood check of a recording and the SUV check of an image cannot see
    when both blood columns are wrong together or the image has no dose or weight.

    Parameters
    ----------
    inp : InputFunction
        The plasma input (min, kBq/mL).
    start, end : array_like
        Frame start and end times (min).
    tissue : array_like
        Tissue activity (kBq/mL), shape ``(n_rows, n_frames)`` or ``(n_frames,)``.
    what : str
        What the tissue is, for the message.
    tissue_units : str
        The unit label of the image, for the message.

    Returns
    -------
    float
        The ratio (mL/cm3), NaN when it cannot be computed (no positive late tissue or
        plasma).

    Raises
    ------
    UnitsError
        The ratio lies outside :data:`TISSUE_PLASMA_RATIO`.
    """
    s = np.asarray(start, dtype=float).reshape(-1)
    e = np.asarray(end, dtype=float).reshape(-1)
    tis = np.atleast_2d(np.asarray(tissue, dtype=float))
    mid = 0.5 * (s + e)
    late = mid >= (2.0 / 3.0) * float(e[-1])
    if not late.any():
        late[-1] = True
    dur = (e - s)[late]
    row = np.nanmean(tis[:, late], axis=0)
    plasma = inp.plasma_at(mid[late])
    ok = np.isfinite(row) & np.isfinite(plasma) & (dur > 0)
    if not ok.any() or dur[ok].sum() <= 0:
        return float("nan")
    c_t = float(np.sum(row[ok] * dur[ok]) / dur[ok].sum())
    c_p = float(np.sum(plasma[ok] * dur[ok]) / dur[ok].sum())
    if not (c_t > 0 and c_p > 0):
        return float("nan")
    ratio = c_t / c_p
    lo, hi = TISSUE_PLASMA_RATIO
    if lo <= ratio <= hi:
        return ratio
    units = inp.meta.get("units", {}) if isinstance(inp.meta, dict) else {}
    blood = ", ".join(f"{k} {v!r}" for k, v in units.items()) or "as given"
    side = ("the blood values are too high or the PET values too low" if ratio < lo else
            "the blood values are too low or the PET values too high")
    raise UnitsError(
        f"{what}: late tissue activity ({c_t:.4g} {tissue_units}, PET image) is {ratio:.3g} "
        f"times the late metabolite-corrected plasma ({c_p:.4g} kBq/mL from {inp.source}; "
        f"blood Units {blood}) over frames from {float(s[late][0]):.3g} to {float(e[-1]):.3g} "
        f"min; this ratio is close to VT, 0.3-100 mL/cm3 for brain tracers, and lies outside "
        f"the accepted {lo:g}-{hi:g}: {side}, so one of them is in another unit than its label "
        "(e.g. Bq/mL labelled kBq/mL, a factor 1000); fix 'Units' in the PET sidecar or of "
        "the blood columns in the blood sidecar"
    )


# --------------------------------------------------------------------------- parent fraction
_PF_MODELS = ("exp_plateau", "hill", "biexp")


def _pf_eval(model: str, p: FloatArray, t: npt.ArrayLike) -> FloatArray:
    """Parent-fraction model ``model`` with parameters ``p`` at ``t`` (min, clipped at 0)."""
    tc = np.clip(np.asarray(t, dtype=float), 0.0, None)
    out: FloatArray
    if model == "exp_plateau":
        a, tau = p
        out = a + (1 - a) * np.exp(-tc / tau)
        return out
    if model == "hill":
        a, b, c = p
        tb = tc**b
        out = 1 - a * tb / (c + tb)
        return out
    a, t1, t2 = p  # biexp: f = a e^{-t/t1} + (1 − a) e^{-t/t2}
    out = a * np.exp(-tc / t1) + (1 - a) * np.exp(-tc / t2)
    return out


@dataclass(frozen=True)
class ParentFractionFit:
    """A fitted parent-fraction model (times in minutes).

    Attributes
    ----------
    model : str
        ``"exp_plateau"`` (``f = a + (1 − a) e^{−t/τ}``, params ``a, τ``), ``"hill"``
        (``f = 1 − a t^b/(c + t^b)``, params ``a, b, c``; Hill model of PMOD/kinfitr) or
        ``"biexp"`` (``f = a e^{−t/τ1} + (1 − a) e^{−t/τ2}``).
    params : np.ndarray
        Fitted parameters in that order.
    rss : float
        Residual sum of squares at the samples.
    """

    model: str
    params: FloatArray
    rss: float

    def predict(self, t: npt.ArrayLike) -> FloatArray:
        """Parent fraction at ``t``, clipped to [0, 1].

        Parameters
        ----------
        t : array_like
            Times (min after injection).

        Returns
        -------
        np.ndarray
            Parent fraction (0..1), shape of ``t``.
        """
        return np.clip(_pf_eval(self.model, self.params, t), 0.0, 1.0)


def fit_parent_fraction(time: npt.ArrayLike, fraction: npt.ArrayLike,
                        model: str = "exp_plateau", *,
                        source: str = "parent fraction") -> ParentFractionFit:
    """Fit a parent-fraction model to measured fractions (HPLC) by least squares.

    Parameters
    ----------
    time : array_like
        Sample times (min after injection).
    fraction : array_like
        Parent fractions (0..1). NaN samples are dropped.
    model : ``"exp_plateau" | "hill" | "biexp"``
        See :class:`ParentFractionFit`. The exponential-plateau model is the default: the
        [11C]UCB-J parent fraction falls with a time constant of about 9 min to a plateau near
        20 % (``f ≈ 0.20 + 0.80 e^{−t/9}``).
    source : str
        Where the samples came from, for messages.

    Returns
    -------
    ParentFractionFit
        The best of several least-squares fits from different starting points (times in min).

    Raises
    ------
    InputFunctionError
        Fewer samples than parameters + 1, fractions outside [0, 1], or an unknown model.
    FitError
        No start produced a fit.

    Examples
    --------
    >>> t = np.array([0.0, 5.0, 10.0, 20.0, 40.0, 60.0])
    >>> fit = fit_parent_fraction(t, 0.2 + 0.8 * np.exp(-t / 9.0))
    >>> [round(float(v), 3) for v in fit.params]
    [0.2, 9.0]
    """
    from scipy.optimize import least_squares

    if model not in _PF_MODELS:
        raise InputFunctionError(
            f"{source}: unknown parent-fraction model {model!r}; use one of {_PF_MODELS}"
        )
    t = np.asarray(time, dtype=float).ravel()
    f = np.asarray(fraction, dtype=float).ravel()
    keep = np.isfinite(t) & np.isfinite(f)
    t, f = t[keep], f[keep]
    npar = 2 if model == "exp_plateau" else 3
    if t.size < npar + 1:
        raise InputFunctionError(
            f"{source}: {t.size} valid samples; the {model} model needs at least {npar + 1}"
        )
    if f.min() < -0.01 or f.max() > 1.01:
        raise InputFunctionError(
            f"{source}: parent fractions must lie in [0, 1] (found {f.min():.3g}..{f.max():.3g}); "
            "divide percentages by 100"
        )
    tmax = max(float(t.max()), 1.0)
    if model == "exp_plateau":
        starts: list[FloatArray] = [np.array([a, tau]) for a in (0.05, 0.2, 0.5)
                                    for tau in (2.0, 10.0, 40.0)]
        lb, ub = [0.0, 1e-3], [1.0, 10 * tmax]
    elif model == "hill":
        starts = [np.array([a, b, c]) for a in (0.7, 0.95) for b in (1.0, 2.5)
                  for c in (10.0, 100.0, 1000.0)]
        lb, ub = [0.0, 0.1, 1e-6], [1.0, 10.0, 1e8]
    else:
        starts = [np.array([a, t1, t2]) for a in (0.3, 0.7) for t1 in (1.0, 5.0)
                  for t2 in (30.0, 300.0)]
        lb, ub = [0.0, 1e-3, 1e-3], [1.0, 10 * tmax, 1e4]
    best: Any = None  # scipy.optimize.OptimizeResult (untyped)
    for x0 in starts:
        x0 = np.clip(x0, np.array(lb) + 1e-9, np.array(ub) - 1e-9)
        res = least_squares(lambda p: _pf_eval(model, p, t) - f, x0, bounds=(lb, ub))
        if best is None or res.cost < best.cost:
            best = res
    if best is None:  # only without starting points; every model has some
        raise FitError(f"{source}: no starting point for the {model} parent-fraction fit")
    return ParentFractionFit(model=model, params=best.x, rss=float(2 * best.cost))


# --------------------------------------------------------------------------- dispersion, delay
def dispersion_correct(time: npt.ArrayLike, values: npt.ArrayLike, tau: float, *,
                       smooth: float | None = None) -> FloatArray:
    """Correct autosampler (catheter) dispersion with a known time constant.

    The measured curve is the true one convolved with ``(1/τ) e^{−t/τ}``, so
    ``C_true(t) = C_meas(t) + τ dC_meas/dt`` (Iida 1986 JCBFM; Meyer 1989). The derivative is
    taken by central differences after an optional moving-average smoothing over ``smooth``
    min (recommended for noisy 1-s data, e.g. ``smooth=3 * tau``).

    Parameters
    ----------
    time : array_like
        Sample times (min), increasing.
    values : array_like
        Measured activity (kBq/mL).
    tau : float
        Dispersion time constant (min); e.g. 2.6 s = 0.0433 min.
    smooth : float, optional
        Width (min) of the moving average applied before differentiation.

    Returns
    -------
    np.ndarray
        Dispersion-corrected activity (kBq/mL) at ``time``.

    Raises
    ------
    InputFunctionError
        Fewer than 3 samples, unequal lengths, times not increasing, or a negative ``tau``.
    """
    t = np.asarray(time, dtype=float)
    y = np.asarray(values, dtype=float)
    if t.size != y.size or t.size < 3:
        raise InputFunctionError("dispersion_correct: time and values need >= 3 equal-length "
                                 "samples")
    if np.any(np.diff(t) <= 0):
        raise InputFunctionError("dispersion_correct: times must be strictly increasing")
    if not np.isfinite(tau) or tau < 0:
        raise InputFunctionError(f"dispersion_correct: tau must be >= 0 min, got {tau!r}")
    ys = y
    if smooth:
        dt = float(np.median(np.diff(t)))
        k = max(int(round(smooth / dt)), 1)
        if k > 1:
            kern = np.ones(k) / k
            pad = np.pad(y, (k // 2, k - 1 - k // 2), mode="edge")
            ys = np.convolve(pad, kern, mode="valid")
    out: FloatArray = ys + tau * np.gradient(ys, t)
    return out


def coverage(inp: InputFunction, t_start: float, t_end: float) -> dict[str, Any]:
    """How well the input covers a scan ``[t_start, t_end]`` (min).

    Parameters
    ----------
    inp : InputFunction
        The input function (min, kBq/mL).
    t_start, t_end : float
        Start and end of the scan (min after injection).

    Returns
    -------
    dict
        ``covers_end`` (bool), ``gap_end_min`` (time the input must be held constant after its
        last sample), ``first_sample_min``, ``peak_time_min``, ``max_gap_min`` (largest
        interval between samples), ``samples_before_peak`` (the index of the peak sample) and
        ``scan_start_min``; times in min.
    """
    t = inp.time
    gaps = np.diff(t)
    ipk = int(np.argmax(inp.plasma))
    return {
        "covers_end": bool(inp.t_end >= t_end),
        "gap_end_min": float(max(t_end - inp.t_end, 0.0)),
        "first_sample_min": float(t[0]),
        "peak_time_min": float(t[ipk]),
        "max_gap_min": float(gaps.max()) if gaps.size else float("nan"),
        "samples_before_peak": ipk,
        "scan_start_min": float(t_start),
    }


# --------------------------------------------------------------------------- image-derived
def image_derived_input(pet: Any, mask: Any = None, *, fwhm: float | tuple[float, ...],
                        search: Any = None, shell_mm: float | None = None,
                        core_mm: float | None = None,
                        early: tuple[float, float] = (0.0, 0.5), threshold: float = 0.5,
                        min_ml: float | None = None, max_ml: float | None = None,
                        population: str | None = None, species: str | None = None,
                        parent_fraction: Any = None,
                        blood_to_plasma: Any = None) -> InputFunction:
    """Image-derived input function (IDIF) from a blood pool in the dynamic image.

    The blood ROI is given or found as the hottest early connected component; its activity is
    corrected for partial volume and spill-in from the surrounding tissue with a two-region
    geometric transfer matrix (Rousset et al. 1998, J Nucl Med 39:904; the recovery +
    spill-in model of Fang & Muzic 2008, J Nucl Med 49:606), then converted to plasma with
    population curves. See :mod:`sv2a.idif` for the model and every option
    (:func:`sv2a.idif.idif_curves` returns the intermediate curves, the ROI and the GTM).

    Parameters
    ----------
    pet : DynamicPET
        Dynamic image from injection (kBq/mL, decay corrected, frames in min).
    mask : ndarray of bool, optional
        Blood ROI on the PET grid (e.g. ``atlas.labels == <left ventricle>``); default found
        automatically inside ``search``.
    fwhm : float or (float, float, float)
        Spatial resolution of the image, Gaussian FWHM (mm); 0 = no correction.
    search : ndarray of bool, optional
        Where to look for the blood pool (PET grid); default the whole image.
    shell_mm, core_mm : float, optional
        Tissue shell thickness and core depth (mm); default the FWHM.
    early : (float, float)
        Early window (min) of the automatic ROI (default the first 30 s).
    threshold : float
        Fraction of the early maximum that delimits the pool (default 0.5).
    min_ml, max_ml : float, optional
        Accepted pool volume (mL).
    population, species : str, optional
        Population blood curves (:data:`sv2a.idif.POPULATION`, e.g. ``"rat_synvest1"``);
        default from the tracer in ``pet.meta`` and the species.
    parent_fraction : callable, ParentFractionFit or (plateau, tau), optional
        Parent fraction (0..1) versus time (min); default the population curve.
    blood_to_plasma : float or callable, optional
        Whole-blood / total-plasma ratio (unitless); default the population value.

    Returns
    -------
    InputFunction
        At the frame mid-times (min): metabolite-corrected plasma, total plasma, parent
        fraction and whole blood (kBq/mL); ``meta`` holds the ROI volume (mL), recovery,
        spill-in and settings.

    Raises
    ------
    ShapeMismatchError
        ``mask`` / ``search`` not on the PET grid.
    RegionError
        Empty ROI, ROI without activity (off the imaged object), or no blood pool found.
    FrameTimingError
        No frame covers the early window (the scan does not start at injection).
    InputFunctionError
        Bad FWHM, or no population curves for the tracer/species and none given.

    Examples
    --------
    >>> from sv2a.phantom import make_subject
    >>> s = make_subject("rat", seed=0, noise=0, voxel_mm=0.6)
    >>> idif = image_derived_input(s.pet(), fwhm=1.5)
    >>> late = idif.time > 30
    >>> ratio = idif.whole_blood_at(idif.time[late]) / s.input.whole_blood_at(idif.time[late])
    >>> bool(abs(ratio.mean() - 1) < 0.03)
    True
    """
    from .idif import idif_curves

    c = idif_curves(pet, mask, fwhm=fwhm, search=search, shell_mm=shell_mm, core_mm=core_mm,
                    early=early, threshold=threshold, min_ml=min_ml, max_ml=max_ml,
                    population=population, species=species, parent_fraction=parent_fraction,
                    blood_to_plasma=blood_to_plasma)
    return InputFunction(time=c.time, plasma=c.total_plasma, parent_fraction=c.parent_fraction,
                         whole_blood=c.whole_blood, meta=dict(c.meta),
                         source=f"image-derived input ({c.meta['roi_ml']:.3g} mL blood ROI)")
