import numpy as np
import pytest
from conftest import write_small_dseg, write_small_pet

import sv2a
from sv2a.atlas import Atlas, place_on_grid, read_label_table
from sv2a.errors import MetadataError, RegionError, ShapeMismatchError, Sv2aWarning
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
    with pytest.raises(RegionError, match=r"label values \[5\] \(100% of the labelled"):
        sv2a.load_atlas(tmp_path / "x_dseg.nii.gz", labels={1: "a"})
    lab[1:] = 1  # label 5 is now a quarter of the labelled voxels: left out, with a warning
    write_nifti(tmp_path / "y_dseg.nii.gz", lab, np.eye(4), dtype=np.int16)
    with pytest.warns(Sv2aWarning, match=r"label values \[5\] have no name.*25.0%"):
        atlas = sv2a.load_atlas(tmp_path / "y_dseg.nii.gz", labels={1: "a"})
    assert atlas.names == ["a"] and int((atlas.labels == 5).sum()) == 0
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
    with pytest.raises(ShapeMismatchError, match=r"not on the PET grid \(shape \(12, 12, 8\) "
                       r"vs PET \(6, 6, 4\); voxel size 1 x 1 x 1 mm vs PET 2 x 2 x 2 mm"):
        sv2a.load_atlas(tmp_path / "fine_dseg.nii.gz", labels=table, pet=pet)
    with pytest.warns(Sv2aWarning, match="resampled .* 100% of its labelled voxels inside"):
        at = sv2a.load_atlas(tmp_path / "fine_dseg.nii.gz", labels=table, pet=pet,
                             resample=True)
    assert at.labels.shape == (6, 6, 4)
    assert (at.labels[:3] == 1).all() and (at.labels[3:] == 2).all()


