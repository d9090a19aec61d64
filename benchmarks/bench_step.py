"""Training-step cost against the floor of its raw work, old path and new in the same run.

The floor: gather the sampled rows from CSR (64 perturbations x 10 cells) and the sparse x dense products with
f's weights (forward ``X W^T`` and backward ``X^T dY``). A training step is timed in its parts (sampling/gather,
forward, backward, optimizer), medians over ``--steps`` steps that every row takes in turns of 10 (the machines
are shared VMs whose speed drifts and whose timings have outliers), for:

* ``default, old path``: the step as the default ran it before cells were embedded once: every step gathers its
  cells' CSR rows (and the reference sample's) and projects them through the front end, draws each
  perturbation's cells in a Python loop, fits ``T`` in closed form, and steps a foreach AdamW;
* ``default, old step on cached projection``: the same with the projection cached in memory (what an in-memory
  screen already had);
* ``default``: the shipped step, gathering rows of the stored embedding (``perturbscore.pp.embed``, its one-off
  time printed), drawing every perturbation's cells at once, fitting ``T`` every ``REC_REFIT_EVERY`` steps
  (reusing the fit's leave-one-out map between), fused AdamW; the same with ``T`` fitted every step; and the
  same with the seed's 128-wide head ``H``, with PyTorch's own softmax (the step before the short-axis softmax
  of :mod:`perturbscore.nn` and the narrower head) and without;
* the seed presets, whose ``f`` reads raw genes (CSR rows every step, as ever), with the old step (loop draws,
  foreach AdamW) and the shipped one.

``H`` runs once per step on every statistic it scores in every row (the old path ran it three times).
``--device cuda`` times the shipped rows and the dense floor on a GPU instead (the episode is drawn on the CPU and
copied to the device in the sample+gather part; every part ends with a device synchronisation).
Run: ``.venv/bin/python benchmarks/bench_step.py [--genes 15077] [--steps 100] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from perturbscore.data import EpisodeSampler, Screen, draw_rows
from perturbscore.datasets import simulate_screen
from perturbscore.io import read_screen
from perturbscore.pp import embed
from perturbscore.train import (
    REC_REFIT_EVERY,
    StatisticModule,
    build_net,
    fit_feature_basis,
    fit_front_end,
    front_end_inputs,
    make_sampler,
    model_config_for,
    preset,
    schedule_of,
    split_perturbations,
)

CACHE = Path("/tmp/perturbscore-bench")


class LoopSampler(EpisodeSampler):
    """The sampler as it was: each perturbation's cells drawn in a Python loop (:func:`draw_rows`)."""

    def draw_rows(self, k, rng, subset=None, *, window=None):  # noqa: ANN001, ANN201, D102
        index = self.cell_index if subset is None else [self.cell_index[i] for i in subset]
        return draw_rows(
            index, k, rng, replace_small=self.replace_small, window=self.window if window is None else window
        )


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a host clock times it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], n: int = 100, device: torch.device = torch.device("cpu")) -> float:
    """Median ms of ``n`` calls after a warm-up (the median: this shared VM's timings have outliers)."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def floor(screen: Screen, rng: np.random.Generator) -> float:
    """Gather 640 CSR rows, ``X W^T`` and ``X^T dY`` (f's raw work per step on genes)."""
    w = np.random.default_rng(0).standard_normal((10, screen.n_genes)).astype(np.float32)
    kos = [screen.cell_index[i] for i in range(min(64, len(screen.cell_index)))]

    def work() -> None:
        rows = np.concatenate([ix[rng.integers(0, len(ix), 10)] for ix in kos])
        x = screen.rows.take(rows)
        y = x @ w.T
        _ = x.T @ y  # the weight gradient's product

    return timeit(work)


def dense_floor(
    screen: Screen, device: torch.device = torch.device("cpu"), **overrides: object
) -> tuple[float, str, float]:
    """The default model's own dense work per step, forward and backward: ``G`` and ``H`` on the step's shapes.

    Returns its median ms, what it runs, and the GFLOP of its matrix products (PyTorch's flop counter).

    ``G`` on the three sets of means a step pools (the sampled cells', the reference sample's, the detached
    ones for the stability loss) and ``H`` on every (perturbation, target) pair it scores (the statistic, ``G``'s
    part alone, ``T``'s predictions): no sampling, front end, ``f``, ``T`` fit or losses.
    """
    n_train = min(64, len(screen.knockouts)) - 1
    cfg, over = preset("default", k_min=10, k_max=10, n_train=n_train, n_val=1, **overrides)
    net = build_net(model_config_for(screen, cfg, **over), seed=0).to(device)
    gen = torch.Generator().manual_seed(0)
    P, C, T = n_train, screen.n_states, cfg.targets_per_perturbation
    m1 = net.config.n_programs
    means = torch.cat([torch.rand(3 * P, m1, generator=gen) * 2 - 1, torch.full((3 * P, C), 1.0 / C)], dim=1)
    targets = torch.softmax(torch.randn(P, T, C, generator=gen), -1)
    means, targets, lk = means.to(device), targets.to(device), torch.full((P,), float(np.log1p(10)), device=device)

    def work() -> None:
        stat, _, rec = net.pool(means).split(P)  # (P, m2 + C) each
        dists, _ = net.distances([(stat, targets, lk), (net.mixed(stat), targets, lk), (rec, targets, lk * 0)])
        sum(d.sum() for d in dists).backward()

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        work()
    return timeit(work, device=device), f"G on {3 * P} sets + H on {3 * P * T:,} pairs", counter.get_total_flops() / 1e9


def matmul_rate(shape: tuple[int, int, int] = (1890, 32, 96), n: int = 200) -> float:
    """GFLOP/s of one thread's ``(m, k) @ (k, n)`` product at ``G``'s largest shape (its tokens by ``Q, K, V``)."""
    m, k, n_out = shape
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n_out, generator=gen)
    return 2 * m * k * n_out / timeit(lambda: a @ b, n) / 1e6


