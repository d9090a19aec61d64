"""The baseline interface shared by every honest baseline (:data:`perturbscore.evaluation.BASELINES`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._errors import InputError
from ._metrics import normalise, tv_distance

_Opt = np.ndarray | None
_RNG = np.random.Generator | int | None


def _check_props(train_props: np.ndarray) -> np.ndarray:
    props = np.asarray(train_props, dtype=np.float64)
    if props.ndim != 2 or props.shape[0] == 0:
        raise InputError(f"train_props must be a non-empty (perturbations, states) array, got shape {props.shape}")
    out = normalise(props)
    exact = np.isclose(props.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    out[exact] = props[exact]  # keep proportions that already sum to 1 bit-for-bit (the oracle must score 0)
    return out


class Baseline:
    """Base class: fit on training perturbations, predict proportions and distances for others."""

    name: ClassVar[str] = ""
    #: Inputs ``predict_proportions`` needs: any of ``"counts"``, ``"features"``, ``"index"``.
    needs: ClassVar[tuple[str, ...]] = ()

    def fit(
        self,
        train_props: np.ndarray,
        *,
        train_counts: np.ndarray | None = None,
        train_features: np.ndarray | None = None,
        all_features: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> Baseline:
        """Fit on training ``q(P)`` ``(P, C)`` and, for the feature baselines, their features ``(P, W, D)``.

        ``train_counts`` (``(P, C)`` label counts of all cells) is read by the empirical-Bayes baseline's
        simulated draws; ``all_features`` (every gene's features, no labels) by the baselines with a PCA basis.
        Every baseline accepts both so all share one call. ``rng`` seeds simulations and CV folds.
        """
        self.train_props_ = _check_props(train_props)
        self.prior_ = self.train_props_.mean(axis=0)  # (C,)
        return self

    def predict_proportions(
        self, *, counts: np.ndarray | None = None, features: np.ndarray | None = None, index: np.ndarray | None = None
    ) -> np.ndarray:
        """Predicted state proportions ``(n, C)`` for ``n`` held-out perturbations."""
        raise NotImplementedError

    def predict_distance(
        self,
        Q: np.ndarray,
        *,
        counts: np.ndarray | None = None,
        features: np.ndarray | None = None,
        index: np.ndarray | None = None,
    ) -> np.ndarray:
        """Predicted ``d(q(P), Q)``: TV between the predicted proportions and targets ``Q`` ``(n, C)`` or ``(C,)``."""
        return tv_distance(self.predict_proportions(counts=counts, features=features, index=index), Q)

    def _fitted(self) -> None:
        if not hasattr(self, "train_props_"):
            raise InputError(f"the {self.name} baseline is not fitted; call .fit(train_props) first")
