"""JSON sidecars: where they lie beside an image or table, and reading them.

A BIDS sidecar has the data file's name with its extension replaced by ``.json``
(``x_pet.nii.gz`` -> ``x_pet.json``, ``x_blood.tsv`` -> ``x_blood.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import MetadataError

__all__ = ["sidecar_path", "read_json", "check_types", "PET_FIELD_TYPES"]

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


#: BIDS schema types of the PET sidecar fields sv2a reads (``"boolean"``, ``"number"``,
#: ``"string"``, ``"array of numbers"``).
PET_FIELD_TYPES: dict[str, str] = {
    "ImageDecayCorrected": "boolean",
    "DecayCorrectionFactor": "array of numbers",
    "FrameTimesStart": "array of numbers",
    "FrameDuration": "array of numbers",
    "InjectedRadioactivity": "number",
    "InjectedRadioactivityUnits": "string",
    "BodyWeight": "number",
    "TracerRadionuclide": "string",
    "TracerName": "string",
    "Units": "string",
}

_EXAMPLE = {
    "boolean": "true or false without quotes",
    "number": "a number without quotes or brackets, e.g. 400",
    "string": 'text in quotes, e.g. "kBq/mL"',
    "array of numbers": "a list of numbers without quotes, e.g. [0, 60, 120]",
}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return _is_number(value)
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, list) and all(_is_number(v) for v in value)


def check_types(meta: Mapping[str, Any], source: str | os.PathLike[str],
                types: Mapping[str, str] | None = None) -> None:
    """Check sidecar fields against their BIDS schema types.

    A JSON string where a boolean belongs (``"false"``, which Python would read as true), a
    number written as text (``"400"``) or in a list (``[400]``) is an error, not a guess.
    Fields that are absent or ``null`` are not checked (whether they are required is the
    reader's business).

    Parameters
    ----------
    meta : mapping
        The decoded sidecar.
    source : str or path-like
        The sidecar file (for messages).
    types : mapping, optional
        Field -> ``"boolean"``, ``"number"``, ``"string"`` or ``"array of numbers"``
        (default :data:`PET_FIELD_TYPES`).

    Returns
    -------
    None
        Nothing; the sidecar is fine when no error is raised.

    Raises
    ------
    MetadataError
        A field has the wrong JSON type; the message names the file, field, value and fix.

    Examples
    --------
    >>> check_types({"ImageDecayCorrected": True, "BodyWeight": 70.5}, "x_pet.json")
    >>> check_types({"ImageDecayCorrected": "false"}, "x_pet.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sv2a.errors.MetadataError: x_pet.json: field 'ImageDecayCorrected' is the string 'false' ...
    """
    for key, kind in (PET_FIELD_TYPES if types is None else types).items():
        if key not in meta or meta[key] is None:
            continue
        value = meta[key]
        if _type_ok(value, kind):
            continue
        what = (f"the string {value!r}" if isinstance(value, str)
                else f"{value!r} ({_json_type(value)})")
        if kind == "array of numbers" and isinstance(value, list):
            bad = [i for i, v in enumerate(value) if not _is_number(v)]
            what = f"a list with non-numbers at index {bad[:5]} ({value[bad[0]]!r})"
        raise MetadataError(
            f"{source}: field '{key}' is {what} but BIDS requires {_article(kind)}; write "
            f"{_EXAMPLE[kind]}"
        )


def _article(kind: str) -> str:
    return ("an " if kind.startswith("a") else "a ") + kind


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if _is_number(value):
        return "a number"
    return type(value).__name__