def softmax_cost() -> list[str]:
    """Forward + backward ms of :func:`torch.softmax` and :func:`perturbscore.nn.softmax` on a step's short axes."""
    from perturbscore.nn import softmax

    lines = []
    gen = torch.Generator().manual_seed(0)
    for shape, what in (((189, 4, 10, 10), "G's attention weights"), ((4032, 5), "state posteriors")):
        x = torch.randn(*shape, generator=gen).requires_grad_()
        up = torch.randn(*shape, generator=gen)
        ms = [
            timeit(lambda f=f, x=x, up=up: torch.autograd.grad((f(x, -1) * up).sum(), x))
            for f in (torch.softmax, softmax)
        ]
        lines.append(f"softmax over the last axis of {shape} ({what}), forward + backward: torch.softmax "
                     f"{ms[0]:.2f} ms, perturbscore.nn.softmax {ms[1]:.2f} ms")  # fmt: skip
    return lines


@contextlib.contextmanager
def torch_softmax() -> Iterator[None]:
    """Run the modules with :func:`torch.softmax` and its cross-entropy (the step before the short-axis kernels)."""
    import perturbscore.nn._head as head
    import perturbscore.nn._mixer as mixer
    import perturbscore.nn._statistic as statistic
    import perturbscore.train._module as module

    torch_fns = {"softmax": torch.softmax, "cross_entropy": torch.nn.functional.cross_entropy}
    saved = [
        (m, name, getattr(m, name)) for m in (head, mixer, statistic, module) for name in torch_fns if hasattr(m, name)
    ]
    for m, name, _ in saved:
        setattr(m, name, torch_fns[name])
    try:
        yield
    finally:
        for m, name, fn in saved:
            setattr(m, name, fn)


