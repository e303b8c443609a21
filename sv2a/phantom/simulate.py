"""Exact compartment-model TACs, PSF blurring and PET noise for the phantom.

Tissue curves are computed in closed form. The input is a sum of terms ``c s^n exp(-a s)``
(``s = t - delay``, n = 0, 1; see :class:`~sv2a.phantom.tracers.FengInput`) and the impulse
response of a compartment model is a sum of exponentials ``phi exp(-theta t)``:

* 1TCM: ``h(t) = K1 exp(-k2 t)``;
* 2TCM: ``h(t) = K1 / (a2 - a1) [(k3 + k4 - a1) exp(-a1 t) + (a2 - k3 - k4) exp(-a2 t)]``,
  ``a1,2 = (k2 + k3 + k4 -/+ sqrt((k2 + k3 + k4)^2 - 4 k2 k4)) / 2``.

Each convolution ``exp(-theta t) (x) s^n exp(-a s)`` is integrated analytically, with a Taylor
series where ``a`` is close to ``theta`` (no cancellation). The measured signal
``C_PET = (1 - vB) C_T + vB C_WB`` is averaged over each frame with 48-point Gauss-Legendre
quadrature on each smooth piece (the frame is split at the bolus arrival), which is exact to
~1e-12 relative. Frame values are decay corrected: by default the plain time average
(``frame_average="uniform"``, what the package's models integrate); ``"decay"`` weights the
average by ``exp(-lambda t)`` as a scanner does before its decay correction.

Noise (Turku ``fvar4tac`` model): ``var = Pc C(t) exp(lambda t_mid) / dt`` with ``C`` the
decay-corrected frame value and ``dt`` the frame duration (min).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import ndimage

from ..errors import ModelError
from ..frames import FrameSchedule
from .tracers import FengInput, TracerPreset

__all__ = [
    "impulse_response",
    "tissue_curve",
    "pet_curve",
    "frame_average",
    "region_table",
    "regional_tacs",
    "fwhm_to_sigma",
    "blur",
    "noise_sd",
    "calibrate_pc",
    "correlated_noise",
]

_SERIES_X = 1e-2  # |x| below which the Taylor series is used
_N_GL = 48
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_N_GL)


def impulse_response(K1: float, k2: float, k3: float = 0.0, k4: float = 0.0
                     ) -> list[tuple[float, float]]:
    """Impulse response of the 1TCM (``k3 = 0``) or reversible 2TCM as ``(phi, theta)`` pairs.

    Parameters
    ----------
    K1 : float
        Influx rate constant (mL/cm3/min).
    k2, k3, k4 : float
        Rate constants (1/min); ``k3 <= 0`` or NaN gives the 1TCM.

    Returns
    -------
    list of (float, float)
        ``(phi, theta)`` with ``h(t) = sum phi exp(-theta t)``: ``phi`` in mL/cm3/min,
        ``theta`` in 1/min; tissue ``C_T = h (x) Cp``.

    Raises
    ------
    ModelError
        Degenerate 2TCM rates (equal eigenvalues).

    Examples
    --------
    >>> impulse_response(0.3, 0.1)
    [(0.3, 0.1)]
    """
    if not (np.isfinite(k3) and k3 > 0):
        return [(float(K1), float(k2))]
    s = k2 + k3 + k4
    disc = np.sqrt(max(s * s - 4.0 * k2 * k4, 0.0))
    a1, a2 = (s - disc) / 2.0, (s + disc) / 2.0
    if a2 - a1 < 1e-12 * s:
        raise ModelError(f"2TCM rates k2={k2}, k3={k3}, k4={k4} give a degenerate response")
    return [(K1 * (k3 + k4 - a1) / (a2 - a1), float(a1)),
            (K1 * (a2 - k3 - k4) / (a2 - a1), float(a2))]


def _conv_term(n: int, a: float, theta: float, s: np.ndarray) -> np.ndarray:
    """``int_0^s u^n exp(-a u) exp(-theta (s - u)) du`` for ``s >= 0`` (n = 0 or 1)."""
    b = a - theta
    x = b * s
    et = np.exp(-theta * s)
    small = np.abs(x) < _SERIES_X
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if n == 0:
            direct = (et - np.exp(-a * s)) / b
            # (1 - e^-x)/x = sum (-x)^k / (k+1)!
            series = s * et * (1 - x / 2 + x**2 / 6 - x**3 / 24 + x**4 / 120)
        elif n == 1:
            direct = (et - np.exp(-a * s) * (1.0 + x)) / (b * b)
            # (1 - e^-x (1+x))/x^2 = sum (-x)^k / (k! (k+2))
            series = s * s * et * (0.5 - x / 3 + x**2 / 8 - x**3 / 30 + x**4 / 144)
        else:  # pragma: no cover - inputs only have n <= 1
            raise ValueError("only n = 0, 1 supported")
    return np.where(small, series, direct)


def tissue_curve(terms: Sequence[tuple[float, int, float]],
                 response: Sequence[tuple[float, float]], t: ArrayLike,
                 delay: float) -> np.ndarray:
    """Tissue concentration ``C_T(t)`` (kBq/mL) for input ``terms`` and impulse ``response``.

    Parameters
    ----------
    terms : list of (c, n, a)
        Input ``sum c s^n exp(-a s)``, ``s = t - delay >= 0``.
    response : list of (phi, theta)
        Impulse response (:func:`impulse_response`).
    t : array_like
        Times (min).
    delay : float
        Arrival time of the input (min); the curve is 0 before it.

    Returns
    -------
    numpy.ndarray
        ``C_T(t)`` (kBq/mL), same shape as ``t``.
    """
    t = np.asarray(t, dtype=float)
    s = np.maximum(t - delay, 0.0)
    out = np.zeros_like(s)
    for c, n, a in terms:
        for phi, theta in response:
            if phi == 0.0 or c == 0.0:
                continue
            out += c * phi * _conv_term(n, a, theta, s)
    return np.where(t > delay, out, 0.0)


def pet_curve(inp: FengInput, params: Mapping[str, float], t: ArrayLike) -> np.ndarray:
    """Measured tissue curve ``C_PET(t) = (1 - vB) C_T(t) + vB C_WB(t)``.

    Parameters
    ----------
    inp : FengInput
        Input function.
    params : mapping
        ``K1`` (mL/cm3/min), ``k2``, ``k3``, ``k4`` (1/min; k3/k4 missing or NaN = 1TCM),
        ``vB`` (blood volume fraction, unitless).
    t : array_like
        Times (min).

    Returns
    -------
    numpy.ndarray
        ``C_PET(t)`` (kBq/mL, decay corrected), same shape as ``t``.
    """
    K1 = float(params.get("K1", 0.0))
    vb = float(params.get("vB", 0.0))
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    if K1 > 0:
        resp = impulse_response(K1, float(params["k2"]), _f(params.get("k3")),
                                _f(params.get("k4")))
        out = (1.0 - vb) * tissue_curve(inp.parent_terms(), resp, t, inp.delay)
    if vb > 0:
        out = out + vb * inp.whole_blood(t)
    return out


def _f(x) -> float:
    return 0.0 if x is None or not np.isfinite(x) else float(x)


def _frame_nodes(frames: FrameSchedule, delay: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes (n_frames, 2 * N) and weights (sum = frame duration), split at delay."""
    t0, t1 = frames.start, frames.end
    cut = np.clip(delay, t0, t1)
    nodes, weights = [], []
    for a, b in ((t0, cut), (cut, t1)):
        half = (b - a)[:, None] / 2.0
        nodes.append((a + b)[:, None] / 2.0 + half * _GL_X[None, :])
        weights.append(half * _GL_W[None, :])
    return np.concatenate(nodes, axis=1), np.concatenate(weights, axis=1)


