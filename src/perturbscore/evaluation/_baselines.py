"""Honest baselines for predicting ``d(q(P), Q)`` of held-out perturbations.

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
``empirical_    counts plus ``a`` pseudo-cells of a feature-regressed prior; the     ``counts``,
bayes``         distance is the posterior median of ``d(q, Q)``                     ``features``
``train_mean``  the mean training ``q(P)`` (unseen gene, no cells)                  nothing
``ridge``       ridge regression from window-mean gene features (CV-tuned)          ``features``
``pcr``         ridge on the leading principal directions of every gene's features ``features``
``knn``         k-nearest-neighbour regression from the same features (CV-tuned)   ``features``
``oracle``      the true proportions given at construction (e.g. simulator truth)  ``index``
==============  ==================================================================  ==============
"""

from __future__ import annotations

import logging

import numpy as np

from .._errors import InputError
from .._utils import as_rng
from ..model import N_POSTERIOR, N_SIM, FeatureRegression, choose_strength, posterior_distance, simulate_draws
from ._baseline_base import _RNG, Baseline, _check_props, _Opt
from ._feature_baselines import KNNFeatureBaseline, PCRFeatureBaseline, RidgeFeatureBaseline, _pool_features, _seed
from ._metrics import normalise, sample_targets, tv_distance

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "Baseline",
    "EmpiricalBaseline",
    "EmpiricalBayesBaseline",
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
        self,
        train_props: np.ndarray,
        *,
        train_counts: _Opt = None,
        train_features: _Opt = None,
        all_features: _Opt = None,
        rng: _RNG = None,
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
        """Simulate k-cell label counts of training perturbations, with leave-one-out priors and targets."""
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