class StepRunner:
    """One row of the table: a preset's training step, timed in its parts.

    ``path``: ``"new"``, ``"projected"`` or ``"cached"`` (old); ``softmax="torch"``: the modules run with
    PyTorch's own softmax (:func:`torch_softmax`); ``device``: where the module steps (episodes are drawn on the
    CPU and copied there). Rows are timed in turns of :data:`ROUND` steps (:meth:`run`),
    so that a drift of the shared machine's speed falls on every row alike.
    """

    def __init__(
        self, screen: Screen, name: str, rng: np.random.Generator, *, path: str = "new", refit_every: int = 1,
        softmax: str = "ours", device: torch.device = torch.device("cpu"), **overrides: object,
    ) -> None:  # fmt: skip
        n_train = min(64, len(screen.knockouts)) - 1
        cfg, over = preset(name, k_min=10, k_max=10, n_train=n_train, n_val=1, **overrides)
        split = split_perturbations(screen, n_train=cfg.n_train, n_val=cfg.n_val, seed=0)
        net = build_net(model_config_for(screen, cfg, **over), seed=0)
        if path == "new":
            take, _ = front_end_inputs(net.front, screen, split.train, n_cells=cfg.front_end_cells, seed=0)
        else:
            fit_front_end(net.front, screen, split.train, n_cells=cfg.front_end_cells, seed=0)
            take = lambda rows: net.front.transform(screen.rows.take(rows))  # noqa: E731 - per-step projection
            if path == "cached" and net.front.kind == "pca":
                cache = np.concatenate([take(np.arange(s, min(screen.n_cells, s + 8192))).numpy()
                                        for s in range(0, screen.n_cells, 8192)])  # fmt: skip
                take = lambda rows: torch.from_numpy(cache[rows])  # noqa: E731
        if cfg.use_recognizer:
            fit_feature_basis(net, screen, cfg)  # as in training: T reads the all-gene basis (the default preset)
        self.sampler = make_sampler(screen, split.train, take, config=cfg, target_pool=screen.proportions,
                                    schedule=schedule_of(cfg), target_noise=0.05, features=cfg.use_recognizer)  # fmt: skip
        if path != "new":
            self.sampler.__class__ = LoopSampler
        self.module = StatisticModule(net, cfg, rec_refit_every=refit_every).to(device)
        self.device = device
        self.module.on_fit_start()  # as in training: subnormals flushed to zero
        opt = self.module.configure_optimizers()
        opt = opt["optimizer"] if isinstance(opt, dict) else opt
        if path != "new":  # the optimizer as it was
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in opt.param_groups]
            opt = torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)
        self.opt, self.rng, self.refit_every, self.softmax, self.step = opt, rng, refit_every, softmax, 0
        self.parts: dict[str, list[float]] = {"sample+gather": [], "forward": [], "backward": [], "optimizer": []}
        self.run(5, timed=False)  # warm-up

    def run(self, n_steps: int, *, timed: bool = True) -> None:
        """Take ``n_steps`` steps, recording each part's milliseconds when ``timed``."""
        with torch_softmax() if self.softmax == "torch" else contextlib.nullcontext():
            for _ in range(n_steps):
                i = self.step
                t0 = time.perf_counter()
                ep = self.sampler.sample(i, self.rng).to(self.device)
                synchronize(self.device)
                t1 = time.perf_counter()
                loss = self.module.compute(ep, refit=i % self.refit_every == 0).total
                synchronize(self.device)
                t2 = time.perf_counter()
                self.opt.zero_grad()
                loss.backward()
                synchronize(self.device)
                t3 = time.perf_counter()
                self.opt.step()
                synchronize(self.device)
                t4 = time.perf_counter()
                self.step += 1
                if timed:
                    for key, dt in zip(self.parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                        self.parts[key].append(dt * 1e3)

    def medians(self) -> tuple[list[float], float]:
        """Each part's median and the median step, in ms."""
        arrays = [np.asarray(v) for v in self.parts.values()]
        return [float(np.median(a)) for a in arrays], float(np.median(sum(arrays)))


#: Steps each row takes in its turn.
ROUND = 10


def lightning_step(screen: Screen, n_steps: int) -> float:
    """Milliseconds per step of the shipped default inside Lightning (``train_statistic``), second epoch only.

    Two epochs of ``n_steps`` steps (1 validation episode each): the second epoch's wall time over its steps is
    the step with Lightning's loop, hooks and logging around it (start-up excluded).
    """
    import logging
    import tempfile

    import pandas as pd

    from perturbscore.train import train_statistic

    n_train = min(64, len(screen.knockouts)) - 1
    cfg, over = preset("default", k_min=10, k_max=10, n_train=n_train, n_val=1, max_steps=2 * n_steps,
                       steps_per_epoch=n_steps, val_episodes=1, patience=100)  # fmt: skip
    split = split_perturbations(screen, n_train=cfg.n_train, n_val=cfg.n_val, seed=0)
    logging.getLogger("perturbscore").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as run_dir:
        train_statistic(screen, cfg, model_config_for(screen, cfg, **over), run_dir=Path(run_dir), split=split,
                        progress=False)  # fmt: skip
        m = pd.read_csv(Path(run_dir) / "metrics.csv")
    wall, step = m["wall_s"].to_numpy(), m["step"].to_numpy()
    return float((wall[1] - wall[0]) / (step[1] - step[0]) * 1e3)


#: Turns of (bare steps, Lightning epochs) whose means compare the two.
LIGHTNING_TURNS = 3


def lightning_overhead(screen: Screen, runner: StepRunner, n_steps: int) -> tuple[float, float]:
    """Mean ms a step of ``runner`` (the bare shipped step) and of :func:`lightning_step`, taken in turns.

    Each turn times ``n_steps`` bare steps by wall clock, then one Lightning run; a drift of the machine's speed
    falls on both alike (the table's medians are per step, these means per ``n_steps`` steps).
    """
    bare, inside = [], []
    for _ in range(LIGHTNING_TURNS):
        runner.module.on_fit_start()  # subnormals flushed, as in training (Lightning's run turns it off after)
        t = time.perf_counter()
        runner.run(n_steps, timed=False)
        bare.append((time.perf_counter() - t) / n_steps * 1e3)
        inside.append(lightning_step(screen, n_steps))
    return float(np.mean(bare)), float(np.mean(inside))


def load_screen(genes: int, unseen: int) -> tuple[Screen, str]:
    """The simulated screen, written once to an ``.h5ad`` cache (its simulation takes a minute)."""
    where = CACHE / f"challenge-{genes}-unseen{unseen}"
    if not (where / "screen.h5ad").exists():
        t = time.perf_counter()
        simulate_screen(n_genes=genes, seed=0, n_unseen_genes=unseen).write(where, overwrite=True)
        note = f"simulated in {time.perf_counter() - t:.0f} s"
    else:
        note = "read from the cache"
    return read_screen(where / "screen.h5ad", features=where / "features.npz"), note


def device_rows(screen: Screen, note: str, device: torch.device, steps: int) -> None:
    """The dense floor and the shipped steps on ``device`` (a GPU), in the same turns as the CPU table."""
    print(
        f"screen: {screen.n_cells} cells x {screen.n_genes} genes ({note}); device: {torch.cuda.get_device_name(device)}"
    )
    embed(screen, n_train=min(64, len(screen.knockouts)) - 1, n_val=1)
    dense, what, _ = dense_floor(screen, device)
    print(f"the default model's dense floor on the device ({what}, forward + backward): {dense:.2f} ms")
    print(f"medians over {steps} steps per row, in turns of {ROUND}; sample+gather includes the copy to the device")
    print("| preset | path | sample+gather ms | forward ms | backward ms | optimizer ms | step ms | steps/s |")
    print("|---|---|---|---|---|---|---|---|")
    runs = [
        ("default", "stored embedding, T every step", {"refit_every": 1}),
        ("default", f"stored embedding, T every {REC_REFIT_EVERY} steps (shipped)", {"refit_every": REC_REFIT_EVERY}),
        ("seed-baseline", "raw genes (shipped)", {}),
        ("seed-full", "raw genes (shipped)", {}),
    ]
    rng = np.random.default_rng(0)
    rows = [(name, label, StepRunner(screen, name, rng, device=device, **kw)) for name, label, kw in runs]
    for _ in range(max(1, steps // ROUND)):
        for _, _, runner in rows:
            runner.run(ROUND)
    for name, label, runner in rows:
        parts, total = runner.medians()
        cells = " | ".join(f"{v:.2f}" for v in parts)
        print(f"| {name} | {label} | {cells} | {total:.2f} | {1e3 / total:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--genes", type=int, default=15077)
    ap.add_argument("--steps", type=int, default=100, help="timed steps per preset (medians are reported)")
    ap.add_argument("--unseen", type=int, default=2000, help="genes with features but no cells (T's basis)")
    ap.add_argument("--device", default="cpu", help="where the model steps: cpu, or cuda for the shipped rows on a GPU")
    args = ap.parse_args()
    torch.set_num_threads(1)
    screen, note = load_screen(args.genes, args.unseen)
    if args.device != "cpu":
        return device_rows(screen, note, torch.device(args.device), args.steps)
    rng = np.random.default_rng(0)
    fl = floor(screen, rng)
    print(f"screen: {screen.n_cells} cells x {screen.n_genes} genes ({note})")
    t = time.perf_counter()
    emb = embed(screen, n_train=min(64, len(screen.knockouts)) - 1, n_val=1)  # the default's front end, as below
    print(f"one-off embedding pass (pp.embed, in memory): {time.perf_counter() - t:.2f} s "
          f"(front end fitted in {emb.params['fit_seconds']:.2f} s; {emb.n_cells} cells projected in "
          f"{emb.params['pass_seconds']:.2f} s)")  # fmt: skip
    print(f"floor (gather 640 rows + X W^T + X^T dY, scipy): {fl:.2f} ms")
    print("\n".join(softmax_cost()))
    dense, what, gflop = dense_floor(screen)
    print(f"the default model's dense floor ({what}, forward + backward): {dense:.2f} ms")
    rate = matmul_rate()
    print(f"its matrix products: {gflop:.3f} GFLOP a step; at one thread's {rate:.1f} GFLOP/s for G's (1,890 x 32) @ "
          f"(32 x 96) product they alone take {gflop / rate * 1e3:.2f} ms")  # fmt: skip
    with torch_softmax():
        before, _, _ = dense_floor(screen, head_hidden=128)
    print(f"the same with a 128-wide H and torch.softmax (before): {before:.2f} ms")
    print(
        f"medians over {args.steps} steps per row, in turns of {ROUND} (parts' medians need not add up to the step's)"
    )
    print("| preset | path | sample+gather ms | forward ms | backward ms | optimizer ms | step ms | step / floor |")
    print("|---|---|---|---|---|---|---|---|")
    runs = [
        ("default", "old path: per-step projection, T every step", {"path": "projected"}),
        ("default", "old step on cached projection, T every step", {"path": "cached"}),
        ("default", "stored embedding, T every step", {"refit_every": 1}),
        (
            "default",
            f"stored embedding, T every {REC_REFIT_EVERY} steps, H 128 wide, torch.softmax (before)",
            {"refit_every": REC_REFIT_EVERY, "head_hidden": 128, "softmax": "torch"},
        ),
        (
            "default",
            f"stored embedding, T every {REC_REFIT_EVERY} steps, H 128 wide",
            {"refit_every": REC_REFIT_EVERY, "head_hidden": 128},
        ),
        ("default", f"stored embedding, T every {REC_REFIT_EVERY} steps (shipped)", {"refit_every": REC_REFIT_EVERY}),
        ("seed-baseline", "raw genes, old step", {"path": "cached"}),
        ("seed-baseline", "raw genes (shipped)", {}),
        ("seed-full", "raw genes, old step", {"path": "cached"}),
        ("seed-full", "raw genes (shipped)", {}),
    ]
    rows = [(name, label, StepRunner(screen, name, rng, **kw)) for name, label, kw in runs]
    for _ in range(max(1, args.steps // ROUND)):  # in turns: a drift of the machine's speed falls on every row
        for _, _, runner in rows:
            runner.run(ROUND)
    torch.set_flush_denormal(False)
    for name, label, runner in rows:
        parts, total = runner.medians()
        cells = " | ".join(f"{v:.2f}" for v in parts)
        print(f"| {name} | {label} | {cells} | {total:.2f} | {total / fl:.2f}x |", flush=True)
    shipped = next(r for name, label, r in rows if name == "default" and label.endswith("(shipped)"))
    bare, inside = lightning_overhead(screen, shipped, args.steps)
    print(f"| default | shipped, inside Lightning (train_statistic: loop, hooks, logging) | | | | | {inside:.2f} | "
          f"{inside / fl:.2f}x |")  # fmt: skip
    print(f"inside Lightning {inside:.2f} ms a step against the bare step's {bare:.2f} (means over {args.steps} steps, "
          f"{LIGHTNING_TURNS} turns of each)")  # fmt: skip


if __name__ == "__main__":
    main()
