"""Gene-set enrichment: hypergeometric over-representation and a preranked (GSEA-style) test.

Both tests are written here rather than taken from decoupler or gseapy: neither is a dependency, each would
bring a large tree of its own (gseapy a compiled extension, decoupler its network and method registry), and
what the programs need is small: a one-sided hypergeometric test (``scipy.stats.hypergeom``) and a weighted
Kolmogorov–Smirnov running sum with one permutation null shared by every set size, run on a few hundred
genes. Both follow the published definitions (GSEA: Subramanian et al. 2005) and are checked against
brute-force versions in the tests. The multiple-testing correction is scipy's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._errors import InputError
from .._utils import as_rng

logger = logging.getLogger(__name__)

HYPERGEOMETRIC_COLUMNS = ["set", "size", "overlap", "expected", "odds_ratio", "p", "q", "genes"]
PRERANKED_COLUMNS = ["set", "size", "es", "nes", "p", "q", "mw_auc", "mw_p", "leading_edge"]


def bh_adjust(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaNs stay NaN and are not counted.

    The adjustment is :func:`scipy.stats.false_discovery_control` (``method="bh"``); this wrapper adds what it
    does not do: untested entries (NaN) keep their place and do not count towards the number of tests.

    Parameters
    ----------
    p
        Raw p-values in [0, 1].

    Returns
    -------
    Adjusted p-values, same shape as ``p``.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if (p[ok] < 0).any() or (p[ok] > 1).any():
        raise InputError("p-values must lie in [0, 1] for Benjamini–Hochberg adjustment.")
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def _restrict(gene_sets: Mapping[str, Sequence[str]], universe: pd.Index, min_size: int, max_size: int | None):
    """Yield (name, genes in universe) for sets whose size in the universe is within bounds."""
    if not gene_sets:
        raise InputError("no gene sets given; pass a mapping name -> genes (see read_gmt).")
    n_skipped = 0
    for name, genes in gene_sets.items():
        inside = [g for g in dict.fromkeys(genes) if g in universe]
        if len(inside) < min_size or (max_size is not None and len(inside) > max_size):
            n_skipped += 1
            continue
        yield name, inside
    if n_skipped:
        logger.info(
            "skipped %d gene set(s) outside the size bounds [%d, %s] after restricting to the universe",
            n_skipped,
            min_size,
            max_size,
        )


def hypergeometric_enrichment(
    selected: Sequence[str],
    universe: Sequence[str],
    gene_sets: Mapping[str, Sequence[str]],
    *,
    min_size: int = 3,
    max_size: int | None = None,
) -> pd.DataFrame:
    """Over-representation of each gene set among ``selected`` genes (one-sided hypergeometric test).

    Parameters
    ----------
    selected
        The selected genes (e.g. a program's top genes). Genes outside ``universe`` are ignored.
    universe
        All genes that could have been selected (e.g. every gene with a loading).
    gene_sets
        Mapping set name -> genes; each set is restricted to the universe first.
    min_size, max_size
        Keep sets whose size inside the universe is within these bounds.

    Returns
    -------
    One row per tested set, sorted by p: ``set``, ``size`` (K, in universe), ``overlap`` (k), ``expected``
    (n K / N), ``odds_ratio`` (Haldane-corrected when a cell of the 2x2 table is 0), ``p``
    (``hypergeom.sf(k - 1, N, K, n)``), ``q`` (Benjamini–Hochberg), ``genes`` (the overlap, ``;``-joined).
    """
    uni = pd.Index(pd.unique(np.asarray(list(universe), dtype=object)))
    if len(uni) == 0:
        raise InputError("the gene universe is empty; pass every gene that could have been selected.")
    sel = [g for g in dict.fromkeys(selected) if g in uni]
    if len(sel) < len(set(selected)):
        logger.warning("%d selected gene(s) are not in the universe and were ignored", len(set(selected)) - len(sel))
    big_n, n = len(uni), len(sel)
    sel_set = set(sel)
    rows = []
    for name, genes in _restrict(gene_sets, uni, min_size, max_size):
        hits = [g for g in genes if g in sel_set]
        k, big_k = len(hits), len(genes)
        # 2x2: in set/selected, set/not, sel/not-set, rest (floats: a zero cell gets Haldane's 0.5)
        a, b, c, d = float(k), float(big_k - k), float(n - k), float(big_n - big_k - n + k)
        if min(a, b, c, d) == 0:
            a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
        rows.append({
            "set": name, "size": big_k, "overlap": k, "expected": n * big_k / big_n,
            "odds_ratio": (a * d) / (b * c), "p": float(stats.hypergeom.sf(k - 1, big_n, big_k, n)),
            "genes": ";".join(hits),
        })  # fmt: skip
    df = pd.DataFrame(rows, columns=[c for c in HYPERGEOMETRIC_COLUMNS if c != "q"])
    df["q"] = bh_adjust(df["p"].to_numpy(dtype=float))
    return df[HYPERGEOMETRIC_COLUMNS].sort_values(["p", "set"], kind="stable").reset_index(drop=True)


def _running_extremes(pos: np.ndarray, w: np.ndarray, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    """Max and min of the weighted KS running sum, evaluated only at hit positions.

    ``pos`` (R, K) sorted 0-based rank positions of the set's genes; ``w`` (R, K) their weights.
    The running sum peaks just after a hit and dips just before one, so O(K) per row suffices.
    """
    k = pos.shape[1]
    cw = np.cumsum(w, axis=1)  # (R, K)
    norm = cw[:, -1:]
    zero = norm[:, 0] == 0
    if zero.any():  # all hit weights 0: fall back to the unweighted KS statistic for those rows
        cw[zero] = np.arange(1, k + 1)
        norm = cw[:, -1:]
    i = np.arange(1, k + 1)  # hits so far, after the i-th hit
    miss = 1.0 / (n_genes - k)
    after = cw / norm - (pos + 1 - i) * miss  # (R, K) just after hit i
    before = (cw - np.where(zero[:, None], 1.0, w)) / norm - (pos - (i - 1)) * miss  # just before hit i
    return after.max(axis=1), before.min(axis=1)


def _es(pos: np.ndarray, w: np.ndarray, n_genes: int) -> np.ndarray:
    """(R,) signed enrichment scores: the running sum's larger deviation from 0."""
    top, bottom = _running_extremes(pos, w, n_genes)
    return np.where(np.abs(top) >= np.abs(bottom), top, bottom)


def _null_positions(n_genes: int, k_max: int, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """(n_permutations, k_max) random gene positions, each row without replacement.

    The first K columns of a row are a uniform random K-subset, so one draw serves every set size.
    """
    return np.stack([rng.choice(n_genes, size=k_max, replace=False) for _ in range(n_permutations)])


def _pvalue_nes(es: float, null: np.ndarray) -> tuple[float, float]:
    """GSEA-style NES (ES / mean same-sign null) and permutation p among same-sign nulls."""
    same = null[null >= 0] if es >= 0 else null[null < 0]
    if same.size == 0:
        return np.nan, 1.0 / (null.size + 1)
    nes = es / np.abs(same.mean()) if same.mean() != 0 else np.nan
    p = (1.0 + np.sum(np.abs(same) >= abs(es))) / (1.0 + same.size)
    return float(nes), float(p)


def _leading_edge(genes_ranked: np.ndarray, pos: np.ndarray, w: np.ndarray, n_genes: int, es: float) -> str:
    """Genes of the set that drive the score: up to the peak (positive ES) or from the trough (negative)."""
    cw = np.cumsum(w) if w.sum() > 0 else np.arange(1, pos.size + 1, dtype=float)
    i = np.arange(1, pos.size + 1)
    miss = 1.0 / (n_genes - pos.size)
    if es >= 0:
        j = int(np.argmax(cw / cw[-1] - (pos + 1 - i) * miss))
        return ";".join(genes_ranked[pos[: j + 1]])
    before = (cw - (w if w.sum() > 0 else 1.0)) / cw[-1] - (pos - (i - 1)) * miss
    j = int(np.argmin(before))
    return ";".join(genes_ranked[pos[j:]][::-1])


def _validate_scores(scores: pd.Series) -> pd.Series:
    if not isinstance(scores, pd.Series):
        raise InputError("scores must be a pandas Series indexed by gene symbol (gene -> loading).")
    if scores.index.has_duplicates:
        dup = scores.index[scores.index.duplicated()].unique()[:5].tolist()
        raise InputError(f"scores has duplicated gene names {dup}; make the index unique before enrichment.")
    values = pd.to_numeric(scores, errors="coerce")
    if values.isna().any():
        bad = values.index[values.isna()][:5].tolist()
        raise InputError(f"scores has missing or non-numeric values for genes {bad}; drop or fill them first.")
    if len(values) < 2:
        raise InputError("scores needs at least two genes to rank.")
    return values.astype(float)


def preranked_enrichment(
    scores: pd.Series,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    n_permutations: int = 1000,
    rng: np.random.Generator | int | None = None,
    min_size: int = 3,
    max_size: int | None = None,
    weight: float = 1.0,
) -> pd.DataFrame:
    """Preranked gene-set enrichment: weighted Kolmogorov–Smirnov running sum with a gene-set permutation null.

    Genes are ranked by ``scores`` (descending). Walking down the ranking, a gene in the set adds
    ``|score|**weight / sum_hits |score|**weight`` and any other gene subtracts ``1 / (N - K)``; the
    enrichment score (ES) is the running sum's largest deviation from 0 (GSEA, Subramanian et al. 2005).
    The null draws random gene sets of the same size from the ranking; NES is ES divided by the mean of
    the same-sign null scores, and p is the fraction of same-sign null scores at least as extreme.

    Parameters
    ----------
    scores
        Gene -> score (e.g. a program's signed loadings), indexed by unique gene symbols.
    gene_sets
        Mapping set name -> genes; restricted to the genes in ``scores``.
    n_permutations
        Random sets drawn per set size for the null.
    rng
        Seed or generator for the null.
    min_size, max_size
        Keep sets whose size inside the ranking is within these bounds.
    weight
        Exponent ``p`` of the weighted KS statistic (0 gives the classical KS statistic).

    Returns
    -------
    One row per tested set, sorted by p: ``set``, ``size``, ``es``, ``nes``, ``p``, ``q`` (Benjamini–Hochberg),
    ``mw_auc`` and ``mw_p`` (two-sided Mann–Whitney U test of the set's scores vs the rest, as a
    cross-check; AUC > 0.5 means the set scores high), ``leading_edge`` (``;``-joined genes).
    """
    values = _validate_scores(scores)
    if n_permutations < 1:
        raise InputError(f"n_permutations must be >= 1, got {n_permutations}.")
    rng = as_rng(rng)
    order = np.argsort(-values.to_numpy(), kind="stable")
    ranked = values.to_numpy()[order]  # (N,) descending
    genes_ranked = values.index.to_numpy(dtype=object)[order]
    absw = np.abs(ranked) ** weight  # (N,)
    n_genes = ranked.size
    rank_of = pd.Index(genes_ranked)
    tested = [
        (name, np.sort(rank_of.get_indexer(genes))) for name, genes in _restrict(gene_sets, rank_of, min_size, max_size)
    ]
    tested = [(name, pos) for name, pos in tested if pos.size < n_genes]
    if not tested:
        return pd.DataFrame(columns=PRERANKED_COLUMNS)
    null_pos = _null_positions(n_genes, max(p.size for _, p in tested), n_permutations, rng)  # (R, Kmax)
    null_cache: dict[int, np.ndarray] = {}
    rows = []
    for name, pos in tested:
        k = pos.size
        if k not in null_cache:
            npos = np.sort(null_pos[:, :k], axis=1)  # (R, K)
            null_cache[k] = _es(npos, absw[npos], n_genes)
        es = float(_es(pos[None, :], absw[pos][None, :], n_genes)[0])
        nes, p = _pvalue_nes(es, null_cache[k])
        mask = np.zeros(n_genes, dtype=bool)
        mask[pos] = True
        mw = stats.mannwhitneyu(ranked[mask], ranked[~mask], alternative="two-sided")
        rows.append({
            "set": name, "size": k, "es": es, "nes": nes, "p": p,
            "mw_auc": float(mw.statistic) / (k * (n_genes - k)), "mw_p": float(mw.pvalue),
            "leading_edge": _leading_edge(genes_ranked, pos, absw[pos], n_genes, es),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    df["q"] = bh_adjust(df["p"].to_numpy(dtype=float))
    df["_abs"] = -df["nes"].abs()
    df = df.sort_values(["p", "_abs", "set"], kind="stable").drop(columns="_abs")
    return df[PRERANKED_COLUMNS].reset_index(drop=True)
