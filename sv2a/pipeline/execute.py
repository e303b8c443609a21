"""Run the participant level over many scans: serially, in local processes, or on Dask.

* serial (``nprocs=1``): in this process;
* ``nprocs=N``: a :class:`concurrent.futures.ProcessPoolExecutor` (spawned processes);
* ``dask_scheduler=ADDRESS``: :class:`distributed.Client` submission to an existing cluster
  (the same path serves dask-jobqueue clusters on SLURM/PBS; pass ``client=`` from Python).

Before any scan runs, the request is checked against every selected scan
(:func:`~sv2a.pipeline.preflight.check_scans`): problems stop the run with one
:class:`~sv2a.errors.ConfigError` listing the scans per problem, or, with ``skip_invalid``,
those scans are skipped and listed in ``logs/failures.tsv``. Finished scans (done-marker with
the same settings hash, i.e. the same content of every input and the same settings
(:mod:`sv2a.pipeline.provenance`), all outputs present, no failed model) are skipped unless
``force``; the log says which input changed for a scan that is redone. Each scan runs
:func:`~sv2a.pipeline.participant.process_scan`, which never raises; failed scans and failed
models are collected in ``logs/failures.tsv`` and the others complete.

Several runs may share an output folder: a scan is processed under a per-scan lock
(:mod:`sv2a.pipeline.locks`), so a scan another live run works on is reported as such and
not computed twice; ``logs/failures.tsv`` is rebuilt from the per-scan failure records on
disk, so it reflects every run. Workers of ``nprocs=N`` die with their parent process.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..bids import discover, read_participants
from ..errors import BIDSError, ConfigError, OutputNotWritableError
from ..io import write_json, write_tsv
from ..progress import Progress
from . import derivatives as drv
from . import locks
from .config import PipelineConfig
from .participant import (
    ScanJob,
    failure_path,
    job_from_scan,
    process_scan,
    read_json_object,
    read_marker,
    refresh_inputs,
    up_to_date,
    write_failure_record,
    write_failure_rows,
)
from .preflight import Problem, check_scans, problems_message
from .provenance import same_stat

__all__ = ["RunSummary", "run_participant", "run_jobs", "FAILURE_COLUMNS",
           "OutputNotWritableError"]

log = logging.getLogger("sv2a.pipeline")

#: Columns of ``logs/failures.tsv``: one row per failed scan, failed model (``stage``
#: ``fit:<model>`` or ``voxelwise:<model>``, ``model`` set) or invalid scan (``stage``
#: ``preflight``). ``scan_status``: ``failed`` (nothing of this run written), ``partial`` (the
#: scan's other outputs written; the next run redoes the scan), ``invalid`` (not run),
#: ``warning`` (done, the result usable, but the data deserve a look: ``message``) or
#: ``not_used`` (a folder or PET file of the dataset that discovery could not use).
FAILURE_COLUMNS = ["participant_id", "session", "pet", "scan_status", "stage", "model",
                   "error_type", "message", "log"]


@dataclass
class RunSummary:
    """Outcome of a participant-level run (``busy``: scans another live sv2a run was
    processing, reported and left to it)."""

    done: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)
    busy: list[dict] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def partial(self) -> list[dict]:
        """The done scans in which a model failed (their other outputs were written)."""
        return [r for r in self.done if r.get("failures")]

    @property
    def ok(self) -> bool:
        """True when no scan failed, was invalid or had a failed model."""
        return not (self.failed or self.invalid or self.partial)

    def line(self, out_dir: str | os.PathLike[str]) -> str:
        """The one-line summary printed at the end of a run.

        Parameters
        ----------
        out_dir : path
            Derivatives root (for the paths of ``failures.tsv`` and the reports).

        Returns
        -------
        str
            Counts of done, skipped and failed scans, the time taken and where to look.
        """
        part = f" ({len(self.partial)} with failed models)" if self.partial else ""
        bad = f", {len(self.invalid)} invalid (not run)" if self.invalid else ""
        bad += (f", {len(self.busy)} left to another sv2a run processing them"
                if self.busy else "")
        s = (f"sv2a participant: {len(self.done)} done{part}, {len(self.skipped)} skipped "
             f"(already up to date), {len(self.failed)} failed{bad} in {self.seconds:.1f} s")
        if not self.ok:
            s += f"; failures: {Path(out_dir) / 'logs' / 'failures.tsv'}"
        if self.reports:
            s += f"; reports: {Path(out_dir)}/sub-*.html"
        return s


def _progress(total: int, quiet: bool, desc: str) -> Progress:
    """A bar on a terminal, one plain line per finished scan in logs and batch jobs."""
    return Progress(total, label=f"sv2a {desc}", unit="scans", verb="done",
                    enabled=not quiet, stream=sys.stderr)


def run_jobs(jobs: list[ScanJob], *, nprocs: int = 1, dask_scheduler: str | None = None,
             client: Any = None, quiet: bool = False,
             on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run :func:`process_scan` on every job: serially, in local processes or on Dask.

    Parameters
    ----------
    jobs : list of ScanJob
        The scans to process.
    nprocs : int
        Local processes (1 = serial in this process).
    dask_scheduler : str, optional
        Address of a running Dask scheduler; jobs are submitted with ``client.submit``.
    client : distributed.Client, optional
        An existing client (e.g. on a ``dask_jobqueue.SLURMCluster``); takes precedence.
    quiet : bool
        No progress output. Otherwise a bar on a terminal, and one line per finished scan
        (counts, failures, elapsed time) in a log or a batch job (:mod:`sv2a.progress`).
    on_result : callable, optional
        Called with each status dict as soon as its scan finishes.

    Returns
    -------
    list of dict
        The status dicts of :func:`process_scan` in job order (a crashed worker gives a
        ``failed`` status at stage ``worker``).
    """
    results: dict[int, dict] = {}
    bar = _progress(len(jobs), quiet, "participant")
    bar.start()

    def done(i: int, res: dict) -> None:
        results[i] = res
        bar.update(failed=res["status"] == "failed", note=f"{res['stem']} {res['status']}")
        if on_result:
            on_result(res)

    def crashed(i: int, exc: BaseException) -> dict:
        j = jobs[i]
        return {"stem": j.stem, "subject": j.subject, "session": j.session, "pet": j.pet,
                "status": "failed", "stage": "worker", "error_type": type(exc).__name__,
                "message": f"the worker running this scan died: {exc}",
                "outputs": [], "notes": [], "log": f"logs/{j.stem}.log", "seconds": 0.0}

    from contextlib import nullcontext

    from tqdm.contrib.logging import logging_redirect_tqdm

    redirect = (logging_redirect_tqdm(loggers=[logging.getLogger("sv2a")])
                if bar.bars and bar.enabled else nullcontext())
    try:
        with redirect:
            # the per-scan voxel bar only where bars are drawn (a terminal)
            _dispatch(jobs, nprocs, dask_scheduler, client, done, crashed,
                      quiet or not bar.bars)
    finally:
        bar.close()
    return [results[i] for i in sorted(results)]


