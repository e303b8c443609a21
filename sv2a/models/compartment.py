"""Compartment models with arterial plasma input: one forward model, one nonlinear fitter.

Measured tissue (1TCM and 2TCM; time in min, rates in 1/min, activity in kBq/mL)::

    C_PET(t) = (1 − vB) [IRF ⊗ Cp](t − delay) + vB C_WB(t − delay)

* 1TCM: ``IRF(t) = K1 e^{−k2 t}``;
* 2TCM: ``IRF(t) = φ1 e^{−α1 t} + φ2 e^{−α2 t}`` with ``(φ1, φ2, α1, α2)`` from
  :func:`sv2a.models._kinetics.tcm2_rates` (the only place the 2TCM macro-parameters are
  computed).

This module owns, for :mod:`.one_tcm` and :mod:`.two_tcm`:

* the forward model on the input grid (:func:`tissue_on_grid`, :func:`pet_on_grid`,
  :func:`forward`) -- the same code is used by ``predict``, by the basis-function family of the
  1TCM and by the nonlinear fit, so every method fits the same model;
* :class:`_CompartmentProblem` and :func:`_lm`: one row's weighted least-squares problem with
  the analytic Jacobian (exact recursion for ``∂(e^{−αt} ⊗ Cp)/∂α``) and a bounded
  Levenberg–Marquardt with Marquardt scaling and an active set on the box;
* :func:`fit_rows`: the multistart fit of every row (K1 and vB profiled by linear least squares
  on a deterministic start grid, the best starts refined by :func:`_lm`), region scale only;
* the option checks shared by the plasma-input models (:func:`check_input`,
  :func:`fixed_or_fit`, :func:`resolve_bounds`, :func:`model_grid`).

Numerics (see :mod:`sv2a.models._kinetics`): the input is put on a grid of 1-s steps (6-s
steps after the later of 10 min and 5 min past the input peak), the convolutions are exact for
the piecewise-linear input, and frame values are the exact frame averages of the model
(``sampling="frame"``) or point values at mid-times (``sampling="mid"``, kinfitr).
``convolution="kinfitr"`` reproduces kinfitr's 6000-point rectangle-sum convolution.

References
----------
Finnema SJ et al. (2018) Kinetic evaluation and test-retest reproducibility of [11C]UCB-J, a
novel radioligand for positron emission tomography imaging of synaptic vesicle glycoprotein 2A
in humans. J Cereb Blood Flow Metab 38:2041-2052.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..blood import InputFunction
from ..errors import InputFunctionError, ModelError
from ..frames import FrameSchedule
from ._kinetics import Grid, exp_conv, make_grid, shift_grid, tcm2_rates, tcm2_rates_jac
from .base import FLAG_EDGE, FLAG_NOT_CONVERGED, Sampling, Weights
from .lsq import delta_se, gauss_newton_cov


@dataclass(frozen=True, kw_only=True)
class CompartmentOptions:
    """Options shared by the compartment models (1TCM and 2TCM).

    Attributes
    ----------
    vB : float or ``"fit"``
        Blood volume fraction, fixed in [0, 1) or fitted (default).
    delay : float or ``"fit"``
        Input delay (min), fixed (default 0) or fitted (nonlinear fits only).
    weights : str or array
        Frame weights (resolved by the adapter; the solver gets one vector).
    half_life : float, optional
        Half-life (min) for weighting schemes that need it (adapter).
    sampling : ``"frame"`` | ``"mid"``
        Frame-averaged model (default) or point values at mid-times (kinfitr).
    convolution : ``"exact"`` | ``"kinfitr"``
        Exact convolution of the piecewise-linear input, or kinfitr's rectangle sum.
    bounds : mapping, optional
        ``{name: (lower, upper)}`` over :data:`DEFAULT_BOUNDS` (nonlinear fits).
    grid_step, grid_step_late, grid_switch, grid_points
        Input grid: fine step (min), late step (min, None = fine throughout), switch time
        (min or "auto"), points of the kinfitr grid.
    coverage_tolerance : float
        Fraction of the scan the input may stop short of (held at its last value).
    """

    vB: float | Literal["fit"] = "fit"
    delay: float | Literal["fit"] = 0.0
    weights: Weights = "uniform"
    half_life: float | None = None
    sampling: Sampling = "frame"
    convolution: Literal["exact", "kinfitr"] = "exact"
    bounds: Mapping[str, tuple[float, float]] | None = None
    grid_step: float = 1.0 / 60.0
    grid_step_late: float | None = 0.1
    grid_switch: float | Literal["auto"] = "auto"
    grid_points: int = 6000
    coverage_tolerance: float = 0.05

__all__ = [
    "DEFAULT_BOUNDS",
    "UNITS",
    "check_input",
    "fixed_or_fit",
    "resolve_bounds",
    "model_grid",
    "tissue_on_grid",
    "pet_on_grid",
    "forward",
    "fit_rows",
]

FloatArray = NDArray[np.float64]

#: Default parameter bounds of the nonlinear fit (K1 mL/cm3/min, rates 1/min, vB fraction,
#: delay min).
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "K1": (1e-4, 3.0),
    "k2": (1e-4, 2.0),
    "k3": (1e-4, 1.0),
    "k4": (1e-4, 1.0),
    "vB": (0.0, 0.2),
    "delay": (-0.5, 0.5),
}

#: Units of every compartment-model parameter.
UNITS: dict[str, str] = {
    "K1": "mL/cm3/min", "k2": "1/min", "k3": "1/min", "k4": "1/min", "vB": "1",
    "delay": "min", "VT": "mL/cm3", "VND": "mL/cm3", "VS": "mL/cm3", "BPND": "1",
    "BPP": "mL/cm3",
}

#: Deterministic start grids of the rate constants (K1 is profiled, NaN placeholder).
START_GRIDS: dict[str, list[tuple[float, ...]]] = {
    "1tcm": [(np.nan, float(k2)) for k2 in np.geomspace(0.003, 1.0, 8)],
    "2tcm": [(np.nan, k2, k3, k4)
             for k2 in (0.02, 0.06, 0.15, 0.4)
             for k3 in (0.005, 0.02, 0.06, 0.2)
             for k4 in (0.005, 0.02, 0.06, 0.2)],
}


# --------------------------------------------------------------------------- option checks
def check_input(inp: Any, model: str) -> InputFunction:
    """The plasma input of a model.

    Parameters
    ----------
    inp : InputFunction or None
        The input given.
    model : str
        Model name, for messages.

    Returns
    -------
    InputFunction

    Raises
    ------
    InputFunctionError
        Missing or not an :class:`~sv2a.InputFunction`.
    """
    if inp is None:
        raise InputFunctionError(
            f"model '{model}' needs a plasma input function: sv2a.fit(tacs, model='{model}', "
            "input=sv2a.load_blood(...)) or input=sv2a.InputFunction(time=..., plasma=...)"
        )
    if not isinstance(inp, InputFunction):
        raise InputFunctionError(
            f"model '{model}': input must be an sv2a.InputFunction, got {type(inp).__name__}"
        )
    return inp


def fixed_or_fit(value: Any, name: str, model: str) -> float | None:
    """A fixed value or ``"fit"``.

    Parameters
    ----------
    value : float or "fit"
        The option value.
    name : str
        Option name, for messages.
    model : str
        Model name, for messages.

    Returns
    -------
    float or None
        ``None`` for ``"fit"``, else the value as a finite float.

    Raises
    ------
    ModelError
        Anything else.
    """
    if isinstance(value, str):
        if value.lower() != "fit":
            raise ModelError(f"{model}: {name} must be a number (fixed) or 'fit', got {value!r}")
        return None
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{model}: {name} must be a number or 'fit', got {value!r}") from exc
    if not np.isfinite(v):
        raise ModelError(f"{model}: {name} must be finite, got {value!r}")
    return v


def check_vb(vb: float | None, model: str) -> None:
    """Check that a fixed blood volume lies in [0, 1).

    Parameters
    ----------
    vb : float or None
        Blood volume fraction (None: fitted).
    model : str
        Model name, for messages.

    Raises
    ------
    ModelError
        Outside [0, 1).
    """
    if vb is not None and not 0.0 <= vb < 1.0:
        raise ModelError(f"{model}: vB must be in [0, 1) or 'fit', got {vb}")


def resolve_bounds(user: Mapping[str, Sequence[float]] | None, names: Sequence[str],
                   model: str) -> dict[str, tuple[float, float]]:
    """:data:`DEFAULT_BOUNDS` updated with the user's ``bounds``.

    Parameters
    ----------
    user : mapping name -> (lower, upper), optional
        Bounds given (rates 1/min, K1 mL/cm3/min, vB fraction, delay min).
    names : sequence of str
        Parameters that may have bounds.
    model : str
        Model name, for messages.

    Returns
    -------
    dict
        ``name -> (lower, upper)``.

    Raises
    ------
    ModelError
        Unknown names or malformed bounds.
    """
    b = dict(DEFAULT_BOUNDS)
    if user is None:
        return b
    if not isinstance(user, Mapping):
        raise ModelError(f"{model}: bounds must be a dict like {{'K1': (1e-4, 1)}}")
    for k, v in user.items():
        if k not in names:
            raise ModelError(f"{model}: no bounds for {k!r}; parameters: {', '.join(names)}")
        try:
            lo, hi = float(v[0]), float(v[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"{model}: bounds for {k} must be (lower, upper), got {v!r}") from exc
        if not lo < hi:
            raise ModelError(f"{model}: bounds for {k} must satisfy lower < upper, got {v}")
        b[k] = (lo, hi)
    return b


def model_grid(inp: InputFunction, frames: FrameSchedule, *, sampling: str, convolution: str,
               delay: float, grid_step: float, grid_step_late: float | None,
               grid_switch: float | str, grid_points: int, coverage_tolerance: float,
               model: str) -> Grid:
    """Check that the input covers the scan and put it on the model grid.

    Parameters
    ----------
    inp : InputFunction
        Plasma input (kBq/mL, min).
    frames : FrameSchedule
        Frame timing (min).
    sampling, convolution : str
        ``"frame"``/``"mid"`` and ``"exact"``/``"kinfitr"``.
    delay : float
        Fixed delay (min) applied to the input.
    grid_step, grid_step_late, grid_switch, grid_points
        Grid settings (min; :func:`sv2a.models._kinetics.make_grid`).
    coverage_tolerance : float
        Fraction of the scan the input may stop short of.
    model : str
        Model name, for messages.

    Returns
    -------
    Grid
        The input on the grid with the frame sampling matrix.
    """
    if sampling not in ("frame", "mid"):
        raise ModelError(f"{model}: sampling must be 'frame' or 'mid', got {sampling!r}")
    if convolution not in ("exact", "kinfitr"):
        raise ModelError(f"{model}: convolution must be 'exact' or 'kinfitr', "
                         f"got {convolution!r}")
    if not grid_step > 0 or (grid_step_late is not None and not grid_step_late > 0):
        raise ModelError(f"{model}: grid_step and grid_step_late must be positive (min)")
    if int(grid_points) != grid_points or grid_points < 10:
        raise ModelError(f"{model}: grid_points must be an integer >= 10, got {grid_points!r}")
    t_need = float(frames.mid[-1] if sampling == "mid" else frames.end[-1])
    inp.check_covers(t_need, tolerance=coverage_tolerance, what="the scan")
    return make_grid(inp, frames.start, frames.end, sampling=sampling, scheme=convolution,
                     step=grid_step, delay=delay, n_points=int(grid_points),
                     step_late=grid_step_late, switch=grid_switch)


# --------------------------------------------------------------------------- forward model
def tissue_on_grid(kind: str, grid: Grid, kin: Sequence[float] | FloatArray,
                   deriv: bool = False
                   ) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """Tissue curve ``C_T = IRF ⊗ Cp`` at the grid nodes for one parameter set.

    Parameters
    ----------
    kind : ``"1tcm"`` | ``"2tcm"``
    grid : Grid
        Input on the model grid (:func:`model_grid`).
    kin : sequence
        ``(K1, k2)`` or ``(K1, k2, k3, k4)``.
    deriv : bool
        Also return ``∂C_T/∂kin`` (n_grid, n_kin) and ``dC_T/dt`` (n_grid,).

    Returns
    -------
    (C_T, dC_T/dkin or None, dC_T/dt or None)
    """
    cp = grid.cp
    if kind == "1tcm":
        K1, k2 = float(kin[0]), float(kin[1])
        if not deriv:
            return K1 * exp_conv(cp, k2, grid), None, None
        e, de = exp_conv(cp, k2, grid, deriv=True)
        ct = K1 * e
        return ct, np.column_stack([e, K1 * de]), K1 * cp - k2 * ct
    K1, k2, k3, k4 = (float(v) for v in kin)
    if not deriv:
        p1, p2, a1, a2 = tcm2_rates(K1, k2, k3, k4)
        return (p1 * exp_conv(cp, a1, grid) + p2 * exp_conv(cp, a2, grid)), None, None
    val, jac = tcm2_rates_jac(K1, k2, k3, k4)
    p1, p2, a1, a2 = (float(v) for v in val)
    e1, g1 = exp_conv(cp, a1, grid, deriv=True)
    e2, g2 = exp_conv(cp, a2, grid, deriv=True)
    ct = p1 * e1 + p2 * e2
    d = np.column_stack([e1, e2, p1 * g1, p2 * g2]) @ jac
    dt = p1 * (cp - a1 * e1) + p2 * (cp - a2 * e2)
    return ct, d, dt


def pet_on_grid(ct: FloatArray, vb: float, delay: float, grid: Grid) -> FloatArray:
    """``(1 − vB) C_T + vB C_WB`` at the grid nodes, shifted by a fitted ``delay`` (min).

    A fixed delay is already in the grid (:func:`model_grid`); pass ``delay=0`` then.

    Parameters
    ----------
    ct : array (n_grid,)
        Tissue curve at the grid nodes (kBq/mL).
    vb : float
        Blood volume fraction.
    delay : float
        Fitted delay (min).
    grid : Grid
        The model grid.

    Returns
    -------
    array (n_grid,)
        Measured PET curve at the grid nodes (kBq/mL).
    """
    m = (1.0 - vb) * ct + vb * grid.cb
    if delay != 0.0:
        m = shift_grid(m, delay, grid.t)
    return np.asarray(m, dtype=float)


def forward(kind: str, grid: Grid, kin: FloatArray, vb: FloatArray,
            delay: FloatArray | None = None) -> FloatArray:
    """Model TACs on the frames for many parameter sets (the ``predict`` of 1TCM/2TCM).

    Parameters
    ----------
    kind : ``"1tcm"`` | ``"2tcm"``
    grid : Grid
    kin : array (n, 2) or (n, 4)
        ``K1, k2[, k3, k4]`` per row.
    vb : array (n,)
        Blood volume fraction per row.
    delay : array (n,), optional
        Delay relative to the grid (min; a fixed delay is already in the grid).

    Returns
    -------
    array (n, n_frames)
        Frame values (kBq/mL); NaN rows where a parameter is not finite.
    """
    kin = np.atleast_2d(np.asarray(kin, dtype=float))
    n = kin.shape[0]
    vb = np.broadcast_to(np.asarray(vb, dtype=float), (n,))
    dl = np.zeros(n) if delay is None else np.broadcast_to(np.asarray(delay, float), (n,))
    out = np.full((n, grid.S.shape[0]), np.nan)
    ok = np.all(np.isfinite(kin), axis=1) & np.isfinite(vb) & np.isfinite(dl)
    if kind == "1tcm" and not np.any(dl[ok] != 0.0):
        # K1 e^{-k2 t} ⊗ Cp for all rows at once: one convolution per distinct k2
        idx = np.flatnonzero(ok)
        k2u, inv = np.unique(kin[idx, 1], return_inverse=True)
        conv = np.empty((grid.t.size, k2u.size))
        for j, k2 in enumerate(k2u):  # loop over distinct rates (rows sharing one share it)
            conv[:, j] = exp_conv(grid.cp, float(k2), grid)
        fr = np.asarray(grid.S @ conv).T                      # (n_unique, n_frames)
        cb = np.asarray(grid.S @ grid.cb)
        v = vb[idx, None]
        out[idx] = (1.0 - v) * kin[idx, 0, None] * fr[inv] + v * cb[None, :]
        return out
    for i in np.flatnonzero(ok):  # 2TCM (region scale) or a fitted delay
        ct, _, _ = tissue_on_grid(kind, grid, kin[i])
        out[i] = grid.S @ pet_on_grid(ct, float(vb[i]), float(dl[i]), grid)
    return out


# --------------------------------------------------------------------------- one row's problem
class _CompartmentProblem:
    """One row's weighted least-squares problem for 1TCM/2TCM (cached model + Jacobian).

    Free parameters, in order: the kinetic constants (K1, k2[, k3, k4]), vB (when fitted) and
    the delay (when fitted).
    """

    def __init__(self, kind: str, grid: Grid, y: FloatArray, w: FloatArray,
                 vb_fixed: float | None, delay_fit: bool) -> None:
        self.kind = kind
        self.g = grid
        self.y = np.asarray(y, dtype=float)
        self.sw = np.sqrt(np.asarray(w, dtype=float))
        self.nk = 2 if kind == "1tcm" else 4
        self.vb_fixed = vb_fixed
        self.delay_fit = delay_fit
        self._key: bytes | None = None
        self._f: FloatArray = np.zeros(0)
        self._J: FloatArray | None = None

    def unpack(self, x: FloatArray) -> tuple[FloatArray, float, float]:
        """(kinetic constants, vB, delay) of a free-parameter vector."""
        kin = x[: self.nk]
        i = self.nk
        if self.vb_fixed is None:
            vb = float(x[i])
            i += 1
        else:
            vb = self.vb_fixed
        delay = float(x[i]) if self.delay_fit else 0.0
        return kin, vb, delay

    def evaluate(self, x: FloatArray, jac: bool = True) -> tuple[FloatArray, FloatArray | None]:
        """Weighted residuals (and their Jacobian) at ``x``; the last call is cached."""
        key = x.tobytes()
        if key == self._key and (self._J is not None or not jac):
            return self._f, self._J
        kin, vb, delay = self.unpack(x)
        g = self.g
        if not jac:
            ct, _, _ = tissue_on_grid(self.kind, g, kin)
            self._f = self.sw * (g.S @ pet_on_grid(ct, vb, delay, g) - self.y)
            self._J = None
            self._key = key
            return self._f, None
        ct, d, dt = tissue_on_grid(self.kind, g, kin, deriv=True)
        assert d is not None and dt is not None
        cols = [((1 - vb) * ct + vb * g.cb)[:, None], (1 - vb) * d]
        if self.vb_fixed is None:
            cols.append((g.cb - ct)[:, None])
        if self.delay_fit:
            cols.append(-((1 - vb) * dt + vb * g.dcb)[:, None])
        big = np.column_stack(cols)
        if self.delay_fit and delay != 0.0:
            big = shift_grid(big, delay, g.t)
        fr = g.S @ big
        self._f = self.sw * (fr[:, 0] - self.y)
        self._J = self.sw[:, None] * fr[:, 1:]
        self._key = key
        return self._f, self._J

    def profile(self, kin: FloatArray, vb_bounds: tuple[float, float],
                delay: float = 0.0, curves: dict[Any, FloatArray] | None = None
                ) -> tuple[FloatArray, float]:
        """Best K1 (and vB) for given rates by linear weighted least squares -> (x, cost).

        ``curves`` caches the frame values of the unit-K1 tissue curve and of whole blood
        per (rates, delay): they depend on the input grid, not on the row, so the rows of
        one call share them (the start grid of a multistart fit is the same for every row).
        """
        g = self.g
        unit = np.array(kin, dtype=float)
        unit[0] = 1.0
        key = (*unit.tolist(), float(delay))
        fr = None if curves is None else curves.get(key)
        if fr is None:
            ct, _, _ = tissue_on_grid(self.kind, g, unit)
            big = np.column_stack([ct, g.cb])
            if delay != 0.0:
                big = shift_grid(big, delay, g.t)
            fr = np.asarray(g.S @ big)
            if curves is not None:
                curves[key] = fr
        a, b = self.sw * fr[:, 0], self.sw * fr[:, 1]
        yy = self.sw * self.y
        aa = max(float(a @ a), 1e-300)
        if self.vb_fixed is None:
            ab, bb, ay, by = float(a @ b), float(b @ b), float(a @ yy), float(b @ yy)
            det = aa * bb - ab * ab
            vb = (aa * by - ab * ay) / det if det > 1e-12 * aa * bb else 0.0
            vb = float(np.clip(vb, *vb_bounds))
        else:
            vb = self.vb_fixed
        k1 = max(float(a @ (yy - vb * b)) / aa / (1 - vb), 1e-6)
        r = (1 - vb) * k1 * a + vb * b - yy
        x = [k1, *[float(v) for v in kin[1:]]]
        if self.vb_fixed is None:
            x.append(vb)
        if self.delay_fit:
            x.append(delay)
        return np.array(x), float(r @ r)


class _LMResult:
    __slots__ = ("x", "cost", "success", "message", "nfev")

    def __init__(self, x: FloatArray, cost: float, success: bool, message: str,
                 nfev: int) -> None:
        self.x, self.cost, self.success, self.message, self.nfev = (x, cost, success, message,
                                                                     nfev)


def _lm(prob: _CompartmentProblem, x0: FloatArray, lb: FloatArray, ub: FloatArray, *,
        max_iter: int = 200, ftol: float = 1e-9, xtol: float = 1e-8) -> _LMResult:
    """Bounded Levenberg–Marquardt (Marquardt scaling, active-set projection on the box).

    Small dense problems (2–6 parameters, ~40 residuals) are dominated by Python overhead in
    general-purpose solvers; this loop does one model evaluation per trial step. Variables on
    a bound whose gradient points outwards are held there; trial points are clipped to the box.
    Converges when the relative cost decrease and the relative step are both below tolerance.
    """
    x = np.clip(np.asarray(x0, float), lb, ub)
    f, J = prob.evaluate(x)
    assert J is not None
    cost = float(f @ f)
    lam = 1e-3
    nfev = 1
    for _ in range(max_iter):
        g = J.T @ f
        active = ((x <= lb) & (g > 0)) | ((x >= ub) & (g < 0))
        free = ~active
        if not free.any():
            return _LMResult(x, 0.5 * cost, True, "all parameters at bounds", nfev)
        A = J[:, free].T @ J[:, free]
        dA = np.diag(A).copy()
        dA[dA <= 0] = 1e-12
        gf = g[free]
        improved = False
        xn, fn, Jn, cn = x, f, J, cost
        while lam < 1e10:
            try:
                step = np.linalg.solve(A + lam * np.diag(dA), -gf)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            xn = x.copy()
            xn[free] += step
            xn = np.clip(xn, lb, ub)
            # residuals and Jacobian together: most trial steps are accepted
            fn, Jn_ = prob.evaluate(xn)
            assert Jn_ is not None
            Jn = Jn_
            nfev += 1
            cn = float(fn @ fn)
            if np.isfinite(cn) and cn < cost:
                improved = True
                break
            lam *= 10
        if not improved:
            return _LMResult(x, 0.5 * cost, True, "no further decrease (minimum)", nfev)
        dx = np.abs(xn - x)
        dcost = cost - cn
        x, cost, f, J = xn, cn, fn, Jn
        lam = max(lam / 10, 1e-12)
        if dcost <= ftol * cost or np.all(dx <= xtol * (np.abs(x) + xtol)):
            return _LMResult(x, 0.5 * cost, True, "converged", nfev)
    return _LMResult(x, 0.5 * cost, False, f"no convergence in {max_iter} iterations", nfev)


def _at_bound(x: FloatArray, lb: FloatArray, ub: FloatArray, rtol: float = 1e-4) -> bool:
    tol = rtol * (ub - lb)
    return bool(np.any((x - lb <= tol) | (ub - x <= tol)))


def free_names(kind: str, vb_fixed: float | None, delay_fit: bool) -> list[str]:
    """Names of the fitted parameters, in the order of :class:`_CompartmentProblem`.

    Parameters
    ----------
    kind : {"1tcm", "2tcm"}
        Compartment model.
    vb_fixed : float or None
        Fixed blood volume (None: fitted).
    delay_fit : bool
        Whether the delay is fitted.

    Returns
    -------
    list of str
    """
    names = ["K1", "k2"] + (["k3", "k4"] if kind == "2tcm" else [])
    if vb_fixed is None:
        names.append("vB")
    if delay_fit:
        names.append("delay")
    return names


def _fit_one(prob: _CompartmentProblem, kind: str, bounds: Mapping[str, tuple[float, float]],
             free: list[str], n_starts: int,
             curves: dict[Any, FloatArray] | None = None) -> tuple[FloatArray, bool, bool]:
    """Multistart LM of one row -> (x, converged, at_bound); ``curves``: the start-grid
    curves shared by the rows of one call (:meth:`_CompartmentProblem.profile`)."""
    rates = ["k2"] + (["k3", "k4"] if kind == "2tcm" else [])
    lb = np.array([bounds[k][0] for k in free])
    ub = np.array([bounds[k][1] for k in free])
    lo = np.array([bounds[k][0] for k in rates])
    hi = np.array([bounds[k][1] for k in rates])
    cands: list[tuple[float, FloatArray]] = []
    delays = np.linspace(*bounds["delay"], 5) if prob.delay_fit else np.zeros(1)
    for start in START_GRIDS[kind]:
        kin = np.array(start, dtype=float)
        kin[1:] = np.clip(kin[1:], lo, hi)
        for dl in delays:
            x0, cost = prob.profile(kin, bounds["vB"], delay=float(dl), curves=curves)
            cands.append((cost, x0))
    cands.sort(key=lambda c: c[0])
    if prob.delay_fit:
        n_starts = max(n_starts, 2)
    best: _LMResult | None = None
    for _, x0 in cands[:n_starts]:
        res = _lm(prob, x0, lb, ub)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    x = best.x
    return x, bool(best.success and np.all(np.isfinite(x))), _at_bound(x, lb, ub)


def fit_rows(kind: str, grid: Grid, y: FloatArray, w: FloatArray, *, vb_fixed: float | None,
             delay_fit: bool, bounds: Mapping[str, tuple[float, float]], n_starts: int,
             se: bool) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.uint8]]:
    """Nonlinear fit of every row (region scale: a Python loop over rows).

    Parameters
    ----------
    kind : ``"1tcm"`` | ``"2tcm"``
    grid : Grid
    y : array (n, n_frames)
        TACs (rows with non-finite values must have been zeroed; they are fitted but the
        caller blanks them).
    w : array (n_frames,)
        Frame weights.
    vb_fixed : float or None
        Fixed vB, or None to fit it.
    delay_fit : bool
        Fit the delay (relative to the grid).
    bounds : mapping
        Bounds of every parameter.
    n_starts : int
        Number of the best start-grid points refined by LM.
    se : bool
        Compute the Gauss–Newton covariance.

    Returns
    -------
    x : array (n, p)
        Fitted free parameters (:func:`free_names` order).
    cov : array (n, p, p)
        Their covariance (NaN without ``se``).
    rss : array (n,)
        Weighted residual sum of squares.
    flag : uint8 array (n,)
        ``FLAG_EDGE`` at a bound, ``FLAG_NOT_CONVERGED`` when LM failed.
    """
    n = y.shape[0]
    free = free_names(kind, vb_fixed, delay_fit)
    p = len(free)
    x = np.full((n, p), np.nan)
    jac = np.full((n, y.shape[1], p), np.nan)
    rss = np.full(n, np.nan)
    flag = np.zeros(n, np.uint8)
    curves: dict[Any, FloatArray] = {}  # start-grid curves: computed once for all rows
    for i in range(n):  # nonlinear: one LM per row (region scale only)
        prob = _CompartmentProblem(kind, grid, y[i], w, vb_fixed, delay_fit)
        try:
            xi, conv, edge = _fit_one(prob, kind, bounds, free, n_starts, curves)
            f, J = prob.evaluate(xi)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError):
            flag[i] |= FLAG_NOT_CONVERGED
            continue
        x[i] = xi
        rss[i] = float(f @ f)
        if J is not None:
            jac[i] = J
        flag[i] |= (FLAG_EDGE if edge else 0) | (0 if conv else FLAG_NOT_CONVERGED)
    cov = np.full((n, p, p), np.nan)
    if se:
        # J holds the weighted derivatives; the 0/1 weights only count the frames used
        cov = gauss_newton_cov(jac, (np.asarray(w) > 0).astype(float), rss)
    return x, cov, rss, flag


def derived_se(derive: Callable[[FloatArray], Mapping[str, FloatArray]], theta: FloatArray,
               cov: FloatArray) -> dict[str, FloatArray]:
    """Delta-method standard errors of derived parameters (NaN rows stay NaN).

    Parameters
    ----------
    derive : callable
        ``derive(theta (n, p)) -> {name: array (n,)}``.
    theta : array (n, p)
        Fitted parameters.
    cov : array (n, p, p)
        Their covariance.

    Returns
    -------
    dict
        ``"<name>_se" -> array (n,)``.
    """
    ok = np.all(np.isfinite(theta), axis=1)
    th = np.where(ok[:, None], theta, 1.0)
    out = delta_se(derive, th, np.where(ok[:, None, None], cov, np.nan))
    return {k: np.where(ok, v, np.nan) for k, v in out.items()}
