"""Plasma-input models: 1TCM, 2TCM, Logan and MA1 (DOMAIN §2).

Measured tissue (all models)::

    C_PET(t) = (1 − vB) C_T(t) + vB C_WB(t − delay),   C_T driven by Cp(t − delay)

* **1TCM** -- ``dC_T/dt = K1 Cp − k2 C_T``, ``C_T = K1 e^{−k2 t} ⊗ Cp``, ``VT = K1/k2``.
* **2TCM** -- reversible two-tissue model (K1, k2, k3, k4); ``VT = K1/k2 (1 + k3/k4)``,
  ``VND = K1/k2``, ``VS = VT − VND``, ``BPND = k3/k4``. Local minima are common, so the fit
  starts from a deterministic grid of rate constants (K1 and vB profiled out by linear least
  squares at each grid point) and refines the best few with bounded Levenberg–Marquardt.
* **Logan** (Logan 1990 JCBFM) -- ``∫C_T/C_T = VT ∫Cp/C_T + b`` for ``t > t*``.
* **MA1** (Ichise 2002 JCBFM) -- ``C_T(t) = −(VT/b) ∫Cp + (1/b) ∫C_T`` for ``t > t*``, less
  noise-induced bias than Logan.

Numerics (see :mod:`sv2a.models._kinetics`): the input is put on a grid of 1-s steps (6-s
steps after the later of 10 min and 5 min past the input peak, where the input is smooth),
the exponential convolutions are computed by an exact recursion for the piecewise-linear input
(C speed via scipy's IIR filter) together with their analytic derivatives, and a bounded
Levenberg–Marquardt (Marquardt scaling, active-set projection) uses that analytic Jacobian.
Frame values are the exact frame averages of the model (``sampling="frame"``, default) or
point values at mid-times (``sampling="mid"``, kinfitr).

Differences from kinfitr (``convolution="kinfitr", sampling="mid"`` reproduces kinfitr): kinfitr
uses a 6000-point grid to the last mid-time and a rectangle-sum convolution (``pracma::conv *
step``, which adds ≈ step/2 · K1·Cp(t) to the tissue curve), and point values at mid-times;
sv2a's default is the exact convolution on a 1-s grid with frame averaging. Default bounds are
wider than kinfitr's (pass ``bounds=`` to use others).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..blood import InputFunction
from ..errors import InputFunctionError, ModelError
from ..weights import frame_weights, logan_weights
from ._common import (
    aic,
    at_bound,
    check_options,
    fit_regions,
    select_frames,
    tac_matrix,
    wls_batch,
)
from ._kinetics import (
    cumtrapz,
    exp_conv,
    integral_matrix,
    make_grid,
    shift_grid,
    tcm2_rates,
    tcm2_rates_jac,
)
from .registry import register
from .result import build_result

__all__ = ["one_tcm", "two_tcm", "logan", "ma1", "DEFAULT_BOUNDS"]

#: Default parameter bounds (rates 1/min, K1 mL/cm3/min, vB fraction, delay min).
DEFAULT_BOUNDS = {
    "K1": (1e-4, 3.0),
    "k2": (1e-4, 2.0),
    "k3": (1e-4, 1.0),
    "k4": (1e-4, 1.0),
    "vB": (0.0, 0.2),
    "delay": (-0.5, 0.5),
}

_CM_DEFAULTS = {
    "vB": "fit",
    "delay": 0.0,
    "weights": "auto",
    "sampling": "frame",
    "convolution": "exact",
    "grid_step": 1.0 / 60.0,
    "grid_step_late": 0.1,
    "grid_switch": "auto",
    "grid_points": 6000,
    "bounds": None,
    "half_life": None,
    "minweight": 0.5,
    "coverage_tolerance": 0.05,
}

_UNITS = {"K1": "mL/cm3/min", "k2": "1/min", "k3": "1/min", "k4": "1/min", "vB": "1",
          "delay": "min", "VT": "mL/cm3", "VND": "mL/cm3", "VS": "mL/cm3", "BPND": "1",
          "BPP": "mL/cm3", "tstar": "min"}


# --------------------------------------------------------------------------- shared set-up
def _check_input(inp, model: str) -> InputFunction:
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


def _resolve_weights(opts, values, frames, model):
    scheme = opts["weights"]
    hl = opts["half_life"]
    if isinstance(scheme, str) and scheme == "auto":
        scheme = "variance" if (hl or frames.half_life) else "duration"
    w = frame_weights(scheme, values, frames, half_life=hl, minweight=opts["minweight"])
    name = scheme if isinstance(scheme, str) else "array"
    return w, name


def _fixed_or_fit(value, name: str, model: str):
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


def _bounds(opts, names, model):
    b = dict(DEFAULT_BOUNDS)
    user = opts["bounds"] or {}
    if not isinstance(user, dict):
        raise ModelError(f"{model}: bounds must be a dict like {{'K1': (1e-4, 1)}}")
    for k, v in user.items():
        if k not in DEFAULT_BOUNDS:
            raise ModelError(f"{model}: no bounds for {k!r}; parameters: {', '.join(names)}")
        lo, hi = float(v[0]), float(v[1])
        if not lo < hi:
            raise ModelError(f"{model}: bounds for {k} must satisfy lower < upper, got {v}")
        b[k] = (lo, hi)
    return b


# --------------------------------------------------------------------------- model on the grid
class _CompartmentProblem:
    """One region's weighted least-squares problem for 1TCM/2TCM (cached model + Jacobian)."""

    def __init__(self, kind, grid, y, w, vb_fixed, delay_fit):
        self.kind = kind
        self.g = grid
        self.y = y
        self.sw = np.sqrt(w)
        self.nk = 2 if kind == "1tcm" else 4
        self.vb_fixed = vb_fixed
        self.delay_fit = delay_fit
        self._key = None
        self._J = None

    # full parameter vector: kinetic rates, vB (if fitted), delay (if fitted)
    def unpack(self, x):
        kin = x[: self.nk]
        i = self.nk
        if self.vb_fixed is None:
            vb = x[i]
            i += 1
        else:
            vb = self.vb_fixed
        delay = x[i] if self.delay_fit else 0.0
        return kin, vb, delay

    def tissue(self, kin, deriv=True):
        """C_T on the grid, dC_T/d(kinetic params) (n_grid, nk) and dC_T/dt."""
        g = self.g
        if self.kind == "1tcm":
            K1, k2 = kin
            if not deriv:
                return K1 * exp_conv(g.cp, k2, g), None, None
            e, de = exp_conv(g.cp, k2, g, deriv=True)
            ct = K1 * e
            d = np.column_stack([e, K1 * de])
            dt = K1 * g.cp - k2 * ct
            return ct, d, dt
        if not deriv:
            p1, p2, a1, a2 = tcm2_rates(*kin)
            return p1 * exp_conv(g.cp, a1, g) + p2 * exp_conv(g.cp, a2, g), None, None
        val, jac = tcm2_rates_jac(*kin)
        p1, p2, a1, a2 = val
        e1, g1 = exp_conv(g.cp, a1, g, deriv=True)
        e2, g2 = exp_conv(g.cp, a2, g, deriv=True)
        ct = p1 * e1 + p2 * e2
        d = np.column_stack([e1, e2, p1 * g1, p2 * g2]) @ jac
        dt = p1 * (g.cp - a1 * e1) + p2 * (g.cp - a2 * e2)
        return ct, d, dt

    def evaluate(self, x, jac=True):
        """Weighted residuals (and their Jacobian) at ``x``; the last call is cached."""
        key = x.tobytes()
        if key == self._key and (self._J is not None or not jac):
            return self._f, self._J
        kin, vb, delay = self.unpack(x)
        g = self.g
        if not jac:
            ct, _, _ = self.tissue(kin, deriv=False)
            m = (1 - vb) * ct + vb * g.cb
            if self.delay_fit and delay != 0.0:
                m = shift_grid(m, delay, g.t)
            self._f = self.sw * (g.S @ m - self.y)
            self._J = None
            self._key = key
            return self._f, None
        ct, d, dt = self.tissue(kin)
        cols = [(1 - vb) * ct + vb * g.cb, (1 - vb) * d]
        if self.vb_fixed is None:
            cols.append((g.cb - ct)[:, None])
        if self.delay_fit:
            cols.append(-((1 - vb) * dt + vb * g.dcb)[:, None])
        big = np.column_stack([cols[0]] + cols[1:])
        if self.delay_fit and delay != 0.0:
            big = shift_grid(big, delay, g.t)
        fr = g.S @ big
        self._f = self.sw * (fr[:, 0] - self.y)
        self._J = self.sw[:, None] * fr[:, 1:]
        self._key = key
        return self._f, self._J

    def fun(self, x):
        return self.evaluate(x)[0]

    def jac(self, x):
        return self.evaluate(x)[1]

    def profile(self, kin, vb_bounds, delay=0.0):
        """Best K1 (and vB) for given rates by linear weighted least squares -> (x, cost)."""
        g = self.g
        unit = np.array(kin, dtype=float)
        unit[0] = 1.0
        ct, _, _ = self.tissue(unit, deriv=False)
        big = np.column_stack([ct, g.cb])
        if delay != 0.0:
            big = shift_grid(big, delay, g.t)
        fr = g.S @ big
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
        x = [k1, *kin[1:]]
        if self.vb_fixed is None:
            x.append(vb)
        if self.delay_fit:
            x.append(delay)
        return np.array(x), float(r @ r)


