"""Would winsorising ``T``'s training targets help, and could leave-one-out tell? (Tried in session 8, not adopted.)

Takes a ``perturbscore reproduce`` output directory of 50/10 runs and the options of the simulated screen it
ran on. For each run it takes the statistic of every knockout from up to 1,000 of its cells and refits the
run's ridge ``T``. The refit is done without clipping, and with each training knockout's distance from the
median clipped at ``c`` times the median distance, over several ``c``. It prints two numbers per refit:

- ``loo``: the leave-one-out R² on the training knockouts, against the unclipped statistic. This is what
  an honest selection could read.
- ``inner``: the mean ``rec_r2`` over 40 random 40/10 splits of the training knockouts (fit on 40, score
  the 10 against their own mean, as ``reproduce`` scores the validation genes). This is a second honest
  selection.
- ``val``: the validation R², the ``rec_r2`` of ``reproduce``.

Run from the repository root, for example:
``.venv/bin/python benchmarks/winsorised_T.py RUNS_OUT --sim-genes 15077 --sim-seed 1`` on the output of
``perturbscore reproduce --models perturbscore --sim-genes 15077 --sim-seed 1 ...``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from _util import eval_screen_from_args, reference_stats

import perturbscore as ps
from perturbscore.nn import SequenceRecognizer
from perturbscore.tl._metrics import recognition_r2

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
CLIPS = (0.0, 4.0, 3.0, 2.5, 2.0, 1.5)


def refit(model: ps.tl.PerturbScoreModel, x: torch.Tensor, y: torch.Tensor, clip: float) -> tuple:
    """A fresh copy of ``model``'s ridge ``T`` fitted to ``y`` (``G``'s part clipped at ``clip``): ``(T, loo)``."""
    rec: SequenceRecognizer = copy.deepcopy(model.net.recognizer)
    rec.n_fits.zero_()
    with torch.no_grad():
        loo = rec.fit_predict(x, y, clip=clip, clip_dims=model.model_config.n_stat)
    return rec, loo


def main() -> None:
    """Parse the arguments and print leave-one-out, inner-split and validation R² per clipping level and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a reproduce output directory (eval.json, runs/)")
    parser.add_argument("--model", default="perturbscore", help="results key / run-name prefix")
    args, _, screen = eval_screen_from_args(parser)
    seeds = json.loads((args.out / "eval.json").read_text())["seeds"]
    print("| run | " + " | ".join("no clip" if c == 0 else f"clip {c:g}x" for c in CLIPS) + " |")
    print("|---" * (len(CLIPS) + 1) + "|")
    for seed in seeds:
        model = ps.tl.PerturbScoreModel.load(args.out / "runs" / f"{args.model}-seed{seed}" / "model")
        n_stat = model.model_config.n_stat
        train = [g for g in model.split["train"] if g != screen.control]
        val = list(model.split["val"])
        y_train = torch.tensor(reference_stats(model, screen, train), dtype=torch.float32)
        truth = y_train[:, :n_stat].numpy()
        s_val = reference_stats(model, screen, val)[:, :n_stat]
        x_train = torch.from_numpy(screen.feature_block(train))
        x_val = torch.from_numpy(screen.feature_block(val))
        inner_splits = [np.random.default_rng(1 + i).permutation(len(train)) for i in range(40)]
        cells = []
        for c in CLIPS:
            inner = []
            for perm in inner_splits:
                rec, _ = refit(model, x_train[perm[:-10]], y_train[perm[:-10]], c)
                with torch.no_grad():
                    inner.append(recognition_r2(rec(x_train[perm[-10:]])[:, :n_stat].numpy(), truth[perm[-10:]]))
            rec, loo = refit(model, x_train, y_train, c)
            with torch.no_grad():
                pred = rec(x_val)[:, :n_stat].numpy()
            loo_r2, val_r2 = recognition_r2(loo[:, :n_stat].numpy(), truth), recognition_r2(pred, s_val)
            cells.append(f"loo {loo_r2:.2f}, inner {np.mean(inner):.2f}, val {val_r2:.2f}")
        print(f"| seed {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
