"""Vectorised kinetic-model solvers over many TACs at once (voxels, or regions as rows).

Every solver takes TACs as a 2-D array ``(n_tacs, n_frames)`` (kBq/mL, decay corrected, one row
per voxel or region) and returns a dict ``name -> array (n_tacs,)`` of parameters (DESIGN §2
names) plus ``rss`` and a bit-field ``flag`` (see :data:`FLAGS`). No Python loop runs over rows:
each solver precomputes everything that depends only on the frame timing, the weights and the
reference/plasma input (basis functions, their weighted Gram matrix, integration operators) in
its constructor, and :meth:`solve` handles a chunk of rows with a few matrix products. Solver
objects are small and picklable, so a chunk can be solved in another process (dask).

Models (minutes, 1/min, kBq/mL):

* :class:`SRTMBasis` -- SRTM (Lammertsma & Hume 1996) by basis functions (Gunn et al. 1997,
  NeuroImage 6:279): ``C_T = R1 C_R + k2b (C_R ⊗ e^(-θ t))`` with ``θ = k2a = k2/(1+BPND)`` on a
  log-spaced grid, ``k2b = k2 − R1 θ``; linear least squares per basis, best basis kept, then
  refined between grid points (quadratic interpolation of the basis in ``log θ``).
* :class:`SRTM2Basis` -- SRTM2 (Wu & Carson 2002, JCBFM 22:1440) with ``k2'`` fixed:
  ``C_T = R1 [C_R + (k2' − θ) C_R ⊗ e^(-θ t)]``, one linear parameter per basis.
* :class:`MRTM2` -- Ichise et al. 2003 (JCBFM 23:1096):
  ``C_T(t) = γ1 (∫C_R + C_R/k2') + γ2 ∫C_T`` for ``t ≥ t*``; ``BPND = −(γ1/γ2 + 1)``.
* :class:`LoganRef` -- reference Logan plot (Logan et al. 1996, JCBFM 16:834):
  ``∫C_T/C_T = DVR (∫C_R + C_R/k2')/C_T + b`` for ``t ≥ t*``.
* :class:`OneTCMBasis` -- 1TCM with plasma input by basis functions:
  ``C_PET = (1 − vB) K1 (Cp ⊗ e^(-k2 t)) + vB C_WB``; ``VT = K1/k2``.
* :class:`LoganPlasma` -- Logan et al. 1990: ``∫C_T/C_T = VT ∫Cp/C_T + b`` for ``t ≥ t*``.
* :class:`MA1` -- Ichise et al. 2002 (JCBFM 22:1271): ``C_T = −(VT/b) ∫Cp + (1/b) ∫C_T``.
* :class:`SUVR`, :class:`SUV` -- frame-duration-weighted window means.

Shared primitives. Convolutions, running integrals and the rate grid come from
:mod:`sv2a.models._kinetics` (``exp_conv_step``, ``plasma_convolution``, ``integral_matrix``
with ``method="frame"``, ``rate_grid``). The regional models (:mod:`.reference`,
:mod:`.plasma`) keep their own least-squares drivers on purpose: they take per-region weights,
report standard errors, and refine ``k2a`` by an exact 1-D search; the solvers here need
weights common to all rows (one Gram matrix), search the grid in float32 and refine by
quadratic interpolation, which is what makes ~200,000 voxels a second possible. The regional
SRTM/SRTM2 with ``convolution="step"`` use this module's discretisation (agreement ~1e-3).

Frame averages. A PET frame holds the *average* of the activity over the frame. Integrals of
measured TACs are computed with the activity held at the frame mean inside each frame (which
reproduces the measured integral over every frame exactly); gaps between frames are bridged
with the mean of the neighbouring frames and the time before the first frame is taken as zero
activity. The model equations above are linear in the TACs, so they hold exactly between frame
averages of ``C_T``, ``C_R`` and of the running integrals; the only approximation is the
within-frame shape of the reference (or tissue) curve. Plasma curves are known at high time
resolution and are convolved on a fine grid (exact recursion for a piecewise-linear input), then
averaged over each frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError, FitError, ModelError
from ..frames import FrameSchedule
from ._kinetics import (
    exp_conv_step,
    integral_matrix,
    plasma_convolution,
    plasma_frame_integrals,
    plasma_frame_means,
    rate_grid,
)

__all__ = [
    "FLAG_EDGE",
    "FLAG_NONFINITE",
    "FLAG_NEG_DENOMINATOR",
    "FLAG_NEGATIVE",
    "FLAGS",
    "SRTMBasis",
    "SRTM2Basis",
    "MRTM2",
    "LoganRef",
    "OneTCMBasis",
    "LoganPlasma",
    "MA1",
    "SUVR",
    "SUV",
    "srtm_basis",
    "srtm2_basis",
    "mrtm2",
    "logan_ref",
    "onetcm_basis",
    "logan_plasma",
    "ma1",
    "describe_flags",
    "estimate_k2prime",
]

#: The best basis function lies at the lowest or highest grid value (estimate may be clipped).
FLAG_EDGE = 1
#: Non-finite input or result (NaN/inf TAC value, or an undefined parameter).
FLAG_NONFINITE = 2
#: A denominator of the estimator is zero or has the wrong sign (e.g. ``γ2 ≥ 0`` in MRTM2, a
#: graphical plot without spread in x, a non-positive basis determinant).
FLAG_NEG_DENOMINATOR = 4
#: A rate/amplitude that must be positive is not (R1 ≤ 0, K1 ≤ 0, k2 ≤ 0).
FLAG_NEGATIVE = 8
#: Bit -> meaning, for sidecars and the summary warning.
FLAGS = {
    FLAG_EDGE: "basis at grid edge",
    FLAG_NONFINITE: "non-finite",
    FLAG_NEG_DENOMINATOR: "negative denominator",
    FLAG_NEGATIVE: "negative rate or amplitude",
}

#: Default basis grid (1/min), after DOMAIN §2 (Gunn 1997 style): 100 log-spaced values.
DEFAULT_RANGE = (0.005, 1.0)
DEFAULT_N_BASIS = 100


def describe_flags(flag: np.ndarray) -> dict[str, int]:
    """Count voxels per flag bit: ``{meaning: count}`` (only bits that occur)."""
    flag = np.asarray(flag).astype(np.int64, copy=False)
    out = {}
    for bit, name in FLAGS.items():
        n = int(np.count_nonzero(flag & bit))
        if n:
            out[name] = n
    return out


# =========================================================================== common pieces
def _as_rows(tacs, n_frames: int, what: str = "TACs") -> np.ndarray:
    y = np.asarray(tacs, dtype=float)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2 or y.shape[1] != n_frames:
        raise DataError(
            f"{what}: expected an array (n_tacs, {n_frames}) (one row per voxel/region, one "
            f"column per frame), got shape {y.shape}"
        )
    return y


def _weights(weights, n_frames: int) -> np.ndarray:
    if weights is None:
        return np.ones(n_frames)
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.size != n_frames or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ModelError(
            f"weights must be {n_frames} finite non-negative numbers (one per frame), not all "
            f"zero; got {np.asarray(weights)!r}"
        )
    return w


def _clean(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a non-finite value are zeroed for the algebra and reported as bad."""
    bad = ~np.all(np.isfinite(y), axis=1)
    if bad.any():
        y = np.where(bad[:, None], 0.0, y)
    return y, bad


