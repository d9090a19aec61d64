"""Interpret a fitted model's programs on a screen: top genes, enrichment, activity per state and perturbation.

Loadings are ranked per standard deviation of each gene (``scale="sd"``): f's weights on raw
log-expression give a gene that barely varies a huge weight (its 1/sd is folded in by the front end),
although a change of that gene within the data moves the program by almost nothing. Multiplying by the
gene's spread in the cells gives how far one typical change of the gene moves the program.

Given an AnnData, the results go where scanpy users look (as ``X_pca``/``PCs`` do): each cell's program
activity in ``adata.obsm["X_" + key_added]``, the loadings in ``adata.varm[key_added]`` and the tables in
``adata.uns[key_added]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._errors import InputError, RunError
from .._utils import as_rng, atomic_path
from ..data import Screen
from ..model import read_keys
from ._data import h5_safe, resolve_screen, target_adata
from ._programs import activity_by_group, program_enrichment, program_state_relation, top_genes

if TYPE_CHECKING:
    import anndata as ad

    from ..model import PerturbScoreModel

logger = logging.getLogger(__name__)

#: Result name -> file written by :meth:`ProgramsResult.write`.
PROGRAM_FILES: dict[str, str] = {
    "top_genes": "programs.csv",
    "enrichment": "enrichment.csv",
    "activity_by_state": "program_activity_state.csv",
    "activity_by_perturbation": "program_activity_perturbation.csv",
    "stat_state_relation": "stat_state_relation.csv",
}
_INDEX_NAMES = {"activity_by_state": "program", "activity_by_perturbation": "perturbation",
                "stat_state_relation": "stat_program"}  # fmt: skip
_BLOCK_CELLS = 50_000  # cells per forward pass when summarising perturbations
#: Default ``key_added`` of :func:`interpret_programs`.
PROGRAMS_KEY = "perturbscore_programs"


@dataclass
class ProgramsResult:
    """What the learned programs mean.

    Attributes
    ----------
    top_genes
        Long table ``program, sign, rank, gene, loading, raw_loading``: the ``n_top`` most positive and
        most negative genes of each program (``loading`` is the ranking scale, ``raw_loading`` the weight
        per unit of log-expression).
    loadings
        Genes x programs, on the ranking scale (``None`` when read back from files).
    enrichment
        :func:`~perturbscore.tl.program_enrichment` table, or ``None`` without gene sets.
    activity_by_state
        Programs x states: mean ``f`` per cell state.
    activity_by_perturbation
        Perturbations x programs: mean ``f`` over (up to ``max_cells_per_perturbation``) cells.
    stat_state_relation
        The statistic's entries (``G``'s outputs ``stat_*``, then the mix channel's ``mix_<state>``) x states:
        Spearman's rho, across perturbations, of ``s(P)`` with the perturbation's state share.
    params
        How it was computed.
    """

    top_genes: pd.DataFrame
    loadings: pd.DataFrame | None = None
    enrichment: pd.DataFrame | None = None
    activity_by_state: pd.DataFrame | None = None
    activity_by_perturbation: pd.DataFrame | None = None
    stat_state_relation: pd.DataFrame | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Each non-empty result by name (the keys of :data:`PROGRAM_FILES`)."""
        return {name: getattr(self, name) for name in PROGRAM_FILES if getattr(self, name) is not None}

    def write(self, run_dir: str | os.PathLike[str], *, overwrite: bool = False) -> dict[str, Path]:
        """Write the tables as CSV into ``run_dir`` atomically (names in :data:`PROGRAM_FILES`).

        Parameters
        ----------
        run_dir
            The run directory (created if missing).
        overwrite
            Replace existing files; tables this result lacks (e.g. enrichment without gene sets) are then
            removed so no stale file is left beside the new ones.

        Returns
        -------
        Result name -> path written.
        """
        run = Path(run_dir)
        existing = [run / f for f in PROGRAM_FILES.values() if (run / f).exists()]
        if existing and not overwrite:
            raise RunError(
                f"{run} already holds program results ({', '.join(p.name for p in existing)}); "
                "pass overwrite=True (--overwrite) to replace them"
            )
        written = {}
        for name, df in self.tables().items():
            path = run / PROGRAM_FILES[name]
            with atomic_path(path) as tmp:
                df.to_csv(tmp, index=name in _INDEX_NAMES)
            written[name] = path
        for path in existing:
            if path not in written.values():
                path.unlink()
        return written

    @classmethod
    def read(cls, run_dir: str | os.PathLike[str]) -> ProgramsResult | None:
        """Read the tables :meth:`write` wrote (loadings are not stored); ``None`` without ``programs.csv``."""
        run = Path(run_dir)
        if not (run / PROGRAM_FILES["top_genes"]).is_file():
            return None
        tables: dict[str, pd.DataFrame] = {}
        for name, fname in PROGRAM_FILES.items():
            if (run / fname).is_file():
                tables[name] = pd.read_csv(run / fname, index_col=0 if name in _INDEX_NAMES else None)
        return cls(**tables)


