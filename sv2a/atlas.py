"""Label images (atlases): region masks, merging, erosion, grid checks and resampling.

A region atlas is a 3D integer label image plus a table ``index -> name`` read from a BIDS
``dseg.tsv`` (columns ``index`` and ``name``) or a FreeSurfer colour LUT
(``index name R G B A``). Names are normalised to snake_case (``Left-Hippocampus`` ->
``left_hippocampus``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pandas as pd
from nibabel.spatialimages import SpatialImage
from scipy import ndimage

from .errors import DataError, MetadataError, RegionError, ShapeMismatchError, Sv2aWarning
from .regions import region_name
from .sidecar import applicable_files, sidecar_places

__all__ = ["Atlas", "load_atlas", "read_label_table"]


@dataclass(frozen=True, eq=False)
class Atlas:
    """A label image and its region names.

    Parameters
    ----------
    labels : ndarray of int, shape (x, y, z)
        0 = background.
    label_names : mapping int -> str
        Region name of each label value (normalised to snake_case).
    affine : ndarray (4, 4)
        Voxel -> mm.
    source : str
        Where it came from (for messages).

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((4, 4, 4), int); lab[1:3, 1:3, 1:3] = 1; lab[0, 0, 0] = 2
    >>> a = Atlas(lab, {1: "Left-Putamen", 2: "right putamen"})
    >>> int(a.mask("left_putamen").sum()), a.names
    (8, ['left_putamen', 'right_putamen'])
    """

    labels: np.ndarray
    label_names: Mapping[int, str]
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    source: str = "atlas"

    def __post_init__(self) -> None:
        lab = np.asarray(self.labels)
        if lab.ndim != 3:
            raise ShapeMismatchError(f"{self.source}: label image must be 3D, got {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer):
            if not np.all(np.equal(np.mod(lab, 1), 0)):
                raise DataError(f"{self.source}: label image holds non-integer values")
            lab = lab.astype(np.int32)
        object.__setattr__(self, "labels", lab)
        names = {int(k): region_name(v) for k, v in self.label_names.items() if int(k) != 0}
        seen: dict[str, int] = {}
        for k, v in names.items():
            if v in seen:
                raise RegionError(
                    f"{self.source}: labels {seen[v]} and {k} share the name '{v}'; names must "
                    "be unique (merge them with Atlas.merge instead)"
                )
            seen[v] = k
        object.__setattr__(self, "label_names", names)
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=float))

    # ---------------------------------------------------------------- lookup
    @property
    def names(self) -> list[str]:
        """Region names in label order."""
        return [self.label_names[k] for k in sorted(self.label_names)]

    @property
    def index_of(self) -> dict[str, int]:
        """Region name -> label value."""
        return {v: k for k, v in self.label_names.items()}

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel edge lengths (mm)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel (mL)."""
        return float(np.prod(self.voxel_size) / 1000.0)

    def _index(self, name: str) -> int:
        key = region_name(name)
        idx = self.index_of
        if key not in idx:
            raise RegionError(
                f"region '{name}' is not in {self.source}; available: {', '.join(self.names)}"
            )
        return idx[key]

    def mask(self, name: str | Iterable[str]) -> np.ndarray:
        """Boolean mask of one region or the union of several.

        Parameters
        ----------
        name : str or iterable of str
            Region name(s), in any spelling that normalises to an atlas name.

        Returns
        -------
        ndarray of bool, shape (x, y, z)
            True inside the region(s).

        Raises
        ------
        RegionError
            A name is not in the atlas or the regions have no voxels.
        """
        names = [name] if isinstance(name, str) else list(name)
        m = np.isin(self.labels, [self._index(n) for n in names])
        if not m.any():
            raise RegionError(f"region(s) {names} have no voxels in {self.source}")
        return m

    def volume_ml(self, name: str) -> float:
        """Volume of a region.

        Parameters
        ----------
        name : str
            Region name.

        Returns
        -------
        float
            Number of voxels times the voxel volume (mL).
        """
        return float(self.mask(name).sum() * self.voxel_volume_ml)

    # ---------------------------------------------------------------- editing
    def merge(self, new_name: str, names: Iterable[str], *, keep: bool = False) -> Atlas:
        """Merge regions into one named ``new_name`` (e.g. left + right hemispheres).

        Parameters
        ----------
        new_name : str
            Name of the merged region; it takes the smallest label value of the parts.
        names : iterable of str
            Regions to merge.
        keep : bool
            With ``False`` the parts are replaced by the merged region; ``True`` (keep the
            parts as well) cannot be represented in one label image, so an error is raised.

        Returns
        -------
        Atlas
            A new atlas.

        Raises
        ------
        RegionError
            ``keep=True``, an unknown part, or ``new_name`` already used by another region.
        """
        if keep:
            raise RegionError("a label image cannot hold overlapping regions; use keep=False")
        parts = [self._index(n) for n in names]
        new_idx = min(parts)
        labels = self.labels.copy()
        labels[np.isin(labels, parts)] = new_idx
        table = {k: v for k, v in self.label_names.items() if k not in parts}
        if region_name(new_name) in table.values():
            raise RegionError(f"region '{new_name}' already exists in {self.source}")
        table[new_idx] = new_name
        return Atlas(labels, table, self.affine, self.source)

    def erode(self, name: str, mm: float, *, new_name: str | None = None) -> Atlas:
        """Erode one region by ``mm`` millimetres (Euclidean distance, anisotropic voxels).

        Voxels closer than ``mm`` to any voxel outside the region are removed from it (set to
        background), e.g. to keep a centrum-semiovale ROI away from grey matter spill-in.

        Parameters
        ----------
        name : str
            Region to erode.
        mm : float
            Erosion distance (mm).
        new_name : str, optional
            Rename the eroded region.

        Returns
        -------
        Atlas
            A new atlas.

        Raises
        ------
        RegionError
            Nothing is left of the region.
        """
        idx = self._index(name)
        m = self.labels == idx
        dist = ndimage.distance_transform_edt(m, sampling=self.voxel_size)
        keep = dist > mm
        if not keep.any():
            raise RegionError(
                f"eroding '{name}' by {mm} mm leaves no voxels (thickest part "
                f"{dist.max():.1f} mm); use a smaller erosion"
            )
        labels = self.labels.copy()
        labels[m & ~keep] = 0
        table = dict(self.label_names)
        if new_name:
            table[idx] = new_name
        return Atlas(labels, table, self.affine, self.source)

    def subset(self, names: Iterable[str]) -> Atlas:
        """Keep only the named regions.

        Parameters
        ----------
        names : iterable of str
            Regions to keep; the others become background.

        Returns
        -------
        Atlas
            A new atlas.
        """
        keep = {self._index(n) for n in names}
        labels = np.where(np.isin(self.labels, list(keep)), self.labels, 0)
        return Atlas(labels, {k: v for k, v in self.label_names.items() if k in keep},
                     self.affine, self.source)

    # ---------------------------------------------------------------- grids
    def check_grid(self, shape: Sequence[int], affine: npt.ArrayLike, *,
                   atol: float = 1e-3) -> None:
        """Check that the atlas is on a given voxel grid.

        Parameters
        ----------
        shape : sequence of int
            Grid shape (voxels); only the first three entries are used.
        affine : array_like, shape (4, 4)
            Voxel index -> mm of the grid.
        atol : float
            Largest allowed difference of affine entries (mm).

        Returns
        -------
        None

        Raises
        ------
        ShapeMismatchError
            The shape or the affine differs.
        """
        shape = tuple(int(s) for s in shape[:3])
        if self.labels.shape != shape:
            raise ShapeMismatchError(
                f"{self.source}: atlas grid {self.labels.shape} differs from the PET grid {shape}; "
                "register/resample the atlas to the PET (or load it with pet=..., resample=True "
                "for nearest-neighbour resampling)"
            )
        if not np.allclose(self.affine, np.asarray(affine, float), atol=atol):
            raise ShapeMismatchError(
                f"{self.source}: atlas affine differs from the PET affine (max difference "
                f"{np.max(np.abs(self.affine - np.asarray(affine))):.3g} mm); the atlas is not in "
                "PET space. Resample it (resample=True) or fix the header"
            )

    def resample_to(self, shape: Sequence[int], affine: npt.ArrayLike) -> Atlas:
        """Nearest-neighbour resampling onto another grid.

        Parameters
        ----------
        shape : sequence of int
            Target grid shape (voxels); only the first three entries are used.
        affine : array_like, shape (4, 4)
            Target voxel index -> mm.

        Returns
        -------
        Atlas
            The atlas on the target grid (labels outside the original field of view are 0).
        """
        target = np.asarray(affine, float)
        vox2vox = np.linalg.solve(self.affine, target)  # target voxel -> atlas voxel
        out = ndimage.affine_transform(self.labels, vox2vox[:3, :3], offset=vox2vox[:3, 3],
                                       output_shape=tuple(int(s) for s in shape[:3]), order=0,
                                       mode="constant", cval=0)
        return Atlas(out.astype(self.labels.dtype), self.label_names, target, self.source)


