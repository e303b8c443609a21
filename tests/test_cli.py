"""`sv2a run` / `sv2a demo` command line: arguments, config files, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sv2a.cli import build_parser, main
from sv2a.errors import ConfigError
from sv2a.pipeline.config import PipelineConfig, load_config_file, resolve_config


@pytest.fixture()
def bids(tmp_path):
    """A directory that exists (argument checks fail before any data is read)."""
    d = tmp_path / "bids"
    d.mkdir()
    return d


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--dask-scheduler" in text and "--participant-label" in text
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "sv2a demo" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["run"],                                               # missing positionals
    ["run", "a", "b"],                                     # missing analysis level
    ["run", "a", "b", "subject"],                          # bad analysis level
    ["run", "a", "b", "participant", "--nprocs", "two"],   # not an int
    ["run", "a", "b", "participant", "--bogus"],           # unknown flag
])
def test_argparse_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("extra, fragment", [
    (["--model", "nosuchmodel"], "unknown model"),
    (["--nprocs", "0"], "--nprocs must be an integer >= 1"),
    (["--nprocs", "2", "--dask-scheduler", "tcp://x:1"], "either --nprocs or --dask-scheduler"),
    (["--atlas", "/no/such/atlas.nii.gz"], "--atlas"),
    (["--reference-erode", "-1"], "reference_erode_mm must be >= 0"),
    (["--voxelwise", "--voxelwise-model", "2tcm"], "does not offer voxelwise maps"),
])
def test_bad_values_exit_1_with_one_line(bids, tmp_path, capsys, extra, fragment):
    rc = main(["run", str(bids), str(tmp_path / "out"), "participant", *extra])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sv2a run: error:")
    assert fragment in err


def test_missing_bids_dir(tmp_path, capsys):
    rc = main(["run", str(tmp_path / "nope"), str(tmp_path / "out"), "participant"])
    assert rc == 1 and "not a directory" in capsys.readouterr().err


def test_empty_bids_dir(bids, tmp_path, capsys):
    rc = main(["run", str(bids), str(tmp_path / "out"), "participant", "-q"])
    assert rc == 1 and "no sub-*" in capsys.readouterr().err


def test_group_takes_one_model(bids, tmp_path, capsys):
    rc = main(["run", str(bids), str(tmp_path / "out"), "group", "--model", "srtm2", "suvr"])
    assert rc == 1 and "one --model" in capsys.readouterr().err


def test_group_without_participant_outputs(bids, tmp_path, capsys):
    rc = main(["run", str(bids), str(tmp_path / "out"), "group"])
    assert rc == 1 and "participant level first" in capsys.readouterr().err


def test_config_file_yaml_and_json_and_precedence(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: [srtm2, suvr]\nreference: cerebellum_cortex\nmodel_options:\n"
                 "  srtm2: {k2prime: 0.04}\nvoxelwise: true\n")
    cfg = resolve_config({}, y)
    assert cfg.models == ["srtm2", "suvr"] and cfg.reference == "cerebellum_cortex"
    assert cfg.model_options == {"srtm2": {"k2prime": 0.04}} and cfg.voxelwise
    # command-line values override the file
    cfg = resolve_config({"models": ["mrtm2"], "reference": None}, y)
    assert cfg.models == ["mrtm2"] and cfg.reference == "cerebellum_cortex"
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"models": ["suvr"], "reference-erode-mm": 2}))
    cfg = resolve_config({}, j)
    assert cfg.models == ["suvr"] and cfg.reference_erode_mm == 2.0


def test_config_file_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("modles: [srtm2]\n")
    with pytest.raises(ConfigError, match="unknown setting 'modles'"):
        load_config_file(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(p)
    p.write_text("models: [srtm2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config_file(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="model_options"):
        PipelineConfig(model_options={"srtm2": 3}).validate()


def test_cli_config_file_unknown_key_exit_1(bids, tmp_path, capsys):
    p = tmp_path / "c.json"
    p.write_text('{"speed": "fast"}')
    rc = main(["run", str(bids), str(tmp_path / "out"), "participant", "--config", str(p)])
    assert rc == 1 and "unknown setting 'speed'" in capsys.readouterr().err


def test_scan_hash_tracks_participant_settings_only():
    a = PipelineConfig().validate()
    b = PipelineConfig(nprocs=2, participant_label=["01"], outcome="VT").validate()
    assert a.scan_hash() == b.scan_hash()  # execution/selection/group settings do not count
    c = PipelineConfig(model_options={"suvr": {"window": [40, 60]}}).validate()
    assert c.scan_hash() != a.scan_hash()
    assert a.scan_hash({"x.nii.gz": [1, 2]}) != a.scan_hash({"x.nii.gz": [1, 3]})


def test_parser_lists_subcommands():
    text = build_parser().format_help()
    assert "run" in text and "demo" in text


def test_demo_data_is_the_documented_cohort():
    # The committed demo dataset: 2 arms x 3 subjects x 2 sessions, blood for some, <= 25 MB.
    from sv2a.bids import find_scans, read_participants
    from sv2a.pipeline.demo import DEMO_SETTINGS, find_demo_data

    root = find_demo_data()
    assert root is not None, "demo_data/ missing: run python demo_data/code/make_demo.py"
    scans = find_scans(root)
    parts = read_participants(root)
    assert len(scans) == 12 and parts["arm"].value_counts().tolist() == [3, 3]
    assert {s.subject for s in scans if s.blood} == {b[4:] for b in DEMO_SETTINGS["blood"]}
    assert all(s.dseg is not None for s in scans)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= 25 * 2**20
    assert (root / "truth.tsv").exists() and (root / "code" / "make_demo.py").exists()


# --------------------------------------------------------------------------- the model registry
@pytest.fixture()
def region_only_model():
    """A registered model without voxelwise maps (removed again afterwards)."""
    from sv2a.models import registry
    from sv2a.models.base import Model

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Options:
        level: float = 1.0

    class RegionOnly(Model):
        name = "regiononly"
        kind = "static"
        scales = frozenset({"region"})
        parameters = ("X",)
        units = {"X": "1"}
        description = "test model"

    RegionOnly.Options = Options
    registry.register(RegionOnly)
    yield "regiononly"
    registry._REGISTRY.pop("regiononly", None)


def test_voxel_models_checked_against_registry_at_config_time():
    from sv2a.models import available

    voxel = available(scale="voxel")
    assert "2tcm" not in voxel and "mrtm" in voxel
    for vm in (["2tcm"], ["mrtm", "2tcm"]):
        with pytest.raises(ConfigError, match="'2tcm' does not offer voxelwise maps") as e:
            PipelineConfig(voxelwise=True, voxelwise_models=vm).validate()
        assert all(m in str(e.value) for m in voxel)  # the message lists what is available
    # refused also when --voxelwise is off: the setting is wrong either way
    with pytest.raises(ConfigError, match="voxelwise_models"):
        PipelineConfig(voxelwise_models=["2tcm"]).validate()
    # the default map model is a requested model that offers maps
    cfg = PipelineConfig(models=["mrtm"], voxelwise=True).validate()
    assert cfg.resolved_voxelwise_models() == ["mrtm"]
    cfg = PipelineConfig(models=["1tcm", "srtm2", "suvr"], voxelwise=True).validate()
    assert cfg.resolved_voxelwise_models() == ["srtm2"]
    cfg = PipelineConfig(models=["2tcm", "suvr"], voxelwise=True).validate()
    assert cfg.resolved_voxelwise_models() == ["suvr"]


def test_voxelwise_without_a_map_model_refused(region_only_model):
    with pytest.raises(ConfigError, match="none of the requested models .regiononly. offers "
                       "voxelwise maps; choose the map model with --voxelwise-model") as e:
        PipelineConfig(models=[region_only_model], voxelwise=True).validate()
    assert "srtm2" in str(e.value)
    cfg = PipelineConfig(models=[region_only_model], voxelwise=True,
                         voxelwise_models=["srtm2"]).validate()
    assert cfg.resolved_voxelwise_models() == ["srtm2"]


def test_model_options_checked_against_the_model_options():
    from sv2a.models import get

    valid = [f.name for f in dataclasses.fields(get("srtm2").Options)]
    with pytest.raises(ConfigError, match=r"model 'srtm2' does not take option\(s\) k2a_min; "
                       "valid options: ") as e:
        PipelineConfig(model_options={"srtm2": {"k2a_min": 0.01, "k2prime": 0.04}}).validate()
    assert all(v in str(e.value) for v in valid)
    with pytest.raises(ConfigError, match="unknown model 'srtm3'"):
        PipelineConfig(model_options={"srtm3": {}}).validate()
    # options of the maps: the model's own and the map keywords; aliases become registry names
    cfg = PipelineConfig(voxelwise_options={"SRTM2": {"fwhm": 4, "rate_range": [0.01, 0.5],
                                                      "k2prime": "coupled"}}).validate()
    assert cfg.voxelwise_options == {"srtm2": {"fwhm": 4, "rate_range": [0.01, 0.5],
                                               "k2prime": "coupled"}}
    with pytest.raises(ConfigError, match="does not take option.s. mask; valid options:.*fwhm"):
        PipelineConfig(voxelwise_options={"srtm2": {"mask": None}}).validate()
    with pytest.raises(ConfigError, match="fwhm"):  # map keywords are not fit options
        PipelineConfig(model_options={"srtm2": {"fwhm": 4}}).validate()


def test_run_help_lists_registry_models(capsys):
    from sv2a.models import available

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(available(scale="region")) in text
    assert " ".join(available(scale="voxel")) in text


def test_models_subcommand_lists_the_registry(capsys):
    from sv2a.models import available, get

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line and not line.startswith(" ")}
    assert set(rows) == {"model", *available()}
    two = rows["2tcm"]
    assert two[1] == "plasma" and two[2] == "region" and list(get("2tcm").parameters) == two[3:]
    assert "options: " in out and "rate_range" in out
    assert main(["models", "--scale", "voxel", "--kind", "reference"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]
             if line and not line.startswith(" ")]
    assert names == available(kind="reference", scale="voxel")
