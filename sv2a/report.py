"""Figures and self-contained HTML reports.

* :func:`scan_figures` draws the figures of one scan (TACs with model fits and residuals,
  Logan / MA1 plots with t*, the input function with its parent fraction, parametric-map
  slices) and saves them as files (SVG for curves, PNG for images).
* :func:`subject_report` writes ``OUT/sub-XX.html`` from the files of every session of a
  subject: figures embedded as base64, parameter tables, notes.
* :func:`group_report` writes ``OUT/group.html`` (spaghetti and forest plots per arm, the arm
  comparison table).

Reports open from disk in any browser: no external files, scripts or fonts.
"""

from __future__ import annotations

import base64
import html
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import Sv2aWarning

__all__ = [
    "scan_figures",
    "plot_tac_fits",
    "plot_graphical",
    "plot_input",
    "plot_map_slices",
    "model_curve",
    "subject_report",
    "group_report",
    "html_page",
    "embed_image",
]

_MAX_REGIONS_PLOTTED = 8
_GRAPHICAL_PLASMA = ("logan", "ma1")
_GRAPHICAL_REF = ("logan_ref", "mrtm", "mrtm2")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, faster SVG files

    return plt


def _save(fig, path: Path) -> Path:
    from .io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {"dpi": 110} if path.suffix == ".png" else {}
    if path.suffix == ".svg":
        kw["metadata"] = {"Date": None}  # reproducible files
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:], **kw)
    _plt().close(fig)
    return path


def _label(model: str) -> str:
    return "".join(ch for ch in model if ch.isalnum()).upper()


def _pick_regions(regions: Sequence[str], fit=None, reference: str | None = None) -> list[str]:
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


