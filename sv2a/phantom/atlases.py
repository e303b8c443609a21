"""Write the phantom label images and label tables to ``atlases/`` (run as a script).

``python -m sv2a.phantom.atlases [OUT_DIR]`` writes, for human (2 mm), rat (0.3 mm) and mouse
(0.15 mm), ``phantom_<species>_dseg.nii.gz`` (uint8 labels, RAS mm, origin at the grid centre)
and ``phantom_<species>_dseg.tsv`` (``index name``). The files are exactly what
:func:`sv2a.phantom.make_anatomy` generates (a test checks this), so they can be used as atlases
for phantom data or as a reference for the region definitions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..resources import atlas_dir
from .geometry import GRIDS, make_anatomy

__all__ = ["write_atlases", "atlas_paths"]

DEFAULT_DIR = atlas_dir()


def atlas_paths(species: str, out_dir: str | Path = DEFAULT_DIR) -> tuple[Path, Path]:
    """Paths of a species' phantom atlas files.

    Parameters
    ----------
    species : {"human", "rat", "mouse"}
        Species.
    out_dir : str or Path
        Atlas folder (default the package's ``atlases/``).

    Returns
    -------
    (Path, Path)
        ``phantom_<species>_dseg.nii.gz`` and ``phantom_<species>_dseg.tsv`` in ``out_dir``.

    Examples
    --------
    >>> [p.name for p in atlas_paths("rat", "/tmp")]
    ['phantom_rat_dseg.nii.gz', 'phantom_rat_dseg.tsv']
    """
    d = Path(out_dir)
    return d / f"phantom_{species}_dseg.nii.gz", d / f"phantom_{species}_dseg.tsv"


def write_atlases(out_dir: str | Path = DEFAULT_DIR) -> list[Path]:
    """Write the human, rat and mouse phantom atlases at their default voxel sizes.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (default the package's ``atlases/``).

    Returns
    -------
    list of Path
        The written files (label image and label table per species).
    """
    from ..io import write_nifti, write_tsv

    written = []
    for species in GRIDS:
        anat = make_anatomy(species)
        img, tsv = atlas_paths(species, out_dir)
        write_nifti(img, anat.labels, anat.affine, dtype=np.uint8)
        write_tsv(tsv, pd.DataFrame({"index": list(anat.names),
                                     "name": list(anat.names.values())}))
        written += [img, tsv]
    return written


if __name__ == "__main__":  # pragma: no cover
    for p in write_atlases(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR):
        print(p)
