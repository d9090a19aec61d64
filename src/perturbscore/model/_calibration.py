"""The calibrated distance: the learned statistic blended with empirical Bayes, and a conformal interval.

The number a fitted model reports for a knockout with ``k`` cells (``k = 0``: from sequence alone) is

    ``d = lam(k) * d_model + (1 - lam(k)) * d_eb``,  ``lam(k) = w / (w + k + a)``,

where ``d_model`` is the distance head ``H`` on the (sequence-fused) statistic, and ``d_eb`` the posterior
median of ``d(q, Q)`` over ``q ~ Dirichlet(counts + a * prior(g))``: the ``k`` cells' label counts plus ``a``
pseudo-cells of a mix regressed from the gene's features (:mod:`._empirical_bayes`). ``w = w(k)`` is how many
cells the learned statistic's reading is worth: ``w_sequence`` with no cells, ``w_cells * (k / 10) ** slope``
with ``k`` cells (``slope < 1``, so the head's share falls to 0 as ``k`` grows). The number is empirical Bayes
where ``w = 0``, tends to the empirical label mix's distance as ``k`` grows, and with no cells is the better (by
held-out error) of ``T``'s reading and the feature prior, or a mix of both.

Who fits what: the prior regression and ``a`` on the training knockouts (cross-fitted priors: no knockout
sees its own label); the weights on knockouts the network did not train on (the validation split), from
``k``-cell draws of their cells. With ten or so such knockouts the least-error weights are noisy, so of the
settings within one standard error of the best the one that leaves the head the most share at few cells and
the least at many is kept (:data:`BLEND_RULE`): empirical Bayes takes over where it is clearly better, not where
it is better by chance, and counting takes over as cells accumulate. The 95 % interval is split-conformal: quantiles,
per ``k``, of the residuals ``d_true - d`` divided by the empirical-Bayes posterior's spread, from the
same draws with weights fitted without the residual's own knockout (leave-one-knockout-out). A validation
knockout asked about again (by an evaluation) gets the weights and quantiles fitted without it.

:class:`Calibration` is plain numbers, saved as JSON beside the model's weights.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Screen, draw_rows, sample_targets
from ._empirical_bayes import (
    N_POSTERIOR,
    N_SIM,
    STRENGTH_KS,
    FeatureRegression,
    choose_strength,
    clip_normalise,
    pool_features,
    posterior_distance,
    simulate_draws,
    tv,
)

if TYPE_CHECKING:
    from ._model import PerturbScoreModel

logger = logging.getLogger(__name__)

#: Cells per draw the blend weights and the interval quantiles are fitted at (0: sequence only).
CALIBRATION_KS = (0, 1, 2, 3, 5, 10, 25, 60, 150)
#: Candidate weights ``w`` (cells' worth of the learned statistic); ``inf``: the learned statistic alone.
WEIGHT_GRID = np.concatenate([[0.0], np.logspace(-1, 4, 41), [np.inf]])
#: Candidate cells' weights at ``k = 10`` (finite: with cells the head's share must fall to 0 as ``k`` grows).
CELL_WEIGHT_GRID = np.concatenate([[0.0], np.logspace(-1, 4, 26)])
#: Candidate slopes of ``log w`` in ``log k``.
SLOPES = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 0.9)
#: Interval level.
LEVEL = 0.95
#: Floor of the posterior spread that scales residuals (a spread of 0 would make every residual infinite).
MIN_SCALE = 1e-3
#: Calibration file beside ``model.safetensors``.
CALIBRATION_FILE = "calibration.json"


@dataclass
class CalibratedDistance:
    """Calibrated distances with their 95 % interval and the head's own number, each ``(n,)`` or ``(n, T)``."""

    distance: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    head: np.ndarray
    empirical_bayes: np.ndarray


