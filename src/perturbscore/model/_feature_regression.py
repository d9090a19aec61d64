"""Feature regressions of a knockout's state mix, tuned by cross-validation as a careful user would tune them.

:class:`FeatureRegression`: ridge, PCR or k-NN from window-mean gene features to the mix, its preprocessing
(raw or standardised features), penalty, PCA rank or neighbour count chosen by K-fold CV on the training
knockouts; ``"auto"`` also competes ridge, PCR and the training mean. It is the empirical-Bayes prior
(:mod:`._empirical_bayes`) and the evaluation's feature baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._empirical_bayes import clip_normalise, pool_features, tv

#: Ridge penalties every linear candidate is tried with.
ALPHAS = np.logspace(-3, 4, 15)
#: PCA ranks tried (below the feature dimension, then the full dimension).
RANKS = (2, 4, 8, 16, 32, 64)
#: Neighbour counts tried by k-NN.
NEIGHBOURS = (1, 2, 3, 5, 8, 12, 20)
#: Fewest genes per feature dimension for a PCA basis of every gene's features (else plain ridge).
BASIS_MIN_GENES_PER_DIM = 2.0


# -- feature regressions with CV-chosen preprocessing -------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One setting of a feature regression.

    Attributes
    ----------
    kind
        ``"ridge"``, ``"pcr"``, ``"knn"`` or ``"mean"`` (the training mean).
    standardise
        Whether features are scaled to unit variance (else only centred).
    rank
        Leading principal directions kept (0: all features, no projection).
    alpha
        Ridge penalty.
    neighbours
        Neighbours of k-NN.
    """

    kind: str
    standardise: bool = False
    rank: int = 0
    alpha: float = 1.0
    neighbours: int = 5

    def describe(self) -> str:
        """Return a short description, e.g. ``pcr (raw, rank 16, alpha 3.16)``."""
        if self.kind == "mean":
            return "training mean"
        scale = "standardised" if self.standardise else "raw"
        rank = f", rank {self.rank}" if self.rank else ""
        last = f"{self.neighbours} neighbours" if self.kind == "knn" else f"alpha {self.alpha:.3g}"
        return f"{self.kind} ({scale}{rank}, {last})"


@dataclass
class _Basis:
    centre: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    vecs: np.ndarray  # (D, D) principal directions, leading first (identity without a basis)

    def design(self, x: np.ndarray, rank: int) -> np.ndarray:
        z = (x - self.centre) / self.scale
        return z @ self.vecs[:, :rank] if rank else z


def _basis(pool: np.ndarray, *, standardise: bool, project: bool) -> _Basis:
    """Centre, scale and (with ``project``) principal directions of a pool of pooled features (no labels)."""
    centre = pool.mean(axis=0)
    scale = pool.std(axis=0) if standardise else np.ones(pool.shape[1])
    scale = np.where(scale > 1e-12, scale, 1.0)
    d = pool.shape[1]
    if not project:
        return _Basis(centre, scale, np.eye(d))
    z = (pool - centre) / scale
    _, vecs = np.linalg.eigh(z.T @ z / len(z))
    return _Basis(centre, scale, vecs[:, ::-1].copy())


