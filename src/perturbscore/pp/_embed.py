"""``pp.embed``: fit the fixed front end once and keep every cell's coordinates with it."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .._constants import KEYS
from .._errors import InputError
from ..data import EMBED_KEY, CellEmbedding, InMemoryRows, Screen
from ._find import genes_digest
from ._pass import CHUNK_ROWS, embed_rows

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

#: Training options that decide the front end (:func:`embed` takes these; the preset gives the rest).
FRONT_END_OPTIONS = frozenset(
    {"n_top_genes", "n_components", "front_end_cells", "seed", "split_seed", "n_train", "n_val"}
)


def embed(
    data: ad.AnnData | Screen | str | os.PathLike[str],
    *,
    key_added: str = EMBED_KEY,
    perturbation_key: str = KEYS.perturbation,
    state_key: str = KEYS.state,
    control: str | None = KEYS.control,
    layer: str | None = None,
    min_cells: int = 1,
    small: str = "drop",
    preset_name: str = "default",
    backed: bool | None = None,
    store: str | os.PathLike[str] | None = None,
    scheduler: Any = None,
    chunk: int = CHUNK_ROWS,
    overwrite: bool = False,
    copy: bool = False,
    progress: bool = False,
    **options: Any,
) -> CellEmbedding | ad.AnnData:
    """Fit the model's fixed front end (gene selection, standardisation, PCA) and map every cell through it.

    The front end is fitted exactly as training fits it (on up to ``front_end_cells`` cells of the training
    knockouts of the preset's split), so a model trained on the embedded screen is the one it would be
    without the embedding; training, evaluation, scoring and programs then read the stored coordinates instead
    of projecting cells (they check it is their own front end by its fingerprint).

    Parameters
    ----------
    data
        An AnnData (in memory: the result goes to ``obsm[key_added]`` and ``uns[key_added]``), an ``.h5ad``
        path (read from disk in row chunks; the result is a store beside it, ``<stem>.<key_added>/``, which
        training memory-maps), or a :class:`~perturbscore.data.Screen` (its ``embedding`` is set).
    key_added
        Name of the embedding: the ``obsm``/``uns`` key, and the store's suffix.
    perturbation_key, state_key, control, layer, min_cells, small
        How the screen is read (see :func:`~perturbscore.io.read_screen`); use the ones you train with.
    preset_name
        The training preset whose front end is fitted (``"default"``; the seed presets' ``f`` reads raw genes
        and has nothing to embed).
    backed
        Read an ``.h5ad`` path's matrix from disk in chunks (default) or load it into memory first (``False``).
    store
        Store folder (default: beside the ``.h5ad``). An AnnData in memory is stored in it too when given.
    scheduler
        Where the pass runs: ``None``, Dask's local threads for a store (a plain loop for an AnnData in memory);
        a Dask scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``, that cluster, whose
        workers must see the store's folder (a shared file system).
    chunk
        Cells per chunk (one Dask task each).
    overwrite
        Replace an existing store.
    copy
        Write into a copy of the AnnData and return it.
    progress
        Show a progress bar (the plain loop only).
    **options
        Front-end options of training: ``n_top_genes``, ``n_components``, ``front_end_cells``, ``seed``,
        ``split_seed``, ``n_train``, ``n_val`` (default: the preset's).

    Returns
    -------
    CellEmbedding or anndata.AnnData
        The embedding (``params`` records how it was made, the pass's seconds and cells per second); with
        ``copy=True``, the annotated copy of the AnnData.
    """
    from ..io import read_screen
    from ..nn import FrontEnd
    from ..train import fit_front_end, model_config_for, preset, split_perturbations

    unknown = sorted(set(options) - FRONT_END_OPTIONS)
    if unknown:
        raise InputError(f"embed takes the front-end options {sorted(FRONT_END_OPTIONS)}, not {unknown}")
    tcfg, mover = preset(preset_name, **options)
    if copy and not _is_anndata(data):
        raise InputError("copy=True needs an AnnData")
    adata = data.copy() if copy else data  # type: ignore[union-attr]
    path = _file_of(adata)
    if isinstance(adata, Screen):
        screen = adata
    else:
        keys = {"perturbation_key": perturbation_key, "state_key": state_key, "control": control, "layer": layer}
        on_disk = path is not None and (backed is None or backed)  # a file: read in chunks unless told not to
        screen = read_screen(adata if _is_anndata(adata) else Path(adata), **keys, min_cells=min_cells, small=small,
                             backed=on_disk)  # fmt: skip
    mcfg = model_config_for(screen, tcfg, **mover)
    if mcfg.front_end != "pca":
        raise InputError(f"preset {preset_name!r} reads raw genes (front_end='genes'): its f has no front end to embed")
    split = split_perturbations(screen, n_train=tcfg.n_train, n_val=tcfg.n_val, seed=tcfg.split_seed)
    front = FrontEnd(mcfg)
    t0 = time.perf_counter()
    fit_front_end(front, screen, split.train, n_cells=tcfg.front_end_cells, seed=tcfg.seed)
    fit_s = time.perf_counter() - t0
    params = {
        "preset": preset_name, "perturbation_key": perturbation_key, "state_key": state_key,
        "control": "none" if control is None else control, "layer": "X" if layer is None else layer,
        "n_top_genes": mcfg.n_top_genes, "n_components": mcfg.n_components, "front_end_cells": tcfg.front_end_cells,
        "seed": tcfg.seed, "split_seed": tcfg.split_seed, "n_train": tcfg.n_train, "n_val": tcfg.n_val,
        "n_cells": screen.n_cells, "n_genes": screen.n_genes, "genes_sha1": genes_digest(screen.gene_names),
        "fit_seconds": round(fit_s, 3),
    }  # fmt: skip
    in_memory = isinstance(adata, Screen) and isinstance(screen.rows, InMemoryRows)
    if store is None and path is not None and not in_memory:  # a file (path, backed AnnData, screen on disk)
        store = CellEmbedding.store_path(path, key_added)
    try:
        emb = embed_rows(screen.rows, front.state(), store=None if store is None else Path(store), key=key_added, params=params, chunk=chunk,
                         scheduler=scheduler, overwrite=overwrite, progress=progress)  # fmt: skip
    except FileExistsError as err:
        raise InputError(f"{err}; or choose another key (--key)") from err
    logger.info("front end fitted in %.1f s; %s", fit_s, emb)
    screen.embedding = emb
    if _is_anndata(adata) and not getattr(adata, "isbacked", False):
        adata = cast("ad.AnnData", adata)
        adata.obsm[key_added] = emb.values if emb.path is None else emb.values[:]  # (cells, n_components)
        adata.uns[key_added] = emb.to_uns()
    return adata if copy else emb


def _is_anndata(obj: object) -> bool:
    return not isinstance(obj, Screen | str | os.PathLike) and hasattr(obj, "obs") and hasattr(obj, "obsm")


def _file_of(data: object) -> Path | None:
    """Return the ``.h5ad`` file behind ``data`` (a path, a backed AnnData, a screen read from a file), or None."""
    if isinstance(data, str | os.PathLike):
        return Path(data)
    if isinstance(data, Screen):
        return Path(data.source) if data.source and Path(data.source).is_file() else None
    if getattr(data, "isbacked", False):
        return Path(data.filename)  # type: ignore[attr-defined]
    return None
