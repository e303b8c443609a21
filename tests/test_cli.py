"""`sv2a run` / `sv2a demo` command line: arguments, config files, errors."""

from __future__ import annotations

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
    (["--nprocs", "0"], "--nprocs must be >= 1"),
    (["--nprocs", "2", "--dask-scheduler", "tcp://x:1"], "either --nprocs or --dask-scheduler"),
    (["--atlas", "/no/such/atlas.nii.gz"], "--atlas"),
    (["--reference-erode", "-1"], "reference_erode_mm must be >= 0"),
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
    assert root is not None, "demo_data/ missing: run python demo_data/make_demo.py"
    scans = find_scans(root)
    parts = read_participants(root)
    assert len(scans) == 12 and parts["arm"].value_counts().tolist() == [3, 3]
    assert {s.subject for s in scans if s.blood} == {b[4:] for b in DEMO_SETTINGS["blood"]}
    assert all(s.dseg is not None for s in scans)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= 25 * 2**20
    assert (root / "truth.tsv").exists() and (root / "make_demo.py").exists()
