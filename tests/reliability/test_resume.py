"""Interrupted training resumes to the same result; every write is atomic; runs are never clobbered."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import perturbscore
from perturbscore._errors import RunError
from perturbscore._utils import atomic_path, write_json_atomic, write_text_atomic

SRC = Path(perturbscore.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def cli_command(args: list[str]) -> list[str]:
    """``perturbscore ARGS`` in a fresh interpreter (the package has no ``__main__``)."""
    code = f"import sys; from perturbscore.cli import main; sys.exit(main({args!r}))"
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from perturbscore.datasets import synthetic_perturb_seq

    out = tmp_path_factory.mktemp("sim")
    synthetic_perturb_seq(seed=0).write(out)
    return out


def train_args(sim_dir: Path, out: Path, *extra: str) -> list[str]:
    # default steps_per_epoch is 100: checkpoints at steps 100, 200 and 300 (the kill below lands after the
    # first; 200 steps after it leave seconds to spare on a fast machine, where 100 once finished first)
    return [
        "train", str(sim_dir / "screen.h5ad"), "--features", str(sim_dir / "features.npz"), "--out", str(out),
        "--max-steps", "300", "--seed", "7", "--threads", "1", "--no-progress", *extra,
    ]  # fmt: skip


# -- a killed training resumes ---------------------------------------------------------------
@pytest.mark.slow
def test_killed_training_resumes_to_the_same_result(sim_dir: Path, tmp_path: Path) -> None:
    """SIGKILL a training run after its first checkpoint, resume it: same final metrics and weights."""
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    full = subprocess.Popen(
        cli_command(train_args(sim_dir, full_dir)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    part = subprocess.Popen(
        cli_command(train_args(sim_dir, part_dir)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = part_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and part.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), part.communicate()[1].decode()[-2000:]
    time.sleep(random.Random(os.getpid()).uniform(0.0, 1.0))
    assert part.poll() is None, "the run finished before it could be killed"
    part.send_signal(signal.SIGKILL)
    part.wait()
    assert part.returncode == -signal.SIGKILL
    assert not (part_dir / "model").exists()  # it really was interrupted
    _, err = full.communicate(timeout=300)
    assert full.returncode == 0, err.decode()[-2000:]

    resumed = subprocess.run(
        cli_command(train_args(sim_dir, part_dir, "--resume")), env=ENV, capture_output=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]

    a, b = (pd.read_csv(d / "metrics.csv").drop(columns="wall_s") for d in (full_dir, part_dir))  # timing differs
    assert list(a["epoch"]) == list(b["epoch"]) == [0, 1, 2]
    # val_rec_r2 is NaN by design here: one validation knockout has no spread to explain
    nan = b.drop(columns=["val_rec_r2"], errors="ignore").isna().any()
    assert not nan.any(), nan[nan]
    pd.testing.assert_frame_equal(a, b, rtol=1e-5, atol=1e-6)
    meta_a = json.loads((full_dir / "model" / "model.json").read_text())
    meta_b = json.loads((part_dir / "model" / "model.json").read_text())
    assert meta_a["extra"]["best_val_pred_loss"] == pytest.approx(meta_b["extra"]["best_val_pred_loss"], rel=1e-5)
    from safetensors.numpy import load_file

    wa, wb = load_file(full_dir / "model" / "model.safetensors"), load_file(part_dir / "model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_resume_of_a_finished_run_keeps_it(sim_dir: Path, tmp_path: Path) -> None:
    """--resume on a completed run neither deletes nor retrains it: the metrics rows are kept as they were."""
    from perturbscore.tl import fit

    run = tmp_path / "run"
    fit(sim_dir / "screen.h5ad", out=run, max_steps=4, steps_per_epoch=2, progress=False, use_recognizer=False)
    before = pd.read_csv(run / "metrics.csv")
    fit(
        sim_dir / "screen.h5ad",
        out=run,
        max_steps=4,
        steps_per_epoch=2,
        progress=False,
        use_recognizer=False,
        resume=True,
    )
    after = pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(before, after)
    with pytest.raises(RunError, match="already holds a run"):
        fit(sim_dir / "screen.h5ad", out=run, max_steps=4, steps_per_epoch=2, progress=False, use_recognizer=False)


def test_resume_refuses_other_settings(sim_dir: Path, tmp_path: Path) -> None:
    """A run resumes only with the options it was started with; a refused resume rewrites nothing."""
    from perturbscore.model import fit

    run = tmp_path / "run"
    kw = {"out": run, "max_steps": 4, "steps_per_epoch": 2, "progress": False, "use_recognizer": False}
    fit(sim_dir / "screen.h5ad", logratio_weight=0.0, **kw)
    before = (run / "config.json").read_text()
    with pytest.raises(RunError, match=r"logratio_weight: 0.0 -> 0.3"):
        fit(sim_dir / "screen.h5ad", resume=True, **kw)
    assert (run / "config.json").read_text() == before
    fit(sim_dir / "screen.h5ad", resume=True, logratio_weight=0.0, **kw)  # the original settings resume


# -- atomic writes -------------------------------------------------------------------------
def test_atomic_path_failure_keeps_previous_file(tmp_path: Path) -> None:
    """An exception mid-write leaves the previous file intact and no temp file behind."""
    path = tmp_path / "metrics.csv"
    path.write_text("old\n")

    def crash_mid_write() -> None:
        with atomic_path(path) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        crash_mid_write()
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_write_json_atomic_unserialisable_keeps_previous(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "config.json", {"a": 1})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_write_is_atomic_under_sigkill(tmp_path: Path) -> None:
    """A process killed mid-write (SIGKILL: no cleanup at all) never leaves a truncated file in place."""
    path = tmp_path / "scores.csv"
    write_text_atomic(path, "gene,score\nA,1\n")
    code = textwrap.dedent(
        f"""
        import os, signal
        from perturbscore._utils import atomic_path
        with atomic_path({str(path)!r}) as tmp:
            with open(tmp, "w") as fh:
                fh.write("gene,score\\nB,")
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert path.read_text() == "gene,score\nA,1\n"


