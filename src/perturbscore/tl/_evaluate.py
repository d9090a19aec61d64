"""Evaluate a fitted model and the honest baselines on held-out perturbations (DESIGN §4).

Every model and baseline sees the same resampled cells and the same targets (a paired comparison):
for each ``k`` and resample ``r``, ``k`` cells of every held-out perturbation and ``T`` targets drawn
from the training mixes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from .._utils import as_rng, track
from ..data import Screen, draw_rows, tv
from ._baselines import BASELINES
from ._metrics import recognition_r2, sample_targets, spearman_per_target, stability, topk_hit_rate
from ._model import PerturbScoreModel

logger = logging.getLogger(__name__)
DEFAULT_KS = (2, 5, 10, 25, 60)


@dataclass
class EvalSetup:
    """The shared resamples: ``samples[k][r] = (rows, used)`` and ``targets[r]`` ``(T, C)``."""

    screen: Screen
    train: list[str]
    val: list[str]
    ks: tuple[int, ...]
    targets: np.ndarray  # (R, T, C)
    samples: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    eval_k: int = 10

    @property
    def val_ids(self) -> list[int]:
        """Screen indices of the held-out perturbations."""
        return [self.screen.index_of(p) for p in self.val]

    @property
    def true_distances(self) -> np.ndarray:
        """``(R, P, T)`` true distances of every held-out perturbation to every target."""
        q = self.screen.proportions[self.val_ids]  # (P, C)
        return tv(q[None, :, None, :], self.targets[:, None, :, :])

    def counts(self, k: int, r: int) -> np.ndarray:
        """Label counts ``(P, C)`` of resample ``r`` at ``k`` cells."""
        rows, used = self.samples[k][r]
        seg = np.repeat(np.arange(len(used)), used)
        out = np.zeros((len(used), self.screen.n_states))
        np.add.at(out, (seg, self.screen.state_codes[rows]), 1)
        return out


def make_setup(
    screen: Screen,
    *,
    train: list[str],
    val: list[str],
    ks: tuple[int, ...] = DEFAULT_KS,
    n_resamples: int = 30,
    n_targets: int = 16,
    target_noise: float = 0.05,
    eval_k: int = 10,
    rng: np.random.Generator | int | None = 0,
) -> EvalSetup:
    """Draw the resampled cells and targets shared by every model and baseline."""
    rng = as_rng(rng)
    pool = screen.proportions[[screen.index_of(p) for p in train if p != screen.control]]
    targets = sample_targets(pool, n_resamples * n_targets, alpha=target_noise, rng=rng)
    setup = EvalSetup(screen, train, val, tuple(ks), targets.reshape(n_resamples, n_targets, -1), eval_k=eval_k)
    index = [screen.cell_index[i] for i in setup.val_ids]
    for k in setup.ks:
        kk = np.full(len(index), k)
        setup.samples[k] = [draw_rows(index, kk, rng) for _ in range(n_resamples)]
    return setup


def _ranking_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Spearman and top-k from ``(R, P, T)`` predictions, over targets and resamples."""
    p = pred.transpose(0, 2, 1).reshape(-1, pred.shape[1])  # (R*T, P)
    t = true.transpose(0, 2, 1).reshape(-1, true.shape[1])
    rho = spearman_per_target(p, t)  # NaN where a target's true distances are all tied
    return {
        "spearman": float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan"),
        "top1": topk_hit_rate(p, t, k=1),
        "top3": topk_hit_rate(p, t, k=min(3, p.shape[1])),
    }


