"""Analytic plasma-input phantoms for the model tests (independent of sv2a's numerical core).

Feng input ``Cp(t) = (A1 t − A2 − A3) e^{−λ1 t} + A2 e^{−λ2 t} + A3 e^{−λ3 t}`` (DOMAIN §3) and
closed-form convolutions with ``e^{−k t}``; frame averages by Gauss–Legendre quadrature.
"""

from __future__ import annotations

import numpy as np

A1, A2, A3 = 1150.0, 36.0, 9.0
L1, L2, L3 = 4.0, 0.40, 0.003
# DOMAIN §3 human frames: 6x10 s, 3x20 s, 6x30 s, 5x60 s, 5x120 s, 14x300 s (39 frames, 90 min)
PROTOCOL = [(6, 10), (3, 20), (6, 30), (5, 60), (5, 120), (14, 300)]


def frames():
    d = np.concatenate([np.full(n, s / 60.0) for n, s in PROTOCOL])
    e = np.cumsum(d)
    return e - d, e


def cp(t):
    t = np.asarray(t, float)
    v = (A1 * t - A2 - A3) * np.exp(-L1 * t) + A2 * np.exp(-L2 * t) + A3 * np.exp(-L3 * t)
    return np.where(t > 0, v, 0.0)


def _conv_exp(t, k, lam):
    """∫_0^t e^{−k(t−s)} e^{−λ s} ds"""
    return (np.exp(-lam * t) - np.exp(-k * t)) / (k - lam)


def _conv_texp(t, k, lam):
    """∫_0^t e^{−k(t−s)} s e^{−λ s} ds"""
    d = k - lam
    return t * np.exp(-lam * t) / d - (np.exp(-lam * t) - np.exp(-k * t)) / d**2


def conv_cp(t, k):
    """``e^{−k t} ⊗ Cp`` in closed form (t >= 0)."""
    t = np.clip(np.asarray(t, float), 0.0, None)
    return (A1 * _conv_texp(t, k, L1) - (A2 + A3) * _conv_exp(t, k, L1)
            + A2 * _conv_exp(t, k, L2) + A3 * _conv_exp(t, k, L3))


def tissue_1tcm(t, K1, k2):
    return K1 * conv_cp(t, k2)


def tissue_2tcm(t, K1, k2, k3, k4):
    s = k2 + k3 + k4
    d = np.sqrt(s * s - 4 * k2 * k4)
    a1, a2 = (s - d) / 2, (s + d) / 2
    return K1 / d * ((k3 + k4 - a1) * conv_cp(t, a1) + (a2 - k3 - k4) * conv_cp(t, a2))


def pet(t, tissue, vB=0.0, delay=0.0, blood_ratio=1.1):
    """``(1 − vB) C_T(t − delay) + vB C_WB(t − delay)`` with C_WB = blood_ratio · Cp."""
    tt = np.asarray(t, float) - delay
    return (1 - vB) * np.where(tt > 0, tissue(np.clip(tt, 0, None)), 0.0) \
        + vB * blood_ratio * cp(tt)


def frame_average(f, t0, t1, n=64):
    """Frame means of ``f`` by ``n``-point Gauss–Legendre quadrature per frame."""
    x, w = np.polynomial.legendre.leggauss(n)
    out = []
    for a, b in zip(t0, t1, strict=True):
        tt = 0.5 * (b - a) * x + 0.5 * (a + b)
        out.append(0.5 * np.sum(w * f(tt)))
    return np.array(out)


def input_function(step_s: float = 1.0, t_end: float = 95.0, blood_ratio: float = 1.1):
    """An :class:`sv2a.InputFunction` sampling the Feng curve (1-s samples to 10 min, then
    every 30 s)."""
    from sv2a.blood import InputFunction

    t = np.concatenate([np.arange(0, 10, step_s / 60.0), np.arange(10, t_end + 1e-9, 0.5)])
    return InputFunction(time=t, plasma=cp(t), whole_blood=blood_ratio * cp(t),
                         source="feng phantom")