def _cov(J, rss, n):
    p = J.shape[1]
    s2 = rss / max(n - p, 1)
    try:
        return np.linalg.pinv(J.T @ J) * s2
    except np.linalg.LinAlgError:
        return np.full((p, p), np.nan)


def _delta_se(grad, cov):
    v = grad @ cov @ grad
    return float(np.sqrt(v)) if np.isfinite(v) and v >= 0 else np.nan


class _LMResult:
    __slots__ = ("x", "cost", "success", "message", "nfev")

    def __init__(self, x, cost, success, message, nfev):
        self.x, self.cost, self.success, self.message, self.nfev = (x, cost, success, message,
                                                                     nfev)


def _lm(prob, x0, lb, ub, *, max_iter: int = 200, ftol: float = 1e-9, xtol: float = 1e-8):
    """Bounded Levenberg–Marquardt (Marquardt scaling, active-set projection on the box).

    Small dense problems (2–6 parameters, ~40 residuals) are dominated by Python overhead in
    general-purpose solvers; this loop does one model evaluation per trial step. Variables on
    a bound whose gradient points outwards are held there; trial points are clipped to the box.
    Converges when the relative cost decrease and the relative step are both below tolerance.
    """
    x = np.clip(np.asarray(x0, float), lb, ub)
    f, J = prob.evaluate(x)
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
            fn, Jn = prob.evaluate(xn)
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


