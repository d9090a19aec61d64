"""The recognition loss: what it trains, and that shrinking the statistic never lowers it."""

from __future__ import annotations

import pytest
import torch

from perturbscore.train._loss import recognition_loss


@pytest.mark.parametrize("mode", ["stopgrad", "coupled"])
def test_normalised_recognition_loss_is_scale_free(mode: str) -> None:
    g = torch.Generator().manual_seed(0)
    stat = torch.randn(20, 6, generator=g)
    rec = stat + 0.5 * torch.randn(20, 6, generator=g)
    torch.testing.assert_close(recognition_loss(rec, stat, mode), recognition_loss(0.1 * rec, 0.1 * stat, mode))


def test_only_coupled_and_seed_train_the_statistic() -> None:
    g = torch.Generator().manual_seed(1)
    rec = torch.randn(20, 6, generator=g).requires_grad_(True)  # T's prediction is always trained
    for mode, trains in (("seed", True), ("stopgrad", False), ("coupled", True)):
        stat = torch.randn(20, 6, generator=g).requires_grad_(True)
        recognition_loss(rec, stat, mode).backward()
        assert (stat.grad is not None and bool(stat.grad.abs().sum() > 0)) is trains, mode


def test_coupled_gradient_does_not_shrink_the_statistic() -> None:
    """A step along the coupled loss's gradient moves the statistic towards T(g) without collapsing its spread."""
    g = torch.Generator().manual_seed(2)
    stat = torch.randn(30, 4, generator=g).requires_grad_(True)
    rec = (0.8 * stat + 0.3 * torch.randn(30, 4, generator=g)).detach()  # a partly predictive T
    before = recognition_loss(rec, stat, "coupled")
    before.backward()
    with torch.no_grad():
        moved = stat - 0.05 * stat.grad / stat.grad.norm()
    assert float(recognition_loss(rec, moved, "coupled")) < float(before)
    # the seed's plain MSE has a cheaper route: shrink statistic and T's prediction together
    assert float(recognition_loss(0.1 * rec, 0.1 * stat, "seed")) < float(recognition_loss(rec, stat, "seed"))
    torch.testing.assert_close(recognition_loss(0.1 * rec, 0.1 * stat.detach(), "coupled"), before.detach())
