"""SRTM2: the simplified reference tissue model with the reference efflux rate ``k2'`` fixed.

Equation (Wu & Carson 2002), time in min, rates in 1/min, activity in kBq/mL::

    C_T(t) = R1 [C_R(t) + (k2' − k2a) · C_R(t) ⊗ exp(−k2a t)],    k2a = R1 k2' / (1 + BPND)

Two parameters per TAC (``R1``, ``k2a``); ``k2 = R1 k2'``, ``BPND = R1 k2'/k2a − 1``.
Assumptions as SRTM, plus one ``k2'`` shared by every target (a property of the reference
region). Fixing it removes most of the noise of SRTM's BPND and R1.

``k2prime`` is a number (1/min) or how to estimate it from the targets (the same rule for
regions and voxels, :mod:`sv2a.models.k2prime`): ``"coupled"`` (default) the value that
minimises the summed SRTM2 residuals of all targets (or of ``k2prime_region``); ``"srtm"`` /
``"mrtm"`` a first-pass SRTM / MRTM fit of the mean TAC of ``k2prime_region`` (default: all
targets). Estimation of the other parameters as in :mod:`sv2a.models.srtm` (basis functions
``C_R + (k2' − θ_j) C_R ⊗ e^{−θ_j t}``, one amplitude ``R1 > 0`` per basis).

References
----------
Wu Y, Carson RE (2002) Noise reduction in the simplified reference tissue model for
neuroreceptor functional imaging. J Cereb Blood Flow Metab 22:1440-1452.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelError
from .base import (
    FLAG_EDGE,
    FLAG_NEG_DENOMINATOR,
    FLAG_NEGATIVE,
    Convolution,
    K2Prime,
    Method,
    ModelInputs,
    Sampling,
    Weights,
    as_rows,
    clean_rows,
    finish,
)
from .basis_ls import BasisLS
from .lsq import delta_se, gauss_newton_cov
from .registry import register
from .srtm import ReferenceBasisModel

__all__ = ["SRTM2", "SRTM2Options", "check_k2prime"]

FloatArray = NDArray[np.float64]


def check_k2prime(value: Any, model: str, *, allow_none: bool = False) -> float | None:
    """Validate a resolved ``k2'`` (1/min).

    Parameters
    ----------
    value : float or None
        The reference efflux rate.
    model : str
        Model name, for messages.
    allow_none : bool
        Accept ``None`` (reference Logan without the ``C_R/k2'`` term).

    Returns
    -------
    float or None

    Raises
    ------
    ModelError
        Not a positive finite number (a string must be resolved by the adapter first).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        raise ModelError(
            f"{model}: k2prime={value!r} must be resolved to a number before building the "
            "solver; sv2a.fit and sv2a.parametric_maps do this")
    try:
        k = float(value)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{model}: k2prime must be a number (1/min), 'coupled', 'srtm' or "
                         f"'mrtm', got {value!r}") from exc
    if not np.isfinite(k) or k <= 0:
        raise ModelError(
            f"{model}: k2prime must be a positive rate (1/min), got {value!r}; for [11C]UCB-J "
            "with a centrum semiovale reference it is typically 0.02-0.06 /min")
    return k


@dataclass(frozen=True, kw_only=True)
class SRTM2Options:
    """SRTM2 options: those of SRTM plus ``k2prime`` and ``k2prime_region``.

    Attributes
    ----------
    k2prime : float or {"coupled", "srtm", "mrtm"}
        Reference efflux rate (1/min) or how to estimate it (default ``"coupled"``).
    k2prime_region : str, sequence of str or array, optional
        Targets used to estimate ``k2'`` (region names; for maps also a boolean mask);
        default all targets.
    weights, half_life, method, sampling, convolution, rate_range, n_basis
        As :class:`sv2a.models.srtm.Options`.
    """

    weights: Weights = "uniform"
    half_life: float | None = None
    method: Method = "basis"
    sampling: Sampling = "frame"
    convolution: Convolution = "exact"
    rate_range: tuple[float, float] = (0.005, 1.0)
    n_basis: int = 100
    k2prime: K2Prime = "coupled"
    k2prime_region: str | Sequence[str] | NDArray[Any] | None = None


