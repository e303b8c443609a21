import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_blood

import sv2a
from sv2a.blood import InputFunction
from sv2a.errors import InputFunctionError, MetadataError, Sv2aWarning, UnitsError


def test_load_manual_blood(tmp_path):
    p = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv", units="Bq/mL")
    inp = sv2a.load_blood(p)
    t = np.array([10, 30, 60, 120, 300, 600, 1200, 2400.0])
    wb = (50 * np.exp(-t / 200) + 2) / 1000
    np.testing.assert_allclose(inp.whole_blood, wb, rtol=1e-4)
    np.testing.assert_allclose(inp.whole_blood_time, t / 60)
    # parent fraction 'n/a' at the first sample: interpolated with f(0) = 1
    pf_first = np.interp(10, [0, 30], [1.0, 0.3 + 0.7 * np.exp(-30 / 500)])
    assert inp.plasma[0] == pytest.approx(wb[0] * 1.1 * pf_first, rel=1e-3)
    assert inp.plasma[-1] == pytest.approx(wb[-1] * 1.1 * (0.3 + 0.7 * np.exp(-2400 / 500)),
                                           rel=1e-3)
    assert inp.t_end == pytest.approx(40.0)


def test_blood_missing_units(tmp_path):
    p = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv")
    sc = tmp_path / "sub-01_recording-manual_blood.json"
    meta = json.loads(sc.read_text())
    del meta["plasma_radioactivity"]
    sc.write_text(json.dumps(meta))
    with pytest.raises(MetadataError, match="no Units for column 'plasma_radioactivity'"):
        sv2a.load_blood(p)


def test_blood_bad_units(tmp_path):
    p = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv", units="counts")
    with pytest.raises(UnitsError):
        sv2a.load_blood(p)


def test_blood_missing_sidecar(tmp_path):
    p = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv")
    (tmp_path / "sub-01_recording-manual_blood.json").unlink()
    with pytest.raises(MetadataError, match="expected .*blood.json"):
        sv2a.load_blood(p)


def test_merge_autosampler_and_manual(tmp_path):
    man = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv")
    ta = np.arange(1, 601, 1.0)  # 1-s autosampler for 10 min, whole blood only
    wba = 50 * np.exp(-ta / 200) + 2
    auto = tmp_path / "sub-01_recording-autosampler_blood.tsv"
    auto.write_text("time\twhole_blood_radioactivity\n" +
                    "\n".join(f"{a:g}\t{b:.6f}" for a, b in zip(ta, wba, strict=True)) + "\n")
    (tmp_path / "sub-01_recording-autosampler_blood.json").write_text(json.dumps(
        {"time": {"Units": "s"}, "whole_blood_radioactivity": {"Units": "kBq/mL"}}))
    inp = sv2a.load_blood(man, merge=True)
    assert inp.meta["merged"]
    # dense early sampling from the autosampler, manual after it stops
    assert inp.time.size == 600 + 2
    assert inp.t_end == pytest.approx(40.0)
    # plasma = whole blood x manual plasma/blood ratio (1.1) x parent fraction
    t = 5.0
    pf = np.interp(300, [0, 10, 30, 60, 120, 300], [1, *(0.3 + 0.7 * np.exp(
        -np.array([10, 30, 60, 120, 300]) / 500))][:6])
    assert inp.plasma_at(t) == pytest.approx((50 * np.exp(-300 / 200) + 2) * 1.1 * pf, rel=1e-3)


def test_input_function_from_arrays_and_checks():
    inp = InputFunction(time=[0.5, 1, 5, 60], plasma=[50, 30, 5, 1], whole_blood=[60, 35, 6, 1.2])
    assert inp.plasma_at(0.25) == pytest.approx(25.0)  # linear from (0, 0)
    assert inp.whole_blood_at(3) == pytest.approx(20.5)
    inp.check_covers(60.0)
    with pytest.raises(InputFunctionError, match="ends at 60 min but the scan lasts until 90"):
        inp.check_covers(90.0)
    with pytest.raises(InputFunctionError, match="negative activity"):
        InputFunction(time=[1, 2, 3], plasma=[1, -5, 1])
    with pytest.raises(InputFunctionError, match="divided by 100"):
        InputFunction(time=[1, 2, 3], plasma=[1, 2, 1], parent_fraction=[100, 80, 50])
    with pytest.raises(InputFunctionError, match="2 samples at 1 min that disagree"):
        InputFunction(time=[1, 1, 3], plasma=[1, 2, 1])
    with pytest.warns(Sv2aWarning, match="replicate samples at the same time were averaged"):
        rep = InputFunction(time=[1, 1, 3], plasma=[1.0, 1.1, 1])  # duplicate counting
    np.testing.assert_allclose(rep.plasma_at(np.array([1.0])), 1.05)
    with pytest.warns(Sv2aWarning, match="1 sample.* before the injection .background. left"):
        bg = InputFunction(time=[-0.5, 0.5, 1, 3], plasma=[0.01, 5, 10, 1])
    np.testing.assert_allclose(bg.plasma_at(np.array([3.0])), 1.0)
    with pytest.raises(InputFunctionError, match="before the injection and above 5%"):
        InputFunction(time=[-0.5, 0.5, 1, 3], plasma=[4, 5, 10, 1])
    # NaN samples are dropped, not zero-filled
    inp2 = InputFunction(time=[1, 2, 3], plasma=[1, np.nan, 3])
    assert inp2.plasma_at(2) == pytest.approx(2.0)


