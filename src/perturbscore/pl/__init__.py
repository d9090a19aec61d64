"""Plots.

Every function takes ``ax=None``, returns the Figure, and never shows or saves it (except the ``save_*``
helpers, which write PNGs for the CLI).
"""

from __future__ import annotations

from ._evaluation import plot_mae_vs_k, plot_pred_vs_true, plot_ranking
from ._programs import plot_enrichment, plot_heatmap, plot_top_genes
from ._save import save_figure, save_run_plots
from ._training import figure1, plot_training_curves

__all__ = [
    "figure1",
    "plot_enrichment",
    "plot_heatmap",
    "plot_mae_vs_k",
    "plot_pred_vs_true",
    "plot_ranking",
    "plot_top_genes",
    "plot_training_curves",
    "save_figure",
    "save_run_plots",
]
