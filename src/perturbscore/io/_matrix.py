"""In-memory expression matrices: CSR conversion in row chunks and count normalisation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

#: Target library size of the on-the-fly normalisation (counts per 10k, then log1p).
TARGET_SUM = 1e4
#: Values (rows x genes) read at a time when a dense matrix is scanned or becomes CSR (64 MB of float32).
BLOCK_VALUES = 1 << 24


def lognorm_csr(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Normalise raw counts per cell to ``TARGET_SUM`` and take ``log1p``; returns float32 CSR.

    Cells with no counts stay all zero. Works row-locally, so it gives the same answer on any row subset.
    """
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    lib = np.asarray(out.sum(axis=1), dtype=np.float64).ravel()  # (n,)
    scale = np.divide(TARGET_SUM, lib, out=np.zeros_like(lib), where=lib > 0)
    out.data = np.log1p(out.data * np.repeat(scale, np.diff(out.indptr))).astype(np.float32)
    return out


def iter_row_blocks(matrix: Any, budget: int = BLOCK_VALUES) -> Iterator[np.ndarray]:
    """Yield dense ``(rows, n_genes)`` row blocks of about ``budget`` values from an ndarray or h5py dataset."""
    n_rows, n_cols = int(matrix.shape[0]), int(matrix.shape[1])
    step = max(1, budget // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield np.asarray(matrix[start : start + step])


def to_csr(matrix: Any, budget: int = BLOCK_VALUES) -> sp.csr_matrix:
    """Convert any 2-D matrix (sparse, ndarray, h5py dataset) to float32 CSR without densifying it whole."""
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix, dtype=np.float32)
    blocks = [sp.csr_matrix(b, dtype=np.float32) for b in iter_row_blocks(matrix, budget)]
    if not blocks:
        return sp.csr_matrix(tuple(matrix.shape), dtype=np.float32)
    return sp.vstack(blocks, format="csr", dtype=np.float32)


def stored_values(matrix: Any, budget: int = BLOCK_VALUES) -> Iterator[np.ndarray]:
    """Yield the stored values of a matrix in chunks (``data`` of a sparse matrix, dense row blocks)."""
    if sp.issparse(matrix):
        yield matrix.data
    else:
        yield from iter_row_blocks(matrix, budget)
