"""Activity and time units, converted to the package conventions (kBq/mL, minutes).

Examples
--------
>>> from sv2a.units import activity_factor, to_kbq_per_ml
>>> activity_factor("Bq/mL")
0.001
>>> float(to_kbq_per_ml(37.0, "nCi/cc"))
1.369
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from .errors import UnitsError

__all__ = [
    "activity_factor",
    "to_kbq_per_ml",
    "time_factor",
    "to_minutes",
    "weight_factor",
    "radioactivity_factor",
    "to_mbq",
    "HALF_LIFE_MIN",
    "half_life",
]

# kBq per unit of activity
_ACTIVITY_PREFIX = {
    "bq": 1e-3,
    "kbq": 1.0,
    "mbq": 1e3,
    "gbq": 1e6,
    "nci": 37e-3,  # 1 nCi = 37 Bq
    "uci": 37.0,
    "µci": 37.0,
    "μci": 37.0,
    "mci": 37e3,
}
# mL per unit of volume
_VOLUME = {"ml": 1.0, "cc": 1.0, "cm3": 1.0, "cm^3": 1.0, "l": 1e3}

_TIME = {"s": 1 / 60, "sec": 1 / 60, "second": 1 / 60, "seconds": 1 / 60,
         "min": 1.0, "minute": 1.0, "minutes": 1.0, "h": 60.0, "hr": 60.0, "hour": 60.0,
         "hours": 60.0, "ms": 1 / 60000}

#: Physical half-lives in minutes, keyed by the BIDS ``TracerRadionuclide`` spelling.
HALF_LIFE_MIN = {
    "C11": 20.364,
    "F18": 109.77,
    "O15": 2.0357,
    "N13": 9.965,
    "Ga68": 67.71,
    "Cu64": 762.0,
    "Zr89": 4704.0,
    "Rb82": 1.2625,
}


def activity_factor(unit: str) -> float:
    """Factor that converts an activity concentration in ``unit`` to kBq/mL.

    Parameters
    ----------
    unit : str
        ``Bq/mL, kBq/mL, MBq/mL, kBq/cc, nCi/mL, uCi/mL`` ... in any case, with ``ml``,
        ``mL``, ``cc``, ``cm3`` or ``L`` as volume (BIDS field ``Units``).

    Returns
    -------
    float
        kBq/mL per ``unit``.

    Raises
    ------
    UnitsError
        Anything else (including SUV or unitless images).
    """
    if not isinstance(unit, str) or not unit.strip():
        raise UnitsError(
            f"activity unit {unit!r} is empty or not a string; give e.g. 'kBq/mL' or 'Bq/mL' "
            "(BIDS field 'Units')"
        )
    u = unit.strip().replace(" ", "").replace("per", "/")
    if u.upper() == "BQML":  # the DICOM Units value (0054,1001) that converters copy
        u = "Bq/mL"
    m = re.fullmatch(r"([A-Za-zµμ]+)/([A-Za-z0-9^]+)", u)
    if m is None:
        raise UnitsError(
            f"cannot parse activity unit {unit!r}: expected '<activity>/<volume>' such as "
            "'kBq/mL', 'Bq/mL', 'nCi/cc'"
        )
    act, vol = m.group(1).lower(), m.group(2).lower()
    if act not in _ACTIVITY_PREFIX or vol not in _VOLUME:
        raise UnitsError(
            f"unknown activity unit {unit!r}; supported: Bq, kBq, MBq, nCi, uCi per mL/cc "
            "(e.g. 'kBq/mL'). SUV or unitless images must be converted before kinetic modelling"
        )
    return _ACTIVITY_PREFIX[act] / _VOLUME[vol]


def to_kbq_per_ml(values: npt.ArrayLike, unit: str) -> np.ndarray:
    """Convert activity concentrations to kBq/mL.

    Parameters
    ----------
    values : array_like
        Activity concentrations in ``unit``.
    unit : str
        Their unit (see :func:`activity_factor`).

    Returns
    -------
    ndarray of float
        The values in kBq/mL.
    """
    return np.asarray(values, dtype=float) * activity_factor(unit)


def radioactivity_factor(unit: str) -> float:
    """Factor that converts an amount of radioactivity to MBq.

    Parameters
    ----------
    unit : str
        ``Bq, kBq, MBq, GBq, nCi, uCi, mCi`` in any case (e.g. BIDS
        ``InjectedRadioactivityUnits``).

    Returns
    -------
    float
        MBq per ``unit``.

    Raises
    ------
    UnitsError
        Unknown unit.
    """
    if not isinstance(unit, str):
        raise UnitsError(f"radioactivity unit {unit!r} is not a string; give e.g. 'MBq'")
    u = unit.strip().lower()
    if u not in _ACTIVITY_PREFIX:
        raise UnitsError(
            f"unknown radioactivity unit {unit!r}; supported: Bq, kBq, MBq, GBq, nCi, uCi, mCi"
        )
    return _ACTIVITY_PREFIX[u] / 1e3


def to_mbq(value: float | str, unit: str) -> float:
    """Convert an amount of radioactivity (e.g. the injected dose) to MBq.

    Parameters
    ----------
    value : float or str
        The amount in ``unit``.
    unit : str
        Its unit (see :func:`radioactivity_factor`).

    Returns
    -------
    float
        The amount in MBq.
    """
    return float(value) * radioactivity_factor(unit)


def time_factor(unit: str) -> float:
    """Factor that converts a time to minutes.

    Parameters
    ----------
    unit : str
        ``'s'``, ``'min'``, ``'h'``, ``'ms'`` (and spelled-out forms), in any case.

    Returns
    -------
    float
        Minutes per ``unit``.

    Raises
    ------
    UnitsError
        Unknown unit.
    """
    if not isinstance(unit, str) or unit.strip().lower() not in _TIME:
        raise UnitsError(f"unknown time unit {unit!r}; supported: s, min, h (BIDS uses 's')")
    return _TIME[unit.strip().lower()]


_WEIGHT = {"kg": 1.0, "kgs": 1.0, "kilogram": 1.0, "kilograms": 1.0, "g": 1e-3, "gram": 1e-3,
           "grams": 1e-3, "lb": 0.45359237, "lbs": 0.45359237, "pound": 0.45359237,
           "pounds": 0.45359237}


def weight_factor(unit: object) -> float:
    """Factor that converts a body weight to kg.

    Parameters
    ----------
    unit : str
        ``'kg'``, ``'g'``, ``'lb'`` (and spelled-out forms), in any case.

    Returns
    -------
    float
        Kilograms per ``unit``.

    Raises
    ------
    UnitsError
        Not a weight unit.

    Examples
    --------
    >>> weight_factor("g"), weight_factor("Kilograms")
    (0.001, 1.0)
    """
    key = unit.strip().lower() if isinstance(unit, str) else None
    if key not in _WEIGHT:
        raise UnitsError(f"unknown weight unit {unit!r}; supported: kg, g, lb")
    return _WEIGHT[key]


def to_minutes(values: npt.ArrayLike, unit: str = "s") -> np.ndarray:
    """Convert times to minutes.

    Parameters
    ----------
    values : array_like
        Times in ``unit``.
    unit : str
        Their unit (BIDS: seconds).

    Returns
    -------
    ndarray of float
        The times in minutes.
    """
    return np.asarray(values, dtype=float) * time_factor(unit)


_ELEMENTS = {"carbon": "C", "fluorine": "F", "oxygen": "O", "nitrogen": "N",
             "gallium": "Ga", "copper": "Cu", "zirconium": "Zr", "rubidium": "Rb"}


def half_life(radionuclide: str) -> float:
    """Physical half-life of a radionuclide.

    Parameters
    ----------
    radionuclide : str
        BIDS ``TracerRadionuclide`` in any common spelling (``C11``, ``11C``, ``F-18``,
        ``[11C]``, ``Carbon-11``, ``^18^Fluorine`` ...).

    Returns
    -------
    float
        Half-life (min).

    Raises
    ------
    UnitsError
        Unknown radionuclide.
    """
    if not isinstance(radionuclide, str):
        raise UnitsError(f"TracerRadionuclide {radionuclide!r} is not a string, e.g. 'C11'")
    s = re.sub(r"[\[\]\-^ ]", "", radionuclide.strip())  # [11C], C-11, ^11^C, C 11
    for name, symbol in _ELEMENTS.items():  # Carbon-11, ^18^Fluorine (DICOM code meaning)
        s = re.sub(name, symbol, s, flags=re.IGNORECASE)
    m = re.fullmatch(r"(\d+)([A-Za-z]+)", s)
    if m:  # '11C' -> 'C11'
        s = m.group(2) + m.group(1)
    key = {k.lower(): k for k in HALF_LIFE_MIN}.get(s.lower())
    if key is None:
        raise UnitsError(
            f"unknown TracerRadionuclide {radionuclide!r}; known: {', '.join(HALF_LIFE_MIN)}"
        )
    return HALF_LIFE_MIN[key]
