"""Basis-function least squares over many TACs at once (Gunn et al. 1997).

Models whose TAC is linear in one or two amplitudes for a fixed rate ``θ``
(SRTM, SRTM2, 1TCM) are fitted by evaluating a family of basis functions ``F_j = F(θ_j)`` on a
log-spaced grid of rates and solving, for every row and every basis, a small linear least
squares; the basis with the least residual wins. :class:`BasisLS` does the whole grid search
for a chunk of rows with one matrix product:

``y ≈ b0 r0 + b1 F_j``, with an optional regressor ``r0`` common to all bases (``None``: one
regressor per basis and ``b1 > 0`` enforced by choosing the largest signed score). With
``r0`` each basis is first orthogonalised against it, ``F'_j = F_j − (c_j/a) r0`` (weighted
inner products ``a = r0·r0``, ``c_j = F_j·r0``), so the residual sum of squares of basis ``j``
is ``y·y − z0²/a − z'_j²/d'_j`` (``z0 = y·r0``, ``z'_j = y·F'_j``, ``d'_j = F'_j·F'_j``).

Refinement between grid points (``refine=True``): the basis is interpolated quadratically
in ``log θ`` (``F(δ) = Σ L_i(δ) F_{j+i}``) around the best grid point and the vertex of the
parabola through the three grid scores is accepted when it improves the fit.

References
----------
Gunn RN, Lammertsma AA, Hume SP, Cunningham VJ (1997) Parametric imaging of ligand-receptor
binding in PET using a simplified reference region model. NeuroImage 6:279-287.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import DataError

__all__ = ["BasisLS"]

FloatArray = NDArray[np.float64]


def _lagrange(delta: FloatArray) -> FloatArray:
    """Quadratic Lagrange weights at nodes (-1, 0, 1) for offsets ``delta`` -> (n, 3)."""
    d = delta[:, None]
    out: FloatArray = np.concatenate([d * (d - 1) / 2, 1 - d * d, d * (d + 1) / 2], axis=1)
    return out


class BasisLS:
    """Weighted least squares ``y ≈ b0 r0 + b1 F_j`` over a basis family (see module).

    Parameters
    ----------
    family : array (K, n_frames)
        Basis functions ``F_j`` (unweighted), one per grid rate.
    thetas : array (K,)
        The grid rates (1/min), log-uniform.
    weights : array (n_frames,)
        Frame weights common to all rows.
    r0 : array (n_frames,), optional
        Regressor common to all bases (the reference TAC in SRTM, whole blood in 1TCM with
        ``vB`` fitted).
    refine : bool
        Refine between grid points.
    """

    def __init__(self, family: FloatArray, thetas: FloatArray, weights: FloatArray,
                 r0: FloatArray | None = None, refine: bool = True) -> None:
        self.thetas = np.asarray(thetas, dtype=float)
        self.refine = refine
        self.has_r0 = r0 is not None
        self.sw = np.sqrt(np.asarray(weights, dtype=float))
        fw = np.asarray(family, dtype=float) * self.sw                  # (K, m)
        self.h = float(np.log(self.thetas[1] / self.thetas[0]))
        if r0 is not None:
            self.r0w = np.asarray(r0, dtype=float) * self.sw
            self.a = float(self.r0w @ self.r0w)
            if not self.a > 0:
                raise DataError("the common regressor (reference/blood curve) is all zero")
            self.c = fw @ self.r0w
            fw = fw - np.outer(self.c / self.a, self.r0w)               # orthogonal to r0
        else:
            self.r0w = np.zeros(fw.shape[1])
            self.a = 0.0
            self.c = np.zeros(self.thetas.size)
        self.gram = fw @ fw.T
        self.d = np.diag(self.gram).copy()
        ok = self.d > 1e-300 * max(float(self.d.max()), 1e-300)
        self.sqrt_d = np.sqrt(np.where(ok, self.d, 0.0))
        self.design = (fw / np.where(ok, self.sqrt_d, np.inf)[:, None]).T   # (m, K)
        # the grid search runs in float32 (half the memory traffic); the three scores around
        # the winner are recomputed in float64 before refinement and the final solution
        self.design32 = self.design.astype(np.float32)
        self.design_t = np.ascontiguousarray(self.design.T)

    def solve(self, y: FloatArray) -> dict[str, NDArray[np.generic]]:
        """Best basis per row.

        Parameters
        ----------
        y : array (n, n_frames)
            Target TACs.

        Returns
        -------
        dict
            ``b0``, ``b1`` (amplitudes), ``theta`` (1/min), ``rss`` (weighted), ``edge``
            (bool: best grid point at an end of the grid), ``bad_det`` (bool: degenerate
            basis), ``index`` (int: best grid point), each (n,).
        """
        n = y.shape[0]
        k = self.thetas.size
        yw = y * self.sw
        yy = np.einsum("ij,ij->i", yw, yw)
        sc = yw.astype(np.float32) @ self.design32                       # (n, K) grid scores
        rows = np.arange(n)
        if self.has_r0:
            z0 = yw @ self.r0w
            jmax = np.argmax(sc, axis=1)
            jmin = np.argmin(sc, axis=1)
            j = np.where(sc[rows, jmax] >= -sc[rows, jmin], jmax, jmin)
        else:
            z0 = np.zeros(n)
            j = np.argmax(sc, axis=1)
        sj = np.einsum("nm,nm->n", yw, self.design_t[j])
        zj = sj * self.sqrt_d[j]
        dj = self.d[j]
        cj = self.c[j]
        delta = np.zeros(n)
        if self.refine and k >= 3:
            inner = (j > 0) & (j < k - 1)
            jj = np.clip(j, 1, k - 2)
            idx = jj[:, None] + np.array([-1, 0, 1])[None, :]
            s3 = np.einsum("nm,nkm->nk", yw, self.design_t[idx])
            z3 = s3 * self.sqrt_d[idx]
            q3 = s3 * s3 if self.has_r0 else np.where(s3 > 0, s3 * s3, -np.inf)
            with np.errstate(divide="ignore", invalid="ignore"):
                curv = q3[:, 0] - 2.0 * q3[:, 1] + q3[:, 2]
                dstar = np.where(curv < 0, 0.5 * (q3[:, 0] - q3[:, 2]) / curv, 0.0)
            dstar = np.clip(np.nan_to_num(dstar, nan=0.0, posinf=0.0, neginf=0.0), -0.5, 0.5)
            lw = _lagrange(dstar)
            g3 = self.gram[idx[:, :, None], idx[:, None, :]]
            zd = np.einsum("ni,ni->n", lw, z3)
            dd = np.einsum("ni,nij,nj->n", lw, g3, lw)
            with np.errstate(divide="ignore", invalid="ignore"):
                qd = np.where(dd > 0, zd * zd / dd, -np.inf)
            if not self.has_r0:
                qd = np.where(zd > 0, qd, -np.inf)
            better = inner & np.isfinite(qd) & (qd > q3[:, 1])
            delta = np.where(better, dstar, 0.0)
            zj = np.where(better, zd, zj)
            dj = np.where(better, dd, dj)
            cj = np.where(better, np.einsum("ni,ni->n", lw, self.c[idx]), cj)
        with np.errstate(divide="ignore", invalid="ignore"):
            b1 = zj / dj
            if self.has_r0:
                b0 = (z0 - b1 * cj) / self.a
                fitted = z0 * z0 / self.a + zj * b1
            else:
                b0 = np.zeros(n)
                fitted = zj * b1
        theta = self.thetas[j] * np.exp(delta * self.h)
        return {
            "b0": b0,
            "b1": b1,
            "theta": theta,
            "rss": np.maximum(yy - fitted, 0.0),
            "edge": (j == 0) | (j == k - 1),
            "bad_det": ~(dj > 0),
            "index": j,
        }
