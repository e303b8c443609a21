"""Participant level: one subject/session from raw BIDS to derivatives.

:func:`process_scan` is the unit of work the executor sends to a process or a Dask worker. It
takes and returns plain dicts (picklable), never raises, and writes everything into a private
staging folder that is moved into place only when the scan got through; the done-marker is
written last. An interrupted or failed scan therefore leaves either its previous complete
outputs or nothing. A model whose regional fit or maps fail does not sink the scan: the
failure is recorded (scan log, report note, ``failures`` of the status and of the
done-marker) and the scan's other outputs are committed; a done-marker that lists failures
does not count as done, so the next run redoes the whole scan (its outputs stay in place
until then).

One function per stage, sharing a :class:`_Scan` state: :func:`_stage_load` (PET + sidecar)
-> :func:`_stage_atlas` (``anat/*_dseg`` or ``--atlas``, on the PET grid: refused on another
grid unless ``--atlas-resample``;
reference region checked and optionally eroded) -> :func:`_stage_tacs` -> :func:`_stage_blood`
-> :func:`_stage_fits` (plasma-input models only where blood exists) -> :func:`_stage_maps`
(optional voxelwise maps) -> :func:`_stage_figures` -> :func:`_stage_summary` ->
:func:`_commit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..commits import journal_path
from ..errors import DataError, RegionError, Sv2aError, Sv2aNotice, Sv2aWarning
from . import derivatives as drv
from . import locks
from .config import PipelineConfig
from .provenance import changed_inputs, input_digests

if TYPE_CHECKING:
    import xarray as xr

    from ..atlas import Atlas
    from ..bids import Scan
    from ..blood import InputFunction
    from ..models.base import Model
    from ..pet import DynamicPET

__all__ = ["ScanJob", "process_scan", "marker_path", "is_done", "up_to_date", "read_marker",
           "job_from_scan", "failure_path", "failure_rows", "write_failure_record",
           "write_failure_rows", "read_json_object",
           "refresh_inputs"]

log = logging.getLogger("sv2a.pipeline")

WORK_DIR = locks.WORK_DIR


@dataclass
class ScanJob:
    """Everything a worker needs for one scan (plain types only, so it pickles).

    Attributes
    ----------
    subject, session : str
        BIDS labels (without ``sub-``/``ses-``; session ``None`` when the dataset has none).
    pet, dseg : str
        The PET image and its segmentation (``None``: none found).
    blood : dict
        ``{recording: path}`` of the blood tables.
    bids_dir, out_dir : str
        Raw dataset and derivatives folder.
    config : dict
        :meth:`PipelineConfig.to_dict` of the validated configuration.
    config_hash : str
        :meth:`PipelineConfig.scan_hash` of this scan (settings + content hashes of the
        inputs).
    participant : dict
        The scan's row of ``participants.tsv`` (e.g. the ``weight`` fallback for SUV).
    command_line : str
        The command that started the run (for provenance).
    progress : bool
        Show a progress bar over voxel chunks (serial runs on a terminal).
    inputs : dict
        Content hashes of every input (:func:`~sv2a.pipeline.provenance.input_digests`),
        recorded in the done-marker.
    reason : str
        Why the scan is redone (``"sub-01_ses-bl_pet.json changed"``), for its log.
    """

    subject: str
    session: str | None
    pet: str
    blood: dict[str, str]
    dseg: str | None
    bids_dir: str
    out_dir: str
    config: dict[str, Any]
    config_hash: str
    participant: dict[str, Any] = field(default_factory=dict)
    command_line: str = ""
    progress: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def stem(self) -> str:
        """``sub-01_ses-bl`` (the PET file name without ``_pet.nii.gz``)."""
        return drv.scan_stem(self.pet)

    @property
    def label(self) -> str:
        """``sub-01/ses-bl`` for messages."""
        return f"sub-{self.subject}" + (f"/ses-{self.session}" if self.session else "")


def _out_of_core_chunks(pet: DynamicPET, cfg: PipelineConfig) -> tuple[int, int, int] | None:
    """Blocks for voxelwise maps too large for ``max_memory_gb`` (a map needs about 3x the
    float32 image): z-slabs such that every thread's block (~3x its bytes) fits, <= 128 MB.
    ``None`` when the image fits in memory."""
    if 3.0 * pet.nbytes / 1e9 <= cfg.max_memory_gb:
        return None
    return pet.slab_chunks(min(128e6, cfg.max_memory_gb * 1e9 / (3.0 * (os.cpu_count() or 1))))


def _dask_threads(job: ScanJob, name: str) -> contextlib.AbstractContextManager[Any]:
    """Context that runs one map's dask blocks on threads in this process (also on a Dask
    worker, where the cluster runs whole scans)."""
    try:
        import dask.config
    except ImportError:
        raise DataError(
            f"{job.label}: voxelwise {name} runs out of core (the image needs more than "
            "max_memory_gb, or chunks were given) and that needs dask: pip install "
            "'sv2a[distributed]', or raise --max-memory-gb") from None
    ctx: contextlib.AbstractContextManager[Any] = dask.config.set(scheduler="threads")
    return ctx


def job_from_scan(scan: Scan, cfg: PipelineConfig, bids_dir: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str], participant: dict[str, Any] | None = None
                  ) -> ScanJob:
    """The :class:`ScanJob` of a scan found in a BIDS dataset.

    Parameters
    ----------
    scan : sv2a.bids.Scan
        The scan (:func:`sv2a.bids.find_scans`).
    cfg : PipelineConfig
        The validated configuration.
    bids_dir, out_dir : path
        Raw dataset and derivatives folder.
    participant : dict, optional
        The subject's row of ``participants.tsv`` (missing values are dropped).

    Returns
    -------
    ScanJob
        With the content hashes of every input (:meth:`sv2a.bids.Scan.input_files`, the
        configured atlas and label table, the subject's ``participants.tsv`` values, the
        settings; :mod:`sv2a.pipeline.provenance`) and the settings hash made of them. File
        hashes recorded in the scan's done-marker are reused when size and ``mtime_ns``
        are unchanged.
    """
    part = _participant_values(participant)
    stem = drv.scan_stem(scan.pet)
    files: list[Any] = [f for f in scan.input_files()
                        if f.name != "participants.tsv"]  # its row is hashed, not the file
    if cfg.atlas:
        files += [cfg.atlas, cfg.atlas_labels]
    old = read_json_object(_marker_file(out_dir, scan.subject, scan.session, stem))
    inputs = input_digests(files, bids_dir,
                           {f"participants.tsv[sub-{scan.subject}]": part,
                            "configuration": cfg.participant_settings()},
                           previous=(old or {}).get("inputs"))
    h = cfg.scan_hash({k: (v or {}).get("blake2b") for k, v in inputs.items()})
    return ScanJob(scan.subject, scan.session, str(scan.pet),
                   {k: str(v) for k, v in scan.blood.items()},
                   str(scan.dseg) if scan.dseg else None, str(bids_dir), str(out_dir),
                   cfg.to_dict(), h, part, drv.command_line(), inputs=inputs)


def _participant_values(participant: dict[str, Any] | None) -> dict[str, Any]:
    """A ``participants.tsv`` row as plain values: missing ones dropped, numbers as float
    (so that a column turning from int to float elsewhere does not change this row)."""
    part: dict[str, Any] = {}
    for k, v in (participant or {}).items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and np.isnan(v):
            continue
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = float(v)
        part[str(k)] = v
    return part


# --------------------------------------------------------------------------- markers
def marker_path(job: ScanJob) -> Path:
    """The done-marker of a scan, hidden from BIDS tools.

    Parameters
    ----------
    job : ScanJob
        The scan.

    Returns
    -------
    Path
        ``OUT/sub-01/ses-bl/pet/.sub-01_ses-bl_sv2a-done.json``.
    """
    return _marker_file(job.out_dir, job.subject, job.session, job.stem)


def _marker_file(out_dir: str | os.PathLike[str], subject: str, session: str | None,
                 stem: str) -> Path:
    return drv.scan_dir(out_dir, subject, session) / f".{stem}_sv2a-done.json"


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from a pipeline record (marker, journal, failure record).

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    dict or None
        Its content; ``None`` when absent, unreadable or not a JSON object.
    """
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def read_marker(job: ScanJob) -> dict[str, Any] | None:
    """The done-marker of a scan.

    Parameters
    ----------
    job : ScanJob
        The scan.

    Returns
    -------
    dict or None
        Its content (settings hash, outputs, notes, ...); ``None`` when absent or unreadable.
    """
    return read_json_object(marker_path(job))


