"""Known-answer and property tests of the label-level metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import spearmanr

from perturbscore._errors import InputError
from perturbscore.evaluation._metrics import (
    bootstrap_label_samples,
    l1_distance,
    normalise,
    pred_mae,
    recognition_r2,
    sample_targets,
    spearman_per_target,
    stability,
    topk_hit_rate,
    tv_distance,
)

C = 5
_vec = arrays(np.float64, C, elements=st.floats(0.0, 1.0, allow_nan=False)).filter(lambda x: x.sum() > 1e-3)


@settings(max_examples=60, deadline=None)
@given(_vec, _vec, _vec)
def test_tv_axioms(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    p, q, r = normalise(a), normalise(b), normalise(c)
    d_pq = tv_distance(p, q)
    assert 0.0 <= d_pq <= 1.0 + 1e-12
    assert d_pq == pytest.approx(tv_distance(q, p))
    assert tv_distance(p, p) == 0.0
    assert (d_pq == 0.0) == np.allclose(p, q, atol=0, rtol=0)
    assert d_pq <= tv_distance(p, r) + tv_distance(r, q) + 1e-12
    assert l1_distance(p, q) == pytest.approx(2 * d_pq)


def test_tv_known_values_and_broadcasting() -> None:
    assert tv_distance([1, 0, 0], [0, 1, 0]) == 1.0
    assert tv_distance([0.5, 0.5], [1.0, 0.0]) == 0.5
    Q = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # (3, 2)
    np.testing.assert_allclose(tv_distance(np.array([0.5, 0.5]), Q), [0.5, 0.5, 0.0])
    assert tv_distance(np.ones((4, 1, 2)) / 2, Q).shape == (4, 3)
    with pytest.raises(InputError, match="align the state order"):
        tv_distance([1, 0], [1, 0, 0])


def test_normalise_rejects_bad_rows() -> None:
    with pytest.raises(InputError, match="sums to zero"):
        normalise([[0, 0], [1, 1]])
    with pytest.raises(InputError, match="non-negative"):
        normalise([[-1, 2]])


def test_sample_targets() -> None:
    train = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    exact = sample_targets(train, 50, alpha=0.0, rng=0)
    assert all(any(np.allclose(row, t) for t in train) for row in exact)
    noisy = sample_targets(train, 400, alpha=0.05, rng=1)
    np.testing.assert_allclose(noisy.sum(axis=1), 1.0)
    assert not any(np.allclose(row, t) for row in noisy for t in train)
    assert np.abs(noisy[:, None] - train[None]).sum(-1).min(axis=1).max() < 0.2  # close to a training mix
    np.testing.assert_array_equal(sample_targets(train, 5, rng=3), sample_targets(train, 5, rng=3))
    with pytest.raises(InputError, match="alpha >= 0"):
        sample_targets(train, 5, alpha=-1)
    with pytest.raises(InputError, match="non-empty"):
        sample_targets(np.zeros((0, 3)), 5)


def test_pred_mae() -> None:
    assert pred_mae([0.1, 0.5], [0.2, 0.1]) == pytest.approx(0.25)
    with pytest.raises(InputError, match="differ in shape"):
        pred_mae([0.1], [0.1, 0.2])


def test_spearman_per_target() -> None:
    rng = np.random.default_rng(0)
    true = rng.random((4, 12))
    np.testing.assert_allclose(spearman_per_target(true, true), 1.0)
    np.testing.assert_allclose(spearman_per_target(-true, true), -1.0)
    pred = true + rng.normal(0, 0.3, true.shape)
    pred[0, :3] = pred[0, 3]  # ties
    expected = [spearmanr(p, t).statistic for p, t in zip(pred, true, strict=True)]
    np.testing.assert_allclose(spearman_per_target(pred, true), expected)
    const = spearman_per_target(np.ones((1, 12)), true[:1])
    assert np.isnan(const).all()
    with pytest.raises(InputError, match="targets, perturbations"):
        spearman_per_target(true, true[:, :3])


def test_topk_hit_rate() -> None:
    rng = np.random.default_rng(1)
    true = rng.random((20, 8))
    assert topk_hit_rate(true, true, k=1) == 1.0
    assert topk_hit_rate(-true, true, k=1) == 0.0  # predicts the farthest as closest
    assert topk_hit_rate(-true, true, k=8) == 1.0
    # one target: best is column 2; predicted order 0, 2, ... -> miss at k=1, hit at k=2
    assert topk_hit_rate([[0.0, 0.3, 0.1]], [[0.5, 0.6, 0.1]], k=1) == 0.0
    assert topk_hit_rate([[0.0, 0.3, 0.1]], [[0.5, 0.6, 0.1]], k=2) == 1.0
    with pytest.raises(InputError, match="1 <= k <= number of perturbations"):
        topk_hit_rate(true, true, k=9)


def test_stability() -> None:
    rng = np.random.default_rng(2)
    means = rng.normal(size=(1, 10, 3))
    assert stability(np.repeat(means, 5, axis=0)) == pytest.approx(1.0)  # resamples agree
    noise_only = rng.normal(size=(400, 10, 3))  # perturbations identical in distribution
    assert stability(noise_only) < 0.02
    mixed = means * 3 + rng.normal(size=(400, 10, 3))
    assert 0.5 < stability(mixed) < 1.0
    assert np.isnan(stability(np.zeros((3, 4, 2))))
    with pytest.raises(InputError, match="perturbations >= 2"):
        stability(np.zeros((3, 1, 2)))


def test_recognition_r2() -> None:
    rng = np.random.default_rng(3)
    true = rng.normal(size=(15, 4))
    assert recognition_r2(true, true) == pytest.approx(1.0)
    assert recognition_r2(np.broadcast_to(true.mean(0), true.shape), true) == pytest.approx(0.0)
    assert recognition_r2(true + 5, true) < 0
    assert np.isnan(recognition_r2(true, np.ones_like(true)))
    with pytest.raises(InputError, match="differ in shape"):
        recognition_r2(true[:3], true)


def test_bootstrap_label_samples() -> None:
    codes = [np.array([0, 0, 1, 2]), np.array([1]), np.repeat([0, 1, 2], [50, 30, 20])]
    out = bootstrap_label_samples(codes, 3, 200, rng=0)
    assert out.shape == (200, 3, 3)
    assert (out.sum(-1) == 3).all()
    assert (out[:, 1] == [0, 3, 0]).all()  # the 1-cell perturbation, sampled with replacement
    np.testing.assert_allclose(out[:, 2].mean(0) / 3, [0.5, 0.3, 0.2], atol=0.06)
    full = bootstrap_label_samples(codes[:1], 4, 10, replace=False, rng=1)
    assert (full[:, 0] == [2, 1, 1]).all()  # all cells without replacement = the truth
    small = bootstrap_label_samples(codes, 10, 5, n_states=4, replace=False, rng=2)
    assert small.shape == (5, 3, 4)
    assert (small.sum(-1) == 10).all()
    np.testing.assert_array_equal(
        bootstrap_label_samples(codes, 3, 4, rng=7), bootstrap_label_samples(codes, 3, 4, rng=7)
    )


@pytest.mark.parametrize(
    ("codes", "kwargs", "match"),
    [
        ([np.array([], dtype=int)], {}, "has no cells"),
        ([np.array([0, -1])], {}, "negative state code"),
        ([np.array([0, 3])], {"n_states": 2}, "pass the full number of states"),
        ([np.array([0, 1])], {"k": 0}, "need k >= 1"),
    ],
)
def test_bootstrap_label_samples_errors(codes: list, kwargs: dict, match: str) -> None:
    args = {"k": 2, "n_resamples": 3} | kwargs
    with pytest.raises(InputError, match=match):
        bootstrap_label_samples(codes, args.pop("k"), args.pop("n_resamples"), **args)
