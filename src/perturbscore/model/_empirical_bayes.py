"""Empirical Bayes for a knockout's state mix: a feature-regressed prior plus the label counts of its cells.

Plain numpy (scikit-learn only for k-NN). Shapes: ``P`` knockouts, ``C`` states, ``D`` pooled feature dims,
``T`` targets, ``S`` posterior draws.

* :class:`~perturbscore.model.FeatureRegression` (in :mod:`._feature_regression`): the prior's regression.
* :func:`posterior_distance`: the posterior median (and spread) of ``d(q, Q)`` over
  ``q ~ Dirichlet(counts + a * prior)``. The plug-in ``d(E[q], Q)`` is biased low (TV is convex), and the
  median is what minimises the expected absolute error.
* :func:`choose_strength`: the prior's strength ``a`` (pseudo-cells) and the posterior's tempering, chosen on
  simulated k-cell draws of the training knockouts, each with a cross-fitted prior (no knockout sees its own
  label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
