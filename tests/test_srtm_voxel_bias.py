"""Voxelwise SRTM without the noise bias: the two-step SRTM (``k2prime=``, Wu & Carson 2002).

The phantom is independent of the solvers: 1TCM tissue curves of a Feng (1993) input in
closed form (:mod:`sv2a.phantom.simulate`), frame-averaged by quadrature; a
centrum-semiovale-like 1TCM reference (K1' 0.135/min, VT 3.8) and five 1TCM targets with the
reference's VND, so SRTM holds exactly with BPND = VT/VT_R − 1 and R1 = K1/K1'. Voxel noise is
Gaussian with var = Pc C e^(λt)/Δt, Pc set for 15 % COV in the last frame of the BPND-3.5
region; the reference TAC is noise-free (a regional mean of thousands of voxels).
"""

from __future__ import annotations

import numpy as np
import pytest

import sv2a
from sv2a.errors import ModelError
from sv2a.frames import frames_from_counts
from sv2a.models.base import ModelInputs
from sv2a.models.srtm import SRTM, SRTMOptions
from sv2a.phantom.simulate import frame_average, noise_sd, pet_curve
from sv2a.phantom.tracers import FengInput

FRAMES = frames_from_counts([(6, 30), (3, 60), (2, 120), (16, 300)], half_life=20.4)
FENG = FengInput(A1=1150.0, A2=36.0, A3=9.0, lambda1=4.0, lambda2=0.4, lambda3=0.003,
                 delay=0.25, parent_plateau=0.2, parent_tau=9.0)
REF = {"K1": 0.135, "VT": 3.8}
BPS = np.array([0.5, 1.5, 2.5, 3.5, 4.5])
R1S = np.array([1.0, 1.4, 1.8, 2.2, 2.5])
K2P = REF["K1"] / REF["VT"]
NVOX = 300  # voxels per region


def _tac(k1: float, k2: float) -> np.ndarray:
    return frame_average(lambda t: pet_curve(FENG, {"K1": k1, "k2": k2}, t), FRAMES,
                         delay=FENG.delay)


@pytest.fixture(scope="module")
def tacs():
    """Reference TAC (n_frames,) and noise-free target TACs (5, n_frames)."""
    cr = _tac(REF["K1"], K2P)
    ct = np.array([_tac(r1 * REF["K1"], r1 * REF["K1"] / (REF["VT"] * (1 + bp)))
                   for bp, r1 in zip(BPS, R1S, strict=True)])
    return cr, ct


@pytest.fixture(scope="module")
def noisy_image(tacs):
    """Image (NVOX, 6, 1, n_frames): column i < 5 region i, column 5 the reference."""
    cr, ct = tacs
    pc = (0.15 * ct[3, -1] / noise_sd(ct[3], FRAMES, 1.0)[-1]) ** 2
    rng = np.random.default_rng(7)
    img = np.empty((NVOX, 6, 1, FRAMES.n))
    for i in range(5):
        sd = noise_sd(ct[i], FRAMES, pc)
        img[:, i, 0] = ct[i] + sd * rng.standard_normal((NVOX, FRAMES.n))
    img[:, 5, 0] = cr
    ref = np.zeros(img.shape[:3], bool)
    ref[:, 5] = True
    return img, ref


def _region_bias(ds):
    bp = ds["BPND"].values[:, :5, 0]
    return 100 * (np.nanmean(bp, axis=0) / BPS - 1), 100 * np.nanstd(bp, axis=0) / BPS


@pytest.mark.parametrize("k2prime", ["coupled", "srtm"])
def test_two_step_voxel_bias_within_5_percent(noisy_image, k2prime):
    """Regional mean of voxel BPND within 5 % of the truth at 15 % voxel noise.

    Tolerance: the requirement (5 %). The statistical error of a mean over 300 voxels with a
    voxel SD of 4-8 % is below 0.5 %, and k2' pooled over 1,500 voxels is within ~5 % of its
    truth, which moves BPND by about as much times (1 + BPND)/BPND at worst for BPND 0.5.
    """
    img, ref = noisy_image
    ds = sv2a.parametric_maps(img, "srtm", reference=ref, mask=~ref, frames=FRAMES,
                              k2prime=k2prime, warn=False)
    bias, sd = _region_bias(ds)
    assert np.all(np.abs(bias) < 5.0), (bias, sd)
    assert abs(ds.attrs["k2prime_used"] / K2P - 1) < 0.06
    assert np.all(ds["k2prime"].values[~ref] == ds.attrs["k2prime_used"])
    r1 = ds["R1"].values[:, :5, 0]
    assert np.all(np.abs(np.nanmean(r1, axis=0) / R1S - 1) < 0.05)