_START_GRIDS = {
    "1tcm": [(np.nan, k2) for k2 in np.geomspace(0.003, 1.0, 8)],
    "2tcm": [(np.nan, k2, k3, k4)
             for k2 in (0.02, 0.06, 0.15, 0.4)
             for k3 in (0.005, 0.02, 0.06, 0.2)
             for k4 in (0.005, 0.02, 0.06, 0.2)],
}


def _fit_compartment(kind, grid, y, w, *, vb_fixed, delay_fixed, delay_fit, bounds,
                     n_starts):
    names = ["K1", "k2"] + (["k3", "k4"] if kind == "2tcm" else [])
    free = list(names)
    if vb_fixed is None:
        free.append("vB")
    if delay_fit:
        free.append("delay")
    lb = np.array([bounds[k][0] for k in free])
    ub = np.array([bounds[k][1] for k in free])
    prob = _CompartmentProblem(kind, grid, y, w, vb_fixed, delay_fit)
    # deterministic start grid, K1 (and vB) profiled linearly
    cands = []
    delays = (np.linspace(*bounds["delay"], 5) if delay_fit else (0.0,))
    for start in _START_GRIDS[kind]:
        kin = np.array(start, dtype=float)
        kin[1:] = np.clip(kin[1:], [bounds[k][0] for k in names[1:]],
                          [bounds[k][1] for k in names[1:]])
        for dl in delays:
            x0, cost = prob.profile(kin, bounds["vB"], delay=float(dl))
            cands.append((cost, x0))
    cands.sort(key=lambda c: c[0])
    if delay_fit:
        n_starts = max(n_starts, 2)
    best = None
    for _, x0 in cands[:n_starts]:
        res = _lm(prob, x0, lb, ub)
        if best is None or res.cost < best.cost:
            best = res
    x = best.x
    f, J = prob.evaluate(x)
    rss = float(f @ f)
    n_used = int(np.count_nonzero(w > 0))
    cov = _cov(J, rss, n_used)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    p = dict(zip(free, x, strict=True))
    out = {k: float(v) for k, v in p.items()}
    for k, s in zip(free, se, strict=True):
        out[f"{k}_se"] = float(s)
    if vb_fixed is not None:
        out["vB"] = vb_fixed
    if not delay_fit:
        out["delay"] = delay_fixed
    K1, k2 = p["K1"], p["k2"]
    ix = {k: i for i, k in enumerate(free)}
    grad = np.zeros(len(free))
    if kind == "1tcm":
        out["VT"] = K1 / k2
        grad[ix["K1"]], grad[ix["k2"]] = 1 / k2, -K1 / k2**2
        out["VT_se"] = _delta_se(grad, cov)
    else:
        k3, k4 = p["k3"], p["k4"]
        vnd = K1 / k2
        out["VND"] = vnd
        out["BPND"] = k3 / k4
        out["VS"] = vnd * k3 / k4
        out["BPP"] = out["VS"]
        out["VT"] = vnd * (1 + k3 / k4)
        g_vt = np.zeros(len(free))
        g_vt[ix["K1"]] = (1 + k3 / k4) / k2
        g_vt[ix["k2"]] = -K1 * (1 + k3 / k4) / k2**2
        g_vt[ix["k3"]] = vnd / k4
        g_vt[ix["k4"]] = -vnd * k3 / k4**2
        out["VT_se"] = _delta_se(g_vt, cov)
        g = np.zeros(len(free))
        g[ix["K1"]], g[ix["k2"]] = 1 / k2, -K1 / k2**2
        out["VND_se"] = _delta_se(g, cov)
        g = np.zeros(len(free))
        g[ix["k3"]], g[ix["k4"]] = 1 / k4, -k3 / k4**2
        out["BPND_se"] = _delta_se(g, cov)
        g = np.zeros(len(free))
        g[ix["K1"]], g[ix["k2"]] = k3 / (k2 * k4), -K1 * k3 / (k2**2 * k4)
        g[ix["k3"]], g[ix["k4"]] = vnd / k4, -vnd * k3 / k4**2
        out["VS_se"] = _delta_se(g, cov)
        out["BPP_se"] = out["VS_se"]
    out["rss"] = rss
    out["n_frames"] = n_used
    out["aic"] = aic(rss, n_used, len(free))
    out["converged"] = bool(best.success and np.all(np.isfinite(x)))
    out["at_bound"] = at_bound(x, lb, ub)
    msgs = []
    if out["at_bound"]:
        hit = [k for k, v, lo, hi in zip(free, x, lb, ub, strict=True)
               if v - lo <= 1e-4 * (hi - lo) or hi - v <= 1e-4 * (hi - lo)]
        msgs.append(f"parameter(s) at a bound: {', '.join(hit)}")
    if not out["converged"]:
        msgs.append(f"optimiser did not converge: {best.message}")
    out["message"] = "; ".join(msgs)
    return out


