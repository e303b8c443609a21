"""Simplified reference tissue model (SRTM), and the SRTM forward model shared by the
reference-tissue family.

Equation (Lammertsma & Hume 1996), time in min, rates in 1/min, activity in kBq/mL::

    C_T(t) = R1 C_R(t) + (k2 − R1 k2a) · C_R(t) ⊗ exp(−k2a t),    k2a = k2 / (1 + BPND)

``R1 = K1/K1'`` (relative delivery), ``k2`` the target efflux rate, ``k2' = k2/R1`` the
reference efflux rate, ``BPND = k2/k2a − 1``, ``DVR = BPND + 1``. Assumptions: target and
reference each behave as one tissue compartment, the reference has no specific binding, equal
``K1/k2`` (VND) in target and reference, negligible blood volume.

Estimation. For a fixed ``k2a`` the model is linear in ``(R1, k2 − R1 k2a)``; the basis
functions ``B_j = C_R ⊗ exp(−θ_j t)`` on ``n_basis`` log-spaced rates ``θ_j`` in
``rate_range`` reduce the fit to one linear least squares per basis (Gunn et al. 1997), done
for all TACs at once by :class:`~sv2a.models.basis_ls.BasisLS`. ``method="basis"`` (default)
then refines ``k2a`` between grid points by quadratic interpolation of the basis;
``method="nonlinear"`` finds the exact least-squares optimum by a golden-section search of the
profiled residual over ``log k2a`` inside the bracket of the best grid point (variable
projection), vectorised over rows. On noise-free data the two differ by about 1e-4 (relative)
in BPND.

The reference TAC is a frame-sampled curve; ``convolution`` says how it is continued between
samples before the convolution: ``"exact"`` (default) linear through the frame mid-times with
(0, 0) prepended, convolved in closed form; ``"step"`` held at the frame mean inside each
frame; ``"kinfitr"`` kinfitr 0.9's 1024-point rectangle rule (with ``sampling="mid"``).
``sampling="frame"`` (default) compares frame averages of the model with the data,
``"mid"`` point values at mid-times.

Two-step SRTM (``k2prime`` set; default ``None``: ``R1``, ``k2``, ``k2a`` free for every TAC).
Noisy voxel TACs make SRTM's three-parameter fit unstable: ``k2a`` drifts to small values and
the ratio ``BPND = k2/k2a − 1`` inherits a skewed, biased distribution (regional means of
voxel BPND off by up to 10 % at 15 % voxel noise). Wu & Carson (2002) fix the reference
efflux rate ``k2' = k2/R1``, a property of the reference region shared by every target, at a
value pooled over many targets and refit each TAC for ``R1`` and ``k2a`` only::

    C_T(t) = R1 [C_R(t) + (k2' − k2a) · C_R(t) ⊗ exp(−k2a t)],    k2 = R1 k2'

``k2prime`` is a number (1/min) or the pooling rule of :mod:`sv2a.models.k2prime`, the same at
region and voxel scale: ``"coupled"`` (joint least squares of all targets), ``"srtm"``
(weighted median of the first-pass SRTM ``k2/R1`` of every target: Wu & Carson's two steps)
or ``"mrtm"``; ``k2prime_region`` restricts the targets pooled. Extra assumption: one ``k2'``
for every target (equal ``K1/k2`` in all targets and the reference, as SRTM already assumes
for target vs reference). The refit is the same estimator as SRTM2; the result reports
``k2 = R1 k2'`` and the fixed ``k2prime``.

References
----------
Lammertsma AA, Hume SP (1996) Simplified reference tissue model for PET receptor studies.
NeuroImage 4:153-158.
Gunn RN, Lammertsma AA, Hume SP, Cunningham VJ (1997) Parametric imaging of ligand-receptor
binding in PET using a simplified reference region model. NeuroImage 6:279-287.
Wu Y, Carson RE (2002) Noise reduction in the simplified reference tissue model for
neuroreceptor functional imaging. J Cereb Blood Flow Metab 22:1440-1452.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelError
from ..frames import FrameSchedule
from ._kinetics import rate_grid, tac_convolution
from .base import (
    FLAG_EDGE,
    FLAG_NEG_DENOMINATOR,
    FLAG_NEGATIVE,
    Convolution,
    K2Prime,
    Kind,
    Method,
    Model,
    ModelInputs,
    Sampling,
    Scale,
    Weights,
    as_rows,
    check_reference,
    clean_rows,
    finish,
)
from .basis_ls import BasisLS
from .lsq import delta_se, gauss_newton_cov, golden
from .registry import register

__all__ = ["SRTM", "SRTMOptions", "srtm_predict", "ReferenceBasisModel", "check_k2prime"]

FloatArray = NDArray[np.float64]

#: Units of the reference-tissue parameters.
REFERENCE_UNITS: dict[str, str] = {
    "BPND": "1", "DVR": "1", "R1": "1", "k2": "1/min", "k2a": "1/min", "k2prime": "1/min",
    "intercept": "min", "tstar": "min",
}


def srtm_predict(frames: FrameSchedule, reference: FloatArray, R1: Any, k2: Any, k2a: Any,
                 *, sampling: Sampling = "frame",
                 convolution: Convolution = "exact") -> FloatArray:
    """SRTM model TACs ``R1 C_R + (k2 − R1 k2a) C_R ⊗ e^{−k2a t}`` for many parameter sets.

    Parameters
    ----------
    frames : FrameSchedule
        Frame timing (min).
    reference : array (n_frames,)
        Reference TAC (kBq/mL).
    R1, k2, k2a : array (n,) or float
        Relative delivery (1), target efflux rate (1/min), apparent efflux rate (1/min).
    sampling : {"frame", "mid"}
        Frame averages or mid-time values.
    convolution : {"exact", "step", "kinfitr"}
        Continuation of the reference between samples (see the module docstring).

    Returns
    -------
    array (n, n_frames)
        Model TACs (kBq/mL).

    Examples
    --------
    >>> from sv2a.frames import FrameSchedule
    >>> fr = FrameSchedule.from_durations([1.0] * 5 + [5.0] * 5)
    >>> cr = np.array([2.0, 5, 6, 6, 5.5, 5, 4, 3.2, 2.6, 2.1])
    >>> srtm_predict(fr, cr, R1=1.0, k2=0.1, k2a=0.1).round(6)[0, :3]  # BPND = 0: C_T = C_R
    array([2., 5., 6.])
    """
    r1 = np.atleast_1d(np.asarray(R1, dtype=float))
    k2v = np.atleast_1d(np.asarray(k2, dtype=float))
    ka = np.atleast_1d(np.asarray(k2a, dtype=float))
    n = max(r1.size, k2v.size, ka.size)
    r1, k2v, ka = (np.broadcast_to(v, (n,)) for v in (r1, k2v, ka))
    ok = np.isfinite(ka) & (ka > 0)
    x1, b = tac_convolution(frames, reference, np.where(ok, ka, 1.0), sampling=sampling,
                            convolution=convolution)
    out: FloatArray = r1[:, None] * np.asarray(x1)[None, :] + (k2v - r1 * ka)[:, None] * b
    out[~ok] = np.nan
    return out


@dataclass(frozen=True, kw_only=True)
class SRTMOptions:
    """SRTM options.

    Attributes
    ----------
    weights : {"uniform", "duration", "kinfitr", "variance"} or array
        Frame weights (:func:`sv2a.weights.frame_weights`); default ``"uniform"``.
    half_life : float, optional
        Radionuclide half-life (min) for TAC-dependent weights when the TACs carry none.
    method : {"basis", "nonlinear"}
        Basis functions with refinement (default) or the exact least-squares optimum.
    sampling : {"frame", "mid"}
        Frame-averaged (default) or mid-time model values.
    convolution : {"exact", "step", "kinfitr"}
        Continuation of the reference between samples (default ``"exact"``).
    rate_range : (float, float)
        Range of ``k2a`` (1/min) covered by the basis functions; default (0.005, 1.0), low
        enough for high-binding SV2A regions (``k2a`` near 0.015/min with a centrum
        semiovale reference). For noisy voxel TACs a floor of 0.01/min curbs the drift of
        noisy fits towards tiny ``k2a`` (inflated BPND) where the targets allow it; SRTM2,
        with ``k2'`` fixed, is the better voxel model.
    n_basis : int
        Number of log-spaced basis functions; default 100.
    k2prime : float or {"coupled", "srtm", "mrtm"}, optional
        ``None`` (default): ``k2'`` free for every TAC (three parameters). Otherwise the
        two-step SRTM of Wu & Carson (2002): ``k2'`` (1/min) given or pooled over the targets
        (:mod:`sv2a.models.k2prime`, resolved by :func:`sv2a.fit` and
        :func:`sv2a.parametric_maps`), then ``R1`` and ``k2a`` refitted per TAC. Removes the
        noise bias of voxelwise BPND.
    k2prime_region : str, sequence of str or array, optional
        Targets pooled for ``k2'`` (region names; for maps also a boolean mask); default all.
    """

    weights: Weights = "uniform"
    half_life: float | None = None
    method: Method = "basis"
    sampling: Sampling = "frame"
    convolution: Convolution = "exact"
    rate_range: tuple[float, float] = (0.005, 1.0)
    n_basis: int = 100
    k2prime: K2Prime | None = None
    k2prime_region: str | Sequence[str] | NDArray[Any] | None = None


Options = SRTMOptions


class ReferenceBasisModel(Model):
    """Shared set-up of the basis-function reference models (SRTM, SRTM2)."""

    kind: ClassVar[Kind] = "reference"
    scales: ClassVar[frozenset[Scale]] = frozenset({"region", "voxel"})
    units: ClassVar[Mapping[str, str]] = REFERENCE_UNITS
    ls: BasisLS

    def _setup_basis(self) -> None:
        o = self.options
        if o.convolution == "kinfitr" and o.sampling == "frame":
            raise ModelError(
                f"{self.name}: convolution='kinfitr' samples the model at mid-times; pass "
                "sampling='mid' with it")
        if o.convolution == "step" and o.sampling == "mid":
            raise ModelError(
                f"{self.name}: convolution='step' (reference held at the frame mean) gives "
                "frame averages; use sampling='frame' with it")
        if self.inputs.reference is None:
            raise ModelError(f"{self.name}: needs a reference TAC")
        self.reference = check_reference(self.inputs.reference, self.frames.n)
        lo, hi = o.rate_range
        self.thetas = rate_grid(lo, hi, o.n_basis, what="rate_range")
        self.x1, self.family = tac_convolution(self.frames, self.reference, self.thetas,
                                               sampling=o.sampling, convolution=o.convolution)
        self.settings.update(rate_range=[float(lo), float(hi)], n_basis=int(o.n_basis),
                             method=o.method, sampling=o.sampling, convolution=o.convolution)

    def _regressors(self, k: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``x1`` (1, f) and ``B(k)`` (n, f) for one rate per row."""
        x1, b = tac_convolution(self.frames, self.reference, k, sampling=self.options.sampling,
                                convolution=self.options.convolution)
        return np.asarray(x1, dtype=float)[None, :], b

    def _refine(self, rss_of: Callable[[FloatArray], FloatArray], index: NDArray[np.intp]
                ) -> FloatArray:
        """Exact 1-D search of ``log k2a`` in the bracket of the best grid point."""
        lg = np.log(self.thetas)
        lo = lg[np.clip(index - 1, 0, lg.size - 1)]
        hi = lg[np.clip(index + 1, 0, lg.size - 1)]
        return np.exp(golden(lambda lk: rss_of(np.exp(lk)), lo, hi))

    def _conv_and_derivative(self, k: FloatArray
                             ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``x1`` (1, f), ``B(k)`` and ``∂B/∂k`` (n, f) (central difference, 3 convolutions)."""
        h = 1e-4
        x1, b0 = self._regressors(k)
        _, bp = self._regressors(k * (1 + h))
        _, bm = self._regressors(k * (1 - h))
        return x1, b0, (bp - bm) / (2 * h * k[:, None])

    def _fixed_k2prime_ls(self, kp: float) -> BasisLS:
        """Grid search of ``y ≈ R1 [x1 + (k2' − θ_j) B_j]``, ``R1 > 0`` (``k2'`` fixed)."""
        fam = np.asarray(self.x1)[None, :] + (kp - self.thetas)[:, None] * self.family
        return BasisLS(fam, self.thetas, self.weights, r0=None)

    def _solve_fixed_k2prime(self, y: FloatArray, bad: NDArray[np.bool_], kp: float,
                             se: bool) -> dict[str, NDArray[Any]]:
        """Fit ``R1`` and ``k2a`` of every row with ``k2'`` fixed (SRTM2, and the second step
        of two-step SRTM); ``self.ls`` is :meth:`_fixed_k2prime_ls` of ``kp``."""
        k, r1, rss, edge, bad_det = self._fit_fixed_k2prime(self.ls, y, kp)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"BPND": r1 * kp / k - 1.0, "R1": r1, "k2": r1 * kp, "k2a": k,
                   "k2prime": np.full(y.shape[0], kp), "DVR": r1 * kp / k,
                   "rss": np.where(np.isfinite(rss), rss, np.nan)}
        if se:
            out.update(self._fixed_k2prime_se(np.stack([r1, k], 1), out["rss"], kp))
        flag = (np.where(edge, FLAG_EDGE, 0) | np.where(bad_det, FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(r1 > 0), FLAG_NEGATIVE, 0))
        return finish(out, flag, bad, int(np.count_nonzero(self.weights > 0)))

    def _fit_fixed_k2prime(self, ls: BasisLS, y: FloatArray, kp: float
                           ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_],
                                      NDArray[np.bool_]]:
        """``k2a``, ``R1``, rss, edge and degenerate flags of the fit with ``k2'`` fixed."""
        s = ls.solve(y)
        if self.options.method == "nonlinear":
            w = self.weights[None, :]

            def rss_of(k: FloatArray) -> FloatArray:
                x1, b = self._regressors(k)
                return _fixed_k2prime_rss(x1, b, y, w, kp, k)[0]

            k = self._refine(rss_of, np.asarray(s["index"]))
            x1, b = self._regressors(k)
            rss, r1 = _fixed_k2prime_rss(x1, b, y, w, kp, k)
            return k, r1, rss, self._at_grid_edge(k), ~np.isfinite(rss)
        k, r1, rss = (np.asarray(s[key], dtype=float) for key in ("theta", "b1", "rss"))
        return k, r1, rss, np.asarray(s["edge"], bool), np.asarray(s["bad_det"], bool)

    def _fixed_k2prime_se(self, theta: FloatArray, rss: FloatArray, kp: float
                          ) -> dict[str, FloatArray]:
        """Standard errors of the fit with ``k2'`` fixed (``theta`` = ``R1, k2a`` per row)."""
        def derive(th: FloatArray) -> dict[str, FloatArray]:
            r1, k = th[:, 0], th[:, 1]
            return {"BPND": r1 * kp / k - 1, "R1": r1, "k2": r1 * kp, "k2a": k,
                    "DVR": r1 * kp / k}

        n = theta.shape[0]
        out = {f"{p}_se": np.full(n, np.nan) for p in self.parameters}
        out["k2prime_se"] = np.zeros(n)
        ok = np.all(np.isfinite(theta), axis=1) & (theta[:, 1] > 0)
        if ok.any():
            th = theta[ok]
            r1, k = th[:, 0], th[:, 1]
            # C_T = R1 [x1 + (k2' − k) B(k)]: analytic in R1, ∂B/∂k numerically
            x1, b, db = self._conv_and_derivative(k)
            jac = np.stack([x1 + (kp - k)[:, None] * b,
                            r1[:, None] * (-b + (kp - k)[:, None] * db)], axis=2)
            cov = gauss_newton_cov(jac, self.weights, rss[ok])
            for key, v in delta_se(derive, th, cov).items():
                out[key][ok] = v
        return out

    def _at_grid_edge(self, k: FloatArray) -> NDArray[np.bool_]:
        return np.asarray((np.abs(np.log(k / self.thetas[0])) < 1e-6)
                          | (np.abs(np.log(k / self.thetas[-1])) < 1e-6))

    def predict(self, params: Mapping[str, Any]) -> FloatArray:
        """SRTM model TACs from ``R1``, ``k2`` and ``k2a`` (see :func:`srtm_predict`).

        Parameters
        ----------
        params : mapping
            ``R1``, ``k2`` (1/min) and ``k2a`` (1/min), arrays (n,) or floats.

        Returns
        -------
        array (n, n_frames)
            Model TACs (kBq/mL) with this solver's sampling and convolution.
        """
        return srtm_predict(self.frames, self.reference, params["R1"], params["k2"],
                            params["k2a"], sampling=self.options.sampling,
                            convolution=self.options.convolution)


def _srtm_rss(x1: FloatArray, b: FloatArray, y: FloatArray, w: FloatArray
              ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Two-regressor LS ``y ≈ θ1 x1 + θ2 b`` with one basis per row: rss, θ1, θ2 (n,)."""
    wx1 = w * x1
    wb = w * b
    a11 = (wx1 * x1).sum(1)
    a12 = (wx1 * b).sum(1)
    a22 = (wb * b).sum(1)
    b1 = (wx1 * y).sum(1)
    b2 = (wb * y).sum(1)
    yy = (w * y * y).sum(1)
    det = a11 * a22 - a12 * a12
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (a22 * b1 - a12 * b2) / det
        t2 = (a11 * b2 - a12 * b1) / det
    rss = yy - t1 * b1 - t2 * b2
    return np.where(np.isfinite(rss) & (det > 0), rss, np.inf), t1, t2


def _fixed_k2prime_rss(x1: FloatArray, b: FloatArray, y: FloatArray, w: FloatArray, kp: float,
                       k: FloatArray) -> tuple[FloatArray, FloatArray]:
    """One-regressor LS ``y ≈ R1 (x1 + (k2' − k) b)`` with one basis per row: rss, R1."""
    x = x1 + (kp - k)[:, None] * b
    sxx = (w * x * x).sum(1)
    sxy = (w * x * y).sum(1)
    yy = (w * y * y).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = sxy / sxx
    rss = yy - r1 * sxy
    return np.where(np.isfinite(rss) & (sxx > 0), rss, np.inf), r1


#: Plausible range of a reference region's efflux rate ``k2'`` (1/min). Brain tracers leave
#: a reference region with a half-time between about 0.7 min (k2' = 1 /min, faster than
#: any tracer's plasma-to-tissue exchange allows) and about 12 h (0.001 /min, longer than
#: any PET scan can resolve); the coupled estimate searches the same interval. A value
#: outside it is almost always a unit slip: k2' written in 1/h (60x too large) or in 1/s
#: (60x too small) gives a wrong BPND without any fit failing.
K2PRIME_PLAUSIBLE = (1e-3, 1.0)


def check_k2prime(value: Any, model: str, *, allow_none: bool = False) -> float | None:
    """Validate a resolved ``k2'`` (1/min).

    Parameters
    ----------
    value : float or None
        The reference efflux rate.
    model : str
        Model name, for messages.
    allow_none : bool
        Accept ``None`` (SRTM without the two-step; reference Logan without the ``C_R/k2'``
        term).

    Returns
    -------
    float or None

    Raises
    ------
    ModelError
        Not a positive finite number (a pooling rule must be resolved by the adapter first),
        or outside :data:`K2PRIME_PLAUSIBLE` (the message suggests the 1/h or 1/s unit slip).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, str) and value in ("coupled", "srtm", "mrtm"):
        raise ModelError(
            f"{model}: k2prime={value!r} must be resolved to a number before building the "
            "solver; sv2a.fit and sv2a.parametric_maps do this")
    try:
        k = float(value)
    except (TypeError, ValueError) as exc:
        allowed = "None, a number" if allow_none else "a number"
        raise ModelError(f"{model}: k2prime must be {allowed} (1/min), 'coupled', 'srtm' or "
                         f"'mrtm', got {value!r}") from exc
    if not np.isfinite(k) or k <= 0:
        raise ModelError(
            f"{model}: k2prime must be a positive rate (1/min), got {value!r}; for [11C]UCB-J "
            "with a centrum semiovale reference it is typically 0.02-0.06 /min")
    lo, hi = K2PRIME_PLAUSIBLE
    if not lo <= k <= hi:
        slip = (f"if it was written in 1/h, divide by 60 ({k / 60:.4g} /min)" if k > hi else
                f"if it was written in 1/s, multiply by 60 ({k * 60:.4g} /min)")
        raise ModelError(
            f"{model}: k2prime={value!r} /min is outside the plausible range {lo:g}-{hi:g} /min "
            "of a reference region's efflux rate (for [11C]UCB-J with a centrum semiovale "
            f"reference it is typically 0.02-0.06 /min); k2prime is in 1/min: {slip}")
    return k


@register
class SRTM(ReferenceBasisModel):
    """Simplified reference tissue model (Lammertsma & Hume 1996; basis functions Gunn 1997).

    ``C_T = R1 C_R + (k2 − R1 k2a) C_R ⊗ e^{−k2a t}``; reports ``BPND R1 k2 k2a k2prime DVR``
    (see :mod:`sv2a.models.srtm` for the estimation and the options in :class:`Options`).

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> fr = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 14)
    >>> t = fr.mid
    >>> cr = 10 * t * np.exp(-t / 8) + 0.5                      # a reference TAC (kBq/mL)
    >>> truth = srtm_predict(fr, cr, R1=1.1, k2=0.12, k2a=0.04)  # BPND = 2
    >>> solver = SRTM(ModelInputs(frames=fr, weights=np.ones(fr.n), reference=cr),
    ...               SRTMOptions())
    >>> out = solver.solve(truth, se=True)
    >>> round(float(out["BPND"][0]), 3), round(float(out["R1"][0]), 3)
    (2.0, 1.1)
    """

    name: ClassVar[str] = "srtm"
    parameters: ClassVar[tuple[str, ...]] = ("BPND", "R1", "k2", "k2a", "k2prime", "DVR")
    description: ClassVar[str] = ("Simplified reference tissue model (Lammertsma & Hume 1996; "
                                  "basis functions Gunn 1997)")
    Options: ClassVar[type] = SRTMOptions

    def __init__(self, inputs: ModelInputs, options: SRTMOptions) -> None:
        super().__init__(inputs, options)
        self._setup_basis()
        self.k2prime = check_k2prime(options.k2prime, self.name, allow_none=True)
        if self.k2prime is None:
            self.n_fitted = 3
            self.ls = BasisLS(self.family, self.thetas, self.weights, r0=np.asarray(self.x1))
        else:  # two-step (Wu & Carson 2002): R1 and k2a with k2' fixed
            self.n_fitted = 2
            self.ls = self._fixed_k2prime_ls(self.k2prime)
            self.settings["k2prime_used"] = self.k2prime

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
            ``name -> array (n,)``: ``BPND R1 k2 k2a k2prime DVR``, ``rss``,
            ``n_frames`` and ``flag`` (see :meth:`sv2a.models.base.Model.solve`).
        """
        y, bad = clean_rows(as_rows(tacs, self.frames.n))
        if self.k2prime is not None:
            return self._solve_fixed_k2prime(y, bad, self.k2prime, se)
        s = self.ls.solve(y)
        w = self.weights
        if self.options.method == "nonlinear":
            def rss_of(k: FloatArray) -> FloatArray:
                x1, b = self._regressors(k)
                return _srtm_rss(x1, b, y, w[None, :])[0]

            k = self._refine(rss_of, np.asarray(s["index"]))
            x1, b = self._regressors(k)
            rss, r1, t2 = _srtm_rss(x1, b, y, w[None, :])
            edge = self._at_grid_edge(k)
            bad_det = ~np.isfinite(rss)
        else:
            k, r1, t2, rss = (np.asarray(s[key], dtype=float)
                              for key in ("theta", "b0", "b1", "rss"))
            edge, bad_det = np.asarray(s["edge"], bool), np.asarray(s["bad_det"], bool)
        k2 = t2 + r1 * k
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"BPND": k2 / k - 1.0, "R1": r1, "k2": k2, "k2a": k, "k2prime": k2 / r1,
                   "DVR": k2 / k, "rss": np.where(np.isfinite(rss), rss, np.nan)}
        if se:
            out.update(self._standard_errors(y, np.stack([r1, k2, k], 1), out["rss"]))
        flag = (np.where(edge, FLAG_EDGE, 0) | np.where(bad_det, FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(r1 > 0) | ~(k2 > 0), FLAG_NEGATIVE, 0))
        return finish(out, flag, bad, int(np.count_nonzero(w > 0)))

    def _standard_errors(self, y: FloatArray, theta: FloatArray, rss: FloatArray
                         ) -> dict[str, FloatArray]:
        def derive(th: FloatArray) -> dict[str, FloatArray]:
            r1, k2, k = th[:, 0], th[:, 1], th[:, 2]
            return {"BPND": k2 / k - 1, "R1": r1, "k2": k2, "k2a": k, "k2prime": k2 / r1,
                    "DVR": k2 / k}

        ok = np.all(np.isfinite(theta), axis=1) & (theta[:, 2] > 0)
        out = {f"{p}_se": np.full(y.shape[0], np.nan) for p in self.parameters}
        if ok.any():
            th = theta[ok]
            r1, k2, k = th[:, 0], th[:, 1], th[:, 2]
            # C_T = R1 x1 + (k2 − R1 k) B(k): analytic in R1 and k2, ∂B/∂k numerically
            x1, b, db = self._conv_and_derivative(k)
            jac = np.stack([x1 - k[:, None] * b, b,
                            -r1[:, None] * b + (k2 - r1 * k)[:, None] * db], axis=2)
            cov = gauss_newton_cov(jac, self.weights, rss[ok])
            for key, v in delta_se(derive, th, cov).items():
                out[key][ok] = v
        return out
