"""Evaluation plots: MAE vs cells per sample, predicted vs true distance, and a ranking of genes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._errors import InputError
from ..tl._evaltable import BASELINE_LABELS, MODEL_LABELS, summarise
from ._training import _new_ax

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_mae_vs_k", "plot_pred_vs_true", "plot_ranking"]

_SOURCE_COLOURS = {"cells": "C0", "sequence": "C1"}


def _entries(results: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any], bool]]:
    """``(name, label, metrics, is_model)`` for every model and baseline in ``results``."""
    out = []
    for group, labels in (("models", MODEL_LABELS), ("baselines", BASELINE_LABELS)):
        for name, entry in (results.get(group) or {}).items():
            out.append((name, labels.get(name, name), entry or {}, group == "models"))
    return out


def plot_mae_vs_k(results: Mapping[str, Any], *, ax: Axes | None = None) -> Figure:
    """Prediction MAE against cells per sample for every model and baseline (log x axis).

    Cell-based methods (``mae_cells``) are lines with error bars (sd over training seeds);
    sequence-only methods (``mae_sequence``, which use no cells) are horizontal dotted lines: the
    bar a cell-based method must beat.

    Parameters
    ----------
    results
        Evaluation results (schema in :mod:`perturbscore.tl._evaltable`).
    ax
        Axes to draw into; a new figure when ``None``.

    Returns
    -------
    The figure holding the axes.
    """
    if not isinstance(results, Mapping):
        raise InputError(f"results must be a dict (the content of eval.json), got {type(results).__name__}")
    ax = _new_ax(ax, figsize=(8.0, 4.0))
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
            ax.axhline(mean, ls=":", color=colour, lw=1.5, label=f"{label}, sequence only")
            if sd > 0:
                ax.axhspan(mean - sd, mean + sd, color=colour, alpha=0.1, lw=0)
    ax.set_xscale("log")
    if all_ks:
        ax.set_xticks(sorted(all_ks), [str(k) for k in sorted(all_ks)])
        ax.minorticks_off()
    ax.set_xlabel("cells per sample k")
    ax.set_ylabel("prediction MAE (TV)")
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax.figure


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
    ax = _new_ax(ax, figsize=(4.0, 4.0))
    top = max(float(np.nanmax(np.r_[pred, true, 0.0])) * 1.05, 1e-3)
    ax.plot([0, top], [0, top], color="0.5", lw=1, ls="--", zorder=0)
    ax.scatter(true, pred, s=8, alpha=min(1.0, max(0.1, 200 / max(pred.size, 1))), lw=0)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    ax.set_xlabel("true distance d(q(P), Q)")
    ax.set_ylabel("predicted distance")
    mae = float(np.nanmean(np.abs(pred - true))) if pred.size else float("nan")
    ax.set_title(f"{label + ': ' if label else ''}MAE {mae:.3f}", fontsize="medium")
    return ax.figure


def plot_ranking(df: pd.DataFrame, *, top: int = 20, ax: Axes | None = None) -> Figure:
    """Horizontal bars of predicted distance, with interval whiskers, for the ``top`` closest genes.

    Parameters
    ----------
    df
        Columns ``gene``, ``pred`` (predicted distance to the target), ``lo``, ``hi`` (interval)
        and ``source`` (``cells`` or ``sequence``; colours the bars).
    top
        Number of genes to show (lowest predicted distance first, at the top).
    ax
        Axes to draw into; a new figure when ``None``.

    Returns
    -------
    The figure holding the axes.
    """
    missing = [c for c in ("gene", "pred", "lo", "hi", "source") if c not in df.columns]
    if missing:
        raise InputError(f"ranking table lacks column(s) {missing}; pass the scores table (gene, pred, lo, hi, source)")
    if top < 1:
        raise InputError(f"top must be >= 1, got {top}")
    shown = df.sort_values("pred", kind="stable").head(top).iloc[::-1]  # best at the top of the axes
    ax = _new_ax(ax, figsize=(5.0, 0.25 * len(shown) + 1.2))
    y = np.arange(len(shown))
    pred = shown["pred"].to_numpy(float)
    lo, hi = shown["lo"].to_numpy(float), shown["hi"].to_numpy(float)
    xerr = np.vstack([np.clip(pred - lo, 0, None), np.clip(hi - pred, 0, None)])  # (2, n)
    colours = [_SOURCE_COLOURS.get(str(s), "C2") for s in shown["source"]]
    ax.barh(y, pred, xerr=np.nan_to_num(xerr), color=colours, ecolor="0.3", capsize=2, height=0.7)
    ax.set_yticks(y, shown["gene"].astype(str).tolist(), fontsize="small")
    ax.set_xlabel("predicted distance to target (TV)")
    ax.set_xlim(left=0)
    from matplotlib.patches import Patch

    sources = list(dict.fromkeys(str(s) for s in shown["source"]))
    ax.legend(
        handles=[Patch(color=_SOURCE_COLOURS.get(s, "C2"), label=s) for s in sources],
        frameon=False,
        fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    return ax.figure