@dataclass
class Calibration:
    """Numbers that turn the head's distance into the calibrated one (see the module docstring).

    Attributes
    ----------
    train_mean
        ``(C,)`` mean mix of the training knockouts (the prior of a gene without features).
    prior_weights, prior_bias
        The feature prior ``clip_normalise(pooled features @ W + b)``: ``W`` ``(D, C)`` (``None``: no
        features, the prior is ``train_mean``) and ``b`` ``(C,)``.
    prior_setting
        The chosen feature regression, in words, and ``prior_cv_error`` its CV error (mean TV).
    strength
        ``a``: the prior's worth in cells.
    ks
        ``(K,)`` cells at which the weights were fitted and the residual quantiles measured (0 first).
    blend
        ``(w_sequence, w_cells, slope)``: the learned statistic's worth in cells with no cells (``inf``: the head
        alone), at ``k = 10``, and the slope of ``log w`` in ``log k``.
    lo, hi
        ``(K,)`` lower and upper conformal quantiles of the scaled residuals.
    held_out
        Knockout -> fold of the knockouts the weights were fitted on.
    fold_weights
        ``(F, 3)`` the ``blend`` fitted without each fold; ``fold_lo``, ``fold_hi`` ``(F, K)`` the quantiles of the
        other folds' residuals.
    fitted_on
        ``"validation"`` or ``"train"`` (a split without validation knockouts: in-sample weights).
    level
        Interval coverage asked for.
    n_draws
        Posterior draws behind each empirical-Bayes distance.
    temper
        Tempering of the posterior whose median is the empirical-Bayes distance (see
        :func:`~perturbscore.model.posterior_distance`), chosen with ``strength``.
    """

    train_mean: np.ndarray
    prior_weights: np.ndarray | None
    prior_bias: np.ndarray
    prior_setting: str
    prior_cv_error: float
    strength: float
    ks: np.ndarray
    blend: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    held_out: dict[str, int] = field(default_factory=dict)
    fold_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    fold_lo: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    fold_hi: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    fitted_on: str = "validation"
    level: float = LEVEL
    n_draws: int = N_POSTERIOR
    temper: float = 1.0

    # -- the pieces ---------------------------------------------------------------------------------------
    def prior(self, features: np.ndarray | None, n: int) -> np.ndarray:
        """Return the prior mix ``(n, C)`` of ``n`` genes from their features (the training mean without)."""
        if features is None or self.prior_weights is None:
            return np.tile(self.train_mean, (n, 1))
        x = pool_features(features)
        if x.shape[1] != self.prior_weights.shape[0]:
            raise ValueError(f"features have dim {x.shape[1]}; the calibration's prior reads {len(self.prior_weights)}")
        return clip_normalise(x @ self.prior_weights + self.prior_bias, self.train_mean)

    def empirical_bayes(
        self, counts: np.ndarray, features: np.ndarray | None, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the posterior median and spread of ``d(q, Q)`` given label counts ``(n, C)`` and features."""
        counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        prior = self.prior(features, len(counts))
        med, sd = posterior_distance(
            counts, prior, self.strength, targets, n_draws=self.n_draws, temper=self.temper, rng=0
        )
        if self.temper != 1.0:  # residuals are scaled by the untempered posterior's spread
            sd = posterior_distance(counts, prior, self.strength, targets, n_draws=min(self.n_draws, 128), rng=1)[1]
        return med, sd

    def _folds(self, genes: Sequence[str] | None, n: int) -> np.ndarray:
        """Fold of each gene (-1: not a held-out knockout of the fit, or no folds)."""
        if genes is None or not len(self.fold_weights):
            return np.full(n, -1)
        return np.array([self.held_out.get(str(g), -1) for g in genes], dtype=np.int64)

    def weight(self, k: np.ndarray, folds: np.ndarray | None = None) -> np.ndarray:
        """``lam(k)``: the learned statistic's share for knockouts with ``k`` cells ``(n,)``."""
        k = np.asarray(k, dtype=np.float64)
        folds = np.full(k.shape, -1) if folds is None else folds
        lam = np.empty(k.shape)
        for f in np.unique(folds):
            sel = folds == f
            lam[sel] = _blend_share(self.blend if f < 0 else self.fold_weights[f], k[sel], self.strength)
        return lam

    def quantiles(self, k: np.ndarray, folds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper quantiles of the scaled residuals at ``k`` cells ``(n,)`` (interpolated in ``log1p k``)."""
        k = np.asarray(k, dtype=np.float64)
        folds = np.full(k.shape, -1) if folds is None else folds
        lo, hi = np.empty(k.shape), np.empty(k.shape)
        xs = np.log1p(self.ks[1:])
        for f in np.unique(folds):
            sel = folds == f
            qlo, qhi = (self.lo, self.hi) if f < 0 else (self.fold_lo[f], self.fold_hi[f])
            kk = k[sel]
            lo[sel] = np.where(kk > 0, np.interp(np.log1p(kk), xs, qlo[1:]), qlo[0])
            hi[sel] = np.where(kk > 0, np.interp(np.log1p(kk), xs, qhi[1:]), qhi[0])
        return lo, hi

    def combine(
        self,
        head: np.ndarray,
        counts: np.ndarray | None,
        features: np.ndarray | None,
        targets: np.ndarray,
        *,
        genes: Sequence[str] | None = None,
    ) -> CalibratedDistance:
        """Blend the head's distances with empirical Bayes and add the conformal interval.

        Parameters
        ----------
        head
            ``(n,)`` or ``(n, T)`` distances of the head ``H`` for the same knockouts and targets.
        counts
            ``(n, C)`` label counts of the cells behind each statistic (``None``: no cells, sequence only).
        features
            ``(n, W, D)`` gene features (``None``: the training mean is the prior).
        targets
            ``(C,)``, ``(n, C)`` or ``(n, T, C)`` targets, as ``head`` is shaped.
        genes
            Knockout names: a held-out knockout of the fit gets the weights and quantiles fitted without it.
        """
        head = np.asarray(head, dtype=np.float64)
        n = head.shape[0]
        counts = np.zeros((n, len(self.train_mean))) if counts is None else np.atleast_2d(np.asarray(counts, float))
        q = np.asarray(targets, dtype=np.float64)
        if head.ndim == 2 and q.ndim < 3:  # (T, C) targets for every knockout
            q = np.broadcast_to(q.reshape(1, -1, q.shape[-1]), (n, head.shape[1], q.shape[-1]))
        med, sd = self.empirical_bayes(counts, features, q)
        k = counts.sum(axis=1)
        folds = self._folds(genes, n)
        shape = (-1,) + (1,) * (head.ndim - 1)
        lam = self.weight(k, folds).reshape(shape)
        d = np.clip(lam * head + (1 - lam) * med, 0.0, 1.0)
        qlo, qhi = self.quantiles(k, folds)
        scale = np.maximum(sd, MIN_SCALE)
        lo = np.clip(d + qlo.reshape(shape) * scale, 0.0, 1.0)
        hi = np.clip(d + qhi.reshape(shape) * scale, 0.0, 1.0)
        return CalibratedDistance(d, lo, hi, head, med)

    # -- persistence ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (``inf`` weights as the string ``"inf"``)."""

        def num(x: float) -> float | str:
            return "inf" if np.isinf(x) else float(x)

        return {
            "train_mean": self.train_mean.tolist(),
            "prior_weights": None if self.prior_weights is None else self.prior_weights.tolist(),
            "prior_bias": self.prior_bias.tolist(),
            "prior_setting": self.prior_setting,
            "prior_cv_error": float(self.prior_cv_error),
            "strength": float(self.strength),
            "ks": self.ks.tolist(),
            "blend": [num(w) for w in self.blend],
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
            "held_out": dict(self.held_out),
            "fold_weights": [[num(w) for w in row] for row in self.fold_weights],
            "fold_lo": self.fold_lo.tolist(),
            "fold_hi": self.fold_hi.tolist(),
            "fitted_on": self.fitted_on,
            "level": float(self.level),
            "n_draws": int(self.n_draws),
            "temper": num(self.temper),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict`'s output; raises ``ValueError`` on a malformed description."""

        def arr(key: str, ndim: int) -> np.ndarray:
            out = np.asarray(
                [[float(v) for v in row] for row in data[key]] if ndim == 2 else [float(v) for v in data[key]],
                dtype=np.float64,
            )
            if ndim == 2 and out.size == 0:
                out = out.reshape(0, 0)
            return out

        try:
            weights = data.get("prior_weights")
            out = cls(
                train_mean=arr("train_mean", 1),
                prior_weights=None if weights is None else arr("prior_weights", 2),
                prior_bias=arr("prior_bias", 1),
                prior_setting=str(data["prior_setting"]),
                prior_cv_error=float(data["prior_cv_error"]),
                strength=float(data["strength"]),
                ks=arr("ks", 1),
                blend=arr("blend", 1),
                lo=arr("lo", 1),
                hi=arr("hi", 1),
                held_out={str(g): int(f) for g, f in dict(data.get("held_out") or {}).items()},
                fold_weights=arr("fold_weights", 2),
                fold_lo=arr("fold_lo", 2),
                fold_hi=arr("fold_hi", 2),
                fitted_on=str(data.get("fitted_on", "validation")),
                level=float(data.get("level", LEVEL)),
                n_draws=int(data.get("n_draws", N_POSTERIOR)),
                temper=float(data.get("temper", 1.0)),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a calibration description ({err!r})") from err
        c = len(out.train_mean)
        k = len(out.ks)
        ok = (
            len(out.prior_bias) == c
            and (out.prior_weights is None or (out.prior_weights.ndim == 2 and out.prior_weights.shape[1] == c))
            and len(out.lo) == k
            and len(out.hi) == k
            and len(out.blend) == 3
            and out.fold_weights.shape[0] == out.fold_lo.shape[0]
            and (not len(out.fold_weights) or out.fold_weights.shape[1] == 3)
            and k >= 2
            and out.ks[0] == 0
            and out.fold_lo.shape == out.fold_hi.shape
            and out.fold_lo.shape[0] == len(out.fold_weights)
            and (not len(out.fold_weights) or out.fold_lo.shape[1] == k)
            and all(0 <= f < len(out.fold_weights) for f in out.held_out.values())
        )
        if not ok:
            raise ValueError("a calibration description with inconsistent shapes")
        return out


# -- fitting ------------------------------------------------------------------------------------------------
def _conformal(residuals: np.ndarray, level: float) -> tuple[float, float]:
    """Finite-sample split-conformal lower and upper quantiles of ``residuals`` at ``level``."""
    r = np.sort(np.asarray(residuals, dtype=np.float64).ravel())
    n = r.size
    if n == 0:
        return -np.inf, np.inf
    tail = (1 - level) / 2
    lo = int(np.floor(tail * (n + 1))) - 1
    hi = int(np.ceil((1 - tail) * (n + 1))) - 1
    return (float(r[lo]) if lo >= 0 else -np.inf), (float(r[hi]) if hi < n else np.inf)


def _share(w: np.ndarray | float, k: np.ndarray | float, strength: float) -> np.ndarray:
    """Return the head's share ``w / (w + k + a)`` (1 where ``w`` is infinite)."""
    w, k = np.asarray(w, dtype=np.float64), np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(w), 1.0, w / np.maximum(w + k + strength, 1e-12))


def _blend_share(blend: np.ndarray, k: np.ndarray, strength: float) -> np.ndarray:
    """Return the head's share at ``k`` cells for ``blend = (w_sequence, w_cells, slope)``."""
    k = np.asarray(k, dtype=np.float64)
    w_cells = blend[1] * (np.maximum(k, 1e-12) / 10.0) ** blend[2]
    return np.where(k > 0, _share(w_cells, k, strength), _share(blend[0], k, strength))


#: How a blend setting is picked among the candidates: ``"best"`` (the least held-out error) or ``"head"`` (of the
#: settings within one paired standard error of the best, over knockouts, the one the head is most preferred in:
#: the most share without cells; with cells, the most share at the fewest cells less the share at the most).
BLEND_RULE = "head"


def _pick(scores: np.ndarray, preference: np.ndarray) -> int:
    """Return the chosen setting from ``(settings, knockouts)`` scores and each setting's preference."""
    mean = scores.mean(axis=1)
    best = int(np.argmin(mean))
    if BLEND_RULE == "best" or scores.shape[1] < 2:
        return best
    diff = scores - scores[best]
    se = diff.std(axis=1, ddof=1) / np.sqrt(scores.shape[1])
    ok = np.flatnonzero(diff.mean(axis=1) <= se + 1e-12)
    return int(ok[np.argmax(preference[ok])])


def _per_knockout(err: np.ndarray, ko: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean error per (knockout, group): ``(knockouts, groups)``."""
    kos, ko_i = np.unique(ko, return_inverse=True)
    cell = ko_i * n_groups + group
    total = np.bincount(cell, err, minlength=len(kos) * n_groups)
    count = np.maximum(np.bincount(cell, minlength=len(kos) * n_groups), 1)
    return (total / count).reshape(len(kos), n_groups)


def _fit_blend(rows: _Rows, sel: np.ndarray, strength: float) -> np.ndarray:
    """Fit ``(w_sequence, w_cells, slope)`` on the rows ``sel`` by grid search.

    ``w_sequence`` is scored by the sequence-only rows' mean absolute error; ``w_cells`` and ``slope`` by the mean
    over ``k`` of each ``k``'s error relative to empirical Bayes' own (so many cells, where errors are small,
    weigh as much as few). Each knockout's errors are averaged first, and :data:`BLEND_RULE` picks the setting.
    """
    out = np.zeros(3)
    seq, cells = sel & (rows.k == 0), sel & (rows.k > 0)
    if seq.any():
        head, eb, truth, ko = rows.head[seq], rows.eb[seq], rows.truth[seq], rows.ko[seq]
        zero = np.zeros(len(ko), dtype=np.int64)
        lam = _share(WEIGHT_GRID, 0.0, strength)
        scores = np.stack([
            _per_knockout(np.abs(np.clip(s * head + (1 - s) * eb, 0, 1) - truth), ko, zero, 1)[:, 0] for s in lam
        ])  # fmt: skip
        out[0] = WEIGHT_GRID[_pick(scores, lam)]
    if cells.any():
        head, eb, k, truth, ko = rows.head[cells], rows.eb[cells], rows.k[cells], rows.truth[cells], rows.ko[cells]
        levels, group = np.unique(k, return_inverse=True)
        base = np.bincount(group, np.abs(eb - truth)) / np.bincount(group)
        settings: list[tuple[float, float]] = []
        cell_scores: list[np.ndarray] = []
        preference: list[float] = []
        for slope in SLOPES:
            for w in CELL_WEIGHT_GRID:
                lam = _share(w * (k / 10.0) ** slope, k, strength)
                err = np.abs(np.clip(lam * head + (1 - lam) * eb, 0, 1) - truth)
                cell_scores.append((_per_knockout(err, ko, group, len(levels)) / np.maximum(base, 1e-12)).mean(axis=1))
                settings.append((float(w), float(slope)))
                at_levels = _share(w * (levels / 10.0) ** slope, levels, strength)
                preference.append(float(at_levels[0] - at_levels[-1]))  # the head at few cells, counting at many
        out[1:] = settings[_pick(np.stack(cell_scores), np.asarray(preference))]
    return out


@dataclass
class _Rows:
    """Held-out draws: one row per (knockout, resample, target) and ``k``."""

    ko: np.ndarray
    k: np.ndarray
    head: np.ndarray
    eb: np.ndarray
    sd: np.ndarray
    truth: np.ndarray


def _held_out_rows(
    model: PerturbScoreModel,
    screen: Screen,
    genes: list[str],
    calibration: Calibration,
    feats: np.ndarray | None,
    pool: np.ndarray,
    *,
    ks: Sequence[int],
    n_resamples: int,
    n_targets: int,
    target_noise: float,
    rng: np.random.Generator,
) -> _Rows:
    """Head and empirical-Bayes distances of ``k``-cell draws of ``genes`` against targets, with the truth."""
    ids = [screen.index_of(g) for g in genes]
    props = screen.proportions[ids]  # (P, C)
    index = [screen.cell_index[i] for i in ids]
    model_feats = feats if (feats is not None and model.has_recognizer) else None
    seq_stat = model.statistic_from_sequence(model_feats) if model_feats is not None else None
    out: dict[str, list[np.ndarray]] = {key: [] for key in ("ko", "k", "head", "eb", "sd", "truth")}
    n = len(ids)
    for k in ks:
        reps = 1 if k == 0 else n_resamples
        for _ in range(reps):
            q = sample_targets(pool, n_targets * (n_resamples if k == 0 else 1), alpha=target_noise, rng=rng)
            q3 = np.broadcast_to(q, (n, *q.shape))  # (P, T, C)
            if k == 0:
                if seq_stat is None:
                    continue
                counts = np.zeros((n, screen.n_states))
                head = model.predict_distance(seq_stat, q3, n_cells=0)
            else:
                rows, used = draw_rows(index, np.full(n, k), rng)
                seg = np.repeat(np.arange(n), used)
                counts = np.zeros((n, screen.n_states))
                np.add.at(counts, (seg, screen.state_codes[rows]), 1)
                stat = model.statistic(screen.cells(rows, front=model.net.front), groups=seg)
                post = model.posterior_statistic(stat, model_feats, used)
                head = model.predict_distance(post, q3, n_cells=used)
            med, sd = calibration.empirical_bayes(counts, feats, q3)
            t = head.shape[1]
            out["ko"].append(np.repeat(np.arange(n), t))
            out["k"].append(np.repeat(counts.sum(axis=1), t))
            out["head"].append(head.ravel())
            out["eb"].append(med.ravel())
            out["sd"].append(sd.ravel())
            out["truth"].append(tv(props[:, None, :], q3).ravel())
    return _Rows(**{key: np.concatenate(v) if v else np.zeros(0) for key, v in out.items()})


def fit_calibration(
    model: PerturbScoreModel,
    screen: Screen,
    *,
    train: Sequence[str],
    held_out: Sequence[str],
    seed: int = 0,
    ks: Sequence[int] = CALIBRATION_KS,
    n_resamples: int = 16,
    n_targets: int = 8,
    target_noise: float = 0.05,
    n_folds: int | None = None,
) -> Calibration | None:
    """Fit the calibration of a trained model (see the module docstring).

    Parameters
    ----------
    model
        The trained model.
    screen
        The screen it was trained on.
    train
        Training knockouts (the control is skipped): the prior regression and its strength are fitted on them.
    held_out
        Knockouts the network did not train on (the validation split); with fewer than 2, the training
        knockouts stand in (in-sample weights, recorded as ``fitted_on="train"``).
    seed
        Seed of the CV folds, the draws and the targets.
    ks
        Cells per draw for the weights and the quantiles (must start with 0).
    n_resamples, n_targets
        Draws per knockout and ``k``, and targets per draw.
    target_noise
        Noise of the targets, as in training and evaluation.
    n_folds
        Folds of the held-out knockouts for cross-fitted weights and residuals (default: one per knockout;
        0 or 1: residuals in-sample).

    Returns
    -------
    The calibration, or ``None`` when there are fewer than 2 training knockouts.
    """
    train = [g for g in train if g != screen.control]
    if len(train) < 2:
        logger.warning("fewer than 2 training knockouts: the model's distances stay uncalibrated")
        return None
    rng = np.random.default_rng(seed)
    tr_ids = [screen.index_of(g) for g in train]
    props, state_counts = screen.proportions[tr_ids], screen.state_counts[tr_ids]
    fitted_on = "validation" if len(held_out) >= 2 else "train"
    held = list(held_out) if fitted_on == "validation" else train
    feats_ok = screen.features is not None and all(g in screen.features for g in [*train, *held])
    train_mean = props.mean(axis=0)
    if feats_ok:
        assert screen.features is not None
        reg = FeatureRegression("auto").fit(
            screen.feature_block(train), props, all_features=screen.features.values, rng=seed
        )
        cf_prior = reg.cross_fitted()
        weights, bias = reg.linear_map()
        setting, cv_error = reg.chosen_.describe(), reg.cv_error_
    else:
        n = len(train)
        cf_prior = (props.sum(axis=0) - props) / (n - 1)
        weights, bias, setting = None, train_mean.copy(), "training mean (no features)"
        cv_error = float(tv(cf_prior, props).mean())
    draws = simulate_draws(state_counts, cf_prior, STRENGTH_KS, n_sim=N_SIM, target_noise=target_noise, rng=rng)
    strength, temper, _ = choose_strength(draws, rng=seed)
    ks_arr = np.asarray(sorted(set(ks) | {0}), dtype=np.float64)
    cal = Calibration(
        train_mean=train_mean, prior_weights=weights, prior_bias=bias, prior_setting=setting,
        prior_cv_error=float(cv_error), strength=strength, ks=ks_arr, blend=np.zeros(3),
        lo=np.zeros(len(ks_arr)), hi=np.zeros(len(ks_arr)), fitted_on=fitted_on, temper=temper,
    )  # fmt: skip
    feats = screen.feature_block(held) if feats_ok else None
    rows = _held_out_rows(
        model, screen, held, cal, feats, props, ks=ks_arr.astype(int).tolist(), n_resamples=n_resamples,
        n_targets=n_targets, target_noise=target_noise, rng=rng,
    )  # fmt: skip

    def fit_weights(sel: np.ndarray) -> np.ndarray:
        return _fit_blend(rows, sel, strength)

    def residuals(sel: np.ndarray, w: np.ndarray) -> np.ndarray:
        lam = _blend_share(w, rows.k[sel], strength)
        d = np.clip(lam * rows.head[sel] + (1 - lam) * rows.eb[sel], 0, 1)
        return (rows.truth[sel] - d) / np.maximum(rows.sd[sel], MIN_SCALE)

    everything = np.ones(rows.k.shape, dtype=bool)
    cal.blend = fit_weights(everything)
    n_held = len(held)
    folds = np.full(n_held, -1)
    n_folds = n_held if n_folds is None else n_folds
    if n_folds >= 2 and n_held >= max(n_folds, 4) and fitted_on == "validation":
        folds = rng.permutation(n_held) % n_folds
    scaled = np.zeros(rows.k.shape)
    if folds.max() >= 0:
        fold_w = []
        for f in range(n_folds):
            inside = folds[rows.ko] == f
            w = fit_weights(~inside)
            fold_w.append(w)
            scaled[inside] = residuals(inside, w)
        cal.fold_weights = np.asarray(fold_w, dtype=np.float64)
        cal.held_out = {g: int(f) for g, f in zip(held, folds, strict=True)}
    else:
        scaled = residuals(everything, cal.blend)

    def quantiles(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.zeros(len(ks_arr)), np.zeros(len(ks_arr))
        for j, k in enumerate(ks_arr):
            at = sel & (rows.k == k)
            lo[j], hi[j] = _conformal(scaled[at], cal.level)
        # a k without residuals (e.g. no sequence path): the neighbouring k's quantiles
        for arr in (lo, hi):
            bad = ~np.isfinite(arr)
            if bad.all():
                arr[:] = 0.0
            elif bad.any():
                arr[bad] = np.interp(np.flatnonzero(bad), np.flatnonzero(~bad), arr[~bad])
        return lo, hi

    cal.lo, cal.hi = quantiles(everything)
    if len(cal.fold_weights):
        per_fold = [quantiles(folds[rows.ko] != f) for f in range(n_folds)]
        cal.fold_lo = np.stack([p[0] for p in per_fold])
        cal.fold_hi = np.stack([p[1] for p in per_fold])
    logger.info(
        "calibration: prior %s (CV error %.4f), strength a=%.3g, temper %.3g, head's share %s at k=%s (%s knockouts)",
        setting, cv_error, strength, temper, np.round(_blend_share(cal.blend, ks_arr, strength), 2).tolist(),
        ks_arr.astype(int).tolist(), fitted_on,
    )  # fmt: skip
    return cal
