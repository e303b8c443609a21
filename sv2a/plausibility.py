"""Plausibility checks that catch a wrong unit before it becomes a wrong number.

A PET image labelled ``Bq/mL`` that actually holds kBq/mL (or the reverse) is off by 1000;
nothing in the file says so. With the injected dose and the body weight known, the standardized
uptake value SUV = C [kBq/mL] · W [kg] / D [MBq] of a late frame tells: the highest brain SUV
of any PET tracer lies between about 0.5 and 20 (decay corrected, after the first minutes), so
a high percentile of the frame outside 0.01–1000 means the unit is off by about 1000.

For the SV2A tracers the range is narrower (:data:`TRACER_SUV_RANGES`), so that a unit off by
the ratio of two common units — 27 between kBq/mL and nCi/mL (1 nCi = 37 Bq) — is caught too.

Examples
--------
>>> import numpy as np
>>> frame = np.full((4, 4, 4), 20.0)          # kBq/mL
>>> round(suv_percentile(frame, injected_mbq=400.0, body_weight_kg=80.0), 3)
4.0
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from .errors import MetadataError, UnitsError
from .units import activity_factor

__all__ = ["SUV_RANGE", "TRACER_SUV_RANGES", "SMALL_ANIMAL_KG", "MIN_VOXELS", "suv_percentile",
           "suv_range", "check_activity_units", "LATE_RISE_LIMIT", "check_decay_correction"]

#: Plausible range of a late frame's high-percentile SUV (dimensionless) for any tracer;
#: outside it the activity unit is off by about a factor 1000.
SUV_RANGE = (0.01, 1000.0)

#: Plausible range of a late frame's 99.5th-percentile SUV per SV2A tracer (key: the
#: normalised TracerName, see :func:`suv_range`). Brain SUV of [11C]UCB-J, [18F]SynVesT-1
#: (SDM-8) and [11C]UCB-H at 45–90 min lies at about 1–15 (grey matter; 3.7–7.0 in the
#: human and rat phantom presets and the demo, 2.6–4.6 in the mouse UCB-J preset); the floor
#: 0.6 lies below that with a margin of 1.7 (4 for the data at hand), and 15 / 27 = 0.56 is
#: under it, so any such scan labelled nCi/mL (or nCi/cc) while holding kBq/mL is refused.
#: [18F]SynVesT-2 washes out faster (late SUV 0.8–2.1 in the phantom presets): floor 0.2,
#: a factor 4 below, while 2.1 / 27 = 0.08 falls under it. The ceiling stays at 100 (head
#: and body fields of view also hold excretion organs); it still catches nCi/mL data
#: labelled kBq/mL (x 27) of any brain above SUV 3.7.
TRACER_SUV_RANGES: dict[str, tuple[float, float]] = {
    "ucbj": (0.6, 100.0),
    "synvest1": (0.6, 100.0),
    "sdm8": (0.6, 100.0),
    "ucbh": (0.6, 100.0),
    "synvest2": (0.2, 100.0),
    "sdm2": (0.2, 100.0),
}

#: Below this body weight (kg) the subject is a small animal (mouse, rat): the floor of
#: :data:`TRACER_SUV_RANGES` is halved, since partial-volume loss in a brain of a few mm
#: (scanner resolution about 1.5 mm) lowers the highest voxels; SUV itself already scales
#: the dose by the body weight, so the ranges hold across species otherwise.
SMALL_ANIMAL_KG = 5.0

#: Common units tried when a value is implausible, to name the one that fits (kBq/mL each).
_CANDIDATE_UNITS = ("kBq/mL", "Bq/mL", "MBq/mL", "nCi/mL", "uCi/mL")

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


def suv_range(tracer: str | None, body_weight_kg: float) -> tuple[float, float]:
    """The plausible late-frame SUV range of a tracer and subject.

    Parameters
    ----------
    tracer : str or None
        BIDS ``TracerName`` (``'UCB-J'``, ``'[11C]UCB-J'``, ``'SynVesT-1'``, ``'SDM-8'`` ...);
        case, brackets, the radionuclide prefix and punctuation are ignored.
    body_weight_kg : float
        Body weight (kg); under :data:`SMALL_ANIMAL_KG` the tracer floor is halved.

    Returns
    -------
    tuple of float
        ``(low, high)`` SUV (dimensionless): :data:`TRACER_SUV_RANGES` for a known SV2A
        tracer, else :data:`SUV_RANGE`.

    Examples
    --------
    >>> suv_range("[11C]UCB-J", 80.0)
    (0.6, 100.0)
    >>> suv_range("FDG", 80.0)
    (0.01, 1000.0)
    """
    key = _tracer_key(tracer)
    if key not in TRACER_SUV_RANGES:
        return SUV_RANGE
    lo, hi = TRACER_SUV_RANGES[key]
    return (lo / 2.0 if body_weight_kg < SMALL_ANIMAL_KG else lo, hi)


def _tracer_key(tracer: str | None) -> str:
    """``'[11C]UCB-J'``, ``'11C-UCB-J'``, ``'ucbj'`` -> ``'ucbj'``."""
    if not tracer:
        return ""
    name = str(tracer).split("]")[-1].lower()
    name = re.sub(r"^\s*(11c|18f|\[?11c\]?|\[?18f\]?)[\s-]*", "", name)
    return re.sub(r"[^a-z0-9]", "", name)


def _other_units(suv: float, units: str, lo: float, hi: float) -> list[str]:
    """The common units in which the values would give a plausible SUV."""
    try:
        f = activity_factor(units)
    except UnitsError:
        return []
    out = []
    for c in _CANDIDATE_UNITS:
        r = activity_factor(c) / f
        if abs(np.log(r)) > 1e-6 and lo <= suv * r <= hi:
            out.append(c)
    return out


def check_activity_units(frame: npt.ArrayLike, *, injected_mbq: float, body_weight_kg: float,
                         units: str, source: str, frame_index: int | None = None,
                         tracer: str | None = None, decay_corrected: bool = False) -> float:
    """Check a late frame's SUV against the plausible range (:func:`suv_range`).

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
    tracer : str, optional
        BIDS ``TracerName``: the SV2A tracers have narrower ranges
        (:data:`TRACER_SUV_RANGES`); others, or none, get :data:`SUV_RANGE`.
    decay_corrected : bool
        Whether the file says the image is decay corrected: a low SUV then also names a
        missing decay correction as a possible cause.

    Returns
    -------
    float
        The SUV percentile checked (NaN when the check was skipped).

    Raises
    ------
    UnitsError
        The SUV is outside the range: the message names ``Units``, its value, the implied
        SUV, the range and the likely fix.

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
    lo, hi = suv_range(tracer, body_weight_kg)
    if lo <= suv <= hi:
        return suv
    where = "" if frame_index is None else f" in frame {frame_index}"
    bq = units.strip().lower().startswith("bq")
    kbq = units.strip().lower().startswith("kbq")
    fits = _other_units(suv, units, lo, hi)
    if len(fits) == 1 and not (bq or kbq):
        likely = f"the voxels are probably in {fits[0]}: set \"Units\": \"{fits[0]}\""
    elif suv < lo:
        likely = ("the voxels are probably in kBq/mL: set \"Units\": \"kBq/mL\"" if bq else
                  "the voxels are probably in a unit 1000 times larger than 'Units' says, or "
                  "InjectedRadioactivity is 1000 times too large (e.g. kBq given as MBq: check "
                  "InjectedRadioactivityUnits)")
    else:
        likely = ("the voxels are probably in Bq/mL: set \"Units\": \"Bq/mL\"" if kbq else
                  "the voxels are probably in a unit 1000 times smaller than 'Units' says, or "
                  "InjectedRadioactivity is 1000 times too small (e.g. GBq given as MBq: check "
                  "InjectedRadioactivityUnits)")
    if suv < lo and decay_corrected:
        likely += ("; or the image is not decay corrected although ImageDecayCorrected is "
                   "true (set it to false and give TracerRadionuclide)")
    raise UnitsError(
        f"{source}: implausible activity for 'Units': {units!r}: the {_PERCENTILE:g}th "
        f"percentile{where} is SUV {suv:.3g} (dose {injected_mbq:.4g} MBq, body weight "
        f"{body_weight_kg:.4g} kg), outside the plausible {lo:g}–{hi:g}"
        f"{_range_reason(tracer, (lo, hi))}; {likely}. Check "
        "Units, InjectedRadioactivity(Units) and BodyWeight"
    )