def test_model_save_failure_keeps_previous_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PerturbScoreModel.save failing while writing the weights leaves the earlier weights loadable."""
    import safetensors.torch

    from perturbscore._constants import CHALLENGE_STATES
    from perturbscore.nn import ModelConfig
    from perturbscore.tl import PerturbScoreModel
    from perturbscore.train import TrainConfig, build_net

    cfg = ModelConfig(n_genes=8, n_states=len(CHALLENGE_STATES), front_end="genes")
    genes = np.array([f"g{i}" for i in range(8)])
    model = PerturbScoreModel(build_net(cfg, seed=0), cfg, TrainConfig(), tuple(CHALLENGE_STATES), genes)
    path = model.save(tmp_path / "model")
    weights = (path / "model.safetensors").read_bytes()

    def broken_save(tensors: dict, filename: str, *args: object, **kwargs: object) -> None:
        Path(filename).write_bytes(b"\x00" * 10)
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="No space left"):
        model.save(path, overwrite=True)
    assert (path / "model.safetensors").read_bytes() == weights
    PerturbScoreModel.load(path)
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]


def test_metrics_csv_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-epoch metrics.csv rewrite goes through a temp file: a failure keeps the previous rows."""
    from types import SimpleNamespace

    import torch

    from perturbscore.train._callbacks import MetricsCSV

    path = tmp_path / "metrics.csv"
    pd.DataFrame([{"epoch": 0, "step": 10, "val_pred_loss": 0.5}]).to_csv(path, index=False)
    cb = MetricsCSV(path)
    trainer = SimpleNamespace(
        sanity_checking=False, is_global_zero=True, current_epoch=1, global_step=20, optimizers=[],
        callback_metrics={"val_pred_loss": torch.tensor(0.25)},
    )  # fmt: skip

    def broken_to_csv(self: pd.DataFrame, target: object, *args: object, **kwargs: object) -> None:
        Path(target).write_text("epoch,st")
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken_to_csv)
    with pytest.raises(OSError):
        cb.on_train_epoch_end(trainer, None)
    monkeypatch.undo()
    assert pd.read_csv(path).to_dict("records") == [{"epoch": 0, "step": 10, "val_pred_loss": 0.5}]
    cb.on_train_epoch_end(trainer, None)
    assert list(pd.read_csv(path)["epoch"]) == [0, 1]