def _dispatch(jobs, nprocs, dask_scheduler, client, done, crashed, quiet) -> None:
    if client is not None or dask_scheduler:
        _run_dask(jobs, client, dask_scheduler, done, crashed)
    elif nprocs > 1 and len(jobs) > 1:
        _run_pool(jobs, nprocs, done, crashed)
    else:
        for i, j in enumerate(jobs):  # serial: a nested bar over voxel chunks (workers: none)
            done(i, process_scan(dataclasses.replace(j, progress=not quiet)))


def _run_pool(jobs, nprocs, done, crashed) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(nprocs, len(jobs)), mp_context=ctx,
                             initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        futs = {pool.submit(process_scan, asdict(j)): i for i, j in enumerate(jobs)}
        for fut in as_completed(futs):
            i = futs[fut]
            try:
                done(i, fut.result())
            except Exception as exc:  # BrokenProcessPool etc.
                done(i, crashed(i, exc))


def _worker_init(parent_pid: int | None = None) -> None:
    """Set up a pool worker: one BLAS thread (the parallelism is over scans), and death
    with the parent (:func:`_die_with_parent`) so that a killed run stops computing and
    committing."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if parent_pid is not None:
        _die_with_parent(parent_pid)


#: ``prctl`` option that sends a signal to this process when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """Make this worker exit when its parent process dies: on Linux the kernel sends it
    SIGKILL (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread checks every
    ``interval_s`` seconds whether the parent changed (re-parented to init)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the thread does it
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, interval_s), daemon=True,
                     name="sv2a-watch-parent").start()


