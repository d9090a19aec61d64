"""Evaluate a fitted model and the honest baselines on held-out perturbations.

Every model and baseline sees the same resampled cells and the same targets (a paired comparison):
for each ``k`` and resample ``r``, ``k`` cells of every held-out perturbation and ``T`` targets drawn
from the training mixes.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .._utils import track
from ..data import Screen, tv
from ..model import PerturbScoreModel
from ._baselines import BASELINES
from ._evaltable import DEFAULT_KS
from ._metrics import recognition_r2
from ._setup import (
    EvalSetup,
    append_results,
    defined_stability,
    make_setup,
    mean_spearman,
    mix_distances,
    per_knockout_errors,
    ranking_metrics,
    truth_proportions,
)

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_model(model: PerturbScoreModel, setup: EvalSetup, *, progress: bool = False) -> dict:
    """Metrics of ``model`` on the setup's held-out perturbations.

    ``mae_cells`` and ``mae_sequence`` (and the ranking metrics) are of the number the model reports: the head
    blended with empirical Bayes by the model's calibration, each held-out knockout of the calibration's own
    fit scored with the weights and interval quantiles fitted without it. ``mae_cells_head`` and
    ``mae_sequence_head`` are the head's own numbers; ``coverage`` and ``interval_width`` (per ``k``, and
    ``coverage_sequence``, ``interval_width_sequence``) describe the 95 % intervals. On a simulated screen
    ``all_cells`` compares the number from all of a knockout's cells with its label tally, both against the
    distance of the generating mix.
    """
    screen, true = setup.screen, setup.true_distances  # (R, P, T)
    has_feats = screen.features is not None and all(p in screen.features for p in setup.val)
    eb_feats = screen.feature_block(setup.val) if has_feats else None  # the calibration's prior reads them
    feats = eb_feats if model.has_recognizer else None
    out: dict = {
        "mae_cells": {}, "knockout_mae_cells": {}, "mae_cells_head": {}, "stability": {}, "stability_cells_only": {}
    }  # fmt: skip
    calibrated = model.calibration is not None
    if calibrated:
        out |= {"coverage": {}, "interval_width": {}}
    n_stat = model.model_config.n_stat  # stability is that of s = G(mean f); a mix channel is reported apart
    mix = model.model_config.mix_channel
    if mix:
        out["stability_mix"] = {}
    for k in track(setup.ks, progress=progress, description="evaluating"):
        preds, heads, covered, widths, stats, raw = [], [], [], [], [], []
        for r, (rows, used) in enumerate(setup.samples[k]):
            stat = model.statistic(
                screen.cells(rows, front=model.net.front), groups=np.repeat(np.arange(len(used)), used)
            )
            post = model.posterior_statistic(stat, feats, used)
            q = np.broadcast_to(setup.targets[r], (len(used), *setup.targets[r].shape))  # (P, T, C)
            res = model.calibrated_distance(post, q, counts=setup.counts(k, r), features=eb_feats, genes=setup.val)
            preds.append(res.distance)
            heads.append(res.head)
            covered.append((res.lo <= true[r]) & (true[r] <= res.hi))
            widths.append(res.hi - res.lo)
            stats.append(post)
            raw.append(stat)
        pred = np.stack(preds)  # (R, P, T)
        out["mae_cells"][k] = float(np.abs(pred - true).mean())
        out["knockout_mae_cells"][k] = per_knockout_errors(pred, true, setup.val)
        out["mae_cells_head"][k] = float(np.abs(np.stack(heads) - true).mean())
        if calibrated:
            out["coverage"][k] = float(np.mean(covered))
            out["interval_width"][k] = float(np.mean(widths))
        post_all = np.stack(stats)  # (R, P, stat_dim)
        out["stability"][k] = defined_stability(post_all[..., :n_stat])
        out["stability_cells_only"][k] = defined_stability(np.stack(raw)[..., :n_stat])
        if mix:
            out["stability_mix"][k] = defined_stability(post_all[..., n_stat:])
        if k == setup.eval_k:
            out |= ranking_metrics(pred, true)
            out["scatter"] = {"pred": pred[0].ravel().tolist(), "true": true[0].ravel().tolist()}
    if feats is not None:
        out |= _sequence_metrics(model, setup, true)
        out["prior_strength"] = model.prior_strength
    if model.mix_strength is not None:
        out["mix_strength"] = model.mix_strength
    truth = truth_proportions(screen)
    if truth is not None:
        out["all_cells"] = _all_cells_metrics(model, setup, truth[setup.val_ids], feats, eb_feats)
    if calibrated:
        cal = model.calibration
        assert cal is not None
        out["eb_strength"] = cal.strength
        out["head_share"] = {k: float(cal.weight(np.array([k]))[0]) for k in setup.ks}  # lam(k) of the blend
        out["head_share_sequence"] = float(cal.weight(np.array([0]))[0])
    return out


def _all_cells_metrics(
    model: PerturbScoreModel,
    setup: EvalSetup,
    truth: np.ndarray,
    feats: np.ndarray | None,
    eb_feats: np.ndarray | None,
) -> dict:
    """All cells of each held-out knockout: the reported number and the label tally against the generating mix.

    As :func:`perturbscore.tl.score_perturbations` scores a measured knockout: the statistic of all its cells
    and their label counts. Errors, Spearman and interval coverage are against ``d(generating mix, Q)`` over
    every target set of the setup.
    """
    screen = setup.screen
    ids = setup.val_ids
    index = [screen.cell_index[i] for i in ids]
    rows = np.concatenate(index)
    used = np.array([len(ix) for ix in index])
    stat = model.statistic(screen.cells(rows, front=model.net.front), groups=np.repeat(np.arange(len(ids)), used))
    post = model.posterior_statistic(stat, feats, used)
    counts = screen.state_counts[ids].astype(np.float64)
    props = screen.proportions[ids]
    targets = setup.targets  # (R, T, C)
    q = np.broadcast_to(targets.reshape(1, -1, targets.shape[-1]), (len(ids), targets.shape[0] * targets.shape[1], targets.shape[-1]))  # fmt: skip
    res = model.calibrated_distance(post, q, counts=counts, features=eb_feats, genes=setup.val)
    gen = tv(truth[:, None, :], q)  # (P, R*T)
    tally = tv(props[:, None, :], q)
    ranks = {
        name: mean_spearman(pred.T, gen.T)
        for name, pred in (("spearman", res.distance), ("spearman_tally", tally), ("spearman_head", res.head))
    }
    return {
        "mae": float(np.abs(res.distance - gen).mean()),
        "mae_tally": float(np.abs(tally - gen).mean()),
        "mae_head": float(np.abs(res.head - gen).mean()),
        **ranks,
        "coverage": float(np.mean((res.lo <= gen) & (gen <= res.hi))),
    }


def _sequence_metrics(model: PerturbScoreModel, setup: EvalSetup, true: np.ndarray) -> dict:
    screen = setup.screen
    feats = screen.feature_block(setup.val)
    rec = model.statistic_from_sequence(feats)  # (P, m2)
    q = np.broadcast_to(setup.targets[:, None], (len(setup.targets), len(setup.val), *setup.targets.shape[1:]))
    res = [model.calibrated_distance(rec, q[r], features=feats, genes=setup.val) for r in range(len(q))]
    pred = np.stack([c.distance for c in res])  # (R, P, T)
    head = np.stack([c.head for c in res])
    rng = np.random.default_rng(0)
    full = []
    for i in setup.val_ids:  # the reference statistic: up to 1,000 of the perturbation's cells
        ix = screen.cell_index[i]
        ix = rng.choice(ix, size=1000, replace=False) if len(ix) > 1000 else ix
        full.append(model.statistic(screen.cells(np.sort(ix), front=model.net.front)))
    full_arr = np.stack(full)  # (P, stat_dim)
    n_stat = model.model_config.n_stat  # R² of s = G(mean f); the mix channel's apart
    out = {
        "mae_sequence": float(np.abs(pred - true).mean()),
        "knockout_mae_sequence": per_knockout_errors(pred, true, setup.val),
        "mae_sequence_head": float(np.abs(head - true).mean()),
        "val_rec_loss": float(((rec[:, :n_stat] - full_arr[:, :n_stat]) ** 2).sum(-1).mean()),
        "rec_r2": recognition_r2(rec[:, :n_stat], full_arr[:, :n_stat]),
        "sequence_ranking": ranking_metrics(pred, true),
    }
    if model.calibration is not None:
        lo, hi = np.stack([c.lo for c in res]), np.stack([c.hi for c in res])
        out["coverage_sequence"] = float(np.mean((lo <= true) & (true <= hi)))
        out["interval_width_sequence"] = float(np.mean(hi - lo))
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
    tr = [p for p in setup.train if p != screen.control]
    props = screen.proportions
    have_feats = screen.features is not None and all(p in screen.features for p in tr + setup.val)
    out: dict = {}
    fitted = {name: BASELINES[name]().fit(props[train_ids], rng=rng) for name in ("empirical", "shrunk")}
    fitted["empirical_bayes"] = BASELINES["empirical_bayes"]().fit(
        props[train_ids],
        train_counts=screen.state_counts[train_ids],
        train_features=screen.feature_block(tr) if have_feats else None,
        all_features=screen.features.values if have_feats and screen.features is not None else None,
        rng=rng,
    )
    val_feats = screen.feature_block(setup.val) if have_feats else None
    P = len(setup.val)
    for name, base in fitted.items():
        res: dict = {"mae_cells": {}, "knockout_mae_cells": {}, "stability": {}}
        for k in setup.ks:
            mixes = np.stack([  # (R, P, C): the mix each baseline reads off k cells (EB: its posterior mean)
                base.predict_proportions(counts=setup.counts(k, r), features=val_feats)
                for r in range(len(setup.targets))
            ])  # fmt: skip
            res["stability"][k] = defined_stability(mixes)
            pred = np.stack([
                base.predict_distance(
                    np.broadcast_to(setup.targets[r], (P, *setup.targets[r].shape)),
                    counts=setup.counts(k, r),
                    features=val_feats,
                )
                if name == "empirical_bayes"  # the posterior median of d, not d of a mix
                else mix_distances(mixes[r], setup.targets[r])
                for r in range(len(setup.targets))
            ])  # fmt: skip
            res["mae_cells"][k] = float(np.abs(pred - true).mean())
            res["knockout_mae_cells"][k] = per_knockout_errors(pred, true, setup.val)
            if k == setup.eval_k:
                res |= ranking_metrics(pred, true)
        if name == "empirical_bayes":
            q = np.broadcast_to(setup.targets[:, None], (len(setup.targets), P, *setup.targets.shape[1:]))
            pred = np.stack([base.predict_distance(q[r], counts=np.zeros((P, screen.n_states)), features=val_feats)
                             for r in range(len(q))])  # fmt: skip
            res["mae_sequence"] = float(np.abs(pred - true).mean())
            res["knockout_mae_sequence"] = per_knockout_errors(pred, true, setup.val)
            res["sequence_ranking"] = ranking_metrics(pred, true)
        if name != "empirical":
            res["strength"] = float(base.strength_)  # type: ignore[attr-defined]
        out[name] = res
    static = {"train_mean": BASELINES["train_mean"]().fit(props[train_ids])}
    if have_feats:
        assert screen.features is not None
        for name in FEATURE_BASELINES:  # all_features: every gene's features, for the PCR basis
            static[name] = BASELINES[name]().fit(
                props[train_ids], train_features=screen.feature_block(tr), all_features=screen.features.values, rng=rng
            )
    for name, base in static.items():
        feats = val_feats if name in FEATURE_BASELINES else None
        p_hat = (
            base.predict_proportions(features=feats, index=None) if feats is not None else base.predict_proportions()
        )
        p_hat = np.broadcast_to(p_hat, (len(setup.val), screen.n_states))
        pred = np.stack([mix_distances(p_hat, setup.targets[r]) for r in range(len(setup.targets))])
        out[name] = {
            "mae_sequence": float(np.abs(pred - true).mean()),
            "knockout_mae_sequence": per_knockout_errors(pred, true, setup.val),
            **ranking_metrics(pred, true),
        }
    if truth is not None:
        pred = np.stack([mix_distances(truth, setup.targets[r]) for r in range(len(setup.targets))])
        out["oracle"] = {"mae_sequence": float(np.abs(pred - true).mean()), **ranking_metrics(pred, true)}
    return out


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
    A results dict in the ``eval.json`` schema (see :mod:`perturbscore.evaluation`), with the model
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
