"""Inputs that change results are parsed strictly: wrong JSON types, decimal commas, frame
times in minutes and activity units off by 1000 raise errors that name the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_blood, write_small_pet

import sv2a
from sv2a.errors import DataError, FrameTimingError, MetadataError, UnitsError
from sv2a.frames import FrameSchedule
from sv2a.plausibility import check_activity_units

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- 1. sidecar JSON types
@pytest.mark.parametrize("field,value,kind", [
    ("ImageDecayCorrected", "false", "boolean"),
    ("ImageDecayCorrected", 0, "boolean"),
    ("InjectedRadioactivity", "400", "number"),
    ("InjectedRadioactivity", [400], "number"),
    ("BodyWeight", "75", "number"),
    ("BodyWeight", True, "number"),
    ("InjectedRadioactivityUnits", 1, "string"),
    ("TracerRadionuclide", ["C11"], "string"),
    ("Units", 1000, "string"),
    ("FrameDuration", ["60", 60, 120, 240, 600, 1200], "array of numbers"),
    ("FrameTimesStart", 0, "array of numbers"),
    ("DecayCorrectionFactor", "1.0", "array of numbers"),
])
def test_wrong_json_type_is_a_metadata_error(tmp_path, field, value, kind):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", sidecar_extra={field: value})
    with pytest.raises(MetadataError) as exc:
        sv2a.load_pet(p)
    msg = str(exc.value)
    shown = repr(value[0]) if kind.startswith("array") and isinstance(value, list) else repr(value)
    assert "sub-01_pet.json" in msg and f"'{field}'" in msg and shown in msg
    assert f"requires a{'n' if kind[0] == 'a' else ''} {kind}" in msg and "write" in msg


def test_correct_json_types_load(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz",
                           sidecar_extra={"ImageDecayCorrected": False,
                                          "DecayCorrectionFactor": [1.0] * 6})
    pet = sv2a.load_pet(p)
    assert pet.meta["decay_corrected_on_load"] is True


def _bids_pet(tmp_path: Path) -> Path:
    d = tmp_path / "ds" / "sub-07" / "pet"
    d.mkdir(parents=True)
    p, _ = write_small_pet(d / "sub-07_pet.nii.gz", drop=("BodyWeight",))
    return p


@pytest.mark.parametrize("weight", ["72 kg", "72,5"])
def test_participants_weight_as_text(tmp_path, weight):
    p = _bids_pet(tmp_path)
    with pytest.raises(MetadataError) as exc:
        sv2a.load_pet(p, participants={"weight": weight})
    msg = str(exc.value)
    assert str(tmp_path / "ds" / "participants.tsv") in msg and "row sub-07" in msg
    assert repr(weight) in msg


def test_participants_weight_numbers_and_na(tmp_path):
    p = _bids_pet(tmp_path)
    assert sv2a.load_pet(p, participants={"weight": "72.5"}).meta["body_weight_kg"] == 72.5
    assert sv2a.load_pet(p, participants={"weight": 80}).meta["body_weight_kg"] == 80.0
    for na in ("n/a", float("nan"), None):
        assert "body_weight_kg" not in sv2a.load_pet(p, participants={"weight": na}).meta


def test_participants_weight_units_from_participants_json(tmp_path):
    """A rat's weight in g, declared in participants.json (BIDS data dictionary)."""
    p = _bids_pet(tmp_path)
    root = tmp_path / "ds"
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    (root / "participants.json").write_text('{"weight": {"Units": "g"}}')
    assert sv2a.load_pet(p, participants={"weight": 300}).meta["body_weight_kg"] == 0.3
    (root / "participants.json").write_text('{"weight": {"Units": "stone"}}')
    with pytest.raises(UnitsError, match="'stone' of column 'weight'"):
        sv2a.load_pet(p, participants={"weight": 300})


@pytest.mark.parametrize("spelling", ["[11C]", "Carbon-11", "^11^Carbon", "C-11"])
def test_radionuclide_spellings(spelling):
    from sv2a.units import half_life

    assert half_life(spelling) == half_life("C11")


def test_dicom_units_bqml_is_bq_per_ml():
    from sv2a.units import activity_factor

    assert activity_factor("BQML") == activity_factor("Bq/mL")


