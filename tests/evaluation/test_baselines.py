"""Baselines: known answers, the shrunk baseline on the real challenge counts, feature regressions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perturbscore._errors import InputError
from perturbscore.evaluation._baselines import (
    BASELINES,
    EmpiricalBaseline,
    KNNFeatureBaseline,
    OracleBaseline,
    RidgeFeatureBaseline,
    ShrunkBaseline,
    TrainMeanBaseline,
)
from perturbscore.evaluation._metrics import bootstrap_label_samples, pred_mae, sample_targets, tv_distance

CSV = Path(__file__).resolve().parents[2] / "src" / "perturbscore" / "datasets" / "challenge_cells_per_ko.csv"
STATES = ["progenitor", "effector", "terminal exhausted", "cycling", "other"]


@pytest.fixture(scope="module")
def challenge_counts() -> np.ndarray:
    """Per-state cell counts of the 66 real knockouts (control guides dropped), ``(66, 5)``."""
    table = pd.read_csv(CSV)
    return table.loc[table["condition"] != "Unperturbed", STATES].to_numpy(dtype=np.int64)


def _split(counts: np.ndarray, seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(len(counts))
    return counts[perm[:50]], counts[perm[50:]]


def test_registry_names() -> None:
    assert set(BASELINES) == {"empirical", "shrunk", "empirical_bayes", "train_mean", "ridge", "pcr", "knn", "oracle"}
    assert all(cls.name == name for name, cls in BASELINES.items())


def test_empirical_with_all_cells_is_the_truth(challenge_counts: np.ndarray) -> None:
    train, val = _split(challenge_counts)
    props = val / val.sum(1, keepdims=True)
    Q = sample_targets(train / train.sum(1, keepdims=True), len(val), rng=0)
    emp = EmpiricalBaseline().fit(train)
    np.testing.assert_allclose(emp.predict_proportions(counts=val), props)
    np.testing.assert_allclose(emp.predict_distance(Q, counts=val), tv_distance(props, Q))
    with pytest.raises(InputError, match="pass counts="):
        emp.predict_distance(Q)


def test_oracle_scores_zero(challenge_counts: np.ndarray) -> None:
    props = challenge_counts / challenge_counts.sum(1, keepdims=True)
    Q = sample_targets(props, 30, rng=1)
    idx = np.arange(30) % len(props)
    oracle = OracleBaseline(true_props=props).fit(props[:50])
    assert pred_mae(oracle.predict_distance(Q, index=idx), tv_distance(props[idx], Q)) == 0.0
    with pytest.raises(InputError, match="needs index="):
        oracle.predict_proportions()
    with pytest.raises(InputError, match="index out of range"):
        oracle.predict_proportions(index=[len(props)])
    with pytest.raises(InputError, match="construct it as OracleBaseline"):
        OracleBaseline().fit(props).predict_proportions(index=[0])


def _mae_at_k(baseline, train_props, val_counts, k: int, seed: int) -> float:
    codes = [np.repeat(np.arange(5), c) for c in val_counts]
    samples = bootstrap_label_samples(codes, k, 100, rng=seed)  # (R, P, C)
    R, P, C = samples.shape
    Q = sample_targets(train_props, R * P, alpha=0.0, rng=seed + 1)  # (R * P, C)
    truth = tv_distance(np.tile(val_counts / val_counts.sum(1, keepdims=True), (R, 1)), Q)
    return pred_mae(baseline.predict_distance(Q, counts=samples.reshape(R * P, C)), truth)


def test_shrunk_beats_empirical_at_k2_on_challenge_counts(challenge_counts: np.ndarray) -> None:
    train, val = _split(challenge_counts)
    train_props = train / train.sum(1, keepdims=True)
    shrunk = ShrunkBaseline(n_sim=40).fit(train_props, rng=0)
    assert np.isfinite(shrunk.strength_)
    assert shrunk.strength_ > 0
    assert shrunk.grid_mae_.shape == shrunk.grid.shape
    emp = EmpiricalBaseline().fit(train_props)
    mae_shrunk = _mae_at_k(shrunk, train_props, val, 2, seed=5)
    mae_emp = _mae_at_k(emp, train_props, val, 2, seed=5)
    assert mae_shrunk < 0.8 * mae_emp
    # with many cells the posterior mean approaches the empirical proportions
    many = shrunk.predict_proportions(counts=val * 1000)
    np.testing.assert_allclose(many, val / val.sum(1, keepdims=True), atol=1e-3)


def test_shrunk_errors() -> None:
    with pytest.raises(InputError, match="at least 2 training perturbations"):
        ShrunkBaseline().fit(np.array([[0.5, 0.5]]))
    with pytest.raises(InputError, match="strengths >= 0"):
        ShrunkBaseline(grid=np.array([-1.0]))
    with pytest.raises(InputError, match="not fitted"):
        ShrunkBaseline().predict_proportions(counts=np.ones((1, 2)))
    fitted = ShrunkBaseline(n_sim=2, ks=(2,)).fit(np.array([[0.5, 0.5], [0.2, 0.8]]), rng=0)
    with pytest.raises(InputError, match="label counts"):
        fitted.predict_proportions(counts=np.ones((1, 3)))


def test_train_mean_predicts_training_mean() -> None:
    train = np.array([[0.6, 0.4], [0.2, 0.8]])
    tm = TrainMeanBaseline().fit(train)
    np.testing.assert_allclose(tm.predict_proportions(), [[0.4, 0.6]])
    assert tm.predict_proportions(features=np.zeros((3, 2, 4))).shape == (3, 2)
    np.testing.assert_allclose(tm.predict_distance(np.array([[1.0, 0.0], [0.4, 0.6]])), [0.6, 0.0], atol=1e-12)


def _planted(n: int, rng: np.random.Generator, *, windows: int = 4, dim: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(n, W, D)`` whose window mean drives ``q(P)`` linearly (plus noise)."""
    base = rng.normal(size=(n, dim))  # (n, D)
    feats = base[:, None, :] + rng.normal(scale=0.2, size=(n, windows, dim))  # (n, W, D)
    w = np.zeros((dim, 4))
    w[:3, :3] = np.eye(3) * 0.08
    props = np.clip(0.25 + base @ w + rng.normal(scale=0.01, size=(n, 4)), 0.01, None)
    return feats, props / props.sum(1, keepdims=True)


