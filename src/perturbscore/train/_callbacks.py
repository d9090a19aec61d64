"""Lightning callbacks: per-epoch ``metrics.csv`` written atomically, episode re-seeding, a step progress bar."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

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


class StepProgressBar(TQDMProgressBar):
    """One tqdm bar over the run's optimiser steps, with the latest losses as its postfix.

    Lightning's own bar counts batches within an epoch and restarts each epoch ("Epoch 25/-2" when the
    epoch length is open-ended); a run here is sized in steps (``max_steps``), so the bar counts those,
    and validation, which takes a moment per epoch, gets no bar of its own.
    """

    def init_train_tqdm(self) -> Tqdm:
        """Create the training bar, labelled by what it counts, with the step budget as its total from the start."""
        budget = self.trainer.max_steps
        return Tqdm(
            desc="training steps", total=budget if budget and budget > 0 else None, initial=self.trainer.global_step,
            position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
            file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT,
        )  # fmt: skip

    def init_validation_tqdm(self) -> Tqdm:
        """No bar for the per-epoch validation pass."""
        return Tqdm(disable=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Open the bar; a resumed run starts where it stopped."""
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        """Keep counting across epochs."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Move the bar to the trainer's step count."""
        bar = self.train_progress_bar
        if not bar.disable and self._should_update(trainer.global_step, bar.total):
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Show the epoch's losses (validation included) without closing the bar."""
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Say so when early stopping ended the run before its step budget, then close the bar."""
        bar = self.train_progress_bar
        if not bar.disable and bar.total and trainer.global_step < bar.total:
            bar.set_postfix_str(f"stopped early at step {trainer.global_step}: validation stopped improving")
        bar.close()
