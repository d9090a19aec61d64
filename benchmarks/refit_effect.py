"""Would refitting ``T`` after training help? Read-outs of ``T`` compared on the same trained ``f`` and ``G``.

During training the ridge ``T`` keeps a moving average of fits to each step's noisy 64-cell reference
statistics, with rank and penalty chosen by leave-one-out every few fits, and that average is what the shipped
model stores. After training the statistic is fixed, so ``T`` could instead be fitted to each training
knockout's statistic from many cells. For each run given, this restores ``T`` from the run's kept checkpoint
and scores (``rec_r2``: ``G``'s part, validation knockouts, statistics from up to 1,000 cells) the stored
moving average against refits to the training knockouts' statistics from up to 1,000 cells:

- ``choice again``: rank and penalty chosen afresh by leave-one-out (one fit: ``rec_refit_cells``);
- ``choice kept``: the rank and penalty training left;
- ``bags S x B``: the mean of ``B`` fits, each to a random share ``S`` of the training knockouts (subagging);
- ``+ avg``: the mean of that refit's predictions and the moving average's.

Every refit uses the run's own ``rec_target_clip``, ``rec_select`` and ``rec_robust``. Prints one line per run,
then the means. Run from the repository root on runs that ``perturbscore reproduce`` trained (their
``checkpoints/`` kept), with the same screen options:
``.venv/bin/python benchmarks/refit_effect.py runs/X/runs/perturbscore-seed* --sim-genes 15077 --sim-seed 1``
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import torch
from _util import eval_screen_from_args, reference_stats, report_row, report_table

import perturbscore as ps
from perturbscore.tl._metrics import recognition_r2

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

#: name -> (keep the trained rank and penalty, share of the knockouts per bag (0: all), bags)
REFITS = {
    "choice again": (False, 0.0, 1),
    "choice again, bags 0.8x20": (False, 0.8, 20),
    "choice kept": (True, 0.0, 1),
    "choice kept, bags 0.6x20": (True, 0.6, 20),
    "choice kept, bags 0.6x40": (True, 0.6, 40),
}


def refit(model: ps.tl.PerturbScoreModel, feats: torch.Tensor, target: torch.Tensor, keep: bool, share: float,
          bags: int) -> None:  # fmt: skip
    """Replace the model's ridge ``T`` read-out by the mean of ``bags`` fits to ``target``."""
    cfg, rec = model.train_config, model.net.recognizer
    if not keep:
        rec.n_fits.zero_()  # the first fit chooses rank and penalty again
    with torch.no_grad():
        for bag in range(bags):
            model.net.recognize_fit(
                feats,
                target,
                clip=cfg.rec_target_clip,
                per_part=cfg.rec_select == "per_part",
                robust=cfg.rec_robust,
                subsample=share,
                rate=1.0 / (bag + 1),  # the running mean of the bags; the first replaces the moving average
                reselect=not keep,
            )


def main() -> None:
    """Parse the arguments and print one line per run, then the means."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (runs/<name>-seed<s>[-fold<f>])")
    args, _, screen = eval_screen_from_args(parser)
    kos = list(screen.knockouts)
    scores: dict[str, list[float]] = {}
    for run in args.runs:
        model = ps.tl.PerturbScoreModel.load(run / "model")
        rec = model.net.recognizer
        if rec is None or rec.head != "ridge":
            raise SystemExit(f"{run}: the model has no ridge T")
        state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        trained = {k.removeprefix("net.recognizer."): v for k, v in state.items() if k.startswith("net.recognizer.")}
        m2 = model.model_config.n_stat
        train = [g for g in model.split["train"] if g in screen.features and g != screen.control]
        val = [g for g in kos if g in model.split["val"]]
        target = torch.from_numpy(reference_stats(model, screen, train)).float()
        truth = reference_stats(model, screen, val)[:, :m2]
        feats_train, feats_val = torch.from_numpy(screen.feature_block(train)), screen.feature_block(val)
        rec.load_state_dict(trained)
        average = model.statistic_from_sequence(feats_val)[:, :m2]
        preds = {"moving average (shipped)": average}
        for name, (keep, share, bags) in REFITS.items():
            rec.load_state_dict(trained)
            refit(model, feats_train, target, keep, share, bags)
            preds[name] = model.statistic_from_sequence(feats_val)[:, :m2]
            preds[name + " + avg"] = (preds[name] + average) / 2
        report_row(scores, run.name, {name: recognition_r2(p, truth) for name, p in preds.items()})
    report_table("T read-out", scores)


if __name__ == "__main__":
    main()
