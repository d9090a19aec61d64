"""``reproduce``: the seed's Section 3 experiment, made honest — both seed models, perturbscore's default
and every baseline, on the same held-out knockouts, over several training seeds (and optionally folds)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import write_json_atomic, write_text_atomic
from ..data import Screen
from ..train import Split, split_perturbations
from ._evaltable import render_eval_markdown
from ._evaluate import DEFAULT_KS, append_results, evaluate_baselines, evaluate_model, make_setup, truth_proportions
from ._fit import fit
from ._rundir import prepare_run_dir

logger = logging.getLogger(__name__)

#: results key -> (training preset, overrides of TrainConfig/ModelConfig fields)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "seed_baseline": ("seed-baseline", {}),
    "full": ("seed-full", {}),
    "default-rec_robust": ("default", {"rec_robust": 0.0}),  # T: plain least squares (= the session-8 default)
    "default_rec_robust_1.5": ("default", {"rec_robust": 1.5}),  # Huber weights from 1.5x the median residual
    "default+rec_select_per_part": ("default", {"rec_select": "per_part"}),  # T: rank/penalty per part
    "default+rec_refit": ("default", {"rec_refit_cells": 1000}),  # T refitted once on the final statistic
    "default-rec_subsample": ("default", {"rec_subsample": 0.0}),  # T's read-out from full fits (= session-9 default)
    "default_rec_subsample_0.8": ("default", {"rec_subsample": 0.8}),  # subsets of 80 % of the knockouts
    "default-logratio": ("default", {"logratio_weight": 0.0}),  # no log-ratio geometry loss (= session-10 default)
    "default_logratio_0.15": ("default", {"logratio_weight": 0.15}),  # session 11's 5-fold weight sweep
    "default_logratio_0.5": ("default", {"logratio_weight": 0.5}),  # (docs/ablation.md, session 11)
    "default+mixer_logratio": ("default", {"mixer_logratio": True}),  # G also reads the clr of the decoded mix
    "default_logratio_1.0": ("default", {"logratio_weight": 1.0}),  # the geometry loss at weight 1 (not 0.3)
    "default+rec_g_logratio": ("default", {"rec_g_target": "logratio"}),  # T learns G's label-log-ratio part
    "default+rec_g_logratio_half": ("default", {"rec_g_target": "logratio", "rec_g_residual": 0.5}),  # half the rest
    "default_couple_0.1": ("default", {"rec_couple_weight": 0.1}),  # G pulled towards T's LOO prediction
    "default_couple_0.3": ("default", {"rec_couple_weight": 0.3}),
    "perturbscore": ("default", {}),
}

#: What ``reproduce`` trains when no models are named: the seed's two models and perturbscore's default (the
#: other entries of :data:`MODELS` are variants to name with ``--models``).
DEFAULT_MODELS = ("seed_baseline", "full", "perturbscore")

#: The ablation: the seed's full model as written plus one change at a time, and the default minus one.
ABLATION: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("seed-full", {}),
    "seed+pca_front_end": ("seed-full", {"front_end": "pca"}),
    "seed+structured_head": ("seed-full", {"head": "structured", "prop_weight": 1.0}),
    "seed+state_loss": ("seed-full", {"state_classifier": True, "state_weight": 0.5}),
    "seed+stopgrad_rec": ("seed-full", {"rec_mode": "stopgrad", "rec_reference_k": 64}),
    "seed+8_targets": ("seed-full", {"targets_per_perturbation": 8}),
    "default-fusion": ("default", {"fuse_prior": False}),
    "default-cell_mix": ("default", {"cell_mix_head": False, "cell_mix_weight": 0.0}),
    "default-seq_loss": ("default", {"seq_weight": 0.0}),
    "default-seed_k_schedule": (
        "default",
        {"k_min": 2, "k_max": 10, "k_start_max": 50, "shrink_steps": 1000, "k_distribution": "uniform"},
    ),
    "default-stability_loss": ("default", {"stability_weight": 0.0}),
    "default-ridge_T": ("default", {"recognizer_pooling": "attention", "recognizer_head": "mlp"}),
    "default-stability_loss-ridge_T": (
        "default",
        {"recognizer_pooling": "attention", "recognizer_head": "mlp", "stability_weight": 0.0},
    ),
    "default+stability_into_f": ("default", {"stability_grad": "all"}),
    "default_stability_0.2": ("default", {"stability_weight": 0.2}),
    "default_stability_1.0": ("default", {"stability_weight": 1.0}),
    "default-mix_channel": ("default", {"mix_channel": False}),
    "default-select_stability": ("default", {"select_stability_weight": 0.0}),  # keep the lowest val_pred_loss
    "default+coupled_rec": ("default", {"rec_mode": "coupled"}),
    "default-feature_basis": ("default", {"feature_basis": False}),  # T: plain ridge on the training genes only
    "default+bounded_stat": ("default", {"stat_activation": "tanh"}),  # each entry in (-1, 1), not radial
    "default-radial_stat": ("default", {"stat_activation": "identity"}),  # G's output left linear (the seed)
    "default_radius_1.0": ("default", {"stat_radius": 1.0}),  # compression from shorter lengths on
    "default+rec_target_clip_4": ("default", {"rec_target_clip": 4.0}),  # T's targets winsorised at 4x
    "default+rec_mix_labels": ("default", {"rec_mix_target": "labels"}),  # T learns the exact mix, not a sample's
    "default-rec_robust": ("default", {"rec_robust": 0.0}),  # T: plain least squares (= the session-8 default)
    "default_rec_robust_1.5": ("default", {"rec_robust": 1.5}),  # Huber weights from 1.5x the median residual
    "default+rec_select_per_part": ("default", {"rec_select": "per_part"}),  # T: rank/penalty per part
    "default+rec_refit": ("default", {"rec_refit_cells": 1000}),  # T refitted once on the final statistic
    "default-rec_subsample": ("default", {"rec_subsample": 0.0}),  # T's read-out from full fits (= session-9 default)
    "default_rec_subsample_0.8": ("default", {"rec_subsample": 0.8}),  # subsets of 80 % of the knockouts
    "default-logratio": ("default", {"logratio_weight": 0.0}),  # no log-ratio geometry loss (= session-10 default)
    "default_logratio_1.0": ("default", {"logratio_weight": 1.0}),  # the geometry loss at weight 1 (not 0.3)
    "default_logratio_0.1": ("default", {"logratio_weight": 0.1}),  # the geometry loss at weight 0.1 (not 0.3)
    "default+rec_g_logratio": ("default", {"rec_g_target": "logratio"}),  # T learns G's label-log-ratio part
    "perturbscore": ("default", {}),
}


def kfold_splits(screen: Screen, *, folds: int, seed: int) -> list[Split]:
    """``folds`` splits over knockouts: each fold validates once, the rest (and the control) train."""
    kos = sorted(screen.knockouts)
    order = [kos[i] for i in np.random.default_rng(seed).permutation(len(kos))]
    parts = np.array_split(np.arange(len(order)), folds)
    ctrl = [screen.control] if screen.control else []
    return [
        Split(train=[order[i] for i in range(len(order)) if i not in set(part)] + ctrl,
              val=[order[i] for i in part], test=[])
        for part in parts
    ]  # fmt: skip


def reproduce(
    screen: Screen,
    *,
    out: str | Path,
    seeds: tuple[int, ...] = (0, 1, 2),
    models: tuple[str, ...] = DEFAULT_MODELS,
    variants: dict[str, tuple[str, dict[str, Any]]] | None = None,
    folds: int = 0,
    ks: tuple[int, ...] = DEFAULT_KS,
    n_resamples: int = 30,
    overwrite: bool = False,
    progress: bool = True,
    train_overrides: dict[str, dict[str, Any]] | None = None,
) -> dict:
    """Train every model in ``models`` for every seed (and fold), evaluate all, write ``eval.json``/``eval.md``.

    Parameters
    ----------
    screen
        A validated screen (with features for the models that use T).
    out
        Output directory: ``runs/<model>-seed<s>[-fold<f>]/`` per training run, plus ``eval.json``,
        ``eval.md`` and ``plots/``.
    seeds
        Training seeds.
    models
        Keys of ``variants`` to train.
    variants
        Name -> (preset, overrides); default :data:`MODELS` (use :data:`ABLATION` for the ablation).
    folds
        0 for the seed's 50/10 split (``split_seed`` 123), else k-fold over knockouts.
    train_overrides
        Per-model TrainConfig overrides, e.g. ``{"perturbscore": {"max_steps": 500}}``.

    Returns
    -------
    The results dict (see :mod:`perturbscore.tl._evaltable`).
    """
    variants = variants or MODELS
    out = prepare_run_dir(out, overwrite=overwrite)
    splits = (
        kfold_splits(screen, folds=folds, seed=123)
        if folds
        else [split_perturbations(screen, n_train=50, n_val=10, seed=123)]
    )
    results: dict = {
        "screen": screen.summary(),
        "seeds": list(seeds),
        "ks": list(ks),
        "eval_k": 10,
        "folds": folds,
        "models": {},
        "baselines": {},
        "split": splits[0].to_dict() | {"seed": 123},
    }
    for f, split in enumerate(splits):
        setup = make_setup(screen, train=split.train, val=split.val, ks=ks, n_resamples=n_resamples, rng=1000 + f)
        truth = truth_proportions(screen)
        oracle = None if truth is None else truth[setup.val_ids]
        for s in seeds:
            append_results(results["baselines"], evaluate_baselines(setup, truth=oracle, rng=s))
            for key in models:
                tag = f"{key}-seed{s}" + (f"-fold{f}" if folds else "")
                preset_name, over = variants[key]
                over = over | (train_overrides or {}).get(key, {})
                model = fit(
                    screen,
                    preset_name=preset_name,
                    out=out / "runs" / tag,
                    overwrite=True,
                    seed=s,
                    split=split,
                    progress=progress,
                    **over,
                )
                res = evaluate_model(model, setup)
                res["val_pred_loss"] = model.extra.get("best_val_pred_loss")
                scatter = res.pop("scatter", None)
                if key == "perturbscore" and s == seeds[0] and f == 0:
                    results["scatter"] = scatter
                append_results(results["models"].setdefault(key, {}), res)
                _write(out, results)  # after every run: a long reproduction is never lost to an interruption
    _write(out, results)
    return results


def _write(out: Path, results: dict) -> None:
    write_json_atomic(out / "eval.json", results)
    write_text_atomic(out / "eval.md", render_eval_markdown(results))