def is_done(job: ScanJob) -> bool:
    """Whether a scan finished with the same settings and inputs and its outputs exist.

    Parameters
    ----------
    job : ScanJob
        The scan.

    Returns
    -------
    bool
        True when the scan can be skipped.
    """
    return up_to_date(job)[0]


def up_to_date(job: ScanJob) -> tuple[bool, str]:
    """Whether a scan can be skipped, and if not, why it is redone.

    Parameters
    ----------
    job : ScanJob
        The scan (with its current input hashes).

    Returns
    -------
    done : bool
        True when the done-marker records the same settings hash, no failed model, and
        every output it lists exists.
    reason : str
        Why not (``"sub-01/ses-bl/pet/sub-01_ses-bl_pet.json changed"``, ``"configuration
        changed"``, ``"output ... is missing"``, failed models); ``""`` when done or never
        run.
    """
    m = read_marker(job)
    if not m:
        return False, ""
    if m.get("failures"):
        return False, ("model(s) failed in the last run: "
                       + ", ".join(str(f.get("stage")) for f in m["failures"]))
    if m.get("config_hash") != job.config_hash:
        changes = changed_inputs(m.get("inputs"), job.inputs)
        return False, "; ".join(changes) or "the settings hash changed"
    out = Path(job.out_dir)
    for rel in m.get("outputs", []):
        if not (out / rel).exists():
            return False, f"output {rel} is missing"
    return True, ""


def refresh_inputs(job: ScanJob) -> None:
    """Record the current sizes and times of an up-to-date scan's inputs in its done-marker
    (after e.g. ``touch``), so that the next skip check need not read the files again.
    Done only when the scan's lock is free; the hashes are unchanged.

    Parameters
    ----------
    job : ScanJob
        An up-to-date scan (:func:`up_to_date`).

    Returns
    -------
    None
    """
    from ..io import write_json

    fd = locks.acquire(locks.lock_path(job.out_dir, job.stem))
    if fd is None:
        return
    try:
        m = read_marker(job)
        if m and m.get("config_hash") == job.config_hash and m.get("inputs") != job.inputs:
            m["inputs"] = job.inputs
            write_json(marker_path(job), m)
    finally:
        locks.release(fd)


# --------------------------------------------------------------------------- failure records
def failure_path(out_dir: str | os.PathLike[str], stem: str) -> Path:
    """The failure record of a scan (its failed, partial or invalid state on disk).

    Parameters
    ----------
    out_dir : path
        Derivatives root.
    stem : str
        Scan stem.

    Returns
    -------
    Path
        ``OUT/logs/.sub-01_ses-bl_sv2a-failure.json``.
    """
    return Path(out_dir) / "logs" / f".{stem}_sv2a-failure.json"


