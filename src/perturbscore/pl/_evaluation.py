"""Evaluation plots: MAE vs cells per sample, predicted vs true distance, and a ranking of genes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._errors import InputError
from ..evaluation import summarise
from ._training import _new_ax, _root

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_mae_vs_k", "plot_pred_vs_true", "plot_ranking"]

_SOURCE_COLOURS = {"cells": "C0", "sequence": "C1"}
#: Plain names of the methods of an evaluation, as the report names them.
METHOD_LABELS = {
    "perturbscore": "this model",
    "full": "this model (with sequence)",
    "seed_baseline": "model without sequence network",
    "empirical": "observed labels",
    "shrunk": "observed labels, pulled to the average",
    "empirical_bayes": "observed labels, pulled to a sequence prior",
    "train_mean": "average training knockout",
    "ridge": "ridge on sequence",
    "pcr": "principal-component regression on sequence",
    "knn": "most similar genes by sequence",
    "oracle": "true mix (simulation only)",
}


def _entries(results: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any], bool]]:
    """``(name, label, metrics, is_model)`` for every model and baseline in ``results``."""
    out = []
    for group in ("models", "baselines"):
        for name, entry in (results.get(group) or {}).items():
            out.append((name, METHOD_LABELS.get(name, name), entry or {}, group == "models"))
    return out


def plot_mae_vs_k(results: Mapping[str, Any], *, ax: Axes | None = None) -> Figure:
    """Prediction MAE against cells per sample for every model and baseline (log x axis).

    Cell-based methods (``mae_cells``) are lines with error bars (sd over training seeds);
    sequence-only methods (``mae_sequence``, which use no cells) are horizontal dotted lines: the
    bar a cell-based method must beat.

    Parameters
    ----------
    results
        Evaluation results (schema in :mod:`perturbscore.evaluation`).
    ax
        Axes to draw into; a new figure when ``None``.

    Returns
    -------
    The figure holding the axes.
    """
    if not isinstance(results, Mapping):
        raise InputError(f"results must be a dict (the content of eval.json), got {type(results).__name__}")
    ax = _new_ax(ax, figsize=(9.5, 4.5))
    all_ks: set[int] = set()
    for i, (_name, label, entry, is_model) in enumerate(_entries(results)):
        colour = f"C{i % 10}"
        by_k = {int(k): v for k, v in (entry.get("mae_cells") or {}).items()}
        if by_k:
            ks = np.array(sorted(by_k))
            all_ks.update(ks.tolist())
            stats = np.array([summarise(by_k[k]) for k in ks])  # (K, 2): mean, sd
            ok = np.isfinite(stats[:, 0])
            style = "-" if is_model else "--"
            ax.errorbar(
                ks[ok],
                stats[ok, 0],
                yerr=stats[ok, 1],
                fmt=style + "o",
                ms=4,
                capsize=3,
                color=colour,
                label=label,
                lw=2 if is_model else 1,
            )
        mean, sd = summarise(entry.get("mae_sequence"))
        if np.isfinite(mean):
            ax.axhline(mean, ls=":", color=colour, lw=1.5, label=f"{label} (no cells)")
            if sd > 0:
                ax.axhspan(mean - sd, mean + sd, color=colour, alpha=0.1, lw=0)
    ax.set_xscale("log")
    if all_ks:
        ax.set_xticks(sorted(all_ks), [str(k) for k in sorted(all_ks)])
        ax.minorticks_off()
    ax.set_xlabel("cells per knockout")
    ax.set_ylabel("prediction error (mean absolute, 0-1)")
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _root(ax)


def plot_pred_vs_true(
    pred: np.ndarray, true: np.ndarray, *, label: str | None = None, ax: Axes | None = None
) -> Figure:
    """Scatter of predicted against true distances, with the diagonal and the MAE.

    Parameters
    ----------
    pred, true
        Predicted and true distances (any matching shapes; flattened).
    label
        Method name for the title.
    ax
        Axes to draw into; a new figure when ``None``.

    Returns
    -------
    The figure holding the axes.
    """
    pred, true = np.asarray(pred, dtype=np.float64).ravel(), np.asarray(true, dtype=np.float64).ravel()
    if pred.shape != true.shape:
        raise InputError(f"pred has {pred.size} values but true has {true.size}; pass matching distances")
    ax = _new_ax(ax, figsize=(4.8, 4.8))
    top = max(float(np.nanmax(np.r_[pred, true, 0.0])) * 1.05, 1e-3)
    ax.plot([0, top], [0, top], color="0.5", lw=1, ls="--", zorder=0)
    ax.scatter(true, pred, s=8, alpha=min(1.0, max(0.1, 200 / max(pred.size, 1))), lw=0)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    ax.set_xlabel("true distance to the target")
    ax.set_ylabel("predicted distance")
    mae = float(np.nanmean(np.abs(pred - true))) if pred.size else float("nan")
    ax.set_title(f"{label + ': ' if label else ''}mean error {mae:.3f}", fontsize="medium")
    return _root(ax)


def plot_ranking(df: pd.DataFrame, *, top: int = 20, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Horizontal bars of predicted distance, with interval whiskers, for the ``top`` closest genes.

    Parameters
    ----------
    df
        Columns ``gene``, ``pred`` (predicted distance to the target), ``lo``, ``hi`` (interval; NaN: none)
        and ``source`` (``cells`` or ``sequence``; colours the bars).
    top
        Number of genes to show (lowest predicted distance first, at the top).
    title
        Axes title (wrapped to the figure's width).
    ax
        Axes to draw into; a new figure when ``None``.

    Returns
    -------
    The figure holding the axes. Only rows with an interval get whiskers (a row without one, e.g. from sequence
    with a single model, gets no zero-width cap).
    """
    from ._programs import MIN_FONT, wrap_title

    missing = [c for c in ("gene", "pred", "lo", "hi", "source") if c not in df.columns]
    if missing:
        raise InputError(f"ranking table lacks column(s) {missing}; pass the scores table (gene, pred, lo, hi, source)")
    if top < 1:
        raise InputError(f"top must be >= 1, got {top}")
    shown = df.sort_values("pred", kind="stable").head(top).iloc[::-1]  # best at the top of the axes
    ax = _new_ax(ax, figsize=(8.5, 0.3 * len(shown) + 1.4))
    y = np.arange(len(shown))
    pred = shown["pred"].to_numpy(float)
    lo, hi = shown["lo"].to_numpy(float), shown["hi"].to_numpy(float)
    colours = [_SOURCE_COLOURS.get(str(s), "C2") for s in shown["source"]]
    ax.barh(y, pred, color=colours, height=0.7)
    has = np.isfinite(lo) & np.isfinite(hi)
    if has.any():
        xerr = np.vstack([np.clip(pred - lo, 0, None), np.clip(hi - pred, 0, None)])[:, has]  # (2, n with interval)
        ax.errorbar(pred[has], y[has], xerr=xerr, fmt="none", ecolor="0.25", capsize=3, lw=1)
    ax.set_yticks(y, shown["gene"].astype(str).tolist(), fontsize=MIN_FONT + 1)
    ax.tick_params(axis="x", labelsize=MIN_FONT)
    ax.set_xlabel("predicted distance to the target (0 = the target's mix; lines: 95% interval)")
    ax.set_xlim(left=0)
    if title:
        wrap_title(ax, title)
    from matplotlib.patches import Patch

    names = {"cells": "from cells", "sequence": "from sequence only"}
    sources = list(dict.fromkeys(str(s) for s in shown["source"]))
    ax.legend(
        handles=[Patch(color=_SOURCE_COLOURS.get(s, "C2"), label=names.get(s, s)) for s in sources],
        frameon=False,
        fontsize=MIN_FONT,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),  # beside the bars: never over a whisker
    )
    return _root(ax)
