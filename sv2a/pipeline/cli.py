"""Process a BIDS PET dataset: participant level (TACs, fits, maps, reports) or group level.

``sv2a run BIDS_DIR OUT_DIR participant|group [options]`` — the BIDS-App command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import PipelineConfig, resolve_config

__all__ = ["add_arguments", "add_request_arguments", "add_config_argument",
           "config_from_args", "main", "EXAMPLES"]

EXAMPLES = """examples:
  # every subject/session: 1TCM where blood exists, SRTM2 and SUVR with the centrum semiovale
  sv2a run /data/bids /data/bids/derivatives/sv2a participant --model 1tcm srtm2 suvr

  # two subjects, baseline only, voxelwise SRTM2 maps, 4 local processes
  sv2a run /data/bids /data/out participant --participant-label 01 02 --session-label bl \\
      --model srtm2 --voxelwise --nprocs 4

  # on a running Dask cluster (e.g. dask-jobqueue on SLURM); settings from a YAML file
  sv2a run /data/bids /data/out participant --config sv2a.yaml --dask-scheduler tcp://node1:8786

  # group level: % change in SRTM2 BPND from baseline, per arm
  sv2a run /data/bids /data/out group --model srtm2 --outcome BPND --baseline-session bl

  # factorial rodent study: terms and a custom contrast, scores, voxelwise maps with TFCE
  sv2a run /data/bids /data/out group --formula "treatment * context" --scores \\
      --contrast rs="[treatment=repeated,context=stress]-[treatment=vehicle,context=stress]" \\
      --voxelwise-stats --tfce --permutations 5000

  # which models exist, what they estimate and which run voxelwise
  sv2a models

  # a rodent scan of 60 min: SUVR over 30-60 min, brainstem reference
  sv2a run /data/rat /data/rat_out participant --model srtm2 suvr --reference brainstem \
      --window 30 60

config file keys (JSON or YAML) are the long option names with '_' for '-' (model,
reference_erode, voxelwise_model, no_figures, window, ...; the setting names written to
sv2a_config.json, e.g. models, reference_erode_mm, figures, are accepted too), plus
model_options: {srtm2: {k2prime: 0.04}} and voxelwise_options: {srtm2: {fwhm: 4}}; flags
override the file. Every value is type-checked and every model option checked against its
model ('sv2a models' lists them) before any scan runs.
Before processing, the request is checked against every selected scan (atlas and its label
table, reference region, SUVR/SUV window inside the scan, blood for plasma-input models):
problems stop the run with one message listing the scans, unless --skip-invalid.
A model that fails inside a scan is listed in logs/failures.tsv; the scan's other outputs are
kept, and the next run redoes that scan.
Finished subject/sessions are skipped unless their settings or inputs changed (or --force).
"""


def _model_lists() -> tuple[str, str]:
    """The regional and the voxelwise models of the registry, for the help text."""
    try:
        from ..models import registry
    except ImportError:  # pragma: no cover - a broken install still shows the other options
        return "see 'sv2a models'", "see 'sv2a models'"
    return (" ".join(registry.available(scale="region")) or "none registered",
            " ".join(registry.available(scale="voxel")) or "none registered")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``sv2a run`` to ``parser``.

    Settings that a configuration file can hold default to "not given", so that
    :func:`~sv2a.pipeline.config.resolve_config` can tell a flag from a file value.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``run`` sub-command parser.

    Returns
    -------
    None
    """
    S = argparse.SUPPRESS  # noqa: N806 - "not given" so the config file can fill it
    parser.add_argument("bids_dir", help="BIDS dataset root")
    parser.add_argument("out_dir", help="output (derivatives) folder, e.g. BIDS_DIR/"
                        "derivatives/sv2a")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        help="participant: per subject/session; group: statistics over arms")
    add_request_arguments(parser)
    grp = parser.add_argument_group("group level")
    grp.add_argument("--outcome", default=S, help="parameter to compare (default BPND)")
    grp.add_argument("--baseline-session", default=S, metavar="LABEL",
                     help="baseline session label (default: auto, e.g. 'baseline' or 'bl')")
    grp.add_argument("--formula", default=S, metavar="FORMULA",
                     help="factorial model over participants.tsv columns, e.g. "
                     "\"treatment * context\": every main effect and interaction per region")
    grp.add_argument("--contrast", nargs="+", dest="contrasts", metavar="NAME=EXPR",
                     default=S, help="custom contrasts of --formula cells, e.g. "
                     "rep_stress=\"[treatment=repeated, context=stress] - [treatment=vehicle, "
                     "context=stress]\"")
    grp.add_argument("--covariates", nargs="+", metavar="COLUMN", default=S,
                     help="participants.tsv columns added to --formula (e.g. age sex)")
    grp.add_argument("--scores", action="store_true", default=S,
                     help="correlate phenotype/*.tsv scores with the outcome's change")
    grp.add_argument("--score", nargs="+", metavar="SCORE", default=S,
                     help="scores to correlate (default: every numeric phenotype/ score; "
                     "implies --scores)")
    grp.add_argument("--responder", default=S, metavar="RULE",
                     help="predict response from baseline values: a binary score column or "
                     "a rule, e.g. \"madrs <= -50%%\"")
    grp.add_argument("--response-session", dest="response_session", default=S,
                     metavar="LABEL", help="session at which --responder is judged when the "
                     "score was measured at several follow-ups (e.g. 24h)")
    grp.add_argument("--voxelwise-stats", action="store_true", default=S,
                     help="voxelwise GLM of --formula (default arm) on the parametric maps "
                     "with permutation FWE (needs participant-level --voxelwise)")
    grp.add_argument("--permutations", type=int, default=S, metavar="N",
                     help="voxelwise permutations (default 1000)")
    grp.add_argument("--tfce", action="store_true", default=S,
                     help="voxelwise FWE by threshold-free cluster enhancement")
    grp.add_argument("--cluster-p", dest="cluster_p", type=float, default=S,
                     metavar="P", help="voxelwise cluster-forming threshold, one-sided "
                     "uncorrected p (default 0.001)")
    ex = parser.add_argument_group("execution")
    add_config_argument(ex)
    ex.add_argument("--nprocs", type=int, default=S, metavar="N",
                    help="subject/sessions processed in parallel local processes (default 1)")
    ex.add_argument("--dask-scheduler", default=S, metavar="ADDRESS",
                    help="submit subject/sessions to a running Dask scheduler "
                    "(tcp://host:8786)")
    ex.add_argument("--max-memory-gb", dest="max_memory_gb", type=float, default=S,
                    metavar="GB", help="memory per scan for voxelwise maps; larger images are "
                    "fitted out of core through dask (default 8)")
    ex.add_argument("--force", action="store_true", default=S,
                    help="redo subject/sessions even if they are up to date")
    ex.add_argument("--skip-invalid", action="store_true", default=S,
                    help="skip the scans the request does not fit (reference region missing, "
                    "window past the scan end, ...) and list them in logs/failures.tsv, "
                    "instead of stopping before any scan runs")
    ex.add_argument("-q", "--quiet", action="store_true", help="no progress bar or info logs")
    ex.add_argument("-v", "--verbose", action="count", default=0,
                    help="more logging (-v info per scan, -vv debug)")



