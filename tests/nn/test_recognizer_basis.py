"""The ridge T's all-gene feature basis: principal-component ridge from the features of every gene."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perturbscore.evaluation._baselines import PCRFeatureBaseline, RidgeFeatureBaseline
from perturbscore.nn import SequenceRecognizer


def _structured_genes(n: int, *, seed: int, dim: int = 64, latent: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``n`` genes: a quarter of the dimensions read a ``latent``-dim effect, the rest is noise.

    The target is a linear map of the effect, so only the informative directions predict it: with few labelled
    genes plain ridge spreads its fit over every dimension, while the principal directions of many genes'
    features (no labels) single out the informative ones.
    """
    mix = torch.randn(latent, dim // 4, generator=torch.Generator().manual_seed(7))  # the same map for every call
    read = torch.randn(latent, 2, generator=torch.Generator().manual_seed(8))
    g = torch.Generator().manual_seed(seed)
    effect = torch.randn(n, latent, generator=g)
    pooled = torch.randn(n, dim, generator=g)
    pooled[:, : dim // 4] += 2.0 * effect @ mix
    return pooled[:, None, :].expand(n, 5, dim).clone(), effect @ read


def _r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float(1 - ((pred - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def test_basis_needs_enough_genes_and_then_is_orthonormal() -> None:
    rec = SequenceRecognizer(64, 2, head="ridge")
    few, _ = _structured_genes(100, seed=0)  # fewer than 2 genes per dimension: no basis
    assert not rec.fit_basis(few)
    assert not rec.has_basis
    torch.testing.assert_close(rec.basis, torch.eye(64))
    many, _ = _structured_genes(2_000, seed=0)
    assert rec.fit_basis(many)
    assert rec.has_basis
    assert int(rec.basis_genes) == 2_000
    torch.testing.assert_close(rec.basis.T @ rec.basis, torch.eye(64), atol=1e-5, rtol=0)
    pooled = rec.pool(many).detach()  # the pooled features the basis was fitted on
    z = (pooled - pooled.mean(0)) / rec.basis_sd
    var = (z @ rec.basis).var(0)
    assert bool((var[:-1] >= var[1:] - 1e-4).all())  # leading directions first
    assert float(var[2]) > 2 * float(var[3])  # the effect's three directions lead, well apart from the noise


def test_all_gene_basis_beats_plain_ridge_on_few_labelled_genes() -> None:
    unlabelled, _ = _structured_genes(3_000, seed=1)
    train_f, train_y = _structured_genes(40, seed=2)
    test_f, test_y = _structured_genes(500, seed=3)
    plain = SequenceRecognizer(64, 2, head="ridge")
    plain.fit_predict(train_f, train_y)
    pcr = SequenceRecognizer(64, 2, head="ridge")
    pcr.fit_basis(torch.cat([unlabelled, train_f, test_f]))  # features of every gene, no labels
    loo = pcr.fit_predict(train_f, train_y)
    assert (pcr.rank < 64).all()  # leave-one-out kept the leading directions only
    r2_plain, r2_pcr = _r2(plain(test_f).detach(), test_y), _r2(pcr(test_f).detach(), test_y)
    assert 1 - r2_pcr < 0.6 * (1 - r2_plain), (r2_plain, r2_pcr)  # the unexplained share falls by > 40 %
    assert _r2(loo.detach(), train_y) > 0.5  # the leave-one-out predictions see the same gain


def test_without_a_basis_the_fit_is_plain_ridge() -> None:
    feats, y = _structured_genes(40, seed=4)
    a = SequenceRecognizer(64, 2, head="ridge")
    b = SequenceRecognizer(64, 2, head="ridge")
    assert not b.fit_basis(feats)  # 40 genes: too few, stays the identity
    torch.testing.assert_close(a.fit_predict(feats, y), b.fit_predict(feats, y))
    assert (b.rank == 64).all()


def test_pcr_baseline_is_ridge_without_other_genes_and_better_with_them() -> None:
    train_f, train_y = _structured_genes(40, seed=5)
    test_f, test_y = _structured_genes(300, seed=6)
    unlabelled, _ = _structured_genes(3_000, seed=7)
    props = torch.softmax(train_y @ torch.ones(2, 4) * torch.tensor([1.0, -1.0, 0.5, 0.0]), -1).numpy()
    true = torch.softmax(test_y @ torch.ones(2, 4) * torch.tensor([1.0, -1.0, 0.5, 0.0]), -1).numpy()
    ridge = RidgeFeatureBaseline().fit(props, train_features=train_f.numpy())
    alone = PCRFeatureBaseline().fit(props, train_features=train_f.numpy())
    np.testing.assert_allclose(
        alone.predict_proportions(features=test_f.numpy()), ridge.predict_proportions(features=test_f.numpy())
    )
    pcr = PCRFeatureBaseline().fit(props, train_features=train_f.numpy(), all_features=unlabelled.numpy())
    assert pcr.rank_ < 64

    def err(b) -> float:  # noqa: ANN001
        return float(np.abs(b.predict_proportions(features=test_f.numpy()) - true).mean())

    assert err(pcr) <= err(ridge)  # both choose preprocessing and penalty by CV; the basis of every gene helps


def test_pcr_baseline_rejects_features_of_another_dimension() -> None:
    from perturbscore._errors import InputError

    train_f, train_y = _structured_genes(40, seed=5)
    props = torch.softmax(torch.cat([train_y, -train_y], 1), -1).numpy()
    with pytest.raises(InputError, match="all_features have dim 8"):
        PCRFeatureBaseline().fit(props, train_features=train_f.numpy(), all_features=np.zeros((200, 8)))


def test_rank_and_penalty_are_chosen_again_every_few_fits() -> None:
    from perturbscore.nn._recognition import RESELECT_EVERY

    unlabelled, _ = _structured_genes(3_000, seed=12)
    feats, y = _structured_genes(40, seed=13)
    rec = SequenceRecognizer(64, 2, head="ridge")
    rec.fit_basis(unlabelled)
    rec.fit_predict(feats, y)
    first = (rec.rank.tolist(), rec.alpha.tolist())
    assert max(first[0]) < 64
    noise = torch.randn(40, 2, generator=torch.Generator().manual_seed(14)) * 5.0  # unpredictable: heavy shrinkage
    for _ in range(RESELECT_EVERY - 1):
        rec.fit_predict(feats, noise)
        assert (rec.rank.tolist(), rec.alpha.tolist()) == first  # kept between searches
    rec.fit_predict(feats, noise)  # the RESELECT_EVERY-th fit searches again
    assert (rec.alpha > torch.tensor(first[1], dtype=rec.alpha.dtype)).all()
