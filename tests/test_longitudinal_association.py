"""Scores (BIDS phenotype / participants / sessions), brain-behaviour association and response
prediction (sv2a.longitudinal.load_scores / associate / predict_response).

Correlations are checked against scipy and statsmodels (independent implementations), the
logistic fit against statsmodels Logit, and the statistics by simulation: null rejection
rate and CI coverage of the correlation, cross-validated AUC centred on 0.5 without signal.
Datasets are built here with numpy, independent of the phantom."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
import xarray as xr
from scipy import stats

import sv2a.longitudinal as L
from sv2a.errors import DataError, DesignError, Sv2aWarning
from sv2a.longitudinal.predict import _fit_batch


def assoc_ds(seed=0, n=30, rho=0.0, regions=1, arms=("a", "b")):
    """Log change of BPND (SD 5 %) and a score, bivariate normal with correlation rho."""
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(n, regions))
    bl = np.exp(rng.normal(1, 0.1, (n, regions)))
    fu = bl * np.exp(0.05 * z[..., 0])
    subs = [f"{i:02d}" for i in range(n)]
    ds = xr.Dataset({"BPND": (("subject", "session", "region"), np.stack([bl, fu], 1))},
                    coords={"subject": subs, "session": ["baseline", "3w"],
                            "region": [f"r{k}" for k in range(regions)],
                            "arm": ("subject", np.resize(np.repeat(arms, n // len(arms)), n)),
                            "age": ("subject", rng.normal(40, 8, n))})
    scores = pd.DataFrame({"participant_id": ["sub-" + s for s in subs],
                           "sucrose_preference": z[:, 0, 1]})
    return ds, scores


# --------------------------------------------------------------------------- scores

def _bids(tmp_path):
    (tmp_path / "participants.tsv").write_text(
        "participant_id\tarm\tage\nsub-01\tketamine\t34\nsub-02\tplacebo\t41\n"
        "sub-03\tketamine\tn/a\n")
    (tmp_path / "sub-01").mkdir()
    (tmp_path / "sub-01" / "sub-01_sessions.tsv").write_text(
        "session_id\ttime_since_dose\nses-baseline\tn/a\nses-24h\t24\n")
    ph = tmp_path / "phenotype"
    ph.mkdir()
    (ph / "madrs.tsv").write_text(
        "participant_id\tsession_id\tmadrs\nsub-01\tses-baseline\t30\nsub-01\tses-24h\t12\n"
        "sub-02\tses-baseline\t28\nsub-02\tses-24h\t25\n")
    (ph / "madrs.json").write_text(json.dumps(
        {"madrs": {"Description": "MADRS total", "Units": "points"}}))
    (ph / "spt.tsv").write_text("participant_id\tsucrose_preference\nsub-01\t0.81\n"
                                "sub-02\t0.64\nsub-03\t0.70\n")
    return tmp_path


def test_load_scores_reads_participants_sessions_and_phenotype(tmp_path):
    s = L.load_scores(_bids(tmp_path))
    assert s.attrs["levels"] == {"arm": "subject", "age": "subject", "time_since_dose":
                                 "session", "madrs": "session", "sucrose_preference": "subject"}
    assert s.attrs["descriptions"]["madrs"]["Units"] == "points"
    assert s.attrs["sources"]["madrs"].endswith("phenotype/madrs.tsv")
    m = L.score_values(s, "madrs")
    assert m.loc["02", "24h"] == 25.0 and m.loc["01", "baseline"] == 30.0
    sp = L.score_values(s, "sucrose_preference")
    assert sp.to_dict() == {"01": 0.81, "02": 0.64, "03": 0.70}
    assert "03" not in L.score_values(s, "age").index  # n/a: not a value
    with pytest.raises(DataError, match="'mood'.*madrs"):
        L.score_values(s, "mood")


def test_load_scores_refuses_typos_and_duplicates(tmp_path):
    root = _bids(tmp_path)
    (root / "phenotype" / "spt.tsv").write_text(
        "participant_id\tsucrose_preference\nsub-01\t0.81\nsub-02\t0,64\nsub-03\t0.70\n")
    with pytest.raises(DataError, match=r"spt.tsv, column 'sucrose_preference'.*0,64.*line"):
        L.load_scores(root)
    (root / "phenotype" / "spt.tsv").write_text(
        "participant_id\tsucrose_preference\nsub-01\t0.81\nsub-01\t0.6\n")
    with pytest.raises(DataError, match="repeated"):
        L.load_scores(root)


# --------------------------------------------------------------------------- associate

def test_pearson_spearman_partial_match_scipy_and_statsmodels():
    ds, sc = assoc_ds(1, rho=0.5)
    data = L.association_data(ds, sc, score="sucrose_preference")
    x, y = data["x"].to_numpy(), data["y"].to_numpy()
    p = L.associate(ds, sc, score="sucrose_preference").iloc[0]
    ref = stats.pearsonr(x, y)
    assert p["r"] == pytest.approx(ref.statistic, abs=1e-12)
    assert p["p"] == pytest.approx(ref.pvalue, rel=1e-8)
    ci = ref.confidence_interval(0.95)  # Fisher z in scipy as well
    assert (p["ci_low"], p["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-10)
    slope = smf.ols("y ~ x", data).fit()
    assert p["slope"] == pytest.approx(slope.params["x"], rel=1e-10)
    s = L.associate(ds, sc, score="sucrose_preference", method="spearman", n_boot=500).iloc[0]
    ref_s = stats.spearmanr(x, y)
    assert s["r"] == pytest.approx(ref_s.statistic, abs=1e-12)
    assert s["p"] == pytest.approx(ref_s.pvalue, rel=1e-6)
    assert s["ci_low"] < s["r"] < s["ci_high"]
    # partial r from the t of x in y ~ x + age + arm: r = t / sqrt(t^2 + df)
    q = L.associate(ds, sc, score="sucrose_preference", method="partial",
                    covariates=["age"]).iloc[0]
    data["age"] = ds["age"].values
    fit = smf.ols("y ~ x + age + C(arm)", data).fit()
    t = fit.tvalues["x"]
    assert q["r"] == pytest.approx(t / np.sqrt(t * t + fit.df_resid), abs=1e-10)
    assert q["p"] == pytest.approx(fit.pvalues["x"], rel=1e-8)
    assert q["adjusted_for"] == "age, arm[b]"
    with pytest.raises(DesignError, match="partial"):
        L.associate(ds, sc, score="sucrose_preference", covariates=["age"])


def test_by_arm_score_change_exclusions_and_plot(tmp_path):
    ds, _ = assoc_ds(2, n=12, regions=2)
    subs = [str(s) for s in ds["subject"].values]
    rows = [{"participant_id": "sub-" + s, "session_id": ses, "madrs": v}
            for i, s in enumerate(subs) for ses, v in (("ses-baseline", 30.0 + i),
                                                       ("ses-3w", 20.0 + 2 * i))
            if s != "00"]
    sc = pd.DataFrame(rows)
    with pytest.warns(Sv2aWarning, match="sub-00"):
        t = L.associate(ds, sc, score="madrs", by_arm=True)
    assert len(t) == 4 and set(t["arm"]) == {"a", "b"}
    assert sorted(t["n"]) == [5, 5, 6, 6]  # sub-00 (arm a) has no score
    assert "sub-00: no 'madrs' value change" in t["excluded"].iloc[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Sv2aWarning)
        data = L.association_data(ds, sc, score="madrs")
    # score change = follow-up minus baseline (20 + 2i - 30 - i = i - 10)
    d1 = data[(data.subject == "05") & (data.region == "r0")]
    assert d1["y"].iloc[0] == pytest.approx(-5.0)
    fig = L.plot_association(data, region="r1", path=tmp_path / "assoc.png")
    assert (tmp_path / "assoc.png").stat().st_size > 1000
    assert "% change" in fig.axes[0].get_xlabel()


def test_association_bad_input():
    ds, sc = assoc_ds(3, n=10)
    extra = pd.concat([sc, pd.DataFrame({"participant_id": ["sub-99"],
                                         "sucrose_preference": [0.5]})])
    with pytest.raises(DataError, match="sub-99.*unknown_subjects='exclude'"):
        L.associate(ds, extra, score="sucrose_preference")
    with pytest.warns(Sv2aWarning, match="sub-99"):
        t = L.associate(ds, extra, score="sucrose_preference", unknown_subjects="exclude")
    assert t.attrs["unknown_subjects"] == ["sub-99"]
    text = sc.assign(sucrose_preference=["high", "low"] * 5)
    with pytest.raises(DataError, match="not numeric"):
        L.associate(ds, text, score="sucrose_preference")
    with pytest.raises(DesignError, match="baseline session 'pre'"):
        L.associate(ds, sc, score="sucrose_preference", baseline="pre")


def test_association_null_rate_and_coverage():
    # 200 replicates each: binomial SD 0.015 at 0.05 (band 0.02-0.09 is > 2 SD) and 0.015 at
    # 0.95 coverage; the benchmark runs 400 replicates against 0.03-0.07.
    rej, cover = [], []
    for seed in range(200):
        ds, sc = assoc_ds(seed)
        rej.append(L.associate(ds, sc, score="sucrose_preference")["p"].iloc[0] < 0.05)
        ds, sc = assoc_ds(10_000 + seed, rho=0.5)
        r = L.associate(ds, sc, score="sucrose_preference").iloc[0]
        cover.append(r["ci_low"] <= 0.5 <= r["ci_high"])
    assert 0.02 <= np.mean(rej) <= 0.09, np.mean(rej)
    assert np.mean(cover) >= 0.90, np.mean(cover)


# --------------------------------------------------------------------------- prediction

def pred_ds(seed=0, n=40, regions=3, effect=0.0, frac=0.5):
    rng = np.random.default_rng(seed)
    n1 = int(round(n * frac))
    resp = rng.permutation(np.r_[np.ones(n1, int), np.zeros(n - n1, int)])
    bl = np.exp(1 + effect * resp[:, None] + rng.normal(0, 0.1, (n, regions)))
    subs = [f"{i:02d}" for i in range(n)]
    ds = xr.Dataset({"BPND": (("subject", "session", "region"), bl[:, None, :])},
                    coords={"subject": subs, "session": ["baseline"],
                            "region": [f"r{k}" for k in range(regions)],
                            "arm": ("subject", ["ketamine"] * n)})
    sc = pd.DataFrame({"participant_id": ["sub-" + s for s in subs], "madrs_response": resp})
    return ds, sc


def test_logistic_fit_matches_statsmodels():
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (60, 2)) * [2.0, 0.5] + [1.0, 3.0]
    y = (rng.random(60) < 1 / (1 + np.exp(-(X[:, 0] - 1)))).astype(float)
    beta, mu, sd = _fit_batch(X, y[None], np.ones((1, 60)), 1e-10)
    ref = sm.Logit(y, sm.add_constant(X)).fit(disp=0).params
    raw = beta[0, 1:] / sd[0]  # standardised slopes back to per-unit slopes
    np.testing.assert_allclose(raw, ref[1:], rtol=1e-6)
    assert beta[0, 0] - np.sum(beta[0, 1:] * mu[0] / sd[0]) == pytest.approx(ref[0], rel=1e-6)


def test_predict_response_signal_rule_and_plot(tmp_path):
    ds, sc = pred_ds(1, effect=0.12)
    r = L.predict_response(ds, sc, n_permutations=30, n_repeats=5, n_boot=300)
    assert r.auc > 0.8 and r.auc_ci_low > 0.6 and r.p_permutation <= 1 / 31 + 1e-12
    assert r.adequate and r.note == "" and r.n == 40 and len(r.predictions) == 40
    assert r.settings["preprocessing"].startswith("standardisation inside")
    assert list(r.calibration.columns) == ["bin", "n", "mean_predicted", "observed_fraction"]
    loo = L.predict_response(ds, sc, cv="loo", n_permutations=0, n_boot=200)
    assert abs(loo.auc - r.auc) < 0.1 and loo.settings["auc_method"] == "leave-pair-out"
    fig = L.plot_roc(r, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").is_file() and fig.axes[0].get_xlim() == (0, 1)
    # a rule on a session-level score: >= 50 % reduction of MADRS from baseline
    subs = [str(s) for s in ds["subject"].values]
    resp = sc["madrs_response"].to_numpy()
    rule_sc = pd.DataFrame(
        [{"participant_id": "sub-" + s, "session_id": ses, "madrs": v}
         for s, rr in zip(subs, resp, strict=True)
         for ses, v in (("baseline", 30.0), ("24h", 10.0 if rr else 25.0))])
    r2 = L.predict_response(ds, rule_sc, responder="madrs <= -50%", n_permutations=0,
                            n_repeats=5, n_boot=0)
    assert r2.n_responders == resp.sum() and r2.settings["responder"].startswith("madrs: %")


def test_predict_response_small_n_and_bad_input():
    ds, sc = pred_ds(2, n=14)
    with pytest.warns(Sv2aWarning, match="fewer than 10"):
        r = L.predict_response(ds, sc, n_permutations=0, n_boot=100, n_repeats=3)
    assert not r.adequate and "too imprecise" in r.note
    one = sc.assign(madrs_response=[1] + [0] * 13)
    with pytest.raises(DesignError, match="at least 2 responders"):
        L.predict_response(ds, one, n_permutations=0)
    with pytest.raises(DataError, match="not 0/1"):
        L.predict_response(ds, sc.assign(madrs_response=np.arange(14)), n_permutations=0)
    gap = sc.assign(madrs_response=sc["madrs_response"].astype(float))
    gap.loc[0, "madrs_response"] = np.nan
    with pytest.warns(Sv2aWarning, match="sub-00"):
        r = L.predict_response(ds, gap, n_permutations=0, n_boot=0, n_repeats=2)
    assert "sub-00" in r.excluded and r.n == 13


def test_cross_validated_auc_without_signal_centres_on_half():
    # 40 null replicates (SD of one AUC ~0.12, SE of the mean ~0.02): |mean - 0.5| <= 0.06;
    # the benchmark runs 200 replicates against +-0.05.
    aucs = [L.predict_response(*pred_ds(seed), n_permutations=0, n_boot=0,
                               n_repeats=5).auc for seed in range(40)]
    assert abs(np.mean(aucs) - 0.5) <= 0.06, np.mean(aucs)
