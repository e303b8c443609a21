"""Progress output: bars on a terminal, plain lines in logs and batch jobs (sv2a.progress)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sv2a.progress import Progress, format_elapsed, use_bars

DEMO = Path(__file__).resolve().parents[1] / "demo_data"


def test_use_bars_only_on_a_terminal_outside_batch_jobs(monkeypatch):
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "SGE_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    assert not use_bars(io.StringIO())  # a log file or pipe
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert use_bars(tty)
            monkeypatch.setenv("SLURM_JOB_ID", "123")  # a terminal inside a SLURM job
            assert not use_bars(tty)
    finally:
        os.close(master)
        os.close(slave)


def test_plain_lines_count_scans_and_failures():
    out = io.StringIO()
    with Progress(3, label="sv2a participant", unit="scans", verb="done", stream=out) as p:
        p.update(note="sub-01 done")
        p.update(failed=True)
        p.update()
    lines = out.getvalue().splitlines()
    assert lines[0] == "sv2a participant: 3 scans to process"
    assert re.fullmatch(r"sv2a participant: 1/3 scans done, \d\d:\d\d elapsed", lines[1])
    assert re.fullmatch(r"sv2a participant: 3/3 scans done \(1 failed\), \d\d:\d\d elapsed",
                        lines[3])
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_disabled_progress_writes_nothing():
    out = io.StringIO()
    with Progress(3, label="x", enabled=False, stream=out) as p:
        p.update()
    assert out.getvalue() == "" and p.n == 1


def test_elapsed_format():
    assert format_elapsed(0) == "00:00"
    assert format_elapsed(61.9) == "01:01"
    assert format_elapsed(3600) == "1:00:00"


@pytest.mark.skipif(not DEMO.is_dir(), reason="demo_data/ not in this checkout")
def test_validate_writes_one_plain_line_per_scan_to_a_log(tmp_path):
    # stderr redirected to a file (as under SLURM): the scan count first, then one line per
    # checked scan, no carriage returns or cursor codes.
    n_scans = len(list(DEMO.glob("sub-*/**/pet/*_pet.nii*")))
    log = tmp_path / "validate.log"
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-c", "import sys; from sv2a.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", "validate", str(DEMO), "--quick"],
                              stdout=subprocess.PIPE, stderr=f, text=True, timeout=120,
                              check=False)
    text = log.read_text()
    assert proc.returncode == 0, proc.stdout + text
    assert "\r" not in text and "\x1b" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("sv2a validate:")]
    assert lines[0] == f"sv2a validate: {n_scans} scans to check"
    assert len(lines) == n_scans + 1
    assert re.fullmatch(rf"sv2a validate: {n_scans}/{n_scans} scans checked, \d\d:\d\d elapsed",
                        lines[-1])