def _finish(out: dict[str, np.ndarray], flag: np.ndarray, bad: np.ndarray) -> dict:
    """Flag non-finite results and rows with non-finite input (their values become NaN)."""
    nonfinite = bad.copy()
    for v in out.values():
        nonfinite |= ~np.isfinite(v)
    flag = flag | np.where(nonfinite, FLAG_NONFINITE, 0).astype(flag.dtype)
    for k in out:
        out[k] = np.where(bad, np.nan, out[k])
    out["flag"] = flag
    return out


def _lagrange(delta: np.ndarray) -> np.ndarray:
    """Quadratic Lagrange weights at nodes (-1, 0, 1) for offsets ``delta`` -> (n, 3)."""
    d = delta[:, None]
    return np.concatenate([d * (d - 1) / 2, 1 - d * d, d * (d + 1) / 2], axis=1)


@dataclass
class _BasisLS:
    """Weighted least squares ``y ≈ b0 r0 + b1 F_j`` over a family ``F_j`` (log-uniform in θ).

    ``r0`` is optional (``None``: one regressor per basis, and ``b1 > 0`` is enforced by
    choosing the basis with the largest signed score). With ``r0`` each basis is first
    orthogonalised against it, ``F'_j = F_j − (c_j/a) r0`` (weighted inner products
    ``a = r0·r0``, ``c_j = F_j·r0``), so the residual sum of squares of basis ``j`` is
    ``y·y − z0²/a − z'_j²/d'_j`` (``z0 = y·r0``, ``z'_j = y·F'_j``, ``d'_j = F'_j·F'_j``):
    the whole grid search is one matrix product with the normalised ``F'_j/√d'_j`` followed by
    an arg-max (Gunn et al. 1997's per-basis projections, precomputed once). After the best grid
    basis, the optimum is refined between its neighbours: the basis is interpolated
    quadratically in ``log θ`` (``F(δ) = Σ L_i(δ) F_{j+i}``) and the vertex of the parabola
    through the three grid scores is accepted when it improves the fit.
    """

    family: np.ndarray          # (K, m) unweighted
    thetas: np.ndarray          # (K,)
    weights: np.ndarray         # (m,)
    r0: np.ndarray | None = None
    refine: bool = True

    def __post_init__(self) -> None:
        self.sw = np.sqrt(self.weights)
        fw = self.family * self.sw                                   # (K, m)
        self.h = float(np.log(self.thetas[1] / self.thetas[0]))
        if self.r0 is not None:
            self.r0w = self.r0 * self.sw
            self.a = float(self.r0w @ self.r0w)
            if not self.a > 0:
                raise DataError("the common regressor (reference/blood curve) is all zero")
            self.c = fw @ self.r0w
            fw = fw - np.outer(self.c / self.a, self.r0w)            # orthogonal to r0
        else:
            self.a = 0.0
            self.c = np.zeros(self.thetas.size)
        self.gram = fw @ fw.T                                        # (K, K) of F'
        self.d = np.diag(self.gram).copy()
        ok = self.d > 1e-300 * max(float(self.d.max()), 1e-300)
        self.sqrt_d = np.sqrt(np.where(ok, self.d, 0.0))
        # normalised design: scores S_j = z'_j / sqrt(d'_j)
        self.design = (fw / np.where(ok, self.sqrt_d, np.inf)[:, None]).T   # (m, K)
        # the grid search runs in float32 (half the memory traffic); the three scores around
        # the winner are recomputed in float64 before refinement and the final solution
        self.design32 = self.design.astype(np.float32)
        self.design_t = np.ascontiguousarray(self.design.T)             # (K, m) row gathers

    def solve(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """Best basis per row: ``b0, b1, theta, rss, edge, bad_det`` arrays (n,)."""
        n = y.shape[0]
        k = self.thetas.size
        yw = y * self.sw
        yy = np.einsum("ij,ij->i", yw, yw)
        sc = yw.astype(np.float32) @ self.design32                   # (n, K) grid scores
        rows = np.arange(n)
        if self.r0 is not None:
            z0 = yw @ self.r0w
            jmax = np.argmax(sc, axis=1)
            jmin = np.argmin(sc, axis=1)
            j = np.where(sc[rows, jmax] >= -sc[rows, jmin], jmax, jmin)
        else:
            z0 = np.zeros(n)
            j = np.argmax(sc, axis=1)
        sj = np.einsum("nm,nm->n", yw, self.design_t[j])             # float64 score
        zj = sj * self.sqrt_d[j]
        dj = self.d[j]
        cj = self.c[j]
        delta = np.zeros(n)
        if self.refine:
            inner = (j > 0) & (j < k - 1)
            jj = np.clip(j, 1, k - 2)
            idx = jj[:, None] + np.array([-1, 0, 1])[None, :]       # (n, 3)
            s3 = np.einsum("nm,nkm->nk", yw, self.design_t[idx])      # float64 scores
            z3 = s3 * self.sqrt_d[idx]
            q3 = s3 * s3 if self.r0 is not None else np.where(s3 > 0, s3 * s3, -np.inf)
            with np.errstate(divide="ignore", invalid="ignore"):
                curv = q3[:, 0] - 2.0 * q3[:, 1] + q3[:, 2]
                dstar = np.where(curv < 0, 0.5 * (q3[:, 0] - q3[:, 2]) / curv, 0.0)
            dstar = np.clip(np.nan_to_num(dstar, nan=0.0, posinf=0.0, neginf=0.0), -0.5, 0.5)
            lw = _lagrange(dstar)
            g3 = self.gram[idx[:, :, None], idx[:, None, :]]          # (n, 3, 3)
            zd = np.einsum("ni,ni->n", lw, z3)
            dd = np.einsum("ni,nij,nj->n", lw, g3, lw)
            with np.errstate(divide="ignore", invalid="ignore"):
                qd = np.where(dd > 0, zd * zd / dd, -np.inf)
            if self.r0 is None:
                qd = np.where(zd > 0, qd, -np.inf)
            better = inner & np.isfinite(qd) & (qd > q3[:, 1])
            delta = np.where(better, dstar, 0.0)
            zj = np.where(better, zd, zj)
            dj = np.where(better, dd, dj)
            cj = np.where(better, np.einsum("ni,ni->n", lw, self.c[idx]), cj)
        with np.errstate(divide="ignore", invalid="ignore"):
            b1 = zj / dj
            if self.r0 is not None:
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
        }


