"""Figures and HTML reports (sv2a.report)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

import sv2a
from sv2a import report


@pytest.fixture(scope="module")
def subject():
    """Noise-free, unblurred human UCB-J phantom TACs with the true input (no image)."""
    from sv2a.phantom.subject import make_subject

    return make_subject(image=False, noise=0, seed=0)


def test_srtm2_curve_reproduces_fit_rss(subject):
    # The displayed curve must be the fitted model: its residual sum of squares (uniform
    # weights) equals the rss the model reports, to rounding (rel 1e-6). method="nonlinear"
    # reports the residual of the exact model; the default basis method reports that of the
    # basis interpolated between grid points (within 1e-4).
    tacs = subject.tacs
    fit = sv2a.fit(tacs, model="srtm2", reference="centrum_semiovale", method="nonlinear")
    for r in ("posterior_cingulate", "hippocampus"):
        c = report.model_curve("srtm2", fit, r, tacs, reference="centrum_semiovale")
        assert c is not None
        rss = float(np.sum((tacs.sel(region=r).values - c) ** 2))
        assert rss == pytest.approx(float(fit.sel(region=r)["rss"]), rel=1e-6, abs=1e-9)


def test_1tcm_curve_matches_data(subject):
    # Noise-free 1TCM data: the predicted curve follows the TAC to < 0.5 % of its peak in
    # every frame, and a wrong K1 moves it by far more (it is not trivially the data).
    tacs = subject.tacs
    fit = sv2a.fit(tacs, model="1tcm", input=subject.input, weights="uniform")
    r = "posterior_cingulate"
    c = report.model_curve("1tcm", fit, r, tacs, input=subject.input)
    assert c is not None
    y = tacs.sel(region=r).values
    assert np.max(np.abs(c - y)) < 0.005 * y.max()
    fit2 = fit.copy(deep=True)
    fit2["K1"].loc[{"region": r}] = float(fit["K1"].sel(region=r)) * 1.1
    c2 = report.model_curve("1tcm", fit2, r, tacs, input=subject.input)
    assert c2 is not None
    assert np.max(np.abs(c2 - y)) > 0.05 * y.max()


def _fake_fit_and_tacs():
    import xarray as xr

    from sv2a.tacs import tacs_from_arrays

    tacs = tacs_from_arrays([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], [0, 1, 2], [1, 2, 3],
                            ["a", "b"])
    fit = xr.Dataset({"BPND": ("region", [1.0, 2.0])}, coords={"region": ["a", "b"]})
    return fit, tacs


def test_model_curve_is_the_registry_prediction(monkeypatch):
    # The figures hold no model: the curve is what sv2a.models.predict_fit returns, called
    # with the fit, the TACs, the region and the inputs.
    import sv2a.models

    fit, tacs = _fake_fit_and_tacs()
    calls = []

    def fake_predict_fit(f, t, *, region, input=None, reference=None):
        calls.append((f, t, region, input, reference))
        return np.array([0.5, 1.5, 2.5])

    monkeypatch.setattr(sv2a.models, "predict_fit", fake_predict_fit, raising=False)
    c = report.model_curve("srtm2", fit, "b", tacs, input="inp", reference="a")
    np.testing.assert_allclose(c, [0.5, 1.5, 2.5])
    assert calls == [(fit, tacs, "b", "inp", "a")]
    # a region that is not in the fit gives no curve and no call
    assert report.model_curve("srtm2", fit, "zz", tacs, reference="a") is None
    assert len(calls) == 1


def test_model_curve_none_when_prediction_fails(monkeypatch):
    import sv2a.models

    fit, tacs = _fake_fit_and_tacs()

    def failing(*args, **kwargs):
        raise ValueError("model cannot predict")

    monkeypatch.setattr(sv2a.models, "predict_fit", failing, raising=False)
    assert report.model_curve("mrtm2", fit, "b", tacs, reference="a") is None
    # a model registry without predict_fit: no curve
    import types

    monkeypatch.setattr(sv2a, "models", types.ModuleType("sv2a.models"))
    assert report.model_curve("srtm2", fit, "b", tacs, reference="a") is None


def test_figures_hold_no_forward_model():
    from sv2a import figures

    for name in ("_plasma_curve", "_frame_average", "srtm_regressors"):
        assert not hasattr(figures, name) and not hasattr(report, name)


def test_scan_figures_and_subject_report(tmp_path, subject):
    tacs = subject.tacs
    fits = {
        "1tcm": sv2a.fit(tacs, model="1tcm", input=subject.input),
        "logan": sv2a.fit(tacs, model="logan", input=subject.input, tstar=30.0),
        "srtm2": sv2a.fit(tacs, model="srtm2", reference="centrum_semiovale"),
        "suvr": sv2a.fit(tacs, model="suvr", reference="centrum_semiovale"),
    }
    bp = np.full(subject.labels.shape, np.nan)
    bp[subject.labels > 0] = subject.labels[subject.labels > 0] / 4.0
    import xarray as xr

    maps = {"srtm2": xr.Dataset({"BPND": (("x", "y", "z"), bp)})}
    maps["srtm2"]["BPND"].attrs["units"] = "1"
    fig_dir = tmp_path / "sub-01" / "figures"
    stem = "sub-01_ses-bl"
    files = report.scan_figures(fig_dir, stem, tacs=tacs, fits=fits, input=subject.input,
                                maps=maps, reference="centrum_semiovale")
    names = {f.name for f in files}
    for expect in (f"{stem}_desc-tacs_plot.svg", f"{stem}_model-1TCM_desc-fit_plot.svg",
                   f"{stem}_model-LOGAN_desc-logan_plot.svg", f"{stem}_desc-input_plot.svg",
                   f"{stem}_model-SRTM2_desc-fit_plot.svg",
                   f"{stem}_model-SRTM2_meas-BPND_desc-slices_plot.png"):
        assert expect in names
    for f in files:
        head = f.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if f.suffix == ".png" else b"<?xml" in head
    # a subject report built from the summary file the pipeline writes
    import json

    pet_dir = tmp_path / "sub-01" / "ses-bl" / "pet"
    pet_dir.mkdir(parents=True)
    from sv2a.pipeline import derivatives as drv

    models = {}
    for m, fit in fits.items():
        rel = f"sub-01/ses-bl/pet/{drv.kinpar_name(stem, 'test', m)}"
        drv.kinpar_table(fit).to_csv(tmp_path / rel, sep="\t", index=False)
        models[m] = rel
    (pet_dir / f".{stem}_sv2a-summary.json").write_text(json.dumps({
        "stem": stem, "subject": "01", "session": "bl", "atlas": "test",
        "reference": "centrum_semiovale", "notes": ["a note <b>escaped</b>"],
        "models": models, "maps": {"srtm2": ["BPND"]}}))
    html_path = report.subject_report(tmp_path, "01")
    text = html_path.read_text()
    # self-contained: every image is a data URI, nothing is fetched
    srcs = re.findall(r'src="([^"]+)"', text)
    assert len(srcs) == len(files)
    assert all(s.startswith("data:image/") for s in srcs)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    for s in srcs:
        base64.b64decode(s.split(",", 1)[1], validate=True)
    assert "&lt;b&gt;escaped&lt;/b&gt;" in text
    # the parameter table holds the fitted values
    vt = float(fits["1tcm"]["VT"].sel(region="putamen"))
    assert f"{vt:.4g}" in text


def test_group_report(tmp_path):
    import pandas as pd

    t = pd.DataFrame({"region": ["pcc"], "arm": ["a"], "session": ["24h"],
                      "mean_pct_change": [1.5], "ci_low": [-1.0], "ci_high": [4.0]})
    p = report.group_report(tmp_path, [{"title": "T", "text": "x", "table": t, "figures": []}],
                            notes=["n1"])
    text = p.read_text()
    assert "<td>pcc</td>" in text and "n1" in text and text.rstrip().endswith("</html>")


def test_map_slices_all_nan_is_an_error():
    with pytest.raises(ValueError):
        report.plot_map_slices(np.full((4, 4, 4), np.nan))


# --------------------------------------------------------------------------- readable reports
def test_table_headers_carry_units_and_flags_read_yes_no(tmp_path):
    # kinpar tables take their units from the JSON sidecar (as the pipeline writes it);
    # 0/1 flags (TSV has no booleans) are shown as yes/no.
    import json

    import pandas as pd

    kp = tmp_path / "sub-01_model-1TCM_kinpar.tsv"
    pd.DataFrame({"region": ["putamen"], "K1": [0.31], "VT": [21.5], "converged": [1],
                  "at_bound": [0]}).to_csv(kp, sep="\t", index=False)
    kp.with_suffix(".json").write_text(json.dumps(
        {"Units": {"K1": "mL/cm3/min", "VT": "mL/cm3", "converged": "1"}}))
    text = report._kinpar_html(kp)
    heads = re.findall(r"<th>([^<]*)</th>", text)
    assert heads == ["region", "K1 (mL/cm³/min)", "VT (mL/cm³)", "converged", "at_bound"]
    assert "<td>yes</td><td>no</td>" in text


def test_group_table_units_and_small_n_bootstrap(tmp_path):
    # % columns say %, and a bootstrap interval from fewer than MIN_N_BOOTSTRAP subjects is
    # replaced by "n too small" with the rule stated; n = 8 keeps its interval.
    import pandas as pd

    t = pd.DataFrame({"region": ["pcc", "pcc"], "arm": ["a", "b"], "session": ["24h", "24h"],
                      "n": [3, 8], "mean_pct_change": [1.5, 2.0], "ci_low": [-1.0, 0.5],
                      "ci_high": [4.0, 3.5], "boot_ci_low": [-0.5, 0.7],
                      "boot_ci_high": [3.5, 3.1]})
    text = report.group_report(tmp_path, [{"title": "T", "table": t}]).read_text()
    heads = re.findall(r"<th>([^<]*)</th>", text)
    assert "mean_pct_change (%)" in heads and "ci_low (%)" in heads and "n (subjects)" in heads
    assert text.count("<td>n too small</td>") == 2  # both limits of the n = 3 row
    assert "<td>0.7</td>" in text and "<td>-1</td>" in text  # n = 8 and the t-based CI stay
    assert f"at least {report.MIN_N_BOOTSTRAP} subjects" in text


def test_captions_say_what_a_figure_shows_not_its_file_name(tmp_path):
    kinds = ["desc-tacs", "model-SRTM2_desc-fit", "model-LOGAN_desc-logan", "desc-input",
             "model-SRTM2_meas-BPND_desc-slices", "desc-motion", "desc-spaghetti",
             "desc-forest", "score-madrs_desc-association", "desc-roc",
             "contrast-x_desc-statslices"]
    seen = set()
    for k in kinds:
        name = f"sub-01_ses-bl_{k}_plot.png"
        cap = report.figure_caption(name)
        assert name not in cap and "_plot" not in cap and len(cap) > 60, (k, cap)
        seen.add(cap)
    assert len(seen) == len(kinds)  # one caption per kind
    # a fit figure without model curves (SUVR) must not describe lines and residuals
    fig_path = tmp_path / "sub-01_ses-bl_model-SUVR_desc-fit_plot.svg"
    fig_path.write_text("<svg><text>SUVR window</text></svg>")
    cap = report.figure_caption(fig_path)
    assert "no model curve" in cap and "residual" not in cap


def _group_ds():
    import pandas as pd

    from sv2a.longitudinal.collect import from_tidy

    rows = []
    for i, sub in enumerate(["01", "02", "03"]):
        for ses, f in (("24h", 1.1), ("baseline", 1.0), ("7d", 1.05)):
            rows.append({"participant_id": f"sub-{sub}", "session": ses, "region": "pcc",
                         "arm": "ketamine", "BPND": (2.0 + 0.1 * i) * f})
    ds = from_tidy(pd.DataFrame(rows))
    return ds.sel(session=["24h", "7d", "baseline"])  # deliberately out of time order


def test_spaghetti_is_in_time_order_with_subject_ids(tmp_path):
    import matplotlib

    from sv2a.longitudinal.plots import plot_spaghetti

    matplotlib.rcParams["svg.fonttype"] = "none"  # keep text as text to read it back
    p = plot_spaghetti(_group_ds(), tmp_path / "s.svg", outcome="BPND", baseline="baseline")
    texts = re.findall(r">([^<>]+)</text>", p.read_text())
    ticks = [t.strip() for t in texts if t.strip() in ("baseline", "24h", "7d")]
    assert ticks[:3] == ["baseline", "24h", "7d"]
    assert {"01", "02", "03"} <= {t.strip() for t in texts}


def test_map_colour_bar_names_parameter_and_unit_at_legible_size():
    fig = report.plot_map_slices(np.arange(64.0).reshape(4, 4, 4), units="BPND (unitless)")
    cbar_ax = fig.axes[-1]
    label = cbar_ax.get_ylabel()
    assert label == "BPND (unitless)"
    assert cbar_ax.yaxis.label.get_fontsize() >= 10
    assert all(t.get_fontsize() >= 10 for t in cbar_ax.get_yticklabels())
