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


# --------------------------------------------------------------------------- issue 14
@pytest.mark.parametrize("text", [
    "models: [srtm]\nmodels: [logan]\n",                                   # top level
    "model_options:\n  srtm2: {k2prime: 0.04}\n  srtm2: {k2prime: 0.05}\n",  # nested
    "model_options: {srtm2: {k2prime: 0.04, k2prime: 0.05}}\n",            # flow style
])
def test_yaml_key_given_twice_refused(tmp_path, text):
    msg = _err(tmp_path, text)
    assert "given twice" in msg and "c.yaml" in msg


def test_json_key_given_twice_refused_at_any_depth(tmp_path):
    msg = _err(tmp_path, '{"models": ["srtm2"], "model_options": '
                         '{"srtm2": {"k2prime": 0.04}, "srtm2": {"k2prime": 0.05}}}', "c.json")
    assert "'srtm2' is given twice" in msg


def test_yaml_merge_keys_still_read(tmp_path):
    # '<<: *anchor' then an override is not a key given twice
    _, cfg = _cfg(tmp_path, "model_options:\n  srtm2: &o {k2prime: 0.04, k2prime_region: x}\n"
                  "  mrtm2:\n    <<: *o\n    k2prime: 0.05\nmodels: [srtm2, mrtm2]\n")
    assert cfg.model_options["mrtm2"] == {"k2prime": 0.05, "k2prime_region": "x"}


def test_options_of_a_model_not_requested_refused(tmp_path):
    msg = _err(tmp_path, "models: [srtm]\nmodel_options: {logan: {tstar: 30}}\n")
    assert "'logan', which is not requested" in msg and "--model logan" in msg
    with pytest.raises(ConfigError, match="'srtm2', which is not requested"):
        PipelineConfig(models=["suvr"], voxelwise=True,
                       voxelwise_options={"srtm2": {"fwhm": 4}}).validate()
    # requested under an alias: fine
    cfg = PipelineConfig(models=["MRTM1"], model_options={"mrtm": {"tstar": 3}}).validate()
    assert cfg.model_options == {"mrtm": {"tstar": 3}}


def test_model_flag_picks_models_of_a_shared_config_file(tmp_path):
    # a file with options for several models; --model picks one: the others' options are
    # left out with a warning (they are not a forgotten model: the flag chose)
    p = tmp_path / "c.yaml"
    p.write_text("models: [srtm2, logan_ref]\nmodel_options: {srtm2: {k2prime: 0.04}, "
                 "logan_ref: {tstar: 20}}\n")
    with pytest.warns(UserWarning, match="logan_ref not used: --model requests srtm2"):
        cfg = resolve_config({"models": ["srtm2"]}, p)
    assert cfg.model_options == {"srtm2": {"k2prime": 0.04}}


@pytest.mark.parametrize("options,says", [
    ({"k2prime": 3.0}, r"written in 1/h, divide by 60 \(0.05 /min\)"),
    ({"k2prime": 0.00083}, r"written in 1/s, multiply by 60 \(0.0498 /min\)"),
    ({"tstar": float("inf")}, "tstar must be a time >= 0"),
    ({"tstar": -5}, "tstar must be a time >= 0"),
    ({"n_frames": 0}, "n_frames must be a positive integer"),
    ({"tstar": 20, "n_frames": 5}, "not both"),
])
def test_option_values_no_scan_can_fit_refused(options, says):
    model = "logan_ref" if "k2prime" not in options else "mrtm2"
    with pytest.raises(ConfigError, match=says):
        PipelineConfig(models=[model], model_options={model: options}).validate()
    # the same values in range pass
    PipelineConfig(models=["mrtm2", "logan_ref"],
                   model_options={"mrtm2": {"k2prime": 0.05},
                                  "logan_ref": {"tstar": 20, "k2prime": 0.001}}).validate()


def test_k2prime_unit_slip_refused_by_the_model_api():
    """The model refuses a k2' outside 0.001-1 /min as the configuration does (the API path
    without a configuration): 3.0 (1/h) gave BPND 2.57 instead of 3.68 with exit 0."""
    import numpy as np

    import sv2a
    from sv2a.errors import ModelError
    from sv2a.frames import FrameSchedule
    from sv2a.models.srtm import srtm_predict
    from sv2a.tacs import tacs_from_arrays

    fr = FrameSchedule.from_durations([0.5] * 6 + [2.0] * 5 + [5.0] * 14)
    cr = 10 * fr.mid * np.exp(-fr.mid / 8) + 0.5
    ct = srtm_predict(fr, cr, R1=1.1, k2=1.1 * 0.05, k2a=1.1 * 0.05 / 3)  # BPND 2
    tacs = tacs_from_arrays(np.vstack([cr, ct]), fr.start, fr.end, ["ref", "high"],
                            half_life=20.4)
    good = sv2a.fit(tacs, model="srtm2", reference="ref", k2prime=0.05)
    assert float(good.BPND.sel(region="high")) == pytest.approx(2.0, rel=1e-3)
    for model in ("srtm2", "mrtm2", "logan_ref"):
        with pytest.raises(ModelError, match="divide by 60"):
            sv2a.fit(tacs, model=model, reference="ref", k2prime=3.0)
        with pytest.raises(ModelError, match="multiply by 60"):
            sv2a.fit(tacs, model=model, reference="ref", k2prime=0.00083)
