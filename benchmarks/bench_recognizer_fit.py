"""Cost of one closed-form fit of ``T`` per training step, plain least squares against the robust fit.

``SequenceRecognizer.fit_predict`` runs once per training step (ridge ``T``). This times it for the shapes
of the default training run on the simulated screens (63 training knockouts, 200 windows x 128 feature
dimensions, a 15-entry statistic, an all-gene basis from 2,064 genes), with ``robust=0`` (session 8) and
``robust=1`` (the default since session 9), in alternation, so a busy machine slows both alike. Each fit
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
    recs = {c: SequenceRecognizer(dim, outputs, pooling="gaussian", head="ridge") for c in (0.0, 1.0)}
    for rec in recs.values():
        rec.fit_basis(basis_genes)
    times: dict[float, list[float]] = {c: [] for c in recs}
    for _ in range(args.fits):
        for c, rec in recs.items():
            start = time.perf_counter()
            loo = rec.fit_predict(feats, target, robust=c)
            loo.sum().backward()  # the pooling's gradient, as in a training step
            times[c].append((time.perf_counter() - start) * 1e3)
    plain, robust = (float(np.median(times[c])) for c in (0.0, 1.0))
    print("| fit of T | median ms per fit |")
    print("|---|---|")
    print(f"| plain least squares (rec_robust=0) | {plain:.2f} |")
    print(f"| robust (rec_robust=1, the default) | {robust:.2f} |")
    print(f"| difference | {robust - plain:+.2f} |")


if __name__ == "__main__":
    main()
