"""Frame realignment (sv2a.motion) and phantoms with head motion (sv2a.phantom.motion).

Expected values come by other routes: moved test volumes are analytic functions evaluated at
rotated coordinates (rotations from scipy.spatial.transform, not the package's matrices),
framewise displacement by hand, and the TAC error against the same phantom without motion.
"""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

import sv2a
from sv2a.errors import DataError, Sv2aWarning
from sv2a.frames import FrameSchedule
from sv2a.motion import (
    MOTION_COLUMNS,
    PARAM_COLUMNS,
    framewise_displacement,
    params_from_matrix,
    plot_motion,
    realign,
    register_rigid,
    rigid_matrix,
    write_motion_table,
)
from sv2a.phantom import make_cohort, make_subject
from sv2a.phantom.motion import apply_motion, draw_motion, motion_limits


def _blobs(shape, voxel_mm, params=None):
    """Analytic image of three Gaussian blobs; moved by ``params`` (tissue at p -> R p + t)."""
    vox = np.asarray(voxel_mm, float)
    idx = np.indices(shape).reshape(3, -1).astype(float)
    q = (idx - ((np.asarray(shape) - 1) / 2)[:, None]) * vox[:, None]  # centred mm
    if params is not None:
        rot = Rotation.from_euler("XYZ", params[3:], degrees=True).as_matrix()  # Rx Ry Rz
        q = rot.T @ (q - np.asarray(params[:3], float)[:, None])  # p = R^T (q - t)
    x, y, z = q
    img = (np.exp(-((x / 14) ** 2 + (y / 10) ** 2 + (z / 6) ** 2))
           + 0.8 * np.exp(-(((x - 8) / 4) ** 2 + ((y + 6) / 5) ** 2 + ((z - 4) / 3) ** 2))
           + 0.5 * np.exp(-(((x + 6) / 3) ** 2 + ((y - 8) / 3) ** 2 + ((z + 5) / 4) ** 2))
           + 0.6 * np.exp(-(((x - 2) / 4) ** 2 + ((y + 2) / 3) ** 2 + ((z + 9) / 3) ** 2))
           + 0.6 * np.exp(-(((x + 1) / 3) ** 2 + ((y - 9) / 3) ** 2 + ((z - 7) / 3) ** 2)))
    return img.reshape(shape).astype(np.float32)


# ------------------------------------------------------------------ transforms
def test_rigid_matrix_convention_matches_scipy_rotations():
    p = [1.0, -2.0, 0.5, 10.0, -20.0, 30.0]
    expected = Rotation.from_euler("XYZ", p[3:], degrees=True).as_matrix()
    A = rigid_matrix(p)
    np.testing.assert_allclose(A[:3, :3], expected, atol=1e-12)
    np.testing.assert_allclose(A[:3, 3], p[:3])
    np.testing.assert_allclose(params_from_matrix(A), p, atol=1e-10)


def test_framewise_displacement_by_hand():
    p = np.zeros((3, 6))
    p[1, 0], p[1, 4] = 1.0, -2.0  # 1 mm + 2 deg
    p[2, 0], p[2, 3] = -1.0, 1.0  # back 2 mm; rot_x 1 deg, rot_y back 2 deg
    fd = framewise_displacement(p)
    arc = 50.0 * np.pi / 180.0
    np.testing.assert_allclose(fd, [0.0, 1.0 + 2 * arc, 2.0 + 3 * arc])


# ------------------------------------------------------------------ registration
@pytest.mark.parametrize("voxel", [(2.0, 2.0, 2.0), (2.0, 2.5, 3.0)])
def test_register_recovers_known_rotation_and_translation(voxel):
    # anisotropic voxels: the transform lives in mm, not in voxel units
    shape = (40, 36, 30)
    true = np.array([3.0, -2.0, 1.5, 4.0, -3.0, 5.0])
    fixed = _blobs(shape, voxel)
    moved = _blobs(shape, voxel, true)
    p, cost, ok = register_rigid(moved, fixed, voxel, levels=(2, 1))
    assert ok
    # analytic images, linear interpolation on 2-3 mm voxels: 0.1 mm / 0.1 deg
    np.testing.assert_allclose(p[:3], true[:3], atol=0.1)
    np.testing.assert_allclose(p[3:], true[3:], atol=0.1)
    assert cost < 3e-3  # 1 - NCC: trilinear interpolation of 3 mm blobs


