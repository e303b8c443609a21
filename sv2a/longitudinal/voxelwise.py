"""Voxelwise group inference on parametric maps with family-wise error (FWE) control.

Maps written by the participant level (``sub-XX_ses-YY_model-<MODEL>_meas-<PARAM>_mimap.nii.gz``)
are loaded on their common grid with :func:`load_maps` (subject x session x x x y x z) and
tested voxel by voxel:

* :func:`voxelwise_change` - paired change within an arm: one-sample t on
  ``log(follow-up / baseline)``; FWE by sign flipping;
* :func:`voxelwise_arm_contrast` - between-arm contrast of the log change, Welch's or the
  pooled two-sample t; FWE by permuting arm labels;
* :func:`voxelwise_glm` - a formula over subject factors (``"arm + age"``, patsy syntax) fitted
  by OLS at every voxel with one design matrix (matrix algebra over all voxels at once), a
  t contrast on its coefficients; FWE by Freedman-Lane permutation of the reduced-model
  residuals (Freedman & Lane 1983; Winkler et al. 2014, NeuroImage 92:381).

Each test gives a t map, the equivalent z and uncorrected parametric p maps, and three
permutation FWE corrections (Nichols & Holmes 2002, Hum Brain Mapp 15:1):

* voxel level: the maximum |t| over the brain in each permutation;
* TFCE: threshold-free cluster enhancement (Smith & Nichols 2009, NeuroImage 44:83),
  ``TFCE(v) = sum_h e(h)^E h^H dh`` over thresholds ``h = dh, 2 dh, ...`` up to the voxel's
  value, ``e(h)`` its cluster extent (voxels) at threshold ``h``, default E = 0.5, H = 2,
  26-connectivity; FWE from the maximum TFCE of each permutation;
* cluster extent: clusters of ``|t|`` above a cluster-forming threshold (default: one-sided
  uncorrected p < 0.001 per sign), FWE from the largest cluster of each permutation, reported
  in a cluster table (size in voxels and mL, peak t, peak coordinates in mm, FWE p, atlas
  region of the peak).

Permutations are seeded (``seed=``); ``n_perm`` counts the rearrangements *including* the
unpermuted data (as FSL randomise does), so ``p_FWE = #{j : max_j >= T} / n_perm`` is never
below ``1 / n_perm``, and every rearrangement is enumerated when there are no more than
``n_perm`` of them. The analysis mask is the given ``mask`` intersected with the voxels that
are finite and positive in every map the test uses (changes are analysed on logs).

Files (:func:`write_statmaps`, usually into ``OUT/group/``)::

    group_model-<MODEL>_meas-<PARAM>_contrast-<NAME>_stat-<STAT>_statmap.nii.gz (+ .json)
    group_model-<MODEL>_meas-<PARAM>_contrast-<NAME>_clusters.tsv (+ .json)

with ``STAT`` one of ``t``, ``z``, ``p`` (uncorrected), ``pfwe`` (voxel max-statistic FWE),
``tfce``, ``tfcepfwe``, ``clusterpfwe``, ``cluster`` (cluster index image), ``effect`` and
``mean`` (the underlay). The sidecars hold the test, the contrast, n per group, the number of
permutations, the seed and the thresholds.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, stats

from ..errors import DataError, DesignError, ShapeMismatchError, Sv2aWarning
from .collect import _participants_table, _strip, session_order

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..atlas import Atlas

__all__ = [
    "load_maps",
    "voxelwise_change",
    "voxelwise_arm_contrast",
    "voxelwise_glm",
    "tfce",
    "VoxelwiseResult",
    "write_statmaps",
    "statmap_filename",
    "plot_stat_slices",
]

_MAP_RE = re.compile(
    r"^sub-(?P<sub>[A-Za-z0-9]+)(?:_ses-(?P<ses>[A-Za-z0-9]+))?(?:_[a-z]+-[A-Za-z0-9]+)*?"
    r"_model-(?P<model>[A-Za-z0-9]+)(?:_[a-z]+-[A-Za-z0-9]+)*?_meas-(?P<meas>[A-Za-z0-9]+)"
    r"(?:_[a-z]+-[A-Za-z0-9]+)*_mimap\.nii(?:\.gz)?$")
_SPACE_KEYS = ("Space", "SpatialReference", "TemplateSpace", "space")
_AFFINE_ATOL = 1e-3  # mm
_BATCH_VOXELS = 4_000_000  # voxels per batched label / matrix call (memory ~ 16-32 bytes each)


# =========================================================================== loading

def _model_key(model: str) -> str:
    return str(model).upper().replace("_", "")


def _read_space(path: Path) -> str | None:
    """The template / space a map's sidecar (or its ``space-`` entity) records, if any."""
    import json

    from ..sidecar import sidecar_path

    m = re.search(r"_space-([A-Za-z0-9]+)", path.name)
    if m:
        return m.group(1)
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for d in (meta, meta.get("Settings", {}) if isinstance(meta, dict) else {}):
        if isinstance(d, dict):
            for k in _SPACE_KEYS:
                if d.get(k) not in (None, ""):
                    return str(d[k])
    return None


def _scan_maps(root: Path, model: str, param: str) -> dict[tuple[str, str], Path]:
    files = sorted(root.glob("sub-*/**/*_mimap.nii*"))
    out: dict[tuple[str, str], Path] = {}
    for f in files:
        m = _MAP_RE.match(f.name)
        if m is None or m.group("model").upper() != _model_key(model) or \
                m.group("meas") != param:
            continue
        key = (m.group("sub"), m.group("ses") or "none")
        if key in out:
            raise DataError(f"two {param} maps for sub-{key[0]} ses-{key[1]} (model "
                            f"{_model_key(model)}): {out[key]} and {f}; keep one per "
                            f"subject/session.")
        out[key] = f
    if not out:
        raise DataError(
            f"no '*_model-{_model_key(model)}_meas-{param}_mimap.nii.gz' maps under {root}. "
            f"Expected sub-XX/ses-YY/pet/sub-XX_ses-YY_model-{_model_key(model)}_meas-{param}"
            f"_mimap.nii.gz (run 'sv2a run ... participant --voxelwise' first, or check "
            f"model= and param=).")
    return out


def _paths_to_keys(paths: Sequence[Any]) -> dict[tuple[str, str], Path]:
    out: dict[tuple[str, str], Path] = {}
    for p in paths:
        p = Path(p)
        m = _MAP_RE.match(p.name)
        if m is None:
            raise DataError(f"cannot tell subject and session from the file name {p}; name it "
                            f"sub-XX_ses-YY_model-<MODEL>_meas-<PARAM>_mimap.nii.gz or pass a "
                            f"mapping {{(subject, session): path}}.")
        key = (m.group("sub"), m.group("ses") or "none")
        if key in out:
            raise DataError(f"two maps for sub-{key[0]} ses-{key[1]}: {out[key]} and {p}")
        out[key] = p
    return out


def _read_map(p: Path) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    import nibabel as nib

    if not p.is_file():
        raise DataError(f"map not found: {p}")
    try:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj, dtype=np.float32)  # type: ignore[attr-defined]
        affine = np.asarray(img.affine, dtype=np.float64)  # type: ignore[attr-defined]
    except Exception as exc:
        raise DataError(f"cannot read map {p}: {exc}. Re-run the participant level for this "
                        f"scan.") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ShapeMismatchError(f"map {p} is {data.ndim}-D (shape {data.shape}); parametric "
                                 f"maps must be 3-D.")
    return data, affine


def _mask_array(mask: Any, shape: tuple[int, ...], affine: NDArray[np.float64]
                ) -> NDArray[np.bool_] | None:
    if mask is None:
        return None
    if isinstance(mask, str | os.PathLike):
        m, aff = _read_map(Path(mask))
        if not np.allclose(aff, affine, atol=_AFFINE_ATOL):
            raise ShapeMismatchError(
                f"mask {mask} is not on the maps' grid (affine differs by up to "
                f"{np.max(np.abs(aff - affine)):.3g} mm); resample the mask to the maps.")
        arr = m > 0
    else:
        arr = np.asarray(mask).astype(bool)
    if arr.shape != shape:
        raise ShapeMismatchError(f"mask shape {arr.shape} differs from the map grid {shape}; "
                                 f"pass a mask on the maps' grid.")
    return arr


