"""Regional-level simulation of longitudinal SV2A designs, for validation.

No images, no TACs: each subject has true regional specific binding ``VS`` and a
non-displaceable volume ``VND``; treatment multiplies ``VS`` (a change of synaptic density
changes the SV2A available for specific binding, not the free and non-specifically bound
tracer); the measured outcome carries multiplicative scan noise. The output has
the exact shape of :func:`sv2a.longitudinal.collect`, so the statistics are validated on the
same code path users run.

Model (log scale, subject *i*, region *r*, session *s*)::

    VS_true[i, r, s] = VS_r * exp(b_i + u_ir) * (1 + effect[arm_i, s, r]) * (1 + g[group_i])
    BPND_obs         = VS_true / VND * exp(e_isr)
    VT_obs           = (VND + VS_true) * exp(e_isr)

``b_i ~ N(0, rho_b cv_b^2)`` (global) and ``u_ir ~ N(0, (1 - rho_b) cv_b^2)`` give a
between-subject CV ``cv_b`` with between-region correlation ``rho_b``; scan noise
``e_isr = sqrt(rho_e) c_is + sqrt(1 - rho_e) d_isr`` with SD ``trt_sd / sqrt(2)`` so that the
SD of the log ratio of two scans without change is ``trt_sd`` (a test-retest SD read as the SD
of the % difference between two scans: 7.5 % in the human designs, the order reported for
[11C]UCB-J by Finnema et al. 2018, J Cereb Blood Flow Metab 38:2041; 8 % assumed for rat
[18F]SynVesT-1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DesignError

__all__ = ["DESIGNS", "simulate_design", "true_pct_change", "write_derivatives"]

_RAT_REGIONS = {  # rat [18F]SynVesT-1 phantom preset: (VND = K1/k2, BPND = k3/k4)
    "cortex": (2.4, 7.5), "hippocampus": (2.2, 6.25), "striatum": (2.4, 8.0),
    "thalamus": (2.6, 6.5), "cerebellum": (2.4, 5.5), "brainstem": (2.2, 3.0),
}
_HUMAN_VT = {  # human UCB-J preset VT (mL/cm3), VND = 2.8
    "frontal_cortex": 18.0, "anterior_cingulate": 18.5, "posterior_cingulate": 19.0,
    "temporal_cortex": 19.0, "parietal_cortex": 17.5, "occipital_cortex": 17.0,
    "insula": 20.0, "hippocampus": 13.0, "amygdala": 16.5, "caudate": 16.0,
    "putamen": 20.0, "thalamus": 14.0, "cerebellum_cortex": 15.0, "brainstem": 9.0,
}

#: Design presets, the same study designs as :data:`sv2a.phantom.DESIGNS` at the regional
#: level. ``arms`` maps arm -> session -> fractional change of VS (a number, or
#: {region: number}); ``groups`` maps group -> fractional change of VS at every session.
DESIGNS: dict[str, dict] = {
    "ketamine-rodent": {
        "sessions": ["baseline", "24h", "1w", "3w"],
        "arms": {"vehicle": {}, "single": {}, "repeated": {"1w": 0.04, "3w": 0.11}},
        "groups": {"control": 0.0, "CORT": -0.10},
        "between_cv": 0.10, "trt_sd": 0.08, "n_per_arm": 12,
        "regions": {r: {"VND": v, "VS": v * b} for r, (v, b) in _RAT_REGIONS.items()},
    },
    "ketamine-human": {
        "sessions": ["baseline", "24h", "7d"],
        "arms": {"single_24h": {}, "single_7d": {}},
        "arm_sessions": {"single_24h": ["baseline", "24h"], "single_7d": ["baseline", "7d"]},
        "groups": None,
        "between_cv": 0.12, "trt_sd": 0.075, "n_per_arm": 6,
        "regions": {r: {"VND": 2.8, "VS": vt - 2.8} for r, vt in _HUMAN_VT.items()},
    },
    "ketamine-human-pcc": {
        "base": "ketamine-human",
        "arms": {"single_24h": {"24h": {"posterior_cingulate": 0.05}},
                 "single_7d": {"7d": {"posterior_cingulate": 0.03}}},
    },
    "null": {
        "sessions": ["baseline", "followup"],
        "arms": {"A": {}, "B": {}},
        "groups": None,
        "between_cv": 0.12, "trt_sd": 0.075, "n_per_arm": 8,
        "regions": {r: {"VND": 2.8, "VS": vt - 2.8} for r, vt in _HUMAN_VT.items()},
    },
}


def _resolve(design: str | Mapping) -> dict:
    if isinstance(design, Mapping):
        spec = dict(design)
    else:
        if design not in DESIGNS:
            raise DesignError(f"unknown design '{design}'; choose one of {sorted(DESIGNS)} or "
                              f"pass a dict like sv2a.longitudinal.simulate.DESIGNS['null'].")
        spec = dict(DESIGNS[design])
    if "base" in spec:
        base = _resolve(spec.pop("base"))
        base.update(spec)
        spec = base
    return spec


def _effect(spec: Mapping[str, Any], arm: str, session: str, region: str) -> float:
    e = spec["arms"].get(arm, {}).get(session, 0.0)
    if isinstance(e, Mapping):
        return float(e.get(region, 0.0))
    return float(e)


def simulate_design(
    design: str | Mapping = "ketamine-rodent",
    *,
    n_per_arm: int | None = None,
    seed: int | np.random.Generator | None = 0,
    cross_sectional: bool = False,
    between_cv: float | None = None,
    trt_sd: float | None = None,
    rho_between: float = 0.8,
    rho_noise: float = 0.5,
    test_retest_arm: int = 0,
    missing_fraction: float = 0.0,
    regions: Sequence[str] | None = None,
) -> xr.Dataset:
    """Simulate one regional dataset of a longitudinal (or cross-sectional) design.

    Parameters
    ----------
    design : str or dict
        ``'ketamine-rodent'`` (vehicle/single/repeated x control/CORT; repeated +4 % at 1 w,
        +11 % at 3 w on VS; CORT -10 % at every session), ``'ketamine-human'`` (two
        independent arms, baseline + 24 h or baseline + 7 d, no change),
        ``'ketamine-human-pcc'`` (PCC +5 % at 24 h, +3 % at 7 d), ``'null'`` (two arms, no
        change), or a dict shaped like :data:`DESIGNS` entries.
    n_per_arm : int, optional
        Subjects per arm (per arm x group in designs with groups); default the design's.
    seed : int, numpy Generator or None
        Random seed (same seed -> same dataset).
    cross_sectional : bool
        Different animals per time point: each subject is scanned once, at one follow-up
        session (no baseline), as in terminal ex vivo designs.
    between_cv : float, optional
        Between-subject CV of VS (fraction, 0.1 = 10 %); default the design's.
    trt_sd : float, optional
        Test-retest SD (fraction: SD of the log ratio of two scans); default the design's.
    rho_between : float
        Between-region correlation (0-1) of the subject effects.
    rho_noise : float
        Between-region correlation (0-1) of the scan noise.
    test_retest_arm : int
        Add an arm ``test_retest`` with this many subjects scanned twice (``baseline`` and
        ``retest``) without treatment (a null for regression-to-the-mean checks).
    missing_fraction : float
        Fraction of follow-up scans set to NaN at random (missing data).
    regions : sequence of str, optional
        Simulate only these regions of the design.

    Returns
    -------
    xr.Dataset
        Like :func:`collect`: ``BPND``, ``VT``, ``converged`` over (subject, session, region),
        ``arm`` (and ``group``) on subject; ``attrs['truth']`` is a JSON table of the true %
        change per arm x session x region for each outcome (see :func:`true_pct_change`).
        ``BPND`` is unitless, ``VT`` in mL/cm3.

    Raises
    ------
    DesignError
        Unknown design or region, or a test-retest arm in a cross-sectional design.

    Examples
    --------
    >>> ds = simulate_design("ketamine-human", n_per_arm=3, seed=1, regions=["insula"])
    >>> dict(ds.sizes), sorted(set(ds["arm"].values.tolist()))
    ({'subject': 6, 'session': 3, 'region': 1}, ['single_24h', 'single_7d'])
    """
    spec = _resolve(design)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = int(n_per_arm or spec.get("n_per_arm", 8))
    cv_b = float(spec["between_cv"] if between_cv is None else between_cv)
    sd_t = float(spec["trt_sd"] if trt_sd is None else trt_sd)
    if regions is not None:
        unknown = [r for r in regions if r not in spec["regions"]]
        if unknown:
            raise DesignError(f"regions {unknown} not in design; regions: {list(spec['regions'])}")
        spec["regions"] = {r: spec["regions"][r] for r in regions}
    regions = list(spec["regions"])
    vnd = np.array([spec["regions"][r]["VND"] for r in regions])
    vs = np.array([spec["regions"][r]["VS"] for r in regions])
    sessions = list(spec["sessions"])
    groups = spec.get("groups") or {None: 0.0}
    arm_sessions = spec.get("arm_sessions", {})

    subj_arm: list[str] = []
    subj_group: list[str | None] = []
    subj_sessions: list[list[str]] = []
    for arm in spec["arms"]:
        for grp in groups:
            ses_arm = arm_sessions.get(arm, sessions)
            if cross_sectional:
                for s in ses_arm[1:]:
                    for _ in range(n):
                        subj_arm.append(arm)
                        subj_group.append(grp)
                        subj_sessions.append([s])
            else:
                for _ in range(n):
                    subj_arm.append(arm)
                    subj_group.append(grp)
                    subj_sessions.append(list(ses_arm))
    if test_retest_arm:
        if cross_sectional:
            raise DesignError("a test-retest arm needs repeated scans (cross_sectional=False)")
        sessions = sessions + ["retest"]
        for _ in range(int(test_retest_arm)):
            subj_arm.append("test_retest")
            subj_group.append(next(iter(groups)))
            subj_sessions.append(["baseline", "retest"])

    ns, ne, nr = len(subj_arm), len(sessions), len(regions)
    b = rng.normal(0, cv_b * np.sqrt(rho_between), (ns, 1))
    u = rng.normal(0, cv_b * np.sqrt(1 - rho_between), (ns, nr))
    sd_scan = sd_t / np.sqrt(2)
    e = sd_scan * (np.sqrt(rho_noise) * rng.normal(0, 1, (ns, ne, 1))
                   + np.sqrt(1 - rho_noise) * rng.normal(0, 1, (ns, ne, nr)))
    eff = np.array([[[_effect(spec, a, s, r) for r in regions] for s in sessions]
                    for a in subj_arm])
    g = np.array([groups[k] for k in subj_group])[:, None, None]
    vs_true = vs[None, None, :] * np.exp(b + u)[:, None, :] * (1 + eff) * (1 + g)
    bpnd = vs_true / vnd * np.exp(e)
    vt = (vnd + vs_true) * np.exp(e)
    scanned = np.zeros((ns, ne), bool)
    for i, ss in enumerate(subj_sessions):
        scanned[i, [sessions.index(s) for s in ss]] = True
    if missing_fraction > 0:
        follow = scanned.copy()
        follow[:, 0] = False
        drop = follow & (rng.random((ns, ne)) < missing_fraction)
        scanned &= ~drop
    bpnd[~scanned] = np.nan
    vt[~scanned] = np.nan
    conv = np.where(scanned[:, :, None], 1.0, np.nan) * np.ones((1, 1, nr))

    subjects = [f"{i + 1:02d}" if ns < 100 else f"{i + 1:03d}" for i in range(ns)]
    ds = xr.Dataset(
        {"BPND": (("subject", "session", "region"), bpnd),
         "VT": (("subject", "session", "region"), vt),
         "converged": (("subject", "session", "region"), conv)},
        coords={"subject": subjects, "session": sessions, "region": regions,
                "arm": ("subject", np.array(subj_arm, dtype=str))},
    )
    if spec.get("groups"):
        ds = ds.assign_coords(group=("subject", np.array(subj_group, dtype=str)))
    keep = [s for s in sessions if scanned[:, sessions.index(s)].any()]
    ds = ds.sel(session=keep)
    truth = true_pct_change(spec, regions, keep, sorted(set(subj_arm), key=subj_arm.index))
    ds.attrs.update({
        "sv2a_group_dataset": 1, "source": "simulate_design", "model": "SIM",
        "design": design if isinstance(design, str) else "custom",
        "cross_sectional": int(cross_sectional), "between_cv": cv_b, "trt_sd": sd_t,
        "truth": truth.to_json(orient="records"),
    })
    return ds


def true_pct_change(spec: str | Mapping[str, Any], regions: Sequence[str],
                    sessions: Sequence[str], arms: Sequence[str]) -> pd.DataFrame:
    """True % change from baseline per arm x session x region.

    Parameters
    ----------
    spec : str or mapping
        A :data:`DESIGNS` name or a design dict.
    regions, sessions, arms : sequence of str
        The cells to tabulate (arms not in the design get 0 %).

    Returns
    -------
    pandas.DataFrame
        Columns ``arm session region BPND_pct VT_pct`` (%): ``BPND_pct = 100 effect`` (BPND is
        proportional to VS); ``VT_pct = 100 effect VS / VT`` of the population values (VND
        unchanged). Group effects are not included.

    Examples
    --------
    >>> true_pct_change("ketamine-rodent", ["cortex"], ["3w"], ["repeated"])[["BPND_pct"]]
       BPND_pct
    0      11.0
    """
    spec = _resolve(spec) if isinstance(spec, str) else spec
    rows = []
    for arm in arms:
        for s in sessions:
            for r in regions:
                e = _effect(spec, arm, s, r) if arm in spec["arms"] else 0.0
                reg = spec["regions"][r]
                rows.append({"arm": arm, "session": s, "region": r, "BPND_pct": 100 * e,
                             "VT_pct": 100 * e * reg["VS"] / (reg["VS"] + reg["VND"])})
    return pd.DataFrame(rows)


def write_derivatives(ds: xr.Dataset, out_dir: str | os.PathLike[str], *,
                      model: str = "SRTM2", atlas: str = "phantom") -> Path:
    """Write a group dataset as an sv2a derivatives tree plus ``participants.tsv``.

    The layout is the one ``sv2a run ... participant`` writes:
    ``sub-XX/ses-YY/pet/sub-XX_ses-YY_seg-<atlas>_model-<MODEL>_kinpar.tsv``; used to test
    :func:`~sv2a.longitudinal.collect` on real files.

    Parameters
    ----------
    ds : xr.Dataset
        Group dataset (e.g. from :func:`simulate_design`).
    out_dir : str or path-like
        Derivatives root (created if needed).
    model : str
        ``model-`` entity of the file names.
    atlas : str
        ``seg-`` entity of the file names.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = [v for v in ds.data_vars]
    for sub in ds["subject"].values:
        for ses in ds["session"].values:
            cell = ds.sel(subject=sub, session=ses)
            if all(np.isnan(cell[p].values).all() for p in params):
                continue
            d = out / f"sub-{sub}" / f"ses-{ses}" / "pet"
            d.mkdir(parents=True, exist_ok=True)
            t = pd.DataFrame({"region": ds["region"].values})
            for p in params:
                v = cell[p].values
                t[p] = (np.where(np.isnan(v), np.nan, v == 1) if p == "converged" else v)
            if "converged" in t:
                t["converged"] = ["n/a" if pd.isna(v) else str(bool(v)) for v in t["converged"]]
            t.to_csv(d / f"sub-{sub}_ses-{ses}_seg-{atlas}_model-{model}_kinpar.tsv",
                     sep="\t", index=False, na_rep="n/a")
    cols: dict[str, Any] = {"participant_id": ["sub-" + s for s in ds["subject"].values],
            "arm": ds["arm"].values}
    for c, v in ds.coords.items():
        if v.dims == ("subject",) and c not in ("subject", "arm"):
            cols[str(c)] = v.values
    pd.DataFrame(cols).to_csv(out / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    (out / "dataset_description.json").write_text(json.dumps(
        {"Name": "simulated", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "sv2a.longitudinal.simulate"}]}, indent=1))
    return out
