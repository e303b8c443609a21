"""Labelled map datasets: assembly, units, and ``ds.sv2a.to_nifti``.

A map dataset holds 3-D maps over dims ``(x, y, z)`` (float32, NaN outside the mask), a
``flag`` bit field (uint8, CF ``flag_masks``/``flag_meanings``) and the settings in attrs.
Files are named ``<stem>_model-<MODEL>_meas-<PARAM>_mimap.nii.gz`` with ``MODEL`` the registry
name in upper case without underscores (BIDS-derivatives style).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from ..errors import ModelError
from ..models.base import FLAGS
from ..models.result import clean_attrs
from ..threads import cpu_workers

__all__ = ["map_filename", "assemble", "Sv2aMapsAccessor", "DESCRIPTIONS", "OPTIONAL_MAPS"]

#: Long names of the map parameters.
DESCRIPTIONS = {
    "BPND": "non-displaceable binding potential",
    "R1": "relative delivery K1/K1' (target vs reference)",
    "k2": "target efflux rate constant k2",
    "k2a": "apparent efflux rate k2a = k2/(1+BPND)",
    "k2prime": "reference efflux rate k2' = k2/R1",
    "DVR": "distribution volume ratio to the reference",
    "SUVR": "standardised uptake value ratio to the reference",
    "SUV": "standardised uptake value",
    "VT": "total volume of distribution",
    "K1": "influx rate constant K1",
    "vB": "blood volume fraction",
    "delay": "input delay",
    "intercept": "intercept of the graphical plot",
    "rss": "weighted residual sum of squares of the fit",
    "flag": "quality bit field: " + ", ".join(f"{b} = {n}" for b, n in FLAGS.items()),
}


#: Maps that ``ds.sv2a.to_nifti`` writes only when asked (``params=[...]`` or ``"all"``): the
#: weighted residual sum of squares, the apparent efflux rate k2a = k2/(1+BPND) (derived from
#: two written maps) and k2' (a constant for SRTM2, MRTM2 and Logan; k2/R1 for SRTM and MRTM).
OPTIONAL_MAPS = ("rss", "k2a", "k2prime")


def map_filename(stem: str, model: str, param: str) -> str:
    """File name of one parametric map.

    Parameters
    ----------
    stem : str
        BIDS entities prefix, e.g. ``"sub-01_ses-bl"``.
    model : str
        Registry name (``"logan_ref"`` -> ``LOGANREF``).
    param : str
        Parameter name (``BPND``).

    Returns
    -------
    str
        ``<stem>_model-<MODEL>_meas-<PARAM>_mimap.nii.gz``.

    Examples
    --------
    >>> map_filename("sub-01_ses-bl", "logan_ref", "DVR")
    'sub-01_ses-bl_model-LOGANREF_meas-DVR_mimap.nii.gz'
    """
    return f"{stem}_model-{model.upper().replace('_', '')}_meas-{param}_mimap.nii.gz"


def assemble(model: str, maps: Mapping[str, NDArray[Any]], flag: NDArray[np.uint8],
             affine: NDArray[Any], settings: Mapping[str, Any],
             units: Mapping[str, str]) -> xr.Dataset:
    """Build the map Dataset.

    Parameters
    ----------
    model : str
        Registry name.
    maps : mapping name -> array (x, y, z)
        Parameter maps.
    flag : uint8 array (x, y, z)
        Flag bit field.
    affine : array (4, 4)
        Voxel-to-mm affine.
    settings : mapping
        Settings for the attrs.
    units : mapping
        Unit of each parameter.

    Returns
    -------
    xr.Dataset
    """
    from .. import __version__

    # Variables built with fastpath (the arrays are already plain ndarrays of the final dtype):
    # the ordinary constructor asks whether the data are dask arrays, which imports dask
    # (0.3-1 s) in every process that writes maps.
    dims = ("x", "y", "z")
    data_vars: dict[str, xr.Variable] = {}
    for nm, arr in maps.items():
        data_vars[nm] = xr.Variable(
            dims, np.asarray(arr, dtype=np.float32),
            {"units": units.get(nm, "weighted (kBq/mL)^2" if nm == "rss" else ""),
             "long_name": DESCRIPTIONS.get(nm, nm)}, fastpath=True)
    data_vars["flag"] = xr.Variable(
        dims, np.asarray(flag, dtype=np.uint8),
        {"units": "1", "long_name": DESCRIPTIONS["flag"],
         "flag_masks": np.array(list(FLAGS), dtype=np.uint8),
         "flag_meanings": " ".join(v.replace(" ", "_") for v in FLAGS.values())},
        fastpath=True)
    attrs: dict[str, Any] = {"model": model, "software": f"sv2a {__version__}",
                             "affine": np.asarray(affine, dtype=float).ravel()}
    attrs.update(settings)
    return xr.Dataset(data_vars, attrs=clean_attrs(attrs))


def _attr_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


@xr.register_dataset_accessor("sv2a")
class Sv2aMapsAccessor:
    """``ds.sv2a``: output helpers for map datasets made by :func:`sv2a.parametric_maps`.

    Parameters
    ----------
    ds : xr.Dataset
        A map dataset.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def settings(self) -> dict[str, Any]:
        """The attrs as plain Python values.

        Returns
        -------
        dict
            Lists, numbers and strings.
        """
        return {str(k): _attr_value(v) for k, v in self._ds.attrs.items()}

    def to_nifti(self, out_dir: str | Path, stem: str, *,
                 params: list[str] | str | None = None,
                 compresslevel: int = 1) -> list[Path]:
        """Write one NIfTI per map (+ JSON sidecar) into ``out_dir``, atomically.

        By default the main maps are written: every map except the ones in
        :data:`OPTIONAL_MAPS` (``rss``, ``k2a``, ``k2prime``: the fit residual, a rate derived
        from two written maps, and for SRTM2/MRTM2/Logan a constant), i.e. the model's
        parameters and ``flag``. (sv2a 0.1.0 wrote every map when ``params`` was ``None``;
        ``params="all"`` does that now.) Maps are compressed concurrently in threads.

        Parameters
        ----------
        out_dir : path
            Directory (created if missing).
        stem : str
            BIDS entities prefix, e.g. ``"sub-01_ses-bl"``.
        params : list of str or ``"all"``, optional
            Maps to write: a list of names (e.g. ``["BPND", "flag", "rss"]``), ``"all"``, or
            ``None`` (default) for the main maps described above.
        compresslevel : int
            zlib level 1-9 of the ``.nii.gz`` files (:func:`sv2a.atomic.gzip_compressor`).
            The default 1 is nibabel's own; with zlib it writes noisy float maps 1.3-3x
            faster than level 6, for files 1-10 % larger. The values are identical at any
            level.

        Returns
        -------
        list of Path
            The files written (:func:`map_filename` names), in the order of ``params`` (of the
            Dataset's variables by default). Each sidecar holds the model, parameter, units,
            description, every setting and the software version.

        Raises
        ------
        ModelError
            Not a map dataset, a bad stem, unknown ``params`` or a ``compresslevel`` outside
            1-9.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> z = np.zeros((2, 2, 1), np.float32)
        >>> ds = assemble("srtm2", {"BPND": z, "k2prime": z + 0.04, "rss": z},
        ...               np.zeros((2, 2, 1), np.uint8), np.eye(4), {}, {"BPND": "1"})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     [p.name for p in ds.sv2a.to_nifti(d, "sub-01")]
        ['sub-01_model-SRTM2_meas-BPND_mimap.nii.gz', 'sub-01_model-SRTM2_meas-flag_mimap.nii.gz']
        """
        from concurrent.futures import ThreadPoolExecutor

        from ..io import write_nifti

        ds = self._ds
        if "model" not in ds.attrs or "affine" not in ds.attrs:
            raise ModelError(
                "to_nifti: this Dataset was not made by sv2a.parametric_maps (no model/affine "
                "attrs)")
        if not stem or "/" in stem:
            raise ModelError(f"to_nifti: stem must be a file-name prefix, got {stem!r}")
        if not 1 <= int(compresslevel) <= 9:
            raise ModelError(f"to_nifti: compresslevel must be 1-9, got {compresslevel!r}")
        aff = np.asarray(_attr_value(ds.attrs["affine"]), dtype=float).reshape(4, 4)
        model = str(ds.attrs["model"])
        available = [str(v) for v in ds.data_vars]
        if params is None:
            names = [n for n in available if n not in OPTIONAL_MAPS]
        elif isinstance(params, str):
            if params != "all":
                raise ModelError(f"to_nifti: params must be a list of map names or 'all', got "
                                 f"{params!r}; available: {available}")
            names = available
        else:
            names = list(params)
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise ModelError(f"to_nifti: no map(s) {missing}; available: {available}")
        from .. import __version__

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in self.settings().items() if k != "affine"}

        def write(nm: str) -> Path:
            da_ = ds[nm]
            arr = np.asarray(da_.transpose("x", "y", "z").values)
            side: dict[str, Any] = {
                "Model": model,
                "Parameter": nm,
                "Units": da_.attrs.get("units", ""),
                "Description": da_.attrs.get("long_name", ""),
                "Settings": settings,
                "GeneratedBy": [{"Name": "sv2a", "Version": __version__}],
            }
            if nm == "flag":
                side["FlagBits"] = {str(b): n for b, n in FLAGS.items()}
            p = out / map_filename(stem, model, nm)
            write_nifti(p, arr, aff, sidecar=side,
                        dtype=np.uint8 if nm == "flag" else np.float32,
                        compresslevel=int(compresslevel))
            return p

        workers = min(len(names), cpu_workers())
        if workers <= 1:
            return [write(nm) for nm in names]
        with ThreadPoolExecutor(max_workers=workers) as ex:
            return list(ex.map(write, names))
