"""The regional adapter: :func:`fit` runs a registered model's solver on regional TACs.

It validates the TACs, resolves ``input=``/``reference=`` and the frame weights, estimates
``k2'`` where asked (:mod:`sv2a.models.k2prime`), calls the model's solver once with every
region as a row (``se=True``), and labels the result: an ``xr.Dataset`` over ``region`` with
the parameters, their standard errors ``<name>_se``, ``rss``, ``aic``, ``n_frames``, ``tstar``,
``converged``, ``at_bound``, ``message`` and every setting in ``attrs``. The voxel adapter
(:func:`sv2a.parametric_maps`) calls the same solver on chunks of voxels.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from ..blood import check_tissue_plasma
from ..errors import DataError, InputFunctionError, ModelError, RegionError, ShapeMismatchError
from ..frames import FrameSchedule
from ..tacs import frames_of, region_name
from .base import (
    FLAG_NEG_DENOMINATOR,
    FLAG_NONFINITE,
    FLAG_NOT_CONVERGED,
    FLAGS,
    Model,
    ModelInputs,
    check_enough_frames,
    check_reference,
    parse_options,
)
from .k2prime import resolve_k2prime
from .lsq import aic
from .registry import get, require
from .result import build_result

__all__ = ["fit", "predict_fit", "check_kind", "common_weights", "region_matrix",
           "resolve_reference", "option_attrs", "NEGATIVE_TOLERANCE"]

FloatArray = NDArray[np.float64]

#: Negative TAC values are accepted only down to this fraction of the region's peak
#: (counting noise around zero in early frames); below it :func:`fit` raises.
NEGATIVE_TOLERANCE = 0.02


def fit(tacs: xr.DataArray, model: str, *, input: Any = None, reference: Any = None,
        **options: Any) -> xr.Dataset:
    """Fit a kinetic model to regional TACs.

    Parameters
    ----------
    tacs : xr.DataArray
        Regional TACs (region x frame, kBq/mL, frame times in min) from
        :func:`sv2a.extract_tacs` or :func:`sv2a.tacs_from_arrays`.
    model : str
        A name from :func:`sv2a.models.available` (``1tcm 2tcm logan ma1 srtm srtm2 mrtm
        mrtm2 logan_ref suv suvr``).
    input : InputFunction, optional
        Metabolite-corrected plasma input, for plasma-input models (and only for them).
    reference : str, bool array (n_regions,) or array (n_frames,), optional
        Reference region for reference-tissue models and SUVR: a region name, a boolean mask
        over the regions (their volume-weighted mean TAC), or the reference TAC itself. A
        reference region taken from the TACs is left out of the result.
    **options
        The model's options (its ``Options`` dataclass: e.g. ``weights``, ``method``,
        ``rate_range``, ``k2prime``, ``tstar``, ``window``); an option the model does not take
        raises :class:`~sv2a.errors.ModelError` listing the valid ones.

    Returns
    -------
    xr.Dataset
        Over ``region``: the parameters (``K1 k2 k3 k4 vB delay VT VND VS BPND BPP DVR R1
        k2prime k2a SUV SUVR`` as the model reports them), ``<name>_se``, ``rss``, ``aic``,
        ``n_frames``, ``tstar`` (min), ``converged``, ``at_bound`` and ``message`` (why a
        region failed, empty otherwise); units in each variable's attrs; every setting in
        ``attrs``. A region whose TAC holds a non-finite value gets NaN and a message; the
        other regions are unaffected.

    Raises
    ------
    ModelError
        Unknown model, a model without regional fits, or an option it does not take.
    RegionError
        Missing or unknown reference region.
    InputFunctionError
        A plasma-input model without ``input=``.
    DataError
        TACs of the wrong shape, an all-zero region, or clearly negative values.

    Examples
    --------
    >>> import numpy as np, sv2a
    >>> from sv2a.models.srtm import srtm_predict
    >>> fr = sv2a.FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 14)
    >>> cr = 10 * fr.mid * np.exp(-fr.mid / 8) + 0.5
    >>> ct = srtm_predict(fr, cr, R1=[1.1, 0.9], k2=[0.12, 0.09], k2a=[0.04, 0.045])
    >>> tacs = sv2a.tacs_from_arrays(np.vstack([ct, cr]), fr.start, fr.end,
    ...                              ["frontal", "putamen", "centrum_semiovale"])
    >>> res = sv2a.fit(tacs, model="srtm", reference="centrum_semiovale")
    >>> res["BPND"].round(3).values
    array([2., 1.])
    """
    cls = require(model, scale="region")
    opts: Any = parse_options(cls.Options, options, cls.name)
    values, regions, frames, volumes = region_matrix(tacs, cls.name)
    check_kind(cls, input, reference)
    settings: dict[str, Any] = {}
    ref_tac = None
    if cls.kind == "reference":
        ref_tac, label, keep = resolve_reference(reference, values, regions, volumes, frames,
                                                 cls.name)
        values, volumes = values[keep], volumes[keep]
        regions = [regions[i] for i in keep]
        settings["reference"] = label
    elif cls.kind == "plasma":
        settings["input"] = getattr(input, "source", "InputFunction")
        check_tissue_plasma(input, frames.start, frames.end, values,
                            what=str((getattr(tacs, "attrs", {}) or {}).get("pet", "the TACs")))
    w_rows = _row_weights(opts, values, frames)
    if hasattr(opts, "k2prime") and not (cls.name == "srtm" and opts.k2prime is None):
        rows, rw = _k2prime_rows(opts, values, regions, volumes, cls.name)
        k2p, info = resolve_k2prime(
            opts, model=cls.name, frames=frames, reference=_req(ref_tac), rows=rows,
            row_weights=rw, weights=common_weights(opts, rows, rw, frames),
            allow_none=cls.name == "logan_ref")
        opts = dataclasses.replace(opts, k2prime=k2p)
        settings.update(info)
        settings["k2prime_used"] = "none" if k2p is None else k2p
    attrs_src = getattr(tacs, "attrs", {}) or {}
    common = dict(frames=frames, reference=ref_tac, input=input, scale="region",
                  injected_mbq=attrs_src.get("injected_mbq"),
                  body_weight_kg=attrs_src.get("body_weight_kg"))
    out, solver = _solve_groups(cls, opts, common, values, w_rows)
    settings.update(option_attrs(opts))
    settings.update(solver.settings)
    settings["scan_end_min"] = float(frames.end[-1])
    settings["n_frames_scan"] = frames.n
    return _result(cls, solver, regions, values, out, settings)


# ----------------------------------------------------------------------------- inputs
def region_matrix(tacs: Any, model: str, *,
                  negative_tolerance: float = NEGATIVE_TOLERANCE
                  ) -> tuple[FloatArray, list[str], FrameSchedule, FloatArray]:
    """Validated TAC values, region names, frames and region weights (volumes).

    Parameters
    ----------
    tacs : xr.DataArray (region x frame)
        TACs (kBq/mL) with frame coordinates (min).
    model : str
        Model name, for messages.
    negative_tolerance : float
        Values below ``-negative_tolerance * max(|region|)`` raise.

    Returns
    -------
    values : array (n_regions, n_frames)
    regions : list of str
    frames : FrameSchedule
    volumes : array (n_regions,)
        ``n_voxels`` or ``volume_ml`` coordinate when present (weights of the regions in a
        pooled estimate such as the coupled ``k2'``), else ones.

    Raises
    ------
    DataError
        Not a (region, frame) DataArray, an all-zero region, or clearly negative values.
    """
    if not isinstance(tacs, xr.DataArray) or "region" not in tacs.dims \
            or "frame" not in tacs.dims:
        raise DataError(
            f"{model}: TACs must be an xr.DataArray with dims ('region', 'frame'), got "
            f"{type(tacs).__name__} {getattr(tacs, 'dims', '')}; build them with "
            "sv2a.tacs_from_arrays or sv2a.extract_tacs")
    t = tacs.transpose("region", "frame")
    values = np.asarray(t.values, dtype=float)
    names = np.asarray(t["region"].values).astype(str).tolist()
    frames = frames_of(t)
    if "n_voxels" in t.coords:
        vol = np.asarray(t["n_voxels"].values, dtype=float)
    elif "volume_ml" in t.coords:
        vol = np.asarray(t["volume_ml"].values, dtype=float)
    else:
        vol = np.ones(len(names))
    fin = np.where(np.isfinite(values), values, 0.0)
    peak = np.max(np.abs(fin), axis=1)
    zero = np.flatnonzero((peak == 0) & np.all(np.isfinite(values), axis=1))
    if zero.size:
        raise DataError(f"{model}: region '{names[zero[0]]}' is zero in every frame; check the "
                        "atlas label and the image")
    neg = fin < -negative_tolerance * peak[:, None]
    if neg.any():
        r, f = np.argwhere(neg)[0]
        raise DataError(
            f"{model}: negative TAC value {values[r, f]:.4g} kBq/mL in region '{names[r]}' at "
            f"frame index {f} (more than {100 * negative_tolerance:g} % of the region's peak); "
            "check the background/scatter correction and the units")
    return values, names, frames, vol


def check_kind(cls: type[Model], input: Any, reference: Any) -> None:
    """Refuse inputs the model does not use and demand those it needs (both scales).

    Parameters
    ----------
    cls : type
        The model class.
    input : InputFunction or None
        ``input=`` as given.
    reference : object or None
        ``reference=`` as given.

    Raises
    ------
    InputFunctionError
        A plasma-input model without a valid input function.
    RegionError
        A reference-tissue model without a reference.
    ModelError
        An input or reference the model would ignore.
    """
    name = cls.name
    if cls.kind == "plasma":
        if input is None:
            raise InputFunctionError(
                f"model '{name}' needs a plasma input function: sv2a.fit(tacs, model='{name}', "
                "input=sv2a.load_blood(...)) or input=sv2a.InputFunction(time=..., plasma=...)")
        if not hasattr(input, "plasma_at"):
            raise InputFunctionError(
                f"model '{name}': input must be an sv2a.InputFunction, got "
                f"{type(input).__name__}")
        if reference is not None:
            raise ModelError(f"{name}: a plasma-input model does not use reference=; did you "
                             "mean a reference-tissue model such as srtm2?")
    else:
        if input is not None:
            raise ModelError(f"{name}: does not use a plasma input (input=); it is a "
                             f"{cls.kind} model")
        if cls.kind == "static" and reference is not None:
            raise ModelError(f"{name}: uses no reference region; use model='suvr' for ratios")
        if cls.kind == "reference" and reference is None:
            raise RegionError(
                f"{name}: a reference region is required: pass reference='<region name>', a "
                "boolean mask over the regions, or the reference TAC (one value per frame)")


def resolve_reference(reference: Any, values: FloatArray, regions: Sequence[str],
                      volumes: FloatArray, frames: FrameSchedule, model: str
                      ) -> tuple[FloatArray, str, list[int]]:
    """Reference TAC from a region name, a boolean mask over regions or a TAC.

    Parameters
    ----------
    reference : str, bool array (n_regions,) or array (n_frames,)
        The reference.
    values : array (n_regions, n_frames)
        Regional TACs (kBq/mL).
    regions : sequence of str
        Region names.
    volumes : array (n_regions,)
        Region weights for a multi-region reference.
    frames : FrameSchedule
        Frame timing.
    model : str
        Model name, for messages.

    Returns
    -------
    tac : array (n_frames,)
        Reference TAC (kBq/mL).
    label : str
        How the reference was given (region name(s) or ``"array"``).
    keep : list of int
        Target regions (the reference region(s) left out).

    Raises
    ------
    RegionError
        Unknown region name or an empty mask.
    ShapeMismatchError
        A mask or TAC of the wrong length.
    DataError
        A non-finite or non-positive reference TAC.
    """
    n = len(regions)
    if isinstance(reference, str):
        key = region_name(reference)
        if key not in regions:
            raise RegionError(
                f"{model}: reference region '{reference}' is not among the TAC regions "
                f"{list(regions)}; pass one of these names, a boolean mask over the regions or "
                "the reference TAC as an array")
        sel = np.array([r == key for r in regions])
        label = key
    else:
        arr = np.asarray(getattr(reference, "values", reference))
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ShapeMismatchError(
                    f"{model}: a boolean reference mask must have one value per region ({n}), "
                    f"got shape {arr.shape}")
            if not arr.any():
                raise RegionError(f"{model}: the reference mask selects no region")
            sel = arr
            label = "+".join(r for r, s in zip(regions, sel, strict=True) if s)
        else:
            return check_reference(arr, frames.n), "array", list(range(n))
    ref = check_reference((volumes[sel] @ values[sel]) / volumes[sel].sum(), frames.n)
    keep = [i for i in range(n) if not sel[i]]
    if not keep:
        raise RegionError(f"{model}: no target regions left to fit besides the reference")
    return ref, label, keep


def _req(x: FloatArray | None) -> FloatArray:
    if x is None:
        raise ModelError("k2prime needs a reference TAC")
    return x


def _row_weights(opts: Any, values: FloatArray, frames: FrameSchedule) -> FloatArray:
    """Frame weights per row (n, n_frames); ones for models without a weights option."""
    from ..weights import frame_weights

    if not hasattr(opts, "weights"):
        return np.ones(values.shape)
    safe = np.where(np.isfinite(values), values, 0.0)
    w = frame_weights(opts.weights, safe, frames, half_life=opts.half_life)
    return np.broadcast_to(np.asarray(w, dtype=float), values.shape)


def common_weights(opts: Any, rows: FloatArray, rw: FloatArray | None,
                   frames: FrameSchedule) -> FloatArray:
    """Frame weights common to many TACs, from their weighted mean TAC (both scales).

    Parameters
    ----------
    opts : dataclass
        Model options (``weights``, ``half_life``); ones when the model takes no weights.
    rows : array (n, n_frames)
        TACs (kBq/mL); rows with non-finite values are skipped.
    rw : array (n,), optional
        Row weights (region volumes); default equal.
    frames : FrameSchedule
        Frame timing.

    Returns
    -------
    array (n_frames,)
    """
    from ..weights import frame_weights

    if not hasattr(opts, "weights"):
        return np.ones(frames.n)
    good = np.all(np.isfinite(rows), axis=1)
    rw = np.ones(rows.shape[0]) if rw is None else rw
    mean = (rw[good] @ rows[good]) / max(float(rw[good].sum()), 1e-300)
    return np.asarray(frame_weights(opts.weights, mean, frames, half_life=opts.half_life),
                      dtype=float).reshape(-1)


def _k2prime_rows(opts: Any, values: FloatArray, regions: list[str], volumes: FloatArray,
                  model: str) -> tuple[FloatArray, FloatArray]:
    sel = getattr(opts, "k2prime_region", None)
    if sel is None:
        return values, volumes
    names = [sel] if isinstance(sel, str) else list(sel)
    idx = []
    for nm in names:
        key = region_name(str(nm))
        if key not in regions:
            raise RegionError(f"{model}: k2prime_region '{nm}' is not a target region; choose "
                              f"from {regions}")
        idx.append(regions.index(key))
    return values[idx], volumes[idx]


def _solve_groups(cls: type[Model], opts: Any, common: dict[str, Any], values: FloatArray,
                  w_rows: FloatArray) -> tuple[dict[str, NDArray[Any]], Model]:
    """One solver per distinct weight vector (TAC-dependent weights differ per region)."""
    n = values.shape[0]
    groups: dict[bytes, list[int]] = {}
    if np.all(w_rows == w_rows[:1]):           # common weights (the usual case): one group
        groups[b""] = list(range(n))
    else:
        for i in range(n):
            groups.setdefault(np.ascontiguousarray(w_rows[i]).tobytes(), []).append(i)
    if len(groups) > 1 and cls.row_weights:   # linear methods take weights per row
        first = cls(ModelInputs(weights=np.array(w_rows[0]), **common), opts)
        check_enough_frames(first)
        solver_rows = first.with_weights(np.array(w_rows))
        return solver_rows.solve(values, se=True), first
    out: dict[str, NDArray[Any]] = {}
    solver: Model | None = None
    for rows in groups.values():
        w = np.array(w_rows[rows[0]])
        s = cls(ModelInputs(weights=w, **common), opts) if solver is None \
            else solver.with_weights(w)
        check_enough_frames(s)
        solver = solver or s
        res = s.solve(values[rows], se=True)
        for k, v in res.items():
            if k not in out:
                out[k] = np.full(n, np.nan) if v.dtype.kind == "f" else np.zeros(n, v.dtype)
            out[k][rows] = v
    if solver is None:  # no target rows
        raise RegionError(f"{cls.name}: no target regions to fit")
    return out, solver


def option_attrs(opts: Any) -> dict[str, Any]:
    """Options as attrs (arrays as lists, an array of weights as ``"array"``).

    Parameters
    ----------
    opts : dataclass
        Model options.

    Returns
    -------
    dict
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(opts):
        v = getattr(opts, f.name)
        if isinstance(v, np.ndarray):
            v = "array" if f.name == "weights" else v.tolist()
        elif f.name == "weights" and not isinstance(v, str):
            v = "array"
        out[f.name] = v
    return out


# ----------------------------------------------------------------------------- result
_FAILED_BITS = FLAG_NONFINITE | FLAG_NOT_CONVERGED | FLAG_NEG_DENOMINATOR


def _messages(cls: type[Model], regions: list[str], values: FloatArray,
              flag: NDArray[Any]) -> list[str]:
    msgs = [""] * len(regions)
    for i in np.flatnonzero(flag):
        r, f = regions[i], int(flag[i])
        parts = []
        bad = np.flatnonzero(~np.isfinite(values[i]))
        if bad.size:
            parts.append(f"non-finite TAC value at frame index {int(bad[0])} "
                         f"({bad.size} in all); fix or drop the region")
        parts.extend(name for bit, name in FLAGS.items()
                     if f & bit and not (bit == FLAG_NONFINITE and bad.size))
        what = "fit failed" if f & _FAILED_BITS else "fit warning"
        msgs[i] = f"{cls.name} {what} for region '{r}': {'; '.join(parts)}"
    return msgs


def _result(cls: type[Model], solver: Model, regions: list[str], values: FloatArray,
            out: dict[str, NDArray[Any]], settings: dict[str, Any]) -> xr.Dataset:
    flag = np.asarray(out.pop("flag"), dtype=np.uint8)
    n_frames = np.asarray(out.pop("n_frames"), dtype=int)
    vals: dict[str, Any] = dict(out)
    vals["n_frames"] = n_frames
    if "rss" in out:
        vals["aic"] = np.where(np.isfinite(out["rss"]),
                               aic(out["rss"], np.maximum(n_frames, 1), solver.n_fitted),
                               np.nan)
    vals["tstar"] = np.full(len(regions), np.nan if solver.tstar is None else solver.tstar)
    vals["converged"] = (flag & _FAILED_BITS) == 0
    vals["at_bound"] = (flag & 1) != 0
    vals["message"] = np.array(_messages(cls, regions, values, flag), dtype=object)
    units = dict(cls.units)
    units.update({f"{k}_se": u for k, u in cls.units.items()})
    units.setdefault("tstar", "min")
    return build_result(cls.name, regions, vals, attrs=settings, units=units)


# ----------------------------------------------------------------------------- predict
def _attr(v: Any) -> Any:
    if isinstance(v, str):
        if v == "none":
            return None
        if v[:1] in "[{":
            try:
                return json.loads(v)
            except ValueError:
                return v
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def predict_fit(result: xr.Dataset, tacs: xr.DataArray, *, region: str | None = None,
                input: Any = None, reference: Any = None) -> FloatArray:
    """Model TACs of a regional fit, by the model's own ``predict``.

    Parameters
    ----------
    result : xr.Dataset
        A result of :func:`fit` (its attrs say the model and its settings).
    tacs : xr.DataArray
        The TACs that were fitted (for the frames and a named reference region).
    region : str, optional
        One region (default: every region of ``result``).
    input : InputFunction, optional
        The plasma input (plasma-input models).
    reference : str or array, optional
        The reference (default: the region named in ``result.attrs["reference"]``).

    Returns
    -------
    array (n_regions, n_frames)
        Model TACs (kBq/mL) on the frames of ``tacs``.

    Raises
    ------
    ModelError
        A static model (no forward model), or a reference that cannot be found.
    """
    cls = get(str(result.attrs["model"]))
    frames = frames_of(tacs)
    fields = {f.name for f in dataclasses.fields(cls.Options)}
    kw: dict[str, Any] = {}
    for k in fields:
        if k in result.attrs and k not in ("weights", "k2prime_region"):
            v = _attr(result.attrs[k])
            kw[k] = tuple(v) if isinstance(v, list) else v
    if "k2prime" in fields:
        kp = _attr(result.attrs.get("k2prime_used"))
        kw["k2prime"] = kp if isinstance(kp, int | float) else (
            None if cls.name in ("logan_ref", "srtm") else 0.01)
    try:
        opts: Any = parse_options(cls.Options, kw, cls.name)
    except (ModelError, TypeError):
        opts = cls.Options()
    ref_tac = None
    if cls.kind == "reference":
        ref = reference if reference is not None else result.attrs.get("reference")
        if isinstance(ref, str):
            names = [str(r) for r in tacs["region"].values]
            if ref not in names:
                raise ModelError(f"predict_fit: reference region '{ref}' is not in the TACs; "
                                 "pass reference= (a region name or TAC)")
            ref = np.asarray(tacs.sel(region=ref).values, dtype=float)
        ref_tac = check_reference(ref, frames.n)
    solver = cls(ModelInputs(frames=frames, weights=np.ones(frames.n), reference=ref_tac,
                             input=input), opts)
    sel = result if region is None else result.sel(region=[region])
    params = {str(k): np.asarray(sel[k].values, dtype=float) for k in sel.data_vars
              if sel[k].dtype.kind == "f"}
    return solver.predict(params)
