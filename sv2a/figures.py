"""Figures of one scan, drawn with matplotlib and saved as files.

* :func:`plot_tac_fits`: TACs with model curves and residuals.
* :func:`plot_graphical`: Logan-type plots with t*.
* :func:`plot_input`: the input function and its parent fraction.
* :func:`plot_map_slices`: slices of a parametric map.
* :func:`scan_figures`: all of them for one scan, saved as SVG (curves) and PNG (images).

Model curves come from the model registry (:func:`model_curve`): the figures draw what the
fitted model predicts and hold no kinetic model of their own. matplotlib is imported on the
first figure, so importing this module is cheap.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import Sv2aWarning

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "scan_figures",
    "plot_tac_fits",
    "plot_graphical",
    "plot_input",
    "plot_map_slices",
    "model_curve",
    "model_label",
    "unit_label",
]

_MAX_REGIONS_PLOTTED = 8
_GRAPHICAL_PLASMA = ("logan", "ma1")
_GRAPHICAL_REF = ("logan_ref", "mrtm", "mrtm2")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, faster SVG files

    return plt


def _save(fig: Figure, path: Path) -> Path:
    from .atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {"dpi": 110} if path.suffix == ".png" else {}
    if path.suffix == ".svg":
        kw["metadata"] = {"Date": None}  # reproducible files
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:], **kw)
    _plt().close(fig)
    return path


def model_label(model: str) -> str:
    """The label of a model in file names and titles.

    Parameters
    ----------
    model : str
        Registry name (``'srtm2'``, ``'logan_ref'`` ...).

    Returns
    -------
    str
        Its letters and digits in upper case (``'SRTM2'``, ``'LOGANREF'``), as used in the
        BIDS ``model-<label>`` entity.
    """
    return "".join(ch for ch in model if ch.isalnum()).upper()


_label = model_label


def unit_label(units: str | None) -> str:
    """Units as shown to a reader.

    Parameters
    ----------
    units : str or None
        Units as stored (``'mL/cm3'``, ``'1'`` for dimensionless, ``''`` unknown).

    Returns
    -------
    str
        ``'unitless'`` for ``'1'``, ``'mL/cm³'`` for ``'mL/cm3'``, otherwise as given.

    Examples
    --------
    >>> unit_label("1"), unit_label("mL/cm3/min"), unit_label("1/min")
    ('unitless', 'mL/cm³/min', '1/min')
    """
    u = (units or "").strip()
    if u in ("1", "unitless", "dimensionless"):
        return "unitless"
    return u.replace("cm3", "cm³")


def _pick_regions(regions: Sequence[str], fit: Any = None,
                  reference: str | None = None) -> list[str]:
    """A legible subset: the reference plus up to 7 targets spread over the binding range."""
    regs = [r for r in regions if r != reference]
    if len(regs) > _MAX_REGIONS_PLOTTED - 1:
        key = None
        if fit is not None:
            for p in ("BPND", "VT", "SUVR", "SUV", "DVR"):
                if p in fit:
                    key = p
                    break
        if key is not None:
            vals = pd.Series(np.asarray(fit[key].values, float),
                             index=[str(r) for r in fit.region.values]).reindex(regs)
            order = vals.sort_values(na_position="first").index.tolist()
            idx = np.unique(np.linspace(0, len(order) - 1, _MAX_REGIONS_PLOTTED - 1).round()
                            .astype(int))
            regs = [order[i] for i in idx]
        else:
            regs = regs[: _MAX_REGIONS_PLOTTED - 1]
    if reference and reference in regions:
        regs = [reference, *regs]
    return regs


def _cumtrapz0(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Integral from 0 (y(0) = 0) to each t, trapezoid rule (min·kBq/mL): the axes of the
    Logan plot."""
    tt = np.concatenate([[0.0], t])
    yy = np.concatenate([np.zeros(y.shape[:-1] + (1,)), y], axis=-1)
    return np.cumsum(np.diff(tt) * 0.5 * (yy[..., 1:] + yy[..., :-1]), axis=-1)


