"""Score and rank knockouts, measured or unseen, against target state mixes, with uncertainty.

Measured knockouts (cells in the screen) are scored from the statistic of all their cells, with a
bias-corrected percentile bootstrap interval over cells; genes with sequence features but no cells are
scored from ``T(g)``, with an interval from the spread of an ensemble of models (several runs: seeds or
folds).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import __version__
from .._constants import KEYS
from .._errors import InputError, RunError
from .._utils import as_rng, track
from ..data import GeneFeatures, Screen
from ..io import Constraint, parse_constraint
from ._advice import as_models, check_targets, gene_prior, program_activities, resampled_distances
from ._model import PerturbScoreModel

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

CONSTRAINT_MODES = ("filter", "penalize")
#: Added to the distance of rows that violate a constraint in ``constraint_mode="penalize"``.
PENALTY = 1.0
#: Default cap on the cells of one bootstrap resample.
MAX_K_BOOT = 500
#: Genes per batch on the sequence path.
SEQ_BATCH = 1024
QUANTILES = (0.025, 0.975)


# -- inputs ---------------------------------------------------------------------------------------
def _constraints_by_target(
    constraints: Sequence[Constraint] | Mapping[str, Sequence[Constraint]], names: list[str], states: Sequence[str]
) -> dict[str, list[Constraint]]:
    """Constraints per target (one list for all, or a mapping), their state index re-read against ``states``."""
    if isinstance(constraints, Mapping):
        unknown = sorted(set(constraints) - set(names))
        if unknown:
            raise InputError(f"constraints given for unknown targets {unknown}; the targets are {names}")
        by = {n: list(constraints.get(n, ())) for n in names}
    else:
        by = {n: list(constraints) for n in names}
    return {n: [parse_constraint(f"{c.state}{c.op}{c.value!r}", states) for c in cs] for n, cs in by.items()}


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


def _measured_part(
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
    return {
        "genes": genes,
        "source": "cells",
        "pred": pred,  # (P, T)
        "lo": lo,
        "hi": hi,
        "interval": f"bootstrap ({n_boot} resamples)" if n_boot else "none (n_boot=0)",
        "empirical": 0.5 * np.abs(props[:, None, :] - Q[None]).sum(-1),  # (P, T)
        "n": screen.counts[[screen.index_of(g) for g in genes]],
        "mix": mix,  # (P, C) decoded from the all-cells statistic
        "basis": props,  # (P, C) observed mix in the model's state order: constraints are checked on it
    }


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
        dist.append(np.stack(d_b))  # (M, b, T)
        mixes.append(np.mean(mix_b, axis=0) if mix_b else None)
        genes.extend(feats.genes[pos].tolist())
    d = np.concatenate(dist, axis=1)  # (M, G, T)
    lo, hi = (np.quantile(d, q, axis=0) for q in QUANTILES) if len(models) > 1 else (None, None)
    mix = np.concatenate(mixes) if all(m is not None for m in mixes) else None
    return {
        "genes": genes,
        "source": "sequence",
        "pred": d.mean(0),
        "lo": lo,
        "hi": hi,
        "interval": f"ensemble ({len(models)} models)" if len(models) > 1 else "none (single model)",
        "n": np.zeros(len(genes), dtype=np.int64),
        "mix": mix,
        "basis": mix if mix is not None else np.full((len(genes), targets.shape[1]), np.nan),
    }


def _sequence_part(models, screen, features, Q, skip: set[str], *, progress: bool) -> dict | None:  # noqa: ANN001
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


# -- assembly -------------------------------------------------------------------------------------
def _constraint_ok(basis: np.ndarray, constraints: list[Constraint], target: str) -> np.ndarray:
    """Rows of ``basis`` ``(n, C)`` meeting every constraint; rows with no known mix fail (and are reported)."""
    ok = np.ones(len(basis), dtype=bool)
    if not constraints or not len(basis):
        return ok
    for c in constraints:
        ok &= c.holds(basis)
    if (unknown := np.isnan(basis).any(axis=1)).any():
        logger.warning("target %r: %d rows have no state mix to check constraints on; they count as violating", target, int(unknown.sum()))  # fmt: skip
    return ok & ~unknown


def rank_rows(df: pd.DataFrame, *, constraint_mode: str = "filter") -> pd.Series:
    """Rank within each target, 1 = closest; ``filter`` ranks passing rows only, ``penalize`` adds :data:`PENALTY`."""
    if constraint_mode not in CONSTRAINT_MODES:
        raise InputError(f"constraint_mode={constraint_mode!r}; use one of {', '.join(CONSTRAINT_MODES)}")
    ok = df["constraint_ok"].to_numpy(dtype=bool)
    key = (
        df["pred_distance"].where(ok) if constraint_mode == "filter" else df["pred_distance"] + np.where(ok, 0, PENALTY)
    )
    return key.groupby(df["target"], sort=False).rank(method="min").astype("Int64")


def _mix_columns(states: Sequence[str]) -> list[str]:
    return [f"pred_{s.replace(' ', '_')}" for s in states]


def _long_table(parts: list[dict], names: list[str], Q: np.ndarray, cons: dict, states: Sequence[str]) -> pd.DataFrame:
    """One row per (target, part row): the parts' per-target columns, state mixes and constraint checks."""
    frames = []
    for t, name in enumerate(names):
        for part in parts:
            nan = np.full(len(part["genes"]), np.nan)
            df = pd.DataFrame(
                {
                    "target": name,
                    "gene": part["genes"],
                    "source": part["source"],
                    "pred_distance": part["pred"][:, t].astype(np.float64),
                    "lo": nan if part["lo"] is None else part["lo"][:, t].astype(np.float64),
                    "hi": nan if part["hi"] is None else part["hi"][:, t].astype(np.float64),
                    "interval": part["interval"],
                    "empirical_distance": part.get("empirical", nan[:, None] + np.zeros(len(names)))[:, t],
                    "n_cells": part["n"],
                }
            )
            mix = part["mix"] if part["mix"] is not None else np.full((len(df), len(states)), np.nan)
            df[_mix_columns(states)] = mix.astype(np.float64)
            df["constraint_ok"] = _constraint_ok(part["basis"], cons[name], name)
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["target", "gene", "source", "pred_distance", "constraint_ok"])
    return pd.concat(frames, ignore_index=True)


