"""BIDS-derivatives naming and provenance for ``sv2a run`` (DESIGN §5).

File names::

    OUT/sub-01/ses-bl/pet/sub-01_ses-bl_seg-<atlas>_tacs.tsv
    OUT/sub-01/ses-bl/pet/sub-01_ses-bl_seg-<atlas>_model-<MODEL>_kinpar.tsv (+ .json)
    OUT/sub-01/ses-bl/pet/sub-01_ses-bl_model-<MODEL>_meas-<PARAM>_mimap.nii.gz (+ .json)
    OUT/sub-01/figures/...
    OUT/group/group_model-<MODEL>_kinpar.nc
    OUT/group/group_model-<MODEL>_meas-<PARAM>_comparison.tsv

Every JSON sidecar carries the model, its settings, units, software name/version, the command
line and the ``Sources`` (BIDS URIs ``bids:raw:<path>`` resolved through ``DatasetLinks``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from ..io import read_json, write_json, write_tsv

__all__ = [
    "BIDS_VERSION",
    "model_label",
    "scan_stem",
    "scan_dir",
    "figures_dir",
    "atlas_label",
    "tacs_name",
    "kinpar_name",
    "map_name",
    "group_kinpar_name",
    "comparison_name",
    "write_dataset_description",
    "write_bidsignore",
    "provenance",
    "bids_uri",
    "tacs_table",
    "kinpar_table",
    "settings_of",
    "units_of",
]

BIDS_VERSION = "1.9.0"
#: Files that are not BIDS derivatives proper (reports, logs, configuration, group tables).
BIDSIGNORE = ["logs/", "group/", "figures/", "*.html", "sv2a_config*.json", ".sv2a-work/",
              "*_tacs.tsv", "*_tacs.json", "*_kinpar.tsv", "*_kinpar.json", "*_mimap.nii.gz",
              "*_mimap.json"]


# --------------------------------------------------------------------------- names
def model_label(model: str) -> str:
    """Registry name -> file-name label: ``logan_ref`` -> ``LOGANREF``, ``1tcm`` -> ``1TCM``."""
    return re.sub(r"[^0-9A-Za-z]", "", str(model)).upper()


def scan_stem(pet: str | os.PathLike) -> str:
    """``sub-01_ses-bl[_trc-X]_pet.nii.gz`` -> ``sub-01_ses-bl[_trc-X]``."""
    name = Path(pet).name
    return name.split("_pet.nii")[0]


def scan_dir(out_dir: str | os.PathLike, subject: str, session: str | None) -> Path:
    """``OUT/sub-01/ses-bl/pet`` (or ``OUT/sub-01/pet``)."""
    base = Path(out_dir) / f"sub-{subject}"
    if session:
        base = base / f"ses-{session}"
    return base / "pet"


def figures_dir(out_dir: str | os.PathLike, subject: str) -> Path:
    """``OUT/sub-01/figures``."""
    return Path(out_dir) / f"sub-{subject}" / "figures"


def atlas_label(path: str | os.PathLike | None, override: str | None = None) -> str:
    """The ``seg-<label>`` of outputs: ``override``, else the ``seg-``/``atlas-``/``desc-``
    entity of the segmentation file name, else ``dseg``."""
    if override:
        return re.sub(r"[^0-9A-Za-z]", "", override)
    if path is None:
        return "dseg"
    name = Path(path).name
    for ent in ("seg", "atlas", "desc"):
        m = re.search(rf"(?:^|_){ent}-([0-9A-Za-z]+)", name)
        if m:
            return m.group(1)
    stem = re.sub(r"\.nii(\.gz)?$", "", name)
    if stem.endswith("_dseg") or stem.startswith("sub-"):
        return "dseg"
    return re.sub(r"[^0-9A-Za-z]", "", stem) or "dseg"


def tacs_name(stem: str, atlas: str) -> str:
    return f"{stem}_seg-{atlas}_tacs.tsv"


def kinpar_name(stem: str, atlas: str, model: str) -> str:
    return f"{stem}_seg-{atlas}_model-{model_label(model)}_kinpar.tsv"


def map_name(stem: str, model: str, param: str) -> str:
    meas = re.sub(r"[^0-9A-Za-z]", "", param)
    return f"{stem}_model-{model_label(model)}_meas-{meas}_mimap.nii.gz"


def group_kinpar_name(model: str) -> str:
    return f"group_model-{model_label(model)}_kinpar.nc"


def comparison_name(model: str, param: str) -> str:
    return f"group_model-{model_label(model)}_meas-{param}_comparison.tsv"


# --------------------------------------------------------------------------- provenance
def command_line() -> str:
    """The command line of this process (for sidecars)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("sv2a", "__main__.py", "cli.py")):
        argv[0] = "sv2a"
    return shlex.join(argv)


