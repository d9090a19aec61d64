"""Lightning callbacks: per-epoch ``metrics.csv`` written atomically, and episode re-seeding."""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import pandas as pd

from .._utils import atomic_path
from ._data import EpisodeDataset


class EpochSeeder(L.Callback):
    """Tell the episode dataset which epoch and rank it is in.

    Step seeds then survive resumes, and every process of a distributed run draws its own episodes.
    """

    def __init__(self, dataset: EpisodeDataset) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Set the epoch before its first batch is drawn."""
        self.dataset.epoch = trainer.current_epoch
        self.dataset.rank = trainer.global_rank


class MetricsCSV(L.Callback):
    """Write one row per epoch to ``path``, rewritten atomically.

    A row holds the epoch, the step, every logged train_*/val_* value, ``lr`` and ``wall_s`` (the seconds since
    training (re)started).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.started = time.perf_counter()
        self.rows: list[dict[str, float]] = []
        if self.path.exists():  # resuming: keep what the interrupted run wrote
            self.rows = pd.read_csv(self.path).to_dict("records")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock when the first step is about to run (set-up excluded)."""
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record this epoch's metrics (validation runs before this hook in Lightning 2)."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not any(k.startswith("val_") for k in trainer.callback_metrics):
            return  # a resumed run re-entering an epoch end without validation: keep the recorded row
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train_", "val_")):
                row[key] = float(value)
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else math.nan
        row["wall_s"] = round(time.perf_counter() - self.started, 3)
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False)
