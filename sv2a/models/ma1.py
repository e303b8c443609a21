"""Multilinear analysis MA1 with plasma input (Ichise et al. 2002, JCBFM 22:1271).

For frames with mid-time ``t ≥ t*`` (time in min, activity in kBq/mL, VT in mL/cm3)::

    C_T(t) = γ1 ∫_0^t Cp + γ2 ∫_0^t C_T,    VT = −γ1/γ2,   b = 1/γ2

(no intercept; ``b`` is the equivalent Logan intercept, min). The TAC itself is the ordinate,
so frame weights apply directly and MA1 has less noise-induced bias than Logan. Set-up
(frames after t*, exact plasma integral, tissue integration, fixed ``vB`` and delay) and
``predict`` (the one-tissue curve implied by ``(VT, b)``: ``K1 = γ1``, ``k2 = −γ2``) are shared
with :class:`~sv2a.models.logan.LoganPlasma`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from .base import (
    FLAG_NEG_DENOMINATOR,
    Scale,
    as_rows,
    clean_rows,
    finish,
)
from .logan import LoganPlasma, PlasmaPlot
from .lsq import wls_batch
from .registry import register

__all__ = ["MA1"]


@register
class MA1(PlasmaPlot):
    """MA1: ``C_T = γ1 ∫Cp + γ2 ∫C_T`` for ``t ≥ t*``; ``VT = −γ1/γ2``.

    Outputs ``VT`` (mL/cm3) and ``intercept`` (``b = 1/γ2``, min) with ``*_se`` by the delta
    method from the regression covariance, ``rss``, ``n_frames``, ``flag``
    (``FLAG_NEG_DENOMINATOR`` when ``γ2 ≥ 0`` -- no washout -- or the design is singular).

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.blood import InputFunction
    >>> from sv2a.frames import FrameSchedule
    >>> from sv2a.models.base import ModelInputs
    >>> t = np.linspace(0, 92, 921)
    >>> inp = InputFunction(time=t, plasma=30 * t * np.exp(-t / 0.6) + 4 * np.exp(-t / 40))
    >>> frames = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 16)
    >>> solver = MA1(ModelInputs(frames=frames, weights=np.ones(27), input=inp),
    ...              MA1.Options(tstar=10.0))
    >>> tac = solver.predict({"VT": 10.0, "intercept": -1 / 0.03})
    >>> fit = solver.solve(tac)
    >>> print(f"VT = {fit['VT'][0]:.1f}")
    VT = 10.0
    """

    #: The options of the plasma Logan plot (the same set-up).
    Options: ClassVar[type] = LoganPlasma.Options

    name: ClassVar[str] = "ma1"
    kind: ClassVar[Literal["plasma"]] = "plasma"
    scales: ClassVar[frozenset[Scale]] = frozenset({"region", "voxel"})
    parameters: ClassVar[tuple[str, ...]] = ("VT", "intercept")
    units: ClassVar[Mapping[str, str]] = {"VT": "mL/cm3", "intercept": "min"}
    description: ClassVar[str] = "Ichise multilinear analysis MA1 (plasma input): VT = -g1/g2"

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
        n = y.shape[0]
        ct = self._tissue(y)
        x2 = (ct @ self.amat.T)[:, m]
        w = np.broadcast_to(self.weights, (n, self.frames.n))[:, m]
        r = wls_batch([self.icp[m], x2], ct[:, m], self.weights[..., m])
        g1, g2 = r["beta"][:, 0], r["beta"][:, 1]
        ok = np.asarray(r["ok"], dtype=bool) & (g2 < 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            vt = np.where(ok, -g1 / g2, np.nan)
            b = np.where(ok, 1.0 / g2, np.nan)
        out: dict[str, NDArray[Any]] = {"VT": vt, "intercept": b}
        if se:
            with np.errstate(divide="ignore", invalid="ignore"):
                grads = {"VT": np.stack([-1.0 / g2, g1 / g2**2], axis=1),
                         "intercept": np.stack([np.zeros(n), -1.0 / g2**2], axis=1)}
                for k, g in grads.items():
                    var = np.einsum("np,npq,nq->n", g, r["cov"], g)
                    out[f"{k}_se"] = np.where(ok, np.sqrt(np.clip(var, 0, None)), np.nan)
        out["rss"] = np.where(ok, r["rss"], np.nan)
        flag = np.where(ok, 0, FLAG_NEG_DENOMINATOR).astype(np.uint8)
        return finish(out, flag, bad, (w > 0).sum(1))
