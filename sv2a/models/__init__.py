"""Kinetic models of SV2A PET: one module per model, one registry, one solver per model.

Each model lives in its own module (the equation, its options, one solver over an
``(n, n_frames)`` array and ``predict``): :mod:`.one_tcm`, :mod:`.two_tcm`, :mod:`.logan`
(plasma and reference Logan), :mod:`.ma1`, :mod:`.srtm`, :mod:`.srtm2`, :mod:`.mrtm` (MRTM and
MRTM2) and :mod:`.suvr` (SUVR and SUV). :func:`fit` runs a model on regional TACs and
:func:`sv2a.parametric_maps` on voxels; both call the same solver.

>>> import sv2a
>>> sv2a.models.available(scale="voxel")
['1tcm', 'logan', 'logan_ref', 'ma1', 'mrtm', 'mrtm2', 'srtm', 'srtm2', 'suv', 'suvr']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from .base import Model, ModelInputs
from .registry import available, get, require

__all__ = ["fit", "predict_fit", "available", "get", "require", "Model", "ModelInputs",
           "estimate_delay"]

# Modules that register models on import (the order is the listing order of the docs).
_MODEL_MODULES = ("one_tcm", "two_tcm", "logan", "ma1", "srtm", "srtm2", "mrtm", "suvr")
for _mod in _MODEL_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:  # pragma: no cover - only while a module is absent
        if _exc.name != f"{__name__}.{_mod}":
            raise


from .one_tcm import estimate_delay  # noqa: E402 - after the model modules registered

if TYPE_CHECKING:  # static checkers see the lazy names as ordinary imports
    from .regional import fit, predict_fit  # noqa: F401


#: ``fit`` and ``predict_fit`` load on first access: the regional adapter brings xarray and
#: pandas, which listing or preparing the models does not need
__getattr__, __dir__ = lazy_attributes(
    __name__, {"fit": f"{__name__}.regional", "predict_fit": f"{__name__}.regional"})
