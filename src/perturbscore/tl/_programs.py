"""Interpretation of learned gene programs: top genes, enrichment, activity per group, program-state relations.

Everything here takes plain arrays and DataFrames (not the model), so it works on any loadings matrix:
the rows of ``W`` in ``f(x) = tanh(W x + b)`` transposed to genes x programs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._errors import InputError
from .._utils import as_rng
from ._enrichment import hypergeometric_enrichment, preranked_enrichment

logger = logging.getLogger(__name__)

TOP_GENES_COLUMNS = ["program", "sign", "rank", "gene", "loading"]
PROGRAM_ENRICHMENT_COLUMNS = [
    "program", "direction", "set", "method", "size", "overlap", "effect", "es", "p", "q", "genes",
]  # fmt: skip


def _validate_loadings(loadings: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(loadings, pd.DataFrame):
        raise InputError("loadings must be a DataFrame of genes (index) x programs (columns).")
    if loadings.empty:
        raise InputError("loadings is empty; it needs at least one gene and one program.")
    if loadings.index.has_duplicates:
        dup = loadings.index[loadings.index.duplicated()].unique()[:5].tolist()
        raise InputError(f"loadings has duplicated gene names {dup}; make the gene index unique.")
    values = loadings.apply(pd.to_numeric, errors="coerce")
    if values.isna().to_numpy().any():
        bad = values.columns[values.isna().any()].tolist()[:5]
        raise InputError(f"loadings has missing or non-numeric values in program(s) {bad}; fill or drop them.")
    return values.astype(float)


def top_genes(loadings: pd.DataFrame, *, n: int = 20) -> pd.DataFrame:
    """Return the ``n`` most positive and ``n`` most negative genes of each program.

    Parameters
    ----------
    loadings
        Genes (index) x programs (columns).
    n
        Genes per program and sign. Only genes whose loading has that sign are listed, so a program
        with few negative loadings has fewer ``-`` rows.

    Returns
    -------
    Long table with columns ``program``, ``sign`` (``+``/``-``), ``rank`` (1 = most extreme), ``gene``,
    ``loading``; programs in column order, ``+`` before ``-``.
    """
    if n < 1:
        raise InputError(f"n must be >= 1 (genes per program and sign), got {n}.")
    values = _validate_loadings(loadings)
    parts = []
    for program in values.columns:
        col = values[program]
        for sign, chosen in (("+", col[col > 0].sort_values(ascending=False, kind="stable")),
                             ("-", col[col < 0].sort_values(ascending=True, kind="stable"))):  # fmt: skip
            chosen = chosen.iloc[:n]
            parts.append(pd.DataFrame({
                "program": program, "sign": sign, "rank": np.arange(1, len(chosen) + 1),
                "gene": chosen.index.to_numpy(), "loading": chosen.to_numpy(),
            }))  # fmt: skip
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TOP_GENES_COLUMNS)
    return out[TOP_GENES_COLUMNS]


def program_enrichment(
    loadings: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    n_top: int = 50,
    n_permutations: int = 1000,
    rng: np.random.Generator | int | None = None,
    min_size: int = 3,
    max_size: int | None = None,
) -> pd.DataFrame:
    """Gene-set enrichment of every program, both directions, by two tests.

    For each program: a hypergeometric test of its top ``n_top`` positive genes and, separately, its top
    ``n_top`` negative genes, against all genes in ``loadings``; and a preranked (GSEA-style) test on the
    signed loadings, whose direction is the sign of the enrichment score.

    Parameters
    ----------
    loadings
        Genes (index) x programs (columns).
    gene_sets
        Mapping set name -> genes (see :func:`read_gmt`).
    n_top
        Genes per direction for the hypergeometric test.
    n_permutations, rng
        Null size and seed of the preranked test.
    min_size, max_size
        Gene-set size bounds after restriction to the genes in ``loadings``.

    Returns
    -------
    Columns ``program``, ``direction`` (``+``/``-``), ``set``, ``method`` (``hypergeometric`` or
    ``preranked``), ``size``, ``overlap`` (hypergeometric only), ``effect`` (odds ratio, or NES),
    ``es`` (preranked only), ``p``, ``q``, ``genes`` (overlap, or leading edge). ``q`` is
    Benjamini–Hochberg within each program, method and (for the hypergeometric test) direction.
    Sorted by program, method, p.
    """
    if n_top < 1:
        raise InputError(f"n_top must be >= 1, got {n_top}.")
    values = _validate_loadings(loadings)
    tops = top_genes(values, n=n_top)
    rng = as_rng(rng)
    universe = values.index.tolist()
    parts = []
    for program in values.columns:
        for direction in ("+", "-"):
            selected = tops.loc[(tops["program"] == program) & (tops["sign"] == direction), "gene"].tolist()
            if not selected:
                continue
            hg = hypergeometric_enrichment(selected, universe, gene_sets, min_size=min_size, max_size=max_size)
            hg = hg.rename(columns={"odds_ratio": "effect"}).assign(direction=direction, method="hypergeometric")
            parts.append(hg.assign(program=program, es=np.nan))
        pr = preranked_enrichment(values[program], gene_sets, n_permutations=n_permutations, rng=rng,
                                  min_size=min_size, max_size=max_size)  # fmt: skip
        pr = pr.rename(columns={"nes": "effect", "leading_edge": "genes"})
        pr = pr.assign(program=program, method="preranked", overlap=np.nan,
                       direction=np.where(pr["es"].to_numpy(dtype=float) >= 0, "+", "-"))  # fmt: skip
        parts.append(pr)
    parts = [p[PROGRAM_ENRICHMENT_COLUMNS] for p in parts if not p.empty]
    if not parts:
        logger.warning("no gene set passed the size bounds in any program; the enrichment table is empty")
        return pd.DataFrame(columns=PROGRAM_ENRICHMENT_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D array, got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinite values; remove those rows first.")
    return arr


def _program_names(m: int, programs: Sequence[str] | None) -> list[str]:
    if programs is None:
        return [f"program_{i}" for i in range(m)]
    if len(programs) != m:
        raise InputError(f"got {len(programs)} program names for {m} columns; pass one name per column.")
    return [str(p) for p in programs]


def activity_by_group(
    activity: np.ndarray, groups: Sequence | np.ndarray | pd.Series, *, programs: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean program activity per group (cell state, perturbation, ...).

    Parameters
    ----------
    activity
        (cells, m) program activity, e.g. ``f(x)`` for each cell.
    groups
        (cells,) group label of each cell. A pandas Categorical keeps its category order (empty
        categories are dropped); otherwise groups are sorted.
    programs
        Column names; ``program_0 ...`` by default.

    Returns
    -------
    Groups (index) x programs (columns) of mean activity.
    """
    act = _as_2d(activity, "activity")  # (cells, m)
    labels = pd.Series(groups).reset_index(drop=True)
    if len(labels) != act.shape[0]:
        raise InputError(f"groups has {len(labels)} labels but activity has {act.shape[0]} cells; align them.")
    if labels.isna().any():
        raise InputError(f"groups has {int(labels.isna().sum())} missing label(s); label or drop those cells.")
    df = pd.DataFrame(act, columns=_program_names(act.shape[1], programs))
    out = df.groupby(labels.to_numpy() if not isinstance(labels.dtype, pd.CategoricalDtype) else labels,
                     observed=True, sort=True).mean()  # fmt: skip
    out.index.name = "group"
    return out


