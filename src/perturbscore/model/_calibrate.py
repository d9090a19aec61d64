"""Fit a :class:`~perturbscore.model.Calibration` from a trained model and its screen.

The feature prior and its strength come from the training knockouts; the blend weights and the conformal
quantiles from ``k``-cell draws of held-out knockouts. See :mod:`perturbscore.model._calibration` for what the numbers mean and how the reported distance uses them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..data import Screen, draw_rows, sample_targets
from ._calibration import MIN_SCALE, Calibration, _blend_share, _share
from ._empirical_bayes import (
    N_SIM,
    STRENGTH_KS,
    choose_strength,
    simulate_draws,
    tv,
)
from ._feature_regression import FeatureRegression

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
