"""The stability loss: within- over between-perturbation variance of the statistic."""

from __future__ import annotations

import torch

from perturbscore.train._loss import stability_loss


def test_stability_loss_is_zero_for_identical_samples_and_scale_free() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(12, 5, generator=g)
    assert float(stability_loss(ref, ref)) == 0.0
    noisy = ref + 0.3 * torch.randn(12, 5, generator=g)
    torch.testing.assert_close(stability_loss(noisy, ref), stability_loss(10 * noisy, 10 * ref))


def test_stability_loss_falls_as_noise_falls() -> None:
    g = torch.Generator().manual_seed(0)
    ref, eps = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    assert float(stability_loss(ref + 0.1 * eps, ref)) < float(stability_loss(ref + 1.0 * eps, ref))


def test_collapsing_the_statistic_is_not_a_minimum() -> None:
    """Shrinking everything (statistic and reference) leaves the loss unchanged: no reward for collapse."""
    g = torch.Generator().manual_seed(0)
    ref, eps = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    scale = torch.tensor(1.0, requires_grad=True)
    stability_loss(scale * (ref + 0.5 * eps), scale * ref).backward()
    assert abs(float(scale.grad)) < 1e-5