def _compartment(kind, tacs, inp, options):
    model = kind
    opts = check_options(model, options, {**_CM_DEFAULTS,
                                          **({"n_starts": 4} if kind == "2tcm" else {})})
    inp = _check_input(inp, model)
    values, regions, frames = tac_matrix(tacs, model)
    sampling = opts["sampling"]
    if sampling not in ("frame", "mid"):
        raise ModelError(f"{model}: sampling must be 'frame' or 'mid', got {sampling!r}")
    if opts["convolution"] not in ("exact", "kinfitr"):
        raise ModelError(f"{model}: convolution must be 'exact' or 'kinfitr', "
                         f"got {opts['convolution']!r}")
    vb_fixed = _fixed_or_fit(opts["vB"], "vB", model)
    delay_fixed = _fixed_or_fit(opts["delay"], "delay", model)
    delay_fit = delay_fixed is None
    names = ["K1", "k2"] + (["k3", "k4"] if kind == "2tcm" else [])
    bounds = _bounds(opts, names + ["vB", "delay"], model)
    if vb_fixed is not None and not 0 <= vb_fixed < 1:
        raise ModelError(f"{model}: vB must be in [0, 1), got {vb_fixed}")
    t_need = frames.mid[-1] if sampling == "mid" else frames.end[-1]
    inp.check_covers(t_need, tolerance=opts["coverage_tolerance"], what="the scan")
    grid = make_grid(inp, frames.start, frames.end, sampling=sampling,
                     scheme=opts["convolution"], step=opts["grid_step"],
                     delay=0.0 if delay_fit else delay_fixed, n_points=opts["grid_points"],
                     step_late=opts["grid_step_late"], switch=opts["grid_switch"])
    w, wname = _resolve_weights(opts, values, frames, model)
    n_starts = int(opts.get("n_starts", 1)) if kind == "2tcm" else 1
    if n_starts < 1:
        raise ModelError(f"{model}: n_starts must be >= 1")

    def one(i):
        return _fit_compartment(kind, grid, values[i], w[i], vb_fixed=vb_fixed,
                                delay_fixed=delay_fixed, delay_fit=delay_fit, bounds=bounds,
                                n_starts=n_starts)

    params = names + ["vB", "delay", "VT"] + (["VND", "VS", "BPND", "BPP"]
                                               if kind == "2tcm" else [])
    result_names = params + [f"{p}_se" for p in params] + ["rss", "aic", "n_frames"]
    out = fit_regions(regions, one, result_names, model=model)
    attrs = {
        "input": inp.source, "vB": "fit" if vb_fixed is None else vb_fixed,
        "delay": "fit" if delay_fit else delay_fixed, "weights": wname, "sampling": sampling,
        "convolution": opts["convolution"],
        "grid_step_min": grid.h, "grid_nodes": int(grid.t.size),
        "bounds": {k: list(v) for k, v in bounds.items()},
        "fitter": "bounded Levenberg-Marquardt, analytic Jacobian",
    }
    if kind == "2tcm":
        attrs["n_starts"] = n_starts
        attrs["start_grid"] = f"{len(_START_GRIDS['2tcm'])} (k2,k3,k4) points, K1/vB profiled"
    return build_result(model, regions, out, attrs=attrs, units=_UNITS)


