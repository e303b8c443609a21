"""Concurrent and interrupted runs on one output folder: a lock per scan, workers that die
with their parent, ``failures.tsv`` from the state on disk, one error for an unwritable OUT.

The runs are real subprocesses. ``_slow_sv2a.py`` (written into tmp_path) is the sv2a
command line with one change: every scan sleeps ``SV2A_TEST_SLEEP`` seconds before its
summary, so a worker is reliably busy when the test acts (spawned pool workers import the
script too, so they sleep as well).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sv2a.commits import committed_scans
from sv2a.pipeline import PipelineConfig, locks, run_participant
from sv2a.pipeline.execute import OutputNotWritableError

STEMS = [f"sub-{s}_ses-{e}_trc-ucbj" for s in ("01", "02") for e in ("baseline", "followup")]
CFG = dict(models=["suvr"], model_options={"suvr": {"window": [8, 38]}}, figures=False)
CLI_FLAGS = ["--model", "suvr", "--window", "8", "38", "--no-figures", "-q"]

SLOW_SCRIPT = '''
import os, sys, time
import sv2a.pipeline.participant as part

_summary = part._stage_summary


def _slow_summary(st):
    time.sleep(float(os.environ.get("SV2A_TEST_SLEEP", "0")))
    _summary(st)


part._stage_summary = _slow_summary

if __name__ == "__main__":
    from sv2a.cli import main
    sys.exit(main(sys.argv[1:]))
'''


def _script(tmp_path: Path) -> Path:
    p = tmp_path / "_slow_sv2a.py"
    p.write_text(SLOW_SCRIPT)
    return p


def _start(script: Path, bids: Path, out: Path, *flags: str, sleep: float) -> subprocess.Popen:
    """The run in a subprocess; its output goes to files (orphaned workers that kept a pipe
    open would block the reader)."""
    env = {**os.environ, "SV2A_TEST_SLEEP": str(sleep)}
    n = len(list(script.parent.glob("run-*.out")))
    stdout = open(script.parent / f"run-{n}.out", "w+")  # noqa: SIM115 - closed in _summary
    stderr = open(script.parent / f"run-{n}.err", "w+")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(script), "run", str(bids), str(out),
                             "participant", *CLI_FLAGS, *flags], env=env, stdout=stdout,
                            stderr=stderr, text=True)
    proc.files = (stdout, stderr)  # type: ignore[attr-defined]
    return proc


def _output(proc: subprocess.Popen) -> tuple[str, str]:
    """What a finished run printed (stdout, stderr)."""
    texts = []
    for f in proc.files:  # type: ignore[attr-defined]
        f.seek(0)
        texts.append(f.read())
        f.close()
    return texts[0], texts[1]


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a reaped-later dead process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _lock_holders(out: Path) -> dict[str, int]:
    """``{stem: pid}`` written into the lock files of OUT."""
    got = {}
    for p in (out / locks.WORK_DIR / "locks").glob("*.lock"):
        try:
            got[p.stem] = int(json.loads(p.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return got


def _wait(cond, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _summary_line(proc: subprocess.Popen) -> str:
    proc.wait(timeout=120)
    out, err = _output(proc)
    assert proc.returncode == 0, err
    return out.strip().splitlines()[-1]


def test_killing_the_parent_stops_its_workers(small_bids, tmp_path):
    out = tmp_path / "out"
    proc = _start(_script(tmp_path), small_bids, out, "--nprocs", "2", sleep=4.0)
    try:
        _wait(lambda: len({p for p in _lock_holders(out).values() if p != proc.pid}) == 2,
              90, "two busy workers")
        workers = {p for p in _lock_holders(out).values() if p != proc.pid}
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _wait(lambda: not any(_alive(p) for p in workers), 5, f"workers {workers} to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in {p for p in _lock_holders(out).values() if p != proc.pid}:
            if _alive(p):  # only when the test failed: leave no orphan behind
                os.kill(p, signal.SIGKILL)
        _output(proc)
    time.sleep(5)  # a surviving worker would have finished its 4 s scan and committed it
    assert committed_scans(out) == {}
    # a later run completes, with consistent outputs; nothing of the killed run is left
    s = run_participant(small_bids, out, PipelineConfig(**CFG).validate(), quiet=True)
    assert s.ok and sorted(r["stem"] for r in s.done) == STEMS
    assert sorted(committed_scans(out)) == STEMS
    assert not (out / locks.WORK_DIR).exists()


def test_two_runs_never_compute_one_scan_twice(small_bids, tmp_path):
    out = tmp_path / "out"
    script = _script(tmp_path)
    a = _start(script, small_bids, out, sleep=1.5)
    _wait(lambda: bool(_lock_holders(out)), 60, "the first run to start a scan")
    b = _start(script, small_bids, out, sleep=1.5)
    lines = [_summary_line(a), _summary_line(b)]
    done = [int(line.split("participant: ")[1].split(" done")[0]) for line in lines]
    assert sum(done) == len(STEMS), lines  # each scan computed by exactly one run
    assert any("left to another sv2a run" in line for line in lines), lines
    assert sorted(committed_scans(out)) == STEMS
    assert not (out / locks.WORK_DIR).exists()
    for stem in STEMS:  # one run wrote each scan's log, in one piece
        log = (out / f"logs/{stem}.log").read_text()
        assert log.count("done in") == 1, stem


def test_locked_scan_is_reported_and_live_staging_kept(small_bids, tmp_path):
    out = tmp_path / "out"
    held = STEMS[0]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom sv2a.pipeline import locks\n"
         "assert locks.acquire(sys.argv[1]) is not None\nprint('locked', flush=True)\n"
         "time.sleep(120)", str(locks.lock_path(out, held))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        live = out / locks.WORK_DIR / "staging" / f"{held}.{socket.gethostname()}.{holder.pid}.x"
        live.mkdir(parents=True)
        (live / "partial.tsv").write_text("being written\n")
        dead = out / locks.WORK_DIR / "staging" / f"{STEMS[1]}.host.999999999.y"
        dead.mkdir(parents=True)
        s = run_participant(small_bids, out, PipelineConfig(**CFG).validate(), quiet=True)
        assert sorted(r["stem"] for r in s.done) == STEMS[1:]
        assert [r["stem"] for r in s.busy] == [held] and not s.failed
        msg = s.busy[0]["message"]
        assert (f"being processed by another sv2a run (pid {holder.pid} on "
                f"{socket.gethostname()} since") in msg
        assert "left to another sv2a run" in s.line(out)
        assert (live / "partial.tsv").exists() and not dead.exists()
        assert held not in committed_scans(out)
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock is free, its staging is stale; the next run does the scan
    s = run_participant(small_bids, out, PipelineConfig(**CFG).validate(), quiet=True)
    assert [r["stem"] for r in s.done] == [held] and not s.busy
    assert not (out / locks.WORK_DIR).exists()


def test_stale_lock_of_a_dead_run_is_harmless(small_bids, tmp_path):
    out = tmp_path / "out"
    lock = locks.lock_path(out, STEMS[0])
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": 999999999, "host": socket.gethostname(),
                                "since": "2020-01-01T00:00:00"}))
    s = run_participant(small_bids, out, PipelineConfig(**CFG).validate(), quiet=True)
    assert s.ok and len(s.done) == 4 and not s.busy


def test_failures_tsv_reflects_every_run(small_bids, tmp_path):
    out = tmp_path / "out"
    bad = small_bids / f"sub-01/ses-followup/pet/{STEMS[1]}_pet.nii.gz"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 3])
    s = run_participant(small_bids, out, PipelineConfig(**CFG, participant_label=["01"]
                                                        ).validate(), quiet=True)
    assert len(s.failed) == 1
    # another run, on the other subject, keeps sub-01's failure in failures.tsv
    s = run_participant(small_bids, out, PipelineConfig(**CFG, participant_label=["02"]
                                                        ).validate(), quiet=True)
    assert s.ok
    fails = pd.read_csv(out / "logs/failures.tsv", sep="\t")
    assert fails["pet"].tolist() == [bad.name] and fails.loc[0, "scan_status"] == "failed"
    # repaired: the resumed run clears it
    bad.write_bytes(good)
    s = run_participant(small_bids, out, PipelineConfig(**CFG).validate(), quiet=True)
    assert [r["stem"] for r in s.done] == [STEMS[1]]
    assert not (out / "logs/failures.tsv").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into a read-only (chmod 555) folder")
def test_read_only_output_folder_gives_one_error(small_bids, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(OutputNotWritableError, match="cannot write in the output folder"):
            run_participant(small_bids, out, PipelineConfig(**CFG).validate(), quiet=True)
    finally:
        out.chmod(0o755)
    assert not list(out.iterdir())


def test_output_folder_that_cannot_be_created_gives_one_error(small_bids, tmp_path, capsys):
    from sv2a.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    with pytest.raises(OutputNotWritableError, match=f"output folder {out}.*another OUT_DIR"):
        run_participant(small_bids, out, PipelineConfig(**CFG).validate(), quiet=True)
    rc = main(["run", str(small_bids), str(out), "participant", *CLI_FLAGS])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("cannot write in the output folder") == 1
