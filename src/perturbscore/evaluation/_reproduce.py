"""``reproduce``: the seed's Section 3 experiment, made honest.

Both seed models, perturbscore's default and every baseline, on the same held-out knockouts, over several
training seeds (and optionally folds).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .._constants import REPRODUCE_MODELS
from .._errors import InputError
from .._utils import write_json_atomic, write_text_atomic
from ..data import Screen
from ..model import fit, prepare_run_dir
from ..train import Split, split_perturbations
from ._evaltable import render_eval_markdown
from ._evaluate import DEFAULT_KS, append_results, evaluate_baselines, evaluate_model, make_setup, truth_proportions

logger = logging.getLogger(__name__)

#: Every model ``reproduce`` can train: results key -> (training preset, overrides).
MODELS = REPRODUCE_MODELS

#: What ``reproduce`` trains when no models are named: the seed's two models and perturbscore's default.
DEFAULT_MODELS = ("seed_baseline", "full", "perturbscore")

#: The ablation: the seed's full model, the default, and the default without each component.
ABLATION = tuple(name for name in MODELS if name != "seed_baseline")


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
        Keys of :data:`MODELS` to train (:data:`ABLATION` for the ablation).
    folds
        0 for the seed's 50/10 split (``split_seed`` 123), else k-fold over knockouts.
    train_overrides
        Per-model TrainConfig overrides, e.g. ``{"perturbscore": {"max_steps": 500}}``.

    Returns
    -------
    The results dict (see :mod:`perturbscore.evaluation`).
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise InputError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
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
                preset_name, over = MODELS[key]
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