@torch.no_grad()
def evaluate_model(model: PerturbScoreModel, setup: EvalSetup, *, progress: bool = False) -> dict:
    """Metrics of ``model`` on the setup's held-out perturbations."""
    screen, true = setup.screen, setup.true_distances  # (R, P, T)
    has_feats = screen.features is not None and all(p in screen.features for p in setup.val)
    feats = screen.feature_block(setup.val) if has_feats and model.has_recognizer else None
    out: dict = {"mae_cells": {}, "stability": {}, "stability_cells_only": {}}
    n_stat = model.model_config.n_stat  # stability is that of s = G(mean f); a mix channel is reported apart
    mix = model.model_config.mix_channel
    if mix:
        out["stability_mix"] = {}
    for k in track(setup.ks, progress=progress, description="evaluating"):
        preds, stats, raw = [], [], []
        for r, (rows, used) in enumerate(setup.samples[k]):
            stat = model.statistic(screen.rows.take(rows), groups=np.repeat(np.arange(len(used)), used))
            post = model.posterior_statistic(stat, feats, used)
            q = np.broadcast_to(setup.targets[r], (len(used), *setup.targets[r].shape))  # (P, T, C)
            preds.append(model.predict_distance(post, q, n_cells=used))
            stats.append(post)
            raw.append(stat)
        pred = np.stack(preds)  # (R, P, T)
        out["mae_cells"][k] = float(np.abs(pred - true).mean())
        post_all = np.stack(stats)  # (R, P, stat_dim)
        out["stability"][k] = stability(post_all[..., :n_stat])
        out["stability_cells_only"][k] = stability(np.stack(raw)[..., :n_stat])
        if mix:
            out["stability_mix"][k] = stability(post_all[..., n_stat:])
        if k == setup.eval_k:
            out |= _ranking_metrics(pred, true)
            out["scatter"] = {"pred": pred[0].ravel().tolist(), "true": true[0].ravel().tolist()}
    if feats is not None:
        out |= _sequence_metrics(model, setup, true)
        out["prior_strength"] = model.prior_strength
    if model.mix_strength is not None:
        out["mix_strength"] = model.mix_strength
    return out


def _sequence_metrics(model: PerturbScoreModel, setup: EvalSetup, true: np.ndarray) -> dict:
    screen = setup.screen
    rec = model.statistic_from_sequence(screen.feature_block(setup.val))  # (P, m2)
    q = np.broadcast_to(setup.targets[:, None], (len(setup.targets), len(setup.val), *setup.targets.shape[1:]))
    pred = np.stack([model.predict_distance(rec, q[r], n_cells=0) for r in range(len(q))])  # (R, P, T)
    rng = np.random.default_rng(0)
    full = []
    for i in setup.val_ids:  # the reference statistic: up to 1,000 of the perturbation's cells
        ix = screen.cell_index[i]
        ix = rng.choice(ix, size=1000, replace=False) if len(ix) > 1000 else ix
        full.append(model.statistic(screen.rows.take(np.sort(ix))))
    full_arr = np.stack(full)  # (P, stat_dim)
    n_stat = model.model_config.n_stat  # R² of s = G(mean f); the mix channel's apart
    out = {
        "mae_sequence": float(np.abs(pred - true).mean()),
        "val_rec_loss": float(((rec[:, :n_stat] - full_arr[:, :n_stat]) ** 2).sum(-1).mean()),
        "rec_r2": recognition_r2(rec[:, :n_stat], full_arr[:, :n_stat]),
        "sequence_ranking": _ranking_metrics(pred, true),
    }
    if full_arr.shape[1] > n_stat:
        out["rec_r2_mix"] = recognition_r2(rec[:, n_stat:], full_arr[:, n_stat:])
        out["val_rec_loss_mix"] = float(((rec[:, n_stat:] - full_arr[:, n_stat:]) ** 2).sum(-1).mean())
    return out


#: The sequence-only baselines that read gene features.
FEATURE_BASELINES = ("ridge", "pcr", "knn")