def program_state_relation(
    stat: np.ndarray,
    proportions: np.ndarray,
    states: Sequence[str],
    *,
    programs: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Spearman correlation, across perturbations, of each multicellular program with each state's share.

    Parameters
    ----------
    stat
        (P, m2) statistic ``s_hat(P)`` per perturbation.
    proportions
        (P, C) state proportions ``q(P)`` of the same perturbations, in the same row order.
    states
        C state names.
    programs
        m2 program names; ``program_0 ...`` by default.

    Returns
    -------
    Programs (index) x states (columns) of Spearman's rho; NaN where a program or a state share is
    constant across perturbations.
    """
    s = _as_2d(stat, "stat")  # (P, m2)
    q = _as_2d(proportions, "proportions")  # (P, C)
    if s.shape[0] != q.shape[0]:
        raise InputError(f"stat has {s.shape[0]} perturbations but proportions has {q.shape[0]}; use the same rows.")
    if len(states) != q.shape[1]:
        raise InputError(f"got {len(states)} state names for {q.shape[1]} proportion columns; pass one per column.")
    if s.shape[0] < 3:
        raise InputError(f"need at least 3 perturbations for a rank correlation, got {s.shape[0]}.")
    rs = stats.rankdata(s, axis=0)  # (P, m2) average ranks handle ties as spearmanr does
    rq = stats.rankdata(q, axis=0)  # (P, C)
    rs -= rs.mean(axis=0)
    rq -= rq.mean(axis=0)
    norm = np.outer(np.sqrt((rs**2).sum(axis=0)), np.sqrt((rq**2).sum(axis=0)))  # (m2, C)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(norm > 0, rs.T @ rq / np.where(norm > 0, norm, 1.0), np.nan)  # (m2, C)
    if np.isnan(rho).any():
        logger.warning("some programs or state shares are constant across perturbations; their correlation is NaN")
    return pd.DataFrame(np.clip(rho, -1.0, 1.0), index=_program_names(s.shape[1], programs),
                        columns=[str(c) for c in states])  # fmt: skip