def _two_regressor(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Per-row weighted LS ``y ≈ g1 x1 + g2 x2`` with common ``x1`` (m,) and per-row ``x2``.

    Returns ``g1, g2, det, rss`` (n,). Normal equations solved in closed form.
    """
    x1w = x1 * w
    s11 = float(x1w @ x1)
    s12 = x2 @ x1w
    x2w = x2 * w
    s22 = np.einsum("ij,ij->i", x2w, x2)
    r1 = y @ x1w
    r2 = np.einsum("ij,ij->i", x2w, y)
    det = s11 * s22 - s12**2
    with np.errstate(divide="ignore", invalid="ignore"):
        g1 = (s22 * r1 - s12 * r2) / det
        g2 = (s11 * r2 - s12 * r1) / det
    yy = np.einsum("ij,ij->i", y * w, y)
    rss = np.maximum(yy - g1 * r1 - g2 * r2, 0.0)
    return g1, g2, det, rss


def _slope(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Per-row weighted straight line ``y = s x + b`` (x, y (n, m)).

    Returns slope ``s``, intercept ``b``, denominator ``den = Σw Σwx² − (Σwx)²`` and the
    weighted residual sum of squares (closed form at the least-squares solution).
    """
    sw = float(w.sum())
    sx = x @ w
    sy = y @ w
    sxx = (x * x) @ w
    sxy = (x * y) @ w
    syy = (y * y) @ w
    den = sw * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (sw * sxy - sx * sy) / den
        b = (sy - s * sx) / sw
    rss = np.maximum(syy - s * sxy - b * sy, 0.0)
    return s, b, den, rss


def _check_k2prime(k2prime) -> float:
    try:
        k = float(k2prime)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"k2prime must be a number (1/min), got {k2prime!r}") from exc
    if not np.isfinite(k) or k <= 0:
        raise ModelError(
            f"k2prime must be a positive rate (1/min), got {k2prime!r}; for [11C]UCB-J with a "
            "centrum semiovale reference it is typically 0.02-0.06 /min"
        )
    return k


