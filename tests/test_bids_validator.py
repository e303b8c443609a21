"""BIDS conformance, checked by the official bids-validator and by pybids.

* ``demo_data/`` and the datasets ``sv2a phantom`` writes (human and rodent) pass the
  validator with zero errors;
* the derivatives folder of ``sv2a run`` passes with zero errors under the shipped validator
  configuration, whose only effect is to turn the ``NOT_INCLUDED`` of the proposal-stage
  suffixes (``_tacs``, ``_kinpar``, ``_mimap``) into warnings; without it those are the only
  errors, and every per-scan output is seen (none hidden by ``.bidsignore``);
* pybids indexes the derivatives, including the ``meas-`` entity of the maps.

The validator is the PyPI package ``bids-validator-deno`` (dev extras), run as a real
subprocess; the tests that need it skip when it is not installed, those that need pybids
skip without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sv2a.phantom import make_cohort
from sv2a.phantom.bidsignore import bidsignore_lines
from sv2a.pipeline import PipelineConfig, run_group, run_participant
from sv2a.pipeline import derivatives as drv
from sv2a.resources import bids_validator_config, demo_data_dir, pybids_config

#: On PATH, or beside this Python (a virtual environment used without activating it).
VALIDATOR = shutil.which("bids-validator-deno") or shutil.which(
    "bids-validator-deno", path=str(Path(sys.executable).parent))
needs_validator = pytest.mark.skipif(
    VALIDATOR is None, reason="bids-validator-deno is not installed (pip install "
    "bids-validator-deno, part of sv2a's dev extras)")

#: Warnings the derivatives may have besides the proposal-stage NOT_INCLUDED: the hint that
#: ``Authors`` lists fewer than two people (sv2a cannot know who ran it).
DERIVATIVE_HINTS = {"TOO_FEW_AUTHORS"}


# --------------------------------------------------------------------------- helpers
def run_validator(root: Path, config: Path | None = None) -> dict:
    """The validator's JSON report on ``root`` (exit 0: no error, 16: errors)."""
    cmd = [str(VALIDATOR), "--format", "json", str(root)]
    if config is not None:
        cmd += ["--config", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 16), f"validator failed to run:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def issues(report: dict, severity: str) -> list[tuple[str, str]]:
    """(code, location) of every issue of one severity, sorted."""
    return sorted((i["code"], str(i.get("location") or ""))
                  for i in report["issues"]["issues"] if i["severity"] == severity)


def assert_no_errors(report: dict, what: str) -> None:
    errors = issues(report, "error")
    listed = "\n".join(f"  {c} {loc}" for c, loc in errors[:40])
    assert not errors, f"{what}: {len(errors)} bids-validator error(s):\n{listed}"


def proposal_stage(location: str) -> bool:
    """A per-scan output with a proposal-stage suffix (``_tacs.tsv``, ``_mimap.json``...)."""
    name = Path(location).name
    return any(name.endswith((f"_{s}.tsv", f"_{s}.json", f"_{s}.nii.gz"))
               for s in drv.PROPOSAL_SUFFIXES)


# --------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def human(tmp_path_factory) -> Path:
    """4 subjects (2 arms) x 2 sessions, exact data, 8 mm voxels, blood for sub-01, head
    motion (true motion files) and MADRS scores (session-level phenotype)."""
    root = tmp_path_factory.mktemp("human") / "bids"
    make_cohort(root, "ketamine-human", seed=1, n_subjects=4, noise=0, fwhm=0, voxel_mm=8.0,
                blood=["sub-01"], motion=0.5)
    return root


