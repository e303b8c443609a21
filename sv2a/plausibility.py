"""Plausibility checks that catch a wrong unit before it becomes a wrong number.

A PET image labelled ``Bq/mL`` that actually holds kBq/mL (or the reverse) is off by 1000;
nothing in the file says so. With the injected dose and the body weight known, the standardized
uptake value SUV = C [kBq/mL] · W [kg] / D [MBq] of a late frame tells: the highest brain SUV
of any PET tracer lies between about 0.5 and 20 (decay corrected, after the first minutes), so
a high percentile of the frame outside 0.01–1000 means the unit is off by about 1000.

Examples
--------
>>> import numpy as np
>>> frame = np.full((4, 4, 4), 20.0)          # kBq/mL
>>> round(suv_percentile(frame, injected_mbq=400.0, body_weight_kg=80.0), 3)
4.0
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import UnitsError

__all__ = ["SUV_RANGE", "MIN_VOXELS", "suv_percentile", "check_activity_units"]

#: Plausible range of a late frame's high-percentile SUV (dimensionless); outside it the
#: activity unit is off by about a factor 1000.
SUV_RANGE = (0.01, 1000.0)

#: Frames with fewer voxels are not judged: no real PET field of view is that small (a
#: human brain at 7 mm voxels alone fills about 3500), so such arrays are toy images.
MIN_VOXELS = 4096

_PERCENTILE = 99.5  # robust to single hot or corrupt voxels, inside the brain for head FOVs


def suv_percentile(frame: npt.ArrayLike, *, injected_mbq: float, body_weight_kg: float,
                   percentile: float = _PERCENTILE) -> float:
    """A high percentile of a frame's SUV (finite voxels).

    Parameters
    ----------
    frame : array_like
        Activity concentration (kBq/mL), any shape.
    injected_mbq : float
        Injected radioactivity (MBq).
    body_weight_kg : float
        Body weight (kg).
    percentile : float
        Percentile of the voxel values (0–100).

    Returns
    -------
    float
        SUV (dimensionless, g/mL) at that percentile; NaN when no voxel is finite.

    Examples
    --------
    >>> suv_percentile([0.0, 10.0], injected_mbq=100.0, body_weight_kg=10.0, percentile=100)
    1.0
    """
    a = np.asarray(frame, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan")
    return float(np.percentile(a, percentile) * body_weight_kg / injected_mbq)


def check_activity_units(frame: npt.ArrayLike, *, injected_mbq: float, body_weight_kg: float,
                         units: str, source: str, frame_index: int | None = None) -> float:
    """Check a late frame's SUV against :data:`SUV_RANGE`.

    Parameters
    ----------
    frame : array_like
        A late frame converted to kBq/mL (decay corrected), any shape.
    injected_mbq : float
        Injected radioactivity (MBq); a non-positive or non-finite dose skips the check, as
        does a frame of fewer than :data:`MIN_VOXELS` voxels.
    body_weight_kg : float
        Body weight (kg); a non-positive or non-finite weight skips the check.
    units : str
        The ``Units`` field the values were converted from (for messages).
    source : str
        The image or sidecar (for messages).
    frame_index : int, optional
        Which frame (for messages).

    Returns
    -------
    float
        The SUV percentile checked (NaN when the check was skipped).

    Raises
    ------
    UnitsError
        The SUV is below 0.01 or above 1000: the message names ``Units``, its value, the
        implied SUV and the likely fix.

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.full((16, 16, 16), 20.0)
    >>> check_activity_units(frame, injected_mbq=400.0, body_weight_kg=80.0,
    ...                      units="kBq/mL", source="x_pet.json")
    4.0
    >>> check_activity_units(frame * 1000, injected_mbq=400.0, body_weight_kg=80.0,
    ...                      units="kBq/mL", source="x_pet.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sv2a.errors.UnitsError: x_pet.json: ...
    """
    if np.size(frame) < MIN_VOXELS:
        return float("nan")
    ok = (np.isfinite(injected_mbq) and injected_mbq > 0 and np.isfinite(body_weight_kg)
          and body_weight_kg > 0)
    if not ok:
        return float("nan")
    suv = suv_percentile(frame, injected_mbq=injected_mbq, body_weight_kg=body_weight_kg)
    if not np.isfinite(suv):
        return suv
    lo, hi = SUV_RANGE
    if lo <= suv <= hi:
        return suv
    where = "" if frame_index is None else f" in frame {frame_index}"
    bq = units.strip().lower().startswith("bq")
    kbq = units.strip().lower().startswith("kbq")
    if suv < lo:
        likely = ("the voxels are probably in kBq/mL: set \"Units\": \"kBq/mL\"" if bq else
                  "the voxels are probably in a unit 1000 times larger than 'Units' says, or "
                  "InjectedRadioactivity is 1000 times too large (e.g. kBq given as MBq: check "
                  "InjectedRadioactivityUnits)")
    else:
        likely = ("the voxels are probably in Bq/mL: set \"Units\": \"Bq/mL\"" if kbq else
                  "the voxels are probably in a unit 1000 times smaller than 'Units' says, or "
                  "InjectedRadioactivity is 1000 times too small (e.g. GBq given as MBq: check "
                  "InjectedRadioactivityUnits)")
    raise UnitsError(
        f"{source}: implausible activity for 'Units': {units!r}: the {_PERCENTILE:g}th "
        f"percentile{where} is SUV {suv:.3g} (dose {injected_mbq:.4g} MBq, body weight "
        f"{body_weight_kg:.4g} kg), outside the plausible {lo:g}–{hi:g}; {likely}. Check "
        "Units, InjectedRadioactivity(Units) and BodyWeight"
    )