def _range_reason(tracer: str | None, rng: tuple[float, float]) -> str:
    """Why the range applies (for messages)."""
    if rng == SUV_RANGE:
        return " (any tracer)"
    return f" for {tracer} (late brain SUV of the SV2A tracers)"


#: Largest rise of the decay-corrected mean tissue curve from the middle to the end of a scan
#: (late/middle ratio) that kinetics can explain: reversible tracers such as the SV2A
#: ligands plateau or wash out (ratio ~0.5-1.1), irreversible ones rise slowly (FDG ~1.2-1.6
#: over the same span). A curve decay corrected twice rises by the decay factor, 2 ** (span /
#: half-life): 5.1 from 34 to 82 min for carbon-11 (a valid UCB-J ratio of 0.6-0.7 becomes
#: 3-3.6).
LATE_RISE_LIMIT = 2.0

#: The check needs a span over which decay changes activity at least this much (otherwise a
#: second correction cannot be told from kinetics): carbon-11 scans of 60 min or more;
#: fluorine-18 scans are too short.
_MIN_DECAY_FACTOR = 3.0


def check_decay_correction(curve: npt.ArrayLike, start: npt.ArrayLike, end: npt.ArrayLike, *,
                           half_life: float | None, corrected_on_load: bool,
                           source: str) -> float:
    """Refuse a tissue curve that rises by about the decay factor late in the scan: the image
    was decay corrected twice (``ImageDecayCorrected: false`` on a corrected image, or a wrong
    ``TracerRadionuclide``/``ImageDecayCorrectionTime``).

    The duration-weighted mean of ``curve`` over the frames whose mid-time lies in the last
    quarter of the scan is compared with that over the frames with mid-times between 1/4
    and 1/2 of the scan end; a ratio above :data:`LATE_RISE_LIMIT` is refused when decay
    over the span between the two windows is at least a factor 3 (carbon-11 scans of about
    70 min or more).

    Parameters
    ----------
    curve : array_like, shape (n_frames,)
        Decay-corrected mean tissue activity (kBq/mL), e.g. the volume-weighted mean of the
        regional TACs.
    start, end : array_like, shape (n_frames,)
        Frame times (min after injection).
    half_life : float or None
        Radionuclide half-life (min); ``None`` skips the check.
    corrected_on_load : bool
        Whether sv2a applied the decay correction (the file said it was not corrected): the
        message then points at ``ImageDecayCorrected``.
    source : str
        The image (for messages).

    Returns
    -------
    float
        The late/middle ratio (NaN when the check does not apply).

    Raises
    ------
    MetadataError
        The ratio exceeds :data:`LATE_RISE_LIMIT`.

    Examples
    --------
    >>> import numpy as np
    >>> start = np.arange(0, 90, 5.0); end = start + 5
    >>> flat = np.ones(18)
    >>> round(check_decay_correction(flat, start, end, half_life=20.38,
    ...                              corrected_on_load=False, source="x"), 2)
    1.0
    """
    c = np.asarray(curve, dtype=float)
    s, e = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    if half_life is None or not np.isfinite(half_life) or c.size < 4:
        return float("nan")
    mid, dur, t_end = (s + e) / 2, e - s, float(e[-1])
    late = mid >= 3 * t_end / 4
    middle = (mid >= t_end / 4) & (mid <= t_end / 2)
    if not late.any() or not middle.any():
        return float("nan")
    span = (np.average(mid[late], weights=dur[late])
            - np.average(mid[middle], weights=dur[middle]))
    if 2.0 ** (span / half_life) < _MIN_DECAY_FACTOR:
        return float("nan")
    m_mid = np.average(c[middle], weights=dur[middle])
    m_late = np.average(c[late], weights=dur[late])
    if not (np.isfinite(m_mid) and np.isfinite(m_late)) or m_mid <= 0:
        return float("nan")
    ratio = float(m_late / m_mid)
    if ratio > LATE_RISE_LIMIT:
        why = ("ImageDecayCorrected is false, so sv2a corrected it: is the image already "
               "decay corrected? Then set \"ImageDecayCorrected\": true" if corrected_on_load
               else "check TracerRadionuclide and ImageDecayCorrectionTime")
        raise MetadataError(
            f"{source}: after decay correction the mean tissue activity rises {ratio:.3g}-fold "
            f"from mid-scan to the end ({2.0 ** (span / half_life):.3g}-fold decay over that "
            f"span); no tracer kinetics rise that fast ({LATE_RISE_LIMIT:g}-fold at most), a "
            f"double decay correction does: {why}")
    return ratio
