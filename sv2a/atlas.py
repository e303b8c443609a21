"""Label images (atlases): region masks, merging, erosion, grid checks and resampling.

A region atlas is a 3D integer label image plus a table ``index -> name`` read from a BIDS
``dseg.tsv`` (columns ``index`` and ``name``) or a FreeSurfer colour LUT
(``index name R G B A``). Names are normalised to snake_case (``Left-Hippocampus`` ->
``left_hippocampus``).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel.spatialimages import SpatialImage

from .errors import (
    DataError,
    MetadataError,
    RegionError,
    ShapeMismatchError,
    Sv2aError,
    Sv2aWarning,
)
from .regions import name_list, region_name
from .sidecar import applicable_files, read_utf8, sidecar_places

__all__ = ["Atlas", "load_atlas", "read_label_table", "place_on_grid", "same_grid",
           "grid_difference", "inside_fraction", "MIN_INSIDE_FRACTION"]


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
            if not v:
                raise RegionError(
                    f"{self.source}: the name {self.label_names[k]!r} of label {k} has no "
                    "letter or digit (A-Z, 0-9, accents dropped); give it a name sv2a can use "
                    "in file names"
                )
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
        from scipy import ndimage  # ~0.1 s to import: only erosion and resampling need it

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
            The shape or the affine differs; the message says by how much (shape, voxel
            size, origin offset in mm) and how to fix it.
        """
        if not same_grid(self.labels.shape, self.affine, shape, affine, atol=atol):
            raise ShapeMismatchError(
                f"{self.source}: the segmentation is not on the PET grid "
                f"({grid_difference(self.labels.shape, self.affine, shape, affine)}). "
                f"{_GRID_FIX}"
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
        from scipy import ndimage

        target = np.asarray(affine, float)
        vox2vox = np.linalg.solve(self.affine, target)  # target voxel -> atlas voxel
        out = ndimage.affine_transform(self.labels, vox2vox[:3, :3], offset=vox2vox[:3, 3],
                                       output_shape=tuple(int(s) for s in shape[:3]), order=0,
                                       mode="constant", cval=0)
        return Atlas(out.astype(self.labels.dtype), self.label_names, target, self.source)


#: How to fix a segmentation that is not on the PET grid (the end of every such message).
_GRID_FIX = ("Register/resample it to the PET yourself (nearest neighbour), fix its header if "
             "it was drawn on the PET image, or let sv2a resample it with nearest neighbour: "
             "sv2a run/validate --atlas-resample (config atlas_resample: true; API "
             "load_atlas(..., pet=pet, resample=True))")

#: Labelled voxels whose value the label table does not name are left out (with a warning)
#: up to this share of all labelled voxels; more means the table belongs to another
#: segmentation, and the atlas is refused.
MAX_UNNAMED_SHARE = 0.5

#: With resampling, at least this fraction of the labelled voxels must lie inside the PET
#: field of view; otherwise the headers disagree or the segmentation belongs to another scan.
MIN_INSIDE_FRACTION = 0.9


def same_grid(shape_a: Sequence[int], affine_a: npt.ArrayLike, shape_b: Sequence[int],
              affine_b: npt.ArrayLike, *, atol: float = 1e-3) -> bool:
    """Whether two voxel grids are the same (shape and voxel -> mm affine).

    Parameters
    ----------
    shape_a, shape_b : sequence of int
        Grid shapes (voxels); only the first three entries are used.
    affine_a, affine_b : array_like, shape (4, 4)
        Voxel index -> mm.
    atol : float
        Largest allowed difference of affine entries (mm).

    Returns
    -------
    bool
        True when the shapes are equal and every affine entry agrees within ``atol``.
    """
    return (tuple(int(v) for v in shape_a[:3]) == tuple(int(v) for v in shape_b[:3])
            and bool(np.allclose(np.asarray(affine_a, float), np.asarray(affine_b, float),
                                 atol=atol)))


def _voxel_size(affine: npt.ArrayLike) -> np.ndarray:
    """Voxel edge lengths (mm) of an affine."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def _origin_offset(affine_a: npt.ArrayLike, affine_b: npt.ArrayLike) -> np.ndarray:
    """Position of voxel (0, 0, 0) of grid a minus that of grid b (mm, x y z)."""
    return np.asarray(affine_a, float)[:3, 3] - np.asarray(affine_b, float)[:3, 3]


def grid_difference(shape: Sequence[int], affine: npt.ArrayLike, pet_shape: Sequence[int],
                    pet_affine: npt.ArrayLike) -> str:
    """How a segmentation's grid differs from the PET grid, in words.

    Parameters
    ----------
    shape, affine : sequence of int, array_like (4, 4)
        The segmentation's grid shape (voxels) and voxel -> mm affine.
    pet_shape, pet_affine : sequence of int, array_like (4, 4)
        The PET grid (only the first three entries of ``pet_shape`` are used).

    Returns
    -------
    str
        Shape, voxel size (mm) and origin offset (mm) of the segmentation against the PET,
        and whether the axes are oriented differently.

    Examples
    --------
    >>> a = np.diag([2.0, 2.0, 2.0, 1.0]); b = a.copy(); b[0, 3] = 30
    >>> print(grid_difference((6, 5, 4), b, (6, 5, 4), a).split("; ")[2])
    origin offset 30 mm (x +30, y +0, z +0 mm)
    """
    def vox(aff: npt.ArrayLike) -> str:
        return " x ".join(f"{v:.3g}" for v in _voxel_size(aff))

    off = _origin_offset(affine, pet_affine)
    s_a = tuple(int(v) for v in shape[:3])
    s_b = tuple(int(v) for v in pet_shape[:3])
    text = (f"shape {s_a} vs PET {s_b}; voxel size {vox(affine)} mm vs PET {vox(pet_affine)} "
            f"mm; origin offset {np.linalg.norm(off):.3g} mm (x {off[0]:+.3g}, y "
            f"{off[1]:+.3g}, z {off[2]:+.3g} mm)")
    dir_a = np.asarray(affine, float)[:3, :3] / _voxel_size(affine)
    dir_b = np.asarray(pet_affine, float)[:3, :3] / _voxel_size(pet_affine)
    if not np.allclose(dir_a, dir_b, atol=1e-3):
        text += "; the axes are oriented differently"
    return text


def inside_fraction(atlas: Atlas, shape: Sequence[int], affine: npt.ArrayLike) -> float:
    """Fraction of an atlas's labelled voxels whose centres lie inside a grid's field of view.

    Parameters
    ----------
    atlas : Atlas
        The segmentation (its own grid).
    shape : sequence of int
        Target grid shape (voxels); only the first three entries are used.
    affine : array_like, shape (4, 4)
        Target voxel index -> mm.

    Returns
    -------
    float
        In [0, 1]; 1 when the atlas has no labelled voxel.
    """
    idx = np.argwhere(atlas.labels != 0)
    if idx.size == 0:
        return 1.0
    vox2vox = np.linalg.solve(np.asarray(affine, float), atlas.affine)  # atlas -> target vox
    pos = idx @ vox2vox[:3, :3].T + vox2vox[:3, 3]
    upper = np.asarray([int(v) for v in shape[:3]], float) - 0.5
    return float(np.all((pos >= -0.5) & (pos < upper), axis=1).mean())


def _same_lattice_offset(atlas: Atlas, shape: Sequence[int],
                         affine: npt.ArrayLike) -> float | None:
    """Origin offset (mm) when the atlas has the grid's shape, voxel size and orientation
    (a segmentation drawn on that image whose header moved); ``None`` otherwise."""
    target = np.asarray(affine, float)
    if (atlas.labels.shape != tuple(int(v) for v in shape[:3])
            or not np.allclose(atlas.affine[:3, :3], target[:3, :3], atol=1e-3)):
        return None
    return float(np.linalg.norm(_origin_offset(atlas.affine, target)))


def place_on_grid(atlas: Atlas, shape: Sequence[int], affine: npt.ArrayLike, *,
                  resample: bool = False) -> Atlas:
    """The one geometry policy for a segmentation and a PET image (API, validate and run).

    * Same grid (shape, and affine within 1e-3 mm): the atlas as is.
    * Another grid and ``resample`` False (the default): refused.
    * Another grid and ``resample`` True: nearest-neighbour resampling (with a warning),
      except when the segmentation has the PET's shape, voxel size and orientation but an
      origin more than one voxel away (a header error: resampling would shift every region
      by that distance), or when less than :data:`MIN_INSIDE_FRACTION` of its labelled
      voxels fall inside the PET field of view (headers that disagree, or the segmentation
      of another scan): both refused.

    Parameters
    ----------
    atlas : Atlas
        The segmentation on its own grid.
    shape : sequence of int
        PET grid shape (voxels); only the first three entries are used.
    affine : array_like, shape (4, 4)
        PET voxel index -> mm.
    resample : bool
        Resample a segmentation on another grid (``--atlas-resample``).

    Returns
    -------
    Atlas
        The segmentation on the PET grid.

    Raises
    ------
    ShapeMismatchError
        Refused as above; the message gives the shape, voxel size and origin offset (mm)
        against the PET and how to fix it.

    Examples
    --------
    >>> lab = np.ones((4, 4, 4), int)
    >>> off = np.eye(4); off[0, 3] = 30.0
    >>> place_on_grid(Atlas(lab, {1: "a"}, off), (4, 4, 4), np.eye(4), resample=True)
    Traceback (most recent call last):
    ...
    sv2a.errors.ShapeMismatchError: atlas: the segmentation has the PET's shape and ...
    """
    target = np.asarray(affine, float)
    if not resample:
        atlas.check_grid(shape, target)
        return atlas
    if same_grid(atlas.labels.shape, atlas.affine, shape, target):
        return atlas
    diff = grid_difference(atlas.labels.shape, atlas.affine, shape, target)
    offset = _same_lattice_offset(atlas, shape, target)
    if offset is not None and offset > float(np.max(atlas.voxel_size)):
        raise ShapeMismatchError(
            f"{atlas.source}: the segmentation has the PET's shape and voxel size but its "
            f"origin is {offset:.3g} mm away ({diff}); it was drawn on this grid and its "
            f"header disagrees with the PET's, so resampling would shift every region by "
            f"{offset:.3g} mm. Fix the header (copy the PET's affine) or register it to the PET"
        )
    frac = inside_fraction(atlas, shape, target)
    if frac < MIN_INSIDE_FRACTION:
        raise ShapeMismatchError(
            f"{atlas.source}: only {frac:.0%} of the segmentation's labelled voxels lie inside "
            f"the PET field of view (at least {MIN_INSIDE_FRACTION:.0%} needed to resample; "
            f"{diff}); the headers disagree or it belongs to another scan. Register it to the "
            "PET or fix its header"
        )
    warnings.warn(f"{atlas.source}: the segmentation was resampled (nearest neighbour) onto "
                  f"the PET grid ({diff}; {frac:.0%} of its labelled voxels inside the PET "
                  "field of view)", Sv2aWarning, stacklevel=2)
    return atlas.resample_to(shape, target)


def _split_tsv_line(line: str) -> list[str]:
    """The tab-separated fields of one line (double quotes around a field removed)."""
    return next(csv.reader([line], delimiter="\t"))


def _dseg_rows(p: Path, lines: list[str], head_no: int) -> list[tuple[int, str, str]]:
    """``(line number, index, name)`` of a BIDS ``dseg.tsv`` whose header is line
    ``head_no`` (1-based); every row must have the header's number of fields."""
    header = [h.strip().lower() for h in _split_tsv_line(lines[head_no - 1])]
    if "name" not in header:
        raise MetadataError(f"{p}: a dseg.tsv needs columns 'index' and 'name' (header: "
                            f"{lines[head_no - 1]!r})")
    i_col, n_col = header.index("index"), header.index("name")
    rows = []
    for ln_no, line in enumerate(lines[head_no:], head_no + 1):
        if not line.strip():
            continue
        fields = _split_tsv_line(line)
        if len(fields) != len(header):
            hint = (" (a trailing tab?)" if len(fields) > len(header) and not fields[-1].strip()
                    else " (a dseg.tsv has no comment lines)" if line.startswith("#")
                    else " (not tab-separated?)" if len(fields) == 1 else "")
            raise MetadataError(
                f"{p}: line {ln_no} has {len(fields)} tab-separated field(s) but the header "
                f"has {len(header)}{hint}: {line!r}; every row needs one value per column, "
                "or the names would shift into the wrong column")
        name = fields[n_col].strip()
        if name in ("", "n/a"):
            raise MetadataError(f"{p}: line {ln_no}: index {fields[i_col]!r} has no name "
                                f"({fields[n_col]!r}); give every label a region name")
        rows.append((ln_no, fields[i_col].strip(), name))
    return rows


def _lut_rows(p: Path, lines: list[str]) -> list[tuple[int, str, str]]:
    """``(line number, index, name)`` of a FreeSurfer colour LUT (``#`` comments)."""
    rows = []
    for ln_no, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) < 2:
            raise MetadataError(f"{p}: line {ln_no} is not 'index name [R G B A]' "
                                "(FreeSurfer LUT) nor a dseg.tsv row")
        rows.append((ln_no, parts[0], parts[1]))
    return rows


