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

from ..atomic import atomic_path
from ..commits import committed_scans, committed_view, done_markers
from ..errors import DataError, DesignError, Sv2aError
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


# --------------------------------------------------------------------------- group statistics

_ALPHA = 0.05


def _fmt(v: Any, digits: int = 2) -> str:
    """A number for a reading line (``n/a`` when not finite)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:.{digits}g}" if np.isfinite(f) else "n/a"


def _pct(v: Any) -> str:
    """A signed % for a reading line: ``+11 %``."""
    f = float(v)
    return "n/a" if not np.isfinite(f) else f"{f:+.0f} %"


def _safe(s: str) -> str:
    """Letters and digits only (a BIDS entity value)."""
    return re.sub(r"[^A-Za-z0-9]", "", str(s)) or "x"


def _detectable_r(n: int, alpha: float = _ALPHA, power: float = 0.8) -> float:
    """Smallest |r| a two-sided test detects with ``power`` at ``n`` pairs (Fisher z)."""
    if n <= 3:
        return float("nan")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(math.tanh(z / math.sqrt(n - 3)))


def _coef_mde(se: float, df: float) -> float:
    """Minimal detectable % change of one log-scale coefficient with standard error ``se``
    and ``df`` residual degrees of freedom (80 % power, two-sided 5 %): the one-sample MDE
    with ``n = df + 1`` and ``sd = se sqrt(n)``, which has the same t reference."""
    from ..longitudinal import minimal_detectable_effect

    if not (np.isfinite(se) and np.isfinite(df)) or df < 1:
        return float("nan")
    n = int(round(df)) + 1
    return float(minimal_detectable_effect(n, se * math.sqrt(n)))


def _pretty_term(term: str, reference: dict[str, str]) -> str:
    """``treatment[repeated]:context[stress]`` -> ``repeated x stress interaction``;
    ``treatment[repeated]`` -> ``repeated vs vehicle (treatment)``."""
    parts = re.findall(r"(\w+)\[([^\]]*)\]", term)
    if not parts or ":" not in term and len(parts) != 1:
        return term
    if len(parts) > 1:
        return " × ".join(lev for _, lev in parts) + " interaction"
    fac, lev = parts[0]
    ref = reference.get(fac)
    return f"{lev} vs {ref} ({fac})" if ref else f"{fac} {lev}"


def _score_label(sc: pd.DataFrame, score: str) -> str:
    """Human name of a score: the sidecar description's first words, else the column name."""
    return score.replace("_", " ")


