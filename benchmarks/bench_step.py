"""Training-step cost against the floor of its raw work.

The floor: gather the sampled rows from CSR (64 perturbations x 10 cells) and the sparse x dense
products with f's weights (forward ``X W^T`` and backward ``X^T dY``). A training step is timed in its
parts (sampling/gather, forward, backward, optimizer) for the seed's gene-space f and for the default
PCA front end, and for the default without its log-ratio geometry loss (``logratio_weight=0``). Each
figure is a median over ``--steps`` steps (the machines are shared VMs whose timings have outliers).
Run: ``.venv/bin/python benchmarks/bench_step.py [--genes 15077] [--steps 100]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from perturbscore.datasets import simulate_screen
from perturbscore.io import read_screen
from perturbscore.train import StatisticModule, build_net, model_config_for, preset, split_perturbations

# Training's own set-up, so that the timed step is the shipped one; not exported by perturbscore.train yet.
from perturbscore.train._data import fit_front_end, input_taker, make_sampler, schedule_of
from perturbscore.train._loop import fit_feature_basis


def timeit(fn, n: int = 100) -> float:  # noqa: ANN001
    """Median ms of ``n`` calls after a warm-up (the median: this shared VM's timings have outliers)."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def floor(screen, rng: np.random.Generator) -> float:  # noqa: ANN001
    w = np.random.default_rng(0).standard_normal((10, screen.n_genes)).astype(np.float32)
    kos = [screen.cell_index[i] for i in range(min(64, len(screen.cell_index)))]

    def work() -> None:
        rows = np.concatenate([ix[rng.integers(0, len(ix), 10)] for ix in kos])
        x = screen.rows.take(rows)
        y = x @ w.T
        _ = x.T @ y  # the weight gradient's product

    return timeit(work)


def step_parts(screen, name: str, rng: np.random.Generator, n_steps: int, **overrides) -> dict[str, np.ndarray]:  # noqa: ANN001, ANN003
    n_train = min(64, len(screen.knockouts)) - 1
    cfg, over = preset(name, k_min=10, k_max=10, n_train=n_train, n_val=1, **overrides)
    mcfg = model_config_for(screen, cfg, **over)
    split = split_perturbations(screen, n_train=cfg.n_train, n_val=cfg.n_val, seed=0)
    net = build_net(mcfg, seed=0)
    fit_front_end(net.front, screen, split.train, n_cells=cfg.front_end_cells, seed=0)
    if cfg.use_recognizer:
        fit_feature_basis(net, screen, cfg)  # as in training: T reads the all-gene basis (the default preset)
    take = input_taker(net.front, screen)
    pool = screen.proportions
    sampler = make_sampler(screen, split.train, take, config=cfg, target_pool=pool, schedule=schedule_of(cfg),
                           target_noise=0.05, features=cfg.use_recognizer)  # fmt: skip
    module = StatisticModule(net, cfg)
    module.on_fit_start()  # as in training: subnormals flushed to zero
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    parts: dict[str, list[float]] = {"sample+gather": [], "forward": [], "backward": [], "optimizer": []}
    for i in range(n_steps + 5):
        t0 = time.perf_counter()
        ep = sampler.sample(i, rng)
        t1 = time.perf_counter()
        loss = module.compute(ep).total
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if i >= 5:  # warm-up steps are not timed
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                parts[key].append(dt * 1e3)
    return {key: np.asarray(v) for key, v in parts.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--genes", type=int, default=15077)
    ap.add_argument("--steps", type=int, default=100, help="timed steps per preset (medians are reported)")
    ap.add_argument("--unseen", type=int, default=2000, help="genes with features but no cells (T's basis)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t = time.perf_counter()
    sim = simulate_screen(n_genes=args.genes, seed=0, n_unseen_genes=args.unseen)
    sim_s = time.perf_counter() - t
    screen = read_screen(sim.adata, features=sim.features)
    rng = np.random.default_rng(0)
    fl = floor(screen, rng)
    print(f"screen: {screen.n_cells} cells x {screen.n_genes} genes (simulated in {sim_s:.1f} s)")
    print(f"floor (gather 640 rows + X W^T + X^T dY, scipy): {fl:.2f} ms")
    print(f"medians over {args.steps} steps per preset (parts' medians need not add up to the step's)")
    print("| preset | sample+gather ms | forward ms | backward ms | optimizer ms | step ms | step / floor |")
    print("|---|---|---|---|---|---|---|")
    runs = [("seed-baseline", {}), ("seed-full", {}), ("default", {}), ("default", {"logratio_weight": 0.0})]
    for name, overrides in runs:  # the last: the default without its log-ratio geometry loss
        p = step_parts(screen, name, rng, args.steps, **overrides)
        total = float(np.median(sum(p.values())))
        cells = " | ".join(f"{np.median(v):.2f}" for v in p.values())
        label = name + "".join(f", {k}={v}" for k, v in overrides.items())
        print(f"| {label} | {cells} | {total:.2f} | {total / fl:.1f}x |")


if __name__ == "__main__":
    main()
