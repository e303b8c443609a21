"""sv2a: synaptic density from SV2A PET."""

from __future__ import annotations

__version__ = "0.1.0"

from . import errors, units  # noqa: F401
from .blood import InputFunction
from .errors import Sv2aError
from .frames import FrameSchedule
from .tacs import extract_tacs, frames_of, tacs_from_arrays

_LAZY = {
    "fit": "sv2a.models",
    "load_pet": "sv2a.io",
    "load_blood": "sv2a.io",
    "load_atlas": "sv2a.atlas",
    "Atlas": "sv2a.atlas",
    "DynamicPET": "sv2a.io",
    "parametric_maps": "sv2a.parametric",
}
_SUBMODULES = ("models", "phantom", "longitudinal", "parametric", "io", "atlas", "report",
               "pipeline", "resources", "blood", "frames", "tacs", "validate",
               "weights", "bids")


def __getattr__(name: str):
    # Lazy access keeps `import sv2a` and the CLI fast (statsmodels, matplotlib load on use).
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"sv2a.{name}")
    raise AttributeError(f"module 'sv2a' has no attribute {name!r}")


__all__ = [
    *_LAZY,
    "__version__",
    "Sv2aError",
    "FrameSchedule",
    "InputFunction",
    "extract_tacs",
    "frames_of",
    "tacs_from_arrays",
]
