"""Package attributes imported on first access (PEP 562).

``import sv2a`` (and ``sv2a.pipeline``, ``sv2a.models``) must not import NumPy, pandas, xarray
or SciPy before a function that needs them is used: ``sv2a --help`` and ``sv2a run --help``
start in a few tens of milliseconds that way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package with lazily imported names.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping
        Public name -> the module that defines it (imported on first access; the value is
        then stored in the package, so later accesses are ordinary attribute look-ups).
    submodules : iterable of str
        Sub-modules imported on first access (``package.<name>``).

    Returns
    -------
    getattr : callable
        ``__getattr__(name)``; raises AttributeError for other names.
    dir : callable
        ``__dir__()``: the package's ``__all__`` (its public API).

    Examples
    --------
    >>> get, _ = lazy_attributes("sv2a", {"load_pet": "sv2a.pet"})
    >>> get("load_pet").__name__
    'load_pet'
    """
    subs = frozenset(submodules)

    def getattr_(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[package], name, value)  # later accesses skip __getattr__
            return value
        if name in subs:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return list(sys.modules[package].__all__)

    return getattr_, dir_