def _contrasts_stats(ds: xr.Dataset, cfg: PipelineConfig, baseline: str, gdir: Path,
                     label: str, sources: list[str]
                     ) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Factorial contrasts: write the table + sidecar; return its path, the report section
    and the reference level of each factor."""
    from .. import longitudinal as lg

    model, outcome = cfg.group_model, cfg.outcome
    formula = str(cfg.formula)
    table = lg.contrast(ds, formula, outcome=outcome, baseline=baseline,
                        covariates=cfg.covariates or None, contrasts=cfg.contrasts or None)
    attrs = dict(table.attrs)
    table["mde_pct"] = [
        _coef_mde(float(se), float(df)) if k in ("coefficient", "contrast") and np.isfinite(pct)
        else np.nan
        for k, se, df, pct in zip(table["kind"], table["se"], table["df_den"], table["pct"],
                                  strict=True)]
    path = gdir / drv.comparison_name(model, outcome).replace("_comparison.tsv",
                                                              "_contrasts.tsv")
    write_tsv(path, table)
    n_used = int(np.nanmax(table["n"])) if table["n"].notna().any() else 0
    write_json(path.with_suffix(".json"), {
        "Description": f"Factorial model of {outcome} ({label}) per region and session: "
                       "coefficients, type II F tests of the terms, cells and custom contrasts",
        "Formula": formula, "Model": attrs.get("model"), "Design": attrs.get("design"),
        "Method": attrs.get("method"), "Outcome": outcome, "Baseline": attrs.get("baseline"),
        "Covariates": list(cfg.covariates or []), "Contrasts": dict(cfg.contrasts or {}),
        "ReferenceLevels": attrs.get("reference"), "Levels": attrs.get("levels"),
        "Coefficients": attrs.get("coefficients"), "ExcludedSubjects": attrs.get("excluded"),
        "N": n_used,
        "Columns": {"pct": attrs.get("pct"), "pct_ci_low/pct_ci_high": "95 % CI of pct",
                    "p_holm/q_bh": "Holm / Benjamini-Hochberg across regions",
                    "eta2_partial": "partial eta squared",
                    "mde_pct": "minimal detectable % change of the row at 80 % power, "
                               "two-sided 5 %"},
        **drv.provenance(sources=sources),
    })
    ref = dict(attrs.get("reference") or {})
    show = table[(table["kind"].isin(["coefficient", "term", "contrast"]))
                 & (table["term"] != "Intercept") & (table["term"] != "log_baseline")].copy()
    show["effect"] = [t if k == "contrast" else _pretty_term(t, ref)
                      for k, t in zip(show["kind"], show["term"], strict=True)]
    cand = show[show["kind"].isin(["coefficient", "contrast"]) & np.isfinite(show["pct"])]
    if cand.empty:
        reading = f"The formula {formula} gave no estimable % change on {outcome}."
    else:
        best = cand.sort_values(["q_bh", "p"], na_position="last").iloc[0]
        where = f"in {best['region']}" + (f" at {best['session']}"
                                          if ds.sizes["session"] > 2 else "")
        if float(best["q_bh"]) < _ALPHA:
            reading = (f"The {best['effect']} effect on {outcome} is {_pct(best['pct'])} (95 % "
                       f"CI {best['pct_ci_low']:.0f} to {best['pct_ci_high']:.0f} %) {where}, "
                       f"q = {_fmt(best['q_bh'])}.")
        else:
            reading = (f"No term of {formula} changes {outcome} at q < {_ALPHA} in any region; "
                       f"the strongest is {best['effect']} {where}, {_pct(best['pct'])} (95 % "
                       f"CI {best['pct_ci_low']:.0f} to {best['pct_ci_high']:.0f} %, q = "
                       f"{_fmt(best['q_bh'])}), and changes smaller than about "
                       f"±{best['mde_pct']:.0f} % could not have been detected (80 % power).")
    notes = [f"{k} left out: {v}" for k, v in (attrs.get("excluded") or {}).items()]
    text = (f"Model: {attrs.get('model')}. Reference levels: "
            + ", ".join(f"{k} = {v}" for k, v in ref.items())
            + ". % change = 100 (exp(b) - 1) of the change ratio (difference of change "
              "between levels); terms: type II F tests; q: Benjamini-Hochberg across regions; "
              "mde_pct: smallest % change detectable with 80 % power. Cell means are in the "
              "TSV file.")
    cols = ["kind", "effect", "region", "session", "pct", "pct_ci_low", "pct_ci_high",
            "statistic", "df_num", "df_den", "p", "q_bh", "eta2_partial", "mde_pct", "n"]
    order = {"term": 0, "coefficient": 1, "contrast": 2}
    show = show.assign(_o=show["kind"].map(order)).sort_values(
        ["session", "_o", "term", "region"], kind="stable")
    section = {"id": "contrasts", "title": f"{label} {outcome}: factorial contrasts ({formula})",
               "reading": reading, "text": text, "notes": notes,
               "tables": [("", show[cols])]}
    return str(path), section, ref


def _score_columns(sc: pd.DataFrame, cfg: PipelineConfig) -> list[str]:
    """Scores to correlate: ``cfg.score``, else every numeric phenotype/ column."""
    if cfg.score:
        return list(cfg.score)
    src = sc.attrs.get("sources", {})
    # a binary responder column is a label, not a score to correlate
    resp = (cfg.responder or "").strip()
    skip = {resp} if resp.isidentifier() else set()
    return [c for c in sc.columns if c not in ("subject", "session") and c not in skip
            and Path(str(src.get(c, ""))).parent.name == "phenotype"
            and pd.api.types.is_numeric_dtype(sc[c])]


def _association_stats(ds: xr.Dataset, sc: pd.DataFrame, cfg: PipelineConfig, baseline: str,
                       gdir: Path, fig_dir: Path, stem: str, label: str, sources: list[str]
                       ) -> tuple[str, list[Path], dict[str, Any]]:
    """Correlations of each score with the outcome's change per region; table, figures and
    report section."""
    from .. import longitudinal as lg

    outcome = cfg.outcome
    names = _score_columns(sc, cfg)
    section: dict[str, Any] = {"id": "associations",
                               "title": f"{label} {outcome}: association with scores"}
    if not names:
        section["reading"] = ("No numeric score in phenotype/*.tsv to correlate; name one "
                              "with --score.")
        warnings.warn(section["reading"], stacklevel=1)
        return "", [], section
    tables, figs, readings = [], [], []
    for score in names:
        t = lg.associate(ds, sc, score=score, outcome=outcome, baseline=baseline,
                         unknown_subjects="exclude")
        t.insert(0, "score", score)
        tables.append(t)
        ok = t[np.isfinite(t["p"])]
        human = _score_label(sc, score)
        y_lab = str(t.attrs.get("y_label", score))
        if ok.empty:
            readings.append(f"{human}: no region has enough pairs for a correlation.")
            continue
        best = ok.sort_values(["q_bh", "p"]).iloc[0]
        n_max = int(ok["n"].max())
        if float(best["q_bh"]) < _ALPHA:
            readings.append(
                f"The % change in {outcome} in {best['region']} correlates with {y_lab}: "
                f"r = {best['r']:.2f} (95 % CI {best['ci_low']:.2f} to {best['ci_high']:.2f}), "
                f"q = {_fmt(best['q_bh'])}, n = {int(best['n'])}.")
        else:
            readings.append(
                f"No region shows an association with {human} (strongest: {best['region']}, "
                f"r = {best['r']:.2f}, q = {_fmt(best['q_bh'])}); the smallest detectable "
                f"correlation at n = {n_max} is r = {_detectable_r(n_max):.2f}.")
        data = lg.association_data(ds, sc, score=score, outcome=outcome, baseline=baseline,
                                   unknown_subjects="exclude")
        path = fig_dir / f"{stem}_score-{_safe(score)}_desc-association_plot.png"
        try:
            lg.plot_association(data, region=str(best["region"]), session=str(best["session"]),
                                path=path)
            figs.append(path)
        except Sv2aError as exc:
            warnings.warn(f"association plot of {score} not drawn: {exc}", stacklevel=1)
    table = pd.concat(tables, ignore_index=True)
    path = gdir / drv.comparison_name(cfg.group_model, outcome).replace(
        "_comparison.tsv", "_association.tsv")
    write_tsv(path, table)
    excluded = {s: t.attrs.get("excluded", {}) for s, t in zip(names, tables, strict=True)}
    write_json(path.with_suffix(".json"), {
        "Description": f"Pearson correlation of the % change of {outcome} from '{baseline}' "
                       "with each score (its change from baseline when measured then), per "
                       "region and follow-up session",
        "Scores": names, "Outcome": outcome, "Baseline": baseline,
        "ScoreSources": {s: sc.attrs.get("sources", {}).get(s) for s in names},
        "ExcludedSubjects": excluded,
        "Columns": {"r": "Pearson r", "ci_low/ci_high": "95 % Fisher-z CI of r",
                    "q_bh": "Benjamini-Hochberg across regions",
                    "slope": "score units per % change of the outcome"},
        **drv.provenance(sources=sources),
    })
    notes = [f"{score}: {k} left out ({v})" for score, ex in excluded.items()
             for k, v in ex.items()]
    cols = ["score", "region", "session", "n", "r", "ci_low", "ci_high", "p", "q_bh", "slope",
            "slope_ci_low", "slope_ci_high"]
    section.update(reading=" ".join(readings), notes=notes, figures=figs,
                   text="x: % change of " + outcome + " from " + baseline + "; y: score (or "
                        "its change from baseline when it was measured at baseline). Scatter: "
                        "the region with the strongest correlation per score.",
                   tables=[("", table[cols])])
    return str(path), figs, section


def _prediction_stats(ds: xr.Dataset, sc: pd.DataFrame, cfg: PipelineConfig, baseline: str,
                      gdir: Path, fig_dir: Path, stem: str, label: str, sources: list[str]
                      ) -> tuple[str, list[Path], dict[str, Any]]:
    """Cross-validated prediction of the responder label; table, sidecar, ROC, section."""
    from .. import longitudinal as lg

    outcome = cfg.outcome
    r = lg.predict_response(ds, sc, responder=cfg.responder, outcome=outcome,
                            baseline=baseline, response_session=cfg.response_session,
                            unknown_subjects="exclude")
    summ = r.summary()
    summ.insert(0, "responder", str(r.settings.get("responder", cfg.responder)))
    path = gdir / drv.comparison_name(cfg.group_model, outcome).replace(
        "_comparison.tsv", "_prediction.tsv")
    write_tsv(path, summ)
    write_json(path.with_suffix(".json"), {
        "Description": f"Cross-validated prediction of response ({cfg.responder}) from "
                       f"baseline {outcome} ({label}) per region; L2-penalised logistic "
                       "regression, AUC with bootstrap CI and permutation p",
        "Settings": r.settings, "CalibrationSlope": r.calibration_slope,
        "CalibrationIntercept": r.calibration_intercept,
        "Calibration": r.calibration.to_dict(orient="records"),
        "Coefficients": r.coefficients.to_dict(orient="records"),
        "Predictions": r.predictions.to_dict(orient="records"),
        "ExcludedSubjects": r.excluded, "Adequate": r.adequate, "Note": r.note,
        **drv.provenance(sources=sources),
    })
    figs: list[Path] = []
    roc = fig_dir / f"{stem}_desc-roc_plot.png"
    lg.plot_roc(r, roc)
    figs.append(roc)
    rule = str(r.settings.get("responder", cfg.responder))
    pv = "" if not np.isfinite(r.p_permutation) else f", permutation p = {_fmt(r.p_permutation)}"
    verdict = ("" if np.isfinite(r.p_permutation) and r.p_permutation < _ALPHA
               and r.auc_ci_low > 0.5 else " no better than chance")
    from ..report import MIN_N_BOOTSTRAP

    small = min(r.n_responders, r.n_nonresponders) < MIN_N_BOOTSTRAP
    ci = ("bootstrap CI not shown: fewer than "
          f"{MIN_N_BOOTSTRAP} per class" if small
          else f"95 % CI {r.auc_ci_low:.2f} to {r.auc_ci_high:.2f}")
    reading = (f"Baseline {outcome} predicts response ({rule}){verdict}: cross-validated AUC "
               f"{r.auc:.2f} ({ci}){pv}, "
               f"{r.n_responders} responders / {r.n_nonresponders} non-responders; "
               f"calibration slope {r.calibration_slope:.2f}.")
    notes = ([r.note] if not r.adequate and r.note else [])
    notes += [f"{k} left out: {v}" for k, v in r.excluded.items()]
    cal = r.calibration.copy()
    section = {"id": "prediction", "title": f"{label} {outcome}: prediction of response",
               "reading": reading, "notes": notes, "figures": figs,
               "text": "Features: log baseline " + outcome + " per region, standardised "
                       "inside each training fold; AUC from held-out subjects only; "
                       "calibration slope 1 = calibrated, < 1 = over-confident.",
               "tables": [("", summ.drop(columns=["note"])), ("Calibration", cal)]}
    return str(path), figs, section


def _voxelwise_formula(maps: xr.DataArray, formula: str, reference: dict[str, str]
                       ) -> tuple[str, list[str]]:
    """The formula with explicit reference levels for each text variable, and its factors."""
    from .. import longitudinal as lg

    out = formula
    factors = []
    for v in lg.formula_variables(formula):
        if v not in maps.coords or maps[v].dims != ("subject",):
            continue
        vals = maps[v].values
        if np.issubdtype(np.asarray(vals).dtype, np.number):
            continue
        levels = sorted({str(x) for x in vals})
        ref = reference.get(v) or lg.choose_reference_arm(levels)
        out = re.sub(rf"(?<![\w.'\"]){re.escape(v)}(?![\w'\"(])",
                     f"C({v}, Treatment({ref!r}))", out)
        factors.append(v)
    return out, factors


def _pretty_column(col: str) -> str:
    """``C(treatment, Treatment('vehicle'))[T.repeated]`` -> ``treatment[repeated]``."""
    s = re.sub(r"C\((\w+), Treatment\([^)]*\)\)", r"\1", col)
    return s.replace("[T.", "[")


def _within_arm_change(lg: Any, maps: xr.DataArray, baseline: str, ses: str,
                       cfg: PipelineConfig, atlas: Any) -> Any:
    """Voxelwise change from baseline within the one arm scanned at ``ses`` (or None)."""
    have = np.isfinite(maps.sel(session=ses).values).any(axis=(1, 2, 3))
    arms = sorted({str(a) for a, h in zip(maps["arm"].values, have, strict=True) if h})
    if len(arms) != 1:
        return None
    return lg.voxelwise_change(maps, arm=arms[0], baseline=baseline, followup=ses,
                               n_perm=cfg.permutations, seed=0, tfce=cfg.tfce,
                               cluster_p=cfg.cluster_p or 0.001, atlas=atlas,
                               name=f"{arms[0]}{_safe(ses)}")


def _voxelwise_stats(out: Path, bids_dir: Path, cfg: PipelineConfig, baseline: str,
                     gdir: Path, fig_dir: Path, stem: str, label: str,
                     reference: dict[str, str], src: Path | None = None
                     ) -> tuple[list[str], list[Path], dict[str, Any]]:
    """Voxelwise GLM of every coefficient of the formula with permutation FWE (maps read
    from ``src``, the committed view of ``out``)."""
    import patsy

    from .. import longitudinal as lg

    outcome = cfg.outcome
    section: dict[str, Any] = {"id": "voxelwise", "title": f"{label} {outcome}: voxelwise maps"}
    src = out if src is None else src
    found = list(src.glob(f"sub-*/**/*_model-{label}_*meas-{outcome}_*mimap.nii*"))
    if not found:
        msg = (f"voxelwise statistics skipped: no {label} {outcome} parametric maps in {out}; "
               f"run the participant level with --voxelwise (and --voxelwise-model "
               f"{cfg.group_model}) first.")
        warnings.warn(msg, stacklevel=1)
        section["reading"] = "No voxelwise maps: " + msg
        return [], [], section
    participants = bids_dir / "participants.tsv"
    maps = lg.load_maps(src, model=cfg.group_model, param=outcome,
                        participants=participants if participants.exists() else None)
    formula = cfg.formula or "arm"
    vformula, _ = _voxelwise_formula(maps, formula, reference)
    covs = list(cfg.covariates or [])
    full = vformula + "".join(f" + {c}" for c in covs)
    subjects = [str(s) for s in maps["subject"].values]
    table = pd.DataFrame({str(c): maps[c].values for c in maps.coords
                          if maps[c].dims == ("subject",) and c != "subject"}, index=subjects)
    try:
        cols = [str(c) for c in patsy.dmatrix(vformula, table, return_type="dataframe",
                                              NA_action="drop").columns if c != "Intercept"]
    except patsy.PatsyError as exc:
        raise DesignError(f"voxelwise statistics: cannot build the design of {formula!r}: "
                          f"{exc.message}") from exc
    sessions = [str(s) for s in maps["session"].values]
    if baseline in sessions and len(sessions) > 1:
        runs = [("log_change", s) for s in sessions if s != baseline]
    else:
        runs = [("log", s) for s in sessions]
    atlas = _first_atlas(bids_dir, maps)
    written: list[str] = []
    figs: list[Path] = []
    rows, clusters = [], []
    correction = "tfce" if cfg.tfce else "voxel"
    pname = "tfcepfwe" if cfg.tfce else "pfwe"
    for response, ses in runs:
        for col in cols:
            pretty = _pretty_column(col)
            name = _safe(pretty) + (_safe(ses) if len(runs) > 1 else "")
            kw: dict[str, Any] = ({"baseline": baseline, "followup": ses}
                                  if response == "log_change" else {"session": ses})
            try:
                res = lg.voxelwise_glm(maps, full, contrast=col, response=response,
                                       n_perm=cfg.permutations, seed=0, tfce=cfg.tfce,
                                       cluster_p=cfg.cluster_p or 0.001, atlas=atlas,
                                       name=name, **kw)
            except DesignError as exc:
                # the arms scanned at this session do not span the formula (e.g. one arm
                # per follow-up): test the change within each arm that has the session
                if response != "log_change" or "rank-deficient" not in str(exc):
                    raise
                res = _within_arm_change(lg, maps, baseline, ses, cfg, atlas)
                if res is None:
                    continue
                pretty = f"change in {res.name}"
            written += [str(p) for p in lg.write_statmaps(res, gdir)]
            fig = lg.plot_stat_slices(res, stat="t", correction=correction,
                                      title=f"{pretty} ({ses}): t, FWE ({correction}) p < 0.05")
            fpath = fig_dir / f"{stem}_contrast-{res.name}_desc-statslices_plot.png"
            with atomic_path(fpath) as tmp:
                fig.savefig(tmp, dpi=110, format="png")
            figs.append(fpath)
            mp = res.maps
            pmap = mp[pname].values
            sig = int(np.sum(np.nan_to_num(pmap, nan=1.0) < _ALPHA))
            tabs = np.abs(np.nan_to_num(mp["t"].values))
            rows.append({"contrast": pretty, "session": ses, "response": response,
                         "n": int(sum(mp.attrs.get("n", {}).values())),
                         "n_voxels": int(mp.attrs.get("n_voxels", 0)),
                         "max_abs_t": float(tabs.max()) if tabs.size else np.nan,
                         f"min_{pname}": float(np.nanmin(pmap)) if np.isfinite(pmap).any()
                         else np.nan,
                         "significant_voxels": sig,
                         "n_permutations": int(mp.attrs.get("n_rearrangements", 0)),
                         "n_clusters": len(res.clusters)})
            c = res.clusters.head(10).copy()
            c.insert(0, "contrast", pretty)
            c.insert(1, "session", ses)
            clusters.append(c)
            for e in mp.attrs.get("excluded", []) or []:
                warnings.warn(f"voxelwise {pretty}: {e}", stacklevel=1)
    summary = pd.DataFrame(rows)
    ctab = pd.concat(clusters, ignore_index=True) if clusters else pd.DataFrame()
    hits = summary[summary["significant_voxels"] > 0] if len(summary) else summary
    method = "TFCE" if cfg.tfce else "voxel max-t"
    if len(hits):
        h = hits.sort_values("significant_voxels", ascending=False).iloc[0]
        reading = (f"{int(h['significant_voxels'])} voxels show an effect of {h['contrast']} "
                   f"on {outcome} at {h['session']} (FWE p < {_ALPHA} by {method}, "
                   f"{int(h['n_permutations'])} permutations).")
        cl = ctab[(ctab["contrast"] == h["contrast"]) & (ctab["session"] == h["session"])]
        if len(cl):
            b = cl.iloc[0]
            reading += (f" Largest cluster {b['volume_ml']:.2g} mL, peak t = {b['peak_t']:.1f} "
                        f"at ({b['peak_x_mm']:.0f}, {b['peak_y_mm']:.0f}, {b['peak_z_mm']:.0f}) "
                        f"mm{' in ' + str(b['region']) if b['region'] else ''}.")
    else:
        pmin = float(np.nanmin(summary[f"min_{pname}"])) if len(summary) else np.nan
        nperm = int(summary["n_permutations"].min()) if len(summary) else 0
        reading = (f"No voxel survives FWE correction (p < {_ALPHA}, {method}) for any term "
                   f"of {formula} (smallest FWE p = {_fmt(pmin)}; with {nperm} permutations "
                   f"the smallest attainable p is {_fmt(1 / max(nperm, 1))}).")
    notes = [f"maps missing for {m}" for m in maps.attrs.get("missing", [])]
    notes += [f"{e}: no maps" for e in maps.attrs.get("excluded", [])]
    if atlas is None:
        notes.append("cluster regions not named: no segmentation on the maps' grid found.")
    section.update(
        reading=reading, notes=notes, figures=figs,
        text=(f"OLS at every voxel: log({outcome} follow-up / baseline) ~ {formula}"
              + "".join(f" + {c}" for c in covs)
              + f"; one t contrast per coefficient; FWE by Freedman-Lane permutation "
                f"({cfg.permutations} rearrangements, {method}); clusters formed at "
                f"one-sided p < {cfg.cluster_p or 0.001}. Slices show voxels with "
                f"FWE p < {_ALPHA}."),
        tables=[("Tests", summary), ("Clusters (10 largest per test)", ctab)])
    return written, figs, section


def _first_atlas(bids_dir: Path, maps: xr.DataArray) -> Any:
    """The first subject's segmentation when it lies on the maps' grid, else None."""
    from ..atlas import load_atlas

    aff = np.asarray(maps.attrs.get("affine"), float).reshape(4, 4)
    shape = tuple(int(maps.sizes[d]) for d in ("x", "y", "z"))
    for p in sorted(bids_dir.glob("sub-*/**/anat/*_dseg.nii*"))[:1]:
        try:
            atlas = load_atlas(p)
            atlas.check_grid(shape, aff)
            return atlas
        except (Sv2aError, OSError):
            return None
    return None


def _stale_scans(out: Path, bids_dir: Path) -> dict[str, list[str]]:
    """Committed scans whose input files (as recorded in their done-marker) changed since:
    ``{stem: ["<file> changed", ...]}``. Recorded values (the participants row, the
    settings) are not compared: arms and group settings may change between levels."""
    from .provenance import changed_files

    stale = {stem: changed_files(m.get("inputs"), bids_dir)
             for stem, m in done_markers(out).items()}
    return {stem: why for stem, why in stale.items() if why}


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
        Uses ``group_model``, ``outcome`` and ``baseline_session``; when set, ``formula``
        (with ``contrasts`` and ``covariates``: factorial contrasts), ``scores`` / ``score``
        (associations with ``phenotype/*.tsv`` scores), ``responder`` (response prediction)
        and ``voxelwise_stats`` (with ``permutations``, ``tfce``, ``cluster_p``).
    quiet : bool
        Accepted for symmetry with :func:`~sv2a.pipeline.run_participant` (the group level
        shows no progress bar).

    Returns
    -------
    GroupResult
        Paths of the NetCDF dataset, the comparison table, the contrast / association /
        prediction tables and statistic maps that were asked for, the figures and
        ``group.html``.

    Raises
    ------
    DataError
        No participant-level derivatives in ``out_dir``; unreadable or non-numeric scores.
    DesignError
        A formula, covariate or score naming a column that does not exist, a factor level
        with fewer than 2 subjects, or a responder class with fewer than 2 subjects (the
        library's message).
    """
    from .. import longitudinal as lg
    from .. import report
    from ..models import registry

    t0 = time.perf_counter()
    bids_dir, out = Path(bids_dir), Path(out_dir)
    if not out.is_dir():
        raise DataError(f"{out}: no derivatives here; run the participant level first "
                        f"(sv2a run {bids_dir} {out} participant)")
    if not committed_scans(out):
        raise DataError(f"{out}: no committed participant-level results (no scan with a "
                        f"valid done-marker); run the participant level first "
                        f"(sv2a run {bids_dir} {out} participant)")
    stale = _stale_scans(out, bids_dir)
    if stale:
        raise DataError(
            f"{len(stale)} scan(s) have inputs that changed after their participant-level "
            "results were made, so the group level would read out-of-date numbers: "
            + "; ".join(f"{stem} ({', '.join(why[:3])})" for stem, why in stale.items())
            + f". Run the participant level again first (sv2a run {bids_dir} {out} "
            "participant): it redoes exactly these scans")
    res = GroupResult(str(out))
    model, outcome = cfg.group_model, cfg.outcome
    label = drv.model_label(model)
    gdir = out / "group"
    participants = bids_dir / "participants.tsv"
    # only committed scans (valid done-marker, its files), never a half-committed one
    with warnings.catch_warnings(record=True) as caught, committed_view(out) as view:
        warnings.simplefilter("always")
        sessions = _sessions_table(bids_dir)
        ds = lg.collect(view, participants=participants if participants.exists() else None,
                        sessions=sessions, model=label)
        ds.attrs["source"] = str(out)
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
        cmp_figs = list(figs)
        extra: list[dict[str, Any]] = []
        reference: dict[str, str] = {}
        sources = [str(nc.relative_to(out))]
        if cfg.formula:
            res.contrasts, sec, reference = _contrasts_stats(ds, cfg, baseline, gdir, label,
                                                             sources)
            extra.append(sec)
        if cfg.scores or cfg.score or cfg.responder:
            scores = lg.load_scores(bids_dir)
            sources.append(bids_dir.name + "/phenotype")
            if cfg.scores or cfg.score:
                res.association, f_a, sec = _association_stats(
                    ds, scores, cfg, baseline, gdir, fig_dir, stem, label, sources)
                figs += f_a
                extra.append(sec)
            if cfg.responder:
                res.prediction, f_p, sec = _prediction_stats(
                    ds, scores, cfg, baseline, gdir, fig_dir, stem, label, sources)
                figs += f_p
                extra.append(sec)
        if cfg.voxelwise_stats:
            res.statmaps, f_v, sec = _voxelwise_stats(out, bids_dir, cfg, baseline, gdir,
                                                      fig_dir, stem, label, reference, view)
            figs += f_v
            extra.append(sec)
        for f in res.statmaps + [res.contrasts, res.association, res.prediction]:
            if f:
                log.info("group: wrote %s", f)
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
    first = {"id": "comparison", "title": f"{label} {outcome}: change from baseline per arm",
             "text": text, "figures": cmp_figs, "table": table[show]}
    res.report = str(report.group_report(out, [first, *extra], notes=notes))
    res.seconds = time.perf_counter() - t0
    return res
