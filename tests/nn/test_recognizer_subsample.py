"""The ridge recognizer's subsampled read-out (``fit_predict(subsample=...)``, ``TrainConfig.rec_subsample``)."""

from __future__ import annotations

import pytest
import torch

from perturbscore.nn import SequenceRecognizer
from perturbscore.train import TrainConfig


def _genes(n: int, *, seed: int, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coef = torch.randn(16, 3, generator=torch.Generator().manual_seed(99))
    pooled = torch.randn(n, 16, generator=g)
    feats = pooled[:, None, :].expand(n, 20, 16).clone()
    return feats, pooled @ coef + noise * torch.randn(n, 3, generator=g)


def _fit(feats: torch.Tensor, y: torch.Tensor, **kwargs: float) -> tuple[SequenceRecognizer, torch.Tensor]:
    rec = SequenceRecognizer(16, 3, pooling="mean", head="ridge")
    loo = rec.fit_predict(feats, y, **kwargs)
    return rec, loo


@pytest.mark.parametrize("robust", [0.0, 1.0])
def test_subsampled_read_out_ignores_the_genes_left_out_but_not_the_losses(robust: float) -> None:
    feats, y = _genes(30, seed=0)
    test_f, _ = _genes(50, seed=1)
    full, loo_full = _fit(feats, y, robust=robust)
    sub, loo_sub = _fit(feats, y, robust=robust, subsample=0.5)
    torch.testing.assert_close(loo_sub, loo_full)  # what the losses read is the full fit's
    assert not torch.allclose(sub(test_f), full(test_f))  # the stored read-out is another fit
    if robust == 0.0:  # plain least squares: a gene left out of the subset cannot move the read-out
        unchanged = 0
        for j in range(30):
            moved = y.clone()
            moved[j] += 0.01  # small: the penalty that leave-one-out picks on all genes stays the same
            rec, _ = _fit(feats, moved, subsample=0.5)
            unchanged += bool(torch.allclose(rec(test_f), sub(test_f)))
        assert unchanged == 15  # half the genes are out of the subset, the other half steer it


def test_subsampled_read_out_is_reproducible_and_each_fit_draws_a_new_subset() -> None:
    feats, y = _genes(30, seed=2)
    test_f, _ = _genes(50, seed=3)
    a, _ = _fit(feats, y, subsample=0.7)
    b, _ = _fit(feats, y, subsample=0.7)
    torch.testing.assert_close(a(test_f), b(test_f))
    first = a(test_f)
    a.ema = 1.0  # the second fit replaces the read-out: its subset differs from the first's
    a.fit_predict(feats, y, subsample=0.7)
    assert not torch.allclose(a(test_f), first)


def test_subsampled_moving_average_still_learns_the_map() -> None:
    feats, y = _genes(60, seed=4, noise=0.1)
    test_f, test_y = _genes(200, seed=5, noise=0.0)
    rec = SequenceRecognizer(16, 3, pooling="mean", head="ridge")
    for _ in range(30):
        rec.fit_predict(feats, y, subsample=0.8)
    pred = rec(test_f).detach()
    r2 = 1 - ((pred - test_y) ** 2).sum() / ((test_y - test_y.mean(0)) ** 2).sum()
    assert r2 > 0.95


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_rec_subsample_outside_zero_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="rec_subsample"):
        TrainConfig(rec_subsample=share)
