"""Group dataset, arm comparisons, mixed model, cross-sectional ANOVA, baseline dependence,
power and plots (sv2a.longitudinal). Statistics are checked against independent computations
(scipy / statsmodels formula API / brute force), not against stored numbers."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import optimize, stats

import sv2a.longitudinal as L
from sv2a.errors import DataError, DesignError, Sv2aWarning
from sv2a.models.result import build_result


def small_ds(seed=0, n=6, regions=("cortex", "hippocampus"), design="ketamine-rodent", **kw):
    return L.simulate_design(design, n_per_arm=n, seed=seed, regions=list(regions), **kw)


# --------------------------------------------------------------------------- collect

def test_collect_from_derivatives_roundtrip(tmp_path):
    ds = small_ds(seed=1, n=3)
    root = L.write_derivatives(ds, tmp_path / "deriv", model="SRTM2", atlas="phantom")
    got = L.collect(root, model="srtm2")
    assert got.sizes == ds.sizes
    assert list(got["session"].values) == ["baseline", "24h", "1w", "3w"]
    assert (got["arm"].values == ds["arm"].values).all()
    assert (got["context"].values == ds["context"].values).all()
    assert (got["treatment"].values == ds["treatment"].values).all()
    # TSV round trip: values identical to float precision
    np.testing.assert_allclose(got["BPND"].values, ds["BPND"].values, rtol=1e-12)
    assert got["converged"].values[np.isfinite(got["BPND"].values)].min() == 1.0
    assert got.attrs["model"] == "SRTM2" and got.attrs["atlas"] == "phantom"
    # NetCDF + tidy TSV
    nc = L.save(got, tmp_path / "group" / "group_model-SRTM2_kinpar.nc")
    back = L.load(nc)
    xr.testing.assert_allclose(back["BPND"], got["BPND"])
    assert (back["arm"].values == got["arm"].values).all()
    tidy = pd.read_csv(nc.with_suffix(".tsv"), sep="\t")
    assert {"participant_id", "session", "arm", "region", "BPND"} <= set(tidy.columns)
    assert tidy["participant_id"].str.startswith("sub-").all()
    assert len(tidy) == int(np.isfinite(got["BPND"].values).sum())
    fromtsv = L.load(nc.with_suffix(".tsv"))
    np.testing.assert_allclose(fromtsv["BPND"].sel(subject=got["subject"]).values,
                               got["BPND"].values, rtol=1e-12)


def test_collect_reads_names_with_other_entities(tmp_path):
    """trc-/run-/acq- before seg- (as BIDS orders them) do not hide the atlas; two runs of
    one session are refused, not merged."""
    ds = small_ds(seed=1, n=3)
    root = L.write_derivatives(ds, tmp_path / "deriv", model="SRTM2", atlas="phantom")
    files = sorted(root.glob("sub-*/**/*_kinpar.tsv"))
    for f in files:
        f.rename(f.with_name(f.name.replace("_seg-", "_trc-UCBJ_seg-")))
    got = L.collect(root, model="srtm2")
    assert got.attrs["atlas"] == "phantom"
    np.testing.assert_allclose(got["BPND"].values, ds["BPND"].values, rtol=1e-12)
    first = sorted(root.glob("sub-*/**/*_kinpar.tsv"))[0]
    twin = first.with_name(first.name.replace("_trc-UCBJ_", "_trc-UCBJ_run-2_"))
    twin.write_bytes(first.read_bytes())
    with pytest.raises(DataError, match="two kinpar files"):
        L.collect(root, model="srtm2")


def test_collect_refuses_one_arm_spelt_two_ways(tmp_path):
    ds = small_ds(seed=1, n=3)
    root = L.write_derivatives(ds, tmp_path / "deriv", model="SRTM2", atlas="phantom")
    part = pd.read_csv(root / "participants.tsv", sep="\t")
    first = part["arm"].iloc[0]
    part.loc[1, "arm"] = first.upper() + " "
    part.to_csv(root / "participants.tsv", sep="\t", index=False)
    with pytest.raises(DesignError, match="spells one arm in several ways"):
        L.collect(root, model="srtm2", participants=root / "participants.tsv")


def _fit(regions, bpnd, converged=True):
    n = len(regions)
    return build_result("srtm2", regions,
                        {"BPND": np.asarray(bpnd, float), "R1": np.ones(n),
                         "converged": np.full(n, converged), "message": np.full(n, "")},
                        attrs={"model": "srtm2"})


def test_collect_from_fit_datasets_with_covariates_and_sessions_table():
    regs = ["pcc", "hippocampus"]
    fits = {("sub-01", "ses-baseline"): _fit(regs, [3.0, 2.0]),
            ("sub-01", "ses-7d"): _fit(regs, [3.3, 2.2]),
            ("02", "baseline"): _fit(regs, [2.5, 1.5]),
            ("02", "24h"): _fit(regs, [2.6, 1.5], converged=False)}
    part = pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "arm": ["a7d", "a24h"],
                         "age": [30, 41], "sex": ["M", "n/a"]})
    sess = pd.DataFrame({"session_id": ["ses-baseline", "ses-24h", "ses-7d"],
                         "time_since_dose": [-1.0, 1440.0, 10080.0]})
    with pytest.warns(Sv2aWarning, match="only 1 subject"):
        ds = L.collect(fits, participants=part, sessions=sess)
    assert dict(ds.sizes) == {"subject": 2, "session": 3, "region": 2}
    assert list(ds["session"].values) == ["baseline", "24h", "7d"]
    assert ds["age"].dtype.kind == "f" and ds["age"].values.tolist() == [30.0, 41.0]
    assert ds["time_since_dose"].values.tolist() == [-1.0, 1440.0, 10080.0]
    assert ds["BPND"].sel(subject="01", session="7d").values.tolist() == [3.3, 2.2]
    assert np.isnan(ds["BPND"].sel(subject="01", session="24h").values).all()
    assert ds["converged"].sel(subject="02", session="24h").values.tolist() == [0.0, 0.0]
    assert "R1" in ds and "message" not in ds
    with pytest.warns(Sv2aWarning, match="only 1 subject"):
        only = L.collect(fits, participants=part, outcome="BPND")
    assert set(only.data_vars) == {"BPND", "converged"}


def test_session_order():
    assert L.session_order(["3w", "24h", "baseline", "1w"]) == ["baseline", "24h", "1w", "3w"]
    assert L.session_order(["post", "bl"]) == ["bl", "post"]


# --------------------------------------------------------------------------- bad input

def _two_subject_fits(s1=("baseline", "24h"), s2=("baseline", "24h")):
    regs = ["pcc"]
    fits = {("01", s): _fit(regs, [3.0 + i]) for i, s in enumerate(s1)}
    fits |= {("02", s): _fit(regs, [2.0 + i]) for i, s in enumerate(s2)}
    return fits


def test_subject_without_arm_is_an_error():
    fits = _two_subject_fits()
    with pytest.raises(DesignError, match="sub-02"):
        L.collect(fits, participants={"01": "a", "02": None})
    with pytest.raises(DesignError, match="sub-02"):
        L.collect(fits, participants=pd.DataFrame({"participant_id": ["sub-01"],
                                                   "arm": ["a"]}))
    with pytest.raises(DesignError, match="'arm' column"):
        L.collect(fits, participants=pd.DataFrame({"participant_id": ["sub-01", "sub-02"]}))
    # explicit exclusion is allowed and recorded
    with pytest.warns(Sv2aWarning, match="only 1 subject"):
        ds = L.collect(fits, participants={"01": "a"}, exclude=["sub-02"])
    assert "sub-02" in ds.attrs["excluded_by_user"]


def test_inconsistent_session_names():
    fits = _two_subject_fits(s1=("bl", "24h"), s2=("baseline", "24h"))
    with pytest.raises(DesignError, match="'baseline'.*|'bl'"):
        L.collect(fits, participants={"01": "a", "02": "a"})
    ds = L.collect(fits, participants={"01": "a", "02": "a"}, sessions={"bl": "baseline"})
    assert list(ds["session"].values) == ["baseline", "24h"]
    fits = _two_subject_fits(s1=("baseline", "1d"), s2=("baseline", "24h"))
    with pytest.raises(DesignError, match="1d"):
        L.collect(fits, participants={"01": "a", "02": "a"})


def test_missing_outcome_and_wrong_baseline():
    ds = small_ds(n=3)
    with pytest.raises(DataError, match="SUVR"):
        L.compare_arms(ds, outcome="SUVR")
    with pytest.raises(DataError, match="available"):
        L.collect(_two_subject_fits(), participants={"01": "a", "02": "a"}, outcome="VT")
    ren = ds.assign_coords(session=["bl", "24h", "1w", "3w"])
    with pytest.raises(DesignError, match="baseline='bl'"):
        L.compare_arms(ren, baseline="baseline")


def test_subject_missing_baseline_is_excluded_loudly():
    ds = small_ds(seed=3, n=4)
    full = L.compare_arms(ds, n_boot=0)
    ds["BPND"].loc[{"subject": "01", "session": "baseline"}] = np.nan
    arm01 = str(ds["arm"].sel(subject="01").values)
    with pytest.warns(Sv2aWarning, match="sub-01"):
        t = L.compare_arms(ds, n_boot=0)
    assert t.attrs["excluded"] == {"sub-01": "no baseline session"}
    rows = t[t["arm"] == arm01]
    assert rows["excluded"].str.contains("sub-01").all()
    assert (rows["n"].to_numpy() == full[full["arm"] == arm01]["n"].to_numpy() - 1).all()


def test_arm_with_one_subject_gives_rows_without_statistics():
    ds = small_ds(seed=4, n=3)
    keep = [s for s, a in zip(ds.subject.values, ds.arm.values, strict=True)
            if a != "stress_single"] + [ds.subject.values[ds.arm.values == "stress_single"][0]]
    one = ds.sel(subject=sorted(keep))
    with pytest.warns(Sv2aWarning, match="fewer than 2"):
        t = L.compare_arms(one, n_boot=0)
    r = t[t["arm"] == "stress_single"]
    assert (r["n"] == 1).all() and r["p_within"].isna().all()
    assert r["note"].str.contains("n < 2").all()


def test_non_converged_values_are_masked_with_warning():
    ds = small_ds(seed=5, n=4)
    ds["converged"].loc[{"subject": "02", "session": "3w", "region": "cortex"}] = 0.0
    with pytest.warns(Sv2aWarning, match="non-converged"):
        t = L.compare_arms(ds, n_boot=0)
    row = t[(t.arm == str(ds.arm.sel(subject="02").values)) & (t.session == "3w")
            & (t.region == "cortex")]
    assert "sub-02 (no 3w)" in row["excluded"].iloc[0]
    t2 = L.compare_arms(ds, n_boot=0, require_converged=False)
    assert t2["n"].sum() == t["n"].sum() + 1


# --------------------------------------------------------------------------- statistics

def test_compare_arms_matches_independent_computations():
    ds = small_ds(seed=7, n=5, regions=("cortex", "hippocampus", "striatum"))
    t = L.compare_arms(ds, "BPND", n_boot=500, seed=1, reference_arm="control_vehicle")
    assert t.attrs["reference_arm"] == "control_vehicle"
    assert len(t) == 6 * 3 * 3  # arms x follow-ups x regions
    r = t[(t.arm == "stress_repeated") & (t.session == "3w")
          & (t.region == "hippocampus")].iloc[0]
    m = ds["arm"].values == "stress_repeated"
    y0 = ds["BPND"].sel(session="baseline", region="hippocampus").values[m]
    y1 = ds["BPND"].sel(session="3w", region="hippocampus").values[m]
    pct = 100 * (y1 / y0 - 1)
    assert r["n"] == m.sum()
    assert r["mean_pct_change"] == pytest.approx(pct.mean(), rel=1e-12)
    assert r["median_pct_change"] == pytest.approx(np.median(pct), rel=1e-12)
    ci = stats.ttest_1samp(pct, 0).confidence_interval(0.95)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert r["p_within"] == pytest.approx(stats.ttest_rel(np.log(y1), np.log(y0)).pvalue,
                                          rel=1e-10)
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon(np.log(y1 / y0)).pvalue)
    assert r["boot_ci_low"] < pct.mean() < r["boot_ci_high"]
    # BH / Holm across the 3 regions of this arm x session (statsmodels reference)
    from statsmodels.stats.multitest import multipletests
    fam = t[(t.arm == "stress_repeated") & (t.session == "3w")]
    np.testing.assert_allclose(fam["q_within"], multipletests(fam["p_within"], method="fdr_bh")[1])
    np.testing.assert_allclose(fam["p_holm"], multipletests(fam["p_within"], method="holm")[1])
    # ANCOVA via the statsmodels formula API (independent path) and Welch via scipy
    import statsmodels.formula.api as smf
    mv = ds["arm"].values == "control_vehicle"
    df = pd.DataFrame({
        "post": np.log(np.r_[y1, ds["BPND"].sel(session="3w", region="hippocampus").values[mv]]),
        "pre": np.log(np.r_[y0, ds["BPND"].sel(session="baseline",
                                                region="hippocampus").values[mv]]),
        "arm": ["stress_repeated"] * m.sum() + ["control_vehicle"] * mv.sum()})
    term = "C(arm, Treatment('control_vehicle'))[T.stress_repeated]"
    f = smf.ols("post ~ pre + C(arm, Treatment('control_vehicle'))", df).fit()
    b = f.params[term]
    assert r["ancova_pct_diff"] == pytest.approx(100 * np.expm1(b), rel=1e-8)
    assert r["p_ancova"] == pytest.approx(f.pvalues[term], rel=1e-8)
    pv = 100 * (np.exp(df.post - df.pre) - 1)[df.arm == "control_vehicle"]
    assert r["p_welch"] == pytest.approx(stats.ttest_ind(pct, pv, equal_var=False).pvalue)
    assert r["welch_diff_pp"] == pytest.approx(pct.mean() - pv.mean())
    # Hedges g_z with a brute-force non-central-t CI
    d = np.log(y1 / y0)
    n = len(d)
    tt = d.mean() / (d.std(ddof=1) / np.sqrt(n))
    J = 1 - 3 / (4 * (n - 1) - 1)
    assert r["hedges_g"] == pytest.approx(J * tt / np.sqrt(n))
    lo = optimize.brentq(lambda nc: stats.nct.cdf(tt, n - 1, nc) - 0.975, -50, 50)
    hi = optimize.brentq(lambda nc: stats.nct.cdf(tt, n - 1, nc) - 0.025, -50, 50)
    assert (r["g_ci_low"], r["g_ci_high"]) == pytest.approx(
        (J * lo / np.sqrt(n), J * hi / np.sqrt(n)), rel=1e-5)
    # reference arm rows carry no contrast
    assert t[t.arm == "control_vehicle"]["p_ancova"].isna().all()


def test_noise_free_change_recovered_exactly():
    ds = small_ds(seed=8, n=4)
    base = ds["BPND"].sel(session="baseline")
    wiggle = np.exp(0.01 * np.where(np.arange(ds.sizes["subject"]) % 2, 1, -1))[:, None]
    for s, f in (("24h", 1.0), ("1w", 1.04), ("3w", 1.11)):
        ds["BPND"].loc[{"session": s}] = base.values * f * wiggle
    t = L.compare_arms(ds, n_boot=0)
    for s, f in (("24h", 0.0), ("1w", 4.0), ("3w", 11.0)):
        np.testing.assert_allclose(t[t.session == s]["geo_pct_change"], f, atol=1e-9)


def test_minimal_detectable_effect_gives_80_percent_power():
    for n, sd in ((6, 7.0), (12, 8.0), (5, 10.0)):
        mde = L.minimal_detectable_effect(n, sd, scale="percent")
        tc = stats.t.ppf(0.975, n - 1)
        nc = mde / sd * np.sqrt(n)
        power = stats.nct.sf(tc, n - 1, nc) + stats.nct.cdf(-tc, n - 1, nc)
        assert power == pytest.approx(0.8, abs=1e-4)
    # test-retest SD ~7 % ([11C]UCB-J, Finnema 2018), 5-6 subjects per arm -> ~10-12 % detectable
    assert 9.5 < L.minimal_detectable_effect(6, 7.0, scale="percent") < 12.5
    assert L.required_n(10.0, 0.07) >= 7


def test_mixed_model_matches_formula_interface_and_recovers_effect():
    import statsmodels.formula.api as smf
    # the stressed animals of the factorial design, treatment as the arm (vehicle reference)
    ds = L.simulate_design("ketamine-rodent", n_per_arm=40, seed=11, regions=["cortex"])
    ds = ds.sel(subject=ds.context == "stress")
    ds = ds.assign_coords(arm=ds.treatment).drop_vars(["context", "treatment"])
    mm = L.mixed_model(ds, "BPND", regions=["cortex"], composite=False)
    long = ds["BPND"].to_dataframe().reset_index()
    long["ly"] = np.log(long["BPND"])
    f = smf.mixedlm("ly ~ C(arm, Treatment('vehicle')) * C(session, Treatment('baseline'))",
                    long, groups=long["subject"]).fit(reml=True)
    ref = f.params["C(session, Treatment('baseline'))[T.3w]"]
    inter = f.params["C(arm, Treatment('vehicle'))[T.repeated]:"
                     "C(session, Treatment('baseline'))[T.3w]"]
    got = mm[(mm.arm == "vehicle") & (mm.session == "3w") & (mm.contrast == "change")]
    assert got["estimate"].iloc[0] == pytest.approx(ref, abs=1e-4)
    got = mm[(mm.arm == "repeated") & (mm.session == "3w") & (mm.contrast == "vs vehicle")]
    assert got["estimate"].iloc[0] == pytest.approx(inter, abs=1e-4)
    # truth +11 %: 40 animals, test-retest SD 8 % -> SE ~1.3 pp; 4 pp is ~3 SE
    ch = mm[(mm.arm == "repeated") & (mm.session == "3w") & (mm.contrast == "change")]
    assert ch["pct_change"].iloc[0] == pytest.approx(11.0, abs=4.0)
    assert ch["pct_ci_low"].iloc[0] < ch["pct_change"].iloc[0] < ch["pct_ci_high"].iloc[0]
    joint = mm[mm.contrast.str.startswith("arm x session")]
    assert len(joint) == 1 and joint["p"].iloc[0] < 0.01


def test_mixed_model_with_arms_at_different_sessions_and_missing_baseline():
    ds = L.simulate_design("ketamine-human", n_per_arm=6, seed=2,
                           regions=["posterior_cingulate", "insula"])
    ds["BPND"].loc[{"subject": "01", "session": "baseline"}] = np.nan
    mm = L.mixed_model(ds, "BPND")
    assert set(mm["region"]) == {"all_regions", "posterior_cingulate", "insula"}
    c = mm[(mm.contrast == "vs single_24h")]
    assert len(c) == 3 and (c["session"] == "7d").all()
    assert mm["n_subjects"].max() == 12  # sub-01 still contributes its follow-up


def test_cross_sectional_design_is_detected_and_recovers_effects():
    ds = L.simulate_design("ketamine-rodent", n_per_arm=30, seed=5, cross_sectional=True,
                           regions=["cortex", "striatum"])
    # treatment as the arm, context as the second factor of the two-way ANOVA
    ds = ds.assign_coords(arm=ds.treatment, group=ds.context)
    with pytest.warns(Sv2aWarning, match="cross-sectional"):
        t = L.compare_arms(ds, "BPND")
    assert t.attrs["design"] == "cross-sectional"
    # stress -10 % at every time point (-6.7 % on average over the treatments at 3 w, where
    # repeated ketamine restores the stressed animals): context detected everywhere
    assert (t.drop_duplicates(["session", "region"])["p_group"] < 0.01).all()
    stress = ds.sel(subject=ds.group == "stress")
    with pytest.warns(Sv2aWarning, match="cross-sectional"):
        ts = L.compare_arms(stress, "BPND")
    r = ts[(ts.arm == "repeated") & (ts.session == "3w") & (ts.region == "cortex")].iloc[0]
    # SE of the log difference ~ sqrt(0.1^2+0.057^2) * sqrt(2/30) ~ 3.0 %
    assert r["mean_pct_change"] == pytest.approx(11.0, abs=7.5)
    assert r["p_between"] < 0.05
    # one-way case equals scipy's f_oneway
    one = L.cross_sectional_anova(ds.sel(subject=ds.group == "control"), "BPND", group=None)
    sel = ds.sel(subject=ds.group == "control")
    y = sel["BPND"].sel(session="1w", region="striatum").values
    groups = [np.log(y[(sel.arm == a).values & np.isfinite(y)]) for a in ("vehicle", "single",
                                                                          "repeated")]
    row = one[(one.session == "1w") & (one.region == "striatum")].iloc[0]
    assert row["F_arm"] == pytest.approx(stats.f_oneway(*groups).statistic, rel=1e-8)


def test_baseline_dependence_regression_to_the_mean():
    # no true dependence; large scan noise -> naive slope negative, Oldham r ~ 0,
    # and the test-retest null explains the naive slope
    naive, oldham, p_null = [], [], []
    for seed in range(40):
        ds = L.simulate_design("null", n_per_arm=20, seed=seed, trt_sd=0.15, test_retest_arm=20,
                               regions=["frontal_cortex"])
        bd = L.baseline_dependence(ds, "BPND")
        r = bd[bd.arm == "A"].iloc[0]
        naive.append(r["slope_naive"]), oldham.append(r["oldham_r"])
        p_null.append(r["p_vs_null"])
    # expected naive slope -s_w^2/var(x0) = -(0.15^2/2)/(0.12^2+0.15^2/2) ~ -0.44
    assert np.mean(naive) == pytest.approx(-0.44, abs=0.1)
    assert abs(np.mean(oldham)) < 0.1
    assert np.mean(np.asarray(p_null) < 0.05) <= 0.15
    # true dependence: low-baseline subjects gain more
    ds = L.simulate_design("null", n_per_arm=30, seed=1, trt_sd=0.02, regions=["insula"])
    x0 = np.log(ds["BPND"].sel(session="baseline"))
    ds["BPND"].loc[{"session": "followup"}] = np.exp(x0 - 0.5 * (x0 - x0.mean()))
    bd = L.baseline_dependence(ds, "BPND", retest_arm=None)
    assert (bd["oldham_r"] < -0.9).all() and (bd["oldham_p"] < 1e-6).all()


# --------------------------------------------------------------------------- plots

def _is_png(p):
    return p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000


def test_plots_written(tmp_path):
    ds = small_ds(seed=9, n=4)
    t = L.compare_arms(ds, n_boot=0)
    assert _is_png(L.plot_spaghetti(ds, tmp_path / "spaghetti.png", "BPND"))
    assert _is_png(L.plot_spaghetti(ds, tmp_path / "rel.png", "BPND", relative=True,
                                    baseline="baseline", regions=["cortex"]))
    assert _is_png(L.plot_forest(t, tmp_path / "forest.png"))
    tsv = L.write_table(t, tmp_path / "group_model-SIM_meas-BPND_comparison.tsv")
    back = pd.read_csv(tsv, sep="\t", na_values="n/a")
    assert len(back) == len(t) and "q_within" in back
    assert f'"reference_arm": "{t.attrs["reference_arm"]}"' in tsv.with_suffix(".json").read_text()
    svg = L.plot_forest(t, tmp_path / "forest.svg")
    assert b"<svg" in svg.read_bytes()[:500]


def test_change_maps_from_nifti(tmp_path):
    rng = np.random.default_rng(0)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    maps, arms = {}, {}
    for i, (arm, f) in enumerate([("a", 1.1), ("a", 1.1), ("b", 0.95)]):
        sub = f"0{i + 1}"
        arms[sub] = arm
        pre = rng.uniform(1, 4, (8, 9, 7))
        for ses, v in (("baseline", pre), ("24h", pre * f)):
            p = tmp_path / f"sub-{sub}_ses-{ses}_BPND.nii.gz"
            nib.save(nib.Nifti1Image(v.astype(np.float32), aff), str(p))
            maps[(f"sub-{sub}", f"ses-{ses}")] = p
    means, affine, counts = L.mean_change_maps(maps, arms, "baseline")
    np.testing.assert_allclose(means[("a", "24h")], 10.0, atol=1e-4)  # float32 storage
    np.testing.assert_allclose(means[("b", "24h")], -5.0, atol=1e-4)
    assert counts[("a", "24h")] == 2 and np.allclose(affine, aff)
    out = L.plot_change_maps(maps, arms, tmp_path / "maps.png", "baseline",
                             nifti_dir=tmp_path / "maps")
    assert _is_png(out)
    img = nib.load(str(tmp_path / "maps" / "arm-a_ses-24h_meas-pctchange_map.nii.gz"))
    assert np.allclose(img.affine, aff)
    with pytest.raises(DesignError, match="without an arm"):
        L.mean_change_maps(maps, {"01": "a"}, "baseline")


def test_tidy_roundtrip():
    ds = small_ds(seed=10, n=2)
    back = L.from_tidy(L.to_tidy(ds))
    np.testing.assert_allclose(back["BPND"].sel(subject=ds.subject, session=ds.session,
                                                region=ds.region).values, ds["BPND"].values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (back["arm"].sel(subject=ds.subject).values == ds["arm"].values).all()


def test_options_the_analysis_would_ignore_are_refused(tmp_path):
    ds = small_ds(seed=2, n=4, regions=("cortex",))
    with pytest.raises(DesignError, match="design must be"):
        L.compare_arms(ds, design="longitudinally")
    with pytest.raises(DesignError, match="group="):
        L.compare_arms(ds, n_boot=0, group="group")
    cross = small_ds(seed=3, n=4, regions=("cortex",), cross_sectional=True)
    with pytest.raises(DesignError, match="covariates"):
        L.compare_arms(cross, covariates=["group"])
    with pytest.raises(ValueError, match="n2"):
        L.minimal_detectable_effect(6, 0.07, n2=8)
    with pytest.raises(DesignError, match="baseline"):
        L.plot_spaghetti(ds, tmp_path / "x.png", baseline="nope")
    with pytest.raises(DesignError, match="arms"):
        L.plot_spaghetti(ds, tmp_path / "x.png", arms=["nope"])
    # the shared helpers live in one module that the analyses import (no cycle)
    from sv2a.longitudinal import _stats, compare, crosssectional

    assert compare.adjust_pvalues is _stats.adjust_pvalues
    assert crosssectional.hedges_g_ci is _stats.hedges_g_ci