def _watch_parent(parent_pid: int, interval_s: float) -> None:
    """Exit the process as soon as its parent is no longer ``parent_pid``."""
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent_pid:
            os._exit(1)


def _run_dask(jobs, client, address, done, crashed) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("--dask-scheduler needs the 'distributed' package: pip install "
                          "'sv2a[distributed]'") from exc
    own = client is None
    if own:
        try:
            client = Client(address, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--dask-scheduler {address}: cannot connect ({exc}); start a "
                              "scheduler (dask scheduler) or check the address") from None
    try:
        futs = {}
        for i, j in enumerate(jobs):
            f = client.submit(process_scan, asdict(j), pure=False,
                              key=f"sv2a-{j.stem}-{j.config_hash}-{os.getpid()}-{i}")
            futs[f] = i
        for fut in as_completed(list(futs)):
            i = futs[fut]
            try:
                done(i, fut.result())
            except Exception as exc:  # worker killed, lost, or unpicklable result
                done(i, crashed(i, exc))
    finally:
        if own:
            client.close()


# --------------------------------------------------------------------------- participant level
def run_participant(bids_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    cfg: PipelineConfig, *, quiet: bool = False, client: Any = None
                    ) -> RunSummary:
    """Participant level of ``sv2a run``: every selected scan, then subject reports.

    Scans whose done-marker matches their settings and inputs are skipped (unless
    ``cfg.force``); ``logs/failures.tsv`` lists this run's failures (removed when nothing
    failed).

    Parameters
    ----------
    bids_dir : path
        Raw BIDS dataset.
    out_dir : path
        Derivatives folder (must differ from ``bids_dir``).
    cfg : PipelineConfig
        Validated configuration.
    quiet : bool
        No progress bars.
    client : distributed.Client, optional
        Submit the scans to this Dask client (takes precedence over ``cfg.nprocs`` and
        ``cfg.dask_scheduler``).

    Returns
    -------
    RunSummary
        Done, skipped and failed scans, the subject reports and the time taken.

    Raises
    ------
    ConfigError
        ``out_dir`` is ``bids_dir``, the Dask scheduler cannot be reached, or the request
        does not fit some scans (:func:`~sv2a.pipeline.preflight.check_scans`; the message
        lists them per problem) and ``cfg.skip_invalid`` is off. Nothing is processed then.
    BIDSError
        No PET scan matches the selection.
    OutputNotWritableError
        ``out_dir`` cannot be created or written (checked before any scan starts).
    """
    t0 = time.perf_counter()
    bids_dir = Path(bids_dir)
    out = Path(out_dir)
    if bids_dir.resolve() == out.resolve():
        raise ConfigError("OUT_DIR must differ from BIDS_DIR (derivatives go to their own "
                          "folder, e.g. BIDS_DIR/derivatives/sv2a)")
    found = discover(bids_dir, participant_label=cfg.participant_label,
                     session_label=cfg.session_label)
    scans = found.scans
    for path, why in found.skipped:
        log.warning("not used: %s: %s", path, why)
    if not scans:
        raise BIDSError(f"{bids_dir}: no PET scans match the selection")
    problems = check_scans(scans, cfg)
    if problems and not cfg.skip_invalid:
        raise ConfigError(problems_message(problems, len(scans)))
    invalid = _invalid_results(problems)
    _check_writable(out)
    locks.clean_work(out)  # leftovers of dead runs (never a live run's staging)
    try:
        _write_not_used(out, bids_dir, found.skipped)
        return _run_participant(bids_dir, out, cfg, scans, invalid, t0, quiet, client)
    finally:
        locks.clean_work(out)


