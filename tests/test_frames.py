import warnings

import numpy as np
import pytest

from sv2a.errors import FrameTimingError, Sv2aError, UnitsError
from sv2a.frames import FrameSchedule, frames_from_counts
from sv2a.units import HALF_LIFE_MIN, half_life


def test_from_bids_converts_seconds_to_minutes():
    fs = FrameSchedule.from_bids([0, 60, 120], [60, 60, 180], radionuclide="C11")
    np.testing.assert_allclose(fs.start, [0, 1, 2])
    np.testing.assert_allclose(fs.end, [1, 2, 5])
    np.testing.assert_allclose(fs.mid, [0.5, 1.5, 3.5])
    np.testing.assert_allclose(fs.duration, [1, 1, 3])
    assert fs.half_life == pytest.approx(20.364)
    assert fs.to_bids() == {"FrameTimesStart": [0, 60, 120], "FrameDuration": [60, 60, 180]}


def test_errors_are_package_errors():
    assert issubclass(FrameTimingError, Sv2aError)


def test_length_mismatch_between_fields():
    with pytest.raises(FrameTimingError, match="FrameTimesStart has 3 values but FrameDuration"):
        FrameSchedule.from_bids([0, 60, 120], [60, 60])


def test_length_mismatch_with_image_names_both_numbers():
    with pytest.raises(FrameTimingError, match="lists 3 frames but the image has 4 volumes"):
        FrameSchedule.from_bids([0, 60, 120], [60, 60, 60], n_volumes=4)


def test_unsorted_starts():
    with pytest.raises(FrameTimingError, match="not sorted: frame 2"):
        FrameSchedule.from_bids([0, 120, 60], [60, 60, 60])


def test_overlapping_frames():
    with pytest.raises(FrameTimingError, match="frames overlap: frame 1"):
        FrameSchedule.from_bids([0, 30, 120], [60, 60, 60])


@pytest.mark.parametrize("bad", [0.0, -10.0])
def test_nonpositive_duration(bad):
    with pytest.raises(FrameTimingError, match=r"zero or negative at frame index \[1\]"):
        FrameSchedule.from_bids([0, 60, 120], [60, bad, 60])


def test_cumulative_end_times_detected_with_fix():
    starts = [0, 60, 120, 240, 480]
    cumulative_ends = [60, 120, 240, 480, 960]
    with pytest.raises(FrameTimingError, match="cumulative frame END times.*subtract"):
        FrameSchedule.from_bids(starts, cumulative_ends)
    # the fix the message names gives a valid schedule
    fs = FrameSchedule.from_bids(starts, np.subtract(cumulative_ends, starts))
    assert fs.n == 5


def test_equal_durations_are_not_mistaken_for_cumulative():
    fs = FrameSchedule.from_bids([0, 60, 120], [60, 60, 60])
    assert fs.n == 3


def test_gap_warns_but_is_allowed():
    with pytest.warns(UserWarning, match="gaps between frames"):
        fs = FrameSchedule.from_bids([0, 60, 300], [60, 60, 60])
    assert fs.n == 3


def test_contiguous_frames_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames_from_counts([(6, 10), (3, 20), (6, 30), (5, 60), (5, 120), (14, 300)])


def test_human_protocol_is_90_min():
    fs = frames_from_counts([(6, 10), (3, 20), (6, 30), (5, 60), (5, 120), (14, 300)])
    assert fs.n == 39 and fs.end[-1] == pytest.approx(90.0)


def test_nan_times_rejected():
    with pytest.raises(FrameTimingError, match="non-finite"):
        FrameSchedule.from_bids([0, np.nan], [60, 60])


def test_decay_factors_match_integral():
    # f = mean decay-corrected / mean uncorrected for a constant true activity
    fs = FrameSchedule.from_bids([0, 600, 1800], [600, 1200, 1800], radionuclide="11C")
    lam = np.log(2) / HALF_LIFE_MIN["C11"]
    for s, e, f in zip(fs.start, fs.end, fs.decay_factors(), strict=True):
        t = np.linspace(s, e, 200001)
        uncorrected = np.trapezoid(np.exp(-lam * t), t) / (e - s)
        assert f == pytest.approx(1.0 / uncorrected, rel=1e-8)


