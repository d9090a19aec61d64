"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``: unlike ``ru_maxrss`` it does not inherit the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def eval_screen_from_args(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Any, Any]:
    """Add ``--sim-genes``/``--sim-seed`` to ``parser``, parse, and simulate the screen ``reproduce`` would.

    Returns the parsed arguments, the simulation (with its ``truth``) and the screen read from it, with
    features for :data:`~perturbscore._constants.EVAL_UNSEEN_GENES` genes without cells; PyTorch on 1 thread.
    """
    import torch

    import perturbscore as ps
    from perturbscore._constants import EVAL_UNSEEN_GENES

    parser.add_argument("--sim-genes", type=int, default=2000)
    parser.add_argument("--sim-seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sim = ps.datasets.simulate_screen(n_genes=args.sim_genes, seed=args.sim_seed, n_unseen_genes=EVAL_UNSEEN_GENES)
    return args, sim, ps.io.read_screen(sim.adata, features=sim.features)


def reference_stats(model: Any, screen: Any, genes: list[str]) -> Any:
    """Each gene's statistic from up to 1,000 of its cells (``rec_r2``'s reference): ``(P, stat_dim)`` array."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = []
    for g in genes:
        ix = screen.cell_index[screen.index_of(g)]
        ix = rng.choice(ix, size=1000, replace=False) if len(ix) > 1000 else ix
        out.append(model.statistic(screen.rows.take(np.sort(ix))))
    return np.stack(out)
