"""Regional kinetic models and the :func:`fit` entry point.

``sv2a.models.available()`` lists the registered models; each model is also importable as a
function from its module (``sv2a.models.plasma``, ``sv2a.models.reference``,
``sv2a.models.static``).
"""

from __future__ import annotations

import importlib

import xarray as xr

from .registry import ModelSpec, available, get, register
from .result import build_result

__all__ = ["fit", "available", "get", "register", "ModelSpec", "build_result"]

# Modules that register models on import.
for _mod in ("plasma", "reference", "static"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:  # pragma: no cover - only while a module is absent
        if _exc.name != f"{__name__}.{_mod}":
            raise


def fit(tacs: xr.DataArray, model: str, *, input=None, reference=None, **options) -> xr.Dataset:
    """Fit a kinetic model to regional TACs.

    Parameters
    ----------
    tacs : xr.DataArray
        Regional TACs (region x frame) from :func:`sv2a.extract_tacs` or
        :func:`sv2a.tacs_from_arrays`.
    model : str
        A name from :func:`available` (``1tcm 2tcm logan ma1 srtm srtm2 mrtm mrtm2 logan_ref suv
        suvr``).
    input : InputFunction, optional
        Plasma input for plasma-input models.
    reference : str or array, optional
        Reference region name (a region of ``tacs``) or TAC for reference-tissue models.
    **options
        Model options (``vB``, ``delay``, ``weights``, ``sampling``, ``tstar``, ``n_frames``,
        ``k2prime``, ``window`` ...). Unknown options raise :class:`sv2a.errors.ModelError`.

    Returns
    -------
    xr.Dataset
        Parameters over ``region`` (DESIGN §2 names), ``<name>_se``, ``rss``, ``aic``,
        ``n_frames``, ``converged``, ``at_bound`` and the settings in ``attrs``.

    Examples
    --------
    >>> import sv2a
    >>> sv2a.fit(tacs, model="srtm2", reference="centrum_semiovale")  # doctest: +SKIP
    """
    spec = get(model)
    return spec.func(tacs, input=input, reference=reference, **options)
