"""Registry of kinetic models: name -> function, so ``sv2a.fit(model=...)`` can dispatch.

A model module registers each model with :func:`register`. A model function has the signature
``func(tacs: xr.DataArray, *, input=None, reference=None, **options) -> xr.Dataset`` and returns
a Dataset built with :func:`sv2a.models.result.build_result`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ModelError

__all__ = ["ModelSpec", "register", "available", "get"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes
    ----------
    name : str
        Registry name (lowercase, e.g. ``"srtm2"``); upper case in file names (``SRTM2``).
    func : callable
        The model function.
    kind : str
        ``"plasma"`` (needs ``input=``), ``"reference"`` (needs ``reference=``) or ``"static"``.
    parameters : tuple of str
        Parameter names it reports (DESIGN §2 names).
    description : str
        One line for listings.
    """

    name: str
    func: Callable
    kind: str
    parameters: tuple[str, ...]
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, kind: str, parameters: tuple[str, ...], description: str = ""):
    """Decorator that registers a model function under ``name``."""
    if kind not in ("plasma", "reference", "static"):
        raise ValueError(f"unknown model kind {kind!r}")

    def deco(func: Callable) -> Callable:
        _REGISTRY[name.lower()] = ModelSpec(name.lower(), func, kind, tuple(parameters),
                                            description)
        return func

    return deco


def available(kind: str | None = None) -> list[str]:
    """Names of the registered models, optionally only those of one ``kind``."""
    return sorted(n for n, s in _REGISTRY.items() if kind is None or s.kind == kind)


def get(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``; :class:`ModelError` if unknown."""
    key = str(name).lower().replace("-", "_")
    aliases = {"mrtm1": "mrtm", "loganref": "logan_ref", "reflogan": "logan_ref",
               "logan_reference": "logan_ref"}
    key = aliases.get(key, key)
    if key not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; available models: {', '.join(available())}")
    return _REGISTRY[key]
