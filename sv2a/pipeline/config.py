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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["PipelineConfig", "load_config_file", "resolve_config", "input_fingerprint",
           "PARTICIPANT_KEYS"]

#: Settings that change participant-level outputs (they enter the per-scan hash).
PARTICIPANT_KEYS = ("models", "reference", "reference_erode_mm", "exclude_regions", "atlas",
                    "atlas_labels",
                    "atlas_name", "voxelwise", "voxelwise_models", "model_options",
                    "voxelwise_options", "figures")


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

    # ------------------------------------------------------------------ checks
    def validate(self) -> PipelineConfig:
        """Normalise names and check values; raise :class:`ConfigError` with a fix."""
        from .. import models as _models

        if isinstance(self.models, str):
            self.models = [self.models]
        if not self.models:
            raise ConfigError("no models requested; give at least one with --model")
        names = []
        for m in self.models:
            try:
                names.append(_models.get(m).name)
            except Exception as exc:  # ModelError with the list of available models
                raise ConfigError(str(exc)) from None
        self.models = list(dict.fromkeys(names))
        if self.voxelwise_models is not None:
            if isinstance(self.voxelwise_models, str):
                self.voxelwise_models = [self.voxelwise_models]
            vm = []
            for m in self.voxelwise_models:
                try:
                    vm.append(_models.get(m).name)
                except Exception as exc:
                    raise ConfigError(f"voxelwise_models: {exc}") from None
            self.voxelwise_models = list(dict.fromkeys(vm))
        for key in ("model_options", "voxelwise_options"):
            opts = getattr(self, key)
            if not isinstance(opts, Mapping):
                raise ConfigError(f"{key} must map a model name to a dict of options, "
                                  f"e.g. {{\"srtm2\": {{\"k2prime\": 0.04}}}}; got {opts!r}")
            clean = {}
            for m, o in opts.items():
                try:
                    name = _models.get(m).name
                except Exception as exc:
                    raise ConfigError(f"{key}: {exc}") from None
                if not isinstance(o, Mapping):
                    raise ConfigError(f"{key}[{m!r}] must be a dict of options, got {o!r}")
                clean[name] = dict(o)
            setattr(self, key, clean)
        try:
            self.reference_erode_mm = float(self.reference_erode_mm or 0.0)
        except (TypeError, ValueError):
            raise ConfigError(f"reference_erode_mm must be a number of mm, got "
                              f"{self.reference_erode_mm!r}") from None
        if self.reference_erode_mm < 0:
            raise ConfigError("reference_erode_mm must be >= 0")
        try:
            self.nprocs = int(self.nprocs)
        except (TypeError, ValueError):
            raise ConfigError(f"nprocs must be an integer, got {self.nprocs!r}") from None
        if self.nprocs < 1:
            raise ConfigError(f"--nprocs must be >= 1, got {self.nprocs}")
        try:
            self.max_memory_gb = float(self.max_memory_gb)
        except (TypeError, ValueError):
            raise ConfigError(f"max_memory_gb must be a number of GB, got "
                              f"{self.max_memory_gb!r}") from None
        if not self.max_memory_gb > 0:
            raise ConfigError(f"--max-memory-gb must be > 0, got {self.max_memory_gb}")
        if self.nprocs > 1 and self.dask_scheduler:
            raise ConfigError("give either --nprocs or --dask-scheduler, not both")
        if self.atlas is not None and not Path(self.atlas).exists():
            raise ConfigError(f"--atlas {self.atlas}: file not found")
        if self.atlas_labels is not None and not Path(self.atlas_labels).exists():
            raise ConfigError(f"--atlas-labels {self.atlas_labels}: file not found")
        if isinstance(self.exclude_regions, str):
            self.exclude_regions = [self.exclude_regions]
        self.exclude_regions = list(self.exclude_regions or [])
        for key in ("participant_label", "session_label"):
            v = getattr(self, key)
            if isinstance(v, str):
                setattr(self, key, [v])
        return self

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def participant_settings(self) -> dict[str, Any]:
        """The settings that determine participant-level outputs."""
        d = self.to_dict()
        out = {k: d[k] for k in PARTICIPANT_KEYS}
        for k in ("atlas", "atlas_labels"):
            if out[k]:
                out[k] = str(Path(out[k]).resolve())
        return out

    def resolved_voxelwise_models(self) -> list[str]:
        """Models used for parametric maps when ``voxelwise`` is on."""
        from .. import models as _models

        if self.voxelwise_models is not None:
            return list(self.voxelwise_models)
        if "srtm2" in self.models:
            return ["srtm2"]
        return [m for m in self.models if _models.get(m).kind in ("reference", "static")][:1]

    def scan_hash(self, fingerprint: Mapping[str, Any] | None = None) -> str:
        """SHA-256 of the participant settings (+ input file fingerprint)."""
        payload = {"settings": self.participant_settings(), "inputs": dict(fingerprint or {})}
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def input_fingerprint(paths) -> dict[str, list]:
    """``{path: [size, mtime_ns]}`` of the input files of a scan (changes trigger a re-run)."""
    out = {}
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        try:
            st = p.stat()
            out[p.name] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[p.name] = None
    return out


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON or YAML configuration file into a dict (keys as in :class:`PipelineConfig`,
    ``-`` or ``_`` accepted)."""
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


def resolve_config(cli: Mapping[str, Any] | None = None, config_file: str | os.PathLike | None
                   = None) -> PipelineConfig:
    """Merge defaults, a config file and explicit command-line values (``None`` = not given)."""
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
