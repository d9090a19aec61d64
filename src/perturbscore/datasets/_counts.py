"""Negative-binomial UMI counts for the cells of a synthetic screen, in chunks of cells, as CSR.

A gene's mean in a cell is ``library * share * exp(state markers + programs - knockout drop)``,
where ``share`` is the gene's share of a whole transcriptome of :data:`REFERENCE_GENES` genes (so a
smaller panel captures fewer UMIs per cell, with the same sparsity per gene).

Genes whose mean can matter for overdispersion (the modules, the knocked-out genes, and background
genes with ``phi * mean >= 0.1`` in large cells) are drawn exactly as gamma-Poisson. The rest, whose
negative-binomial excess variance ``phi * mean^2`` is under 10% of the mean, are drawn as Poisson:
a Poisson total per cell placed on genes by their shares, which equals independent Poissons and
costs time only per UMI, not per entry. Nothing dense larger than a chunk is ever built.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._utils import track
from ._cells import CellPlan
from ._design import BACKGROUND_SD, REFERENCE_GENES, Design

CHUNK = 2_048  # cells per chunk; fixed, so results do not depend on the number of threads


@dataclass
class _Layout:
    """Which columns are drawn densely (gamma-Poisson) and which as pooled Poisson."""

    dense_cols: np.ndarray  # (D,)
    base: np.ndarray  # (D,) log share
    phi: np.ndarray  # (D,)
    special_pos: np.ndarray  # (S,) positions of the module genes among dense_cols
    marker: np.ndarray  # (C, S) float32
    program: np.ndarray  # (K, S) float32
    ko_pos: np.ndarray  # (n_knockouts,) position of each knocked-out gene among dense_cols (-1: off the panel)
    low_cols: np.ndarray  # (G - D,)
    low_cum: np.ndarray  # (G - D,) cumulative share of the Poisson genes


def simulate_counts(
    design: Design, plan: CellPlan, *, seed: np.random.SeedSequence, progress: bool = False
) -> sp.csr_matrix:
    """Raw UMI counts ``(n_cells, n_genes)`` as float32 CSR with sorted indices."""
    parts = list(iter_counts(design, plan, seed=seed, progress=progress))
    return sp.vstack(parts, format="csr", dtype=np.float32)


def iter_counts(
    design: Design,
    plan: CellPlan,
    *,
    seed: np.random.SeedSequence,
    order: np.ndarray | None = None,
    progress: bool = False,
) -> Iterator[sp.csr_matrix]:
    """Raw UMI counts of the cells ``order`` (default: plan order), :data:`CHUNK` rows at a time, in order.

    Chunks are drawn on a few threads with at most two per thread in flight, so memory stays at a few
    chunks whatever the screen's size; the same seed gives the same counts for any number of threads.
    """
    layout = _layout(design, plan)
    order = np.arange(plan.n_cells) if order is None else np.asarray(order, dtype=np.int64)
    starts = list(range(0, order.size, CHUNK))
    seeds = seed.spawn(len(starts))
    n_genes = design.genes.size

    def run(i: int) -> sp.csr_matrix:
        rows = order[starts[i] : starts[i] + CHUNK]
        return _chunk(layout, plan, rows, n_genes, np.random.default_rng(seeds[i]))

    workers = max(1, min(4, os.cpu_count() or 1, len(starts)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[sp.csr_matrix]] = deque()
        for i in track(range(len(starts)), progress=progress, description="cells", total=len(starts)):
            pending.append(pool.submit(run, i))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def log_normalize(counts: sp.csr_matrix, *, target: float = 1e4) -> sp.csr_matrix:
    """``log1p`` of counts scaled to ``target`` per cell (CP10k), float32 CSR with the same pattern."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = (target / np.maximum(totals, 1.0)).astype(np.float32)
    per_entry = np.repeat(scale, np.diff(counts.indptr))
    data = np.log1p(counts.data.astype(np.float32) * per_entry)
    return sp.csr_matrix((data, counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)


def _layout(design: Design, plan: CellPlan) -> _Layout:
    n_genes = design.genes.size
    log_share = design.log_abundance - np.log(REFERENCE_GENES) - BACKGROUND_SD**2 / 2
    big_cell = float(np.quantile(plan.library, 0.999)) if plan.n_cells else 0.0
    col = {g: i for i, g in enumerate(design.genes)}
    ko_cols = np.array([col.get(g, -1) for g in design.knockouts], dtype=np.int64)  # -1: not measured
    loud = np.flatnonzero(design.dispersion * big_cell * np.exp(log_share) >= 0.1)
    dense = np.unique(np.concatenate([design.special_cols, ko_cols[ko_cols >= 0], loud]))
    low = np.setdiff1d(np.arange(n_genes), dense)
    return _Layout(
        dense_cols=dense,
        base=log_share[dense].astype(np.float32),
        phi=design.dispersion[dense],
        special_pos=np.searchsorted(dense, design.special_cols),
        marker=design.marker_lfc.astype(np.float32),
        program=design.program_lfc.astype(np.float32),
        ko_pos=np.where(ko_cols >= 0, np.searchsorted(dense, ko_cols), -1),
        low_cols=low,
        low_cum=np.cumsum(np.exp(log_share[low])),
    )


def _chunk(layout: _Layout, plan: CellPlan, rows: np.ndarray, n_genes: int, rng: np.random.Generator) -> sp.csr_matrix:
    n = rows.size
    lib = plan.library[rows]
    loglam = np.log(lib).astype(np.float32)[:, None] + layout.base[None, :]  # (n, D)
    loglam[:, layout.special_pos] += (
        plan.mix[rows].astype(np.float32) @ layout.marker + plan.activity[rows].astype(np.float32) @ layout.program
    )  # (n, S)
    pert = plan.perturbation[rows]
    hit = np.flatnonzero(pert >= 0)
    hit = hit[layout.ko_pos[pert[hit]] >= 0]  # knocked-out genes the panel measures
    loglam[hit, layout.ko_pos[pert[hit]]] -= plan.ko_drop[rows][hit].astype(np.float32)
    flat, v_d = negative_binomial(np.exp(loglam), layout.phi, rng)
    r_d, c_d = np.divmod(flat, layout.dense_cols.size)

    r_l, c_l, v_l = _pooled_poisson(layout.low_cum, lib, rng)
    r = np.concatenate([r_d, r_l])
    c = np.concatenate([layout.dense_cols[c_d], layout.low_cols[c_l]])
    v = np.concatenate([v_d, v_l]).astype(np.float32)
    out = sp.csr_matrix((v, (r, c)), shape=(n, n_genes))
    out.sort_indices()
    return out


def negative_binomial(
    mean: np.ndarray, phi: np.ndarray, rng: np.random.Generator, *, direct_above: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Negative-binomial draws (var = mean + phi mean^2) for ``mean`` ``(n, D)``, ``phi`` ``(D,)``.

    Returns the flat indices and values of the nonzero draws. Exact, but cheap for sparse data:
    one uniform per entry decides zero vs nonzero against ``P(0) = (1 + phi mean)^(-1/phi)``; only
    nonzero entries walk the CDF. Entries with ``mean > direct_above`` are drawn as gamma-Poisson.
    """
    n_cols = mean.shape[1]
    phi32 = np.asarray(phi, dtype=np.float32)[None, :]
    p_zero = np.exp(-np.log1p(phi32 * mean) / phi32)  # (n, D)
    u = rng.random(mean.shape, dtype=np.float32)
    big = mean > direct_above
    idx_big = np.flatnonzero(big)
    col_big = idx_big % n_cols
    shape = 1.0 / phi[col_big]
    v_big = rng.poisson(mean.ravel()[idx_big] * rng.gamma(shape, phi[col_big]))
    idx = np.flatnonzero((u > p_zero) & ~big)
    v_small = _walk_cdf(mean.ravel()[idx].astype(np.float64), phi[idx % n_cols], u.ravel()[idx].astype(np.float64))
    flat = np.concatenate([idx_big, idx])
    vals = np.concatenate([v_big, v_small])
    keep = vals > 0
    return flat[keep], vals[keep]


def _walk_cdf(mean: np.ndarray, phi: np.ndarray, u: np.ndarray, *, max_k: int = 1_000) -> np.ndarray:
    """Smallest ``k`` with ``NB-CDF(k) >= u``, elementwise (inverse-CDF sampling)."""
    r = 1.0 / phi
    p = phi * mean / (1.0 + phi * mean)  # NB "success" probability: P(k+1) = P(k) (k + r) / (k + 1) p
    pk = np.exp(-r * np.log1p(phi * mean))  # P(0)
    cdf = pk.copy()
    out = np.zeros(mean.size, dtype=np.int64)
    idx = np.arange(mean.size)
    for k in range(1, max_k + 1):
        keep = u > cdf
        if not keep.all():
            idx, pk, cdf, r, p, u = idx[keep], pk[keep], cdf[keep], r[keep], p[keep], u[keep]
        if not idx.size:
            break
        pk *= (k - 1 + r) / k * p
        cdf += pk
        out[idx] = k
    return out


def _pooled_poisson(cum: np.ndarray, lib: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Independent Poisson counts with means ``lib[i] * share[j]``, as (row, col, count) of nonzero entries."""
    if cum.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    total = cum[-1]
    per_cell = rng.poisson(lib * total)  # (n,)
    cell = np.repeat(np.arange(lib.size), per_cell)
    gene = np.minimum(np.searchsorted(cum, rng.random(cell.size) * total, side="right"), cum.size - 1)
    keys, counts = np.unique(cell * cum.size + gene, return_counts=True)
    return keys // cum.size, keys % cum.size, counts
