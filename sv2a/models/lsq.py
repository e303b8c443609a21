"""Least-squares numerics shared by every model: batch WLS, covariances, standard errors.

Each routine works on many rows at once (regions or voxels) and exists once:

* :func:`wls_batch` -- weighted linear least squares with one design per row (linear and
  graphical methods), with the regression covariance ``s² (XᵀWX)⁻¹``.
* :func:`gauss_newton_cov` -- ``s² (JᵀWJ)⁻¹`` from the Jacobian of a nonlinear model.
* :func:`delta_se` -- standard errors of derived parameters by the delta method.
* :func:`numeric_jacobian` -- central-difference Jacobian of a vectorised model.
* :func:`golden` -- vectorised golden-section minimisation (rows independent).
* :func:`aic` -- Akaike information criterion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = ["wls_batch", "gauss_newton_cov", "delta_se", "numeric_jacobian", "golden", "aic"]

FloatArray = NDArray[np.float64]


def _wdot(u: FloatArray, v: FloatArray, w: FloatArray) -> FloatArray:
    """Weighted inner products over frames; ``u``, ``v`` (f,) common or (n, f) per row."""
    if w.ndim == 1:
        if u.ndim == 1 and v.ndim == 1:
            return np.asarray(float((u * w) @ v))
        if u.ndim == 1:
            return np.asarray(v @ (u * w))          # BLAS matrix-vector product
        if v.ndim == 1:
            return np.asarray(u @ (v * w))
        out: FloatArray = np.einsum("nf,nf->n", u * w, v)
        return out
    res: FloatArray = np.einsum("nf,nf->n", u * w, np.broadcast_to(v, w.shape))
    return res


def wls_batch(x: FloatArray | list[FloatArray], y: FloatArray, w: FloatArray
              ) -> dict[str, FloatArray]:
    """Weighted least squares ``y ≈ X β`` for many rows at once.

    Parameters
    ----------
    x : array (n, f, p) or list of p columns
        Design matrices, one per row; or their columns, each (f,) when common to all rows
        (reference or plasma integrals: matrix-vector products) or (n, f).
    y : array (n, f)
        Data.
    w : array (n, f) or (f,)
        Weights (0 excludes a frame).

    Returns
    -------
    dict
        ``beta`` (n, p); ``cov`` (n, p, p) = ``s² (XᵀWX)⁻¹`` with ``s² = RSS/(m − p)``, m the
        frames with non-zero weight (as R's ``lm``); ``rss`` (n,); ``m`` (n,); ``ok`` (n,)
        bool, False where the normal matrix is singular or ill-conditioned (condition number
        of the column-scaled matrix above 1e12), where ``beta`` and ``cov`` are NaN.
    """
    y = np.asarray(y, dtype=float)
    n, f = y.shape
    cols = ([np.asarray(x[..., j], dtype=float) for j in range(x.shape[2])]
            if isinstance(x, np.ndarray) else [np.asarray(c, dtype=float) for c in x])
    p = len(cols)
    w = np.asarray(w, dtype=float)
    if w.ndim == 2 and np.all(w == w[:1]):
        w = w[0]
    a = np.empty((n, p, p))
    bvec = np.empty((n, p))
    for i in range(p):  # loop over the p (2-3) regressors, not rows
        bvec[:, i] = _wdot(cols[i], y, w)
        for j in range(i, p):
            a[:, i, j] = a[:, j, i] = _wdot(cols[i], cols[j], w)
    yy = _wdot(y, y, w)
    scale = np.sqrt(np.clip(np.einsum("npp->np", a), 1e-300, None))
    a_s = a / scale[:, :, None] / scale[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if p == 2:  # eigenvalues of [[1, r], [r, 1]] are 1 ± r
            r = np.abs(a_s[:, 0, 1])
            ev = np.stack([1.0 - r, 1.0 + r], axis=1)
        else:
            ev = np.linalg.eigvalsh(np.where(np.isfinite(a_s), a_s, 0.0))
        cond = ev[:, -1] / ev[:, 0]
    ok = (np.isfinite(a_s).all(axis=(1, 2)) & (ev[:, 0] > 0) & (cond < 1e12)
          & (np.einsum("npp->np", a) > 0).all(axis=1))
    a_s[~ok] = np.eye(p)
    if p == 2:
        det = a_s[:, 0, 0] * a_s[:, 1, 1] - a_s[:, 0, 1] ** 2
        inv_s = np.empty_like(a_s)
        inv_s[:, 0, 0] = a_s[:, 1, 1] / det
        inv_s[:, 1, 1] = a_s[:, 0, 0] / det
        inv_s[:, 0, 1] = inv_s[:, 1, 0] = -a_s[:, 0, 1] / det
    else:
        inv_s = np.linalg.inv(a_s)
    inv = inv_s / scale[:, :, None] / scale[:, None, :]
    beta = np.einsum("npq,nq->np", inv, bvec)
    # residual sum of squares at the least-squares solution: yᵀWy − βᵀXᵀWy
    rss = np.maximum(yy - np.einsum("np,np->n", beta, bvec), 0.0)
    m = (np.broadcast_to(w, (n, f)) > 0).sum(1)
    s2 = rss / np.maximum(m - p, 1)
    cov = inv * s2[:, None, None]
    beta[~ok] = np.nan
    cov[~ok] = np.nan
    rss = np.where(ok, rss, np.nan)
    return {"beta": beta, "cov": cov, "rss": rss, "m": m.astype(float), "ok": ok}


def gauss_newton_cov(jac: FloatArray, w: FloatArray, rss: FloatArray) -> FloatArray:
    """Gauss–Newton covariance ``s² (JᵀWJ)⁻¹`` per row.

    Parameters
    ----------
    jac : array (n, f, p)
        Derivatives of the model TAC with respect to the ``p`` fitted parameters.
    w : array (f,) or (n, f)
        Frame weights.
    rss : array (n,)
        Weighted residual sum of squares at the solution.

    Returns
    -------
    array (n, p, p)
        Covariance with ``s² = RSS/(m − p)`` (m frames with non-zero weight), as nls and
        minpack.lm report; NaN where ``JᵀWJ`` is singular (condition number above 1e14).
    """
    n, f, p = jac.shape
    w = np.broadcast_to(w, (n, f))
    a = np.einsum("nfp,nf,nfq->npq", jac, w, jac)
    m = (w > 0).sum(1)
    s2 = np.asarray(rss, dtype=float) / np.maximum(m - p, 1)
    cov = np.full(a.shape, np.nan)
    good = np.isfinite(a).all(axis=(1, 2))
    if good.any():
        ag = a[good]
        d = np.sqrt(np.clip(np.einsum("npp->np", ag), 1e-300, None))
        a_s = ag / d[:, :, None] / d[:, None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            ev = np.linalg.eigvalsh(a_s)
            inv_ok = (ev[:, 0] > 0) & (ev[:, -1] / ev[:, 0] < 1e14)
        idx = np.flatnonzero(good)[inv_ok]
        if idx.size:
            inv = np.linalg.inv(a_s[inv_ok]) / d[inv_ok][:, :, None] / d[inv_ok][:, None, :]
            cov[idx] = inv * s2[idx, None, None]
    return cov


def numeric_jacobian(fun: Callable[[FloatArray], FloatArray], theta: FloatArray,
                     rel_step: float = 1e-6) -> FloatArray:
    """Central-difference Jacobian of a model evaluated for many rows at once.

    Parameters
    ----------
    fun : callable
        ``fun(theta (n, p)) -> (n, f)`` model values.
    theta : array (n, p)
        Parameters.
    rel_step : float
        Relative step (absolute ``rel_step`` for parameters near zero).

    Returns
    -------
    array (n, f, p)
    """
    theta = np.asarray(theta, dtype=float)
    n, p = theta.shape
    cols = []
    for j in range(p):  # loop over parameters (not rows)
        h = rel_step * np.maximum(np.abs(theta[:, j]), 1e-3)
        tp, tm = theta.copy(), theta.copy()
        tp[:, j] += h
        tm[:, j] -= h
        cols.append((fun(tp) - fun(tm)) / (2 * h)[:, None])
    return np.stack(cols, axis=2)


def delta_se(derive: Callable[[FloatArray], Mapping[str, FloatArray]], theta: FloatArray,
             cov: FloatArray, rel_step: float = 1e-6) -> dict[str, FloatArray]:
    """Standard errors of derived parameters by the delta method.

    ``var(g(θ)) ≈ ∇gᵀ Σ ∇g`` with the gradient by central differences.

    Parameters
    ----------
    derive : callable
        ``derive(theta (n, p)) -> {name: array (n,)}``: the reported parameters as functions
        of the fitted ones.
    theta : array (n, p)
        Fitted parameters.
    cov : array (n, p, p)
        Their covariance.
    rel_step : float
        Relative step of the central differences.

    Returns
    -------
    dict
        ``"<name>_se" -> array (n,)`` for every name ``derive`` returns.
    """
    theta = np.asarray(theta, dtype=float)
    n, p = theta.shape
    grads: dict[str, list[FloatArray]] = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for j in range(p):
            h = rel_step * np.maximum(np.abs(theta[:, j]), 1e-3)
            tp, tm = theta.copy(), theta.copy()
            tp[:, j] += h
            tm[:, j] -= h
            up, dn = derive(tp), derive(tm)
            for k in up:
                grads.setdefault(k, []).append((np.asarray(up[k]) - np.asarray(dn[k])) / (2 * h))
        out = {}
        for k, g in grads.items():
            gm = np.stack(g, axis=1)
            var = np.einsum("np,npq,nq->n", gm, cov, gm)
            out[f"{k}_se"] = np.asarray(np.sqrt(np.clip(var, 0, None)), dtype=float)
    return out


def golden(fun: Callable[[FloatArray], FloatArray], lo: FloatArray, hi: FloatArray,
           n_iter: int = 48) -> FloatArray:
    """Vectorised golden-section minimisation of ``fun`` on ``[lo, hi]`` (rows independent).

    Parameters
    ----------
    fun : callable
        ``fun(x (n,)) -> (n,)`` objective of each row.
    lo, hi : array (n,)
        Brackets.
    n_iter : int
        Iterations (48 shrink the bracket by 1e-10).

    Returns
    -------
    array (n,)
        Minimisers.
    """
    g = (np.sqrt(5.0) - 1) / 2
    a, b = np.array(lo, dtype=float), np.array(hi, dtype=float)
    c = b - g * (b - a)
    d = a + g * (b - a)
    fc, fd = fun(c), fun(d)
    for _ in range(n_iter):
        left = fc < fd
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        nc = np.where(left, b - g * (b - a), d)
        nd = np.where(left, c, a + g * (b - a))
        fnew = fun(np.where(left, nc, nd))
        fc, fd = np.where(left, fnew, fd), np.where(left, fc, fnew)
        c, d = nc, nd
    out: FloatArray = (a + b) / 2
    return out


def aic(rss: FloatArray | float, n: FloatArray | float, k: int) -> FloatArray:
    """Akaike information criterion of a least-squares fit (Akaike 1974).

    Parameters
    ----------
    rss : array or float
        (Weighted) residual sum of squares.
    n : array or float
        Number of data points.
    k : int
        Number of fitted parameters.

    Returns
    -------
    array
        ``n ln(RSS/n) + 2k`` (Gaussian errors, up to a constant).
    """
    r = np.asarray(rss, dtype=float)
    nn = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = nn * np.log(np.maximum(r, 1e-300) / nn) + 2.0 * k
    return out