def read_label_table(path: str | os.PathLike[str]) -> dict[int, str]:
    """Read the label table of a label image.

    Parameters
    ----------
    path : str or path-like
        A BIDS ``dseg.tsv`` (columns ``index`` and ``name``) or a FreeSurfer colour LUT
        (``index name R G B A`` lines, ``#`` comments).

    Returns
    -------
    dict of int to str
        Label value -> region name as written in the file.

    Raises
    ------
    MetadataError
        The file is missing, malformed or empty.
    """
    p = Path(path)
    if not p.exists():
        raise MetadataError(f"label table not found: {p}")
    text = p.read_text(encoding="utf-8", errors="replace")
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    if "\t" in first and "index" in first.lower().split("\t"):
        df = pd.read_csv(p, sep="\t")
        cols = {c.lower(): c for c in df.columns}
        if "name" not in cols:
            raise MetadataError(f"{p}: a dseg.tsv needs columns 'index' and 'name'")
        return {int(i): str(n) for i, n in zip(df[cols["index"]], df[cols["name"]], strict=True)}
    table: dict[int, str] = {}
    for ln_no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        try:
            table[int(parts[0])] = parts[1]
        except (ValueError, IndexError) as exc:
            raise MetadataError(
                f"{p}: line {ln_no} is not 'index name [R G B A]' (FreeSurfer LUT) nor a "
                "dseg.tsv row"
            ) from exc
    if not table:
        raise MetadataError(f"{p}: no labels found")
    return table