def load_maps(source: str | os.PathLike[str] | Sequence[Any] | Mapping[Any, Any], *,
              model: str = "srtm2", param: str = "BPND", participants: Any = None,
              sessions: Sequence[str] | None = None, mask: Any = None,
              affine: ArrayLike | None = None, missing: str = "exclude") -> xr.DataArray:
    """Load subject/session parametric maps on one grid as a labelled array.

    Parameters
    ----------
    source : path, sequence of paths, or mapping
        The participant-level output folder (``OUT``; maps are found under
        ``sub-*/**/*_model-<MODEL>_meas-<PARAM>_mimap.nii.gz``), a list of such map files, or
        a mapping ``{(subject, session): path or 3-D array}`` (labels with or without the
        ``sub-`` / ``ses-`` prefix).
    model : str
        Model of the maps (registry name, e.g. ``"srtm2"``; matched as ``model-SRTM2``).
    param : str
        Parameter (``meas-`` entity), e.g. ``"BPND"``, ``"VT"``, ``"SUVR"``.
    participants : path, DataFrame or mapping
        BIDS ``participants.tsv`` with an ``arm`` column (other columns - age, sex, ... -
        become subject coordinates), a DataFrame, or ``{subject: arm}``.
    sessions : sequence of str, optional
        Sessions to load, in this order (default: all, baseline-like labels first).
    mask : 3-D bool array or NIfTI path, optional
        Voxels to analyse; voxels outside are NaN.
    affine : array (4, 4), optional
        Voxel -> mm affine of maps given as arrays (default the identity: 1 mm voxels).
    missing : {'exclude', 'raise'}
        Subject/session pairs without a map (sessions that other subjects of the same arm
        have; a session no subject of an arm has is by design and not listed): ``'exclude'``
        fills them with NaN and lists them in ``attrs['missing']`` (and a warning); subjects
        of ``participants`` without any map are left out and listed in ``attrs['excluded']``.
        ``'raise'`` raises :class:`~sv2a.errors.DataError` instead.

    Returns
    -------
    xr.DataArray
        float32, dims ``(subject, session, x, y, z)`` in the maps' units; coordinates
        ``arm`` (and every other participants column) on ``subject``. ``attrs``: ``model``,
        ``param``, ``affine`` (16 floats, voxel -> mm, row-major), ``voxel_size_mm``,
        ``space`` (from the sidecars or ``space-`` entities, ``""`` if none recorded),
        ``files`` (``"sub-XX ses-YY: path"``), ``missing`` and ``excluded``.

    Raises
    ------
    DataError
        No maps, an unreadable map, or (``missing='raise'``) missing maps.
    ShapeMismatchError
        Two maps (or the mask) on different grids (shape, or affine beyond 1e-3 mm), or maps
        recorded in different spaces; the message names both files.
    DesignError
        No participants table, or a subject without an arm.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = {(s, ses): 2 + 0.1 * rng.standard_normal((4, 4, 2))
    ...        for s in ("01", "02") for ses in ("baseline", "24h")}
    >>> da = load_maps(src, participants={"01": "ketamine", "02": "ketamine"})
    >>> da.dims, da["session"].values.tolist(), da["arm"].values.tolist()
    (('subject', 'session', 'x', 'y', 'z'), ['baseline', '24h'], ['ketamine', 'ketamine'])
    """
    if missing not in ("exclude", "raise"):
        raise DesignError(f"missing must be 'exclude' or 'raise', not {missing!r}")
    arrays: dict[tuple[str, str], Any]
    if isinstance(source, Mapping):
        arrays = {(_strip(k[0], "sub-"), _strip(k[1], "ses-")): v for k, v in source.items()}
    elif isinstance(source, str | os.PathLike):
        root = Path(source)
        if root.is_file():
            arrays = dict(_paths_to_keys([root]))
        elif root.is_dir():
            arrays = dict(_scan_maps(root, model, param))
        else:
            raise DataError(f"{root}: no such folder or file; pass the participant-level "
                            f"output folder, map files, or a mapping of arrays.")
    else:
        arrays = dict(_paths_to_keys(list(source)))
    if not arrays:
        raise DataError("no maps given; pass the output folder, map files or arrays.")
    if sessions is not None:
        wanted = [_strip(s, "ses-") for s in sessions]
        unknown = [s for s in wanted if s not in {k[1] for k in arrays}]
        if unknown:
            raise DesignError(f"sessions {unknown} have no maps; sessions with maps: "
                              f"{sorted({k[1] for k in arrays})}.")
        arrays = {k: v for k, v in arrays.items() if k[1] in wanted}
        ses_order = wanted
    else:
        ses_order = session_order([k[1] for k in arrays])
    subjects_with = sorted({k[0] for k in arrays})
    ptab = _participants_table(participants, subjects_with)

    ref_key: tuple[str, str] | None = None
    ref_name = ""
    shape: tuple[int, ...] | None = None
    aff0: NDArray[np.float64] | None = None
    space0: str | None = None
    space_file = ""
    loaded: dict[tuple[str, str], NDArray[np.float32]] = {}
    files: list[str] = []
    default_aff = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    for key in sorted(arrays):
        v = arrays[key]
        if isinstance(v, str | os.PathLike):
            p = Path(v)
            data, aff = _read_map(p)
            name = str(p)
            space = _read_space(p)
            files.append(f"sub-{key[0]} ses-{key[1]}: {p}")
        else:
            data = np.asarray(v, dtype=np.float32)
            if data.ndim != 3:
                raise ShapeMismatchError(f"map of sub-{key[0]} ses-{key[1]} is "
                                         f"{data.ndim}-D; pass 3-D arrays.")
            aff, name, space = default_aff, f"array sub-{key[0]} ses-{key[1]}", None
        if shape is None:
            shape, aff0, ref_key, ref_name = data.shape, aff, key, name
        elif data.shape != shape:
            raise ShapeMismatchError(
                f"maps on different grids: {ref_name} has shape {shape}, {name} has "
                f"{data.shape}. Voxelwise statistics need every map on one grid: resample the "
                f"maps to a common template first.")
        elif aff0 is not None and not np.allclose(aff, aff0, atol=_AFFINE_ATOL):
            raise ShapeMismatchError(
                f"maps on different grids: the affines of {ref_name} and {name} differ by up "
                f"to {np.max(np.abs(aff - aff0)):.3g} mm (tolerance {_AFFINE_ATOL} mm). "
                f"Register / resample the maps to one space, or fix the header.")
        if space is not None:
            if space0 is None:
                space0, space_file = space, name
            elif space != space0:
                raise ShapeMismatchError(
                    f"maps in different spaces: {space_file} is in '{space0}', {name} in "
                    f"'{space}'. Resample all maps to one template space.")
        loaded[key] = data
    assert shape is not None and aff0 is not None and ref_key is not None

    all_subjects = [str(s) for s in ptab.index]
    excluded = [f"sub-{s}" for s in all_subjects if s not in subjects_with]
    arm_of = {s: str(ptab.loc[s, "arm"]) for s in subjects_with}
    arm_sessions = {(arm_of[s], t) for s, t in loaded}
    gaps = [f"sub-{s} ses-{t}" for s in subjects_with for t in ses_order
            if (s, t) not in loaded and (arm_of[s], t) in arm_sessions]
    if missing == "raise" and (gaps or excluded):
        raise DataError(f"missing maps: {gaps + [e + ' (all sessions)' for e in excluded]}; "
                        f"run the participant level for them, or load with "
                        f"missing='exclude'.")
    if gaps or excluded:
        warnings.warn(f"maps missing for {len(gaps)} subject/session(s) {gaps[:6]}"
                      f"{' ...' if len(gaps) > 6 else ''}; subjects without any map: "
                      f"{excluded}. They are NaN / left out (see attrs['missing'], "
                      f"attrs['excluded']).", Sv2aWarning, stacklevel=2)

    cube = np.full((len(subjects_with), len(ses_order), *shape), np.nan, dtype=np.float32)
    for (s, t), data in loaded.items():
        cube[subjects_with.index(s), ses_order.index(t)] = data
    m = _mask_array(mask, shape, aff0)
    if m is not None:
        cube[:, :, ~m] = np.nan
    coords: dict[str, Any] = {"subject": subjects_with, "session": ses_order}
    for c in ptab.columns:
        vals = ptab.loc[subjects_with, c]
        coords[str(c)] = ("subject", vals.astype(str).to_numpy() if c == "arm"
                          or not pd.api.types.is_numeric_dtype(vals) else vals.to_numpy())
    vox = np.sqrt((aff0[:3, :3] ** 2).sum(axis=0))
    return xr.DataArray(
        cube, dims=("subject", "session", "x", "y", "z"), coords=coords, name=param,
        attrs={"model": _model_key(model), "param": param, "affine": aff0.ravel().copy(),
               "voxel_size_mm": vox, "space": space0 or "", "files": files,
               "missing": gaps, "excluded": excluded})


# =========================================================================== TFCE / clusters

def _structure(connectivity: int) -> NDArray[np.bool_]:
    rank = {6: 1, 18: 2, 26: 3}.get(int(connectivity))
    if rank is None:
        raise DesignError(f"connectivity must be 6, 18 or 26 (voxel neighbours), not "
                          f"{connectivity!r}")
    return ndimage.generate_binary_structure(3, rank)


def _tfce_batch(vols: NDArray[np.floating], dh: float, E: float, H: float,
                connectivity: int) -> NDArray[np.float64]:
    """TFCE of each non-negative volume of a (batch, x, y, z) stack.

    One ``ndimage.label`` call per threshold step labels the whole batch: the volumes are
    sorted by their maximum (those still above the step are a prefix) and stacked along x
    with an empty slab between them, so clusters never join across volumes.
    """
    nb = len(vols)
    out = np.zeros(vols.shape, dtype=np.float64)
    if nb == 0:
        return out
    struct = _structure(connectivity)
    vmax = vols.reshape(nb, -1).max(axis=1)
    order = np.argsort(-vmax, kind="stable")
    vmax_s = vmax[order]
    sx, sy, sz = vols.shape[1:]
    padded = np.zeros((nb, sx + 1, sy, sz), dtype=vols.dtype)
    padded[:, :sx] = vols[order]
    acc = np.zeros(padded.shape, dtype=np.float64)
    k = 1
    while True:
        h = k * dh
        m = int(np.searchsorted(-vmax_s, -h, side="right"))  # volumes with max >= h
        if m == 0:
            break
        flat = padded[:m].reshape(m * (sx + 1), sy, sz)
        lab, n = ndimage.label(flat >= h, structure=struct)
        if n:
            sizes = np.bincount(lab.ravel()).astype(np.float64)
            weights = sizes ** E * (h ** H * dh)
            weights[0] = 0.0
            acc[:m] += weights[lab].reshape(m, sx + 1, sy, sz)
        k += 1
    out[order] = acc[:, :sx]
    return out


