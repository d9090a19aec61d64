"""Why one 50/10 split's recognition R² is low: how spread out its validation knockouts are, and who ``T`` misses.

``rec_r2`` divides ``T``'s squared error on the validation knockouts by their own spread around their own
mean. This script prints, for each trained model given, that R², the validation knockouts' spread as a
share of the training knockouts' (for ``G``'s part of the statistic, and for the simulator's true log-ratio
mix, which no model shapes), and each validation knockout's squared error and squared distance from the
validation mean. Each knockout's statistic comes from up to 1,000 of its cells, like ``rec_r2``'s reference.

Run from the repository root on models that ``perturbscore reproduce`` trained, with the same screen options:
``.venv/bin/python benchmarks/validation_spread.py runs/X/runs/perturbscore-seed{0,1,2}/model --sim-genes 15077 --sim-seed 1``
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
from _util import eval_screen_from_args, oracle_targets, reference_stats

import perturbscore as ps
from perturbscore.tl._metrics import recognition_r2

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def spread(a: np.ndarray) -> float:
    """Mean squared distance of the rows of ``a`` from their mean."""
    return float(((a - a.mean(0)) ** 2).sum(1).mean())


def main() -> None:
    """Parse the arguments and print one block per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="saved model directories (runs/<name>-seed<s>/model)")
    args, sim, screen = eval_screen_from_args(parser)
    kos = list(screen.knockouts)
    clr = oracle_targets(sim, screen, kos)["log-ratio mix (clr)"]
    for path in args.models:
        model = ps.tl.PerturbScoreModel.load(path)
        m2 = model.model_config.n_stat
        s = reference_stats(model, screen, kos)[:, :m2].astype(float)
        train = [i for i, g in enumerate(kos) if g in model.split["train"]]
        val = [i for i, g in enumerate(kos) if g in model.split["val"]]
        pred = model.statistic_from_sequence(screen.feature_block([kos[i] for i in val]))[:, :m2]
        print(
            f"{path}: rec R² {recognition_r2(pred, s[val]):.2f}; validation spread / training spread: "
            f"statistic {spread(s[val]) / spread(s[train]):.2f}, true log-ratio mix {spread(clr[val]) / spread(clr[train]):.2f}"
        )
        err = ((pred - s[val]) ** 2).sum(1)
        dev = ((s[val] - s[val].mean(0)) ** 2).sum(1)
        rows = sorted(zip(err, dev, [kos[i] for i in val], strict=True), reverse=True)
        print("  squared error / squared distance from the validation mean:",
              ", ".join(f"{g} {e:.2f}/{d:.2f}" for e, d, g in rows))  # fmt: skip


if __name__ == "__main__":
    main()
