"""Exception types raised by sv2a.

Every error raised on bad input is a subclass of :class:`Sv2aError`, so callers (and the batch
runner) can catch one type. Messages say *what* is wrong, *where* (file, field, frame index,
region) and *how to fix it*.
"""

from __future__ import annotations

__all__ = [
    "Sv2aError",
    "FrameTimingError",
    "MetadataError",
    "UnitsError",
    "ShapeMismatchError",
    "RegionError",
    "InputFunctionError",
    "FitError",
    "ModelError",
    "DataError",
    "BIDSError",
    "DesignError",
    "ConfigError",
    "Sv2aWarning",
]


class Sv2aError(Exception):
    """Base class of every error sv2a raises on bad input or a failed computation."""


class FrameTimingError(Sv2aError):
    """Frame start times / durations are inconsistent (unsorted, overlapping, wrong length)."""


class MetadataError(Sv2aError):
    """A required sidecar file or field is missing or has an invalid value."""


class UnitsError(Sv2aError):
    """An activity or time unit is unknown or inconsistent."""


class ShapeMismatchError(Sv2aError):
    """Two arrays or images that must share a shape or grid do not."""


class RegionError(Sv2aError):
    """A region is missing, empty, or otherwise unusable."""


class InputFunctionError(Sv2aError):
    """The blood / plasma input function is unusable (coverage, NaNs, negative values)."""


class FitError(Sv2aError):
    """A model could not be fitted with the given data and settings."""


class ModelError(Sv2aError):
    """Unknown model, unknown option, or an option value a model cannot use."""


class DataError(Sv2aError):
    """Measured values are unusable (NaN, infinite, all zero, truncated file)."""


class BIDSError(Sv2aError):
    """The dataset layout does not follow BIDS in a way sv2a needs."""


class DesignError(Sv2aError):
    """A study design (arms, sessions, effects) is inconsistent or incomplete."""


class ConfigError(Sv2aError):
    """A pipeline configuration (file or flags) has an unknown key or an invalid value."""


class Sv2aWarning(UserWarning):
    """Warnings sv2a emits about data it could use but that deserve attention."""
