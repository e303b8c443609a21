"""Check a BIDS PET dataset: timing, sidecars, units, blood, segmentations.

``sv2a validate BIDS_DIR [run options]`` prints every problem (file, what, how to fix) and
exits 1 if any is an error. It judges the dataset as ``sv2a run ... participant`` with the
same options would (same check functions): an error here is what ``run`` refuses or fails
on, a warning what ``run`` handles with a note.

Checks, and the function that decides each (shared with ``sv2a run``):

* the request against every scan -- segmentation and label table present, reference region
  and ``--idif-region`` in the label table, SUVR/SUV window inside the scan, blood for
  plasma-input models: :func:`sv2a.pipeline.preflight.check_scans` (``run`` stops before any
  scan, or skips the scans with ``--skip-invalid``); each error named by the class ``run``
  records for it (``MetadataError`` for an unreadable label table, ``ConfigError`` for
  settings that do not fit the scan);
* the PET image and sidecar (frame timing, units, dose, plausibility): :func:`sv2a.pet.
  load_pet` (``run``: load stage), and with voxel data the readable voxels; a scan with fewer
  frames than any dynamic model needs (:data:`sv2a.models.base.MIN_DYNAMIC_FRAMES`) is an
  error (``FitError``) for each requested dynamic model (``run``: the model fails);
* the segmentation on the PET grid: :func:`sv2a.atlas.load_atlas` with
  :func:`sv2a.atlas.place_on_grid` (``run``: atlas stage; refused on another grid unless
  ``--atlas-resample``), then the reference region has voxels (and survives
  ``--reference-erode``), and with voxel data the regional TACs
  (:func:`sv2a.tacs.extract_tacs`, ``run``: TAC stage);
* blood recordings when a requested plasma-input model uses them: :func:`sv2a.blood_io.
  load_blood` (``run``: blood stage) and coverage of the scan (``run``: the model fails);
  recordings no requested model uses give warnings only;
* the dataset: ``sub-*``/``ses-*`` folders and PET files :func:`sv2a.bids.discover` does not
  use (warnings: ``run`` skips them with a warning), ``participants.tsv``, and
  ``dataset_description.json`` (a warning: ``run`` does not need it, the BIDS validator
  does).

An unexpected exception in any check is reported as an error of that file (type, message
and a request to report it as a bug) and checking goes on with the next file.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bids import discover, read_participants
from .errors import Sv2aError
from .progress import Progress

if TYPE_CHECKING:
    from .bids import Scan
    from .pipeline.config import PipelineConfig

__all__ = ["Problem", "validate_dataset", "add_arguments", "main"]

EXAMPLES = """examples:
  sv2a validate /data/ketamine_bids
  sv2a validate /data/ketamine_bids --quick     # headers and sidecars only
  # judge the dataset for the run you intend (same options as sv2a run)
  sv2a validate /data/rat --model srtm2 suvr --reference brainstem --window 30 60
  sv2a validate /data/bids --config sv2a.yaml --atlas mni_dseg.nii.gz --atlas-resample
"""

#: The line added to an unexpected (non-sv2a) exception's message.
BUG_NOTE = ("this is a bug in sv2a, not a problem of your data as such: please report it to "
            "the sv2a developers with this message")


@dataclass(frozen=True)
class Problem:
    """One finding of the validator.

    Parameters
    ----------
    severity : str
        ``"error"`` (the dataset cannot be processed as is) or ``"warning"``.
    file : str
        The file or folder concerned.
    message : str
        What is wrong and how to fix it; errors start with the name of the error class
        ``sv2a run`` raises for it (e.g. ``ShapeMismatchError: ...``).
    """

    severity: str  # "error" or "warning"
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.file}: {self.message}"


def _error_text(exc: BaseException) -> str:
    """``ErrorClass: message`` of an sv2a error; an unexpected exception also gets the
    request to report it as a bug."""
    text = f"{type(exc).__name__}: {exc}"
    return text if isinstance(exc, Sv2aError) else f"unexpected {text} ({BUG_NOTE})"


def _catch(problems: list[Problem], file: str, func: Callable[..., Any], *args: Any,
           severity: str = "error", **kwargs: Any) -> Any:
    """Run ``func``; record any exception as a problem of ``file`` (``severity``) and the
    warnings it gives as warnings; ``None`` when it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = func(*args, **kwargs)
        except Exception as exc:  # every problem is reported, none stops the check
            problems.append(Problem(severity, file, _error_text(exc)))
            result = None
    for w in caught:
        problems.append(Problem("warning", file, str(w.message)))
    return result


