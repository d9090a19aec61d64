"""Find a screen's stored embedding (``obsm`` + ``uns``, or a store beside its file) and attach it to the screen."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data import EMBED_KEY, CellEmbedding, Screen

logger = logging.getLogger(__name__)

#: Largest relative difference between stored and recomputed coordinates of a few cells for an embedding to
#: count as this screen's (float32 sums in another order differ by ~1e-6).
ROW_TOLERANCE = 1e-4


def genes_digest(genes: np.ndarray | list[str]) -> str:
    """SHA-1 of the gene names in order (recorded with an embedding, checked against the screen's)."""
    return hashlib.sha1("\n".join(map(str, genes)).encode()).hexdigest()


def embedding_from(source: Any, *, key: str = EMBED_KEY) -> CellEmbedding | None:
    """Return the embedding stored under ``key`` for ``source``, or ``None``.

    ``source`` is an AnnData (``obsm[key]`` with ``uns[key]``), a :class:`~perturbscore.data.Screen` (its own
    embedding, else what is stored for the file it was read from) or an ``.h5ad`` path (the store
    ``<stem>.<key>/`` beside it, else the file's ``obsm``/``uns``).
    """
    if isinstance(source, Screen):
        if source.embedding is not None and source.embedding.key == key:
            return source.embedding
        path = Path(source.source) if source.source else None
        return embedding_from(path, key=key) if path is not None and path.is_file() else None
    if source is None:
        return None
    if isinstance(source, str | os.PathLike):
        return _from_file(Path(source), key)
    obsm, uns = getattr(source, "obsm", None), getattr(source, "uns", None)
    if obsm is None or uns is None or key not in obsm or key not in uns:
        path = getattr(source, "filename", None)  # a backed AnnData: its file may have a store beside it
        return _from_file(Path(path), key) if path and getattr(source, "isbacked", False) else None
    try:
        return CellEmbedding.from_uns(np.asarray(obsm[key]), uns[key], key=key)
    except (ValueError, KeyError, TypeError) as err:
        logger.warning("obsm/uns[%r] is not a perturbscore embedding (%s); ignored", key, err)
        return None


def _from_file(path: Path, key: str) -> CellEmbedding | None:
    store = CellEmbedding.store_path(path, key)
    if (store / "embedding.json").is_file():
        try:
            return CellEmbedding.load(store)
        except (OSError, ValueError, KeyError) as err:
            logger.warning("%s is not a readable embedding store (%s); ignored", store, err)
            return None
    if path.suffix.lower() != ".h5ad" or not path.is_file():
        return None
    import h5py

    from ..io._read import _read_elem

    try:
        with h5py.File(path, "r") as f:
            if f"obsm/{key}" not in f or f"uns/{key}" not in f:
                return None
            values = np.asarray(f[f"obsm/{key}"][:], dtype=np.float32)  # (cells, components)
            entry = _read_elem(f[f"uns/{key}"])
        return CellEmbedding.from_uns(values, entry, key=key)
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("obsm/uns[%r] of %s is not a perturbscore embedding (%s); ignored", key, path, err)
        return None


def mismatch(embedding: CellEmbedding, screen: Screen) -> str | None:
    """Why ``embedding`` does not belong to ``screen`` (cells, genes, or coordinates of a few cells), else None."""
    if embedding.n_cells != screen.n_cells:
        return f"it has {embedding.n_cells} cells, the screen {screen.n_cells}"
    genes = embedding.params.get("genes_sha1")
    if genes is not None and str(genes) != genes_digest(screen.gene_names):
        return "it was made from other genes (or another gene order)"
    if embedding.front["gene_index"].size and int(embedding.front["gene_index"].max()) >= screen.n_genes:
        return f"its front end reads gene columns beyond the screen's {screen.n_genes}"
    diff = embedding.check_rows(screen.rows)
    if not diff <= ROW_TOLERANCE:
        return (
            f"the stored coordinates of a few cells differ from their expression's by up to {diff:.2g} (relative): "
            "made from another matrix or layer"
        )
    return None


def attach_embedding(screen: Screen, source: Any = None, *, key: str = EMBED_KEY) -> Screen:
    """Set ``screen.embedding`` to the embedding stored for ``source`` (default: the screen's file), if it fits.

    An embedding that does not belong to the screen (other cells, genes or matrix) is ignored with a warning.
    Returns ``screen``.
    """
    if screen.embedding is not None and screen.embedding.key == key:
        return screen
    emb = embedding_from(screen if source is None else source, key=key)
    if emb is None:
        return screen
    problem = mismatch(emb, screen)
    if problem is not None:
        logger.warning("ignoring the stored embedding %r: %s", key, problem)
        return screen
    logger.info("using the stored embedding %s", emb)
    screen.embedding = emb
    return screen