@register("1tcm", kind="plasma", parameters=("K1", "k2", "vB", "delay", "VT"),
          description="one-tissue compartment model (plasma input): VT = K1/k2")
def one_tcm(tacs: xr.DataArray, *, input: InputFunction | None = None, reference=None,
            **options) -> xr.Dataset:
    """One-tissue compartment model with arterial plasma input.

    ``C_PET = (1 − vB) K1 e^{−k2 t} ⊗ Cp(t − delay) + vB C_WB(t − delay)``; ``VT = K1/k2``
    (mL/cm3). The model of choice for human [11C]UCB-J (Finnema 2018 JCBFM).

    Parameters
    ----------
    tacs : xr.DataArray (region x frame)
        Regional TACs (kBq/mL, decay corrected).
    input : InputFunction
        Metabolite-corrected plasma (``plasma``) and whole blood (``whole_blood``; plasma is
        used when absent).
    vB : float or ``"fit"``
        Blood volume fraction, fixed or fitted (default ``"fit"``, bounds 0–0.2).
    delay : float or ``"fit"``
        Input delay (min), fixed (default 0) or fitted within ±0.5 min.
    weights : ``"auto" | "uniform" | "duration" | "kinfitr" | "variance"`` or array
        Frame weights (:func:`sv2a.weights.frame_weights`); ``"auto"`` = ``"variance"`` when
        the half-life is known, else ``"duration"``.
    sampling : ``"frame"`` (default) or ``"mid"``
        Frame-averaged model or point values at mid-times (kinfitr).
    convolution : ``"exact"`` (default) or ``"kinfitr"``
        Exact convolution on a ``grid_step`` grid (1 s), or kinfitr's 6000-point rectangle sum.
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding :data:`DEFAULT_BOUNDS`.
    half_life, minweight
        Weighting half-life (min; default from the TACs) and kinfitr weight floor.
    grid_step, grid_step_late, grid_switch, grid_points
        Grid: fine step (min, 1/60), late step (0.1 min; None = fine throughout), switch time
        (min or "auto"), and the number of points of the kinfitr grid (6000).
    coverage_tolerance
        Fraction of the scan the input may stop short of (held at its last value).

    Returns
    -------
    xr.Dataset
        ``K1 k2 vB delay VT`` with ``*_se`` (Jacobian-based; VT by the delta method), ``rss``
        (weighted), ``aic``, ``n_frames``, ``converged``, ``at_bound``, ``message``.

    Notes
    -----
    Starting values: 8 log-spaced k2 values (x 5 delays when the delay is fitted) with K1 (and
    vB) profiled by linear least squares; the best is refined by bounded Levenberg–Marquardt
    with the analytic Jacobian. Assumes one kinetically homogeneous tissue compartment, a
    correct metabolite-corrected input, and that the input covers the scan.
    """
    return _compartment("1tcm", tacs, input, options)