# --------------------------------------------------------------------------- model curves
def model_curve(model: str, fit: Any, region: str, tacs: Any, *, input: Any = None,
                reference: str | None = None) -> np.ndarray | None:
    """Model-predicted TAC of one region, for display.

    The curve is the model registry's prediction (``sv2a.models.predict_fit``) from the
    fitted parameters, so the figure shows exactly the model that was fitted. A model the
    registry cannot predict (graphical and static methods), a region that is not in the fit,
    or any failure gives None: a figure never fails on a curve.

    Parameters
    ----------
    model : str
        Registry name of the fitted model (the fit's own ``attrs`` say which model it is;
        ``model`` is kept for the caller's labelling).
    fit : xr.Dataset
        Result of :func:`sv2a.fit` for ``tacs``.
    region : str
        Region to predict.
    tacs : xr.DataArray
        The fitted TACs (region x frame; kBq/mL, frame times in min).
    input : InputFunction, optional
        Plasma input of plasma-input models (min, kBq/mL).
    reference : str, optional
        Reference region of reference-tissue models.

    Returns
    -------
    ndarray, shape (n_frames,), or None
        Predicted activity per frame (kBq/mL), on the same frame sampling as the fit.
    """
    try:
        from . import models

        predict_fit: Callable[..., Any] | None = getattr(models, "predict_fit", None)
        if predict_fit is None:
            return None
        if region not in [str(r) for r in fit.region.values]:
            return None
        out = predict_fit(fit, tacs, region=region, input=input, reference=reference)
        if out is None:
            return None
        curve = np.asarray(getattr(out, "values", out), dtype=float).reshape(-1)
        if curve.size != tacs.sizes["frame"]:
            return None
        return curve
    except Exception:  # display only: never fail a report on a curve
        return None


