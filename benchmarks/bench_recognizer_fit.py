"""Cost of one closed-form fit of ``T`` per training step: plain least squares, robust, robust + subsampled read-out.

``SequenceRecognizer.fit_predict`` runs once per training step (ridge ``T``). This times it for the shapes
of the default training run on the simulated screens (63 training knockouts, 200 windows x 128 feature
dimensions, a 15-entry statistic, an all-gene basis from 2,064 genes), with ``robust=0`` (session 8),
``robust=1`` (session 9) and ``robust=1, subsample=0.6`` (the default since session 10: one more weighted
solve, on a subset of the knockouts, for the stored read-out), in alternation, so a busy machine slows all
alike. Each fit
includes its share of the rank and penalty search (every ``RESELECT_EVERY`` fits). Median ms over
``--fits`` fits, with gradients through the window pooling as in training.

Run from the repository root: ``.venv/bin/python benchmarks/bench_recognizer_fit.py [--fits 200]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from perturbscore.nn import SequenceRecognizer


def main() -> None:
    """Time both fits and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    genes, windows, dim, outputs = 63, 200, 128, 15
    basis_genes = torch.randn(2064, 8, dim, generator=g)  # the basis only needs pooled features
    feats = torch.randn(genes, windows, dim, generator=g)
    target = torch.randn(genes, outputs, generator=g) + feats.mean(1)[:, :outputs] * 4.0
    target[:3] *= 6.0  # a few extreme knockouts, as on the 15k screen
    fits = {
        "plain least squares (rec_robust=0, rec_subsample=0)": {"robust": 0.0},
        "robust (rec_robust=1, rec_subsample=0)": {"robust": 1.0},
        "robust, subsampled read-out (rec_robust=1, rec_subsample=0.6: the default)": {"robust": 1.0, "subsample": 0.6},
    }
    recs = {name: SequenceRecognizer(dim, outputs, pooling="gaussian", head="ridge") for name in fits}
    for rec in recs.values():
        rec.fit_basis(basis_genes)
    times: dict[str, list[float]] = {name: [] for name in recs}
    for _ in range(args.fits):
        for name, rec in recs.items():
            start = time.perf_counter()
            loo = rec.fit_predict(feats, target, **fits[name])
            loo.sum().backward()  # the pooling's gradient, as in a training step
            times[name].append((time.perf_counter() - start) * 1e3)
    print("| fit of T | median ms per fit |")
    print("|---|---|")
    for name in fits:
        print(f"| {name} | {float(np.median(times[name])):.2f} |")


if __name__ == "__main__":
    main()
