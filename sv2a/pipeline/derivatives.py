"""BIDS-derivatives naming and provenance for ``sv2a run``.

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
    "idif_name",
    "motion_name",
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
#: Files that are not BIDS derivatives at all: logs, figures, HTML reports, the run's
#: configuration, the work folder and the group-level tables (BIDS names no group-level
#: files). The per-scan outputs are *not* listed: the validator must see them. ``group`` and
#: ``figures`` have no trailing slash: the bids-validator tests a folder's own path without
#: one, so ``group/`` would hide the files but report the folder (``logs`` is a folder name
#: BIDS derivatives know).
BIDSIGNORE = ["logs/", "group", "figures", "*.html", "sv2a_config*.json", ".sv2a-work"]
#: Suffixes of the per-scan outputs that BIDS proposals define but no released BIDS version
#: has yet for PET (PET preprocessing and kinetic-modelling derivatives): regional TACs,
#: regional kinetic parameters, parametric maps and the head-motion table of ``--realign``
#: (``_desc-motion_timeseries``; released BIDS has ``_timeseries`` for fMRI only). The
#: official bids-validator reports them as ``NOT_INCLUDED``; the configuration
#: :func:`sv2a.resources.bids_validator_config` turns exactly these into warnings.
PROPOSAL_SUFFIXES = ("tacs", "kinpar", "mimap", "timeseries")


# --------------------------------------------------------------------------- names
def model_label(model: str) -> str:
    """The ``model-<label>`` of file names.

    Parameters
    ----------
    model : str
        Registry name.

    Returns
    -------
    str
        Upper case without separators: ``logan_ref`` -> ``LOGANREF``, ``1tcm`` -> ``1TCM``.
    """
    return re.sub(r"[^0-9A-Za-z]", "", str(model)).upper()


def scan_stem(pet: str | os.PathLike[str]) -> str:
    """The stem of a scan's outputs.

    Parameters
    ----------
    pet : path
        The PET image, ``sub-01_ses-bl[_trc-X]_pet.nii.gz``.

    Returns
    -------
    str
        ``sub-01_ses-bl[_trc-X]``.
    """
    name = Path(pet).name
    return name.split("_pet.nii")[0]


def scan_dir(out_dir: str | os.PathLike[str], subject: str, session: str | None) -> Path:
    """The output folder of a scan.

    Parameters
    ----------
    out_dir : path
        Derivatives root (``"."`` for paths relative to it).
    subject, session : str
        Labels without ``sub-``/``ses-`` (session ``None``: no session level).

    Returns
    -------
    Path
        ``OUT/sub-01/ses-bl/pet`` (or ``OUT/sub-01/pet``).
    """
    base = Path(out_dir) / f"sub-{subject}"
    if session:
        base = base / f"ses-{session}"
    return base / "pet"


def figures_dir(out_dir: str | os.PathLike[str], subject: str) -> Path:
    """The figure folder of a subject.

    Parameters
    ----------
    out_dir : path
        Derivatives root.
    subject : str
        Label without ``sub-``.

    Returns
    -------
    Path
        ``OUT/sub-01/figures``.
    """
    return Path(out_dir) / f"sub-{subject}" / "figures"


def atlas_label(path: str | os.PathLike[str] | None, override: str | None = None) -> str:
    """The ``seg-<label>`` of outputs.

    Parameters
    ----------
    path : path or None
        The segmentation file.
    override : str, optional
        ``--atlas-name``.

    Returns
    -------
    str
        ``override`` (alphanumerics only), else the ``seg-``/``atlas-``/``desc-`` entity of
        the file name, else its stem for a non-BIDS file, else ``dseg``.
    """
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


def tacs_name(stem: str, atlas: str, desc: str | None = None) -> str:
    """File name of the regional TACs.

    Parameters
    ----------
    stem : str
        Scan stem (:func:`scan_stem`).
    atlas : str
        Segmentation label (:func:`atlas_label`).
    desc : str, optional
        ``desc`` entity of a processed variant (``"gtm"``: partial-volume corrected).

    Returns
    -------
    str
        ``<stem>_seg-<atlas>[_desc-<desc>]_tacs.tsv``.
    """
    return f"{stem}_seg-{atlas}{_desc(desc)}_tacs.tsv"


def kinpar_name(stem: str, atlas: str, model: str, desc: str | None = None) -> str:
    """File name of a regional fit.

    Parameters
    ----------
    stem : str
        Scan stem.
    atlas : str
        Segmentation label.
    model : str
        Registry name.
    desc : str, optional
        ``desc`` entity of the TACs fitted (``"gtm"``: partial-volume corrected).

    Returns
    -------
    str
        ``<stem>_seg-<atlas>[_desc-<desc>]_model-<MODEL>_kinpar.tsv``.
    """
    return f"{stem}_seg-{atlas}{_desc(desc)}_model-{model_label(model)}_kinpar.tsv"


def _desc(desc: str | None) -> str:
    return f"_desc-{desc}" if desc else ""


def map_name(stem: str, model: str, param: str) -> str:
    """File name of a parametric map.

    Parameters
    ----------
    stem : str
        Scan stem.
    model : str
        Registry name.
    param : str
        Parameter name (``BPND``, ``R1``, ...).

    Returns
    -------
    str
        ``<stem>_model-<MODEL>_meas-<PARAM>_mimap.nii.gz``.
    """
    meas = re.sub(r"[^0-9A-Za-z]", "", param)
    return f"{stem}_model-{model_label(model)}_meas-{meas}_mimap.nii.gz"


def idif_name(stem: str) -> str:
    """File name of a scan's image-derived input function.

    Parameters
    ----------
    stem : str
        Scan stem.

    Returns
    -------
    str
        ``<stem>_recording-IDIF_desc-idif_blood.tsv``: a BIDS blood table, whose
        ``recording`` entity BIDS requires (``IDIF``: derived from the image, as
        ``manual`` / ``autosampler`` name measured samples).
    """
    return f"{stem}_recording-IDIF_desc-idif_blood.tsv"


def motion_name(stem: str) -> str:
    """File name of a scan's head-motion table (``--realign``).

    Parameters
    ----------
    stem : str
        Scan stem.

    Returns
    -------
    str
        ``<stem>_desc-motion_timeseries.tsv`` (``_timeseries`` is one of
        :data:`PROPOSAL_SUFFIXES` for PET).
    """
    return f"{stem}_desc-motion_timeseries.tsv"


def group_kinpar_name(model: str) -> str:
    """File name of the group dataset of a model.

    Parameters
    ----------
    model : str
        Registry name.

    Returns
    -------
    str
        ``group_model-<MODEL>_kinpar.nc``.
    """
    return f"group_model-{model_label(model)}_kinpar.nc"


def comparison_name(model: str, param: str) -> str:
    """File name of the arm comparison of one parameter.

    Parameters
    ----------
    model : str
        Registry name.
    param : str
        Outcome parameter.

    Returns
    -------
    str
        ``group_model-<MODEL>_meas-<PARAM>_comparison.tsv``.
    """
    return f"group_model-{model_label(model)}_meas-{param}_comparison.tsv"


# --------------------------------------------------------------------------- provenance
def command_line() -> str:
    """The command line of this process, for sidecars.

    Returns
    -------
    str
        Shell-quoted ``sys.argv`` with the program shown as ``sv2a``.
    """
    argv = list(sys.argv)
    if argv and argv[0].endswith(("sv2a", "__main__.py", "cli.py")):
        argv[0] = "sv2a"
    return shlex.join(argv)


def bids_uri(path: str | os.PathLike[str], bids_dir: str | os.PathLike[str]) -> str:
    """A source file as named in sidecars.

    Parameters
    ----------
    path : path
        The file.
    bids_dir : path
        Raw dataset root.

    Returns
    -------
    str
        ``bids:raw:sub-01/ses-bl/pet/x.nii.gz`` for a file inside the raw dataset, else its
        ``file://`` URI.
    """
    p = Path(path).resolve()
    root = Path(bids_dir).resolve()
    try:
        return f"bids:raw:{p.relative_to(root).as_posix()}"
    except ValueError:
        return p.as_uri()


def write_dataset_description(out_dir: str | os.PathLike[str],
                              bids_dir: str | os.PathLike[str]) -> Path:
    """Write ``OUT/dataset_description.json`` (and ``OUT/README`` when there is none).

    The description is that of a BIDS derivative dataset: ``DatasetType: derivative``,
    ``GeneratedBy`` (sv2a, its version and code URL), ``SourceDatasets`` and ``DatasetLinks``
    (``raw``: the input dataset, which the ``bids:raw:`` URIs of the sidecars refer to).

    Checking and indexing the derivatives:

    * the official bids-validator (``bids-validator-deno``, on PyPI) with
      ``--config`` :func:`sv2a.resources.bids_validator_config` reports no error; its only
      warnings are the ``NOT_INCLUDED`` of the outputs whose suffixes BIDS proposals define
      but no released BIDS version has yet (:data:`PROPOSAL_SUFFIXES`), and the hint
      ``TOO_FEW_AUTHORS`` (sv2a cannot know who ran it);
    * pybids indexes the outputs with
      ``BIDSLayout(OUT, validate=False, config=["bids", "derivatives",``
      :func:`sv2a.resources.pybids_config` ``])``, which adds the ``meas`` entity of the maps
      (``meas-BPND``) to pybids' own entities (``model``, ``segmentation`` = ``seg-``,
      ``desc``): ``layout.get(suffix="mimap", meas="BPND")``.

    Parameters
    ----------
    out_dir : path
        Derivatives root.
    bids_dir : path
        Raw dataset root (its name, DOI and version are copied).

    Returns
    -------
    Path
        The ``dataset_description.json`` written.
    """
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
    _write_readme(Path(out_dir), root)
    return write_json(Path(out_dir) / "dataset_description.json", desc)


def _write_readme(out: Path, raw: Path) -> None:
    """``OUT/README`` (BIDS recommends one) unless the user already put one there."""
    if any((out / name).exists() for name in ("README", "README.md", "README.rst",
                                               "README.txt")):
        return
    out.mkdir(parents=True, exist_ok=True)
    suffixes = ", ".join(f"_{s}" for s in PROPOSAL_SUFFIXES)
    text = (
        f"SV2A PET derivatives written by sv2a {__version__} from the BIDS dataset {raw}.\n\n"
        "Per scan (sub-<label>[/ses-<label>]/pet/): regional time-activity curves "
        "(_tacs.tsv), regional kinetic parameters per model (_model-<MODEL>_kinpar.tsv) and "
        "parametric maps (_model-<MODEL>_meas-<PARAMETER>_mimap.nii.gz) and, with "
        "realignment, the head motion per frame (_desc-motion_timeseries.tsv), each with a "
        "JSON sidecar giving units, settings and the source files. Their suffixes "
        f"({suffixes}) come from BIDS proposals for PET derivatives, not yet in a released "
        "BIDS version.\n"
        "Not BIDS (listed in .bidsignore): logs/, group/ (group-level tables), figures/, "
        "the HTML reports and sv2a_config.json (the settings of the run).\n")
    from ..io import atomic_path

    with atomic_path(out / "README") as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bidsignore(out_dir: str | os.PathLike[str]) -> Path:
    """Write ``OUT/.bidsignore`` listing the outputs that are not BIDS at all (idempotent).

    Logs, figures, HTML reports, the run's configuration, the work folder and the
    group-level tables (:data:`BIDSIGNORE`). The per-scan outputs (TACs, kinetic parameters,
    parametric maps) are deliberately not listed, so that the bids-validator and pybids see
    them (see :func:`write_dataset_description`).

    Parameters
    ----------
    out_dir : path
        Derivatives root.

    Returns
    -------
    Path
        The file.
    """
    p = Path(out_dir) / ".bidsignore"
    from ..io import atomic_path

    head = ["# sv2a: files that are not BIDS derivatives (logs, figures, reports, settings,",
            "# group-level tables); the per-scan outputs are left visible on purpose."]
    with atomic_path(p) as tmp:
        tmp.write_text("\n".join(head + BIDSIGNORE) + "\n", encoding="utf-8")
    return p


def provenance(*, sources: Iterable[str], settings: Mapping[str, Any] | None = None,
               config_hash: str | None = None) -> dict[str, Any]:
    """The provenance block shared by all sidecars.

    Parameters
    ----------
    sources : iterable of str
        Input files (:func:`bids_uri`).
    settings : mapping, optional
        Pipeline settings behind the file (``PipelineSettings``).
    config_hash : str, optional
        The scan's settings hash (``ConfigHash``).

    Returns
    -------
    dict
        ``SoftwareName``, ``SoftwareVersion``, ``CommandLine``, ``Sources`` and the optional
        keys.
    """
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
    """Regional TACs as a table.

    Parameters
    ----------
    tacs : xr.DataArray
        Region x frame TACs (kBq/mL) with ``frame_start``/``frame_end`` in minutes.

    Returns
    -------
    pandas.DataFrame
        ``frame_start``, ``frame_end`` (s), then one column per region (kBq/mL).
    """
    df = pd.DataFrame({"frame_start": np.asarray(tacs["frame_start"].values) * 60.0,
                       "frame_end": np.asarray(tacs["frame_end"].values) * 60.0})
    vals = np.asarray(tacs.transpose("region", "frame").values)
    for i, r in enumerate(tacs["region"].values.tolist()):
        df[str(r)] = vals[i]
    return df


def kinpar_table(fit: xr.Dataset) -> pd.DataFrame:
    """A fit result as a table.

    Parameters
    ----------
    fit : xr.Dataset
        Result of :func:`sv2a.fit` (variables over ``region``).

    Returns
    -------
    pandas.DataFrame
        ``region`` first, then every per-region variable in the result's order (parameters,
        their standard errors, fit statistics); booleans as 0/1.
    """
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
    """The settings of a fit result.

    Parameters
    ----------
    fit : xr.Dataset
        Result of :func:`sv2a.fit`.

    Returns
    -------
    dict
        Its attrs as plain values (JSON-encoded strings decoded, arrays as lists).
    """
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
    """The units of a fit result.

    Parameters
    ----------
    fit : xr.Dataset
        Result of :func:`sv2a.fit`.

    Returns
    -------
    dict
        ``{variable: units}`` of the variables that declare units.
    """
    return {str(k): str(v.attrs["units"]) for k, v in fit.data_vars.items() if "units" in v.attrs}


def write_table_with_sidecar(path: Path, table: pd.DataFrame,
                             sidecar: Mapping[str, Any]) -> Path:
    """Write a TSV and its JSON sidecar (both atomic; sidecar last).

    Parameters
    ----------
    path : Path
        The ``.tsv`` file; the sidecar is the same name with ``.json``.
    table : pandas.DataFrame
        The table.
    sidecar : mapping
        The sidecar content.

    Returns
    -------
    Path
        ``path``.
    """
    write_tsv(path, table)
    write_json(path.with_suffix(".json"), sidecar)
    return path
