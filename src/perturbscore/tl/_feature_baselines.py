"""Sequence-only baselines: regressions from gene features to ``q(P)`` (ridge, PCR, k-NN)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError
from .._utils import as_rng
from ._baseline_base import _RNG, Baseline, _clip_renormalise, _Opt


def _pool_features(features: np.ndarray | None, who: str) -> np.ndarray:
    """Mean-pool gene features over windows: ``(n, W, D)`` or ``(n, D)`` -> ``(n, D)``."""
    if features is None:
        raise InputError(f"the {who} baseline needs gene features; pass features=(genes, windows, dim)")
    x = np.asarray(features)
    # (n, W, D) -> (n, D), averaged in float64 without a float64 copy of every window (a genome's are GBs)
    x = x.mean(axis=1, dtype=np.float64) if x.ndim == 3 else x.astype(np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise InputError(f"gene features must be finite (genes, windows, dim) or (genes, dim), got shape {x.shape}")
    return x


class _FeatureBaseline(Baseline):
    needs = ("features",)

    def _model(self, rng: np.random.Generator, n_train: int) -> Any:
        raise NotImplementedError

    def fit(
        self,
        train_props: np.ndarray,
        *,
        train_counts: _Opt = None,
        train_features: _Opt = None,
        all_features: _Opt = None,
        rng: _RNG = None,
    ) -> _FeatureBaseline:
        """Fit on the training genes' ``q(P)`` and features; ``all_features`` (every gene's, no labels) if used.

        Only :class:`PCRFeatureBaseline` reads ``all_features``; the others accept it so that every feature
        baseline shares one call.
        """
        super().fit(train_props)
        x = _pool_features(train_features, self.name)  # (P, D)
        if x.shape[0] != self.train_props_.shape[0]:
            raise InputError(f"train_features has {x.shape[0]} genes but train_props has {self.train_props_.shape[0]}")
        self._fit_features(x, all_features, as_rng(rng))
        return self

    def _fit_features(self, x: np.ndarray, all_features: _Opt, rng: np.random.Generator) -> None:
        """Fit ``scaler_`` and ``model_`` on pooled training features ``x`` ``(P, D)`` (``all_features`` unused)."""
        from sklearn.preprocessing import StandardScaler

        self.scaler_ = StandardScaler().fit(x)
        self.model_ = self._model(rng, x.shape[0]).fit(self._design(x), self.train_props_)

    def _design(self, x: np.ndarray) -> np.ndarray:
        """The model's inputs for pooled features ``x``: standardised."""
        return self.scaler_.transform(x)

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        self._fitted()
        x = _pool_features(features, self.name)
        if x.shape[1] != self.scaler_.n_features_in_:
            raise InputError(
                f"features have dim {x.shape[1]} but the {self.name} baseline was fitted on dim "
                f"{self.scaler_.n_features_in_}; use the same feature file"
            )
        return _clip_renormalise(self.model_.predict(self._design(x)), self.prior_)


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


class PCRFeatureBaseline(RidgeFeatureBaseline):
    """Principal-component ridge from mean-pooled features to ``q(P)``, the basis from every gene's features.

    The comparator for ``T``'s all-gene feature basis (``TrainConfig.feature_basis``), given the same
    information: the principal directions of the standardised features of ``all_features`` (every gene a
    user has features for; no labels), then ridge on the leading ``r`` directions, with ``r`` and the
    penalty chosen together by efficient leave-one-out CV on the training genes. With fewer than two genes
    per feature dimension in ``all_features`` (or none given) it is plain ridge on the training genes' own
    standardisation, i.e. :class:`RidgeFeatureBaseline`.
    """

    name = "pcr"

    def _fit_features(self, x: np.ndarray, all_features: _Opt, rng: np.random.Generator) -> None:
        from sklearn.linear_model import RidgeCV
        from sklearn.preprocessing import StandardScaler

        from ..nn._recognition import BASIS_MIN_GENES_PER_DIM, candidate_ranks

        d = x.shape[1]
        pool = None if all_features is None else _pool_features(all_features, self.name)  # (N, D)
        if pool is not None and pool.shape[1] != d:
            raise InputError(f"all_features have dim {pool.shape[1]} but train_features have dim {d}")
        if pool is None or pool.shape[0] < BASIS_MIN_GENES_PER_DIM * d:
            self.scaler_, self.basis_, ranks = StandardScaler().fit(x), np.eye(d), [d]
        else:
            self.scaler_ = StandardScaler().fit(pool)
            z = self.scaler_.transform(pool)
            _, vecs = np.linalg.eigh(z.T @ z / len(z))
            self.basis_, ranks = vecs[:, ::-1], candidate_ranks(d)
        xp = self.scaler_.transform(x) @ self.basis_
        fits = [(RidgeCV(alphas=self.alphas).fit(xp[:, :r], self.train_props_), r) for r in ranks]
        self.model_, self.rank_ = max(fits, key=lambda fit: fit[0].best_score_)  # first of ties: fewest

    def _design(self, x: np.ndarray) -> np.ndarray:
        """Standardised features in the all-gene basis, its leading ``rank_`` directions."""
        return self.scaler_.transform(x) @ self.basis_[:, : self.rank_]


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
