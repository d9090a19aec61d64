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

import numpy as np

from .._errors import InputError
from .._utils import as_rng
from ._baseline_base import _RNG, Baseline, _check_props, _Opt
from ._feature_baselines import KNNFeatureBaseline, PCRFeatureBaseline, RidgeFeatureBaseline
from ._metrics import normalise, sample_targets, tv_distance

logger = logging.getLogger(__name__)

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
