"""Where the files shipped with sv2a live (phantom atlases, demo dataset).

Installed, they are package data (``sv2a/atlases``, ``sv2a/demo_data``); in a source checkout
they are the ``atlases/`` and ``demo_data/`` folders at the repository root.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["atlas_dir", "demo_data_dir"]

_REPO_ROOT = Path(__file__).resolve().parents[1]


def _find(name: str) -> Path:
    try:
        installed = Path(str(resources.files("sv2a") / name))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        return _REPO_ROOT / name
    if installed.is_dir():
        return installed
    return _REPO_ROOT / name


def atlas_dir() -> Path:
    """Folder of the phantom atlases shipped with sv2a.

    Returns
    -------
    Path
        Folder holding ``phantom_<species>_dseg.nii.gz`` and ``.tsv`` (human, rat, mouse).
    """
    return _find("atlases")


def demo_data_dir() -> Path:
    """Folder of the demo BIDS dataset shipped with sv2a.

    Returns
    -------
    Path
        The dataset root (``dataset_description.json``, ``sub-*``).
    """
    return _find("demo_data")