def failure_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``logs/failures.tsv`` rows of a scan's status dict.

    Parameters
    ----------
    res : dict
        A status of :func:`process_scan` (``failed``, or ``done`` with ``failures``), or
        an ``invalid`` status of the preflight.

    Returns
    -------
    list of dict
        One row per failed scan, failed model (``scan_status`` ``partial``), invalid scan,
        or warning about the data of a done scan whose result is usable (``warning``);
        empty for a scan without failures or warnings.
    """
    def row(status: str, f: dict[str, Any], model: str) -> dict[str, Any]:
        return {"participant_id": f"sub-{res['subject']}",
                "session": f"ses-{res['session']}" if res.get("session") else "n/a",
                "pet": Path(res["pet"]).name, "scan_status": status, "stage": f["stage"],
                "model": model, "error_type": f["error_type"], "message": f["message"],
                "log": res["log"]}

    if res["status"] == "failed":
        return [row("failed", res, res["stage"].partition(":")[2] or "n/a")]
    if res["status"] == "invalid":
        return [row("invalid", res, "n/a")]
    if res["status"] == "done":
        return ([row("partial", f, f["model"]) for f in res.get("failures") or []]
                + [row("warning", w, "n/a") for w in res.get("warnings") or []])
    return []


def write_failure_record(out_dir: str | os.PathLike[str], res: dict[str, Any]) -> None:
    """Write (or, for a scan without failures, remove) a scan's failure record.

    Parameters
    ----------
    out_dir : path
        Derivatives root.
    res : dict
        The scan's status (:func:`failure_rows`).

    Returns
    -------
    None
    """
    write_failure_rows(out_dir, res["stem"], failure_rows(res))


def write_failure_rows(out_dir: str | os.PathLike[str], stem: str,
                       rows: list[dict[str, Any]]) -> None:
    """Write the failure record of ``stem`` holding ``rows`` (remove it when there are none).

    Parameters
    ----------
    out_dir : path
        Derivatives root.
    stem : str
        Scan stem (``"dataset"`` for what discovery could not use).
    rows : list of dict
        ``logs/failures.tsv`` rows; the record's status is the first row's ``scan_status``.

    Returns
    -------
    None
    """
    from ..io import write_json

    path = failure_path(out_dir, stem)
    if not rows:
        path.unlink(missing_ok=True)
        return
    write_json(path, {"stem": stem, "status": rows[0]["scan_status"],
                      "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
                      "rows": rows})


# --------------------------------------------------------------------------- the work
class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                            "%Y-%m-%d %H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def process_scan(job: ScanJob | dict[str, Any]) -> dict[str, Any]:
    """Run the participant pipeline on one scan; never raises (except on interrupt).

    Stages: load -> atlas -> tacs -> blood -> fit:<model> -> voxelwise:<model> -> figures ->
    summary -> commit. Everything is written into a private staging folder and moved into
    place by the commit when the scan got through; a failing ``fit:<model>`` or
    ``voxelwise:<model>`` is recorded in ``failures`` and the rest is still committed. The
    log is written in all cases.

    Parameters
    ----------
    job : ScanJob or dict
        The scan (a dict of the :class:`ScanJob` fields when sent to a worker).

    Returns
    -------
    dict
        ``stem``, ``subject``, ``session``, ``pet``, ``status`` (``"done"``/``"failed"``),
        ``stage`` (where it failed), ``error_type``, ``message``, ``seconds``, ``outputs``
        (paths relative to OUT), ``notes`` (e.g. models skipped for lack of blood), ``log``,
        ``failures`` (per failed model of a done scan: ``stage``, ``model``, ``error_type``,
        ``message``).
    """
    if isinstance(job, dict):
        job = ScanJob(**job)
    lock = locks.lock_path(job.out_dir, job.stem)
    try:
        fd = locks.acquire(lock)
    except OSError as exc:
        return _not_run(job, "failed", f"cannot take the scan lock {lock}: {exc}")
    if fd is None:
        return _not_run(job, "skipped", "being processed by another sv2a run "
                        f"({locks.holder_text(lock)})", busy=True)
    try:
        if not job.config.get("force") and is_done(job):
            return _not_run(job, "skipped", "finished meanwhile by another sv2a run")
        locks.clean_staging(job.out_dir, job.stem)  # left by a dead run (we hold the lock)
        return _process_locked(job)
    finally:
        locks.release(fd)


def _not_run(job: ScanJob, status: str, message: str, busy: bool = False) -> dict[str, Any]:
    """The status of a scan this process did not run (locked, done meanwhile, no lock)."""
    return {"stem": job.stem, "subject": job.subject, "session": job.session, "pet": job.pet,
            "status": status, "stage": "lock", "error_type": "" if status == "skipped"
            else "OSError", "message": message, "outputs": [], "notes": [], "failures": [],
            "log": f"logs/{job.stem}.log", "seconds": 0.0, "busy": busy}


def _process_locked(job: ScanJob) -> dict[str, Any]:
    """:func:`process_scan` of a scan whose lock this process holds."""
    t0 = time.perf_counter()
    out = Path(job.out_dir)
    stage_dir = locks.staging_dir(out, job.stem)
    rec = _Recorder()
    slog = logging.getLogger(f"sv2a.pipeline.scan.{job.stem}")
    slog.setLevel(logging.DEBUG)
    slog.propagate = False
    slog.addHandler(rec)
    st = _Scan(job, stage_dir, slog)
    result: dict[str, Any] = {"stem": job.stem, "subject": job.subject, "session": job.session,
                              "pet": job.pet, "status": "failed", "stage": "", "error_type": "",
                              "message": "", "outputs": [], "notes": [], "failures": []}
    log_rel = Path("logs") / f"{job.stem}.log"
    result["log"] = str(log_rel)
    slog.info("sv2a %s: %s (%s)", __version__, job.label, job.pet)
    slog.info("settings hash %s", job.config_hash)
    if job.reason:
        slog.info("redoing %s: %s", job.label, job.reason)
    try:
        with _warnings_of(st):
            outputs = _run(st)
        st.stage = "commit"
        _commit(job, stage_dir, outputs, st.notes, time.perf_counter() - t0, st.failures,
                st.warnings)
        result.update(status="done", outputs=outputs, notes=st.notes, failures=st.failures,
                      warnings=st.warnings)
        slog.info("done in %.1f s (%d files)%s", time.perf_counter() - t0, len(outputs),
                  f"; FAILED: {', '.join(f['stage'] for f in st.failures)} (the next run "
                  "redoes this scan)" if st.failures else "")
    except BaseException as exc:  # noqa: BLE001 - a worker must report, not die
        if isinstance(exc, KeyboardInterrupt | SystemExit) and not isinstance(exc, Exception):
            shutil.rmtree(stage_dir, ignore_errors=True)
            raise
        result.update(stage=st.stage, error_type=type(exc).__name__,
                      message=" ".join(str(exc).split()) or type(exc).__name__)
        slog.error("FAILED at stage '%s': %s: %s", st.stage, type(exc).__name__, exc)
        if isinstance(exc, Sv2aError):
            slog.debug("%s", traceback.format_exc())
        else:
            slog.error("unexpected error (please report):\n%s", traceback.format_exc())
        with contextlib.suppress(OSError):
            write_failure_record(out, result)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
        result["seconds"] = round(time.perf_counter() - t0, 3)
        slog.removeHandler(rec)
        _write_log(out / log_rel, rec.lines)
    return result


@contextlib.contextmanager
def _warnings_of(st: _Scan) -> Any:
    """Route the warnings raised while a scan runs, each distinct one once, as it happens:
    sv2a's warnings about the data (:class:`~sv2a.errors.Sv2aWarning`) become
    :meth:`_Scan.warn` (note and ``warning`` row of ``failures.tsv``, with the stage),
    :class:`~sv2a.errors.Sv2aNotice` a note only, other warnings (numerical remarks of
    libraries) go to the scan log only."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        text = f"{category.__name__}: {message}"
        if text in seen:
            return
        seen.add(text)
        msg = " ".join(str(message).split())
        if issubclass(category, Sv2aNotice):
            if not st.noted(msg):
                st.note(msg)
        elif issubclass(category, Sv2aWarning):
            st.warn(msg, category.__name__)
        else:
            st.slog.warning(text)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def _write_log(path: Path, lines: list[str]) -> None:
    from ..io import atomic_path

    try:
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError:  # pragma: no cover - the output folder vanished
        pass


