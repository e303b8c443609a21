"""JSON sidecars: where they lie beside an image or table, and reading them.

A BIDS sidecar has the data file's name with its extension replaced by ``.json``
(``x_pet.nii.gz`` -> ``x_pet.json``, ``x_blood.tsv`` -> ``x_blood.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import MetadataError

__all__ = ["sidecar_path", "read_json"]

_DATA_EXTENSIONS = (".nii.gz", ".nii", ".tsv.gz", ".tsv")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar beside a NIfTI or TSV file.

    Parameters
    ----------
    path : str or path-like
        Data file (``.nii``, ``.nii.gz``, ``.tsv``, ``.tsv.gz``; any other extension is
        replaced as well).

    Returns
    -------
    Path
        The same name with ``.json`` in place of the extension (the file need not exist).

    Examples
    --------
    >>> sidecar_path("sub-01_pet.nii.gz").name
    'sub-01_pet.json'
    """
    p = Path(path)
    name = p.name
    for ext in _DATA_EXTENSIONS:
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON object from a file.

    Parameters
    ----------
    path : str or path-like
        JSON file, usually a sidecar.

    Returns
    -------
    dict
        The decoded object.

    Raises
    ------
    MetadataError
        The file is missing, is not valid JSON (line number given) or does not hold an object.
    """
    p = Path(path)
    if not p.exists():
        raise MetadataError(f"missing JSON sidecar: expected {p}")
    try:
        with open(p, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise MetadataError(f"{p}: a sidecar must hold a JSON object, not {type(obj).__name__}")
    return obj
