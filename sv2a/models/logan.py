"""Logan graphical analysis: plasma input (VT) and reference tissue (DVR), regions and voxels.

Plasma input (Logan et al. 1990, JCBFM 10:740), for frames with mid-time ``t ≥ t*``::

    ∫_0^t C_T / C_T(t) = VT · ∫_0^t Cp / C_T(t) + b

Reference tissue (Logan et al. 1996, JCBFM 16:834)::

    ∫_0^t C_T / C_T(t) = DVR · [∫_0^t C_R + C_R(t)/k2'] / C_T(t) + b,   BPND = DVR − 1

(without ``k2'`` the ``C_R/k2'`` term is dropped). Time in min, activity in kBq/mL, VT in
mL/cm3, the intercept ``b`` in min.

The plasma integral is exact for the piecewise-linear input (fine grid, at the mid-times); the
tissue and reference integrals use :func:`._kinetics.integral_matrix` on the frame mid-times
(``integration="trapezoid"``, kinfitr's default) or kinfitr's ``"framecumsum"``; with
``"frame"`` every integral (tissue, reference, plasma) is the frame average of the running
integral, the data being frame means, which removes the mid-time discretisation. Both
regressions are solved for all rows at once (:func:`.lsq.wls_batch`). Non-uniform frame
weights are propagated to the Logan ordinate by the delta method (:func:`logan_weights`).

``predict``: for a one-tissue target the plot is exact with ``b = −1/k2``, so a fitted
``(VT, b)`` implies ``C_T = K1 e^{−k2 t} ⊗ Cp`` with ``k2 = −1/b``, ``K1 = −VT/b`` (plasma)
and the SRTM curve with ``k2a = −1/b``, ``k2 = k2a DVR``, ``R1 = k2 / k2'`` (reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelError
from ._kinetics import (
    Grid,
    cumtrapz,
    integral_matrix,
    plasma_frame_integrals,
    plasma_frame_means,
    tac_convolution,
)
from .base import (
    FLAG_NEG_DENOMINATOR,
    Integration,
    K2Prime,
    Model,
    ModelInputs,
    Scale,
    Weights,
    as_rows,
    clean_rows,
    finish,
    select_frames,
)
from .compartment import check_input, fixed_or_fit, forward, model_grid
from .lsq import wls_batch
from .registry import register

__all__ = ["LoganPlasma", "LoganRef", "PlasmaPlot", "logan_weights"]

FloatArray = NDArray[np.float64]


def logan_weights(weights: FloatArray, tacs: FloatArray, amat: FloatArray) -> FloatArray:
    """Delta-method weights of Logan ordinates ``y_i = (A C)_i / C_i`` for many TACs.

    With ``var(C_j) ∝ 1/w_j`` and ``∂y_i/∂C_j = A_ij/C_i − δ_ij (A C)_i/C_i²``,
    ``var(y_i) = Σ_j (∂y_i/∂C_j)² / w_j`` and the weight is ``1/var(y_i)``, normalised to a
    maximum of 1 per row; frames with ``C_i ≤ 0`` or without a finite variance get 0 (kinfitr's
    ``weights_Logan_transform``; frames with zero weight are taken as noise-free).

    Parameters
    ----------
    weights : array (n_frames,) or (n, n_frames)
        Frame weights (relative inverse variances), common or per TAC.
    tacs : array (n, n_frames) or (n_frames,)
        Tissue TACs.
    amat : array (n_frames, n_frames)
        Integration matrix (:func:`._kinetics.integral_matrix`).

    Returns
    -------
    array (n, n_frames) (or (n_frames,) for one TAC)

    Examples
    --------
    >>> a = integral_matrix(np.array([1.0, 2.0, 3.0]))
    >>> logan_weights(np.ones(3), np.array([1.0, 2.0, 2.0]), a).round(3).tolist()
    [0.0, 1.0, 0.294]
    """
    w = np.asarray(weights, dtype=float)
    c = np.asarray(tacs, dtype=float)
    one = c.ndim == 1
    c = np.atleast_2d(c)
    a = np.asarray(amat, dtype=float)
    var = np.divide(1.0, w, out=np.zeros_like(w), where=w > 0)
    integ = c @ a.T                                              # (n, f)
    diag = np.diag(a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Σ_j (A_ij/C_i − δ_ij I_i/C_i²)² var_j, the diagonal term kept separate (it vanishes
        # exactly for a frame whose ordinate does not depend on C_i)
        off = a * a
        off[np.diag_indices(diag.size)] = 0.0
        v2 = np.atleast_2d(var)
        vy = (v2 @ off.T + (diag[None, :] - integ / c) ** 2 * v2) / c**2
        out = np.where((c > 0) & np.isfinite(vy) & (vy > 0), 1.0 / vy, 0.0)
    m = out.max(axis=1, keepdims=True)
    res: FloatArray = np.divide(out, m, out=np.zeros_like(out), where=m > 0)
    return res[0] if one else res


def _plot_weights(w: FloatArray, ct: FloatArray, amat: FloatArray, transform: bool
                  ) -> FloatArray:
    """Weights of the Logan plot points (n, n_frames)."""
    n, f = ct.shape
    wr = np.broadcast_to(w, (n, f))
    uniform = np.all(wr == wr[:, :1], axis=1)       # such rows are fitted unweighted
    if not transform or uniform.all():
        return wr
    return np.where(uniform[:, None], wr, logan_weights(wr, ct, amat))


def _regress(xv: FloatArray, yv: FloatArray, wl: FloatArray, pos: NDArray[np.bool_]
             ) -> dict[str, NDArray[Any]]:
    """Straight line ``y = s x + b`` per row (rows without ``pos`` are zeroed, then NaN)."""
    xm = np.where(pos[:, None], xv, 0.0)
    ym = np.where(pos[:, None], yv, 0.0)
    r: dict[str, NDArray[Any]] = dict(wls_batch([xm, np.ones(xm.shape[1])], ym, wl))
    ok: NDArray[np.bool_] = np.asarray(r["ok"], dtype=bool) & pos
    for k in ("beta", "cov"):
        r[k][~ok] = np.nan
    r["rss"] = np.where(ok, r["rss"], np.nan)
    r["ok"] = ok
    return r


def _tstar_settings(tstar: float | None, n_frames: int | None, t_first: float
                    ) -> dict[str, Any]:
    return {"tstar": t_first,
            "frame_selection": (f"tstar={tstar}" if tstar is not None else
                                f"last {n_frames} frames" if n_frames else "all frames")}


class PlasmaPlot(Model):
    """Shared set-up of the plasma-input linear plots (:class:`LoganPlasma`, MA1).

    Computes, once per frame schedule and input: the frames after t*, the exact plasma integral
    at the mid-times, the whole-blood curve for a fixed ``vB`` and the tissue integration
    matrix. ``predict`` returns the one-tissue curve implied by ``(VT, intercept)``.
    """

    weights_in_setup = False
    row_weights: ClassVar[bool] = True

    def __init__(self, inputs: ModelInputs, options: Any) -> None:
        super().__init__(inputs, options)
        o: Any = options
        model = self.name
        self.inp = check_input(inputs.input, model)
        vb = fixed_or_fit(o.vB, "vB", model)
        delay = fixed_or_fit(o.delay, "delay", model)
        if vb is None or delay is None:
            raise ModelError(f"{model}: vB and delay must be fixed numbers for graphical "
                             "methods")
        if not 0.0 <= vb < 1.0:
            raise ModelError(f"{model}: vB must be in [0, 1), got {vb}")
        if o.integration not in ("trapezoid", "framecumsum", "frame"):
            raise ModelError(f"{model}: integration must be 'trapezoid', 'framecumsum' or "
                             f"'frame', got "
                             f"{o.integration!r}")
        if not o.grid_step > 0:
            raise ModelError(f"{model}: grid_step must be positive (min)")
        self.vb, self.delay = vb, delay
        fr = self.frames
        self.mask = select_frames(fr.mid, tstar=o.tstar, n_frames=o.n_frames, model=model,
                                  min_frames=3)
        self.inp.check_covers(float(fr.mid[-1]), tolerance=o.coverage_tolerance,
                              what="the scan")
        tm = fr.mid
        h = float(o.grid_step)
        tg = np.arange(int(np.ceil(tm[-1] / h)) + 2) * h
        self.icp = np.interp(tm, tg, cumtrapz(self.inp.plasma_at(tg - delay), h))
        self.cb = (np.asarray(self.inp.whole_blood_at(tm - delay), dtype=float) if vb > 0
                   else np.zeros(fr.n))
        self.amat = integral_matrix(tm, method=o.integration, durations=fr.duration, frames=fr)
        if o.integration == "frame":  # frame averages throughout (the data are frame means)
            self.icp = plasma_frame_integrals(self.inp, fr, delay=delay, dt=h)
            if vb > 0:
                self.cb = plasma_frame_means(self.inp, fr, delay=delay, dt=h,
                                             whole_blood=True)
        self.tstar = float(tm[self.mask][0])
        self.n_fitted = 2
        self._grid: Grid | None = None
        self.settings = {"input": self.inp.source, "vB": vb, "delay": delay,
                         "integration": o.integration,
                         **_tstar_settings(o.tstar, o.n_frames, self.tstar)}

    def _tissue(self, y: FloatArray) -> FloatArray:
        """Tissue TACs without the blood in them: ``(C_PET − vB C_B) / (1 − vB)``."""
        return (y - self.vb * self.cb) / (1.0 - self.vb) if self.vb > 0 else y

    def predict(self, params: Mapping[str, Any]) -> FloatArray:
        """The 1TCM curve implied by ``(VT, intercept)``: ``k2 = −1/b``, ``K1 = −VT/b``.

        Frame averages (kBq/mL) on an exact-convolution grid, with the fixed ``vB`` and delay;
        NaN rows where ``b ≥ 0`` (no one-tissue curve has that plot).

        Parameters
        ----------
        params : mapping
            ``VT`` (mL/cm3) and ``intercept`` (min) as arrays (n,) or floats.

        Returns
        -------
        array (n, n_frames)
            Model TACs (kBq/mL) on this solver's frames.
        """
        vt = np.atleast_1d(np.asarray(params["VT"], dtype=float))
        b = np.atleast_1d(np.asarray(params["intercept"], dtype=float))
        vt, b = np.broadcast_arrays(vt, b)
        if self._grid is None:
            self._grid = model_grid(self.inp, self.frames, sampling="frame",
                                    convolution="exact", delay=self.delay,
                                    grid_step=1.0 / 60.0, grid_step_late=0.1,
                                    grid_switch="auto", grid_points=6000,
                                    coverage_tolerance=1.0, model=self.name)
        with np.errstate(divide="ignore", invalid="ignore"):
            k2 = np.where(b < 0, -1.0 / b, np.nan)
            k1 = vt * k2
        return forward("1tcm", self._grid, np.column_stack([k1, k2]),
                       np.full(k1.shape, self.vb))


@register
class LoganPlasma(PlasmaPlot):
    """Plasma-input Logan plot: ``∫C_T/C_T = VT ∫Cp/C_T + b`` for ``t ≥ t*``.

    ``C_T = (C − vB C_WB)/(1 − vB)`` with a fixed ``vB`` (default 0) and a fixed input delay.
    Outputs ``VT`` (mL/cm3), ``intercept`` (b, min) with ``*_se`` from the regression, ``rss``
    (of the plot), ``n_frames`` (frames of the plot), ``flag`` (``FLAG_NEG_DENOMINATOR`` when
    ``C_T ≤ 0`` in a used frame or the design is singular).

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.blood import InputFunction
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> t = np.linspace(0, 92, 921)
    >>> inp = InputFunction(time=t, plasma=30 * t * np.exp(-t / 0.6) + 4 * np.exp(-t / 40))
    >>> frames = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 16)
    >>> solver = LoganPlasma(ModelInputs(frames=frames, weights=np.ones(27), input=inp),
    ...                      LoganPlasma.Options(tstar=30.0))
    >>> tac = solver.predict({"VT": 10.0, "intercept": -1 / 0.03})
    >>> fit = solver.solve(tac)
    >>> print(f"VT = {fit['VT'][0]:.1f}, frames = {fit['n_frames'][0]}")
    VT = 10.0, frames = 13
    """

    @dataclass(frozen=True, kw_only=True)
    class Options:
        """Options of the plasma Logan plot.

        Attributes
        ----------
        tstar : float, optional
            First frame mid-time used (min); or ``n_frames`` (the last N frames). Default all.
        n_frames : int, optional
            Use the last ``n_frames`` frames (kinfitr ``last10frames`` = 10).
        vB : float
            Fixed blood volume fraction (default 0).
        delay : float
            Fixed input delay (min, default 0).
        weights, half_life
            Frame weights (adapter); non-uniform weights are propagated to the ordinate.
        integration : ``"trapezoid"`` | ``"framecumsum"`` | ``"frame"``
            Tissue integral (``"frame"``: frame averages of all integrals).
        grid_step : float
            Step (min) of the grid of the exact plasma integral.
        coverage_tolerance : float
            Fraction of the scan the input may stop short of.
        """

        tstar: float | None = None
        n_frames: int | None = None
        vB: float = 0.0
        delay: float = 0.0
        weights: Weights = "uniform"
        half_life: float | None = None
        integration: Integration = "trapezoid"
        grid_step: float = 1.0 / 60.0
        coverage_tolerance: float = 0.05

    name: ClassVar[str] = "logan"
    kind: ClassVar[Literal["plasma"]] = "plasma"
    scales: ClassVar[frozenset[Scale]] = frozenset({"region", "voxel"})
    parameters: ClassVar[tuple[str, ...]] = ("VT", "intercept")
    units: ClassVar[Mapping[str, str]] = {"VT": "mL/cm3", "intercept": "min"}
    description: ClassVar[str] = "Logan graphical analysis (plasma input): VT = slope"

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
            ``name -> array (n,)``: ``VT``, ``intercept`` (min), ``rss``,
            ``n_frames`` and ``flag`` (see :meth:`sv2a.models.base.Model.solve`).
        """
        y, bad = clean_rows(as_rows(tacs, self.frames.n))
        m = self.mask
        ct = self._tissue(y)
        pos = np.all(ct[:, m] > 0, axis=1)
        cm = np.where(pos[:, None], ct[:, m], 1.0)
        ict = (ct @ self.amat.T)[:, m]
        wl = _plot_weights(self.weights, ct, self.amat, True)[:, m]
        r = _regress(self.icp[None, m] / cm, ict / cm, wl, pos)
        out: dict[str, NDArray[Any]] = {"VT": r["beta"][:, 0], "intercept": r["beta"][:, 1]}
        if se:
            out["VT_se"] = np.sqrt(r["cov"][:, 0, 0])
            out["intercept_se"] = np.sqrt(r["cov"][:, 1, 1])
        out["rss"] = r["rss"]
        flag = np.where(r["ok"], 0, FLAG_NEG_DENOMINATOR).astype(np.uint8)
        return finish(out, flag, bad, (wl > 0).sum(1))


