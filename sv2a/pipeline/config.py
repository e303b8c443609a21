"""Pipeline configuration: defaults < ``--config FILE`` (JSON/YAML) < command-line flags.

The resolved configuration is saved in the output directory (``sv2a_config.json``) and a hash
of the settings that change participant-level results is stored in each subject/session's
done-marker, so a re-run redoes exactly the scans whose settings (or input files) changed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from ..errors import ConfigError, ModelError

if TYPE_CHECKING:
    from ..models.base import Scale

__all__ = ["PipelineConfig", "load_config_file", "resolve_config", "input_fingerprint",
           "config_keys", "PARTICIPANT_KEYS", "MAP_OPTIONS", "NON_BRAIN_REGIONS",
           "OPTION_SETTINGS", "WINDOW_MODELS"]

#: Settings that change participant-level outputs (they enter the per-scan hash).
PARTICIPANT_KEYS = ("models", "reference", "reference_erode_mm", "exclude_regions", "atlas",
                    "atlas_labels", "atlas_resample",
                    "atlas_name", "voxelwise", "voxelwise_models", "model_options",
                    "voxelwise_options", "figures", "realign", "pvc", "psf_fwhm", "input",
                    "idif_region")

#: Atlas regions that are never brain targets (the blood pool and heart wall of the rodent
#: phantoms, which image-derived input uses): left out of regional fits and maps.
NON_BRAIN_REGIONS = ("left_ventricle", "myocardium")

#: Keywords of :func:`sv2a.parametric_maps` a configuration may set per map model in
#: ``voxelwise_options`` besides the model's own options (``mask``, ``reference``, ``input``,
#: ``atlas`` and ``progress`` are set by the pipeline for each scan).
MAP_OPTIONS = ("fwhm", "chunk_size", "chunks", "warn", "allow_overlap")

#: Configuration-file keys (the long option names of ``sv2a run`` with ``_`` for ``-``) whose
#: setting has another name in :class:`PipelineConfig` (and in ``sv2a_config.json``); every
#: other option name is its setting's name. ``no_figures: true`` is ``figures: false``.
OPTION_SETTINGS = {"model": "models", "reference_erode": "reference_erode_mm",
                   "voxelwise_model": "voxelwise_models", "no_figures": "figures",
                   "contrast": "contrasts"}

#: Models whose ``window=`` option the ``window`` setting (``--window START END``) sets.
WINDOW_MODELS = ("suvr", "suv")

#: Keys that ``sv2a_config.json`` records for provenance; ignored when it is read back.
_PROVENANCE_KEYS = ("level", "bids_dir", "command")


@dataclass
class PipelineConfig:
    """Every setting of ``sv2a run``.

    Attributes
    ----------
    models : list of str
        Regional models (registry names). Plasma-input models run only where blood exists.
    reference : str
        Reference region for reference-tissue and SUVR models (an atlas region name).
    reference_erode_mm : float
        Erode the reference region by this many mm before use (0 = no erosion), to keep a
        centrum-semiovale ROI away from grey-matter spill-in.
    exclude_regions : list of str
        Atlas regions left out of model fits (their TACs are still written). Regions whose
        TAC is unusable (non-finite, all <= 0, or clearly negative, e.g. ventricles at low
        counts) are left out automatically with a note in the log and the report.
    atlas, atlas_labels : str or None
        Label image (and its ``index name`` table) used for every scan instead of the scan's
        ``anat/*_dseg`` segmentation.
    atlas_name : str or None
        ``seg-<label>`` in output names (default: from the segmentation file name).
    atlas_resample : bool
        Resample a segmentation that is not on the PET grid (nearest neighbour,
        ``--atlas-resample``); by default such a segmentation is refused. Even with it, a
        segmentation whose header origin disagrees grossly with the PET's or whose labelled
        voxels lie mostly outside the PET field of view is refused
        (:func:`sv2a.atlas.place_on_grid`).
    voxelwise : bool
        Also compute parametric maps.
    voxelwise_models : list of str or None
        Models for the maps (default: ``srtm2`` if requested, else the requested
        reference-tissue/static models).
    model_options, voxelwise_options : dict
        Per-model keyword options, e.g. ``{"srtm2": {"k2prime": 0.04}}``.
    figures : bool
        Draw figures and per-subject HTML reports.
    participant_label, session_label : list of str or None
        Selection (not part of the per-scan hash).
    outcome, group_model, baseline_session : str
        Group level: outcome parameter, model whose fits are compared, baseline session label
        (``None``: ``baseline``/``bl``/``ses-1`` style label if present, else the first).
    nprocs : int
        Local worker processes.
    dask_scheduler : str or None
        Address of a running Dask scheduler (``tcp://host:8786``) to submit scans to.
    force : bool
        Redo scans even when their done-marker matches.
    max_memory_gb : float
        Memory a scan's voxelwise fit may use in one process. Above it (a map needs about
        3x the float32 4D image), maps are fitted out of core: the image is read from the
        file in z-slabs through the dask-array path, never whole (same numbers).
    realign : bool
        Realign the frames for head motion before anything else (:func:`sv2a.motion.realign`);
        the motion table is written as ``*_desc-motion_timeseries.tsv``.
    pvc : {None, "gtm", "rbv"}
        Partial-volume correction (:mod:`sv2a.pvc`): ``"gtm"`` corrects the regional TACs
        (written and fitted as ``desc-gtm`` beside the uncorrected ones); ``"rbv"`` also
        corrects the image for the maps (``desc-rbv``). Needs the scanner PSF.
    psf_fwhm : float or None
        Scanner resolution, FWHM in mm, for PVC and image-derived input (default: from the
        PET sidecar when it records one).
    input : {"blood", "idif"}
        Plasma input of plasma-input models: measured blood (``*_blood.tsv``) or an
        image-derived input (:func:`sv2a.blood.image_derived_input`).
    idif_region : str or None
        Atlas region of the blood pool for ``input="idif"`` (default: found automatically as
        the hottest early connected component).
    formula : str or None
        Group level: right-hand side of a factorial model over ``participants.tsv`` columns,
        e.g. ``"treatment * context"`` (:func:`sv2a.longitudinal.contrast`); ``None`` = no
        factorial contrasts.
    contrasts : dict
        Group level: custom contrasts ``{name: expression}`` of the formula's cells, e.g.
        ``{"rep_stress": "[treatment=repeated, context=stress] - [treatment=vehicle,
        context=stress]"}`` (``--contrast NAME=EXPR``).
    covariates : list of str
        Group level: participant columns added to the formula (``age``, ``sex``).
    scores : bool
        Group level: read ``phenotype/*.tsv`` (:func:`sv2a.longitudinal.load_scores`) and
        correlate every numeric score with the outcome's change per region.
    score : list of str or None
        Scores to correlate (default: every numeric ``phenotype/`` column); implies
        ``scores``.
    responder : str or None
        Responder rule or binary column for a cross-validated prediction of response from
        baseline values, e.g. ``"madrs <= -50%"`` (:func:`sv2a.longitudinal.predict_response`).
    response_session : str or None
        Session at which response is judged when the responder score was measured at
        several follow-up sessions (e.g. ``24h``).
    voxelwise_stats : bool
        Group level: voxelwise GLM of the formula (default ``arm``) on the parametric maps of
        ``group_model``/``outcome`` with permutation FWE (needs a participant-level run with
        ``voxelwise``).
    permutations : int
        Rearrangements (including the data) of the voxelwise permutation tests (> 0).
    tfce : bool
        Voxelwise: threshold-free cluster enhancement (FWE by TFCE; otherwise voxel max-t).
    cluster_p : float or None
        Voxelwise: cluster-forming threshold as a one-sided uncorrected p in (0, 1) (default
        0.001).
    window : (float, float) or None
        SUVR/SUV time window (min after injection) for the regional fits and the maps of
        ``suvr`` and ``suv`` (``--window START END``); overrides ``window`` in
        ``model_options``/``voxelwise_options``. ``None``: the models' default (60, 90).
    skip_invalid : bool
        Scans that the up-front check of the request finds invalid (reference region not in
        the atlas, window outside the scan, ...) are skipped and listed in
        ``logs/failures.tsv``; otherwise the run stops before processing any scan.
    """

    models: list[str] = field(default_factory=lambda: ["1tcm", "srtm2", "suvr"])
    reference: str = "centrum_semiovale"
    reference_erode_mm: float = 0.0
    exclude_regions: list[str] = field(default_factory=list)
    atlas: str | None = None
    atlas_labels: str | None = None
    atlas_name: str | None = None
    atlas_resample: bool = False
    voxelwise: bool = False
    voxelwise_models: list[str] | None = None
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    voxelwise_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    figures: bool = True
    participant_label: list[str] | None = None
    session_label: list[str] | None = None
    outcome: str = "BPND"
    group_model: str = "srtm2"
    baseline_session: str | None = None
    nprocs: int = 1
    dask_scheduler: str | None = None
    force: bool = False
    max_memory_gb: float = 8.0
    realign: bool = False
    pvc: str | None = None
    psf_fwhm: float | None = None
    input: str = "blood"
    idif_region: str | None = None
    formula: str | None = None
    contrasts: dict[str, str] = field(default_factory=dict)
    covariates: list[str] = field(default_factory=list)
    scores: bool = False
    score: list[str] | None = None
    responder: str | None = None
    response_session: str | None = None
    voxelwise_stats: bool = False
    permutations: int = 1000
    tfce: bool = False
    cluster_p: float | None = None
    window: tuple[float, float] | None = None
    skip_invalid: bool = False

    # ------------------------------------------------------------------ checks
    def validate(self) -> PipelineConfig:
        """Normalise names and check every value against the model registry.

        Model names become registry names (aliases such as ``mrtm1`` accepted); every
        regional model must run on regional TACs and every map model on voxels; with
        ``voxelwise`` on, at least one map model must result; model options must be options
        of their model (and, for maps, also the map keywords in :data:`MAP_OPTIONS`).

        Returns
        -------
        PipelineConfig
            ``self``, normalised.

        Raises
        ------
        ConfigError
            A bad value; the message says which setting, what is valid and how to fix it.
        """
        for key in ("voxelwise", "figures", "force", "skip_invalid", "atlas_resample"):
            setattr(self, key, _flag(getattr(self, key), key))
        self.models = _model_names(_str_list(self.models, "models"), "region", "models")
        if not self.models:
            raise ConfigError("no models requested; give at least one with --model")
        if self.voxelwise_models is not None:
            self.voxelwise_models = _model_names(
                _str_list(self.voxelwise_models, "voxelwise_models"), "voxel",
                "voxelwise_models")
        if self.voxelwise and not self.resolved_voxelwise_models():
            raise ConfigError(
                "voxelwise maps requested but none of the requested models "
                f"({', '.join(self.models)}) offers voxelwise maps; choose the map model with "
                f"--voxelwise-model, one of: {', '.join(_available('voxel'))}")
        self._apply_window()
        self.model_options = _check_options(self.model_options, "model_options", ())
        self.voxelwise_options = _check_options(self.voxelwise_options, "voxelwise_options",
                                                MAP_OPTIONS)
        self._check_option_models()
        self.group_model = _model_names([self.group_model], "region", "group_model")[0]
        self.reference_erode_mm = _number(self.reference_erode_mm or 0.0,
                                          "reference_erode_mm", "mm")
        if self.reference_erode_mm < 0:
            raise ConfigError("reference_erode_mm must be >= 0")
        if (isinstance(self.nprocs, bool)
                or not isinstance(self.nprocs, int) or self.nprocs < 1):
            raise ConfigError(f"--nprocs must be an integer >= 1, got {self.nprocs!r}")
        self.max_memory_gb = _number(self.max_memory_gb, "max_memory_gb", "GB")
        if not self.max_memory_gb > 0:
            raise ConfigError(f"--max-memory-gb must be > 0, got {self.max_memory_gb}")
        if self.nprocs > 1 and self.dask_scheduler:
            raise ConfigError("give either --nprocs or --dask-scheduler, not both")
        if self.atlas is not None and not Path(self.atlas).exists():
            raise ConfigError(f"--atlas {self.atlas}: file not found")
        if self.atlas_labels is not None and not Path(self.atlas_labels).exists():
            raise ConfigError(f"--atlas-labels {self.atlas_labels}: file not found")
        self.exclude_regions = _str_list(self.exclude_regions, "exclude_regions") or []
        self._check_reference_kept()
        self.realign = _flag(self.realign, "realign")
        if self.pvc is not None and self.pvc not in ("gtm", "rbv"):
            raise ConfigError(f"pvc must be 'gtm' or 'rbv' (or none), got {self.pvc!r}")
        if self.psf_fwhm is not None:
            self.psf_fwhm = _number(self.psf_fwhm, "psf_fwhm", "mm")
            if not self.psf_fwhm > 0:
                raise ConfigError(f"--psf-fwhm must be > 0 mm, got {self.psf_fwhm}")
        if self.input not in ("blood", "idif"):
            raise ConfigError(f"input must be 'blood' or 'idif', got {self.input!r}")
        if self.idif_region is not None and self.input != "idif":
            raise ConfigError("--idif-region is used only with --input idif")
        self.participant_label = _str_list(self.participant_label, "participant_label")
        self.session_label = _str_list(self.session_label, "session_label")
        self._validate_group()
        return self

    def _apply_window(self) -> None:
        """Check ``window`` and set it as the ``window`` option of the requested SUVR/SUV
        fits and maps."""
        if self.window is None:
            return
        w = self.window
        if (isinstance(w, str) or not isinstance(w, Sequence) or len(w) != 2
                or not all(_is_number(v) for v in w)):
            raise ConfigError(f"window must be two numbers START END in minutes after "
                              f"injection, e.g. --window 30 60; got {w!r}")
        t0, t1 = float(w[0]), float(w[1])
        if not 0 <= t0 < t1:
            raise ConfigError(f"--window {t0:g} {t1:g}: START must be >= 0 and below END "
                              "(minutes after injection)")
        self.window = (t0, t1)
        from ..models import registry

        def key(m: Any) -> str:
            try:
                return registry.get(str(m)).name
            except ModelError:
                return str(m)

        for opts_key, names in (("model_options", self.models),
                                ("voxelwise_options", self.resolved_voxelwise_models()
                                 if self.voxelwise else [])):
            opts = getattr(self, opts_key)
            if not isinstance(opts, Mapping):
                continue  # reported by _check_options
            merged = {key(m): o for m, o in opts.items()}
            for m in names:
                if m in WINDOW_MODELS:
                    o = merged.get(m)
                    merged[m] = {**(o if isinstance(o, Mapping) else {}), "window": [t0, t1]}
            setattr(self, opts_key, merged)

    def _check_option_models(self) -> None:
        """Refuse options for a model that does not run: ``model_options`` of a model not in
        ``models`` and, with ``voxelwise`` on, ``voxelwise_options`` of a model that makes no
        map (the options would be ignored; most often the model was forgotten)."""
        checks = [("model_options", self.model_options, self.models, "regional", "--model")]
        if self.voxelwise:
            checks.append(("voxelwise_options", self.voxelwise_options,
                           self.resolved_voxelwise_models(), "map", "--voxelwise-model"))
        for key, opts, models, what, flag in checks:
            idle = [m for m in opts if m not in models]
            if idle:
                raise ConfigError(
                    f"{key} sets options for {', '.join(repr(m) for m in idle)}, which "
                    f"{'is' if len(idle) == 1 else 'are'} not requested ({what} models: "
                    f"{', '.join(models) or 'none'}), so they would be ignored; add the "
                    f"model ({flag} {idle[0]}) or remove its options")

    def _check_reference_kept(self) -> None:
        """Refuse ``exclude_regions`` that hold the reference region when a requested model
        (regional or map) needs it: every such fit would fail for want of its reference."""
        from ..models import registry
        from ..regions import region_name

        if region_name(self.reference) not in {region_name(r) for r in self.exclude_regions}:
            return
        maps = self.resolved_voxelwise_models() if self.voxelwise else []
        users = [m for m in dict.fromkeys([*self.models, *maps])
                 if registry.get(m).kind == "reference"]
        if users:
            raise ConfigError(
                f"exclude_regions holds the reference region '{self.reference}', which "
                f"{', '.join(users)} need(s); remove it from exclude_regions (the reference is "
                "never a target) or choose another reference with --reference")

    def _validate_group(self) -> None:
        """Check the group-level statistics settings (formula, contrasts, scores, voxelwise);
        what depends on the data (columns, levels) is checked by the group level."""
        if self.formula is not None:
            self.formula = _formula(self.formula)
        if isinstance(self.contrasts, list | tuple):  # NAME=EXPR strings from the flag
            pairs = {}
            for item in self.contrasts:
                name, sep, expr = str(item).partition("=")
                if not sep or not expr.strip():
                    raise ConfigError(f"--contrast {item!r}: write NAME=EXPR, e.g. "
                                      "rep_stress='[treatment=repeated, context=stress] - "
                                      "[treatment=vehicle, context=stress]'")
                pairs[name.strip()] = expr.strip()
            self.contrasts = pairs
        if not isinstance(self.contrasts, Mapping):
            raise ConfigError(f"contrasts must map a name to an expression, got "
                              f"{self.contrasts!r}")
        self.contrasts = {str(k): str(v) for k, v in self.contrasts.items()}
        _identifiers(list(self.contrasts), "contrast name")
        self.covariates = _identifiers(_str_list(self.covariates, "covariates") or [],
                                       "covariate")
        if (self.contrasts or self.covariates) and self.formula is None:
            raise ConfigError("--contrast and --covariates refine a factorial model; give "
                              "--formula too (e.g. --formula 'treatment * context')")
        self.scores = _flag(self.scores, "scores")
        self.score = _str_list(self.score, "score")
        if self.score is not None:
            _identifiers(self.score, "score")
        if self.responder is not None:
            import re

            r = str(self.responder).strip()
            if not re.match(r"^[A-Za-z_]\w*(\s*(<=|>=|<|>)\s*[-+]?\d*\.?\d+\s*%?)?$", r):
                raise ConfigError(f"--responder {self.responder!r}: give a binary score column "
                                  "(madrs_response) or a rule 'score OP number[%]', e.g. "
                                  "'madrs <= -50%' (% change from baseline) or 'madrs <= 10'")
            self.responder = r
        self.voxelwise_stats = _flag(self.voxelwise_stats, "voxelwise_stats")
        self.tfce = _flag(self.tfce, "tfce")
        if isinstance(self.permutations, bool) or not isinstance(self.permutations, int | str):
            raise ConfigError(f"permutations must be a whole number > 0, got "
                              f"{self.permutations!r}")
        try:
            self.permutations = int(self.permutations)
        except ValueError:
            raise ConfigError(f"permutations must be a whole number > 0, got "
                              f"{self.permutations!r}") from None
        if self.permutations < 1:
            raise ConfigError(f"--permutations must be > 0, got {self.permutations}")
        if self.cluster_p is not None:
            self.cluster_p = _number(self.cluster_p, "cluster_p",
                                             "p (one-sided, uncorrected)")
            if not 0 < self.cluster_p < 1:
                raise ConfigError(f"--cluster-p is a cluster-forming p in (0, 1), "
                                  f"e.g. 0.001; got {self.cluster_p}")
        if (self.tfce or self.cluster_p is not None) and not self.voxelwise_stats:
            raise ConfigError("--tfce and --cluster-p apply to --voxelwise-stats; "
                              "add --voxelwise-stats or drop them")

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain JSON-able types.

        Returns
        -------
        dict
            ``{setting: value}`` (the keys of a configuration file).
        """
        return dataclasses.asdict(self)

    def participant_settings(self) -> dict[str, Any]:
        """The settings that determine participant-level outputs.

        Returns
        -------
        dict
            The :data:`PARTICIPANT_KEYS` settings, atlas paths made absolute.
        """
        d = self.to_dict()
        out = {k: d[k] for k in PARTICIPANT_KEYS}
        for k in ("atlas", "atlas_labels"):
            if out[k]:
                out[k] = str(Path(out[k]).resolve())
        return out

    def resolved_voxelwise_models(self) -> list[str]:
        """Models used for parametric maps when ``voxelwise`` is on.

        ``voxelwise_models`` when given; otherwise ``srtm2`` if it was requested, else the
        first requested reference-tissue or static model that offers voxelwise maps, else the
        first requested plasma-input model that does.

        Returns
        -------
        list of str
            Registry names (empty when no requested model offers voxelwise maps).
        """
        if self.voxelwise_models is not None:
            return list(self.voxelwise_models)
        from ..models import registry

        voxel = set(_available("voxel"))
        wanted = [registry.get(m) for m in self.models if registry.get(m).name in voxel]
        if any(c.name == "srtm2" for c in wanted):
            return ["srtm2"]
        ordered = ([c for c in wanted if c.kind != "plasma"]
                   + [c for c in wanted if c.kind == "plasma"])
        return [ordered[0].name] if ordered else []

    def scan_hash(self, fingerprint: Mapping[str, Any] | None = None) -> str:
        """SHA-256 of the participant settings and the inputs of a scan.

        Parameters
        ----------
        fingerprint : mapping, optional
            ``{input: content hash}`` of the scan's inputs (the pipeline passes the hashes
            of :func:`sv2a.pipeline.provenance.input_digests`), or
            :func:`input_fingerprint`.

        Returns
        -------
        str
            The first 16 hex digits.
        """
        payload = {"settings": self.participant_settings(), "inputs": dict(fingerprint or {})}
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- checks
def _available(scale: Scale) -> list[str]:
    from ..models import registry

    return registry.available(scale=scale)


def _model_names(names: Any, scale: Scale, key: str) -> list[str]:
    """Registry names of ``names`` (a str or a list), each required to run at ``scale``."""
    from ..models import registry

    if isinstance(names, str):
        names = [names]
    out = []
    for m in names or []:
        try:
            out.append(registry.require(str(m), scale=scale).name)
        except ModelError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return list(dict.fromkeys(out))


def _check_options(opts: Any, key: str, extra: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{model: {option: value}}`` with registry names, refusing options the model (or the
    map adapter, ``extra``) does not take and values outside a model's fixed choices."""
    from ..models import registry
    from ..models.base import parse_options

    if not isinstance(opts, Mapping):
        raise ConfigError(f"{key} must map a model name to a dict of options, "
                          f"e.g. {{\"srtm2\": {{\"k2prime\": 0.04}}}}; got {opts!r}")
    clean: dict[str, dict[str, Any]] = {}
    for m, o in opts.items():
        try:
            cls = registry.get(str(m))
        except ModelError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        if not isinstance(o, Mapping):
            raise ConfigError(f"{key}[{m!r}] must be a dict of options, got {o!r}")
        o = {str(k): v for k, v in o.items()}
        fields = [f.name for f in dataclasses.fields(cls.Options)]
        unknown = sorted(set(o) - set(fields) - set(extra))
        if unknown:
            close = difflib.get_close_matches(unknown[0], [*fields, *extra], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{key}: model '{cls.name}' does not take option(s) {', '.join(unknown)}"
                f"{hint}; valid options: {', '.join(sorted({*fields, *extra}))}")
        hints = typing.get_type_hints(cls.Options)
        for k, v in o.items():
            if k in hints and not _conforms(v, hints[k]):
                raise ConfigError(
                    f"{key}: option {k} of model '{cls.name}' must be {_describe(hints[k])}, "
                    f"got {v!r} ({type(v).__name__})")
        try:
            parse_options(cls.Options, {k: v for k, v in o.items() if k in fields}, cls.name)
            _check_values(cls.name, o)
        except (ModelError, TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: {exc}") from None
        clean[cls.name] = o
    return clean


def _check_values(model: str, options: Mapping[str, Any]) -> None:
    """Check option values that no scan can make valid, as the model would when fitting
    (so that ``validate`` and ``run`` refuse them before any scan): a numeric ``k2prime``
    (positive, in the plausible 1/min range), ``tstar`` (a finite time >= 0 min) and
    ``n_frames`` (a whole number >= 1), not both of the last two."""
    import numpy as np

    from ..models.srtm import check_k2prime

    k2prime = options.get("k2prime")
    if _is_number(k2prime):
        check_k2prime(k2prime, model)
    tstar: Any = options.get("tstar")
    n_frames: Any = options.get("n_frames")
    if tstar is not None and n_frames is not None:
        raise ModelError(f"{model}: give tstar= or n_frames=, not both")
    if _is_number(tstar) and not (np.isfinite(tstar) and tstar >= 0):
        raise ModelError(f"{model}: tstar must be a time >= 0 min (a finite number), got "
                         f"{tstar!r}")
    if _is_number(n_frames) and (int(n_frames) != n_frames or n_frames < 1):
        raise ModelError(f"{model}: n_frames must be a positive integer, got {n_frames!r}")


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from JSON/YAML or Python) has the type ``hint`` describes: strings
    are not booleans, booleans are not numbers, lists (or tuples) stand for sequences."""
    import numpy as np

    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    if hint is int:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)
    if hint is float:
        return _is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin is np.ndarray:  # an array option: a (nested) list of numbers in a file
        return isinstance(value, np.ndarray | list | tuple)
    if origin in (list, tuple, Sequence, typing.Sequence):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_conforms, value, args))
        return not args or all(_conforms(v, args[0]) for v in value)
    if origin in (dict, Mapping, typing.Mapping):
        if not isinstance(value, Mapping):
            return False
        return not args or all(_conforms(k, args[0]) and _conforms(v, args[1])
                               for k, v in value.items())
    return True  # a type this check does not know: the model checks it


def _describe(hint: Any) -> str:
    """Plain words for a type, for messages ("a number or null")."""
    import numpy as np

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    words = {bool: "true or false", int: "a whole number", float: "a number",
             str: "a string", Any: "any value"}
    if hint in words:
        return words[hint]
    if origin is np.ndarray:
        return "a list of numbers"
    if origin in (list, tuple, Sequence, typing.Sequence):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} " + ("numbers" if all(a is float for a in args)
                                                else "values")
        inner = _describe(args[0]) if args else "values"
        return "a list of " + {"a string": "strings", "a number": "numbers"}.get(inner, inner)
    if origin in (dict, Mapping, typing.Mapping):
        return "a mapping" + (f" of {_describe(args[0])} to {_describe(args[1])}"
                              if args and args[1] is not Any else "")
    return getattr(hint, "__name__", str(hint))


def _number(value: Any, key: str, unit: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number of {unit}, got {value!r}") from None


def _flag(value: Any, key: str) -> bool:
    """A boolean setting: a bool (JSON true/false), never a string such as "false"."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key} must be true or false (a JSON boolean), got {value!r}")


def _formula(value: Any) -> str:
    """A right-hand-side formula that patsy can parse and that names at least one column."""
    from ..errors import DesignError
    from ..longitudinal.contrast import formula_variables

    text = str(value).strip()
    try:
        formula_variables(text)
    except DesignError as exc:
        raise ConfigError(f"--formula: {exc}") from None
    try:
        import patsy

        patsy.ModelDesc.from_formula(text)
    except ImportError:  # pragma: no cover - statsmodels brings patsy
        pass
    except Exception as exc:  # patsy raises PatsyError (and others on odd input)
        raise ConfigError(f"--formula {text!r} does not parse: {exc}. Write the right-hand "
                          "side over participants.tsv columns, e.g. 'treatment * context' or "
                          "'arm + age'.") from None
    return text


def _identifiers(names: list[str], what: str) -> list[str]:
    """``names`` when each is a Python-style identifier (a column name usable in formulas)."""
    bad = [n for n in names if not str(n).isidentifier()]
    if bad:
        raise ConfigError(f"{what} name(s) {bad} are not identifiers (letters, digits and "
                          "'_', not starting with a digit); rename the column or choose "
                          "another")
    return [str(n) for n in names]


def _str_list(value: Any, key: str) -> list[str] | None:
    """A list of strings (a single string is a list of one); anything else is refused."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{key} must be a list of names, e.g. [a, b]; got {value!r}")
    return [str(v) for v in value]


def input_fingerprint(paths: Iterable[str | os.PathLike[str] | None]
                      ) -> dict[str, list[int] | None]:
    """Size and modification time of files (the pipeline's skip check uses content hashes
    instead: :func:`sv2a.pipeline.provenance.input_digests`).

    Parameters
    ----------
    paths : iterable of path or None
        The scan's input files (``None`` entries are ignored).

    Returns
    -------
    dict
        ``{file name: [size, mtime_ns]}``; ``None`` for a file that cannot be read.
    """
    out: dict[str, list[int] | None] = {}
    for path in paths:
        if path is None:
            continue
        p = Path(path)
        try:
            st = p.stat()
            out[p.name] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[p.name] = None
    return out


def config_keys() -> dict[str, str]:
    """Every key a configuration file may hold, with the setting it sets.

    The keys are the long option names of ``sv2a run`` with ``_`` for ``-`` (``model``,
    ``reference_erode``, ``voxelwise_model``, ``no_figures``, ...; see
    :data:`OPTION_SETTINGS` for those whose setting is named differently) and the setting
    names of :class:`PipelineConfig` as written in ``sv2a_config.json`` (``models``,
    ``reference_erode_mm``, ``figures``, ...), so that a saved configuration reads back.

    Returns
    -------
    dict
        ``{key: setting}``.

    Examples
    --------
    >>> keys = config_keys()
    >>> keys["reference_erode"], keys["reference_erode_mm"], keys["no_figures"]
    ('reference_erode_mm', 'reference_erode_mm', 'figures')
    """
    out = {f.name: f.name for f in dataclasses.fields(PipelineConfig)}
    out.update(OPTION_SETTINGS)
    return dict(sorted(out.items()))


#: Types a configuration file may give where they differ from the setting's own type.
_FILE_TYPES: dict[str, Any] = {"contrasts": dict[str, str] | list[str]}


def _file_value(key: str, setting: str, value: Any, where: str) -> Any:
    """The value of one file key, type-checked against its setting (a single string counts as
    a list of one); ``no_figures`` negated."""
    hints = typing.get_type_hints(PipelineConfig)
    hint = _FILE_TYPES.get(setting, hints[setting])
    if key == "no_figures":
        hint = bool
    ok = _conforms(value, hint) or (
        isinstance(value, str) and _conforms([value], hint))
    if not ok:
        extra = ""
        if setting in ("participant_label", "session_label"):
            extra = " (quote labels with leading zeros: ['01', '02'])"
        elif hint is bool or hint == bool | None:
            extra = " (write true or false, not a string)"
        raise ConfigError(f"{where}: setting '{key}' must be {_describe(hint)}{extra}; "
                          f"got {value!r} ({type(value).__name__})")
    return (not value) if key == "no_figures" else value


class _DuplicateKey(Exception):
    """A mapping key given twice in a configuration file (raised while parsing)."""

    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: the object as a dict, refusing a key given twice."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _unique_key_loader() -> type:
    """A ``yaml.SafeLoader`` that refuses a mapping key given twice (PyYAML keeps the last)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *anchor' merges
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key)
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader reports it
                    break
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and type-check a JSON or YAML configuration file.

    Keys are the long option names of ``sv2a run`` with ``_`` for ``-`` (a ``-`` is accepted
    too), or the setting names of ``sv2a_config.json`` (:func:`config_keys`). Every value is
    checked against the type of its setting before any scan runs: strings are not booleans,
    lists are lists (a single string is a list of one), numbers are numbers; model options
    are checked by :meth:`PipelineConfig.validate`.

    Parameters
    ----------
    path : path
        ``.json`` or YAML file holding a mapping of settings.

    Returns
    -------
    dict
        ``{setting: value}`` (:class:`PipelineConfig` field names).

    Raises
    ------
    ConfigError
        Missing file, unparsable text, an unknown key (with the closest valid key), a key
        given twice under two names, or a value of the wrong type (naming the key, the
        expected type and the file).

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = Path(d) / "sv2a.yaml"
    >>> _ = p.write_text("model: [srtm2, suvr]\\nreference_erode: 4\\nno_figures: true\\n")
    >>> load_config_file(p)
    {'models': ['srtm2', 'suvr'], 'reference_erode_mm': 4, 'figures': False}
    """
    import yaml

    p = Path(path)
    where = f"--config {p}"
    if not p.exists():
        raise ConfigError(f"{where}: file not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            obj = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            obj = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader
    except _DuplicateKey as exc:
        raise ConfigError(f"{where}: the key {exc.key!r} is given twice (the second value "
                          "would silently replace the first); keep one") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot parse ({exc})") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: must hold a mapping of settings, not "
                          f"{type(obj).__name__}")
    keys = config_keys()
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for k, v in obj.items():
        key = str(k).replace("-", "_")
        if key in _PROVENANCE_KEYS:
            continue
        if key not in keys:
            close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{where}: unknown setting {k!r}{hint}. Keys are the long option names of "
                f"'sv2a run' with '_' for '-'; valid keys: {', '.join(keys)}")
        setting = keys[key]
        value = _file_value(key, setting, v, where)
        if setting in out and out[setting] != value:
            raise ConfigError(f"{where}: '{given[setting]}' and '{k}' set the same setting "
                              "differently; keep one")
        out[setting] = value
        given[setting] = str(k)
    for setting, extra in (("model_options", ()), ("voxelwise_options", MAP_OPTIONS)):
        if setting in out:  # option names and types, before any scan runs
            try:
                _check_options(out[setting], given[setting], extra)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    return out


def _drop_idle_options(values: dict[str, Any], models: Any,
                       config_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's settings without the ``model_options`` of models that the command line's
    ``--model`` does not request (a shared file holds options for several models; the flag
    picks some), with a warning naming them. Options of the file's own ``models`` that are
    not requested there are refused by :meth:`PipelineConfig.validate`."""
    import warnings

    opts = values.get("model_options")
    if not isinstance(opts, Mapping):
        return values
    names = _str_list(models, "models") or []
    wanted = {_registry_name(m) for m in names} - {None}
    idle = [m for m in opts if _registry_name(m) not in wanted]
    if not idle:
        return values
    warnings.warn(f"--config {config_file}: model_options for {', '.join(map(str, idle))} "
                  f"not used: --model requests {', '.join(names)}", stacklevel=3)
    kept = {m: o for m, o in opts.items() if m not in idle}
    return {**values, "model_options": kept}


def _registry_name(name: Any) -> str | None:
    """The registry name of a model name or alias, ``None`` when unknown."""
    from ..models import registry

    try:
        return registry.get(str(name)).name
    except ModelError:
        return None


def resolve_config(cli: Mapping[str, Any] | None = None,
                   config_file: str | os.PathLike[str] | None = None) -> PipelineConfig:
    """Merge defaults < a configuration file < command-line values, then validate.

    Parameters
    ----------
    cli : mapping, optional
        Settings given on the command line (``None`` values count as not given).
    config_file : path, optional
        JSON or YAML settings file.

    Returns
    -------
    PipelineConfig
        The validated configuration.

    Raises
    ------
    ConfigError
        A bad setting (see :meth:`PipelineConfig.validate`).
    """
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_config_file(config_file))
    valid = {f.name for f in dataclasses.fields(PipelineConfig)}
    given = {k: v for k, v in (cli or {}).items() if k in valid and v is not None}
    if config_file and "models" in given and "model_options" not in given:
        values = _drop_idle_options(values, given["models"], config_file)
    values.update(given)
    try:
        cfg = PipelineConfig(**values)
    except TypeError as exc:  # pragma: no cover - keys are filtered above
        raise ConfigError(str(exc)) from None
    return cfg.validate()
