"""Where the files shipped with sv2a live (phantom atlases, demo dataset, BIDS tool configs).

Installed, they are package data (``sv2a/atlases``, ``sv2a/demo_data``); in a source checkout
they are the ``atlases/`` and ``demo_data/`` folders at the repository root. The
configurations for the BIDS tools that read sv2a's derivatives (the official bids-validator,
pybids) are package data of ``sv2a.pipeline`` in both cases.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["atlas_dir", "demo_data_dir", "bids_validator_config", "pybids_config"]

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


def _pipeline_file(name: str) -> Path:
    return Path(__file__).resolve().parent / "pipeline" / name


def bids_validator_config() -> Path:
    """Configuration of the official bids-validator for sv2a's derivatives folder.

    ``bids-validator-deno --config <this file> OUT`` reports the per-scan outputs whose
    suffixes come from BIDS proposals (``_tacs``, ``_kinpar``, ``_mimap``; see
    :data:`sv2a.pipeline.derivatives.PROPOSAL_SUFFIXES`) as ``NOT_INCLUDED`` *warnings*
    instead of errors; every other finding keeps its severity.

    Returns
    -------
    Path
        ``sv2a/pipeline/bids_validator_config.json`` (JSON with a ``warning`` list of
        ``{code, location}`` filters, locations as gitignore-style globs).
    """
    return _pipeline_file("bids_validator_config.json")


def pybids_config() -> Path:
    """pybids configuration adding the ``meas`` entity of sv2a's parametric maps.

    Use it after pybids' own configurations, which already know ``model`` and ``seg``
    (as ``segmentation``): ``BIDSLayout(OUT, validate=False, config=["bids", "derivatives",
    str(pybids_config())])``, then ``layout.get(suffix="mimap", meas="BPND")``.

    Returns
    -------
    Path
        ``sv2a/pipeline/pybids_config.json``.
    """
    return _pipeline_file("pybids_config.json")
