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
the least at many is kept (``BLEND_RULE``): empirical Bayes takes over where it is clearly better, not where
it is better by chance, and counting takes over as cells accumulate. The 95 % interval is split-conformal: quantiles,
per ``k``, of the residuals ``d_true - d`` divided by the empirical-Bayes posterior's spread, from the
same draws with weights fitted without the residual's own knockout (leave-one-knockout-out). A validation
knockout asked about again (by an evaluation) gets the weights and quantiles fitted without it.

:class:`Calibration` is plain numbers, saved as JSON beside the model's weights; :mod:`._calibrate` fits them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._empirical_bayes import N_POSTERIOR, clip_normalise, pool_features, posterior_distance

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
