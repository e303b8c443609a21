"""Arterial (or image-derived) input functions.

:class:`InputFunction` holds the measured blood curves in minutes and kBq/mL:

* ``plasma`` -- the metabolite-corrected (parent) plasma curve, the input of plasma-input models;
* ``whole_blood`` -- whole-blood activity, used for the blood-volume term ``vB``;
* ``total_plasma`` and ``parent_fraction`` when they were measured.

Curves are interpolated linearly; before the first sample the curve rises linearly from 0 at
t = 0 (injection), which is what kinfitr and PMOD do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputFunctionError

__all__ = ["InputFunction"]


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
