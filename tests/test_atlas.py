import numpy as np
import pytest
from conftest import write_small_dseg, write_small_pet

import sv2a
from sv2a.atlas import Atlas, read_label_table
from sv2a.errors import MetadataError, RegionError, ShapeMismatchError
from sv2a.io import write_nifti


def test_load_atlas_with_dseg_tsv(tmp_path):
    lab = write_small_dseg(tmp_path / "sub-01_dseg.nii.gz")
    atlas = sv2a.load_atlas(tmp_path / "sub-01_dseg.nii.gz")  # table found beside the image
    assert atlas.names == ["left_cortex", "right_cortex", "centrum_semiovale"]
    assert atlas.mask("left_cortex").sum() == (lab == 1).sum()
    assert atlas.volume_ml("right_cortex") == pytest.approx((lab == 2).sum() * 0.008)


def test_freesurfer_lut(tmp_path):
    lut = tmp_path / "FreeSurferColorLUT.txt"
    lut.write_text("# comment\n0 Unknown 0 0 0 0\n17  Left-Hippocampus 220 216 20 0\n"
                   "53 Right-Hippocampus 220 216 20 0\n")
    lab = np.zeros((4, 4, 4), np.int16)
    lab[:2], lab[2:] = 17, 53
    write_nifti(tmp_path / "aseg.nii.gz", lab, np.eye(4), dtype=np.int16)
    atlas = sv2a.load_atlas(tmp_path / "aseg.nii.gz", labels=lut)
    assert atlas.names == ["left_hippocampus", "right_hippocampus"]
    merged = atlas.merge("hippocampus", ["left_hippocampus", "right_hippocampus"])
    assert merged.names == ["hippocampus"] and merged.mask("hippocampus").all()


def test_unnamed_labels_and_missing_table(tmp_path):
    lab = np.zeros((4, 4, 4), np.int16)
    lab[0] = 5
    write_nifti(tmp_path / "x_dseg.nii.gz", lab, np.eye(4), dtype=np.int16)
    with pytest.raises(MetadataError, match="x_dseg.tsv does not exist"):
        sv2a.load_atlas(tmp_path / "x_dseg.nii.gz")
    with pytest.raises(RegionError, match=r"label values \[5\] have no name"):
        sv2a.load_atlas(tmp_path / "x_dseg.nii.gz", labels={1: "a"})
    bad = tmp_path / "bad.txt"
    bad.write_text("one two\n")
    with pytest.raises(MetadataError, match="line 1"):
        read_label_table(bad)


def test_missing_region():
    atlas = Atlas(np.ones((2, 2, 2), int), {1: "putamen"})
    with pytest.raises(RegionError, match="'caudate' is not in atlas; available: putamen"):
        atlas.mask("caudate")


def test_erode_by_mm_uses_voxel_size():
    lab = np.zeros((21, 21, 21), int)
    lab[2:19, 2:19, 2:19] = 1  # cube of 17 voxels
    aff = np.diag([1.0, 1.0, 2.0, 1.0])  # anisotropic
    atlas = Atlas(lab, {1: "centrum_semiovale"}, aff)
    er = atlas.erode("centrum_semiovale", 4.0).mask("centrum_semiovale")
    # distance to outside > 4 mm: 4 voxels removed in x/y (1 mm), 2 in z (2 mm)
    xs, ys, zs = np.nonzero(er)
    assert (xs.min(), xs.max()) == (6, 14)
    assert (zs.min(), zs.max()) == (4, 16)
    with pytest.raises(RegionError, match="leaves no voxels"):
        atlas.erode("centrum_semiovale", 40.0)


def test_grid_mismatch_and_resampling(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", shape=(6, 6, 4))
    pet = sv2a.load_pet(p)
    # atlas at 1 mm on the same field of view (12 x 12 x 8 mm)
    lab = np.zeros((12, 12, 8), np.int16)
    lab[:6] = 1
    lab[6:] = 2
    write_nifti(tmp_path / "fine_dseg.nii.gz", lab, np.diag([1, 1, 1, 1.0]) @ np.array(
        [[1, 0, 0, -0.5], [0, 1, 0, -0.5], [0, 0, 1, -0.5], [0, 0, 0, 1]]), dtype=np.int16)
    table = {1: "left", 2: "right"}
    with pytest.raises(ShapeMismatchError, match="atlas grid .* differs from the PET grid"):
        sv2a.load_atlas(tmp_path / "fine_dseg.nii.gz", labels=table, pet=pet)
    at = sv2a.load_atlas(tmp_path / "fine_dseg.nii.gz", labels=table, pet=pet, resample=True)
    assert at.labels.shape == (6, 6, 4)
    assert (at.labels[:3] == 1).all() and (at.labels[3:] == 2).all()


def test_affine_mismatch(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    pet = sv2a.load_pet(p)
    atlas = Atlas(np.ones(pet.shape[:3], int), {1: "brain"}, np.diag([3.0, 3, 3, 1]))
    with pytest.raises(ShapeMismatchError, match="affine differs"):
        atlas.check_grid(pet.shape, pet.affine)


def test_duplicate_names_rejected():
    with pytest.raises(RegionError, match="share the name"):
        Atlas(np.ones((2, 2, 2), int), {1: "Left Putamen", 2: "left-putamen"})