def evaluate_baselines(setup: EvalSetup, *, truth: np.ndarray | None = None, rng: int = 0) -> dict:
    """Metrics of every applicable baseline on the same resamples and targets."""
    screen, true = setup.screen, setup.true_distances  # (R, P, T)
    train_ids = [screen.index_of(p) for p in setup.train if p != screen.control]
    props = screen.proportions
    out: dict = {}
    for name in ("empirical", "shrunk"):
        base = BASELINES[name]().fit(props[train_ids], rng=rng)
        res: dict = {"mae_cells": {}}
        for k in setup.ks:
            pred = np.stack([
                _dist(base.predict_proportions(counts=setup.counts(k, r)), setup.targets[r])
                for r in range(len(setup.targets))
            ])  # fmt: skip
            res["mae_cells"][k] = float(np.abs(pred - true).mean())
            if k == setup.eval_k:
                res |= _ranking_metrics(pred, true)
        if name == "shrunk":
            res["strength"] = float(base.strength_)
        out[name] = res
    static = {"train_mean": BASELINES["train_mean"]().fit(props[train_ids])}
    have_feats = screen.features is not None and all(
        p in screen.features for p in setup.train + setup.val if p != screen.control
    )
    if have_feats:
        tr = [p for p in setup.train if p != screen.control]
        for name in FEATURE_BASELINES:  # all_features: every gene's features, read by the PCR baseline
            static[name] = BASELINES[name]().fit(
                props[train_ids], train_features=screen.feature_block(tr), all_features=screen.features.values, rng=rng
            )
    for name, base in static.items():
        feats = screen.feature_block(setup.val) if name in FEATURE_BASELINES else None
        p_hat = (
            base.predict_proportions(features=feats, index=None) if feats is not None else base.predict_proportions()
        )
        p_hat = np.broadcast_to(p_hat, (len(setup.val), screen.n_states))
        pred = np.stack([_dist(p_hat, setup.targets[r]) for r in range(len(setup.targets))])
        out[name] = {"mae_sequence": float(np.abs(pred - true).mean()), **_ranking_metrics(pred, true)}
    if truth is not None:
        pred = np.stack([_dist(truth, setup.targets[r]) for r in range(len(setup.targets))])
        out["oracle"] = {"mae_sequence": float(np.abs(pred - true).mean()), **_ranking_metrics(pred, true)}
    return out


def _dist(props: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(P, C)`` mixes vs ``(T, C)`` targets -> ``(P, T)`` TV distances."""
    return tv(props[:, None, :], targets[None, :, :])


def truth_proportions(screen: Screen) -> np.ndarray | None:
    """The simulator's generating ``q(P)`` aligned to ``screen.perturbations`` (``None`` for real screens)."""
    truth = screen.truth or {}
    if "proportions" not in truth or "perturbations" not in truth:
        return None
    index = {str(p): i for i, p in enumerate(np.asarray(truth["perturbations"]).astype(str))}
    if not all(p in index for p in screen.perturbations):
        return None
    return np.asarray(truth["proportions"], dtype=np.float64)[[index[p] for p in screen.perturbations]]


def evaluate(
    model: PerturbScoreModel,
    screen: Screen,
    *,
    ks: tuple[int, ...] = DEFAULT_KS,
    n_resamples: int = 30,
    rng: int = 1000,
    progress: bool = False,
) -> dict:
    """Evaluate ``model`` and every baseline on the model's validation perturbations.

    Returns
    -------
    A results dict in the ``eval.json`` schema (see :mod:`perturbscore.tl._evaltable`), with the model
    under ``models["perturbscore"]``.
    """
    split = model.split
    missing = [p for p in split["train"] + split["val"] if p not in screen.perturbations]
    if missing:
        from .._errors import InputError

        raise InputError(
            f"{len(missing)} perturbation(s) the model was trained/validated on are not in {screen.source}: "
            f"{', '.join(missing[:10])}. Evaluate on the screen the model was trained on."
        )
    setup = make_setup(screen, train=split["train"], val=split["val"], ks=ks, n_resamples=n_resamples, rng=rng)
    truth = truth_proportions(screen)
    res = evaluate_model(model, setup, progress=progress)
    res["val_pred_loss"] = model.extra.get("best_val_pred_loss")
    scatter = res.pop("scatter", None)
    results: dict = {
        "screen": screen.summary(),
        "seeds": [model.train_config.seed],
        "ks": list(ks),
        "eval_k": 10,
        "split": split | {"seed": model.train_config.split_seed},
        "models": {},
        "baselines": {},
    }
    append_results(results["models"].setdefault("perturbscore", {}), res)
    base = evaluate_baselines(setup, truth=None if truth is None else truth[setup.val_ids])
    append_results(results["baselines"], base)
    results["scatter"] = scatter
    return results


def append_results(acc: dict, res: dict) -> None:
    """Accumulate one run's metrics into per-seed lists (nested dicts for per-k metrics)."""
    for key, value in res.items():
        if key in ("scatter",):
            continue
        if isinstance(value, dict):
            append_results(acc.setdefault(key, {}), value)
        elif value is not None:
            acc.setdefault(key, []).append(float(value))