def frame_average(func: Callable[[np.ndarray], np.ndarray], frames: FrameSchedule, *,
                  delay: float = 0.0, decay_weighted: bool = False) -> np.ndarray:
    """Average of ``func(t)`` over each frame (exact for piecewise-analytic curves).

    Parameters
    ----------
    func : callable
        Maps an array of times (min) to values of the same shape (or with a leading axis).
    frames : FrameSchedule
        Frame start / end times (min) and half-life.
    delay : float
        Time (min) of the curve's kink (bolus arrival), where the quadrature splits a frame.
    decay_weighted : bool
        Average ``int f e^(-lt) dt / int e^(-lt) dt`` (what a decay-corrected frame of a real
        scanner holds) instead of the plain time average.

    Returns
    -------
    numpy.ndarray
        Frame averages, frames on the last axis, in the units of ``func``.
    """
    nodes, w = _frame_nodes(frames, delay)
    if decay_weighted:
        w = w * np.exp(-frames.decay_constant * nodes)
    vals = func(nodes)
    return (vals * w).sum(axis=-1) / w.sum(axis=-1)


# ------------------------------------------------------------------ regional parameters
_PARAM_COLS = ["K1", "k2", "k3", "k4", "vB", "VT", "VND", "VS"]


def region_table(preset: TracerPreset,
                 overrides: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """Complete kinetic parameters per region.

    1TCM regions: ``k2 = K1 / VT``, ``VS = VT - VND``, k3/k4 NaN. 2TCM regions:
    ``VND = K1/k2``, ``VS = K1 k3 / (k2 k4)``, ``VT = VND + VS``.

    Parameters
    ----------
    preset : TracerPreset
        Species x tracer preset.
    overrides : mapping, optional
        Region -> {parameter: value} in the preset's parameterisation (1TCM: K1, VT, vB, VND;
        2TCM: K1, k2, k3, k4, vB). Unknown regions are refused.

    Returns
    -------
    pandas.DataFrame
        Index region, columns ``K1`` (mL/cm3/min), ``k2 k3 k4`` (1/min), ``vB`` (unitless),
        ``VT VND VS`` (mL/cm3).

    Raises
    ------
    ModelError
        ``overrides`` names a region the preset does not have.

    Examples
    --------
    >>> from sv2a.phantom import get_preset
    >>> t = region_table(get_preset("human", "ucbj"))
    >>> float(t.loc["frontal_cortex", "VT"]), float(t.loc["frontal_cortex", "VND"])
    (18.0, 2.8)
    """
    unknown = sorted(set(overrides or {}) - set(preset.regions))
    if unknown:
        raise ModelError(f"no region(s) {unknown} in preset {preset.key}; regions: "
                         f"{sorted(preset.regions)}")
    rows = {}
    for name, p in preset.regions.items():
        p = dict(p)
        if overrides and name in overrides:
            p.update(overrides[name])
        rows[name] = complete_params(p, preset.model, preset.vnd)
    return pd.DataFrame.from_dict(rows, orient="index")[_PARAM_COLS]


def complete_params(p: Mapping[str, float], model: str, vnd: float | None = None
                    ) -> dict[str, float]:
    """Fill in the derived parameters of one region (formulas as :func:`region_table`).

    Parameters
    ----------
    p : mapping
        1TCM: ``K1`` (mL/cm3/min), ``VT`` (mL/cm3), optional ``VND`` (mL/cm3), ``vB``;
        2TCM: ``K1``, ``k2``, ``k3``, ``k4`` (1/min), optional ``vB``.
    model : {'1tcm', '2tcm'}
        Compartment model.
    vnd : float, optional
        VND (mL/cm3) of a 1TCM region that gives none (default: ``VT``, no specific binding).

    Returns
    -------
    dict
        ``K1 k2 k3 k4 vB VT VND VS`` (units as :func:`region_table`).

    Raises
    ------
    ModelError
        Unknown ``model``.

    Examples
    --------
    >>> complete_params({"K1": 0.3, "VT": 15.0}, "1tcm", vnd=3.0)["VS"]
    12.0
    """
    if model == "1tcm":
        K1, VT = float(p["K1"]), float(p["VT"])
        VND = float(p.get("VND", vnd if vnd is not None else VT))
        k2 = K1 / VT if VT > 0 else 0.0
        return {"K1": K1, "k2": k2, "k3": np.nan, "k4": np.nan, "vB": float(p.get("vB", 0.0)),
                "VT": VT, "VND": min(VND, VT), "VS": max(VT - VND, 0.0)}
    if model == "2tcm":
        K1, k2, k3, k4 = (float(p[k]) for k in ("K1", "k2", "k3", "k4"))
        VND = K1 / k2
        VS = VND * k3 / k4
        return {"K1": K1, "k2": k2, "k3": k3, "k4": k4, "vB": float(p.get("vB", 0.0)),
                "VT": VND + VS, "VND": VND, "VS": VS}
    raise ModelError(f"unknown phantom model {model!r}; use '1tcm' or '2tcm'")


def regional_tacs(inp: FengInput, table: pd.DataFrame, frames: FrameSchedule, *,
                  decay_weighted: bool = False) -> np.ndarray:
    """Noise-free frame-averaged PET TACs of every region of a parameter table.

    Parameters
    ----------
    inp : FengInput
        Input function.
    table : pandas.DataFrame
        Parameters per region (:func:`region_table`).
    frames : FrameSchedule
        Frame timing (min).
    decay_weighted : bool
        Decay-weighted frame averages (see :func:`frame_average`).

    Returns
    -------
    numpy.ndarray
        Shape (n_regions, n_frames), kBq/mL (decay corrected), rows in ``table`` order.
    """
    out = np.empty((len(table), frames.n))
    for i, (_, row) in enumerate(table.iterrows()):
        params = {str(k): float(v) for k, v in row.items()}
        out[i] = frame_average(functools.partial(pet_curve, inp, params), frames,
                               delay=inp.delay, decay_weighted=decay_weighted)
    return out


# ------------------------------------------------------------------ resolution and noise
def fwhm_to_sigma(fwhm_mm: ArrayLike, voxel_mm: ArrayLike) -> np.ndarray:
    """Gaussian sigma in voxels for a FWHM on a grid.

    Parameters
    ----------
    fwhm_mm : float or sequence of 3 floats
        Full width at half maximum (mm), scalar or per axis.
    voxel_mm : float or sequence of 3 floats
        Voxel size (mm), scalar or per axis.

    Returns
    -------
    numpy.ndarray
        Sigma per axis (voxels), shape (3,).

    Examples
    --------
    >>> fwhm_to_sigma(4.71, 2.0).round(3).tolist()
    [1.0, 1.0, 1.0]
    """
    fwhm = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (3,))
    vox = np.broadcast_to(np.asarray(voxel_mm, dtype=float), (3,))
    return fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / vox


