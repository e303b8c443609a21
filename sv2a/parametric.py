"""Voxelwise parametric maps: BPND, R1, DVR, SUVR, SUV, VT and K1 images.

:func:`parametric_maps` fits a kinetic model to every voxel of a mask with the vectorised
solvers of :mod:`sv2a.models.basis` (no Python loop over voxels): voxels are processed in
chunks (bounded memory), each chunk with a few matrix products. When the image is a dask array
(or ``chunks=`` is given) the work runs as a dask graph over spatial blocks (time kept whole),
with the same numbers as the in-memory path, so images larger than memory or a dask cluster
(``distributed.Client``) work too.

The result is an ``xr.Dataset`` of 3D maps (dims ``x y z``, NaN outside the mask) plus a
``flag`` map (bit field, see :data:`sv2a.models.basis.FLAGS`) and the settings in ``attrs``.
``maps.sv2a.to_nifti(out_dir, stem)`` writes one NIfTI per map with a JSON sidecar, named
``<stem>_model-<MODEL>_meas-<PARAM>_mimap.nii.gz`` (DESIGN §5).

Example
-------
>>> maps = sv2a.parametric_maps(pet, model="srtm2",                    # doctest: +SKIP
...                             reference=atlas.mask("centrum_semiovale"),
...                             mask=brain & ~atlas.mask("centrum_semiovale"))
>>> maps.sv2a.to_nifti("out/sub-01/ses-bl/pet", "sub-01_ses-bl")       # doctest: +SKIP
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .errors import (
    DataError,
    InputFunctionError,
    ModelError,
    RegionError,
    ShapeMismatchError,
    Sv2aWarning,
)
from .frames import FrameSchedule
from .models import basis as B
from .models._common import check_options, select_frames
from .models.result import clean_attrs
from .weights import frame_weights

__all__ = ["parametric_maps", "MAP_MODELS", "map_filename", "Sv2aMapsAccessor"]

#: Units of every map parameter.
UNITS = {"BPND": "1", "R1": "1", "k2": "1/min", "k2a": "1/min", "k2prime": "1/min",
         "DVR": "1", "SUVR": "1", "SUV": "g/mL", "VT": "mL/cm3", "K1": "mL/cm3/min",
         "vB": "1", "rss": "weighted (kBq/mL)^2", "flag": "1"}

DESCRIPTIONS = {
    "BPND": "non-displaceable binding potential",
    "R1": "relative delivery K1/K1' (target vs reference)",
    "k2": "target efflux rate constant k2",
    "k2a": "apparent efflux rate k2a = k2/(1+BPND)",
    "k2prime": "reference efflux rate k2' = k2/R1",
    "DVR": "distribution volume ratio to the reference",
    "SUVR": "standardised uptake value ratio to the reference",
    "SUV": "standardised uptake value",
    "VT": "total volume of distribution",
    "K1": "influx rate constant K1",
    "vB": "blood volume fraction",
    "rss": "weighted residual sum of squares of the fit",
    "flag": "quality bit field: " + ", ".join(f"{b} = {n}" for b, n in B.FLAGS.items()),
}

_COMMON = {"fwhm": None, "chunk_size": None, "chunks": None, "warn": True, "progress": False}
_FIT_COMMON = {**_COMMON, "weights": "auto", "half_life": None}
_REF_COMMON = {"allow_overlap": False}

#: Map models and their options with defaults (kind: reference / plasma / static).
MAP_MODELS: dict[str, dict[str, Any]] = {
    "srtm": {"kind": "reference", "defaults": {
        **_FIT_COMMON, **_REF_COMMON, "k2a_min": 0.01, "k2a_max": 1.0, "n_basis": 100,
        "refine": True}},
    "srtm2": {"kind": "reference", "defaults": {
        **_FIT_COMMON, **_REF_COMMON, "k2a_min": 0.005, "k2a_max": 1.0, "n_basis": 100,
        "refine": True, "k2prime": "coupled", "k2prime_region": None}},
    "mrtm2": {"kind": "reference", "defaults": {
        **_FIT_COMMON, **_REF_COMMON, "tstar": None, "n_frames": None, "k2prime": "coupled",
        "k2prime_region": None}},
    "logan_ref": {"kind": "reference", "defaults": {
        **_FIT_COMMON, **_REF_COMMON, "tstar": None, "n_frames": None, "k2prime": None,
        "k2prime_region": None}},
    "suvr": {"kind": "reference", "defaults": {
        **_COMMON, **_REF_COMMON, "window": (60.0, 90.0)}},
    "suv": {"kind": "static", "defaults": {
        **_COMMON, "window": (60.0, 90.0), "injected_mbq": None, "body_weight_kg": None}},
    "1tcm": {"kind": "plasma", "defaults": {
        **_FIT_COMMON, "vB": "fit", "delay": 0.0, "k2_min": 0.002, "k2_max": 1.0,
        "n_basis": 100, "refine": True}},
    "logan": {"kind": "plasma", "defaults": {
        **_FIT_COMMON, "tstar": None, "n_frames": None, "delay": 0.0}},
    "ma1": {"kind": "plasma", "defaults": {
        **_FIT_COMMON, "tstar": None, "n_frames": None, "delay": 0.0}},
}
_ALIASES = {"loganref": "logan_ref", "reflogan": "logan_ref", "logan_reference": "logan_ref",
            "onetcm": "1tcm", "srtm_basis": "srtm", "srtm2_basis": "srtm2"}


def map_filename(stem: str, model: str, param: str) -> str:
    """DESIGN §5 file name ``<stem>_model-<MODEL>_meas-<PARAM>_mimap.nii.gz``."""
    return f"{stem}_model-{model.upper().replace('_', '')}_meas-{param}_mimap.nii.gz"


# ====================================================================== input handling
def _resolve_pet(pet, frames, affine, chunks=None):
    if hasattr(pet, "frames") and hasattr(type(pet), "data"):  # DynamicPET (no read here)
        fr = pet.frames if frames is None else frames
        aff = np.asarray(pet.affine if affine is None else affine, dtype=float)
        meta = dict(getattr(pet, "meta", {}) or {})
        # out of core: with chunks= a file-backed image is read block by block, never whole
        data = pet.to_dask(tuple(chunks)[:3]) if chunks is not None else pet.data
    else:
        if frames is None:
            raise ModelError(
                "parametric_maps: a plain array needs frames= (a sv2a.FrameSchedule); or pass "
                "a sv2a.DynamicPET (sv2a.load_pet / DynamicPET.from_array)"
            )
        fr, data, meta = frames, pet, {}
        aff = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    if not isinstance(fr, FrameSchedule):
        raise ModelError(f"frames must be a sv2a.FrameSchedule, got {type(fr).__name__}")
    if not _is_dask(data):
        data = np.asarray(data)
    if data.ndim != 4:
        raise ShapeMismatchError(
            f"parametric maps need a 4D image (x, y, z, frame); got shape {tuple(data.shape)}"
        )
    if data.shape[3] != fr.n:
        raise ShapeMismatchError(
            f"the image has {data.shape[3]} frames but the frame schedule lists {fr.n}"
        )
    if aff.shape != (4, 4):
        raise ShapeMismatchError(f"affine must be 4x4, got shape {aff.shape}")
    return data, fr, aff, meta


def _is_dask(a) -> bool:
    return hasattr(a, "chunks") and hasattr(a, "compute") and not isinstance(a, np.ndarray)


def _as_mask(m, shape3, what: str) -> np.ndarray:
    m = np.asarray(m.compute() if _is_dask(m) else m)
    if m.shape != tuple(shape3):
        raise ShapeMismatchError(
            f"{what} has shape {m.shape} but the image grid is {tuple(shape3)}; resample it to "
            "the PET grid first"
        )
    if m.dtype != bool:
        if not np.all(np.isfinite(m)):
            raise DataError(f"{what} has non-finite values; give a boolean mask")
        m = m != 0
    return m


def _voxel_size(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((affine[:3, :3] ** 2).sum(axis=0))


def _sigma_vox(fwhm, affine) -> tuple[float, float, float, float] | None:
    if fwhm is None or fwhm == 0:
        return None
    f = np.broadcast_to(np.asarray(fwhm, dtype=float), (3,))
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ModelError(f"fwhm must be a non-negative number of mm (or three), got {fwhm!r}")
    sig = f / (2.0 * math.sqrt(2.0 * math.log(2.0))) / _voxel_size(affine)
    return (float(sig[0]), float(sig[1]), float(sig[2]), 0.0)


def _smooth_numpy(data: np.ndarray, sigma) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = np.empty(data.shape, dtype=np.float32)
    for k in range(data.shape[3]):  # frame by frame keeps the temporary small
        out[..., k] = gaussian_filter(np.asarray(data[..., k], dtype=np.float32), sigma[:3],
                                      mode="nearest", truncate=4.0)
    return out


def _smooth_block(block: np.ndarray, sigma) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.asarray(block, dtype=np.float32), sigma, mode="nearest",
                           truncate=4.0)


# ====================================================================== reference and k2'
def _reference_tac(reference, data, mask, frames, opts, is_dask):
    """Reference TAC (float64) and a description; also validates overlap with the mask."""
    if reference is None:
        raise RegionError(
            "reference-tissue maps need reference= (a boolean 3D mask of the reference region, "
            "e.g. atlas.mask('centrum_semiovale'), or its TAC)"
        )
    if isinstance(reference, str):
        raise RegionError(
            f"reference={reference!r}: parametric_maps needs the reference region's voxels; "
            f"pass atlas.mask({reference!r}) (a boolean 3D array) or the reference TAC"
        )
    if isinstance(reference, xr.DataArray):
        reference = reference.values
    ref_arr = reference if _is_dask(reference) else np.asarray(reference)
    if ref_arr.ndim == 1:
        tac = np.asarray(ref_arr, dtype=float)
        if tac.size != frames.n:
            raise ShapeMismatchError(
                f"reference TAC has {tac.size} values but the image has {frames.n} frames"
            )
        return B._check_reference(tac, frames.n), {"reference": "TAC given"}
    rmask = _as_mask(ref_arr, data.shape[:3], "reference mask")
    nref = int(rmask.sum())
    if nref == 0:
        raise RegionError(
            "the reference mask is empty (no voxel set); check the atlas label and that the "
            "mask is on the PET grid"
        )
    overlap = int(np.count_nonzero(rmask & mask))
    if overlap and not opts.get("allow_overlap", False):
        raise RegionError(
            f"the reference mask overlaps the target mask in {overlap} voxel(s) "
            f"({100.0 * overlap / nref:.3g} % of the reference); pass mask=mask & ~reference, "
            "or allow_overlap=True to also map the reference voxels"
        )
    if is_dask:
        import dask.array as da

        r = da.from_array(rmask, chunks=data.chunks[:3])[..., None]
        tac = np.asarray((data.astype(np.float64) * r).sum(axis=(0, 1, 2)).compute()) / nref
    else:
        flat = data.reshape(-1, data.shape[3])
        tac = flat[np.flatnonzero(rmask.ravel())].astype(np.float64).mean(axis=0)
    return B._check_reference(tac, frames.n), {"reference": f"mask ({nref} voxels)",
                                               "reference_n_voxels": nref}


def _resolve_k2prime(opts, ref_tac, frames, weights, voxel_tacs, model, shape3, data, is_dask,
                     allow_none: bool):
    kp = opts["k2prime"]
    region = opts.get("k2prime_region")
    if kp is None:
        if allow_none:
            return None, {"k2prime_source": "none (no k2' term)"}
        raise ModelError(f"{model}: needs k2prime= (a number, a regional fit, or 'coupled')")
    if isinstance(kp, xr.Dataset):
        if "k2prime" not in kp:
            raise ModelError(f"{model}: the Dataset given as k2prime= has no 'k2prime' variable")
        vals = np.asarray(kp["k2prime"].values, dtype=float).ravel()
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if vals.size == 0:
            raise ModelError(f"{model}: the regional fit given as k2prime= has no finite k2'")
        return float(np.median(vals)), {"k2prime_source": "regional fit (median over regions)"}
    if isinstance(kp, str):
        if kp not in ("coupled", "srtm"):
            raise ModelError(
                f"{model}: k2prime must be a number (1/min), a regional fit Dataset, 'coupled' "
                f"or 'srtm', got {kp!r}"
            )
        rows = voxel_tacs
        src = "target mask voxels"
        if region is not None:
            rows, src = _region_rows(region, data, shape3, frames, is_dask)
        rng = (opts.get("k2a_min", 0.005), opts.get("k2a_max", 1.0))
        nb = opts.get("n_basis", 100)
        if kp == "srtm":
            tac = np.asarray(rows, dtype=float).reshape(-1, frames.n).mean(axis=0)
            r = B.srtm_basis(tac, ref_tac, frames, weights=weights, basis_range=(0.005, 1.0),
                             n_basis=400)
            k = float(r["k2prime"][0])
            if not (np.isfinite(k) and k > 0):
                raise ModelError(f"{model}: the SRTM fit of {src} gave no usable k2' ({k})")
            return k, {"k2prime_source": f"SRTM basis fit of the mean TAC of {src}"}
        k, info = B.estimate_k2prime(rows, ref_tac, frames, weights=weights, basis_range=rng,
                                     n_basis=nb)
        info["k2prime_source"] = f"coupled SRTM2 over {src}"
        return k, info
    return B._check_k2prime(kp), {"k2prime_source": "given"}


def _region_rows(region, data, shape3, frames, is_dask):
    arr = np.asarray(region.compute() if _is_dask(region) else region)
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[-1] == frames.n):
        return arr.reshape(-1, frames.n).astype(float), "the given TAC(s)"
    m = _as_mask(arr, shape3, "k2prime_region")
    if not m.any():
        raise RegionError("k2prime_region is empty")
    if is_dask:
        idx = np.flatnonzero(m.ravel())
        flat = data.reshape(-1, frames.n)
        rows = np.asarray(flat[idx].compute(), dtype=float)
    else:
        rows = data.reshape(-1, frames.n)[np.flatnonzero(m.ravel())].astype(float)
    return rows, f"k2prime_region ({int(m.sum())} voxels)"


# ====================================================================== main entry
def parametric_maps(
    pet,
    model: str = "srtm2",
    *,
    reference=None,
    input=None,
    mask=None,
    frames: FrameSchedule | None = None,
    affine=None,
    **options,
) -> xr.Dataset:
    """Voxelwise parametric maps of a dynamic PET image.

    Parameters
    ----------
    pet : sv2a.DynamicPET or array (x, y, z, frame)
        The image in kBq/mL (decay corrected). A numpy array is processed in chunks of voxels;
        a dask array (or ``chunks=``) runs as a dask graph over spatial blocks. Plain arrays
        need ``frames=`` (and ``affine=`` for NIfTI output).
    model : str
        ``srtm`` (basis functions), ``srtm2`` (basis functions, k2' fixed), ``mrtm2``,
        ``logan_ref``, ``suvr``, ``suv``, and with ``input=``: ``1tcm`` (basis functions),
        ``logan``, ``ma1``.
    reference : bool array (x, y, z) or array (n_frames,)
        Reference region mask (its mean TAC is used; the reference is not smoothed) or its
        TAC, for reference-tissue models and SUVR.
    input : InputFunction
        Metabolite-corrected plasma input for plasma models.
    mask : bool array (x, y, z), optional
        Voxels to fit (default: voxels with a positive value in some frame). Must not overlap
        the reference mask unless ``allow_overlap=True``.
    frames, affine
        Frame schedule and voxel-to-mm affine for plain arrays.
    **options
        Common: ``fwhm`` (Gaussian pre-smoothing, mm; default none), ``chunk_size`` (voxels
        per chunk, default automatic), ``chunks`` (dask spatial chunk shape, e.g. ``(64, 64,
        64)``; implies the dask path; a :class:`~sv2a.DynamicPET` from a file is then read
        block by block, never whole, see :meth:`~sv2a.DynamicPET.to_dask`), ``weights``
        (``"auto"``: ``"variance"`` when the half-life is known, else ``"duration"``; or
        ``"uniform"``, ``"duration"``, ``"kinfitr"``, an array -- computed from the mean TAC
        of the mask, common to all voxels), ``half_life``, ``warn`` (one summary warning
        about flagged voxels), ``progress`` (a tqdm bar on stderr over voxel chunks, or over
        dask blocks on the local dask scheduler; default False).
        ``srtm``: ``k2a_min`` (0.01), ``k2a_max`` (1.0), ``n_basis`` (100), ``refine``.
        The voxel floor 0.01/min is higher than the regional 0.005 on purpose: at voxel
        noise a basis with a tiny ``k2a`` is nearly collinear with ``∫C_R`` and noisy
        voxels drift there with inflated BPND (15 % COV phantom of
        benchmarks/bench_parametric.py: BPND SD 12-15 % with 0.005 vs 7-10 % with 0.01,
        regions BPND 1.5-4.5).
        ``srtm2``/``mrtm2``: ``k2prime`` = number (1/min), a regional fit Dataset with a
        ``k2prime`` variable (median over regions), ``"coupled"`` (default: joint SRTM2 fit
        over the mask voxels, or over ``k2prime_region``) or ``"srtm"`` (SRTM fit of the mean
        TAC of ``k2prime_region``, a bool mask or TAC); ``srtm2`` also takes the basis options
        (``k2a_min`` default 0.005). ``mrtm2``/``logan_ref``/``logan``/``ma1``: ``tstar``
        (min) or ``n_frames``. ``logan_ref``: ``k2prime`` (default None: no ``C_R/k2'`` term).
        ``suvr``/``suv``: ``window`` (min, default (60, 90)); ``suv``: ``injected_mbq``,
        ``body_weight_kg`` (default from ``pet.meta``). ``1tcm``: ``vB`` (number or ``"fit"``,
        default), ``delay`` (min), ``k2_min`` (0.002), ``k2_max``, ``n_basis``.
        Plasma models: ``delay`` (min) shifts the input.

    Returns
    -------
    xr.Dataset
        3D maps over dims ``(x, y, z)`` (float32, NaN outside the mask), a ``flag`` map
        (uint8 bit field: 1 basis at grid edge, 2 non-finite, 4 negative denominator,
        8 negative rate/amplitude) and attrs with the model, settings, affine (16 numbers,
        row-major), units (per variable) and flag counts. Write with
        ``maps.sv2a.to_nifti(out_dir, stem)``.

    Raises
    ------
    RegionError
        Empty mask or reference mask; reference overlapping the mask.
    DataError
        Reference TAC all zero / non-finite.
    FitError
        Too few frames after ``tstar`` (or in the SUV/SUVR window).
    ModelError
        Unknown model or option.

    Notes
    -----
    Equations and references: :mod:`sv2a.models.basis`. Voxels with a non-finite value in any
    frame get NaN and flag 2. A single :class:`~sv2a.errors.Sv2aWarning` summarises the
    flagged voxels.
    """
    key = str(model).lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in MAP_MODELS:
        raise ModelError(
            f"parametric_maps: unknown model {model!r}; map models: {', '.join(MAP_MODELS)}"
        )
    spec = MAP_MODELS[key]
    opts = check_options(f"parametric_maps({key})", options, spec["defaults"])
    data, frames, aff, meta = _resolve_pet(pet, frames, affine, opts["chunks"])
    shape3 = tuple(int(s) for s in data.shape[:3])
    is_dask = _is_dask(data) or opts["chunks"] is not None
    if is_dask:
        import dask.array as da

        if not _is_dask(data):
            cs = tuple(opts["chunks"])[:3] if opts["chunks"] is not None else ("auto",) * 3
            data = da.from_array(data, chunks=(*cs, -1))
        elif opts["chunks"] is not None:
            data = data.rechunk((*tuple(opts["chunks"])[:3], -1))
        data = data.rechunk({3: -1})

    # ------------------------------------------------------------ masks
    if mask is None:
        if is_dask:
            mask = np.asarray((data > 0).any(axis=3).compute())
        else:
            mask = np.any(data > 0, axis=3)
    else:
        mask = _as_mask(mask, shape3, "mask")
    n_vox = int(mask.sum())
    if n_vox == 0:
        raise RegionError(
            "the mask is empty (no voxel to fit); check the brain mask and that it is on the "
            "PET grid"
        )
    settings: dict[str, Any] = {"model": key, "n_voxels": n_vox,
                                "frames_start_min": frames.start.tolist(),
                                "frames_end_min": frames.end.tolist()}

    # ------------------------------------------------------------ kind-specific inputs
    kind = spec["kind"]
    ref_tac = None
    if kind == "reference":
        if input is not None:
            raise ModelError(f"parametric_maps({key}): reference model; input= is not used")
        ref_tac, info = _reference_tac(reference, data, mask, frames, opts, is_dask)
        settings.update(info)
    elif kind == "plasma":
        if reference is not None:
            raise ModelError(f"parametric_maps({key}): plasma-input model; reference= is not "
                             "used (did you mean a reference model such as srtm2?)")
        if input is None:
            raise InputFunctionError(
                f"parametric_maps({key}) needs input= (an sv2a.InputFunction with the "
                "metabolite-corrected plasma curve)"
            )
        if not hasattr(input, "plasma_at"):
            raise InputFunctionError(
                f"input must be an sv2a.InputFunction, got {type(input).__name__}")
        input.check_covers(float(frames.end[-1]))
    elif reference is not None:
        raise ModelError("parametric_maps(suv): SUV uses no reference; use model='suvr'")

    # ------------------------------------------------------------ voxel TACs / smoothing
    sigma = _sigma_vox(opts["fwhm"], aff)
    settings["fwhm_mm"] = opts["fwhm"] if opts["fwhm"] is not None else 0.0
    idx = np.flatnonzero(mask.ravel())
    if is_dask:
        if sigma is not None:
            depth = {i: int(4.0 * sigma[i] + 0.5) + 1 for i in range(3)}
            depth[3] = 0
            data = data.map_overlap(_smooth_block, depth=depth, boundary="nearest",
                                    dtype=np.float32, sigma=sigma)
        mean_tac = None
        if "weights" in opts or (key in ("srtm2", "mrtm2") and isinstance(opts["k2prime"], str)):
            m4 = da.from_array(mask, chunks=data.chunks[:3])[..., None]
            fin = da.isfinite(data) & m4
            tot, cnt = da.compute(da.where(fin, data.astype(np.float64), 0.0).sum(axis=(0, 1, 2)),
                                  fin.sum(axis=(0, 1, 2)))
            mean_tac = np.asarray(tot) / np.maximum(np.asarray(cnt), 1)
        voxel_sample = None
    else:
        src = _smooth_numpy(data, sigma) if sigma is not None else data
        flat = src.reshape(-1, frames.n)
        ytac = flat[idx]  # (n_vox, n_frames) in the image dtype
        fin = np.isfinite(ytac)
        mean_tac = (np.where(fin, ytac, 0).sum(axis=0, dtype=np.float64)
                    / np.maximum(fin.sum(axis=0), 1))
        voxel_sample = ytac

    # ------------------------------------------------------------ weights
    w = None
    if "weights" in opts:
        scheme = opts["weights"]
        hl = opts["half_life"]
        if isinstance(scheme, str) and scheme == "auto":
            scheme = "variance" if (hl or frames.half_life) else "duration"
        w = frame_weights(scheme, mean_tac, frames, half_life=hl)
        settings["weights"] = scheme if isinstance(scheme, str) else "array"
        settings["frame_weights"] = np.round(w, 6).tolist()

    # ------------------------------------------------------------ solver
    solver = _build_solver(key, opts, frames, ref_tac, input, w, meta, settings, mask, data,
                           voxel_sample, is_dask, shape3, idx)
    names = [n for n in solver.names]
    n_par = len(names) + 1  # + flag

    # ------------------------------------------------------------ run
    if is_dask:
        m_d = da.from_array(mask, chunks=data.chunks[:3])[..., None]
        res = da.map_blocks(_solve_block, data, m_d, solver=solver, names=names,
                            chunks=(*data.chunks[:3], (n_par,)), dtype=np.float32)
        if opts["progress"]:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=f"maps {key}", unit="task", leave=False, file=sys.stderr):
                stack = np.asarray(res.compute())
        else:
            stack = np.asarray(res.compute())
        maps = {nm: stack[..., i] for i, nm in enumerate(names)}
        flag = np.where(mask, stack[..., -1], 0).astype(np.uint8)
    else:
        chunk = opts["chunk_size"] or _auto_chunk(getattr(solver, "thetas", None), frames.n)
        vals = {nm: np.full(n_vox, np.nan, np.float32) for nm in names}
        fl = np.zeros(n_vox, np.uint8)
        from tqdm.auto import tqdm

        with tqdm(total=n_vox, desc=f"maps {key}", unit="voxel", unit_scale=True, leave=False,
                  disable=not opts["progress"], file=sys.stderr, dynamic_ncols=True) as bar:
            for i0 in range(0, n_vox, chunk):
                r = solver.solve(np.asarray(voxel_sample[i0:i0 + chunk], dtype=np.float64))
                for nm in names:
                    vals[nm][i0:i0 + chunk] = r[nm]
                fl[i0:i0 + chunk] = r["flag"]
                bar.update(min(chunk, n_vox - i0))
        maps = {}
        for nm in names:
            m = np.full(int(np.prod(shape3)), np.nan, np.float32)
            m[idx] = vals[nm]
            maps[nm] = m.reshape(shape3)
        f3 = np.zeros(int(np.prod(shape3)), np.uint8)
        f3[idx] = fl
        flag = f3.reshape(shape3)

    # ------------------------------------------------------------ assemble
    counts = B.describe_flags(flag[mask])
    settings["flag_counts"] = counts
    ds = _assemble(key, maps, flag, aff, settings)
    if opts["warn"] and counts:
        n_flag = int(np.count_nonzero(flag[mask]))
        detail = ", ".join(f"{v} {k}" for k, v in counts.items())
        warnings.warn(
            f"parametric_maps({key}): {n_flag} of {n_vox} voxels ({100.0 * n_flag / n_vox:.2g} %) "
            f"flagged ({detail}); see the 'flag' map", Sv2aWarning, stacklevel=2)
    return ds


def _auto_chunk(thetas, n_frames: int) -> int:
    if thetas is None:
        # linear methods (MRTM2, Logan, MA1, SUVR): a few (chunk, n_frames) float64 temporaries;
        # 8192 rows (1.7 MB each at 27 frames) stay in cache -- 20-40 % faster than larger
        # chunks on 193,650 voxels (benchmarks/bench_parametric.py)
        return 8192
    k = thetas.size
    budget = 48e6  # bytes of chunk temporaries (about 3 arrays of chunk x K float64)
    return int(max(1024, min(200_000, budget / (8.0 * 3 * max(k, n_frames)))))


def _solve_block(block: np.ndarray, mblock: np.ndarray, *, solver, names) -> np.ndarray:
    """dask block function: (bx, by, bz, T), (bx, by, bz, 1) -> (bx, by, bz, P+1)."""
    m = mblock[..., 0]
    out = np.full((*block.shape[:3], len(names) + 1), np.nan, np.float32)
    out[..., -1] = 0
    if not m.any():
        return out
    y = np.asarray(block[m], dtype=np.float64)
    r = solver.solve(y)
    for i, nm in enumerate(names):
        out[m, i] = r[nm]
    out[m, -1] = r["flag"]
    return out


def _build_solver(key, opts, frames, ref_tac, inp, w, meta, settings, mask, data, voxel_sample,
                  is_dask, shape3, idx):
    def k2p(allow_none=False):
        sample = voxel_sample
        if sample is None and opts.get("k2prime_region") is None and isinstance(
                opts.get("k2prime"), str):
            # dask path: an evenly spaced subset of mask voxels for the coupled k2' fit
            sub = idx[np.linspace(0, idx.size - 1, min(idx.size, 20000)).astype(int)]
            flat = data.reshape(-1, frames.n)
            sample = np.asarray(flat[sub].compute(), dtype=np.float64)
        k, info = _resolve_k2prime(opts, ref_tac, frames, w, sample, key, shape3, data,
                                   is_dask, allow_none)
        settings.update(info)
        settings["k2prime"] = "none" if k is None else k
        return k

    def sel():
        m = select_frames(frames.mid, tstar=opts["tstar"], n_frames=opts["n_frames"],
                          model=key, min_frames=3)
        settings["tstar"] = float(frames.mid[m][0])
        settings["n_frames"] = int(m.sum())
        return m

    if key == "srtm":
        settings.update(k2a_min=opts["k2a_min"], k2a_max=opts["k2a_max"],
                        n_basis=opts["n_basis"], refine=bool(opts["refine"]))
        return B.SRTMBasis(ref_tac, frames, weights=w,
                           basis_range=(opts["k2a_min"], opts["k2a_max"]),
                           n_basis=opts["n_basis"], refine=opts["refine"])
    if key == "srtm2":
        settings.update(k2a_min=opts["k2a_min"], k2a_max=opts["k2a_max"],
                        n_basis=opts["n_basis"], refine=bool(opts["refine"]))
        return B.SRTM2Basis(ref_tac, frames, k2p(), weights=w,
                            basis_range=(opts["k2a_min"], opts["k2a_max"]),
                            n_basis=opts["n_basis"], refine=opts["refine"])
    if key == "mrtm2":
        m = sel()
        return B.MRTM2(ref_tac, frames, k2p(), weights=w, frame_mask=m)
    if key == "logan_ref":
        m = sel()
        return B.LoganRef(ref_tac, frames, k2p(allow_none=True), weights=w, frame_mask=m)
    if key == "suvr":
        settings["window_min"] = list(opts["window"])
        return B.SUVR(ref_tac, frames, tuple(opts["window"]))
    if key == "suv":
        dose = opts["injected_mbq"] if opts["injected_mbq"] is not None else meta.get(
            "injected_mbq")
        bw = opts["body_weight_kg"] if opts["body_weight_kg"] is not None else meta.get(
            "body_weight_kg")
        settings.update(window_min=list(opts["window"]), injected_mbq=dose, body_weight_kg=bw)
        return B.SUV(frames, tuple(opts["window"]), dose, bw)
    if key == "1tcm":
        settings.update(vB=opts["vB"], delay_min=opts["delay"], k2_min=opts["k2_min"],
                        k2_max=opts["k2_max"], n_basis=opts["n_basis"])
        return B.OneTCMBasis(inp, frames, vB=opts["vB"], delay=opts["delay"], weights=w,
                             basis_range=(opts["k2_min"], opts["k2_max"]),
                             n_basis=opts["n_basis"], refine=opts["refine"])
    if key == "logan":
        m = sel()
        settings["delay_min"] = opts["delay"]
        return B.LoganPlasma(inp, frames, delay=opts["delay"], weights=w, frame_mask=m)
    if key == "ma1":
        m = sel()
        settings["delay_min"] = opts["delay"]
        return B.MA1(inp, frames, delay=opts["delay"], weights=w, frame_mask=m)
    raise ModelError(f"parametric_maps: no solver for {key!r}")  # pragma: no cover


def _assemble(key, maps, flag, affine, settings) -> xr.Dataset:
    from . import __version__

    dims = ("x", "y", "z")
    data_vars = {}
    for nm, arr in maps.items():
        data_vars[nm] = xr.DataArray(arr.astype(np.float32, copy=False), dims=dims,
                                     attrs={"units": UNITS.get(nm, ""),
                                            "long_name": DESCRIPTIONS.get(nm, nm)})
    data_vars["flag"] = xr.DataArray(
        flag, dims=dims,
        attrs={"units": "1", "long_name": DESCRIPTIONS["flag"],
               "flag_masks": np.array(list(B.FLAGS), dtype=np.uint8),
               "flag_meanings": " ".join(v.replace(" ", "_") for v in B.FLAGS.values())})
    attrs = {"model": key, "software": f"sv2a {__version__}",
             "affine": np.asarray(affine, dtype=float).ravel()}
    attrs.update(settings)
    return xr.Dataset(data_vars, attrs=clean_attrs(attrs))


# ====================================================================== accessor
def _attr_value(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str) and v[:1] in "[{":
        import json

        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


@xr.register_dataset_accessor("sv2a")
class Sv2aMapsAccessor:
    """``ds.sv2a``: output helpers for datasets made by sv2a (parametric maps)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def settings(self) -> dict:
        """The attrs as plain Python values (lists, numbers, strings)."""
        return {k: _attr_value(v) for k, v in self._ds.attrs.items()}

    def to_nifti(self, out_dir, stem: str, *, params=None) -> list[Path]:
        """Write one NIfTI per map (+ JSON sidecar) into ``out_dir``.

        File names follow DESIGN §5: ``<stem>_model-<MODEL>_meas-<PARAM>_mimap.nii.gz``
        (``MODEL`` = the registry name in upper case without underscores, e.g. ``SRTM2``,
        ``LOGANREF``). The sidecar holds the model, parameter, units, description, every
        setting and the software version. Writes are atomic.

        Parameters
        ----------
        out_dir : path
            Directory (created if missing).
        stem : str
            BIDS entities prefix, e.g. ``"sub-01_ses-bl"``.
        params : list of str, optional
            Maps to write (default all, including ``flag``).

        Returns
        -------
        list of Path
            The NIfTI files written.
        """
        from .io import write_nifti

        ds = self._ds
        if "model" not in ds.attrs or "affine" not in ds.attrs:
            raise ModelError(
                "to_nifti: this Dataset was not made by sv2a.parametric_maps (no model/affine "
                "attrs)"
            )
        if not stem or "/" in stem:
            raise ModelError(f"to_nifti: stem must be a file-name prefix, got {stem!r}")
        aff = np.asarray(_attr_value(ds.attrs["affine"]), dtype=float).reshape(4, 4)
        model = str(ds.attrs["model"])
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        names = list(ds.data_vars) if params is None else list(params)
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise ModelError(f"to_nifti: no map(s) {missing}; available: {list(ds.data_vars)}")
        settings = {k: v for k, v in self.settings().items() if k not in ("affine",)}
        written = []
        for nm in names:
            da_ = ds[nm]
            arr = np.asarray(da_.transpose("x", "y", "z").values)
            side: dict[str, Any] = {
                "Model": model,
                "Parameter": nm,
                "Units": da_.attrs.get("units", ""),
                "Description": da_.attrs.get("long_name", ""),
                "Settings": settings,
                "GeneratedBy": [{"Name": "sv2a", "Version": settings.get("software", "")}],
            }
            if nm == "flag":
                side["FlagBits"] = {str(b): n for b, n in B.FLAGS.items()}
            p = out / map_filename(stem, model, nm)
            write_nifti(p, arr, aff, sidecar=side,
                        dtype=np.uint8 if nm == "flag" else np.float32)
            written.append(p)
        return written