class EmpiricalBayesBaseline(Baseline):
    """The k cells' label counts plus ``a`` pseudo-cells of a mix regressed from the gene's features.

    The prior is ridge or PCR from window-mean features (or the training mean), whichever K-fold CV on the
    training knockouts prefers, each with its preprocessing, penalty and rank tuned
    (:class:`perturbscore.model.FeatureRegression`, ``"auto"``). The strength ``a`` is chosen on simulated
    ``k``-cell label draws of the training knockouts (``k`` in ``ks``, 0 included: no cells), each scored with
    the knockout's cross-fitted prior, so no knockout sees its own label. The distance is the posterior
    median of ``d(q, Q)`` over ``q ~ Dirichlet(t * (counts + a * prior))``, not ``d`` of the posterior mean (which
    TV's convexity biases low), with the tempering ``t`` (1: the posterior; ``inf``: its mean) chosen with ``a``;
    ``a = 0`` (the empirical label mix) is among the candidates. Without features the
    prior is the training mean. Needs ``counts`` (none: sequence only) and ``features``.

    Parameters
    ----------
    ks
        Cells per simulated draw when ``a`` is chosen.
    n_sim
        Simulated draws per training knockout and ``k``.
    alpha
        Target noise (as in training and evaluation).
    n_draws
        Posterior draws behind each distance.

    Attributes
    ----------
    strength_
        The chosen ``a``.
    temper_
        The chosen tempering of the posterior (``inf``: the distance of the posterior mean).
    grid_mae_
        MAE of every candidate ``(tempering, strength)``.
    prior_setting_
        The chosen prior regression, in words.
    cross_fitted_prior_
        ``(P, C)`` out-of-fold priors of the training knockouts.
    """

    name = "empirical_bayes"
    needs = ("counts", "features")

    def __init__(
        self,
        *,
        ks: tuple[int, ...] = (0, 2, 5, 10, 25, 60),
        n_sim: int = N_SIM,
        alpha: float = 0.05,
        n_draws: int = N_POSTERIOR,
    ) -> None:
        if not ks or min(ks) < 0 or n_sim < 1 or n_draws < 1:
            raise InputError(f"need ks >= 0, n_sim >= 1 and n_draws >= 1, got ks={ks}, n_sim={n_sim}")
        self.ks, self.n_sim, self.alpha, self.n_draws = (
            tuple(int(k) for k in ks),
            int(n_sim),
            float(alpha),
            int(n_draws),
        )

    def fit(
        self,
        train_props: np.ndarray,
        *,
        train_counts: _Opt = None,
        train_features: _Opt = None,
        all_features: _Opt = None,
        rng: _RNG = None,
    ) -> EmpiricalBayesBaseline:
        """Fit the prior on the training knockouts and choose its strength.

        ``train_counts`` (``(P, C)`` label counts of all cells) makes the simulated draws sample cells without
        replacement as an evaluation does; without it they are multinomial. ``all_features`` (every gene's, no
        labels) give PCR its basis.
        """
        super().fit(train_props)
        props = self.train_props_
        n = props.shape[0]
        if n < 2:
            raise InputError("the empirical_bayes baseline needs at least 2 training perturbations")
        seed = _seed(rng)
        if train_features is None:
            self.prior_model_ = None
            self.cross_fitted_prior_ = (props.sum(axis=0) - props) / (n - 1)
            self.prior_setting_ = "training mean (no features)"
        else:
            x = _pool_features(train_features, self.name)
            if x.shape[0] != n:
                raise InputError(f"train_features has {x.shape[0]} genes but train_props has {n}")
            pool = None if all_features is None else _pool_features(all_features, self.name)
            self.prior_model_ = FeatureRegression("auto").fit(x, props, all_features=pool, rng=seed)
            self.cross_fitted_prior_ = self.prior_model_.cross_fitted()
            self.prior_setting_ = self.prior_model_.chosen_.describe()
        if train_counts is None:
            pools = np.round(props * 1e6).astype(np.int64)  # effectively multinomial draws
        else:
            pools = np.asarray(train_counts, dtype=np.int64)
            if pools.shape != props.shape:
                raise InputError(f"train_counts has shape {pools.shape} but train_props has {props.shape}")
        draws = simulate_draws(
            pools, self.cross_fitted_prior_, self.ks, n_sim=self.n_sim, target_noise=self.alpha,
            rng=np.random.default_rng(seed),
        )  # fmt: skip
        self.strength_, self.temper_, self.grid_mae_ = choose_strength(draws, rng=seed)
        logger.info(
            "empirical_bayes baseline: prior %s, strength a=%.3g, temper %.3g",
            self.prior_setting_, self.strength_, self.temper_,
        )  # fmt: skip
        return self

    def prior(self, features: _Opt, n: int) -> np.ndarray:
        """Return the prior mixes ``(n, C)`` (the training mean without features or a feature prior)."""
        self._fitted()
        if self.prior_model_ is None or features is None:
            return np.tile(self.prior_, (n, 1))
        return self.prior_model_.predict(_pool_features(features, self.name))

    def _inputs(self, counts: _Opt, features: _Opt) -> tuple[np.ndarray, np.ndarray]:
        self._fitted()
        if counts is None and features is None:
            raise InputError("the empirical_bayes baseline needs counts=(n, states) and/or features=(n, W, D)")
        n = len(counts) if counts is not None else len(np.asarray(features))
        c = self.prior_.size
        counts = np.zeros((n, c)) if counts is None else np.atleast_2d(np.asarray(counts, dtype=np.float64))
        if counts.shape[1] != c or np.any(counts < 0):
            raise InputError(f"counts must be non-negative (n, {c}) label counts, got {counts.shape}")
        return counts, self.prior(features, n)

    def predict_proportions(self, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None) -> np.ndarray:
        """Return posterior-mean mixes ``(counts + a * prior) / (k + a)``; no cells: the prior."""
        counts, prior = self._inputs(counts, features)
        post = counts + self.strength_ * prior
        total = post.sum(axis=1, keepdims=True)
        return np.where(total > 0, post / np.maximum(total, 1e-300), prior)

    def predict_distance(
        self, Q: np.ndarray, *, counts: _Opt = None, features: _Opt = None, index: _Opt = None
    ) -> np.ndarray:
        """Return the posterior median of ``d(q, Q)``; ``Q`` ``(C,)``, ``(n, C)`` or ``(n, T, C)``."""
        counts, prior = self._inputs(counts, features)
        return posterior_distance(counts, prior, self.strength_, Q, n_draws=self.n_draws, temper=self.temper_, rng=0)[0]


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
        self,
        train_props: np.ndarray,
        *,
        train_counts: _Opt = None,
        train_features: _Opt = None,
        all_features: _Opt = None,
        rng: _RNG = None,
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


#: Every baseline class by its name (``BASELINES[name]().fit(...)``).
BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls
    for cls in (
        EmpiricalBaseline,
        ShrunkBaseline,
        EmpiricalBayesBaseline,
        TrainMeanBaseline,
        RidgeFeatureBaseline,
        PCRFeatureBaseline,
        KNNFeatureBaseline,
        OracleBaseline,
    )
}
"""Baseline classes by name: ``empirical``, ``shrunk``, ``empirical_bayes``, ``train_mean``, ``ridge``, ``pcr``,
``knn``, ``oracle``."""
