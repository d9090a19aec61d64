"""Honest baselines for predicting ``d(q(P), Q)`` of held-out perturbations (DESIGN §4).

Every baseline is fitted on *training* perturbations only and predicts state proportions for
held-out ones; the predicted distance is ``tv_distance(predicted proportions, Q)``.

Common interface::

    b = BASELINES[name](**options).fit(train_props, train_features=..., rng=...)
    props = b.predict_proportions(counts=..., features=..., index=...)   # (n, C)
    dist = b.predict_distance(Q, counts=..., features=..., index=...)    # (n,)

What each needs at prediction time (``Baseline.needs``):

==============  ==================================================================  ==============
name            predicts from                                                       needs
==============  ==================================================================  ==============
``empirical``   the k sampled cells' label counts: ``q_hat_k = counts / k``         ``counts``
``shrunk``      posterior mean ``(counts + a * prior) / (k + a)``                   ``counts``
``train_mean``  the mean training ``q(P)`` (unseen gene, no cells)                  nothing
``ridge``       ridge regression from mean-pooled, standardised gene features      ``features``
``pcr``         ridge on the leading principal directions of every gene's features ``features``
``knn``         k-nearest-neighbour regression from the same features              ``features``
``oracle``      the true proportions given at construction (e.g. simulator truth)  ``index``
==============  ==================================================================  ==============
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from .._errors import InputError
from .._utils import as_rng
from ._metrics import normalise, sample_targets, tv_distance

logger = logging.getLogger(__name__)

_Opt = np.ndarray | None
_RNG = np.random.Generator | int | None

__all__ = [
    "BASELINES",
    "Baseline",
    "EmpiricalBaseline",
    "KNNFeatureBaseline",
    "OracleBaseline",
    "PCRFeatureBaseline",
    "RidgeFeatureBaseline",
    "ShrunkBaseline",
    "TrainMeanBaseline",
]


def _check_props(train_props: np.ndarray) -> np.ndarray:
    props = np.asarray(train_props, dtype=np.float64)
    if props.ndim != 2 or props.shape[0] == 0:
        raise InputError(f"train_props must be a non-empty (perturbations, states) array, got shape {props.shape}")
    out = normalise(props)
    exact = np.isclose(props.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    out[exact] = props[exact]  # keep proportions that already sum to 1 bit-for-bit (the oracle must score 0)
    return out


def _pool_features(features: np.ndarray | None, who: str) -> np.ndarray:
    """Mean-pool gene features over windows: ``(n, W, D)`` or ``(n, D)`` -> ``(n, D)``."""
    if features is None:
        raise InputError(f"the {who} baseline needs gene features; pass features=(genes, windows, dim)")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 3:
        x = x.mean(axis=1)  # (n, W, D) -> (n, D)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise InputError(f"gene features must be finite (genes, windows, dim) or (genes, dim), got shape {x.shape}")
    return x


def _clip_renormalise(pred: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Clip regression output to >= 0 and renormalise; an all-zero row falls back to ``fallback``."""
    pred = np.clip(pred, 0.0, None)  # (n, C)
    dead = pred.sum(axis=1) <= 0
    pred[dead] = fallback
    return pred / pred.sum(axis=1, keepdims=True)


