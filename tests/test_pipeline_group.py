"""Group level of ``sv2a run``: factorial contrasts, score associations, response prediction
and voxelwise statistics on a small ketamine-rodent phantom cohort, through the CLI."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from sv2a.errors import ConfigError
from sv2a.pipeline import PipelineConfig, run_participant
from sv2a.pipeline.config import PARTICIPANT_KEYS

STEM = "group_model-SRTM2_meas-BPND"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def rodent(tmp_path_factory) -> tuple[Path, Path]:
    """ketamine-rodent at 1 mm voxels, 12 rats (2 per arm), baseline + 3 w, SRTM2 with maps.

    The design keeps two of the four sessions (the 1 w effect and scores are dropped with
    them) so the participant level takes a few seconds."""
    from sv2a.phantom import make_cohort
    from sv2a.phantom.cohort import DESIGNS

    d = copy.deepcopy(DESIGNS["ketamine-rodent"])
    d["sessions"] = ["baseline", "3w"]
    d["time_since_dose_h"] = {"baseline": None, "3w": 504}
    d["effects"]["stress_repeated"].pop("1w")
    for sc in d["scores"].values():
        sc["mean"] = {a: {k: v for k, v in m.items() if k in ("*", "baseline", "3w")}
                      for a, m in sc["mean"].items()}
    root = tmp_path_factory.mktemp("rodent") / "bids"
    make_cohort(root, d, seed=3, n_subjects=12, voxel_mm=1.0, noise=0.5)
    out = root.parent / "out"
    cfg = PipelineConfig(models=["srtm2"], reference="brainstem", voxelwise=True,
                         figures=False).validate()
    assert run_participant(root, out, cfg, quiet=True).ok
    return root, out


def _copy(rodent, tmp_path: Path) -> tuple[Path, Path]:
    bids, out = rodent
    b, o = tmp_path / "bids", tmp_path / "out"
    shutil.copytree(bids, b)
    shutil.copytree(out, o)
    return b, o


def _run(bids: Path, out: Path, *flags: str) -> int:
    from sv2a.cli import main

    return main(["run", str(bids), str(out), "group", "--model", "srtm2", "-q", *flags])


@pytest.mark.slow
def test_group_statistics_end_to_end(rodent, tmp_path, capsys):
    bids, out = _copy(rodent, tmp_path)
    # a hostile score name and description: must reach the report escaped, never as markup
    pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(1, 13)],
                  HOSTILE: np.linspace(1.0, 2.0, 12)}).to_csv(
        bids / "phenotype" / "hostile.tsv", sep="\t", index=False)
    rc = _run(bids, out, "--formula", "treatment * context", "--contrast",
              "rs=[treatment=repeated,context=stress]-[treatment=vehicle,context=stress]",
              "--scores", "--responder", "sucrose_preference >= 10%", "--voxelwise-stats",
              "--permutations", "20", "--tfce")
    assert rc == 0, capsys.readouterr().err
    g = out / "group"
    # contrasts: every coefficient/term/cell and the custom contrast, with its sidecar
    con = pd.read_csv(g / f"{STEM}_contrasts.tsv", sep="\t")
    assert {"region", "session", "kind", "term", "pct", "pct_ci_low", "pct_ci_high", "p",
            "q_bh", "eta2_partial", "mde_pct", "n"} <= set(con)
    assert {"term", "coefficient", "cell", "contrast"} <= set(con["kind"])
    assert "treatment[repeated]:context[stress]" in set(con["term"]) and "rs" in set(con["term"])
    side = json.loads((g / f"{STEM}_contrasts.json").read_text())
    assert side["Formula"] == "treatment * context"
    assert side["ReferenceLevels"] == {"treatment": "vehicle", "context": "control"}
    assert side["N"] == 12 and side["ExcludedSubjects"] == {}
    # associations: one row per score x region, both phantom scores and the hostile one
    assoc = pd.read_csv(g / f"{STEM}_association.tsv", sep="\t")
    assert {"score", "region", "session", "n", "r", "ci_low", "ci_high", "p", "q_bh"} <= set(
        assoc)
    assert {"sucrose_preference", "social_interaction", HOSTILE} <= set(assoc["score"])
    # the strongest |r| row equals Pearson r computed here from the files (independent route)
    kin = pd.read_csv(g / "group_model-SRTM2_kinpar.tsv", sep="\t")
    sp = pd.read_csv(bids / "phenotype/sucrose_preference.tsv", sep="\t")
    row = assoc[assoc.score == "sucrose_preference"].iloc[0]
    k = kin[kin.region == row.region].pivot(index=kin.columns[0], columns="session",
                                            values="BPND")
    x = 100 * (k["3w"] / k["baseline"] - 1)
    s = sp.pivot(index="participant_id", columns="session_id", values="sucrose_preference")
    y = (s["ses-3w"] - s["ses-baseline"]).to_numpy()
    # same subjects in the same order (sub-01..12); float64 arithmetic -> 1e-9
    assert row.r == pytest.approx(np.corrcoef(x.to_numpy(), y)[0, 1], abs=1e-9)
    # prediction: summary + calibration sidecar
    pred = pd.read_csv(g / f"{STEM}_prediction.tsv", sep="\t")
    assert {"auc", "auc_ci_low", "auc_ci_high", "p_permutation", "adequate"} <= set(pred)
    pside = json.loads((g / f"{STEM}_prediction.json").read_text())
    assert "Calibration" in pside and pside["Adequate"] is False
    # voxelwise: one set of maps + cluster table per coefficient, readable NIfTI
    tmap = g / f"{STEM}_contrast-treatmentrepeatedcontextstress_stat-t_statmap.nii.gz"
    assert nib.load(tmap).shape == nib.load(next(
        out.glob("sub-01/ses-baseline/pet/*_model-SRTM2_meas-BPND_mimap.nii.gz"))).shape
    clus = pd.read_csv(g / f"{STEM}_contrast-contextstress_clusters.tsv", sep="\t")
    assert {"size_vox", "peak_t", "p_fwe"} <= set(clus)
    figs = {p.name for p in (g / "figures").iterdir()}
    assert f"{STEM}_desc-roc_plot.png" in figs
    assert f"{STEM}_score-sucrosepreference_desc-association_plot.png" in figs
    assert any(f.endswith("_desc-statslices_plot.png") for f in figs)
    # report: the four sections, each with a reading line; hostile strings escaped
    html = (out / "group.html").read_text()
    for sec in ("contrasts", "associations", "prediction", "voxelwise"):
        assert f'<h2 id="{sec}">' in html
    assert html.count('<p class="reading">') == 4
    assert "smallest detectable correlation at n = 12 is r = 0.73" in html
    assert "too imprecise" in html  # the small-n note of the prediction
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_voxelwise_stats_without_maps_says_so(rodent, tmp_path, capsys):
    bids, out = _copy(rodent, tmp_path)
    for p in out.glob("sub-*/ses-*/pet/*_mimap.*"):
        p.unlink()
    assert _run(bids, out, "--voxelwise-stats", "--permutations", "5") == 0
    html = (out / "group.html").read_text()
    assert '<h2 id="voxelwise">' in html and "run the participant level with --voxelwise" in html
    assert not list((out / "group").glob("*_statmap.nii.gz"))


def test_group_level_refuses_out_of_date_scans(rodent, tmp_path, capsys):
    """An input edited after the participant level: the group level names the scan and
    stops; once the participant level has redone it, the group level runs."""
    bids, out = _copy(rodent, tmp_path)
    pet = sorted(bids.glob("sub-*/ses-baseline/pet/*_pet.nii.gz"))[0]
    img = nib.load(pet)
    data = np.asarray(img.dataobj, dtype=np.float32)
    data[..., -5:] *= 1.3
    nib.save(nib.Nifti1Image(data, img.affine), str(pet))
    assert _run(bids, out) == 1
    err = capsys.readouterr().err
    stem = pet.name.split("_pet.nii")[0]
    assert "1 scan(s) have inputs that changed" in err and stem in err and "changed" in err
    cfg = PipelineConfig(models=["srtm2"], reference="brainstem", voxelwise=True,
                         figures=False).validate()
    s = run_participant(bids, out, cfg, quiet=True)
    assert s.ok and [r["stem"] for r in s.done] == [stem]
    assert _run(bids, out) == 0


def test_bad_formula_fails_with_message(rodent, tmp_path, capsys):
    bids, out = _copy(rodent, tmp_path)
    # does not parse: refused at configuration time
    assert _run(bids, out, "--formula", "treatment * (context") == 1
    assert "--formula" in capsys.readouterr().err
    # parses but names a column participants.tsv lacks: the group stage fails with the
    # library's DesignError message on stderr
    assert _run(bids, out, "--formula", "treatment * dose") == 1
    err = capsys.readouterr().err
    assert "'dose'" in err and "participants.tsv" in err
    assert not (out / "group" / f"{STEM}_contrasts.tsv").exists()


def test_level_with_one_subject_fails(rodent, tmp_path, capsys):
    bids, out = _copy(rodent, tmp_path)
    part = pd.read_csv(bids / "participants.tsv", sep="\t")
    part.loc[0, "treatment"] = "lonely"
    part.to_csv(bids / "participants.tsv", sep="\t", index=False)
    assert _run(bids, out, "--formula", "treatment + context") == 1
    err = capsys.readouterr().err
    assert "fewer than 2" in err and "lonely" in err


def test_group_config_validation():
    cfg = PipelineConfig(formula="treatment * context", contrasts=["a=[treatment=single]"],
                         score=["sucrose_preference"], permutations="50").validate()
    assert cfg.contrasts == {"a": "[treatment=single]"} and cfg.permutations == 50
    assert not set(PARTICIPANT_KEYS) & {"formula", "contrasts", "covariates", "scores",
                                        "score", "responder", "voxelwise_stats",
                                        "permutations", "tfce", "cluster_p"}
    bad = [dict(formula="y ~ treatment"), dict(formula="treatment *"),
           dict(contrasts={"a": "[treatment=single]"}),
           dict(formula="arm", contrasts={"not-an-id": "[arm=x]"}),
           dict(formula="arm", covariates=["1age"]), dict(score=["a b"]),
           dict(responder="madrs is low"), dict(permutations=0),
           dict(voxelwise_stats=True, cluster_p=2.0), dict(tfce=True)]
    for kw in bad:
        with pytest.raises(ConfigError):
            PipelineConfig(**kw).validate()


def test_group_keys_from_config_file(tmp_path):
    from sv2a.pipeline.config import resolve_config

    f = tmp_path / "sv2a.json"
    f.write_text(json.dumps({"formula": "treatment * context", "covariates": ["age"],
                             "scores": True, "voxelwise_stats": True, "permutations": 100,
                             "tfce": True, "cluster_p": 0.01}))
    cfg = resolve_config({"permutations": 200}, f)
    assert (cfg.formula, cfg.covariates, cfg.permutations, cfg.cluster_p) == (
        "treatment * context", ["age"], 200, 0.01)
