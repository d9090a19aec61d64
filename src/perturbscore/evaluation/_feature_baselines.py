"""Sequence-only baselines: regressions from gene features to ``q(P)`` (ridge, PCR, k-NN), tuned by CV.

Each tunes itself as a careful user would: raw or standardised window-mean features, the penalty (ridge,
PCR), the number of principal directions (PCR; k-NN may also work in a reduced basis) and the neighbour
count (k-NN), all chosen by shuffled K-fold cross-validation on the training genes
(:class:`perturbscore.model.FeatureRegression`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._errors import InputError
from ..model import FeatureRegression
from ._baseline_base import _RNG, Baseline, _Opt


def _pool_features(features: np.ndarray | None, who: str) -> np.ndarray:
    """Mean-pool gene features over windows: ``(n, W, D)`` or ``(n, D)`` -> ``(n, D)``."""
    from ..model import pool_features

    if features is None:
        raise InputError(f"the {who} baseline needs gene features; pass features=(genes, windows, dim)")
    x = np.asarray(features)
    if x.ndim not in (2, 3):
        raise InputError(f"gene features must be (genes, windows, dim) or (genes, dim), got shape {x.shape}")
    x = pool_features(x)
    if not np.all(np.isfinite(x)):
        raise InputError("gene features must be finite")
    return x


def _seed(rng: _RNG) -> int:
    """Return an integer seed for the CV folds (0 when none is given, so a fit is reproducible)."""
    if rng is None:
        return 0
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**31))
    return int(rng)


class _FeatureBaseline(Baseline):
    needs = ("features",)
    kind: ClassVar[str] = ""

    def __init__(self, *, n_folds: int = 5) -> None:
        self.n_folds = int(n_folds)

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

        Only PCR (and k-NN in a reduced basis) reads ``all_features``: their principal directions; the others
        accept it so that every feature baseline shares one call.
        """
        super().fit(train_props)
        x = _pool_features(train_features, self.name)  # (P, D)
        if x.shape[0] != self.train_props_.shape[0]:
            raise InputError(f"train_features has {x.shape[0]} genes but train_props has {self.train_props_.shape[0]}")
        if x.shape[0] < 2:
            raise InputError(f"the {self.name} baseline needs at least 2 training genes with features")
        pool = None if all_features is None else _pool_features(all_features, self.name)
        if pool is not None and pool.shape[1] != x.shape[1]:
            raise InputError(f"all_features have dim {pool.shape[1]} but train_features have dim {x.shape[1]}")
        self.dim_ = x.shape[1]
        self.regression_ = FeatureRegression(self.kind, n_folds=self.n_folds).fit(
            x, self.train_props_, all_features=pool, rng=_seed(rng)
        )
        return self

    @property
    def setting_(self) -> str:
        """The setting CV chose, in words (e.g. ``pcr (raw, rank 16, alpha 3.16)``)."""
        return self.regression_.chosen_.describe()

    @property
    def cv_error_(self) -> float:
        """The chosen setting's CV error (mean TV of the held-out mixes)."""
        return self.regression_.cv_error_

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        self._fitted()
        x = _pool_features(features, self.name)
        if x.shape[1] != self.dim_:
            raise InputError(
                f"features have dim {x.shape[1]} but the {self.name} baseline was fitted on dim {self.dim_}; "
                "use the same feature file"
            )
        return self.regression_.predict(x)


class RidgeFeatureBaseline(_FeatureBaseline):
    """Ridge regression from window-mean gene features to ``q(P)``. Needs ``features``.

    Raw or standardised features and the penalty are chosen by K-fold CV on the training genes; predictions
    are clipped at 0 and renormalised.
    """

    name = "ridge"
    kind = "ridge"

    @property
    def alpha_(self) -> float:
        """The chosen ridge penalty."""
        return float(self.regression_.chosen_.alpha)


class PCRFeatureBaseline(RidgeFeatureBaseline):
    """Principal-component ridge from window-mean features to ``q(P)``, the basis from every gene's features.

    The comparator for ``T``'s all-gene feature basis, given the same information: the principal directions of
    the (raw or standardised) features of ``all_features`` (every gene a user has features for; no labels),
    then ridge on the leading ``r`` directions, with the scaling, ``r`` and the penalty chosen together by
    K-fold CV on the training genes. With fewer than two genes per feature dimension in ``all_features`` (or
    none given) it is plain ridge, i.e. :class:`RidgeFeatureBaseline`.
    """

    name = "pcr"
    kind = "pcr"

    @property
    def rank_(self) -> int:
        """The chosen number of principal directions (the feature dimension when there is no basis)."""
        return int(self.regression_.chosen_.rank) or self.dim_


class KNNFeatureBaseline(_FeatureBaseline):
    """k-nearest-neighbour regression from window-mean features to ``q(P)``. Needs ``features``.

    Raw or standardised features (or their leading principal directions, with ``all_features``) and the
    neighbour count are chosen by K-fold CV on the training genes.
    """

    name = "knn"
    kind = "knn"

    @property
    def n_neighbors_(self) -> int:
        """The chosen number of neighbours."""
        return int(self.regression_.chosen_.neighbours)
