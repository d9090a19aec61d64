"""The log-ratio geometry loss: the share of the statistic's spread that the log-ratio mix does not explain."""

from __future__ import annotations

import pytest
import torch

from perturbscore.train import TrainConfig
from perturbscore.train._loss import LOGRATIO_FLOOR, logratio_loss


def _mixes(n: int = 40, c: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(1.5 * torch.randn(n, c, generator=g, dtype=torch.float64), -1)  # (n, C)


def _clr(q: torch.Tensor) -> torch.Tensor:
    log_q = torch.log(q + LOGRATIO_FLOOR)
    return log_q - log_q.mean(-1, keepdim=True)


def test_an_affine_function_of_the_log_ratio_mix_costs_nothing() -> None:
    q = _mixes()
    g = torch.Generator().manual_seed(1)
    stat = _clr(q) @ torch.randn(5, 8, generator=g, dtype=torch.float64) + 3.0  # (n, m2)
    assert float(logratio_loss(stat, q)) < 1e-10


def test_the_loss_is_scale_free_and_shrinking_is_not_a_minimum() -> None:
    """Rescaling the statistic leaves the loss unchanged, so collapsing it towards a point lowers nothing."""
    q = _mixes()
    g = torch.Generator().manual_seed(2)
    stat = torch.randn(40, 6, generator=g, dtype=torch.float64)
    torch.testing.assert_close(logratio_loss(stat, q), logratio_loss(0.01 * stat, q))
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    logratio_loss(scale * stat, q).backward()
    assert abs(float(scale.grad)) < 1e-10


def test_a_heavy_tail_out_of_line_with_the_mix_is_penalised() -> None:
    """Pushing two perturbations far out along the statistic's main direction (their mixes unchanged) raises it."""
    q = _mixes()
    g = torch.Generator().manual_seed(3)
    stat = _clr(q) @ torch.randn(5, 4, generator=g, dtype=torch.float64)
    noisy = stat + 0.1 * torch.randn(stat.shape, generator=g, dtype=torch.float64)
    tail = noisy.clone()
    tail[:2] = tail[:2] * 6.0
    assert float(logratio_loss(noisy, q)) < 0.05
    assert float(logratio_loss(tail, q)) > 5 * float(logratio_loss(noisy, q))


def test_gradient_reaches_the_statistic_and_too_few_perturbations_give_zero() -> None:
    q = _mixes(n=12)
    stat = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    logratio_loss(stat, q).backward()
    assert stat.grad is not None
    assert float(stat.grad.abs().sum()) > 0
    assert float(logratio_loss(stat.detach()[:5], q[:5])) == 0.0  # 5 points, C = 5 parameters: an exact fit
    assert float(logratio_loss(stat.detach()[:6], q[:6])) > 0.0


def test_a_constant_or_far_off_statistic_is_handled_in_float32() -> None:
    """No spread: nothing to charge; a statistic far from the origin gives the same loss as the centred one."""
    q = _mixes()
    g = torch.Generator().manual_seed(5)
    stat = torch.randn(40, 4, generator=g)
    assert float(logratio_loss(torch.full((40, 4), 7.0), q.float())) == 0.0
    far, near = logratio_loss(1e-2 * stat + 10.0, q.float()), logratio_loss(stat, q.float())
    torch.testing.assert_close(far, near, rtol=1e-3, atol=0.0)  # (float32 holds 1e-2 * stat + 10 to ~1e-6)


def test_negative_logratio_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="logratio_weight"):
        TrainConfig(logratio_weight=-1.0)


def test_the_default_uses_the_loss_and_the_seed_presets_do_not() -> None:
    from perturbscore.train import preset

    assert TrainConfig().logratio_weight == 0.3
    for name in ("seed-full", "seed-baseline"):
        assert preset(name)[0].logratio_weight == 0.0


def _assert_trains_g_alone(net) -> None:  # noqa: ANN001
    """After a backward pass: some of G's (the mixer's) parameters got a gradient, f's encoder none."""
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.mixer.parameters())
    assert net.encoder.weight.grad is None or float(net.encoder.weight.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_a_training_step_trains_g_through_the_loss_only_when_it_is_on(weight: float, one_step) -> None:  # noqa: ANN001
    """The log-ratio loss reads G's part of the reference statistic and reaches G alone."""
    net, module, episode = one_step(logratio_weight=weight, n_train=20, n_val=2)
    out = module.compute(episode)
    terms = out.terms
    if weight == 0:
        assert "logratio_loss" not in terms
        assert float(terms["pred_loss"].detach()) > 0  # the step ran; only this term is absent
        return
    loss = terms["logratio_loss"]
    assert 0.0 < float(loss.detach()) < 1.0  # a share of the spread
    _, off_module, _ = one_step(logratio_weight=0.0, n_train=20, n_val=2)  # same seed: the same step without it
    added = out.total.detach() - off_module.compute(episode).total.detach()
    torch.testing.assert_close(added, weight * loss.detach(), rtol=1e-4, atol=1e-6)  # in the total, weighted
    loss.backward()
    _assert_trains_g_alone(net)
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in net.recognizer.parameters())


def test_without_the_stability_loss_the_loss_still_trains_g_alone(one_step) -> None:  # noqa: ANN001
    """It reads the reference sample's statistic, whose programs carry no gradient: f is left to the other losses."""
    net, module, episode = one_step(stability_weight=0.0, select_stability_weight=0.0, n_train=10, n_val=2)
    module.compute(episode).terms["logratio_loss"].backward()
    _assert_trains_g_alone(net)
