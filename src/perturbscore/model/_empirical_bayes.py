"""Empirical Bayes for a knockout's state mix: a feature-regressed prior plus the label counts of its cells.

Plain numpy (scikit-learn only for k-NN). Shapes: ``P`` knockouts, ``C`` states, ``D`` pooled feature dims,
``T`` targets, ``S`` posterior draws.

* :class:`FeatureRegression`: ridge, PCR or k-NN from window-mean gene features to the mix, its preprocessing
  (raw or standardised features), penalty, PCA rank or neighbour count chosen by K-fold CV on the training
  knockouts, as a careful user would tune it; ``"auto"`` also competes ridge, PCR and the training mean.
* :func:`posterior_distance`: the posterior median (and spread) of ``d(q, Q)`` over
  ``q ~ Dirichlet(counts + a * prior)``. The plug-in ``d(E[q], Q)`` is biased low (TV is convex), and the
  median is what minimises the expected absolute error.
* :func:`choose_strength`: the prior's strength ``a`` (pseudo-cells) and the posterior's tempering, chosen on
  simulated k-cell draws of the training knockouts, each with a cross-fitted prior (no knockout sees its own
  label).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Ridge penalties every linear candidate is tried with.
ALPHAS = np.logspace(-3, 4, 15)
#: PCA ranks tried (below the feature dimension, then the full dimension).
RANKS = (2, 4, 8, 16, 32, 64)
#: Neighbour counts tried by k-NN.
NEIGHBOURS = (1, 2, 3, 5, 8, 12, 20)
#: Fewest genes per feature dimension for a PCA basis of every gene's features (else plain ridge).
BASIS_MIN_GENES_PER_DIM = 2.0
#: Prior strengths (pseudo-cells) the empirical-Bayes fit chooses from; 0 is the empirical label mix.
STRENGTHS = np.concatenate([[0.0], np.logspace(-1, 3, 25)])
#: Tempering of the posterior the fit chooses from (see :func:`posterior_distance`); ``inf``: the posterior mean.
TEMPERS = (1.0, 2.0, 4.0, 8.0, np.inf)
#: Cells per simulated draw when the strength is chosen (0 = no cells: the prior alone).
STRENGTH_KS = (0, 2, 5, 10, 25, 60)
#: Simulated draws per training knockout and ``k`` when the strength is chosen.
N_SIM = 12
#: Posterior draws behind each distance estimate.
N_POSTERIOR = 256
#: Most entries of one block of posterior distances (knockouts x draws x targets x states).
MAX_BLOCK = 4_000_000
#: Genes per chunk when window features are averaged (a genome's features do not fit in float64 at once).
POOL_CHUNK = 2048


def pool_features(features: np.ndarray) -> np.ndarray:
    """Average gene features over windows: ``(n, W, D)`` -> ``(n, D)`` float64; ``(n, D)`` passes through."""
    x = np.asarray(features)
    if x.ndim == 2:
        return x.astype(np.float64)
    if x.ndim != 3:
        raise ValueError(f"gene features must be (genes, windows, dim) or (genes, dim), got shape {x.shape}")
    out = np.empty((x.shape[0], x.shape[2]), dtype=np.float64)
    for i in range(0, x.shape[0], POOL_CHUNK):
        out[i : i + POOL_CHUNK] = x[i : i + POOL_CHUNK].mean(axis=1, dtype=np.float64)
    return out


def clip_normalise(pred: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Clip rows at 0 and renormalise; a row with nothing left becomes ``fallback`` ``(C,)``."""
    pred = np.clip(np.asarray(pred, dtype=np.float64), 0.0, None)
    dead = pred.sum(axis=1) <= 0
    pred[dead] = fallback
    return pred / pred.sum(axis=1, keepdims=True)


def tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation ``0.5 * sum |p - q|`` over the last axis."""
    return 0.5 * np.abs(p - q).sum(axis=-1)


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


# -- the posterior distance ------------------------------------------------------------------------------
def posterior_distance(
    counts: np.ndarray,
    prior: np.ndarray,
    strength: float,
    targets: np.ndarray,
    *,
    n_draws: int = N_POSTERIOR,
    temper: float = 1.0,
    rng: int | np.random.Generator = 0,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior median and standard deviation of ``d(q, Q)`` over ``q ~ Dirichlet(counts + a * prior)``.

    Parameters
    ----------
    counts
        ``(n, C)`` label counts of each knockout's cells (a row of zeros: no cells, the prior alone).
    prior
        ``(n, C)`` prior mixes (or ``(C,)`` one for all).
    strength
        ``a``, the prior's worth in cells. With ``a = 0`` and no cells the prior mix itself is used.
    targets
        ``(C,)``, ``(n, C)`` or ``(n, T, C)`` target mixes.
    n_draws
        Posterior draws per knockout.
    temper
        Multiplies the Dirichlet's concentration: the posterior mean stays, its spread shrinks by
        ``1 / sqrt(temper)`` (``inf``: no spread, the distance of the posterior mean).
    rng
        Seed (or generator) of the draws; the same seed gives the same estimate.
    chunk
        Most knockouts per block of draws (fewer when a block would exceed :data:`MAX_BLOCK` entries).

    Returns
    -------
    ``(n,)`` (or ``(n, T)`` for 3-D targets) posterior medians and standard deviations of the distance.
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    n, c = counts.shape
    prior = np.broadcast_to(np.asarray(prior, dtype=np.float64), (n, c))
    q = np.asarray(targets, dtype=np.float64)
    squeeze = q.ndim < 3
    q = q[None, None, :] if q.ndim == 1 else (q[:, None, :] if q.ndim == 2 else q)
    q = np.broadcast_to(q, (n, q.shape[1], c))  # (n, T, C)
    gen = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    med, sd = np.empty(q.shape[:2]), np.empty(q.shape[:2])
    chunk = max(1, min(chunk, MAX_BLOCK // (n_draws * q.shape[1] * c)))
    for i in range(0, n, chunk):
        conc = counts[i : i + chunk] + float(strength) * prior[i : i + chunk]  # (b, C)
        if np.isinf(temper):
            mean = conc / np.maximum(conc.sum(axis=1, keepdims=True), 1e-300)
            mean[conc.sum(axis=1) <= 0] = prior[i : i + chunk][conc.sum(axis=1) <= 0]
            med[i : i + chunk], sd[i : i + chunk] = tv(mean[:, None, :], q[i : i + chunk]), 0.0
            continue
        draws = gen.standard_gamma(np.broadcast_to(temper * conc[:, None, :], (len(conc), n_draws, c)))  # (b, S, C)
        total = draws.sum(axis=-1, keepdims=True)
        mean = conc / np.maximum(conc.sum(axis=1, keepdims=True), 1e-300)
        none = conc.sum(axis=1) <= 0
        mean[none] = prior[i : i + chunk][none]
        # a draw that underflows to all zeros (tiny concentrations) stands at the posterior mean
        draws = np.where(total > 0, draws / np.where(total > 0, total, 1.0), mean[:, None, :])
        d = tv(draws[:, :, None, :], q[i : i + chunk, None, :, :])  # (b, S, T)
        med[i : i + chunk], sd[i : i + chunk] = np.median(d, axis=1), d.std(axis=1)
    return (med[:, 0], sd[:, 0]) if squeeze else (med, sd)


# -- choosing the strength on training knockouts -----------------------------------------------------------
@dataclass
class Draws:
    """Simulated k-cell label draws of training knockouts, with cross-fitted priors and targets."""

    owner: np.ndarray  # (N,) training knockout of each draw
    k: np.ndarray  # (N,) cells
    counts: np.ndarray  # (N, C)
    prior: np.ndarray  # (N, C) cross-fitted prior of the owner
    targets: np.ndarray  # (N, C)
    truth: np.ndarray  # (N,) d(q(owner), target)


def simulate_draws(
    state_counts: np.ndarray,
    prior: np.ndarray,
    ks: Sequence[int],
    *,
    n_sim: int,
    target_noise: float,
    rng: np.random.Generator,
) -> Draws:
    """``n_sim`` draws of ``k`` cells' labels per training knockout and ``k`` in ``ks`` (``k = 0``: no cells).

    As an evaluation draws real cells: without replacement from the knockout's labelled cells when it has
    ``k`` or more (hypergeometric), else with replacement (multinomial). Targets are
    ``normalise(q(P') + U(0, target_noise)^C)`` with ``P'`` a random training knockout.
    """
    pools = np.asarray(state_counts, dtype=np.int64)  # (P, C)
    props = pools / np.maximum(pools.sum(axis=1, keepdims=True), 1)
    n_ko = len(pools)
    owner = np.tile(np.repeat(np.arange(n_ko), n_sim), len(ks))
    kk = np.repeat(np.asarray(ks, dtype=np.int64), n_ko * n_sim)
    counts = rng.multinomial(kk, props[owner]).astype(np.float64)
    small = np.flatnonzero((kk > 0) & (kk <= pools[owner].sum(axis=1)))
    for i in small:
        counts[i] = rng.multivariate_hypergeometric(pools[owner[i]], int(kk[i]))
    base = props[rng.integers(0, n_ko, owner.size)] + rng.uniform(0.0, target_noise, (owner.size, props.shape[1]))
    targets = base / base.sum(axis=1, keepdims=True)
    return Draws(owner, kk.astype(np.float64), counts, prior[owner], targets, tv(props[owner], targets))


def choose_strength(
    draws: Draws,
    *,
    grid: np.ndarray = STRENGTHS,
    tempers: Sequence[float] = TEMPERS,
    n_draws: int = 48,
    rng: int = 0,
) -> tuple[float, float, np.ndarray]:
    """Choose the strength ``a`` and tempering whose posterior-median distance errs least on ``draws``.

    The tempering shrinks the posterior's spread: a draw of ``k`` of a knockout's ``n`` cells leaves less
    uncertainty about the mix of those ``n`` cells (what an evaluation scores against) than about the mix that
    generated them, and the draws sample cells as the evaluation does. The search is coordinate-wise (``a`` at
    the middle tempering, then the tempering, then ``a`` again); every candidate uses the same seed of posterior
    draws, so the comparison is not blurred by Monte Carlo noise.

    Returns
    -------
    The strength, the tempering and the ``(len(tempers), len(grid))`` MAE of every candidate tried (NaN: not
    tried).
    """
    mae = np.full((len(tempers), len(grid)), np.nan)

    def err(i: int, j: int) -> float:
        if np.isnan(mae[i, j]):
            med = posterior_distance(
                draws.counts, draws.prior, float(grid[j]), draws.targets, n_draws=n_draws, temper=float(tempers[i]),
                rng=rng,
            )[0]  # fmt: skip
            mae[i, j] = np.abs(med - draws.truth).mean()
        return float(mae[i, j])

    i = len(tempers) // 2
    j = min(range(len(grid)), key=lambda jj: err(i, jj))
    i = min(range(len(tempers)), key=lambda ii: err(ii, j))
    j = min(range(len(grid)), key=lambda jj: err(i, jj))
    return float(grid[j]), float(tempers[i]), mae