# --------------------------------------------------------------------------- the stages
@dataclass
class _Scan:
    """What the stages of one scan share: the job, its settings, where it writes, and what
    each stage produced (set by the stage that makes it)."""

    job: ScanJob
    stage_dir: Path
    slog: logging.Logger
    stage: str = "start"
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    cfg: PipelineConfig = field(init=False)
    out_rel: Path = field(init=False)
    pet: DynamicPET = field(init=False)
    sources: list[str] = field(init=False)
    atlas: Atlas = field(init=False)
    atlas_uri: str = field(init=False)
    seg: str = field(init=False)
    reference: str | None = None
    tacs: xr.DataArray = field(init=False)
    fit_tacs: xr.DataArray = field(init=False)
    input: InputFunction | None = None
    blood_uris: list[str] = field(default_factory=list)
    fits: dict[str, xr.Dataset] = field(default_factory=dict)
    maps: dict[str, xr.Dataset] = field(default_factory=dict)
    motion: Any = None
    pvc_tacs: xr.DataArray | None = None
    pvc_fits: dict[str, xr.Dataset] = field(default_factory=dict)
    map_pet: Any = None

    def dest(self, rel: Path) -> Path:
        """The staging path of output ``rel`` (relative to OUT), recorded as written."""
        path = self.stage_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.append(rel.as_posix())
        return path

    def note(self, msg: str) -> None:
        """A remark in the scan log that also goes to the run summary and the report."""
        self.slog.warning(msg)
        self.notes.append(msg)

    def noted(self, msg: str) -> bool:
        """Whether a note already says ``msg`` (or ``msg`` holds a note)."""
        return any(msg in n or n in msg for n in self.notes)

    def warn(self, msg: str, kind: str = "Sv2aWarning") -> None:
        """A problem of the data that left the result usable: a note (scan log, summary,
        report) and a ``warning`` row of ``logs/failures.tsv``; said once per scan."""
        if self.noted(msg):
            return
        self.note(msg)
        self.warnings.append({"stage": self.stage, "error_type": kind, "message": msg})


def _run(st: _Scan) -> list[str]:
    """Run the stages of one scan into its staging folder; return the files written
    (relative to OUT)."""
    st.cfg = PipelineConfig(**st.job.config)
    st.out_rel = drv.scan_dir(".", st.job.subject, st.job.session)
    _stage_load(st)
    _stage_realign(st)
    _stage_atlas(st)
    _stage_tacs(st)
    _stage_pvc(st)
    _stage_blood(st)
    _stage_fits(st)
    _stage_maps(st)
    _stage_figures(st)
    _stage_summary(st)
    return sorted(set(st.written))


def _uses_reference(model: type[Model]) -> bool:
    """Whether a model needs the reference region (its kind says so: reference-tissue
    models and SUVR)."""
    return model.kind == "reference"


def _stage_load(st: _Scan) -> None:
    """Load the PET image and its sidecar (frame times, units, dose, weight)."""
    from ..io import load_pet

    st.stage = "load"
    job = st.job
    st.pet = load_pet(job.pet, participants=job.participant or None)
    st.slog.info("PET %s frames, grid %s, %s", st.pet.n_frames, st.pet.shape[:3],
                 st.pet.meta.get("original_units"))
    st.sources = [drv.bids_uri(job.pet, job.bids_dir)]


def _stage_realign(st: _Scan) -> None:
    """Realign the frames for head motion (``--realign``) and write the motion table."""
    if not st.cfg.realign:
        return
    from ..motion import realign, write_motion_table

    st.stage = "realign"
    t1 = time.perf_counter()
    res = realign(st.pet)
    st.pet = res.pet
    st.motion = res.table
    rel = st.out_rel / drv.motion_name(st.job.stem)
    write_motion_table(res.table, st.dest(rel))
    st.written.append(rel.with_suffix(".json").as_posix())
    bad = res.table.loc[~res.table["converged"].astype(bool), "frame"].tolist()
    if bad:
        st.note(f"{st.job.label}: realignment did not converge for frame(s) {bad}; they are "
                "corrected with the best parameters found and flagged in the motion table")
    st.slog.info("realigned %d frames in %.1f s; max framewise displacement %.2f mm",
                 len(res.table), time.perf_counter() - t1, res.max_displacement_mm)


