"""Participant level: one subject/session from raw BIDS to derivatives.

:func:`process_scan` is the unit of work the executor sends to a process or a Dask worker. It
takes and returns plain dicts (picklable), never raises, and writes everything into a private
staging folder that is moved into place only when the whole scan succeeded; the done-marker is
written last. An interrupted or failed scan therefore leaves either its previous complete
outputs or nothing.

Steps: load (PET + sidecar) -> atlas (``anat/*_dseg`` or ``--atlas``; resampled to the PET
grid if needed; optional erosion of the reference region) -> TACs -> regional fits of the
requested models (plasma-input models only where blood exists) -> optional voxelwise maps ->
figures -> commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import traceback
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import DataError, RegionError, ShapeMismatchError, Sv2aError
from . import derivatives as drv
from .config import PipelineConfig, input_fingerprint

__all__ = ["ScanJob", "process_scan", "marker_path", "is_done", "read_marker", "job_from_scan"]

log = logging.getLogger("sv2a.pipeline")

WORK_DIR = ".sv2a-work"


@dataclass
class ScanJob:
    """Everything a worker needs for one scan (plain types only, so it pickles)."""

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
    progress: bool = False  # a progress bar over voxel chunks (serial runs on a terminal)

    @property
    def stem(self) -> str:
        return drv.scan_stem(self.pet)

    @property
    def label(self) -> str:
        return f"sub-{self.subject}" + (f"/ses-{self.session}" if self.session else "")


def _out_of_core_chunks(pet, cfg: PipelineConfig) -> tuple[int, int, int] | None:
    """Blocks for voxelwise maps too large for ``max_memory_gb`` (a map needs about 3x the
    float32 image): z-slabs such that every thread's block (~3x its bytes) fits, <= 128 MB.
    ``None`` when the image fits in memory."""
    if 3.0 * pet.nbytes / 1e9 <= cfg.max_memory_gb:
        return None
    return pet.slab_chunks(min(128e6, cfg.max_memory_gb * 1e9 / (3.0 * (os.cpu_count() or 1))))


def _dask_threads(job: ScanJob, name: str):
    """Context that runs one map's dask blocks on threads in this process (also on a Dask
    worker, where the cluster runs whole scans)."""
    try:
        import dask.config
    except ImportError:
        raise DataError(
            f"{job.label}: voxelwise {name} runs out of core (the image needs more than "
            "max_memory_gb, or chunks were given) and that needs dask: pip install "
            "'sv2a[distributed]', or raise --max-memory-gb") from None
    return dask.config.set(scheduler="threads")


def job_from_scan(scan, cfg: PipelineConfig, bids_dir, out_dir, participant: dict | None = None
                  ) -> ScanJob:
    """Build the :class:`ScanJob` of a :class:`sv2a.bids.Scan`."""
    inputs = [scan.pet, *scan.blood.values(), scan.dseg]
    if cfg.atlas:
        inputs += [cfg.atlas, cfg.atlas_labels]
    h = cfg.scan_hash(input_fingerprint(inputs))
    part = {}
    for k, v in (participant or {}).items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and np.isnan(v):
            continue
        part[str(k)] = v
    return ScanJob(scan.subject, scan.session, str(scan.pet),
                   {k: str(v) for k, v in scan.blood.items()},
                   str(scan.dseg) if scan.dseg else None, str(bids_dir), str(out_dir),
                   cfg.to_dict(), h, part, drv.command_line())


# --------------------------------------------------------------------------- markers
def marker_path(job: ScanJob) -> Path:
    """``OUT/sub-01/ses-bl/pet/.sub-01_ses-bl_sv2a-done.json`` (hidden from BIDS tools)."""
    return drv.scan_dir(job.out_dir, job.subject, job.session) / f".{job.stem}_sv2a-done.json"


def read_marker(job: ScanJob) -> dict | None:
    p = marker_path(job)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def is_done(job: ScanJob) -> bool:
    """True when the scan finished with the same settings and inputs and its outputs exist."""
    m = read_marker(job)
    if not m or m.get("config_hash") != job.config_hash:
        return False
    out = Path(job.out_dir)
    return all((out / rel).exists() for rel in m.get("outputs", []))


# --------------------------------------------------------------------------- the work
class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                            "%Y-%m-%d %H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class _Stage:
    name = "start"


def process_scan(job: ScanJob | dict) -> dict[str, Any]:
    """Run the participant pipeline on one scan; return a status dict (never raises).

    Returns
    -------
    dict
        ``stem``, ``subject``, ``session``, ``status`` (``"done"``/``"failed"``), ``stage``
        (where it failed), ``error_type``, ``message``, ``seconds``, ``outputs`` (paths
        relative to OUT), ``notes`` (e.g. models skipped for lack of blood), ``log``.
    """
    if isinstance(job, dict):
        job = ScanJob(**job)
    t0 = time.perf_counter()
    out = Path(job.out_dir)
    stage_dir = out / WORK_DIR / f"{job.stem}-{uuid.uuid4().hex[:8]}"
    rec = _Recorder()
    slog = logging.getLogger(f"sv2a.pipeline.scan.{job.stem}")
    slog.setLevel(logging.DEBUG)
    slog.propagate = False
    slog.addHandler(rec)
    stage = _Stage()
    result: dict[str, Any] = {"stem": job.stem, "subject": job.subject, "session": job.session,
                              "pet": job.pet, "status": "failed", "stage": "", "error_type": "",
                              "message": "", "outputs": [], "notes": []}
    log_rel = Path("logs") / f"{job.stem}.log"
    result["log"] = str(log_rel)
    slog.info("sv2a %s: %s (%s)", __version__, job.label, job.pet)
    slog.info("settings hash %s", job.config_hash)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outputs, notes = _run(job, stage_dir, slog, stage)
            finally:
                seen = set()
                for w in caught:
                    msg = f"{w.category.__name__}: {w.message}"
                    if msg not in seen:
                        seen.add(msg)
                        slog.warning(msg)
        stage.name = "commit"
        _commit(job, stage_dir, outputs, notes, time.perf_counter() - t0)
        result.update(status="done", outputs=outputs, notes=notes)
        slog.info("done in %.1f s (%d files)", time.perf_counter() - t0, len(outputs))
    except BaseException as exc:  # noqa: BLE001 - a worker must report, not die
        if isinstance(exc, KeyboardInterrupt | SystemExit) and not isinstance(exc, Exception):
            shutil.rmtree(stage_dir, ignore_errors=True)
            raise
        known = isinstance(exc, Sv2aError)
        result.update(stage=stage.name, error_type=type(exc).__name__,
                      message=" ".join(str(exc).split()) or type(exc).__name__)
        slog.error("FAILED at stage '%s': %s: %s", stage.name, type(exc).__name__, exc)
        if not known:
            slog.error("unexpected error (please report):\n%s", traceback.format_exc())
        else:
            slog.debug("%s", traceback.format_exc())
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
        result["seconds"] = round(time.perf_counter() - t0, 3)
        slog.removeHandler(rec)
        try:
            from ..io import atomic_path

            with atomic_path(out / log_rel) as tmp:
                tmp.write_text("\n".join(rec.lines) + "\n", encoding="utf-8")
        except OSError:  # pragma: no cover - the output folder vanished
            pass
    return result


def _load_atlas(job: ScanJob, cfg: PipelineConfig, pet, slog):
    from ..atlas import load_atlas

    if cfg.atlas:
        path, labels = cfg.atlas, cfg.atlas_labels
    elif job.dseg:
        path, labels = job.dseg, None
    else:
        raise RegionError(
            f"{job.label}: no segmentation found (expected anat/{job.stem}*_dseg.nii.gz with a "
            "_dseg.tsv beside it); give one for all scans with --atlas PATH --atlas-labels TSV"
        )
    atlas = load_atlas(path, labels=labels)
    try:
        atlas.check_grid(pet.shape, pet.affine)
    except ShapeMismatchError as exc:
        slog.warning("atlas not on the PET grid (%s); resampled with nearest neighbour", exc)
        atlas = atlas.resample_to(pet.shape, pet.affine)
    return atlas, path


def _run(job: ScanJob, stage_dir: Path, slog, stage: _Stage) -> tuple[list[str], list[str]]:
    from .. import models as _models
    from ..io import load_blood, load_pet, sidecar_path, write_json
    from ..tacs import extract_tacs

    cfg = PipelineConfig(**job.config)
    notes: list[str] = []
    written: list[str] = []
    out_rel = drv.scan_dir(".", job.subject, job.session)
    fig_rel = drv.figures_dir(".", job.subject)

    def dest(rel: Path) -> Path:
        p = stage_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        written.append(rel.as_posix())
        return p

    stage.name = "load"
    pet = load_pet(job.pet, participants=job.participant or None)
    slog.info("PET %s frames, grid %s, %s", pet.n_frames, pet.shape[:3],
              pet.meta.get("original_units"))
    sources = [drv.bids_uri(job.pet, job.bids_dir)]

    stage.name = "atlas"
    atlas, atlas_path = _load_atlas(job, cfg, pet, slog)
    seg = drv.atlas_label(atlas_path, cfg.atlas_name)
    atlas_uri = drv.bids_uri(atlas_path, job.bids_dir)
    specs = {m: _models.get(m) for m in cfg.models}
    vox_models = cfg.resolved_voxelwise_models() if cfg.voxelwise else []
    needs_ref = any(s.kind == "reference" or s.name == "suvr" for s in specs.values()) or any(
        _models.get(m).kind != "plasma" and m != "suv" for m in vox_models)
    ref = cfg.reference
    if needs_ref:
        from ..tacs import region_name

        ref = region_name(cfg.reference)
        if ref not in atlas.names:
            raise RegionError(
                f"{job.label}: reference region '{cfg.reference}' is not in the atlas "
                f"{atlas_path}; available: {', '.join(atlas.names)}. Choose one with "
                "--reference"
            )
        if cfg.reference_erode_mm > 0:
            n0 = int(atlas.mask(ref).sum())
            atlas = atlas.erode(ref, cfg.reference_erode_mm)
            slog.info("reference '%s' eroded by %.1f mm: %d -> %d voxels", ref,
                      cfg.reference_erode_mm, n0, int(atlas.mask(ref).sum()))

    stage.name = "tacs"
    tacs = extract_tacs(pet, atlas)
    slog.info("TACs: %d regions x %d frames", tacs.sizes["region"], tacs.sizes["frame"])
    tac_file = dest(out_rel / drv.tacs_name(job.stem, seg))
    drv.write_table_with_sidecar(tac_file, drv.tacs_table(tacs), {
        "Description": "Regional time-activity curves: mean of each atlas region per frame",
        "Units": "kBq/mL", "frame_start": {"Units": "s"}, "frame_end": {"Units": "s"},
        "Atlas": atlas_uri, "ReferenceErosionMM": cfg.reference_erode_mm,
        "RegionVolumeML": dict(zip(tacs.region.values.tolist(),
                                   np.round(tacs["volume_ml"].values, 4).tolist(),
                                   strict=True)) if "volume_ml" in tacs.coords else {},
        **drv.provenance(sources=[*sources, atlas_uri], config_hash=job.config_hash),
    })
    written.append((out_rel / drv.tacs_name(job.stem, seg)).with_suffix(".json").as_posix())

    fit_tacs = _screen_regions(tacs, cfg, ref if needs_ref else None, job, notes, slog)

    inp = None
    blood_uris = [drv.bids_uri(p, job.bids_dir) for p in job.blood.values()]
    if any(s.kind == "plasma" for s in specs.values()) or any(
            _models.get(m).kind == "plasma" for m in vox_models):
        if job.blood:
            stage.name = "blood"
            inp = load_blood(list(job.blood.values()))
            slog.info("input function from %s", ", ".join(Path(p).name
                                                         for p in job.blood.values()))

    fits: dict[str, Any] = {}
    for name, spec in specs.items():
        stage.name = f"fit:{name}"
        opts = dict(cfg.model_options.get(name, {}))
        kwargs: dict[str, Any] = {}
        srcs = list(sources) + [atlas_uri]
        if spec.kind == "plasma":
            if inp is None:
                msg = (f"model {name} skipped for {job.label}: it needs arterial blood "
                       f"(pet/{job.stem}_recording-manual_blood.tsv or -autosampler) and none "
                       "was found")
                slog.warning(msg)
                notes.append(msg)
                continue
            kwargs["input"] = inp
            srcs += blood_uris
        elif spec.kind == "reference" or name == "suvr":
            kwargs["reference"] = ref
        if name == "suv":
            for key, meta_key in (("injected_mbq", "injected_mbq"),
                                  ("body_weight_kg", "body_weight_kg")):
                if meta_key in pet.meta:
                    opts.setdefault(key, pet.meta[meta_key])
        t1 = time.perf_counter()
        fit = _models.fit(fit_tacs, model=name, **kwargs, **opts)
        fits[name] = fit
        n_bad = int((~fit["converged"].values).sum()) if "converged" in fit else 0
        slog.info("fit %s: %d regions in %.2f s%s", name, fit.sizes["region"],
                  time.perf_counter() - t1, f" ({n_bad} not converged)" if n_bad else "")
        rel = out_rel / drv.kinpar_name(job.stem, seg, name)
        drv.write_table_with_sidecar(dest(rel), drv.kinpar_table(fit), {
            "Description": f"Regional {name} fit: {spec.description}".strip(),
            "Model": name, "ModelKind": spec.kind,
            "Reference": kwargs.get("reference"), "Atlas": atlas_uri,
            "Settings": drv.settings_of(fit), "Units": drv.units_of(fit),
            **drv.provenance(sources=srcs, config_hash=job.config_hash,
                             settings={"model_options": opts}),
        })
        written.append(rel.with_suffix(".json").as_posix())

    maps: dict[str, Any] = {}
    if cfg.voxelwise:
        stage.name = "voxelwise"
        from ..parametric import parametric_maps

        brain = atlas.labels > 0
        ooc_chunks = _out_of_core_chunks(pet, cfg)
        for name in vox_models:
            stage.name = f"voxelwise:{name}"
            spec = _models.get(name)
            kwargs = {"mask": brain}
            if spec.kind == "plasma":
                if inp is None:
                    msg = f"voxelwise {name} skipped for {job.label}: no arterial blood"
                    slog.warning(msg)
                    notes.append(msg)
                    continue
                kwargs["input"] = inp
            elif name != "suv":
                refmask = atlas.mask(ref)
                kwargs["reference"] = refmask
                kwargs["mask"] = brain & ~refmask
            opts = dict(cfg.voxelwise_options.get(name, {}))
            if name == "srtm2" and "k2prime" not in opts and "srtm2" in fits:
                k2p = _k2prime_from_fit(fits["srtm2"])
                if k2p is not None:
                    opts["k2prime"] = k2p
                    slog.info("voxelwise srtm2: k2prime %.4g /min from the regional fit", k2p)
            run_opts = {**opts, "progress": job.progress}
            ctx = contextlib.nullcontext()
            if ooc_chunks is not None:
                run_opts.setdefault("chunks", ooc_chunks)
            if "chunks" in run_opts:
                ctx = _dask_threads(job, name)
                slog.info("voxelwise %s out of core (~%.1f GB needed in memory, max_memory_gb "
                          "%g): dask blocks of %s voxels", name, 3.0 * pet.nbytes / 1e9,
                          cfg.max_memory_gb, tuple(int(c) for c in run_opts["chunks"][:3]))
            t1 = time.perf_counter()
            with ctx:
                mp = parametric_maps(pet, model=name, **kwargs, **run_opts)
            maps[name] = mp
            slog.info("maps %s in %.2f s", name, time.perf_counter() - t1)
            files = mp.sv2a.to_nifti(stage_dir / out_rel, job.stem)
            prov = drv.provenance(sources=[*sources, atlas_uri,
                                           *(blood_uris if inp is not None else [])],
                                  config_hash=job.config_hash,
                                  settings={"voxelwise_options": opts})
            for f in files:
                rel = out_rel / Path(f).name
                written.append(rel.as_posix())
                sc = sidecar_path(f)
                if sc.exists():
                    meta = json.loads(sc.read_text(encoding="utf-8"))
                    meta.update({"Reference": ref if "reference" in kwargs else None,
                                 "Atlas": atlas_uri, **prov})
                    write_json(sc, meta)
                    written.append((out_rel / sc.name).as_posix())

    if cfg.figures:
        stage.name = "figures"
        from .. import report

        figs = report.scan_figures(
            stage_dir / fig_rel, job.stem, tacs=tacs, fits=fits, input=inp, maps=maps,
            pet=pet, atlas=atlas, reference=ref if needs_ref else None)
        for f in figs:
            written.append((fig_rel / Path(f).name).as_posix())
    # the summary that the subject report reads
    summary_rel = out_rel / f".{job.stem}_sv2a-summary.json"
    write_json(dest(summary_rel), {
        "stem": job.stem, "subject": job.subject, "session": job.session, "atlas": seg,
        "reference": ref if needs_ref else None, "notes": notes,
        "models": {m: str((out_rel / drv.kinpar_name(job.stem, seg, m)).as_posix())
                   for m in fits},
        "maps": {m: sorted(str(v) for v in mp.data_vars) for m, mp in maps.items()},
    })
    return sorted(set(written)), notes


def _screen_regions(tacs, cfg: PipelineConfig, ref: str | None, job: ScanJob, notes: list,
                    slog):
    """TACs for model fitting: without ``exclude_regions`` and without regions whose TAC no
    model can use (non-finite, never positive, or below −2 % of its peak, the tolerance of
    :func:`sv2a.models._common.tac_matrix`). The reference region is never dropped here."""
    from ..models._common import NEGATIVE_TOLERANCE
    from ..tacs import region_name

    names = [str(r) for r in tacs.region.values]
    drop = {region_name(r) for r in cfg.exclude_regions} & set(names)
    if drop:
        slog.info("regions excluded by configuration: %s", sorted(drop))
    vals = np.asarray(tacs.transpose("region", "frame").values, float)
    bad = []
    for i, r in enumerate(names):
        if r in drop or r == ref:
            continue
        v = vals[i]
        peak = np.nanmax(v) if np.isfinite(v).any() else np.nan
        if (not np.isfinite(v).all() or not peak > 0
                or v.min() < -NEGATIVE_TOLERANCE * peak):
            bad.append(r)
    if bad:
        msg = (f"{job.label}: region(s) {bad} left out of the model fits: their TAC is "
               "non-finite, never positive or clearly negative (low-count regions such as "
               "ventricles); the TACs file still lists them")
        slog.warning(msg)
        notes.append(msg)
    keep = [r for r in names if r not in drop and r not in bad]
    return tacs.sel(region=keep) if len(keep) < len(names) else tacs


def _k2prime_from_fit(fit) -> float | None:
    """Median k2prime of a regional SRTM2 fit (used to fix k2' for the voxelwise fit)."""
    if "k2prime" not in fit:
        return None
    v = np.asarray(fit["k2prime"].values, float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.median(v)) if v.size else None


def _commit(job: ScanJob, stage_dir: Path, outputs: list[str], notes: list[str],
            seconds: float) -> None:
    """Move staged files into OUT (each an atomic rename), drop stale outputs of an earlier
    run of this scan, then write the done-marker last."""
    import os

    from ..io import write_json

    out = Path(job.out_dir)
    old = read_marker(job)
    mk = marker_path(job)
    if mk.exists():
        mk.unlink()  # the scan is "in progress" until the new marker exists
    for rel in outputs:
        src = stage_dir / rel
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    if old:
        keep = set(outputs)
        for rel in old.get("outputs", []):
            if rel not in keep:
                (out / rel).unlink(missing_ok=True)
    write_json(mk, {
        "stem": job.stem, "subject": job.subject, "session": job.session,
        "config_hash": job.config_hash, "sv2a_version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(seconds, 3),
        "outputs": outputs, "notes": notes, "job": asdict(job),
    })
