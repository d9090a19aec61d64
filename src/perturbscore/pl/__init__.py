"""Plots. Every function takes ``ax=None``, returns the Figure, and never shows or saves it."""

from __future__ import annotations

from ._evaluation import plot_mae_vs_k, plot_pred_vs_true, plot_ranking
from ._training import figure1, plot_training_curves

__all__ = [
    "figure1",
    "plot_mae_vs_k",
    "plot_pred_vs_true",
    "plot_ranking",
    "plot_training_curves",
]