def blur(volume: np.ndarray, sigma_vox: ArrayLike, out: np.ndarray | None = None
         ) -> np.ndarray:
    """Gaussian PSF (``scipy.ndimage.gaussian_filter``, zero outside the grid).

    Parameters
    ----------
    volume : numpy.ndarray
        Image to blur (any units).
    sigma_vox : float or sequence of float
        Gaussian sigma per axis (voxels, :func:`fwhm_to_sigma`); all 0 = no blurring.
    out : numpy.ndarray, optional
        Output array (same shape as ``volume``).

    Returns
    -------
    numpy.ndarray
        The blurred image, in the units of ``volume`` (``out`` if given; ``volume`` itself
        when sigma is 0 and no ``out``).
    """
    sig = np.asarray(sigma_vox, dtype=float)
    if not np.any(sig > 0):
        if out is None:
            return volume
        out[...] = volume
        return out
    return ndimage.gaussian_filter(volume, sig, output=out, mode="constant", truncate=4.0)


def noise_sd(conc: ArrayLike, frames: FrameSchedule, pc: float) -> np.ndarray:
    """SD of decay-corrected frame values: ``sqrt(Pc C exp(lambda t_mid) / dt)``.

    Parameters
    ----------
    conc : array_like
        Noise-free decay-corrected concentration (kBq/mL), frames on the last axis.
    frames : FrameSchedule
        Frame timing (min) and half-life.
    pc : float
        Proportionality constant ((kBq/mL) min).

    Returns
    -------
    numpy.ndarray
        SD (kBq/mL), same shape as ``conc``.
    """
    lam = frames.decay_constant
    f = np.exp(lam * frames.mid) / frames.duration
    return np.sqrt(pc * np.clip(conc, 0.0, None) * f)


