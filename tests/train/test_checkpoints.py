"""best.ckpt holds the lowest validation loss; last.ckpt the latest validation, so a resume loses nothing."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from perturbscore.train._loop import checkpoint_callbacks


class Worsening(L.LightningModule):
    """A model whose validation loss rises every epoch after the first."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return (self.w - batch).pow(2).mean()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_select", float(self.current_epoch), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(dirpath: Path, epochs: int, resume: Path | None = None) -> L.Trainer:
    data = DataLoader(torch.ones(4, 1), batch_size=2)  # 2 steps per epoch
    trainer = L.Trainer(
        max_epochs=epochs, callbacks=checkpoint_callbacks(dirpath), logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(Worsening(), data, data, ckpt_path=None if resume is None else str(resume))
    return trainer


def test_last_checkpoint_is_the_latest_step_not_the_best(tmp_path: Path) -> None:
    trainer = _fit(tmp_path, epochs=4)
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert best["global_step"] == 2  # epoch 0: the lowest validation loss
    assert last["global_step"] == 8 == trainer.global_step  # where training stopped
    assert Path(trainer.checkpoint_callback.best_model_path).name == "best.ckpt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]
    resumed = _fit(tmp_path, epochs=6, resume=tmp_path / "last.ckpt")  # continues from step 8, keeps the best
    assert resumed.global_step == 12
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["global_step"] == 2
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 12