@register("2tcm", kind="plasma",
          parameters=("K1", "k2", "k3", "k4", "vB", "delay", "VT", "VND", "VS", "BPND"),
          description="reversible two-tissue compartment model (plasma input), multistart")
def two_tcm(tacs: xr.DataArray, *, input: InputFunction | None = None, reference=None,
            **options) -> xr.Dataset:
    """Reversible two-tissue compartment model with arterial plasma input.

    ``dC_ND/dt = K1 Cp − (k2 + k3) C_ND + k4 C_S``, ``dC_S/dt = k3 C_ND − k4 C_S``;
    ``C_T = C_ND + C_S = Σ_i φ_i e^{−α_i t} ⊗ Cp`` with
    ``α_{1,2} = (k2+k3+k4 ∓ √((k2+k3+k4)² − 4 k2 k4))/2``. Outcomes ``VT = K1/k2 (1 + k3/k4)``,
    ``VND = K1/k2``, ``VS = VT − VND`` (= BPP), ``BPND = k3/k4``.

    Options are those of :func:`one_tcm` plus ``n_starts`` (default 4): the number of the best
    points of a deterministic 64-point (k2, k3, k4) start grid (K1 and vB profiled by linear
    least squares at each point) that are refined; the lowest weighted RSS wins. This avoids
    the local minima that single-start 2TCM fits often stop in.
    """
    return _compartment("2tcm", tacs, input, options)


# --------------------------------------------------------------------------- graphical methods
_GR_DEFAULTS = {
    "tstar": None,
    "n_frames": None,
    "vB": 0.0,
    "delay": 0.0,
    "weights": "uniform",
    "integration": "trapezoid",
    "half_life": None,
    "minweight": 0.5,
    "coverage_tolerance": 0.05,
    "grid_step": 1.0 / 60.0,
}