class Baseline:
    """Base class: fit on training perturbations, predict proportions and distances for others."""

    name: ClassVar[str] = ""
    #: Inputs ``predict_proportions`` needs: any of ``"counts"``, ``"features"``, ``"index"``.
    needs: ClassVar[tuple[str, ...]] = ()

    def fit(
        self,
        train_props: np.ndarray,
        *,
        train_counts: np.ndarray | None = None,
        train_features: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> Baseline:
        """Fit on training ``q(P)`` ``(P, C)`` and, for the feature baselines, their features ``(P, W, D)``.

        ``train_counts`` (``(P, C)`` cell counts) is accepted so every baseline shares one call; no
        built-in baseline needs it. ``rng`` seeds the shrunk baseline's simulation and the k-NN CV folds.
        """
        self.train_props_ = _check_props(train_props)
        self.prior_ = self.train_props_.mean(axis=0)  # (C,)
        return self

    def predict_proportions(
        self, *, counts: np.ndarray | None = None, features: np.ndarray | None = None, index: np.ndarray | None = None
    ) -> np.ndarray:
        """Predicted state proportions ``(n, C)`` for ``n`` held-out perturbations."""
        raise NotImplementedError

    def predict_distance(
        self,
        Q: np.ndarray,
        *,
        counts: np.ndarray | None = None,
        features: np.ndarray | None = None,
        index: np.ndarray | None = None,
    ) -> np.ndarray:
        """Predicted ``d(q(P), Q)``: TV between the predicted proportions and targets ``Q`` ``(n, C)`` or ``(C,)``."""
        return tv_distance(self.predict_proportions(counts=counts, features=features, index=index), Q)

    def _fitted(self) -> None:
        if not hasattr(self, "train_props_"):
            raise InputError(f"the {self.name} baseline is not fitted; call .fit(train_props) first")


class EmpiricalBaseline(Baseline):
    """``d(q_hat_k(P), Q)``: proportions of the k sampled cells' labels. Needs ``counts`` ``(n, C)``."""

    name = "empirical"
    needs = ("counts",)

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        if counts is None:
            raise InputError("the empirical baseline needs the sampled cells' label counts; pass counts=(n, states)")
        return normalise(np.atleast_2d(counts))


class ShrunkBaseline(EmpiricalBaseline):
    """Posterior-mean proportions ``(counts + a * prior) / (k + a)``, prior = mean training ``q(P)``.

    The strength ``a`` (Dirichlet concentration) is chosen on the training perturbations by grid
    search: for each training perturbation, ``n_sim`` k-cell label samples are drawn (multinomial
    from its ``q(P)``, i.e. sampling cells with replacement) for every ``k`` in ``ks``, each paired
    with a target from :func:`sample_targets`; the chosen ``a`` minimises the MAE of the predicted
    distances against ``d(q(P), Q)``. The prior used for a perturbation during the search leaves
    that perturbation out, so ``a`` is not tuned on its own label. ``a = 0`` (the empirical
    baseline) is in the grid. Needs ``counts`` ``(n, C)``.

    Parameters
    ----------
    grid
        Candidate strengths; default ``0`` and 49 log-spaced values in ``[0.01, 1000]``.
    ks
        Sample sizes the search averages over.
    n_sim
        Simulated samples per training perturbation and ``k``.
    alpha
        Target noise (as in training).

    Attributes
    ----------
    strength_
        The chosen ``a``.
    grid_mae_
        MAE of each candidate in ``grid``.
    """

    name = "shrunk"

    def __init__(
        self,
        *,
        grid: np.ndarray | None = None,
        ks: tuple[int, ...] = (2, 5, 10, 25, 60),
        n_sim: int = 100,
        alpha: float = 0.05,
    ) -> None:
        self.grid = np.concatenate([[0.0], np.logspace(-2, 3, 49)]) if grid is None else np.asarray(grid, float)
        if self.grid.ndim != 1 or self.grid.size == 0 or np.any(self.grid < 0):
            raise InputError("the shrinkage grid must be a non-empty 1-D array of strengths >= 0")
        if not ks or min(ks) < 1 or n_sim < 1:
            raise InputError(f"need ks >= 1 and n_sim >= 1, got ks={ks}, n_sim={n_sim}")
        self.ks, self.n_sim, self.alpha = tuple(int(k) for k in ks), int(n_sim), float(alpha)

    def fit(
        self, train_props: np.ndarray, *, train_counts: _Opt = None, train_features: _Opt = None, rng: _RNG = None
    ) -> ShrunkBaseline:
        super().fit(train_props)
        rng = as_rng(rng)
        if self.train_props_.shape[0] < 2:
            raise InputError("the shrunk baseline needs at least 2 training perturbations to choose its strength")
        counts, kk, prior, Q, truth = self._simulate(rng)
        self.grid_mae_ = np.array([self._mae(a, counts, kk, prior, Q, truth) for a in self.grid])
        self.strength_ = float(self.grid[int(np.argmin(self.grid_mae_))])
        logger.info("shrunk baseline: chose strength a=%.3g (MAE %.4f)", self.strength_, self.grid_mae_.min())
        return self

    def _simulate(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Simulated k-cell label counts of training perturbations, with leave-one-out priors and targets."""
        props = self.train_props_
        P = props.shape[0]
        loo_prior = (props.sum(axis=0) - props) / (P - 1)  # (P, C): prior without the perturbation itself
        owner = np.tile(np.repeat(np.arange(P), self.n_sim), len(self.ks))  # (N,), N = len(ks) * P * n_sim
        kk = np.repeat(np.asarray(self.ks, dtype=np.float64), P * self.n_sim)  # (N,)
        counts = rng.multinomial(kk.astype(np.int64), props[owner])  # (N, C)
        Q = sample_targets(props, owner.size, alpha=self.alpha, rng=rng)  # (N, C)
        return counts, kk, loo_prior[owner], Q, tv_distance(props[owner], Q)

    @staticmethod
    def _mae(
        a: float, counts: np.ndarray, kk: np.ndarray, prior: np.ndarray, Q: np.ndarray, truth: np.ndarray
    ) -> float:
        post = (counts + a * prior) / (kk + a)[:, None]  # (N, C)
        return float(np.mean(np.abs(tv_distance(post, Q) - truth)))

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        self._fitted()
        if counts is None:
            raise InputError("the shrunk baseline needs the sampled cells' label counts; pass counts=(n, states)")
        counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        if counts.shape[1] != self.prior_.size or np.any(counts < 0):
            raise InputError(f"counts must be non-negative (n, {self.prior_.size}) label counts, got {counts.shape}")
        post = counts + self.strength_ * self.prior_  # (n, C)
        return post / post.sum(axis=1, keepdims=True)


class TrainMeanBaseline(Baseline):
    """The mean training ``q(P)`` for every perturbation (unseen genes, no cells). Needs nothing.

    Returns ``(n, C)`` rows where ``n`` is the length of whichever input is given, else ``(1, C)``
    (which broadcasts against any ``Q`` in :meth:`predict_distance`).
    """

    name = "train_mean"

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        self._fitted()
        given = next((x for x in (counts, features, index) if x is not None), None)
        n = 1 if given is None else len(given)
        return np.tile(self.prior_, (n, 1))  # (n, C)


class _FeatureBaseline(Baseline):
    needs = ("features",)

    def _model(self, rng: np.random.Generator, n_train: int) -> Any:
        raise NotImplementedError

    def fit(
        self, train_props: np.ndarray, *, train_counts: _Opt = None, train_features: _Opt = None, rng: _RNG = None
    ) -> _FeatureBaseline:
        from sklearn.preprocessing import StandardScaler

        super().fit(train_props)
        x = _pool_features(train_features, self.name)  # (P, D)
        if x.shape[0] != self.train_props_.shape[0]:
            raise InputError(f"train_features has {x.shape[0]} genes but train_props has {self.train_props_.shape[0]}")
        self.scaler_ = StandardScaler().fit(x)
        self.model_ = self._model(as_rng(rng), x.shape[0]).fit(self.scaler_.transform(x), self.train_props_)
        return self

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        self._fitted()
        x = _pool_features(features, self.name)
        if x.shape[1] != self.scaler_.n_features_in_:
            raise InputError(
                f"features have dim {x.shape[1]} but the {self.name} baseline was fitted on dim "
                f"{self.scaler_.n_features_in_}; use the same feature file"
            )
        return _clip_renormalise(self.model_.predict(self.scaler_.transform(x)), self.prior_)


class RidgeFeatureBaseline(_FeatureBaseline):
    """Ridge regression from mean-pooled, standardised gene features to ``q(P)``. Needs ``features``.

    The penalty is chosen among ``alphas`` by efficient leave-one-out CV on the training genes
    (:class:`sklearn.linear_model.RidgeCV`); predictions are clipped at 0 and renormalised.
    """

    name = "ridge"

    def __init__(self, *, alphas: np.ndarray | None = None) -> None:
        self.alphas = np.logspace(-3, 4, 15) if alphas is None else np.asarray(alphas, float)

    def _model(self, rng: np.random.Generator, n_train: int) -> Any:
        from sklearn.linear_model import RidgeCV

        return RidgeCV(alphas=self.alphas)

    @property
    def alpha_(self) -> float:
        """The chosen ridge penalty."""
        return float(self.model_.alpha_)


class PCRFeatureBaseline(_FeatureBaseline):
    """Principal-component ridge from mean-pooled features to ``q(P)``, the basis from every gene's features.

    The comparator for ``T``'s all-gene feature basis (``TrainConfig.feature_basis``), given the same
    information: the principal directions of the standardised features of ``all_features`` (every gene a
    user has features for; no labels), then ridge on the leading ``r`` directions, with ``r`` and the
    penalty chosen together by efficient leave-one-out CV on the training genes. With fewer than two genes
    per feature dimension in ``all_features`` (or none given) it is plain ridge on the training genes' own
    standardisation, i.e. :class:`RidgeFeatureBaseline`.
    """

    name = "pcr"

    def __init__(self, *, alphas: np.ndarray | None = None) -> None:
        self.alphas = np.logspace(-3, 4, 15) if alphas is None else np.asarray(alphas, float)

    def fit(
        self,
        train_props: np.ndarray,
        *,
        train_counts: _Opt = None,
        train_features: _Opt = None,
        all_features: _Opt = None,
        rng: _RNG = None,
    ) -> PCRFeatureBaseline:
        from sklearn.linear_model import RidgeCV
        from sklearn.preprocessing import StandardScaler

        from ..nn._recognition import BASIS_MIN_GENES_PER_DIM, BASIS_RANKS

        Baseline.fit(self, train_props)
        x = _pool_features(train_features, self.name)  # (P, D)
        if x.shape[0] != self.train_props_.shape[0]:
            raise InputError(f"train_features has {x.shape[0]} genes but train_props has {self.train_props_.shape[0]}")
        d = x.shape[1]
        pool = None if all_features is None else _pool_features(all_features, self.name)
        if pool is not None and pool.shape[1] != d:
            raise InputError(f"all_features have dim {pool.shape[1]} but train_features have dim {d}")
        if pool is None or pool.shape[0] < BASIS_MIN_GENES_PER_DIM * d:
            self.scaler_, self.basis_, ranks = StandardScaler().fit(x), np.eye(d), [d]
        else:
            self.scaler_ = StandardScaler().fit(pool)
            z = self.scaler_.transform(pool)
            _, vecs = np.linalg.eigh(z.T @ z / len(z))
            self.basis_, ranks = vecs[:, ::-1], [r for r in BASIS_RANKS if r < d] + [d]
        xp = self.scaler_.transform(x) @ self.basis_
        fits = [(RidgeCV(alphas=self.alphas).fit(xp[:, :r], self.train_props_), r) for r in ranks]
        self.model_, self.rank_ = max(fits, key=lambda fit: fit[0].best_score_)  # first of ties: fewest
        return self

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        self._fitted()
        x = _pool_features(features, self.name)
        if x.shape[1] != self.basis_.shape[0]:
            raise InputError(
                f"features have dim {x.shape[1]} but the {self.name} baseline was fitted on dim "
                f"{self.basis_.shape[0]}; use the same feature file"
            )
        xp = self.scaler_.transform(x) @ self.basis_[:, : self.rank_]
        return _clip_renormalise(self.model_.predict(xp), self.prior_)


class KNNFeatureBaseline(_FeatureBaseline):
    """k-nearest-neighbour regression from mean-pooled, standardised features to ``q(P)``. Needs ``features``.

    ``n_neighbors`` is chosen from ``neighbors`` by shuffled ``cv``-fold CV on the training genes
    (mean absolute error of the proportions).
    """

    name = "knn"

    def __init__(self, *, neighbors: tuple[int, ...] = (1, 2, 3, 5, 8, 12, 20), cv: int = 5) -> None:
        self.neighbors, self.cv = tuple(int(n) for n in neighbors), int(cv)

    def _model(self, rng: np.random.Generator, n_train: int) -> Any:
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.neighbors import KNeighborsRegressor

        folds = min(self.cv, n_train)
        if folds < 2:
            raise InputError("the knn baseline needs at least 2 training genes with features")
        cap = n_train - int(np.ceil(n_train / folds))  # smallest training fold
        grid = [n for n in self.neighbors if n <= cap] or [1]
        split = KFold(folds, shuffle=True, random_state=int(rng.integers(2**31)))
        return GridSearchCV(KNeighborsRegressor(), {"n_neighbors": grid}, cv=split, scoring="neg_mean_absolute_error")

    @property
    def n_neighbors_(self) -> int:
        """The chosen number of neighbours."""
        return int(self.model_.best_params_["n_neighbors"])


class OracleBaseline(Baseline):
    """Distances from given true proportions (e.g. the simulator's generating ``q(P)``). Needs ``index``.

    Parameters
    ----------
    true_props
        ``(N, C)`` true proportions; ``predict_proportions(index=i)`` returns ``true_props[i]``.
        It scores 0 error wherever the truth equals the measured ``q(P)``: a floor, not a competitor.
    """

    name = "oracle"
    needs = ("index",)

    def __init__(self, true_props: np.ndarray | None = None) -> None:
        self.true_props = None if true_props is None else _check_props(true_props)

    def fit(
        self, train_props: np.ndarray, *, train_counts: _Opt = None, train_features: _Opt = None, rng: _RNG = None
    ) -> OracleBaseline:
        super().fit(train_props)
        return self

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        if self.true_props is None:
            raise InputError("the oracle baseline has no truth; construct it as OracleBaseline(true_props=(N, states))")
        if index is None:
            raise InputError("the oracle baseline needs index= (rows of true_props for the perturbations asked)")
        index = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if index.size and (index.min() < -len(self.true_props) or index.max() >= len(self.true_props)):
            raise InputError(f"oracle index out of range for {len(self.true_props)} true proportions; pass row numbers")
        return self.true_props[index]


BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls
    for cls in (
        EmpiricalBaseline,
        ShrunkBaseline,
        TrainMeanBaseline,
        RidgeFeatureBaseline,
        PCRFeatureBaseline,
        KNNFeatureBaseline,
        OracleBaseline,
    )
}
"""Baseline classes by name: ``empirical``, ``shrunk``, ``train_mean``, ``ridge``, ``pcr``, ``knn``, ``oracle``."""
