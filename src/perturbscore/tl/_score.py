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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import __version__
from .._constants import KEYS
from .._errors import InputError
from .._utils import as_rng
from ..data import GeneFeatures, Screen
from ..io import Constraint, describe_mix, mix_to_spec, parse_constraint, read_features, resolve_target_specs
from ..model import PerturbScoreModel
from ._advice import as_models, check_targets
from ._data import h5_safe, is_anndata, plain, resolve_screen, target_adata
from ._score_rows import measured_rows, sequence_rows
from ._scorefile import UNRANKED_FLAG, sequence_verdict

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

CONSTRAINT_MODES = ("filter", "penalize")
SEQUENCE_RANKINGS = ("auto", "together", "unranked")
#: Added to the distance of rows that violate a constraint in ``constraint_mode="penalize"``.
PENALTY = 1.0


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
            measured_rows(models, screen, Q, feats, n_boot=n_boot, k_boot=k_boot, rng=as_rng(rng), progress=progress)
        )
    skip = set() if also_sequence or screen is None else set(screen.knockouts)
    if (seq := sequence_rows(models, screen, feats, Q, skip, progress=progress)) is not None:
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
