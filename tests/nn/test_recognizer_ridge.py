"""The closed-form (ridge) recognizer T and its gaussian window pooling."""

from __future__ import annotations

import pytest
import torch

from perturbscore.nn import ModelConfig, PerturbationStatistic, SequenceRecognizer
from perturbscore.train import TrainConfig


def _linear_genes(n: int, *, seed: int, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coef = torch.randn(16, 3, generator=torch.Generator().manual_seed(99))
    pooled = torch.randn(n, 16, generator=g)  # the gene-level signal
    feats = pooled[:, None, :].expand(n, 20, 16).clone()  # same value in every window: any pooling recovers it
    y = pooled @ coef + noise * torch.randn(n, 3, generator=g)
    return feats, y, coef


def test_ridge_head_learns_a_linear_map() -> None:
    feats, y, _ = _linear_genes(80, seed=0)
    rec = SequenceRecognizer(16, 3, pooling="gaussian", head="ridge")
    loo = rec.fit_predict(feats, y)
    assert loo.shape == (80, 3)
    test_f, test_y, _ = _linear_genes(40, seed=1)
    pred = rec(test_f).detach()
    r2 = 1 - ((pred - test_y) ** 2).sum() / ((test_y - test_y.mean(0)) ** 2).sum()
    assert r2 > 0.9
    assert int(rec.n_fits) == 1
    assert float(rec.alpha[0]) > 0


def test_ridge_leave_one_out_is_honest_on_noise() -> None:
    """On pure noise the in-sample fit looks good, leave-one-out does not: the model sees the latter."""
    g = torch.Generator().manual_seed(0)
    feats, y = torch.randn(30, 5, 64, generator=g), torch.randn(30, 4, generator=g)
    rec = SequenceRecognizer(64, 4, head="ridge")
    loo = rec.fit_predict(feats, y)
    r2_loo = 1 - ((loo - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    assert r2_loo < 0.05  # no better than the mean on unseen genes
    pred = rec(torch.randn(200, 5, 64, generator=g)).detach()
    assert float(pred.std(0).max()) < 0.5 * float(y.std(0).min())  # heavily shrunk towards the mean


def test_ridge_fit_is_a_moving_average() -> None:
    feats, y, _ = _linear_genes(50, seed=0)
    rec = SequenceRecognizer(16, 3, head="ridge", ema=0.5)
    rec.fit_predict(feats, y)
    first = rec.coef.clone()
    rec.fit_predict(feats, -y)  # the opposite map: the average moves half-way (to ~0)
    assert torch.allclose(rec.coef, 0.0 * first, atol=1e-4)


def test_gaussian_pooling_weights_and_gradient() -> None:
    rec = SequenceRecognizer(8, 2, pooling="gaussian", head="ridge")
    w = rec.window_weights(200)
    assert w.shape == (200,)
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert int(w.argmax()) in (99, 100)  # starts at the TSS (middle window)
    g = torch.Generator().manual_seed(0)
    feats, y = torch.randn(20, 200, 8, generator=g), torch.randn(20, 2, generator=g)
    rec.fit_predict(feats, y).pow(2).sum().backward()
    assert rec.centre.grad is not None
    assert rec.log_width.grad is not None


def test_fit_predict_refuses_mlp_head() -> None:
    rec = SequenceRecognizer(8, 2, head="mlp")
    with pytest.raises(RuntimeError, match="ridge"):
        rec.fit_predict(torch.randn(5, 10, 8), torch.randn(5, 2))


def test_recognizer_head_resolution_keeps_the_seed() -> None:
    default = ModelConfig(n_genes=10, n_states=3)
    assert (default.t_head, default.recognizer_pooling) == ("ridge", "gaussian")  # shipped default
    assert ModelConfig(n_genes=10, n_states=3, recognizer_head="mlp").t_head == "mlp"
    assert ModelConfig(n_genes=10, n_states=3, recognizer_head=None, recognizer_pooling="conv").t_head == "mlp"
    with pytest.raises(ValueError, match="recognizer_head"):
        ModelConfig(n_genes=10, n_states=3, recognizer_head="lasso")  # type: ignore[arg-type]
    cfg = ModelConfig(n_genes=10, n_states=3, n_features=4, front_end="genes", recognizer_head="ridge")
    net = PerturbationStatistic(cfg)
    assert net.recognizer is not None
    assert net.recognizer.head == "ridge"
    assert "recognizer.coef" in net.state_dict()  # the fit is saved with the model


@pytest.mark.parametrize("pooling", ["gaussian", "attention"])
def test_fit_predict_on_selected_rows_equals_fitting_those_genes(pooling: str) -> None:
    """``rows`` pools every gene and keeps the selected ones: the same fit as passing only their features."""
    feats, y, _ = _linear_genes(40, seed=3)
    keep = torch.ones(40, dtype=torch.bool)
    keep[[0, 7, 21]] = False
    whole = SequenceRecognizer(16, 3, pooling=pooling, head="ridge")
    part = SequenceRecognizer(16, 3, pooling=pooling, head="ridge")
    torch.testing.assert_close(whole.fit_predict(feats, y[keep], keep), part.fit_predict(feats[keep], y[keep]))
    torch.testing.assert_close(whole.coef, part.coef)
    torch.testing.assert_close(whole(feats, keep), part(feats[keep]))


def test_ridge_leave_one_out_predictions_are_refits_without_the_gene() -> None:
    """Each returned prediction is what a ridge fit without that gene (at the chosen penalty) predicts for it."""
    g = torch.Generator().manual_seed(1)
    feats, y = torch.randn(25, 3, 12, generator=g, dtype=torch.float64), torch.randn(25, 2, generator=g)
    rec = SequenceRecognizer(12, 2, head="ridge").double()
    loo = rec.fit_predict(feats, y.double()).detach()
    x = rec.pool(feats).detach()  # the pooled features the fit reads
    xs = (x - x.mean(0)) / x.std(0)  # standardised on all genes, as the fit does
    for i in (0, 11, 24):
        rest = torch.arange(25) != i
        xr, yr = xs[rest], y.double()[rest]
        xc, ym = xr - xr.mean(0), yr.mean(0)
        coef = torch.linalg.solve(
            xc.T @ xc + float(rec.alpha[0]) * torch.eye(12, dtype=torch.float64), xc.T @ (yr - ym)
        )
        torch.testing.assert_close(loo[i], (xs[i] - xr.mean(0)) @ coef + ym, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("noise", [0.05, 3.0])
def test_ridge_penalty_minimises_the_leave_one_out_error(noise: float) -> None:
    """The chosen penalty is the grid's best by leave-one-out (brute force over the grid), at low and high noise."""
    from perturbscore.nn._ridge import RIDGE_ALPHAS

    feats, y, _ = _linear_genes(40, seed=4, noise=noise)
    rec = SequenceRecognizer(16, 3, head="ridge")
    rec.fit_predict(feats, y)
    x = rec.pool(feats).detach()  # the pooled features the fit reads
    xs = (x - x.mean(0)) / x.std(0)
    gram = (xs @ xs.T).double()
    yc = (y - y.mean(0)).double()
    errors = {}
    for a in RIDGE_ALPHAS:
        hat_mat = gram @ torch.linalg.inv(gram + a * 16 * torch.eye(40, dtype=torch.float64))
        hat = torch.diagonal(hat_mat) + 1 / 40
        loo = (yc - hat_mat @ yc) / (1 - hat)[:, None]
        errors[a * 16] = float((loo.pow(2) / yc.pow(2).mean(0)).mean())
    assert float(rec.alpha[0]) == pytest.approx(min(errors, key=errors.get))


def test_weighted_ridge_leave_one_out_is_the_refit_without_the_gene() -> None:
    from perturbscore.nn._ridge import _weighted_ridge

    g = torch.Generator().manual_seed(5)
    x = torch.randn(30, 12, generator=g, dtype=torch.float64)
    y = torch.randn(30, 3, generator=g, dtype=torch.float64)
    w = torch.rand(30, generator=g, dtype=torch.float64) + 0.1
    choices = torch.tensor([[8, 2.0], [8, 2.0], [12, 0.5]], dtype=torch.float64)  # two outputs share a solve
    loo, coef, intercept = _weighted_ridge(x, y, choices, w)
    assert bool((coef[8:, :2] == 0).all())  # rank 8: nothing beyond the leading 8 inputs
    torch.testing.assert_close((w[:, None] * (y - x @ coef - intercept)).sum(0), torch.zeros(3, dtype=torch.float64))
    for i in (0, 7, 29):
        keep = torch.arange(30) != i
        _, c_i, b_i = _weighted_ridge(x[keep], y[keep], choices, w[keep])
        torch.testing.assert_close(loo[i], x[i] @ c_i + b_i)


def test_robust_fit_discounts_an_unpredictable_gene_but_not_a_predictable_extreme_one() -> None:
    feats, y, coef = _linear_genes(40, seed=6, noise=0.1)
    test_f, test_y, _ = _linear_genes(400, seed=7, noise=0.0)
    pooled = feats[:, 0, :]
    far = int(torch.argmax(torch.linalg.vector_norm(pooled, dim=1)))  # extreme features, its target on the map
    feats[far] *= 3.0
    y[far] = feats[far, 0] @ coef
    corrupt = (far + 1) % 40
    y[corrupt] += 40.0  # far off the map: no feature predicts it
    plain = SequenceRecognizer(16, 3, head="ridge")
    robust = SequenceRecognizer(16, 3, head="ridge")
    plain.fit_predict(feats, y)
    robust.fit_predict(feats, y, robust=2.0)
    weights = robust.last_weights_
    ordinary = torch.ones(40, dtype=torch.bool)
    ordinary[[far, corrupt]] = False
    assert float(weights[corrupt]) < 0.1
    assert float(weights[far]) >= float(weights[ordinary].min())  # extreme, but predicted: not singled out
    with torch.no_grad():
        err_plain = float((plain(test_f) - test_y).abs().mean())
        err_robust = float((robust(test_f) - test_y).abs().mean())
    assert err_robust < 0.5 * err_plain, (err_plain, err_robust)
    assert bool((plain.last_weights_ == 1).all())  # off by default


def test_robust_weights_read_only_the_leading_outputs_when_asked() -> None:
    """``robust_dims``: the residuals that set the weights are those of the first outputs (G's part in training)."""
    feats, y, _ = _linear_genes(40, seed=8, noise=0.1)
    extra = torch.randn(40, 2, generator=torch.Generator().manual_seed(9)) * 0.1
    extra[5] += 40.0  # far off in the trailing outputs only
    target = torch.cat([y, extra], 1)  # (40, 3 + 2)
    every = SequenceRecognizer(16, 5, head="ridge")
    leading = SequenceRecognizer(16, 5, head="ridge")
    every.fit_predict(feats, target, robust=1.0)
    leading.fit_predict(feats, target, robust=1.0, robust_dims=3)
    assert float(every.last_weights_[5]) < 0.1  # its trailing residual counts
    assert float(leading.last_weights_[5]) > 0.5  # only y's residuals count: an ordinary gene there


# The subsampled read-out (fit_predict(subsample=...), TrainConfig.rec_subsample)


def _fit_sub(feats: torch.Tensor, y: torch.Tensor, **kwargs: float) -> tuple[SequenceRecognizer, torch.Tensor]:
    rec = SequenceRecognizer(16, 3, head="ridge")
    loo = rec.fit_predict(feats, y, **kwargs)
    return rec, loo


@pytest.mark.parametrize("robust", [0.0, 1.0])
def test_subsampled_read_out_ignores_the_genes_left_out_but_not_the_losses(robust: float) -> None:
    feats, y = _linear_genes(30, seed=0, noise=0.3)[:2]
    test_f, _ = _linear_genes(50, seed=1, noise=0.3)[:2]
    full, loo_full = _fit_sub(feats, y, robust=robust)
    sub, loo_sub = _fit_sub(feats, y, robust=robust, subsample=0.5)
    torch.testing.assert_close(loo_sub, loo_full)  # what the losses read is the full fit's
    assert not torch.allclose(sub(test_f), full(test_f))  # the stored read-out is another fit
    if robust == 0.0:  # plain least squares: a gene left out of the subset cannot move the read-out
        unchanged = 0
        for j in range(30):
            moved = y.clone()
            moved[j] += 0.01  # small: the penalty that leave-one-out picks on all genes stays the same
            rec, _ = _fit_sub(feats, moved, subsample=0.5)
            unchanged += bool(torch.allclose(rec(test_f), sub(test_f)))
        assert unchanged == 15  # half the genes are out of the subset, the other half steer it


def test_subsampled_read_out_is_reproducible_and_each_fit_draws_a_new_subset() -> None:
    feats, y = _linear_genes(30, seed=2, noise=0.3)[:2]
    test_f, _ = _linear_genes(50, seed=3, noise=0.3)[:2]
    a, _ = _fit_sub(feats, y, subsample=0.7)
    b, _ = _fit_sub(feats, y, subsample=0.7)
    torch.testing.assert_close(a(test_f), b(test_f))
    first = a(test_f)
    a.ema = 1.0  # the second fit replaces the read-out: its subset differs from the first's
    a.fit_predict(feats, y, subsample=0.7)
    assert not torch.allclose(a(test_f), first)


def test_subsampled_moving_average_still_learns_the_map() -> None:
    feats, y = _linear_genes(60, seed=4, noise=0.1)[:2]
    test_f, test_y = _linear_genes(200, seed=5, noise=0.0)[:2]
    rec = SequenceRecognizer(16, 3, head="ridge")
    for _ in range(30):
        rec.fit_predict(feats, y, subsample=0.8)
    pred = rec(test_f).detach()
    r2 = 1 - ((pred - test_y) ** 2).sum() / ((test_y - test_y.mean(0)) ** 2).sum()
    assert r2 > 0.95


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_rec_subsample_outside_zero_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="rec_subsample"):
        TrainConfig(rec_subsample=share)
