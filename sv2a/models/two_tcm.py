"""Reversible two-tissue compartment model (2TCM) with arterial plasma input, regions only.

Model (time in min, rates in 1/min, activity in kBq/mL, volumes in mL/cm3)::

    dC_ND/dt = K1 Cp − (k2 + k3) C_ND + k4 C_S,   dC_S/dt = k3 C_ND − k4 C_S
    C_T = C_ND + C_S = φ1 e^{−α1 t} ⊗ Cp + φ2 e^{−α2 t} ⊗ Cp
    C_PET(t) = (1 − vB) C_T(t − delay) + vB C_WB(t − delay)

with ``α1,2 = (k2+k3+k4 ∓ √((k2+k3+k4)² − 4 k2 k4))/2`` (:func:`._kinetics.tcm2_rates`).
Outcomes: ``VT = K1/k2 (1 + k3/k4)``, ``VND = K1/k2``, ``VS = VT − VND`` (= ``BPP``),
``BPND = k3/k4`` (Finnema et al. 2018, JCBFM 38:2041, for SV2A tracers).

Fit: local minima are common, so the fit starts from a deterministic 64-point grid of
``(k2, k3, k4)`` (K1 and vB profiled by linear least squares at each point), refines the
``n_starts`` best by bounded Levenberg–Marquardt with the analytic Jacobian
(:mod:`.compartment`) and keeps the lowest weighted RSS. Region scale only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelError
from .base import Model, ModelInputs, Scale, as_rows, clean_rows, finish
from .compartment import (
    START_GRIDS,
    UNITS,
    CompartmentOptions,
    check_input,
    check_vb,
    derived_se,
    fit_rows,
    fixed_or_fit,
    forward,
    free_names,
    model_grid,
    resolve_bounds,
)
from .registry import register

__all__ = ["TwoTCM"]

FloatArray = NDArray[np.float64]
_PARAMS = ("K1", "k2", "k3", "k4", "vB", "delay", "VT", "VND", "VS", "BPND", "BPP")


def _derived(theta: FloatArray) -> dict[str, FloatArray]:
    K1, k2, k3, k4 = theta[:, 0], theta[:, 1], theta[:, 2], theta[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        vnd = K1 / k2
        bp = k3 / k4
        return {"VT": vnd * (1 + bp), "VND": vnd, "VS": vnd * bp, "BPND": bp, "BPP": vnd * bp}


@register
class TwoTCM(Model):
    """Reversible 2TCM with plasma input, multistart bounded Levenberg–Marquardt.

    Options (:class:`TwoTCM.Options`): ``vB``, ``delay``, ``n_starts``, ``bounds``,
    ``weights``, ``half_life``, ``sampling``, ``convolution``, grid options,
    ``coverage_tolerance``. Outputs ``K1 k2 k3 k4 vB delay VT VND VS BPND BPP`` (``*_se`` with
    ``se=True``: Gauss–Newton from the analytic Jacobian, derived parameters by the delta
    method), ``rss``, ``n_frames``, ``flag``.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.blood import InputFunction
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> t = np.linspace(0, 92, 921)
    >>> inp = InputFunction(time=t, plasma=30 * t * np.exp(-t / 0.6) + 4 * np.exp(-t / 40))
    >>> frames = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 16)
    >>> solver = TwoTCM(ModelInputs(frames=frames, weights=np.ones(27), input=inp),
    ...                 TwoTCM.Options(vB=0.05))
    >>> tac = solver.predict({"K1": 0.3, "k2": 0.12, "k3": 0.08, "k4": 0.02})
    >>> fit = solver.solve(tac, se=True)
    >>> print(f"VT = {fit['VT'][0]:.2f}, BPND = {fit['BPND'][0]:.2f}")
    VT = 12.50, BPND = 4.00
    """

    weights_in_setup = False

    @dataclass(frozen=True, kw_only=True)
    class Options(CompartmentOptions):
        """Options of the 2TCM: those of
        :class:`~sv2a.models.compartment.CompartmentOptions` and

        Attributes
        ----------
        n_starts : int
            Number of the best points of the deterministic start grid that are refined.
        """

        n_starts: int = 4

    name: ClassVar[str] = "2tcm"
    kind: ClassVar[Literal["plasma"]] = "plasma"
    scales: ClassVar[frozenset[Scale]] = frozenset({"region"})
    parameters: ClassVar[tuple[str, ...]] = _PARAMS
    units: ClassVar[Mapping[str, str]] = {k: UNITS[k] for k in _PARAMS}
    description: ClassVar[str] = ("reversible two-tissue compartment model (plasma input), "
                                  "multistart")

    def __init__(self, inputs: ModelInputs, options: Any) -> None:
        super().__init__(inputs, options)
        o: TwoTCM.Options = options
        model = self.name
        if inputs.scale == "voxel":
            raise ModelError("2tcm is fitted to regional TACs only (nonlinear multistart); use "
                             "'1tcm' or 'logan' for parametric maps")
        inp = check_input(inputs.input, model)
        self.vb_fixed = fixed_or_fit(o.vB, "vB", model)
        check_vb(self.vb_fixed, model)
        delay_fixed = fixed_or_fit(o.delay, "delay", model)
        self.delay_fit = delay_fixed is None
        self.delay_value = 0.0 if delay_fixed is None else delay_fixed
        if int(o.n_starts) != o.n_starts or o.n_starts < 1:
            raise ModelError(f"{model}: n_starts must be an integer >= 1, got {o.n_starts!r}")
        self.n_starts = int(o.n_starts)
        self.bounds = resolve_bounds(o.bounds, free_names("2tcm", None, True), model)
        self.grid = model_grid(inp, self.frames, sampling=o.sampling,
                               convolution=o.convolution, delay=self.delay_value,
                               grid_step=o.grid_step, grid_step_late=o.grid_step_late,
                               grid_switch=o.grid_switch, grid_points=o.grid_points,
                               coverage_tolerance=o.coverage_tolerance, model=model)
        self.n_fitted = 4 + (self.vb_fixed is None) + self.delay_fit
        self.settings = {
            "input": inp.source, "vB": "fit" if self.vb_fixed is None else self.vb_fixed,
            "delay": "fit" if self.delay_fit else self.delay_value,
            "sampling": o.sampling, "convolution": o.convolution,
            "grid_step_min": self.grid.h, "grid_nodes": int(self.grid.t.size),
            "bounds": {k: list(v) for k, v in self.bounds.items()},
            "n_starts": self.n_starts,
            "start_grid": f"{len(START_GRIDS['2tcm'])} (k2,k3,k4) points, K1/vB profiled",
            "fitter": "bounded Levenberg-Marquardt, analytic Jacobian",
        }

    def solve(self, tacs: NDArray[Any], *, se: bool = False) -> dict[str, NDArray[Any]]:
        """Fit every row of ``tacs`` (n, n_frames).

        Parameters
        ----------
        tacs : array (n, n_frames)
            Target TACs (kBq/mL), one row per region or voxel.
        se : bool
            Also return standard errors ``<name>_se``.

        Returns
        -------
        dict
            ``name -> array (n,)``: ``K1 k2 k3 k4 vB delay VT VND VS BPND BPP``, ``rss``,
            ``n_frames`` and ``flag`` (see :meth:`sv2a.models.base.Model.solve`).
        """
        y, bad = clean_rows(as_rows(tacs, self.frames.n))
        n = y.shape[0]
        x, cov, rss, flag = fit_rows("2tcm", self.grid, y, self.weights,
                                     vb_fixed=self.vb_fixed, delay_fit=self.delay_fit,
                                     bounds=self.bounds, n_starts=self.n_starts, se=se)
        free = free_names("2tcm", self.vb_fixed, self.delay_fit)
        col = {k: i for i, k in enumerate(free)}
        out: dict[str, NDArray[Any]] = {}
        for k in ("K1", "k2", "k3", "k4", "vB", "delay"):
            if k in col:
                out[k] = x[:, col[k]]
            else:
                out[k] = np.full(n, self.vb_fixed if k == "vB" else self.delay_value, float)
        out.update(_derived(x))
        if se:
            sd = np.sqrt(np.clip(np.einsum("npp->np", cov), 0, None))
            for k in ("K1", "k2", "k3", "k4", "vB", "delay"):
                out[f"{k}_se"] = sd[:, col[k]] if k in col else np.full(n, np.nan)
            out.update(derived_se(_derived, x, cov))
        out["rss"] = rss
        return finish(out, flag, bad, int(np.count_nonzero(self.weights > 0)))

    def predict(self, params: Mapping[str, Any]) -> FloatArray:
        """Model TACs (n, n_frames) from ``K1 k2 k3 k4`` (+ ``vB``, a fitted ``delay``).

        Parameters
        ----------
        params : mapping
            ``K1`` (mL/cm3/min), ``k2 k3 k4`` (1/min), optionally ``vB`` and ``delay`` (min),
            as arrays (n,) or floats.

        Returns
        -------
        array (n, n_frames)
            Model TACs (kBq/mL) on this solver's frames.
        """
        cols = [np.atleast_1d(np.asarray(params[k], dtype=float))
                for k in ("K1", "k2", "k3", "k4")]
        vb_default = 0.0 if self.vb_fixed is None else self.vb_fixed
        vb = np.atleast_1d(np.asarray(params.get("vB", vb_default), dtype=float))
        arrs = np.broadcast_arrays(*cols, vb)
        delay = None
        if self.delay_fit:
            delay = np.broadcast_to(np.atleast_1d(np.asarray(params.get("delay", 0.0),
                                                             dtype=float)), arrs[0].shape)
        return forward("2tcm", self.grid, np.column_stack(arrs[:4]), arrs[4], delay)
