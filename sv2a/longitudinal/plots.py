"""Figures for longitudinal studies, written to files (matplotlib Agg, no pyplot state).

* :func:`plot_spaghetti` - one line per subject across sessions, one panel per region x arm,
  geometric mean in bold;
* :func:`plot_forest` - % change with CI per region, one marker per arm, one panel per
  session (works on :func:`compare_arms` and :func:`cross_sectional_anova` tables);
* :func:`mean_change_maps` / :func:`plot_change_maps` - voxelwise mean % change per arm from
  3D arrays or NIfTI files, with orthogonal slices (and NIfTI output when affines are known).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from ..errors import DataError, DesignError, ShapeMismatchError

__all__ = ["plot_spaghetti", "plot_forest", "mean_change_maps", "plot_change_maps"]

_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def plot_spaghetti(ds: xr.Dataset, path: str | os.PathLike[str], outcome: str = "BPND", *,
                   regions: Sequence[str] | None = None, arms: Sequence[str] | None = None,
                   relative: bool = False, baseline: str | None = None) -> Path:
    """Spaghetti plot: each subject's outcome across sessions, per region (rows) x arm
    (columns), with the arm's geometric mean in bold.

    Sessions run in time order (baseline first, then ``time_since_dose``, then durations in
    the labels; :func:`~sv2a.longitudinal.session_order`), and each subject's line carries
    its ID at its last point.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (:func:`~sv2a.longitudinal.collect`).
    path : str or path-like
        Output file (.png, .svg, .pdf); written atomically, parent folders created.
    outcome : str
        Data variable to plot (y axis in its units, e.g. BPND unitless, VT mL/cm3).
    regions : sequence of str, optional
        Regions to plot (rows; default all).
    arms : sequence of str, optional
        Arms to plot (columns; default all, sorted).
    relative : bool
        Plot % of each subject's ``baseline`` value instead of the raw outcome.
    baseline : str, optional
        Baseline session label; required with ``relative``. In absolute plots a dotted line
        marks each arm's baseline geometric mean.

    Returns
    -------
    pathlib.Path
        The written figure.

    Raises
    ------
    DataError
        ``outcome`` not in ``ds``.
    DesignError
        Unknown baseline, region or arm, or ``relative`` without ``baseline``.
    """
    if outcome not in ds:
        raise DataError(f"outcome '{outcome}' not in the dataset; available: {list(ds.data_vars)}")
    regions = list(regions) if regions is not None else [str(r) for r in ds["region"].values]
    arm_vals = np.asarray([str(a) for a in ds["arm"].values])
    arms = list(arms) if arms is not None else sorted(set(arm_vals))
    ds = ds.isel(session=[[str(s) for s in ds["session"].values].index(lab)
                          for lab in _time_order(ds)])
    sessions = [str(s) for s in ds["session"].values]
    subjects = [str(s) for s in ds["subject"].values]
    y = ds[outcome].transpose("subject", "session", "region").values
    ylabel = outcome
    if baseline is not None and baseline not in sessions:
        raise DesignError(f"baseline '{baseline}' is not a session; sessions: {sessions}")
    if relative:
        if baseline is None:
            raise DesignError(f"relative=True needs baseline= one of {sessions}")
        y = 100 * y / y[:, [sessions.index(baseline)], :]
        ylabel = f"% of {baseline}"
    unknown = [r for r in regions if r not in [str(x) for x in ds["region"].values]]
    if unknown:
        raise DesignError(f"regions {unknown} not in the dataset")
    unknown = [a for a in arms if a not in set(arm_vals)]
    if unknown:
        raise DesignError(f"arms {unknown} not in the dataset; arms: {sorted(set(arm_vals))}")
    fig = _figure(2.6 * len(arms) + 0.6, 2.0 * len(regions) + 0.6)
    axes = fig.subplots(len(regions), len(arms), squeeze=False, sharey="row")
    for ci, arm in enumerate(arms):
        m = arm_vals == arm
        used = [j for j in range(len(sessions)) if np.isfinite(y[m, j, :]).any()]
        for ri, reg in enumerate(regions):
            ax = axes[ri, ci]
            k = [str(r) for r in ds["region"].values].index(reg)
            yy = y[m][:, used, k]
            x = np.arange(len(used))
            for sub, row in zip(np.asarray(subjects)[m], yy, strict=True):
                ok = np.isfinite(row)
                if not ok.any():
                    continue
                ax.plot(x[ok], row[ok], "-o", color=_COLORS[ci % len(_COLORS)], alpha=0.45,
                        lw=1, ms=3)
                # the subject's ID at its last point, so a line can be traced to a subject
                ax.annotate(sub, (x[ok][-1], row[ok][-1]), xytext=(4, 0),
                            textcoords="offset points", fontsize=7, va="center",
                            color=_COLORS[ci % len(_COLORS)])
            with np.errstate(all="ignore"):
                gm = np.exp(np.nanmean(np.log(np.where(yy > 0, yy, np.nan)), axis=0))
            ax.plot(x, gm, "-s", color="k", lw=2.2, ms=5, label="geometric mean")
            if baseline is not None and sessions.index(baseline) in used:
                ax.axhline(gm[used.index(sessions.index(baseline))], color="0.5", ls=":",
                           lw=1)
            ax.set_xticks(x, [sessions[j] for j in used])
            ax.set_xlim(-0.3, len(used) - 0.4)  # room for the subject IDs
            if ri == 0:
                ax.set_title(f"{arm} (n={int(m.sum())})", fontsize=9)
            if ci == 0:
                ax.set_ylabel(f"{reg}\n{ylabel}", fontsize=8)
            ax.tick_params(labelsize=7)
    return _save(fig, path)


def _time_order(ds: xr.Dataset) -> list[str]:
    """Session labels in time order: baseline first, then the median ``time_since_dose``
    coordinate when the dataset has one, then durations in the labels (24h < 7d)."""
    from .collect import session_order

    labels = [str(s) for s in ds["session"].values]
    tsd: dict[str, float] = {}
    if "time_since_dose" in ds.coords:
        v = ds["time_since_dose"]
        other = [d for d in v.dims if d != "session"]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.asarray(v.median(dim=other).values if other else v.values, float)
        if "session" in v.dims:
            tsd = dict(zip(labels, med.reshape(-1).tolist(), strict=True))
    return session_order(labels, tsd)


def plot_forest(table: pd.DataFrame, path: str | os.PathLike[str], *,
                value: str = "mean_pct_change", low: str = "ci_low", high: str = "ci_high",
                title: str | None = None) -> Path:
    """Forest plot of % change (with CI) per region, arms as coloured markers, one panel per
    follow-up session; a dashed line at 0 and, when the table has ``mde_pct``, the arm's
    median MDE as a shaded band.

    Parameters
    ----------
    table : pandas.DataFrame
        A :func:`~sv2a.longitudinal.compare_arms` or
        :func:`~sv2a.longitudinal.cross_sectional_anova` table (columns ``region arm
        session`` plus ``value``, ``low``, ``high``).
    path : str or path-like
        Output file (.png, .svg, .pdf); written atomically, parent folders created.
    value, low, high : str
        Columns of the estimate and its CI limits (%), e.g. ``geo_pct_change``,
        ``geo_ci_low``, ``geo_ci_high``.
    title : str, optional
        Figure title (default from ``table.attrs['outcome']``).

    Returns
    -------
    pathlib.Path
        The written figure.

    Raises
    ------
    DataError
        Missing columns or no finite estimate.
    """
    need = {"region", "arm", "session", value, low, high}
    if not need <= set(table.columns):
        raise DataError(f"table lacks columns {sorted(need - set(table.columns))}")
    t = table[np.isfinite(table[value].astype(float))]
    if t.empty:
        raise DataError(f"no finite '{value}' to plot")
    from .collect import session_order

    sessions = session_order([str(x) for x in dict.fromkeys(t["session"])])
    t = t.assign(session=t["session"].astype(str))
    regions = list(dict.fromkeys(table["region"]))[::-1]
    arms = list(dict.fromkeys(t["arm"]))
    fig = _figure(3.4 * len(sessions) + 0.8, 0.32 * len(regions) * max(1, len(arms) / 2) + 1.4)
    axes = fig.subplots(1, len(sessions), squeeze=False, sharey=True)[0]
    off = np.linspace(-0.25, 0.25, len(arms)) if len(arms) > 1 else np.zeros(1)
    for si, ses in enumerate(sessions):
        ax = axes[si]
        ax.axvline(0, color="0.4", ls="--", lw=0.8)
        for ai, arm in enumerate(arms):
            s = t[(t["session"] == ses) & (t["arm"] == arm)]
            if s.empty:
                continue
            yy = np.array([regions.index(r) for r in s["region"]]) + off[ai]
            c = _COLORS[ai % len(_COLORS)]
            v = s[value].to_numpy(float)
            ax.errorbar(v, yy, xerr=[v - s[low].to_numpy(float), s[high].to_numpy(float) - v],
                        fmt="o", color=c, ms=4, capsize=2, lw=1,
                        label=f"{arm} (n={int(s['n'].median())})" if "n" in s else arm)
            if "mde_pct" in s and np.isfinite(s["mde_pct"]).any():
                mde = float(np.nanmedian(s["mde_pct"]))
                ax.axvspan(-mde, mde, color=c, alpha=0.08, lw=0,
                           label=f"{arm}: detectable change ±{mde:.0f} %")
        ax.set_title(f"session {ses}", fontsize=9)
        ax.set_xlabel(f"{value.replace('_', ' ')} (%; {int(100 * table.attrs.get('level', 0.95))}"
                      f" % CI)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best", title="band: minimal detectable effect"
                  if "mde_pct" in t else None, title_fontsize=7)
    axes[0].set_yticks(range(len(regions)), regions)
    if title or table.attrs.get("outcome"):
        fig.suptitle(title or f"{table.attrs.get('outcome')}: change per region and arm",
                     fontsize=10)
    return _save(fig, path)


def _load_map(m: object, key: tuple[str, str]) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(m, str | os.PathLike):
        import nibabel as nib

        p = Path(m)
        if not p.is_file():
            raise DataError(f"map for {key} not found: {p}")
        img = nib.load(str(p))
        if not isinstance(img, nib.spatialimages.SpatialImage):
            raise DataError(f"map for {key} is not a spatial image (NIfTI): {p}")
        data = np.asarray(img.dataobj, dtype=np.float64)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        return data, img.affine
    a = np.asarray(m, dtype=float)
    return a, None


def mean_change_maps(maps: Mapping, arms: xr.Dataset | Mapping, baseline: str, *,
                     mask: ArrayLike | None = None, min_baseline: float | None = None
                     ) -> tuple[dict[tuple[str, str], np.ndarray], np.ndarray | None,
                                dict[tuple[str, str], int]]:
    """Voxelwise mean % change ``100 (post / baseline - 1)`` per arm and follow-up session.

    Parameters
    ----------
    maps : mapping {(subject, session): 3D array or NIfTI path}
        Parametric maps on a common grid (e.g. BPND maps in template space).
    arms : xr.Dataset or mapping {subject: arm}
        Arm of each subject (a group dataset's ``arm`` coordinate works).
    baseline : str
        Baseline session label.
    mask : 3D bool array, optional
        Voxels to use; others are NaN.
    min_baseline : float, optional
        Voxels with baseline <= ``min_baseline`` (map units; default 0) in a subject are left
        out of that subject's change.

    Returns
    -------
    (means, affine, counts)
        ``means[(arm, session)]`` 3D % change arrays (%), the affine of the first NIfTI (4 x 4,
        voxel -> mm; or None), ``counts[(arm, session)]`` the number of subjects averaged.

    Raises
    ------
    DesignError
        Maps of subjects without an arm, or a follow-up map without its baseline map.
    ShapeMismatchError
        Maps on different grids.

    Examples
    --------
    >>> import numpy as np
    >>> maps = {("01", "bl"): np.full((2, 2, 2), 2.0), ("01", "24h"): np.full((2, 2, 2), 2.2)}
    >>> means, affine, counts = mean_change_maps(maps, {"01": "ketamine"}, "bl")
    >>> round(float(means[("ketamine", "24h")].mean()), 6), affine, counts
    (10.0, None, {('ketamine', '24h'): 1})
    """
    if isinstance(arms, xr.Dataset):
        arm_of = {str(s): str(a) for s, a in zip(arms["subject"].values, arms["arm"].values,
                                                 strict=True)}
    else:
        arm_of = {str(k).removeprefix("sub-"): str(v) for k, v in arms.items()}
    norm = {(str(k[0]).removeprefix("sub-"), str(k[1]).removeprefix("ses-")): v
            for k, v in maps.items()}
    no_arm = sorted({s for s, _ in norm if s not in arm_of})
    if no_arm:
        raise DesignError(f"maps given for subjects without an arm: {no_arm}")
    sums: dict = {}
    counts: dict = {}
    shape, affine = None, None
    thr = 0.0 if min_baseline is None else float(min_baseline)
    for (sub, ses), m in sorted(norm.items()):
        if ses == baseline:
            continue
        if (sub, baseline) not in norm:
            raise DesignError(f"sub-{sub} has a {ses} map but no {baseline} map.")
        post, aff = _load_map(m, (sub, ses))
        pre, aff0 = _load_map(norm[(sub, baseline)], (sub, baseline))
        affine = affine if affine is not None else (aff0 if aff0 is not None else aff)
        if shape is None:
            shape = pre.shape
        if pre.shape != shape or post.shape != shape:
            raise ShapeMismatchError(f"map grids differ: sub-{sub} ses-{ses} {post.shape}, "
                                     f"baseline {pre.shape}, first map {shape}; resample all "
                                     f"maps to one space first.")
        with np.errstate(all="ignore"):
            pct = np.where(pre > thr, 100 * (post / pre - 1), np.nan)
        if mask is not None:
            pct = np.where(np.asarray(mask, bool), pct, np.nan)
        key = (arm_of[sub], ses)
        s, c = sums.get(key, (np.zeros(shape), np.zeros(shape)))
        ok = np.isfinite(pct)
        s = s + np.where(ok, pct, 0)
        c = c + ok
        sums[key] = (s, c)
        counts[key] = counts.get(key, 0) + 1
    means = {k: np.where(c > 0, s / np.maximum(c, 1), np.nan) for k, (s, c) in sums.items()}
    return means, affine, counts


def plot_change_maps(maps: Mapping, arms: xr.Dataset | Mapping,
                     path: str | os.PathLike[str], baseline: str, *,
                     mask: ArrayLike | None = None, vmax: float | None = None,
                     nifti_dir: str | os.PathLike[str] | None = None,
                     min_baseline: float | None = None) -> Path:
    """Orthogonal mid-slices of the mean % change map per arm x follow-up session.

    Parameters
    ----------
    maps, arms, baseline, mask, min_baseline
        As :func:`mean_change_maps`.
    path : str or path-like
        Output figure (.png, .svg, .pdf).
    vmax : float, optional
        Colour scale limit (%; symmetric around 0); default the 98th percentile of the
        absolute mean change.
    nifti_dir : str or path-like, optional
        Also write the means as NIfTI here
        (``arm-<arm>_ses-<session>_meas-pctchange_map.nii.gz``, %; identity affine if no map
        had one).

    Returns
    -------
    pathlib.Path
        The written figure.

    Raises
    ------
    DesignError
        No follow-up map with a baseline map (and the errors of :func:`mean_change_maps`).
    """
    means, affine, counts = mean_change_maps(maps, arms, baseline, mask=mask,
                                             min_baseline=min_baseline)
    if not means:
        raise DesignError("no follow-up maps with a baseline map to average")
    keys = sorted(means)
    if vmax is None:
        allv = np.concatenate([np.abs(m[np.isfinite(m)]) for m in means.values()])
        vmax = float(np.percentile(allv, 98)) if allv.size else 1.0
        vmax = vmax or 1.0
    fig = _figure(7.5, 2.3 * len(keys) + 0.4)
    axes = fig.subplots(len(keys), 3, squeeze=False)
    im = None
    for i, key in enumerate(keys):
        m = means[key]
        c = [s // 2 for s in m.shape]
        for j, sl in enumerate((m[c[0], :, :], m[:, c[1], :], m[:, :, c[2]])):
            ax = axes[i, j]
            im = ax.imshow(np.rot90(sl), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_axis_off()
        axes[i, 0].set_title(f"{key[0]} {key[1]} (n={counts[key]})", fontsize=9, loc="left")
    fig.colorbar(im, ax=axes, shrink=0.6, label="mean % change")
    if nifti_dir is not None:
        import nibabel as nib

        d = Path(nifti_dir)
        d.mkdir(parents=True, exist_ok=True)
        for (arm, ses), m in means.items():
            img = nib.Nifti1Image(m.astype(np.float32),
                                  affine if affine is not None else np.eye(4))
            nib.save(img, str(d / f"arm-{arm}_ses-{ses}_meas-pctchange_map.nii.gz"))
    return _save(fig, path)
