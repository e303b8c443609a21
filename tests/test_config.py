"""One configuration schema: file keys are the long option names of ``sv2a run`` (``-`` ->
``_``) or the setting names of ``sv2a_config.json``; every value type-checked up front."""

from __future__ import annotations

import argparse
import json

import pytest

from sv2a.errors import ConfigError
from sv2a.pipeline.config import PipelineConfig, config_keys, load_config_file, resolve_config


def _cfg(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p, resolve_config({}, p)


def _err(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve_config({}, p)
    return str(info.value)


def test_long_option_names_work_like_the_flags(tmp_path):
    from sv2a.pipeline.cli import add_arguments

    _, cfg = _cfg(tmp_path, "model: [srtm2, suvr]\nreference_erode: 4\nvoxelwise: true\n"
                  "voxelwise_model: [srtm2]\nno_figures: true\nwindow: [30, 60]\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["b", "o", "participant", "--model", "srtm2", "suvr",
                              "--reference-erode", "4", "--voxelwise", "--voxelwise-model",
                              "srtm2", "--no-figures", "--window", "30", "60"])
    flags = resolve_config({k: v for k, v in vars(args).items()
                            if k not in ("bids_dir", "out_dir", "analysis_level", "config",
                                         "quiet", "verbose")})
    assert cfg.to_dict() == flags.to_dict()
    assert cfg.reference_erode_mm == 4.0 and cfg.figures is False
    assert cfg.model_options == {"suvr": {"window": [30.0, 60.0]}}


def test_every_long_option_is_a_config_key():
    from sv2a.pipeline.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    keys = config_keys()
    for action in parser._actions:
        for opt in action.option_strings:
            if not opt.startswith("--") or opt in ("--help", "--config", "--quiet",
                                                   "--verbose"):
                continue
            key = opt[2:].replace("-", "_")
            assert key in keys, opt
            assert keys[key] == action.dest, opt


def test_saved_config_reads_back(tmp_path):
    cfg = PipelineConfig(models=["srtm2"], reference_erode_mm=2.0, figures=False,
                         voxelwise=True).validate()
    p = tmp_path / "sv2a_config.json"
    p.write_text(json.dumps({"level": "participant", "bids_dir": "/x", "command": "sv2a run",
                             **cfg.to_dict()}))
    assert resolve_config({}, p).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("text, fragment", [
    ("voxelwise: 'no'\n", "setting 'voxelwise' must be true or false"),
    ("no_figures: 'yes'\n", "setting 'no_figures' must be true or false"),
    ("exclude_regions: 5\n", "setting 'exclude_regions' must be a list of strings"),
    ("reference_erode: four\n", "setting 'reference_erode' must be a number"),
    ("nprocs: 2.5\n", "setting 'nprocs' must be a whole number"),
    ("max_memory_gb: '8'\n", "setting 'max_memory_gb' must be a number"),
    ("participant_label: [01, 02]\n", "quote labels"),
    ("model_options: [srtm2]\n", "setting 'model_options' must be a mapping"),
    ("window: 30\n", "setting 'window' must be a list of 2 numbers"),
])
def test_values_type_checked_naming_key_type_and_file(tmp_path, text, fragment):
    msg = _err(tmp_path, text)
    assert fragment in msg and str(tmp_path / "c.yaml") in msg


@pytest.mark.parametrize("text, fragment", [
    ("modles: [srtm2]\n", "unknown setting 'modles' (did you mean 'models'?)"),
    ("referense: brainstem\n", "did you mean 'reference'?"),
    ("voxelwise_modle: [srtm2]\n", "did you mean 'voxelwise_model'?"),
])
def test_unknown_keys_suggest(tmp_path, text, fragment):
    msg = _err(tmp_path, text)
    assert fragment in msg and "c.yaml" in msg


def test_model_options_names_and_types_checked_up_front(tmp_path):
    msg = _err(tmp_path, "model_options: {srtm2: {k2prime_regoin: cortex}}\n")
    assert "did you mean 'k2prime_region'?" in msg and "c.yaml" in msg
    msg = _err(tmp_path, "model_options: {srtm2: {k2prime: fast}}\n")
    assert "option k2prime of model 'srtm2' must be a number or one of" in msg
    msg = _err(tmp_path, "model_options: {suvr: {window: [0, '30']}}\n")
    assert "option window of model 'suvr' must be a list of 2 numbers" in msg
    msg = _err(tmp_path, "voxelwise_options: {srtm2: {n_basis: 50.5}}\n")
    assert "option n_basis of model 'srtm2' must be a whole number" in msg
    msg = _err(tmp_path, "model_options: {srtm22: {k2prime: 0.04}}\n")
    assert "did you mean 'srtm2'?" in msg
    # the Python API checks the same
    with pytest.raises(ConfigError, match="must be a list of 2 numbers"):
        PipelineConfig(model_options={"suv": {"window": "late"}}).validate()


def test_same_setting_twice_and_bools_in_the_api(tmp_path):
    msg = _err(tmp_path, "model: [srtm2]\nmodels: [suvr]\n")
    assert "'model'" in msg and "'models'" in msg and "keep one" in msg
    with pytest.raises(ConfigError, match="voxelwise must be true or false"):
        PipelineConfig(voxelwise="no").validate()
    with pytest.raises(ConfigError, match="exclude_regions must be a list"):
        PipelineConfig(exclude_regions=5).validate()


@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_nprocs_rule(value):
    with pytest.raises(ConfigError, match="--nprocs must be an integer >= 1"):
        PipelineConfig(nprocs=value).validate()


def test_window_flag_checked_and_overrides_model_options():
    cfg = PipelineConfig(models=["suvr", "srtm2"], voxelwise=True,
                         voxelwise_models=["suv", "srtm2"],
                         model_options={"suvr": {"window": [60, 90],
                                                 "frame_selection": "mid"}},
                         window=(20, 40)).validate()
    assert cfg.model_options["suvr"] == {"window": [20.0, 40.0], "frame_selection": "mid"}
    assert cfg.voxelwise_options == {"suv": {"window": [20.0, 40.0]}}
    with pytest.raises(ConfigError, match="START must be >= 0 and below END"):
        PipelineConfig(window=(40, 20)).validate()


def test_registry_suggests_model_names():
    from sv2a.errors import ModelError
    from sv2a.models import registry

    with pytest.raises(ModelError, match="did you mean 'logan_ref'"):
        registry.get("logan_rf")


def test_load_config_file_returns_settings(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"reference-erode": 3, "contrast": ["a=[x=1]-[x=2]"]}))
    assert load_config_file(p) == {"reference_erode_mm": 3, "contrasts": ["a=[x=1]-[x=2]"]}
