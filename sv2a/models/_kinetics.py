"""Numerical core shared by every model: exponential convolution, running integrals, frames.

This module owns the primitives; the regional models (:mod:`.plasma`, :mod:`.reference`), the
vectorised voxel solvers (:mod:`.basis`) and :mod:`sv2a.weights` call them:

* :func:`exp_conv` -- ``b ⊗ e^{−αt}`` of a finely sampled input (plasma) on a :class:`Grid`;
  :func:`plasma_convolution`, :func:`plasma_frame_means`, :func:`plasma_frame_integrals` put it
  (for many rates at once) onto frames.
* :func:`tac_convolution` -- ``C ⊗ e^{−kt}`` of a frame-sampled TAC (reference region) for a
  vector of rates: piecewise linear through the mid-times (:func:`exp_conv_pwlinear`), held at
  the frame mean (:func:`exp_conv_step`) or kinfitr's discretisation (:func:`exp_conv_kinfitr`).
* :func:`integral_matrix` -- running integrals of frame-sampled TACs (trapezoid on mid-times,
  kinfitr's framecumsum, or frame means held within frames).
* :func:`rate_grid` -- log-spaced grid of basis-function rate constants.

Fine-grid convolution (plasma input).

The input ``b`` (plasma) is taken as piecewise linear between the nodes of a uniform grid of
step ``h`` (min). The convolution ``y(t) = ∫_0^t e^{−α(t−s)} b(s) ds`` then obeys the exact
recursion (one pole, so ``scipy.signal.lfilter`` runs it in C)::

    y_i = e^{−αh} y_{i−1} + c0 b_{i−1} + c1 b_i,
    c0 = E1/h,  c1 = E0 − E1/h,  E_n = ∫_0^h u^n e^{−αu} du,

and its derivative ``g = ∂y/∂α`` obeys the same recursion driven by the derivatives of the
coefficients (``∂E_n/∂α = −E_{n+1}``). kinfitr's discrete convolution (``pracma::conv * step``,
i.e. ``y_i = e^{−αh} y_{i−1} + h b_i``) is available as ``scheme="kinfitr"`` for
like-for-like comparisons.

Model values on the grid are mapped to frames by a sparse matrix: exact integration of the
piecewise-linear grid curve over each frame (frame average, the default) or linear
interpolation at mid-times (``sampling="mid"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, cast, overload

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from ..errors import ModelError

if TYPE_CHECKING:
    import scipy.sparse as sp

    from ..blood import InputFunction
    from ..frames import FrameSchedule

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
#: ``(i0, i1, h)`` runs of a piecewise-uniform grid: nodes ``i0..i1-1`` spaced ``h`` min apart.
Segments = tuple[tuple[int, int, float], ...]


class _Filter(Protocol):
    """Signature of the first-order IIR filter returned by :func:`_make_filter`."""

    def __call__(self, a: float, z: FloatArray, zi: float = 0.0) -> FloatArray: ...


def _make_filter() -> _Filter:
    """First-order IIR filter ``y_i = a y_{i-1} + z_i``; scipy's C routine called directly when
    available (lfilter's Python wrapper costs more than the filtering itself on ~1500 points).
    """
    from scipy.signal import lfilter  # ~0.8 s to import: only when a convolution first runs

    try:
        from scipy.signal import _sigtools

        lin = _sigtools._linear_filter
        test = np.arange(5.0)
        ok = np.allclose(lin(np.array([1.0]), np.array([1.0, -0.5]), test, -1, np.array([1.0]))[0],
                         lfilter([1.0], [1.0, -0.5], test, zi=[1.0])[0])
    except Exception:  # pragma: no cover - private API moved
        ok = False
    one = np.array([1.0])
    if ok:
        def filt(a: float, z: FloatArray, zi: float = 0.0) -> FloatArray:
            out: FloatArray = lin(one, np.array([1.0, -a]), z, -1, np.array([zi]))[0]
            return out
    else:  # pragma: no cover
        def filt(a: float, z: FloatArray, zi: float = 0.0) -> FloatArray:
            out: FloatArray = lfilter(one, [1.0, -a], z, zi=[zi])[0]
            return out
    return filt


def _filt_first_call(a: float, z: FloatArray, zi: float = 0.0) -> FloatArray:
    """First call: build the filter of :func:`_make_filter`, rebind ``_filt`` to it (the callers
    in this module look the name up at each call) and run it. Keeps scipy.signal out of
    ``import sv2a.models`` for runs that never convolve (SUVR, Logan, MRTM maps)."""
    global _filt
    f = _make_filter()
    _filt = f
    return f(a, z, zi)


#: ``y_i = a y_{i-1} + z_i`` (first-order IIR filter, scipy's C routine after the first call).
_filt: _Filter = _filt_first_call

__all__ = [
    "exp_conv",
    "exp_conv_pwlinear",
    "exp_conv_step",
    "exp_conv_kinfitr",
    "tac_convolution",
    "plasma_convolution",
    "plasma_frame_means",
    "plasma_frame_integrals",
    "integral_matrix",
    "frame_segments",
    "cumtrapz",
    "rate_grid",
    "sampling_matrix",
    "Grid",
    "make_grid",
    "tcm2_rates",
    "shift_grid",
]


def _en(x: float) -> tuple[float, float, float]:
    """``∫_0^1 v^n e^{−xv} dv`` for n = 0, 1, 2 (stable for small x)."""
    if abs(x) < 1e-2:
        x2, x3 = x * x, x * x * x
        return (1 - x / 2 + x2 / 6 - x3 / 24,
                0.5 - x / 3 + x2 / 8 - x3 / 30,
                1 / 3 - x / 4 + x2 / 10 - x3 / 36)
    ex = math.exp(-x)  # math, not NumPy: scalars, called thousands of times per fit
    f0 = -math.expm1(-x) / x
    f1 = (1 - ex * (1 + x)) / (x * x)
    f2 = (2 - ex * (x * x + 2 * x + 2)) / (x * x * x)
    return f0, f1, f2


def _coeffs(alpha: float, h: float,
            scheme: str) -> tuple[float, float, float, float, float, float]:
    """Recursion coefficients ``(a, c0, c1)`` and their derivatives w.r.t. ``α``."""
    a = math.exp(-alpha * h)
    if scheme == "kinfitr":
        return a, 0.0, h, -h * a, 0.0, 0.0
    f0, f1, f2 = _en(alpha * h)
    e0, e1, e2 = h * f0, h * h * f1, h**3 * f2
    # y_i = a y_{i-1} + c0 b_{i-1} + c1 b_i ; ∂E_n/∂α = −E_{n+1}
    return a, e1 / h, e0 - e1 / h, -h * a, -e2 / h, -e1 + e2 / h


@overload
def exp_conv(b: FloatArray, alpha: float, grid: Grid | float, *, scheme: str | None = None,
             deriv: Literal[False] = False) -> FloatArray: ...


@overload
def exp_conv(b: FloatArray, alpha: float, grid: Grid | float, *, scheme: str | None = None,
             deriv: Literal[True]) -> tuple[FloatArray, FloatArray]: ...


@overload
def exp_conv(b: FloatArray, alpha: float, grid: Grid | float, *, scheme: str | None = None,
             deriv: bool) -> FloatArray | tuple[FloatArray, FloatArray]: ...


def exp_conv(b: FloatArray, alpha: float, grid: Grid | float, *, scheme: str | None = None,
             deriv: bool = False) -> FloatArray | tuple[FloatArray, FloatArray]:
    """Convolution ``y(t) = ∫_0^t e^{−α(t−s)} b(s) ds`` on a grid (and ``∂y/∂α``).

    Parameters
    ----------
    b : array (n_grid,)
        Input at the grid nodes (piecewise linear between nodes).
    alpha : float
        Rate (1/min), ``>= 0``.
    grid : Grid or float
        A :class:`Grid` (piecewise-uniform nodes) or a uniform step ``h`` (min) with nodes
        ``t_i = i h``.
    scheme : ``"exact"`` or ``"kinfitr"``
        Exact integral of the piecewise-linear input (default), or kinfitr's rectangle sum
        (``y_i = e^{−αh} y_{i−1} + h b_i``, uniform grids only). Default: ``grid.scheme``.
    deriv : bool
        Also return ``∂y/∂α``.

    Returns
    -------
    y : np.ndarray (n_grid,)
        The convolution at the grid nodes (kBq·min/mL for ``b`` in kBq/mL).
    dy : np.ndarray (n_grid,)
        ``∂y/∂α`` (kBq·min²/mL), only with ``deriv=True``.
    """
    segments: Segments
    if isinstance(grid, Grid):
        segments = grid.segments
        scheme = scheme or grid.scheme
    else:
        segments = ((0, b.size, float(grid)),)
        scheme = scheme or "exact"
    n = b.size
    y = np.empty(n)
    g = np.empty(n if deriv else 0)  # only filled (and returned) with deriv=True
    y_prev = 0.0
    g_prev = 0.0
    for i0, i1, h in segments:
        a, c0, c1, da, dc0, dc1 = _coeffs(alpha, h, scheme)
        lo = max(i0 - 1, 0)
        bp = b[lo : i1 - 1]  # b_{i-1}
        bn = b[lo + 1 : i1]  # b_i
        if i0 == 0:
            # node 0 is t = 0: y_0 = 0 (exact) or h b_0 (kinfitr)
            y[0] = c1 * b[0] if scheme == "kinfitr" else 0.0
            y[1:i1] = _filt(a, c0 * bp + c1 * bn, a * y[0])
        else:
            y[i0:i1] = _filt(a, c0 * bp + c1 * bn, a * y_prev)
        if deriv:
            yp = y[lo : i1 - 1]
            x = da * yp + dc1 * bn
            if dc0:
                x += dc0 * bp
            if i0 == 0:
                g[0] = 0.0
                g[1:i1] = _filt(a, x, 0.0)
            else:
                g[i0:i1] = _filt(a, x, a * g_prev)
            g_prev = g[i1 - 1]
        y_prev = y[i1 - 1]
    return (y, g) if deriv else y


@overload
def tcm2_rates(K1: float, k2: float, k3: float,
               k4: float) -> tuple[float, float, float, float]: ...


@overload
def tcm2_rates(K1: complex, k2: complex, k3: complex,
               k4: complex) -> tuple[complex, complex, complex, complex]: ...


def tcm2_rates(K1: complex, k2: complex, k3: complex,
               k4: complex) -> tuple[complex, complex, complex, complex]:
    """Macro-parameters of the 2TCM impulse response ``K1 [φ1' e^{−α1 t} + φ2' e^{−α2 t}]``.

    ``C_T = φ1 (e^{−α1 t} ⊗ Cp) + φ2 (e^{−α2 t} ⊗ Cp)``,
    ``α1,2 = (s ∓ √(s² − 4 k2 k4))/2``, ``s = k2 + k3 + k4``,
    ``φ1 = K1 (k3 + k4 − α1)/(α2 − α1)``, ``φ2 = K1 (α2 − k3 − k4)/(α2 − α1)``.
    Works for complex arguments (used for complex-step derivatives).

    Parameters
    ----------
    K1 : float
        Influx rate (mL/cm³/min).
    k2, k3, k4 : float
        Rate constants (1/min).

    Returns
    -------
    tuple of float
        ``(φ1, φ2, α1, α2)``: amplitudes ``φ1, φ2`` (mL/cm³/min) and rates ``α1 <= α2``
        (1/min).

    Examples
    --------
    >>> [round(float(v), 6) for v in tcm2_rates(0.3, 0.1, 0.0, 0.0)]  # k3 = 0: one exponential
    [0.0, 0.3, 0.0, 0.1]
    """
    s = k2 + k3 + k4
    disc = s * s - 4 * k2 * k4
    # real input: clip a negative discriminant (round-off) to 0; complex input: complex root
    d: complex = (np.sqrt(disc + 0j) if np.iscomplexobj(disc)
                  else np.sqrt(max(cast("float", disc), 0.0)))
    d = d if abs(d) > 1e-12 else 1e-12
    a1 = (s - d) / 2
    a2 = (s + d) / 2
    p1 = K1 * (k3 + k4 - a1) / d
    p2 = K1 * (a2 - k3 - k4) / d
    return p1, p2, a1, a2


def tcm2_rates_jac(K1: float, k2: float, k3: float,
                   k4: float) -> tuple[FloatArray, FloatArray]:
    """``(φ1, φ2, α1, α2)`` and their 4x4 Jacobian w.r.t. ``(K1, k2, k3, k4)`` (complex step).

    Parameters
    ----------
    K1 : float
        Influx rate (mL/cm³/min).
    k2, k3, k4 : float
        Rate constants (1/min).

    Returns
    -------
    val : np.ndarray (4,)
        ``(φ1, φ2, α1, α2)`` of :func:`tcm2_rates` (mL/cm³/min, 1/min).
    jac : np.ndarray (4, 4)
        ``∂val_i/∂(K1, k2, k3, k4)_j``.
    """
    p = np.array([K1, k2, k3, k4], dtype=complex)
    val = np.array(tcm2_rates(*p.real), dtype=float)
    jac = np.empty((4, 4))
    eps = 1e-20
    for j in range(4):
        q = p.copy()
        q[j] += 1j * eps
        s = q[1] + q[2] + q[3]
        d = np.sqrt(s * s - 4 * q[1] * q[3])
        a1, a2 = (s - d) / 2, (s + d) / 2
        out = (q[0] * (q[2] + q[3] - a1) / d, q[0] * (a2 - q[2] - q[3]) / d, a1, a2)
        jac[:, j] = [o.imag / eps for o in out]
    return val, jac


@dataclass
class Grid:
    """Input curves on a piecewise-uniform grid (min) plus the frame sampling matrix.

    ``segments`` lists ``(i0, i1, h)``: nodes ``i0..i1-1`` are each ``h`` after the previous
    one (node 0 is t = 0).
    """

    t: FloatArray
    segments: Segments
    cp: FloatArray
    cb: FloatArray
    dcp: FloatArray
    dcb: FloatArray
    S: sp.csr_matrix
    scheme: str

    @property
    def h(self) -> float:
        """The finest step (min)."""
        return min(seg[2] for seg in self.segments)


def _interp_rows(x: FloatArray, nodes: FloatArray) -> tuple[IntArray, FloatArray, FloatArray]:
    """Indices and weights of linear interpolation at ``x`` on ``nodes``."""
    k = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, nodes.size - 2)
    f = np.clip((x - nodes[k]) / (nodes[k + 1] - nodes[k]), 0.0, 1.0)
    return k, 1.0 - f, f


def sampling_matrix(t0: FloatArray, t1: FloatArray, nodes: FloatArray,
                    sampling: str) -> sp.csr_matrix:
    """Sparse matrix mapping grid values (piecewise linear on ``nodes``) to frame values.

    Parameters
    ----------
    t0, t1 : np.ndarray (n_frames,)
        Frame starts and ends (min).
    nodes : np.ndarray (n_grid,)
        Grid nodes (min), increasing.
    sampling : ``"frame"`` | ``"mid"``
        ``"frame"``: row i integrates the piecewise-linear curve exactly over ``[t0_i, t1_i]``
        and divides by the duration. ``"mid"``: row i interpolates linearly at
        ``(t0_i + t1_i)/2``.

    Returns
    -------
    scipy.sparse.csr_matrix (n_frames, n_grid)
        Frame values are ``S @ values_at_nodes`` (same units as the values).

    Raises
    ------
    ModelError
        For an unknown ``sampling``.
    """
    from scipy import sparse  # ~0.1 s to import: only models on a fine grid need it

    n_grid = nodes.size
    nf = len(t0)
    if sampling == "mid":
        tm = 0.5 * (np.asarray(t0) + np.asarray(t1))
        k, w0, w1 = _interp_rows(tm, nodes)
        m = sparse.coo_matrix((np.concatenate([w0, w1]),
                               (np.tile(np.arange(nf), 2), np.concatenate([k, k + 1]))),
                              shape=(nf, n_grid))
        return m.tocsr()
    if sampling != "frame":
        raise ModelError(f"unknown sampling {sampling!r}; use 'frame' or 'mid'")
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    for i, (a, b) in enumerate(zip(t0, t1, strict=True)):
        inner = nodes[(nodes > a) & (nodes < b)]
        pts = np.concatenate([[a], inner, [b]])
        k, w0, w1 = _interp_rows(pts, nodes)
        dx = np.diff(pts)
        # trapezoid over breakpoints: weight of point j = (dx_{j-1} + dx_j)/2
        pw = np.zeros(pts.size)
        pw[:-1] += dx / 2
        pw[1:] += dx / 2
        pw /= (b - a)
        rows.append(np.full(2 * pts.size, i))
        cols.append(np.concatenate([k, k + 1]))
        vals.append(np.concatenate([pw * w0, pw * w1]))
    m = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(nf, n_grid))
    return m.tocsr()


def _nodes(t_last: float, step: float, step_late: float | None,
           switch: float | None) -> tuple[FloatArray, Segments]:
    """Grid nodes (min) past ``t_last``: step ``step``, then ``step_late`` after ``switch``."""
    if not step_late or switch is None or switch >= t_last or step_late <= step:
        n = int(np.ceil(t_last / step)) + 2
        return np.arange(n, dtype=np.float64) * step, ((0, n, step),)
    n1 = int(np.ceil(switch / step))
    t1 = n1 * step
    n2 = int(np.ceil((t_last - t1) / step_late)) + 2
    t = np.concatenate([np.arange(n1 + 1, dtype=np.float64) * step,
                        t1 + np.arange(1, n2 + 1, dtype=np.float64) * step_late])
    return t, ((0, n1 + 1, step), (n1 + 1, n1 + 1 + n2, step_late))


def make_grid(inp: InputFunction, t0: npt.ArrayLike, t1: npt.ArrayLike, *,
              sampling: str = "frame",
              scheme: str = "exact", step: float | None = None, delay: float = 0.0,
              n_points: int | None = None, step_late: float | None = 0.1,
              switch: float | str | None = "auto") -> Grid:
    """Put an :class:`~sv2a.blood.InputFunction` on a grid covering the frames.

    Parameters
    ----------
    inp : InputFunction
        Plasma and whole-blood curves (min, kBq/mL).
    t0, t1 : array_like (n_frames,)
        Frame starts/ends (min).
    sampling : ``"frame"`` | ``"mid"``
        Frame averages or mid-time values in the sampling matrix (:func:`sampling_matrix`).
    scheme : ``"exact"`` | ``"kinfitr"``
        ``"kinfitr"`` uses kinfitr's grid: ``n_points`` (default 6000) uniform points on
        ``[0, t_last]`` (last mid-time for mid sampling) and its rectangle-sum convolution.
    step : float
        Fine grid step (min), default 1/60 min (1 s).
    step_late, switch : float
        After ``switch`` min the step becomes ``step_late`` (default 0.1 min), where the input
        is smooth. ``switch="auto"``: the later of 10 min and 5 min after the input peak.
        ``step_late=None`` keeps the fine step throughout.
    delay : float
        Fixed delay (min): the input is shifted to ``Cp(t − delay)``, ``Cb(t − delay)``.
    n_points : int, optional
        Number of grid points of the ``"kinfitr"`` scheme.

    Returns
    -------
    Grid
        Nodes (min), plasma ``cp`` and whole blood ``cb`` (kBq/mL) and their time derivatives
        at the nodes, and the frame sampling matrix.

    Raises
    ------
    ModelError
        For an unknown ``sampling`` or a ``switch`` string other than ``"auto"``.
    """
    t0 = np.asarray(t0, dtype=float)
    t1 = np.asarray(t1, dtype=float)
    t_last = float((0.5 * (t0 + t1))[-1] if sampling == "mid" else t1[-1])
    t: FloatArray
    segments: Segments
    if scheme == "kinfitr":
        n = int(n_points or 6000)
        h = t_last / (n - 1)
        t = np.arange(n + 1, dtype=np.float64) * h  # one node past the last mid-time
        segments = ((0, n + 1, h),)
    else:
        step = float(step or 1.0 / 60.0)
        t_switch: float | None
        if switch == "auto":
            tt = np.asarray(inp.time, dtype=float)
            t_peak = float(tt[np.argmax(inp.plasma)]) + max(delay, 0.0)
            t_switch = max(10.0, t_peak + 5.0)
        elif isinstance(switch, str):
            raise ModelError(f"grid switch must be a time (min), 'auto' or None, got {switch!r}")
        else:
            t_switch = switch
        t, segments = _nodes(t_last, step, step_late, t_switch)
    cp = np.asarray(inp.plasma_at(t - delay), dtype=float)
    cb = np.asarray(inp.whole_blood_at(t - delay), dtype=float)
    S = sampling_matrix(t0, t1, t, sampling)
    return Grid(t=t, segments=segments, cp=cp, cb=cb, dcp=np.gradient(cp, t),
                dcb=np.gradient(cb, t), S=S, scheme=scheme)


def shift_grid(Y: FloatArray, delay: float, t: FloatArray) -> FloatArray:
    """``Y(t − delay)`` for curves at grid nodes ``t`` (axis 0 = nodes).

    Linear interpolation; the curves are 0 before t = 0 and held at their last value past the
    end of the grid.

    Parameters
    ----------
    Y : np.ndarray (n_grid,) or (n_grid, m)
        Curves at the nodes (e.g. kBq/mL).
    delay : float
        Shift (min); positive moves the curves later.
    t : np.ndarray (n_grid,)
        Grid nodes (min), increasing, ``t[0] = 0``.

    Returns
    -------
    np.ndarray
        The shifted curves, same shape and units as ``Y``.
    """
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    x = t - delay
    k, w0, w1 = _interp_rows(np.clip(x, 0.0, t[-1]), t)
    out = w0[:, None] * Y2[k] + w1[:, None] * Y2[k + 1]
    before = x < 0
    if np.any(before):
        # between the virtual zero at t = −h0 ... the curves are 0 at and before t = 0 − (0)
        out[before] = 0.0
    return out[:, 0] if Y.ndim == 1 else out


# =========================================================================== rate grids
def rate_grid(lo: float = 0.005, hi: float = 1.0, n: int = 100, *,
              what: str = "basis range") -> FloatArray:
    """Log-spaced grid of basis-function rate constants ``θ`` (1/min), ``lo .. hi``, ``n`` values.

    Gunn et al. (1997) basis functions: ``θ_j = lo (hi/lo)^{j/(n−1)}``.

    Parameters
    ----------
    lo, hi : float
        Smallest and largest rate (1/min).
    n : int
        Number of rates, ``>= 3``.
    what : str
        Name of the setting, used in error messages.

    Returns
    -------
    np.ndarray (n,)
        The rates (1/min), increasing.

    Examples
    --------
    >>> rate_grid(0.01, 1.0, 3).tolist()
    [0.01, 0.1, 1.0]

    Raises
    ------
    ModelError
        Unless ``0 < lo < hi`` (finite) and ``n >= 3`` is an integer.
    """
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise ModelError(
            f"{what} must satisfy 0 < low < high (1/min), got ({lo}, {hi}); e.g. (0.005, 1.0)"
        )
    if int(n) != n or n < 3:
        raise ModelError(f"{what}: the number of basis functions must be an integer >= 3, "
                         f"got {n!r}")
    return np.geomspace(lo, hi, int(n))


# =========================================================================== running integrals
def cumtrapz(y: npt.ArrayLike, h: float) -> FloatArray:
    """Running trapezoid integral along the last axis of samples ``y`` with step ``h``.

    Exact for a piecewise-linear curve through the samples; the first value is 0.

    Parameters
    ----------
    y : array_like (..., n)
        Samples (e.g. kBq/mL) on a uniform grid.
    h : float
        Grid step (min).

    Returns
    -------
    np.ndarray (..., n)
        Running integral (e.g. kBq·min/mL).

    Examples
    --------
    >>> cumtrapz([0.0, 1.0, 2.0], 0.5).tolist()
    [0.0, 0.25, 1.0]
    """
    y = np.asarray(y, dtype=float)
    out = np.zeros(y.shape)
    np.cumsum((y[..., 1:] + y[..., :-1]) * (0.5 * h), axis=-1, out=out[..., 1:])
    return out


def frame_segments(
    frames: FrameSchedule,
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int_]]:
    """Piecewise-constant segments covering ``[0, end of last frame]``.

    Leading time before the first frame has value 0, gaps take the mean of the two neighbouring
    frames.

    Parameters
    ----------
    frames : FrameSchedule
        Frame timing (min).

    Returns
    -------
    start, duration : np.ndarray (n_seg,)
        Segment starts and durations (min).
    M : np.ndarray (n_seg, n_frames)
        Segment ``i`` has value ``(M @ C)[i]`` for frame values ``C``.
    rows : np.ndarray (n_frames,) of int
        ``rows[k]`` is the segment of frame ``k``.
    """
    s, e = frames.start, frames.end
    m = frames.n
    starts: list[float] = []
    durs: list[float] = []
    mrows: list[FloatArray] = []
    rows: list[int] = []
    if s[0] > 1e-9:
        starts.append(0.0)
        durs.append(float(s[0]))
        mrows.append(np.zeros(m))
    for k in range(m):
        if k > 0 and s[k] > e[k - 1] + 1e-9:
            starts.append(float(e[k - 1]))
            durs.append(float(s[k] - e[k - 1]))
            r = np.zeros(m)
            r[k - 1] = r[k] = 0.5
            mrows.append(r)
        rows.append(len(starts))
        starts.append(float(s[k]))
        durs.append(float(e[k] - s[k]))
        r = np.zeros(m)
        r[k] = 1.0
        mrows.append(r)
    return np.array(starts), np.array(durs), np.array(mrows), np.array(rows)


def integral_matrix(t: npt.ArrayLike | None = None, *, method: str = "trapezoid",
                    durations: npt.ArrayLike | None = None,
                    frames: FrameSchedule | None = None) -> FloatArray:
    """Matrix ``A`` (n_frames, n_frames) with ``∫_0^{t_i} C ≈ (A @ C)_i`` for frame values ``C``.

    Parameters
    ----------
    t : array (n,), optional
        Sample (mid-)times (min); needed for ``"trapezoid"``.
    method : ``"trapezoid"`` | ``"framecumsum"`` | ``"frame"``
        ``"trapezoid"``: trapezoid rule on ``t`` with (0, 0) prepended (kinfitr, TPCCLIB
        ``-mid=y``). ``"framecumsum"``: ``Σ_{j<i} C_j Δt_j + C_i Δt_i / 2`` (kinfitr
        ``framecumsum``; needs ``durations``). ``"frame"``: frame averages of the running
        integral of a TAC held at its frame mean inside each frame (needs ``frames``); equals
        ``"framecumsum"`` for contiguous frames, and bridges gaps between frames with the mean
        of the neighbouring frames (time before the first frame counts as zero activity). For a
        TAC linear within a frame its error is ``−C' Δt²/12``.
    durations : array (n,), optional
        Frame durations (min) for ``"framecumsum"``.
    frames : FrameSchedule, optional
        Frame timing for ``"frame"``.

    Returns
    -------
    np.ndarray (n_frames, n_frames)
        Integration weights (min).

    Raises
    ------
    ModelError
        For an unknown ``method`` or when the timing it needs is missing.

    Examples
    --------
    >>> integral_matrix(np.array([1.0, 2.0])).tolist()
    [[0.5, 0.0], [1.0, 0.5]]
    """
    if method == "frame":
        if frames is None:
            raise ModelError("integral_matrix(method='frame') needs frames=")
        _, d, mm, rows = frame_segments(frames)
        low = np.tril(np.broadcast_to(d, (d.size, d.size)), -1) + np.diag(d / 2.0)
        out: FloatArray = (low @ mm)[rows]
        return out
    if method == "framecumsum":
        if durations is None:
            raise ModelError("integral_matrix(method='framecumsum') needs durations=")
        dur = np.asarray(durations, dtype=float)
        return np.tril(np.broadcast_to(dur, (dur.size, dur.size)), -1) + np.diag(dur / 2.0)
    if method != "trapezoid":
        raise ModelError(
            f"unknown integration method {method!r}; use 'trapezoid', 'framecumsum' or 'frame'")
    if t is None:
        raise ModelError("integral_matrix(method='trapezoid') needs the mid-times t")
    t = np.asarray(t, dtype=float)
    h = np.diff(np.concatenate([[0.0], t]))  # h[k] = t_k − t_{k−1}
    # ∫_0^{t_i} = Σ_{k<=i} h_k (C_{k−1} + C_k)/2 with C_{−1} = 0
    low = np.tril(np.broadcast_to(h, (t.size, t.size)))
    a = low / 2
    a[:, :-1] += low[:, 1:] / 2
    return a


# =========================================================================== TAC convolutions
def _tac_nodes(t_mid: npt.ArrayLike, c: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Interpolation nodes of a TAC: mid-times with (0, 0) prepended when t_mid[0] > 0."""
    t_mid = np.asarray(t_mid, dtype=float)
    c = np.asarray(c, dtype=float)
    if t_mid[0] > 0:
        return np.concatenate([[0.0], t_mid]), np.concatenate([[0.0], c])
    return t_mid, c


def _interp_extrap(t: FloatArray, tn: FloatArray, cn: FloatArray) -> FloatArray:
    """Linear interpolation with linear extrapolation of the last segment beyond ``tn[-1]``."""
    out = np.interp(t, tn, cn)
    late = t > tn[-1]
    if late.any() and tn.size >= 2:
        slope = (cn[-1] - cn[-2]) / (tn[-1] - tn[-2])
        out[late] = cn[-1] + slope * (t[late] - tn[-1])
    return out


def exp_conv_pwlinear(t_nodes: npt.ArrayLike, c_nodes: npt.ArrayLike, k: npt.ArrayLike,
                      t_out: npt.ArrayLike | None = None, *, frames: FrameSchedule | None = None,
                      sampling: str = "mid") -> FloatArray:
    """Exact ``y(t) = ∫_0^t C(s) exp(−k (t − s)) ds`` for piecewise-linear ``C``, many ``k``.

    Parameters
    ----------
    t_nodes, c_nodes : array (m,)
        Nodes of ``C`` (min, kBq/mL), sorted, ``t_nodes[0] = 0``; ``C`` is linear between
        nodes and its last segment is extended linearly.
    k : array (K,)
        Rate constants (1/min), > 0.
    t_out : array (f,)
        Output times (min) for ``sampling="mid"``.
    frames : FrameSchedule, optional
        With ``sampling="frame"``: return the frame averages
        ``(1/Δt) ∫_frame y dt = [∫_frame C − (y(t_e) − y(t_s))] / (k Δt)``
        (from ``dy/dt = C − k y``).
    sampling : ``"mid"`` | ``"frame"``
        Values at ``t_out`` or frame averages over ``frames``.

    Returns
    -------
    np.ndarray (K, f)
        ``y`` (kBq·min/mL) for each rate, at ``t_out`` or averaged over each frame.

    Raises
    ------
    ModelError
        ``sampling="frame"`` without ``frames``.

    Notes
    -----
    On a segment of length ``d`` with ``C(s) = c0 + m s`` the recursion is
    ``y1 = y0 e^{−kd} + c0 (1 − e^{−kd})/k + m (kd − 1 + e^{−kd})/k²`` (exact).
    """
    k = np.atleast_1d(np.asarray(k, dtype=float))
    tn = np.asarray(t_nodes, dtype=float)
    cn = np.asarray(c_nodes, dtype=float)
    fr: FrameSchedule | None = None  # set exactly when sampling == "frame"
    if sampling == "frame":
        if frames is None:
            raise ModelError("exp_conv_pwlinear(sampling='frame') needs frames=")
        fr = frames
        want = np.concatenate([frames.start, frames.end])
    else:
        want = np.asarray(t_out, dtype=float)
    grid = np.unique(np.concatenate([tn, want, [0.0]]))
    cg = _interp_extrap(grid, tn, cn)
    d = np.diff(grid)
    c0 = cg[:-1]
    m = np.diff(cg) / d
    kk = np.maximum(k, 1e-12)[:, None]
    kd = kk * d[None, :]
    one_m_e = -np.expm1(-kd)
    small = kd < 1e-6
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        f1 = np.where(small, d * (1 - kd / 2), one_m_e / kk)
        f2 = np.where(small, d**2 / 2 * (1 - kd / 3), (kd - one_m_e) / kk**2)
    seg = c0[None, :] * f1 + m[None, :] * f2
    e = 1.0 - one_m_e
    y = np.empty((k.size, grid.size))
    y[:, 0] = 0.0
    for i in range(d.size):  # loop over segments (not rows), vectorised over k
        y[:, i + 1] = y[:, i] * e[:, i] + seg[:, i]
    if fr is None:
        return y[:, np.searchsorted(grid, want)]
    i_s = np.searchsorted(grid, fr.start)
    i_e = np.searchsorted(grid, fr.end)
    ic = np.concatenate([[0.0], np.cumsum(d * (cg[:-1] + cg[1:]) / 2)])
    int_c = ic[i_e] - ic[i_s]
    out: FloatArray = (int_c[None, :] - (y[:, i_e] - y[:, i_s])) / (kk * fr.duration[None, :])
    return out


def exp_conv_step(tac: npt.ArrayLike, frames: FrameSchedule,
                  thetas: npt.ArrayLike) -> FloatArray:
    """Frame averages of ``C ⊗ e^{−θt}`` for a TAC of frame means held constant in each frame.

    Parameters
    ----------
    tac : array (n_frames,)
        Frame-mean activity (kBq/mL).
    frames : FrameSchedule
        Frame timing (min); gaps and the time before the first frame as in
        :func:`frame_segments`.
    thetas : array (K,)
        Rate constants (1/min), > 0.

    Returns
    -------
    array (K, n_frames)
        Exact frame averages of the convolution of the piecewise-constant TAC (kBq/mL·min).
        Within a segment of value ``v`` and length ``d``:
        ``y(t) = y_s e^{−θτ} + v (1 − e^{−θτ})/θ`` and its mean is
        ``y_s g + v (1 − g)/θ`` with ``g = (1 − e^{−θd})/(θd)``.
    """
    _, d, mm, rows = frame_segments(frames)
    v = mm @ np.asarray(tac, dtype=float)
    th = np.asarray(thetas, dtype=float)[:, None]
    x = th * d[None, :]
    one_minus_e = -np.expm1(-x)
    g = np.where(x > 1e-12, one_minus_e / np.where(x > 1e-12, x, 1.0), 1.0 - x / 2)
    avg_v = np.where(x > 1e-12, (1.0 - g) / th, d[None, :] / 2)
    out = np.empty((th.shape[0], d.size))
    y = np.zeros(th.shape[0])
    for i in range(d.size):  # loop over frames (not voxels), vectorised over θ
        out[:, i] = y * g[:, i] + v[i] * avg_v[:, i]
        y = y * (1.0 - one_minus_e[:, i]) + v[i] * np.where(
            x[:, i] > 1e-12, one_minus_e[:, i] / th[:, 0], d[i])
    return out[:, rows]


def exp_conv_kinfitr(t_mid: npt.ArrayLike, c: npt.ArrayLike, k: npt.ArrayLike,
                     n_grid: int = 1024) -> tuple[FloatArray, FloatArray]:
    """kinfitr's SRTM convolution: the TAC on ``linspace(0, t_last, n_grid)``, rectangle rule
    ``step · Σ_{j<=i} C_j e^{−k step (i−j)}``, linear interpolation back to ``t_mid``.

    Parameters
    ----------
    t_mid : array_like (f,)
        Frame mid-times (min).
    c : array_like (f,)
        TAC (kBq/mL) at ``t_mid``.
    k : array_like (K,)
        Rate constants (1/min).
    n_grid : int
        Number of points of kinfitr's uniform grid.

    Returns
    -------
    x1 : np.ndarray (f,)
        The TAC interpolated back to the mid-times (kBq/mL).
    B : np.ndarray (K, f)
        The convolutions at the mid-times (kBq·min/mL).
    """
    tn, cn = _tac_nodes(t_mid, c)
    grid = np.linspace(tn[0], tn[-1], n_grid)
    step = grid[1] - grid[0]
    iref = np.interp(grid, tn, cn)
    k = np.atleast_1d(np.asarray(k, dtype=float))
    rel = grid - grid[0]
    b = np.empty((k.size, n_grid))
    safe = k * rel[-1] < 600
    if safe.any():
        ks = k[safe][:, None]
        b[safe] = step * np.exp(-ks * rel) * np.cumsum(iref * np.exp(ks * rel), axis=1)
    for j in np.flatnonzero(~safe):
        b[j] = step * _filt(np.exp(-k[j] * step), iref)
    t_mid = np.asarray(t_mid, dtype=float)
    idx = np.clip(np.searchsorted(grid, t_mid, side="right"), 1, n_grid - 1)
    frac = (t_mid - grid[idx - 1]) / step
    x1 = iref[idx - 1] * (1 - frac) + iref[idx] * frac
    bm = b[:, idx - 1] * (1 - frac) + b[:, idx] * frac
    return x1, bm


def tac_convolution(frames: FrameSchedule, c: npt.ArrayLike, k: npt.ArrayLike, *,
                    sampling: str = "frame",
                    convolution: str = "exact") -> tuple[FloatArray, FloatArray]:
    """A frame-sampled TAC and its convolutions ``B(k) = C ⊗ e^{−kt}`` on the frames.

    Parameters
    ----------
    frames : FrameSchedule
        Frame timing (min).
    c : array (n_frames,)
        TAC (kBq/mL), e.g. the reference region.
    k : array (K,)
        Rates (1/min).
    sampling : ``"frame"`` | ``"mid"``
        Frame averages or mid-time values of the convolution.
    convolution : ``"exact"`` | ``"step"`` | ``"kinfitr"``
        How the TAC is continued between samples: ``"exact"`` -- linear through the mid-times
        with (0, 0) prepended, convolved exactly (:func:`exp_conv_pwlinear`); ``"step"`` --
        held at the frame mean inside each frame (:func:`exp_conv_step`, frame averages only;
        the choice of the vectorised voxel solvers, which makes the operational equations hold
        exactly between frame averages); ``"kinfitr"`` -- kinfitr 0.9's discretisation
        (:func:`exp_conv_kinfitr`, mid-times only).

    Returns
    -------
    x1 : array (n_frames,)
        The TAC as the model sees it (``c`` itself, or kinfitr's interpolated values).
    B : array (K, n_frames)
        The convolutions (kBq·min/mL).

    Raises
    ------
    ModelError
        For an unknown ``convolution`` or ``"step"`` with ``sampling="mid"``.
    """
    c = np.asarray(c, dtype=float)
    if convolution == "kinfitr":
        return exp_conv_kinfitr(frames.mid, c, k)
    if convolution == "step":
        if sampling != "frame":
            raise ModelError("convolution='step' gives frame averages; use sampling='frame'")
        return c, exp_conv_step(c, frames, k)
    if convolution != "exact":
        raise ModelError(
            f"unknown convolution {convolution!r}; use 'exact', 'step' or 'kinfitr'")
    tn, cn = _tac_nodes(frames.mid, c)
    return c, exp_conv_pwlinear(tn, cn, k, frames.mid, frames=frames, sampling=sampling)


# =========================================================================== plasma on frames
def plasma_convolution(inp: InputFunction, frames: FrameSchedule, thetas: npt.ArrayLike, *,
                       delay: float = 0.0, dt: float = 0.005) -> FloatArray:
    """Frame averages of ``Cp ⊗ e^{−θt}`` (kBq/mL·min) for every ``θ`` (1/min).

    ``Cp`` is the metabolite-corrected plasma of ``inp`` (linear interpolation, shifted later
    by ``delay`` min, zero before) on the uniform :func:`make_grid` of step ``dt``; the
    convolution is :func:`exp_conv` (exact for the piecewise-linear input), averaged exactly
    over each frame.

    Parameters
    ----------
    inp : InputFunction
        The plasma input (min, kBq/mL).
    frames : FrameSchedule
        Frame timing (min).
    thetas : array_like (K,)
        Rate constants (1/min).
    delay : float
        Input delay (min).
    dt : float
        Grid step (min).

    Returns
    -------
    array (K, n_frames)
        The convolutions (kBq·min/mL).
    """
    g = make_grid(inp, frames.start, frames.end, step=dt, step_late=None, delay=float(delay))
    th = np.asarray(thetas, dtype=float)
    y = np.empty((g.t.size, th.size))
    for j, k in enumerate(th):  # loop over basis functions (not voxels)
        y[:, j] = exp_conv(g.cp, float(k), g)
    out: FloatArray = (g.S @ y).T
    return out


def plasma_frame_means(inp: InputFunction, frames: FrameSchedule, *, delay: float = 0.0,
                       dt: float = 0.005, whole_blood: bool = False) -> FloatArray:
    """Frame averages of the plasma (or whole-blood) curve (kBq/mL), shifted by ``delay``.

    Parameters
    ----------
    inp : InputFunction
        The blood input (min, kBq/mL).
    frames : FrameSchedule
        Frame timing (min).
    delay : float
        Input delay (min).
    dt : float
        Grid step (min).
    whole_blood : bool
        Average whole blood instead of plasma.

    Returns
    -------
    np.ndarray (n_frames,)
        Frame-average activity (kBq/mL).
    """
    g = make_grid(inp, frames.start, frames.end, step=dt, step_late=None, delay=float(delay))
    out: FloatArray = g.S @ (g.cb if whole_blood else g.cp)
    return out


def plasma_frame_integrals(inp: InputFunction, frames: FrameSchedule, *, delay: float = 0.0,
                           dt: float = 0.005) -> FloatArray:
    """Frame averages of ``∫_0^t Cp`` (kBq/mL·min), ``Cp`` shifted by ``delay``.

    Parameters
    ----------
    inp : InputFunction
        The plasma input (min, kBq/mL).
    frames : FrameSchedule
        Frame timing (min).
    delay : float
        Input delay (min).
    dt : float
        Grid step (min).

    Returns
    -------
    np.ndarray (n_frames,)
        Frame-average running integral of the plasma (kBq·min/mL).
    """
    g = make_grid(inp, frames.start, frames.end, step=dt, step_late=None, delay=float(delay))
    out: FloatArray = g.S @ cumtrapz(g.cp, g.h)
    return out
