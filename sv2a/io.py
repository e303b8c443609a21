"""Input and output in one namespace: reading BIDS PET and blood, writing outputs.

This module holds no code of its own; it gathers the file functions from the modules that
implement them, so ``sv2a.io.<name>`` is the one place to import them from:

* :func:`load_pet`, :class:`DynamicPET` (:mod:`sv2a.pet`): a BIDS PET image, read lazily,
  in kBq/mL with its frame timing in minutes.
* :func:`load_blood`, :func:`read_blood_table` (:mod:`sv2a.blood_io`): BIDS blood recordings
  as an :class:`~sv2a.blood.InputFunction` (minutes, kBq/mL).
* :func:`sidecar_path`, :func:`read_json` (:mod:`sv2a.sidecar`): JSON sidecars.
* :func:`atomic_path`, :func:`write_nifti`, :func:`write_json`, :func:`write_tsv`
  (:mod:`sv2a.atomic`): write to a temporary file in the target directory and rename, so a
  crash never leaves a half-written output.
"""

from __future__ import annotations

from .atomic import atomic_path, write_json, write_nifti, write_tsv
from .blood_io import load_blood, read_blood_table
from .pet import DynamicPET, load_pet
from .sidecar import read_json, sidecar_path

__all__ = [
    "DynamicPET",
    "load_pet",
    "load_blood",
    "read_blood_table",
    "read_json",
    "sidecar_path",
    "atomic_path",
    "write_nifti",
    "write_json",
    "write_tsv",
]