def _stage_atlas(st: _Scan) -> None:
    """Load the segmentation on the PET grid (refused on another grid unless
    ``atlas_resample``); check and optionally erode the reference."""
    from ..atlas import load_atlas

    st.stage = "atlas"
    job, cfg = st.job, st.cfg
    path: str
    if cfg.atlas:
        path, labels = cfg.atlas, cfg.atlas_labels
    elif job.dseg:
        path, labels = job.dseg, None
    else:
        raise RegionError(
            f"{job.label}: no segmentation found (expected anat/{job.stem}*_dseg.nii.gz with a "
            "_dseg.tsv beside it); give one for all scans with --atlas PATH --atlas-labels TSV"
        )
    # the one geometry policy (sv2a.atlas.place_on_grid): another grid is refused unless
    # --atlas-resample, and even then a gross header disagreement is refused
    atlas = load_atlas(path, labels=labels, pet=st.pet, resample=cfg.atlas_resample)
    st.seg = drv.atlas_label(path, cfg.atlas_name)
    st.atlas_uri = drv.bids_uri(path, job.bids_dir)
    st.atlas = _reference_region(st, atlas, path)


def _reference_region(st: _Scan, atlas: Atlas, path: str) -> Atlas:
    """Check that the reference region is in the atlas when a model needs it and erode it
    when configured; set ``st.reference``. Returns the (possibly eroded) atlas."""
    from ..tacs import region_name

    cfg = st.cfg
    if not any(_uses_reference(m) for m in _models_used(cfg)):
        return atlas
    ref = region_name(cfg.reference)
    if ref not in atlas.names:
        raise RegionError(
            f"{st.job.label}: reference region '{cfg.reference}' is not in the atlas "
            f"{path}; available: {', '.join(atlas.names)}. Choose one with --reference"
        )
    if cfg.reference_erode_mm > 0:
        n0 = int(atlas.mask(ref).sum())
        atlas = atlas.erode(ref, cfg.reference_erode_mm)
        st.slog.info("reference '%s' eroded by %.1f mm: %d -> %d voxels", ref,
                     cfg.reference_erode_mm, n0, int(atlas.mask(ref).sum()))
    st.reference = ref
    return atlas


def _models_used(cfg: PipelineConfig) -> list[type[Model]]:
    """The model classes of the regional fits and of the maps."""
    from ..models import registry

    names = [*cfg.models, *(cfg.resolved_voxelwise_models() if cfg.voxelwise else [])]
    return [registry.get(m) for m in dict.fromkeys(names)]


def _stage_tacs(st: _Scan) -> None:
    """Extract and write the regional TACs; screen the regions the fits can use."""
    from ..tacs import extract_tacs

    st.stage = "tacs"
    job, cfg = st.job, st.cfg
    tacs = extract_tacs(st.pet, st.atlas)
    st.slog.info("TACs: %d regions x %d frames", tacs.sizes["region"], tacs.sizes["frame"])
    rel = st.out_rel / drv.tacs_name(job.stem, st.seg)
    volumes = (dict(zip(tacs.region.values.tolist(),
                        np.round(tacs["volume_ml"].values, 4).tolist(), strict=True))
               if "volume_ml" in tacs.coords else {})
    drv.write_table_with_sidecar(st.dest(rel), drv.tacs_table(tacs), {
        "Description": "Regional time-activity curves: mean of each atlas region per frame",
        "Units": "kBq/mL", "frame_start": {"Units": "s"}, "frame_end": {"Units": "s"},
        "Atlas": st.atlas_uri, "ReferenceErosionMM": cfg.reference_erode_mm,
        "MotionCorrection": "rigid frame realignment (sv2a.motion.realign)" if cfg.realign
        else "none",
        "RegionVolumeML": volumes,
        **drv.provenance(sources=[*st.sources, st.atlas_uri], config_hash=job.config_hash),
    })
    st.written.append(rel.with_suffix(".json").as_posix())
    st.tacs = tacs
    empty = tacs.attrs.get("empty_regions") or []
    if empty:
        st.note(f"{job.label}: atlas region(s) left out of the TACs (no usable voxels): "
                f"{empty}")
    st.fit_tacs = _screen_regions(st, tacs)


def _stage_pvc(st: _Scan) -> None:
    """Partial-volume correction (``--pvc``): GTM regional TACs written and fitted as
    ``desc-gtm`` beside the uncorrected ones; with ``rbv`` also a corrected image for the maps
    (``desc-rbv``)."""
    cfg, job = st.cfg, st.job
    if cfg.pvc is None:
        return
    from ..pvc import gtm, rbv

    st.stage = "pvc"
    res = gtm(st.pet, st.atlas, fwhm=cfg.psf_fwhm)
    rel = st.out_rel / drv.tacs_name(job.stem, st.seg, desc="gtm")
    drv.write_table_with_sidecar(st.dest(rel), drv.tacs_table(res.tacs), {
        "Description": "Regional time-activity curves corrected for partial-volume effects by "
                       "the geometric transfer matrix (Rousset et al. 1998, J Nucl Med 39:904)",
        "Units": "kBq/mL", "frame_start": {"Units": "s"}, "frame_end": {"Units": "s"},
        "Atlas": st.atlas_uri, "PartialVolumeCorrection": "GTM",
        "PSFFWHMmm": res.tacs.attrs.get("fwhm_mm"), "GTMConditionNumber": res.condition,
        **drv.provenance(sources=[*st.sources, st.atlas_uri], config_hash=job.config_hash),
    })
    st.written.append(rel.with_suffix(".json").as_posix())
    st.pvc_tacs = _screen_regions(st, res.tacs)
    st.slog.info("PVC (GTM, FWHM %s mm): condition number %.3g", res.tacs.attrs.get("fwhm_mm"),
                 res.condition)
    if cfg.pvc == "rbv" and cfg.voxelwise:
        st.map_pet = rbv(st.pet, st.atlas, fwhm=cfg.psf_fwhm, gtm_result=res)


def _stage_blood(st: _Scan) -> None:
    """Load the arterial input function when a plasma-input model is requested and blood
    data exist (without blood those models are skipped with a note later)."""
    from ..io import load_blood

    blood = st.job.blood
    if not any(m.kind == "plasma" for m in _models_used(st.cfg)):
        return
    if st.cfg.input == "idif":
        _image_derived_input(st)
        return
    st.blood_uris = [drv.bids_uri(p, st.job.bids_dir) for p in blood.values()]
    if not blood:
        return
    st.stage = "blood"
    st.input = load_blood(list(blood.values()))
    st.slog.info("input function from %s", ", ".join(Path(p).name for p in blood.values()))