def _default_config() -> PipelineConfig:
    """The settings of ``sv2a run`` without options."""
    from .pipeline.config import PipelineConfig

    return PipelineConfig().validate()


def validate_dataset(bids_dir: str | os.PathLike[str], *, read_data: bool = True,
                     progress: bool = False,
                     config: PipelineConfig | None = None) -> list[Problem]:
    """Validate a BIDS PET dataset for a participant-level run and return every problem.

    The checks are those of ``sv2a run`` with the same settings (see the module
    documentation for the list and where each lives): nothing ``run`` would refuse passes,
    nothing it handles is an error. One scan's problem never stops the check of the others.

    Parameters
    ----------
    bids_dir : str or path-like
        Dataset root.
    read_data : bool
        Also read every image's voxels (slower); otherwise headers and sidecars only.
    progress : bool
        Report progress on stderr: the number of scans first, then a bar on a terminal or
        one line per checked scan (with the number that had errors and the elapsed time) in
        a log or batch job (:mod:`sv2a.progress`).
    config : PipelineConfig, optional
        The validated settings of the intended run (models, reference, atlas, window,
        selection, ...); default: those of ``sv2a run`` without options.

    Returns
    -------
    list of Problem
        Every error and warning, in the order found (empty: nothing to report).
    """
    cfg = config if config is not None else _default_config()
    root = Path(bids_dir)
    problems: list[Problem] = []
    _check_description(problems, root)
    parts = _catch(problems, str(root / "participants.tsv"), read_participants, root)
    disc = _catch(problems, str(root), discover, root, participant_label=cfg.participant_label,
                  session_label=cfg.session_label)
    for path, reason in (disc.skipped if disc is not None else []):
        problems.append(Problem("warning", str(path), f"{Path(path).name}: {reason}; sv2a run "
                                "skips it (with a warning)"))
    scans = disc.scans if disc is not None else None
    if not scans:
        if scans is not None:
            problems.append(Problem("error", str(root), "BIDSError: no PET images (sub-*/"
                                    "[ses-*/]pet/*_pet.nii[.gz]) match the selection"))
        return problems
    if parts is not None:
        _check_participants(problems, root, parts, scans)
    request = _request_problems(problems, root, scans, cfg)
    with Progress(len(scans), label="sv2a validate", unit="scans", verb="checked",
                  failed_word="with errors", enabled=progress) as bar:
        for scan in scans:
            n_err = sum(p.severity == "error" for p in problems)
            checks = {p.check for p in request if p.pet == str(scan.pet)}
            _catch(problems, str(scan.pet), _check_scan, problems, scan, parts, read_data,
                   cfg, checks)
            bar.update(failed=bool(checks) or sum(p.severity == "error" for p in problems)
                       > n_err, note=scan.pet.name)
    return problems


def _check_description(problems: list[Problem], root: Path) -> None:
    """``dataset_description.json``: a warning when missing (``run`` does not need it)."""
    if root.is_dir() and not (root / "dataset_description.json").exists():
        problems.append(Problem("warning", str(root), "dataset_description.json is missing; "
                                "sv2a run processes the dataset without it, but it is not "
                                "valid BIDS: add one (Name, BIDSVersion)"))


def _check_participants(problems: list[Problem], root: Path, parts: Any,
                        scans: list[Scan]) -> None:
    """``participants.tsv``: listed subjects and their ``arm`` (warnings)."""
    pfile = str(root / "participants.tsv")
    if parts.empty:
        problems.append(Problem("warning", pfile, "missing or empty; arms and body weights "
                                "cannot be read"))
        return
    subs = sorted({s.subject for s in scans})
    absent = [s for s in subs if s not in parts.index]
    if absent:
        problems.append(Problem("warning", pfile, f"subjects {absent} are not listed"))
    if "arm" in parts.columns:
        no_arm = [s for s in subs if s in parts.index and
                  (not isinstance(parts.loc[s, "arm"], str) or not parts.loc[s, "arm"])]
        if no_arm:
            problems.append(Problem("warning", pfile, f"subjects {no_arm} have no 'arm' value;"
                                    " group comparisons will exclude them"))