def _check_reference(ref, n_frames: int) -> np.ndarray:
    r = np.asarray(ref, dtype=float).reshape(-1)
    if r.size != n_frames:
        raise DataError(f"reference TAC has {r.size} values but there are {n_frames} frames")
    if not np.all(np.isfinite(r)):
        raise DataError(
            f"reference TAC has non-finite values at frame index "
            f"{np.flatnonzero(~np.isfinite(r)).tolist()}; check the reference mask and image"
        )
    if not np.any(r > 0):
        raise DataError(
            "reference TAC is zero (or negative) in every frame; the reference mask probably "
            "lies outside the brain or the image is empty"
        )
    return r


# =========================================================================== reference models
class SRTMBasis:
    """SRTM by basis functions (Gunn et al. 1997).

    Parameters
    ----------
    reference : array (n_frames,)
        Reference-region TAC (kBq/mL).
    frames : FrameSchedule
        Frame timing (min).
    weights : array (n_frames,), optional
        Frame weights (relative inverse variances; default uniform), common to all rows.
    basis_range : (float, float)
        Range of ``θ = k2a`` (1/min); default (0.005, 1.0).
    n_basis : int
        Number of log-spaced basis functions; default 100.
    refine : bool
        Refine ``θ`` between grid points (default True).

    Notes
    -----
    ``C_T = R1 C_R + k2b B_θ``, ``B_θ = C_R ⊗ e^(-θ t)``. Outputs ``BPND = k2/θ − 1``,
    ``R1``, ``k2 = k2b + R1 θ`` (1/min), ``k2a = θ`` (1/min), ``k2prime = k2/R1`` (1/min),
    ``rss`` (weighted) and ``flag``.
    """

    names = ("BPND", "R1", "k2", "k2a", "k2prime", "rss")

    def __init__(self, reference, frames: FrameSchedule, *, weights=None,
                 basis_range=DEFAULT_RANGE, n_basis: int = DEFAULT_N_BASIS, refine: bool = True):
        self.frames = frames
        self.reference = _check_reference(reference, frames.n)
        self.weights = _weights(weights, frames.n)
        self.thetas = rate_grid(*basis_range, n_basis, what="basis_range")
        fam = exp_conv_step(self.reference, frames, self.thetas)
        self.ls = _BasisLS(fam, self.thetas, self.weights, r0=self.reference, refine=refine)

    def solve(self, tacs) -> dict[str, np.ndarray]:
        """Fit every row of ``tacs`` (n, n_frames); returns name -> (n,) arrays + ``flag``."""
        y, bad = _clean(_as_rows(tacs, self.frames.n))
        s = self.ls.solve(y)
        r1, th = s["b0"], s["theta"]
        k2 = s["b1"] + r1 * th
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"BPND": k2 / th - 1.0, "R1": r1, "k2": k2, "k2a": th, "k2prime": k2 / r1,
                   "rss": s["rss"]}
        flag = (np.where(s["edge"], FLAG_EDGE, 0) | np.where(s["bad_det"], FLAG_NEG_DENOMINATOR, 0)
                | np.where((r1 <= 0) | (k2 <= 0), FLAG_NEGATIVE, 0)).astype(np.uint8)
        return _finish(out, flag, bad)


