import numpy as np
import pytest

from sv2a.errors import UnitsError
from sv2a.units import activity_factor, to_kbq_per_ml, to_mbq, to_minutes


@pytest.mark.parametrize("unit,factor", [
    ("Bq/mL", 1e-3), ("bq/ml", 1e-3), ("BQ/ML", 1e-3), ("kBq/mL", 1.0), ("kBq/cc", 1.0),
    ("kbq/ml", 1.0), ("MBq/mL", 1e3), ("nCi/mL", 0.037), ("nCi/cc", 0.037), ("uCi/mL", 37.0),
    ("uCi/cc", 37.0), ("Bq/cm3", 1e-3),
])
def test_activity_units(unit, factor):
    assert activity_factor(unit) == pytest.approx(factor)


def test_conversion_of_arrays():
    np.testing.assert_allclose(to_kbq_per_ml([1000, 2000], "Bq/mL"), [1.0, 2.0])


@pytest.mark.parametrize("unit", ["SUV", "g/mL", "kBq", "counts/s", "", "propCi/mL"])
def test_unknown_units_raise(unit):
    with pytest.raises(UnitsError):
        activity_factor(unit)


def test_time_and_dose_units():
    np.testing.assert_allclose(to_minutes([60, 90], "s"), [1.0, 1.5])
    assert to_mbq(10, "mCi") == pytest.approx(370.0)
    assert to_mbq(600, "MBq") == 600.0
    with pytest.raises(UnitsError):
        to_minutes([1], "fortnight")
