"""Synthetic SV2A PET phantoms: anatomy, tracer presets, exact kinetics, PSF, noise, cohorts.

* :func:`make_subject` -- one dynamic scan in memory (image, blood, truth, noise-free TACs);
* :func:`make_cohort` -- a longitudinal study written as BIDS + ``truth.tsv`` + ``design.json``;
* :func:`make_anatomy` -- the procedural label images; :func:`get_preset` -- tracer presets.

Examples
--------
>>> import sv2a
>>> s = sv2a.phantom.make_subject("human", "ucbj", seed=0, noise=0, fwhm=0,
...                               voxel_mm=4.0)  # doctest: +SKIP
>>> sv2a.phantom.make_cohort("ketamine_bids", design="ketamine-human", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from .cohort import DESIGNS, Cohort, make_cohort, normalise_design, scan_parameters
from .geometry import LABELS, Anatomy, make_anatomy
from .simulate import region_table, regional_tacs
from .subject import PhantomSubject, make_subject, truth_table
from .tracers import PRESETS, FengInput, TracerPreset, available_presets, get_preset

__all__ = [
    "make_subject",
    "make_cohort",
    "make_anatomy",
    "get_preset",
    "available_presets",
    "normalise_design",
    "scan_parameters",
    "region_table",
    "regional_tacs",
    "truth_table",
    "PhantomSubject",
    "Cohort",
    "Anatomy",
    "TracerPreset",
    "FengInput",
    "PRESETS",
    "DESIGNS",
    "LABELS",
]