def _order(df: pd.DataFrame, names: list[str], states: Sequence[str]) -> pd.DataFrame:
    first = ["target", "gene", "source", "pred_distance", "lo", "hi", "interval", "empirical_distance", "n_cells"]
    mix = [c for c in _mix_columns(states) if c in df and df[c].notna().any()]
    pos = df["target"].map({n: i for i, n in enumerate(names)})
    df = df.assign(_t=pos).sort_values(["_t", "rank", "pred_distance"], na_position="last", kind="stable")
    return df[[*first, "trained_on", *mix, "constraint_ok", "rank"]].reset_index(drop=True)


def score_perturbations(
    model: PerturbScoreModel | Sequence[PerturbScoreModel],
    screen: Screen | None = None,
    *,
    targets: Mapping[str, np.ndarray] | np.ndarray,
    features: GeneFeatures | None = None,
    constraints: Sequence[Constraint] | Mapping[str, Sequence[Constraint]] = (),
    constraint_mode: Literal["filter", "penalize"] = "filter",
    n_boot: int = 200,
    k_boot: int | None = None,
    also_sequence: bool = False,
    rng: np.random.Generator | int | None = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Score knockouts against target state mixes and rank them, with uncertainty intervals.

    Parameters
    ----------
    model
        A :class:`PerturbScoreModel`, or several (seeds/folds): predictions are the ensemble mean.
    screen
        Measured knockouts (the control excluded) get ``source="cells"`` rows: the prediction from the
        statistic of all their cells (fused with ``T(g)`` where the model does so and features exist), a
        2.5–97.5 % percentile bootstrap interval over cells shifted by the bootstrap estimate of the
        prediction's bias (``mean(resamples) - prediction``), the empirical distance of their labels.
    targets
        ``{name: (C,) mix}`` in the model's state order (or one array, named ``"target"``).
    features
        Genes with features but no cells (e.g. a genome-wide table) get ``source="sequence"`` rows,
        ``H(T(g), Q)``; the interval is the 2.5–97.5 % spread across the models (none for one model).
        The screen's own features are used too.
    constraints
        Bounds on state shares (:func:`perturbscore.io.parse_constraint`), for all targets or per target name.
        Cells rows are checked on their observed mix, sequence rows on the decoded mix.
    constraint_mode
        ``"filter"``: only passing rows are ranked. ``"penalize"``: violating rows rank after +1.0 distance.
    n_boot, k_boot
        Bootstrap resamples, and cells per resample (default: the knockout's count, at most 500). With a
        ``k_boot`` below the knockout's count the interval has the spread of ``k_boot``-cell predictions,
        centred like the all-cells prediction (the bias shift then also holds the change in cell count).
    also_sequence
        Add a sequence row for measured genes that have features too.
    rng
        Seed or generator for the bootstrap.
    progress
        Show progress bars.

    Returns
    -------
    pandas.DataFrame
        One row per (target, gene[, source]), sorted by target then rank: ``target, gene, source,
        pred_distance, lo, hi, interval, empirical_distance, n_cells, trained_on`` (models that trained on the
        gene), ``pred_<state>...`` (if decoded), ``constraint_ok, rank``. The call is in ``df.attrs["params"]``.
    """
    models = as_models(model)
    states = models[0].states
    named = check_targets(targets, states)
    names, Q = list(named), np.stack(list(named.values()))  # (T, C)
    cons = _constraints_by_target(constraints, names, states)
    if constraint_mode not in CONSTRAINT_MODES:
        raise InputError(f"constraint_mode={constraint_mode!r}; use one of {', '.join(CONSTRAINT_MODES)}")
    if n_boot < 0 or (k_boot is not None and k_boot < 1):
        raise InputError(f"n_boot={n_boot}, k_boot={k_boot}: need n_boot >= 0 and k_boot >= 1 (or None)")
    if screen is None and features is None:
        raise InputError("nothing to score: pass a screen (measured knockouts) and/or features (unseen genes)")
    parts = []
    if screen is not None and screen.knockouts:
        kw = {"n_boot": n_boot, "k_boot": k_boot, "rng": as_rng(rng), "progress": progress}
        parts.append(_measured_part(models, screen, Q, features, **kw))
    skip = set() if also_sequence or screen is None else set(screen.knockouts)
    if (seq := _sequence_part(models, screen, features, Q, skip, progress=progress)) is not None:
        parts.append(seq)
    out = _long_table(parts, names, Q, cons, states)
    trained = [set(m.split.get("train", ())) for m in models]
    out["trained_on"] = [sum(g in s for s in trained) for g in out["gene"]]
    out["rank"] = rank_rows(out, constraint_mode=constraint_mode)
    out = _order(out, names, states)
    out.attrs["params"] = _params(models, names, Q, cons, constraint_mode, n_boot, k_boot, rng, also_sequence)
    return out


def _params(models, names, Q, cons, mode, n_boot, k_boot, rng, also_sequence) -> dict[str, Any]:  # noqa: ANN001
    return {
        "perturbscore_version": __version__,
        "n_models": len(models),
        "states": list(models[0].states),
        "targets": {n: Q[i].tolist() for i, n in enumerate(names)},
        "constraints": {n: [str(c) for c in cons[n]] for n in names},
        "constraint_mode": mode,
        "n_boot": int(n_boot),
        "k_boot": "auto" if k_boot is None else int(k_boot),
        "rng": int(rng) if isinstance(rng, int | np.integer) else "generator" if rng is not None else "none",
        "also_sequence": bool(also_sequence),
    }


# -- AnnData --------------------------------------------------------------------------------------
def score_to_anndata(adata: ad.AnnData, df: pd.DataFrame, *, key_added: str = KEYS.scores) -> None:
    """Store a score table in ``adata.uns[key_added]`` (h5ad-writable): ``table`` (column arrays), ``params``.

    Read it back with :func:`scores_from_anndata`. ``rank`` is stored as float (NaN = not ranked).
    """
    table: dict[str, np.ndarray] = {}
    for col in df.columns:
        s = df[col]
        if col == "rank" or (pd.api.types.is_integer_dtype(s) and s.isna().any()):
            table[col] = s.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            table[col] = s.to_numpy()
        else:
            table[col] = s.astype(str).to_numpy(dtype=str)
    params = {**df.attrs.get("params", {}), "columns": list(df.columns)}
    adata.uns[key_added] = {"table": table, "params": _h5_safe(params)}


def scores_from_anndata(adata: ad.AnnData, *, key: str = KEYS.scores) -> pd.DataFrame:
    """The score table stored by :func:`score_to_anndata`, columns in their original order."""
    if key not in adata.uns or "table" not in adata.uns[key]:
        raise InputError(f"adata.uns has no score table under {key!r}; store one with score_to_anndata(adata, df)")
    entry = adata.uns[key]
    cols = [str(c) for c in np.atleast_1d(entry["params"]["columns"])]
    df = pd.DataFrame({c: np.asarray(entry["table"][c]) for c in cols})
    if "rank" in df:
        df["rank"] = df["rank"].astype("Float64").round().astype("Int64")
    return df


def _h5_safe(obj: Any) -> Any:
    """Make ``obj`` writable by anndata's h5ad writer (no None, lists as typed arrays)."""
    if isinstance(obj, Mapping):
        return {str(k): _h5_safe(v) for k, v in obj.items()}
    if obj is None:
        return "none"
    if isinstance(obj, list | tuple):
        if all(isinstance(v, str) for v in obj):
            return np.array(obj, dtype=str) if obj else np.array([], dtype="<U1")
        return np.asarray(obj)
    return obj
