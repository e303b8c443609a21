"""sv2a: synaptic density from SV2A PET.

Kinetic modelling of regional time-activity curves, parametric maps, BIDS batch processing
and longitudinal statistics. The public functions and classes are available from the package
itself and load their module on first use, so ``import sv2a`` is fast (NumPy, xarray,
matplotlib and statsmodels are imported only when needed):

>>> import sv2a
>>> pet = sv2a.load_pet("sub-01_pet.nii.gz")                     # doctest: +SKIP
>>> tacs = sv2a.extract_tacs(pet, sv2a.load_atlas("sub-01_dseg.nii.gz", pet=pet))  # doctest: +SKIP
>>> sv2a.fit(tacs, model="srtm2", reference="centrum_semiovale")  # doctest: +SKIP

``dir(sv2a)`` and ``sv2a.__all__`` list the public API: the names below and the sub-modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes
from .errors import Sv2aError

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "fit": "sv2a.models",
    "parametric_maps": "sv2a.parametric",
    "load_pet": "sv2a.pet",
    "DynamicPET": "sv2a.pet",
    "load_blood": "sv2a.blood_io",
    "InputFunction": "sv2a.blood",
    "image_derived_input": "sv2a.blood",
    "load_atlas": "sv2a.atlas",
    "Atlas": "sv2a.atlas",
    "FrameSchedule": "sv2a.frames",
    "extract_tacs": "sv2a.tacs",
    "tacs_from_arrays": "sv2a.tacs",
    "frames_of": "sv2a.tacs",
}

# public sub-modules (imported on first access)
_SUBMODULES = (
    "atlas", "atomic", "bids", "blood", "blood_io", "errors", "figures", "frames", "idif", "io",
    "longitudinal", "models", "motion", "parametric", "pet", "phantom", "pipeline", "pvc",
    "regions",
    "report", "resources", "sidecar", "tacs", "threads", "units", "validate", "weights",
)

__all__ = ["__version__", "Sv2aError", *_LAZY, *_SUBMODULES]

if TYPE_CHECKING:  # static checkers see the lazy names as ordinary imports
    from . import (  # noqa: F401
        atlas,
        atomic,
        bids,
        blood,
        blood_io,
        errors,
        figures,
        frames,
        idif,
        io,
        longitudinal,
        models,
        motion,
        parametric,
        pet,
        phantom,
        pipeline,
        pvc,
        regions,
        report,
        resources,
        sidecar,
        tacs,
        threads,
        units,
        validate,
        weights,
    )
    from .atlas import Atlas, load_atlas  # noqa: F401
    from .blood import InputFunction, image_derived_input  # noqa: F401
    from .blood_io import load_blood  # noqa: F401
    from .frames import FrameSchedule  # noqa: F401
    from .models import fit  # noqa: F401
    from .parametric import parametric_maps  # noqa: F401
    from .pet import DynamicPET, load_pet  # noqa: F401
    from .tacs import extract_tacs, frames_of, tacs_from_arrays  # noqa: F401


#: ``__getattr__`` imports a public name or sub-module on first access; ``__dir__`` lists them
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, _SUBMODULES)