@register
class LoganRef(Model):
    """Reference Logan plot: ``∫C_T/C_T = DVR (∫C_R + C_R/k2')/C_T + b`` for ``t ≥ t*``.

    Outputs ``DVR``, ``BPND = DVR − 1`` (``*_se`` from the regression), ``intercept`` (b, min),
    ``k2prime`` (the value used, NaN without the ``C_R/k2'`` term), ``rss``, ``n_frames``,
    ``flag`` (``FLAG_NEG_DENOMINATOR`` when ``C_T ≤ 0`` in a used frame or the design is
    singular). The reference TAC is ``inputs.reference``.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> frames = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 16)
    >>> t = frames.mid
    >>> cr = 40 * t * np.exp(-t / 1.5) + 6 * np.exp(-t / 50)
    >>> solver = LoganRef(ModelInputs(frames=frames, weights=np.ones(27), reference=cr),
    ...                   LoganRef.Options(tstar=30.0, k2prime=0.1))
    >>> tac = solver.predict({"DVR": 3.0, "intercept": -1 / 0.05})
    >>> fit = solver.solve(tac)
    >>> print(f"BPND = {fit['BPND'][0]:.2f}")
    BPND = 2.00
    """

    weights_in_setup = False
    row_weights: ClassVar[bool] = True

    @dataclass(frozen=True, kw_only=True)
    class Options:
        """Options of the reference Logan plot.

        Attributes
        ----------
        tstar, n_frames
            Frame selection (min / last N frames).
        integration : ``"trapezoid"`` | ``"framecumsum"`` | ``"frame"``
            Running integrals of the tissue and reference TACs.
        weights, half_life
            Frame weights (adapter).
        transform_weights : bool
            Propagate non-uniform weights to the plot ordinate (delta method).
        k2prime : float, ``"coupled" | "srtm" | "mrtm"`` or None
            Reference efflux rate (1/min); the adapter resolves a method name to a number
            before building the solver. None drops the ``C_R/k2'`` term.
        k2prime_region : str or sequence of str, optional
            Regions used by the adapter to estimate ``k2'``.
        """

        tstar: float | None = None
        n_frames: int | None = None
        integration: Integration = "trapezoid"
        weights: Weights = "uniform"
        half_life: float | None = None
        transform_weights: bool = True
        k2prime: K2Prime | None = None
        k2prime_region: str | Sequence[str] | None = None

    name: ClassVar[str] = "logan_ref"
    kind: ClassVar[Literal["reference"]] = "reference"
    scales: ClassVar[frozenset[Scale]] = frozenset({"region", "voxel"})
    parameters: ClassVar[tuple[str, ...]] = ("DVR", "BPND", "intercept", "k2prime")
    units: ClassVar[Mapping[str, str]] = {"DVR": "1", "BPND": "1", "intercept": "min",
                                          "k2prime": "1/min"}
    description: ClassVar[str] = "Reference Logan plot (Logan 1996), with or without k2'"

    def __init__(self, inputs: ModelInputs, options: Any) -> None:
        super().__init__(inputs, options)
        o: LoganRef.Options = options
        model = self.name
        if inputs.reference is None:
            raise ModelError(f"{model}: needs a reference TAC (reference=)")
        cr = np.asarray(inputs.reference, dtype=float).reshape(-1)
        if cr.size != self.frames.n or not np.all(np.isfinite(cr)):
            raise ModelError(f"{model}: the reference TAC must hold {self.frames.n} finite "
                             "values (one per frame)")
        kp = o.k2prime
        if kp is not None:
            if isinstance(kp, str) or isinstance(kp, bool) or not np.isfinite(float(kp)) \
                    or float(kp) <= 0:
                raise ModelError(
                    f"{model}: k2prime must be None or a positive rate (1/min) when the solver "
                    f"is built, got {kp!r} (the adapter resolves 'srtm'/'mrtm'/'coupled')")
            kp = float(kp)
        self.k2prime: float | None = kp
        if o.integration not in ("trapezoid", "framecumsum", "frame"):
            raise ModelError(f"{model}: integration must be 'trapezoid', 'framecumsum' or "
                             f"'frame', got "
                             f"{o.integration!r}")
        fr = self.frames
        self.reference = cr
        self.mask = select_frames(fr.mid, tstar=o.tstar, n_frames=o.n_frames, model=model,
                                  min_frames=3)
        self.amat = integral_matrix(fr.mid, method=o.integration, durations=fr.duration,
                                    frames=fr)
        self.num = self.amat @ cr + (cr / kp if kp is not None else 0.0)
        self.transform = bool(o.transform_weights)
        self.tstar = float(fr.mid[self.mask][0])
        self.n_fitted = 2
        self.settings = {"integration": o.integration,
                         "k2prime_used": "none" if kp is None else kp,
                         "transform_weights": self.transform,
                         **_tstar_settings(o.tstar, o.n_frames, self.tstar)}

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
            ``name -> array (n,)``: ``DVR BPND intercept k2prime``, ``rss``,
            ``n_frames`` and ``flag`` (see :meth:`sv2a.models.base.Model.solve`).
        """
        y, bad = clean_rows(as_rows(tacs, self.frames.n))
        m = self.mask
        pos = np.all(y[:, m] > 0, axis=1)
        cm = np.where(pos[:, None], y[:, m], 1.0)
        ict = (y @ self.amat.T)[:, m]
        wl = _plot_weights(self.weights, y, self.amat, self.transform)[:, m]
        r = _regress(self.num[None, m] / cm, ict / cm, wl, pos)
        dvr = r["beta"][:, 0]
        out: dict[str, NDArray[Any]] = {"DVR": dvr, "BPND": dvr - 1.0,
                                        "intercept": r["beta"][:, 1]}
        if se:
            out["DVR_se"] = np.sqrt(r["cov"][:, 0, 0])
            out["BPND_se"] = out["DVR_se"]
            out["intercept_se"] = np.sqrt(r["cov"][:, 1, 1])
        out["rss"] = r["rss"]
        flag = np.where(r["ok"], 0, FLAG_NEG_DENOMINATOR).astype(np.uint8)
        res = finish(out, flag, bad, (wl > 0).sum(1))
        # k2' is an input, not an estimate: NaN (no k2' term) must not flag the rows
        kp = np.nan if self.k2prime is None else self.k2prime
        res["k2prime"] = np.where(bad, np.nan, kp)
        if se:
            res["k2prime_se"] = np.where(bad | (self.k2prime is None), np.nan, 0.0)
        return res

    def predict(self, params: Mapping[str, Any]) -> FloatArray:
        """The SRTM curve implied by ``(DVR, intercept)``.

        ``k2a = −1/b``, ``k2 = k2a DVR``, ``R1 = k2/k2'`` (0 without ``k2'``):
        ``C_T = R1 C_R + (k2 − R1 k2a) C_R ⊗ e^{−k2a t}`` (frame averages, the reference
        continued linearly between mid-times). NaN rows where ``b ≥ 0``.

        Parameters
        ----------
        params : mapping
            ``DVR`` and ``intercept`` (min) as arrays (n,) or floats.

        Returns
        -------
        array (n, n_frames)
            Model TACs (kBq/mL) on this solver's frames.
        """
        dvr = np.atleast_1d(np.asarray(params["DVR"], dtype=float))
        b = np.atleast_1d(np.asarray(params["intercept"], dtype=float))
        dvr, b = np.broadcast_arrays(dvr, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            k2a = np.where(b < 0, -1.0 / b, np.nan)
        k2 = k2a * dvr
        r1 = k2 / self.k2prime if self.k2prime is not None else np.zeros_like(k2)
        out = np.full((k2a.size, self.frames.n), np.nan)
        ok = np.isfinite(k2a) & np.isfinite(dvr)
        if ok.any():
            x1, bconv = tac_convolution(self.frames, self.reference, k2a[ok],
                                        sampling="frame", convolution="exact")
            out[ok] = r1[ok, None] * x1[None, :] + (k2 - r1 * k2a)[ok, None] * bconv
        return out
