"""Validation of the arm comparison on simulated regional cohorts.

Regional-level simulation (sv2a.longitudinal.simulate, the design presets' numbers) run
through the same compare_arms() users call. Small here (seconds);
benchmarks/bench_longitudinal.py runs the large version and prints the tables.
"""

from __future__ import annotations

import numpy as np
import pytest

import sv2a.longitudinal as L


@pytest.mark.slow
def test_false_positive_rate_under_no_change():
    # 240 no-change datasets x 2 arms x 3 regions with independent regions = 1440 tests;
    # binomial SD of the rate at 0.05 is 0.006, so the 0.03-0.07 band is > 3 SD wide.
    rej_t, rej_w, cover = [], [], []
    for seed in range(240):
        ds = L.simulate_design("null", n_per_arm=8, seed=seed, rho_between=0.0, rho_noise=0.0,
                               regions=["frontal_cortex", "insula", "putamen"])
        t = L.compare_arms(ds, "BPND", n_boot=0, contrasts=False)
        rej_t.extend(t["p_within"] < 0.05)
        rej_w.extend(t["p_wilcoxon"] < 0.05)
        cover.extend((t["ci_low"] <= 0) & (t["ci_high"] >= 0))
    fpr_t, fpr_w = np.mean(rej_t), np.mean(rej_w)
    assert len(rej_t) == 1440
    assert 0.03 <= fpr_t <= 0.07, fpr_t
    # exact signed-rank test with n = 8 is discrete and slightly conservative
    assert 0.015 <= fpr_w <= 0.07, fpr_w
    assert np.mean(cover) >= 0.93


@pytest.mark.slow
def test_rodent_repeated_dose_estimate_and_coverage():
    # stressed animals: repeated +11 % at 3 weeks, single 0 %; 12 animals per arm,
    # between-animal CV 10 %, test-retest SD 8 % (the rodent design preset). 200 replicates.
    est, cov_rep, cov_single = [], [], []
    for seed in range(200):
        ds = L.simulate_design("ketamine-rodent", n_per_arm=12, seed=seed, regions=["cortex"])
        t = L.compare_arms(ds, "BPND", n_boot=0, contrasts=False)
        r = t[(t.arm == "stress_repeated") & (t.session == "3w")].iloc[0]
        s = t[(t.arm == "stress_single") & (t.session == "3w")].iloc[0]
        est.append(r["mean_pct_change"])
        cov_rep.append(r["ci_low"] <= 11.0 <= r["ci_high"])
        cov_single.append(s["ci_low"] <= 0.0 <= s["ci_high"])
    bias = np.mean(est) - 11.0
    assert abs(bias) <= 3.0, bias
    assert np.mean(cov_rep) >= 0.90, np.mean(cov_rep)
    assert np.mean(cov_single) >= 0.90, np.mean(cov_single)