# --------------------------------------------------------------------------- figures
def plot_tac_fits(tacs: Any, fit: Any = None, model: str | None = None, *, input: Any = None,
                  reference: str | None = None, title: str = "") -> Figure:
    """TACs (points) with model curves (lines) and, where curves exist, residuals below.

    Parameters
    ----------
    tacs : xr.DataArray
        Regional TACs (region x frame; kBq/mL, frame times in min). At most 8 regions are
        drawn: the reference and targets spread over the binding range.
    fit : xr.Dataset, optional
        Result of :func:`sv2a.fit` for ``tacs``; curves come from :func:`model_curve`.
    model : str, optional
        Registry name of the fitted model (for the curves, title and SUVR window).
    input : InputFunction, optional
        Plasma input (min, kBq/mL) of plasma-input models.
    reference : str, optional
        Reference region (drawn in grey).
    title : str
        Figure title (default from the model).

    Returns
    -------
    matplotlib.figure.Figure
        Activity (kBq/mL) against frame mid-time (min), residuals (kBq/mL) below.
    """
    plt = _plt()
    regions = [str(r) for r in tacs.region.values]
    show = _pick_regions(regions, fit, reference)
    t = np.asarray(tacs.frame_mid.values, float)
    curves: dict[str, np.ndarray] = {}
    if fit is not None and model:
        for r in show:
            c = model_curve(model, fit, r, tacs, input=input, reference=reference)
            if c is not None:
                curves[r] = c
    if curves:
        fig, (ax, axr) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08})
    else:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        axr = None
    fig.subplots_adjust(left=0.1, right=0.97, top=0.93, bottom=0.1)
    cmap = plt.get_cmap("tab10")
    for i, r in enumerate(show):
        y = np.asarray(tacs.sel(region=r).values, float)
        col = "0.3" if r == reference else cmap(i % 10)
        lab = f"{r} (reference)" if r == reference else r
        ax.plot(t, y, "o", ms=3.5, color=col, label=lab)
        if r in curves:
            ax.plot(t, curves[r], "-", lw=1.3, color=col)
            axr.plot(t, y - curves[r], "o-", ms=2.5, lw=0.7, color=col)
        elif r == reference:
            ax.plot(t, y, "-", lw=0.8, color=col)
    if model == "suvr" and fit is not None:
        try:
            w = json.loads(fit.attrs.get("window", "[60, 90]")) if isinstance(
                fit.attrs.get("window"), str) else list(fit.attrs.get("window", (60, 90)))
            ax.axvspan(float(w[0]), float(w[1]), color="0.9", zorder=0, label="SUVR window")
        except Exception:
            pass
    ax.set_ylabel("activity (kBq/mL)")
    ax.set_title(title or (f"TACs and {_label(model)} fit" if model else "Regional TACs"),
                 fontsize=10)
    ax.legend(fontsize=7, ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    if axr is not None:
        axr.axhline(0, color="k", lw=0.6)
        axr.set_ylabel("residual")
        axr.set_xlabel("time (min)")
        axr.grid(alpha=0.3)
    else:
        ax.set_xlabel("time (min)")
    return fig


def _tstar_of(fit: Any, region: str) -> float:
    try:
        v = float(fit.sel(region=region)["tstar"].values)
        if np.isfinite(v):
            return v
    except Exception:
        pass
    ts = fit.attrs.get("tstar")
    try:
        return float(ts)
    except (TypeError, ValueError):
        return np.nan


def plot_graphical(tacs: Any, fit: Any, model: str, *, input: Any = None,
                   reference: str | None = None) -> Figure:
    """Logan plot with t* marked and the line through the points after t*.

    Plasma input: x = ∫Cp/C_T; reference input: x = (∫C_R + C_R/k2')/C_T; y = ∫C_T/C_T
    (Logan et al. 1990, 1996). For MA1 the Logan transform of the same data is shown with
    the MA1 slope (VT).

    Parameters
    ----------
    tacs : xr.DataArray
        Regional TACs (region x frame; kBq/mL, frame times in min).
    fit : xr.Dataset
        Result of :func:`sv2a.fit` of a graphical model (``tstar`` in min; ``VT`` in mL/cm³
        or ``DVR``; ``k2prime`` in 1/min when given).
    model : str
        ``logan``, ``ma1`` (plasma input) or ``logan_ref``, ``mrtm``, ``mrtm2`` (reference).
    input : InputFunction, optional
        Plasma input (min, kBq/mL); required for plasma-input models.
    reference : str, optional
        Reference region; required for reference-input models.

    Returns
    -------
    matplotlib.figure.Figure
        Both axes in minutes.
    """
    plt = _plt()
    t = np.asarray(tacs.frame_mid.values, float)
    regions = [str(r) for r in fit.region.values]
    show = [r for r in _pick_regions(regions, fit, None) if r != reference][:6]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    fig.subplots_adjust(left=0.1, right=0.97, top=0.92, bottom=0.12)
    cmap = plt.get_cmap("tab10")
    if model in _GRAPHICAL_PLASMA:
        ix = _cumtrapz0(t, input.plasma_at(t))
        slope_name = "VT"
        xl = r"$\int_0^t C_p\,/\,C_T(t)$ (min)"
    else:
        cr = np.asarray(tacs.sel(region=reference).values, float)
        ix = _cumtrapz0(t, cr)
        kp = np.nan
        if "k2prime" in fit:
            kk = np.asarray(fit["k2prime"].values, float)
            kk = kk[np.isfinite(kk) & (kk > 0)]
            kp = float(np.median(kk)) if kk.size else np.nan
        if np.isfinite(kp):
            ix = ix + cr / kp
        slope_name = "DVR"
        xl = (r"$(\int_0^t C_R + C_R/k_2')\,/\,C_T(t)$ (min)" if np.isfinite(kp)
              else r"$\int_0^t C_R\,/\,C_T(t)$ (min)")
    tstar_lines = set()
    for i, r in enumerate(show):
        ct = np.asarray(tacs.sel(region=r).values, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = ix / ct
            y = _cumtrapz0(t, ct) / ct
        ok = np.isfinite(x) & np.isfinite(y) & (ct > 0)
        ts = _tstar_of(fit, r)
        late = ok & (t >= ts) if np.isfinite(ts) else ok & (t >= t[len(t) // 2])
        col = cmap(i % 10)
        ax.plot(x[ok & ~late], y[ok & ~late], "o", mfc="none", ms=4, color=col)
        slope = float(fit.sel(region=r)[slope_name].values) if slope_name in fit else np.nan
        ax.plot(x[late], y[late], "o", ms=4, color=col,
                label=f"{r}: {slope_name} {slope:.3g}" if np.isfinite(slope) else r)
        if late.sum() >= 2:
            a, b = np.polyfit(x[late], y[late], 1)
            xx = np.array([x[late].min(), x[late].max()])
            ax.plot(xx, a * xx + b, "-", lw=1.2, color=col)
        if np.isfinite(ts) and late.any():
            tstar_lines.add(round(ts, 2))
            ax.axvline(x[late].min(), color=col, lw=0.6, ls=":")
    tss = ", ".join(f"{v:g}" for v in sorted(tstar_lines))
    ax.set_title(f"{_label(model)} graphical analysis (filled: t ≥ t* = {tss or '?'} min; "
                 "dotted line: first frame after t*)", fontsize=9)
    ax.set_xlabel(xl)
    ax.set_ylabel(r"$\int_0^t C_T\,/\,C_T(t)$ (min)")
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    return fig


def _fit_parent_fraction(t: np.ndarray, f: np.ndarray) -> Any:
    """The exponential-plateau parent-fraction fit of :mod:`sv2a.blood` (display only; the
    analysis uses the input function as loaded), or None when it cannot be fitted."""
    from .blood import fit_parent_fraction

    try:
        return fit_parent_fraction(t, f, "exp_plateau")
    except Exception:
        return None


def plot_input(inp: Any, *, t_end: float | None = None) -> Figure:
    """Input function and parent fraction.

    Parameters
    ----------
    inp : InputFunction
        Times in min, concentrations in kBq/mL; measured parent-fraction samples are taken
        from ``inp.meta["parent_fraction_samples"]``.
    t_end : float, optional
        Draw the curves to at least this time (min), e.g. the end of the scan.

    Returns
    -------
    matplotlib.figure.Figure
        Left: total plasma, parent plasma and whole blood (kBq/mL, log scale) against time
        (min). Right: the parent fraction with its exponential-plateau fit.
    """
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.13, wspace=0.22)
    tmax = max(float(inp.t_end), t_end or 0)
    tt = np.linspace(0, tmax, 600)
    if getattr(inp, "total_plasma", None) is not None:
        tp, cp = inp.total_plasma
        ax.plot(tp, cp, "s", ms=3, color="tab:blue", label="total plasma")
    ax.plot(inp.time, inp.plasma, "o", ms=3, color="tab:red", label="parent plasma (input)")
    ax.plot(tt, inp.plasma_at(tt), "-", lw=1, color="tab:red")
    if inp.whole_blood is not None:
        ax.plot(inp.whole_blood_time, inp.whole_blood, ".", ms=3, color="0.4",
                label="whole blood")
    ax.set_yscale("log")
    ax.set_xlabel("time (min)")
    ax.set_ylabel("activity (kBq/mL)")
    ax.set_title("Input function", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3, which="both")
    samples = (inp.meta or {}).get("parent_fraction_samples")
    if samples:
        ts = np.asarray(samples["time"], float)
        fs = np.asarray(samples["value"], float)
        ax2.plot(ts, fs, "o", color="tab:green", label="measured")
        pf_fit = _fit_parent_fraction(ts, fs)
        if pf_fit is not None:
            a, tau = (float(v) for v in pf_fit.params)
            ax2.plot(tt, pf_fit.predict(tt), "-", color="tab:green",
                     label=f"fit: {a:.2f} + {1 - a:.2f}·exp(−t/{tau:.1f})")
        ax2.set_ylim(0, 1.05)
        ax2.legend(fontsize=7, frameon=False)
    elif inp.parent_fraction_at(tt) is not None:
        ax2.plot(tt, inp.parent_fraction_at(tt), "-", color="tab:green")
        ax2.set_ylim(0, 1.05)
    else:
        ax2.text(0.5, 0.5, "no parent-fraction samples\n(input is total plasma)",
                 ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xlabel("time (min)")
    ax2.set_ylabel("parent fraction")
    ax2.set_title("Parent fraction", fontsize=10)
    ax2.grid(alpha=0.3)
    return fig


def _mosaic(panels: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Place 2D panels side by side (NaN padding), bottom-aligned."""
    h = max(p.shape[0] for p in panels)
    cols = []
    for p in panels:
        block = np.full((h, p.shape[1] + pad), np.nan)
        block[h - p.shape[0]:, : p.shape[1]] = p
        cols.append(block)
    return np.concatenate(cols, axis=1)


def plot_map_slices(data: np.ndarray, *, title: str = "", underlay: np.ndarray | None = None,
                    units: str = "", n_slices: int = 5) -> Figure:
    """Slices of a 3D parametric map as one mosaic image.

    Parameters
    ----------
    data : ndarray, shape (x, y, z)
        The map, in its own units; NaN voxels are transparent.
    title : str
        Figure title.
    underlay : ndarray, shape (x, y, z), optional
        Grey-scale image drawn below (e.g. the mean PET image, kBq/mL).
    units : str
        Colour-bar label: the parameter and its units (``'BPND (unitless)'``), drawn at
        11 pt.
    n_slices : int
        Number of axial slices, evenly spread over the map's extent.

    Returns
    -------
    matplotlib.figure.Figure
        The axial slices plus a sagittal and a coronal slice through the centre; colour scale
        from min(0, 1st percentile) to the 99th percentile.

    Raises
    ------
    ValueError
        The map has no finite values.
    """
    plt = _plt()
    a = np.asarray(data, float)
    finite = np.isfinite(a)
    if not finite.any():
        raise ValueError("map has no finite values")
    zs = np.flatnonzero(finite.any(axis=(0, 1)))
    zsel = np.unique(np.linspace(zs.min(), zs.max(), n_slices + 2)[1:-1].round().astype(int))
    vmin, vmax = np.nanpercentile(a[finite], [1, 99])
    vmin = min(vmin, 0.0)  # positive parameters: colour scale from 0
    if vmin == vmax:
        vmax = vmin + 1
    cx, cy = (int(np.median(np.flatnonzero(finite.any(axis=ax)))) for ax in ((1, 2), (0, 2)))

    def views(vol: np.ndarray) -> list[np.ndarray]:
        return ([np.rot90(vol[:, :, z]) for z in zsel]
                + [np.rot90(vol[cx, :, :]), np.rot90(vol[:, cy, :])])

    mos = _mosaic(views(a))
    fig, ax = plt.subplots(figsize=(min(2.0 * (len(zsel) + 2), 14), 2.8))
    fig.subplots_adjust(left=0.01, right=0.88, top=0.85, bottom=0.02)
    if underlay is not None:
        ax.imshow(_mosaic(views(np.asarray(underlay, float))), cmap="gray",
                  interpolation="nearest")
    im = ax.imshow(np.ma.masked_invalid(mos), cmap="viridis", vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"{title}  (axial z = {', '.join(map(str, zsel))}; sagittal x = {cx}; "
                 f"coronal y = {cy})", fontsize=10)
    cb = fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    cb.set_label(units, fontsize=11)
    cb.ax.tick_params(labelsize=10)
    return fig


def _try(desc: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        warnings.warn(f"figure '{desc}' could not be drawn: {type(exc).__name__}: {exc}",
                      Sv2aWarning, stacklevel=3)
        return None


def _kind(model: str) -> str:
    """The registry kind of a model (plasma, reference or static)."""
    from .models import registry

    return registry.get(model).kind


def scan_figures(fig_dir: str | os.PathLike[str], stem: str, *, tacs: Any,
                 fits: Mapping[str, Any], input: Any = None,
                 maps: Mapping[str, Any] | None = None, pet: Any = None, atlas: Any = None,
                 reference: str | None = None, motion: Any = None) -> list[Path]:
    """Draw and save every figure of one scan.

    A figure that cannot be drawn gives a :class:`~sv2a.errors.Sv2aWarning`, never an error.

    Parameters
    ----------
    fig_dir : str or path-like
        Output folder (created if needed).
    stem : str
        BIDS file-name stem of the scan (``sub-01_ses-bl_trc-UCBJ``).
    tacs : xr.DataArray
        Regional TACs (region x frame; kBq/mL, min).
    fits : mapping of str to xr.Dataset
        Regional fits by model name.
    input : InputFunction, optional
        Plasma input (min, kBq/mL).
    maps : mapping of str to xr.Dataset, optional
        Parametric maps by model name (3D variables are drawn, the main ones first).
    pet : DynamicPET, optional
        Its mean image is the underlay of the map slices.
    atlas : Atlas, optional
        Unused; accepted for call compatibility.
    reference : str, optional
        Reference region.
    motion : pandas.DataFrame, optional
        Realignment motion table (:func:`sv2a.motion.realign`), drawn as
        ``<stem>_desc-motion_plot.svg``.

    Returns
    -------
    list of Path
        The files written (in ``fig_dir``): ``<stem>_desc-tacs_plot.svg``,
        ``<stem>_model-<M>_desc-fit_plot.svg`` (TACs + fit + residuals),
        ``<stem>_model-<M>_desc-logan_plot.svg`` (graphical models),
        ``<stem>_desc-input_plot.svg``, ``<stem>_model-<M>_meas-<P>_desc-slices_plot.png``.
    """
    fig_dir = Path(fig_dir)
    out: list[Path] = []

    def keep(fig: Figure | None, name: str) -> None:
        if fig is not None:
            out.append(_save(fig, fig_dir / name))

    keep(_try("tacs", plot_tac_fits, tacs, reference=reference, title="Regional TACs"),
         f"{stem}_desc-tacs_plot.svg")
    for model, fit in fits.items():
        lab = _label(model)
        ref = reference if _kind(model) == "reference" else None
        keep(_try(f"{model} fit", plot_tac_fits, tacs, fit, model, input=input, reference=ref),
             f"{stem}_model-{lab}_desc-fit_plot.svg")
        if model in _GRAPHICAL_PLASMA and input is not None or model in _GRAPHICAL_REF:
            keep(_try(f"{model} graphical", plot_graphical, tacs, fit, model, input=input,
                      reference=reference), f"{stem}_model-{lab}_desc-logan_plot.svg")
    if input is not None:
        keep(_try("input", plot_input, input, t_end=float(tacs.frame_end.values[-1])),
             f"{stem}_desc-input_plot.svg")
    if motion is not None:
        from .motion import plot_motion

        keep(_try("motion", plot_motion, motion), f"{stem}_desc-motion_plot.svg")
    if maps:
        underlay = None
        if pet is not None:
            underlay = _try("underlay", pet.mean_image)
        for model, mp in maps.items():
            for var in _main_maps(mp):
                da = mp[var]
                keep(_try(f"{model} {var} map", plot_map_slices, np.asarray(da.values),
                          title=f"{_label(model)} {var}", underlay=underlay,
                          units=f"{var} ({unit_label(str(da.attrs.get('units', '')))})"
                          if da.attrs.get("units") else var),
                     f"{stem}_model-{_label(model)}_meas-{var}_desc-slices_plot.png")
    return out


def _main_maps(mp: Any) -> list[str]:
    prefs = ("BPND", "VT", "DVR", "R1", "K1", "SUVR", "SUV")
    names = [str(v) for v in mp.data_vars if getattr(mp[v], "ndim", 0) == 3]
    main = [n for n in prefs if n in names]
    return main[:2] if main else names[:1]
