"""JSON sidecars: where they lie beside an image or table, and reading them.

A BIDS sidecar has the data file's name with its extension replaced by ``.json``
(``x_pet.nii.gz`` -> ``x_pet.json``, ``x_blood.tsv`` -> ``x_blood.json``).

BIDS's inheritance principle lets a metadata file apply to many data files: a file with the
same suffix and extension kind (``_pet.json`` for ``_pet.nii.gz``, ``_dseg.tsv`` for
``_dseg.nii.gz``), whose entities are a subset of the data file's, in the data file's folder
or any folder above it up to the dataset root (``trc-UCBJ_pet.json`` or plain ``pet.json`` at
the root applies to every UCB-J PET image). :func:`applicable_files` lists them;
:func:`read_metadata` merges JSON files from the root down, lower levels overriding keys.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import MetadataError, Sv2aError

__all__ = ["sidecar_path", "read_json", "read_utf8", "check_types", "PET_FIELD_TYPES",
           "dataset_root", "applicable_files", "read_metadata", "field_source", "describe_sources",
           "sidecar_places"]

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


_ENTITY_RE = re.compile(r"^[A-Za-z0-9]+-[A-Za-z0-9]+$")


def _split_name(name: str) -> tuple[dict[str, str], str] | None:
    """``(entities, suffix)`` of a BIDS file name (extension removed); None when a part before
    the suffix is not ``key-value`` (``x_pet.nii.gz``) or there is no suffix."""
    stem = name
    for ext in (*_DATA_EXTENSIONS, ".json"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    parts = stem.split("_")
    suffix = parts[-1]
    if not suffix or "-" in suffix or not all(_ENTITY_RE.match(e) for e in parts[:-1]):
        return None
    return dict(e.split("-", 1) for e in parts[:-1]), suffix


def dataset_root(path: str | os.PathLike[str]) -> Path | None:
    """The BIDS dataset a file belongs to: its nearest ancestor folder holding
    ``dataset_description.json``.

    Parameters
    ----------
    path : str or path-like
        A file (or folder) of the dataset.

    Returns
    -------
    Path or None
        The dataset root, or None when no ancestor folder has ``dataset_description.json``.
    """
    for parent in Path(path).absolute().parents:
        if (parent / "dataset_description.json").is_file():
            return parent
    return None


def _levels(data: Path) -> list[Path]:
    """Folders whose metadata files may apply to ``data``, bottom (its own folder) first."""
    own = data.absolute().parent
    root = dataset_root(data)
    if root is None:
        return [own]
    return [own] + [p for p in own.parents if p == root or root in p.parents]


def _extension_kind(data: Path, extension: str) -> str:
    """``_pet.json`` for ``x_pet.nii.gz`` and ``.json``; ``""`` when the name has no suffix."""
    split = _split_name(data.name)
    return f"_{split[1]}{extension}" if split else ""


def applicable_files(data_path: str | os.PathLike[str], extension: str = ".json", *,
                     strict: bool = True) -> list[Path]:
    """The metadata files that apply to a data file by BIDS's inheritance principle.

    A file applies when it lies in the data file's folder or a folder above it up to the
    dataset root (the nearest ancestor holding ``dataset_description.json``; without one only
    the data file's own folder counts), has the data file's suffix with ``extension``, and its
    entities are a subset of the data file's (``pet.json``, ``trc-UCBJ_pet.json`` and
    ``sub-01_trc-UCBJ_pet.json`` all apply to ``sub-01_ses-bl_trc-UCBJ_pet.nii.gz``). The file
    beside the data file with its name (:func:`sidecar_path` for ``.json``) always applies,
    even when the name does not follow the BIDS entity pattern.

    Parameters
    ----------
    data_path : str or path-like
        The data file (``*_pet.nii.gz``, ``*_blood.tsv``, ``*_dseg.nii.gz``).
    extension : str
        Extension of the metadata files: ``.json`` (sidecars) or ``.tsv`` (label tables).
    strict : bool
        Raise when more than one file applies at one folder level (BIDS forbids it); with
        False, list them all (to record every file a scan may depend on).

    Returns
    -------
    list of Path
        Existing applicable files, top (dataset root) to bottom (the data file's folder);
        empty when there is none.

    Raises
    ------
    MetadataError
        ``strict`` and more than one file applies at one folder level; the message names
        them.

    Examples
    --------
    >>> applicable_files("/nonexistent/sub-01_pet.nii.gz")
    []
    """
    data = Path(data_path)
    split = _split_name(data.name)
    own_name = _exact_name(data, extension)
    found: list[Path] = []
    own_dir = data.absolute().parent
    for level in _levels(data):
        own = level / own_name if level == own_dir else None  # applies whatever its name
        hits = [own] if own is not None and own.is_file() else []
        if split is not None and level.is_dir():
            hits += [c for c in sorted(level.iterdir())
                     if c != own and _applies(c, split, extension)]
        if strict and len(hits) > 1:
            raise MetadataError(
                f"{data}: {len(hits)} metadata files apply at one folder level: "
                f"{', '.join(str(h) for h in hits)}; BIDS allows at most one per level, so "
                "remove one or add an entity that tells them apart (e.g. trc-<label>)"
            )
        found += reversed(hits)  # reversed again below: a level's files in name order
    if not data.is_absolute():  # keep the caller's style: relative in, relative out
        return [Path(os.path.relpath(f)) for f in reversed(found)]
    return [Path(os.path.normpath(f)) for f in reversed(found)]


def _exact_name(data: Path, extension: str) -> str:
    """Name of the metadata file beside ``data`` with its own stem (``x_pet.json``)."""
    return sidecar_path(data).name[: -len(".json")] + extension


def _applies(cand: Path, data: tuple[dict[str, str], str], extension: str) -> bool:
    """Whether ``cand`` has the suffix and extension of ``data`` and a subset of its
    entities."""
    name = cand.name
    if not name.endswith(extension) or not cand.is_file():
        return False
    split = _split_name(name)
    if split is None or split[1] != data[1]:
        return False
    ents = split[0]
    return all(data[0].get(k) == v for k, v in ents.items())


def sidecar_places(data_path: str | os.PathLike[str], extension: str = ".json") -> str:
    """Where a metadata file of a data file may lie, for "missing" messages.

    Parameters
    ----------
    data_path : str or path-like
        The data file.
    extension : str
        ``.json`` or ``.tsv``.

    Returns
    -------
    str
        E.g. ``'/d/sub-01/pet/sub-01_pet.json beside the image, or a shared *_pet.json
        (e.g. pet.json or trc-UCBJ_pet.json) in a session, subject or dataset-root folder'``.
    """
    data = Path(data_path)
    own = data.with_name(_exact_name(data, extension))
    kind = _extension_kind(data, extension)
    if not kind:
        return f"{own} beside the file"
    return (f"{own} beside the file, or a shared *{kind} whose entities are a subset of the "
            f"file's (e.g. {kind[1:]}) in its session, subject or dataset-root folder")


def read_metadata(data_path: str | os.PathLike[str], *,
                  check: Callable[[dict[str, Any], Path], None] | None = None
                  ) -> tuple[dict[str, Any], list[Path]]:
    """A data file's JSON metadata merged over every applicable sidecar.

    Parameters
    ----------
    data_path : str or path-like
        The data file.
    check : callable, optional
        ``check(meta, file)`` run on each sidecar before merging (e.g. :func:`check_types`), so
        that a bad value's message names the file it came from.

    Returns
    -------
    meta : dict
        The sidecars merged from the dataset root down, lower levels overriding keys (empty
        when there is none).
    files : list of Path
        The sidecars it came from, top to bottom (empty: none found).

    Raises
    ------
    MetadataError
        Two sidecars apply at one level, or one is not a valid JSON object.
    """
    files = applicable_files(data_path, ".json")
    meta: dict[str, Any] = {}
    for f in files:
        part = read_json(f)
        if check is not None:
            check(part, f)
        meta.update(part)
    return meta, files


def field_source(files: list[Path], key: str) -> Path | None:
    """The sidecar (of :func:`read_metadata`'s ``files``) whose value of ``key`` was kept.

    Parameters
    ----------
    files : list of Path
        Applicable sidecars, top to bottom.
    key : str
        A field name.

    Returns
    -------
    Path or None
        The lowest file holding ``key``; None when none does.
    """
    for f in reversed(files):
        if key in read_json(f):
            return f
    return None


def describe_sources(files: list[Path]) -> str:
    """The sidecars of a data file for messages: the nearest one, and those it inherits.

    Parameters
    ----------
    files : list of Path
        Applicable sidecars, top to bottom (not empty).

    Returns
    -------
    str
        ``'a_pet.json'`` or ``'a_pet.json (with inherited /d/pet.json)'``.
    """
    if len(files) == 1:
        return str(files[0])
    return f"{files[-1]} (with inherited {', '.join(str(f) for f in files[:-1])})"


def read_utf8(path: str | os.PathLike[str],
              error: type[Sv2aError] = MetadataError) -> str:
    """Read a text file that BIDS requires to be UTF-8 (a leading byte-order mark is dropped).

    Parameters
    ----------
    path : str or path-like
        Text file (sidecar, ``participants.tsv``, label table).
    error : subclass of Sv2aError
        Raised when the bytes are not UTF-8.

    Returns
    -------
    str
        The decoded text, without a UTF-8 byte-order mark (Excel writes one).

    Raises
    ------
    Sv2aError
        ``error``: the file is not UTF-8; the message gives the line, the byte offset and
        the offending byte.
    """
    p = Path(path)
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(
            f"{p}: not UTF-8 (BIDS requires UTF-8): byte 0x{raw[exc.start]:02x} at line "
            f"{line} (byte offset {exc.start}) cannot be decoded; the file was probably saved "
            "as Latin-1/Windows-1252: re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from exc


def _unique_keys(path: Path) -> Any:
    """A ``json`` object hook that refuses a key given twice in one object (the second value
    would silently replace the first)."""
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise MetadataError(f"{path}: the key {k!r} is given twice (the second value "
                                    "would silently replace the first); keep one")
            out[k] = v
        return out
    return build


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
        The file is missing, is not UTF-8 or not valid JSON (line number given) or does not
        hold an object.
    """
    p = Path(path)
    if not p.exists():
        raise MetadataError(f"missing JSON sidecar: expected {p}")
    try:
        obj = json.loads(read_utf8(p, MetadataError), object_pairs_hook=_unique_keys(p))
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
