"""Check a participant-level request against every selected scan before any scan runs.

Only cheap reads: the atlas label table (``dseg.tsv`` or ``--atlas-labels``, never the
image) and the PET sidecar's frame times. A scan whose inputs cannot be read here (no
sidecar, malformed frame times) is not judged: its load stage reports the problem.

Checks per scan:

* a segmentation exists (``anat/*_dseg.nii.gz`` or ``--atlas``) with a readable label table;
* the reference region is in the label table when a requested model needs one;
* ``--idif-region`` is in the label table;
* the SUVR/SUV window of every requested ``suvr``/``suv`` fit or map lies inside the scan
  (and holds a frame);
* the ``tstar``/``n_frames`` of every requested graphical fit or map (Logan, MRTM, MA1) leaves
  the frames the regression needs;
* every ``exclude_regions`` name is in the label table of at least one selected scan (a name
  in none is a typo, which would otherwise exclude nothing);
* at least one requested regional model (and map model) can run: plasma-input models need
  blood data unless ``--input idif`` (where only some models need blood the others run and
  the plasma models are skipped with a note, as documented).
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FrameTimingError, ModelError, Sv2aError
from .config import WINDOW_MODELS, PipelineConfig

if TYPE_CHECKING:
    from ..bids import Scan
    from ..frames import FrameSchedule

__all__ = ["Problem", "check_scans", "problems_message"]


@dataclass(frozen=True)
class Problem:
    """One reason why a scan cannot run with the requested settings.

    Attributes
    ----------
    subject, session : str
        BIDS labels without ``sub-``/``ses-`` (session ``None`` when the dataset has none).
    pet : str
        The scan's PET image.
    check : str
        Which check failed (``"atlas"``, ``"reference"``, ``"idif_region"``,
        ``"exclude_regions"``, ``"window"``, ``"tstar"``, ``"blood"``).
    message : str
        What is wrong and how to fix it; the same text for every scan with the same problem.
    error : str
        Name of the :class:`~sv2a.errors.Sv2aError` subclass that processing the scan would
        raise for it (``"MetadataError"`` for an unreadable label table, ``"RegionError"``
        without a segmentation, ``"ConfigError"`` for settings that do not fit the scan), as
        written to ``logs/failures.tsv`` and by ``sv2a validate``.
    """

    subject: str
    session: str | None
    pet: str
    check: str
    message: str
    error: str = "ConfigError"

    @property
    def label(self) -> str:
        """``sub-01/ses-bl`` for messages."""
        return f"sub-{self.subject}" + (f"/ses-{self.session}" if self.session else "")


def _label_names(scan: Scan, cfg: PipelineConfig
                 ) -> tuple[list[str] | None, tuple[str, str] | None]:
    """Region names (snake_case) of the scan's atlas label table, or ``None`` and the
    problem (message, name of the error class the atlas stage would raise)."""
    from ..atlas import read_label_table
    from ..regions import region_name
    from ..sidecar import applicable_files, sidecar_places

    if cfg.atlas:
        image = Path(cfg.atlas)
        table = Path(cfg.atlas_labels) if cfg.atlas_labels else None
    elif scan.dseg is not None:
        image, table = Path(scan.dseg), None
    elif scan.dseg_problem:
        return None, (scan.dseg_problem, "RegionError")
    else:
        return None, ("no segmentation found (expected anat/<scan>_dseg.nii.gz with its "
                      "_dseg.tsv); give one for all scans with --atlas PATH --atlas-labels TSV",
                      "RegionError")
    if table is None:  # the table load_atlas reads: beside the image or inherited (BIDS)
        try:
            tables = applicable_files(image, ".tsv")
        except Sv2aError as exc:  # two tables apply at one level
            return None, (str(exc), type(exc).__name__)
        if not tables:
            return None, (f"the atlas label table {image.name.split('.nii')[0]}.tsv is missing "
                          f"(expected {sidecar_places(image, '.tsv')}); add it (columns index, "
                          "name) or give --atlas-labels TSV", "MetadataError")
        table = tables[-1]
    if not table.exists():
        return None, (f"the atlas label table {table.name} is missing; add it (columns index, "
                      "name) or give --atlas-labels TSV", "MetadataError")
    try:
        names = read_label_table(table)
    except Sv2aError as exc:
        return None, (f"the atlas label table cannot be read: {exc}", type(exc).__name__)
    return [region_name(n) for k, n in names.items() if k != 0], None  # 0: background


def _frames(scan: Scan) -> FrameSchedule | None:
    """The frame schedule from the PET sidecar, or ``None`` when it cannot be read here."""
    from ..frames import FrameSchedule
    from ..sidecar import read_metadata

    try:
        meta, _ = read_metadata(scan.pet)  # inherited sidecars merged, as load_pet does
        radionuclide = meta.get("TracerRadionuclide")
        return FrameSchedule.from_bids(  # with the unit checks that need the half-life
            meta["FrameTimesStart"], meta["FrameDuration"], source=str(scan.pet),
            radionuclide=radionuclide if isinstance(radionuclide, str) else None)
    except (Sv2aError, KeyError, TypeError, ValueError, OSError):
        return None


def _window_problem(frames: FrameSchedule, name: str, opts: dict[str, Any],
                    where: str) -> str | None:
    from ..models import registry
    from ..models.suvr import window_weights

    defaults = registry.get(name).defaults()
    window: Any = opts.get("window", defaults.get("window"))
    selection = opts.get("frame_selection", defaults.get("frame_selection", "overlap"))
    try:
        with warnings.catch_warnings():  # a clipped window is the fit's note, not a problem
            warnings.simplefilter("ignore")
            window_weights(frames, tuple(window), selection=selection, model=name)
    except (ModelError, FrameTimingError) as exc:
        t0, t1 = (float(v) for v in window)
        s0, s1 = float(frames.start[0]), float(frames.end[-1])
        why = ("is outside the scan" if t0 < s0 - 1e-6 or t1 > s1 + 1e-6
               else f"holds no frame ({exc})")
        return (f"{name} window ({t0:g}, {t1:g}) min ({'maps' if where == 'map' else 'fit'}) "
                f"{why} ({s0:g}-{s1:g} min); give a window inside the scan with --window "
                f"START END (e.g. --window {max(s0, s1 - 30):g} {s1:g}) or window= in "
                f"{'voxelwise' if where == 'map' else 'model'}_options")
    return None


def _frame_selection(name: str, opts: dict[str, Any]) -> tuple[Any, Any]:
    """``(tstar, n_frames)`` of a model: its options over its defaults (``None`` when the
    model has no such option)."""
    from ..models import registry

    defaults = registry.get(name).defaults()
    return (opts.get("tstar", defaults.get("tstar")),
            opts.get("n_frames", defaults.get("n_frames")))


def _selects_frames(name: str, opts: dict[str, Any]) -> bool:
    """Whether a model's options select its frames by ``tstar`` or ``n_frames``."""
    return any(v is not None for v in _frame_selection(name, opts))


