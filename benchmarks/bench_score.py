"""Scoring speed: 20,000 sequence-only genes, and bootstrap intervals for 64 knockouts.

Trains a default model briefly on the default simulated screen (64 knockouts, 2,000 genes, (200, 128)
features; the timings do not depend on how well it is trained), then times
:func:`perturbscore.tl.score_perturbations` (best of 3).
Run: ``.venv/bin/python benchmarks/bench_score.py [--genes 20000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from perturbscore.data import GeneFeatures
from perturbscore.datasets import simulate_screen
from perturbscore.io import read_screen
from perturbscore.tl import fit, score_perturbations

TARGET = np.array([0.8, 0.05, 0.0, 0.1, 0.05])


def best_of(fn, n: int = 3) -> float:  # noqa: ANN001
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=20_000, help="sequence-only genes to score")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sim = simulate_screen(seed=0)
    screen = read_screen(sim.adata, features=sim.features)
    model = fit(screen, out=tempfile.mkdtemp(), overwrite=True, progress=False, max_steps=100)
    n, (w, dim) = args.genes, screen.features.shape
    values = np.random.default_rng(0).standard_normal((n, w, dim), dtype=np.float32)
    feats = GeneFeatures(genes=np.array([f"G{i:05d}" for i in range(n)]), values=values)
    print("| task | goal | torch threads | measured (best of 3) |")
    print("|---|---|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        seq = best_of(lambda: score_perturbations(model, None, targets=TARGET, features=feats, progress=False))
        boot = best_of(lambda: score_perturbations(model, screen, targets=TARGET, n_boot=200, progress=False))
        print(f"| score {n:,} sequence-only genes, features ({w}, {dim}) | < 1 s | {threads} | {seq:.2f} s |")
        print(
            f"| bootstrap intervals, {len(screen.knockouts)} measured knockouts x 200 resamples | < 5 s | {threads} "
            f"| {boot:.2f} s |"
        )


if __name__ == "__main__":
    main()
