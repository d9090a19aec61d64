"""What every model and baseline is evaluated on, and the metrics computed alike for all of them.

The shared resamples (:class:`EvalSetup`: ``k`` cells of every held-out perturbation per resample, and
``T`` targets drawn from the training mixes), the truth they are scored against, and how per-run
metrics are read and gathered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._utils import as_rng
from ..data import Screen, draw_rows, tv
from ._evaltable import DEFAULT_KS
from ._metrics import sample_targets, spearman_per_target, stability, topk_hit_rate


@dataclass
class EvalSetup:
    """The shared resamples: ``samples[k][r] = (rows, used)`` and ``targets[r]`` ``(T, C)``."""

    screen: Screen
    train: list[str]
    val: list[str]
    ks: tuple[int, ...]
    targets: np.ndarray  # (R, T, C)
    samples: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    eval_k: int = 10

    @property
    def val_ids(self) -> list[int]:
        """Screen indices of the held-out perturbations."""
        return [self.screen.index_of(p) for p in self.val]

    @property
    def true_distances(self) -> np.ndarray:
        """``(R, P, T)`` true distances of every held-out perturbation to every target."""
        q = self.screen.proportions[self.val_ids]  # (P, C)
        return tv(q[None, :, None, :], self.targets[:, None, :, :])

    def counts(self, k: int, r: int) -> np.ndarray:
        """Label counts ``(P, C)`` of resample ``r`` at ``k`` cells."""
        rows, used = self.samples[k][r]
        seg = np.repeat(np.arange(len(used)), used)
        out = np.zeros((len(used), self.screen.n_states))
        np.add.at(out, (seg, self.screen.state_codes[rows]), 1)
        return out


def make_setup(
    screen: Screen,
    *,
    train: list[str],
    val: list[str],
    ks: tuple[int, ...] = DEFAULT_KS,
    n_resamples: int = 30,
    n_targets: int = 16,
    target_noise: float = 0.05,
    eval_k: int = 10,
    rng: np.random.Generator | int | None = 0,
) -> EvalSetup:
    """Draw the resampled cells and targets shared by every model and baseline."""
    rng = as_rng(rng)
    pool = screen.proportions[[screen.index_of(p) for p in train if p != screen.control]]
    targets = sample_targets(pool, n_resamples * n_targets, alpha=target_noise, rng=rng)
    setup = EvalSetup(screen, train, val, tuple(ks), targets.reshape(n_resamples, n_targets, -1), eval_k=eval_k)
    index = [screen.cell_index[i] for i in setup.val_ids]
    for k in setup.ks:
        kk = np.full(len(index), k)
        setup.samples[k] = [draw_rows(index, kk, rng) for _ in range(n_resamples)]
    return setup


def mean_spearman(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean Spearman over the rows of ``(T, P)`` arrays; NaN when no row ranks (all tied or constant)."""
    rho = spearman_per_target(pred, true)
    return float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")


def ranking_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Spearman and top-k from ``(R, P, T)`` predictions, over targets and resamples."""
    p = pred.transpose(0, 2, 1).reshape(-1, pred.shape[1])  # (R*T, P)
    t = true.transpose(0, 2, 1).reshape(-1, true.shape[1])
    return {
        "spearman": mean_spearman(p, t),
        "top1": topk_hit_rate(p, t, k=1),
        "top3": topk_hit_rate(p, t, k=min(3, p.shape[1])),
    }


def defined_stability(stats: np.ndarray) -> float:
    """:func:`stability` of ``(R, P, m)`` statistics; NaN for one held-out knockout (nothing to lie between)."""
    return stability(stats) if stats.shape[1] >= 2 else float("nan")


def per_knockout_errors(pred: np.ndarray, true: np.ndarray, knockouts: list[str]) -> dict[str, float]:
    """Mean absolute error of each held-out knockout over resamples and targets (``pred``, ``true``: ``(R, P, T)``).

    Errors of two methods on the same knockouts are paired: their differences, knockout by knockout, say how
    much of a gap between two mean errors is more than the luck of which knockouts were held out.
    """
    err = np.abs(np.asarray(pred) - np.asarray(true)).mean(axis=(0, 2))
    return {str(g): float(e) for g, e in zip(knockouts, err, strict=True)}


def mix_distances(props: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(P, C)`` mixes vs ``(T, C)`` targets -> ``(P, T)`` TV distances."""
    return tv(props[:, None, :], targets[None, :, :])


def truth_proportions(screen: Screen) -> np.ndarray | None:
    """Return the simulator's generating ``q(P)`` aligned to ``screen.perturbations`` (``None`` for real screens)."""
    truth = screen.truth or {}
    if "proportions" not in truth or "perturbations" not in truth:
        return None
    index = {str(p): i for i, p in enumerate(np.asarray(truth["perturbations"]).astype(str))}
    if not all(p in index for p in screen.perturbations):
        return None
    return np.asarray(truth["proportions"], dtype=np.float64)[[index[p] for p in screen.perturbations]]


def append_results(acc: dict, res: dict) -> None:
    """Accumulate one run's metrics into per-seed lists (nested dicts for per-k metrics)."""
    for key, value in res.items():
        if key in ("scatter",):
            continue
        if isinstance(value, dict):
            append_results(acc.setdefault(key, {}), value)
        elif value is not None:
            acc.setdefault(key, []).append(float(value))