def load_atlas(path: str | os.PathLike[str],
               labels: str | os.PathLike[str] | Mapping[int, str] | None = None, *,
               pet: Any = None, resample: bool = False) -> Atlas:
    """Load a label image and its names.

    Parameters
    ----------
    path : path
        Label image (NIfTI, integer values).
    labels : path or mapping, optional
        ``dseg.tsv`` (``index name``), FreeSurfer LUT, or ``{index: name}``. Default: the
        ``.tsv`` beside the image (``x_dseg.nii.gz`` -> ``x_dseg.tsv``) or, by BIDS's
        inheritance principle, the nearest shared one (e.g. ``dseg.tsv`` at the dataset root).
    pet : DynamicPET, optional
        Check the atlas is on this PET's grid (:class:`ShapeMismatchError` otherwise) ...
    resample : bool
        ... or, if True, resample it there with nearest neighbour.

    Returns
    -------
    Atlas
        The label image with its region names (snake_case); labels of the table without
        any voxel in the image are left out with a warning.

    Raises
    ------
    DataError
        The image is missing or unreadable.
    MetadataError
        No label table found, or the table is malformed.
    RegionError
        Label values without a name.
    ShapeMismatchError
        ``pet`` is given, ``resample`` is False and the grids differ.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"atlas image not found: {p}")
    try:
        img = nib.load(str(p))
        if not isinstance(img, SpatialImage):
            raise TypeError(f"not a volume image ({type(img).__name__})")
        data = np.asarray(img.dataobj)
    except Exception as exc:
        raise DataError(f"{p}: cannot read label image ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if labels is None:
        tables = applicable_files(p, ".tsv")  # BIDS inheritance: the nearest table wins
        if not tables:
            raise MetadataError(
                f"{p}: no label table given and {p.name.split('.nii')[0]}.tsv does not exist; "
                f"expected {sidecar_places(p, '.tsv')}; or pass labels= a dseg.tsv or a "
                "FreeSurfer LUT"
            )
        labels = tables[-1]
    table = dict(labels) if isinstance(labels, Mapping) else read_label_table(labels)
    present = set(np.unique(data).astype(int).tolist()) - {0}
    unnamed = sorted(present - set(table))
    if unnamed:
        raise RegionError(
            f"{p}: label values {unnamed[:10]} have no name in the label table; add them"
        )
    absent = sorted(str(v) for k, v in table.items() if k not in present)
    if absent:  # named in the table, no voxel in the image: say so, never drop silently
        warnings.warn(f"{p}: region(s) {absent} of the label table have no voxel in the "
                      "image and are left out", Sv2aWarning, stacklevel=2)
    atlas = Atlas(data, {k: v for k, v in table.items() if k in present},
                  np.asarray(img.affine, dtype=float), str(p))
    if pet is not None:
        if resample:
            return atlas.resample_to(pet.shape, pet.affine)
        atlas.check_grid(pet.shape, pet.affine)
    return atlas
