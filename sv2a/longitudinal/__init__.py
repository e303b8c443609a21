"""Longitudinal and group statistics: did synaptic density change, and do arms differ?

Typical use::

    ds = sv2a.longitudinal.collect("derivatives/sv2a", participants="participants.tsv",
                                   model="SRTM2", outcome="BPND")
    sv2a.longitudinal.save(ds, "group/group_model-SRTM2_kinpar.nc")
    table = sv2a.longitudinal.compare_arms(ds, outcome="BPND", baseline="baseline")
    mm = sv2a.longitudinal.mixed_model(ds, outcome="BPND", baseline="baseline")
    rtm = sv2a.longitudinal.baseline_dependence(ds, outcome="BPND", baseline="baseline")
    sv2a.longitudinal.plot_forest(table, "forest.png")
    fac = sv2a.longitudinal.contrast(ds, "treatment * context", outcome="BPND")
    scores = sv2a.longitudinal.load_scores("bids")          # phenotype/, participants, sessions
    assoc = sv2a.longitudinal.associate(ds, scores, score="sucrose_preference")
    pred = sv2a.longitudinal.predict_response(ds, scores, responder="madrs <= -50%")

Statistics: % change from baseline with CIs, paired tests on log values, ANCOVA (Vickers &
Altman 2001) and linear mixed models between arms, Holm / Benjamini-Hochberg adjustment across
regions, Hedges g with CIs, minimal detectable effects next to every estimate; a two-way ANOVA
for cross-sectional designs; Oldham's method (Oldham 1962) and a test-retest null for
baseline-dependence (regression to the mean) claims.

Examples
--------
>>> import warnings
>>> import sv2a.longitudinal as lg
>>> ds = lg.simulate_design("ketamine-rodent", n_per_arm=4, seed=0, regions=["cortex"])
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     table = lg.compare_arms(ds, outcome="BPND", baseline="baseline", n_boot=0)
>>> len(table), table.attrs["reference_arm"]   # 6 arms x 3 follow-up sessions
(18, 'control_vehicle')
"""

from __future__ import annotations

from ._stats import adjust_pvalues, choose_reference_arm, hedges_g_ci
from .associate import associate, association_data, plot_association
from .baseline import baseline_dependence
from .collect import collect, from_tidy, load, save, session_order, to_tidy
from .compare import compare_arms, write_table
from .contrast import contrast, formula_variables
from .crosssectional import cross_sectional_anova
from .mixed import mixed_model
from .plots import mean_change_maps, plot_change_maps, plot_forest, plot_spaghetti
from .power import minimal_detectable_effect, required_n
from .predict import ResponsePrediction, plot_roc, predict_response
from .scores import as_scores, load_scores, score_values
from .simulate import DESIGNS, simulate_design, true_pct_change, write_derivatives
from .voxelwise import (
    VoxelwiseResult,
    load_maps,
    plot_stat_slices,
    statmap_filename,
    tfce,
    voxelwise_arm_contrast,
    voxelwise_change,
    voxelwise_glm,
    write_statmaps,
)

__all__ = [
    "collect", "save", "load", "to_tidy", "from_tidy", "session_order",
    "compare_arms", "write_table", "mixed_model", "cross_sectional_anova", "baseline_dependence",
    "minimal_detectable_effect", "required_n", "adjust_pvalues", "choose_reference_arm",
    "hedges_g_ci", "plot_spaghetti", "plot_forest", "plot_change_maps", "mean_change_maps",
    "simulate_design", "true_pct_change", "write_derivatives", "DESIGNS",
    "load_maps", "voxelwise_change", "voxelwise_arm_contrast", "voxelwise_glm", "tfce",
    "VoxelwiseResult", "write_statmaps", "statmap_filename", "plot_stat_slices",
    "contrast", "formula_variables", "associate", "association_data", "plot_association",
    "predict_response", "ResponsePrediction", "plot_roc", "load_scores", "as_scores",
    "score_values",
]