def _ridge_fits(xd: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an intercept for every penalty at once: coefficients ``(A, D', C)`` and intercepts ``(A, C)``."""
    xm, ym = xd.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(xd - xm, full_matrices=False)
    uty = u.T @ (y - ym)  # (r, C)
    shrink = s[None, :] / (s[None, :] ** 2 + alphas[:, None])  # (A, r)
    coef = np.einsum("dr,ar,rc->adc", vt.T, shrink, uty)  # (A, D', C)
    return coef, ym[None, :] - np.einsum("d,adc->ac", xm, coef)


class FeatureRegression:
    """A regression from window-mean gene features to the state mix, its settings chosen by K-fold CV.

    Every kind tries raw and standardised features; ridge and PCR try every penalty in :data:`ALPHAS`, PCR
    every rank in :data:`RANKS` of the principal directions of every gene's features (``all_features``, no
    labels; with fewer than :data:`BASIS_MIN_GENES_PER_DIM` genes per dimension PCR is plain ridge), k-NN
    every neighbour count in :data:`NEIGHBOURS` on the raw, standardised or projected features. Predictions
    are clipped at 0 and renormalised; the CV error is their mean TV distance to the held-out mixes.

    Parameters
    ----------
    kind
        ``"ridge"``, ``"pcr"``, ``"knn"``, or ``"auto"`` (ridge, PCR or the training mean, whichever CV prefers).
    n_folds
        CV folds over the training knockouts (shuffled).

    Attributes
    ----------
    chosen_
        The chosen :class:`Candidate`.
    cv_error_
        Its CV mean TV error.
    cv_table_
        Every candidate with its CV error.
    """

    def __init__(self, kind: str = "auto", *, n_folds: int = 5) -> None:
        if kind not in ("ridge", "pcr", "knn", "auto"):
            raise ValueError(f"unknown feature regression {kind!r}; choose ridge, pcr, knn or auto")
        self.kind, self.n_folds = kind, int(n_folds)

    def _candidates(self, dim: int, n_train: int, ranks: list[int]) -> list[Candidate]:
        scales = (False, True)
        out: list[Candidate] = []
        if self.kind in ("ridge", "auto"):
            out += [Candidate("ridge", s, 0, float(a)) for s in scales for a in ALPHAS]
        if self.kind in ("pcr", "auto"):
            out += [Candidate("pcr", s, r, float(a)) for s in scales for r in ranks for a in ALPHAS]
        if self.kind == "knn":
            cap = n_train - int(np.ceil(n_train / self.n_folds))  # the smallest training fold
            nbrs = [n for n in NEIGHBOURS if n <= cap] or [1]
            knn_ranks = [0, *(r for r in ranks if r < dim)] if self._projected else [0]
            out += [Candidate("knn", s, r, neighbours=n) for s in scales for r in knn_ranks for n in nbrs]
        if self.kind == "auto":
            out.append(Candidate("mean"))
        return out

    def fit(
        self, features: np.ndarray, props: np.ndarray, *, all_features: np.ndarray | None = None, rng: int = 0
    ) -> FeatureRegression:
        """Choose a candidate by CV on the training knockouts and refit it on all of them.

        Parameters
        ----------
        features
            ``(P, W, D)`` or pooled ``(P, D)`` features of the training knockouts.
        props
            ``(P, C)`` their state mixes.
        all_features
            Every gene's features (no labels), for PCR's basis; ``None``: the training knockouts' own.
        rng
            Seed of the CV folds.
        """
        from sklearn.model_selection import KFold

        x, y = pool_features(features), np.asarray(props, dtype=np.float64)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} feature rows but {len(y)} mixes")
        if len(x) < 2:
            raise ValueError("a feature regression needs at least 2 training genes with features")
        d = x.shape[1]
        pool = None if all_features is None else pool_features(all_features)
        if pool is not None and pool.shape[1] != d:
            raise ValueError(f"all_features have dim {pool.shape[1]} but the training features have dim {d}")
        self._projected = pool is not None and len(pool) >= BASIS_MIN_GENES_PER_DIM * d
        self.bases_ = {(s, False): _basis(x, standardise=s, project=False) for s in (False, True)}
        if pool is not None and self._projected:
            self.bases_ |= {(s, True): _basis(pool, standardise=s, project=True) for s in (False, True)}
        ranks = [r for r in RANKS if r < d] + [d] if self._projected else [0]
        cands = self._candidates(d, len(x), ranks)
        if self.kind == "pcr" and not self._projected:  # no basis of every gene: plain ridge
            cands = [Candidate("pcr", c.standardise, 0, c.alpha) for c in cands]
        self.folds_ = list(KFold(min(self.n_folds, len(x)), shuffle=True, random_state=int(rng)).split(x))
        errors = np.zeros(len(cands))
        for train, test in self.folds_:
            errors += self._fold_errors(x[train], y[train], x[test], y[test], cands)
        errors /= len(x)
        best = int(np.argmin(errors))
        self.cv_table_ = list(zip(cands, errors.tolist(), strict=True))
        self.chosen_, self.cv_error_ = cands[best], float(errors[best])
        self.x_, self.y_, self.mean_ = x, y, y.mean(axis=0)
        self.predict_fn_ = self._fit_one(x, y, self.chosen_)
        return self

    def _bases_for(self, cand: Candidate) -> _Basis:
        return self.bases_[(cand.standardise, cand.kind != "ridge" and self._projected and cand.rank > 0)]

    def _fold_errors(
        self, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, cands: list[Candidate]
    ) -> np.ndarray:
        """Sum the TV errors on one fold for every candidate (every penalty of a design solved at once)."""
        errors = np.zeros(len(cands))
        fallback = ytr.mean(axis=0)
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(cands):
            key = (c.kind, c.standardise, c.rank) if c.kind in ("ridge", "pcr") else (i,)
            groups.setdefault(key, []).append(i)
        for idx in groups.values():
            c0 = cands[idx[0]]
            if c0.kind in ("ridge", "pcr"):
                basis = self._bases_for(c0)
                alphas = np.array([cands[i].alpha for i in idx])
                coef, icpt = _ridge_fits(basis.design(xtr, c0.rank), ytr, alphas)
                pred = np.einsum("nd,adc->anc", basis.design(xte, c0.rank), coef) + icpt[:, None, :]
                for j, i in enumerate(idx):
                    errors[i] = tv(clip_normalise(pred[j], fallback), yte).sum()
            else:
                errors[idx[0]] = tv(self._fit_one(xtr, ytr, c0)(xte), yte).sum()
        return errors

    def _fit_one(self, x: np.ndarray, y: np.ndarray, cand: Candidate) -> Callable[[np.ndarray], np.ndarray]:
        fallback = y.mean(axis=0)
        if cand.kind == "mean":
            return lambda xq: np.tile(fallback, (len(xq), 1))
        basis = self._bases_for(cand)
        if cand.kind == "knn":
            from sklearn.neighbors import KNeighborsRegressor

            knn = KNeighborsRegressor(n_neighbors=min(cand.neighbours, len(x))).fit(basis.design(x, cand.rank), y)
            return lambda xq: clip_normalise(knn.predict(basis.design(xq, cand.rank)), fallback)
        coef, icpt = _ridge_fits(basis.design(x, cand.rank), y, np.array([cand.alpha]))
        weights, bias = self._compose(basis, cand.rank, coef[0], icpt[0])
        return lambda xq: clip_normalise(xq @ weights + bias, fallback)

    @staticmethod
    def _compose(basis: _Basis, rank: int, coef: np.ndarray, icpt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One linear map ``x @ W + b`` from raw pooled features: scaling, projection and ridge composed."""
        proj = basis.vecs[:, :rank] if rank else np.eye(len(basis.centre))
        weights = (proj @ coef) / basis.scale[:, None]  # (D, C)
        return weights, icpt - basis.centre @ weights

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted mixes ``(n, C)`` for features ``(n, W, D)`` or ``(n, D)``."""
        return self.predict_fn_(pool_features(features))

    def cross_fitted(self) -> np.ndarray:
        """Out-of-fold predictions ``(P, C)`` of the training knockouts with the chosen setting."""
        out = np.zeros_like(self.y_)
        for train, test in self.folds_:
            out[test] = self._fit_one(self.x_[train], self.y_[train], self.chosen_)(self.x_[test])
        return out

    def linear_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the fitted prediction as ``clip_normalise(pooled @ W + b)``: ``W`` ``(D, C)`` and ``b`` ``(C,)``.

        Raises for k-NN, which is not linear.
        """
        cand = self.chosen_
        if cand.kind == "knn":
            raise ValueError("a k-NN regression has no linear map")
        if cand.kind == "mean":
            return np.zeros((self.x_.shape[1], self.y_.shape[1])), self.mean_.copy()
        basis = self._bases_for(cand)
        coef, icpt = _ridge_fits(basis.design(self.x_, cand.rank), self.y_, np.array([cand.alpha]))
        return self._compose(basis, cand.rank, coef[0], icpt[0])
