"""The rows of a score table: measured knockouts from all their cells, unseen genes from their sequence.

Each part returns a dict of per-gene arrays (prediction, interval, observed and decoded mixes) that
:func:`~perturbscore.tl.score_perturbations` assembles into the long table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from .._errors import InputError, RunError
from .._utils import track
from ..data import GeneFeatures, Screen
from ..model import PerturbScoreModel
from ._advice import gene_prior, program_activities, resampled_distances

logger = logging.getLogger(__name__)

#: Default cap on the cells of one bootstrap resample.
MAX_K_BOOT = 500
#: Genes per batch on the sequence path.
SEQ_BATCH = 1024
#: Ends of the bootstrap and ensemble intervals.
QUANTILES = (0.025, 0.975)


def _state_columns(screen: Screen, states: Sequence[str]) -> np.ndarray:
    """Index of each model state among the screen's states."""
    if set(screen.states) != set(states):
        raise InputError(
            f"the screen's states {list(screen.states)} differ from the model's {list(states)}; read the screen "
            "with states=model.states and the same state column the model was trained on"
        )
    return np.array([list(screen.states).index(s) for s in states], dtype=np.int64)


# -- the cells path ------------------------------------------------------------------------------
def bias_corrected_interval(pred: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval shifted by the bootstrap estimate of the prediction's bias.

    ``H(G(mean f))`` is not linear in the mean of the cells' program activities, so a prediction from
    ``k`` cells is a biased estimate of the prediction from all of the knockout's cells (Jensen), and the
    resampled predictions are shifted from the sample's own prediction in the same direction. The plain
    percentile interval is therefore centred about twice the bias away from the value it should cover.
    Subtracting the bootstrap bias ``mean(draws) - pred`` from both ends removes that offset:
    ``[q_lo - b, q_hi - b]``, clipped to the distance range [0, 1].

    Parameters
    ----------
    pred
        ``(P, T)`` predictions from all cells of each knockout.
    draws
        ``(P, B, T)`` predictions from ``B`` resamples of each knockout's cells.

    Returns
    -------
    ``(P, T)`` lower and upper ends of the 2.5–97.5 % interval (:data:`QUANTILES`).
    """
    bias = draws.mean(axis=1) - pred  # (P, T)
    lo, hi = (np.clip(np.quantile(draws, q, axis=1) - bias, 0.0, 1.0) for q in QUANTILES)
    return lo, hi


def measured_rows(
    models: list[PerturbScoreModel],
    screen: Screen,
    Q: np.ndarray,
    features: GeneFeatures | None,
    *,
    n_boot: int,
    k_boot: int | None,
    rng: np.random.Generator,
    progress: bool,
) -> dict[str, Any]:
    """Rows for the measured knockouts: all-cells predictions ``(P, T)``, bootstrap quantiles, observed mixes."""
    genes = screen.knockouts
    acts = [program_activities(models, screen, g) for g in track(genes, progress=progress, description="cells")]
    sizes = [[min(len(a[0]), MAX_K_BOOT) if k_boot is None else int(k_boot)] for a in acts]
    priors = gene_prior(models, genes, [features, screen.features])  # per model (P, m2) or None
    pred, boot, mix = resampled_distances(models, acts, Q, sizes, n_boot, rng=rng, priors=priors)  # boot: (1, B, T)
    nan = np.full(pred.shape, np.nan)
    lo, hi = bias_corrected_interval(pred, np.stack([b[0] for b in boot])) if n_boot else (nan, nan)
    props = screen.proportions[[screen.index_of(g) for g in genes]][:, _state_columns(screen, models[0].states)]
    interval = f"bootstrap ({n_boot} resamples)" if n_boot else "none (n_boot=0)"
    counts = props * screen.counts[[screen.index_of(g) for g in genes]][:, None]  # (P, C) label counts
    if (cal := calibrated(models, genes, pred, counts, Q, [features, screen.features])) is not None:
        pred, lo, hi = cal  # the reported number: head blended with empirical Bayes, conformal interval
        interval = "conformal 95 % (calibrated on held-out knockouts)"
    with torch.no_grad():  # G(mean f) of all cells, without the sequence prior: the knockout's own statistic
        means = torch.from_numpy(np.stack([a[0].mean(0) for a in acts]).astype(np.float32))
        stat = models[0].net.pool(means).numpy()  # (P, m2)
    return {
        "statistic": pd.DataFrame(stat, index=pd.Index(genes, name="perturbation"), columns=models[0].stat_names),
        "genes": genes,
        "source": "cells",
        "pred": pred,  # (P, T)
        "lo": lo,
        "hi": hi,
        "interval": interval,
        "empirical": 0.5 * np.abs(props[:, None, :] - Q[None]).sum(-1),  # (P, T)
        "n": screen.counts[[screen.index_of(g) for g in genes]],
        "mix": mix,  # (P, C) decoded from the all-cells statistic
        "basis": props,  # (P, C) observed mix in the model's state order: constraints are checked on it
    }


def calibrated(
    models: list[PerturbScoreModel],
    genes: list[str],
    head: np.ndarray,
    counts: np.ndarray | None,
    Q: np.ndarray,
    sources: Sequence[GeneFeatures | None],
    block: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Return the reported number ``(P, T)`` and its conformal interval (first model's calibration), or None.

    ``head`` is the (ensemble-mean) head distance; ``counts`` the genes' label counts (None: sequence only);
    ``block`` the genes' features when the caller holds them, else they are looked up in ``sources``. A gene
    without features gets the training mean as its empirical-Bayes prior.
    """
    cal = models[0].calibration
    if cal is None:
        return None
    feats = [f for f in sources if f is not None]
    has = np.array([block is not None or any(g in f for f in feats) for g in genes], dtype=bool)
    out = [np.empty(head.shape) for _ in range(3)]
    for sel in (has, ~has):
        if not sel.any():
            continue
        rows = np.flatnonzero(sel)
        x = None
        if sel is has:
            x = block[rows] if block is not None else np.stack([next(f for f in feats if genes[i] in f).get([genes[i]])[0] for i in rows])  # fmt: skip
        res = cal.combine(head[rows], None if counts is None else counts[rows], x, Q)
        for arr, val in zip(out, (res.distance, res.lo, res.hi), strict=True):
            arr[rows] = val
    return out[0], out[1], out[2]


# -- the sequence path ---------------------------------------------------------------------------
def _sequence_genes(sources: Sequence[GeneFeatures | None], *, skip: set[str]) -> list[tuple[GeneFeatures, np.ndarray]]:
    """(features, row positions) blocks of the genes to score from sequence, each gene once."""
    blocks, seen = [], set(skip)
    for feats in filter(None, sources):
        pos = np.array([i for i, g in enumerate(feats.genes) if g not in seen], dtype=np.int64)
        if len(pos):
            blocks.append((feats, pos))
            seen.update(feats.genes[pos].tolist())
    return blocks


def _rows(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values[pos]``, as a view when ``pos`` is a contiguous range (no copy of a genome's features)."""
    if pos[-1] - pos[0] == len(pos) - 1 and (np.diff(pos) == 1).all():
        return values[pos[0] : pos[-1] + 1]
    return values[pos]


def _score_sequence(models: list[PerturbScoreModel], blocks: list, targets: np.ndarray, *, progress: bool) -> dict:
    """Ensemble ``H(T(g), Q)`` for the genes of ``blocks``: mean, spread across models, decoded mix."""
    genes, dist, mixes = [], [], []
    batches = [(f, pos[i : i + SEQ_BATCH]) for f, pos in blocks for i in range(0, len(pos), SEQ_BATCH)]
    for feats, pos in track(batches, progress=progress, description="sequence"):
        block, q = _rows(feats.values, pos), np.repeat(targets[None], len(pos), axis=0)  # (b, W, D), (b, T, C)
        d_b, mix_b = [], []
        for m in models:
            stat = m.statistic_from_sequence(block)  # (b, m2)
            d_b.append(m.predict_distance(stat, q, n_cells=0))  # (b, T)
            if (mix := m.predict_proportions(stat)) is not None:
                mix_b.append(mix)
        d_m = np.stack(d_b)  # (M, b, T)
        if (cal := calibrated(models, feats.genes[pos].tolist(), d_m.mean(0), None, targets, [], block)) is not None:
            d_m = np.stack([cal[0], cal[1], cal[2]])[:, None]  # (3, 1, b, T): number, lo, hi
        dist.append(d_m)
        mixes.append(np.mean(mix_b, axis=0) if mix_b else None)
        genes.extend(feats.genes[pos].tolist())
    if models[0].calibration is not None:  # calibrated: the number and its conformal interval
        d3 = np.concatenate(dist, axis=2)  # (3, 1, G, T)
        d, lo, hi = d3[0], d3[1][0], d3[2][0]
        interval = "conformal 95 % (calibrated on held-out knockouts)"
    else:
        d = np.concatenate(dist, axis=1)  # (M, G, T)
        lo, hi = (np.quantile(d, q, axis=0) for q in QUANTILES) if len(models) > 1 else (None, None)
        interval = f"ensemble ({len(models)} models)" if len(models) > 1 else "none (single model)"
    mix = np.concatenate(cast("list[np.ndarray]", mixes)) if all(m is not None for m in mixes) else None
    return {
        "genes": genes,
        "source": "sequence",
        "pred": d.mean(0),
        "lo": lo,
        "hi": hi,
        "interval": interval,
        "n": np.zeros(len(genes), dtype=np.int64),
        "mix": mix,
        "basis": mix if mix is not None else np.full((len(genes), targets.shape[1]), np.nan),
    }


def sequence_rows(models, screen, features, Q, skip: set[str], *, progress: bool) -> dict | None:  # noqa: ANN001
    sources = [features, None if screen is None else screen.features]
    blocks = _sequence_genes(sources, skip=skip | ({screen.control} if screen is not None else set()))
    with_t = [m for m in models if m.has_recognizer]
    if not blocks or (not with_t and features is None):
        return None
    if not with_t:
        raise RunError(
            "the model(s) have no recognition network T (trained without gene features), so genes without cells "
            "cannot be scored; train with --features, or leave out --features"
        )
    if len(with_t) < len(models):
        logger.warning("%d of %d models lack T; sequence rows use the others", len(models) - len(with_t), len(models))
    return _score_sequence(with_t, blocks, Q, progress=progress)