class SRTM2Basis:
    """SRTM2 by basis functions with ``k2'`` fixed (Wu & Carson 2002).

    ``C_T = R1 [C_R + (k2' − θ) C_R ⊗ e^(-θ t)]`` with ``θ = k2a``; one linear parameter per
    basis, ``R1 > 0`` enforced. Outputs ``BPND = R1 k2'/θ − 1``, ``R1``, ``k2 = R1 k2'``,
    ``k2a = θ``, ``rss``, ``flag``. Parameters as :class:`SRTMBasis` plus ``k2prime`` (1/min).
    """

    names = ("BPND", "R1", "k2", "k2a", "rss")

    def __init__(self, reference, frames: FrameSchedule, k2prime: float, *, weights=None,
                 basis_range=DEFAULT_RANGE, n_basis: int = DEFAULT_N_BASIS, refine: bool = True):
        self.frames = frames
        self.reference = _check_reference(reference, frames.n)
        self.k2prime = _check_k2prime(k2prime)
        self.weights = _weights(weights, frames.n)
        self.thetas = rate_grid(*basis_range, n_basis, what="basis_range")
        conv = exp_conv_step(self.reference, frames, self.thetas)
        fam = self.reference[None, :] + (self.k2prime - self.thetas)[:, None] * conv
        self.ls = _BasisLS(fam, self.thetas, self.weights, r0=None, refine=refine)

    def solve(self, tacs) -> dict[str, np.ndarray]:
        """Fit every row of ``tacs`` (n, n_frames)."""
        y, bad = _clean(_as_rows(tacs, self.frames.n))
        s = self.ls.solve(y)
        r1, th = s["b1"], s["theta"]
        k2 = r1 * self.k2prime
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"BPND": k2 / th - 1.0, "R1": r1, "k2": k2, "k2a": th, "rss": s["rss"]}
        flag = (np.where(s["edge"], FLAG_EDGE, 0) | np.where(s["bad_det"], FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(r1 > 0), FLAG_NEGATIVE, 0)).astype(np.uint8)
        return _finish(out, flag, bad)


class _LinearPlot:
    """Shared set-up and solvers of the linear methods over frames with mid ≥ t*.

    ``x`` is a regressor common to all rows (frame averages: ``∫C_R (+ C_R/k2')`` or ``∫Cp``);
    ``∫C_T`` of every row is ``A C_T`` with ``A`` the frame-held integral matrix
    (:func:`sv2a.models._kinetics.integral_matrix`, ``method="frame"``).
    """

    def _setup(self, model: str, frames: FrameSchedule, weights, frame_mask, x: np.ndarray,
               amat: np.ndarray | None = None) -> None:
        self.frames = frames
        self.weights = _weights(weights, frames.n)
        self.sel = np.ones(frames.n, bool) if frame_mask is None else np.asarray(frame_mask, bool)
        if self.sel.sum() < 3:
            raise FitError(f"{model} needs at least 3 frames after t*, got {int(self.sel.sum())}")
        if amat is None:
            amat = integral_matrix(method="frame", frames=frames)
        self.x = np.asarray(x, dtype=float)[self.sel]
        self.at = amat[self.sel].T.copy()       # (m, m_sel): ∫C_T at the selected frames

    def _logan(self, tacs):
        """Logan plot ``∫C_T/C_T = s x/C_T + b`` per row: slope, rss, flag, bad-input rows."""
        y, bad = _clean(_as_rows(tacs, self.frames.n))
        ct = y[:, self.sel]
        pos = np.all(ct > 0, axis=1)
        inv = 1.0 / np.where(pos[:, None], ct, 1.0)
        s, _, den, rss = _slope(self.x[None, :] * inv, (y @ self.at) * inv,
                                self.weights[self.sel])
        flag = np.where(~(den > 0) | ~pos, FLAG_NEG_DENOMINATOR, 0).astype(np.uint8)
        return np.where(pos, s, np.nan), np.where(pos, rss, np.nan), flag, bad

    def _multilinear(self, tacs):
        """``C_T = g1 x + g2 ∫C_T`` per row: ``g1, g2, det, rss`` and bad-input rows."""
        y, bad = _clean(_as_rows(tacs, self.frames.n))
        g1, g2, det, rss = _two_regressor(self.x, y @ self.at, y[:, self.sel],
                                          self.weights[self.sel])
        return g1, g2, det, rss, bad


class MRTM2(_LinearPlot):
    """MRTM2 (Ichise et al. 2003) with ``k2'`` fixed; linear per row, frames with mid ≥ t*.

    ``C_T(t) = γ1 [∫_0^t C_R + C_R(t)/k2'] + γ2 ∫_0^t C_T`` (frame averages, see module
    docstring). Outputs ``BPND = −(γ1/γ2 + 1)``, ``R1 = γ1/k2'``, ``k2 = γ1``, ``k2a = −γ2``
    (1/min), ``rss``, ``flag`` (``FLAG_NEG_DENOMINATOR`` when ``γ2 ≥ 0`` or the normal equations
    are singular).

    Parameters
    ----------
    reference, frames, k2prime, weights
        As :class:`SRTM2Basis`.
    frame_mask : array of bool (n_frames,), optional
        Frames used in the regression (default all; see
        :func:`sv2a.models._common.select_frames`). Integrals always start at injection.
    """

    names = ("BPND", "R1", "k2", "k2a", "rss")

    def __init__(self, reference, frames: FrameSchedule, k2prime: float, *, weights=None,
                 frame_mask=None):
        self.reference = _check_reference(reference, frames.n)
        self.k2prime = _check_k2prime(k2prime)
        amat = integral_matrix(method="frame", frames=frames)
        self._setup("MRTM2", frames, weights, frame_mask,
                    amat @ self.reference + self.reference / self.k2prime, amat)

    def solve(self, tacs) -> dict[str, np.ndarray]:
        """Fit every row of ``tacs`` (n, n_frames)."""
        g1, g2, det, rss, bad = self._multilinear(tacs)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"BPND": -(g1 / g2 + 1.0), "R1": g1 / self.k2prime, "k2": g1, "k2a": -g2,
                   "rss": rss}
        flag = (np.where(~(det > 0) | ~(g2 < 0), FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(g1 > 0), FLAG_NEGATIVE, 0)).astype(np.uint8)
        return _finish(out, flag, bad)


