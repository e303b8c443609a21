"""One-tissue compartment model (1TCM) with arterial plasma input, regions and voxels.

Model (time in min, rates in 1/min, activity in kBq/mL, volumes in mL/cm3)::

    dC_T/dt = K1 Cp(t) − k2 C_T(t),   C_T = K1 e^{−k2 t} ⊗ Cp
    C_PET(t) = (1 − vB) C_T(t − delay) + vB C_WB(t − delay),   VT = K1/k2

The model of choice for human [11C]UCB-J (Finnema et al. 2018, JCBFM 38:2041).

Two methods fit the same forward model (:mod:`.compartment`, same grid, sampling and
convolution):

* ``method="basis"`` (default, regions and voxels): basis functions over ``k2`` (Gunn et al.
  1997, NeuroImage 6:279) -- ``F_j = e^{−θ_j t} ⊗ Cp`` on ``rate_grid(*rate_range, n_basis)``,
  ``K1`` (and ``vB`` when fitted) linear, the best basis refined between grid points by
  quadratic interpolation of the basis in ``log θ`` (:class:`~.basis_ls.BasisLS`); all rows at
  once. Standard errors (``se=True``): Gauss–Newton covariance from the numerical Jacobian of
  the forward model in ``(K1, k2[, vB])`` at the solution, VT by the delta method.
* ``method="nonlinear"`` (regions only): bounded Levenberg–Marquardt with the analytic
  Jacobian from 8 log-spaced ``k2`` starts (x 5 delays when the delay is fitted), ``K1`` and
  ``vB`` profiled at each start; ``delay="fit"`` is only available here.

:func:`estimate_delay` fits the delay between blood sampling and tissue from an early TAC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from ..blood import InputFunction
from ..errors import InputFunctionError, ModelError
from ..frames import FrameSchedule
from ._kinetics import exp_conv, rate_grid
from .base import (
    FLAG_EDGE,
    FLAG_NEG_DENOMINATOR,
    FLAG_NEGATIVE,
    Method,
    Model,
    ModelInputs,
    Scale,
    as_rows,
    clean_rows,
    finish,
)
from .basis_ls import BasisLS
from .compartment import (
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
from .lsq import gauss_newton_cov, numeric_jacobian
from .registry import register

__all__ = ["OneTCM", "estimate_delay"]

FloatArray = NDArray[np.float64]


def _vt(theta: FloatArray) -> dict[str, FloatArray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"VT": theta[:, 0] / theta[:, 1]}


@register
class OneTCM(Model):
    """1TCM with plasma input: ``C_PET = (1 − vB) K1 e^{−k2 t} ⊗ Cp + vB C_WB``, ``VT = K1/k2``.

    Options (:class:`OneTCM.Options`): ``method`` (``"basis"`` | ``"nonlinear"``), ``vB``
    (number or ``"fit"``), ``delay`` (min, or ``"fit"`` with the nonlinear method),
    ``weights``, ``half_life``, ``sampling``, ``convolution``, ``rate_range``/``n_basis`` (basis
    grid of k2), ``bounds`` (nonlinear), grid options and ``coverage_tolerance``.

    Outputs ``K1 k2 vB delay VT`` (``*_se`` with ``se=True``; fixed parameters have NaN SE),
    ``rss`` (weighted), ``n_frames``, ``flag``.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.blood import InputFunction
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> t = np.linspace(0, 62, 621)
    >>> inp = InputFunction(time=t, plasma=30 * t * np.exp(-t / 0.6) + 4 * np.exp(-t / 40))
    >>> frames = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 10)
    >>> solver = OneTCM(ModelInputs(frames=frames, weights=np.ones(21), input=inp),
    ...                 OneTCM.Options(vB=0.05))
    >>> tac = solver.predict({"K1": 0.3, "k2": 0.03, "vB": 0.05})
    >>> fit = solver.solve(tac, se=True)
    >>> print(f"VT = {fit['VT'][0]:.1f}, K1 = {fit['K1'][0]:.3f}, flag = {fit['flag'][0]}")
    VT = 10.0, K1 = 0.300, flag = 0
    >>> lm = OneTCM(ModelInputs(frames=frames, weights=np.ones(21), input=inp),
    ...             OneTCM.Options(method="nonlinear", vB="fit")).solve(tac)
    >>> print(f"VT = {lm['VT'][0]:.2f}, vB = {lm['vB'][0]:.3f}")
    VT = 10.00, vB = 0.050
    """

    @dataclass(frozen=True, kw_only=True)
    class Options(CompartmentOptions):
        """Options of the 1TCM: those of
        :class:`~sv2a.models.compartment.CompartmentOptions` and

        Attributes
        ----------
        method : ``"basis"`` | ``"nonlinear"``
            Basis functions with refinement (regions and voxels) or bounded LM (regions only).
        rate_range : (float, float)
            Range of the k2 basis grid (1/min), ``method="basis"``.
        n_basis : int
            Number of log-spaced basis functions.
        """

        method: Method = "basis"
        rate_range: tuple[float, float] = (0.002, 1.0)
        n_basis: int = 100

    name: ClassVar[str] = "1tcm"
    kind: ClassVar[Literal["plasma"]] = "plasma"
    scales: ClassVar[frozenset[Scale]] = frozenset({"region", "voxel"})
    parameters: ClassVar[tuple[str, ...]] = ("K1", "k2", "vB", "delay", "VT")
    units: ClassVar[Mapping[str, str]] = {k: UNITS[k] for k in ("K1", "k2", "vB", "delay", "VT")}
    description: ClassVar[str] = "one-tissue compartment model (plasma input): VT = K1/k2"

    def __init__(self, inputs: ModelInputs, options: Any) -> None:
        super().__init__(inputs, options)
        o: OneTCM.Options = options
        model = self.name
        inp = check_input(inputs.input, model)
        self.weights_in_setup = o.method == "basis"
        if o.method not in ("basis", "nonlinear"):
            raise ModelError(f"{model}: method must be 'basis' or 'nonlinear', got {o.method!r}")
        if o.method == "nonlinear" and inputs.scale == "voxel":
            raise ModelError(f"{model}: method='nonlinear' is for regional fits; use "
                             "method='basis' for parametric maps")
        self.vb_fixed = fixed_or_fit(o.vB, "vB", model)
        check_vb(self.vb_fixed, model)
        delay_fixed = fixed_or_fit(o.delay, "delay", model)
        self.delay_fit = delay_fixed is None
        self.delay_value = 0.0 if delay_fixed is None else delay_fixed
        if self.delay_fit and o.method != "nonlinear":
            raise ModelError(f"{model}: delay='fit' needs method='nonlinear' (regions); give a "
                             "fixed delay (min) for method='basis'")
        if o.bounds is not None and o.method != "nonlinear":
            raise ModelError(f"{model}: bounds= applies to method='nonlinear'; the basis "
                             "method searches k2 over rate_range=")
        self.bounds = resolve_bounds(o.bounds, free_names("1tcm", None, True), model)
        self.grid = model_grid(inp, self.frames, sampling=o.sampling,
                               convolution=o.convolution, delay=self.delay_value,
                               grid_step=o.grid_step, grid_step_late=o.grid_step_late,
                               grid_switch=o.grid_switch, grid_points=o.grid_points,
                               coverage_tolerance=o.coverage_tolerance, model=model)
        self.n_fitted = 2 + (self.vb_fixed is None) + self.delay_fit
        self.settings = {
            "input": inp.source, "method": o.method,
            "vB": "fit" if self.vb_fixed is None else self.vb_fixed,
            "delay": "fit" if self.delay_fit else self.delay_value,
            "sampling": o.sampling, "convolution": o.convolution,
            "grid_step_min": self.grid.h, "grid_nodes": int(self.grid.t.size),
        }
        self.ls: BasisLS | None = None
        if o.method == "basis":
            self.thetas = rate_grid(*o.rate_range, o.n_basis, what="rate_range")
            conv = np.empty((self.grid.t.size, self.thetas.size))
            for j, th in enumerate(self.thetas):  # loop over basis functions (not rows)
                conv[:, j] = exp_conv(self.grid.cp, float(th), self.grid)
            family = np.asarray(self.grid.S @ conv).T            # (K, n_frames)
            self.cwb = np.asarray(self.grid.S @ self.grid.cb)
            self.ls = BasisLS(family, self.thetas, self.weights,
                              r0=self.cwb if self.vb_fixed is None else None)
            self.settings.update({"rate_range": [float(v) for v in o.rate_range],
                                  "n_basis": int(o.n_basis),
                                  "fitter": "basis functions + quadratic refinement"})
        else:
            self.settings.update({"bounds": {k: list(v) for k, v in self.bounds.items()},
                                  "fitter": "bounded Levenberg-Marquardt, analytic Jacobian"})

    # ------------------------------------------------------------------ solve
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
            ``name -> array (n,)``: ``K1 k2 vB delay VT``, ``rss``,
            ``n_frames`` and ``flag`` (see :meth:`sv2a.models.base.Model.solve`).
        """
        y, bad = clean_rows(as_rows(tacs, self.frames.n))
        n_used = int(np.count_nonzero(self.weights > 0))
        if self.ls is not None:
            return self._solve_basis(y, bad, se, n_used)
        x, cov, rss, flag = fit_rows("1tcm", self.grid, y, self.weights,
                                     vb_fixed=self.vb_fixed, delay_fit=self.delay_fit,
                                     bounds=self.bounds, n_starts=1, se=se)
        free = free_names("1tcm", self.vb_fixed, self.delay_fit)
        n = y.shape[0]
        out: dict[str, NDArray[Any]] = {}
        col = {k: i for i, k in enumerate(free)}
        for k in ("K1", "k2", "vB", "delay"):
            if k in col:
                out[k] = x[:, col[k]]
            else:
                out[k] = np.full(n, self.vb_fixed if k == "vB" else self.delay_value, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["VT"] = out["K1"] / out["k2"]
        if se:
            sd = np.sqrt(np.clip(np.einsum("npp->np", cov), 0, None))
            for k in ("K1", "k2", "vB", "delay"):
                out[f"{k}_se"] = sd[:, col[k]] if k in col else np.full(n, np.nan)
            out.update(derived_se(_vt, x, cov))
        out["rss"] = rss
        return finish(out, flag, bad, n_used)

    def _solve_basis(self, y: FloatArray, bad: NDArray[np.bool_], se: bool,
                     n_used: int) -> dict[str, NDArray[Any]]:
        assert self.ls is not None
        n = y.shape[0]
        if self.vb_fixed is None:
            s = self.ls.solve(y)
            vb = np.asarray(s["b0"], dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                k1 = np.asarray(s["b1"], dtype=float) / (1.0 - vb)
            rss = np.asarray(s["rss"], dtype=float)
        else:
            s = self.ls.solve((y - self.vb_fixed * self.cwb) / (1.0 - self.vb_fixed))
            vb = np.full(n, self.vb_fixed)
            k1 = np.asarray(s["b1"], dtype=float)
            rss = np.asarray(s["rss"], dtype=float) * (1.0 - self.vb_fixed) ** 2
        k2 = np.asarray(s["theta"], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out: dict[str, NDArray[Any]] = {"K1": k1, "k2": k2, "vB": vb,
                                            "delay": np.full(n, self.delay_value), "VT": k1 / k2}
        if se:
            theta = np.column_stack([k1, k2] + ([vb] if self.vb_fixed is None else []))
            fit_vb = self.vb_fixed is None
            vfix = self.vb_fixed

            def model(th: FloatArray) -> FloatArray:
                v = th[:, 2] if fit_vb else np.full(th.shape[0], vfix)
                return forward("1tcm", self.grid, th[:, :2], v)

            good = np.all(np.isfinite(theta), axis=1) & ~bad
            cov = np.full((n, theta.shape[1], theta.shape[1]), np.nan)
            if good.any():
                jac = numeric_jacobian(model, theta[good])
                cov[good] = gauss_newton_cov(jac, self.weights, rss[good])
            sd = np.sqrt(np.clip(np.einsum("npp->np", cov), 0, None))
            out["K1_se"], out["k2_se"] = sd[:, 0], sd[:, 1]
            out["vB_se"] = sd[:, 2] if fit_vb else np.full(n, np.nan)
            out["delay_se"] = np.full(n, np.nan)
            out.update(derived_se(_vt, theta, cov))
        out["rss"] = rss
        flag = (np.where(np.asarray(s["edge"], bool), FLAG_EDGE, 0)
                | np.where(np.asarray(s["bad_det"], bool), FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(k1 > 0), FLAG_NEGATIVE, 0)).astype(np.uint8)
        return finish(out, flag, bad, n_used)

    # ------------------------------------------------------------------ predict
    def predict(self, params: Mapping[str, Any]) -> FloatArray:
        """Model TACs (n, n_frames) from ``K1``, ``k2``, ``vB`` (and a fitted ``delay``).

        ``vB`` defaults to the fixed option value; ``delay`` is the fixed option value unless
        the delay is fitted, when ``params["delay"]`` is used.

        Parameters
        ----------
        params : mapping
            ``K1`` (mL/cm3/min), ``k2`` (1/min), optionally ``vB`` and ``delay`` (min), as
            arrays (n,) or floats.

        Returns
        -------
        array (n, n_frames)
            Model TACs (kBq/mL) on this solver's frames.
        """
        k1 = np.atleast_1d(np.asarray(params["K1"], dtype=float))
        k2 = np.atleast_1d(np.asarray(params["k2"], dtype=float))
        vb_default = 0.0 if self.vb_fixed is None else self.vb_fixed
        vb = np.atleast_1d(np.asarray(params.get("vB", vb_default), dtype=float))
        k1, k2, vb = np.broadcast_arrays(k1, k2, vb)
        delay = None
        if self.delay_fit:
            delay = np.broadcast_to(np.atleast_1d(np.asarray(params.get("delay", 0.0),
                                                             dtype=float)), k1.shape)
        return forward("1tcm", self.grid, np.column_stack([k1, k2]), vb, delay)


def estimate_delay(inp: InputFunction, tac: Any, frames: FrameSchedule, *,
                   window: float = 10.0, bounds: tuple[float, float] = (-0.5, 0.5)) -> float:
    """Delay (min) between the blood sampling site and the tissue, from an early TAC.

    Fits ``C = (1 − vB) K1 e^{−k2 t} ⊗ Cp(t − d) + vB C_WB(t − d)`` (1TCM with vB and delay
    free, :class:`OneTCM` ``method="nonlinear"``, uniform weights) to the frames ending before
    ``window`` min of a high-count TAC (whole brain), the approach of PMOD and kinfitr. A
    positive delay means the tissue sees the input later.

    Parameters
    ----------
    inp : InputFunction
        Plasma (and whole blood) input.
    tac : array_like (n_frames,)
        Tissue TAC (kBq/mL).
    frames : FrameSchedule
        Frame timing of ``tac`` (min).
    window : float
        Use frames that end at or before this time (min).
    bounds : (float, float)
        Search range (min).

    Returns
    -------
    float
        The delay (min).

    Raises
    ------
    InputFunctionError
        Fewer than 5 frames in the window, or the fit failed.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.blood import InputFunction
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> t = np.linspace(0, 30, 1801)
    >>> inp = InputFunction(time=t, plasma=30 * t * np.exp(-t / 0.6) + 4 * np.exp(-t / 40))
    >>> frames = FrameSchedule.from_durations([1 / 6] * 12 + [0.5] * 8 + [2.0] * 5)
    >>> late = OneTCM(ModelInputs(frames=frames, weights=np.ones(25), input=inp),
    ...               OneTCM.Options(vB=0.05, delay=0.25, method="nonlinear"))
    >>> tac = late.predict({"K1": 0.3, "k2": 0.03})[0]
    >>> print(f"{estimate_delay(inp, tac, frames):.2f}")
    0.25
    """
    sel = frames.end <= window + 1e-9
    if sel.sum() < 5:
        raise InputFunctionError(
            f"estimate_delay: only {int(sel.sum())} frames end before {window} min; use a "
            "longer window="
        )
    sub = FrameSchedule(frames.start[sel], frames.end[sel], half_life=frames.half_life)
    opts = OneTCM.Options(method="nonlinear", vB="fit", delay="fit",
                          bounds={"delay": (float(bounds[0]), float(bounds[1]))},
                          coverage_tolerance=1.0)
    solver = OneTCM(ModelInputs(frames=sub, weights=np.ones(sub.n), input=inp), opts)
    res = solver.solve(np.asarray(tac, dtype=float)[sel][None, :])
    d = float(res["delay"][0])
    if not np.isfinite(d):
        raise InputFunctionError("estimate_delay: the delay fit failed (non-finite TAC values "
                                 "in the window, or no convergence)")
    return d