def _request_problems(problems: list[Problem], root: Path, scans: list[Scan],
                      cfg: PipelineConfig) -> list[Any]:
    """The up-front check of ``sv2a run`` (:func:`sv2a.pipeline.preflight.check_scans`),
    each problem recorded as an error of its scan named by the class ``run`` gives it;
    returns them."""
    from .pipeline.preflight import check_scans

    request = _catch(problems, str(root), check_scans, scans, cfg) or []
    skip = (" (sv2a run stops before any scan; with --skip-invalid it skips this scan)")
    for p in request:
        problems.append(Problem("error", p.pet, f"{p.error} ({p.check}): {p.message}{skip}"))
    return list(request)


def _plasma_used(cfg: PipelineConfig) -> bool:
    """Whether ``run`` reads the blood recordings: a requested plasma-input model (regional
    or map) with measured blood as input."""
    from .models import registry

    names = [*cfg.models, *(cfg.resolved_voxelwise_models() if cfg.voxelwise else [])]
    return cfg.input == "blood" and any(registry.get(n).kind == "plasma" for n in names)


def _check_scan(problems: list[Problem], scan: Scan, parts: Any, read_data: bool,
                cfg: PipelineConfig, request_checks: set[str]) -> None:
    """Check one scan as ``run`` would load it: image and sidecar, blood recordings,
    segmentation on the PET grid and reference region."""
    from .pet import load_pet

    pfile = str(scan.pet)
    p_meta = parts.loc[scan.subject].to_dict() if (
        parts is not None and scan.subject in parts.index) else None
    pet = _catch(problems, pfile, load_pet, scan.pet, participants=p_meta)
    if pet is None:
        return
    if "injected_mbq" not in pet.meta:
        problems.append(Problem("warning", pfile, "InjectedRadioactivity missing in the "
                                "sidecar; SUV cannot be computed"))
    _check_frames(problems, pfile, pet, cfg)
    readable = _check_data(problems, pfile, pet) if read_data else False
    inp = _check_blood(problems, scan, pet, cfg)
    atlas = None if "atlas" in request_checks else _check_atlas(problems, scan, pet, cfg,
                                                                  request_checks)
    if readable and atlas is not None:  # run's TAC stage: empty regions, unusable frames
        from .tacs import extract_tacs

        tacs = _catch(problems, pfile, extract_tacs, pet, atlas)
        if tacs is not None and inp is not None:  # run's plasma models: tissue vs plasma
            from .blood import check_tissue_plasma

            _catch(problems, pfile, check_tissue_plasma, inp, pet.frames.start,
                   pet.frames.end, tacs.values, what=pfile)


def _check_frames(problems: list[Problem], pfile: str, pet: Any, cfg: PipelineConfig) -> None:
    """What the requested models need of the scan: dose and weight for SUV (``run`` fails
    the SUV fit with a ``MetadataError``), enough frames for dynamic models (``run`` fails
    each with a ``FitError``, :func:`sv2a.models.base.check_enough_frames`)."""
    from .models import registry
    from .models.base import MIN_DYNAMIC_FRAMES

    names = [*cfg.models, *(cfg.resolved_voxelwise_models() if cfg.voxelwise else [])]
    missing = [f for f, k in (("InjectedRadioactivity", "injected_mbq"),
                              ("BodyWeight", "body_weight_kg")) if k not in pet.meta]
    if "suv" in names and missing:  # run's SUV fit and map fail (MetadataError)
        problems.append(Problem("error", pfile, f"MetadataError: suv needs {' and '.join(missing)}"
                                " (PET sidecar; the weight may come from participants.tsv "
                                "'weight'); add it or drop --model suv"))
    n = int(pet.n_frames)
    if n >= MIN_DYNAMIC_FRAMES:
        return
    for name in dict.fromkeys(names):
        if registry.get(name).predicts:
            problems.append(Problem("error", pfile, f"FitError: {name} is a dynamic model and "
                                    f"needs at least {MIN_DYNAMIC_FRAMES} frames; the scan has "
                                    f"{n}: use SUV/SUVR (--model suvr) for a static image"))


def _check_data(problems: list[Problem], pfile: str, pet: Any) -> bool:
    """The voxel data: readable, not all zero; NaNs counted (warning). Returns whether the
    data could be read."""
    data = _catch(problems, pfile, lambda: pet.data)
    if data is None:
        return False
    n_nan = int(np.isnan(data).sum())
    if n_nan:
        problems.append(Problem("warning", pfile, f"{n_nan} NaN voxel values "
                                "(excluded from regional means)"))
    if not np.any(data):
        problems.append(Problem("error", pfile, "DataError: the image is all zero"))
    return True


