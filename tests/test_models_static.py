"""Static measures: SUV and SUVR (window means with overlap or kinfitr mid-time selection).

kinfitr agreement for SUVR on real PiB and simref data is tested in test_models_reference.py
next to the other kinfitr comparisons (same fixtures).
"""

from __future__ import annotations

import numpy as np
import pytest

import sv2a
from sv2a.errors import FrameTimingError, MetadataError, ModelError, RegionError
from sv2a.frames import FrameSchedule
from sv2a.models.suvr import window_weights
from sv2a.tacs import tacs_from_arrays

START = np.array([0.0, 10.0, 20.0, 30.0, 45.0, 60.0, 75.0])
END = np.array([10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 90.0])


@pytest.fixture()
def tacs():
    rng = np.random.default_rng(3)
    ref = rng.uniform(2, 4, START.size)
    tgt = rng.uniform(5, 9, (2, START.size))
    return tacs_from_arrays(np.vstack([ref, tgt]), START, END, ["cs", "frontal", "temporal"],
                            half_life=20.4, attrs={"injected_mbq": 500.0,
                                                   "body_weight_kg": 80.0})


def manual_mean(values, t0, t1):
    """Time-weighted mean by explicit loop over frames (overlap minutes)."""
    num = den = 0.0
    for s, e, v in zip(START, END, values, strict=True):
        ov = max(0.0, min(e, t1) - max(s, t0))
        num += ov * v
        den += ov
    return num / den


def test_suvr_overlap_weighting(tacs):
    # window 50-80 min: 10 min of frame 45-60, all of 60-75, 5 min of 75-90
    ds = sv2a.fit(tacs, model="suvr", reference="cs", window=(50, 80))
    v = tacs.values
    for i, r in enumerate(["frontal", "temporal"], start=1):
        expect = manual_mean(v[i], 50, 80) / manual_mean(v[0], 50, 80)
        assert float(ds.SUVR.sel(region=r)) == pytest.approx(expect, rel=1e-12)
    assert list(ds.region.values) == ["frontal", "temporal"]  # reference left out
    assert ds.n_frames.values.tolist() == [3, 3]
    assert ds.attrs["window"].tolist() == [50.0, 80.0] and ds.attrs["frame_selection"] == "overlap"


def test_suvr_mid_selection_matches_kinfitr_rule(tacs):
    # kinfitr: frames whose mid-time lies in the window, duration weighted
    ds = sv2a.fit(tacs, model="suvr", reference="cs", window=(50, 80), frame_selection="mid")
    v = tacs.values
    mid = (START + END) / 2
    sel = np.flatnonzero((mid >= 50) & (mid <= 80))
    d = (END - START)[sel]
    expect = (v[1, sel] @ d) / (v[0, sel] @ d)
    assert float(ds.SUVR.sel(region="frontal")) == pytest.approx(expect, rel=1e-12)
    assert ds.attrs["window_start_min"] == 45.0 and ds.attrs["window_end_min"] == 75.0


def test_suvr_exact_for_scaled_reference():
    fr = FrameSchedule(START, END)
    ref = np.linspace(1, 5, START.size)
    t = tacs_from_arrays(np.vstack([ref, 2.5 * ref, ref]), fr.start, fr.end, ["r", "a", "b"])
    ds = sv2a.fit(t, model="suvr", reference="r", window=(30, 90))
    np.testing.assert_allclose(ds.SUVR.values, [2.5, 1.0], rtol=1e-12)


def test_suvr_default_window_is_60_90(tacs):
    ds = sv2a.fit(tacs, model="suvr", reference="cs")
    assert ds.attrs["window"].tolist() == [60.0, 90.0]


def test_suv_from_attrs_and_options(tacs):
    ds = sv2a.fit(tacs, model="suv", window=(60, 90))
    v = tacs.values
    expect = manual_mean(v[1], 60, 90) / (500.0 / 80.0)
    assert float(ds.SUV.sel(region="frontal")) == pytest.approx(expect, rel=1e-12)
    assert ds.attrs["injected_mbq"] == 500.0 and ds.SUV.attrs["units"] == "g/mL"
    ds2 = sv2a.fit(tacs, model="suv", window=(60, 90), injected_mbq=250.0)
    np.testing.assert_allclose(ds2.SUV.values, 2 * ds.SUV.values, rtol=1e-12)


def test_suv_missing_metadata(tacs):
    bare = tacs.copy()
    bare.attrs = {k: v for k, v in tacs.attrs.items() if k != "body_weight_kg"}
    with pytest.raises(MetadataError, match="body weight"):
        sv2a.fit(bare, model="suv")
    bare.attrs.pop("injected_mbq")
    with pytest.raises(MetadataError, match="injected activity"):
        sv2a.fit(bare, model="suv")
    with pytest.raises(MetadataError, match="> 0"):
        sv2a.fit(tacs, model="suv", body_weight_kg=0)
    with pytest.raises(ModelError, match="suvr"):
        sv2a.fit(tacs, model="suv", reference="cs")


def test_window_errors(tacs):
    with pytest.raises(FrameTimingError, match="outside the scan"):
        sv2a.fit(tacs, model="suvr", reference="cs", window=(60, 120))
    with pytest.raises(ModelError, match="start < end"):
        sv2a.fit(tacs, model="suvr", reference="cs", window=(70, 60))
    with pytest.raises(ModelError, match="window"):
        sv2a.fit(tacs, model="suv", window=60)
    with pytest.raises(FrameTimingError, match="no frame"):
        window_weights(FrameSchedule(START, END), (46, 50), selection="mid")
    with pytest.raises(ModelError, match="overlap"):
        sv2a.fit(tacs, model="suvr", reference="cs", frame_selection="all")
    with pytest.raises(RegionError, match="frontal"):
        sv2a.fit(tacs, model="suvr", reference="cerebellum")
    with pytest.raises(ModelError, match="valid options"):
        sv2a.fit(tacs, model="suvr", reference="cs", tstar=3)


def test_registered():
    # SUV needs nothing; SUVR needs a reference region, so it is a reference model
    assert sv2a.models.available("static") == ["suv"]
    assert "suvr" in sv2a.models.available("reference")


def test_window_reaching_past_the_scan_is_clipped_or_refused_by_coverage():
    """60-90 min on a scan that ended at 85 min (83 % covered): used as 60-85 with a
    warning; on a scan that ended at 70 min (33 %): refused."""
    fr = FrameSchedule.from_durations([5.0] * 17)  # 0-85 min
    with pytest.warns(sv2a.errors.Sv2aWarning, match=r"83% inside it is used: \(60, 85\)"):
        w = window_weights(fr, (60.0, 90.0))
    np.testing.assert_allclose(w, window_weights(fr, (60.0, 85.0)))
    short = FrameSchedule.from_durations([5.0] * 14)  # 0-70 min
    with pytest.raises(FrameTimingError, match="covers 33% of the window"):
        window_weights(short, (60.0, 90.0))