def test_affine_mismatch(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    pet = sv2a.load_pet(p)
    atlas = Atlas(np.ones(pet.shape[:3], int), {1: "brain"}, np.diag([3.0, 3, 3, 1]))
    with pytest.raises(ShapeMismatchError, match="voxel size 3 x 3 x 3 mm vs PET 2 x 2 x 2 mm"):
        atlas.check_grid(pet.shape, pet.affine)


def _shifted_dseg(tmp_path, shift_mm, shape=(6, 5, 4)):
    """The conftest segmentation on the PET's grid, its header origin moved by shift_mm (x)."""
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[0, 3] = shift_mm
    path = tmp_path / "sub-01_dseg.nii.gz"
    write_small_dseg(path, shape=shape, affine=aff)
    return path


def test_header_30mm_off_refused_with_and_without_resample(tmp_path):
    # the tester's case: same matrix and voxel size, origin 30 mm off
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    pet = sv2a.load_pet(p)
    path = _shifted_dseg(tmp_path, 30.0)
    with pytest.raises(ShapeMismatchError, match=r"origin offset 30 mm \(x \+30, y \+0, z \+0"):
        sv2a.load_atlas(path, pet=pet)
    with pytest.raises(ShapeMismatchError, match="origin is 30 mm away.*shift every region"):
        sv2a.load_atlas(path, pet=pet, resample=True)


def test_small_header_rounding_is_resampled_on_request(tmp_path):
    # half a voxel off the same lattice: not a gross disagreement, resampled when asked
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    pet = sv2a.load_pet(p)
    path = _shifted_dseg(tmp_path, 0.9)
    with pytest.raises(ShapeMismatchError, match="origin offset 0.9 mm"):
        sv2a.load_atlas(path, pet=pet)
    with pytest.warns(Sv2aWarning, match="resampled"):
        at = sv2a.load_atlas(path, pet=pet, resample=True)
    assert at.labels.shape == pet.shape[:3] and np.allclose(at.affine, pet.affine)


def test_segmentation_mostly_outside_the_fov_refused(tmp_path):
    # another grid (1 mm) whose labelled voxels lie mostly beyond the PET field of view
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", shape=(6, 6, 4))
    pet = sv2a.load_pet(p)
    lab = np.ones((12, 12, 8), np.int16)
    aff = np.eye(4)
    aff[:3, 3] = [8.0, 0.0, 0.0]  # 8 of 12 mm beyond the PET's x extent
    write_nifti(tmp_path / "far_dseg.nii.gz", lab, aff, dtype=np.int16)
    assert place_on_grid.__module__ == "sv2a.atlas"
    with pytest.raises(ShapeMismatchError, match=r"only 20% of the segmentation's labelled "
                       "voxels lie inside the PET field of view"):
        sv2a.load_atlas(tmp_path / "far_dseg.nii.gz", labels={1: "brain"}, pet=pet,
                        resample=True)


def test_same_grid_is_kept_as_is(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz")
    pet = sv2a.load_pet(p)
    atlas = Atlas(np.ones(pet.shape[:3], int), {1: "brain"}, pet.affine)
    assert place_on_grid(atlas, pet.shape, pet.affine) is atlas
    assert place_on_grid(atlas, pet.shape, pet.affine, resample=True) is atlas


def test_duplicate_names_rejected():
    with pytest.raises(RegionError, match="share the name"):
        Atlas(np.ones((2, 2, 2), int), {1: "Left Putamen", 2: "left-putamen"})


def _four_labels(tmp_path, table: str):
    """A 4x4x4 image with labels 1, 2 (and background 0) and a dseg.tsv holding ``table``."""
    lab = np.zeros((4, 4, 4), np.int16)
    lab[:2], lab[2:3] = 1, 2
    write_nifti(tmp_path / "t_dseg.nii.gz", lab, np.eye(4), dtype=np.int16)
    (tmp_path / "t_dseg.tsv").write_bytes(table.encode("utf-8"))
    return tmp_path / "t_dseg.nii.gz"


@pytest.mark.parametrize("name", ["NA", "nan", "None", "null", "N/A"])
def test_label_names_are_taken_literally(tmp_path, name):
    """pandas would read these as missing values and name the region 'nan'."""
    path = _four_labels(tmp_path, f"index\tname\n1\t{name}\n2\tputamen\n")
    from sv2a.regions import region_name

    assert read_label_table(path.with_suffix("").with_suffix(".tsv"))[1] == name
    assert sv2a.load_atlas(path).names == [region_name(name), "putamen"]


@pytest.mark.parametrize("table, says", [
    ("index\tname\n1\t\n2\tputamen\n", "line 2: index '1' has no name"),
    ("index\tname\n1\tn/a\n2\tputamen\n", "line 2: index '1' has no name"),
    ("index\tname\n1\tcortex\t\n2\tputamen\n", "line 2 has 3 .*trailing tab"),
    ("index\tname\n1\tcortex\n2\tputamen\textra\n", "line 3 has 3 tab-separated"),
    ("index name\n1 cortex\n2 putamen\n", "separated by spaces, not tabs"),
    ("index\tname\n1 cortex\n2\tputamen\n", "line 2 has 1 .*not tab-separated"),
])
def test_malformed_label_table_names_the_line(tmp_path, table, says):
    path = _four_labels(tmp_path, table)
    with pytest.raises(MetadataError, match=says):
        sv2a.load_atlas(path)


def test_label_table_not_utf8_is_named(tmp_path):
    path = _four_labels(tmp_path, "index\tname\n1\tcortex\n2\tputamen\n")
    path.with_suffix("").with_suffix(".tsv").write_bytes(
        "index\tname\n1\tcórtex\n2\tputamen\n".encode("latin-1"))
    with pytest.raises(MetadataError, match=r"not UTF-8 \(BIDS requires UTF-8\): byte 0xf3 "
                                            r"at line 2 \(byte offset 14\)"):
        read_label_table(path.with_suffix("").with_suffix(".tsv"))


def test_bom_and_background_row_are_accepted_quietly(tmp_path, recwarn):
    """Excel writes a byte-order mark; FreeSurfer and PETPrep tables name label 0."""
    path = _four_labels(tmp_path, "\ufeffindex\tname\n0\tUnknown\n1\tcórtex\n2\tputamen\n")
    atlas = sv2a.load_atlas(path)
    assert atlas.names == ["cortex", "putamen"]  # accents dropped, 0 is background
    assert not [w for w in recwarn if issubclass(w.category, Sv2aWarning)]


def test_region_name_transliterates():
    from sv2a.regions import region_name

    assert region_name("córtex_frontal") == "cortex_frontal"
    assert region_name("Núcleo Accumbens") == "nucleo_accumbens"
    with pytest.raises(RegionError, match="no letter or digit"):
        Atlas(np.ones((2, 2, 2), int), {1: "皮质"})


def test_float_labels_nan_is_background_inf_refused(tmp_path, recwarn):
    from sv2a.errors import DataError

    lab = np.full((4, 4, 4), np.nan, np.float32)
    lab[:2] = 1.0
    write_nifti(tmp_path / "f_dseg.nii.gz", lab, np.eye(4), dtype=np.float32)
    atlas = sv2a.load_atlas(tmp_path / "f_dseg.nii.gz", labels={1: "cortex"})
    assert atlas.labels.dtype.kind == "i" and int(atlas.mask("cortex").sum()) == 32
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    lab[3, 3, 3] = np.inf
    write_nifti(tmp_path / "f_dseg.nii.gz", lab, np.eye(4), dtype=np.float32)
    with pytest.raises(DataError, match="infinite"):
        sv2a.load_atlas(tmp_path / "f_dseg.nii.gz", labels={1: "cortex"})


def test_scaled_label_image_refused(tmp_path):
    import nibabel as nib

    from sv2a.errors import DataError

    img = nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4))
    img.set_data_dtype(np.int16)
    img.header.set_slope_inter(2.0, 0.0)
    nib.save(img, str(tmp_path / "s_dseg.nii.gz"))
    with pytest.raises(DataError, match=r"scl_slope 2, scl_inter 0"):
        sv2a.load_atlas(tmp_path / "s_dseg.nii.gz", labels={1: "a", 2: "b"})


def test_qform_sform_disagreement_warned(tmp_path):
    import nibabel as nib

    q = np.eye(4)
    q[1, 3] = 20.0
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4))
    img.set_sform(np.eye(4), 2)
    img.set_qform(q, 1)
    nib.save(img, str(tmp_path / "q_dseg.nii.gz"))
    with pytest.warns(Sv2aWarning, match=r"sform \(code 2\) and qform \(code 1\) disagree.* "
                                         r"20 mm .*y \+20"):
        atlas = sv2a.load_atlas(tmp_path / "q_dseg.nii.gz", labels={1: "a"})
    np.testing.assert_allclose(atlas.affine, np.eye(4))  # the sform, as nibabel
