"""Numerical core of the compartment models: exponential convolution on a uniform fine grid.

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

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.signal import lfilter

from ..errors import ModelError


def _make_filter():
    """First-order IIR filter ``y_i = a y_{i-1} + z_i``; scipy's C routine called directly when
    available (lfilter's Python wrapper costs more than the filtering itself on ~1500 points).
    """
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
        def filt(a, z, zi=0.0):
            return lin(one, np.array([1.0, -a]), z, -1, np.array([zi]))[0]
    else:  # pragma: no cover
        def filt(a, z, zi=0.0):
            return lfilter(one, [1.0, -a], z, zi=[zi])[0]
    return filt


_filt = _make_filter()

__all__ = ["exp_conv", "sampling_matrix", "Grid", "make_grid", "tcm2_rates", "shift_grid"]


def _en(x: float) -> tuple[float, float, float]:
    """``∫_0^1 v^n e^{−xv} dv`` for n = 0, 1, 2 (stable for small x)."""
    if abs(x) < 1e-2:
        x2, x3 = x * x, x * x * x
        return (1 - x / 2 + x2 / 6 - x3 / 24,
                0.5 - x / 3 + x2 / 8 - x3 / 30,
                1 / 3 - x / 4 + x2 / 10 - x3 / 36)
    ex = np.exp(-x)
    f0 = -np.expm1(-x) / x
    f1 = (1 - ex * (1 + x)) / (x * x)
    f2 = (2 - ex * (x * x + 2 * x + 2)) / (x * x * x)
    return f0, f1, f2


def _coeffs(alpha: float, h: float, scheme: str):
    a = np.exp(-alpha * h)
    if scheme == "kinfitr":
        return a, 0.0, h, -h * a, 0.0, 0.0
    f0, f1, f2 = _en(alpha * h)
    e0, e1, e2 = h * f0, h * h * f1, h**3 * f2
    # y_i = a y_{i-1} + c0 b_{i-1} + c1 b_i ; ∂E_n/∂α = −E_{n+1}
    return a, e1 / h, e0 - e1 / h, -h * a, -e2 / h, -e1 + e2 / h


def exp_conv(b: np.ndarray, alpha: float, grid, *, scheme: str | None = None,
             deriv: bool = False):
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
    """
    if isinstance(grid, Grid):
        segments = grid.segments
        scheme = scheme or grid.scheme
    else:
        segments = ((0, b.size, float(grid)),)
        scheme = scheme or "exact"
    n = b.size
    y = np.empty(n)
    g = np.empty(n) if deriv else None
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


def tcm2_rates(K1, k2, k3, k4):
    """Macro-parameters of the 2TCM impulse response ``K1 [φ1' e^{−α1 t} + φ2' e^{−α2 t}]``.

    Returns ``(φ1, φ2, α1, α2)`` with ``C_T = φ1 (e^{−α1 t} ⊗ Cp) + φ2 (e^{−α2 t} ⊗ Cp)``,
    ``α1,2 = (s ∓ √(s² − 4 k2 k4))/2``, ``s = k2 + k3 + k4``,
    ``φ1 = K1 (k3 + k4 − α1)/(α2 − α1)``, ``φ2 = K1 (α2 − k3 − k4)/(α2 − α1)``.
    Works for complex arguments (used for complex-step derivatives).
    """
    s = k2 + k3 + k4
    disc = s * s - 4 * k2 * k4
    d = np.sqrt(disc + 0j) if np.iscomplexobj(disc) else np.sqrt(max(disc, 0.0))
    d = d if abs(d) > 1e-12 else 1e-12
    a1 = (s - d) / 2
    a2 = (s + d) / 2
    p1 = K1 * (k3 + k4 - a1) / d
    p2 = K1 * (a2 - k3 - k4) / d
    return p1, p2, a1, a2


def tcm2_rates_jac(K1, k2, k3, k4) -> tuple[np.ndarray, np.ndarray]:
    """``(φ1, φ2, α1, α2)`` and their 4x4 Jacobian w.r.t. ``(K1, k2, k3, k4)`` (complex step)."""
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

    t: np.ndarray
    segments: tuple
    cp: np.ndarray
    cb: np.ndarray
    dcp: np.ndarray
    dcb: np.ndarray
    S: sp.csr_matrix
    scheme: str

    @property
    def h(self) -> float:
        """The finest step (min)."""
        return min(seg[2] for seg in self.segments)


def _interp_rows(x: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights of linear interpolation at ``x`` on ``nodes``."""
    k = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, nodes.size - 2)
    f = np.clip((x - nodes[k]) / (nodes[k + 1] - nodes[k]), 0.0, 1.0)
    return k, 1.0 - f, f


def sampling_matrix(t0: np.ndarray, t1: np.ndarray, nodes: np.ndarray,
                    sampling: str) -> sp.csr_matrix:
    """Sparse matrix mapping grid values (piecewise linear on ``nodes``) to frame values.

    ``sampling="frame"``: row i integrates the piecewise-linear curve exactly over
    ``[t0_i, t1_i]`` and divides by the duration. ``sampling="mid"``: row i interpolates
    linearly at ``(t0_i + t1_i)/2``.
    """
    n_grid = nodes.size
    nf = len(t0)
    if sampling == "mid":
        tm = 0.5 * (np.asarray(t0) + np.asarray(t1))
        k, w0, w1 = _interp_rows(tm, nodes)
        m = sp.coo_matrix((np.concatenate([w0, w1]),
                           (np.tile(np.arange(nf), 2), np.concatenate([k, k + 1]))),
                          shape=(nf, n_grid))
        return m.tocsr()
    if sampling != "frame":
        raise ModelError(f"unknown sampling {sampling!r}; use 'frame' or 'mid'")
    rows, cols, vals = [], [], []
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
    m = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(nf, n_grid))
    return m.tocsr()


def _nodes(t_last: float, step: float, step_late: float | None, switch: float | None):
    if not step_late or switch is None or switch >= t_last or step_late <= step:
        n = int(np.ceil(t_last / step)) + 2
        return np.arange(n) * step, ((0, n, step),)
    n1 = int(np.ceil(switch / step))
    t1 = n1 * step
    n2 = int(np.ceil((t_last - t1) / step_late)) + 2
    t = np.concatenate([np.arange(n1 + 1) * step, t1 + np.arange(1, n2 + 1) * step_late])
    return t, ((0, n1 + 1, step), (n1 + 1, n1 + 1 + n2, step_late))


def make_grid(inp, t0: np.ndarray, t1: np.ndarray, *, sampling: str = "frame",
              scheme: str = "exact", step: float | None = None, delay: float = 0.0,
              n_points: int | None = None, step_late: float | None = 0.1,
              switch: float | str | None = "auto") -> Grid:
    """Put an :class:`~sv2a.blood.InputFunction` on a grid covering the frames.

    Parameters
    ----------
    inp : InputFunction
    t0, t1 : arrays
        Frame starts/ends (min).
    sampling : ``"frame"`` | ``"mid"``
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
    """
    t0 = np.asarray(t0, dtype=float)
    t1 = np.asarray(t1, dtype=float)
    t_last = float((0.5 * (t0 + t1))[-1] if sampling == "mid" else t1[-1])
    if scheme == "kinfitr":
        n = int(n_points or 6000)
        h = t_last / (n - 1)
        t = np.arange(n + 1) * h  # one node past the last mid-time for interpolation
        segments = ((0, n + 1, h),)
    else:
        step = float(step or 1.0 / 60.0)
        if switch == "auto":
            tt = np.asarray(inp.time, dtype=float)
            t_peak = float(tt[np.argmax(inp.plasma)]) + max(delay, 0.0)
            switch = max(10.0, t_peak + 5.0)
        t, segments = _nodes(t_last, step, step_late, switch)
    cp = np.asarray(inp.plasma_at(t - delay), dtype=float)
    cb = np.asarray(inp.whole_blood_at(t - delay), dtype=float)
    S = sampling_matrix(t0, t1, t, sampling)
    return Grid(t=t, segments=segments, cp=cp, cb=cb, dcp=np.gradient(cp, t),
                dcb=np.gradient(cb, t), S=S, scheme=scheme)


def shift_grid(Y: np.ndarray, delay: float, t: np.ndarray) -> np.ndarray:
    """``Y(t − delay)`` for curves at grid nodes ``t`` (axis 0 = nodes).

    Linear interpolation; the curves are 0 before t = 0 and held at their last value past the
    end of the grid.
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