def _image_derived_input(st: _Scan) -> None:
    """Image-derived plasma input (``--input idif``): blood-pool ROI from the atlas region
    ``--idif-region`` or found automatically; the curves are written as ``desc-idif`` blood
    data so that the input is on record."""
    import pandas as pd

    from ..blood import image_derived_input
    from ..io import write_json, write_tsv
    from ..tacs import region_name

    cfg, job = st.cfg, st.job
    st.stage = "idif"
    mask = None
    if cfg.idif_region:
        name = region_name(cfg.idif_region)
        if name not in st.atlas.names:
            raise RegionError(f"{job.label}: --idif-region '{cfg.idif_region}' is not in the "
                              f"atlas; available: {', '.join(st.atlas.names)}")
        mask = st.atlas.mask(name)
    from ..pvc import psf_fwhm

    fwhm = tuple(float(v) for v in psf_fwhm(st.pet, cfg.psf_fwhm))  # option, else sidecar
    inp = image_derived_input(st.pet, mask, fwhm=fwhm)
    st.input = inp
    rel = st.out_rel / drv.idif_name(job.stem)
    t = np.asarray(inp.time, float)
    table = pd.DataFrame({"time": t * 60.0,
                          "whole_blood_radioactivity": inp.whole_blood_at(t),
                          "plasma_radioactivity": inp.plasma_at(t)})
    write_tsv(st.dest(rel), table)
    side = {"Description": "Image-derived input function (sv2a.blood.image_derived_input): "
                           "metabolite-corrected plasma and whole blood at frame mid-times",
            "time": {"Units": "s"}, "whole_blood_radioactivity": {"Units": "kBq/mL"},
            "plasma_radioactivity": {"Units": "kBq/mL", "Description": "parent (metabolite-"
                                     "corrected) plasma"},
            "IDIF": {k: v for k, v in dict(inp.meta).items()
                     if isinstance(v, str | int | float | bool | list)},
            **drv.provenance(sources=[*st.sources, st.atlas_uri], config_hash=job.config_hash)}
    write_json(st.dest(rel.with_suffix(".json")), side)
    st.blood_uris = [rel.as_posix()]
    st.note(f"{job.label}: plasma input derived from the image "
            f"({'region ' + cfg.idif_region if cfg.idif_region else 'automatic blood pool'})")


def _model_inputs(st: _Scan, model: type[Model], what: str) -> dict[str, Any] | None:
    """The ``input=``/``reference=`` keywords of a model for this scan, or ``None`` (with a
    note) for a plasma-input model without blood. ``reference`` is the region name."""
    if model.kind == "plasma":
        if st.input is None:
            st.note(f"{what} {model.name} skipped for {st.job.label}: it needs arterial blood "
                    f"(pet/{st.job.stem}_recording-manual_blood.tsv or -autosampler) and none "
                    "was found")
            return None
        return {"input": st.input}
    if _uses_reference(model):
        return {"reference": st.reference}
    return {}


def _scan_options(st: _Scan, model: type[Model], opts: dict[str, Any]) -> dict[str, Any]:
    """Regional fit options completed with what the scan's sidecar says: injected activity
    (MBq) and body weight (kg) for models that take them (SUV), unless set in the
    configuration (the map adapter reads them from the image itself)."""
    out = dict(opts)
    takes = _option_names(model)
    for key in ("injected_mbq", "body_weight_kg"):
        if key in takes and key in st.pet.meta:
            out.setdefault(key, st.pet.meta[key])
    return out


def _stage_fits(st: _Scan) -> None:
    """Fit every requested model to the regional TACs and write its table and sidecar (a
    model that fails is recorded and the others go on)."""
    for name in st.cfg.models:
        st.stage = f"fit:{name}"
        _keep_going(st, name, "fit", _fit_model, st, name)


def _keep_going(st: _Scan, name: str, what: str, func: Any, *args: Any) -> None:
    """Run one model's stage; on an error drop what it staged and recorded, and record the
    failure (scan log with the traceback, report note, ``st.failures``)."""
    n_written = len(st.written)
    try:
        func(*args)
    except Exception as exc:  # noqa: BLE001 - one model must not sink the scan
        del st.written[n_written:]
        for done in ((st.fits, st.pvc_fits) if what == "fit" else (st.maps,)):
            done.pop(name, None)
        message = " ".join(str(exc).split()) or type(exc).__name__
        st.failures.append({"stage": st.stage, "model": name,
                            "error_type": type(exc).__name__, "message": message})
        st.slog.error("FAILED at stage '%s': %s: %s", st.stage, type(exc).__name__, exc)
        level = logging.DEBUG if isinstance(exc, Sv2aError) else logging.ERROR
        st.slog.log(level, "%s", traceback.format_exc())
        st.note(f"{st.job.label}: {'regional fit' if what == 'fit' else 'voxelwise maps'} "
                f"{name} failed ({type(exc).__name__}: {message}); the scan's other outputs "
                "were kept and the next run redoes this scan")


