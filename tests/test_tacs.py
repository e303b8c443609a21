import numpy as np
import pytest
from conftest import write_small_dseg, write_small_pet

import sv2a
from sv2a.atlas import Atlas
from sv2a.errors import DataError, RegionError, ShapeMismatchError
from sv2a.io import DynamicPET
from sv2a.tacs import frames_of, region_name


def test_extract_tacs_means_and_coords(tmp_path):
    p, data = write_small_pet(tmp_path / "sub-01_pet.nii.gz", units="Bq/mL")
    lab = write_small_dseg(tmp_path / "sub-01_dseg.nii.gz")
    pet = sv2a.load_pet(p)
    tacs = sv2a.extract_tacs(pet, sv2a.load_atlas(tmp_path / "sub-01_dseg.nii.gz", pet=pet))
    assert tacs.dims == ("region", "frame")
    assert list(tacs.region.values) == ["left_cortex", "right_cortex", "centrum_semiovale"]
    for i, k in enumerate([1, 2, 3]):
        np.testing.assert_allclose(tacs.values[i], data[lab == k].mean(axis=0) / 1000, rtol=1e-6)
        assert int(tacs.n_voxels[i]) == (lab == k).sum()
        assert float(tacs.volume_ml[i]) == pytest.approx((lab == k).sum() * 0.008)
    np.testing.assert_allclose(tacs.frame_mid, pet.frames.mid)
    assert frames_of(tacs) == pet.frames


def test_requested_absent_region_raises():
    pet = DynamicPET.from_array(np.ones((2, 2, 2, 3)), sv2a.FrameSchedule.from_durations([1, 1, 1]))
    atlas = Atlas(np.ones((2, 2, 2), int), {1: "cortex", 2: "empty"})
    with pytest.raises(RegionError, match=r"\['thalamus'\] are not in the atlas"):
        sv2a.extract_tacs(pet, atlas, regions=["thalamus"])
    with pytest.raises(RegionError, match="'empty' .* has 0 voxels"):
        sv2a.extract_tacs(pet, atlas, regions=["cortex", "empty"])
    with pytest.warns(UserWarning, match=r"left out: \['empty'\]"):
        t = sv2a.extract_tacs(pet, atlas)
    assert list(t.region.values) == ["cortex"]


def test_nan_voxels_excluded_with_warning():
    data = np.ones((2, 2, 2, 3))
    data[0, 0, 0, 1] = np.nan
    pet = DynamicPET.from_array(data, sv2a.FrameSchedule.from_durations([1, 1, 1]))
    with pytest.warns(UserWarning, match="1 NaN voxel"):
        t = sv2a.extract_tacs(pet, Atlas(np.ones((2, 2, 2), int), {1: "a"}))
    np.testing.assert_allclose(t.values, 1.0)


def test_all_nan_region_is_an_error():
    data = np.ones((2, 2, 2, 2))
    data[0] = np.nan
    lab = np.ones((2, 2, 2), int)
    lab[0] = 2
    pet = DynamicPET.from_array(data, sv2a.FrameSchedule.from_durations([1, 1]))
    with pytest.raises(RegionError, match="'b' .*entirely NaN"):
        sv2a.extract_tacs(pet, Atlas(lab, {1: "a", 2: "b"}), regions=["a", "b"])


def test_grid_mismatch():
    pet = DynamicPET.from_array(np.ones((3, 2, 2, 2)), sv2a.FrameSchedule.from_durations([1, 1]))
    with pytest.raises(ShapeMismatchError):
        sv2a.extract_tacs(pet, Atlas(np.ones((2, 2, 2), int), {1: "a"}))


def test_tacs_from_arrays_validation():
    t = sv2a.tacs_from_arrays([[1, 2], [3, 4]], [0, 1], [1, 3], ["Left Caudate", "CS"],
                              volume_ml=[1.5, 2.0])
    assert list(t.region.values) == ["left_caudate", "cs"]
    np.testing.assert_allclose(t.frame_duration, [1, 2])
    with pytest.raises(DataError, match="region 'b' at frame index 1"):
        sv2a.tacs_from_arrays([[1, 2], [3, np.nan]], [0, 1], [1, 2], ["a", "b"])
    with pytest.raises(ShapeMismatchError, match="2 region names"):
        sv2a.tacs_from_arrays([[1, 2]], [0, 1], [1, 2], ["a", "b"])
    with pytest.raises(ShapeMismatchError, match="3 frames"):
        sv2a.tacs_from_arrays([[1, 2, 3]], [0, 1], [1, 2], ["a"])
    with pytest.raises(RegionError, match="duplicate"):
        sv2a.tacs_from_arrays([[1, 2], [1, 2]], [0, 1], [1, 2], ["a", "A"])


@pytest.mark.parametrize("raw,name", [("Left-Hippocampus", "left_hippocampus"),
                                      ("centrum semiovale", "centrum_semiovale"),
                                      ("ctx-lh-posteriorcingulate", "ctx_lh_posteriorcingulate"),
                                      ("dlPFC", "dlpfc"),
                                      ("posteriorCingulate", "posterior_cingulate")])
def test_region_names(raw, name):
    assert region_name(raw) == name


def test_extract_tacs_takes_any_label_atlas():
    # tacs does not import sv2a.atlas: any object with the atlas attributes works, and
    # anything else is a TypeError.
    import sv2a.tacs

    class Labels:
        def __init__(self):
            self._a = Atlas(np.ones((2, 2, 2), int), {1: "a"})
            self.labels = self._a.labels
            self.source = "duck"
            self.names = self._a.names
            self.index_of = self._a.index_of
            self.voxel_volume_ml = 0.001

        def check_grid(self, shape, affine, *, atol=1e-3):
            self._a.check_grid(shape, affine, atol=atol)

    fs = sv2a.FrameSchedule.from_durations([1, 1])
    pet = DynamicPET.from_array(np.full((2, 2, 2, 2), 3.0), fs)
    assert isinstance(Labels(), sv2a.tacs.LabelAtlas)
    t = sv2a.extract_tacs(pet, Labels())
    np.testing.assert_allclose(t.values, 3.0)
    assert float(t.volume_ml[0]) == pytest.approx(0.008)
    with pytest.raises(TypeError, match="sv2a.Atlas"):
        sv2a.extract_tacs(pet, np.ones((2, 2, 2), int))


def test_region_name_lives_in_regions():
    from sv2a import atlas, regions, tacs

    assert tacs.region_name is regions.region_name
    assert atlas.region_name is regions.region_name