def _tstar_problem(frames: FrameSchedule, name: str, opts: dict[str, Any],
                   where: str) -> str | None:
    """Why the ``tstar``/``n_frames`` of a graphical model leave too few frames of this scan
    (the model's own frame selection), or ``None``; a scan with fewer frames than the model
    needs is not judged here (its fit fails whatever the setting)."""
    from ..errors import FitError
    from ..models import registry
    from ..models.base import select_frames

    cls = registry.get(name)
    tstar, n_frames = _frame_selection(name, opts)
    min_frames = int(getattr(cls, "min_frames", 3))
    if frames.n < min_frames:
        return None  # too short a scan whatever the setting: the fit says so
    try:
        select_frames(frames.mid, tstar=tstar, n_frames=n_frames, model=name,
                      min_frames=min_frames)
    except (FitError, ModelError) as exc:
        text = str(exc).removeprefix(f"{name}: ").rstrip(". ")
        return (f"{name} ({'maps' if where == 'map' else 'fit'}): {text} in "
                f"{'voxelwise' if where == 'map' else 'model'}_options (the scan is "
                f"{float(frames.start[0]):g}-{float(frames.end[-1]):g} min)")
    return None


def _unknown_excluded(cfg: PipelineConfig, tables: Sequence[list[str] | None]) -> str | None:
    """Why ``exclude_regions`` names a region that no readable label table of the selected
    scans holds (with the closest name), or ``None``. A name found in some scans only is
    fine: the exclusion does nothing where the region is absent."""
    import difflib

    from ..regions import region_name

    known = {n for names in tables if names for n in names}
    if not known:
        return None  # no table could be read: the atlas problems say why
    unknown = [r for r in cfg.exclude_regions if region_name(r) not in known]
    if not unknown:
        return None
    hints = []
    for r in unknown:
        close = difflib.get_close_matches(region_name(r), sorted(known), n=1, cutoff=0.6)
        hints.append(f"'{r}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return (f"exclude_regions: {', '.join(hints)} is in no selected scan's atlas, so it would "
            f"exclude nothing (regions: {', '.join(sorted(known))}); correct the name with "
            "--exclude-regions")


