"""The embedding pass: every cell through a fitted front end, in row chunks, in memory or into a store on Dask."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import track
from ..data import CellEmbedding, InMemoryRows, RowSource, project_cells
from ..data._embedding import finish_store, start_store, write_rows

logger = logging.getLogger(__name__)

#: Rows per chunk of the pass (a chunk of a 8,000-gene screen at ~1,400 stored values per cell is ~90 MB).
CHUNK_ROWS = 8192
#: Largest embedding computed into memory when training finds none; beyond it, a temporary store on disk.
IN_MEMORY_BYTES = 1 << 30


def _embed_chunk(rows: RowSource, front: Mapping[str, Any], lo: int, hi: int, partial: str | None) -> Any:
    """Project rows ``lo:hi``; into the store being written at ``partial`` (returns the count), else returned."""
    values = project_cells(front, rows.take(np.arange(lo, hi)))  # (hi - lo, n_comp)
    return values if partial is None else write_rows(partial, lo, values)


def embed_rows(
    rows: RowSource,
    front: Mapping[str, Any],
    *,
    store: str | Path | None = None,
    key: str,
    params: Mapping[str, Any] | None = None,
    chunk: int = CHUNK_ROWS,
    scheduler: Any = None,
    dask: bool | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> CellEmbedding:
    """Map every row of ``rows`` through the front end ``front`` (a :meth:`~perturbscore.nn.FrontEnd.state`).

    Parameters
    ----------
    rows
        The screen's expression (in memory, or read from disk chunk by chunk).
    front
        The fitted front end's arrays.
    store
        A store folder to write (``values.npy`` memory-mapped, filled chunk by chunk; the result reads it
        memory-mapped). ``None``: the coordinates are returned in memory.
    key, params
        The embedding's name and record.
    chunk
        Rows per chunk (one Dask task each).
    scheduler
        ``None``: local threads. A Dask scheduler address (``"tcp://host:8786"``) or a
        ``distributed.Client``: the chunks run on that cluster, whose workers write into ``store`` (a folder
        they all see: a shared file system).
    dask
        Run the chunks as Dask tasks (default: with a store or a scheduler; an in-memory screen with neither
        runs in a plain loop).
    overwrite
        Replace an existing store.
    progress
        Show a progress bar (the plain loop only).
    """
    n = int(rows.shape[0])
    n_comp = int(np.asarray(front["components"]).shape[0])
    bounds = [(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]
    use_dask = (store is not None or scheduler is not None) if dask is None else dask
    t0 = time.perf_counter()
    partial = None if store is None else start_store(Path(store), n, n_comp, overwrite=overwrite)
    where = None if partial is None else str(partial)
    if use_dask:
        results = _run_dask(rows, front, bounds, where, scheduler)
    else:
        results = [
            _embed_chunk(rows, front, lo, hi, where)
            for lo, hi in track(bounds, progress=progress, description="embedding cells", total=len(bounds))
        ]
    seconds = time.perf_counter() - t0
    record = {
        **dict(params or {}),
        "pass_seconds": round(seconds, 3),
        "cells_per_second": round(n / max(seconds, 1e-9)),
    }
    logger.info("embedded %d cells in %.1f s (%.0f cells/s)%s", n, seconds, n / max(seconds, 1e-9),
                " on Dask" if use_dask else "")  # fmt: skip
    if partial is None:
        values = np.concatenate(results) if results else np.zeros((0, n_comp), dtype=np.float32)  # (n, n_comp)
        return CellEmbedding(values, front, key=key, params=record)
    if sum(int(r) for r in results) != n:
        raise RuntimeError(f"the embedding pass wrote {sum(int(r) for r in results)} of {n} rows")
    folder = finish_store(partial, Path(store), front, key=key, params=record)  # type: ignore[arg-type]
    return CellEmbedding.load(folder)


def _run_dask(
    rows: RowSource, front: Mapping[str, Any], bounds: list[tuple[int, int]], partial: str | None, scheduler: Any
) -> list[Any]:
    """Run :func:`_embed_chunk` over ``bounds`` as Dask tasks: local threads, or the cluster ``scheduler``."""
    import dask

    rows_d = dask.delayed(rows, traverse=False)  # one graph node each, shared by every task
    front_d = dask.delayed(dict(front), traverse=False)
    tasks = [dask.delayed(_embed_chunk, pure=True)(rows_d, front_d, lo, hi, partial) for lo, hi in bounds]
    if scheduler is None:
        return list(dask.compute(*tasks, scheduler="threads"))
    from distributed import Client

    if isinstance(scheduler, Client):
        return list(scheduler.gather(scheduler.compute(tasks)))
    with Client(str(scheduler)) as client:
        return list(client.gather(client.compute(tasks)))


def embedding_for_training(rows: RowSource, front: Mapping[str, Any], *, key: str, progress: bool) -> CellEmbedding:
    """Compute the embedding once at the start of training: in memory, or a temporary store for a large screen.

    A screen in memory runs in a plain loop; one read from disk runs on Dask's local threads (reads and
    products overlap). The temporary store (``params["temporary"]``) is the caller's to delete.
    """
    n, n_comp = int(rows.shape[0]), int(np.asarray(front["components"]).shape[0])
    record = {"computed_by": "training"}
    on_disk = not isinstance(rows, InMemoryRows)
    if n * n_comp * 4 <= IN_MEMORY_BYTES:
        return embed_rows(rows, front, key=key, params=record, dask=on_disk or None, progress=progress)
    folder = Path(tempfile.mkdtemp(prefix="perturbscore-embedding-")) / key
    logger.info("writing the embedding of %d cells to a temporary store %s", n, folder)
    return embed_rows(rows, front, store=folder, key=key, params=record | {"temporary": str(folder.parent)})
