"""Would winsorising ``T``'s training targets help, and could leave-one-out tell? (Tried in session 8, not adopted.)

Takes a ``perturbscore reproduce`` output directory of 50/10 runs and the options of the simulated screen it
ran on. For each run it takes the statistic of every knockout from up to 1,000 of its cells and refits the
run's ridge ``T``. The refit is done without clipping, and with each training knockout's distance from the
median clipped at ``c`` times the median distance, over several ``c``. It prints two numbers per refit:

- ``loo``: the leave-one-out R² on the training knockouts, against the unclipped statistic. This is what
  an honest selection could read.
- ``val``: the validation R², the ``rec_r2`` of ``reproduce``.

Run from the repository root, for example:
``.venv/bin/python benchmarks/winsorised_T.py RUNS_OUT --model default+radius_4 --sim-genes 15077 --sim-seed 1``
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
from _util import eval_screen_from_args

import perturbscore as ps
from perturbscore.tl._metrics import recognition_r2

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
CLIPS = (0.0, 4.0, 3.0, 2.5, 2.0, 1.5)


def main() -> None:
    """Parse the arguments and print leave-one-out and validation R² per clipping level and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a reproduce output directory (eval.json, runs/)")
    parser.add_argument("--model", default="perturbscore", help="results key / run-name prefix")
    args, sim, screen = eval_screen_from_args(parser)
    seeds = json.loads((args.out / "eval.json").read_text())["seeds"]
    print("| run | " + " | ".join("no clip" if c == 0 else f"clip {c:g}x" for c in CLIPS) + " |")
    print("|---" * (len(CLIPS) + 1) + "|")
    for seed in seeds:
        model = ps.tl.PerturbScoreModel.load(args.out / "runs" / f"{args.model}-seed{seed}" / "model")
        n_stat = model.model_config.n_stat
        train = [g for g in model.split["train"] if g != screen.control]
        val = list(model.split["val"])
        rng = np.random.default_rng(0)

        def stats(
            genes: list[str], rng: np.random.Generator = rng, model: ps.tl.PerturbScoreModel = model
        ) -> np.ndarray:
            out = []
            for g in genes:
                ix = screen.cell_index[screen.index_of(g)]
                ix = rng.choice(ix, size=1000, replace=False) if len(ix) > 1000 else ix
                out.append(model.statistic(screen.rows.take(np.sort(ix))))
            return np.stack(out)

        y_train = torch.tensor(stats(train), dtype=torch.float32)
        s_val = stats(val)[:, :n_stat]
        x_train = torch.from_numpy(screen.feature_block(train))
        x_val = torch.from_numpy(screen.feature_block(val))
        cells = []
        for c in CLIPS:
            y = y_train.clone()
            if c:
                part = y[:, :n_stat]
                centre = part.median(0).values
                dist = (part - centre).norm(dim=1, keepdim=True)
                y[:, :n_stat] = centre + (part - centre) * torch.clamp(c * dist.median() / dist, max=1.0)
            rec = copy.deepcopy(model.net.recognizer)
            rec.n_fits.zero_()
            with torch.no_grad():
                loo = rec.fit_predict(x_train, y)[:, :n_stat].numpy()
                pred = rec(x_val)[:, :n_stat].numpy()
            loo_r2 = recognition_r2(loo, y_train[:, :n_stat].numpy())
            cells.append(f"loo {loo_r2:.2f}, val {recognition_r2(pred, s_val):.2f}")
        print(f"| seed {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
