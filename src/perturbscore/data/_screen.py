"""The validated, in-memory screen that every later stage works on.

A :class:`Screen` holds what training, evaluation and scoring need, and nothing AnnData-specific:
a row source for expression (CSR in memory, or a reader over a file on disk), the cells of every
perturbation, integer state codes in a fixed saved order, and ``q(P)`` per perturbation.
Build one with :func:`perturbscore.io.read_screen` (from an ``.h5ad`` path or an AnnData in memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from ._embedding import CellEmbedding, EmbeddedCells

if TYPE_CHECKING:
    from ..nn import FrontEnd


@runtime_checkable
class RowSource(Protocol):
    """Anything that can hand back selected cells' expression as CSR (rows in the order asked)."""

    shape: tuple[int, int]

    def take(self, rows: np.ndarray) -> sp.csr_matrix:
        """Return the log-normalised expression of ``rows`` as a ``(len(rows), n_genes)`` float32 CSR."""
        ...


@dataclass
class InMemoryRows:
    """A :class:`RowSource` over a CSR matrix held in memory (never densified whole)."""

    matrix: sp.csr_matrix

    def __post_init__(self) -> None:
        self.matrix = sp.csr_matrix(self.matrix, dtype=np.float32)
        self.shape = self.matrix.shape

    def take(self, rows: np.ndarray) -> sp.csr_matrix:
        """Gather ``rows`` (a CSR row slice; repeats allowed)."""
        return self.matrix[np.asarray(rows, dtype=np.int64)]


@dataclass
class GeneFeatures:
    """Sequence features per gene: ``values[i]`` is a ``(windows, dim)`` array for ``genes[i]``.

    A gene × dim table is stored with ``windows == 1``.
    """

    genes: np.ndarray
    values: np.ndarray  # (n_genes, windows, dim) float32
    source: str = ""

    def __post_init__(self) -> None:
        self.genes = np.asarray(self.genes, dtype=str)
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim == 2:
            self.values = self.values[:, None, :]  # (n_genes, 1, dim)
        self._index = {g: i for i, g in enumerate(self.genes)}

    @property
    def shape(self) -> tuple[int, int]:
        """``(windows, dim)`` of each gene's array."""
        return self.values.shape[1], self.values.shape[2]

    def __contains__(self, gene: object) -> bool:
        return gene in self._index

    def get(self, genes: list[str] | np.ndarray) -> np.ndarray:
        """Return the ``(len(genes), windows, dim)`` block for ``genes`` (all must be present)."""
        return self.values[[self._index[g] for g in genes]]


