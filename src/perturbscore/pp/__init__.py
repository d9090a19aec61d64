"""Preprocessing: fit the fixed front end once and store every cell's coordinates (scanpy's ``pp`` habit).

:func:`embed` fits the default model's front end (gene selection, standardisation, PCA) as training would and
writes each cell's coordinates to ``adata.obsm[key]`` with the fitted map in ``adata.uns[key]`` (or, for a
screen read from disk, a store beside the ``.h5ad``, written in row chunks on Dask). Training, evaluation,
scoring and programs read the stored coordinates whenever they are their own front end's.
"""

from ..data import EMBED_KEY, CellEmbedding, EmbeddedCells
from ._embed import FRONT_END_OPTIONS, embed
from ._find import attach_embedding, embedding_from
from ._pass import embed_rows

__all__ = [
    "EMBED_KEY",
    "FRONT_END_OPTIONS",
    "CellEmbedding",
    "EmbeddedCells",
    "attach_embedding",
    "embed",
    "embed_rows",
    "embedding_from",
]
