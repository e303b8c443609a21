"""Multilinear reference tissue models: MRTM (MRTM1) and MRTM2 (Ichise et al. 2003).

Time in min, rates in 1/min, activity in kBq/mL. Over the frames with mid-time ``t ≥ t*``::

    MRTM:   C_T(T) = γ1 ∫_0^T C_R + γ2 ∫_0^T C_T + γ3 C_R(T)
            γ1 = R1 k2' = k2,  γ2 = −k2a,  γ3 = R1;   BPND = −(γ1/γ2 + 1),  k2' = γ1/γ3
    MRTM2:  C_T(T) = γ1 (∫_0^T C_R + C_R(T)/k2') + γ2 ∫_0^T C_T        (k2' fixed)
            γ1 = R1 k2' = k2,  γ2 = −k2a;   BPND = −(γ1/γ2 + 1),  R1 = γ1/k2'

Linear (weighted) least squares per TAC, all TACs at once; standard errors from the
regression covariance by the delta method. Running integrals at the frame mid-times by the
trapezoid rule with (0, 0) prepended (``integration="trapezoid"``, as kinfitr and TPCCLIB) or
kinfitr's ``"framecumsum"`` (``Σ_{j<i} C_j Δt_j + C_i Δt_i / 2``). Noise in ``∫C_T`` biases
MRTM slightly at high noise; MRTM2 fixes ``k2'`` (estimated as in :mod:`sv2a.models.srtm2`).

``predict`` gives the SRTM curve with the estimated ``R1``, ``k2`` and ``k2a`` (the model the
operational equation integrates).

References
----------
Ichise M, Liow JS, Lu JQ, et al. (2003) Linearized reference tissue parametric imaging
methods: application to [11C]DASB positron emission tomography studies of the serotonin
transporter in human brain. J Cereb Blood Flow Metab 23:1096-1112.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ._kinetics import integral_matrix
from .base import (
    FLAG_NEG_DENOMINATOR,
    FLAG_NEGATIVE,
    Integration,
    K2Prime,
    Kind,
    Model,
    ModelInputs,
    Scale,
    Weights,
    as_rows,
    check_reference,
    clean_rows,
    finish,
    select_frames,
)
from .lsq import delta_se, wls_batch
from .registry import register
from .srtm import REFERENCE_UNITS, check_k2prime, srtm_predict

__all__ = ["MRTM", "MRTM2", "MRTMOptions", "MRTM2Options"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class MRTMOptions:
    """MRTM options.

    Attributes
    ----------
    weights : {"uniform", "duration", "kinfitr", "variance"} or array
        Frame weights; default ``"uniform"`` (ordinary least squares, as kinfitr).
    half_life : float, optional
        Half-life (min) for TAC-dependent weights.
    tstar : float, optional
        Use frames with mid-time ``>= tstar`` (min); or ``n_frames`` = the last N frames.
        Default: all frames.
    n_frames : int, optional
        Number of last frames used.
    integration : {"trapezoid", "framecumsum", "frame"}
        Running integrals: trapezoid on the mid-times with (0, 0) prepended (default, as
        kinfitr and TPCCLIB), kinfitr's framecumsum, or ``"frame"``: frame averages of the
        integral of each TAC held at its frame mean, with which the operational equation
        holds exactly between frame averages (least discretisation error with long frames).
    """

    weights: Weights = "uniform"
    half_life: float | None = None
    tstar: float | None = None
    n_frames: int | None = None
    integration: Integration = "trapezoid"


@dataclass(frozen=True, kw_only=True)
class MRTM2Options:
    """MRTM2 options: those of MRTM plus ``k2prime`` and ``k2prime_region``.

    Attributes
    ----------
    k2prime : float or {"coupled", "srtm", "mrtm"}
        Reference efflux rate (1/min) or how to estimate it (default ``"coupled"``, see
        :mod:`sv2a.models.k2prime`).
    k2prime_region : str, sequence of str or array, optional
        Targets used to estimate ``k2'``; default all targets.
    weights, half_life, tstar, n_frames, integration
        As :class:`MRTMOptions`.
    """

    weights: Weights = "uniform"
    half_life: float | None = None
    tstar: float | None = None
    n_frames: int | None = None
    integration: Integration = "trapezoid"
    k2prime: K2Prime = "coupled"
    k2prime_region: str | Sequence[str] | NDArray[Any] | None = None


class _Multilinear(Model):
    """Shared set-up: reference, frame selection and integral operator."""

    weights_in_setup = False
    row_weights: ClassVar[bool] = True

    kind: ClassVar[Kind] = "reference"
    scales: ClassVar[frozenset[Scale]] = frozenset({"region", "voxel"})
    units: ClassVar[Mapping[str, str]] = REFERENCE_UNITS
    min_frames: ClassVar[int] = 4

    def __init__(self, inputs: ModelInputs, options: Any) -> None:
        super().__init__(inputs, options)
        self.reference = check_reference(inputs.reference, self.frames.n)
        self.mask = select_frames(self.frames.mid, tstar=options.tstar,
                                  n_frames=options.n_frames, model=self.name,
                                  min_frames=self.min_frames)
        self.amat = integral_matrix(self.frames.mid, method=options.integration,
                                    frames=self.frames,
                                    durations=self.frames.duration)
        self.icr = self.amat @ self.reference
        self.tstar = float(self.frames.mid[self.mask][0])
        self.settings.update(tstar=self.tstar, n_frames_used=int(self.mask.sum()),
                             integration=options.integration)

    def _regress(self, y: FloatArray, columns: list[FloatArray]
                 ) -> tuple[dict[str, FloatArray], FloatArray]:
        """WLS of ``y`` on the columns (common (f,) or per row (n, f)) over the used frames."""
        n = y.shape[0]
        m = self.mask
        w = self.weights[..., m]
        r = wls_batch([c[..., m] for c in columns], y[:, m], w)
        return r, (np.broadcast_to(w, (n, int(m.sum()))) > 0).sum(1)

    def predict(self, params: Mapping[str, Any]) -> FloatArray:
        """SRTM curve of ``R1``, ``k2``, ``k2a`` (see :func:`sv2a.models.srtm.srtm_predict`).

        Parameters
        ----------
        params : mapping
            ``R1``, ``k2`` (1/min), ``k2a`` (1/min).

        Returns
        -------
        array (n, n_frames)
            Frame-averaged model TACs (kBq/mL).
        """
        return srtm_predict(self.frames, self.reference, params["R1"], params["k2"],
                            params["k2a"])


@register
class MRTM(_Multilinear):
    """MRTM ("MRTM1", Ichise et al. 2003): three-parameter multilinear reference model.

    Reports ``BPND R1 k2 k2a k2prime DVR`` (see :mod:`sv2a.models.mrtm`).

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> from sv2a.models.srtm import srtm_predict
    >>> fr = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 14)
    >>> cr = 10 * fr.mid * np.exp(-fr.mid / 8) + 0.5
    >>> y = srtm_predict(fr, cr, R1=1.1, k2=0.12, k2a=0.04)           # BPND = 2
    >>> out = MRTM(ModelInputs(frames=fr, weights=np.ones(fr.n), reference=cr),
    ...            MRTMOptions()).solve(y)
    >>> bool(abs(out["BPND"][0] - 2.0) < 0.05)
    True
    """

    name: ClassVar[str] = "mrtm"
    parameters: ClassVar[tuple[str, ...]] = ("BPND", "R1", "k2", "k2a", "k2prime", "DVR")
    description: ClassVar[str] = "Multilinear reference tissue model MRTM1 (Ichise 2003)"
    Options: ClassVar[type] = MRTMOptions

    def __init__(self, inputs: ModelInputs, options: MRTMOptions) -> None:
        super().__init__(inputs, options)
        self.n_fitted = 3

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
        r, used = self._regress(y, [self.icr, y @ self.amat.T, self.reference])
        beta = r["beta"]
        out = _derive_mrtm(beta)
        out["rss"] = r["rss"]
        if se:
            out.update(delta_se(_derive_mrtm, beta, r["cov"]))
        g1, g2 = beta[:, 0], beta[:, 1]
        ok = np.asarray(r["ok"], dtype=bool)
        flag = (np.where(~ok | ~(g2 < 0), FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(g1 > 0) | ~(beta[:, 2] > 0), FLAG_NEGATIVE, 0))
        return finish(out, flag, bad, used)


def _derive_mrtm(b: FloatArray) -> dict[str, FloatArray]:
    g1, g2, g3 = b[:, 0], b[:, 1], b[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"BPND": -(g1 / g2 + 1), "R1": g3, "k2": g1, "k2a": -g2, "k2prime": g1 / g3,
                "DVR": -g1 / g2}


@register
class MRTM2(_Multilinear):
    """MRTM2 (Ichise et al. 2003): two-parameter multilinear model with ``k2'`` fixed.

    Reports ``BPND R1 k2 k2a k2prime DVR`` (see :mod:`sv2a.models.mrtm`). The solver takes a
    resolved ``k2prime`` (a number). kinfitr's MRTM2 "R1" column holds ``1 + BPND``; sv2a's
    ``R1`` is ``γ1/k2'``.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> from sv2a.models.srtm import srtm_predict
    >>> fr = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 14)
    >>> cr = 10 * fr.mid * np.exp(-fr.mid / 8) + 0.5
    >>> y = srtm_predict(fr, cr, R1=1.1, k2=1.1 * 0.05, k2a=1.1 * 0.05 / 3)   # BPND = 2
    >>> inputs = ModelInputs(frames=fr, weights=np.ones(fr.n), reference=cr)
    >>> out = MRTM2(inputs, MRTM2Options(k2prime=0.05)).solve(y)
    >>> bool(abs(out["BPND"][0] - 2.0) < 0.05)
    True
    """

    name: ClassVar[str] = "mrtm2"
    parameters: ClassVar[tuple[str, ...]] = ("BPND", "R1", "k2", "k2a", "k2prime", "DVR")
    description: ClassVar[str] = "MRTM2 with k2' fixed (Ichise 2003)"
    Options: ClassVar[type] = MRTM2Options
    min_frames: ClassVar[int] = 3

    def __init__(self, inputs: ModelInputs, options: MRTM2Options) -> None:
        super().__init__(inputs, options)
        kp = check_k2prime(options.k2prime, self.name)
        assert kp is not None
        self.k2prime = kp
        self.n_fitted = 2
        self.x = self.icr + self.reference / kp
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
        r, used = self._regress(y, [self.x, y @ self.amat.T])
        beta = r["beta"]
        kp = self.k2prime

        def derive(b: FloatArray) -> dict[str, FloatArray]:
            g1, g2 = b[:, 0], b[:, 1]
            with np.errstate(divide="ignore", invalid="ignore"):
                return {"BPND": -(g1 / g2 + 1), "R1": g1 / kp, "k2": g1, "k2a": -g2,
                        "DVR": -g1 / g2}

        out = derive(beta)
        out["k2prime"] = np.full(y.shape[0], kp)
        out["rss"] = r["rss"]
        if se:
            out.update(delta_se(derive, beta, r["cov"]))
            out["k2prime_se"] = np.zeros(y.shape[0])
        g1, g2 = beta[:, 0], beta[:, 1]
        ok = np.asarray(r["ok"], dtype=bool)
        flag = (np.where(~ok | ~(g2 < 0), FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(g1 > 0), FLAG_NEGATIVE, 0))
        return finish(out, flag, bad, used)
