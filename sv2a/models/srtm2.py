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

from .base import (
    Convolution,
    K2Prime,
    Method,
    ModelInputs,
    Sampling,
    Weights,
    as_rows,
    clean_rows,
)
from .registry import register
from .srtm import ReferenceBasisModel, check_k2prime

__all__ = ["SRTM2", "SRTM2Options", "check_k2prime"]

FloatArray = NDArray[np.float64]


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
        self.ls = self._fixed_k2prime_ls(kp)
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
        return self._solve_fixed_k2prime(y, bad, self.k2prime, se)