@pytest.mark.parametrize(("cls", "margin"), [(RidgeFeatureBaseline, 0.7), (KNNFeatureBaseline, 0.9)])
def test_feature_baselines_beat_train_mean(cls: type, margin: float) -> None:
    rng = np.random.default_rng(4)
    feats, props = _planted(160, rng)
    tr, te = slice(0, 120), slice(120, None)
    Q = sample_targets(props[tr], 40, rng=6)
    truth = tv_distance(props[te], Q)
    model = cls().fit(props[tr], train_features=feats[tr], rng=0)
    pred = model.predict_proportions(features=feats[te])
    assert (pred >= 0).all()
    assert np.allclose(pred.sum(1), 1)
    mean = TrainMeanBaseline().fit(props[tr])
    mae_model = pred_mae(model.predict_distance(Q, features=feats[te]), truth)
    mae_mean = pred_mae(mean.predict_distance(Q), truth)
    assert mae_model < margin * mae_mean


def test_ridge_planted_signal_and_errors() -> None:
    rng = np.random.default_rng(8)
    feats, props = _planted(60, rng)
    ridge = RidgeFeatureBaseline().fit(props, train_features=feats)
    assert np.isfinite(ridge.alpha_)
    assert ridge.alpha_ > 0
    knn = KNNFeatureBaseline().fit(props, train_features=feats[:, 0], rng=1)  # (P, D) features accepted
    assert knn.n_neighbors_ >= 1
    with pytest.raises(InputError, match="needs gene features"):
        RidgeFeatureBaseline().fit(props)
    with pytest.raises(InputError, match="use the same feature file"):
        ridge.predict_proportions(features=np.zeros((2, 4, 5)))
    with pytest.raises(InputError, match="train_features has 3 genes"):
        RidgeFeatureBaseline().fit(props, train_features=feats[:3])
    with pytest.raises(InputError, match="at least 2 training genes"):
        KNNFeatureBaseline().fit(props[:1], train_features=feats[:1])