def test_realign_synthetic_scan_and_outputs(tmp_path):
    vox = (2.0, 2.0, 2.5)
    shape = (40, 36, 30)
    fr = FrameSchedule.from_durations([2.0, 3.0, 5.0, 10.0, 10.0, 20.0, 20.0])
    motion = np.zeros((fr.n, 6))
    motion[4] = [2.0, 0.0, -1.0, 0.0, 2.0, 0.0]
    motion[5] = [3.0, -2.0, 1.0, 3.0, -1.0, 2.0]
    motion[6] = [-2.0, 1.5, 2.0, -2.0, 1.0, -3.0]
    kin = [0.5, 1.0, 2.0, 3.0, 3.0, 2.8, 2.5]  # global scale changes: NCC ignores it
    data = np.stack([k * _blobs(shape, vox, m if m.any() else None)
                     for k, m in zip(kin, motion, strict=True)], -1)
    pet = sv2a.DynamicPET.from_array(data, fr, np.diag([*vox, 1.0]), meta={"tracer": "x"})
    res = realign(pet)
    t = res.table
    assert list(t.columns) == MOTION_COLUMNS
    assert list(t["registration"]) == ["early_sum"] * 3 + ["frame"] * 4
    assert t["converged"].all()
    est = t[PARAM_COLUMNS].to_numpy()
    # smooth blobs pin translations tightly (0.1 mm) but rotations only loosely (0.3 deg)
    np.testing.assert_allclose(est[:, :3], motion[:, :3], atol=0.1)
    np.testing.assert_allclose(est[:, 3:], motion[:, 3:], atol=0.3)
    np.testing.assert_allclose(t["framewise_displacement"], framewise_displacement(est))
    assert res.pet.frames == fr and np.allclose(res.pet.affine, pet.affine)
    assert res.pet.meta["tracer"] == "x" and res.pet.meta["sv2aRealignment"]["space"] == "start"
    # the corrected frames match the still image
    still = _blobs(shape, vox)
    for f in (5, 6):
        corr = res.pet.frame(f) / kin[f]
        inner = np.s_[6:-6, 6:-6, 5:-5]
        assert np.abs(corr[inner] - still[inner]).max() < 0.05  # peak ~1.9

    # the motion table as a BIDS timeseries + sidecar
    path = write_motion_table(t, tmp_path / "sub-01_desc-motion_timeseries.tsv")
    back = pd.read_csv(path, sep="\t")
    np.testing.assert_allclose(back[PARAM_COLUMNS].to_numpy(), est, atol=1e-8)
    assert set(back["converged"]) == {True}
    side = json.loads((tmp_path / "sub-01_desc-motion_timeseries.json").read_text())
    assert side["trans_x"]["Units"] == "mm" and side["rot_z"]["Units"] == "degree"
    assert side["framewise_displacement"]["Units"] == "mm"
    fig = plot_motion(t)
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "motion.png")
    assert (tmp_path / "motion.png").stat().st_size > 0


