"""Validation and speed of sv2a.longitudinal on simulated regional cohorts.

Prints:
1. false-positive rate of the within-arm tests (t on log ratio, Wilcoxon) under no change,
   per region family and family-wise (any region, raw and after Holm / BH);
2. rodent design (repeated +11 % at 3 w, single 0 %): bias, SD, RMSE and 95 % CI coverage of
   the mean % change (t CI), geometric-mean change and bootstrap CI, ANCOVA vs vehicle, and
   the mixed-model estimate (fewer replicates);
3. the same under the cross-sectional rodent design (two-way ANOVA);
4. human design (two arms of n = 6): power for PCC +5 % vs the reported MDE;
5. speed of compare_arms / mixed_model on a full-size dataset;
6. factorial contrasts ({control, stress} x {vehicle, single, repeated}): interaction test
   rejection rate under the null, CI coverage of a known interaction (+12 %), mixed path;
7. brain-behaviour association: null rejection rate, Fisher-z CI coverage of rho = 0.5,
   Spearman bootstrap CI coverage;
8. response prediction: cross-validated AUC without signal (mean over replicates), with
   signal, and the time of one run with a permutation p-value.

Usage: python benchmarks/bench_longitudinal.py [--reps 1000] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import xarray as xr

import sv2a.longitudinal as L
from sv2a.errors import Sv2aWarning


def fpr(reps: int) -> None:
    rej_t, rej_w, fw_raw, fw_holm, fw_bh = [], [], [], [], []
    for seed in range(reps):
        ds = L.simulate_design("null", n_per_arm=8, seed=seed)  # 14 correlated regions
        t = L.compare_arms(ds, "BPND", n_boot=0, contrasts=False)
        rej_t.extend(t["p_within"] < 0.05)
        rej_w.extend(t["p_wilcoxon"] < 0.05)
        for _, g in t.groupby(["arm", "session"]):
            fw_raw.append((g["p_within"] < 0.05).any())
            fw_holm.append((g["p_holm"] < 0.05).any())
            fw_bh.append((g["q_within"] < 0.05).any())
    print(f"\n[1] no-change design, {reps} datasets x 2 arms x 14 regions (n = 8/arm, "
          f"between-subject CV 12 %, test-retest SD 7.5 %, correlated regions)")
    print(f"    per-test FPR  t (log ratio) {np.mean(rej_t):.4f}   Wilcoxon {np.mean(rej_w):.4f}"
          f"   (target 0.03-0.07)")
    print(f"    family-wise   raw {np.mean(fw_raw):.3f}   Holm {np.mean(fw_holm):.3f}   "
          f"BH {np.mean(fw_bh):.3f}")


def rodent(reps: int, mixed_reps: int) -> None:
    truth = 11.0
    cols = {k: [] for k in ("mean", "cov", "geo", "geocov", "boot", "single_cov", "ancova",
                            "ancova_cov", "mde")}
    for seed in range(reps):
        ds = L.simulate_design("ketamine-rodent", n_per_arm=12, seed=seed, regions=["cortex"])
        # the treatment effect is within stressed animals: contrast with stress_vehicle
        t = L.compare_arms(ds, "BPND", n_boot=1000 if seed < 200 else 0, seed=seed,
                           reference_arm="stress_vehicle")
        r = t[(t.arm == "stress_repeated") & (t.session == "3w")].iloc[0]
        s = t[(t.arm == "stress_single") & (t.session == "3w")].iloc[0]
        cols["mean"].append(r["mean_pct_change"])
        cols["cov"].append(r["ci_low"] <= truth <= r["ci_high"])
        cols["geo"].append(r["geo_pct_change"])
        cols["geocov"].append(r["geo_ci_low"] <= truth <= r["geo_ci_high"])
        if seed < 200:
            cols["boot"].append(r["boot_ci_low"] <= truth <= r["boot_ci_high"])
        cols["single_cov"].append(s["ci_low"] <= 0 <= s["ci_high"])
        cols["ancova"].append(r["ancova_pct_diff"])
        cols["ancova_cov"].append(r["ancova_ci_low"] <= truth <= r["ancova_ci_high"])
        cols["mde"].append(r["mde_pct"])
    m = np.asarray(cols["mean"])
    g = np.asarray(cols["geo"])
    a = np.asarray(cols["ancova"])
    print(f"\n[2] rodent design, {reps} replicates, stress_repeated +11 % at 3 w (12 animals "
          f"in each of "
          f"6 context x treatment arms, CV 10 %, test-retest SD 8 %), region cortex")
    print(f"    mean % change      bias {m.mean() - truth:+.2f} pp  SD {m.std():.2f}  RMSE "
          f"{np.sqrt(np.mean((m - truth) ** 2)):.2f}  t-CI coverage {np.mean(cols['cov']):.3f}"
          f"  bootstrap-CI coverage {np.mean(cols['boot']):.3f} ({len(cols['boot'])} reps)")
    print(f"    geometric change   bias {g.mean() - truth:+.2f} pp  SD {g.std():.2f}  CI coverage "
          f"{np.mean(cols['geocov']):.3f}")
    print(f"    ANCOVA vs str_veh  bias {a.mean() - truth:+.2f} pp  SD {a.std():.2f}  CI coverage "
          f"{np.mean(cols['ancova_cov']):.3f}")
    print(f"    single dose 3 w: CI covers 0 in {np.mean(cols['single_cov']):.3f};  median MDE "
          f"(80 % power) {np.median(cols['mde']):.1f} %")
    est, cov = [], []
    for seed in range(mixed_reps):
        ds = L.simulate_design("ketamine-rodent", n_per_arm=12, seed=seed, regions=["cortex"])
        mm = L.mixed_model(ds, "BPND", composite=False)
        r = mm[(mm.arm == "stress_repeated") & (mm.session == "3w")
               & (mm.contrast == "change")].iloc[0]
        est.append(r["pct_change"])
        cov.append(r["pct_ci_low"] <= truth <= r["pct_ci_high"])
    est = np.asarray(est)
    print(f"    mixed model        bias {est.mean() - truth:+.2f} pp  SD {est.std():.2f}  CI "
          f"coverage {np.mean(cov):.3f} ({mixed_reps} reps)")


def cross_sectional(reps: int) -> None:
    est, cov, cov0 = [], [], []
    for seed in range(reps):
        ds = L.simulate_design("ketamine-rodent", n_per_arm=10, seed=seed, cross_sectional=True,
                               regions=["cortex"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Sv2aWarning)
            t = L.compare_arms(ds, "BPND", reference_arm="stress_vehicle")
        r = t[(t.arm == "stress_repeated") & (t.session == "3w")].iloc[0]
        s = t[(t.arm == "stress_single") & (t.session == "3w")].iloc[0]
        est.append(r["mean_pct_change"])
        cov.append(r["ci_low"] <= 11 <= r["ci_high"])
        cov0.append(s["ci_low"] <= 0 <= s["ci_high"])
    est = np.asarray(est)
    print(f"\n[3] cross-sectional rodent design, {reps} replicates (10 animals per arm x group x "
          f"time point): stress_repeated 3 w vs stress_vehicle bias {est.mean() - 11:+.2f} pp, SD "
          f"{est.std():.2f}, coverage {np.mean(cov):.3f}; single covers 0 in {np.mean(cov0):.3f}")


def human(reps: int) -> None:
    rej, mde = [], []
    for seed in range(reps):
        ds = L.simulate_design("ketamine-human-pcc", seed=seed, regions=["posterior_cingulate"])
        t = L.compare_arms(ds, "VT", n_boot=0, contrasts=False)
        r = t[t.arm == "single_24h"].iloc[0]
        rej.append(r["p_within"] < 0.05)
        mde.append(r["mde_pct"])
    print(f"\n[4] human design, PCC +5 % VS at 24 h (VT +{5 * 16.2 / 19:.1f} %), n = 6: power "
          f"{np.mean(rej):.3f}; median reported MDE {np.median(mde):.1f} % -> report CIs, not "
          f"'no effect'")


def speed() -> None:
    ds = L.simulate_design("ketamine-rodent", n_per_arm=12, seed=0)
    L.compare_arms(ds, "BPND", n_boot=0)
    for nb in (0, 2000):
        t0 = time.perf_counter()
        t = L.compare_arms(ds, "BPND", n_boot=nb)
        dt = time.perf_counter() - t0
        print(f"    compare_arms 72 animals x 4 sessions x 6 regions ({len(t)} rows), "
              f"n_boot={nb}: {dt:.2f} s")
    t0 = time.perf_counter()
    mm = L.mixed_model(ds, "BPND")
    print(f"    mixed_model composite + 6 regions ({len(mm)} rows): "
          f"{time.perf_counter() - t0:.2f} s")
    h = L.simulate_design("ketamine-human", n_per_arm=50, seed=0)
    t0 = time.perf_counter()
    t = L.compare_arms(h, "VT")
    print(f"    compare_arms 100 subjects x 14 regions ({len(t)} rows): "
          f"{time.perf_counter() - t0:.2f} s")


def _factorial(seed: int, effect: float = 0.0, n_cell: int = 6) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    ctx = np.repeat(["control", "stress"], 3 * n_cell)
    trt = np.tile(np.repeat(["vehicle", "single", "repeated"], n_cell), 2)
    n = len(ctx)
    y = np.log(5.0) + rng.normal(0, 0.10, (n, 1, 1)) + np.zeros((n, 2, 1))
    y[:, 1, 0] += np.where((ctx == "stress") & (trt == "repeated"), effect, 0.0)
    y += rng.normal(0, 0.08 / np.sqrt(2), y.shape)
    return xr.Dataset({"BPND": (("subject", "session", "region"), np.exp(y))},
                      coords={"subject": [f"{i:03d}" for i in range(n)],
                              "session": ["baseline", "3w"], "region": ["cortex"],
                              "arm": ("subject", ctx), "context": ("subject", ctx),
                              "treatment": ("subject", trt)})


def factorial(reps: int, mixed_reps: int) -> None:
    truth = 12.0
    rej, cov, est = [], [], []
    t0 = time.perf_counter()
    for seed in range(reps):
        t = L.contrast(_factorial(seed), "treatment * context", cells=False)
        rej.append(t[(t.kind == "term") & (t.term == "treatment:context")]["p"].iloc[0] < 0.05)
        t = L.contrast(_factorial(10_000 + seed, np.log1p(truth / 100)), "treatment * context",
                       cells=False)
        r = t[t.term == "treatment[repeated]:context[stress]"].iloc[0]
        est.append(r["pct"])
        cov.append(r["pct_ci_low"] <= truth <= r["pct_ci_high"])
    dt = (time.perf_counter() - t0) / (2 * reps)
    mrej, mcov = [], []
    for seed in range(mixed_reps):
        t = L.contrast(_factorial(seed), "treatment * context", method="mixed", cells=False)
        mrej.append(t[(t.kind == "term") & (t.term == "treatment:context")]["p"].iloc[0] < 0.05)
        t = L.contrast(_factorial(10_000 + seed, np.log1p(truth / 100)), "treatment * context",
                       method="mixed", cells=False)
        r = t[t.term == "treatment[repeated]:context[stress]"].iloc[0]
        mcov.append(r["pct_ci_low"] <= truth <= r["pct_ci_high"])
    e = np.asarray(est)
    print(f"\n[6] factorial {{control, stress}} x {{vehicle, single, repeated}}, 6 animals per "
          f"cell, CV 10 %, test-retest SD 8 %, {reps} replicates")
    print(f"    OLS change (+ log baseline): interaction F test under the null rejects "
          f"{np.mean(rej):.3f} (target 0.03-0.07)")
    print(f"    interaction +12 %: bias {e.mean() - truth:+.2f} pp  SD {e.std():.2f}  95 % CI "
          f"coverage {np.mean(cov):.3f} (target >= 0.90);  {1000 * dt:.0f} ms per fit")
    print(f"    mixed model ({mixed_reps} reps): null rejection {np.mean(mrej):.3f} (Wald, "
          f"asymptotic), CI coverage {np.mean(mcov):.3f}")


def _assoc(seed: int, rho: float, n: int = 30) -> tuple[xr.Dataset, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    bl = np.exp(rng.normal(1, 0.1, n))
    subs = [f"{i:02d}" for i in range(n)]
    ds = xr.Dataset({"BPND": (("subject", "session", "region"),
                              np.stack([bl, bl * np.exp(0.05 * z[:, 0])], 1)[:, :, None])},
                    coords={"subject": subs, "session": ["baseline", "3w"],
                            "region": ["cortex"], "arm": ("subject", ["k"] * n)})
    return ds, pd.DataFrame({"participant_id": ["sub-" + s for s in subs], "score": z[:, 1]})


def association(reps: int) -> None:
    rej, rej_s, cov, cov_s = [], [], [], []
    rho_s = 6 / np.pi * np.arcsin(0.5 / 2)  # Spearman rho of a bivariate normal with r = 0.5
    for seed in range(reps):
        ds, sc = _assoc(seed, 0.0)
        rej.append(L.associate(ds, sc, score="score")["p"].iloc[0] < 0.05)
        rej_s.append(L.associate(ds, sc, score="score", method="spearman", n_boot=0)["p"]
                     .iloc[0] < 0.05)
        ds, sc = _assoc(10_000 + seed, 0.5)
        r = L.associate(ds, sc, score="score").iloc[0]
        cov.append(r["ci_low"] <= 0.5 <= r["ci_high"])
        if seed < 200:
            s = L.associate(ds, sc, score="score", method="spearman", n_boot=1000).iloc[0]
            cov_s.append(s["ci_low"] <= rho_s <= s["ci_high"])
    print(f"\n[7] association, n = 30, {reps} replicates: null rejection Pearson "
          f"{np.mean(rej):.3f}, Spearman {np.mean(rej_s):.3f} (target 0.03-0.07); rho = 0.5: "
          f"Fisher-z CI coverage {np.mean(cov):.3f}, Spearman bootstrap CI coverage "
          f"{np.mean(cov_s):.3f} ({len(cov_s)} reps) (target >= 0.90)")


def _pred(seed: int, effect: float, n: int = 40) -> tuple[xr.Dataset, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    resp = rng.permutation(np.repeat([1, 0], n // 2))
    bl = np.exp(1 + effect * resp[:, None] + rng.normal(0, 0.1, (n, 3)))
    subs = [f"{i:02d}" for i in range(n)]
    ds = xr.Dataset({"BPND": (("subject", "session", "region"), bl[:, None, :])},
                    coords={"subject": subs, "session": ["baseline"],
                            "region": ["r0", "r1", "r2"], "arm": ("subject", ["k"] * n)})
    return ds, pd.DataFrame({"participant_id": ["sub-" + s for s in subs],
                             "madrs_response": resp})


def prediction(reps: int) -> None:
    for cv in ("repeated-kfold", "loo"):
        nreps = reps if cv == "repeated-kfold" else max(reps // 4, 20)
        aucs = [L.predict_response(*_pred(seed, 0.0), cv=cv, n_permutations=0, n_boot=0,
                                   n_repeats=10).auc for seed in range(nreps)]
        sig = [L.predict_response(*_pred(seed, 0.05), cv=cv, n_permutations=0, n_boot=0,
                                  n_repeats=10).auc for seed in range(nreps // 2)]
        print(f"\n[8] response prediction ({cv}), n = 40 (20/20), 3 regions, ridge: "
              f"no-signal AUC mean {np.mean(aucs):.3f} +- {np.std(aucs) / np.sqrt(nreps):.3f} "
              f"(SD {np.std(aucs):.3f}, {nreps} reps; target 0.45-0.55); +5 % in responders "
              f"(0.5 SD): AUC mean {np.mean(sig):.3f}")
    t0 = time.perf_counter()
    r = L.predict_response(*_pred(0, 0.05), n_permutations=200)
    print(f"    one run, 20 x 5-fold, 2000 bootstraps, 200 permutations: "
          f"{time.perf_counter() - t0:.1f} s (AUC {r.auc:.2f}, p {r.p_permutation:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="200 replicates, fewer mixed fits")
    a = ap.parse_args()
    reps = 200 if a.quick else a.reps
    warnings.simplefilter("ignore", Sv2aWarning)
    t0 = time.perf_counter()
    fpr(reps)
    rodent(reps, mixed_reps=min(reps, 100 if a.quick else 300))
    cross_sectional(min(reps, 300))
    human(reps)
    print("\n[5] speed")
    speed()
    factorial(min(reps, 400), mixed_reps=min(reps, 50 if a.quick else 100))
    association(min(reps, 400))
    prediction(min(reps, 200))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
