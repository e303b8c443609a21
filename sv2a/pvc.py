"""Partial-volume correction (PVC): geometric transfer matrix (GTM) and region-based voxelwise.

PET images are blurred by the scanner's point-spread function (PSF): activity of small or thin
regions spills out to their neighbours and activity of their neighbours spills in. For
[11C]UCB-J and the other SV2A tracers the best-known consequence is grey-matter spill-in into
the centrum semiovale (CS) reference region, which raises the reference TAC and biases
CS-referenced BPND, DVR and SUVR low.

* :func:`gtm` — geometric transfer matrix (Rousset, Ma & Evans 1998, J Nucl Med 39:904). The
  regional spread function ``RSF_j`` of region ``j`` is its indicator image blurred by the PSF;
  ``GTM[i, j]`` is the mean of ``RSF_j`` over region ``i`` (the fraction of region ``j``'s
  activity seen in region ``i``). The observed regional means are ``t = GTM @ T`` for the true
  regional values ``T``, so the corrected TACs are the least-squares solution of that system
  for all frames at once.
* :func:`rbv` — region-based voxelwise correction (Thomas et al. 2011, Eur J Nucl Med Mol
  Imaging 38:1104): each frame is multiplied by ``S / (PSF * S)``, ``S`` the piecewise-constant
  image holding the GTM value of every region.

PSF: a Gaussian, FWHM in mm (one value or one per voxel axis x, y, z), converted to voxels
with the voxel sizes of the image affine and applied along the voxel axes, with zero activity
outside the field of view (``scipy.ndimage.gaussian_filter``, ``mode="constant"``,
``truncate=4``). Give it as ``fwhm=``; otherwise it is read from the PET metadata key
``fwhm_mm`` (or ``sv2aPhantom.fwhm_mm`` of the phantom's sidecar). The BIDS field
``ReconFilterSize`` is *not* used: it is only the post-reconstruction filter, not the
scanner's resolution.

Unlabelled voxels: with ``background=True`` (the default for images) every voxel outside the
atlas labels (label 0 and label values without a name) forms one pseudo-region
``"background"`` with its own activity, estimated like the others (scalp, skull and
extra-cerebral tissue lumped together). With ``background=False`` unlabelled voxels are assumed
to hold no activity.

Examples
--------
>>> import sv2a
>>> from sv2a.pvc import gtm
>>> s = sv2a.phantom.make_subject("human", "ucbj", noise=0, fwhm=8.0, voxel_mm=4.0)
>>> atlas = s.atlas().merge("centrum_semiovale", ["centrum_semiovale", "white_matter"])
>>> res = gtm(s.pet(), atlas, fwhm=8.0)       # un-eroded white-matter reference
>>> truth = s.tacs.sel(region="centrum_semiovale")
>>> blurred = sv2a.extract_tacs(s.pet(), atlas).sel(region="centrum_semiovale")
>>> corrected = res.tacs.sel(region="centrum_semiovale")
>>> bool(float(blurred[-1] / truth[-1]) > 1.2)             # > 20 % grey-matter spill-in
True
>>> bool(abs(float(corrected[-1] / truth[-1]) - 1) < 1e-4)
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray
from scipy import ndimage

from .errors import (
    DataError,
    MetadataError,
    ModelError,
    RegionError,
    ShapeMismatchError,
    Sv2aWarning,
)
from .pet import DynamicPET
from .regions import region_name
from .tacs import LabelAtlas, frames_of, tacs_from_arrays

__all__ = ["GTMResult", "gtm", "rbv", "transfer_matrix", "psf_fwhm"]

#: Name of the pseudo-region of unlabelled voxels.
BACKGROUND = "background"
_TRUNCATE = 4.0  # Gaussian kernel truncated at 4 sigma (as the phantom's PSF)
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True, eq=False)
class GTMResult:
    """Result of :func:`gtm`.

    Attributes
    ----------
    tacs : xr.DataArray, shape (n_regions, n_frames)
        Partial-volume-corrected TACs (kBq/mL) of the requested regions, in the format of
        :func:`sv2a.extract_tacs` (frame coordinates in min, ``volume_ml``, ``n_voxels``);
        ``attrs`` add ``pvc="gtm"``, ``fwhm_mm`` (mm, x y z), ``pvc_condition`` and
        ``pvc_background``. Ready for :func:`sv2a.fit`.
    matrix : xr.DataArray, shape (n_gtm, n_gtm)
        The GTM over every region of the correction (all atlas regions, plus
        ``"background"`` when modelled): ``matrix.sel(region=i, source=j)`` is the fraction of
        region ``j``'s activity seen in region ``i`` (unitless).
    condition : float
        2-norm condition number of the GTM (unitless).
    observed : xr.DataArray, shape (n_gtm, n_frames)
        Uncorrected regional means (kBq/mL) of every region of the correction.
    solution : xr.DataArray, shape (n_gtm, n_frames)
        Corrected values (kBq/mL) of every region of the correction, background included
        (what :func:`rbv` paints into its synthetic image).
    """

    tacs: xr.DataArray
    matrix: xr.DataArray
    condition: float
    observed: xr.DataArray
    solution: xr.DataArray


# ----------------------------------------------------------------------------- PSF
def psf_fwhm(pet: Any = None, fwhm: Any = None) -> NDArray[np.float64]:
    """The PSF FWHM to correct for: ``fwhm`` if given, else from the PET metadata.

    Parameters
    ----------
    pet : DynamicPET, optional
        Image whose ``meta`` may hold ``fwhm_mm`` (mm, one value or x y z) or, for a phantom,
        ``sv2aPhantom.fwhm_mm``.
    fwhm : float or (float, float, float), optional
        Gaussian PSF full width at half maximum (mm), per voxel axis if three values.

    Returns
    -------
    ndarray, shape (3,)
        FWHM along the voxel axes x, y, z (mm).

    Raises
    ------
    MetadataError
        No ``fwhm`` given and none in the metadata, or the image is already corrected.
    ModelError
        Negative, non-finite or wrongly shaped FWHM.

    Examples
    --------
    >>> psf_fwhm(fwhm=4.5).tolist()
    [4.5, 4.5, 4.5]
    """
    source = "fwhm="
    meta = dict(getattr(pet, "meta", None) or {})
    if meta.get("pvc"):
        raise MetadataError(
            f"{getattr(pet, 'path', None) or 'PET image'}: already partial-volume corrected "
            f"(meta pvc={meta['pvc']!r}); correct the original image instead"
        )
    if fwhm is None:
        phantom = meta.get("sv2aPhantom")
        if meta.get("fwhm_mm") is not None:
            fwhm, source = meta["fwhm_mm"], "PET metadata 'fwhm_mm'"
        elif isinstance(phantom, dict) and phantom.get("fwhm_mm") is not None:
            fwhm, source = phantom["fwhm_mm"], "PET metadata 'sv2aPhantom.fwhm_mm'"
        else:
            raise MetadataError(
                f"{getattr(pet, 'path', None) or 'PET image'}: partial-volume correction needs "
                "the scanner PSF; pass fwhm= (Gaussian FWHM in mm, one value or x y z) or put "
                "'fwhm_mm' in the PET metadata (ReconFilterSize is only the post-filter, not "
                "the resolution, and is not used)"
            )
    try:
        f = np.broadcast_to(np.asarray(fwhm, dtype=float), (3,)).copy()
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{source}: FWHM must be one number or three (mm), got {fwhm!r}") from exc
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ModelError(f"{source}: FWHM must be >= 0 mm, got {fwhm!r}")
    return f


def _sigma_vox(fwhm_mm: NDArray[np.float64], affine: Any) -> NDArray[np.float64]:
    vox = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    return np.asarray(fwhm_mm / _FWHM_PER_SIGMA / vox, dtype=float)


def _affine(atlas: LabelAtlas) -> NDArray[np.float64]:
    return np.asarray(getattr(atlas, "affine", np.eye(4)), dtype=float)


def _blur(vol: NDArray[Any], sigma: NDArray[np.float64]) -> NDArray[Any]:
    if not np.any(sigma > 0):
        return vol
    return ndimage.gaussian_filter(vol, sigma, mode="constant", truncate=_TRUNCATE)


# ----------------------------------------------------------------------------- regions
@dataclass(frozen=True)
class _Layout:
    """The atlas as GTM indices: 0 = background/unlabelled, 1..R = named regions."""

    index: NDArray[np.int32]          # (x, y, z) GTM index of every voxel
    names: list[str]                  # region names, GTM index 1..R
    counts: NDArray[np.int64]         # voxels per GTM index (0..R)
    voxel_volume_ml: float


def _layout(atlas: LabelAtlas) -> _Layout:
    labels = np.asarray(atlas.labels)
    if labels.size and labels.min() < 0:
        raise RegionError(f"{atlas.source}: negative labels in the label image")
    names = list(atlas.names)
    if BACKGROUND in names:
        raise RegionError(
            f"{atlas.source}: a region is named '{BACKGROUND}', the name of the pseudo-region "
            "of unlabelled voxels; rename it"
        )
    index_of = atlas.index_of
    lab_values = [int(index_of[n]) for n in names]
    lut = np.zeros(int(max([int(labels.max()) if labels.size else 0, *lab_values])) + 1,
                   dtype=np.int32)
    for k, v in enumerate(lab_values, start=1):
        lut[v] = k
    index = lut[labels]
    counts = np.bincount(index.ravel(), minlength=len(names) + 1).astype(np.int64)
    empty = [n for n, c in zip(names, counts[1:], strict=True) if c == 0]
    if empty:
        raise RegionError(
            f"{atlas.source}: region(s) {empty} have no voxels on the PET grid; partial-volume "
            "correction needs every region of the atlas to be non-empty — drop them with "
            "atlas.subset(...) or fix the atlas registration"
        )
    return _Layout(index, names, counts, float(atlas.voxel_volume_ml))


def _gtm_matrix(lay: _Layout, sigma: NDArray[np.float64], background: bool
                ) -> NDArray[np.float64]:
    """GTM over indices 0..R (row i: observed region, column j: source region)."""
    n = len(lay.names) + 1
    idx = lay.index
    shape = idx.shape
    m = np.zeros((n, n))
    if not np.any(sigma > 0):
        return np.eye(n)
    pad = [int(_TRUNCATE * float(s) + 0.5) for s in sigma]
    boxes = ndimage.find_objects(idx, max_label=n - 1)
    for j, box in enumerate(boxes, start=1):
        if box is None:
            continue
        # the RSF vanishes beyond the kernel radius: blurring the region's bounding box padded
        # by that radius gives exactly the full-image RSF (zero outside the grid either way)
        big = tuple(slice(max(sl.start - p, 0), min(sl.stop + p, size))
                    for sl, p, size in zip(box, pad, shape, strict=True))
        sub = idx[big]
        rsf = _blur((sub == j).astype(np.float32), sigma)
        m[:, j] = np.bincount(sub.ravel(), weights=rsf.ravel(), minlength=n)
    if background:
        # blur(1_bg) = blur(1) - sum_j blur(1_j), and blur(1) is separable (product of the
        # 1-D blurred ones along each axis), so the background RSF costs one pass
        ones = [ndimage.gaussian_filter1d(np.ones(size), float(s), mode="constant",
                                          truncate=_TRUNCATE) if s > 0 else np.ones(size)
                for size, s in zip(shape, sigma, strict=True)]
        full = np.einsum("i,j,k->ijk", *ones)
        m[:, 0] = np.bincount(idx.ravel(), weights=full.ravel(), minlength=n) - m[:, 1:].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = m / lay.counts[:, None]
    return np.asarray(out)


def transfer_matrix(atlas: LabelAtlas, *, fwhm: Any, background: bool = True,
                    affine: Any = None) -> xr.DataArray:
    """Geometric transfer matrix of an atlas for a Gaussian PSF (Rousset et al. 1998).

    Parameters
    ----------
    atlas : Atlas
        Label image (on the PET grid) with its region names.
    fwhm : float or (float, float, float)
        Gaussian PSF FWHM (mm), per voxel axis if three values.
    background : bool
        Add the pseudo-region ``"background"`` of unlabelled voxels (last row and column).
    affine : array_like (4, 4), optional
        Voxel -> mm affine giving the voxel sizes (default the atlas's).

    Returns
    -------
    xr.DataArray, shape (n, n)
        ``GTM[region=i, source=j]`` = mean over region ``i`` of region ``j``'s indicator image
        blurred by the PSF (unitless); rows sum to the PSF mass kept in the field of view
        (1 away from its edges) when the background is included.

    Raises
    ------
    RegionError
        A region of the atlas is empty, or one is named ``"background"``.
    ModelError
        Invalid FWHM.

    Examples
    --------
    >>> import numpy as np
    >>> from sv2a.atlas import Atlas
    >>> lab = np.zeros((20, 20, 20), int); lab[5:15, 5:15, 5:15] = 1; lab[8:12, 8:12, 8:12] = 2
    >>> m = transfer_matrix(Atlas(lab, {1: "shell", 2: "core"}), fwhm=2.0)
    >>> m.dims, m.region.values.tolist()
    (('region', 'source'), ['shell', 'core', 'background'])
    >>> m.sum("source").round(6).values.tolist()[:2]     # away from the edges of the grid
    [1.0, 1.0]
    """
    lay = _layout(atlas)
    f = psf_fwhm(None, fwhm)
    sigma = _sigma_vox(f, _affine(atlas) if affine is None else affine)
    m = _gtm_matrix(lay, sigma, background)
    order = _order(len(lay.names), background)
    names = _names(lay, background)
    return xr.DataArray(m[np.ix_(order, order)], dims=("region", "source"),
                        coords={"region": names, "source": names},
                        attrs={"fwhm_mm": [float(v) for v in f], "units": "1"})


def _order(n_regions: int, background: bool) -> list[int]:
    """GTM indices in output order: regions 1..R, then the background (index 0)."""
    return list(range(1, n_regions + 1)) + ([0] if background else [])


def _names(lay: _Layout, background: bool) -> list[str]:
    return [*lay.names, *([BACKGROUND] if background else [])]


# ----------------------------------------------------------------------------- observed means
def _observed_means(pet: DynamicPET, lay: _Layout) -> NDArray[np.float64]:
    """Mean of every GTM index (0..R) per frame (kBq/mL), one read of each frame."""
    n = len(lay.names) + 1
    flat = lay.index.ravel()
    out = np.empty((n, pet.n_frames))
    for f in range(pet.n_frames):
        frame = np.asarray(pet.frame(f), dtype=np.float64).ravel()
        if not np.all(np.isfinite(frame)):
            bad = int((~np.isfinite(frame)).sum())
            raise DataError(
                f"{pet.path or 'PET image'}: frame {f} has {bad} non-finite voxels; "
                "partial-volume correction needs finite values everywhere (set voxels outside "
                "the field of view to 0)"
            )
        out[:, f] = np.bincount(flat, weights=frame, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(out / lay.counts[:, None])


# ----------------------------------------------------------------------------- GTM
def gtm(pet: Any, atlas: LabelAtlas, *, fwhm: Any = None,
        regions: Sequence[str] | None = None, background: bool | None = None,
        warn_condition: float = 100.0) -> GTMResult:
    """Partial-volume-corrected regional TACs by the geometric transfer matrix.

    Rousset, Ma & Evans 1998 (J Nucl Med 39:904): ``observed = GTM @ true`` for the regional
    means, ``GTM[i, j]`` the mean over region ``i`` of region ``j``'s PSF-blurred indicator
    image; the corrected TACs solve that system by least squares for all frames at once.

    Parameters
    ----------
    pet : DynamicPET or xr.DataArray
        The image (kBq/mL, frames in min) on the atlas grid, or regional TACs already
        extracted (:func:`sv2a.extract_tacs`, region x frame, kBq/mL) holding every atlas
        region (and a ``"background"`` row to model unlabelled voxels).
    atlas : Atlas
        Label image on the PET grid with its region names. Every region takes part in the
        correction; ``regions`` only selects the output.
    fwhm : float or (float, float, float), optional
        Gaussian PSF FWHM (mm), per voxel axis if three values; default ``pet.meta`` key
        ``fwhm_mm`` (or the phantom's ``sv2aPhantom.fwhm_mm``). Required for TAC input.
    regions : sequence of str, optional
        Regions to return (default: every atlas region).
    background : bool, optional
        Model unlabelled voxels as one pseudo-region ``"background"`` (default: True for an
        image; for TACs, True when they have a ``"background"`` row). False assumes they hold
        no activity.
    warn_condition : float
        Warn when the GTM's condition number exceeds this (unitless).

    Returns
    -------
    GTMResult
        ``tacs`` (corrected, region x frame, kBq/mL, the format of :func:`sv2a.extract_tacs`
        with ``attrs`` ``pvc="gtm"``, ``fwhm_mm``, ``pvc_condition``), ``matrix`` (the GTM),
        ``condition``, ``observed`` and ``solution`` (all regions of the correction).

    Raises
    ------
    MetadataError
        No PSF: ``fwhm`` not given and not in the PET metadata.
    ShapeMismatchError
        The atlas is not on the PET grid, or TACs have the wrong dimensions.
    RegionError
        An atlas region is empty, a requested region is not in the atlas, or TACs lack atlas
        regions (or the ``"background"`` row when ``background=True``).
    DataError
        Non-finite image values.
    ModelError
        Invalid FWHM.

    Warns
    -----
    Sv2aWarning
        The GTM is ill-conditioned (condition number above ``warn_condition``).

    Notes
    -----
    The correction assumes uniform activity within each region and an exactly known,
    spatially invariant Gaussian PSF applied along the voxel axes (for oblique affines the
    voxel sizes are the column norms of the affine). On the phantom, a PSF wrong by 0.5 mm at
    4.5 mm leaves ~7 % error in cortical TACs, so use the scanner's measured resolution. A
    region without activity (e.g. ventricles in the phantom) gets a corrected TAC near 0 that
    the kinetic models refuse; leave it out of the output with ``regions=`` (it still takes
    part in the correction). The matrix is built by blurring each region's bounding box padded
    by the kernel radius (exact, as the truncated kernel vanishes beyond it), so the cost
    grows with the regions' size, not with their number times the image size.

    Examples
    --------
    >>> import sv2a
    >>> s = sv2a.phantom.make_subject("human", "ucbj", noise=0, fwhm=8.0, voxel_mm=4.0)
    >>> res = gtm(s.pet(), s.atlas(), fwhm=8.0)
    >>> res.tacs.attrs["pvc"], round(res.condition, 1) < 100
    ('gtm', True)
    >>> err = abs(res.tacs.sel(region="putamen") / s.tacs.sel(region="putamen") - 1)
    >>> bool(err.max() < 1e-4)
    True
    """
    if not isinstance(atlas, LabelAtlas):
        raise TypeError("atlas must be an sv2a.Atlas (use sv2a.load_atlas)")
    is_tacs = isinstance(pet, xr.DataArray)
    if not is_tacs and not isinstance(pet, DynamicPET):
        raise TypeError("pet must be an sv2a.DynamicPET (sv2a.load_pet) or regional TACs "
                        "(xr.DataArray from sv2a.extract_tacs)")
    f = psf_fwhm(None if is_tacs else pet, fwhm)
    if not is_tacs:
        atlas.check_grid(pet.shape[:3], pet.affine)
    lay = _layout(atlas)
    if is_tacs:
        tac_in: xr.DataArray = pet
        if tac_in.dims != ("region", "frame"):
            raise ShapeMismatchError(
                f"TACs have dims {tac_in.dims}; expected ('region', 'frame') as made by "
                "sv2a.extract_tacs"
            )
        have = [region_name(r) for r in tac_in.region.values]
        if background is None:
            background = BACKGROUND in have
        need = lay.names + ([BACKGROUND] if background else [])
        missing = [n for n in need if n not in have]
        if missing:
            raise RegionError(
                f"TACs lack regions {missing} of the atlas ({atlas.source}); the GTM needs the "
                "observed mean of every region of the correction — extract TACs of all atlas "
                "regions (add a 'background' row or use background=False), or drop regions "
                "from the atlas with atlas.subset(...)"
            )
        pos = {n: i for i, n in enumerate(have)}
        vals = np.asarray(tac_in.values, dtype=float)
        obs = np.zeros((len(lay.names) + 1, vals.shape[1]))
        for k, n in enumerate(lay.names, start=1):
            obs[k] = vals[pos[n]]
        if background:
            obs[0] = vals[pos[BACKGROUND]]
        fs = frames_of(tac_in)
        source = "tacs"
        src_attrs = {k: v for k, v in tac_in.attrs.items()
                     if k in ("pet", "atlas") and isinstance(v, str)}
    else:
        if background is None:
            background = True
        obs = _observed_means(pet, lay)
        fs = pet.frames
        source = str(pet.path) if pet.path is not None else "PET image"
        src_attrs = {"pet": str(pet.path), "atlas": str(atlas.source)}
    if background and lay.counts[0] == 0:
        background = False  # every voxel is labelled: nothing to model
    sigma = _sigma_vox(f, _affine(atlas))
    full = _gtm_matrix(lay, sigma, background)
    order = _order(len(lay.names), background)
    m = full[np.ix_(order, order)]
    names = _names(lay, background)
    cond = float(np.linalg.cond(m))
    if not np.isfinite(cond) or cond > warn_condition:
        warnings.warn(
            f"the GTM of {atlas.source} at FWHM {f.tolist()} mm is ill-conditioned (condition "
            f"number {cond:.3g} > {warn_condition:g}): corrected TACs amplify noise and "
            "registration errors; merge small regions or check the FWHM",
            Sv2aWarning, stacklevel=2)
    solution, *_ = np.linalg.lstsq(m, obs[order], rcond=None)

    if regions is None:
        wanted = list(lay.names)
    else:
        wanted = [region_name(r) for r in regions]
        bad = [r for r in wanted if r not in lay.names]
        if bad:
            raise RegionError(
                f"regions {bad} are not in the atlas ({atlas.source}); available: "
                f"{lay.names[:20]}{' ...' if len(lay.names) > 20 else ''}"
            )
    sel = [lay.names.index(r) for r in wanted]
    counts = lay.counts[order]
    attrs = {**src_attrs, "pvc": "gtm", "fwhm_mm": [float(v) for v in f],
             "pvc_condition": cond, "pvc_background": int(background)}
    tacs = tacs_from_arrays(
        solution[sel], fs.start, fs.end, wanted, volume_ml=counts[sel] * lay.voxel_volume_ml,
        n_voxels=counts[sel], half_life=fs.half_life, decay_corrected=fs.decay_corrected,
        source=source, attrs=attrs)
    kw: dict[str, Any] = {"volume_ml": counts * lay.voxel_volume_ml, "n_voxels": counts,
                          "half_life": fs.half_life, "decay_corrected": fs.decay_corrected,
                          "source": source}
    observed = tacs_from_arrays(obs[order], fs.start, fs.end, names, **kw,
                                attrs={**src_attrs, "pvc": "none"})
    sol = tacs_from_arrays(solution, fs.start, fs.end, names, **kw, attrs=attrs)
    matrix = xr.DataArray(m, dims=("region", "source"), coords={"region": names,
                                                                 "source": names},
                          attrs={"fwhm_mm": [float(v) for v in f], "units": "1",
                                 "condition": cond})
    return GTMResult(tacs, matrix, cond, observed, sol)


# ----------------------------------------------------------------------------- RBV
def rbv(pet: DynamicPET, atlas: LabelAtlas, *, fwhm: Any = None,
        gtm_result: GTMResult | None = None, background: bool = True,
        warn_condition: float = 100.0) -> DynamicPET:
    """Region-based voxelwise partial-volume correction of a dynamic image.

    Thomas et al. 2011 (Eur J Nucl Med Mol Imaging 38:1104): for each frame the synthetic
    image ``S`` holding every region's GTM value (:func:`gtm`) gives the corrected image
    ``observed * S / (PSF * S)``. Where ``PSF * S`` vanishes (no activity within the kernel)
    the voxel is left as observed.

    Parameters
    ----------
    pet : DynamicPET
        The image (kBq/mL, frames in min) on the atlas grid.
    atlas : Atlas
        Label image on the PET grid with its region names.
    fwhm : float or (float, float, float), optional
        Gaussian PSF FWHM (mm); default from ``pet.meta`` as in :func:`gtm`.
    gtm_result : GTMResult, optional
        A :func:`gtm` result of the same image, atlas and FWHM (computed when not given).
    background : bool
        Model unlabelled voxels as the ``"background"`` pseudo-region (see :func:`gtm`).
    warn_condition : float
        Condition number above which :func:`gtm` warns (unitless).

    Returns
    -------
    DynamicPET
        Corrected image (float32, kBq/mL) with the frames and affine of ``pet``; ``meta``
        adds ``pvc="rbv"``, ``pvc_fwhm_mm`` (mm) and ``pvc_condition``.

    Raises
    ------
    MetadataError
        No PSF: ``fwhm`` not given and not in the PET metadata.
    ShapeMismatchError
        The atlas is not on the PET grid.
    RegionError
        An atlas region is empty, or ``gtm_result`` does not cover the atlas.
    DataError
        Non-finite image values.

    Examples
    --------
    >>> import sv2a
    >>> s = sv2a.phantom.make_subject("human", "ucbj", noise=0, fwhm=8.0, voxel_mm=4.0)
    >>> out = rbv(s.pet(), s.atlas(), fwhm=8.0)
    >>> out.meta["pvc"], out.shape == s.image.shape
    ('rbv', True)
    >>> voxel = out.data[s.labels == 17][:, -1].mean()   # label 17 = centrum_semiovale
    >>> bool(abs(voxel / s.tacs.sel(region="centrum_semiovale")[-1] - 1) < 1e-4)
    True
    """
    f = psf_fwhm(pet, fwhm)
    atlas.check_grid(pet.shape[:3], pet.affine)
    if gtm_result is None:
        gtm_result = gtm(pet, atlas, fwhm=f, background=background,
                         warn_condition=warn_condition)
    lay = _layout(atlas)
    sol = gtm_result.solution
    have = [str(r) for r in sol.region.values]
    missing = [n for n in lay.names if n not in have]
    if missing or sol.sizes["frame"] != pet.n_frames:
        raise RegionError(
            f"gtm_result does not match the image and atlas (missing regions {missing}, "
            f"{sol.sizes['frame']} frames vs {pet.n_frames}); compute it with sv2a.pvc.gtm on "
            "the same image and atlas"
        )
    lut = np.zeros((len(lay.names) + 1, pet.n_frames), dtype=np.float32)
    for k, n in enumerate(lay.names, start=1):
        lut[k] = sol.sel(region=n).values
    if BACKGROUND in have:
        lut[0] = sol.sel(region=BACKGROUND).values
    sigma = _sigma_vox(f, pet.affine)
    idx = lay.index
    out = np.empty(pet.shape, dtype=np.float32, order="F")
    for fr in range(pet.n_frames):
        obs = np.asarray(pet.frame(fr), dtype=np.float32)
        synth = lut[:, fr][idx]
        blurred = _blur(synth, sigma)
        ratio = np.ones_like(synth)
        scale = float(np.abs(blurred).max()) if blurred.size else 0.0
        np.divide(synth, blurred, out=ratio, where=np.abs(blurred) > 1e-6 * scale)
        out[..., fr] = obs * ratio
    meta = dict(pet.meta)
    meta.update(pvc="rbv", pvc_fwhm_mm=[float(v) for v in f],
                pvc_condition=float(gtm_result.condition), pvc_atlas=str(atlas.source))
    return DynamicPET.from_array(out, pet.frames, pet.affine, meta=meta)
