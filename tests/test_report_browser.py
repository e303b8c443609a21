"""The demo's HTML reports in a real headless browser (Chromium).

Each report is copied with a small checking script added at the top of its <head>: it
records script errors, failed resource loads (a broken ``data:`` URI fires an ``error``
event on its <img>) and ``console.error`` calls, and on ``load`` writes every image's
natural size and every inline <svg>'s rendered size into a <pre> element. Chromium's
``--dump-dom`` prints the DOM after the page (and its virtual time budget) has settled; the
test reads the <pre> back. No browser automation package is needed.

Needs a Chromium binary (Debian: ``apt-get install -y chromium``); skipped without one.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000"]

CHECK = """<script>
window.__sv2aErrors = [];
window.addEventListener('error', function (e) {
  var what = e.message || (e.target && e.target.outerHTML ? e.target.outerHTML.slice(0, 120)
                                                          : 'unknown');
  window.__sv2aErrors.push('error: ' + what);
}, true);
(function () {
  var ce = console.error;
  console.error = function () {
    window.__sv2aErrors.push('console.error: ' + Array.from(arguments).join(' '));
    ce.apply(console, arguments);
  };
})();
window.addEventListener('load', function () {
  var r = {errors: window.__sv2aErrors, images: [], svgs: []};
  document.querySelectorAll('img').forEach(function (i) {
    r.images.push({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete,
                   alt: i.getAttribute('alt') || '',
                   src: (i.getAttribute('src') || '').slice(0, 40)});
  });
  document.querySelectorAll('svg').forEach(function (s) {
    var b = s.getBoundingClientRect();
    r.svgs.push({w: b.width, h: b.height});
  });
  var p = document.createElement('pre');
  p.id = 'sv2a-check';
  p.textContent = JSON.stringify(r);
  document.body.appendChild(p);
});
</script>"""


def _browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def render(report: Path, work: Path) -> dict:
    """Open a report in headless Chromium; return what the checking script found."""
    browser = _browser()
    assert browser is not None
    text = report.read_text(encoding="utf-8")
    assert "<head>" in text
    page = work / f"checked-{report.name}"
    page.write_text(text.replace("<head>", "<head>" + CHECK, 1), encoding="utf-8")
    profile = work / f"profile-{report.stem}"
    proc = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    m = re.search(r'<pre id="sv2a-check">(.*?)</pre>', proc.stdout, re.S)
    assert m, (f"{report.name}: the browser produced no check result (exit {proc.returncode});"
               f" stderr tail: {proc.stderr[-2000:]}")
    return json.loads(html.unescape(m.group(1)))


@pytest.fixture(scope="module")
def demo_reports(tmp_path_factory) -> list[Path]:
    if _browser() is None:
        pytest.skip("no Chromium/Chrome binary on PATH (Debian: apt-get install -y chromium);"
                    " the reports cannot be checked in a browser")
    from sv2a.pipeline import demo

    out = tmp_path_factory.mktemp("demo")
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([str(out), "--quiet"])
    assert demo.main(args) == 0
    reports = sorted((out / "derivatives").glob("*.html"))
    assert any(p.name == "group.html" for p in reports)
    assert any(p.name.startswith("sub-") for p in reports)
    return reports


@pytest.mark.slow
def test_demo_reports_render_without_errors_or_empty_figures(demo_reports, tmp_path):
    # Every report of the demo: no script or console errors, no failed loads, every image
    # decoded with a non-zero natural size (a broken data: URI decodes to 0 x 0), every
    # inline SVG drawn with a non-zero size, and at least one figure per report.
    for report in demo_reports:
        r = render(report, tmp_path)
        assert r["errors"] == [], f"{report.name}: {r['errors']}"
        assert r["images"], f"{report.name}: no figures"
        for img in r["images"]:
            assert img["complete"] and img["w"] > 0 and img["h"] > 0, \
                f"{report.name}: empty or broken image {img}"
            assert img["src"].startswith("data:image/"), f"{report.name}: {img}"
        for svg in r["svgs"]:
            assert svg["w"] > 0 and svg["h"] > 0, f"{report.name}: empty inline SVG {svg}"


def test_broken_figure_is_caught(tmp_path):
    # The check itself: a page with a broken data: URI and a script error fails it, so a
    # passing report is not a blind spot of the method.
    if _browser() is None:
        pytest.skip("no Chromium/Chrome binary on PATH (Debian: apt-get install -y chromium)")
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    "<img alt='x' src='data:image/png;base64,AAAA'>"
                    "<script>notDefined()</script></body></html>", encoding="utf-8")
    r = render(page, tmp_path)
    assert [i["w"] for i in r["images"]] == [0]
    assert any("notDefined" in e for e in r["errors"])
    assert any("AAAA" in e for e in r["errors"])
