"""Lightning DDP with two CPU processes (gloo) trains the same statistic as one process, within tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch.distributed as dist

from perturbscore.datasets import simulate_screen

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch built without gloo"
)
ENV = {**os.environ, "MPLBACKEND": "agg", "PYTHONWARNINGS": "ignore"}


def _train(sim: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable, "-m", "perturbscore", "train", str(sim / "screen.h5ad"), "--features",
        str(sim / "features.npz"), "--out", str(out), "--max-steps", "200", "--n-train", "18", "--n-val", "5",
        "--seed", "0", "--threads", "1", "--accelerator", "cpu", "--no-progress", *extra,
    ]  # fmt: skip
    return subprocess.run(args, env=ENV, capture_output=True, timeout=480, cwd=out.parent)


def test_two_cpu_processes_match_one(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    simulate_screen(n_genes=300, n_knockouts=24, n_cells=4_000, feature_dim=16, seed=5).write(sim)
    one = _train(sim, tmp_path / "one")
    assert one.returncode == 0, one.stderr.decode()[-3000:]
    two = _train(sim, tmp_path / "two", "--devices", "2", "--strategy", "ddp")
    assert two.returncode == 0, two.stderr.decode()[-3000:]
    said = two.stdout.decode() + two.stderr.decode()
    assert said.count("trained model in") == 1, said[-2000:]  # only rank 0 reports (and writes)

    best = {}
    for name in ("one", "two"):
        meta = json.loads((tmp_path / name / "model" / "model.json").read_text())
        best[name] = meta["extra"]["best_val_pred_loss"]
        metrics = pd.read_csv(tmp_path / name / "metrics.csv")
        assert metrics["step"].max() == 200  # max_steps counts optimizer steps in both
        assert metrics["val_pred_loss"].iloc[-1] < metrics["val_pred_loss"].iloc[0]  # both learn
    # each DDP step averages two ranks' episodes, so the runs differ like two seeds do, not more
    assert abs(best["two"] - best["one"]) <= 0.35 * best["one"], best
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "sim", "two"]  # rank 1 wrote nowhere else