def tfce(stat: ArrayLike, *, dh: float = 0.1, E: float = 0.5, H: float = 2.0,
         connectivity: int = 26, two_sided: bool = True) -> NDArray[np.float64]:
    """Threshold-free cluster enhancement of a 3-D statistic map.

    ``TFCE(v) = sum_{k >= 1, k dh <= s(v)} e_k(v)^E (k dh)^H dh`` with ``e_k(v)`` the extent
    (voxels) of the cluster of ``s >= k dh`` that contains ``v`` (Smith & Nichols 2009,
    NeuroImage 44:83).

    Parameters
    ----------
    stat : array_like, shape (x, y, z)
        Statistic (e.g. t); NaN counts as 0.
    dh : float
        Threshold step (statistic units).
    E, H : float
        Extent and height exponents (0.5 and 2 recommended for 3-D images).
    connectivity : {26, 18, 6}
        Voxel neighbourhood defining clusters.
    two_sided : bool
        Enhance negative values too (TFCE of ``-stat``, returned negative); otherwise
        values below ``dh`` get 0.

    Returns
    -------
    ndarray, shape (x, y, z)
        TFCE values (statistic units^H x voxels^E), signed like ``stat`` when two-sided.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.zeros((5, 5, 5)); s[1:3, 1:3, 1:3] = 1.0      # one 8-voxel cluster, height 1
    >>> float(tfce(s, dh=0.5)[1, 1, 1])  # sqrt(8) (0.5^2 + 1^2) 0.5
    1.7677669529663689
    """
    s = np.nan_to_num(np.asarray(stat, dtype=np.float64), nan=0.0)
    if s.ndim != 3:
        raise ShapeMismatchError(f"tfce: stat must be 3-D, got shape {s.shape}")
    if not dh > 0:
        raise DesignError(f"tfce: dh must be > 0, got {dh}")
    _structure(connectivity)
    if two_sided:
        both = _tfce_batch(np.stack([np.maximum(s, 0), np.maximum(-s, 0)]), dh, E, H,
                           connectivity)
        return both[0] - both[1]
    return _tfce_batch(np.maximum(s, 0)[None], dh, E, H, connectivity)[0]


def _max_cluster_batch(vols: NDArray[np.floating], thr: float, connectivity: int
                       ) -> NDArray[np.float64]:
    """Largest cluster (voxels) of ``vol >= thr`` in each volume of a stack (0 if none)."""
    nb = len(vols)
    sx, sy, sz = vols.shape[1:]
    padded = np.zeros((nb, sx + 1, sy, sz), dtype=bool)
    padded[:, :sx] = vols >= thr
    lab, n = ndimage.label(padded.reshape(nb * (sx + 1), sy, sz),
                           structure=_structure(connectivity))
    out = np.zeros(nb)
    if n:
        lab = lab.reshape(nb, -1)
        sizes = np.bincount(lab.ravel())
        owner = np.zeros(n + 1, dtype=np.int64)
        vol_idx = np.broadcast_to(np.arange(nb)[:, None], lab.shape)
        sel = lab > 0
        owner[lab[sel]] = vol_idx[sel]
        np.maximum.at(out, owner[1:], sizes[1:].astype(np.float64))
    return out


# =========================================================================== statistics

@dataclass(frozen=True)
class _Grid:
    """Mask, bounding box and affine of the analysis."""

    mask: NDArray[np.bool_]
    affine: NDArray[np.float64]
    box: tuple[slice, ...]

    @property
    def box_mask(self) -> NDArray[np.bool_]:
        return self.mask[self.box]

    def to_volumes(self, values: NDArray[np.floating]) -> NDArray[np.float64]:
        """(batch, n_vox) masked values -> (batch, bx, by, bz) box volumes, 0 outside."""
        bm = self.box_mask
        out = np.zeros((values.shape[0], *bm.shape))
        out[:, bm] = values
        return out

    def to_image(self, values: NDArray[Any], fill: float = np.nan, dtype: Any = np.float32
                 ) -> NDArray[Any]:
        img = np.full(self.mask.shape, fill, dtype=dtype)
        img[self.mask] = values
        return img


def _make_grid(mask: NDArray[np.bool_], affine: NDArray[np.float64]) -> _Grid:
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    return _Grid(mask, affine, tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)))