class LoganRef(_LinearPlot):
    """Reference Logan plot (Logan et al. 1996) over frames with mid ≥ t*.

    ``∫C_T/C_T = DVR (∫C_R + C_R/k2')/C_T + b``; with ``k2prime=None`` the ``C_R/k2'`` term is
    dropped (valid once ``C_R/C_T`` is constant). Outputs ``DVR``, ``BPND = DVR − 1``,
    ``rss`` (of the plot) and ``flag`` (``FLAG_NEG_DENOMINATOR`` when x has no spread, or
    ``C_T ≤ 0`` in a used frame). Frame weights (common to all rows) weight the plot points.
    """

    names = ("DVR", "BPND", "rss")

    def __init__(self, reference, frames: FrameSchedule, k2prime: float | None = None, *,
                 weights=None, frame_mask=None):
        self.reference = _check_reference(reference, frames.n)
        self.k2prime = None if k2prime is None else _check_k2prime(k2prime)
        amat = integral_matrix(method="frame", frames=frames)
        num = amat @ self.reference
        if self.k2prime is not None:
            num = num + self.reference / self.k2prime
        self._setup("Logan", frames, weights, frame_mask, num, amat)

    def solve(self, tacs) -> dict[str, np.ndarray]:
        """Fit every row of ``tacs`` (n, n_frames)."""
        s, rss, flag, bad = self._logan(tacs)
        return _finish({"DVR": s, "BPND": s - 1.0, "rss": rss}, flag, bad)


class SUVR:
    """SUVR: ratio of frame-duration-weighted window means of target and reference.

    ``window`` (t0, t1) in minutes; each frame counts with its minutes inside the window.
    Outputs ``SUVR`` and ``flag``.
    """

    names = ("SUVR",)

    def __init__(self, reference, frames: FrameSchedule, window: tuple[float, float]):
        self.frames = frames
        self.reference = _check_reference(reference, frames.n)
        self.w = frames.overlap_weights(*window)
        if not np.any(self.w > 0):
            raise FitError(
                f"SUVR window {tuple(window)} min holds no frame (scan runs "
                f"{frames.start[0]:.3g}-{frames.end[-1]:.3g} min); choose a window inside the scan"
            )
        self.den = float(self.reference @ self.w)
        if not self.den > 0:
            raise DataError(
                f"reference TAC is zero or negative over the SUVR window {tuple(window)} min"
            )

    def solve(self, tacs) -> dict[str, np.ndarray]:
        y, bad = _clean(_as_rows(tacs, self.frames.n))
        out = {"SUVR": (y @ self.w) / self.den}
        return _finish(out, np.zeros(y.shape[0], np.uint8), bad)


class SUV:
    """SUV = window-mean activity (kBq/mL) / (injected dose (MBq) / body weight (kg)).

    With the dose in MBq and weight in kg (tissue density 1 g/mL),
    ``SUV = C · weight_kg / dose_MBq`` (unitless, g/mL). Outputs ``SUV`` and ``flag``.
    """

    names = ("SUV",)

    def __init__(self, frames: FrameSchedule, window: tuple[float, float], dose_mbq: float,
                 body_weight_kg: float):
        self.frames = frames
        w = frames.overlap_weights(*window)
        if not np.any(w > 0):
            raise FitError(
                f"SUV window {tuple(window)} min holds no frame (scan runs "
                f"{frames.start[0]:.3g}-{frames.end[-1]:.3g} min); choose a window inside the scan"
            )
        for name, v in (("injected dose (MBq)", dose_mbq), ("body weight (kg)", body_weight_kg)):
            if v is None or not np.isfinite(float(v)) or float(v) <= 0:
                raise DataError(
                    f"SUV needs a positive {name}, got {v!r}; pass dose=/body_weight= or set "
                    "InjectedRadioactivity/BodyWeight in the PET sidecar"
                )
        self.w = w / w.sum() * float(body_weight_kg) / float(dose_mbq)

    def solve(self, tacs) -> dict[str, np.ndarray]:
        y, bad = _clean(_as_rows(tacs, self.frames.n))
        return _finish({"SUV": y @ self.w}, np.zeros(y.shape[0], np.uint8), bad)


