"""The common result type of every regional fit: an ``xr.Dataset`` over ``region``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr

__all__ = ["build_result", "clean_attrs"]

#: Order of columns in result tables (rate constants, blood volume, delay, distribution volumes,
#: binding potentials, ratios, uptake values); anything else follows.
PARAMETER_ORDER = ("K1", "k2", "k3", "k4", "vB", "delay", "VT", "VND", "VS", "BPND", "BPP",
                   "DVR", "R1", "k2prime", "k2a", "SUV", "SUVR")
DIAGNOSTICS = ("rss", "aic", "n_frames", "tstar", "converged", "at_bound", "message")


def clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Make attrs serialisable to netCDF/JSON: None -> 'none', bool -> int, containers -> JSON.

    Parameters
    ----------
    attrs : mapping
        Attribute names and values of any type.

    Returns
    -------
    dict
        The same keys with ``None`` as ``"none"``, bools as ints, numbers, strings and 1-D
        numeric arrays unchanged, and anything else as a JSON string (or its ``repr``).

    Examples
    --------
    >>> clean_attrs({"a": None, "b": True, "c": [1, 2]})
    {'a': 'none', 'b': 1, 'c': '[1, 2]'}
    """
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if v is None:
            out[k] = "none"
        elif isinstance(v, bool | np.bool_):
            out[k] = int(v)
        elif isinstance(v, int | float | str | np.integer | np.floating):
            out[k] = v
        elif isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "if":
            out[k] = v
        else:
            try:
                out[k] = json.dumps(v, default=lambda o: np.asarray(o).tolist())
            except TypeError:
                out[k] = repr(v)
    return out


def build_result(
    model: str,
    regions: Sequence[str],
    values: Mapping[str, npt.ArrayLike],
    *,
    attrs: Mapping[str, Any] | None = None,
    units: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Assemble a fit result.

    Parameters
    ----------
    model : str
        Registry name of the model.
    regions : sequence of str
        Region names (the ``region`` dimension).
    values : mapping name -> array (n_regions,)
        Parameters (``K1 k2 k3 k4 vB delay VT VND VS BPND BPP DVR R1 k2prime k2a SUV SUVR``,
        rates in 1/min, ``K1`` in mL/cm³/min), standard errors ``<name>_se``, and diagnostics
        (``rss aic n_frames tstar converged at_bound message``). ``converged``/``at_bound``
        are stored as bool, ``message`` as str (empty when the fit succeeded).
    attrs : mapping
        Every setting used (model, reference, weights, window, t*, ...).
    units : mapping name -> unit string, optional
        Stored as each variable's ``units`` attribute.

    Returns
    -------
    xr.Dataset
        One variable per entry of ``values`` over the ``region`` dimension, in
        :data:`PARAMETER_ORDER` (each followed by its ``_se``), then other names, then the
        diagnostics; ``attrs`` holds ``model`` and the cleaned ``attrs``.

    Raises
    ------
    ValueError
        A value that is neither a scalar nor of shape ``(n_regions,)``.

    Examples
    --------
    >>> ds = build_result("srtm", ["a", "b"], {"BPND": [1.0, 2.0], "rss": 0.5})
    >>> list(ds.data_vars), ds.BPND.values.tolist(), ds.attrs["model"]
    (['BPND', 'rss'], [1.0, 2.0], 'srtm')
    """
    regions = list(regions)
    n = len(regions)
    data: dict[str, xr.DataArray] = {}

    def order(name: str) -> tuple[int, str]:
        base = name[:-3] if name.endswith("_se") else name
        if base in PARAMETER_ORDER:
            return (PARAMETER_ORDER.index(base) * 2 + name.endswith("_se"), name)
        if name in DIAGNOSTICS:
            return (100 + DIAGNOSTICS.index(name), name)
        return (50, name)

    for name in sorted(values, key=order):
        v = np.asarray(values[name])
        if v.ndim == 0:
            v = np.full(n, v.item())
        if v.shape != (n,):
            raise ValueError(f"result '{name}' has shape {v.shape}, expected ({n},)")
        if name in ("converged", "at_bound"):
            v = v.astype(bool)
        elif name == "message":
            v = v.astype(str)
        elif name == "n_frames":
            v = v.astype(int)
        else:
            v = v.astype(float)
        da = xr.DataArray(v, dims=("region",))
        if units and name in units:
            da.attrs["units"] = units[name]
        data[name] = da
    a: dict[str, Any] = {"model": model}
    a.update(attrs or {})
    return xr.Dataset(data, coords={"region": regions}, attrs=clean_attrs(a))