def _fit_model(st: _Scan, name: str) -> None:
    """Fit one regional model (skipped with a note when it needs blood and there is none)."""
    from ..models import registry
    from ..models.regional import fit as fit_model

    model = registry.get(name)
    kwargs = _model_inputs(st, model, "model")
    if kwargs is None:
        return
    opts = _scan_options(st, model, st.cfg.model_options.get(name, {}))
    sources = [*st.sources, st.atlas_uri, *(st.blood_uris if "input" in kwargs else [])]
    t1 = time.perf_counter()
    fit = fit_model(st.fit_tacs, model=name, **kwargs, **opts)
    st.fits[name] = fit
    n_bad = int((~fit["converged"].values).sum()) if "converged" in fit else 0
    st.slog.info("fit %s: %d regions in %.2f s%s", name, fit.sizes["region"],
                 time.perf_counter() - t1, f" ({n_bad} not converged)" if n_bad else "")
    _write_fit(st, name, fit, kwargs, opts, sources, None, {
        "Description": f"Regional {name} fit: {getattr(model, 'description', '')}".strip(),
        "Model": name, "ModelKind": model.kind, "Corrections": _corrections(st)})
    if st.pvc_tacs is not None:  # the same fit of the GTM-corrected TACs, beside it
        fit = fit_model(st.pvc_tacs, model=name, **kwargs, **opts)
        st.pvc_fits[name] = fit
        _write_fit(st, name, fit, kwargs, opts, sources, "gtm", {
            "Description": f"Regional {name} fit of partial-volume corrected (GTM) TACs",
            "Model": name, "ModelKind": model.kind, "PartialVolumeCorrection": "GTM",
            "PSFFWHMmm": st.pvc_tacs.attrs.get("fwhm_mm")})


def _write_fit(st: _Scan, name: str, fit: xr.Dataset, kwargs: dict[str, Any],
               opts: dict[str, Any], sources: list[str], desc: str | None,
               head: dict[str, Any]) -> None:
    """Stage one regional fit's kinpar table and its sidecar (``head`` first, then the
    reference, atlas, settings, units and provenance shared by every fit)."""
    rel = st.out_rel / drv.kinpar_name(st.job.stem, st.seg, name, desc=desc)
    drv.write_table_with_sidecar(st.dest(rel), drv.kinpar_table(fit), {
        **head, "Reference": kwargs.get("reference"), "Atlas": st.atlas_uri,
        "Settings": drv.settings_of(fit), "Units": drv.units_of(fit),
        **drv.provenance(sources=sources, config_hash=st.job.config_hash,
                         settings={"model_options": opts}),
    })
    st.written.append(rel.with_suffix(".json").as_posix())


def _stage_maps(st: _Scan) -> None:
    """Voxelwise parametric maps of the map models (brain voxels of the atlas, reference
    region left out), in memory or out of core (see :func:`_out_of_core_chunks`)."""
    if not st.cfg.voxelwise:
        return
    st.stage = "voxelwise"
    chunks = _out_of_core_chunks(st.pet, st.cfg)
    for name in st.cfg.resolved_voxelwise_models():
        st.stage = f"voxelwise:{name}"
        _keep_going(st, name, "voxelwise", _map_model, st, name, chunks)


def _map_model(st: _Scan, name: str, ooc_chunks: tuple[int, int, int] | None) -> None:
    """Parametric maps of one model, written as NIfTI with provenance in the sidecars
    (skipped with a note when the model needs blood and there is none)."""
    from ..io import sidecar_path, write_json
    from ..models import registry
    from ..parametric import parametric_maps

    cfg, job = st.cfg, st.job
    model = registry.get(name)
    kwargs = _model_inputs(st, model, "voxelwise")
    if kwargs is None:
        return
    brain = st.atlas.labels > 0
    if "reference" in kwargs and st.reference is not None:
        refmask = st.atlas.mask(st.reference)
        kwargs["reference"] = refmask
        kwargs["mask"] = brain & ~refmask
    else:
        kwargs["mask"] = brain
    opts = dict(cfg.voxelwise_options.get(name, {}))
    k2p = _k2prime_from_fit(st.fits[name]) if name in st.fits else None
    # the regional k2' fixes k2' in the maps of models that always use one (SRTM2, MRTM2);
    # for models where a k2' switches method (SRTM two-step, reference Logan's C_R/k2' term)
    # the user asks for it in voxelwise_options
    if ("k2prime" not in opts and k2p is not None and "k2prime" in _option_names(model)
            and model.defaults().get("k2prime") is not None):
        opts["k2prime"] = k2p
        st.slog.info("voxelwise %s: k2prime %.4g /min from the regional fit", name, k2p)
    run_opts: dict[str, Any] = {**opts, "progress": job.progress}
    ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if ooc_chunks is not None:
        run_opts.setdefault("chunks", ooc_chunks)
    if "chunks" in run_opts:
        ctx = _dask_threads(job, name)
        st.slog.info("voxelwise %s out of core (~%.1f GB needed in memory, max_memory_gb "
                     "%g): dask blocks of %s voxels", name, 3.0 * st.pet.nbytes / 1e9,
                     cfg.max_memory_gb, tuple(int(c) for c in run_opts["chunks"][:3]))
    t1 = time.perf_counter()
    with ctx:
        mp = parametric_maps(st.pet, model=name, **kwargs, **run_opts)
    st.maps[name] = mp
    st.slog.info("maps %s in %.2f s", name, time.perf_counter() - t1)
    files = mp.sv2a.to_nifti(st.stage_dir / st.out_rel, job.stem)
    if st.map_pet is not None:  # --pvc rbv: the same maps of the corrected image
        corrected = parametric_maps(st.map_pet, model=name, **kwargs,
                                    **{k: v for k, v in run_opts.items() if k != "chunks"})
        files += corrected.sv2a.to_nifti(st.stage_dir / st.out_rel, f"{job.stem}_desc-rbv")
    prov = drv.provenance(sources=[*st.sources, st.atlas_uri,
                                   *(st.blood_uris if "input" in kwargs else [])],
                          config_hash=job.config_hash, settings={"voxelwise_options": opts})
    for f in files:
        st.written.append((st.out_rel / Path(f).name).as_posix())
        sc = sidecar_path(f)
        if sc.exists():
            meta = json.loads(sc.read_text(encoding="utf-8"))
            meta.update({"Reference": st.reference if "reference" in kwargs else None,
                         "Atlas": st.atlas_uri, **prov})
            write_json(sc, meta)
            st.written.append((st.out_rel / sc.name).as_posix())


def _option_names(model: type[Model]) -> set[str]:
    """Names of a model's options."""
    return {f.name for f in dataclasses.fields(model.Options)}


