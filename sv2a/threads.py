"""How many threads sv2a's parallel work uses, and BLAS held to one thread meanwhile.

Voxel chunks (:func:`sv2a.parametric_maps`) and the gzip members of ``.nii.gz`` files run in
threads; both ask :func:`cpu_workers` how many, so a batch job that gives a process one
core (``OMP_NUM_THREADS=1``, as the workers of ``sv2a run --nprocs`` have) stays at one
thread everywhere.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["cpu_workers", "one_blas_thread"]

P = ParamSpec("P")
R = TypeVar("R")


def one_blas_thread(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate ``func`` to run with BLAS held to one thread (``threadpoolctl``).

    The voxel work is parallel over chunks (threads, or dask blocks); its matrix products
    (a few thousand rows by ~30 frames) gain nothing from a BLAS thread pool. Every BLAS
    call would otherwise wake the pool's threads, which then spin idle and burn CPU time
    (OpenBLAS: about 0.1 s per thread after each burst of calls). The setting before the
    call is restored after it.

    Parameters
    ----------
    func : callable
        The function to wrap.

    Returns
    -------
    callable
        ``func`` with the same signature.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _blas_controller().limit(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


@functools.cache
def _blas_controller() -> Any:
    """The thread pools of the libraries loaded now (found once: a search of the loaded
    libraries takes ~4 ms, and NumPy's BLAS is loaded with NumPy)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def cpu_workers() -> int:
    """Threads for parallel work (voxel chunks, gzip members, maps written at once): the CPU
    cores this process may run on (its affinity
    mask where the OS has one), capped by ``OMP_NUM_THREADS`` when that is set -- the usual
    way a batch job (SLURM, or the workers of ``sv2a run --nprocs``) gives a process fewer
    threads than the machine has.

    Returns
    -------
    int
        At least 1.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    cap = os.environ.get("OMP_NUM_THREADS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        n = min(n, int(cap))
    return max(1, n)
