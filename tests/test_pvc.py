"""Partial-volume correction: GTM (Rousset et al. 1998) and RBV (Thomas et al. 2011).

The phantom renders its image as ``sum_r tac_r * blur(mask_r)`` with a known Gaussian PSF
(``scipy.ndimage.gaussian_filter``, zero outside the grid), i.e. exactly the GTM model, so a
noise-free phantom corrected with the true PSF must give back the unblurred regional TACs
(``subject.tacs``) up to float32 rounding of the image (~1e-6 relative; tolerances 1e-4).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

import sv2a
from sv2a.atlas import Atlas, load_atlas
from sv2a.errors import (
    DataError,
    MetadataError,
    ModelError,
    RegionError,
    ShapeMismatchError,
    Sv2aWarning,
)
from sv2a.frames import FrameSchedule
from sv2a.io import load_pet, write_nifti
from sv2a.pet import DynamicPET
from sv2a.pvc import gtm, psf_fwhm, rbv, transfer_matrix

FWHM = 8.0  # mm, on 4 mm voxels: the same blur in voxels as 4 mm FWHM on 2 mm voxels
TARGETS = ["frontal_cortex", "temporal_cortex", "putamen", "caudate", "hippocampus",
           "thalamus", "cerebellum_cortex", "amygdala"]


@pytest.fixture(scope="module")
def subject():
    return sv2a.phantom.make_subject(species="human", tracer="ucbj", fwhm=FWHM, noise=0,
                                     seed=0, voxel_mm=4.0)


@pytest.fixture(scope="module")
def wm_atlas(subject):
    """Un-eroded white-matter reference: the CS merged with the rest of the white matter
    (same kinetics in the phantom), where grey-matter spill-in into the reference is large."""
    return subject.atlas().merge("centrum_semiovale", ["centrum_semiovale", "white_matter"])


def _late(tacs):
    return tacs.frame_mid.values > 2.0  # the TACs are ~0 in the first seconds


def _ratio(a, b, late):
    return a.values[late] / b.values[late]


# ------------------------------------------------------------------------ the matrix
def test_transfer_matrix_matches_brute_force_full_image_blur():
    # independent route: blur every indicator image over the whole grid (float64) and average
    rng = np.random.default_rng(1)
    lab = np.zeros((22, 18, 14), int)
    lab[3:12, 2:15, 2:12] = 1
    lab[12:19, 4:16, 3:10] = 2
    lab[6:9, 6:9, 4:8] = 3
    lab[rng.random(lab.shape) < 0.02] = 0
    affine = np.diag([2.0, 2.5, 3.0, 1.0])
    fwhm = (4.0, 6.0, 7.5)
    atlas = Atlas(lab, {1: "a", 2: "b", 3: "c"}, affine)
    m = transfer_matrix(atlas, fwhm=fwhm)
    sigma = np.array(fwhm) / (2 * np.sqrt(2 * np.log(2))) / np.array([2.0, 2.5, 3.0])
    order = [1, 2, 3, 0]
    expected = np.empty((4, 4))
    for j, src in enumerate(order):
        rsf = ndimage.gaussian_filter((lab == src).astype(float), sigma, mode="constant",
                                      truncate=4.0)
        for i, dst in enumerate(order):
            expected[i, j] = rsf[lab == dst].mean()
    assert m.region.values.tolist() == ["a", "b", "c", "background"]
    # float32 blur of the bounding boxes vs float64 over the whole grid
    np.testing.assert_allclose(m.values, expected, atol=2e-6)
    m0 = transfer_matrix(atlas, fwhm=fwhm, background=False)
    np.testing.assert_allclose(m0.values, expected[:3, :3], atol=2e-6)


def test_zero_fwhm_gives_identity():
    lab = np.zeros((6, 6, 6), int)
    lab[1:4, 1:4, 1:4] = 1
    m = transfer_matrix(Atlas(lab, {1: "r"}), fwhm=0.0)
    np.testing.assert_array_equal(m.values, np.eye(2))


# ------------------------------------------------------------------------ GTM on phantoms
def test_gtm_recovers_unblurred_phantom_tacs(subject):
    pet, atlas, truth = subject.pet(), subject.atlas(), subject.tacs
    res = gtm(pet, atlas, fwhm=FWHM)
    blurred = sv2a.extract_tacs(pet, atlas)
    late = _late(truth)
    big = [r for r in truth.region.values if float(res.tacs.volume_ml.sel(region=r)) >= 2.0]
    assert len(big) == truth.sizes["region"]  # every phantom region is >= 2 mL
    for r in big:
        err = np.abs(_ratio(res.tacs.sel(region=r), truth.sel(region=r), late) - 1)
        assert err.max() < 1e-4, r
    # uncorrected cortex is far off (the correction did something)
    fc = _ratio(blurred.sel(region="frontal_cortex"), truth.sel(region="frontal_cortex"), late)
    assert fc[-1] < 0.7
    # format of extract_tacs plus the PVC record
    assert res.tacs.dims == blurred.dims
    assert set(blurred.coords) <= set(res.tacs.coords)
    np.testing.assert_allclose(res.tacs.frame_mid, blurred.frame_mid)
    np.testing.assert_allclose(res.tacs.volume_ml, blurred.volume_ml)
    assert res.tacs.attrs["pvc"] == "gtm"
    assert res.tacs.attrs["fwhm_mm"] == [FWHM] * 3
    assert res.tacs.attrs["pvc_condition"] == pytest.approx(res.condition)
    assert res.matrix.shape == (len(atlas.names) + 1,) * 2
    assert res.matrix.region.values[-1] == "background"
    assert 1.0 <= res.condition < 20.0
    # background of the phantom holds no activity
    assert np.abs(res.solution.sel(region="background").values).max() < 1e-3


def test_gtm_removes_centrum_semiovale_spill_in_and_bpnd_bias(subject, wm_atlas):
    pet, truth = subject.pet(), subject.tacs
    ref_true = truth.sel(region="white_matter")  # the merged reference has WM/CS kinetics
    res = gtm(pet, wm_atlas, fwhm=FWHM, regions=[*TARGETS, "centrum_semiovale"])
    blurred = sv2a.extract_tacs(pet, wm_atlas, regions=[*TARGETS, "centrum_semiovale"])
    late = _late(truth)
    spill = _ratio(blurred.sel(region="centrum_semiovale"), ref_true, late) - 1
    corr = _ratio(res.tacs.sel(region="centrum_semiovale"), ref_true, late) - 1
    assert spill.min() > 0.1  # > 10 % grey-matter spill-in into the reference (30 % late)
    assert np.abs(corr).max() < 1e-4

    unblurred = truth.sel(region=TARGETS + ["white_matter"]).assign_coords(
        region=TARGETS + ["centrum_semiovale"])
    out = {}
    for name, tacs in (("truth", unblurred), ("blurred", blurred), ("gtm", res.tacs)):
        bp = sv2a.fit(tacs, model="srtm2", reference="centrum_semiovale")
        suvr = sv2a.fit(tacs, model="suvr", reference="centrum_semiovale", window=(60, 90))
        out[name] = (bp["BPND"].sel(region=TARGETS).values,
                     suvr["SUVR"].sel(region=TARGETS).values)
    bias_blur = out["blurred"][0] / out["truth"][0] - 1
    bias_gtm = out["gtm"][0] / out["truth"][0] - 1
    assert bias_blur.max() < -0.2  # uncorrected: BPND biased low by > 20 % everywhere
    assert np.abs(bias_gtm).max() < 0.01  # requirement: <= 1 %
    assert np.abs(out["gtm"][1] / out["truth"][1] - 1).max() < 0.01


def test_gtm_from_extracted_tacs_matches_image_route(subject):
    pet, atlas = subject.pet(), subject.atlas()
    img = gtm(pet, atlas, fwhm=FWHM)
    tacs = sv2a.extract_tacs(pet, atlas)
    # with a background row (mean of the unlabelled voxels, computed here directly)
    bg = pet.data[subject.labels == 0].mean(axis=0)
    with_bg = sv2a.tacs_from_arrays(
        np.vstack([tacs.values, bg]), tacs.frame_start, tacs.frame_end,
        [*tacs.region.values.tolist(), "background"], half_life=tacs.attrs["half_life_min"])
    from_tacs = gtm(with_bg, atlas, fwhm=FWHM)
    np.testing.assert_allclose(from_tacs.tacs.values, img.tacs.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_tacs.tacs.volume_ml, img.tacs.volume_ml)
    # without it, unlabelled voxels are taken as empty (exact here: the background is 0)
    no_bg = gtm(tacs, atlas, fwhm=FWHM)
    assert no_bg.tacs.attrs["pvc_background"] == 0
    assert "background" not in no_bg.matrix.region.values
    np.testing.assert_allclose(no_bg.tacs.values, img.tacs.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gtm(pet, atlas, fwhm=FWHM, background=False).tacs.values,
                               no_bg.tacs.values, rtol=1e-5, atol=1e-6)


def test_fit_runs_unchanged_on_gtm_tacs(subject):
    regions = [r for r in subject.atlas().names if r != "ventricles"]  # no activity there
    res = gtm(subject.pet(), subject.atlas(), fwhm=FWHM, regions=regions)
    bp = sv2a.fit(res.tacs, model="srtm2", reference="centrum_semiovale")
    ref = sv2a.fit(subject.tacs.sel(region=regions), model="srtm2",
                   reference="centrum_semiovale")
    np.testing.assert_allclose(bp["BPND"].values, ref["BPND"].values, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------------ RBV
def test_rbv_restores_unblurred_voxels(subject, wm_atlas):
    pet = subject.pet()
    out = rbv(pet, wm_atlas, fwhm=FWHM)
    assert isinstance(out, DynamicPET)
    assert out.shape == pet.shape and out.meta["pvc"] == "rbv"
    assert out.meta["pvc_fwhm_mm"] == [FWHM] * 3
    last = out.data[..., -1]
    for r in ("frontal_cortex", "putamen", "white_matter"):
        k = subject.atlas().index_of[r]
        truth = float(subject.tacs.sel(region=r)[-1])
        # noise-free, exact PSF: observed == PSF * S, so every voxel gets its region's value
        np.testing.assert_allclose(last[subject.labels == k], truth, rtol=1e-4)
    # the corrected image is not corrected again
    with pytest.raises(MetadataError, match="already partial-volume corrected"):
        gtm(out, wm_atlas)


def test_rbv_reuses_gtm_and_keeps_noise_texture():
    s = sv2a.phantom.make_subject(species="human", tracer="ucbj", fwhm=FWHM, noise=1, seed=3,
                                  voxel_mm=4.0)
    pet, atlas = s.pet(), s.atlas()
    res = gtm(pet, atlas, fwhm=FWHM)
    out = rbv(pet, atlas, gtm_result=res)  # FWHM from the phantom's metadata
    # RBV multiplies each voxel by a factor S / (PSF * S) that depends on the GTM values only,
    # not on the voxel's noise: the same factor applied to the noise-free image
    clean = sv2a.phantom.make_subject(species="human", tracer="ucbj", fwhm=FWHM, noise=0,
                                      seed=3, voxel_mm=4.0).pet()
    out0 = rbv(clean, atlas, gtm_result=res)
    k = atlas.index_of["cerebellum_cortex"]
    a = out.data[s.labels == k, -1] / pet.data[s.labels == k, -1]
    b = out0.data[s.labels == k, -1] / clean.data[s.labels == k, -1]
    np.testing.assert_allclose(a, b, rtol=1e-4)
    assert np.ptp(a) > 0.05  # the factor varies across the region (not a global scale)
    b = out.data[s.labels == k, -1]
    # regional means of the RBV image are close to the GTM values (noise, 4 mm voxels)
    m = b.mean() / float(res.tacs.sel(region="cerebellum_cortex")[-1])
    assert abs(m - 1) < 0.05


# ------------------------------------------------------------------------ PSF from metadata
def test_fwhm_from_phantom_sidecar_through_nifti(tmp_path):
    s = sv2a.phantom.make_subject(species="human", tracer="ucbj", fwhm=FWHM, noise=0,
                                  seed=0, voxel_mm=6.0)
    pet_path = tmp_path / "sub-01_pet.nii.gz"
    write_nifti(pet_path, s.image, s.affine, sidecar=s.pet_sidecar())
    seg = tmp_path / "sub-01_dseg.nii.gz"
    write_nifti(seg, s.labels, s.affine, dtype=np.int16)
    (tmp_path / "sub-01_dseg.tsv").write_text(
        "index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in s.label_names.items()))
    pet = load_pet(pet_path)
    atlas = load_atlas(seg, pet=pet)
    res = gtm(pet, atlas)  # no fwhm=: sidecar sv2aPhantom.fwhm_mm
    assert res.tacs.attrs["fwhm_mm"] == [FWHM] * 3
    late = _late(s.tacs)
    for r in ("putamen", "centrum_semiovale"):
        err = np.abs(_ratio(res.tacs.sel(region=r), s.tacs.sel(region=r), late) - 1)
        assert err.max() < 1e-3, r  # float32 NIfTI round trip
    assert psf_fwhm(DynamicPET.from_array(np.zeros((2, 2, 2)), FrameSchedule([0], [1]),
                                          meta={"fwhm_mm": [3, 4, 5]})).tolist() == [3, 4, 5]


# ------------------------------------------------------------------------ bad input
def _small():
    lab = np.zeros((10, 10, 10), np.int32)
    lab[2:5, 2:8, 2:8] = 1
    lab[5:8, 2:8, 2:8] = 2
    atlas = Atlas(lab, {1: "left", 2: "right"}, np.diag([2.0, 2.0, 2.0, 1.0]))
    fr = FrameSchedule([0.0, 1.0], [1.0, 3.0])
    data = np.stack([lab * 1.0 + 0.5, lab * 2.0 + 0.5], axis=-1)
    pet = DynamicPET.from_array(data, fr, atlas.affine)
    return pet, atlas


def test_missing_psf_names_the_option():
    pet, atlas = _small()
    with pytest.raises(MetadataError, match="fwhm="):
        gtm(pet, atlas)
    with pytest.raises(MetadataError, match="fwhm="):
        rbv(pet, atlas)
    with pytest.raises(MetadataError, match="fwhm="):
        gtm(sv2a.extract_tacs(pet, atlas), atlas)
    with pytest.raises(ModelError, match="FWHM"):
        gtm(pet, atlas, fwhm=-1.0)
    with pytest.raises(ModelError, match="FWHM"):
        gtm(pet, atlas, fwhm=(1.0, 2.0))


def test_atlas_not_on_pet_grid():
    pet, atlas = _small()
    other = Atlas(np.zeros((10, 10, 9), np.int32) + 1, {1: "x"}, atlas.affine)
    with pytest.raises(ShapeMismatchError, match="PET grid"):
        gtm(pet, other, fwhm=4.0)
    shifted = Atlas(atlas.labels, atlas.label_names, np.diag([2.0, 2.0, 2.5, 1.0]))
    with pytest.raises(ShapeMismatchError, match="voxel size|origin offset"):
        rbv(pet, shifted, fwhm=4.0)


def test_empty_and_unknown_regions():
    pet, atlas = _small()
    empty = Atlas(atlas.labels, {1: "left", 2: "right", 3: "nowhere"}, atlas.affine)
    with pytest.raises(RegionError, match="nowhere"):
        gtm(pet, empty, fwhm=4.0)
    with pytest.raises(RegionError, match="putamen"):
        gtm(pet, atlas, fwhm=4.0, regions=["putamen"])
    tacs = sv2a.extract_tacs(pet, atlas, regions=["left"])
    with pytest.raises(RegionError, match="right"):
        gtm(tacs, atlas, fwhm=4.0)
    with pytest.raises(RegionError, match="background"):
        gtm(sv2a.extract_tacs(pet, atlas), atlas, fwhm=4.0, background=True)


def test_non_finite_image():
    pet, atlas = _small()
    data = np.array(pet.data)
    data[0, 0, 0, 1] = np.nan
    bad = DynamicPET.from_array(data, pet.frames, pet.affine)
    with pytest.raises(DataError, match="frame 1"):
        gtm(bad, atlas, fwhm=4.0)


def test_ill_conditioned_gtm_warns_with_condition_number():
    # interleaved one-voxel slabs with a PSF much wider than a slab: nearly collinear RSFs
    lab = np.zeros((16, 8, 8), np.int32)
    lab[2:14:2, 2:6, 2:6] = 1
    lab[3:14:2, 2:6, 2:6] = 2
    atlas = Atlas(lab, {1: "odd", 2: "even"})
    pet = DynamicPET.from_array(np.ones((16, 8, 8, 1)), FrameSchedule([0.0], [1.0]))
    with pytest.warns(Sv2aWarning, match="condition number") as rec:
        res = gtm(pet, atlas, fwhm=8.0)
    assert f"{res.condition:.3g}" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gtm(pet, atlas, fwhm=8.0, warn_condition=np.inf)
