"""Cost of ``T`` in a default training step: a closed-form fit (``SequenceRecognizer.fit_predict``), and its reuse.

Default training (ridge ``T``) fits ``T`` every ``REC_REFIT_EVERY`` steps; the steps between reuse that fit's
leave-one-out map for their own targets (``fit_predict(refit=False)``: one product). This times both for the
shapes of the default training run on the simulated screens (63 training knockouts, 200 windows x 128 feature
dimensions, a 15-entry statistic, an all-gene basis from 2,064 genes), with the default preset's ``rec_robust``
and ``rec_subsample``. Each fit includes its share of the rank and penalty search, which runs every few fits.
Median ms over ``--fits`` fits, with gradients through the window pooling as in training.

Run from the repository root: ``.venv/bin/python benchmarks/bench_recognizer_fit.py [--fits 200]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from perturbscore.nn import SequenceRecognizer
from perturbscore.train import REC_REFIT_EVERY, preset


def main() -> None:
    """Time the fits and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=200, help="timed fits (the median is reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg, _ = preset("default")
    g = torch.Generator().manual_seed(0)
    genes, windows, dim, outputs = 63, 200, 128, 15
    basis_genes = torch.randn(2064, 8, dim, generator=g)  # the basis only needs pooled features
    feats = torch.randn(genes, windows, dim, generator=g)
    target = torch.randn(genes, outputs, generator=g) + feats.mean(1)[:, :outputs] * 4.0
    target[:3] *= 6.0  # a few extreme knockouts, as on the 15k screen
    rec = SequenceRecognizer(dim, outputs, pooling="gaussian", head="ridge")
    rec.fit_basis(basis_genes)
    times, reused = [], []
    for _ in range(args.fits):
        start = time.perf_counter()
        loo = rec.fit_predict(feats, target, robust=cfg.rec_robust, subsample=cfg.rec_subsample)
        loo.sum().backward()  # the pooling's gradient, as in a training step
        times.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        rec.fit_predict(feats, target * 1.01, robust=cfg.rec_robust, subsample=cfg.rec_subsample, refit=False)
        reused.append((time.perf_counter() - start) * 1e3)
    fit_ms, reuse_ms = float(np.median(times)), float(np.median(reused))
    print("| T in a default step | median ms |")
    print("|---|---|")
    name = f"rec_robust={cfg.rec_robust:g}, rec_subsample={cfg.rec_subsample:g}"
    print(f"| closed-form fit ({name}), with the pooling's gradient | {fit_ms:.2f} |")
    print(f"| the fit's leave-one-out map reused for new targets (refit=False) | {reuse_ms:.3f} |")
    mean = (fit_ms + (REC_REFIT_EVERY - 1) * reuse_ms) / REC_REFIT_EVERY
    print(f"| per step, fitted every {REC_REFIT_EVERY} steps (the default) | {mean:.2f} |")


if __name__ == "__main__":
    main()