def test_blood_rows_in_any_order_give_the_same_input(tmp_path):
    # BIDS does not require time-ordered rows: a shuffled file must give the same input
    # function (before, the parent fraction was interpolated over unsorted times)
    p = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv", units="Bq/mL")
    lines = p.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    rng = np.random.default_rng(0)
    shuffled = tmp_path / "shuffled" / "sub-01_recording-manual_blood.tsv"
    shuffled.parent.mkdir()
    shuffled.write_text("\n".join([header, *(rows[i] for i in rng.permutation(len(rows)))])
                        + "\n")
    (shuffled.parent / "sub-01_recording-manual_blood.json").write_text(
        (tmp_path / "sub-01_recording-manual_blood.json").read_text())
    a, b = sv2a.load_blood(p), sv2a.load_blood(shuffled)
    t = np.linspace(0, 40, 81)
    np.testing.assert_allclose(b.plasma_at(t), a.plasma_at(t), rtol=1e-12)
    np.testing.assert_allclose(b.whole_blood_at(t), a.whole_blood_at(t), rtol=1e-12)


# ------------------------------------------- plasma / whole blood ratio (issue 14)
def _relabel(p, col: str, units: str) -> None:
    sc = p.with_suffix(".json")
    meta = json.loads(sc.read_text())
    meta[col]["Units"] = units
    sc.write_text(json.dumps(meta))


@pytest.mark.parametrize("col, units, ratio", [
    ("plasma_radioactivity", "Bq/mL", "0.0011"),       # plasma 1000 x too low
    ("whole_blood_radioactivity", "Bq/mL", "1.1e+03"),  # whole blood 1000 x too low
    ("plasma_radioactivity", "nCi/mL", "0.0407"),      # kBq/mL read as nCi/mL: 27 x
])
def test_plasma_and_whole_blood_in_different_units_are_refused(tmp_path, col, units, ratio):
    p = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv")
    _relabel(p, col, units)
    with pytest.raises(UnitsError) as exc:
        sv2a.load_blood(p)
    msg = str(exc.value)
    assert str(p) in msg and f"is {ratio} times" in msg and f"Units '{units}'" in msg
    assert "outside the physiological 0.1-10" in msg and "fix 'Units'" in msg


def test_ratio_of_the_real_pbr28_recording_passes(tmp_path):
    """The real [11C]PBR28 manual samples (plasma / whole blood 1.06-1.81) as a BIDS table."""
    raw = pd.read_csv(Path(__file__).parent / "data" / "pbr28" / "pbr28_blood_raw_cgyu_1.csv")
    wb = raw[raw.measurement == "blood_discrete"].set_index("time_s").value
    pl = raw[raw.measurement == "plasma_total"].set_index("time_s").value
    p = tmp_path / "sub-01_recording-manual_blood.tsv"
    rows = ["time\twhole_blood_radioactivity\tplasma_radioactivity"]
    rows += [f"{t:g}\t{wb[t]:g}\t{pl[t]:g}" for t in wb.index]
    p.write_text("\n".join(rows) + "\n")
    p.with_suffix(".json").write_text(json.dumps({
        "time": {"Units": "s"}, "whole_blood_radioactivity": {"Units": "kBq/mL"},
        "plasma_radioactivity": {"Units": "kBq/mL"}}))
    with pytest.warns(UserWarning, match="not metabolite corrected"):
        inp = sv2a.load_blood(p)
    assert inp.plasma.size == pl.notna().sum()


def test_ratio_of_the_demo_recordings_passes():
    root = Path(__file__).resolve().parents[1] / "demo_data"
    files = sorted(root.glob("sub-*/ses-*/pet/*_blood.tsv"))
    assert files
    for f in files:
        sv2a.load_blood(f)