# =========================================================================== plasma models
class OneTCMBasis:
    """1TCM with plasma input by basis functions (θ = k2 on a log grid).

    ``C_PET = (1 − vB) K1 (Cp ⊗ e^(-k2 t)) + vB C_WB`` with ``vB`` fixed (number, default
    0.05) or estimated per row (``vB="fit"``, two linear parameters per basis).

    Parameters
    ----------
    input_function : InputFunction
        Metabolite-corrected plasma (and whole blood for vB) in kBq/mL, minutes.
    frames : FrameSchedule
    vB : float or "fit"
        Blood volume fraction.
    delay : float
        Shift of the input (min), fixed.
    weights, basis_range, n_basis, refine
        As :class:`SRTMBasis`; ``basis_range`` bounds ``k2``.

    Outputs ``VT = K1/k2`` (mL/cm3), ``K1`` (mL/cm3/min), ``k2`` (1/min), ``vB`` (if fitted),
    ``rss``, ``flag``.
    """

    def __init__(self, input_function, frames: FrameSchedule, *, vB=0.05, delay: float = 0.0,
                 weights=None, basis_range=DEFAULT_RANGE, n_basis: int = DEFAULT_N_BASIS,
                 refine: bool = True, dt: float = 0.005):
        self.frames = frames
        self.weights = _weights(weights, frames.n)
        self.thetas = rate_grid(*basis_range, n_basis, what="basis_range")
        self.fit_vb = isinstance(vB, str)
        if self.fit_vb and vB != "fit":
            raise ModelError(f"vB must be a number in [0, 1) or 'fit', got {vB!r}")
        if not self.fit_vb and not (0.0 <= float(vB) < 1.0):
            raise ModelError(f"vB must be a number in [0, 1) or 'fit', got {vB!r}")
        self.vB = vB if self.fit_vb else float(vB)
        fam = plasma_convolution(input_function, frames, self.thetas, delay=delay, dt=dt)
        self.cwb = plasma_frame_means(input_function, frames, delay=delay, dt=dt,
                                      whole_blood=True)
        if self.fit_vb:
            self.ls = _BasisLS(fam, self.thetas, self.weights, r0=self.cwb, refine=refine)
            self.names = ("VT", "K1", "k2", "vB", "rss")
        else:
            self.ls = _BasisLS(fam, self.thetas, self.weights, r0=None, refine=refine)
            self.names = ("VT", "K1", "k2", "rss")

    def solve(self, tacs) -> dict[str, np.ndarray]:
        y, bad = _clean(_as_rows(tacs, self.frames.n))
        if self.fit_vb:
            s = self.ls.solve(y)
            vb = s["b0"]
            with np.errstate(divide="ignore", invalid="ignore"):
                k1 = s["b1"] / (1.0 - vb)
        else:
            s = self.ls.solve((y - self.vB * self.cwb) / (1.0 - self.vB))
            k1 = s["b1"]
            if self.vB != 0:
                s["rss"] = s["rss"] * (1.0 - self.vB) ** 2
        k2 = s["theta"]
        out = {"VT": k1 / k2, "K1": k1, "k2": k2}
        if self.fit_vb:
            out["vB"] = vb
        out["rss"] = s["rss"]
        flag = (np.where(s["edge"], FLAG_EDGE, 0) | np.where(s["bad_det"], FLAG_NEG_DENOMINATOR, 0)
                | np.where(~(k1 > 0), FLAG_NEGATIVE, 0)).astype(np.uint8)
        return _finish(out, flag, bad)


class LoganPlasma(_LinearPlot):
    """Plasma-input Logan plot (Logan et al. 1990) over frames with mid ≥ t*.

    ``∫C_T/C_T = VT ∫Cp/C_T + b``. Outputs ``VT``, ``rss`` (of the plot) and ``flag``.
    """

    names = ("VT", "rss")

    def __init__(self, input_function, frames: FrameSchedule, *, delay: float = 0.0,
                 weights=None, frame_mask=None, dt: float = 0.005):
        self._setup("Logan", frames, weights, frame_mask,
                    plasma_frame_integrals(input_function, frames, delay=delay, dt=dt))

    def solve(self, tacs) -> dict[str, np.ndarray]:
        s, rss, flag, bad = self._logan(tacs)
        return _finish({"VT": s, "rss": rss}, flag, bad)


class MA1(_LinearPlot):
    """Multilinear analysis MA1 (Ichise et al. 2002) over frames with mid ≥ t*.

    ``C_T(t) = γ1 ∫Cp + γ2 ∫C_T`` with ``γ1 = −VT/b``, ``γ2 = 1/b``: ``VT = −γ1/γ2``.
    Outputs ``VT``, ``rss``, ``flag`` (``FLAG_NEG_DENOMINATOR`` when ``γ2 ≥ 0``).
    """

    names = ("VT", "rss")

    def __init__(self, input_function, frames: FrameSchedule, *, delay: float = 0.0,
                 weights=None, frame_mask=None, dt: float = 0.005):
        self._setup("MA1", frames, weights, frame_mask,
                    plasma_frame_integrals(input_function, frames, delay=delay, dt=dt))

    def solve(self, tacs) -> dict[str, np.ndarray]:
        g1, g2, det, rss, bad = self._multilinear(tacs)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"VT": -g1 / g2, "rss": rss}
        flag = np.where(~(det > 0) | ~(g2 < 0), FLAG_NEG_DENOMINATOR, 0).astype(np.uint8)
        return _finish(out, flag, bad)