def test_two_step_is_less_noisy_than_plain_srtm(noisy_image):
    """The refit with k2' fixed has a smaller voxel SD of BPND in every region (2 free
    parameters instead of 3; Wu & Carson 2002 report about half)."""
    img, ref = noisy_image
    plain = sv2a.parametric_maps(img, "srtm", reference=ref, mask=~ref, frames=FRAMES,
                                 warn=False)
    two = sv2a.parametric_maps(img, "srtm", reference=ref, mask=~ref, frames=FRAMES,
                               k2prime="coupled", warn=False)
    assert np.all(_region_bias(two)[1] < _region_bias(plain)[1])
    assert "k2prime_used" not in plain.attrs                    # k2' free for every voxel
    assert np.nanstd(plain["k2prime"].values[~ref]) > 0


@pytest.mark.parametrize("method", ["basis", "nonlinear"])
def test_two_step_noise_free_recovers_truth(tacs, method):
    """With the true k2' given, noise-free TACs give BPND and R1 to 3e-3 and the TACs to 5e-3:
    the reference is continued linearly between frame mid-times, not by its exact curve
    (plain SRTM differs from the truth by as much on these TACs)."""
    cr, ct = tacs
    solver = SRTM(ModelInputs(frames=FRAMES, weights=np.ones(FRAMES.n), reference=cr),
                  SRTMOptions(k2prime=K2P, method=method))
    out = solver.solve(ct, se=True)
    np.testing.assert_allclose(out["BPND"], BPS, rtol=3e-3)
    np.testing.assert_allclose(out["R1"], R1S, rtol=3e-3)
    np.testing.assert_allclose(out["k2"], R1S * K2P, rtol=3e-3)
    np.testing.assert_allclose(out["k2prime"], K2P)
    assert np.all(out["k2prime_se"] == 0) and np.all(np.isfinite(out["BPND_se"]))
    assert solver.n_fitted == 2
    np.testing.assert_allclose(solver.predict(out), ct, rtol=5e-3)


def test_regional_fit_equals_voxel_maps(tacs):
    """An image whose voxels carry their region's TAC: the same pooled k2' (region volumes as
    row weights vs one row per voxel) and the same BPND at both scales (to 1e-6)."""
    cr, ct = tacs
    nvox = [3, 5, 2, 4, 6]
    labels = np.repeat(np.arange(1, 6), nvox)
    img = np.concatenate([ct[labels - 1], np.tile(cr, (4, 1))])[:, None, None, :]
    ref = np.zeros(img.shape[:3], bool)
    ref[-4:] = True
    tab = sv2a.tacs_from_arrays(np.vstack([ct, cr]), FRAMES.start, FRAMES.end,
                                ["r1", "r2", "r3", "r4", "r5", "ref"],
                                n_voxels=[*nvox, 4])
    res = sv2a.fit(tab, model="srtm", reference="ref", k2prime="coupled")
    maps = sv2a.parametric_maps(img, "srtm", reference=ref, mask=~ref, frames=FRAMES,
                                k2prime="coupled", warn=False)
    assert maps.attrs["k2prime_used"] == pytest.approx(res.attrs["k2prime_used"], rel=1e-6)
    np.testing.assert_allclose(maps["BPND"].values[~ref].ravel(),
                               res["BPND"].values[labels - 1], rtol=1e-5)
    pred = sv2a.models.regional.predict_fit(res, tab)
    np.testing.assert_allclose(pred, ct, rtol=5e-3)


def test_unresolved_or_bad_k2prime_is_refused(tacs):
    cr, _ = tacs
    inputs = ModelInputs(frames=FRAMES, weights=np.ones(FRAMES.n), reference=cr)
    for bad in ("coupled", -0.1, "fast"):
        with pytest.raises(ModelError, match="k2prime"):
            SRTM(inputs, SRTMOptions(k2prime=bad))  # type: ignore[arg-type]
