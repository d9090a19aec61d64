"""Training from a genome-wide-sized screen on disk: steps per second and peak resident memory.

Writes (once) a simulated screen of 2,000,000 cells x 8,000 genes and 10,000 knockouts in chunks with
:func:`perturbscore.datasets.write_large_screen`, then trains from the backed ``.h5ad`` in a fresh
process: only sampled rows are read (rows grouped by perturbation, each perturbation's cells drawn from
a short run of adjacent rows), episodes are prefetched on a background thread, and the process's peak
resident memory is reported. Run: ``.venv/bin/python benchmarks/bench_disk.py [--dir DIR] [--steps 300]``.
``--set key=value`` passes training options (e.g. ``--set prefetch=0``).
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


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def child(args: argparse.Namespace) -> None:
    """Read the backed screen, train, print one JSON line."""
    import pandas as pd

    from perturbscore.io import read_screen
    from perturbscore.tl import fit

    t0 = time.perf_counter()
    screen = read_screen(Path(args.dir) / "screen.h5ad", backed=True, features=Path(args.dir) / "features.npz")
    read_s = time.perf_counter() - t0
    extra = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    options = {
        "max_steps": args.steps, "steps_per_epoch": args.steps // 3, "perturbations_per_step": 64,
        "n_train": 9_000, "n_val": 500, "val_episodes": 4, "front_end_cells": 20_000,
    } | extra  # fmt: skip
    out = Path(tempfile.mkdtemp(prefix="bench-disk-"))
    t1 = time.perf_counter()
    fit(screen, out=out, overwrite=True, progress=False, **options)
    fit_s = time.perf_counter() - t1
    m = pd.read_csv(out / "metrics.csv")
    steps, wall = m["step"].to_numpy(), m["wall_s"].to_numpy()
    rate = (steps[-1] - steps[0]) / (wall[-1] - wall[0]) if len(m) > 1 else steps[-1] / wall[-1]
    print(
        json.dumps(
            {
                "read_s": read_s,
                "fit_s": fit_s,
                "steps": int(steps[-1]),
                "steps_per_s": float(rate),
                "val_pred_loss": [round(float(v), 4) for v in m["val_pred_loss"]],
                "options": options,
                "peak_mib": peak_rss_mib(),
            },
            default=str,
        )  # fmt: skip
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(CACHE))
    ap.add_argument("--cells", type=int, default=2_000_000)
    ap.add_argument("--genes", type=int, default=8_000)
    ap.add_argument("--knockouts", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        return child(args)
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
    cmd = [sys.executable, __file__, "--child", "--dir", str(path), "--steps", str(args.steps)]
    for kv in args.set:
        cmd += ["--set", kv]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        sys.exit(f"training failed:\n{res.stderr[-3000:]}")
    r = json.loads(res.stdout.strip().splitlines()[-1])
    print("| options | read s | fit s | steps | steps/s | peak resident MiB | val pred loss by epoch |")
    print("|---|---|---|---|---|---|---|")
    opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
    print(f"| {opts} | {r['read_s']:.1f} | {r['fit_s']:.0f} | {r['steps']} | {r['steps_per_s']:.2f} | "
          f"{r['peak_mib']:.0f} | {r['val_pred_loss']} |")  # fmt: skip


if __name__ == "__main__":
    main()
