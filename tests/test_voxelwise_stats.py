"""Voxelwise group inference: loading maps, t maps, TFCE, permutation FWE, files, figures.

Expected values come from independent routes: scipy.stats t tests and statsmodels OLS per
voxel, TFCE of an isolated cube summed by hand, and brute-force maxima over the
rearrangements enumerated in the test. The null family-wise rate over 100s of images and the
power are in benchmarks/bench_voxelwise_stats.py.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

import sv2a.longitudinal as lg
from sv2a.atlas import Atlas
from sv2a.errors import DataError, DesignError, ShapeMismatchError, Sv2aWarning
from sv2a.io import write_json, write_nifti
from sv2a.parametric.accessor import map_filename

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
AFFINE[:3, 3] = [-10.0, -20.0, 4.0]


def smooth(rng, shape, sigma=1.0):
    x = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return x / x.std()


def make_maps(rng, shape=(12, 12, 6), n_per_arm=6, sd=0.05, effect=0.0, where=None,
              arms=("ketamine", "vehicle")):
    src, part = {}, {}
    for i in range(2 * n_per_arm):
        sub = f"{i:02d}"
        arm = arms[0] if i < n_per_arm else arms[1]
        bl = 2.0 * np.exp(0.1 * smooth(rng, shape))
        ch = sd * smooth(rng, shape)
        if effect and arm == arms[0]:
            ch = ch + np.where(where, np.log1p(effect), 0.0)
        src[(sub, "baseline")] = bl
        src[(sub, "24h")] = bl * np.exp(ch)
        part[sub] = arm
    return src, part


def write_study(root: Path, src, part, *, sidecar=None, extra=None):
    for (sub, ses), arr in src.items():
        d = root / f"sub-{sub}" / f"ses-{ses}" / "pet"
        side = {"Model": "SRTM2", "Parameter": "BPND"}
        side.update(sidecar or {})
        write_nifti(d / map_filename(f"sub-{sub}_ses-{ses}", "srtm2", "BPND"), arr, AFFINE,
                    sidecar=side)
    rows = [{"participant_id": f"sub-{s}", "arm": a, **(extra or {}).get(s, {})}
            for s, a in part.items()]
    tsv = root / "participants.tsv"
    pd.DataFrame(rows).to_csv(tsv, sep="\t", index=False)
    return tsv


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    rng = np.random.default_rng(7)
    src, part = make_maps(rng)
    root = tmp_path_factory.mktemp("out")
    ages = {s: {"age": 25 + 3 * i} for i, s in enumerate(part)}
    tsv = write_study(root, src, part, extra=ages)
    return root, tsv, src, part


# ------------------------------------------------------------------------------ loading
def test_load_maps_from_derivatives(study):
    root, tsv, src, part = study
    da = lg.load_maps(root, model="srtm2", param="BPND", participants=tsv)
    assert da.dims == ("subject", "session", "x", "y", "z")
    assert da["session"].values.tolist() == ["baseline", "24h"]
    assert da["arm"].values.tolist() == [part[s] for s in sorted(part)]
    assert "age" in da.coords
    np.testing.assert_allclose(np.asarray(da.attrs["affine"]).reshape(4, 4), AFFINE)
    # float32 storage in the NIfTI: relative error ~1e-7
    np.testing.assert_allclose(da.sel(subject="03", session="24h").values,
                               src[("03", "24h")], rtol=1e-6)
    assert da.attrs["missing"] == [] and da.attrs["excluded"] == []


def test_missing_maps_are_listed_or_raise(study, tmp_path):
    _root, _tsv, src, part = study
    src = {k: v for k, v in src.items() if k != ("02", "24h")}
    src = {k: v for k, v in src.items() if k[0] != "05"}
    tsv = write_study(tmp_path, src, part)
    with pytest.warns(Sv2aWarning, match="sub-02 ses-24h"):
        da = lg.load_maps(tmp_path, participants=tsv)
    assert da.attrs["missing"] == ["sub-02 ses-24h"]
    assert da.attrs["excluded"] == ["sub-05"]
    with pytest.raises(DataError, match="sub-02 ses-24h"):
        lg.load_maps(tmp_path, participants=tsv, missing="raise")
    # the subject without a follow-up is left out of the change test, and said so
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lg.voxelwise_change(da, arm="ketamine", n_perm=20, tfce=False, cluster_p=None)
    assert res.maps.attrs["n"] == {"ketamine": 4}
    assert any("sub-02" in e for e in res.maps.attrs["excluded"])


def test_grid_and_space_mismatch_name_both_files(study, tmp_path):
    _root, _tsv, src, part = study
    tsv = write_study(tmp_path, src, part)
    bad = tmp_path / "sub-03" / "ses-24h" / "pet" / map_filename("sub-03_ses-24h", "srtm2",
                                                                   "BPND")
    first = map_filename("sub-00_ses-24h", "srtm2", "BPND")
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.01  # 10 um: beyond the 1e-3 mm tolerance
    write_nifti(bad, src[("03", "24h")], shifted)
    with pytest.raises(ShapeMismatchError) as exc:
        lg.load_maps(tmp_path, participants=tsv)
    assert bad.name in str(exc.value) and first in str(exc.value)
    tiny = AFFINE.copy()
    tiny[0, 3] += 1e-4  # within tolerance
    write_nifti(bad, src[("03", "24h")], tiny)
    lg.load_maps(tmp_path, participants=tsv)
    write_nifti(bad, src[("03", "24h")][:, :, :5], AFFINE)
    with pytest.raises(ShapeMismatchError, match="shape"):
        lg.load_maps(tmp_path, participants=tsv)
    write_nifti(bad, src[("03", "24h")], AFFINE,
                sidecar={"Model": "SRTM2", "Space": "MNI152NLin2009cAsym"})
    write_json(bad.parent / bad.name.replace(".nii.gz", ".json"),
               {"Space": "MNI152NLin2009cAsym"})
    other = tmp_path / "sub-04" / "ses-24h" / "pet" / map_filename("sub-04_ses-24h", "srtm2",
                                                                     "BPND")
    write_json(other.parent / other.name.replace(".nii.gz", ".json"), {"Space": "phantom"})
    with pytest.raises(ShapeMismatchError, match="different spaces") as exc:
        lg.load_maps(tmp_path, participants=tsv)
    assert bad.name in str(exc.value) and other.name in str(exc.value)


# ------------------------------------------------------------------------------ t maps
def test_t_maps_match_scipy_and_statsmodels(study):
    import statsmodels.api as sm

    root, tsv, _src, _part = study
    da = lg.load_maps(root, participants=tsv)
    d = np.log(da.sel(session="24h").values.astype(float)) - np.log(
        da.sel(session="baseline").values.astype(float))
    ket = da["arm"].values == "ketamine"
    kw = dict(n_perm=20, tfce=False, cluster_p=None)
    # float32 maps: agreement to ~1e-5 in t
    r1 = lg.voxelwise_change(da, arm="ketamine", **kw)
    np.testing.assert_allclose(r1.maps["t"].values, stats.ttest_1samp(d[ket], 0).statistic,
                               atol=1e-4)
    np.testing.assert_allclose(r1.maps["p"].values, stats.ttest_1samp(d[ket], 0).pvalue,
                               atol=1e-5)
    r2 = lg.voxelwise_arm_contrast(da, arms=("ketamine", "vehicle"), **kw)
    ref = stats.ttest_ind(d[ket], d[~ket], equal_var=False)
    np.testing.assert_allclose(r2.maps["t"].values, ref.statistic, atol=1e-4)
    np.testing.assert_allclose(r2.maps["p"].values, ref.pvalue, atol=1e-5)
    r3 = lg.voxelwise_arm_contrast(da, arms=("ketamine", "vehicle"), welch=False, **kw)
    np.testing.assert_allclose(r3.maps["t"].values,
                               stats.ttest_ind(d[ket], d[~ket]).statistic, atol=1e-4)
    # z has the same tail probability as t
    np.testing.assert_allclose(stats.norm.sf(np.abs(r3.maps["z"].values)) * 2,
                               r3.maps["p"].values, rtol=1e-4)
    # formula: per-voxel statsmodels OLS at a few voxels
    r4 = lg.voxelwise_glm(da, "arm + age", contrast="age", **kw)
    assert r4.maps.attrs["design_columns"] == ["Intercept", "arm[T.vehicle]", "age"]
    X = sm.add_constant(np.column_stack([(~ket).astype(float), da["age"].values]))
    for ijk in [(0, 0, 0), (5, 7, 3), (11, 2, 5)]:
        fit = sm.OLS(d[(slice(None), *ijk)], X).fit()
        assert r4.maps["t"].values[ijk] == pytest.approx(fit.tvalues[2], abs=1e-4)
        assert r4.maps["effect"].values[ijk] == pytest.approx(fit.params[2], abs=1e-6)
    # cross-sectional response: log BPND at baseline ~ age
    r5 = lg.voxelwise_glm(da, "age", contrast={"age": 1.0}, response="log",
                          session="baseline", **kw)
    y = np.log(da.sel(session="baseline").values.astype(float))
    fit = sm.OLS(y[:, 5, 7, 3], sm.add_constant(da["age"].values.astype(float))).fit()
    assert r5.maps["t"].values[5, 7, 3] == pytest.approx(fit.tvalues[1], abs=1e-4)


# ------------------------------------------------------------------------------ TFCE
def test_tfce_of_an_isolated_cube_matches_the_sum():
    s = np.zeros((9, 9, 9))
    s[2:5, 2:5, 2:5] = 2.05  # 27 voxels
    s[7, 7, 7] = -1.0
    dh = 0.1
    got = lg.tfce(s, dh=dh)
    hs = dh * np.arange(1, 21)  # steps 0.1 ... 2.0 <= 2.05
    assert got[3, 3, 3] == pytest.approx(np.sum(27 ** 0.5 * hs ** 2 * dh), rel=1e-12)
    assert got[7, 7, 7] == pytest.approx(-np.sum(dh * np.arange(1, 11) ** 2 * dh ** 2))
    assert got[0, 0, 0] == 0.0


def test_tfce_connectivity_and_batching():
    s = np.zeros((6, 6, 6))
    s[1, 1, 1] = s[2, 2, 2] = 1.0  # touch at a corner: one cluster with 26-, two with 6-
    c26, c6 = lg.tfce(s, dh=0.5, connectivity=26), lg.tfce(s, dh=0.5, connectivity=6)
    assert c26[1, 1, 1] == pytest.approx(np.sqrt(2) * (0.25 + 1) * 0.5)
    assert c6[1, 1, 1] == pytest.approx(1 * (0.25 + 1) * 0.5)
    # batched computation (sorted, stacked volumes) equals one volume at a time
    from sv2a.longitudinal.voxelwise import _tfce_batch

    rng = np.random.default_rng(0)
    vols = np.maximum(np.stack([2 * smooth(rng, (8, 7, 5)) for _ in range(5)]), 0)
    batch = _tfce_batch(vols, 0.2, 0.5, 2.0, 26)
    for v, b in zip(vols, batch, strict=True):
        np.testing.assert_allclose(b, lg.tfce(v, dh=0.2, two_sided=False), rtol=1e-12)
    with pytest.raises(DesignError, match="connectivity"):
        lg.tfce(s, connectivity=8)


# ------------------------------------------------------------------------------ permutations
def test_fwe_p_equals_brute_force_over_enumerated_sign_flips():
    rng = np.random.default_rng(3)
    src, part = make_maps(rng, shape=(6, 5, 4), n_per_arm=5)
    da = lg.load_maps(src, participants=part)
    res = lg.voxelwise_change(da, arm="ketamine", n_perm=1000, cluster_threshold=2.0)
    assert res.maps.attrs["n_rearrangements"] == 32 and res.maps.attrs["exhaustive"]
    d = (np.log(da.sel(session="24h").values[:5].astype(float))
         - np.log(da.sel(session="baseline").values[:5].astype(float)))
    maxima, tfce_max, clu_max = [], [], []
    for bits in range(32):
        sgn = np.array([-1.0 if (bits >> j) & 1 else 1.0 for j in range(5)])
        t = stats.ttest_1samp(d * sgn[:, None, None, None], 0).statistic
        maxima.append(np.abs(t).max())
        tfce_max.append(np.abs(lg.tfce(t, dh=0.1)).max())
        sizes = [np.bincount(ndimage.label(sg * t >= 2.0, structure=np.ones((3, 3, 3)))[0]
                             .ravel())[1:].max(initial=0) for sg in (1, -1)]
        clu_max.append(max(sizes))
    t_obs = res.maps["t"].values
    expect = (np.array(maxima)[None] >= np.abs(t_obs).ravel()[:, None] - 1e-6).mean(axis=1)
    np.testing.assert_allclose(res.maps["pfwe"].values.ravel(), expect, atol=1e-7)
    tf = np.abs(res.maps["tfce"].values).ravel()
    expect = (np.array(tfce_max)[None] >= tf[:, None] - 1e-6).mean(axis=1)
    np.testing.assert_allclose(res.maps["tfcepfwe"].values.ravel(), expect, atol=1e-7)
    for row in res.clusters.itertuples():
        assert row.p_fwe == pytest.approx(np.mean(np.array(clu_max) >= row.size_vox))


def test_permutations_are_seeded():
    rng = np.random.default_rng(4)
    src, part = make_maps(rng, shape=(6, 6, 4))
    da = lg.load_maps(src, participants=part)
    kw = dict(arms=("ketamine", "vehicle"), n_perm=300, cluster_p=None)
    a = lg.voxelwise_arm_contrast(da, seed=1, **kw)
    b = lg.voxelwise_arm_contrast(da, seed=1, **kw)
    c = lg.voxelwise_arm_contrast(da, seed=2, **kw)
    np.testing.assert_array_equal(a.maps["tfcepfwe"].values, b.maps["tfcepfwe"].values)
    np.testing.assert_array_equal(a.null["max_t"], b.null["max_t"])
    assert not np.array_equal(a.null["max_t"], c.null["max_t"])
    g = lg.voxelwise_glm(da, "arm", contrast="arm[T.vehicle]", n_perm=100, seed=5,
                         cluster_p=None)
    g2 = lg.voxelwise_glm(da, "arm", contrast="arm[T.vehicle]", n_perm=100, seed=5,
                          cluster_p=None)
    np.testing.assert_array_equal(g.null["max_tfce"], g2.null["max_tfce"])


def test_null_family_wise_rate_is_controlled():
    # 40 null images, sign flipping with 100 rearrangements: an exact 5 % test per image, so
    # the count is Binomial(40, 0.05); <= 0.15 (6 images) fails by chance with p ~ 0.014
    rng = np.random.default_rng(11)
    hits = np.zeros(2)
    for i in range(40):
        src, part = make_maps(rng, shape=(10, 10, 6), n_per_arm=10)
        da = lg.load_maps(src, participants=part)
        res = lg.voxelwise_change(da, arm="ketamine", n_perm=100, seed=i, cluster_p=None)
        hits += [np.nanmin(res.maps["pfwe"].values) <= 0.05,
                 np.nanmin(res.maps["tfcepfwe"].values) <= 0.05]
    rate = hits / 40
    assert rate[0] <= 0.15 and rate[1] <= 0.15, rate


def test_planted_blob_is_detected_at_the_right_place():
    rng = np.random.default_rng(5)
    shape = (12, 12, 6)
    g = np.indices(shape)
    blob = ((g[0] - 4) ** 2 + (g[1] - 7) ** 2 + (g[2] - 3) ** 2) <= 2.0 ** 2
    src, part = make_maps(rng, shape=shape, n_per_arm=8, effect=-0.10, where=blob)
    da = lg.load_maps(src, participants=part, affine=AFFINE)
    labels = np.where(blob, 1, 2).astype(np.int32)
    atlas = Atlas(labels, {1: "Left-Hippocampus", 2: "rest"}, AFFINE)
    res = lg.voxelwise_change(da, arm="ketamine", n_perm=500, seed=0, atlas=atlas)
    m = res.maps
    assert np.nanmin(m["tfcepfwe"].values[blob]) < 0.05
    assert np.nanmin(m["pfwe"].values[blob]) < 0.05
    assert (m["t"].values[blob] < 0).all()
    # false positives outside the blob (1 voxel of dilation for smoothing) are rare
    outside = ~ndimage.binary_dilation(blob, iterations=2)
    assert np.mean(m["tfcepfwe"].values[outside] < 0.05) < 0.02
    top = res.clusters.iloc[0]
    assert top.p_fwe < 0.05 and top.sign == -1
    centre_mm = AFFINE @ np.array([4, 7, 3, 1.0])
    peak = np.array([top.peak_x_mm, top.peak_y_mm, top.peak_z_mm])
    assert np.linalg.norm(peak - centre_mm[:3]) <= 2 * 2.0 * np.sqrt(3)  # within 2 voxels
    assert top.region == "left_hippocampus"
    assert top.volume_ml == pytest.approx(top.size_vox * 8 / 1000)
    assert m.attrs["n"] == {"ketamine": 8}
    # effect: geometric-mean % change near -10 % in the blob (noise sd 5 %/sqrt(8))
    assert np.nanmean(m["effect"].values[blob]) == pytest.approx(-10.0, abs=3.0)


# ------------------------------------------------------------------------------ bad input
def test_bad_designs_raise_clear_errors(study):
    root, tsv, _src, _part = study
    da = lg.load_maps(root, participants=tsv)
    with pytest.raises(DesignError, match="'placebo' is not in the 'arm' column"):
        lg.voxelwise_change(da, arm="placebo")
    with pytest.raises(DesignError, match="arm 'placebo'"):
        lg.voxelwise_arm_contrast(da, arms=("ketamine", "placebo"))
    with pytest.raises(DesignError, match="not a column of the design matrix"):
        lg.voxelwise_glm(da, "arm", contrast="arm[T.placebo]")
    with pytest.raises(DesignError, match="Columns available"):
        lg.voxelwise_glm(da, "arm + weight", contrast="arm[T.vehicle]")
    with pytest.raises(DesignError, match="followup"):
        lg.voxelwise_change(da, followup="7d")
    one = {("01", "bl"): np.ones((3, 3, 3)), ("01", "fu"): np.ones((3, 3, 3)),
           ("02", "bl"): np.ones((3, 3, 3)), ("02", "fu"): np.ones((3, 3, 3))}
    small = lg.load_maps(one, participants={"01": "A", "02": "B"})
    with pytest.raises(DesignError, match="at least 2") as exc:
        lg.voxelwise_arm_contrast(small, arms=("A", "B"))
    assert "arm 'A'" in str(exc.value)
    with pytest.raises(DesignError, match="without an arm"):
        lg.load_maps(one, participants={"01": "A"})


# ------------------------------------------------------------------------------ outputs
def test_write_statmaps_and_figure(study, tmp_path):
    root, tsv, _src, _part = study
    da = lg.load_maps(root, participants=tsv)
    res = lg.voxelwise_arm_contrast(da, arms=("ketamine", "vehicle"), n_perm=100, seed=3,
                                    cluster_threshold=2.0)
    files = lg.write_statmaps(res, tmp_path / "group")
    names = {p.name for p in files}
    stem = "group_model-SRTM2_meas-BPND_contrast-ketaminevsvehicle"
    for stat in ("t", "z", "p", "pfwe", "tfce", "tfcepfwe", "clusterpfwe", "cluster"):
        assert f"{stem}_stat-{stat}_statmap.nii.gz" in names
    img = nib.load(tmp_path / "group" / f"{stem}_stat-t_statmap.nii.gz")
    np.testing.assert_allclose(img.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(img.dataobj), res.maps["t"].values)
    side = json.loads((tmp_path / "group" / f"{stem}_stat-tfcepfwe_statmap.json").read_text())
    assert side["n"] == {"ketamine": 6, "vehicle": 6}
    assert side["n_perm"] == 100 and side["seed"] == 3 and side["cluster_threshold"] == 2.0
    assert side["tfce_E"] == 0.5 and side["tfce_H"] == 2.0
    table = pd.read_csv(tmp_path / "group" / f"{stem}_clusters.tsv", sep="\t")
    assert len(table) == len(res.clusters)
    fig = lg.plot_stat_slices(res, correction="none", threshold=2.0)
    assert len(fig.axes) >= 2
    with pytest.raises(DesignError, match="correction"):
        lg.plot_stat_slices(res, correction="bonferroni")


def test_arms_scanned_at_different_follow_ups():
    # ketamine 24 h vs 7 d after dosing (the demo design): no subject has both follow-ups,
    # which is by design and not reported as missing maps
    rng = np.random.default_rng(9)
    src, part = make_maps(rng, shape=(6, 6, 4), n_per_arm=4, arms=("k24", "k7"))
    src = {(s, "7d" if part[s] == "k7" and ses == "24h" else ses): v
           for (s, ses), v in src.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        da = lg.load_maps(src, participants=part)
    assert da.attrs["missing"] == [] and da["session"].values.tolist() == ["baseline", "24h",
                                                                           "7d"]
    res = lg.voxelwise_arm_contrast(da, arms=("k24", "k7"), n_perm=50, cluster_p=None)
    assert res.maps.attrs["followup"] == "k24: 24h, k7: 7d"
    assert res.maps.attrs["n"] == {"k24": 4, "k7": 4}
    k24 = da["arm"].values == "k24"
    fu = np.where(k24[:, None, None, None], da.sel(session="24h").values,
                  da.sel(session="7d").values)
    d = np.log(fu / da.sel(session="baseline").values)
    ref = stats.ttest_ind(d[k24], d[~k24], equal_var=False)
    np.testing.assert_allclose(res.maps["t"].values, ref.statistic, atol=1e-4)
    with pytest.warns(Sv2aWarning, match="smallest attainable FWE p is 0.0625"):
        one = lg.voxelwise_change(da, arm="k7", n_perm=100, tfce=False, cluster_p=None)
    assert one.maps.attrs["followup"] == "7d" and one.maps.attrs["n_rearrangements"] == 16
    with pytest.raises(DesignError, match="2 follow-up sessions"):
        lg.voxelwise_change(da, n_perm=16)
