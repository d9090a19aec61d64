"""Label-level metrics: distances, sampled targets, prediction quality, statistic stability.

Everything here is plain numpy and works on proportions or label counts, never on expression or
on the model, so the same functions score the learned model and every baseline.

Shapes: ``P`` perturbations, ``C`` states, ``T`` targets, ``R`` resamples, ``m`` statistic dims.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from .._errors import InputError
from .._utils import as_rng
from ..data._sampling import sample_targets as _sampler_targets
from ..data._sampling import tv as _tv

logger = logging.getLogger(__name__)

__all__ = [
    "bootstrap_label_samples",
    "l1_distance",
    "normalise",
    "pred_mae",
    "recognition_r2",
    "sample_targets",
    "spearman_per_target",
    "stability",
    "topk_hit_rate",
    "tv_distance",
]


# -- distances ------------------------------------------------------------------------------------
def tv_distance(p: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Total-variation distance ``d(p, Q) = 0.5 * sum_c |p_c - Q_c|`` along the last axis.

    Parameters
    ----------
    p, Q
        Proportion vectors ``(..., C)``; leading axes broadcast against each other.

    Returns
    -------
    Distances of the broadcast leading shape, in ``[0, 1]`` for proportion vectors.
    """
    p, Q = np.asarray(p, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    if p.shape[-1] != Q.shape[-1]:
        raise InputError(
            f"proportions have {p.shape[-1]} states but the target has {Q.shape[-1]}; align the state order"
        )
    return _tv(p, Q)


def l1_distance(p: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """L1 distance ``sum_c |p_c - Q_c|`` (= 2 TV, in ``[0, 2]``): the challenge's and the seed's scale."""
    return 2.0 * tv_distance(p, Q)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rescale non-negative rows ``(..., C)`` to sum to 1; raises on a negative entry or an all-zero row."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(x < 0) or not np.all(np.isfinite(x)):
        raise InputError("proportions/counts must be finite and non-negative; check the state counts")
    total = x.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise InputError("a row of proportions/counts sums to zero; every perturbation needs at least one cell")
    return x / total


# -- targets --------------------------------------------------------------------------------------
def sample_targets(
    train_props: np.ndarray, n: int, *, alpha: float = 0.05, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Sample targets ``Q = normalise(q(P') + u)``, ``P'`` a random training perturbation, ``u ~ U(0, alpha)^C``.

    Parameters
    ----------
    train_props
        ``q(P)`` of the training perturbations, ``(P, C)``.
    n
        Number of targets.
    alpha
        Noise scale; ``0`` returns exact training mixes (the seed's validation targets).
    rng
        Generator or seed.

    Returns
    -------
    ``(n, C)`` targets, rows summing to 1.
    """
    train_props = np.asarray(train_props, dtype=np.float64)
    if train_props.ndim != 2 or train_props.shape[0] == 0:
        raise InputError(f"train_props must be a non-empty (P, C) array, got shape {train_props.shape}")
    if alpha < 0 or n < 0:
        raise InputError(f"need alpha >= 0 and n >= 0, got alpha={alpha}, n={n}")
    normalise(train_props)  # validates: finite, non-negative, no empty rows
    return _sampler_targets(train_props, n, alpha=alpha, rng=as_rng(rng))  # the sampler's own draw


# -- prediction quality ---------------------------------------------------------------------------
def pred_mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error between predicted and true distances (any matching shapes; NaNs ignored)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise InputError(f"predicted distances {pred.shape} and true distances {true.shape} differ in shape")
    return float(np.nanmean(np.abs(pred - true)))


def _check_tp(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.atleast_2d(np.asarray(pred, float)), np.atleast_2d(np.asarray(true, float))
    if pred.shape != true.shape or pred.ndim != 2:
        raise InputError(f"pred and true must both be (targets, perturbations); got {pred.shape} and {true.shape}")
    return pred, true


def spearman_per_target(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Spearman correlation across perturbations, one per target.

    Computed as the Pearson correlation of average ranks, which is exactly
    :func:`scipy.stats.spearmanr`, vectorised over targets.

    Parameters
    ----------
    pred, true
        Predicted and true distances, ``(T, P)``.

    Returns
    -------
    ``(T,)`` correlations; NaN where either row is constant (no ranking to compare).
    """
    pred, true = _check_tp(pred, true)
    rp = rankdata(pred, axis=1)  # (T, P)
    rt = rankdata(true, axis=1)
    rp -= rp.mean(axis=1, keepdims=True)
    rt -= rt.mean(axis=1, keepdims=True)
    denom = np.sqrt((rp**2).sum(axis=1) * (rt**2).sum(axis=1))
    out = np.full(pred.shape[0], np.nan)
    ok = denom > 0
    out[ok] = (rp * rt).sum(axis=1)[ok] / denom[ok]
    return out


def topk_hit_rate(pred: np.ndarray, true: np.ndarray, *, k: int = 1) -> float:
    """Share of targets whose truly closest perturbation is among the ``k`` predicted closest.

    Ties in the truth count as a hit when any truly closest perturbation is in the predicted top ``k``.

    Parameters
    ----------
    pred, true
        Predicted and true distances, ``(T, P)`` (smaller = closer to the target).
    k
        Size of the predicted shortlist, ``1 <= k <= P``.
    """
    pred, true = _check_tp(pred, true)
    if not 1 <= k <= pred.shape[1]:
        raise InputError(f"top-k needs 1 <= k <= number of perturbations ({pred.shape[1]}), got k={k}")
    top = np.argsort(pred, axis=1, kind="stable")[:, :k]  # (T, k)
    best_in_top = np.take_along_axis(true, top, axis=1).min(axis=1)
    return float(np.mean(np.isclose(best_in_top, true.min(axis=1), rtol=0, atol=1e-12)))


def stability(stats: np.ndarray) -> float:
    """Share of a statistic's variance that lies between perturbations.

    ``sum_j Var_P(mean_R s[:, P, j]) / sum_j Var_{R,P}(s[:, :, j])`` (population variances, so the
    law of total variance keeps it in ``[0, 1]``): 1 when every resample of a perturbation gives the
    same statistic, about 0 when perturbations are indistinguishable from resampling noise.

    Parameters
    ----------
    stats
        ``(R, P, m)`` statistics for ``R`` resamples of ``P`` perturbations (``(R, P)`` is read as ``m = 1``).

    Returns
    -------
    The ratio; NaN when the statistic is constant everywhere.
    """
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim == 2:
        stats = stats[..., None]  # (R, P, 1)
    if stats.ndim != 3 or stats.shape[0] < 1 or stats.shape[1] < 2:
        raise InputError(f"stability needs (resamples, perturbations >= 2, dims) statistics, got shape {stats.shape}")
    between = stats.mean(axis=0).var(axis=0).sum()  # (P, m) -> (m,) -> scalar
    total = stats.reshape(-1, stats.shape[-1]).var(axis=0).sum()  # (R*P, m) -> scalar
    return float(between / total) if total > 0 else float("nan")


def recognition_r2(pred: np.ndarray, true: np.ndarray) -> float:
    """Recognition R²: ``1 - sum (pred - true)^2 / sum (true - mean_P true)^2`` over all dims.

    Parameters
    ----------
    pred, true
        ``(P, m)`` statistics predicted from features and measured from cells.

    Returns
    -------
    R² (1 for a perfect prediction, 0 for predicting the mean); NaN when ``true`` is constant.
    """
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise InputError(f"recognition prediction {pred.shape} and statistic {true.shape} differ in shape")
    if true.ndim == 1:
        pred, true = pred[:, None], true[:, None]  # (P, 1)
    ss_tot = ((true - true.mean(axis=0)) ** 2).sum()
    return float(1.0 - ((pred - true) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


# -- resampling -----------------------------------------------------------------------------------
def bootstrap_label_samples(
    state_codes_per_pert: Sequence[np.ndarray],
    k: int,
    n_resamples: int,
    *,
    n_states: int | None = None,
    replace: bool = True,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """State counts of ``k`` cells drawn from each perturbation, ``n_resamples`` times.

    With ``replace=True`` cells are drawn with replacement (a bootstrap; counts are multinomial
    with the perturbation's ``q(P)``). With ``replace=False`` they are drawn without replacement,
    except for a perturbation with fewer than ``k`` cells, which is then drawn *with* replacement
    (logged) so every perturbation still yields a ``k``-cell sample; drop such perturbations
    beforehand if that is not wanted.

    Parameters
    ----------
    state_codes_per_pert
        For each perturbation, the integer state codes of its cells.
    k
        Cells per sample (>= 1).
    n_resamples
        Number of resamples ``R``.
    n_states
        Number of states ``C``; default: the largest code + 1.
    replace
        Sample with replacement (see above).
    rng
        Generator or seed.

    Returns
    -------
    ``(R, P, C)`` integer counts; each ``[r, p]`` sums to ``k``.
    """
    if k < 1 or n_resamples < 1:
        raise InputError(f"need k >= 1 cells and n_resamples >= 1, got k={k}, n_resamples={n_resamples}")
    codes = [np.asarray(c, dtype=np.int64).ravel() for c in state_codes_per_pert]
    for p, c in enumerate(codes):
        if c.size == 0:
            raise InputError(f"perturbation #{p} has no cells; drop it before sampling")
        if c.min() < 0:
            raise InputError(f"perturbation #{p} has a negative state code; codes must index the state list")
    C = n_states if n_states is not None else max(int(c.max()) for c in codes) + 1
    if any(int(c.max()) >= C for c in codes):
        raise InputError(f"a state code is >= n_states={C}; pass the full number of states")
    rng = as_rng(rng)
    out = np.empty((n_resamples, len(codes), C), dtype=np.int64)  # (R, P, C)
    small = 0
    for p, c in enumerate(codes):
        colors = np.bincount(c, minlength=C)
        if replace or c.size < k:
            small += int(not replace)
            out[:, p] = rng.multinomial(k, colors / c.size, size=n_resamples)
        else:
            out[:, p] = rng.multivariate_hypergeometric(colors, k, size=n_resamples)
    if small:
        logger.info("%d perturbation(s) have fewer than %d cells and were sampled with replacement", small, k)
    return out