def interpret_programs(
    model: PerturbScoreModel,
    screen: Screen | ad.AnnData | str | os.PathLike[str] | None = None,
    *,
    gene_sets: Mapping[str, Sequence[str]] | None = None,
    n_top: int = 50,
    n_permutations: int = 1000,
    scale: Literal["sd", "raw"] = "sd",
    max_cells: int = 20_000,
    max_cells_per_perturbation: int = 500,
    rng: np.random.Generator | int | None = 0,
    perturbation_key: str | None = None,
    state_key: str | None = None,
    control: str | None = None,
    layer: str | None = None,
    key_added: str = PROGRAMS_KEY,
    copy: bool = False,
) -> ProgramsResult | ad.AnnData:
    """Top genes, gene-set enrichment and activity tables of a fitted model's programs.

    Parameters
    ----------
    model
        The fitted model.
    screen
        The screen (a :class:`~perturbscore.data.Screen`, AnnData or ``.h5ad`` path) with the model's genes.
        Without it only loadings, top genes and enrichment are computed (ranked per SD of the front end's
        genes when the model stores them).
    gene_sets
        Mapping set name -> genes (see :func:`~perturbscore.io.read_gmt`) for enrichment.
    n_top
        Genes per program and sign in ``top_genes`` and in the hypergeometric test.
    n_permutations
        Null size of the preranked test.
    scale
        ``"sd"``: rank loadings per standard deviation of each gene (see the module docstring);
        ``"raw"``: per unit of log-expression, as :meth:`PerturbScoreModel.program_loadings`.
    max_cells
        Random cells behind the per-state activity (and the gene SDs).
    max_cells_per_perturbation
        Cells per perturbation behind its activity and statistic.
    rng
        Seed or generator for cell sampling and the enrichment null.
    perturbation_key, state_key, control, layer
        How to read an AnnData or path (default: the keys the model was trained with, else the challenge
        layout's; ``control="none"``: no control cells).
    key_added
        An AnnData gets ``obsm["X_" + key_added]`` (cells x programs: every cell's activity ``f(x)``),
        ``varm[key_added]`` (genes x programs: the loadings on the ranking scale, 0 for genes the model does not
        read) and ``uns[key_added]``: ``params`` and the tables (``top_genes``, ``enrichment``,
        ``activity_by_state``, ``activity_by_perturbation``, ``stat_state_relation``).
    copy
        Write into a copy of the AnnData and return that copy instead of the result.

    Returns
    -------
    ProgramsResult or anndata.AnnData
        The tables (tidy DataFrames); with ``copy=True``, the annotated copy of the AnnData.
    """
    if n_top < 1 or n_permutations < 1 or max_cells < 1 or max_cells_per_perturbation < 1:
        raise InputError(
            f"n_top={n_top}, n_permutations={n_permutations}, max_cells={max_cells} and "
            f"max_cells_per_perturbation={max_cells_per_perturbation} must all be >= 1"
        )
    if scale not in ("sd", "raw"):
        raise InputError(f"scale must be 'sd' or 'raw', got {scale!r}")
    rng = as_rng(rng)
    raw = model.program_loadings()  # (genes, m1)
    keys = {"perturbation_key": perturbation_key, "state_key": state_key, "control": control, "layer": layer}
    scr = None if screen is None else _as_screen(screen, model, keys)
    cols = None if scr is None else _gene_columns(model, scr)
    state_rows = None if scr is None else _sample_rows(scr, max_cells, rng)
    result = ProgramsResult(top_genes=pd.DataFrame())
    if scr is not None:
        assert state_rows is not None
        x = _take(scr, state_rows, cols)  # (n, genes) in the model's gene order
        act = model.program_activity(x)  # (n, m1)
        states = pd.Categorical(np.asarray(scr.states)[scr.state_codes[state_rows]], categories=list(model.states))
        by_state = activity_by_group(act, states, programs=list(raw.columns)).T  # (m1, states)
        by_state.columns = pd.Index([str(c) for c in by_state.columns], name="state")
        by_state.index.name = "program"
        result.activity_by_state = by_state
    gene_sd = None if scale == "raw" else _gene_sd(model, None if scr is None else x)
    loadings = raw if gene_sd is None else raw.mul(gene_sd, axis=0)
    result.loadings = loadings
    result.top_genes = _top_genes(loadings, raw, n_top)
    if gene_sets is not None:
        used = loadings[(loadings != 0).any(axis=1)]  # genes the model reads: the enrichment universe
        result.enrichment = program_enrichment(used, gene_sets, n_top=n_top, n_permutations=n_permutations, rng=rng)
    if scr is not None:
        _perturbation_tables(result, model, scr, cols, programs=list(raw.columns), cap=max_cells_per_perturbation,
                             rng=rng)  # fmt: skip
    result.params = {"n_top": n_top, "n_permutations": n_permutations, "scale": scale if gene_sd is not None
                     else "raw", "max_cells": max_cells, "max_cells_per_perturbation": max_cells_per_perturbation,
                     "n_gene_sets": None if gene_sets is None else len(gene_sets)}  # fmt: skip
    adata = target_adata(screen, copy=copy)
    if adata is not None:
        annotate_programs(adata, model, result, key_added=key_added, layer=read_keys(model, **keys)["layer"])
    return adata if copy and adata is not None else result


