"""``reproduce``: the seed's Section 3 experiment, made honest.

Both seed models, perturbscore's default and every baseline, on the same held-out knockouts, over several
training seeds (and optionally folds).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .._constants import EVAL_UNSEEN_GENES, REPRODUCE_MODELS
from .._errors import InputError
from .._utils import write_json_atomic, write_text_atomic
from ..data import Screen
from ..model import fit, prepare_run_dir
from ..train import Split, split_perturbations
from ._evaltable import render_eval_markdown
from ._evaluate import DEFAULT_KS, evaluate_baselines, evaluate_model
from ._panel import PANEL_SCREENS, render_panel_markdown
from ._setup import append_results, make_setup, truth_proportions

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


def reproduce_panel(
    *,
    out: str | Path,
    screens: tuple[str, ...] = PANEL_SCREENS,
    models: tuple[str, ...] = ("perturbscore",),
    seeds: tuple[int, ...] = (0, 1, 2),
    folds: int = 0,
    max_steps: int | None = None,
    sim_seed: int = 0,
    sim_unseen: int = EVAL_UNSEEN_GENES,
    ks: tuple[int, ...] = DEFAULT_KS,
    n_resamples: int = 20,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict:
    """Run :func:`reproduce` with the shipped default over the panel of simulated screens; write one table.

    Each screen of :data:`perturbscore.datasets.SCREEN_PANEL` named in ``screens`` is simulated (seed
    ``sim_seed``, with ``sim_unseen`` genes that have features but no cells), the default (and any other
    ``models``) is trained with every seed in ``seeds`` and evaluated with every baseline on the seed's 50/10
    split (every knockout, with ``folds``). ``out/panel.json`` holds every screen's results and ``out/panel.md``
    the table (:func:`render_panel_markdown`; with the ablation's variants among ``models``, a second table of
    what removing each component changes); both are rewritten after each screen. With ``resume``, screens whose
    results are already in ``out/screens/<name>.json`` are not run again.

    Parameters
    ----------
    out
        Output directory (``screens/<name>/`` holds each screen's runs, ``eval.json`` and ``eval.md``).
    screens
        Panel screens to run.
    models
        Models to train on every screen (keys of :data:`MODELS`); must include ``"perturbscore"``, the default
        the table judges.
    seeds
        Training seeds.
    folds
        0: each screen's seed 50/10 split (10 held-out knockouts); ``F``: ``F``-fold over knockouts, so every
        knockout is held out once and gaps to the baselines are measured on all of them.
    max_steps
        Training steps (``None``: the default's own).
    sim_seed, sim_unseen
        Seed of the simulated screens and their genes without cells.
    ks, n_resamples
        Cells per sample and resamples of the evaluation.
    overwrite, resume
        Replace an existing ``out``, or continue a panel run in it.
    progress
        Show progress bars.
    command
        The command line that made the panel, recorded in the table.

    Returns
    -------
    The panel results: ``{"settings": {...}, "screens": {name: results}}``.
    """
    from ..datasets import SCREEN_PANEL, simulate_screen
    from ..io import read_screen

    unknown = [s for s in screens if s not in SCREEN_PANEL]
    if unknown:
        raise InputError(f"unknown panel screen(s) {', '.join(unknown)}; choose from {', '.join(SCREEN_PANEL)}")
    bad = [m for m in models if m not in MODELS]
    if bad or "perturbscore" not in models:
        raise InputError(
            f"panel models must be keys of MODELS and include 'perturbscore' (the default the panel judges); "
            f"got {', '.join(models) or 'none'}"
        )
    out = _panel_dir(Path(out), overwrite=overwrite, resume=resume)
    panel: dict = {
        "settings": {
            "command": command, "models": list(models), "seeds": list(seeds), "folds": folds, "max_steps": max_steps, "sim_seed": sim_seed,
            "sim_unseen": sim_unseen, "ks": list(ks), "n_resamples": n_resamples,
        },
        "screens": {},
    }  # fmt: skip
    for name in screens:
        done = out / "screens" / f"{name}.json"
        if resume and done.exists():
            import json

            kept = json.loads(done.read_text(encoding="utf-8"))
            if set(models) <= set(kept.get("models") or {}):  # a screen run with fewer models runs again
                panel["screens"][name] = kept
                continue
        logger.info("panel screen %s: simulating %s", name, SCREEN_PANEL[name] or "the default screen")
        knobs: dict[str, Any] = dict(SCREEN_PANEL[name])
        sim = simulate_screen(**knobs, seed=sim_seed, n_unseen_genes=sim_unseen)
        screen = read_screen(sim.adata, features=sim.features)
        del sim
        over = {m: {"max_steps": max_steps} for m in models} if max_steps else None
        res = reproduce(
            screen, out=out / "screens" / name, seeds=seeds, folds=folds, models=models, ks=ks,
            n_resamples=n_resamples, overwrite=True, progress=progress, train_overrides=over,
        )  # fmt: skip
        res.pop("scatter", None)
        res["knobs"] = dict(SCREEN_PANEL[name])
        write_json_atomic(done, res)
        panel["screens"][name] = res
        write_json_atomic(out / "panel.json", panel)
        write_text_atomic(out / "panel.md", render_panel_markdown(panel))
    write_json_atomic(out / "panel.json", panel)
    write_text_atomic(out / "panel.md", render_panel_markdown(panel))
    return panel


#: Entries of a panel directory (``overwrite`` removes a directory holding nothing else).
PANEL_ENTRIES = frozenset({"panel.json", "panel.md", "screens"})


def _panel_dir(out: Path, *, overwrite: bool, resume: bool) -> Path:
    """Create the panel directory; refuse to replace one (or anything else) without ``overwrite``/``resume``."""
    import shutil

    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is a file; choose another --out")
    if out.exists() and any(out.iterdir()):
        foreign = sorted(p.name for p in out.iterdir() if p.name not in PANEL_ENTRIES and not p.name.endswith(".tmp"))
        if foreign:
            raise InputError(f"{out} holds {', '.join(foreign[:5])}, not a panel run; choose another --out")
        if resume:
            return out
        if not overwrite:
            raise InputError(f"{out} already holds a panel; pass --overwrite to replace it or --resume to continue it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out
