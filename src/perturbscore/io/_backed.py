"""A :class:`~perturbscore.data.RowSource` that reads only the requested rows of an ``.h5ad`` file.

The matrix (``X`` or ``layers/<name>``) stays on disk. For a CSR group the row pointers are read once;
a ``take`` sorts and de-duplicates the requested rows, coalesces adjacent rows into runs, reads each
run's ``data``/``indices`` slice in one go, and hands the rows back in the requested order
(repeats allowed). Dense HDF5 matrices are read run by run the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from .._errors import InputError
from ._matrix import BLOCK_VALUES, iter_row_blocks, lognorm_csr


def matrix_kind(node: h5py.Group | h5py.Dataset) -> str:
    """``"csr"``, ``"csc"`` or ``"dense"`` for an AnnData matrix element."""
    if isinstance(node, h5py.Dataset):
        return "dense"
    enc = node.attrs.get("encoding-type", node.attrs.get("h5sparse_format", ""))
    enc = enc.decode() if isinstance(enc, bytes) else str(enc)
    if enc.startswith("csr"):
        return "csr"
    if enc.startswith("csc"):
        return "csc"
    raise InputError(f"matrix {node.name!r} in {node.file.filename!r} has unknown encoding {enc!r}.")


def _runs(sorted_rows: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted unique rows into half-open runs ``[start, stop)`` of adjacent rows."""
    if sorted_rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    starts = sorted_rows[np.r_[0, breaks]]
    stops = sorted_rows[np.r_[breaks - 1, sorted_rows.size - 1]] + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


#: Longest read (stored values) that merging runs may build: merging saves calls, not unbounded bytes.
MAX_SPAN = 1 << 20


def _merge_spans(
    runs: list[tuple[int, int]], indptr: np.ndarray, gap: int, max_span: int = MAX_SPAN
) -> list[tuple[int, int]]:
    """Merge runs whose stored values lie at most ``gap`` apart, so one read covers both (and the gap).

    A merged read never grows past ``max_span`` values (a long single row is still read whole).
    """
    spans: list[tuple[int, int]] = []
    for start, stop in runs:
        if spans and indptr[start] - indptr[spans[-1][1]] <= gap and indptr[stop] - indptr[spans[-1][0]] <= max_span:
            spans[-1] = (spans[-1][0], stop)
        else:
            spans.append((start, stop))
    return spans


def _positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for every (start, length) pair, vectorised."""
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]  # (rows,)
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


class H5Rows:
    """Read selected rows of an on-disk AnnData matrix (CSR group or dense dataset).

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    key
        HDF5 path of the matrix: ``"X"`` or ``"layers/<name>"``.
    normalize
        If true the stored values are raw counts: each taken row is scaled to 1e4 counts and ``log1p``-ed.
    gap
        Runs of wanted rows separated by at most this many stored values are read in one go (fewer, larger
        reads); ``0`` reads only the wanted rows.
    """

    def __init__(self, path: str | Path, *, key: str = "X", normalize: bool = False, gap: int = 1 << 16) -> None:
        self.path = str(path)
        self.key = key
        self.normalize = normalize
        self.gap = int(gap)
        self._file: h5py.File | None = None
        self._indptr: np.ndarray | None  # row offsets of a CSR matrix (None: dense)
        self._pid = os.getpid()
        node = self._node()
        self.kind = matrix_kind(node)
        if self.kind == "csc":
            raise InputError(
                f"{key!r} in {self.path!r} is stored column-major (CSC), which cannot be read by rows from disk. "
                "Pass backed=False, or rewrite it once as CSR (adata.X = adata.X.tocsr(); adata.write_h5ad(...))."
            )
        if self.kind == "csr":
            shape = node.attrs.get("shape", node.attrs.get("h5sparse_shape"))
            self.shape = (int(shape[0]), int(shape[1]))
            self._indptr = np.asarray(node["indptr"][:], dtype=np.int64)  # (n + 1,)
        else:
            self.shape = (int(node.shape[0]), int(node.shape[1]))
            self._indptr = None

    # -- file handle (reopened lazily, so the object pickles to worker processes) ----------
    def _node(self) -> h5py.Group | h5py.Dataset:
        if self._file is not None and self._pid != os.getpid():  # a forked child: never share the parent's handle
            self._file = None
        if self._file is None:
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[self.key]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def close(self) -> None:
        """Close the underlying file (it reopens on the next ``take``)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"H5Rows({self.path!r}, key={self.key!r}, kind={self.kind!r}, shape={self.shape})"

    # -- reading -----------------------------------------------------------------------------
    def take(self, rows: np.ndarray) -> sp.csr_matrix:
        """Return ``rows`` as a ``(len(rows), n_genes)`` float32 CSR, in the order given (repeats allowed)."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if rows.size and (rows.min() < -self.shape[0] or rows.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        rows = np.where(rows < 0, rows + self.shape[0], rows)
        uniq, inverse = np.unique(rows, return_inverse=True)
        block = self._read_csr(uniq) if self.kind == "csr" else self._read_dense(uniq)  # (len(uniq), G)
        if self.normalize:
            block = lognorm_csr(block)
        return block[inverse]

    def _read_csr(self, uniq: np.ndarray) -> sp.csr_matrix:
        assert self._indptr is not None  # read only for kind == "csr"
        node = self._node()
        data_ds, ind_ds = node["data"], node["indices"]
        lengths = self._indptr[uniq + 1] - self._indptr[uniq]  # (len(uniq),)
        data, indices = [], []
        for start, stop in _merge_spans(_runs(uniq), self._indptr, self.gap):
            lo, hi = int(self._indptr[start]), int(self._indptr[stop])
            i, j = np.searchsorted(uniq, [start, stop])  # wanted rows inside this span
            pos = _positions(self._indptr[uniq[i:j]] - lo, lengths[i:j])  # (nnz of wanted rows,)
            data.append(data_ds[lo:hi][pos])
            indices.append(ind_ds[lo:hi][pos])
        indptr = np.r_[0, np.cumsum(lengths)]
        data_arr = np.concatenate(data).astype(np.float32, copy=False) if data else np.zeros(0, np.float32)
        ind_arr = np.concatenate(indices).astype(np.int32, copy=False) if indices else np.zeros(0, np.int32)
        return sp.csr_matrix((data_arr, ind_arr, indptr), shape=(uniq.size, self.shape[1]))

    def _read_dense(self, uniq: np.ndarray) -> sp.csr_matrix:
        node = self._node()
        blocks = [sp.csr_matrix(np.asarray(node[start:stop], dtype=np.float32)) for start, stop in _runs(uniq)]
        if not blocks:
            return sp.csr_matrix((0, self.shape[1]), dtype=np.float32)
        return sp.vstack(blocks, format="csr", dtype=np.float32)

    # -- validation support ----------------------------------------------------------------
    def stored_values(self, budget: int = BLOCK_VALUES) -> Iterator[np.ndarray]:
        """Yield the stored values in chunks of about ``budget``, for validation without loading the matrix."""
        node = self._node()
        if self.kind == "dense":
            yield from iter_row_blocks(node, budget)
            return
        ds = node["data"]
        for lo in range(0, ds.shape[0], budget):
            yield ds[lo : lo + budget]