def _check_blood(problems: list[Problem], scan: Scan, pet: Any, cfg: PipelineConfig) -> Any:
    """The blood recordings, loaded together as ``run`` loads them, and their coverage of
    the scan; warnings only when no requested model uses them. Returns the input function
    when a requested model uses it (else ``None``)."""
    from .blood_io import load_blood

    if not scan.blood:
        return None
    used = _plasma_used(cfg)
    severity = "error" if used else "warning"
    paths = list(scan.blood.values())
    where = str(paths[0]) if len(paths) == 1 else ", ".join(str(p) for p in paths)
    n0 = len(problems)
    inp = _catch(problems, where, load_blood, paths, severity=severity)
    if inp is not None:
        _catch(problems, where, inp.check_covers, float(pet.frames.end[-1]),
               what=f"the PET scan ({scan.pet.name})", severity=severity)
    if not used:
        for i in range(n0, len(problems)):  # run does not read them with these models
            p = problems[i]
            problems[i] = Problem("warning", p.file, f"{p.message} (not used by the requested "
                                  "models)")
    return inp if used else None


def _check_atlas(problems: list[Problem], scan: Scan, pet: Any, cfg: PipelineConfig,
                 request_checks: set[str]) -> Any:
    """The segmentation as ``run`` loads it (:func:`sv2a.atlas.load_atlas` on the PET grid,
    the one geometry policy), then the reference region's voxels; returns the atlas as
    ``run`` extracts TACs from it (reference eroded), or ``None`` after an error."""
    from .atlas import load_atlas

    if cfg.atlas:
        path, labels = Path(cfg.atlas), (Path(cfg.atlas_labels) if cfg.atlas_labels else None)
    elif scan.dseg is not None:
        path, labels = Path(scan.dseg), None
    else:
        return None  # reported by the request check
    atlas = _catch(problems, str(path), load_atlas, path, labels, pet=pet,
                   resample=cfg.atlas_resample)
    if atlas is None or "reference" in request_checks or not _reference_used(cfg):
        return atlas
    from .regions import region_name

    ref = region_name(cfg.reference)
    if ref not in atlas.names:
        problems.append(Problem("error", str(path), f"RegionError: reference region "
                                f"'{cfg.reference}' has no voxel in {path.name} on the PET "
                                f"grid; available: {', '.join(atlas.names)}. Choose one with "
                                "--reference"))
        return None
    if cfg.reference_erode_mm > 0:
        return _catch(problems, str(path), atlas.erode, ref, cfg.reference_erode_mm)
    return atlas


def _reference_used(cfg: PipelineConfig) -> bool:
    """Whether a requested model (regional or map) needs the reference region."""
    from .models import registry

    names = [*cfg.models, *(cfg.resolved_voxelwise_models() if cfg.voxelwise else [])]
    return any(registry.get(n).kind == "reference" for n in names)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sv2a validate`` arguments to a parser: the dataset, ``--quick``, and the
    options of ``sv2a run`` that change what is acceptable (the same definitions).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.

    Returns
    -------
    None
    """
    from .pipeline.cli import add_config_argument, add_request_arguments

    parser.add_argument("bids_dir", help="BIDS dataset root")
    parser.add_argument("--quick", action="store_true",
                        help="check headers and sidecars only (do not read voxel data)")
    add_config_argument(parser)
    add_request_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``sv2a validate``: print every problem and a summary line.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``bids_dir``, ``quick``, and the run options given).

    Returns
    -------
    int
        Exit status: 1 if any problem is an error, else 0.

    Raises
    ------
    ConfigError
        A bad run option (as ``sv2a run`` refuses it).
    """
    from .pipeline.cli import config_from_args

    cfg = config_from_args(args)
    problems = validate_dataset(args.bids_dir, read_data=not args.quick, progress=True,
                                config=cfg)
    for p in problems:
        print(p)
    n_err = sum(p.severity == "error" for p in problems)
    n_warn = len(problems) - n_err
    print(f"{n_err} error(s), {n_warn} warning(s) in {args.bids_dir}")
    return 1 if n_err else 0