def _table_rows(p: Path, text: str) -> list[tuple[int, str, str]]:
    """``(line number, index, name)`` of a label table, dseg.tsv or FreeSurfer LUT."""
    lines = text.splitlines()
    head_no = next((n for n, ln in enumerate(lines, 1)
                    if ln.strip() and not ln.lstrip().startswith("#")), 0)
    first = lines[head_no - 1] if head_no else ""
    if "\t" in first and "index" in [h.strip().lower() for h in _split_tsv_line(first)]:
        return _dseg_rows(p, lines, head_no)
    words = [w.lower() for w in first.split()]
    if "index" in words and "name" in words:
        raise MetadataError(f"{p}: line {head_no} {first!r} is separated by spaces, not tabs; "
                            "a dseg.tsv must be tab-separated (BIDS): put one tab between "
                            "columns")
    return _lut_rows(p, lines)


def read_label_table(path: str | os.PathLike[str]) -> dict[int, str]:
    """Read the label table of a label image.

    Names are taken literally (``NA``, ``None`` or ``null`` are names, e.g. ``NA`` for the
    nucleus accumbens); the file must be UTF-8 (a byte-order mark is allowed).

    Parameters
    ----------
    path : str or path-like
        A BIDS ``dseg.tsv`` (tab-separated, columns ``index`` and ``name``) or a FreeSurfer
        colour LUT (``index name R G B A`` lines, ``#`` comments).

    Returns
    -------
    dict of int to str
        Label value -> region name as written in the file (label 0, the background, too).

    Raises
    ------
    MetadataError
        The file is missing, not UTF-8, not tab-separated, has a row with another number of
        fields than the header, an empty name, a non-integer or repeated index, or no row;
        the message names the line.
    """
    p = Path(path)
    if not p.exists():
        raise MetadataError(f"label table not found: {p}")
    table: dict[int, str] = {}
    for ln_no, index, name in _table_rows(p, read_utf8(p, MetadataError)):
        try:
            value = float(index)
            if value != int(value):
                raise ValueError(index)
        except (ValueError, OverflowError) as exc:
            raise MetadataError(f"{p}: line {ln_no}: index {index!r} is not an integer label "
                                "value; every row needs the integer the label image uses"
                                ) from exc
        key = int(value)
        if key in table:
            raise MetadataError(f"{p}: line {ln_no}: index {key} is listed twice ("
                                f"'{table[key]}' and '{name}'); which name the voxels carry "
                                "would be a guess: keep one row per index")
        table[key] = name
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
        Put the atlas on this PET's grid by :func:`place_on_grid`: a segmentation on
        another grid is refused (:class:`ShapeMismatchError`) ...
    resample : bool
        ... unless True: then it is resampled with nearest neighbour, still refused when
        its header origin disagrees grossly with the PET's or most of its labelled voxels
        lie outside the PET field of view.

    Returns
    -------
    Atlas
        The label image with its region names (snake_case); labels of the table without
        any voxel in the image are left out with a warning. Label 0 is background (a table
        row ``0 Unknown`` is skipped quietly), and so is NaN in a float label image. When
        the header's sform and qform (both set) disagree, the sform is used and a
        :class:`Sv2aWarning` names both and the offset (ITK/ANTs-based tools use the qform).

    Raises
    ------
    DataError
        The image is missing or unreadable, its header scales the values (``scl_slope``
        other than 1 or ``scl_inter`` other than 0), or it holds non-integer or infinite
        values.
    MetadataError
        No label table found, or the table is malformed (see :func:`read_label_table`).
    RegionError
        Label values without a name.
    ShapeMismatchError
        ``pet`` is given and :func:`place_on_grid` refuses the geometry (the message says
        when the header's qform, unlike the sform, is on the PET grid).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"atlas image not found: {p}")
    try:
        img = nib.load(str(p))
        if not isinstance(img, SpatialImage):
            raise TypeError(f"not a volume image ({type(img).__name__})")
        _check_unscaled(img, p)
        data = np.asarray(img.dataobj)
    except Sv2aError:
        raise
    except Exception as exc:
        raise DataError(f"{p}: cannot read label image ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    data = _integer_labels(data, p)
    _warn_qform_sform(img, p)
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
    table = {k: v for k, v in table.items() if int(k) != 0}  # 0 is background (Unknown)
    present = set(np.unique(data).tolist()) - {0}
    unnamed = sorted(present - set(table))
    if unnamed:  # a trimmed table (regions of interest of aparc+aseg) is common: left out
        where = np.isin(data, unnamed)
        share = float(where.sum()) / max(int(np.count_nonzero(data)), 1)
        values = f"{unnamed[:10]}{' ...' if len(unnamed) > 10 else ''}"
        if share > MAX_UNNAMED_SHARE:
            raise RegionError(
                f"{p}: label values {values} ({share:.0%} of the labelled voxels) have no "
                "name in the label table; is it the table of another segmentation? Add them")
        warnings.warn(f"{p}: label values {values} have no name in the label table; their "
                      f"voxels ({share:.1%} of the labelled ones) are left out as background",
                      Sv2aWarning, stacklevel=2)
        data = np.where(where, 0, data)
        present -= set(unnamed)
    absent = sorted(str(v) for k, v in table.items() if k not in present)
    if absent:  # named in the table, no voxel in the image: say so, never drop silently
        warnings.warn(f"{p}: region(s) {name_list(absent)} of the label table have no voxel "
                      "in the image and are left out", Sv2aWarning, stacklevel=2)
    atlas = Atlas(data, {k: v for k, v in table.items() if k in present},
                  np.asarray(img.affine, dtype=float), str(p))
    if pet is not None:  # the one geometry policy (also sv2a validate and sv2a run)
        try:
            return place_on_grid(atlas, pet.shape, pet.affine, resample=resample)
        except ShapeMismatchError as exc:
            note = _qform_note(img, pet.shape, pet.affine)
            if note:
                raise ShapeMismatchError(f"{exc}. {note}") from exc
            raise
    return atlas


def _check_unscaled(img: SpatialImage, p: Path) -> None:
    """Refuse a label image whose header scales the stored values (``scl_slope`` other than
    1 or ``scl_inter`` other than 0): which values are the labels would be a guess."""
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    if slope != 1.0 or inter != 0.0:
        raise DataError(
            f"{p}: the label image header scales its values (scl_slope {slope:g}, scl_inter "
            f"{inter:g}), so a stored label v would read as {slope:g}*v + {inter:g}; labels "
            "must be stored unscaled. If the stored integers are the labels, set scl_slope 1 "
            "and scl_inter 0 (nibabel: img.header.set_slope_inter(1, 0)); otherwise write "
            "the labels themselves as integers"
        )


def _integer_labels(data: np.ndarray, p: Path) -> np.ndarray:
    """Label values as integers; NaN in a float label image is background (0).

    Infinite or non-integer values are refused (:class:`DataError`)."""
    if np.issubdtype(data.dtype, np.integer):
        return data
    if np.issubdtype(data.dtype, np.bool_):
        return data.astype(np.int32)
    values = np.asarray(data, dtype=np.float64)
    values = np.where(np.isnan(values), 0.0, values)  # NaN outside the brain: background
    if not np.all(np.isfinite(values)):
        raise DataError(f"{p}: the label image holds infinite values; labels must be integers "
                        "(0 or NaN for background)")
    fractional = values != np.round(values)
    if fractional.any():
        raise DataError(f"{p}: label image holds non-integer values (e.g. "
                        f"{values[fractional][0]:g}); a label image must hold integer labels")
    if np.abs(values).max(initial=0.0) > np.iinfo(np.int32).max:
        raise DataError(f"{p}: label values beyond the 32-bit integer range")
    return values.astype(np.int32)


def _coded_affines(img: SpatialImage) -> tuple[tuple[np.ndarray, int], tuple[np.ndarray, int]]:
    """``((sform, code), (qform, code))`` of a NIfTI header; codes 0 when absent."""
    get_sform = getattr(img, "get_sform", None)
    get_qform = getattr(img, "get_qform", None)
    if get_sform is None or get_qform is None:
        return (np.eye(4), 0), (np.eye(4), 0)
    s_aff, s_code = get_sform(coded=True)
    q_aff, q_code = get_qform(coded=True)
    return ((np.asarray(s_aff, float) if s_aff is not None else np.eye(4), int(s_code)),
            (np.asarray(q_aff, float) if q_aff is not None else np.eye(4), int(q_code)))


#: sform and qform differing by more than this (affine entries, mm) disagree.
_QFORM_ATOL = 0.01


def _warn_qform_sform(img: SpatialImage, p: Path) -> None:
    """Warn when a label image's sform and qform (both set) place the voxels differently:
    sv2a (like nibabel) uses the sform, ITK/ANTs-based tools the qform."""
    (s_aff, s_code), (q_aff, q_code) = _coded_affines(img)
    if s_code == 0 or q_code == 0 or np.allclose(s_aff, q_aff, atol=_QFORM_ATOL):
        return
    off = _origin_offset(q_aff, s_aff)
    rot = "" if np.allclose(s_aff[:3, :3], q_aff[:3, :3], atol=_QFORM_ATOL) else (
        "; their voxel axes or sizes differ as well")
    warnings.warn(
        f"{p}: the header's sform (code {s_code}) and qform (code {q_code}) disagree: the "
        f"qform puts voxel (0, 0, 0) {np.linalg.norm(off):.3g} mm from where the sform does "
        f"(x {off[0]:+.3g}, y {off[1]:+.3g}, z {off[2]:+.3g} mm){rot}. sv2a uses the sform "
        "(as nibabel does); ITK/ANTs-based tools use the qform, so a segmentation made or "
        "registered with them may sit where the qform says. Make the two agree (e.g. "
        "nibabel: img.set_qform(img.get_sform(), code))",
        Sv2aWarning, stacklevel=3)


def _qform_note(img: SpatialImage, shape: Sequence[int], affine: npt.ArrayLike) -> str:
    """A sentence for a grid refusal when the label image's qform (not the sform sv2a uses)
    is on the PET grid; empty otherwise."""
    (s_aff, s_code), (q_aff, q_code) = _coded_affines(img)
    if s_code == 0 or q_code == 0:
        return ""
    if not same_grid(img.shape, q_aff, shape, affine) or same_grid(img.shape, s_aff, shape,
                                                                   affine):
        return ""
    return (f"Its qform (code {q_code}) does agree with the PET grid, while sv2a uses the "
            f"sform (code {s_code}): if the qform is the right one, copy it to the sform "
            "(nibabel: img.set_sform(img.get_qform(), code))")