def _graphical_setup(model, tacs, inp, options):
    opts = check_options(model, options, _GR_DEFAULTS)
    inp = _check_input(inp, model)
    values, regions, frames = tac_matrix(tacs, model)
    vb = _fixed_or_fit(opts["vB"], "vB", model)
    delay = _fixed_or_fit(opts["delay"], "delay", model)
    if vb is None or delay is None:
        raise ModelError(f"{model}: vB and delay must be fixed numbers for graphical methods")
    if not 0 <= vb < 1:
        raise ModelError(f"{model}: vB must be in [0, 1), got {vb}")
    mask = select_frames(frames.mid, tstar=opts["tstar"], n_frames=opts["n_frames"],
                         model=model, min_frames=3)
    inp.check_covers(frames.mid[-1], tolerance=opts["coverage_tolerance"], what="the scan")
    tm = frames.mid
    # exact integral of the (piecewise-linear) input, on the fine grid
    h = float(opts["grid_step"])
    tg = np.arange(int(np.ceil(tm[-1] / h)) + 2) * h
    cpg = inp.plasma_at(tg - delay)
    icp = np.interp(tm, tg, cumtrapz(cpg, h))
    ct = values
    if vb > 0:
        cb_mid = inp.whole_blood_at(tm - delay)
        ct = (values - vb * cb_mid) / (1 - vb)
    if opts["integration"] not in ("trapezoid", "framecumsum"):
        raise ModelError(f"{model}: integration must be 'trapezoid' or 'framecumsum'")
    amat = integral_matrix(tm, method=opts["integration"], durations=frames.duration)
    ict = ct @ amat.T
    w, wname = _resolve_weights({**opts, "weights": opts["weights"]}, values, frames, model) \
        if not (isinstance(opts["weights"], str) and opts["weights"] == "uniform") else (
            np.ones_like(values), "uniform")
    attrs = {"input": inp.source, "vB": vb, "delay": delay, "weights": wname,
             "integration": opts["integration"],
             "tstar": float(tm[mask][0]), "n_frames_used": int(mask.sum()),
             "frame_selection": (f"tstar={opts['tstar']}" if opts["tstar"] is not None else
                                 f"last {opts['n_frames']} frames" if opts["n_frames"]
                                 else "all frames")}
    return opts, values, regions, frames, mask, icp, ct, ict, amat, w, attrs


def _wls(x, y, w, intercept: bool):
    """Weighted least squares over regions (rows) with :func:`._common.wls_batch`.

    Model ``y = X β`` with ``X = [x…, 1]``. Returns β (n_reg, p), cov (n_reg, p, p), rss, n."""
    cols = list(x) + ([np.ones_like(y)] if intercept else [])
    r = wls_batch(np.stack(cols, axis=-1), y, w)
    return r["beta"], r["cov"], r["rss"], r["m"]


@register("logan", kind="plasma", parameters=("VT",),
          description="Logan graphical analysis (plasma input): VT = slope")