# --------------------------------------------------------------------------- model curves
def _cumtrapz0(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Integral from 0 (y(0) = 0) to each t, trapezoid rule (min·kBq/mL)."""
    tt = np.concatenate([[0.0], t])
    yy = np.concatenate([np.zeros(y.shape[:-1] + (1,)), y], axis=-1)
    return np.cumsum(np.diff(tt) * 0.5 * (yy[..., 1:] + yy[..., :-1]), axis=-1)


def _frame_average(t: np.ndarray, y: np.ndarray, start: np.ndarray, end: np.ndarray
                   ) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(np.diff(t) * 0.5 * (y[1:] + y[:-1]))])
    return (np.interp(end, t, c) - np.interp(start, t, c)) / (end - start)


def _plasma_curve(model: str, fit, region: str, tacs, inp) -> np.ndarray | None:
    """Frame-average model TAC of a 1TCM/2TCM fit (for display only)."""
    row = fit.sel(region=region)

    def g(name, default=0.0):
        if name not in row:
            return default
        v = float(row[name].values)
        return v if np.isfinite(v) else default

    start = np.asarray(tacs.frame_start.values, float)
    end = np.asarray(tacs.frame_end.values, float)
    h = 0.01
    t = np.arange(0.0, end[-1] + h, h)
    delay = g("delay")
    cp = inp.plasma_at(t - delay)
    cwb = inp.whole_blood_at(t - delay)
    K1, k2 = g("K1", np.nan), g("k2", np.nan)
    if not (np.isfinite(K1) and np.isfinite(k2)):
        return None
    if model == "2tcm":
        k3, k4 = g("k3"), g("k4")
        s = k2 + k3 + k4
        d = np.sqrt(max(s * s - 4 * k2 * k4, 0.0))
        a1, a2 = (s - d) / 2, (s + d) / 2
        if a2 - a1 < 1e-12:
            irf = K1 * np.exp(-a1 * t)
        else:
            irf = K1 / (a2 - a1) * ((k3 + k4 - a1) * np.exp(-a1 * t)
                                    + (a2 - k3 - k4) * np.exp(-a2 * t))
    else:
        irf = K1 * np.exp(-k2 * t)
    ct = np.convolve(cp, irf)[: t.size] * h
    vb = g("vB")
    y = (1 - vb) * ct + vb * cwb
    if str(fit.attrs.get("sampling", "frame")) == "mid":
        return np.interp(0.5 * (start + end), t, y)
    return _frame_average(t, y, start, end)


def model_curve(model: str, fit, region: str, tacs, *, input=None,
                reference: str | None = None) -> np.ndarray | None:
    """Model-predicted TAC of ``region`` (kBq/mL per frame) for display, or None.

    SRTM/SRTM2: ``C_T = R1·C_R + (k2 − R1·k2a)·C_R ⊗ e^{−k2a t}`` (Lammertsma & Hume 1996);
    1TCM/2TCM: ``(1 − vB)·IRF ⊗ Cp + vB·C_WB``. Other models return None (they are shown with
    their graphical plot).
    """
    try:
        if region not in [str(r) for r in fit.region.values]:
            return None
        if model in ("srtm", "srtm2") and reference is not None:
            from .models.reference import srtm_regressors
            from .tacs import frames_of

            row = fit.sel(region=region)
            r1, k2, k2a = (float(row[p].values) for p in ("R1", "k2", "k2a"))
            if not all(np.isfinite([r1, k2, k2a])):
                return None
            cr = np.asarray(tacs.sel(region=reference).values, float)
            smp = str(fit.attrs.get("sampling", "frame"))
            cnv = str(fit.attrs.get("convolution", "exact"))
            x1, b = srtm_regressors(frames_of(tacs), cr, np.array([k2a]),
                                    sampling=smp if smp in ("frame", "mid") else "frame",
                                    convolution=cnv if cnv in ("exact", "kinfitr") else "exact")
            return r1 * np.asarray(x1) + (k2 - r1 * k2a) * np.asarray(b)[0]
        if model in ("1tcm", "2tcm") and input is not None:
            return _plasma_curve(model, fit, region, tacs, input)
    except Exception:  # display only: never fail a report on a curve
        return None
    return None


# --------------------------------------------------------------------------- figures
def plot_tac_fits(tacs, fit=None, model: str | None = None, *, input=None,
                  reference: str | None = None, title: str = ""):
    """TACs (points) with model curves (lines) and, where curves exist, residuals below."""
    plt = _plt()
    regions = [str(r) for r in tacs.region.values]
    show = _pick_regions(regions, fit, reference)
    t = np.asarray(tacs.frame_mid.values, float)
    curves = {}
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


def _tstar_of(fit, region: str) -> float:
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


def plot_graphical(tacs, fit, model: str, *, input=None, reference: str | None = None):
    """Logan plot (plasma: x = ∫Cp/C_T; reference: x = (∫C_R + C_R/k2')/C_T; y = ∫C_T/C_T)
    with t* marked and the line through the points after t*. For MA1 the Logan transform of
    the same data is shown with the MA1 slope (VT)."""
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


def _fit_parent_fraction(t: np.ndarray, f: np.ndarray):
    """Exponential-plateau parent fraction f(t) = a + (1 − a)·exp(−t/τ) fitted to samples
    (display only; the analysis uses the input function as loaded)."""
    from scipy.optimize import curve_fit

    def model(tt, a, tau):
        return a + (1 - a) * np.exp(-tt / tau)

    try:
        (a, tau), _ = curve_fit(model, t, f, p0=(0.2, 10.0), bounds=([0, 0.1], [1, 1e3]))
        return model, (a, tau)
    except Exception:
        return None, None


def plot_input(inp, *, t_end: float | None = None):
    """Input function (log scale): total plasma, parent plasma, whole blood; and the
    parent fraction with its exponential-plateau fit."""
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
        model, p = _fit_parent_fraction(ts, fs)
        if model is not None:
            ax2.plot(tt, model(tt, *p), "-", color="tab:green",
                     label=f"fit: {p[0]:.2f} + {1 - p[0]:.2f}·exp(−t/{p[1]:.1f})")
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
                    units: str = "", n_slices: int = 5):
    """Axial slices of a 3D map (NaN transparent) over an optional underlay (e.g. mean PET),
    plus a sagittal and a coronal slice through the centre, as one mosaic image."""
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

    def views(vol):
        return ([np.rot90(vol[:, :, z]) for z in zsel]
                + [np.rot90(vol[cx, :, :]), np.rot90(vol[:, cy, :])])

    mos = _mosaic(views(a))
    fig, ax = plt.subplots(figsize=(min(2.0 * (len(zsel) + 2), 14), 2.6))
    fig.subplots_adjust(left=0.01, right=0.9, top=0.85, bottom=0.02)
    if underlay is not None:
        ax.imshow(_mosaic(views(np.asarray(underlay, float))), cmap="gray",
                  interpolation="nearest")
    im = ax.imshow(np.ma.masked_invalid(mos), cmap="viridis", vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"{title}  (axial z = {', '.join(map(str, zsel))}; sagittal x = {cx}; "
                 f"coronal y = {cy})", fontsize=8)
    cb = fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    cb.set_label(units, fontsize=7)
    cb.ax.tick_params(labelsize=7)
    return fig


def _try(desc: str, func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        warnings.warn(f"figure '{desc}' could not be drawn: {type(exc).__name__}: {exc}",
                      Sv2aWarning, stacklevel=3)
        return None


def scan_figures(fig_dir: str | os.PathLike, stem: str, *, tacs, fits: Mapping[str, Any],
                 input=None, maps: Mapping[str, Any] | None = None, pet=None, atlas=None,
                 reference: str | None = None) -> list[Path]:
    """Draw and save every figure of one scan; return the file paths.

    Files (in ``fig_dir``): ``<stem>_desc-tacs_plot.svg``, ``<stem>_model-<M>_desc-fit_plot.svg``
    (TACs + fit + residuals), ``<stem>_model-<M>_desc-logan_plot.svg`` (graphical models),
    ``<stem>_desc-input_plot.svg``, ``<stem>_model-<M>_meas-<P>_desc-slices_plot.png``.
    A figure that cannot be drawn gives a warning, never an error.
    """
    fig_dir = Path(fig_dir)
    out: list[Path] = []

    def keep(fig, name):
        if fig is not None:
            out.append(_save(fig, fig_dir / name))

    keep(_try("tacs", plot_tac_fits, tacs, reference=reference, title="Regional TACs"),
         f"{stem}_desc-tacs_plot.svg")
    for model, fit in fits.items():
        lab = _label(model)
        ref = reference if model not in ("1tcm", "2tcm", "logan", "ma1", "suv") else None
        keep(_try(f"{model} fit", plot_tac_fits, tacs, fit, model, input=input, reference=ref),
             f"{stem}_model-{lab}_desc-fit_plot.svg")
        if model in _GRAPHICAL_PLASMA and input is not None or model in _GRAPHICAL_REF:
            keep(_try(f"{model} graphical", plot_graphical, tacs, fit, model, input=input,
                      reference=reference), f"{stem}_model-{lab}_desc-logan_plot.svg")
    if input is not None:
        keep(_try("input", plot_input, input, t_end=float(tacs.frame_end.values[-1])),
             f"{stem}_desc-input_plot.svg")
    if maps:
        underlay = None
        if pet is not None:
            underlay = _try("underlay", pet.mean_image)
        for model, mp in maps.items():
            for var in _main_maps(mp):
                da = mp[var]
                keep(_try(f"{model} {var} map", plot_map_slices, np.asarray(da.values),
                          title=f"{_label(model)} {var}", underlay=underlay,
                          units=str(da.attrs.get("units", ""))),
                     f"{stem}_model-{_label(model)}_meas-{var}_desc-slices_plot.png")
    return out


def _main_maps(mp) -> list[str]:
    prefs = ("BPND", "VT", "DVR", "R1", "K1", "SUVR", "SUV")
    names = [str(v) for v in mp.data_vars if getattr(mp[v], "ndim", 0) == 3]
    main = [n for n in prefs if n in names]
    return main[:2] if main else names[:1]


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{color:#335;margin-top:1.8em}
h3{color:#446}table{border-collapse:collapse;font-size:12px;margin:.5em 0 1em}
td,th{border:1px solid #ccd;padding:2px 6px;text-align:right}th{background:#eef}
td:first-child,th:first-child{text-align:left}.note{background:#fff6d6;border-left:4px solid
#e0b000;padding:.4em .8em;margin:.4em 0}.fail{background:#fde;border-left:4px solid #c00;
padding:.4em .8em}figure{margin:.6em 0 1.2em}figcaption{font-size:12px;color:#555}
img{max-width:100%}.meta{font-size:12px;color:#555}nav a{margin-right:1em}
"""


def embed_image(path: str | os.PathLike) -> str:
    """An ``<img>`` tag with the file embedded as a base64 data URI (SVG or PNG)."""
    p = Path(path)
    mime = "image/svg+xml" if p.suffix == ".svg" else "image/png"
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(p.name)}" src="data:{mime};base64,{data}">'


def html_page(title: str, body: str) -> str:
    """A complete self-contained HTML document."""
    from . import __version__

    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n"
            f"<p class=\"meta\">Generated by sv2a {__version__}.</p></body></html>\n")


def _table_html(df: pd.DataFrame, *, digits: int = 4) -> str:
    def fmt(v):
        if isinstance(v, float | np.floating):
            return "n/a" if not np.isfinite(v) else f"{v:.{digits}g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


_TABLE_KEEP = ("K1", "k2", "k3", "k4", "vB", "delay", "VT", "VND", "BPND", "DVR", "R1",
               "k2prime", "SUV", "SUVR", "tstar", "converged", "at_bound")


def _kinpar_html(path: Path) -> str:
    df = pd.read_csv(path, sep="\t", na_values=["n/a"])
    cols = ["region"] + [c for c in df.columns if c in _TABLE_KEEP]
    cols += [c for c in df.columns if c.endswith("_se") and c[:-3] in ("VT", "BPND", "SUVR")]
    return _table_html(df[[c for c in dict.fromkeys(cols) if c in df.columns]])


def _caption(name: str) -> str:
    if "_desc-tacs_" in name:
        return "Regional time-activity curves (reference region in grey)."
    if "_desc-fit_" in name:
        return "Measured TACs (points), model fit (lines) and residuals (measured − fit)."
    if "_desc-logan_" in name:
        return "Graphical analysis: filled points after t* enter the regression."
    if "_desc-input_" in name:
        return "Arterial input function and parent fraction with its fit."
    if "_desc-slices_" in name:
        return "Parametric map slices over the mean PET image."
    return name


def subject_report(out_dir: str | os.PathLike, subject: str) -> Path:
    """Write ``OUT/sub-<subject>.html`` from the finished sessions of a subject."""
    from .io import atomic_path

    out = Path(out_dir)
    sub_dir = out / f"sub-{subject}"
    summaries = sorted(sub_dir.glob("**/pet/.*_sv2a-summary.json"))
    fig_dir = sub_dir / "figures"
    parts = []
    nav = []
    fails = out / "logs" / "failures.tsv"
    failed_rows = pd.DataFrame()
    if fails.exists():
        f = pd.read_csv(fails, sep="\t", dtype=str)
        failed_rows = f[f["participant_id"] == f"sub-{subject}"]
    for _, row in failed_rows.iterrows():
        parts.append(f"<div class=\"fail\"><b>{html.escape(str(row['session']))} failed</b> at "
                     f"stage {html.escape(str(row['stage']))}: {html.escape(str(row['message']))}"
                     f" (log: {html.escape(str(row['log']))})</div>")
    for sp in summaries:
        s = json.loads(sp.read_text(encoding="utf-8"))
        stem = s["stem"]
        anchor = stem.replace("_", "-")
        nav.append(f"<a href=\"#{anchor}\">{html.escape(stem)}</a>")
        sec = [f"<h2 id=\"{anchor}\">{html.escape(stem)}</h2>",
               f"<p class=\"meta\">atlas seg-{html.escape(str(s.get('atlas')))}; reference "
               f"{html.escape(str(s.get('reference')))}</p>"]
        for n in s.get("notes", []):
            sec.append(f"<div class=\"note\">{html.escape(n)}</div>")
        figs = sorted(fig_dir.glob(f"{stem}_*")) if fig_dir.is_dir() else []
        gen = [f for f in figs if "_model-" not in f.name]
        for f in gen:
            sec.append(f"<figure>{embed_image(f)}<figcaption>{_caption(f.name)}</figcaption>"
                       "</figure>")
        for model, rel in s.get("models", {}).items():
            lab = _label(model)
            sec.append(f"<h3>{lab}</h3>")
            kp = out / rel
            if kp.exists():
                sec.append(_kinpar_html(kp))
            for f in figs:
                if f"_model-{lab}_" in f.name:
                    sec.append(f"<figure>{embed_image(f)}<figcaption>{_caption(f.name)}"
                               "</figcaption></figure>")
        for model in s.get("maps", {}):
            if model in s.get("models", {}):
                continue
            lab = _label(model)
            sec.append(f"<h3>{lab} maps</h3>")
            for f in figs:
                if f"_model-{lab}_" in f.name:
                    sec.append(f"<figure>{embed_image(f)}<figcaption>{_caption(f.name)}"
                               "</figcaption></figure>")
        parts.append("\n".join(sec))
    if not summaries and failed_rows.empty:
        parts.append("<p>No finished sessions.</p>")
    body = (f"<nav>{''.join(nav)}</nav>\n" if nav else "") + "\n".join(parts)
    path = out / f"sub-{subject}.html"
    with atomic_path(path) as tmp:
        tmp.write_text(html_page(f"sv2a report: sub-{subject}", body), encoding="utf-8")
    return path


def group_report(out_dir: str | os.PathLike, sections: Sequence[Mapping[str, Any]], *,
                 notes: Sequence[str] = ()) -> Path:
    """Write ``OUT/group.html``.

    ``sections``: dicts with ``title``, optional ``text``, ``table`` (DataFrame), ``figures``
    (paths) — one per model/outcome.
    """
    from .io import atomic_path

    out = Path(out_dir)
    parts = [f"<div class=\"note\">{html.escape(n)}</div>" for n in notes]
    for s in sections:
        parts.append(f"<h2>{html.escape(str(s['title']))}</h2>")
        if s.get("text"):
            parts.append(f"<p>{html.escape(str(s['text']))}</p>")
        for f in s.get("figures", []):
            if Path(f).exists():
                parts.append(f"<figure>{embed_image(f)}<figcaption>"
                             f"{html.escape(Path(f).name)}</figcaption></figure>")
        t = s.get("table")
        if t is not None and len(t):
            parts.append(_table_html(t, digits=3))
    path = out / "group.html"
    with atomic_path(path) as tmp:
        tmp.write_text(html_page("sv2a group report", "\n".join(parts)), encoding="utf-8")
    return path