def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that decide what a participant-level run accepts (selection, models,
    atlas, corrections and input): shared by ``sv2a run`` and ``sv2a validate``.

    Each defaults to "not given" so that :func:`config_from_args` can tell a flag from a
    configuration-file value.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command parser.

    Returns
    -------
    None
    """
    regional, voxel = _model_lists()
    S = argparse.SUPPRESS  # noqa: N806 - "not given" so the config file can fill it
    sel = parser.add_argument_group("selection")
    sel.add_argument("--participant-label", nargs="+", metavar="LABEL", default=S,
                     help="subjects to process (with or without 'sub-')")
    sel.add_argument("--session-label", nargs="+", metavar="LABEL", default=S,
                     help="sessions to process (with or without 'ses-')")
    mod = parser.add_argument_group("models")
    mod.add_argument("--model", nargs="+", dest="models", metavar="MODEL", default=S,
                     help=f"regional models, any of: {regional} (default: 1tcm srtm2 suvr); "
                     "plasma-input models run only where blood data exist. At group level: "
                     "the model to compare (default srtm2)")
    mod.add_argument("--reference", default=S, metavar="REGION",
                     help="reference region (default centrum_semiovale)")
    mod.add_argument("--reference-erode", dest="reference_erode_mm", type=float, default=S,
                     metavar="MM", help="erode the reference region by MM mm (default 0)")
    mod.add_argument("--exclude-regions", nargs="+", dest="exclude_regions", metavar="REGION",
                     default=S, help="atlas regions left out of model fits (e.g. ventricles)")
    mod.add_argument("--window", nargs=2, type=float, default=S, metavar=("START", "END"),
                     help="SUVR/SUV window in minutes after injection for suvr and suv fits "
                     "and maps (default 60 90; window= in model_options)")
    mod.add_argument("--atlas", default=S, metavar="PATH",
                     help="label image used for every scan instead of anat/*_dseg")
    mod.add_argument("--atlas-labels", default=S, metavar="TSV",
                     help="label table of --atlas (dseg.tsv or FreeSurfer LUT)")
    mod.add_argument("--atlas-resample", action="store_true", default=S,
                     help="resample a segmentation that is not on the PET grid (nearest "
                     "neighbour); by default it is refused. Even then a segmentation whose "
                     "header origin disagrees grossly with the PET's, or whose labelled voxels "
                     "lie mostly outside the PET field of view, is refused")
    mod.add_argument("--atlas-name", default=S, metavar="NAME",
                     help="seg-<NAME> in output file names (default: from the atlas file)")
    mod.add_argument("--voxelwise", action="store_true", default=S,
                     help="also compute parametric maps")
    mod.add_argument("--voxelwise-model", nargs="+", dest="voxelwise_models", metavar="MODEL",
                     default=S, help=f"models for the maps, any of: {voxel} (default: srtm2 "
                     "if requested, else the first requested model that offers maps)")
    mod.add_argument("--no-figures", dest="figures", action="store_false", default=S,
                     help="skip figures and HTML reports")
    cor = parser.add_argument_group("corrections and input")
    cor.add_argument("--realign", action="store_true", default=S,
                     help="realign the frames for head motion (rigid, to the late-frame sum)")
    cor.add_argument("--pvc", choices=["gtm", "rbv"], default=S,
                     help="partial-volume correction: gtm (regional TACs, written and fitted "
                     "as desc-gtm beside the uncorrected ones) or rbv (also the maps)")
    cor.add_argument("--psf-fwhm", dest="psf_fwhm", type=float, default=S, metavar="MM",
                     help="scanner resolution FWHM (mm) for --pvc and --input idif (default: "
                     "from the PET sidecar)")
    cor.add_argument("--input", choices=["blood", "idif"], default=S,
                     help="plasma input: measured blood (default) or image-derived (rodents)")
    cor.add_argument("--idif-region", dest="idif_region", default=S, metavar="REGION",
                     help="atlas region of the blood pool for --input idif (default: found "
                     "automatically)")


def add_config_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--config FILE`` (the settings file of ``sv2a run`` and ``sv2a validate``).

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
        Where to add it.

    Returns
    -------
    None
    """
    parser.add_argument("--config", metavar="FILE", help="settings file (JSON or YAML)")