class _Test:
    """A test statistic over voxels under rearrangements of the data (batched)."""

    kind = ""
    n_possible = 0.0
    n = 0

    def observed(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(t, df) of the unpermuted data; df per voxel or scalar broadcast."""
        raise NotImplementedError

    def batch(self, idx: NDArray[np.int64]) -> NDArray[np.float64]:
        """t maps (len(idx), n_vox) for rearrangements ``idx`` of :meth:`rearrangements`."""
        raise NotImplementedError

    def rearrangements(self, n_perm: int, rng: np.random.Generator) -> NDArray[Any]:
        raise NotImplementedError


class _OneSample(_Test):
    kind = "sign-flip"

    def __init__(self, y: NDArray[np.float64]) -> None:
        self.y = y
        n = y.shape[0]
        self.n = n
        self.sumsq = (y ** 2).sum(axis=0)
        self.n_possible = 2.0 ** n

    def _t(self, signs: NDArray[np.float64]) -> NDArray[np.float64]:
        n = self.n
        mean = signs @ self.y / n
        var = np.maximum(self.sumsq[None, :] - n * mean ** 2, 0.0) / (n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return mean / np.sqrt(var / n)

    def observed(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return self._t(np.ones((1, self.n)))[0], np.full(self.y.shape[1], self.n - 1.0)

    def rearrangements(self, n_perm: int, rng: np.random.Generator) -> NDArray[Any]:
        n = self.n
        if self.n_possible <= n_perm:
            signs = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
            return signs  # row 0 = all +1 (identity)
        signs = rng.choice([-1.0, 1.0], size=(n_perm, n))
        signs[0] = 1.0
        return signs

    def batch(self, idx: NDArray[Any]) -> NDArray[np.float64]:
        return self._t(np.asarray(idx, dtype=np.float64))


class _TwoSample(_Test):
    kind = "label permutation"

    def __init__(self, y: NDArray[np.float64], in_a: NDArray[np.bool_], welch: bool) -> None:
        self.y, self.welch = y, welch
        self.in_a = in_a
        self.n = len(in_a)
        self.na, self.nb = int(in_a.sum()), int((~in_a).sum())
        self.tot = y.sum(axis=0)
        self.totsq = (y ** 2).sum(axis=0)
        self.ysq = y ** 2
        self.n_possible = float(math.comb(self.n, self.na))

    def _stats(self, ga: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        na, nb = self.na, self.nb
        sa = ga @ self.y
        qa = ga @ self.ysq
        sb, qb = self.tot[None] - sa, self.totsq[None] - qa
        ma, mb = sa / na, sb / nb
        va = np.maximum(qa - na * ma ** 2, 0.0) / (na - 1)
        vb = np.maximum(qb - nb * mb ** 2, 0.0) / (nb - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.welch:
                se2 = va / na + vb / nb
                df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
            else:
                sp = ((na - 1) * va + (nb - 1) * vb) / (na + nb - 2)
                se2 = sp * (1.0 / na + 1.0 / nb)
                df = np.full_like(se2, na + nb - 2.0)
            return (ma - mb) / np.sqrt(se2), df

    def observed(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        t, df = self._stats(self.in_a.astype(np.float64)[None])
        return t[0], df[0]

    def rearrangements(self, n_perm: int, rng: np.random.Generator) -> NDArray[Any]:
        n, na = self.n, self.na
        ident = self.in_a.astype(np.float64)
        if self.n_possible <= n_perm:
            rows = []
            for comb in itertools.combinations(range(n), na):
                g = np.zeros(n)
                g[list(comb)] = 1.0
                rows.append(g)
            allg = np.asarray(rows)
            first = int(np.flatnonzero((allg == ident).all(axis=1))[0])
            return np.concatenate([allg[first:first + 1], np.delete(allg, first, axis=0)])
        out = np.empty((n_perm, n))
        out[0] = ident
        for j in range(1, n_perm):
            out[j] = ident[rng.permutation(n)]
        return out

    def batch(self, idx: NDArray[Any]) -> NDArray[np.float64]:
        return self._stats(np.asarray(idx, dtype=np.float64))[0]


class _FreedmanLane(_Test):
    kind = "Freedman-Lane"

    def __init__(self, y: NDArray[np.float64], X: NDArray[np.float64],
                 c: NDArray[np.float64]) -> None:
        from scipy.linalg import null_space

        n, p = X.shape
        self.n, self.X = n, X
        self.pinv = np.linalg.pinv(X)
        self.a = self.pinv.T @ c  # c' beta = a' y
        xtx_inv = self.pinv @ self.pinv.T
        self.cvc = float(c @ xtx_inv @ c)
        self.df = float(n - p)
        Z = X @ null_space(c[None, :])  # reduced model: c' beta = 0
        Hz = Z @ np.linalg.pinv(Z) if Z.shape[1] else np.zeros((n, n))
        self.fit_z = Hz @ y
        self.res_z = y - self.fit_z
        self.rx = np.eye(n) - X @ self.pinv  # residual-forming matrix of the full model
        self.y = y
        self.n_possible = float(math.factorial(n)) if n < 25 else np.inf

    def _t(self, ystar: NDArray[np.float64]) -> NDArray[np.float64]:
        # ystar: (n, B, V); two matrix products over all rearrangements and voxels at once
        n, nb, nv = ystar.shape
        flat = ystar.reshape(n, nb * nv)
        num = (self.a @ flat).reshape(nb, nv)
        rss = ((self.rx @ flat) ** 2).sum(axis=0).reshape(nb, nv)
        with np.errstate(divide="ignore", invalid="ignore"):
            return num / np.sqrt(rss / self.df * self.cvc)

    def observed(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return self._t(self.y[:, None, :])[0], np.full(self.y.shape[1], self.df)

    def rearrangements(self, n_perm: int, rng: np.random.Generator) -> NDArray[Any]:
        n = self.n
        if self.n_possible <= n_perm:
            return np.asarray(list(itertools.permutations(range(n))), dtype=np.int64)
        out = np.empty((n_perm, n), dtype=np.int64)
        out[0] = np.arange(n)
        for j in range(1, n_perm):
            out[j] = rng.permutation(n)
        return out

    def batch(self, idx: NDArray[Any]) -> NDArray[np.float64]:
        ystar = self.fit_z[:, None, :] + self.res_z[np.asarray(idx).T]
        return self._t(ystar)


def _t_to_z(t: NDArray[np.float64], df: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(invalid="ignore"):
        upper = stats.norm.isf(stats.t.sf(np.abs(t), df))
    return np.sign(t) * upper


def _p_unc(t: NDArray[np.float64], df: NDArray[np.float64], tail: str) -> NDArray[np.float64]:
    if tail == "two-sided":
        return np.minimum(1.0, 2.0 * stats.t.sf(np.abs(t), df))
    return stats.t.sf(t if tail == "greater" else -t, df)


@dataclass(frozen=True)
class VoxelwiseResult:
    """Result of a voxelwise test.

    Attributes
    ----------
    maps : xr.Dataset
        float32 maps over ``(x, y, z)`` (NaN outside the analysis mask): ``t``, ``z``,
        ``p`` (uncorrected, parametric), ``pfwe`` (voxel-level max-statistic FWE),
        ``tfce`` and ``tfcepfwe`` (when TFCE was run), ``cluster`` (index into the cluster
        table, 0 = none) and ``clusterpfwe`` (when a cluster-forming threshold was given),
        ``effect`` (``% change`` or ``% difference`` of geometric means, or ``c'beta``),
        ``mean`` (mean of the analysed maps, the underlay) and ``mask`` (bool); ``attrs``
        hold the test, contrast, n per group, permutations, seed, thresholds, model,
        parameter and affine.
    clusters : pandas.DataFrame
        One row per cluster, largest first: ``cluster_id sign size_vox volume_ml peak_t
        peak_x_mm peak_y_mm peak_z_mm p_fwe peak_pfwe peak_tfcepfwe region`` (empty
        without a cluster-forming threshold).
    null : dict
        Permutation distributions of the maxima: ``max_t``, ``max_tfce``, ``max_cluster``
        (voxels); element 0 is the unpermuted data.
    """

    maps: xr.Dataset
    clusters: pd.DataFrame
    null: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Contrast name (file-name safe)."""
        return str(self.maps.attrs.get("contrast_name", "contrast"))

    def settings(self) -> dict[str, Any]:
        """The attrs as plain Python values (for JSON sidecars).

        Returns
        -------
        dict
            Lists, numbers and strings.
        """
        out: dict[str, Any] = {}
        for k, v in self.maps.attrs.items():
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, np.generic):
                v = v.item()
            out[str(k)] = v
        return out


def _check_tail(tail: str) -> None:
    if tail not in ("two-sided", "greater", "less"):
        raise DesignError(f"tail must be 'two-sided', 'greater' or 'less', not {tail!r}")


def _affine(maps: xr.DataArray) -> NDArray[np.float64]:
    a = maps.attrs.get("affine")
    return np.eye(4) if a is None else np.asarray(a, dtype=float).reshape(4, 4)


def _check_maps(maps: xr.DataArray) -> None:
    if not isinstance(maps, xr.DataArray) or set(maps.dims) != {"subject", "session", "x", "y",
                                                               "z"}:
        raise DesignError("maps must be the DataArray of sv2a.longitudinal.load_maps (dims "
                          "subject, session, x, y, z); load them with load_maps(...).")
    if "arm" not in maps.coords:
        raise DesignError("maps have no 'arm' coordinate; load them with "
                          "load_maps(..., participants='participants.tsv').")


def _sessions(maps: xr.DataArray, baseline: str | None, followup: str | None,
              sel: NDArray[np.bool_], who: str) -> tuple[str, str]:
    """Baseline and follow-up labels among the sessions with maps of subjects ``sel``."""
    sessions = [str(s) for s in maps["session"].values]
    present = np.isfinite(maps.transpose("subject", "session", ...).values).reshape(
        len(maps["subject"]), len(sessions), -1).any(axis=2)[sel]
    with_data = [s for j, s in enumerate(sessions) if present[:, j].any()]
    if baseline is None:
        baseline = with_data[0] if with_data else sessions[0]
    baseline = _strip(baseline, "ses-")
    if baseline not in with_data:
        raise DesignError(f"baseline session '{baseline}' has no maps for {who}; sessions "
                          f"with maps: {with_data}. Pass baseline= one of them.")
    others = [s for s in with_data if s != baseline]
    if followup is None:
        if len(others) != 1:
            raise DesignError(f"{who} has {len(others)} follow-up sessions {others}: choose "
                              f"one with followup=.")
        followup = others[0]
    followup = _strip(followup, "ses-")
    if followup not in others:
        raise DesignError(f"follow-up session '{followup}' has no maps for {who} or is the "
                          f"baseline; pass followup= one of {others}.")
    return baseline, followup


def _arm_subjects(maps: xr.DataArray, arm: str | None) -> NDArray[np.bool_]:
    arms = np.asarray([str(a) for a in maps["arm"].values])
    if arm is None:
        return np.ones(len(arms), dtype=bool)
    if arm not in set(arms):
        raise DesignError(f"arm '{arm}' is not in the 'arm' column of participants.tsv; arms: "
                          f"{sorted(set(arms))}. Check the spelling.")
    return arms == arm


def _log_change(maps: xr.DataArray, sel: NDArray[np.bool_], baseline: str,
                followup: Sequence[str | None]
                ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_],
                           list[str], list[str]]:
    """(bl, fu, usable subjects, used labels, excluded) for subjects ``sel`` with both maps;
    ``followup[i]`` is the follow-up session of subject i (None: not selected)."""
    bl = maps.sel(session=baseline).transpose("subject", "x", "y", "z").values
    fu = np.full_like(bl, np.nan)
    for ses in {f for f in followup if f is not None}:
        rows = np.asarray([f == ses for f in followup])
        fu[rows] = maps.sel(session=ses).transpose("subject", "x", "y", "z").values[rows]
    subjects = [str(s) for s in maps["subject"].values]
    has_bl = np.isfinite(bl).reshape(len(subjects), -1).any(axis=1)
    has_fu = np.isfinite(fu).reshape(len(subjects), -1).any(axis=1)
    use = sel & has_bl & has_fu
    excluded = [f"sub-{s}: no {baseline if not has_bl[i] else followup[i]} map"
                for i, s in enumerate(subjects) if sel[i] and not use[i]]
    return bl, fu, use, [subjects[i] for i in np.flatnonzero(use)], excluded


def _analysis_mask(stack: NDArray[Any], what: str) -> NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        m = (np.isfinite(stack) & (stack > 0)).all(axis=0)
    if m.sum() < 2:
        raise DataError(f"fewer than 2 voxels are finite and positive in every {what} map; "
                        f"check the mask and the maps (log changes need positive values).")
    return m


def _need_n(n: int, where: str, minimum: int = 2) -> None:
    if n < minimum:
        raise DesignError(f"{where}: {n} subject(s) with usable maps; a voxelwise test needs at "
                          f"least {minimum}. Add subjects, or check the 'arm' column of "
                          f"participants.tsv and the missing maps (attrs['missing']).")


