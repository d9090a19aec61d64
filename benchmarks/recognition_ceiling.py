"""How well can the shipped ``T`` predict the simulator's *true* per-knockout quantities from sequence features?

Issue 5 asks that ``T`` predict the learned statistic with R² >= 0.5 on held-out knockouts. This script
measures the ceiling that the features allow, with no learned statistic involved. ``T`` is the shipped
read-out: ridge over the all-gene feature basis, with rank and penalty chosen by leave-one-out, and the
window bump at its initial value. It is fitted on the training knockouts to three oracle targets:

- the simulator's true effects ``z``, which the features encode;
- the centred log-ratio of the true state mix;
- the true mix itself;
and, since session 12, to two quantities any statistic of a knockout's own cells inherits the sampling noise
of (a knockout with 20 cells shows 20 draws from its mix): its label mix ``q(P)`` over all its labelled cells,
and that mix's centred log-ratio ``clr(q(P) + 0.02)``, the log-ratio loss's target (``train._loss``).

Scores are ``rec_r2``, the metric ``reproduce`` reports. Two protocols are run:

- ``reproduce``'s own 50/10 split and 5 folds;
- 30 random 50/10 splits, which show how much one split's 10 validation genes move the number.

Run from the repository root (about 1 min per screen, 1 thread):
``.venv/bin/python benchmarks/recognition_ceiling.py [--sim-genes 15077 --sim-seed 1]``.
Prints a Markdown table and writes ``recognition_ceiling_<genes>genes_simseed<seed>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from collections.abc import Callable

import numpy as np
import torch
from _util import eval_screen_from_args, label_clr, oracle_targets, ridge_t_factory

from perturbscore.tl._metrics import recognition_r2
from perturbscore.tl._reproduce import kfold_splits
from perturbscore.train import split_perturbations

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def fit_score(new_t: Callable, feats: torch.Tensor, y: np.ndarray, train: list[int], val: list[int]) -> float:
    """R² on ``val`` of a fresh shipped ridge ``T`` (``new_t``, all-gene basis) fitted to ``y`` on ``train``."""
    rec = new_t(y.shape[1])
    with torch.no_grad():
        rec.fit_predict(feats[train], torch.tensor(y[train], dtype=torch.float32))
        pred = rec(feats[val]).numpy()
    return recognition_r2(pred, y[val])


def main() -> None:
    """Parse the arguments and print the ceiling table for one simulated screen."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args, sim, screen = eval_screen_from_args(parser)
    kos = list(screen.knockouts)
    at = {g: i for i, g in enumerate(kos)}
    feats = torch.from_numpy(screen.feature_block(kos))
    new_t = ridge_t_factory(torch.from_numpy(screen.features.values))
    targets = oracle_targets(sim, screen, kos)
    targets["label log-ratio mix, clr(q(P) + 0.02)"] = label_clr(screen, kos)
    targets["label mix q(P)"] = screen.proportions[[screen.index_of(g) for g in kos]]  # each knockout's label mix

    def ids(split_names: list[str]) -> list[int]:
        return [at[g] for g in split_names if g in at]

    seed_split = split_perturbations(screen, n_train=50, n_val=10, seed=123)
    folds = kfold_splits(screen, folds=5, seed=123)
    rng = np.random.default_rng(0)
    random_splits = [rng.permutation(len(kos)) for _ in range(30)]
    rows = {}
    for name, y in targets.items():
        fold_r2 = [fit_score(new_t, feats, y, ids(s.train), ids(s.val)) for s in folds]
        rand_r2 = [fit_score(new_t, feats, y, list(p[:50]), list(p[50:60])) for p in random_splits]
        rows[name] = {
            "split_50_10": fit_score(new_t, feats, y, ids(seed_split.train), ids(seed_split.val)),
            "five_fold": fold_r2,
            "random_50_10": rand_r2,
        }
    title = f"{args.sim_genes} genes, simulator seed {args.sim_seed}"
    print(f"| target ({title}) | reproduce 50/10 split | reproduce 5-fold (mean, min..max) | 30 random 50/10 splits |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        f, q = np.array(r["five_fold"]), np.array(r["random_50_10"])
        print(
            f"| {name} | {r['split_50_10']:.2f} | {f.mean():.2f} ({f.min():.2f}..{f.max():.2f}) "
            f"| {q.mean():.2f} ± {q.std(ddof=1):.2f} |"
        )
    path = f"recognition_ceiling_{args.sim_genes}genes_simseed{args.sim_seed}.json"
    with open(path, "w") as fh:
        json.dump({"screen": title, "rows": rows}, fh, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