#: Parsed arguments that are not settings of :class:`~sv2a.pipeline.config.PipelineConfig`.
_NOT_SETTINGS = ("bids_dir", "out_dir", "analysis_level", "config", "quiet", "verbose",
                 "command", "_module", "quick")


def config_from_args(args: argparse.Namespace, level: str = "participant") -> PipelineConfig:
    """The validated configuration of parsed ``sv2a run``/``sv2a validate`` arguments:
    defaults < ``--config`` file < flags.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (flags not given are absent).
    level : str
        ``"participant"`` or ``"group"`` (at group level ``--model`` names the one model
        whose fits are compared).

    Returns
    -------
    PipelineConfig
        The validated configuration.

    Raises
    ------
    ConfigError
        A bad setting.
    """
    given = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS}
    if level == "group" and "models" in given:
        models = given.pop("models")
        if len(models) != 1:
            raise ConfigError("at group level give one --model (the model whose fits are "
                              f"compared), got {models}")
        given["group_model"] = models[0]
    return resolve_config(given, getattr(args, "config", None))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the message (a handler kept from
    an earlier run must not write to a stream that was replaced and closed since)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(quiet: bool, verbose: int) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else
                                           logging.INFO if verbose == 1 else logging.WARNING)
    logger = logging.getLogger("sv2a")
    logger.setLevel(level)
    if not any(getattr(h, "_sv2a_cli", False) for h in logger.handlers):
        new = _StderrHandler()
        new.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        new._sv2a_cli = True  # type: ignore[attr-defined]
        logger.addHandler(new)
    for h in logger.handlers:
        if getattr(h, "_sv2a_cli", False):
            h.setLevel(level)


def main(args: argparse.Namespace) -> int:
    """Run ``sv2a run``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (:func:`add_arguments`).

    Returns
    -------
    int
        Exit status: 0 when everything succeeded, 1 when any scan (or the group level)
        failed.

    Raises
    ------
    ConfigError
        A bad setting (reported by ``sv2a`` as one line, exit status 1).
    """
    _setup_logging(args.quiet, args.verbose)
    cfg = config_from_args(args, args.analysis_level)
    if not Path(args.bids_dir).is_dir():
        raise ConfigError(f"BIDS_DIR {args.bids_dir} is not a directory")
    if args.analysis_level == "participant":
        from .execute import run_participant

        summary = run_participant(args.bids_dir, args.out_dir, cfg, quiet=args.quiet)
        print(summary.line(args.out_dir))
        return 0 if summary.ok else 1
    from .group import run_group

    res = run_group(args.bids_dir, args.out_dir, cfg, quiet=args.quiet)
    print(res.line())
    return 0 if res.ok else 1