@pytest.mark.parametrize("name,key", [("C11", "C11"), ("11C", "C11"), ("F-18", "F18"),
                                      ("18F", "F18"), ("O15", "O15"), ("N13", "N13"),
                                      ("Ga68", "Ga68"), ("Cu64", "Cu64"), ("Zr89", "Zr89"),
                                      ("Rb82", "Rb82")])
def test_half_lives(name, key):
    assert half_life(name) == HALF_LIFE_MIN[key]


def test_f18_half_life_value():
    assert half_life("F18") == pytest.approx(109.77, rel=1e-3)


def test_unknown_radionuclide():
    with pytest.raises(UnitsError, match="unknown TracerRadionuclide 'Tc99m'"):
        half_life("Tc99m")


def test_decay_factors_need_half_life():
    fs = FrameSchedule.from_bids([0, 60], [60, 60])
    with pytest.raises(FrameTimingError, match="TracerRadionuclide"):
        fs.decay_factors()


def test_overlap_weights():
    fs = FrameSchedule.from_durations([30, 30, 30])
    np.testing.assert_allclose(fs.overlap_weights(45, 80), [0, 15, 20])


# ------------------------------------------------- plausibility of the scan length (issue 14)
LATE_MIN = [45.0 + 5 * i for i in range(9)]  # a late 45-90 min window of nine 5-min frames


def test_short_late_window_in_minutes_read_as_seconds_is_caught():
    with pytest.raises(FrameTimingError, match="look like minutes.*multiply both by 60"):
        FrameSchedule.from_bids(LATE_MIN, [5.0] * 9, radionuclide="C11")
    fs = FrameSchedule.from_bids(np.multiply(LATE_MIN, 60), [300.0] * 9, radionuclide="C11")
    assert fs.end[-1] == pytest.approx(90.0)


@pytest.mark.parametrize("fts, fdur, nuclide", [
    ([0, 5], [5, 5], "C11"),                 # starts at injection: not judged under 10 frames
    ([2400, 3000], [600, 600], "C11"),        # a late static window in seconds
    ([60], [5], "F18"),                       # one frame: not a dynamic scan
    (LATE_MIN, [5.0] * 9, "O15"),             # short-lived: minute-long scans are real
    (LATE_MIN, [5.0] * 9, None),              # radionuclide unknown: not judged
])
def test_short_schedules_that_are_plausible_pass(fts, fdur, nuclide):
    assert FrameSchedule.from_bids(fts, fdur, radionuclide=nuclide).n == len(fts)


def test_times_in_milliseconds_are_caught_with_the_fix():
    fts = np.array([0, 600, 1200, 2400, 3600]) * 1000.0
    fdur = np.array([600, 600, 1200, 1200, 1800]) * 1000.0
    with pytest.raises(FrameTimingError) as exc:
        FrameSchedule.from_bids(fts, fdur, radionuclide="C11")
    msg = str(exc.value)
    assert "1500 h" in msg and "milliseconds" in msg and "divide" in msg and "by 1000" in msg
    assert FrameSchedule.from_bids(fts / 1000, fdur / 1000, radionuclide="C11").end[-1] == 90


def test_scan_length_limit_is_twenty_half_lives():
    # a 4 h delayed F-18 scan and a 6.5 h C-11 scan are fine
    FrameSchedule.from_bids([4 * 3600.0], [1200.0], radionuclide="F18")
    FrameSchedule.from_bids([19.5 * HALF_LIFE_MIN["C11"] * 60 - 600], [600], radionuclide="C11")
    # 20.5 half-lives of F-18 (37.5 h) could be a 2.25 min scan in milliseconds
    end_s = 20.5 * HALF_LIFE_MIN["F18"] * 60
    with pytest.raises(FrameTimingError, match="37.5 h.*20.5 half-lives.*milliseconds"):
        FrameSchedule.from_bids([end_s - 600], [600], radionuclide="F18")
    # 10 h of C-11 is not milliseconds (0.6 min): the message asks to check the unit
    with pytest.raises(FrameTimingError, match="29.5 half-lives.*check the unit"):
        FrameSchedule.from_bids([36000 - 600], [600], radionuclide="C11")
    # without a radionuclide there is no clock to judge by
    assert FrameSchedule.from_bids([0], [5.4e6]).n == 1
