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
    # weights) equals the rss the model reports, to rounding (rel 1e-6).
    tacs = subject.tacs
    fit = sv2a.fit(tacs, model="srtm2", reference="centrum_semiovale", weights="uniform")
    for r in ("posterior_cingulate", "hippocampus"):
        c = report.model_curve("srtm2", fit, r, tacs, reference="centrum_semiovale")
        assert c is not None
        rss = float(np.sum((tacs.sel(region=r).values - c) ** 2))
        assert rss == pytest.approx(float(fit.sel(region=r)["rss"]), rel=1e-6, abs=1e-9)


def test_1tcm_curve_matches_data(subject):
    # Noise-free 1TCM data: the display curve (0.01-min grid convolution, independent of the
    # model code) must follow the TAC to < 0.5 % of its peak in every frame — the
    # discretisation error of a 0.01 min rectangle rule on a 20 s rising frame.
    tacs = subject.tacs
    fit = sv2a.fit(tacs, model="1tcm", input=subject.input, weights="uniform")
    r = "posterior_cingulate"
    c = report.model_curve("1tcm", fit, r, tacs, input=subject.input)
    y = tacs.sel(region=r).values
    assert np.max(np.abs(c - y)) < 0.005 * y.max()
    # and it is not trivially the data: a wrong K1 moves it by far more
    fit2 = fit.copy(deep=True)
    fit2["K1"].loc[{"region": r}] = float(fit["K1"].sel(region=r)) * 1.1
    c2 = report.model_curve("1tcm", fit2, r, tacs, input=subject.input)
    assert np.max(np.abs(c2 - y)) > 0.05 * y.max()


def test_model_curve_none_for_graphical(subject):
    fit = sv2a.fit(subject.tacs, model="mrtm2", reference="centrum_semiovale", k2prime=0.05)
    assert report.model_curve("mrtm2", fit, "putamen", subject.tacs,
                              reference="centrum_semiovale") is None


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