# =========================================================================== functional forms
def srtm_basis(tacs, reference, frames: FrameSchedule, **kw) -> dict[str, np.ndarray]:
    """SRTM basis-function fit of every row of ``tacs`` (see :class:`SRTMBasis`)."""
    return SRTMBasis(reference, frames, **kw).solve(tacs)


def srtm2_basis(tacs, reference, frames: FrameSchedule, k2prime: float, **kw) -> dict:
    """SRTM2 basis-function fit with ``k2'`` fixed (see :class:`SRTM2Basis`)."""
    return SRTM2Basis(reference, frames, k2prime, **kw).solve(tacs)


def mrtm2(tacs, reference, frames: FrameSchedule, k2prime: float, **kw) -> dict:
    """MRTM2 fit of every row (see :class:`MRTM2`)."""
    return MRTM2(reference, frames, k2prime, **kw).solve(tacs)


def logan_ref(tacs, reference, frames: FrameSchedule, k2prime: float | None = None,
              **kw) -> dict:
    """Reference Logan DVR of every row (see :class:`LoganRef`)."""
    return LoganRef(reference, frames, k2prime, **kw).solve(tacs)


def onetcm_basis(tacs, input_function, frames: FrameSchedule, **kw) -> dict:
    """1TCM basis-function fit with plasma input (see :class:`OneTCMBasis`)."""
    return OneTCMBasis(input_function, frames, **kw).solve(tacs)


def logan_plasma(tacs, input_function, frames: FrameSchedule, **kw) -> dict:
    """Plasma Logan VT of every row (see :class:`LoganPlasma`)."""
    return LoganPlasma(input_function, frames, **kw).solve(tacs)


def ma1(tacs, input_function, frames: FrameSchedule, **kw) -> dict:
    """MA1 VT of every row (see :class:`MA1`)."""
    return MA1(input_function, frames, **kw).solve(tacs)


def estimate_k2prime(tacs, reference, frames: FrameSchedule, *, weights=None,
                     basis_range=DEFAULT_RANGE, n_basis: int = DEFAULT_N_BASIS,
                     bounds: tuple[float, float] = (1e-3, 1.0), max_rows: int = 20000,
                     xatol: float = 1e-3) -> tuple[float, dict]:
    """Common ``k2'`` of many TACs by a coupled SRTM2 fit (minimum total weighted RSS).

    ``k2'`` is a property of the reference region, shared by every target voxel. For a trial
    ``k2'`` every row is fitted with :class:`SRTM2Basis`; the ``k2'`` that minimises the summed
    weighted residuals over the rows is the joint least-squares (maximum-likelihood under
    Gaussian noise) estimate. The 1-D search is bounded (Brent) in ``log k2'``. Unlike
    selecting high-binding voxels by their noisy first-pass estimate, it has no selection bias.
    With more than ``max_rows`` rows an evenly spaced subset is used (deterministic).

    Parameters
    ----------
    tacs : array (n, n_frames)
        Target TACs (voxels or regions), kBq/mL.
    reference : array (n_frames,)
        Reference TAC.
    frames, weights, basis_range, n_basis
        As :class:`SRTM2Basis`.
    bounds : (float, float)
        Search interval for ``k2'`` (1/min).
    max_rows : int
        Largest number of rows used.
    xatol : float
        Tolerance on ``log k2'`` (1e-3 = 0.1 %).

    Returns
    -------
    (float, dict)
        ``k2'`` (1/min) and a description (method, rows used, evaluations).
    """
    from scipy.optimize import minimize_scalar

    y = _as_rows(tacs, frames.n)
    y = y[np.all(np.isfinite(y), axis=1)]
    if y.shape[0] == 0:
        raise DataError("k2' estimation: no finite target TAC")
    if y.shape[0] > max_rows:
        y = y[np.linspace(0, y.shape[0] - 1, max_rows).astype(int)]
    ref = _check_reference(reference, frames.n)
    w = _weights(weights, frames.n)
    thetas = rate_grid(*basis_range, n_basis, what="basis_range")
    conv = exp_conv_step(ref, frames, thetas)

    def total_rss(log_k: float) -> float:
        fam = ref[None, :] + (np.exp(log_k) - thetas)[:, None] * conv
        return float(np.sum(_BasisLS(fam, thetas, w, r0=None, refine=True).solve(y)["rss"]))

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(total_rss, bounds=(lo, hi), method="bounded",
                          options={"xatol": xatol})
    k = float(np.exp(res.x))
    if min(res.x - lo, hi - res.x) < 10 * xatol:
        raise FitError(
            f"k2' estimation hit the edge of its search range {bounds} 1/min (k2' = {k:.4g}); "
            "the reference TAC may be wrong, or pass k2prime= explicitly"
        )
    return k, {"k2prime_method": "coupled SRTM2 (minimum total RSS)",
               "k2prime_rows": int(y.shape[0]), "k2prime_evaluations": int(res.nfev)}
