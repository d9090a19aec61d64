"""Which validation checkpoint to keep: every epoch's model evaluated, then each selection rule's pick.

Trains the default model on the seed's 50/10 split with a checkpoint kept at every validation (no early
stopping, ``--max-steps`` steps), evaluates every checkpoint as ``perturbscore reproduce`` does (same
resamples and targets), and reports what keeping the lowest ``val_pred_loss + w * val_stability_loss``
would give for several ``w`` (``select_stability_weight``; 0 = prediction alone, the rule before session 6).

Run from the repository root (about 6 minutes per seed on the 15,077-gene screen, one thread)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/checkpoint_selection.py --genes 15077 --sim-seed 1 --seeds 0,1,2

Writes ``checkpoint_selection.json`` (every checkpoint's metrics; ``--json``) and prints both tables;
``--merge a.json b.json`` prints them for runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

import perturbscore.train._loop as loop
from perturbscore.datasets import simulate_screen
from perturbscore.io import read_screen
from perturbscore.tl._evaluate import evaluate_model, make_setup
from perturbscore.tl._fit import fit
from perturbscore.train import split_perturbations

KS = ("2", "5", "10", "25", "60")


class EveryValidation(ModelCheckpoint):
    """Keep a checkpoint at every validation (a state key of its own beside best/last)."""

    @property
    def state_key(self) -> str:
        return "every-validation"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", type=int, default=15077)
    ap.add_argument("--sim-seed", type=int, default=1)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--out", default="runs/checkpoint_selection")
    ap.add_argument("--json", default="checkpoint_selection.json", help="every checkpoint's metrics")
    ap.add_argument("--merge", nargs="*", default=[], help="only tabulate these earlier --json files")
    args = ap.parse_args()
    if args.merge:  # e.g. seeds run in two processes side by side
        _tables([r for path in args.merge for r in json.loads(Path(path).read_text())])
        return
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    keep = loop.checkpoint_callbacks
    loop.checkpoint_callbacks = lambda dirpath, **kw: [
        *keep(dirpath, **kw),
        EveryValidation(dirpath=dirpath, filename="every-{step}", monitor=None, save_top_k=-1),
    ]
    sim = simulate_screen(n_genes=args.genes, seed=args.sim_seed)
    screen = read_screen(sim.adata, features=sim.features)
    split = split_perturbations(screen, n_train=50, n_val=10, seed=123)
    setup = make_setup(screen, train=split.train, val=split.val, n_resamples=20, rng=1000)  # as reproduce's
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run = Path(args.out) / f"seed{seed}"
        model = fit(screen, out=run, overwrite=True, seed=seed, split=split, progress=False,
                    max_steps=args.max_steps, patience=10**6)  # fmt: skip
        hist = pd.read_csv(run / "metrics.csv").dropna(subset=["val_pred_loss"])
        for _, h in hist.iterrows():
            step = int(h["step"])
            state = torch.load(run / "checkpoints" / f"every-step={step}.ckpt", map_location="cpu", weights_only=True)
            model.net.load_state_dict({k[4:]: v for k, v in state["state_dict"].items() if k.startswith("net.")})
            model.net.eval()
            r = evaluate_model(model, setup)
            rows.append({"seed": seed, "step": step, "val_pred_loss": h["val_pred_loss"],
                         "val_stability_loss": h["val_stability_loss"], "mae": {str(k): v for k, v in r["mae_cells"].items()},
                         "mae_sequence": r["mae_sequence"], "stability_10": r["stability"][10], "rec_r2": r["rec_r2"]})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))
    _tables(rows)


def _tables(rows: list[dict]) -> None:
    print("\n| seed | step | val pred | val stab | MAE k=2 / 5 / 10 / 25 / 60 | seq only | stability k=10 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mae = " / ".join(f"{r['mae'][k]:.4f}" for k in KS)
        print(f"| {r['seed']} | {r['step']} | {r['val_pred_loss']:.4f} | {r['val_stability_loss']:.3f} | {mae} "
              f"| {r['mae_sequence']:.4f} | {r['stability_10']:.3f} |")  # fmt: skip
    print("\n| select_stability_weight | kept steps | MAE k=2 / 5 / 10 / 25 / 60 | seq only | stability k=10 (min) |")
    print("|---|---|---|---|---|")
    seeds = sorted({r["seed"] for r in rows})
    for w in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0):
        picks = [min((r for r in rows if r["seed"] == s), key=lambda r: r["val_pred_loss"] + w * r["val_stability_loss"])
                 for s in seeds]  # fmt: skip
        mae = " / ".join(f"{np.mean([p['mae'][k] for p in picks]):.4f}" for k in KS)
        stab = [p["stability_10"] for p in picks]
        print(f"| {w} | {', '.join(str(p['step']) for p in picks)} | {mae} | {np.mean([p['mae_sequence'] for p in picks]):.4f} "
              f"| {np.mean(stab):.3f} ({min(stab):.3f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