def check_scans(scans: Sequence[Scan], cfg: PipelineConfig) -> list[Problem]:
    """Check a validated configuration against every scan without loading any image.

    Parameters
    ----------
    scans : sequence of sv2a.bids.Scan
        The selected scans (:func:`sv2a.bids.find_scans`).
    cfg : PipelineConfig
        The validated configuration.

    Returns
    -------
    list of Problem
        Every problem found, in scan order (empty when every scan can run).

    Examples
    --------
    >>> from sv2a.bids import Scan
    >>> cfg = PipelineConfig(models=["srtm2"]).validate()
    >>> [p.check for p in check_scans([Scan("01", None, Path("sub-01_pet.nii.gz"))], cfg)]
    ['atlas']
    """
    from ..models import registry
    from ..regions import region_name

    regional = [registry.get(m) for m in cfg.models]
    maps = [registry.get(m) for m in cfg.resolved_voxelwise_models()] if cfg.voxelwise else []
    needs_ref = any(m.kind == "reference" for m in [*regional, *maps])
    windows = [("model", m.name, dict(cfg.model_options.get(m.name, {})))
               for m in regional if m.name in WINDOW_MODELS]
    windows += [("map", m.name, dict(cfg.voxelwise_options.get(m.name, {})))
                for m in maps if m.name in WINDOW_MODELS]
    graphical = [g for g in [
        *(("model", m.name, dict(cfg.model_options.get(m.name, {}))) for m in regional),
        *(("map", m.name, dict(cfg.voxelwise_options.get(m.name, {}))) for m in maps)]
        if _selects_frames(*g[1:])]
    tables = [_label_names(scan, cfg) for scan in scans]
    excluded = _unknown_excluded(cfg, [names for names, _ in tables])
    out: list[Problem] = []
    for scan, (names, problem) in zip(scans, tables, strict=True):
        def add(check: str, message: str, error: str = "ConfigError", scan: Scan = scan
                ) -> None:
            out.append(Problem(scan.subject, scan.session, str(scan.pet), check, message,
                               error))

        if problem is not None:
            add("atlas", *problem)
        elif names is not None:
            if needs_ref and region_name(cfg.reference) not in names:
                add("reference", f"reference region '{cfg.reference}' is not in the atlas "
                    f"(regions: {', '.join(names)}); choose one with --reference")
            if cfg.idif_region and region_name(cfg.idif_region) not in names:
                add("idif_region", f"--idif-region '{cfg.idif_region}' is not in the atlas "
                    f"(regions: {', '.join(names)})")
            if excluded:
                add("exclude_regions", excluded)
        frames = _frames(scan) if windows or graphical else None
        for where, name, opts in windows if frames is not None else []:
            assert frames is not None
            msg = _window_problem(frames, name, opts, where)
            if msg:
                add("window", msg)
        for where, name, opts in graphical if frames is not None else []:
            assert frames is not None
            msg = _tstar_problem(frames, name, opts, where)
            if msg:
                add("tstar", msg)
        if cfg.input == "blood" and not scan.blood:
            for what, models, flag in (("regional model", regional, "--model"),
                                       ("map model", maps, "--voxelwise-model")):
                if models and all(m.kind == "plasma" for m in models):
                    add("blood", f"every requested {what} ({', '.join(m.name for m in models)}) "
                        "needs arterial blood and the scan has none (pet/<scan>_recording-"
                        f"manual_blood.tsv or -autosampler); add a reference-tissue model "
                        f"({flag} srtm2) or derive the input from the image (--input idif)")
    return out


def problems_message(problems: Sequence[Problem], n_scans: int) -> str:
    """One message listing the scans of each problem (the text of the preflight error).

    Parameters
    ----------
    problems : sequence of Problem
        :func:`check_scans` output (not empty).
    n_scans : int
        Number of selected scans.

    Returns
    -------
    str
        A header line, then per distinct problem its text and the scans it affects, then
        how to go on.

    Examples
    --------
    >>> p = Problem("01", None, "sub-01_pet.nii.gz", "reference", "reference region 'x' ...")
    >>> print(problems_message([p], 2))  # doctest: +NORMALIZE_WHITESPACE
    1 of 2 scan(s) cannot run with these settings; nothing was processed:
    - reference region 'x' ... [1 scan: sub-01]
    Fix the settings or the data, select the valid scans (--participant-label,
    --session-label), or add --skip-invalid to process the others and list these in
    logs/failures.tsv.
    """
    groups: dict[str, list[str]] = {}
    for p in problems:
        groups.setdefault(p.message, [])
        if p.label not in groups[p.message]:
            groups[p.message].append(p.label)
    n_bad = len({(p.subject, p.session, p.pet) for p in problems})
    lines = [f"{n_bad} of {n_scans} scan(s) cannot run with these settings; nothing was "
             "processed:"]
    for msg, labels in groups.items():
        which = (f"all {len(labels)} scans" if len(labels) == n_scans > 1 else
                 f"{len(labels)} scan{'s' if len(labels) > 1 else ''}: {', '.join(labels)}")
        lines.append(textwrap.fill(f"- {msg} [{which}]", width=100, subsequent_indent="  ",
                                   break_on_hyphens=False))
    lines.append("Fix the settings or the data, select the valid scans (--participant-label, "
                 "--session-label), or add --skip-invalid to process the others and list "
                 "these in logs/failures.tsv.")
    return "\n".join(lines)
