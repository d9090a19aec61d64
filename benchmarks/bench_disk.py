"""A genome-wide-sized screen on disk: the one-off embedding pass, then training that reads only the embedding.

Writes (once) a simulated screen of ``--cells`` cells x ``--genes`` genes and ``--knockouts`` knockouts in chunks
with :func:`perturbscore.datasets.write_large_screen` (default 2,000,000 x 8,000 and 10,000: ~15.6 GiB). Then, each
in a fresh process so that its peak resident memory is its own:

1. the embedding pass, :func:`perturbscore.pp.embed` on the backed ``.h5ad`` (the front end fitted on a sample of
   training cells, then every cell's row chunks projected on Dask's local threads into the store
   ``screen.X_perturbscore/`` beside it): its seconds and cells per second;
2. training from the backed screen (``train_statistic``): the store is memory-mapped and the matrix is never
   read (the run fails if it is). Steps per second, sampled cells per second (every step's cells and its
   reference sample) and peak resident memory. ``fit`` would add the calibration it runs after training.

Run: ``.venv/bin/python benchmarks/bench_disk.py [--dir DIR] [--cells N] [--steps 300]`` (``make bench-disk``).
``--set key=value`` passes training options (e.g. ``--set perturbations_per_step=128``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import peak_rss_mib

CACHE = Path(tempfile.gettempdir()) / "perturbscore-bench" / "genome-wide"
#: Training options of the run (and the front end's: the embedding pass fits the one training would fit).
OPTIONS = {
    "steps_per_epoch": 100, "perturbations_per_step": 64, "n_train": 9_000, "n_val": 500, "val_episodes": 4,
    "front_end_cells": 20_000,
}  # fmt: skip
FRONT_OPTIONS = ("n_train", "n_val", "front_end_cells")


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _options(args: argparse.Namespace) -> dict:
    n_kos = args.knockouts
    scaled = {"n_train": int(0.9 * n_kos), "n_val": max(1, int(0.05 * n_kos))}  # the split of a smaller screen
    return OPTIONS | scaled | {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)}


def embed_child(args: argparse.Namespace) -> None:
    """Embed the backed screen into the store beside it; print one JSON line."""
    from perturbscore.pp import embed

    options = _options(args)
    t = time.perf_counter()
    emb = embed(Path(args.dir) / "screen.h5ad", overwrite=True, **{k: options[k] for k in FRONT_OPTIONS})
    print(json.dumps({"total_s": time.perf_counter() - t, "params": emb.params, "store": str(emb.path),
                      "shape": [emb.n_cells, emb.n_components], "peak_mib": peak_rss_mib()}, default=str))  # fmt: skip


def train_child(args: argparse.Namespace) -> None:
    """Read the backed screen, train on its stored embedding (``train_statistic``), print one JSON line."""
    import numpy as np
    import pandas as pd

    from perturbscore.io import read_screen
    from perturbscore.pp import attach_embedding
    from perturbscore.train import model_config_for, preset, schedule_of, split_perturbations, train_statistic

    t0 = time.perf_counter()
    screen = read_screen(Path(args.dir) / "screen.h5ad", backed=True, features=Path(args.dir) / "features.npz")
    attach_embedding(screen)
    read_s = time.perf_counter() - t0
    if screen.embedding is None:
        sys.exit("no embedding store beside the screen: run the embedding pass first")
    screen.rows.take = _refuse  # training reads the embedding only: any read of the matrix fails the run
    options = _options(args) | {"max_steps": args.steps}
    cfg, over = preset("default", **options)
    split = split_perturbations(screen, n_train=cfg.n_train, n_val=cfg.n_val, seed=cfg.split_seed)
    out = Path(tempfile.mkdtemp(prefix="bench-disk-"))
    t1 = time.perf_counter()
    train_statistic(screen, cfg, model_config_for(screen, cfg, **over), run_dir=out, split=split, progress=False)
    train_s = time.perf_counter() - t1
    m = pd.read_csv(out / "metrics.csv")
    steps, wall = m["step"].to_numpy(), m["wall_s"].to_numpy()
    rate = (steps[-1] - steps[0]) / (wall[-1] - wall[0]) if len(m) > 1 else steps[-1] / wall[-1]
    # cells per step: k of each perturbation (the schedule's mean) and its reference sample
    mean_k = float(schedule_of(cfg).draw(200_000, args.steps, np.random.default_rng(0)).mean())
    per_step = cfg.perturbations_per_step * (mean_k + cfg.rec_reference_k)
    print(
        json.dumps(
            {
                "read_s": read_s,
                "train_s": train_s,
                "steps": int(steps[-1]),
                "steps_per_s": float(rate),
                "cells_per_step": per_step,
                "cells_per_s": float(rate * per_step),
                "val_pred_loss": [round(float(v), 4) for v in m["val_pred_loss"]],
                "options": options,
                "peak_mib": peak_rss_mib(),
            },
            default=str,
        )  # fmt: skip
    )


def _refuse(rows: object) -> None:
    raise RuntimeError("training read the expression matrix")


def _run(args: argparse.Namespace, what: str) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--dir", str(args.dir), "--steps", str(args.steps),
           "--knockouts", str(args.knockouts)]  # fmt: skip
    for kv in args.set:
        cmd += ["--set", kv]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        sys.exit(f"{what} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(CACHE))
    ap.add_argument("--cells", type=int, default=2_000_000)
    ap.add_argument("--genes", type=int, default=8_000)
    ap.add_argument("--knockouts", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--child", choices=("embed", "train"))
    ap.add_argument("--reuse-embedding", action="store_true", help="skip the pass when the store exists")
    args = ap.parse_args()
    if args.child == "embed":
        return embed_child(args)
    if args.child == "train":
        return train_child(args)
    path = Path(args.dir)
    if not (path / "screen.h5ad").exists():
        from perturbscore.datasets import write_large_screen

        t = time.perf_counter()
        write_large_screen(path, n_cells=args.cells, n_genes=args.genes, n_knockouts=args.knockouts)
        print(f"wrote the screen in {time.perf_counter() - t:.0f} s")
    import h5py

    with h5py.File(path / "screen.h5ad", "r") as f:
        shape, nnz = tuple(f["X"].attrs["shape"]), f["X/data"].shape[0]
    size = (path / "screen.h5ad").stat().st_size
    print(f"screen: {path / 'screen.h5ad'}: {shape[0]:,} cells x {shape[1]:,} genes, {nnz:,} stored values, "
          f"{size / 2**30:.1f} GiB on disk")  # fmt: skip
    if args.reuse_embedding and (path / "screen.X_perturbscore" / "embedding.json").exists():
        e = {"params": json.loads((path / "screen.X_perturbscore" / "embedding.json").read_text())["params"]}
        e |= {"shape": [e["params"]["n_cells"], 64], "total_s": float("nan"), "peak_mib": float("nan")}
        print("(the embedding pass of an earlier run, reused: --reuse-embedding)")
    else:
        e = _run(args, "embed")
    p = e["params"]
    print("| embedding pass | front end fit s | pass s | cells/s | total s (incl. reading and validating) | peak MiB |")
    print("|---|---|---|---|---|---|")
    print(f"| {e['shape'][0]:,} cells -> {e['shape'][1]} components, Dask local threads | {p['fit_seconds']:.0f} | "
          f"{p['pass_seconds']:.0f} | {p['cells_per_second']:,.0f} | {e['total_s']:.0f} | {e['peak_mib']:.0f} |")  # fmt: skip
    r = _run(args, "train")
    print()
    print(
        "| options | read s | train s | steps | steps/s | sampled cells/s | peak resident MiB | val pred loss by epoch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
    print(f"| {opts} | {r['read_s']:.1f} | {r['train_s']:.0f} | {r['steps']} | {r['steps_per_s']:.2f} | "
          f"{r['cells_per_s']:,.0f} | {r['peak_mib']:.0f} | {r['val_pred_loss']} |")  # fmt: skip


if __name__ == "__main__":
    main()
