"""The log-ratio geometry loss: the share of the statistic's spread that the log-ratio mix does not explain."""

from __future__ import annotations

import pytest
import torch

from perturbscore.train import TrainConfig
from perturbscore.train._loss import LOGRATIO_FLOOR, logratio_loss, logratio_part


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


def test_the_default_uses_the_loss_and_older_and_seed_configs_do_not() -> None:
    from perturbscore.train import preset

    assert TrainConfig().logratio_weight == 0.3
    saved = TrainConfig().to_dict()
    assert TrainConfig.from_dict(saved).logratio_weight == 0.3
    del saved["logratio_weight"]  # saved before session 11: trained without the loss
    assert TrainConfig.from_dict(saved).logratio_weight == 0.0
    for name in ("seed-full", "seed-baseline"):
        assert preset(name)[0].logratio_weight == 0.0


def _assert_trains_g_alone(net) -> None:  # noqa: ANN001
    """After a backward pass: some of G's (the mixer's) parameters got a gradient, f's encoder none."""
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.mixer.parameters())
    assert net.encoder.weight.grad is None or float(net.encoder.weight.grad.abs().sum()) == 0.0


@pytest.mark.parametrize(
    ("option", "weight", "term", "upper"),
    [
        ("logratio_weight", 0.0, "logratio_loss", 1.0),
        ("logratio_weight", 0.3, "logratio_loss", 1.0),  # a share of the spread
        ("rec_couple_weight", 0.0, "couple_loss", 2.0),  # off by default
        ("rec_couple_weight", 0.1, "couple_loss", 2.0),  # 1 - R² of T's leave-one-out prediction (R² > -1 here)
    ],
)
def test_a_training_step_trains_g_through_the_term_only_when_it_is_on(
    option: str,
    weight: float,
    term: str,
    upper: float,
    default_step,  # noqa: ANN001
) -> None:
    """The log-ratio loss and the coupling term read G's part of the reference statistic and reach G alone."""
    net, module, episode = default_step(**{option: weight}, n_train=20, n_val=2)
    out = module.compute(episode)
    terms = out.terms
    if weight == 0:
        assert term not in terms
        assert float(terms["pred_loss"].detach()) > 0  # the step ran; only this term is absent
        return
    loss = terms[term]
    assert 0.0 < float(loss.detach()) < upper
    _, off_module, _ = default_step(**{option: 0.0}, n_train=20, n_val=2)  # same seed: the same step without it
    added = out.total.detach() - off_module.compute(episode).total.detach()
    torch.testing.assert_close(added, weight * loss.detach(), rtol=1e-4, atol=1e-6)  # in the total, weighted
    loss.backward()
    _assert_trains_g_alone(net)
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in net.recognizer.parameters())


def test_without_the_stability_loss_the_loss_still_trains_g_alone(default_step) -> None:  # noqa: ANN001
    """It reads the reference sample's statistic, whose programs carry no gradient: f is left to the other losses."""
    net, module, episode = default_step(stability_weight=0.0, select_stability_weight=0.0, n_train=10, n_val=2)
    module.compute(episode).terms["logratio_loss"].backward()
    _assert_trains_g_alone(net)


# TrainConfig.rec_g_target="logratio": T learns the part of G's statistic that the label log-ratio mix explains


def test_the_log_ratio_part_is_the_affine_fit_and_keeps_what_is_already_affine() -> None:
    q = _mixes()
    g = torch.Generator().manual_seed(6)
    affine = _clr(q) @ torch.randn(5, 4, generator=g, dtype=torch.float64) - 2.0
    torch.testing.assert_close(logratio_part(affine, q), affine)
    noise = torch.randn(affine.shape, generator=g, dtype=torch.float64)
    part = logratio_part(affine + noise, q)
    assert float(logratio_loss(part, q)) < 1e-10  # all of it is explained by the mix
    rest = affine + noise - part
    assert float(logratio_loss(rest, q)) > 1 - 1e-10  # none of the remainder is
    torch.testing.assert_close(rest.mean(0), torch.zeros(4, dtype=torch.float64))  # the fit's intercept is free
    few = torch.randn(5, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(logratio_part(few, q[:5]), few)  # too few perturbations for a fit: unchanged


@pytest.mark.parametrize("target", ["statistic", "logratio"])
def test_t_is_fitted_to_the_log_ratio_part_of_g_only_when_asked(target: str, default_step) -> None:  # noqa: ANN001
    net, module, episode = default_step(rec_g_target=target, n_train=20, n_val=2)
    seen = {}
    fit = net.recognize_fit

    def spy(features, y, rows, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen["y"], seen["rows"] = y.detach().clone(), rows
        return fit(features, y, rows, **kwargs)

    net.recognize_fit = spy
    module.compute(episode)
    m2 = net.config.n_stat
    y, props = seen["y"], episode.proportions[seen["rows"]]
    unexplained = float(logratio_loss(y[:, :m2], props))
    if target == "statistic":
        assert unexplained > 1e-3  # the reference statistic itself: not all of it is affine in the mix
    else:
        assert unexplained < 1e-8
    assert y.shape[1] > m2  # the mix channel follows, untouched: mean posteriors, each summing to 1
    assert float(y[:, m2:].sum(-1).sub(1).abs().max()) < 1e-4


def test_a_bad_rec_g_target_is_refused() -> None:
    with pytest.raises(ValueError, match="rec_g_target"):
        TrainConfig(rec_g_target="labels")


@pytest.mark.parametrize("residual", [0.0, 0.5, 1.0])
def test_t_keeps_the_asked_share_of_the_rest_of_g(residual: float, default_step) -> None:  # noqa: ANN001
    """``rec_g_residual``: T's target is ``part + share * (statistic - part)``; 1 gives the statistic back."""
    net, module, episode = default_step(rec_g_target="logratio", rec_g_residual=residual, n_train=20, n_val=2)
    plain, plain_module, _ = default_step(n_train=20, n_val=2)  # same seed: the same statistic at step 0

    def spy(into: dict, fit):  # noqa: ANN001, ANN202
        def call(features, y, rows, **kwargs):  # noqa: ANN001, ANN003, ANN202
            into["y"], into["rows"] = y.detach().clone(), rows
            return fit(features, y, rows, **kwargs)

        return call

    got, ref = {}, {}
    net.recognize_fit, plain.recognize_fit = spy(got, net.recognize_fit), spy(ref, plain.recognize_fit)
    module.compute(episode)
    plain_module.compute(episode)
    m2 = net.config.n_stat
    stat = ref["y"][:, :m2]
    part = logratio_part(stat, episode.proportions[ref["rows"]])
    torch.testing.assert_close(got["y"][:, :m2], part + residual * (stat - part), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got["y"][:, m2:], ref["y"][:, m2:])  # the mix channel untouched


def test_a_bad_rec_g_residual_is_refused() -> None:
    with pytest.raises(ValueError, match="rec_g_residual"):
        TrainConfig(rec_g_target="logratio", rec_g_residual=1.5)
    with pytest.raises(ValueError, match="rec_g_target='logratio'"):  # it would be silently ignored
        TrainConfig(rec_g_residual=0.5)


# TrainConfig.rec_couple_weight: G pulled towards T's leave-one-out prediction (off; its training step is tested
# with the log-ratio loss's above)


def test_a_negative_or_unusable_rec_couple_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="rec_couple_weight"):
        TrainConfig(rec_couple_weight=-0.1)
    with pytest.raises(ValueError, match="rec_mode='stopgrad'"):  # no reference sample to read: it would be ignored
        TrainConfig(rec_couple_weight=0.1, rec_mode="seed")
