"""Score and rank knockouts, measured or unseen, against target state mixes, with uncertainty.

Measured knockouts (cells in the screen) are scored from the statistic of all their cells and their label
counts; genes with sequence features but no cells from ``T(g)`` and their features. A calibrated model (see
:meth:`~perturbscore.model.PerturbScoreModel.calibrated_distance`) reports its head blended with empirical
Bayes, with a conformal 95 % interval for every row. A model without a calibration reports its head, with a
bias-corrected percentile bootstrap interval over cells, and for sequence rows an interval from the spread of
an ensemble of models (several runs: seeds or folds).

Every row says what it scored: the target's name, mix (``target_mix``) and constraints (``constraint``), and
``df.attrs["params"]`` holds them all (see :func:`~perturbscore.tl.write_scores`). Genes scored from sequence
alone are flagged and left unranked when the run's evaluation found the sequence path no better than
predicting the training mean for every gene: their scores would then rank noise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
import torch

from .. import __version__
from .._constants import KEYS
from .._errors import InputError, RunError
from .._utils import as_rng, track
from ..data import GeneFeatures, Screen
from ..io import Constraint, describe_mix, mix_to_spec, parse_constraint, read_features, resolve_target_specs
from ..model import PerturbScoreModel
from ._advice import as_models, check_targets, gene_prior, program_activities, resampled_distances
from ._data import h5_safe, is_anndata, plain, resolve_screen, target_adata
from ._scorefile import UNRANKED_FLAG, sequence_verdict

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

CONSTRAINT_MODES = ("filter", "penalize")
SEQUENCE_RANKINGS = ("auto", "together", "unranked")
#: Added to the distance of rows that violate a constraint in ``constraint_mode="penalize"``.
PENALTY = 1.0
#: Default cap on the cells of one bootstrap resample.
MAX_K_BOOT = 500
#: Genes per batch on the sequence path.
SEQ_BATCH = 1024
QUANTILES = (0.025, 0.975)


# -- inputs ---------------------------------------------------------------------------------------
def _constraints_by_target(
    constraints: Sequence[Constraint | str] | Mapping[str, Sequence[Constraint | str]],
    names: list[str],
    states: Sequence[str],
    own: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[Constraint]]:
    """Constraints per target: ``own`` (a preset's), plus one list for all targets or a mapping per target.

    Each constraint is a :class:`Constraint` or its text (``"cycling>=0.05"``), re-read against ``states``.
    """
    if isinstance(constraints, str):
        constraints = [constraints]
    if isinstance(constraints, Mapping):
        unknown = sorted(set(constraints) - set(names))
        if unknown:
            raise InputError(f"constraints given for unknown targets {unknown}; the targets are {names}")
        by = {n: list(constraints.get(n, ())) for n in names}
    else:
        by = {n: list(constraints) for n in names}
    out = {}
    for n in names:
        texts = [*(own or {}).get(n, ()), *(str(c) for c in by[n])]
        out[n] = [parse_constraint(t, states) for t in dict.fromkeys(texts)]
    return out


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
    interval = f"bootstrap ({n_boot} resamples)" if n_boot else "none (n_boot=0)"
    counts = props * screen.counts[[screen.index_of(g) for g in genes]][:, None]  # (P, C) label counts
    if (cal := _calibrated(models, genes, pred, counts, Q, [features, screen.features])) is not None:
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


def _calibrated(
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
        if (cal := _calibrated(models, feats.genes[pos].tolist(), d_m.mean(0), None, targets, [], block)) is not None:
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
    """Rank within each target, 1 = closest; ``filter`` ranks passing rows only, ``penalize`` adds :data:`PENALTY`.

    Rows with a non-empty ``flag`` are never ranked.
    """
    if constraint_mode not in CONSTRAINT_MODES:
        raise InputError(f"constraint_mode={constraint_mode!r}; use one of {', '.join(CONSTRAINT_MODES)}")
    ok = df["constraint_ok"].to_numpy(dtype=bool)
    flagged = df["flag"].astype(str).str.len().to_numpy() > 0 if "flag" in df else np.zeros(len(df), dtype=bool)
    key = (
        df["pred_distance"].where(ok) if constraint_mode == "filter" else df["pred_distance"] + np.where(ok, 0, PENALTY)
    )
    key = key.where(~flagged)  # flagged rows (sequence rows of a path no better than the mean) are not ranked
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
                    "target_mix": mix_to_spec(Q[t], states),
                    "constraint": "; ".join(str(c) for c in cons[name]) or "none",
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
        return pd.DataFrame(columns=["target", "target_mix", "constraint", "gene", "source", "pred_distance",
                                     "constraint_ok"])  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def _order(df: pd.DataFrame, names: list[str], states: Sequence[str]) -> pd.DataFrame:
    first = ["target", "target_mix", "constraint", "gene", "source", "pred_distance", "lo", "hi", "interval",
             "empirical_distance", "n_cells"]  # fmt: skip
    mix = [c for c in _mix_columns(states) if c in df and df[c].notna().any()]
    pos = df["target"].map({n: i for i, n in enumerate(names)})
    df = df.assign(_t=pos).sort_values(["_t", "rank", "pred_distance"], na_position="last", kind="stable")
    return df[[*first, "trained_on", *mix, "constraint_ok", "flag", "rank"]].reset_index(drop=True)


def score_perturbations(
    model: PerturbScoreModel | Sequence[PerturbScoreModel],
    data: Screen | ad.AnnData | str | os.PathLike[str] | None = None,
    *,
    targets: Any,
    features: GeneFeatures | str | os.PathLike[str] | None = None,
    constraints: Sequence[Constraint | str] | Mapping[str, Sequence[Constraint | str]] = (),
    constraint_mode: Literal["filter", "penalize"] = "filter",
    n_boot: int = 200,
    k_boot: int | None = None,
    also_sequence: bool = False,
    sequence_ranking: Literal["auto", "together", "unranked"] = "auto",
    evaluation: Mapping[str, Any] | None = None,
    perturbation_key: str | None = None,
    state_key: str | None = None,
    control: str | None = None,
    layer: str | None = None,
    key_added: str = KEYS.scores,
    copy: bool = False,
    rng: np.random.Generator | int | None = 0,
    progress: bool = True,
) -> pd.DataFrame | ad.AnnData:
    """Score knockouts against target state mixes and rank them, with uncertainty intervals.

    Parameters
    ----------
    model
        A :class:`PerturbScoreModel`, or several (seeds/folds): predictions are the ensemble mean.
    data
        The screen: an AnnData, an ``.h5ad``/``.zarr`` path or a :class:`~perturbscore.data.Screen` (or None to
        score from sequence only). Measured knockouts (the control excluded) get ``source="cells"`` rows: the
        prediction from the statistic of all their cells (fused with ``T(g)`` where the model does so and
        features exist), a 2.5–97.5 % percentile bootstrap interval over cells shifted by the bootstrap estimate
        of the prediction's bias (``mean(resamples) - prediction``), the empirical distance of their labels.
        With a calibrated model the prediction is blended with empirical Bayes (the cells' label counts and a
        feature prior) and the interval is conformal, from held-out knockouts' errors (``interval`` says which).
    targets
        What to score against, any of: ``{'progenitor': 0.6, 'cycling': 0.4}`` (one target; missing states are
        0), ``{name: mix}`` with mixes as such mappings, Series or arrays, a Series indexed by state, a ``(C,)`` or
        ``(T, C)`` array in the model's state order, a DataFrame (one target per row), or spec strings
        (``"progenitor=0.6,cycling=0.4"``, ``"name:..."``, a preset such as ``"progenitor"``, ``"name:preset"``).
        Unnamed targets are named after their dominant states (``"progenitor 60% + cycling 40%"``).
    features
        Gene features (:class:`GeneFeatures` or a path). Genes with features but no cells (e.g. a genome-wide
        table) get ``source="sequence"`` rows, ``H(T(g), Q)``; the interval is the 2.5–97.5 % spread across the
        models (none for one model). The screen's own features are used too.
    constraints
        Bounds on state shares (``"cycling>=0.05"`` or :func:`perturbscore.io.parse_constraint`), for all targets
        or per target name (a mapping). A preset target brings its own (``progenitor``: ``cycling>=0.05``), for
        itself only. Cells rows are checked on their observed mix, sequence rows on the decoded mix.
    constraint_mode
        ``"filter"``: only passing rows are ranked. ``"penalize"``: violating rows rank after +1.0 distance.
    n_boot, k_boot
        Bootstrap resamples, and cells per resample (default: the knockout's count, at most 500). With a
        ``k_boot`` below the knockout's count the interval has the spread of ``k_boot``-cell predictions,
        centred like the all-cells prediction (the bias shift then also holds the change in cell count).
    also_sequence
        Add a sequence row for measured genes that have features too.
    sequence_ranking
        ``"auto"``: sequence rows are ranked with the cells rows unless the evaluation found the sequence path
        no better than predicting the training mean, in which case they are flagged (``flag``) and left
        unranked. ``"together"``/``"unranked"`` force either.
    evaluation
        Evaluation results (``eval.json``); default: each model's ``evaluation`` (read from its run directory
        by :meth:`PerturbScoreModel.load`, or set by :func:`~perturbscore.tl.evaluate`).
    perturbation_key, state_key, control, layer
        How to read an AnnData or path (default: the keys the model was trained with, else the challenge
        layout's ``condition``, ``state``, ``Unperturbed``, ``X``; ``control="none"``: no control cells).
    key_added
        An AnnData gets ``adata.uns[key_added]``: ``table`` (this DataFrame), ``params`` (the targets with their
        mixes and constraints, the settings) and ``statistic`` (knockouts x :attr:`PerturbScoreModel.stat_names`,
        the first model's ``s(P)`` of all cells). Read the table back with :func:`scores_from_anndata`.
    copy
        Write into a copy of the AnnData and return that copy instead of the table.
    rng
        Seed or generator for the bootstrap.
    progress
        Show progress bars.

    Returns
    -------
    pandas.DataFrame or anndata.AnnData
        One row per (target, gene[, source]), sorted by target then rank: ``target, target_mix, constraint, gene,
        source, pred_distance, lo, hi, interval, empirical_distance, n_cells, trained_on`` (models that trained on
        the gene), ``pred_<state>...`` (if decoded), ``constraint_ok, flag, rank``. The call is in
        ``df.attrs["params"]``. With ``copy=True``, the annotated copy of the AnnData.
    """
    models = as_models(model)
    states = models[0].states
    named, own = _targets_and_own_constraints(targets, states)
    names, Q = list(named), np.stack(list(named.values()))  # (T, C)
    cons = _constraints_by_target(constraints, names, states, own)
    if constraint_mode not in CONSTRAINT_MODES:
        raise InputError(f"constraint_mode={constraint_mode!r}; use one of {', '.join(CONSTRAINT_MODES)}")
    if sequence_ranking not in SEQUENCE_RANKINGS:
        raise InputError(f"sequence_ranking={sequence_ranking!r}; use one of {', '.join(SEQUENCE_RANKINGS)}")
    if n_boot < 0 or (k_boot is not None and k_boot < 1):
        raise InputError(f"n_boot={n_boot}, k_boot={k_boot}: need n_boot >= 0 and k_boot >= 1 (or None)")
    if data is None and features is None:
        raise InputError("nothing to score: pass a screen (measured knockouts) and/or features (unseen genes)")
    feats = read_features(Path(features)) if isinstance(features, str | os.PathLike) else features
    screen = resolve_screen(data, models[0], perturbation_key=perturbation_key, state_key=state_key,
                            control=control, layer=layer)  # fmt: skip
    parts = []
    if screen is not None and screen.knockouts:
        parts.append(
            _measured_part(models, screen, Q, feats, n_boot=n_boot, k_boot=k_boot, rng=as_rng(rng), progress=progress)
        )
    skip = set() if also_sequence or screen is None else set(screen.knockouts)
    if (seq := _sequence_part(models, screen, feats, Q, skip, progress=progress)) is not None:
        parts.append(seq)
    out = _long_table(parts, names, Q, cons, states)
    trained = [set(m.split.get("train", ())) for m in models]
    out["trained_on"] = [sum(g in s for s in trained) for g in out["gene"]]
    sequence = _sequence_ranking(models, evaluation, sequence_ranking, has_rows=seq is not None)
    unranked = (out["source"] == "sequence") & (sequence["ranking"] == "unranked")
    out["flag"] = np.where(unranked, UNRANKED_FLAG, "")
    out["rank"] = rank_rows(out, constraint_mode=constraint_mode)
    out = _order(out, names, states)
    out.attrs["params"] = _params(models, names, Q, cons, constraint_mode, n_boot, k_boot, rng, also_sequence)
    out.attrs["params"]["sequence"] = sequence
    if unranked.any():
        logger.warning("%d genes scored from sequence alone are not ranked: %s", int(unranked.sum() // len(names)),
                       sequence["reason"])  # fmt: skip
    adata = target_adata(data, copy=copy)
    if adata is not None:
        score_to_anndata(adata, out, key_added=key_added)
        if parts and "statistic" in parts[0]:
            adata.uns[key_added]["statistic"] = parts[0]["statistic"]
    elif is_anndata(data):
        logger.info("the AnnData is backed by a file: the scores were not written into it (pass copy=True)")
    return adata if copy and adata is not None else out


def _targets_and_own_constraints(targets: Any, states: Sequence[str]) -> tuple[dict[str, np.ndarray], dict]:
    """Named mixes, and the constraints preset targets bring (only for targets given as spec strings)."""
    specs = [targets] if isinstance(targets, str) else targets
    if isinstance(specs, list | tuple) and specs and all(isinstance(t, str) for t in specs):
        named, own = resolve_target_specs(list(specs), states)
        return check_targets(named, states), own
    return check_targets(targets, states), {}


def _sequence_ranking(
    models: list[PerturbScoreModel], evaluation: Mapping[str, Any] | None, mode: str, *, has_rows: bool
) -> dict[str, Any]:
    """Whether sequence rows are ranked, and why: from the evaluation of the sequence path."""
    evaluations = [evaluation] if evaluation is not None else [m.evaluation for m in models]
    verdicts = [v for e in evaluations if (v := sequence_verdict(e)) is not None]
    worse = [v for v in verdicts if not v["better"]]
    out: dict[str, Any] = {"verdict": worse[0] if worse else (verdicts[0] if verdicts else "not evaluated")}
    if not has_rows:
        return {**out, "ranking": "no sequence rows", "reason": ""}
    if mode == "together" or (mode == "auto" and not worse):
        reason = "" if verdicts else "the sequence path of this model was not evaluated against the training mean"
        return {**out, "ranking": "together", "reason": reason}
    if worse:
        v = worse[0]
        reason = (f"this run's evaluation found the sequence path no better than predicting the training mean "
                  f"for every gene (error {v['model_mae']:.3f} vs {v['train_mean_mae']:.3f})")  # fmt: skip
    else:
        reason = "left unranked on request"
    return {**out, "ranking": "unranked", "reason": reason}


def _params(models, names, Q, cons, mode, n_boot, k_boot, rng, also_sequence) -> dict[str, Any]:  # noqa: ANN001
    states = list(models[0].states)
    return {
        "perturbscore_version": __version__,
        "n_models": len(models),
        "states": states,
        "targets": {
            n: {
                "mix": {s: float(v) for s, v in zip(states, Q[i], strict=True)},
                "spec": mix_to_spec(Q[i], states),
                "description": describe_mix(Q[i], states),
                "constraints": [str(c) for c in cons[n]],
                "constraints_described": [c.describe() for c in cons[n]],
            }
            for i, n in enumerate(names)
        },
        "constraint_mode": mode,
        "n_boot": int(n_boot),
        "k_boot": "auto" if k_boot is None else int(k_boot),
        "rng": int(rng) if isinstance(rng, int | np.integer) else "generator" if rng is not None else "none",
        "also_sequence": bool(also_sequence),
    }


# -- AnnData --------------------------------------------------------------------------------------
def score_to_anndata(adata: ad.AnnData, df: pd.DataFrame, *, key_added: str = KEYS.scores) -> None:
    """Store a score table in ``adata.uns[key_added]`` (h5ad-writable): ``table`` and ``params``.

    Read it back with :func:`scores_from_anndata`.
    """
    table = df.reset_index(drop=True).copy()
    table.attrs = {}
    params = {**df.attrs.get("params", {}), "columns": list(df.columns)}
    adata.uns[key_added] = {"table": table, "params": h5_safe(params)}


def scores_from_anndata(adata: ad.AnnData, *, key: str = KEYS.scores) -> pd.DataFrame:
    """Return the score table stored by :func:`score_to_anndata`, with its ``attrs["params"]``."""
    if key not in adata.uns or "table" not in adata.uns[key]:
        raise InputError(f"adata.uns has no score table under {key!r}; score with score_perturbations(model, adata)")
    entry = adata.uns[key]
    params = plain(entry.get("params", {}))
    cols = [str(c) for c in params.pop("columns", [])]
    table = entry["table"]
    if isinstance(table, pd.DataFrame):
        df = table.copy()
    else:  # the column-array layout of earlier versions
        df = pd.DataFrame({c: np.asarray(table[c]) for c in cols or table})
    df = df[[c for c in cols if c in df]] if cols else df
    if "rank" in df:
        df["rank"] = df["rank"].astype("Float64").round().astype("Int64")
    df.attrs["params"] = params
    return df