def annotate_programs(
    adata: ad.AnnData, model: PerturbScoreModel, result: ProgramsResult, *, key_added: str = PROGRAMS_KEY,
    layer: str | None = None,
) -> None:  # fmt: skip
    """Write a :class:`ProgramsResult` into ``adata``: ``obsm["X_" + key_added]``, ``varm[key_added]``, ``uns``."""
    adata.obsm[f"X_{key_added}"] = model.program_activity(adata, layer=layer).astype(np.float32)  # (cells, m1)
    loadings = result.loadings if result.loadings is not None else model.program_loadings()
    adata.varm[key_added] = loadings.reindex(np.asarray(adata.var_names, dtype=str)).fillna(0.0).to_numpy(np.float32)
    entry: dict[str, Any] = {"params": h5_safe({**result.params, "programs": list(loadings.columns)})}
    for name, table in result.tables().items():
        entry[name] = table.copy()
    adata.uns[key_added] = entry


def _as_screen(
    screen: Screen | ad.AnnData | str | os.PathLike[str], model: PerturbScoreModel, keys: dict[str, Any]
) -> Screen:
    if isinstance(screen, Screen):
        missing = set(model.states) - set(screen.states)
        if missing or len(screen.states) != len(model.states):
            raise InputError(
                f"the screen's states {list(screen.states)} differ from the model's {list(model.states)}; "
                "read the screen with states=model.states (the same state column the model was trained on)"
            )
        return screen
    out = resolve_screen(screen, model, **keys, small="keep")
    assert out is not None
    return out


def _gene_columns(model: PerturbScoreModel, screen: Screen) -> np.ndarray | None:
    """Screen columns of the model's genes, or None when they already match."""
    genes = pd.Index(screen.gene_names)
    if len(genes) == len(model.gene_names) and (genes == model.gene_names).all():
        return None
    if genes.has_duplicates:
        dup = genes[genes.duplicated()].unique()[:5].tolist()
        raise InputError(f"the screen has duplicated gene names {dup}; make var_names unique (var_names_make_unique)")
    pos = genes.get_indexer(model.gene_names)
    if (pos < 0).any():
        missing = model.gene_names[pos < 0]
        raise InputError(
            f"the screen lacks {missing.size} of the model's {len(model.gene_names)} genes (e.g. "
            f"{missing[:5].tolist()}); pass the screen the model was trained on, or one with the same genes"
        )
    return pos