# ----------------------------------------------------------------- 2. blood decimal comma
def test_blood_decimal_comma_names_column_and_line(tmp_path):
    path = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv")
    lines = path.read_text().splitlines()
    cells = lines[3].split("\t")
    cells[2] = cells[2].replace(".", ",")
    lines[3] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        sv2a.load_blood(path)
    msg = str(exc.value)
    assert "'plasma_radioactivity'" in msg and "line 4" in msg and "decimal comma" in msg


def test_blood_na_allowed_and_units_must_be_text(tmp_path):
    path = write_blood(tmp_path / "sub-01_recording-manual_blood.tsv")
    table, _ = sv2a.blood_io.read_blood_table(path)  # first parent fraction is n/a
    assert np.isnan(table["parent_fraction"].iloc[0]) and table["plasma"].notna().all()
    sc = path.with_suffix(".json")
    meta = json.loads(sc.read_text())
    meta["plasma_radioactivity"]["Units"] = 1000
    sc.write_text(json.dumps(meta))
    with pytest.raises(MetadataError, match="plasma_radioactivity.*requires a string"):
        sv2a.load_blood(path)


# ----------------------------------------------------------------- 3. minutes as seconds
UCBJ_MIN = [(0, 0.5)] * 0 + [(0.5 * i, 0.5) for i in range(6)] + \
    [(3 + i, 1) for i in range(3)] + [(6 + 2 * i, 2) for i in range(2)] + \
    [(10 + 5 * i, 5) for i in range(16)]   # a 90 min [11C]UCB-J protocol, in minutes


def test_minutes_written_as_seconds_is_caught():
    fts = [s for s, _ in UCBJ_MIN]
    fdur = [d for _, d in UCBJ_MIN]
    with pytest.raises(FrameTimingError, match="look like minutes.*multiply both by 60"):
        FrameSchedule.from_bids(fts, fdur, radionuclide="C11")
    # the same numbers are fine in minutes, or multiplied by 60 as BIDS wants
    assert FrameSchedule.from_bids(fts, fdur, time_unit="min", radionuclide="C11").end[-1] == 90
    fs = FrameSchedule.from_bids(np.multiply(fts, 60), np.multiply(fdur, 60), radionuclide="C11")
    assert fs.end[-1] == 90


def test_short_real_protocols_are_not_flagged():
    # [15O]water: 3 min of short frames in seconds; radionuclide unknown: not judged
    fdur = [5] * 12 + [10] * 6 + [20] * 3
    fts = np.concatenate([[0], np.cumsum(fdur)[:-1]])
    FrameSchedule.from_bids(fts, fdur, radionuclide="O15")
    FrameSchedule.from_bids([s for s, _ in UCBJ_MIN], [d for _, d in UCBJ_MIN])


def test_bundled_data_are_true_negatives():
    sidecars = sorted((ROOT / "demo_data").glob("sub-*/**/*_pet.json"))
    sidecars += sorted((ROOT / "tests" / "data").glob("**/*_pet.json"))
    assert sidecars
    for sc in sidecars:
        meta = json.loads(sc.read_text())
        FrameSchedule.from_bids(meta["FrameTimesStart"], meta["FrameDuration"],
                                radionuclide=meta.get("TracerRadionuclide"), source=str(sc))


# ----------------------------------------------------------------- 4. activity units
def _pet_1000(tmp_path: Path, units: str, values: float, **extra: object) -> Path:
    """A 16^3 image holding ``values`` (file units) everywhere in its last frames."""
    data = np.full((16, 16, 16, 6), values, np.float32)
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", shape=(16, 16, 16), data=data,
                           units=units, sidecar_extra=extra)
    return p


def test_kbq_labelled_bq_is_caught_on_the_first_read_whatever_the_frame(tmp_path):
    # 20 kBq/mL with 600 MBq, 75 kg is SUV 2.5; labelled Bq/mL it reads as SUV 0.0025
    path = _pet_1000(tmp_path, "Bq/mL", 20.0)
    for first in (0, 3, 5):  # any first read judges the last frame: one verdict, one message
        pet = sv2a.load_pet(path)
        with pytest.raises(UnitsError) as exc:
            pet.frame(first)
        msg = str(exc.value)
        assert "'Bq/mL'" in msg and "SUV 0.0025" in msg and 'set "Units": "kBq/mL"' in msg
        assert f"in frame {pet.n_frames - 1}" in msg
    with pytest.raises(UnitsError):
        _ = pet.data  # the error repeats on every read