def _write_not_used(out: Path, bids_dir: Path, skipped: list[tuple[str, str]]) -> None:
    """The dataset's folders and PET files that discovery could not use, as ``not_used``
    rows (``BIDSError``) of ``logs/failures.tsv`` (a record replaced by every run)."""
    rows = []
    for where, why in skipped:
        try:
            parts = Path(where).resolve().relative_to(bids_dir.resolve()).parts
        except ValueError:
            parts = Path(where).parts[-3:]
        is_file = Path(where).name.endswith((".nii", ".nii.gz"))
        rows.append({"participant_id": parts[0] if parts else "n/a",
                     "session": next((q for q in parts[1:2] if q.startswith("ses-")
                                      and not q.endswith((".nii", ".nii.gz"))), "n/a"),
                     "pet": Path(where).name if is_file else "n/a", "scan_status": "not_used",
                     "stage": "discover", "model": "n/a", "error_type": "BIDSError",
                     "message": f"{Path(where).name}: {why}", "log": "n/a"})
    write_failure_rows(out, "dataset", rows)


def _check_writable(out: Path) -> None:
    """Create ``OUT`` and ``OUT/logs`` and write a file in each, or raise one clear error."""
    try:
        for d in (out, out / "logs"):
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".sv2a-write-test-")
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        where = exc.filename or out
        raise OutputNotWritableError(
            f"{where}: cannot write in the output folder {out} ({exc.strerror or exc}); make "
            f"it writable (e.g. chmod -R u+w {out}) or give another OUT_DIR") from None


def _run_participant(bids_dir: Path, out: Path, cfg: PipelineConfig, scans: list[Any],
                     invalid: dict[tuple, dict[str, Any]], t0: float, quiet: bool,
                     client: Any) -> RunSummary:
    """:func:`run_participant` once the request is checked and OUT is writable."""
    drv.write_dataset_description(out, bids_dir)
    drv.write_bidsignore(out)
    write_json(out / "sv2a_config.json", {"level": "participant", "bids_dir":
                                          str(bids_dir.resolve()), "command": drv.command_line(),
                                          **cfg.to_dict()})
    parts = read_participants(bids_dir)
    jobs, summary = [], RunSummary(invalid=list(invalid.values()))
    t_check = time.perf_counter()
    for s in scans:
        if (s.subject, s.session, str(s.pet)) in invalid:
            log.warning("%s: invalid request, not run: %s", s.label,
                        invalid[(s.subject, s.session, str(s.pet))]["message"])
            write_failure_record(out, invalid[(s.subject, s.session, str(s.pet))])
            continue
        prow = parts.loc[s.subject].to_dict() if s.subject in parts.index else {}
        job = _job_to_run(job_from_scan(s, cfg, bids_dir, out, prow), cfg.force)
        if job is None:
            summary.skipped.append(drv.scan_stem(s.pet))
        else:
            jobs.append(job)
    log.info("%d scan(s): %d to run, %d up to date (checked in %.2f s)", len(scans),
             len(jobs), len(summary.skipped), time.perf_counter() - t_check)

    def on_result(res: dict) -> None:
        if res["status"] == "skipped":
            log.warning("%s: not run here: %s", res["stem"], res["message"])
        elif res["status"] == "done":
            log.info("%s: done in %.1f s", res["stem"], res["seconds"])
            for n in res.get("notes", []):
                log.info("  note: %s", n)
            for f in res.get("failures", []):
                log.warning("%s: %s FAILED (%s): %s; the scan's other outputs were kept — "
                            "see %s", res["stem"], f["stage"], f["error_type"], f["message"],
                            out / res["log"])
        else:
            log.warning("%s: FAILED (%s at %s): %s — see %s", res["stem"], res["error_type"],
                        res["stage"], res["message"], out / res["log"])

    results = run_jobs(jobs, nprocs=cfg.nprocs, dask_scheduler=cfg.dask_scheduler,
                       client=client, quiet=quiet, on_result=on_result)
    for r in results:
        if r["status"] == "done":
            summary.done.append(r)
        elif r.get("busy"):
            summary.busy.append(r)
        elif r["status"] == "skipped":
            summary.skipped.append(r["stem"])
        else:
            summary.failed.append(r)
    _write_failures(out)
    if cfg.figures:
        summary.reports = _subject_reports(out, sorted({s.subject for s in scans}))
    summary.seconds = time.perf_counter() - t0
    return summary