@dataclass
class Screen:
    """A validated perturbation screen.

    Attributes
    ----------
    rows
        Expression source: ``rows.take(idx)`` gives log-normalised CSR rows.
    gene_names
        Names of the expression genes (columns), length ``n_genes``.
    perturbations
        Perturbation names (the control label included if present), length ``P``.
    cell_index
        For each perturbation, the row indices of its cells.
    state_codes
        Integer state of every cell, indexing ``states``.
    states
        State names in the fixed order used everywhere (targets, proportions, saved models).
    control
        The control label, or ``None`` when the screen has no control cells.
    features
        Sequence features of the perturbed genes, if loaded.
    source
        Where the screen came from (a path, or a description).
    embedding
        Every cell's coordinates under a fitted front end (:func:`perturbscore.pp.embed`), if known: training,
        evaluation, scoring and programs read them instead of projecting the cells' expression.
    keys
        The ``obs`` keys, control label and layer the screen was read with (``perturbation_key``,
        ``state_key``, ``control``, ``layer``); empty when it was not read from an AnnData. A model trained
        on the screen keeps them, so that a screen is read the same way to evaluate or score it.
    """

    rows: RowSource
    gene_names: np.ndarray
    perturbations: list[str]
    cell_index: list[np.ndarray]
    state_codes: np.ndarray
    states: tuple[str, ...]
    control: str | None = None
    features: GeneFeatures | None = None
    source: str = ""
    truth: dict = field(default_factory=dict)
    embedding: CellEmbedding | None = None
    keys: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.gene_names = np.asarray(self.gene_names, dtype=str)
        self.state_codes = np.asarray(self.state_codes, dtype=np.int64)
        self.cell_index = [np.asarray(ix, dtype=np.int64) for ix in self.cell_index]
        self._pindex = {p: i for i, p in enumerate(self.perturbations)}

    # -- sizes ------------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        """Number of cells (rows)."""
        return int(self.rows.shape[0])

    @property
    def n_genes(self) -> int:
        """Number of expression genes (columns)."""
        return int(self.rows.shape[1])

    @property
    def n_states(self) -> int:
        """Number of cell states ``C``."""
        return len(self.states)

    @property
    def counts(self) -> np.ndarray:
        """Cells per perturbation, ``(P,)``."""
        return np.array([len(ix) for ix in self.cell_index], dtype=np.int64)

    @property
    def state_counts(self) -> np.ndarray:
        """Cells per perturbation and state, ``(P, C)``."""
        out = np.zeros((len(self.perturbations), self.n_states), dtype=np.int64)
        for p, ix in enumerate(self.cell_index):
            out[p] = np.bincount(self.state_codes[ix], minlength=self.n_states)
        return out

    @property
    def proportions(self) -> np.ndarray:
        """``q(P)``: state proportions over all cells of each perturbation, ``(P, C)``."""
        c = self.state_counts.astype(np.float64)
        return c / np.maximum(c.sum(axis=1, keepdims=True), 1)

    @property
    def knockouts(self) -> list[str]:
        """Perturbation names without the control."""
        return [p for p in self.perturbations if p != self.control]

    def index_of(self, perturbation: str) -> int:
        """Position of ``perturbation`` in :attr:`perturbations`."""
        return self._pindex[perturbation]

    def subset(self, perturbations: list[str]) -> Screen:
        """Return a screen view restricted to ``perturbations`` (rows are shared, not copied)."""
        keep = [self._pindex[p] for p in perturbations]
        return Screen(
            rows=self.rows,
            gene_names=self.gene_names,
            perturbations=list(perturbations),
            cell_index=[self.cell_index[i] for i in keep],
            state_codes=self.state_codes,
            states=self.states,
            control=self.control if self.control in perturbations else None,
            features=self.features,
            source=self.source,
            truth=self.truth,
            embedding=self.embedding,
        )

    def cells(
        self, rows: np.ndarray, *, front: FrontEnd | None = None, cols: np.ndarray | None = None
    ) -> sp.csr_matrix | EmbeddedCells:
        """Return what a model with front end ``front`` reads for the cells ``rows``.

        The stored coordinates (:class:`EmbeddedCells`) when the screen's :attr:`embedding` was made by
        ``front`` (and the model reads the screen's genes in their order: ``cols`` is None); else the cells'
        log-normalised expression (CSR), in the columns ``cols`` (the model's gene order; ``None``: the
        screen's own).
        """
        if front is not None and cols is None and self.embedding is not None and self.embedding.matches(front):
            return self.embedding.cells(rows)
        x = self.rows.take(rows)  # (n, screen genes)
        return x if cols is None else sp.csr_matrix(x[:, cols])  # (n, model genes)

    def feature_block(self, perturbations: list[str] | None = None) -> np.ndarray:
        """Features of ``perturbations`` (default: all), ``(P, windows, dim)``; raises if absent."""
        if self.features is None:
            raise ValueError("this screen has no gene features loaded; pass features=... when reading it")
        return self.features.get(perturbations if perturbations is not None else self.perturbations)

    def summary(self) -> dict:
        """Return a JSON-friendly summary for reports and logs."""
        counts = self.counts
        return {
            "source": self.source,
            "n_cells": self.n_cells,
            "n_genes": self.n_genes,
            "n_perturbations": len(self.perturbations),
            "control": self.control,
            "states": list(self.states),
            "cells_per_perturbation": {
                "min": int(counts.min()),
                "median": float(np.median(counts)),
                "max": int(counts.max()),
            },
            "features": None if self.features is None else list(self.features.shape),
        }
