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

``--families`` (session 14) adds a second table: is the ridge read-out what limits these ceilings? The true
and the label log-ratio mix are predicted on ``reproduce``'s split and folds by other regressor families on the
leading ``FAMILY_RANK`` coordinates of ``T``'s all-gene basis (same pooling): kernel ridge (RBF, penalty and
bandwidth by 5-fold cross-validation), a Gaussian process (RBF + white noise, hyperparameters by marginal
likelihood) and a random forest. A last column fits each family (and the shipped ``T``) to the true log-ratio
mix of the 2,000 genes that have features but no cells, which no user has, and scores the same validation
knockouts: the features' own limit once the target is known for many genes. About 9 minutes per screen in all (1 thread).
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _util import basis_coords, eval_screen_from_args, families, label_clr, oracle_targets, ridge_t_factory

from perturbscore.tl._metrics import recognition_r2
from perturbscore.tl._reproduce import kfold_splits
from perturbscore.train import Split, split_perturbations

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

FAMILY_RANK = 16  # leading basis coordinates the nonlinear families read


def fit_score(new_t: Callable, feats: torch.Tensor, y: np.ndarray, train: list[int], val: list[int]) -> float:
    """R² on ``val`` of a fresh shipped ridge ``T`` (``new_t``, all-gene basis) fitted to ``y`` on ``train``."""
    rec = new_t(y.shape[1])
    with torch.no_grad():
        rec.fit_predict(feats[train], torch.tensor(y[train], dtype=torch.float32))
        pred = rec(feats[val]).numpy()
    return recognition_r2(pred, y[val])


def family_table(
    new_t: Callable[[int], Any],
    all_feats: torch.Tensor,
    genes: list[str],
    targets: dict[str, np.ndarray],
    splits: list[Split],
    kos: list[str],
) -> dict[str, dict[str, list[float]]]:
    """R² per target, family and split: ``{target: {family: row}}``.

    ``targets`` are ``(N, ·)`` over ``genes`` (NaN rows: no value), ``kos`` the knockouts. Each row holds one R²
    per split (fitted on its training knockouts), then, for targets known for every gene, one per split again
    for the same validation knockouts fitted on the genes that are not knockouts.
    """
    at = {g: i for i, g in enumerate(genes)}
    coords = basis_coords(new_t(1), all_feats)[:, :FAMILY_RANK]  # T's initial window bump
    coords = coords - coords.mean(0)  # all-gene centring
    unlabelled = [i for i, g in enumerate(genes) if g not in set(kos)]
    out: dict[str, dict[str, list[float]]] = {}

    def score(fit: Callable, y: np.ndarray, train: list[int], val: list[int]) -> float:
        mean = y[train].mean(0)  # every family predicts the centred target
        return recognition_r2(fit(train, y - mean)(val) + mean, y[val])

    def shipped(train: list[int], yc: np.ndarray) -> Callable:
        rec = new_t(yc.shape[1])
        with torch.no_grad():
            rec.fit_predict(all_feats[train], torch.tensor(yc[train], dtype=torch.float32))
        return lambda val: rec(all_feats[val]).detach().double().numpy()

    def sklearn_fit(make: Callable) -> Callable:
        def fit(train: list[int], yc: np.ndarray) -> Callable:
            model = make().fit(coords[train], yc[train])
            return lambda val: model.predict(coords[val])

        return fit

    fits = {"ridge T (shipped)": shipped} | {name: sklearn_fit(make) for name, make in families().items()}
    for tname, y in targets.items():
        for fname, fit in fits.items():
            row = [score(fit, y, [at[g] for g in s.train if g in at], [at[g] for g in s.val]) for s in splits]
            if not np.isnan(y[unlabelled]).any():  # the same validation knockouts, fitted on the unlabelled genes
                row += [score(fit, y, unlabelled, [at[g] for g in s.val]) for s in splits]
            out.setdefault(tname, {})[fname] = row
    return out


def main() -> None:
    """Parse the arguments and print the ceiling table for one simulated screen."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", action="store_true", help="also the regressor-family table (session 14)")
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
    result = {"screen": title, "rows": rows}
    if args.families:
        genes = list(screen.features.genes)
        clr_all = oracle_targets(sim, screen, genes)["log-ratio mix (clr)"]
        labels = np.full_like(clr_all, np.nan)  # the label mix exists for knockouts only
        labels[[genes.index(g) for g in kos]] = label_clr(screen, kos)
        splits = [seed_split, *folds]
        table = family_table(new_t, torch.from_numpy(screen.features.values), genes,
                             {"true log-ratio mix": clr_all, "label log-ratio mix": labels}, splits, kos)  # fmt: skip
        print(f"\n| target, family ({title}) | reproduce 50/10 split | reproduce 5-fold (mean) "
              "| fitted on the 2,000 unlabelled genes: 50/10 split | 5-fold |")  # fmt: skip
        print("|---|---|---|---|---|")
        n = len(splits)
        for tname, fams in table.items():
            for fname, r in fams.items():
                more = f"{r[n]:.2f} | {np.mean(r[n + 1 :]):.2f}" if len(r) > n else "– | –"
                print(f"| {tname}, {fname} | {r[0]:.2f} | {np.mean(r[1:n]):.2f} | {more} |")
        result["families"] = table
    suffix = "_families" if args.families else ""
    path = f"recognition_ceiling_{args.sim_genes}genes_simseed{args.sim_seed}{suffix}.json"
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