def _job_to_run(job: ScanJob, force: bool) -> ScanJob | None:
    """The job with the reason it is redone, or ``None`` when it is up to date (its stale
    failure record removed, new input times recorded after e.g. ``touch``)."""
    done, reason = up_to_date(job)
    if force:
        return dataclasses.replace(job, reason="--force")
    if done:
        log.info("%s: up to date, skipped", job.label)
        _drop_stale_record(failure_path(job.out_dir, job.stem))
        if not same_stat(_marker_inputs(job), job.inputs):
            refresh_inputs(job)
        return None
    if reason:
        log.info("redoing %s: %s", job.label, reason)
    return dataclasses.replace(job, reason=reason)


def _drop_stale_record(path: Path) -> None:
    """Remove the failure record of an up-to-date scan unless it holds only the warnings of
    the run that made the scan's outputs (those still describe them)."""
    if (read_json_object(path) or {}).get("status") != "warning":
        path.unlink(missing_ok=True)


def _marker_inputs(job: ScanJob) -> dict[str, Any] | None:
    """The input record of a scan's done-marker."""
    inputs = (read_marker(job) or {}).get("inputs")
    return inputs if isinstance(inputs, dict) else None


def _invalid_results(problems: list[Problem]) -> dict[tuple, dict[str, Any]]:
    """Status dicts (``status="invalid"``, stage ``preflight``) of the scans with problems,
    keyed by ``(subject, session, pet)``; several problems of a scan are joined."""
    out: dict[tuple, dict[str, Any]] = {}
    for p in problems:
        key = (p.subject, p.session, p.pet)
        if key in out:
            out[key]["message"] += f"; {p.message}"
            continue
        stem = drv.scan_stem(p.pet)
        out[key] = {"stem": stem, "subject": p.subject, "session": p.session, "pet": p.pet,
                    "status": "invalid", "stage": "preflight", "error_type": p.error,
                    "message": p.message, "outputs": [], "notes": [], "log": "n/a",
                    "seconds": 0.0}
    return out


def _subject_reports(out: Path, subjects: list[str]) -> list[str]:
    """Rewrite the report of every subject of the run from what is in OUT now (committed
    outputs and ``logs/failures.tsv``); a report that cannot be written is removed, so no
    report describes an earlier state."""
    from .. import report

    written = []
    for sub in subjects:
        html = out / f"sub-{sub}.html"
        try:
            report.subject_report(out, sub)
        except Exception as exc:  # a report must never sink a finished run
            log.warning("report for sub-%s failed (%s); the old report was removed", sub, exc)
            html.unlink(missing_ok=True)
            continue
        if html.exists():
            written.append(str(html))
    return written


def _write_failures(out: Path) -> None:
    """``logs/failures.tsv`` from the per-scan failure records on disk (written by whichever
    run last tried each scan), so that it reflects every run on this folder; removed when
    no scan has failures."""
    path = out / "logs" / "failures.tsv"
    rows: list[dict[str, Any]] = []
    for rec in sorted((out / "logs").glob(".*_sv2a-failure.json")):
        got = (read_json_object(rec) or {}).get("rows", [])
        rows += [r for r in got if isinstance(r, dict)] if isinstance(got, list) else []
    if not rows:
        path.unlink(missing_ok=True)
        return
    write_tsv(path, pd.DataFrame(rows, columns=FAILURE_COLUMNS))


def summary_dict(summary: RunSummary) -> dict[str, Any]:
    """A run summary as plain types.

    Parameters
    ----------
    summary : RunSummary
        The outcome of :func:`run_participant`.

    Returns
    -------
    dict
        ``done`` and ``skipped`` scan stems, ``failed`` and ``invalid`` (stem, stage, error
        type, message), ``failed_models`` (stem, stage, model, error type, message) and
        ``seconds``.
    """
    keys = ("stem", "stage", "error_type", "message")
    return {"done": [r["stem"] for r in summary.done], "skipped": summary.skipped,
            "failed": [{k: r[k] for k in keys} for r in summary.failed],
            "invalid": [{k: r[k] for k in keys} for r in summary.invalid],
            "failed_models": [{"stem": r["stem"], **f} for r in summary.partial
                              for f in r["failures"]],
            "seconds": round(summary.seconds, 2)}
