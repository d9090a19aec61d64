"""Predictions from resampled cells, and how many cells a knockout needs for a stable prediction.

The engine here (program activities computed once per cell, then ``G``/``H`` on a batch of resampled
means) backs both the bootstrap intervals of :func:`~perturbscore.tl.score_perturbations` and the
cells-needed advice: the smallest ``k`` whose prediction from ``k`` random cells stays within a
tolerance of the all-cells prediction.

Shapes: ``m1`` is the width of a model's per-cell rows (:meth:`PerturbScoreModel.cell_summary`: the programs,
plus the state posterior with the mix channel) and ``m2`` that of its statistic (``ModelConfig.stat_dim``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .._errors import InputError
from .._utils import as_rng, track
from ..data import GeneFeatures, Screen
from ..io import as_targets
from ..model import PerturbScoreModel
from ._data import h5_safe, resolve_screen, target_adata

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

DEFAULT_KS = (2, 3, 5, 8, 10, 15, 20, 30, 50, 80, 120, 200)
#: Default ``key_added`` of :func:`cells_needed_table`.
CELLS_NEEDED_KEY = "perturbscore_cells_needed"
#: Rows of resampled means per G/H call.
CHUNK = 8192


# -- shared inputs --------------------------------------------------------------------------------
def as_models(model: PerturbScoreModel | Sequence[PerturbScoreModel]) -> list[PerturbScoreModel]:
    """One model or several (an ensemble) as a list; all must share the same state order."""
    models = [model] if isinstance(model, PerturbScoreModel) else list(model)
    if not models:
        raise InputError("no model given; pass a PerturbScoreModel or a list of them (one per run)")
    for m in models[1:]:
        if tuple(m.states) != tuple(models[0].states):
            raise InputError(
                f"the models disagree on states ({list(models[0].states)} vs {list(m.states)}); "
                "ensemble only runs trained on screens with the same states"
            )
    return models


def check_targets(targets: Any, states: Sequence[str]) -> dict[str, np.ndarray]:
    """Validate named ``(C,)`` target mixes in ``states`` order, from any form :func:`~perturbscore.io.as_targets` reads.

    ``{'progenitor': 0.6, 'cycling': 0.4}`` is one target (missing states are 0); ``{name: mix}`` several;
    arrays are in ``states`` order. Unnamed targets are named after their dominant states.
    """
    if targets is None or (isinstance(targets, Mapping | list | tuple) and not targets):
        raise InputError("no targets given; pass e.g. targets={'progenitor': 0.6, 'cycling': 0.4}")
    return as_targets(targets, states)


def _column_index(screen_genes: np.ndarray, model: PerturbScoreModel) -> np.ndarray | None:
    """Columns of the screen in the model's gene order (``None`` when already aligned)."""
    if np.array_equal(screen_genes, model.gene_names):
        return None
    pos = {g: i for i, g in enumerate(screen_genes)}
    missing = [g for g in model.gene_names if g not in pos]
    if missing:
        raise InputError(
            f"the screen lacks {len(missing)} of the model's expression genes (e.g. {missing[:5]}); score a screen "
            "measured on the same genes the model was trained on"
        )
    return np.array([pos[g] for g in model.gene_names], dtype=np.int64)


# -- the engine -----------------------------------------------------------------------------------
def program_activities(models: list[PerturbScoreModel], screen: Screen, perturbation: str) -> list[np.ndarray]:
    """Program activities of every cell of ``perturbation`` under each model: a list of ``(n, m1)`` arrays (see ``cell_summary``)."""
    if perturbation not in screen.perturbations:
        raise InputError(
            f"perturbation {perturbation!r} is not in the screen ({len(screen.perturbations)} perturbations, e.g. "
            f"{screen.perturbations[:5]}); check the spelling or the --min-cells filter"
        )
    rows = screen.cell_index[screen.index_of(perturbation)]
    out, cells = [], None
    for m in models:
        cols = _column_index(screen.gene_names, m)
        if cols is None and screen.embedding is not None and screen.embedding.matches(m.net.front):
            out.append(m.cell_summary(screen.embedding.cells(rows)))  # stored coordinates (pp.embed)
            continue
        cells = screen.rows.take(rows) if cells is None else cells  # (n, genes) CSR, read once for every model
        out.append(m.cell_summary(cells if cols is None else cells[:, cols]))  # (n, m1 [+ C])
    return out