def logan(tacs: xr.DataArray, *, input: InputFunction | None = None, reference=None,
          **options) -> xr.Dataset:
    """Logan graphical analysis with plasma input (Logan 1990 JCBFM).

    ``∫_0^t C_T / C_T(t) = VT · ∫_0^t Cp / C_T(t) + b`` for ``t ≥ t*``; VT is the slope of an
    ordinary (or weighted) linear regression over the selected frames.

    Parameters
    ----------
    tacs : xr.DataArray (region x frame)
    input : InputFunction
    tstar : float, optional
        First mid-time (min) used; or ``n_frames`` = the last N frames (kinfitr
        ``last10frames`` is ``n_frames=10``). Default: all frames.
    vB, delay : float
        Fixed blood volume (tissue = (C − vB C_WB)/(1 − vB)) and input delay; default 0.
    weights : ``"uniform"`` (default) or any :func:`sv2a.weights.frame_weights` scheme
        Frame weights are propagated to the Logan ordinate with the delta method
        (:func:`sv2a.weights.logan_weights`).
    integration : ``"trapezoid"`` (default) or ``"framecumsum"``
        Tissue integral: trapezoid on mid-times from (0, 0), or Σ C Δt over previous frames
        plus half the current frame. The plasma integral is exact for the piecewise-linear
        input.

    Returns
    -------
    xr.Dataset
        ``VT``, ``VT_se``, ``intercept``, ``rss``, ``aic``, ``n_frames``, ``tstar``,
        ``converged``, ``at_bound`` (always False), ``message``.

    Notes
    -----
    Assumes reversible kinetics reaching linearity after t*; noise in C_T on both axes biases
    VT low at high noise (use MA1 then).
    """
    (opts, values, regions, frames, mask, icp, ct, ict, amat, w, attrs) = _graphical_setup(
        "logan", tacs, input, options)
    nreg = values.shape[0]
    ok = np.all(ct[:, mask] > 0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = ict[:, mask] / ct[:, mask]
        x = icp[None, mask] / ct[:, mask]
    if attrs["weights"] != "uniform":
        wl = np.array([logan_weights(w[r], ct[r], amat) for r in range(nreg)])[:, mask]
    else:
        wl = np.ones_like(y)
    y = np.where(ok[:, None], y, 0.0)
    x = np.where(ok[:, None], x, 0.0)
    beta, cov, rss, n = _wls([x], y, wl, intercept=True)
    out = _graphical_out(beta[:, 0], np.sqrt(cov[:, 0, 0]), rss, n, 2, ok, regions, "logan",
                         attrs["tstar"])
    out["intercept"] = np.where(ok, beta[:, 1], np.nan)
    return build_result("logan", regions, out, attrs=attrs, units=_UNITS)


def _graphical_out(vt, vt_se, rss, n, k, ok, regions, model, tstar):
    nreg = len(regions)
    msg = np.array(["" if o else f"{model}: non-positive tissue activity after t*; region "
                    f"'{r}' cannot be linearised" for o, r in zip(ok, regions, strict=True)])
    return {
        "VT": np.where(ok, vt, np.nan), "VT_se": np.where(ok, vt_se, np.nan),
        "rss": np.where(ok, rss, np.nan), "aic": np.where(ok, aic(rss, n, k), np.nan),
        "n_frames": n, "tstar": np.full(nreg, tstar),
        "converged": ok & np.isfinite(vt), "at_bound": np.zeros(nreg, bool), "message": msg,
    }


@register("ma1", kind="plasma", parameters=("VT",),
          description="Ichise multilinear analysis MA1 (plasma input): VT = -b1/b2")
def ma1(tacs: xr.DataArray, *, input: InputFunction | None = None, reference=None,
        **options) -> xr.Dataset:
    """Multilinear analysis MA1 (Ichise 2002 JCBFM).

    ``C_T(t) = γ1 ∫_0^t Cp + γ2 ∫_0^t C_T`` for ``t ≥ t*`` (no intercept), ``VT = −γ1/γ2``.
    Options as :func:`logan`; frame weights apply directly (the ordinate is the TAC itself).
    ``VT_se`` by the delta method from the regression covariance.
    """
    (opts, values, regions, frames, mask, icp, ct, ict, amat, w, attrs) = _graphical_setup(
        "ma1", tacs, input, options)
    nreg = values.shape[0]
    x1 = np.broadcast_to(icp[None, mask], (nreg, int(mask.sum())))
    x2 = ict[:, mask]
    beta, cov, rss, n = _wls([x1, x2], ct[:, mask], w[:, mask], intercept=False)
    g1, g2 = beta[:, 0], beta[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        vt = -g1 / g2
        grad = np.stack([-1 / g2, g1 / g2**2], axis=1)
        var = np.einsum("rp,rpq,rq->r", grad, cov, grad)
    ok = np.isfinite(vt) & (g2 < 0)
    out = _graphical_out(vt, np.sqrt(np.clip(var, 0, None)), rss, n, 2, ok, regions, "ma1",
                         attrs["tstar"])
    out["message"] = np.array(["" if o else f"ma1: ∫C_T coefficient not negative for region "
                               f"'{r}' (no reversible washout); VT undefined"
                               for o, r in zip(ok, regions, strict=True)])
    return build_result("ma1", regions, out, attrs=attrs, units=_UNITS)
