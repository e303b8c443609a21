"""The voxel engine: run one model solver over the voxels of a mask, numpy or dask.

In memory the masked voxel TACs are cut into chunks of rows and each chunk goes through
``solver.solve`` (a few matrix products; no Python loop over voxels). For a dask image the
same solver runs in ``map_blocks`` over spatial blocks (time kept whole), so images larger
than memory and dask clusters use the same numbers; building the graph computes nothing.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..models.base import Model
from ..progress import use_bars
from ..threads import cpu_workers

__all__ = ["run_numpy", "run_dask", "auto_chunk"]

def auto_chunk(solver: Model, n_frames: int) -> int:
    """Rows per chunk that keep the solver's temporaries near 48 MB.

    Parameters
    ----------
    solver : Model
        The prepared solver (basis-function solvers hold ``thetas``).
    n_frames : int
        Frames per TAC.

    Returns
    -------
    int
        Chunk size (rows).
    """
    thetas = getattr(solver, "thetas", None)
    if thetas is None:
        # linear methods: a few (chunk, n_frames) float64 temporaries stay in cache
        return 8192
    k = int(np.asarray(thetas).size)
    return int(max(1024, min(200_000, 48e6 / (8.0 * 3 * max(k, n_frames)))))


def run_numpy(solver: Model, rows: NDArray[Any], names: list[str], *, chunk_size: int | None,
              progress: bool, desc: str,
              workers: int | None = None) -> tuple[dict[str, NDArray[np.float32]],
                                                   NDArray[np.uint8]]:
    """Solve masked voxel TACs in chunks, the chunks in parallel threads.

    The solvers are matrix products and element-wise NumPy operations, which release the
    GIL, so chunks run concurrently in threads; the caller holds BLAS to one thread
    (:func:`sv2a.threads.one_blas_thread` on :func:`sv2a.parametric_maps`).

    Parameters
    ----------
    solver : Model
        Prepared solver (its ``solve`` reads the solver and writes nothing to it).
    rows : array (n_voxels, n_frames)
        Voxel TACs (kBq/mL), any float dtype.
    names : list of str
        Outputs to keep.
    chunk_size : int, optional
        Rows per chunk (default :func:`auto_chunk`).
    progress : bool
        Show a progress bar on stderr when it is a terminal (:func:`sv2a.progress.use_bars`)
        and the voxels take more than one chunk (a one-chunk bar would never move).
    desc : str
        Progress-bar label.
    workers : int, optional
        Threads (default: the CPU cores of this process, :func:`sv2a.threads.cpu_workers`;
        never more than the chunks). The numbers do not depend on it.

    Returns
    -------
    values : dict name -> float32 array (n_voxels,)
    flag : uint8 array (n_voxels,)
    """
    from concurrent.futures import ThreadPoolExecutor

    n = rows.shape[0]
    chunk = chunk_size or auto_chunk(solver, rows.shape[1])
    starts = range(0, n, chunk)
    vals = {nm: np.full(n, np.nan, np.float32) for nm in names}
    fl = np.zeros(n, np.uint8)

    def solve(i0: int) -> int:
        r = solver.solve(np.asarray(rows[i0:i0 + chunk], dtype=np.float64))
        for nm in names:
            vals[nm][i0:i0 + chunk] = r[nm]
        fl[i0:i0 + chunk] = r["flag"]
        return min(chunk, n - i0)

    n_threads = max(1, min(workers or cpu_workers(), len(starts)))
    # a bar only where it is drawn in place (a terminal) and where it moves (several chunks);
    # tqdm is imported only then
    bar: Any = contextlib.nullcontext(_NoBar())
    if progress and n > chunk and use_bars(sys.stderr):
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc, unit="voxel", unit_scale=True, leave=False,
                   file=sys.stderr, dynamic_ncols=True)
    with bar as shown:
        if n_threads == 1:
            for i0 in starts:
                shown.update(solve(i0))
        else:
            with ThreadPoolExecutor(max_workers=n_threads) as ex:
                for done in ex.map(solve, starts):
                    shown.update(done)
    return vals, fl


class _NoBar:
    """Stands in for a progress bar that is not drawn."""

    def update(self, n: int) -> None:
        """Ignore progress."""


def _solve_block(block: NDArray[Any], mblock: NDArray[Any], *, solver: Model,
                 names: list[str]) -> NDArray[np.float32]:
    """dask block function: (bx, by, bz, T), (bx, by, bz, 1) -> (bx, by, bz, P + 1)."""
    m = mblock[..., 0]
    out = np.full((*block.shape[:3], len(names) + 1), np.nan, np.float32)
    out[..., -1] = 0
    if not m.any():
        return out
    r = solver.solve(np.asarray(block[m], dtype=np.float64))
    for i, nm in enumerate(names):
        out[m, i] = r[nm]
    out[m, -1] = r["flag"]
    return out


def run_dask(solver: Model, data: Any, mask: NDArray[np.bool_], names: list[str], *,
             progress: bool, desc: str, compute: bool = True) -> Any:
    """Solve every masked voxel of a dask image block by block.

    Parameters
    ----------
    solver : Model
        Prepared solver (picklable: it is shipped to the workers).
    data : dask array (x, y, z, frame)
        Image with time in one chunk.
    mask : bool array (x, y, z)
        Voxels to fit.
    names : list of str
        Outputs to keep.
    progress : bool
        Progress bar over dask tasks (local scheduler).
    desc : str
        Progress-bar label.
    compute : bool
        Compute now (default); False returns the lazy stacked dask array
        (x, y, z, len(names) + 1; the last channel is the flag).

    Returns
    -------
    array (x, y, z, len(names) + 1) or dask array
    """
    import dask.array as da

    m_d = da.from_array(mask, chunks=data.chunks[:3])[..., None]
    res = da.map_blocks(_solve_block, data, m_d, solver=solver, names=names,
                        chunks=(*data.chunks[:3], (len(names) + 1,)), dtype=np.float32)
    if not compute:
        return res
    if progress and use_bars(sys.stderr):
        from tqdm.dask import TqdmCallback

        with TqdmCallback(desc=desc, unit="task", leave=False, file=sys.stderr):
            return np.asarray(res.compute())
    return np.asarray(res.compute())
