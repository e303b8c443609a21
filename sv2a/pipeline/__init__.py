"""Batch processing of BIDS PET datasets (``sv2a run``, ``sv2a demo``).

Python use::

    from sv2a.pipeline import PipelineConfig, run_participant, run_group
    cfg = PipelineConfig(models=["srtm2", "suvr"], voxelwise=True, nprocs=2).validate()
    summary = run_participant("bids", "bids/derivatives/sv2a", cfg)
    run_group("bids", "bids/derivatives/sv2a", cfg)

To use a Dask cluster built in Python (e.g. ``dask_jobqueue.SLURMCluster``) pass
``client=distributed.Client(cluster)`` to :func:`run_participant`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> module that defines it (imported on first access, so that ``sv2a run
# --help`` and the configuration checks do not load pandas, xarray and SciPy)
_LAZY = {
    "PipelineConfig": "sv2a.pipeline.config",
    "resolve_config": "sv2a.pipeline.config",
    "load_config_file": "sv2a.pipeline.config",
    "run_participant": "sv2a.pipeline.execute",
    "run_jobs": "sv2a.pipeline.execute",
    "RunSummary": "sv2a.pipeline.execute",
    "run_group": "sv2a.pipeline.group",
    "GroupResult": "sv2a.pipeline.group",
    "ScanJob": "sv2a.pipeline.participant",
    "process_scan": "sv2a.pipeline.participant",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # static checkers see the lazy names as ordinary imports
    from .config import PipelineConfig, load_config_file, resolve_config  # noqa: F401
    from .execute import RunSummary, run_jobs, run_participant  # noqa: F401
    from .group import GroupResult, run_group  # noqa: F401
    from .participant import ScanJob, process_scan  # noqa: F401


#: ``__getattr__`` imports a public name on first access; ``__dir__`` lists them
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
