"""The recognition loss: what it trains, and that shrinking the statistic never lowers it."""

from __future__ import annotations

import torch

from perturbscore.train._loss import recognition_loss


def test_stopgrad_recognition_loss_is_scale_free() -> None:
    g = torch.Generator().manual_seed(0)
    stat = torch.randn(20, 6, generator=g)
    rec = stat + 0.5 * torch.randn(20, 6, generator=g)
    torch.testing.assert_close(
        recognition_loss(rec, stat, "stopgrad"), recognition_loss(0.1 * rec, 0.1 * stat, "stopgrad")
    )
    # the seed's plain MSE has a cheaper route: shrink statistic and T's prediction together
    assert float(recognition_loss(0.1 * rec, 0.1 * stat, "seed")) < float(recognition_loss(rec, stat, "seed"))


def test_only_the_seed_mode_trains_the_statistic() -> None:
    g = torch.Generator().manual_seed(1)
    rec = torch.randn(20, 6, generator=g).requires_grad_(True)  # T's prediction is always trained
    for mode, trains in (("seed", True), ("stopgrad", False)):
        rec.grad = None
        stat = torch.randn(20, 6, generator=g).requires_grad_(True)
        recognition_loss(rec, stat, mode).backward()
        assert rec.grad is not None
        assert float(rec.grad.abs().sum()) > 0, mode
        assert (stat.grad is not None and bool(stat.grad.abs().sum() > 0)) is trains, mode