def _stage_figures(st: _Scan) -> None:
    """Figures of the scan (TACs, fits, input function, map slices) for the reports."""
    if not st.cfg.figures:
        return
    from .. import report

    st.stage = "figures"
    fig_rel = drv.figures_dir(".", st.job.subject)
    figs = report.scan_figures(
        st.stage_dir / fig_rel, st.job.stem, tacs=st.tacs, fits=st.fits, input=st.input,
        maps=st.maps, pet=st.pet, atlas=st.atlas, reference=st.reference, motion=st.motion)
    for f in figs:
        st.written.append((fig_rel / Path(f).name).as_posix())


def _stage_summary(st: _Scan) -> None:
    """The hidden per-scan summary that the subject report reads."""
    from ..io import write_json

    st.stage = "summary"
    job, out_rel = st.job, st.out_rel
    write_json(st.dest(out_rel / f".{job.stem}_sv2a-summary.json"), {
        "stem": job.stem, "subject": job.subject, "session": job.session, "atlas": st.seg,
        "reference": st.reference, "notes": st.notes,
        "models": {m: str((out_rel / drv.kinpar_name(job.stem, st.seg, m)).as_posix())
                   for m in st.fits},
        "pvc_models": {m: str((out_rel / drv.kinpar_name(job.stem, st.seg, m, desc="gtm")
                               ).as_posix()) for m in st.pvc_fits},
        "corrections": _corrections(st),
        "maps": {m: sorted(str(v) for v in mp.data_vars) for m, mp in st.maps.items()},
    })


def _corrections(st: _Scan) -> list[str]:
    """Plain-language list of the corrections applied to this scan (report and sidecars)."""
    cfg = st.cfg
    out = []
    if cfg.realign:
        fd = (float(st.motion["framewise_displacement"].max())
              if st.motion is not None else float("nan"))
        out.append(f"frames realigned for head motion (max framewise displacement "
                   f"{fd:.2f} mm)")
    if cfg.pvc:
        out.append(f"partial-volume correction {cfg.pvc.upper()} (desc-gtm results beside the "
                   "uncorrected ones" + (", desc-rbv maps" if cfg.pvc == "rbv" else "") + ")")
    if cfg.input == "idif":
        out.append("image-derived plasma input (recording-IDIF_desc-idif_blood.tsv)")
    return out


def _screen_regions(st: _Scan, tacs: xr.DataArray | None = None) -> xr.DataArray:
    """TACs for model fitting: without ``exclude_regions`` and without regions whose TAC no
    model can use (non-finite, never positive, or below -2 % of its peak, the tolerance of
    :func:`sv2a.fit`). The reference region is never dropped here."""
    from ..models.regional import NEGATIVE_TOLERANCE
    from ..tacs import region_name
    from .config import NON_BRAIN_REGIONS

    tacs = st.tacs if tacs is None else tacs
    names = [str(r) for r in tacs.region.values]
    excluded = [*st.cfg.exclude_regions, *NON_BRAIN_REGIONS,
                *([st.cfg.idif_region] if st.cfg.idif_region else []), "background"]
    drop = {region_name(r) for r in excluded} & set(names)
    if drop:
        st.slog.info("regions excluded by configuration: %s", sorted(drop))
    vals = np.asarray(tacs.transpose("region", "frame").values, float)
    bad = []
    for i, r in enumerate(names):
        if r in drop or r == st.reference:
            continue
        v = vals[i]
        peak = np.nanmax(v) if np.isfinite(v).any() else np.nan
        if (not np.isfinite(v).all() or not peak > 0
                or v.min() < -NEGATIVE_TOLERANCE * peak):
            bad.append(r)
    if bad:
        st.note(f"{st.job.label}: region(s) {bad} left out of the model fits: their TAC is "
                "non-finite, never positive or clearly negative (low-count regions such as "
                "ventricles); the TACs file still lists them")
    keep = [r for r in names if r not in drop and r not in bad]
    return tacs.sel(region=keep) if len(keep) < len(names) else tacs


def _k2prime_from_fit(fit: xr.Dataset) -> float | None:
    """Median k2prime (1/min) of a regional fit: the voxelwise fit of the same model uses
    it as a fixed k2' unless ``voxelwise_options`` set one."""
    if "k2prime" not in fit:
        return None
    v = np.asarray(fit["k2prime"].values, float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.median(v)) if v.size else None


def _commit(job: ScanJob, stage_dir: Path, outputs: list[str], notes: list[str],
            seconds: float, failures: list[dict[str, str]] | None = None,
            data_warnings: list[dict[str, str]] | None = None) -> None:
    """Move staged files into OUT (each an atomic rename), drop stale outputs of an earlier
    run of this scan, then write the done-marker last (with the input hashes, and the
    failed models, if any, so that :func:`is_done` sends the scan to the next run).

    Readers see the scan only through its marker: until the new marker exists the scan is
    uncommitted (invisible to the group level, redone by the next run). A journal beside
    the marker lists the old and new outputs while the commit is under way, so a commit
    interrupted after some moves is cleaned up by the next one."""
    from ..io import write_json

    out = Path(job.out_dir)
    mk = marker_path(job)
    journal = journal_path(mk)
    stale = set((read_marker(job) or {}).get("outputs", []))
    stale |= set((read_json_object(journal) or {}).get("outputs", []))  # an interrupted commit
    write_json(journal, {"outputs": sorted(stale | set(outputs))})
    mk.unlink(missing_ok=True)  # the scan is "in progress" until the new marker exists
    for rel in outputs:
        src = stage_dir / rel
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    for rel in stale - set(outputs):
        (out / rel).unlink(missing_ok=True)
    write_failure_record(out, {"stem": job.stem, "subject": job.subject,
                               "session": job.session, "pet": job.pet, "status": "done",
                               "failures": list(failures or []),
                               "warnings": list(data_warnings or []),
                               "log": f"logs/{job.stem}.log"})
    write_json(mk, {
        "stem": job.stem, "subject": job.subject, "session": job.session,
        "config_hash": job.config_hash, "sv2a_version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(seconds, 3),
        "outputs": outputs, "notes": notes, "failures": list(failures or []),
        "inputs": job.inputs, "job": asdict(job),
    })
    journal.unlink(missing_ok=True)