def test_reference_without_counts_is_refused():
    fr = FrameSchedule.from_durations([5.0, 10.0, 20.0])
    data = np.zeros((16, 16, 16, 3), np.float32)
    data[..., 0] = _blobs((16, 16, 16), (2.0, 2.0, 2.0))
    pet = sv2a.DynamicPET.from_array(data, fr, np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(DataError, match="no counts"):
        realign(pet)


def test_empty_late_frame_is_flagged_and_left_alone():
    vox = (2.0, 2.0, 2.0)
    fr = FrameSchedule.from_durations([5.0, 10.0, 20.0, 20.0])
    img = _blobs((24, 24, 24), vox)
    data = np.stack([img, 2 * img, np.zeros_like(img), 3 * img], -1)
    pet = sv2a.DynamicPET.from_array(data, fr, np.diag([*vox, 1.0]))
    with pytest.warns(Sv2aWarning, match=r"frame\(s\) \[2\] have no counts"):
        res = realign(pet, passes=1)
    t = res.table
    assert not t.loc[2, "converged"] and t.loc[2, "registration"] == "none"
    assert t.loc[[0, 1, 3], "converged"].all()
    assert np.all(res.pet.frame(2) == 0)


# ------------------------------------------------------------------ phantoms with motion
def test_draw_motion_levels_and_still_start():
    fr = make_subject("human", "ucbj", noise=0, image=False).frames
    assert motion_limits(2) == (8.0, 4.0)
    for level in (1.0, 2.0):
        max_t, max_r = motion_limits(level)
        for seed in range(5):
            m = draw_motion(fr, level, seed)
            early = m["frame_start"] < 10
            assert (m.loc[early, PARAM_COLUMNS] == 0).all().all()
            assert m[PARAM_COLUMNS[:3]].abs().to_numpy().max() <= max_t
            assert m[PARAM_COLUMNS[3:]].abs().to_numpy().max() <= max_r
            assert m.loc[~early, PARAM_COLUMNS].abs().to_numpy().max() > 0.2 * max_r
    assert (draw_motion(fr, 0.0)[PARAM_COLUMNS] == 0).all().all()
    with pytest.raises(sv2a.errors.ModelError, match="motion level"):
        draw_motion(fr, -1.0)


def test_apply_motion_moves_tissue_where_the_table_says():
    vox = (2.0, 2.0, 2.0)
    img = _blobs((40, 36, 30), vox)[..., None].repeat(2, axis=-1)
    m = pd.DataFrame({c: [0.0, 0.0] for c in PARAM_COLUMNS})
    m.loc[1, PARAM_COLUMNS] = [2.0, -1.0, 1.0, 3.0, 2.0, -4.0]
    moved = apply_motion(img, m, vox)
    expected = _blobs((40, 36, 30), vox, m.loc[1, PARAM_COLUMNS].to_numpy(float))
    assert np.array_equal(moved[..., 0], img[..., 0])
    assert np.abs(moved[..., 1] - expected).max() < 0.02  # cubic spline; peak ~1.9


def test_phantom_motion_keeps_noise_and_records_truth():
    kw = {"seed": 2, "noise": 1.0, "voxel_mm": 8.0}
    still = make_subject("human", "ucbj", **kw)
    moving = make_subject("human", "ucbj", motion=1.0, **kw)
    early = still.frames.start < 10
    assert np.array_equal(moving.image[..., early], still.image[..., early])
    assert not np.allclose(moving.image[..., -1], still.image[..., -1])
    assert still.motion is None and "motion" not in still.meta
    assert list(moving.motion.columns[:9]) == MOTION_COLUMNS[:9]
    assert moving.meta["motion"] == 1.0
    pd.testing.assert_frame_equal(moving.blood, still.blood)


def test_still_phantom_gives_near_identity():
    s = make_subject("human", "ucbj", seed=0, noise=0, voxel_mm=4.0)
    res = realign(s.pet(), order=1)
    p = res.table[PARAM_COLUMNS].to_numpy()
    assert res.table["converged"].all()
    # the tracer contrast changes between 10 and 90 min (and the early sum is perfusion
    # weighted), which NCC reads as up to ~0.1 mm / 0.1 deg of motion on this still phantom
    assert np.abs(p[:, :3]).max() < 0.15 and np.abs(p[:, 3:]).max() < 0.15
    assert res.table["framewise_displacement"].max() < 0.15


@pytest.mark.slow
def test_phantom_realignment_recovers_motion_and_tacs():
    # 4 mm voxels with an 8 mm PSF keep the image band-limited, so that moving and moving
    # back is nearly lossless (the 2 mm, 4.5 mm case is in benchmarks/bench_motion.py)
    kw = {"seed": 5, "noise": 1.0, "voxel_mm": 4.0, "fwhm": 8.0}
    moving = make_subject("human", "ucbj", motion=1.0, **kw)
    still = make_subject("human", "ucbj", **kw)
    res = realign(moving.pet())
    late = moving.frames.start >= 10
    err = res.table[PARAM_COLUMNS].to_numpy() - moving.motion[PARAM_COLUMNS].to_numpy()
    assert np.abs(err[late, :3]).max() < 0.5  # mm
    assert np.abs(err[late, 3:]).max() < 0.5  # degrees
    assert res.table["converged"].all()
    atlas = moving.atlas()
    ref = sv2a.extract_tacs(still.pet(), atlas).values
    keep = np.all(ref > 0, axis=0)  # frames with activity in every region
    rms = [np.sqrt(np.mean(((sv2a.extract_tacs(p, atlas).values - ref)[:, keep]
                            / ref[:, keep]) ** 2)) for p in (moving.pet(), res.pet)]
    assert rms[1] <= 0.2 * rms[0], rms  # >= 80 % less regional TAC error


def test_cohort_and_cli_write_motion_truth(tmp_path):
    c = make_cohort(tmp_path / "bids", "ketamine-human", seed=0, n_subjects=1, noise=0,
                    fwhm=0, voxel_mm=8.0, motion=1.0)
    assert c.design["motion"] == 1.0
    design = json.loads((tmp_path / "bids" / "design.json").read_text())
    assert design["motion"] == 1.0
    for _, scan in c.scans.iterrows():
        path = scan["motion"]
        assert path.endswith("_desc-motiontruth_timeseries.tsv")
        truth = pd.read_csv(path, sep="\t")
        assert list(truth.columns[:9]) == MOTION_COLUMNS[:9]
        img = nib.load(scan["pet"])
        assert img.shape[3] == len(truth)
        assert json.loads(open(path[:-4] + ".json").read())["rot_x"]["Units"] == "degree"

    from sv2a.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["phantom", str(tmp_path / "cli"), "--design", "ketamine-human",
                   "--subjects", "1", "--noise", "0", "--voxel-size", "8", "--motion", "2"])
    assert rc == 0
    found = sorted((tmp_path / "cli").rglob("*_desc-motiontruth_timeseries.tsv"))
    assert len(found) == 2
    t = pd.read_csv(found[0], sep="\t")
    assert t[PARAM_COLUMNS[:3]].abs().to_numpy().max() <= 8.0