def gene_prior(
    models: list[PerturbScoreModel], genes: list[str], sources: Sequence[GeneFeatures | None]
) -> list[np.ndarray | None]:
    """Per model, ``T(g)`` ``(P, m2)`` (NaN rows: no features) where the model fuses it with cells, else None."""
    feats = [f for f in sources if f is not None]
    out: list[np.ndarray | None] = []
    for m in models:
        if not (feats and m.has_recognizer and getattr(m.net, "fuses_prior", False)):
            out.append(None)
            continue
        prior = np.full((len(genes), m.model_config.stat_dim), np.nan, dtype=np.float32)  # (P, m2)
        for i, g in enumerate(genes):
            if (src := next((f for f in feats if g in f), None)) is not None:
                prior[i] = m.statistic_from_sequence(src.get([g]))[0]
        out.append(prior)
    return out


@torch.no_grad()
def distances_from_means(
    models: list[PerturbScoreModel],
    means: list[np.ndarray],
    targets: np.ndarray,
    n_cells: np.ndarray,
    priors: list[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Ensemble-mean ``H(G(mean f), Q)``, the statistic fused with ``T(g)`` where a prior is given.

    Parameters
    ----------
    models
        The ensemble.
    means
        Per model, ``(n, m1)`` mean program activities (each model has its own f).
    targets
        ``(T, C)`` target mixes.
    n_cells
        ``(n,)`` cells behind each mean.
    priors
        Per model, ``(n, m2)`` sequence statistics (NaN rows: none), or None.

    Returns
    -------
    ``(n, T)`` distances, and the ``(n, C)`` decoded mix (None where no head decodes one).
    """
    n_cells = np.asarray(n_cells)
    dist, mixes = np.zeros((len(n_cells), len(targets))), []  # mixes: per model, (n, C)
    for j, m in enumerate(models):
        prior = None if priors is None else priors[j]
        mix_j: list[np.ndarray | None] = []
        for a in range(0, len(n_cells), CHUNK):  # G/H on big batches of means, in bounded memory
            sl = slice(a, a + CHUNK)
            stat = m.net.pool(torch.from_numpy(np.ascontiguousarray(means[j][sl], dtype=np.float32)))  # (b, m2)
            if prior is not None and (has := ~np.isnan(prior[sl]).any(axis=1)).any():
                k, sel = torch.as_tensor(n_cells[sl][has].astype(np.float32)), torch.from_numpy(has)
                stat[sel] = m.net.fuse(stat[sel], torch.from_numpy(prior[sl][has]), k)
            q = np.repeat(targets[None], stat.shape[0], axis=0)  # (b, T, C)
            dist[sl] += m.predict_distance(stat.numpy(), q, n_cells=n_cells[sl]) / len(models)  # (b, T)
            mix_j.append(m.predict_proportions(stat.numpy(), n_cells=n_cells[sl]))
        decoded = [x for x in mix_j if x is not None]
        if len(decoded) == len(mix_j):
            mixes.append(np.concatenate(decoded))
    return dist, (np.mean(mixes, axis=0) if mixes else None)


def resampled_distances(
    models: list[PerturbScoreModel],
    acts: list[list[np.ndarray]],
    targets: np.ndarray,
    sizes: Sequence[Sequence[int]],
    n_resamples: int,
    *,
    rng: np.random.Generator,
    priors: list[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    """All-cells predictions and predictions from resamples of cells (with replacement), in one batch.

    Parameters
    ----------
    models
        The ensemble.
    acts
        Per perturbation, per model, the ``(n_p, m1)`` program activities of its cells.
    targets
        ``(T, C)`` target mixes.
    sizes
        Per perturbation, the cells per resample to try (``K_p`` sizes).
    n_resamples
        ``R``, resamples per size.
    rng
        Random generator.
    priors
        Per model, ``(P, m2)`` sequence statistics of the perturbations (NaN rows: none), or None.

    Returns
    -------
    ``(P, T)`` all-cells predictions; per perturbation ``(K_p, R, T)`` resampled predictions; ``(P, C)`` decoded
    mix of the all-cells statistic (None where no head decodes one).
    """
    means: list[list[np.ndarray]] = [[] for _ in models]
    n_cells, owner = [], []
    for p, (f_p, ks) in enumerate(zip(acts, sizes, strict=True)):
        n = len(f_p[0])
        draws = [rng.integers(0, n, size=(n_resamples, k)) for k in ks]  # each (R, k) cell indices
        for j, f in enumerate(f_p):
            means[j].append(np.vstack([f.mean(0, keepdims=True), *(f[d].mean(1) for d in draws)]))  # (1 + K R, m1)
        n_cells.append(np.r_[n, np.repeat(np.asarray(ks, dtype=np.int64), n_resamples)])
        owner.append(np.full(len(n_cells[-1]), p))
    owner_all = np.concatenate(owner)
    rep = None if priors is None else [None if pr is None else pr[owner_all] for pr in priors]
    dist, mix = distances_from_means(models, [np.concatenate(m) for m in means], targets, np.concatenate(n_cells), rep)
    starts = np.cumsum([0, *(len(n) for n in n_cells)])[:-1]  # first row (all cells) of each perturbation
    res = [
        dist[s + 1 : s + len(n)].reshape(len(k), n_resamples, dist.shape[1])
        for s, n, k in zip(starts, n_cells, sizes, strict=True)
    ]
    return dist[starts], res, None if mix is None else mix[starts]


# -- cells needed ---------------------------------------------------------------------------------
def _check_advice_args(tolerance: float, ks: Sequence[int], n_resamples: int, coverage: float) -> np.ndarray:
    ks_arr = np.unique(np.asarray(ks, dtype=np.int64))
    if not len(ks_arr) or ks_arr[0] < 1:
        raise InputError(f"ks={list(ks)}: give one or more cell counts >= 1, e.g. ks=(2, 5, 10, 20, 50)")
    if not tolerance > 0 or not 0 < coverage <= 1 or n_resamples < 2:
        raise InputError(
            f"tolerance={tolerance}, coverage={coverage}, n_resamples={n_resamples}: need tolerance > 0 (a distance, "
            "e.g. 0.05), 0 < coverage <= 1 and n_resamples >= 2"
        )
    return ks_arr


def _smallest_stable(spread: np.ndarray, ks: np.ndarray, tolerance: float) -> int | None:
    """Smallest ``k`` from which the spread stays within ``tolerance`` for every larger ``k`` tried."""
    stable_from = np.logical_and.accumulate((spread <= tolerance)[::-1])[::-1]  # (K,)
    return int(ks[np.argmax(stable_from)]) if stable_from.any() else None


def _stability(models, screen, genes, Q, ks, n_resamples, coverage, *, features, rng) -> list[dict[str, Any]]:  # noqa: ANN001
    """Per gene: cells, all-cells prediction ``(T,)``, spread and bias ``(K, T)`` of resampled predictions."""
    acts = [program_activities(models, screen, g) for g in genes]
    priors = gene_prior(models, list(genes), [features, screen.features])  # per model (P, m2) or None
    ref, res, _ = resampled_distances(models, acts, Q, [ks] * len(genes), n_resamples, rng=rng, priors=priors)
    out = []
    for p, r in enumerate(res):
        dev = np.abs(r - ref[p])  # (K, R, T)
        out.append({"n": len(acts[p][0]), "ref": ref[p], "spread": np.quantile(dev, coverage, axis=1), "bias": r.mean(1) - ref[p]})  # fmt: skip
    return out


def cells_needed(
    model: PerturbScoreModel | Sequence[PerturbScoreModel],
    data: Screen | ad.AnnData | str | os.PathLike[str],
    perturbation: str,
    *,
    target: Any,
    features: GeneFeatures | None = None,
    tolerance: float = 0.05,
    ks: Sequence[int] = DEFAULT_KS,
    n_resamples: int = 100,
    coverage: float = 0.9,
    rng: np.random.Generator | int | None = 0,
    perturbation_key: str | None = None,
    state_key: str | None = None,
    control: str | None = None,
    layer: str | None = None,
) -> dict[str, Any]:
    """How many cells of ``perturbation`` give a prediction within ``tolerance`` of the all-cells one.

    For each ``k`` in ``ks``, ``n_resamples`` samples of ``k`` cells (with replacement, so ``k`` may exceed the
    cells measured) are scored; the spread at ``k`` is the ``coverage`` quantile of
    ``|H(s_k, Q) - H(s_all, Q)|``. The answer is the smallest ``k`` from which the spread stays within
    ``tolerance`` for every larger ``k`` tried, so a looser tolerance never needs more cells.

    Parameters
    ----------
    model
        A :class:`PerturbScoreModel` (or several: ensemble mean).
    data
        The screen holding the perturbation's cells: an AnnData, a path or a :class:`Screen`.
    perturbation
        Its name.
    target
        One target: ``{'progenitor': 0.6, 'cycling': 0.4}``, a Series, or a ``(C,)`` mix in the model's order.
    features
        Gene features, for models that fuse the cells' statistic with ``T(g)`` (the screen's are used too).
    tolerance
        Allowed deviation of the predicted distance (TV scale, [0, 1]).
    ks
        Cell counts to try.
    n_resamples
        Resamples per ``k``.
    coverage
        Fraction of resamples that must lie within ``tolerance``.
    rng
        Seed or generator.
    perturbation_key, state_key, control, layer
        How to read an AnnData or path (default: the model's keys, else the challenge layout's).

    Returns
    -------
    dict
        ``perturbation``, ``n_cells`` (measured), ``pred_distance`` (all cells), ``cells_needed`` (``None`` if no
        ``k`` tried is enough), ``enough_cells`` (measured >= needed), ``tolerance``, ``coverage`` and ``curve``:
        a DataFrame with ``k``, ``spread`` (the ``coverage`` half-width) and ``bias`` (mean deviation).
    """
    models = as_models(model)
    q = next(iter(check_targets(target, models[0].states).values()))[None]  # (1, C)
    ks_arr = _check_advice_args(tolerance, ks, n_resamples, coverage)
    screen = _screen(data, models[0], perturbation_key, state_key, control, layer)
    st = _stability(models, screen, [perturbation], q, ks_arr, n_resamples, coverage, features=features, rng=as_rng(rng))[0]  # fmt: skip
    need = _smallest_stable(st["spread"][:, 0], ks_arr, tolerance)
    return {
        "perturbation": perturbation,
        "n_cells": int(st["n"]),
        "pred_distance": float(st["ref"][0]),
        "cells_needed": need,
        "enough_cells": None if need is None else bool(st["n"] >= need),
        "tolerance": float(tolerance),
        "coverage": float(coverage),
        "curve": pd.DataFrame({"k": ks_arr, "spread": st["spread"][:, 0], "bias": st["bias"][:, 0]}),
    }


def cells_needed_table(
    model: PerturbScoreModel | Sequence[PerturbScoreModel],
    data: Screen | ad.AnnData | str | os.PathLike[str],
    *,
    target: Any,
    features: GeneFeatures | None = None,
    tolerance: float = 0.05,
    ks: Sequence[int] = DEFAULT_KS,
    n_resamples: int = 100,
    coverage: float = 0.9,
    rng: np.random.Generator | int | None = 0,
    progress: bool = True,
    perturbation_key: str | None = None,
    state_key: str | None = None,
    control: str | None = None,
    layer: str | None = None,
    key_added: str = CELLS_NEEDED_KEY,
    copy: bool = False,
) -> pd.DataFrame | ad.AnnData:
    """:func:`cells_needed` for every measured knockout (control excluded) and every target.

    ``target`` is any form :func:`~perturbscore.tl.score_perturbations` accepts (one mix, or ``{name: mix}``).
    An AnnData gets the table in ``adata.uns[key_added]`` (``table``, ``params``); ``copy=True`` writes into a
    copy and returns it. Returns one row per (target, gene): ``target, gene, n_cells, pred_distance,
    cells_needed`` (nullable int; missing when no ``k`` tried is enough), ``enough_cells`` and ``spread_max_k``
    (the spread at the largest ``k`` tried).
    """
    models = as_models(model)
    named = check_targets(target, models[0].states)
    Q = np.stack(list(named.values()))  # (T, C)
    ks_arr = _check_advice_args(tolerance, ks, n_resamples, coverage)
    screen = _screen(data, models[0], perturbation_key, state_key, control, layer)
    gen, rows, genes = as_rng(rng), [], screen.knockouts
    batches = [genes[i : i + 16] for i in range(0, len(genes), 16)]
    stats = [st for b in track(batches, progress=progress, description="cells needed") for st in _stability(models, screen, b, Q, ks_arr, n_resamples, coverage, features=features, rng=gen)]  # fmt: skip
    for gene, st in zip(genes, stats, strict=True):
        for t, name in enumerate(named):
            need = _smallest_stable(st["spread"][:, t], ks_arr, tolerance)
            enough = pd.NA if need is None else bool(st["n"] >= need)
            rows.append((name, gene, st["n"], float(st["ref"][t]), need, enough, float(st["spread"][-1, t])))
    cols = ["target", "gene", "n_cells", "pred_distance", "cells_needed", "enough_cells", "spread_max_k"]
    df = pd.DataFrame(rows, columns=cols)
    df["cells_needed"] = df["cells_needed"].astype("Int64")
    df["enough_cells"] = df["enough_cells"].astype("boolean")
    params = {"targets": {n: q.tolist() for n, q in named.items()}, "states": list(models[0].states),
              "tolerance": float(tolerance), "coverage": float(coverage), "ks": ks_arr.tolist(),
              "n_resamples": int(n_resamples)}  # fmt: skip
    df.attrs["params"] = params
    adata = target_adata(data, copy=copy)
    if adata is not None:
        adata.uns[key_added] = {"table": df.copy(), "params": h5_safe(params)}
    return adata if copy and adata is not None else df


def _screen(data, model, perturbation_key, state_key, control, layer) -> Screen:  # noqa: ANN001
    screen = resolve_screen(data, model, perturbation_key=perturbation_key, state_key=state_key, control=control,
                            layer=layer, small="keep")  # fmt: skip
    assert screen is not None
    return screen
