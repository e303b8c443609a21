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

from .config import PipelineConfig, load_config_file, resolve_config
from .execute import RunSummary, run_jobs, run_participant
from .group import GroupResult, run_group
from .participant import ScanJob, process_scan

__all__ = ["PipelineConfig", "resolve_config", "load_config_file", "run_participant",
           "run_jobs", "RunSummary", "run_group", "GroupResult", "ScanJob", "process_scan"]
