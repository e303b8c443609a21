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
* :meth:`InputFunction.check_covers` / :func:`coverage` -- does the input cover the scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputFunctionError

__all__ = ["InputFunction", "ParentFractionFit", "fit_parent_fraction", "dispersion_correct",
           "coverage"]


def _curve(name: str, t, y, source: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
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
        dup = t[np.flatnonzero(np.diff(t) == 0)][:3].tolist()
        raise InputFunctionError(
            f"{source}: {name} has repeated sample times {dup} (min); average or remove duplicates"
        )
    if np.any(t < 0):
        raise InputFunctionError(
            f"{source}: {name} has samples before injection (t < 0); times must be relative to "
            "injection"
        )
    if np.any(y < -1e-3 * max(np.max(np.abs(y)), 1e-12)):
        i = int(np.argmin(y))
        raise InputFunctionError(
            f"{source}: {name} has negative activity ({y[i]:.4g} kBq/mL at {t[i]:.3g} min); "
            "check the units and the background subtraction"
        )
    return t, y


def _interp(tq, t, y) -> np.ndarray:
    tq = np.asarray(tq, dtype=float)
    if t[0] > 0:
        t = np.concatenate([[0.0], t])
        y = np.concatenate([[0.0], y])
    return np.interp(tq, t, y, left=0.0, right=y[-1])


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
    meta: dict = field(default_factory=dict)
    source: str = "input function"

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

    def plasma_at(self, t) -> np.ndarray:
        """Metabolite-corrected plasma (kBq/mL) at times ``t`` (min), linear interpolation."""
        return _interp(t, self.time, self.plasma)

    def whole_blood_at(self, t) -> np.ndarray:
        """Whole blood (kBq/mL) at ``t`` (min); falls back to plasma when not measured."""
        if self.whole_blood is None:
            return self.plasma_at(t)
        return _interp(t, self.whole_blood_time, self.whole_blood)

    def parent_fraction_at(self, t) -> np.ndarray | None:
        """Measured parent fraction at ``t`` (linear interpolation), or None if not measured."""
        if self._parent is None:
            return None
        tp, pf = self._parent
        return np.interp(np.asarray(t, dtype=float), tp, pf)

    @property
    def has_whole_blood(self) -> bool:
        return self.whole_blood is not None

    def on_grid(self, t_end: float, step: float = 1.0 / 60.0, *, delay: float = 0.0):
        """Curves on the uniform grid ``t = 0, step, ... >= t_end`` (min).

        Returns ``(t, plasma, whole_blood)``; whole blood falls back to plasma. With
        ``delay`` the curves are those of :meth:`shifted`.
        """
        n = int(np.ceil(float(t_end) / step)) + 1
        t = np.arange(n) * step
        return t, self.plasma_at(t - delay), self.whole_blood_at(t - delay)

    def integral_at(self, t) -> np.ndarray:
        """``∫_0^t Cp`` (kBq·min/mL) of the piecewise-linear plasma curve, exactly."""
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
        out = np.where(tq <= tt[-1], exact, cum[-1] + yy[-1] * (tq - tt[-1]))
        del inside
        return out

    def shifted(self, delay: float) -> InputFunction:
        """The input delayed by ``delay`` min (``Cp(t − delay)``, samples moved later).

        Samples moved before t = 0 are dropped.
        """
        def mv(t, y):
            t = np.asarray(t, float) + delay
            keep = t >= 0
            return t[keep], np.asarray(y, float)[keep]

        t, p = mv(self.time, self.plasma)
        kw = {}
        if self.whole_blood is not None:
            tb, b = mv(self.whole_blood_time, self.whole_blood)
            kw = {"whole_blood": b, "whole_blood_time": tb}
        return InputFunction(time=t, plasma=p, meta={**self.meta, "delay_min": delay},
                             source=f"{self.source} (shifted {delay:+.3g} min)", **kw)

    def with_parent_model(self, fit: ParentFractionFit) -> InputFunction:
        """Metabolite-corrected input = total plasma × fitted parent fraction.

        Requires that this input was built with ``parent_fraction=`` (``plasma`` = total).
        """
        if self.total_plasma is None:
            raise InputFunctionError(
                f"{self.source}: no total-plasma curve; build the InputFunction with "
                "plasma=<total plasma> and parent_fraction=<measured fractions>"
            )
        tt, tot = self.total_plasma
        kw = {}
        if self.whole_blood is not None:
            kw = {"whole_blood": self.whole_blood, "whole_blood_time": self.whole_blood_time}
        return InputFunction(time=tt, plasma=tot * fit.predict(tt),
                             meta={**self.meta, "parent_model": fit.model,
                                   "parent_params": fit.params.tolist()},
                             source=f"{self.source} ({fit.model} parent fraction)", **kw)

    def check_covers(self, t_end: float, *, tolerance: float = 0.05, what: str = "the scan"):
        """Raise :class:`InputFunctionError` if samples stop before ``t_end`` (min).

        ``tolerance`` is the fraction of ``t_end`` the input may stop short (it is then held at
        its last value).
        """
        if self.t_end < t_end * (1.0 - tolerance):
            raise InputFunctionError(
                f"{self.source}: the input function ends at {self.t_end:.3g} min but {what} "
                f"lasts until {t_end:.3g} min; provide blood samples covering the whole scan or "
                "truncate the TACs (e.g. tacs.sel(frame=tacs.frame_end <= "
                f"{self.t_end:.3g}))"
            )


# --------------------------------------------------------------------------- parent fraction
_PF_MODELS = ("exp_plateau", "hill", "biexp")


def _pf_eval(model: str, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.clip(np.asarray(t, dtype=float), 0.0, None)
    if model == "exp_plateau":
        a, tau = p
        return a + (1 - a) * np.exp(-t / tau)
    if model == "hill":
        a, b, c = p
        tb = t**b
        return 1 - a * tb / (c + tb)
    a, t1, t2 = p  # biexp: f = a e^{-t/t1} + (1 − a) e^{-t/t2}
    return a * np.exp(-t / t1) + (1 - a) * np.exp(-t / t2)


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
    params: np.ndarray
    rss: float

    def predict(self, t) -> np.ndarray:
        """Parent fraction at ``t`` (min), clipped to [0, 1]."""
        return np.clip(_pf_eval(self.model, self.params, t), 0.0, 1.0)


def fit_parent_fraction(time, fraction, model: str = "exp_plateau", *,
                        source: str = "parent fraction") -> ParentFractionFit:
    """Fit a parent-fraction model to measured fractions (HPLC) by least squares.

    Parameters
    ----------
    time : array_like
        Sample times (min after injection).
    fraction : array_like
        Parent fractions (0..1). NaN samples are dropped.
    model : ``"exp_plateau" | "hill" | "biexp"``
        See :class:`ParentFractionFit`. The exponential-plateau model is the default for
        [11C]UCB-J (DOMAIN §3: 0.20 + 0.80 e^{−t/9}).

    Raises
    ------
    InputFunctionError
        Fewer samples than parameters + 1, fractions outside [0, 1], or an unknown model.
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
        starts = [np.array([a, tau]) for a in (0.05, 0.2, 0.5) for tau in (2.0, 10.0, 40.0)]
        lb, ub = [0.0, 1e-3], [1.0, 10 * tmax]
    elif model == "hill":
        starts = [np.array([a, b, c]) for a in (0.7, 0.95) for b in (1.0, 2.5)
                  for c in (10.0, 100.0, 1000.0)]
        lb, ub = [0.0, 0.1, 1e-6], [1.0, 10.0, 1e8]
    else:
        starts = [np.array([a, t1, t2]) for a in (0.3, 0.7) for t1 in (1.0, 5.0)
                  for t2 in (30.0, 300.0)]
        lb, ub = [0.0, 1e-3, 1e-3], [1.0, 10 * tmax, 1e4]
    best = None
    for x0 in starts:
        x0 = np.clip(x0, np.array(lb) + 1e-9, np.array(ub) - 1e-9)
        res = least_squares(lambda p: _pf_eval(model, p, t) - f, x0, bounds=(lb, ub))
        if best is None or res.cost < best.cost:
            best = res
    return ParentFractionFit(model=model, params=best.x, rss=float(2 * best.cost))


# --------------------------------------------------------------------------- dispersion, delay
def dispersion_correct(time, values, tau: float, *, smooth: float | None = None) -> np.ndarray:
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
        Dispersion-corrected activity at ``time``.
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
    return ys + tau * np.gradient(ys, t)


def coverage(inp: InputFunction, t_start: float, t_end: float) -> dict:
    """How well the input covers a scan ``[t_start, t_end]`` (min).

    Returns a dict with ``covers_end`` (bool), ``gap_end_min`` (time the input must be held
    constant after its last sample), ``first_sample_min``, ``peak_time_min``,
    ``max_gap_min`` (largest interval between samples) and ``samples_before_peak``.
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
