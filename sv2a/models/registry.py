"""The one registry of kinetic models: name -> model class, kind, scales and parameters.

Every model module registers its :class:`~sv2a.models.base.Model` subclass with
:func:`register`. The adapters (:func:`sv2a.fit`, :func:`sv2a.parametric_maps`), the command
line, the pipeline configuration and the reports ask this registry what exists and what a
model can do; nothing else keeps a list of model names.
"""

from __future__ import annotations

from typing import TypeVar

from ..errors import ModelError
from .base import Kind, Model, Scale

__all__ = ["register", "available", "get", "require", "ALIASES"]

_REGISTRY: dict[str, type[Model]] = {}

#: Other spellings accepted for registry names.
ALIASES = {"mrtm1": "mrtm", "loganref": "logan_ref", "reflogan": "logan_ref",
           "logan_reference": "logan_ref", "onetcm": "1tcm", "twotcm": "2tcm",
           "logan_plasma": "logan"}

M = TypeVar("M", bound=type[Model])


def register(cls: M) -> M:
    """Class decorator that registers a model under ``cls.name``.

    Parameters
    ----------
    cls : type
        A :class:`~sv2a.models.base.Model` subclass with ``name``, ``kind``, ``scales``,
        ``parameters`` and ``Options``.

    Returns
    -------
    type
        ``cls`` unchanged.
    """
    if cls.kind not in ("plasma", "reference", "static"):
        raise ValueError(f"unknown model kind {cls.kind!r}")
    if not cls.scales or not set(cls.scales) <= {"region", "voxel"}:
        raise ValueError(f"model scales must be 'region' and/or 'voxel', got {cls.scales!r}")
    _REGISTRY[cls.name] = cls
    return cls


def available(kind: Kind | None = None, scale: Scale | None = None) -> list[str]:
    """Names of the registered models.

    Parameters
    ----------
    kind : {"plasma", "reference", "static"}, optional
        Only models of this kind.
    scale : {"region", "voxel"}, optional
        Only models that run at this scale (``"voxel"``: parametric maps).

    Returns
    -------
    list of str
        Sorted registry names.

    Examples
    --------
    >>> import sv2a
    >>> sv2a.models.available()
    ['1tcm', '2tcm', 'logan', 'logan_ref', 'ma1', 'mrtm', 'mrtm2', 'srtm', 'srtm2', 'suv', 'suvr']
    >>> "2tcm" in sv2a.models.available(scale="voxel")
    False
    """
    return sorted(n for n, c in _REGISTRY.items()
                  if (kind is None or c.kind == kind) and (scale is None or scale in c.scales))


def _key(name: str) -> str:
    key = str(name).lower().replace("-", "_")
    return ALIASES.get(key, key)


def get(name: str) -> type[Model]:
    """The model class registered as ``name`` (aliases such as ``"mrtm1"`` accepted).

    Parameters
    ----------
    name : str
        Registry name, any case.

    Returns
    -------
    type
        The :class:`~sv2a.models.base.Model` subclass (``.name``, ``.kind``, ``.scales``,
        ``.parameters``, ``.Options``).

    Raises
    ------
    ModelError
        Unknown name; the message lists the available models.
    """
    key = _key(name)
    if key not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(key, [*_REGISTRY, *ALIASES], n=1)
        hint = f" (did you mean '{_key(close[0])}'?)" if close else ""
        raise ModelError(f"unknown model {name!r}{hint}; available models: "
                         f"{', '.join(available())}")
    return _REGISTRY[key]


def require(name: str, *, scale: Scale) -> type[Model]:
    """The model class for ``name`` if it runs at ``scale``.

    Parameters
    ----------
    name : str
        Registry name.
    scale : {"region", "voxel"}
        ``"region"`` for :func:`sv2a.fit`, ``"voxel"`` for :func:`sv2a.parametric_maps`.

    Returns
    -------
    type
        The model class.

    Raises
    ------
    ModelError
        Unknown model, or one that does not run at ``scale``; the message lists the models
        that do.
    """
    cls = get(name)
    if scale not in cls.scales:
        what = "voxelwise maps" if scale == "voxel" else "regional fits"
        raise ModelError(
            f"model '{cls.name}' does not offer {what}; models for {what}: "
            f"{', '.join(available(scale=scale))}"
        )
    return cls