def _run(test: _Test, grid: _Grid, *, n_perm: int, seed: int, tail: str, use_tfce: bool,
         dh: float, E: float, H: float, connectivity: int, cluster_thr: float | None
         ) -> tuple[dict[str, NDArray[Any]], dict[str, NDArray[np.float64]], dict[str, Any]]:
    """Observed maps + permutation maxima; returns (voxel arrays, null dists, info)."""
    if n_perm < 1:
        raise DesignError(f"n_perm must be >= 1 (rearrangements including the data), got "
                          f"{n_perm}")
    rng = np.random.default_rng(seed)
    t_obs, df = test.observed()
    sign = -1.0 if tail == "less" else 1.0
    perms = test.rearrangements(int(n_perm), rng)
    J = len(perms)
    two = tail == "two-sided"
    bm = grid.box_mask
    vol_size = int(bm.size) * (2 if two else 1)
    bsize = int(max(1, min(J, _BATCH_VOXELS // max(vol_size, 1),
                           _BATCH_VOXELS // max(t_obs.size * max(test.n, 1), 1))))
    max_t = np.empty(J)
    max_tfce = np.zeros(J)
    max_clu = np.zeros(J)
    tfce_obs = np.zeros_like(t_obs)
    for start in range(0, J, bsize):
        tb = sign * test.batch(perms[start:start + bsize])
        tb = np.nan_to_num(tb, nan=0.0, posinf=0.0, neginf=0.0)
        nb = len(tb)
        max_t[start:start + nb] = np.abs(tb).max(axis=1) if two else tb.max(axis=1)
        if not (use_tfce or cluster_thr is not None):
            continue
        pos = grid.to_volumes(np.maximum(tb, 0.0))
        vols = np.concatenate([pos, grid.to_volumes(np.maximum(-tb, 0.0))]) if two else pos
        if use_tfce:
            tv = _tfce_batch(vols, dh, E, H, connectivity)
            vmax = tv.reshape(len(tv), -1).max(axis=1)
            max_tfce[start:start + nb] = np.maximum(vmax[:nb], vmax[nb:]) if two else vmax
            if start == 0:
                obs = tv[0][bm]
                tfce_obs = obs - tv[nb][bm] if two else obs
        if cluster_thr is not None:
            mc = _max_cluster_batch(vols, cluster_thr, connectivity)
            max_clu[start:start + nb] = np.maximum(mc[:nb], mc[nb:]) if two else mc
    t_eff = sign * np.nan_to_num(t_obs, nan=0.0)
    stat = np.abs(t_eff) if two else t_eff
    out: dict[str, NDArray[Any]] = {
        "t": t_obs, "df": df,
        "z": _t_to_z(t_obs, df), "p": _p_unc(t_obs, df, tail),
        "pfwe": (max_t[None, :] >= stat[:, None] - 1e-10).sum(axis=1) / J,
    }
    if use_tfce:
        tstat = np.abs(tfce_obs) if two else tfce_obs
        pt = (max_tfce[None, :] >= tstat[:, None] - 1e-10).sum(axis=1) / J
        out["tfce"] = sign * tfce_obs
        out["tfcepfwe"] = np.where(tstat > 0, pt, 1.0)
    info = {"n_rearrangements": J, "exhaustive": bool(test.n_possible <= n_perm),
            "permutation": test.kind, "min_p": 1.0 / J}
    return out, {"max_t": max_t, "max_tfce": max_tfce, "max_cluster": max_clu}, info


def _cluster_table(t_img: NDArray[np.float64], grid: _Grid, thr: float, tail: str,
                   null_max: NDArray[np.float64], connectivity: int,
                   pfwe_img: NDArray[Any], tfcepfwe_img: NDArray[Any] | None,
                   atlas: Any) -> tuple[pd.DataFrame, NDArray[np.int32], NDArray[np.float32]]:
    struct = _structure(connectivity)
    t0 = np.nan_to_num(t_img, nan=0.0)
    signs = {"two-sided": (1, -1), "greater": (1,), "less": (-1,)}[tail]
    rows: list[dict[str, Any]] = []
    order_key: list[tuple[float, float]] = []
    clusters: list[NDArray[np.bool_]] = []
    for sgn in signs:
        lab, n = ndimage.label(sgn * t0 >= thr, structure=struct)
        for k in range(1, n + 1):
            m = lab == k
            clusters.append(m)
            vals = np.where(m, sgn * t0, -np.inf)
            peak = np.unravel_index(int(np.argmax(vals)), t0.shape)
            xyz = grid.affine @ np.array([*peak, 1.0])
            size = int(m.sum())
            rows.append({
                "sign": sgn, "size_vox": size,
                "volume_ml": size * abs(float(np.linalg.det(grid.affine[:3, :3]))) / 1000.0,
                "peak_t": float(t0[peak]), "peak_x_mm": float(xyz[0]),
                "peak_y_mm": float(xyz[1]), "peak_z_mm": float(xyz[2]),
                "p_fwe": float((null_max >= size).sum() / len(null_max)),
                "peak_pfwe": float(pfwe_img[peak]),
                "peak_tfcepfwe": float(tfcepfwe_img[peak]) if tfcepfwe_img is not None
                else np.nan,
                "region": _region_at(atlas, peak),
            })
            order_key.append((-float(size), -abs(float(t0[peak]))))
    order = sorted(range(len(rows)), key=lambda i: order_key[i])
    lab_img = np.zeros(t0.shape, dtype=np.int32)
    p_img = np.full(t0.shape, np.nan, dtype=np.float32)
    table = []
    for new_id, i in enumerate(order, start=1):
        r = rows[i]
        lab_img[clusters[i]] = new_id
        p_img[clusters[i]] = r["p_fwe"]
        table.append({"cluster_id": new_id, **r})
    cols = ["cluster_id", "sign", "size_vox", "volume_ml", "peak_t", "peak_x_mm", "peak_y_mm",
            "peak_z_mm", "p_fwe", "peak_pfwe", "peak_tfcepfwe", "region"]
    return pd.DataFrame(table, columns=cols), lab_img, p_img


def _resolve_atlas(atlas: Any, shape: tuple[int, ...], affine: NDArray[np.float64]) -> Any:
    if atlas is None:
        return None
    if isinstance(atlas, str | os.PathLike):
        from ..atlas import load_atlas

        atlas = load_atlas(atlas)
    atlas.check_grid(shape, affine)
    return atlas


def _region_at(atlas: Atlas | None, ijk: tuple[Any, ...]) -> str:
    if atlas is None:
        return ""
    v = int(atlas.labels[tuple(int(i) for i in ijk)])
    return atlas.label_names.get(v, "unlabelled") if v else "unlabelled"


def _finish(test: _Test, grid: _Grid, *, effect: NDArray[np.float64], effect_units: str,
            mean: NDArray[np.float64], maps: xr.DataArray, attrs: dict[str, Any],
            n_perm: int, seed: int, tail: str, tfce_opt: bool, tfce_dh: float, tfce_E: float,
            tfce_H: float, connectivity: int, cluster_p: float | None,
            cluster_threshold: float | None, atlas: Any, cluster_df: float) -> VoxelwiseResult:
    _check_tail(tail)
    _structure(connectivity)
    if cluster_threshold is not None:
        thr: float | None = float(cluster_threshold)
    elif cluster_p is not None:
        if not 0 < cluster_p < 1:
            raise DesignError(f"cluster_p must be in (0, 1), got {cluster_p}")
        thr = float(stats.t.isf(cluster_p, cluster_df))
    else:
        thr = None
    if thr is not None and not thr > 0:
        raise DesignError(f"cluster-forming threshold must be > 0 (t units), got {thr}")
    shape = grid.mask.shape
    atl = _resolve_atlas(atlas, shape, grid.affine)
    vox, null, info = _run(test, grid, n_perm=n_perm, seed=seed, tail=tail, use_tfce=tfce_opt,
                           dh=tfce_dh, E=tfce_E, H=tfce_H, connectivity=connectivity,
                           cluster_thr=thr)
    if info["min_p"] > 0.05:
        warnings.warn(f"only {info['n_rearrangements']} distinct rearrangements of the data: "
                      f"the smallest attainable FWE p is {info['min_p']:.3g} > 0.05, so nothing "
                      f"can be significant; add subjects.", Sv2aWarning, stacklevel=3)
    dims = ("x", "y", "z")
    data_vars: dict[str, Any] = {}
    desc = {"t": "t statistic", "z": "z statistic (same one-sided p as t)",
            "p": f"uncorrected parametric p ({tail})",
            "pfwe": "FWE-corrected p, voxel-level maximum statistic (permutation)",
            "tfce": f"TFCE of t (E={tfce_E}, H={tfce_H}, dh={tfce_dh}, "
                    f"{connectivity}-connectivity)",
            "tfcepfwe": "FWE-corrected p of TFCE (permutation maximum)"}
    for k in ("t", "z", "p", "pfwe", "tfce", "tfcepfwe"):
        if k in vox:
            data_vars[k] = xr.DataArray(grid.to_image(vox[k]), dims=dims,
                                        attrs={"long_name": desc[k], "units": "1"})
    t_img = grid.to_image(vox["t"], dtype=np.float64)
    if thr is not None:
        table, lab, pc = _cluster_table(
            t_img, grid, thr, tail, null["max_cluster"], connectivity,
            grid.to_image(vox["pfwe"], fill=1.0, dtype=np.float64),
            grid.to_image(vox["tfcepfwe"], fill=1.0, dtype=np.float64) if tfce_opt else None,
            atl)
        data_vars["cluster"] = xr.DataArray(lab, dims=dims, attrs={
            "long_name": "cluster index (row of the cluster table; 0 = none)", "units": "1"})
        data_vars["clusterpfwe"] = xr.DataArray(pc, dims=dims, attrs={
            "long_name": "cluster-extent FWE p of the voxel's cluster", "units": "1"})
    else:
        table = pd.DataFrame(columns=["cluster_id", "sign", "size_vox", "volume_ml", "peak_t",
                                      "peak_x_mm", "peak_y_mm", "peak_z_mm", "p_fwe",
                                      "peak_pfwe", "peak_tfcepfwe", "region"])
    data_vars["effect"] = xr.DataArray(grid.to_image(effect), dims=dims,
                                       attrs={"long_name": "effect size", "units": effect_units})
    data_vars["mean"] = xr.DataArray(np.where(grid.mask, mean, np.nan).astype(np.float32),
                                     dims=dims, attrs={"long_name": "mean of the analysed maps",
                                                       "units": maps.attrs.get("units", "")})
    data_vars["mask"] = xr.DataArray(grid.mask.copy(), dims=dims,
                                     attrs={"long_name": "analysis mask"})
    df = vox["df"]
    full_attrs: dict[str, Any] = {
        "model": maps.attrs.get("model", ""), "param": maps.attrs.get("param", ""),
        "affine": grid.affine.ravel().copy(), "space": maps.attrs.get("space", ""),
        **attrs,
        "tail": tail, "n_perm": int(n_perm), "n_rearrangements": info["n_rearrangements"],
        "exhaustive": info["exhaustive"], "permutation": info["permutation"],
        "seed": int(seed), "df": float(np.nanmedian(df)) if df.size else np.nan,
        "tfce": bool(tfce_opt), "tfce_E": float(tfce_E), "tfce_H": float(tfce_H),
        "tfce_dh": float(tfce_dh), "connectivity": int(connectivity),
        "cluster_p": np.nan if cluster_p is None or cluster_threshold is not None
        else float(cluster_p),
        "cluster_threshold": np.nan if thr is None else thr,
        "n_voxels": int(grid.mask.sum()),
        "voxel_volume_ml": abs(float(np.linalg.det(grid.affine[:3, :3]))) / 1000.0,
    }
    ds = xr.Dataset(data_vars, attrs=full_attrs)
    return VoxelwiseResult(ds, table, null)


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", s) or "contrast"


def voxelwise_change(maps: xr.DataArray, *, arm: str | None = None,
                     baseline: str | None = None, followup: str | None = None,
                     n_perm: int = 1000, seed: int = 0, tail: str = "two-sided",
                     tfce: bool = True, tfce_dh: float = 0.1, tfce_E: float = 0.5,
                     tfce_H: float = 2.0, connectivity: int = 26,
                     cluster_p: float | None = 0.001, cluster_threshold: float | None = None,
                     atlas: Any = None, name: str | None = None) -> VoxelwiseResult:
    """Paired change within an arm: one-sample t on ``log(follow-up / baseline)`` per voxel.

    FWE control by sign flipping of the subjects' log changes (errors symmetric about 0
    under the null), with voxel max-t, max-TFCE and max-cluster-extent distributions.

    Parameters
    ----------
    maps : xr.DataArray
        Output of :func:`load_maps`.
    arm : str, optional
        Arm to test (``arm`` column of participants.tsv); None = all subjects.
    baseline, followup : str, optional
        Session labels (default: the first session with maps of the arm's subjects, and
        the only other one).
    n_perm : int
        Rearrangements including the unpermuted data (all are used when there are fewer,
        e.g. ``2**n`` sign flips); the smallest FWE p is ``1 / n_perm``.
    seed : int
        Seed of the random rearrangements.
    tail : {'two-sided', 'greater', 'less'}
        Alternative hypothesis (``'less'``: decrease).
    tfce : bool
        Compute TFCE and its FWE p.
    tfce_dh, tfce_E, tfce_H : float
        TFCE step (t units) and exponents (Smith & Nichols 2009: E = 0.5, H = 2).
    connectivity : {26, 18, 6}
        Neighbourhood of clusters and TFCE.
    cluster_p : float or None
        Cluster-forming threshold as a one-sided uncorrected p (converted to t with the
        test's df); None = no cluster inference.
    cluster_threshold : float, optional
        Cluster-forming threshold in t units (overrides ``cluster_p``).
    atlas : Atlas or NIfTI path, optional
        Labels on the maps' grid; names the region of each cluster's peak.
    name : str, optional
        Contrast name in file names (letters and digits; default ``<arm><followup>vs<baseline>``).

    Returns
    -------
    VoxelwiseResult
        Maps (``effect`` = geometric-mean % change ``100 (exp(mean log ratio) - 1)``), the
        cluster table and the permutation maxima. ``attrs['n']`` = ``{arm: n}``.

    Raises
    ------
    DesignError
        Unknown arm or session, fewer than 2 subjects with both maps, bad options.
    DataError
        No voxel positive and finite in every map.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> src = {}
    >>> for i in range(6):
    ...     bl = np.exp(rng.normal(0, 0.05, (6, 6, 4)))
    ...     src[(f"{i:02d}", "baseline")] = 2 * bl
    ...     src[(f"{i:02d}", "24h")] = 2 * bl * np.exp(rng.normal(0, 0.05, (6, 6, 4)))
    >>> da = load_maps(src, participants={f"{i:02d}": "ketamine" for i in range(6)})
    >>> res = voxelwise_change(da, arm="ketamine", n_perm=64, seed=0, tfce_dh=0.2)
    >>> res.maps["t"].shape, res.maps.attrs["n"], res.maps.attrs["n_rearrangements"]
    ((6, 6, 4), {'ketamine': 6}, 64)
    """
    _check_maps(maps)
    _check_tail(tail)
    sel = _arm_subjects(maps, arm)
    baseline, followup = _sessions(maps, baseline, followup, sel,
                                   f"arm '{arm}'" if arm else "the subjects")
    bl, fu, use, used, excluded = _log_change(
        maps, sel, baseline, [followup if x else None for x in sel])
    _need_n(int(use.sum()), f"arm '{arm}'" if arm else "all subjects")
    mask = _analysis_mask(np.concatenate([bl[use], fu[use]]), "baseline/follow-up")
    grid = _make_grid(mask, _affine(maps))
    with np.errstate(all="ignore"):
        y = (np.log(fu[use][:, mask].astype(np.float64))
             - np.log(bl[use][:, mask].astype(np.float64)))
    test = _OneSample(y)
    label = arm if arm else "all"
    attrs = {"test": "one-sample t on log(follow-up/baseline) (paired change)",
             "contrast": f"{followup} vs {baseline} in {label}",
             "contrast_name": _safe_name(name or f"{label}{followup}vs{baseline}"),
             "arm": label, "baseline": baseline, "followup": followup, "n": {label: len(used)},
             "subjects": used, "excluded": excluded}
    eff = 100.0 * (np.exp(y.mean(axis=0)) - 1.0)
    mean = bl[use].mean(axis=0)  # NaN outside the mask
    return _finish(test, grid, effect=eff, effect_units="% change", mean=mean, maps=maps,
                   attrs=attrs, n_perm=n_perm, seed=seed, tail=tail, tfce_opt=tfce,
                   tfce_dh=tfce_dh, tfce_E=tfce_E, tfce_H=tfce_H, connectivity=connectivity,
                   cluster_p=cluster_p, cluster_threshold=cluster_threshold, atlas=atlas,
                   cluster_df=len(used) - 1.0)


def voxelwise_arm_contrast(maps: xr.DataArray, *, arms: tuple[str, str],
                           baseline: str | None = None,
                           followup: str | Mapping[str, str] | None = None,
                           welch: bool = True, n_perm: int = 1000, seed: int = 0,
                           tail: str = "two-sided", tfce: bool = True, tfce_dh: float = 0.1,
                           tfce_E: float = 0.5, tfce_H: float = 2.0, connectivity: int = 26,
                           cluster_p: float | None = 0.001,
                           cluster_threshold: float | None = None, atlas: Any = None,
                           name: str | None = None) -> VoxelwiseResult:
    """Between-arm contrast of the change: two-sample t on ``log(follow-up / baseline)``.

    Tests ``arms[0] - arms[1]`` with Welch's t (default) or the pooled-variance t; FWE
    control by permuting arm labels (exchangeable subjects under the null of no difference).

    Parameters
    ----------
    maps : xr.DataArray
        Output of :func:`load_maps`.
    arms : (str, str)
        The two arms (``arm`` column), e.g. ``("ketamine", "vehicle")``.
    baseline : str, optional
        Baseline session label (default the first session with maps).
    followup : str or mapping {arm: session}, optional
        Follow-up session, one for both arms or one per arm (arms scanned at different
        times, e.g. 24 h vs 7 d after dosing); default each arm's only follow-up session.
    welch : bool
        Welch's unequal-variance t (df per voxel by Welch-Satterthwaite); False = pooled t.
    n_perm, seed, tail, tfce, tfce_dh, tfce_E, tfce_H, connectivity, cluster_p, \
cluster_threshold, atlas :
        As in :func:`voxelwise_change` (with Welch's t, ``cluster_p`` is converted to t with
        ``n1 + n2 - 2`` df).
    name : str, optional
        Contrast name in file names (default ``<arm1>vs<arm2>``).

    Returns
    -------
    VoxelwiseResult
        Maps (``effect`` = % difference of the geometric-mean change ratios,
        ``100 (exp(mean_1 - mean_2) - 1)``), cluster table, permutation maxima;
        ``attrs['n']`` = ``{arm: n}``.

    Raises
    ------
    DesignError
        Unknown arm or session, fewer than 2 subjects in an arm, the same arm twice.
    DataError
        No voxel positive and finite in every map.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> src, arms = {}, {}
    >>> for i in range(8):
    ...     bl = 2 * np.exp(rng.normal(0, 0.05, (5, 5, 3)))
    ...     src[(f"{i:02d}", "bl")] = bl
    ...     src[(f"{i:02d}", "7d")] = bl * np.exp(rng.normal(0, 0.05, (5, 5, 3)))
    ...     arms[f"{i:02d}"] = "ketamine" if i < 4 else "vehicle"
    >>> da = load_maps(src, participants=arms)
    >>> res = voxelwise_arm_contrast(da, arms=("ketamine", "vehicle"), n_perm=100)
    >>> res.maps.attrs["n"], res.maps.attrs["n_rearrangements"], res.name
    ({'ketamine': 4, 'vehicle': 4}, 70, 'ketaminevsvehicle')
    """
    _check_maps(maps)
    _check_tail(tail)
    if len(arms) != 2 or arms[0] == arms[1]:
        raise DesignError(f"arms must name two different arms, got {arms!r}")
    sel_a, sel_b = _arm_subjects(maps, arms[0]), _arm_subjects(maps, arms[1])
    fus: dict[str, str] = {}
    base = ""
    for a_, s_ in zip(arms, (sel_a, sel_b), strict=True):
        want = followup.get(a_) if isinstance(followup, Mapping) else followup
        base, fus[a_] = _sessions(maps, base or baseline, want, s_, f"arm '{a_}'")
    baseline = base
    per_subject = [fus[arms[0]] if x else fus[arms[1]] if y else None
                   for x, y in zip(sel_a, sel_b, strict=True)]
    bl, fu, use, used, excluded = _log_change(maps, sel_a | sel_b, base, per_subject)
    fu_desc = (fus[arms[0]] if fus[arms[0]] == fus[arms[1]]
               else f"{arms[0]}: {fus[arms[0]]}, {arms[1]}: {fus[arms[1]]}")
    for a, s in zip(arms, (sel_a, sel_b), strict=True):
        _need_n(int((use & s).sum()), f"arm '{a}'")
    mask = _analysis_mask(np.concatenate([bl[use], fu[use]]), "baseline/follow-up")
    grid = _make_grid(mask, _affine(maps))
    with np.errstate(all="ignore"):
        y = (np.log(fu[use][:, mask].astype(np.float64))
             - np.log(bl[use][:, mask].astype(np.float64)))
    in_a = sel_a[use]
    test = _TwoSample(y, in_a, welch)
    na, nb = int(in_a.sum()), int((~in_a).sum())
    attrs = {"test": ("Welch" if welch else "pooled") + " two-sample t on log(follow-up/"
                     "baseline) (between-arm contrast of change)",
             "contrast": f"{arms[0]} - {arms[1]} (change {fu_desc} vs {baseline})",
             "contrast_name": _safe_name(name or f"{arms[0]}vs{arms[1]}"),
             "arms": list(arms), "baseline": baseline, "followup": fu_desc,
             "n": {arms[0]: na, arms[1]: nb}, "subjects": used, "excluded": excluded}
    eff = 100.0 * (np.exp(y[in_a].mean(axis=0) - y[~in_a].mean(axis=0)) - 1.0)
    mean = bl[use].mean(axis=0)  # NaN outside the mask
    return _finish(test, grid, effect=eff, effect_units="% difference in change", mean=mean,
                   maps=maps, attrs=attrs, n_perm=n_perm, seed=seed, tail=tail, tfce_opt=tfce,
                   tfce_dh=tfce_dh, tfce_E=tfce_E, tfce_H=tfce_H, connectivity=connectivity,
                   cluster_p=cluster_p, cluster_threshold=cluster_threshold, atlas=atlas,
                   cluster_df=na + nb - 2.0)


def _design(formula: str, table: pd.DataFrame) -> pd.DataFrame:
    import patsy

    rhs = formula.split("~", 1)[1] if "~" in formula else formula
    try:
        X = patsy.dmatrix(rhs, table, return_type="dataframe", NA_action="drop")
    except patsy.PatsyError as exc:
        raise DesignError(f"cannot build the design of formula '{formula}': {exc.message}. "
                          f"Columns available (participants.tsv): {list(table.columns)}."
                          ) from exc
    return X


def _contrast_vector(contrast: Any, columns: list[str]) -> NDArray[np.float64]:
    c = np.zeros(len(columns))
    if isinstance(contrast, str):
        contrast = {contrast: 1.0}
    if isinstance(contrast, Mapping):
        for k, v in contrast.items():
            if k not in columns:
                raise DesignError(f"contrast names '{k}', which is not a column of the design "
                                  f"matrix; columns: {columns}. (An arm or level that is not "
                                  f"in participants.tsv, or the reference level, has no "
                                  f"column.)")
            c[columns.index(k)] = float(v)
    else:
        c = np.asarray(contrast, dtype=float)
        if c.shape != (len(columns),):
            raise DesignError(f"contrast has {c.size} weights but the design has "
                              f"{len(columns)} columns {columns}")
    if not np.any(c):
        raise DesignError("the contrast is all zeros; give at least one non-zero weight.")
    return c


def voxelwise_glm(maps: xr.DataArray, formula: str, *, contrast: Any,
                  response: str = "log_change", baseline: str | None = None,
                  followup: str | None = None, session: str | None = None,
                  n_perm: int = 1000, seed: int = 0, tail: str = "two-sided",
                  tfce: bool = True, tfce_dh: float = 0.1, tfce_E: float = 0.5,
                  tfce_H: float = 2.0, connectivity: int = 26,
                  cluster_p: float | None = 0.001, cluster_threshold: float | None = None,
                  atlas: Any = None, name: str | None = None) -> VoxelwiseResult:
    """A formula over subject factors fitted by OLS at every voxel, with a t contrast.

    The design matrix is built once from the subject coordinates (participants.tsv columns)
    with patsy and applied to all voxels at once (``beta = pinv(X) Y``). FWE control by
    Freedman-Lane permutation: the residuals of the reduced model (the design restricted to
    ``c' beta = 0``) are permuted and added back to its fit (Freedman & Lane 1983; Winkler et
    al. 2014, NeuroImage 92:381).

    Parameters
    ----------
    maps : xr.DataArray
        Output of :func:`load_maps`.
    formula : str
        Right-hand side in patsy syntax over subject coordinates, e.g. ``"arm + age"``,
        ``"C(arm, Treatment('vehicle')) + sex"`` (a left-hand side is ignored).
    contrast : str, mapping or sequence
        A design-matrix column (``"arm[T.ketamine]"``, ``"age"``), ``{column: weight}``, or
        one weight per column.
    response : {'log_change', 'log', 'value'}
        Per-subject outcome: ``log(followup / baseline)``, ``log`` of the map at ``session``,
        or the map value at ``session``.
    baseline, followup : str, optional
        Sessions of ``'log_change'`` (default: the first session and the only other one).
    session : str, optional
        Session of ``'log'`` / ``'value'`` (default the first).
    n_perm, seed, tail, tfce, tfce_dh, tfce_E, tfce_H, connectivity, cluster_p, \
cluster_threshold, atlas :
        As in :func:`voxelwise_change` (``cluster_p`` converted with the residual df).
    name : str, optional
        Contrast name in file names (default from the contrast).

    Returns
    -------
    VoxelwiseResult
        Maps (``effect`` = ``c' beta`` in response units: log units for the log responses),
        cluster table, permutation maxima; ``attrs['design_columns']``, ``attrs['c']``,
        ``attrs['n']`` (per arm).

    Raises
    ------
    DesignError
        Unknown column or level in the formula or the contrast, a rank-deficient design,
        no residual degrees of freedom, unknown session or response.
    DataError
        No voxel positive and finite in every map.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> rng = np.random.default_rng(3)
    >>> src = {}
    >>> for i in range(8):
    ...     bl = 2 * np.exp(rng.normal(0, 0.05, (5, 5, 3)))
    ...     src[(f"{i:02d}", "bl")] = bl
    ...     src[(f"{i:02d}", "24h")] = bl * np.exp(rng.normal(0, 0.05, (5, 5, 3)))
    >>> part = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(8)],
    ...                      "arm": ["ketamine"] * 4 + ["vehicle"] * 4,
    ...                      "age": [30, 41, 25, 52, 38, 29, 45, 33]})
    >>> da = load_maps(src, participants=part)
    >>> res = voxelwise_glm(da, "arm + age", contrast="age", n_perm=50, tfce=False)
    >>> res.maps.attrs["design_columns"]
    ['Intercept', 'arm[T.vehicle]', 'age']
    """
    _check_maps(maps)
    _check_tail(tail)
    if response not in ("log_change", "log", "value"):
        raise DesignError(f"response must be 'log_change', 'log' or 'value', not {response!r}")
    subjects = [str(s) for s in maps["subject"].values]
    table = pd.DataFrame({str(c): maps[c].values for c in maps.coords
                          if maps[c].dims == ("subject",) and c != "subject"}, index=subjects)
    X_df = _design(formula, table)
    sel = np.isin(subjects, list(X_df.index))
    dropped = [f"sub-{s}: missing value in the formula's columns" for s in subjects
               if s not in set(X_df.index)]
    if response == "log_change":
        baseline, followup = _sessions(maps, baseline, followup, sel, "the subjects")
        bl, fu, use, used, excl = _log_change(
            maps, sel, baseline, [followup if x else None for x in sel])
        stack = np.concatenate([bl[use], fu[use]])
        desc = f"log({followup}/{baseline})"
    else:
        ses = _strip(session, "ses-") if session else str(maps["session"].values[0])
        if ses not in [str(s) for s in maps["session"].values]:
            raise DesignError(f"session '{ses}' has no maps; sessions: "
                              f"{[str(s) for s in maps['session'].values]}")
        v = maps.sel(session=ses).transpose("subject", "x", "y", "z").values
        has = np.isfinite(v).reshape(len(subjects), -1).any(axis=1)
        use = sel & has
        used = [subjects[i] for i in np.flatnonzero(use)]
        excl = [f"sub-{s}: no {ses} map" for i, s in enumerate(subjects) if sel[i] and not has[i]]
        stack = v[use]
        desc = f"{'log ' if response == 'log' else ''}{maps.attrs.get('param', '')} at {ses}"
    X = X_df.loc[used].to_numpy(dtype=float)
    cols = [str(c) for c in X_df.columns]
    n, p = X.shape
    _need_n(n, f"formula '{formula}'", minimum=p + 1)
    if np.linalg.matrix_rank(X) < p:
        raise DesignError(f"the design of '{formula}' is rank-deficient over the {n} subjects "
                          f"used (columns {cols}): a factor level with no subjects or "
                          f"collinear covariates. Simplify the formula.")
    c = _contrast_vector(contrast, cols)
    if response == "value":
        mask = np.isfinite(stack).all(axis=0)
        if mask.sum() < 2:
            raise DataError("fewer than 2 voxels are finite in every analysed map; check the "
                            "mask and the maps.")
    else:
        mask = _analysis_mask(stack, "analysed")
    grid = _make_grid(mask, _affine(maps))
    with np.errstate(all="ignore"):
        if response == "log_change":
            y = (np.log(fu[use][:, mask].astype(np.float64))
                 - np.log(bl[use][:, mask].astype(np.float64)))
            mean = bl[use].mean(axis=0)  # NaN outside the mask
        elif response == "log":
            y = np.log(stack[:, mask].astype(np.float64))
            mean = stack.mean(axis=0)
        else:
            y = stack[:, mask].astype(np.float64)
            mean = stack.mean(axis=0)
    test = _FreedmanLane(y, X, c)
    arms_used = [str(a) for a in maps["arm"].values[use]]
    cname = contrast if isinstance(contrast, str) else "contrast"
    attrs = {"test": f"OLS t contrast, {desc} ~ {formula.split('~')[-1].strip()}",
             "contrast": " + ".join(f"{w:g}*{k}" for k, w in zip(cols, c, strict=True) if w),
             "contrast_name": _safe_name(name or str(cname)),
             "formula": formula, "response": response, "design_columns": cols,
             "c": c.tolist(),
             "n": {str(k): int(v) for k, v in pd.Series(arms_used).value_counts()
                   .sort_index().items()},
             "subjects": used, "excluded": dropped + excl}
    if response == "log_change":
        attrs.update(baseline=baseline, followup=followup)
    eff = test.a @ y
    return _finish(test, grid, effect=eff,
                   effect_units="log units" if response != "value" else
                   str(maps.attrs.get("units", "")), mean=mean, maps=maps, attrs=attrs,
                   n_perm=n_perm, seed=seed, tail=tail, tfce_opt=tfce, tfce_dh=tfce_dh,
                   tfce_E=tfce_E, tfce_H=tfce_H, connectivity=connectivity,
                   cluster_p=cluster_p, cluster_threshold=cluster_threshold, atlas=atlas,
                   cluster_df=test.df)


# =========================================================================== files / figures

_STATS = ("t", "z", "p", "pfwe", "tfce", "tfcepfwe", "clusterpfwe", "cluster", "effect", "mean")


def statmap_filename(model: str, param: str, contrast: str, stat: str) -> str:
    """File name of a group statistic map.

    Parameters
    ----------
    model : str
        Model (``srtm2`` -> ``SRTM2``).
    param : str
        Parameter (``BPND``).
    contrast : str
        Contrast name (non-alphanumeric characters are dropped).
    stat : str
        ``t``, ``z``, ``p``, ``pfwe``, ``tfce``, ``tfcepfwe``, ``clusterpfwe``, ``cluster``,
        ``effect`` or ``mean``.

    Returns
    -------
    str
        ``group_model-<MODEL>_meas-<PARAM>_contrast-<NAME>_stat-<STAT>_statmap.nii.gz``.

    Examples
    --------
    >>> statmap_filename("srtm2", "BPND", "ketamine-vs-vehicle", "tfcepfwe")
    'group_model-SRTM2_meas-BPND_contrast-ketaminevsvehicle_stat-tfcepfwe_statmap.nii.gz'
    """
    return (f"group_model-{_model_key(model)}_meas-{param}_contrast-{_safe_name(contrast)}"
            f"_stat-{stat}_statmap.nii.gz")


def write_statmaps(result: VoxelwiseResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the maps (NIfTI + JSON sidecar) and the cluster table (TSV + JSON), atomically.

    Parameters
    ----------
    result : VoxelwiseResult
        A voxelwise test result.
    out_dir : str or path-like
        Folder (created if missing), normally ``OUT/group``.

    Returns
    -------
    list of Path
        The images (:func:`statmap_filename` names) and
        ``group_model-<MODEL>_meas-<PARAM>_contrast-<NAME>_clusters.tsv``. Each sidecar holds
        the statistic's description, the test, contrast, n per group, permutations, seed,
        thresholds (TFCE, cluster-forming) and the software version.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = {(f"{i}", s): np.exp(rng.normal(0, .1, (4, 4, 2))) for i in range(5)
    ...        for s in ("bl", "fu")}
    >>> da = load_maps(src, participants={f"{i}": "A" for i in range(5)})
    >>> res = voxelwise_change(da, n_perm=32, cluster_p=None, tfce=False, name="AfuvsBl")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     names = [p.name for p in write_statmaps(res, d)]
    >>> print(names[0]); print(names[-1])
    group_model-SRTM2_meas-BPND_contrast-AfuvsBl_stat-t_statmap.nii.gz
    group_model-SRTM2_meas-BPND_contrast-AfuvsBl_clusters.tsv
    """
    from .. import __version__
    from ..io import write_json, write_nifti, write_tsv

    out = Path(out_dir)
    ds = result.maps
    settings = result.settings()
    affine = np.asarray(settings.pop("affine"), dtype=float).reshape(4, 4)
    model, param = str(settings.get("model", "")), str(settings.get("param", ""))
    written: list[Path] = []
    for stat in _STATS:
        if stat not in ds:
            continue
        da = ds[stat]
        side = {"Statistic": stat, "Description": da.attrs.get("long_name", ""),
                "Units": da.attrs.get("units", ""), **settings,
                "GeneratedBy": [{"Name": "sv2a", "Version": __version__}]}
        dtype = np.int16 if stat == "cluster" else np.float32
        p = out / statmap_filename(model, param, result.name, stat)
        write_nifti(p, da.transpose("x", "y", "z").values, affine, sidecar=side, dtype=dtype)
        written.append(p)
    tsv = out / (f"group_model-{_model_key(model)}_meas-{param}_contrast-{result.name}"
                 f"_clusters.tsv")
    write_tsv(tsv, result.clusters)
    write_json(tsv.with_suffix(".json"), {
        "Description": "clusters of |t| above the cluster-forming threshold; p_fwe from the "
                       "permutation distribution of the largest cluster",
        "size_vox": {"Units": "voxels"}, "volume_ml": {"Units": "mL"},
        "peak_x_mm": {"Units": "mm"}, "peak_y_mm": {"Units": "mm"},
        "peak_z_mm": {"Units": "mm"}, **settings,
        "GeneratedBy": [{"Name": "sv2a", "Version": __version__}]})
    written.append(tsv)
    return written


def plot_stat_slices(result: VoxelwiseResult, *, stat: str = "t", correction: str = "tfce",
                     alpha: float = 0.05, threshold: float | None = None, n_slices: int = 6,
                     axis: str = "z", vmax: float | None = None,
                     title: str | None = None) -> Figure:
    """Slices of the thresholded t (or z) map over the mean map.

    Parameters
    ----------
    result : VoxelwiseResult
        A voxelwise test result.
    stat : {'t', 'z', 'tfce', 'effect'}
        Map drawn in colour.
    correction : {'tfce', 'voxel', 'cluster', 'none'}
        Voxels shown: FWE p < ``alpha`` by TFCE, by voxel max-t, by cluster extent, or
        ``|stat| >= threshold`` (``'none'``).
    alpha : float
        FWE level.
    threshold : float, optional
        Absolute threshold (stat units) with ``correction='none'``; also applied on top of an
        FWE correction when given.
    n_slices : int
        Slices through the analysis mask, evenly spaced.
    axis : {'x', 'y', 'z'}
        Slicing axis.
    vmax : float, optional
        Colour limit (default the largest ``|stat|``).
    title : str, optional
        Figure title (default the contrast and the correction).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per slice (grey underlay, diverging colour overlay, one colour bar); not
        attached to pyplot, save with ``fig.savefig(...)``.

    Raises
    ------
    DesignError
        Unknown stat, correction or axis, or a correction the result was computed without.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ds = result.maps
    if stat not in ("t", "z", "tfce", "effect") or stat not in ds:
        raise DesignError(f"stat must be one of 't', 'z', 'tfce', 'effect' present in the "
                          f"result; got {stat!r} (maps: {list(ds.data_vars)})")
    pname = {"tfce": "tfcepfwe", "voxel": "pfwe", "cluster": "clusterpfwe", "none": None}
    if correction not in pname:
        raise DesignError(f"correction must be one of {list(pname)}, not {correction!r}")
    if axis not in ("x", "y", "z"):
        raise DesignError(f"axis must be 'x', 'y' or 'z', not {axis!r}")
    val = ds[stat].transpose("x", "y", "z").values.astype(float)
    show = np.isfinite(val)
    pn = pname[correction]
    if pn is not None:
        if pn not in ds:
            raise DesignError(f"the result has no '{pn}' map; run the test with "
                              f"{'tfce=True' if pn == 'tfcepfwe' else 'cluster_p='} or choose "
                              f"another correction.")
        pv = ds[pn].transpose("x", "y", "z").values
        show &= np.nan_to_num(pv, nan=1.0) < alpha
    if threshold is not None:
        show &= np.abs(np.nan_to_num(val)) >= threshold
    under = ds["mean"].transpose("x", "y", "z").values.astype(float)
    mask = ds["mask"].values.astype(bool)
    ax_i = "xyz".index(axis)
    present = np.flatnonzero(mask.any(axis=tuple(i for i in range(3) if i != ax_i)))
    idx = np.unique(np.linspace(present[0], present[-1], min(n_slices, len(present)))
                    .round().astype(int))
    lim = vmax if vmax is not None else float(np.nanmax(np.abs(val))) or 1.0
    ncol = min(len(idx), 6)
    nrow = int(np.ceil(len(idx) / ncol))
    fig = Figure(figsize=(2.0 * ncol + 0.8, 2.1 * nrow + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    uv = under[np.isfinite(under)]
    ulo, uhi = (float(np.percentile(uv, 1)), float(np.percentile(uv, 99))) if uv.size else (0, 1)
    im = None
    aff = np.asarray(ds.attrs.get("affine", np.eye(4).ravel()), dtype=float).reshape(4, 4)
    for ax, k in zip(axes, idx, strict=False):
        sl: list[Any] = [slice(None)] * 3
        sl[ax_i] = int(k)
        u = np.take(under, int(k), axis=ax_i)
        o = np.where(np.take(show, int(k), axis=ax_i), np.take(val, int(k), axis=ax_i), np.nan)
        ax.imshow(np.nan_to_num(u, nan=ulo).T, origin="lower", cmap="gray", vmin=ulo, vmax=uhi,
                  interpolation="nearest")
        im = ax.imshow(o.T, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim,
                       interpolation="nearest")
        ijk = np.zeros(4)
        ijk[ax_i], ijk[3] = k, 1.0
        ax.set_title(f"{axis} = {(aff @ ijk)[ax_i]:.1f} mm", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(idx):]:
        ax.set_axis_off()
    if im is not None:
        fig.colorbar(im, ax=list(axes[:len(idx)]), shrink=0.8, label=stat)
    fig.suptitle(title or f"{ds.attrs.get('contrast', '')}: {stat}, "
                 + (f"FWE ({correction}) p < {alpha:g}" if pn else f"|{stat}| >= {threshold}"),
                 fontsize=9)
    return fig