def _take(screen: Screen, rows: np.ndarray, cols: np.ndarray | None) -> sp.csr_matrix:
    x = screen.rows.take(rows)  # (n, screen genes)
    return x if cols is None else sp.csr_matrix(x[:, cols])  # (n, model genes)


def _sample_rows(screen: Screen, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` random cells of the screen's perturbations, sorted (sequential reads)."""
    rows = np.unique(np.concatenate([np.asarray(ix, dtype=np.int64) for ix in screen.cell_index]))
    if rows.size == 0:
        raise InputError("the screen has no cells in any perturbation; check the perturbation column")
    return np.sort(rng.choice(rows, size=n, replace=False)) if rows.size > n else rows


def _gene_sd(model: PerturbScoreModel, x: sp.csr_matrix | None) -> np.ndarray | None:
    """Per-gene standard deviation of log-expression (from cells, else the front end's); None if unknown."""
    if x is not None:
        mean = np.asarray(x.mean(axis=0)).ravel()
        return np.sqrt(np.maximum(np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2, 0.0))
    front: Any = model.net.front
    if front.kind == "genes":
        logger.warning("no screen given and the model stores no gene SDs: ranking loadings per log-expression unit")
        return None
    sd = np.zeros(len(model.gene_names))
    eps = 1e-3  # the front end stores sd + 1e-3
    sd[front.gene_index.cpu().numpy()] = np.maximum(front.sd.cpu().numpy() - eps, 0.0)
    return sd


def _top_genes(loadings: pd.DataFrame, raw: pd.DataFrame, n_top: int) -> pd.DataFrame:
    top = top_genes(loadings, n=n_top)
    raw_long = raw.stack()  # (gene, program) -> raw loading
    top["raw_loading"] = raw_long.reindex(pd.MultiIndex.from_arrays([top["gene"], top["program"]])).to_numpy()
    return top


def _perturbation_tables(
    result: ProgramsResult, model: PerturbScoreModel, screen: Screen, cols: np.ndarray | None, *,
    programs: list[str], cap: int, rng: np.random.Generator,
) -> None:  # fmt: skip
    """Fill ``activity_by_perturbation`` and ``stat_state_relation`` (blocks of perturbations at a time)."""
    keep = [i for i, ix in enumerate(screen.cell_index) if len(ix)]
    picks = [np.sort(rng.choice(screen.cell_index[i], size=cap, replace=False)) if len(screen.cell_index[i]) > cap
             else np.sort(screen.cell_index[i]) for i in keep]  # fmt: skip
    acts, stats, start = [], [], 0
    while start < len(picks):
        stop, size = start, 0
        while stop < len(picks) and (size == 0 or size + len(picks[stop]) <= _BLOCK_CELLS):
            size += len(picks[stop])
            stop += 1
        block = picks[start:stop]
        groups = np.repeat(np.arange(len(block)), [len(b) for b in block])  # (n,)
        x = screen.cells(np.concatenate(block), front=model.net.front, cols=cols)  # stored coordinates, or genes
        act = model.program_activity(x)  # (n, m1)
        sums = np.zeros((len(block), act.shape[1]))
        np.add.at(sums, groups, act)
        acts.append(sums / np.bincount(groups)[:, None])  # (block, m1)
        stats.append(model.statistic(x, groups=groups))  # (block, m2), rows in group order
        start = stop
    names = [screen.perturbations[i] for i in keep]
    result.activity_by_perturbation = pd.DataFrame(np.vstack(acts), index=pd.Index(names, name="perturbation"),
                                                   columns=programs)  # fmt: skip
    stat = np.vstack(stats)  # (P, m2)
    order = [screen.states.index(s) for s in model.states]
    props = screen.proportions[keep][:, order]  # (P, C) in the model's state order
    if len(keep) < 3:
        logger.warning("only %d perturbation(s) with cells: no statistic-state correlation", len(keep))
        return
    stat_names = model.stat_names
    rel = program_state_relation(stat, props, list(model.states), programs=stat_names)
    rel.index.name, rel.columns.name = "stat_program", "state"
    result.stat_state_relation = rel