def test_bq_labelled_kbq_is_caught(tmp_path):
    pet = sv2a.load_pet(_pet_1000(tmp_path, "kBq/mL", 20000.0))
    with pytest.raises(UnitsError, match=r"SUV 2\.5e\+03.*Bq/mL"):
        _ = pet.data


def test_plausible_units_pass(tmp_path):
    pet = sv2a.load_pet(_pet_1000(tmp_path, "Bq/mL", 20000.0))
    np.testing.assert_allclose(pet.frame(5), 20.0)  # exact: 20000 Bq/mL * 1e-3
    # independent route: SUV = 20 kBq/mL * 75 kg / 600 MBq
    assert check_activity_units(pet.frame(5), injected_mbq=600.0, body_weight_kg=75.0,
                                units="Bq/mL", source="x") == pytest.approx(2.5)


def test_demo_scan_units_are_plausible():
    sc = sorted((ROOT / "demo_data").glob("sub-*/ses-*/pet/*_pet.nii.gz"))[0]
    pet = sv2a.load_pet(sc)
    pet.frame(pet.n_frames - 1)
    assert pet._cache.get("units_checked") is True


def test_in_memory_images_are_not_judged(tmp_path):
    fs = FrameSchedule.from_durations([1.0, 1.0])
    pet = sv2a.DynamicPET.from_array(np.full((16, 16, 16, 2), 1e6), fs,
                                     meta={"injected_mbq": 1.0, "body_weight_kg": 1.0})
    assert pet.frame(1).max() == 1e6



# ----------------------------------------------------------------- 5. ranges per tracer
def test_kbq_labelled_nci_is_caught_for_an_sv2a_tracer(tmp_path):
    # 40 kBq/mL with 600 MBq, 75 kg is SUV 5; read as nCi/cc it is 1.48 kBq/mL, SUV 0.185:
    # inside the generic 0.01-1000, outside the UCB-J 0.6-100
    pet = sv2a.load_pet(_pet_1000(tmp_path, "nCi/cc", 40.0))
    with pytest.raises(UnitsError) as exc:
        _ = pet.data
    msg = str(exc.value)
    assert "'nCi/cc'" in msg and "SUV 0.185" in msg and "0.6–100 for UCB-J" in msg
    assert 'probably in kBq/mL: set "Units": "kBq/mL"' in msg


def test_nci_labelled_kbq_is_caught_for_an_sv2a_tracer(tmp_path):
    # 40 nCi/mL data (1.48 kBq/mL, SUV 0.185) labelled kBq/mL: SUV 5 x 27 = 135
    pet = sv2a.load_pet(_pet_1000(tmp_path, "kBq/mL", 40.0 / 0.037))
    with pytest.raises(UnitsError, match=r"SUV 135 .*0\.6–100"):
        _ = pet.data


def test_other_tracers_keep_the_generic_range(tmp_path):
    pet = sv2a.load_pet(_pet_1000(tmp_path, "nCi/cc", 40.0, TracerName="FDG"))
    assert pet.data[0, 0, 0, -1] == pytest.approx(40 * 0.037)
    assert pet._cache.get("units_checked") is True


@pytest.mark.parametrize("tracer, kg, expected", [
    ("[11C]UCB-J", 75.0, (0.6, 100.0)), ("UCB-J", 0.3, (0.3, 100.0)),
    ("18F-SDM-8", 70.0, (0.6, 100.0)), ("[18F]SynVesT-2", 70.0, (0.2, 100.0)),
    ("[11C]UCB-H", 0.03, (0.3, 100.0)), ("PiB", 70.0, (0.01, 1000.0)),
    (None, 70.0, (0.01, 1000.0)),
])
def test_suv_range_per_tracer_and_species(tracer, kg, expected):
    from sv2a.plausibility import suv_range
    assert suv_range(tracer, kg) == expected


def test_every_demo_scan_passes_the_tracer_range():
    for sc in sorted((ROOT / "demo_data").glob("sub-*/ses-*/pet/*_pet.nii.gz")):
        pet = sv2a.load_pet(sc)
        pet.frame(pet.n_frames - 1)
        assert pet._cache.get("units_checked") is True, sc
