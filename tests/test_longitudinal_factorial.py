"""Factorial contrasts (sv2a.longitudinal.contrast): checked against statsmodels' formula OLS
and anova_lm (an independent route through formulaic/patsy and statsmodels' own sums of
squares), against hand-combined coefficients, and by simulation (null rejection rate and CI
coverage of a known interaction). Datasets are built here with numpy, independent of the
phantom."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import xarray as xr
from statsmodels.stats.anova import anova_lm

import sv2a.longitudinal as L
from sv2a.errors import DesignError, Sv2aWarning

CONTEXTS = ("control", "stress")
TREATMENTS = ("vehicle", "single", "repeated")


def factorial(seed=0, n_cell=6, effects=None, regions=("cortex", "hippocampus"),
              sessions=("baseline", "3w"), sd=0.08, cv=0.10):
    """{control, stress} x {vehicle, single, repeated}; effects {(context, treatment): log
    change at every follow-up}; between-subject CV ``cv``, log test-retest SD ``sd``."""
    rng = np.random.default_rng(seed)
    ctx = np.repeat(CONTEXTS, n_cell * len(TREATMENTS))
    trt = np.tile(np.repeat(TREATMENTS, n_cell), len(CONTEXTS))
    n, S, R = len(ctx), len(sessions), len(regions)
    y = np.log(5.0) + rng.normal(0, cv, (n, 1, 1)) + np.zeros((n, S, R))
    eff = np.array([(effects or {}).get((c, t), 0.0) for c, t in zip(ctx, trt, strict=True)])
    y[:, 1:, :] += eff[:, None, None]
    y += rng.normal(0, sd / np.sqrt(2), (n, S, R))
    return xr.Dataset(
        {"BPND": (("subject", "session", "region"), np.exp(y))},
        coords={"subject": [f"{i:03d}" for i in range(n)], "session": list(sessions),
                "region": list(regions), "arm": ("subject", [f"{c}_{t}" for c, t in
                                                             zip(ctx, trt, strict=True)]),
                "context": ("subject", ctx), "treatment": ("subject", trt),
                "age": ("subject", rng.normal(40, 8, n))})


def _frame(ds, region="cortex", follow="3w"):
    y = ds["BPND"].sel(region=region)
    return pd.DataFrame({
        "d": np.log(y.sel(session=follow).values) - np.log(y.sel(session="baseline").values),
        "lb": np.log(y.sel(session="baseline").values),
        "treatment": pd.Categorical(ds["treatment"].values, categories=["vehicle", "repeated",
                                                                         "single"]),
        "context": pd.Categorical(ds["context"].values, categories=["control", "stress"]),
        "age": ds["age"].values})


def test_ols_change_model_matches_statsmodels_formula_and_anova():
    ds = factorial(1, effects={("stress", "repeated"): np.log(1.12)})
    t = L.contrast(ds, "treatment * context", covariates=["age"])
    df = _frame(ds)
    df["lb"] -= df["lb"].mean()
    df["age"] -= df["age"].mean()
    ref = smf.ols("d ~ treatment * context + age + lb", df).fit()
    got = t[(t.region == "cortex") & (t.kind == "coefficient")].set_index("term")
    pairs = {"Intercept": "Intercept", "treatment[repeated]": "treatment[T.repeated]",
             "treatment[single]:context[stress]": "treatment[T.single]:context[T.stress]",
             "age": "age", "log_baseline": "lb"}
    ci = ref.conf_int()
    for mine, theirs in pairs.items():
        # the same least-squares problem: agreement to float rounding
        assert got.loc[mine, "estimate"] == pytest.approx(ref.params[theirs], abs=1e-10)
        assert got.loc[mine, "p"] == pytest.approx(ref.pvalues[theirs], rel=1e-8)
    b = "treatment[repeated]:context[stress]"
    theirs = "treatment[T.repeated]:context[T.stress]"
    assert got.loc[b, "pct_ci_low"] == pytest.approx(100 * np.expm1(ci.loc[theirs, 0]), abs=1e-8)
    assert got.loc[b, "pct"] == pytest.approx(100 * np.expm1(ref.params[theirs]), abs=1e-8)
    assert np.isnan(got.loc["age", "pct"]) and np.isnan(got.loc["log_baseline", "pct"])
    aov = anova_lm(ref, typ=2)
    terms = t[(t.region == "cortex") & (t.kind == "term")].set_index("term")
    for mine, theirs in (("treatment", "treatment"), ("treatment:context", "treatment:context"),
                         ("log_baseline", "lb")):
        assert terms.loc[mine, "statistic"] == pytest.approx(aov.loc[theirs, "F"], rel=1e-8)
        assert terms.loc[mine, "p"] == pytest.approx(aov.loc[theirs, "PR(>F)"], rel=1e-8)
        ss = aov.loc[theirs, "sum_sq"]
        eta = ss / (ss + aov.loc["Residual", "sum_sq"])
        assert terms.loc[mine, "eta2_partial"] == pytest.approx(eta, rel=1e-8)
    # Holm / BH across the two regions, per term
    inter = t[(t.kind == "term") & (t.term == "treatment:context")]
    assert inter["p_holm"].tolist() == pytest.approx(
        L.adjust_pvalues(inter["p"], "holm").tolist())
    assert t.attrs["reference"] == {"treatment": "vehicle", "context": "control"}


def test_custom_contrasts_cells_and_reference_levels():
    ds = factorial(2, effects={("stress", "repeated"): 0.1, ("control", "repeated"): 0.03})
    name = "repeated vs vehicle within stress"
    spec = "[treatment=repeated, context=stress] - [treatment=vehicle, context=stress]"
    t = L.contrast(ds, "treatment * context", adjust_baseline=False,
                   contrasts={name: spec, "vec": [0, 1, 0, 0, 1, 0],
                              "dict": {"treatment[repeated]": 1.0},
                              "repeated vs vehicle": "[treatment=repeated] - [treatment=vehicle]"})
    c = t[t.region == "cortex"].set_index(["kind", "term"])
    coef = c.loc["coefficient", "estimate"]
    within = coef["treatment[repeated]"] + coef["treatment[repeated]:context[stress]"]
    assert c.loc[("contrast", name), "estimate"] == pytest.approx(within, abs=1e-12)
    assert c.loc[("contrast", "vec"), "estimate"] == pytest.approx(within, abs=1e-12)
    assert c.loc[("contrast", "dict"), "estimate"] == pytest.approx(
        coef["treatment[repeated]"], abs=1e-12)
    # unadjusted change model: a cell's estimate is the mean log change of its subjects
    df = _frame(ds)
    cell = df[(df.treatment == "repeated") & (df.context == "stress")]["d"].mean()
    assert c.loc[("cell", "treatment=repeated, context=stress"), "estimate"] == pytest.approx(
        cell, abs=1e-12)
    means = df.groupby(["treatment", "context"], observed=True)["d"].mean()
    marginal = means["repeated"].mean() - means["vehicle"].mean()
    assert c.loc[("contrast", "repeated vs vehicle"), "estimate"] == pytest.approx(marginal,
                                                                                abs=1e-12)
    t2 = L.contrast(ds, "treatment * context", reference={"treatment": "repeated",
                                                           "context": "stress"})
    assert "treatment[vehicle]:context[control]" in set(t2["term"])
    assert t2.attrs["reference"] == {"treatment": "repeated", "context": "stress"}
    with pytest.raises(DesignError, match="cannot read"):
        L.contrast(ds, "treatment * context", contrasts={"bad": "repeated - vehicle"})
    with pytest.raises(DesignError, match="level 'daily'"):
        L.contrast(ds, "treatment * context", contrasts={"bad": "[treatment=daily]"})


def test_mixed_model_equals_change_model_on_complete_balanced_data():
    # with every subject at both sessions, the random-intercept model's session x group
    # effects are the OLS effects on the differences (same GLS projection)
    ds = factorial(3, effects={("stress", "repeated"): 0.1}, regions=("cortex",))
    ols = L.contrast(ds, "treatment * context", adjust_baseline=False)
    mm = L.contrast(ds, "treatment * context", method="mixed")
    key = ["kind", "term"]
    a = ols[ols.kind.isin(["coefficient", "cell"])].set_index(key)["estimate"]
    b = mm[mm.kind.isin(["coefficient", "cell"])].set_index(key)["estimate"]
    assert set(a.index) == set(b.index)
    np.testing.assert_allclose(b[a.index].to_numpy(), a.to_numpy(), atol=2e-5)
    assert mm.attrs["method"] == "mixed" and "session * (treatment * context)" in \
        mm.attrs["model"]
    with pytest.raises(DesignError, match="adjust_baseline"):
        L.contrast(ds, "treatment * context", method="mixed", adjust_baseline=True)


def test_cross_sectional_design_uses_log_values():
    ds = factorial(4, sessions=("3w",), effects={})
    ds["BPND"][:] = ds["BPND"].values * np.where(
        (ds["treatment"] == "repeated").values, 1.1, 1.0)[:, None, None]
    t = L.contrast(ds, "treatment + context")
    assert t.attrs["design"] == "cross-sectional" and set(t.kind) == {"coefficient", "term"}
    y = np.log(ds["BPND"].sel(region="cortex", session="3w").values)
    frame = pd.DataFrame({"y": y, "treatment": pd.Categorical(ds["treatment"].values,
                                                              ["vehicle", "repeated", "single"]),
                          "context": ds["context"].values})
    ref = smf.ols("y ~ treatment + context", frame).fit()
    got = t[(t.region == "cortex") & (t.term == "treatment[repeated]")].iloc[0]
    assert got["estimate"] == pytest.approx(ref.params["treatment[T.repeated]"], abs=1e-10)


def test_bad_input_is_refused_with_the_fix():
    ds = factorial(5)
    with pytest.raises(DesignError, match="'dose'.*participants.tsv"):
        L.contrast(ds, "treatment * dose")
    with pytest.raises(DesignError, match="right-hand side"):
        L.contrast(ds, "BPND ~ treatment")
    with pytest.raises(DesignError, match="baseline session 'pre'"):
        L.contrast(ds, "treatment", baseline="pre")
    lone = ds.assign_coords(treatment=("subject", np.r_[["daily"], ds["treatment"].values[1:]]))
    with pytest.raises(DesignError, match="fewer than 2.*daily.*sub-000"):
        L.contrast(lone, "treatment * context")
    # an interaction with an empty cell
    keep = ~((ds["context"] == "stress") & (ds["treatment"] == "single")).values
    with pytest.raises(DesignError, match="no subject"):
        L.contrast(ds.isel(subject=keep), "treatment * context")
    with pytest.raises(DesignError, match="reference level 'saline'"):
        L.contrast(ds, "treatment", reference={"treatment": "saline"})
    # a subject without baseline is left out, listed, with a warning
    gap = ds.copy(deep=True)
    gap["BPND"][0, 0, :] = np.nan
    with pytest.warns(Sv2aWarning, match="sub-000"):
        t = L.contrast(gap, "treatment * context")
    assert t.attrs["excluded"] == {"sub-000": "no baseline session"}
    assert (t["n"] == 35).all()


def test_null_rejection_rate_and_interaction_coverage():
    # 150 null datasets: binomial SD of the rate at 0.05 is 0.018, so the 0.01-0.10 band is
    # > 2.5 SD wide; the benchmark runs 400 replicates against 0.03-0.07.
    rej, cover = [], []
    truth = 12.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Sv2aWarning)
        for seed in range(150):
            t = L.contrast(factorial(seed, regions=("cortex",)), "treatment * context",
                           cells=False)
            rej.append(t[(t.kind == "term") & (t.term == "treatment:context")]["p"].iloc[0]
                       < 0.05)
        for seed in range(100):
            ds = factorial(1000 + seed, effects={("stress", "repeated"): np.log1p(truth / 100)},
                           regions=("cortex",))
            t = L.contrast(ds, "treatment * context", cells=False)
            r = t[t.term == "treatment[repeated]:context[stress]"].iloc[0]
            cover.append(r["pct_ci_low"] <= truth <= r["pct_ci_high"])
    assert 0.01 <= np.mean(rej) <= 0.10, np.mean(rej)
    assert np.mean(cover) >= 0.88, np.mean(cover)
