"""Pipeline configuration: defaults < ``--config FILE`` (JSON/YAML) < command-line flags.

The resolved configuration is saved in the output directory (``sv2a_config.json``) and a hash
of the settings that change participant-level results is stored in each subject/session's
done-marker, so a re-run redoes exactly the scans whose settings (or input files) changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ModelError

if TYPE_CHECKING:
    from ..models.base import Scale

__all__ = ["PipelineConfig", "load_config_file", "resolve_config", "input_fingerprint",
           "PARTICIPANT_KEYS", "MAP_OPTIONS", "NON_BRAIN_REGIONS"]

#: Settings that change participant-level outputs (they enter the per-scan hash).
PARTICIPANT_KEYS = ("models", "reference", "reference_erode_mm", "exclude_regions", "atlas",
                    "atlas_labels",
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
        ``anat/*_dseg`` segmentation; resampled to the PET grid (nearest neighbour) if needed.
    atlas_name : str or None
        ``seg-<label>`` in output names (default: from the segmentation file name).
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
    """

    models: list[str] = field(default_factory=lambda: ["1tcm", "srtm2", "suvr"])
    reference: str = "centrum_semiovale"
    reference_erode_mm: float = 0.0
    exclude_regions: list[str] = field(default_factory=list)
    atlas: str | None = None
    atlas_labels: str | None = None
    atlas_name: str | None = None
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
    voxelwise_stats: bool = False
    permutations: int = 1000
    tfce: bool = False
    cluster_p: float | None = None

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
        self.models = _model_names(self.models, "region", "models")
        if not self.models:
            raise ConfigError("no models requested; give at least one with --model")
        if self.voxelwise_models is not None:
            self.voxelwise_models = _model_names(self.voxelwise_models, "voxel",
                                                 "voxelwise_models")
        if self.voxelwise and not self.resolved_voxelwise_models():
            raise ConfigError(
                "voxelwise maps requested but none of the requested models "
                f"({', '.join(self.models)}) offers voxelwise maps; choose the map model with "
                f"--voxelwise-model, one of: {', '.join(_available('voxel'))}")
        self.model_options = _check_options(self.model_options, "model_options", ())
        self.voxelwise_options = _check_options(self.voxelwise_options, "voxelwise_options",
                                                MAP_OPTIONS)
        self.group_model = _model_names([self.group_model], "region", "group_model")[0]
        self.reference_erode_mm = _number(self.reference_erode_mm or 0.0,
                                          "reference_erode_mm", "mm")
        if self.reference_erode_mm < 0:
            raise ConfigError("reference_erode_mm must be >= 0")
        try:
            self.nprocs = int(self.nprocs)
        except (TypeError, ValueError):
            raise ConfigError(f"nprocs must be an integer, got {self.nprocs!r}") from None
        if self.nprocs < 1:
            raise ConfigError(f"--nprocs must be >= 1, got {self.nprocs}")
        self.max_memory_gb = _number(self.max_memory_gb, "max_memory_gb", "GB")
        if not self.max_memory_gb > 0:
            raise ConfigError(f"--max-memory-gb must be > 0, got {self.max_memory_gb}")
        if self.nprocs > 1 and self.dask_scheduler:
            raise ConfigError("give either --nprocs or --dask-scheduler, not both")
        if self.atlas is not None and not Path(self.atlas).exists():
            raise ConfigError(f"--atlas {self.atlas}: file not found")
        if self.atlas_labels is not None and not Path(self.atlas_labels).exists():
            raise ConfigError(f"--atlas-labels {self.atlas_labels}: file not found")
        self.exclude_regions = _str_list(self.exclude_regions) or []
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
        self.participant_label = _str_list(self.participant_label)
        self.session_label = _str_list(self.session_label)
        self._validate_group()
        return self

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
        self.covariates = _identifiers(_str_list(self.covariates) or [], "covariate")
        if (self.contrasts or self.covariates) and self.formula is None:
            raise ConfigError("--contrast and --covariates refine a factorial model; give "
                              "--formula too (e.g. --formula 'treatment * context')")
        self.scores = _flag(self.scores, "scores")
        self.score = _str_list(self.score)
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
        """SHA-256 of the participant settings and the input files of a scan.

        Parameters
        ----------
        fingerprint : mapping, optional
            :func:`input_fingerprint` of the scan's input files.

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
            raise ConfigError(
                f"{key}: model '{cls.name}' does not take option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(sorted({*fields, *extra}))}")
        try:
            parse_options(cls.Options, {k: v for k, v in o.items() if k in fields}, cls.name)
        except (ModelError, TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: {exc}") from None
        clean[cls.name] = o
    return clean


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


def _str_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def input_fingerprint(paths: Iterable[str | os.PathLike[str] | None]
                      ) -> dict[str, list[int] | None]:
    """Size and modification time of the input files of a scan (a change triggers a re-run).

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


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON or YAML configuration file.

    Parameters
    ----------
    path : path
        ``.json`` or YAML file holding a mapping of settings: the fields of
        :class:`PipelineConfig` (``-`` or ``_`` accepted; ``model`` for ``models``).

    Returns
    -------
    dict
        ``{setting: value}`` (values are checked by :meth:`PipelineConfig.validate`).

    Raises
    ------
    ConfigError
        Missing file, unparsable text, or an unknown setting (the valid ones are listed).
    """
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"--config {p}: file not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            obj = json.loads(text)
        else:
            obj = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config {p}: cannot parse ({exc})") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"--config {p}: must hold a mapping of settings, not "
                          f"{type(obj).__name__}")
    out = {}
    valid = {f.name for f in dataclasses.fields(PipelineConfig)}
    # a "model" key (the CLI flag name) is accepted for "models"
    aliases = {"model": "models", "participant_labels": "participant_label",
               "session_labels": "session_label", "baseline": "baseline_session"}
    for k, v in obj.items():
        key = str(k).replace("-", "_")
        key = aliases.get(key, key)
        if key not in valid:
            raise ConfigError(f"--config {p}: unknown setting {k!r}; valid settings: "
                              f"{', '.join(sorted(valid))}")
        out[key] = v
    return out


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
    for k, v in (cli or {}).items():
        if k in valid and v is not None:
            values[k] = v
    try:
        cfg = PipelineConfig(**values)
    except TypeError as exc:  # pragma: no cover - keys are filtered above
        raise ConfigError(str(exc)) from None
    return cfg.validate()