@pytest.fixture(scope="module")
def rodent(tmp_path_factory) -> Path:
    """``sv2a phantom`` (the command) for 2 rats x 4 sessions, noisy (int16 images), 2 mm."""
    root = tmp_path_factory.mktemp("rodent") / "bids"
    done = subprocess.run([sys.executable, "-m", "sv2a.cli", "phantom", str(root), "--design",
                           "ketamine-rodent", "--subjects", "2", "--voxel-size", "2",
                           "--seed", "3", "--nprocs", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def derivatives(human, tmp_path_factory) -> Path:
    """``sv2a run`` participant and group level on the human phantom: realignment (motion
    tables), TACs with and without GTM partial-volume correction, 1TCM/SRTM2/SUVR tables,
    voxelwise SRTM2 maps, figures and reports, group tables."""
    out = tmp_path_factory.mktemp("deriv") / "sv2a"
    cfg = PipelineConfig(models=["1tcm", "srtm2", "suvr"], voxelwise=True, realign=True,
                         pvc="gtm").validate()
    summary = run_participant(human, out, cfg, quiet=True)
    assert summary.ok and len(summary.done) == 8
    run_group(human, out, cfg)
    assert any((out / "group").iterdir()) and any((out / "sub-01" / "figures").iterdir())
    return out


# --------------------------------------------------------------------------- raw datasets
@needs_validator
def test_demo_data_passes_the_validator():
    report = run_validator(demo_data_dir())
    summary = report["summary"]
    assert sorted(summary["subjects"]) == [f"{i:02d}" for i in range(1, 7)]
    assert "pet" in summary["dataTypes"]
    assert_no_errors(report, "demo_data/")


@needs_validator
@pytest.mark.parametrize("dataset", ["human", "rodent"])
def test_phantom_datasets_pass_the_validator(dataset, request):
    root = request.getfixturevalue(dataset)
    report = run_validator(root)
    # the PET, blood and participants files were validated, not ignored
    subjects = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    assert sorted(report["summary"]["subjects"]) == subjects
    assert len(subjects) == {"human": 4, "rodent": 2}[dataset]
    assert "pet" in report["summary"]["dataTypes"]
    # every column of participants.tsv / sessions.tsv has a data dictionary
    assert not [w for w in issues(report, "warning") if w[0] == "TSV_ADDITIONAL_COLUMNS_UNDEFINED"]
    assert_no_errors(report, f"sv2a phantom ({dataset})")


def test_phantom_bidsignore_lists_only_what_is_there(human, rodent):
    h = (human / ".bidsignore").read_text().splitlines()
    assert h == bidsignore_lines(human)
    for line in ("/truth.tsv", "/design.json", "sub-*/**/anat/*_dseg.nii.gz",
                 "sub-*/**/pet/*_desc-motiontruth_timeseries.tsv", "/phenotype/madrs.tsv"):
        assert line in h
    r = (rodent / ".bidsignore").read_text().splitlines()
    assert not any("motiontruth" in line for line in r)  # no motion simulated
    assert "/phenotype/sucrose_preference.tsv" in r
    for lines in (h, r):  # nothing BIDS defines is hidden
        assert not [x for x in lines if not x.startswith("#")
                    and any(k in x for k in ("_pet", "_blood", "participants", "sessions"))]


def test_demo_data_bidsignore_is_what_the_phantom_writes():
    root = demo_data_dir()
    assert (root / ".bidsignore").read_text().splitlines() == bidsignore_lines(root)
    assert (root / "code" / "make_demo.py").is_file()
    assert not (root / "make_demo.py").exists()  # BIDS keeps code in code/


# --------------------------------------------------------------------------- derivatives
def test_derivatives_bidsignore_hides_no_output(derivatives):
    lines = [x for x in (derivatives / ".bidsignore").read_text().splitlines()
             if x and not x.startswith("#")]
    assert lines == drv.BIDSIGNORE
    assert not [x for x in lines if any(s in x for s in drv.PROPOSAL_SUFFIXES)]
    desc = json.loads((derivatives / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "sv2a"
    assert (derivatives / "README").is_file()


def test_shipped_validator_config_covers_exactly_the_proposal_suffixes():
    cfg = json.loads(bids_validator_config().read_text())
    assert set(cfg) == {"warning"}  # nothing ignored, nothing else downgraded
    assert {f["code"] for f in cfg["warning"]} == {"NOT_INCLUDED"}
    suffixes = {f["location"].rsplit("_", 1)[1].split(".")[0] for f in cfg["warning"]}
    assert suffixes == set(drv.PROPOSAL_SUFFIXES)
    # the naming helpers produce those suffixes
    stem = "sub-01_ses-bl"
    for name in (drv.tacs_name(stem, "dseg"), drv.kinpar_name(stem, "dseg", "srtm2"),
                 drv.map_name(stem, "srtm2", "BPND"), f"{stem}_desc-motion_timeseries.tsv"):
        assert proposal_stage(name), name


@needs_validator
def test_derivatives_pass_the_validator(derivatives):
    outputs = sorted("/" + p.relative_to(derivatives).as_posix()
                     for p in derivatives.rglob("sub-*/**/pet/*") if not p.name.startswith("."))
    assert len(outputs) > 40 and all(proposal_stage(p) for p in outputs)
    # Plain validator: every per-scan output is seen (none hidden by .bidsignore) and reported
    # as NOT_INCLUDED, its suffix being proposal-stage; nothing else is NOT_INCLUDED.
    plain = run_validator(derivatives)
    errors = issues(plain, "error")
    assert sorted(loc for c, loc in errors if c == "NOT_INCLUDED") == outputs
    # With the shipped configuration: exactly those become warnings; other warnings are hints.
    report = run_validator(derivatives, bids_validator_config())
    warnings = issues(report, "warning")
    assert sorted(loc for c, loc in warnings if c == "NOT_INCLUDED") == outputs
    unexpected = [w for w in warnings if w[0] not in {"NOT_INCLUDED", *DERIVATIVE_HINTS}]
    assert not unexpected, f"unexpected warnings: {unexpected[:20]}"
    assert not [e for e in issues(report, "error") if e[0] == "NOT_INCLUDED"]
    assert_no_errors(report, "sv2a derivatives")


@needs_validator
def test_every_naming_helper_gives_a_name_the_validator_accepts(tmp_path):
    # One file per helper, for scans with and without session and with a trc entity: the
    # released-BIDS names (the image-derived blood table) pass outright, the proposal-stage
    # ones are warnings under the shipped configuration, nothing is an error.
    import nibabel as nib
    import numpy as np

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dataset_description.json").write_text('{"Name": "raw", "BIDSVersion": "1.9.0"}')
    out = tmp_path / "out"
    drv.write_dataset_description(out, raw)
    drv.write_bidsignore(out)
    table = "time\twhole_blood_radioactivity\tplasma_radioactivity\n0\t1.0\t1.1\n"
    for sub, ses, pet in (("01", "bl", "sub-01_ses-bl_pet.nii.gz"), ("02", None,
                                                                     "sub-02_trc-UCBJ_pet.nii.gz")):
        stem = drv.scan_stem(pet)
        folder = drv.scan_dir(out, sub, ses)
        folder.mkdir(parents=True)
        names = [drv.tacs_name(stem, "dseg"), drv.tacs_name(stem, "dseg", desc="gtm"),
                 drv.kinpar_name(stem, "dseg", "logan_ref"), drv.motion_name(stem),
                 drv.idif_name(stem)]
        for name in names:
            (folder / name).write_text(table)
            (folder / name.replace(".tsv", ".json")).write_text('{"Description": "x"}')
        img = folder / drv.map_name(stem, "srtm2", "BPND")
        nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), img)
        (folder / img.name.replace(".nii.gz", ".json")).write_text('{"Units": "1"}')
    report = run_validator(out, bids_validator_config())
    assert not issues(report, "error"), issues(report, "error")
    flagged = {loc for c, loc in issues(report, "warning") if c == "NOT_INCLUDED"}
    assert flagged and all(proposal_stage(loc) for loc in flagged)
    assert not [loc for loc in flagged if "_blood" in loc]  # released BIDS: not flagged
    assert len(flagged) == 2 * 10  # 5 proposal-stage files (+ sidecars) per scan


def test_pybids_indexes_the_derivatives(derivatives):
    bids = pytest.importorskip("bids", reason="pybids is not installed (dev extras)")
    layout = bids.BIDSLayout(derivatives, validate=False,
                             config=["bids", "derivatives", str(pybids_config())])
    assert layout.get_subjects() == ["01", "02", "03", "04"]
    maps = layout.get(suffix="mimap", meas="BPND", model="SRTM2", extension=".nii.gz")
    assert len(maps) == 8  # one per scan
    ent = maps[0].get_entities()
    assert ent["meas"] == "BPND" and ent["datatype"] == "pet" and ent["subject"] == "01"
    assert {f.get_entities()["meas"] for f in layout.get(suffix="mimap", extension=".nii.gz")
            } >= {"BPND", "R1", "k2"}
    kinpar = layout.get(suffix="kinpar", extension=".tsv")
    assert {f.get_entities()["model"] for f in kinpar} == {"1TCM", "SRTM2", "SUVR"}
    # 1TCM: sub-01 only (blood), both sessions, with and without partial-volume correction
    assert len(layout.get(suffix="kinpar", model="1TCM", extension=".tsv")) == 4
    tacs = layout.get(suffix="tacs", extension=".tsv", subject="02", session="baseline")
    assert len(tacs) == 2 and {f.get_entities()["segmentation"] for f in tacs} == {"dseg"}
    assert len(layout.get(suffix="tacs", desc="gtm", extension=".tsv")) == 8
    assert len(layout.get(suffix="timeseries", desc="motion", extension=".tsv")) == 8
    # the sidecar metadata reaches pybids (units of the map)
    assert layout.get_metadata(maps[0].path)["Units"] == "1"
