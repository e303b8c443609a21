"""Factorial rodent design, true effects and behavioural / clinical scores (phenotype files)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import sv2a.longitudinal as L
from sv2a.errors import DesignError
from sv2a.phantom import make_cohort, normalise_design
from sv2a.phantom.scores import normalise_scores


@pytest.fixture(scope="module")
def rat(tmp_path_factory):
    out = tmp_path_factory.mktemp("rat") / "bids"
    return make_cohort(out, "ketamine-rodent", seed=3, n_subjects=6, noise=0, fwhm=0,
                       voxel_mm=1.2, blood="none")


def test_factorial_design_and_true_effects(rat):
    d = normalise_design("ketamine-rodent")
    assert list(d["arms"]) == ["control_vehicle", "control_single", "control_repeated",
                               "stress_vehicle", "stress_single", "stress_repeated"]
    assert d["sessions"] == ["baseline", "24h", "1w", "3w"]
    parts = pd.read_csv(rat.path / "participants.tsv", sep="\t")
    assert list(parts.columns[:4]) == ["participant_id", "arm", "context", "treatment"]
    assert (parts["arm"] == parts["context"] + "_" + parts["treatment"]).all()
    pj = json.loads((rat.path / "participants.json").read_text())
    assert list(pj["treatment"]["Levels"]) == ["vehicle", "single", "repeated"]
    truth = pd.read_csv(rat.path / "truth.tsv", sep="\t")
    brain = truth[truth.region == "cortex"].set_index(["arm", "session"])
    # the design's effect on VS (% of the untreated population) per cell
    expected = {("control_vehicle", "3w"): 0.0, ("control_repeated", "3w"): 0.0,
                ("control_single", "24h"): 0.0, ("stress_vehicle", "baseline"): -10.0,
                ("stress_single", "3w"): -10.0, ("stress_repeated", "baseline"): -10.0,
                ("stress_repeated", "1w"): 100 * (0.9 * 1.04 - 1),
                ("stress_repeated", "3w"): 100 * (0.9 * 1.11 - 1)}
    for cell, pct in expected.items():
        assert brain.loc[cell, "effect_VS_pct"] == pytest.approx(pct, abs=1e-9), cell
    assert (truth[truth.region == "harderian_gland"]["effect_VS_pct"] == 0).all()
    # change_VS_pct is the true change from the animal's baseline (independent recomputation)
    t = truth[truth.region == "hippocampus"].set_index(["participant_id", "session"])["VS"]
    row = truth[(truth.region == "hippocampus") & (truth.session == "3w")].iloc[0]
    pid = row["participant_id"]
    assert row["change_VS_pct"] == pytest.approx(
        100 * (t[(pid, "3w")] / t[(pid, "baseline")] - 1), rel=1e-7)  # TSV: 10 digits
    design = json.loads((rat.path / "design.json").read_text())
    con = pd.DataFrame(design["true_contrasts"])
    sel = con[(con.session == "3w") & (con.region == "*")].set_index(["contrast", "level",
                                                                      "within"])
    assert sel.loc[("interaction", "stress:repeated", ""), "VS_change_pct"] == \
        pytest.approx(11.0)
    assert sel.loc[("simple", "repeated", "context=stress"), "VS_pct"] == pytest.approx(11.0)
    assert sel.loc[("simple", "repeated", "context=control"), "VS_pct"] == pytest.approx(0.0)
    assert sel.loc[("simple", "single", "context=stress"), "VS_pct"] == pytest.approx(0.0)
    assert sel.loc[("simple", "stress", "treatment=vehicle"), "VS_pct"] == \
        pytest.approx(-10.0)


def test_phenotype_files_are_bids(rat):
    design = json.loads((rat.path / "design.json").read_text())
    assert design["phenotype"] == ["phenotype/sucrose_preference.tsv",
                                   "phenotype/social_interaction.tsv"]
    for m, units, r in (("sucrose_preference", "%", 0.5), ("social_interaction", "s", 0.3)):
        tsv = rat.path / "phenotype" / f"{m}.tsv"
        lines = tsv.read_text().splitlines()
        assert lines[0].split("\t") == ["participant_id", "session_id", m]
        assert all(len(x.split("\t")) == 3 for x in lines)
        t = pd.read_csv(tsv, sep="\t")
        assert len(t) == 6 * 4 and t["session_id"].str.startswith("ses-").all()
        assert set(t["participant_id"]) == set(rat.participants["participant_id"])
        side = json.loads(tsv.with_suffix(".json").read_text())
        assert side[m]["Units"] == units and "Description" in side["session_id"]
        assert "MeasurementToolMetadata" in side
        assert design["scores"][m]["r"] == r and "formula" in design["scores"][m]
    sp = pd.read_csv(rat.path / "phenotype/sucrose_preference.tsv", sep="\t")
    assert sp["sucrose_preference"].between(0, 100).all()


def test_madrs_response_column(tmp_path):
    c = make_cohort(tmp_path / "h", "ketamine-human", seed=1, n_subjects=2, noise=0, fwhm=0,
                    voxel_mm=8.0, blood="none")
    t = pd.read_csv(c.path / "phenotype/madrs.tsv", sep="\t")
    assert list(t.columns) == ["participant_id", "session_id", "madrs", "madrs_response"]
    base = t[t.session_id == "ses-baseline"].set_index("participant_id")["madrs"]
    fu = t[t.session_id != "ses-baseline"].set_index("participant_id")
    assert t.loc[t.session_id == "ses-baseline", "madrs_response"].isna().all()
    expect = (base - fu["madrs"]) / base >= 0.5
    assert (fu["madrs_response"].astype(bool) == expect).all()
    side = json.loads((c.path / "phenotype/madrs.json").read_text())
    assert set(side["madrs_response"]["Levels"]) == {"true", "false"}
    np.testing.assert_array_equal(t["madrs"], t["madrs"].round())  # integer totals


def test_no_scores_option(tmp_path):
    c = make_cohort(tmp_path / "x", "ketamine-human", seed=1, n_subjects=1, noise=0, fwhm=0,
                    voxel_mm=8.0, blood="none", scores=False)
    assert not (c.path / "phenotype").exists() and c.design["phenotype"] == []


def _within_cell_r(ds, measure):
    """Correlation of score change and true change after removing arm x session means."""
    y, tc, arm = ds[measure].values, ds[f"true_change_{measure}"].values, ds.arm.values
    dy, t = y[:, 1:] - y[:, [0]], tc[:, 1:]
    xs, ys = [], []
    for a in np.unique(arm):
        s = arm == a
        xs.append(dy[s] - dy[s].mean(0))
        ys.append(t[s] - t[s].mean(0))
    return np.corrcoef(np.concatenate(xs).ravel(), np.concatenate(ys).ravel())[0, 1]


def test_score_change_correlates_with_true_change_at_r():
    # 6 arms x 250 animals x 3 follow-ups. The follow-ups of one animal share its baseline,
    # so count animals, not pairs: SE of r <= (1 - r^2) / sqrt(1500 - 6) ~ 0.02-0.026; 4 SE.
    ds = L.simulate_design("ketamine-rodent", n_per_arm=250, seed=7, scores=True,
                           regions=["cortex", "hippocampus"])
    for m, r in (("sucrose_preference", 0.5), ("social_interaction", 0.3)):
        se = (1 - r * r) / np.sqrt(1500 - 6)
        assert _within_cell_r(ds, m) == pytest.approx(r, abs=4 * se), m
    spec = json.loads(ds.attrs["scores"])
    assert spec["sucrose_preference"]["regions"] == ["hippocampus"]
    # the arm means carry the design: stressed vehicle below controls, repeated ketamine
    # raises sucrose preference at 3 w in stressed animals (means 62 -> 76 %)
    sp = ds["sucrose_preference"]
    m = sp.groupby(ds.arm).mean()
    assert float(m.sel(arm="stress_vehicle", session="3w")) == pytest.approx(62, abs=2)
    assert float(m.sel(arm="stress_repeated", session="3w")) == pytest.approx(76, abs=2)
    # the observed BPND keeps the distribution of a no-true-change simulation
    base = L.simulate_design("ketamine-rodent", n_per_arm=250, seed=7, true_fraction=0.0,
                             regions=["cortex"])
    ch = np.log(ds.BPND.sel(session="24h", region="cortex")
                / ds.BPND.sel(session="baseline", region="cortex"))
    ch0 = np.log(base.BPND.sel(session="24h", region="cortex")
                 / base.BPND.sel(session="baseline", region="cortex"))
    # SD of the log change 0.08 (test-retest SD); SE of an SD from 1500 values ~2 %
    assert float(ch.std()) == pytest.approx(float(ch0.std()), rel=0.1)


def test_madrs_by_simulation_and_cross_sectional():
    h = L.simulate_design("ketamine-human", n_per_arm=400, seed=3, scores=True,
                          regions=["posterior_cingulate"])
    assert _within_cell_r(h.sel(session=["baseline", "24h"]).sel(
        subject=h.arm == "single_24h"), "madrs") == pytest.approx(-0.4, abs=4 * 0.84 / 20)
    # responders: P(reduction >= 50 %) at 24 h with mean 32 -> 16 is about one half
    assert float(h["madrs_response"].sel(session="24h").mean()) == pytest.approx(0.5, abs=0.1)
    x = L.simulate_design("ketamine-rodent", n_per_arm=5, seed=1, scores=True,
                          cross_sectional=True, regions=["cortex", "hippocampus"])
    assert np.isfinite(x["sucrose_preference"].values).sum() == x.sizes["subject"]


def test_design_validation_and_old_names():
    with pytest.raises(DesignError, match="no longer used"):
        normalise_design({"base": "ketamine-rodent", "groups": {"control": 0, "CORT": -0.1}})
    with pytest.raises(DesignError, match="level of factor 'treatment'.*stress_repeated"):
        normalise_design({"base": "ketamine-rodent",
                          "effects": {"repeated": {"3w": {"*": 0.11}}}})
    with pytest.raises(DesignError, match="no level of factor 'context'"):
        normalise_design({"base": "ketamine-rodent",
                          "arms": {**normalise_design("ketamine-rodent")["arms"],
                                   "extra": {"treatment": "single"}}})
    with pytest.raises(DesignError, match="same factor levels"):
        normalise_design({"base": "ketamine-rodent", "scores": {},
                          "arms": {"a": {"context": "stress", "treatment": "single"},
                                   "b": {"context": "stress", "treatment": "single"}},
                          "effects": {}})
    with pytest.raises(DesignError, match="level of the factor 'treatment'"):
        L.true_pct_change("ketamine-rodent", ["cortex"], ["3w"], ["repeated"])
    with pytest.raises(DesignError, match="'context'"):
        L.true_pct_change("ketamine-rodent", ["cortex"], ["3w"], ["CORT"])
    arms = {"a": ["baseline", "3w"]}
    ok = {"units": "%", "mean": 70, "sd": 5, "change_sd": 4, "regions": ["cortex"], "r": 0.5}
    with pytest.raises(DesignError, match="correlation"):
        normalise_scores({"m": {**ok, "r": 1.5}}, arms, ["cortex"])
    with pytest.raises(DesignError, match="unknown region"):
        normalise_scores({"m": {**ok, "regions": ["pcc"]}}, arms, ["cortex"])
    with pytest.raises(DesignError, match="unknown key"):
        normalise_scores({"m": {**ok, "rho": 0.5}}, arms, ["cortex"])
    with pytest.raises(DesignError, match="no 'scores'"):
        L.simulate_design("null", n_per_arm=2, scores=True)