def bids_uri(path: str | os.PathLike, bids_dir: str | os.PathLike) -> str:
    """``bids:raw:sub-01/ses-bl/pet/x.nii.gz`` for a file inside the raw dataset, else the
    absolute path."""
    p = Path(path).resolve()
    root = Path(bids_dir).resolve()
    try:
        return f"bids:raw:{p.relative_to(root).as_posix()}"
    except ValueError:
        return p.as_uri()


def write_dataset_description(out_dir: str | os.PathLike, bids_dir: str | os.PathLike) -> Path:
    """Write ``OUT/dataset_description.json`` (DatasetType derivative, GeneratedBy,
    SourceDatasets, DatasetLinks)."""
    root = Path(bids_dir).resolve()
    src: dict[str, Any] = {"URL": root.as_uri()}
    raw_desc = root / "dataset_description.json"
    raw_name = None
    if raw_desc.exists():
        try:
            d = read_json(raw_desc)
            raw_name = d.get("Name")
            if d.get("DatasetDOI"):
                src["DOI"] = d["DatasetDOI"]
            if d.get("DatasetVersion") or d.get("Version"):
                src["Version"] = d.get("DatasetVersion") or d.get("Version")
        except Exception:  # a broken raw description is reported by `sv2a validate`
            pass
    desc = {
        "Name": f"sv2a derivatives{f' of {raw_name}' if raw_name else ''}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "sv2a",
            "Version": __version__,
            "Description": "SV2A PET quantification: regional TACs, kinetic models, "
                           "parametric maps and longitudinal statistics",
            "CodeURL": "https://pypi.org/project/sv2a/",
        }],
        "SourceDatasets": [src],
        "DatasetLinks": {"raw": root.as_uri()},
    }
    return write_json(Path(out_dir) / "dataset_description.json", desc)


def write_bidsignore(out_dir: str | os.PathLike) -> Path:
    """Write ``OUT/.bidsignore`` listing the non-BIDS outputs (idempotent)."""
    p = Path(out_dir) / ".bidsignore"
    from ..io import atomic_path

    with atomic_path(p) as tmp:
        tmp.write_text("\n".join(BIDSIGNORE) + "\n", encoding="utf-8")
    return p


def provenance(*, sources: Iterable[str], settings: Mapping | None = None,
               config_hash: str | None = None) -> dict[str, Any]:
    """The provenance block shared by all sidecars."""
    out: dict[str, Any] = {
        "SoftwareName": "sv2a",
        "SoftwareVersion": __version__,
        "CommandLine": command_line(),
        "Sources": list(sources),
    }
    if settings is not None:
        out["PipelineSettings"] = dict(settings)
    if config_hash:
        out["ConfigHash"] = config_hash
    return out


# --------------------------------------------------------------------------- tables
def tacs_table(tacs: xr.DataArray) -> pd.DataFrame:
    """TACs as a table: ``frame_start``, ``frame_end`` (s), then one column per region
    (kBq/mL)."""
    df = pd.DataFrame({"frame_start": np.asarray(tacs["frame_start"].values) * 60.0,
                       "frame_end": np.asarray(tacs["frame_end"].values) * 60.0})
    vals = np.asarray(tacs.transpose("region", "frame").values)
    for i, r in enumerate(tacs["region"].values.tolist()):
        df[str(r)] = vals[i]
    return df


def kinpar_table(fit: xr.Dataset) -> pd.DataFrame:
    """A fit result as a table: ``region`` first, then its variables (DESIGN §2 order)."""
    cols: dict[str, Any] = {"region": [str(r) for r in fit["region"].values]}
    for name, var in fit.data_vars.items():
        if var.dims != ("region",):
            continue
        v = np.asarray(var.values)
        if v.dtype == bool:
            v = v.astype(int)
        cols[str(name)] = v
    return pd.DataFrame(cols)


def settings_of(fit: xr.Dataset) -> dict[str, Any]:
    """The attrs of a fit result with JSON-encoded values decoded back."""
    out = {}
    for k, v in fit.attrs.items():
        if isinstance(v, str) and v[:1] in "[{":
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def units_of(fit: xr.Dataset) -> dict[str, str]:
    """``{variable: units}`` of the variables that declare units."""
    return {str(k): str(v.attrs["units"]) for k, v in fit.data_vars.items() if "units" in v.attrs}


def write_table_with_sidecar(path: Path, table: pd.DataFrame, sidecar: Mapping) -> Path:
    """Write a TSV and its JSON sidecar (both atomic; sidecar last)."""
    write_tsv(path, table)
    write_json(path.with_suffix(".json"), sidecar)
    return path
