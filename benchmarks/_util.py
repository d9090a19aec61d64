"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
from collections.abc import Callable
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


def oracle_targets(sim: Any, screen: Any, genes: list[str]) -> dict[str, Any]:
    """The simulator's true quantities per gene, ``(P, ·)`` arrays: effects ``z``, log-ratio mix (clr), mix."""
    import numpy as np

    truth = sim.truth.loc[genes]
    mix = truth[list(screen.states)].to_numpy(dtype=float)
    log_mix = np.log(mix)
    return {
        "true effects z": truth[[c for c in truth.columns if c.startswith("effect_")]].to_numpy(dtype=float),
        "log-ratio mix (clr)": log_mix - log_mix.mean(1, keepdims=True),
        "true mix": mix,
    }


def label_clr(screen: Any, genes: list[str]) -> Any:
    """``clr(q(P) + 0.02)`` of each gene's label mix (the log-ratio loss's target): ``(P, C)`` array."""
    import torch

    from perturbscore.nn._statistic import centred_log_ratio

    labels = screen.proportions[[screen.index_of(g) for g in genes]]
    return centred_log_ratio(torch.from_numpy(labels).double()).numpy()


def ridge_t_factory(all_features: Any) -> Any:
    """A function ``n_outputs -> SequenceRecognizer``: fresh shipped ridge ``T``s sharing one all-gene basis.

    The basis depends only on the features, so it is fitted once here (``fit_basis``) and copied into each
    new read-out, instead of being refitted for every target and split.
    """
    import torch

    from perturbscore.nn import SequenceRecognizer
    from perturbscore.nn._recognition import _BASIS_BUFFERS

    dim = all_features.shape[-1]
    fitted = SequenceRecognizer(dim, 1, pooling="gaussian", head="ridge")
    fitted.fit_basis(all_features)

    def make(n_outputs: int) -> SequenceRecognizer:
        rec = SequenceRecognizer(dim, n_outputs, pooling="gaussian", head="ridge")
        with torch.no_grad():
            for name in _BASIS_BUFFERS:
                getattr(rec, name).copy_(getattr(fitted, name))
        return rec

    return make


def basis_coords(rec: Any, features: Any) -> Any:
    """Genes' coordinates ``(N, D)`` in a ridge ``T``'s all-gene basis: its pooling, ``basis_sd``, not centred."""
    import torch

    with torch.no_grad():
        return (rec.pool(torch.as_tensor(features)) / rec.basis_sd @ rec.basis).double().numpy()


def families() -> dict[str, Callable[[], Any]]:
    """Nonlinear regressor families: name -> a function making a fresh scikit-learn regressor.

    Kernel ridge (RBF; penalty and bandwidth by 5-fold cross-validation), a Gaussian process (RBF + white
    noise; hyperparameters by marginal likelihood) and a random forest.
    """
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV, KFold

    grid = {"alpha": np.logspace(-3, 1, 9), "gamma": np.logspace(-3, -0.5, 6)}
    return {
        "kernel ridge (RBF)": lambda: GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=KFold(5)),
        "Gaussian process": lambda: GaussianProcessRegressor(
            ConstantKernel() * RBF(5.0) + WhiteKernel(), normalize_y=True, random_state=0
        ),
        "random forest": lambda: RandomForestRegressor(300, min_samples_leaf=3, random_state=0),
    }


def report_row(scores: dict[str, list[float]], label: str, row: dict[str, float]) -> None:
    """Print one run's ``row`` of R² values as a line and add them to ``scores`` (name -> values over runs)."""
    for name, value in row.items():
        scores.setdefault(name, []).append(value)
    print(f"{label}: " + ", ".join(f"{name} {value:.3f}" for name, value in row.items()), flush=True)


def report_table(title: str, scores: dict[str, list[float]]) -> None:
    """Print a Markdown table of ``scores``: each name's mean, min and max over the runs."""
    import numpy as np

    runs = len(next(iter(scores.values()), []))
    print(f"\n| {title} | rec R², mean over {runs} runs | min .. max |\n|---|---|---|")
    for name, values in scores.items():
        print(f"| {name} | {np.mean(values):.3f} | {np.min(values):.3f} .. {np.max(values):.3f} |")
