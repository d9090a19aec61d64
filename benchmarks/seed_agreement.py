"""How much models trained with different seeds agree on each knockout's statistic, and where they do not.

Each model's statistic (``G``'s part, from up to 1,000 cells per knockout, as ``rec_r2`` reads it) is
reduced to its leading direction over the training knockouts, signed to correlate positively with the
simulator's true log-ratio of the first state (progenitor). The script prints the correlation of that
coordinate between every pair of models, on the training and on the validation knockouts, then the
knockouts whose coordinate differs most between models, with their number of cells and true log-ratio mix.
The models must share a split (``perturbscore reproduce`` with several ``--seeds``).

Run from the repository root, with the screen options the models were trained with:
``.venv/bin/python benchmarks/seed_agreement.py runs/X/runs/perturbscore-seed{0,1,2}/model --sim-genes 15077 --sim-seed 1``
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
from _util import eval_screen_from_args, oracle_targets, reference_stats

import perturbscore as ps

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def leading_coordinate(stat: np.ndarray, train: list[int], sign_ref: np.ndarray) -> np.ndarray:
    """Every knockout's coordinate on the training knockouts' leading direction, signed to match ``sign_ref``."""
    centre = stat[train].mean(0)
    _, _, vt = np.linalg.svd(stat[train] - centre, full_matrices=False)
    coord = (stat - centre) @ vt[0]
    return coord * np.sign(np.corrcoef(coord, sign_ref)[0, 1])


def main() -> None:
    """Parse the arguments and print the agreement table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="saved model directories (runs/<name>-seed<s>/model), one split")
    parser.add_argument("--top", type=int, default=12, help="how many of the least agreed knockouts to list")
    args, sim, screen = eval_screen_from_args(parser)
    kos = list(screen.knockouts)
    clr = oracle_targets(sim, screen, kos)["log-ratio mix (clr)"]
    models = [ps.tl.PerturbScoreModel.load(path) for path in args.models]
    split = models[0].split
    if any(m.split["val"] != split["val"] for m in models):
        parser.error("the models were trained on different splits; pass models of one split")
    train = [i for i, g in enumerate(kos) if g in split["train"]]
    val = [i for i, g in enumerate(kos) if g in split["val"]]
    coords = np.array(
        [
            leading_coordinate(
                reference_stats(m, screen, kos)[:, : m.model_config.n_stat].astype(float), train, clr[:, 0]
            )
            for m in models
        ]
    )  # (models, knockouts)
    for name, rows in (("training", train), ("validation", val)):
        corr = np.corrcoef(coords[:, rows])
        pairs = [f"{corr[a, b]:.3f}" for a in range(len(models)) for b in range(a + 1, len(models))]
        print(f"correlation between models, {name} knockouts: {', '.join(pairs)}")
    cells = np.array([len(screen.cell_index[screen.index_of(g)]) for g in kos])
    print(
        f"\n| knockout | set | cells | leading coordinate per model | true log-ratio mix ({', '.join(screen.states)}) |"
    )
    print("|---|---|---|---|---|")
    for i in np.argsort(-coords.std(0))[: args.top]:
        where = "validation" if i in val else "training"
        per_model = ", ".join(f"{c:.2f}" for c in coords[:, i])
        print(f"| {kos[i]} | {where} | {cells[i]} | {per_model} | {', '.join(f'{v:.2f}' for v in clr[i])} |")


if __name__ == "__main__":
    main()
