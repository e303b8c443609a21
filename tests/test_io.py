import gzip
import json
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import write_small_pet

import sv2a
from sv2a.errors import DataError, FrameTimingError, MetadataError, UnitsError
from sv2a.io import atomic_path, load_pet, write_nifti, write_tsv


def test_load_pet_converts_units_and_reads_metadata(tmp_path):
    p, data = write_small_pet(tmp_path / "sub-01_pet.nii.gz", units="Bq/mL")
    pet = sv2a.load_pet(p)
    assert pet.shape == (6, 5, 4, 6) and pet.n_frames == 6
    np.testing.assert_allclose(pet.data, data / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(pet.frame(3), data[..., 3] / 1000.0, rtol=1e-6)
    assert pet.meta["original_units"] == "Bq/mL"
    assert pet.meta["injected_mbq"] == 600.0 and pet.meta["body_weight_kg"] == 75.0
    assert pet.meta["tracer"] == "UCB-J"
    np.testing.assert_allclose(pet.frames.end[-1], 38.0)
    np.testing.assert_allclose(pet.voxel_size, [2, 2, 2])


def test_load_pet_is_lazy(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    pet = load_pet(p)
    assert isinstance(pet.dataobj, nib.arrayproxy.ArrayProxy)
    assert "data" not in pet._cache
    pet.frame(0)
    assert "data" not in pet._cache  # reading one frame does not load the image


def test_static_3d_image(tmp_path):
    p, data = write_small_pet(tmp_path / "sub-01_pet.nii.gz", frames=[(3600, 1800)],
                              data=np.ones((4, 4, 4), np.float32))
    pet = load_pet(p)
    assert pet.n_frames == 1 and pet.data.shape == (4, 4, 4, 1)
    assert pet.frames.mid[0] == pytest.approx(75.0)


def test_missing_sidecar_names_expected_path(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    (tmp_path / "sub-01_pet.json").unlink()
    with pytest.raises(MetadataError, match=r"expected .*sub-01_pet\.json"):
        load_pet(p)


@pytest.mark.parametrize("field", ["FrameTimesStart", "FrameDuration", "Units"])
def test_missing_required_field(tmp_path, field):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", drop=(field,))
    with pytest.raises(MetadataError, match=f"'{field}' is missing"):
        load_pet(p)


def test_frame_count_mismatch_with_image(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    sc = tmp_path / "sub-01_pet.json"
    meta = json.loads(sc.read_text())
    meta["FrameTimesStart"] = meta["FrameTimesStart"][:-1]
    meta["FrameDuration"] = meta["FrameDuration"][:-1]
    sc.write_text(json.dumps(meta))
    with pytest.raises(FrameTimingError, match="lists 5 frames but the image has 6 volumes"):
        load_pet(p)


def test_unknown_units(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", units="SUV")
    with pytest.raises(UnitsError, match="'SUV'"):
        load_pet(p)


def test_invalid_json(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    (tmp_path / "sub-01_pet.json").write_text("{not json")
    with pytest.raises(MetadataError, match="invalid JSON"):
        load_pet(p)


def test_truncated_uncompressed_file_detected_at_load(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii")
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated"):
        load_pet(p)


def test_truncated_gzip_detected_on_read(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", shape=(20, 20, 20))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        pet = load_pet(p)
        _ = pet.data


def test_decay_uncorrected_image_is_corrected(tmp_path):
    frames = [(0, 600), (600, 1200), (1800, 1800)]
    lam = np.log(2) / 20.364
    # constant true activity 10 kBq/mL -> uncorrected frame means
    unc = []
    for s, d in frames:
        t0, t1 = s / 60, (s + d) / 60
        unc.append(10 * (np.exp(-lam * t0) - np.exp(-lam * t1)) / (lam * (t1 - t0)))
    data = np.ones((3, 3, 3, 3), np.float32) * np.array(unc, np.float32)
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", frames=frames, data=data,
                           sidecar_extra={"ImageDecayCorrected": False})
    pet = load_pet(p)
    np.testing.assert_allclose(pet.data, 10.0, rtol=1e-5)
    np.testing.assert_allclose(pet.frame(2), 10.0, rtol=1e-5)
    assert pet.meta["decay_corrected_on_load"] is True


def test_decay_uncorrected_without_radionuclide(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", drop=("TracerRadionuclide",),
                           sidecar_extra={"ImageDecayCorrected": False})
    with pytest.raises(MetadataError, match="TracerRadionuclide"), pytest.warns(UserWarning):
        load_pet(p)


@pytest.mark.parametrize("backend", ["isal", "zlib"])
def test_write_nifti_with_and_without_isal(tmp_path, monkeypatch, backend):
    """ISA-L (the ``fast`` extra) and zlib both write several-member .nii.gz files that
    gzip and nibabel read back exactly, reproducibly, at every level."""
    if backend == "isal":
        pytest.importorskip("isal")
    else:
        monkeypatch.setitem(sys.modules, "isal", None)  # import fails: the zlib path
    import sv2a.atomic as atomic

    monkeypatch.setattr(atomic, "_GZ_CHUNK", 1000)  # several members from a small image
    rng = np.random.default_rng(3)
    a = rng.standard_normal((11, 13, 7)).astype(np.float32)
    a[:3] = np.nan
    raw = {}
    for level in (1, 5, 9):
        p = write_nifti(tmp_path / f"l{level}.nii.gz", a, np.eye(4), compresslevel=level)
        q = write_nifti(tmp_path / f"r{level}.nii.gz", a, np.eye(4), compresslevel=level)
        assert p.read_bytes() == q.read_bytes()
        np.testing.assert_array_equal(np.asarray(nib.load(p).dataobj), a)
        raw[level] = gzip.decompress(p.read_bytes())
        assert p.read_bytes().count(b"\x1f\x8b\x08") >= a.nbytes // 1000
    assert raw[1] == raw[5] == raw[9]


def test_mean_image_weights_by_overlap(tmp_path):
    data = np.ones((2, 2, 2, 6), np.float32) * np.arange(6, dtype=np.float32)
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", data=data, shape=(2, 2, 2))
    pet = load_pet(p)
    # frames 4 (8-18 min, value 4) and 5 (18-38 min, value 5); window 13-23: 5 min each
    np.testing.assert_allclose(pet.mean_image(13, 23), 4.5, rtol=1e-6)


def test_write_nifti_is_reproducible(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    write_nifti(tmp_path / "a.nii.gz", a, np.eye(4))
    write_nifti(tmp_path / "b.nii.gz", a, np.eye(4))
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()
    with gzip.open(tmp_path / "a.nii.gz") as fh:
        assert len(fh.read()) > 0
    np.testing.assert_array_equal(nib.load(tmp_path / "a.nii.gz").get_fdata(), a)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "table.tsv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_write_tsv_na(tmp_path):
    import pandas as pd

    write_tsv(tmp_path / "x.tsv", pd.DataFrame({"a": [1.0, np.nan]}))
    assert (tmp_path / "x.tsv").read_text().splitlines() == ["a", "1", "n/a"]


def test_io_gathers_the_file_functions():
    # sv2a.io is the one namespace for reading and writing; each function lives in the
    # module of its job and is the same object here.
    from sv2a import atomic, blood_io, io, pet, sidecar

    assert io.load_pet is pet.load_pet and io.DynamicPET is pet.DynamicPET
    assert io.load_blood is blood_io.load_blood
    assert io.read_blood_table is blood_io.read_blood_table
    assert io.read_json is sidecar.read_json and io.sidecar_path is sidecar.sidecar_path
    for name in ("atomic_path", "write_json", "write_tsv", "write_nifti"):
        assert getattr(io, name) is getattr(atomic, name)
    assert set(io.__all__) <= set(dir(io))


def test_missing_files_are_caught_by_generic_handlers(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_pet(tmp_path / "absent_pet.nii.gz")
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    (tmp_path / "sub-01_pet.json").unlink()
    with pytest.raises(ValueError, match="missing JSON sidecar"):
        load_pet(p)


# --------------------------------------------- voxel values that cannot give a number (issue 14)
def _pet_with(tmp_path, fn, shape=(16, 16, 16)):
    """A 16^3 UCB-J image of SUV 2.5 (20 kBq/mL) in every frame, changed by ``fn(data)``."""
    data = np.full((*shape, 6), 20.0, np.float32)
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", shape=shape, data=fn(data))
    return p


def test_one_frame_all_nan_is_refused_naming_the_frame(tmp_path):
    def fn(d):
        d[..., 2] = np.nan
        return d
    pet = load_pet(_pet_with(tmp_path, fn))
    with pytest.raises(DataError, match=r"frame 2 \(0-based, of 6\) entirely NaN"):
        _ = pet.data
    with pytest.raises(DataError, match="frame 2 .*entirely NaN"):
        pet.frame(2)
    np.testing.assert_allclose(pet.frame(5), 20.0)  # the other frames stay readable


def test_several_all_nan_frames_are_listed(tmp_path):
    def fn(d):
        d[..., [1, 4]] = np.nan
        return d
    with pytest.raises(DataError, match=r"frames \[1, 4\] .*entirely NaN"):
        _ = load_pet(_pet_with(tmp_path, fn)).data


def test_a_few_nan_voxels_are_legal(tmp_path):
    def fn(d):
        d[0, 0, :3, :] = np.nan
        return d
    data = load_pet(_pet_with(tmp_path, fn)).data
    assert np.isnan(data).sum() == 18 and np.nanmax(data) == pytest.approx(20.0)


def test_all_zero_image_is_a_data_error_not_a_unit_error(tmp_path):
    p = _pet_with(tmp_path, np.zeros_like)
    with pytest.raises(DataError, match="the image is all zero"):
        _ = load_pet(p).data
    with pytest.raises(DataError, match="frame 5 .*is all zero"):
        load_pet(p).frame(5)


def test_an_all_zero_early_frame_is_legal(tmp_path):
    def fn(d):
        d[..., 0] = 0.0  # before the tracer arrives
        return d
    pet = load_pet(_pet_with(tmp_path, fn))
    assert float(pet.data[..., 0].max()) == 0.0 and pet.frame(0).max() == 0.0
