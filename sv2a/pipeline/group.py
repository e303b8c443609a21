"""Group level: collect the participant-level fits, compare arms, write tables, figures and
``group.html``.

Outputs::

    OUT/group/group_model-<MODEL>_kinpar.nc          subject x session x region (+ tidy .tsv)
    OUT/group/group_model-<MODEL>_meas-<PARAM>_comparison.tsv (+ .json provenance)
    OUT/group/figures/group_model-<MODEL>_meas-<PARAM>_desc-{spaghetti,forest}_plot.png
    OUT/group.html

and, when asked (``formula``, ``scores`` / ``score``, ``responder``, ``voxelwise_stats``)::

    OUT/group/group_model-<MODEL>_meas-<PARAM>_contrasts.tsv (+ .json)    factorial terms
    OUT/group/group_model-<MODEL>_meas-<PARAM>_association.tsv (+ .json)  per score x region
    OUT/group/group_model-<MODEL>_meas-<PARAM>_prediction.tsv (+ .json)   AUC, calibration
    OUT/group/group_model-<MODEL>_meas-<PARAM>_contrast-<NAME>_stat-<STAT>_statmap.nii.gz
    OUT/group/group_model-<MODEL>_meas-<PARAM>_contrast-<NAME>_clusters.tsv
    OUT/group/figures/..._score-<SCORE>_desc-association_plot.png, ..._desc-roc_plot.png,
        ..._contrast-<NAME>_desc-statslices_plot.png

Every section of ``group.html`` opens with a one-line reading of its result; a result that is
not significant is given with the smallest effect the data could have detected (80 % power,
two-sided 5 %): the minimal detectable % change of a coefficient, or the smallest detectable
correlation ``r = tanh((z_0.975 + z_0.8) / sqrt(n - 3))`` (Fisher z).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..errors import DataError, Sv2aError
from ..io import write_json, write_tsv
from . import derivatives as drv
from .config import PipelineConfig

__all__ = ["GroupResult", "run_group"]

log = logging.getLogger("sv2a.pipeline")


@dataclass
class GroupResult:
    """What the group level wrote."""

    out_dir: str
    netcdf: str = ""
    comparison: str = ""
    contrasts: str = ""
    association: str = ""
    prediction: str = ""
    statmaps: list[str] = field(default_factory=list)
    report: str = ""
    figures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_subjects: int = 0
    n_sessions: int = 0
    seconds: float = 0.0
    ok: bool = True

    def line(self) -> str:
        """The one-line summary printed at the end of a run.

        Returns
        -------
        str
            Subjects x sessions, the comparison table, the report and the time taken.
        """
        return (f"sv2a group: {self.n_subjects} subjects x {self.n_sessions} sessions, "
                f"comparison {self.comparison}; report: {self.report} "
                f"({self.seconds:.1f} s)")


def _sessions_table(bids_dir: Path) -> pd.DataFrame | None:
    """All ``sub-*/sub-*_sessions.tsv`` of the raw dataset as one table (or None)."""
    rows = []
    for p in sorted(bids_dir.glob("sub-*/sub-*_sessions.tsv")):
        df = pd.read_csv(p, sep="\t", na_values=["n/a"], dtype={"session_id": str})
        df.insert(0, "participant_id", p.parent.name)
        rows.append(df)
    return pd.concat(rows, ignore_index=True) if rows else None


def _baseline(ds: xr.Dataset, wanted: str | None) -> str:
    """The baseline session label: ``wanted`` (without ``ses-``), else a usual baseline
    label present in the data, else the first session."""
    sessions = [str(s) for s in ds["session"].values]
    if wanted:
        w = wanted[4:] if wanted.startswith("ses-") else wanted
        return w
    for cand in ("baseline", "bl", "base", "pre", "ses1", "1", "01"):
        if cand in sessions:
            return cand
    return sessions[0]


def run_group(bids_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
              cfg: PipelineConfig, *, quiet: bool = False) -> GroupResult:
    """Group level of ``sv2a run``: collect -> save -> compare arms -> figures -> HTML.

    Parameters
    ----------
    bids_dir : path
        Raw dataset (``participants.tsv`` with the arms, ``sub-*_sessions.tsv``).
    out_dir : path
        Derivatives of the participant level.
    cfg : PipelineConfig
        Uses ``group_model``, ``outcome`` and ``baseline_session``.
    quiet : bool
        Accepted for symmetry with :func:`~sv2a.pipeline.run_participant` (the group level
        shows no progress bar).

    Returns
    -------
    GroupResult
        Paths of the NetCDF dataset, the comparison table, the figures and ``group.html``.

    Raises
    ------
    DataError
        No participant-level derivatives in ``out_dir``.
    """
    from .. import longitudinal as lg
    from .. import report
    from ..models import registry

    t0 = time.perf_counter()
    bids_dir, out = Path(bids_dir), Path(out_dir)
    if not out.is_dir():
        raise DataError(f"{out}: no derivatives here; run the participant level first "
                        f"(sv2a run {bids_dir} {out} participant)")
    res = GroupResult(str(out))
    model, outcome = cfg.group_model, cfg.outcome
    label = drv.model_label(model)
    gdir = out / "group"
    participants = bids_dir / "participants.tsv"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sessions = _sessions_table(bids_dir)
        ds = lg.collect(out, participants=participants if participants.exists() else None,
                        sessions=sessions, model=label)
        nc = lg.save(ds, gdir / drv.group_kinpar_name(model))
        res.netcdf = str(nc)
        res.n_subjects, res.n_sessions = ds.sizes["subject"], ds.sizes["session"]
        baseline = _baseline(ds, cfg.baseline_session)
        table = lg.compare_arms(ds, outcome=outcome, baseline=baseline)
        cmp_path = gdir / drv.comparison_name(model, outcome)
        write_tsv(cmp_path, table)
        write_json(cmp_path.with_suffix(".json"), {
            "Description": f"Change in {outcome} ({label}) from session '{baseline}', per "
                           "region, arm and follow-up session; between-arm contrasts",
            "Model": model, "Outcome": outcome, "Baseline": baseline,
            "Columns": {"mean_pct_change": "100 (follow-up / baseline - 1), arm mean",
                        "ci_low/ci_high": "95 % t-based CI of the mean % change",
                        "p_within": "paired t-test on log values", "q_within":
                        "Benjamini-Hochberg across regions", "hedges_g": "paired effect size"},
            **drv.provenance(sources=[str(nc.relative_to(out))]),
        })
        res.comparison = str(cmp_path)
        figs = []
        fig_dir = gdir / "figures"
        stem = f"group_model-{label}_meas-{outcome}"
        for kind in ("spaghetti", "forest"):
            path = fig_dir / f"{stem}_desc-{kind}_plot.png"
            try:
                if kind == "spaghetti":
                    lg.plot_spaghetti(ds, path, outcome=outcome, baseline=baseline)
                else:
                    lg.plot_forest(table, path,
                                   title=f"{label} {outcome}: % change from {baseline}")
                figs.append(path)
            except Sv2aError as exc:
                warnings.warn(f"{kind} plot not drawn: {exc}", stacklevel=1)
        res.figures = [str(f) for f in figs]
    res.warnings = list(dict.fromkeys(str(w.message) for w in caught))
    for w in res.warnings:
        log.warning("%s", w)
    notes = list(res.warnings)
    fails = out / "logs" / "failures.tsv"
    if fails.exists():
        n = len(pd.read_csv(fails, sep="\t"))
        notes.insert(0, f"{n} subject/session(s) failed at the participant level and are "
                     f"missing here; see {fails}")
    show = [c for c in ("region", "arm", "session", "n", "mean_pct_change", "ci_low",
                        "ci_high", "p_within", "q_within", "hedges_g", "mde_pct",
                        "contrast_arm", "ancova_pct_diff", "p_ancova", "q_ancova")
            if c in table.columns]
    text = (f"{res.n_subjects} subjects, {res.n_sessions} sessions; outcome {outcome} from "
            f"{label}; % change = 100 (follow-up / {baseline} - 1). Within-arm: paired t-test "
            "on log values, BH-adjusted across regions (q). Between arms: ANCOVA on "
            "log(follow-up) with log(baseline) as covariate.")
    if outcome in ("BPND", "DVR", "SUVR") and registry.get(model).kind == "reference":
        text += (" Reference region: centrum semiovale (CS) unless set otherwise; CS VT "
                 "overestimates VND by ~35-40 % (Rossano 2020), so CS-based BPND is biased "
                 "low in absolute terms.")
    res.report = str(report.group_report(out, [{
        "title": f"{label} {outcome}: change from baseline per arm", "text": text,
        "figures": figs, "table": table[show]}], notes=notes))
    res.seconds = time.perf_counter() - t0
    return res
