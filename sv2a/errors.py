"""Exception and warning types raised by sv2a.

Every error raised on bad input is a subclass of :class:`Sv2aError`, so callers (and the batch
runner) can catch one type. Each class also derives from the matching built-in exception, so
generic handlers work as well: bad values (timing, metadata, units, shapes, regions, input
functions, models, study designs, configurations, data) are :class:`ValueError`; an unusable
dataset layout on disk is an :class:`OSError`; a fit that fails to compute is a
:class:`RuntimeError`. Messages say *what* is wrong, *where* (file, field, frame index,
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
    "OutputNotWritableError",
    "Sv2aWarning",
    "Sv2aNotice",
]


class Sv2aError(Exception):
    """Base class of every error sv2a raises on bad input or a failed computation."""


class FrameTimingError(Sv2aError, ValueError):
    """Frame start times / durations are inconsistent (unsorted, overlapping, wrong length)."""


class MetadataError(Sv2aError, ValueError):
    """A required sidecar file or field is missing or has an invalid value."""


class UnitsError(Sv2aError, ValueError):
    """An activity or time unit is unknown or inconsistent."""


class ShapeMismatchError(Sv2aError, ValueError):
    """Two arrays or images that must share a shape or grid do not."""


class RegionError(Sv2aError, ValueError):
    """A region is missing, empty, or otherwise unusable."""


class InputFunctionError(Sv2aError, ValueError):
    """The blood / plasma input function is unusable (coverage, NaNs, negative values)."""


class FitError(Sv2aError, RuntimeError):
    """A model could not be fitted with the given data and settings."""


class ModelError(Sv2aError, ValueError):
    """Unknown model, unknown option, or an option value a model cannot use."""


class DataError(Sv2aError, ValueError):
    """Measured values are unusable (NaN, infinite, all zero, truncated or missing file)."""


class BIDSError(Sv2aError, OSError):
    """The dataset layout on disk does not follow BIDS in a way sv2a needs."""


class DesignError(Sv2aError, ValueError):
    """A study design (arms, sessions, effects) is inconsistent or incomplete."""


class ConfigError(Sv2aError, ValueError):
    """A pipeline configuration (file or flags) has an unknown key or an invalid value."""


class OutputNotWritableError(Sv2aError, OSError):
    """The output folder cannot be created or written (read-only, no permission)."""


class Sv2aWarning(UserWarning):
    """Warnings sv2a emits about data it could use but that deserve attention."""


class Sv2aNotice(Sv2aWarning):
    """A remark on a usable result that calls for no action on the data (the share of
    flagged voxels of a map, say): the pipeline puts it in the scan's notes and report, not
    in ``logs/failures.tsv``."""