Options = SRTM2Options


def _srtm2_rss(x1: FloatArray, b: FloatArray, y: FloatArray, w: FloatArray, kp: float,
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


@register
class SRTM2(ReferenceBasisModel):
    """SRTM with ``k2'`` fixed (Wu & Carson 2002); reports ``BPND R1 k2 k2a k2prime DVR``.

    See :mod:`sv2a.models.srtm2` for the equation and :class:`Options` for the options. The
    solver takes a resolved ``k2prime`` (a number); :func:`sv2a.fit` and
    :func:`sv2a.parametric_maps` resolve ``"coupled"``/``"srtm"``/``"mrtm"`` first.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> from sv2a.models.srtm import srtm_predict
    >>> fr = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 14)
    >>> cr = 10 * fr.mid * np.exp(-fr.mid / 8) + 0.5
    >>> y = srtm_predict(fr, cr, R1=1.1, k2=1.1 * 0.05, k2a=1.1 * 0.05 / 3)   # BPND = 2
    >>> opts = SRTM2Options(k2prime=0.05)
    >>> solver = SRTM2(ModelInputs(frames=fr, weights=np.ones(fr.n), reference=cr), opts)
    >>> round(float(solver.solve(y)["BPND"][0]), 2)
    2.0
    """

    name: ClassVar[str] = "srtm2"
    parameters: ClassVar[tuple[str, ...]] = ("BPND", "R1", "k2", "k2a", "k2prime", "DVR")
    description: ClassVar[str] = "SRTM with k2' fixed (Wu & Carson 2002)"
    Options: ClassVar[type] = SRTM2Options

    def __init__(self, inputs: ModelInputs, options: SRTM2Options) -> None:
        super().__init__(inputs, options)
        self._setup_basis()
        kp = check_k2prime(options.k2prime, self.name)
        assert kp is not None
        self.k2prime = kp
        self.n_fitted = 2
        fam = np.asarray(self.x1)[None, :] + (kp - self.thetas)[:, None] * self.family
        self.ls = BasisLS(fam, self.thetas, self.weights, r0=None)
        self.settings["k2prime_used"] = kp

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
        s = self.ls.solve(y)
        w = self.weights[None, :]
        kp = self.k2prime
        if self.options.method == "nonlinear":
            def rss_of(k: FloatArray) -> FloatArray:
                x1, b = self._regressors(k)
                return _srtm2_rss(x1, b, y, w, kp, k)[0]

            k = self._refine(rss_of, np.asarray(s["index"]))
            x1, b = self._regressors(k)
            rss, r1 = _srtm2_rss(x1, b, y, w, kp, k)
            edge = self._at_grid_edge(k)
            bad_det = ~np.isfinite(rss)
        else:
            k, r1, rss = (np.asarray(s[key], dtype=float) for key in ("theta", "b1", "rss"))
            edge, bad_det = np.asarray(s["edge"], bool), np.asarray(s["bad_det"], bool)
        n = y.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"BPND": r1 * kp / k - 1.0, "R1": r1, "k2": r1 * kp, "k2a": k,
                   "k2prime": np.full(n, kp), "DVR": r1 * kp / k,
                   "rss": np.where(np.isfinite(rss), rss, np.nan)}
        if se:
            out.update(self._standard_errors(np.stack([r1, k], 1), out["rss"]))
        flag = (np.where(edge, FLAG_EDGE, 0) | np.where(bad_det, FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(r1 > 0), FLAG_NEGATIVE, 0))
        return finish(out, flag, bad, int(np.count_nonzero(self.weights > 0)))

    def _standard_errors(self, theta: FloatArray, rss: FloatArray) -> dict[str, FloatArray]:
        kp = self.k2prime

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