def calibrate_pc(cv: float, conc: float, t_mid: float, duration: float, lam: float) -> float:
    """Pc giving coefficient of variation ``cv`` at concentration ``conc`` in a frame.

    ``cv^2 = Pc exp(lambda t) / (C dt)``  ->  ``Pc = cv^2 C dt exp(-lambda t)``.

    Parameters
    ----------
    cv : float
        Target coefficient of variation (fraction).
    conc : float
        Decay-corrected concentration in that frame (kBq/mL).
    t_mid : float
        Frame mid time (min).
    duration : float
        Frame duration (min).
    lam : float
        Decay constant (1/min).

    Returns
    -------
    float
        Pc ((kBq/mL) min).

    Examples
    --------
    >>> round(calibrate_pc(0.1, 10.0, 0.0, 5.0, 0.034), 6)
    0.5
    """
    return float(cv**2 * conc * duration * np.exp(-lam * t_mid))


def correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: ArrayLike,
                     dtype: type[np.floating] = np.float32) -> np.ndarray:
    """Unit-variance Gaussian noise, spatially correlated by a Gaussian kernel of ``sigma_vox``.

    White noise is smoothed and divided by ``sqrt(sum k^2)`` of the discrete kernel, so each
    voxel keeps variance 1 (periodic edges).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream.
    shape : tuple of int
        Grid shape (3D).
    sigma_vox : float or sequence of 3 floats
        Kernel sigma per axis (voxels); 0 = white noise.
    dtype : numpy floating type
        float32 (default) or float64.

    Returns
    -------
    numpy.ndarray
        Noise (unitless, mean 0, SD 1) of ``shape``.
    """
    white = rng.standard_normal(shape, dtype=dtype)
    sig = np.asarray(sigma_vox, dtype=float)
    if not np.any(sig > 0):
        return white
    sm = ndimage.gaussian_filter(white, sig, mode="wrap", truncate=4.0)
    sm *= dtype(1.0 / _kernel_norm(tuple(np.broadcast_to(sig, (3,)).tolist())))
    return sm


_NORM_CACHE: dict = {}


def _kernel_norm(sig: tuple) -> float:
    if sig not in _NORM_CACHE:
        size = [2 * int(4.0 * s + 0.5) + 3 for s in sig]
        delta = np.zeros(size)
        delta[tuple(n // 2 for n in size)] = 1.0
        k = ndimage.gaussian_filter(delta, sig, mode="constant", truncate=4.0)
        _NORM_CACHE[sig] = float(np.sqrt((k**2).sum()))
    return _NORM_CACHE[sig]
