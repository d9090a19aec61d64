"""Every cell's coordinates under the fixed front end, computed once and kept with the front end that made them.

The default model's front end (gene selection, standardisation, PCA) is a fixed linear map, fitted before
training. :class:`CellEmbedding` holds its output for every cell of a screen, ``(n_cells, n_components)``
float32, in memory or memory-mapped from a ``.npy`` store, together with the fitted map as plain arrays
(:meth:`~perturbscore.nn.FrontEnd.state`) and its fingerprint. Training gathers rows of it instead of
projecting sampled cells at every step; evaluation, scoring and programs read it where the model's front end
has the same fingerprint.

A store on disk is a folder beside the screen, ``<screen stem>.<key>/``, holding ``values.npy`` (the
coordinates), ``front_end.npz`` (the map's arrays; read without pickle) and ``embedding.json`` (key,
fingerprint, shapes, the parameters it was fitted with).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

if TYPE_CHECKING:
    from ..nn import FrontEnd
    from ._screen import RowSource

#: Default key: ``adata.obsm[EMBED_KEY]`` holds the coordinates, ``adata.uns[EMBED_KEY]`` the front end.
EMBED_KEY = "X_perturbscore"
#: ``embedding.json``'s ``format`` field, and the store layout's version.
STORE_FORMAT, STORE_VERSION = "perturbscore-embedding", 1
VALUES_FILE, FRONT_FILE, META_FILE = "values.npy", "front_end.npz", "embedding.json"
_ARRAYS = ("gene_index", "mean", "sd", "components")


def state_fingerprint(state: Mapping[str, Any]) -> str:
    """SHA-1 of a front end's state (kind, and the shape and int64/float32 bytes of each array)."""
    h = hashlib.sha1(str(state.get("kind", "pca")).encode())
    for name, dtype in zip(_ARRAYS, (np.int64, np.float32, np.float32, np.float32), strict=True):
        arr = np.ascontiguousarray(np.asarray(state[name], dtype=dtype))
        h.update(f"{name}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def project_cells(state: Mapping[str, Any], x: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Apply a PCA front end's state to log-normalised cells ``x`` ``(n, n_genes)``: ``(n, n_components)`` float32.

    ``((x[:, genes] - mean) / sd) @ components.T``, computed sparsely as ``x[:, genes] @ (components / sd).T``
    minus the projected mean; the same arithmetic as :meth:`perturbscore.nn.FrontEnd.transform`.
    """
    sel = sp.csr_matrix(x)[:, np.asarray(state["gene_index"])]  # (n, n_sel)
    proj = np.asarray(state["components"], dtype=np.float32) / np.asarray(state["sd"], dtype=np.float32)
    offset = proj @ np.asarray(state["mean"], dtype=np.float32)  # (n_comp,)
    return (np.asarray(sel @ proj.T, dtype=np.float32) - offset).astype(np.float32, copy=False)  # (n, n_comp)


@dataclass(frozen=True)
class EmbeddedCells:
    """Cells already mapped by a front end: ``values`` ``(n, n_components)`` and that front end's fingerprint.

    :class:`~perturbscore.model.PerturbScoreModel` reads these in place of expression when the fingerprint is
    its own front end's (see :meth:`perturbscore.data.Screen.cells`).
    """

    values: np.ndarray
    fingerprint: str

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_cells, n_components)``."""
        return int(self.values.shape[0]), int(self.values.shape[1])

    def tensor(self) -> torch.Tensor:
        """Return the coordinates as a float32 tensor (a copy only where the array is not contiguous float32)."""
        return torch.from_numpy(np.ascontiguousarray(self.values, dtype=np.float32))


class CellEmbedding:
    """Front-end coordinates of every cell of a screen, with the fitted front end.

    Parameters
    ----------
    values
        ``(n_cells, n_components)`` float32, rows in the screen's cell order (in memory or memory-mapped).
    front
        The fitted map, :meth:`perturbscore.nn.FrontEnd.state` (arrays or lists).
    key
        Its name: the ``obsm``/``uns`` key, and the store's suffix.
    params
        How it was made (keys, preset, sample sizes, seed; JSON-safe), for the record.
    path
        The store it was read from or written to, if any.
    """

    def __init__(
        self,
        values: np.ndarray,
        front: Mapping[str, Any],
        *,
        key: str = EMBED_KEY,
        params: Mapping[str, Any] | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.front: dict[str, Any] = {
            "kind": str(front.get("kind", "pca")),
            "gene_index": np.asarray(front["gene_index"], dtype=np.int64),
            "mean": np.asarray(front["mean"], dtype=np.float32),
            "sd": np.asarray(front["sd"], dtype=np.float32),
            "components": np.asarray(front["components"], dtype=np.float32),
        }
        if self.front["kind"] != "pca":
            raise ValueError("only a PCA front end maps cells to coordinates; f on raw genes reads the genes")
        n_comp, n_sel = self.front["components"].shape
        if not (self.front["gene_index"].shape == self.front["mean"].shape == self.front["sd"].shape == (n_sel,)):
            raise ValueError("the stored front end's arrays disagree in size (gene_index, mean, sd, components)")
        if values.ndim != 2 or values.shape[1] != n_comp:
            raise ValueError(f"coordinates have shape {values.shape}; the front end has {n_comp} components")
        self.values = values if values.dtype == np.float32 else np.asarray(values, dtype=np.float32)
        self.key, self.params = key, dict(params or {})
        self.path = None if path is None else Path(path)
        self.fingerprint = state_fingerprint(self.front)

    def __repr__(self) -> str:
        where = f", store={str(self.path)!r}" if self.path is not None else ""
        return f"CellEmbedding({self.key!r}, {self.n_cells} cells x {self.n_components} components{where})"

    # -- sizes and rows ------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        """Cells (rows)."""
        return int(self.values.shape[0])

    @property
    def n_components(self) -> int:
        """Coordinates per cell."""
        return int(self.values.shape[1])

    @property
    def n_selected(self) -> int:
        """Genes the front end reads."""
        return int(self.front["gene_index"].size)

    def take(self, rows: np.ndarray) -> torch.Tensor:
        """Gather ``rows`` (repeats allowed): ``(len(rows), n_components)`` float32 tensor."""
        return torch.from_numpy(self.values[np.asarray(rows, dtype=np.int64)])

    def cells(self, rows: np.ndarray) -> EmbeddedCells:
        """``rows`` as :class:`EmbeddedCells`, for a model whose front end this is."""
        return EmbeddedCells(self.values[np.asarray(rows, dtype=np.int64)], self.fingerprint)

    def matches(self, front: FrontEnd | str) -> bool:
        """Whether ``front`` (a :class:`~perturbscore.nn.FrontEnd` or a fingerprint) is the map that made these."""
        return (front if isinstance(front, str) else front.fingerprint) == self.fingerprint

    def check_rows(self, rows: RowSource, *, n: int = 32, seed: int = 0) -> float:
        """Largest relative difference between stored and recomputed coordinates of ``n`` random cells of ``rows``.

        A cheap test that the embedding belongs to this matrix (same cells in the same order, the same layer
        and normalisation): ~1e-6 when it does.
        """
        if rows.shape[0] != self.n_cells:
            return float("inf")
        pick = np.sort(np.random.default_rng(seed).choice(self.n_cells, size=min(n, self.n_cells), replace=False))
        fresh = project_cells(self.front, rows.take(pick))  # (n, n_comp)
        stored = np.asarray(self.values[pick], dtype=np.float32)
        return float(np.abs(fresh - stored).max() / max(1.0, float(np.abs(fresh).max())))

    # -- AnnData (obsm + uns) ------------------------------------------------------------------
    def to_uns(self) -> dict[str, Any]:
        """``adata.uns[key]``: the front end's arrays, the fingerprint and the parameters (h5ad- and JSON-safe)."""
        front = {"kind": self.front["kind"], **{name: self.front[name] for name in _ARRAYS}}
        return {"front_end": front, "fingerprint": self.fingerprint, "params": _h5_safe(self.params)}

    @classmethod
    def from_uns(cls, values: np.ndarray, entry: Mapping[str, Any], *, key: str = EMBED_KEY) -> CellEmbedding:
        """Rebuild from ``adata.obsm[key]`` and ``adata.uns[key]`` (refuses an entry whose fingerprint disagrees)."""
        front = entry.get("front_end")
        if not isinstance(front, Mapping) or any(name not in front for name in _ARRAYS):
            raise ValueError(
                f"uns[{key!r}] holds no perturbscore front end (front_end: gene_index, mean, sd, components)"
            )
        emb = cls(np.asarray(values), front, key=key, params=dict(entry.get("params") or {}))
        stored = entry.get("fingerprint")
        if stored is not None and str(stored) != emb.fingerprint:
            raise ValueError(f"uns[{key!r}]'s fingerprint does not match its front end's arrays (edited by hand?)")
        return emb

    # -- a store on disk -----------------------------------------------------------------------
    @staticmethod
    def store_path(screen: str | Path, key: str = EMBED_KEY) -> Path:
        """Return the store folder of ``key`` beside the screen file: ``<folder>/<stem>.<key>``."""
        screen = Path(screen)
        return screen.with_name(f"{screen.stem}.{key}")

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the store (``values.npy``, ``front_end.npz``, ``embedding.json``) into ``folder``, atomically."""
        folder = Path(folder)
        partial = start_store(folder, self.n_cells, self.n_components, overwrite=overwrite)
        out = np.load(partial / VALUES_FILE, mmap_mode="r+", allow_pickle=False)
        for lo in range(0, self.n_cells, 1 << 16):
            out[lo : lo + (1 << 16)] = self.values[lo : lo + (1 << 16)]
        out.flush()
        del out
        return finish_store(partial, folder, self.front, key=self.key, params=self.params)

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> CellEmbedding:
        """Read a store written by :meth:`save` or the embedding pass; ``mmap``: leave the coordinates on disk."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != STORE_FORMAT:
            raise ValueError(f"{folder} is not a perturbscore embedding store")
        with np.load(folder / FRONT_FILE, allow_pickle=False) as z:
            front = {"kind": str(meta.get("kind", "pca")), **{name: z[name] for name in _ARRAYS}}
        values = np.load(folder / VALUES_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        emb = cls(values, front, key=str(meta.get("key", EMBED_KEY)), params=meta.get("params") or {}, path=folder)
        if meta.get("fingerprint") not in (None, emb.fingerprint):
            raise ValueError(f"{folder}: the front end's arrays do not match the fingerprint in {META_FILE}")
        return emb


def start_store(folder: Path, n_cells: int, n_components: int, *, overwrite: bool = False) -> Path:
    """Create ``<folder>.partial`` with an empty ``values.npy`` ``(n_cells, n_components)`` float32 to fill.

    Chunks of rows are written into it by whoever computes them (threads, or Dask workers sharing the file
    system); :func:`finish_store` moves it into place once every row is written.
    """
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True (--overwrite) to replace it")
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    np.lib.format.open_memmap(partial / VALUES_FILE, mode="w+", dtype=np.float32, shape=(n_cells, n_components)).flush()
    return partial


def write_rows(partial: str | Path, lo: int, values: np.ndarray) -> int:
    """Write ``values`` into rows ``lo:lo + len(values)`` of a started store; returns the rows written."""
    out = np.load(Path(partial) / VALUES_FILE, mmap_mode="r+", allow_pickle=False)
    out[lo : lo + len(values)] = values
    out.flush()
    del out
    return len(values)


def finish_store(partial: Path, folder: Path, front: Mapping[str, Any], *, key: str, params: Mapping[str, Any]) -> Path:
    """Write the front end and ``embedding.json`` into ``partial`` and move it to ``folder`` (replacing it)."""
    state = {"kind": str(front.get("kind", "pca")), **{name: np.asarray(front[name]) for name in _ARRAYS}}
    arrays: dict[str, np.ndarray] = {name: np.asarray(state[name]) for name in _ARRAYS}
    np.savez(partial / FRONT_FILE, **arrays)  # type: ignore[arg-type]
    values = np.load(partial / VALUES_FILE, mmap_mode="r", allow_pickle=False)
    meta = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "key": key,
        "kind": state["kind"],
        "n_cells": int(values.shape[0]),
        "n_components": int(values.shape[1]),
        "fingerprint": state_fingerprint(state),
        "params": _plain(dict(params)),
    }
    del values
    (partial / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
    return folder


def _plain(obj: Any) -> Any:
    """JSON-ready copy: arrays to lists, numpy scalars to Python ones."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _h5_safe(obj: Any) -> Any:
    """Copy writable by anndata's h5ad writer: string keys, ``None`` as ``"none"``, string lists as arrays."""
    if isinstance(obj, Mapping):
        return {str(k): _h5_safe(v) for k, v in obj.items()}
    if obj is None:
        return "none"
    if isinstance(obj, list | tuple):
        return np.asarray([str(v) for v in obj]) if all(isinstance(v, str) for v in obj) else np.asarray(obj)
    return obj
