"""Save every plot a run directory can feed as PNGs under ``run_dir/plots`` (atomically, Agg, no pyplot)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Collection, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._errors import InputError
from .._utils import atomic_path
from ..tl import ProgramsResult
from ._evaluation import plot_mae_vs_k, plot_pred_vs_true, plot_ranking
from ._programs import plot_enrichment, plot_heatmap, plot_top_genes
from ._training import plot_training_curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Plot groups of :func:`save_run_plots`.
GROUPS = ("training", "evaluation", "scores", "programs")
DPI = 110
MAX_HEATMAP_ROWS = 80
_LEARNED = ("perturbscore", "full")


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Render ``fig`` to the PNG ``path`` with the Agg canvas (temp file + rename), then clear it.

    Parameters
    ----------
    fig
        A :class:`matplotlib.figure.Figure` (built without pyplot).
    path
        Output ``.png`` path; its folder is created.
    dpi
        Resolution.

    Returns
    -------
    The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attach an Agg canvas: no dependence on pyplot's global backend
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        fig.clear()  # free the artists (the pyplot-free equivalent of plt.close)
    return Path(path)


def save_run_plots(
    run_dir: str | os.PathLike[str],
    *,
    programs: ProgramsResult | None = None,
    eval_results: Mapping[str, Any] | None = None,
    groups: Collection[str] = GROUPS,
    skip_existing: bool = False,
    dpi: int = DPI,
) -> list[Path]:
    """Save the plots of a run as PNGs under ``run_dir/plots``.

    Draws what the run holds: training curves (``metrics.csv``); MAE vs cells per sample and predicted vs
    true distance (``eval_results``, else ``eval.json``); the ranking of the first target with intervals
    (``scores.csv``); program x state, knockout x program and statistic x state heatmaps, top-gene bars and
    the enrichment dot plot (``programs``, else the CSVs :meth:`ProgramsResult.write` wrote).

    Parameters
    ----------
    run_dir
        The run directory.
    programs
        Interpretation results; read from ``run_dir`` when None.
    eval_results
        Evaluation results (the ``eval.json`` schema); read from ``run_dir/eval.json`` when None.
    groups
        Which plots: any of ``"training"``, ``"evaluation"``, ``"scores"``, ``"programs"``.
    skip_existing
        Keep PNGs that already exist instead of redrawing them.
    dpi
        Resolution.

    Returns
    -------
    The PNGs written (existing ones that were skipped are not listed).
    """
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise InputError(f"unknown plot group(s) {sorted(unknown)}; choose from {list(GROUPS)}")
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run directory {str(run)!r} does not exist; pass the folder a training run wrote")
    builders: dict[str, Callable[[], Figure]] = {}
    if "training" in groups:
        builders |= _training(run)
    if "evaluation" in groups:
        builders |= _evaluation(eval_results if eval_results is not None else _read_json(run / "eval.json"))
    if "scores" in groups:
        builders |= _scores(run)
    if "programs" in groups:
        builders |= _programs(programs if programs is not None else ProgramsResult.read(run))
    written = []
    for name, build in builders.items():
        path = run / "plots" / f"{name}.png"
        if skip_existing and path.exists():
            continue
        written.append(save_figure(build(), path, dpi=dpi))
        logger.debug("saved %s", path)
    return written


def _read_json(path: Path) -> Mapping[str, Any] | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _training(run: Path) -> dict[str, Callable[[], Figure]]:
    path = run / "metrics.csv"
    if not path.is_file():
        return {}
    metrics = pd.read_csv(path)
    return {"training_curves": partial(plot_training_curves, metrics, title="training and validation loss")}


def _evaluation(results: Mapping[str, Any] | None) -> dict[str, Callable[[], Figure]]:
    if not results:
        return {}
    out: dict[str, Callable[[], Figure]] = {}
    entries = [e or {} for g in ("models", "baselines") for e in (results.get(g) or {}).values()]
    if any(e.get("mae_cells") or e.get("mae_sequence") is not None for e in entries):
        out["mae_vs_k"] = partial(plot_mae_vs_k, results)
    scatter, label = _scatter(results)
    if scatter is not None:
        k = results.get("eval_k")
        title = f"{label}, {k} cells" if k else label
        out["pred_vs_true"] = partial(plot_pred_vs_true, scatter["pred"], scatter["true"], label=title)
    return out


def _scatter(results: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str]:
    """Return the predicted/true pairs: top-level ``scatter``, else the learned model's own entry."""
    models = results.get("models") or {}
    candidates = [(results.get("scatter"), "this model")]
    candidates += [((models.get(key) or {}).get("scatter"), key) for key in _LEARNED]
    for sc, label in candidates:
        if isinstance(sc, Mapping) and sc.get("pred") and len(sc["pred"]) == len(sc.get("true") or []):
            return sc, label
    return None, ""


def _scores(run: Path) -> dict[str, Callable[[], Figure]]:
    """One ranking plot per target (``ranking_1.png``, ...): its ranked rows, closest first."""
    path = next((run / f for f in ("scores.csv", "scores.parquet") if (run / f).is_file()), None)
    if path is None:
        return {}
    from ..tl import read_scores

    df = read_scores(path)
    pred_col = next((c for c in ("pred_distance", "pred", "predicted_distance", "distance") if c in df.columns), None)
    if pred_col is None or "gene" not in df.columns or df.empty:
        logger.warning("%s has no gene and predicted-distance columns; no ranking plot", path.name)
        return {}
    groups = list(df.groupby("target", sort=False)) if "target" in df.columns else [(None, df)]
    out: dict[str, Callable[[], Figure]] = {}
    for i, (target, sub) in enumerate(groups):
        if "rank" in sub.columns and sub["rank"].notna().any():
            sub = sub[sub["rank"].notna()]  # rows that failed a constraint or were flagged are not ranked
        table = pd.DataFrame({"gene": sub["gene"], "pred": sub[pred_col]})
        table["lo"] = sub["lo"] if "lo" in sub.columns else np.nan
        table["hi"] = sub["hi"] if "hi" in sub.columns else np.nan
        table["source"] = sub["source"] if "source" in sub.columns else "cells"
        title = None if target is None else f"target: {target}"
        out[f"ranking_{i + 1}"] = partial(plot_ranking, table, title=title)
    return out


def _programs(result: ProgramsResult | None) -> dict[str, Callable[[], Figure]]:
    if result is None:
        return {}
    out: dict[str, Callable[[], Figure]] = {}
    heatmaps = (
        ("program_activity_state", result.activity_by_state, "mean program activity per cell state",
         "state", "program", "mean activity"),
        ("program_activity_perturbation", result.activity_by_perturbation,
         "mean program activity per knockout", "program", "knockout", "mean activity"),
        ("stat_state_relation", result.stat_state_relation,
         "knockout summary vs state share (Spearman across knockouts)", "state", "summary entry",
         "Spearman rho"),
    )  # fmt: skip
    for name, df, title, xlabel, ylabel, cbar in heatmaps:
        if df is None or df.empty:
            continue
        shown, note = _heatmap_rows(df)
        out[name] = partial(plot_heatmap, shown, title=title + note, xlabel=xlabel, ylabel=ylabel,
                            colorbar_label=cbar)  # fmt: skip
    if result.top_genes is not None and not result.top_genes.empty:
        out["program_top_genes"] = partial(_top_genes_grid, result.top_genes)
    if result.enrichment is not None:
        out["enrichment"] = partial(plot_enrichment, result.enrichment, title="gene-set enrichment of programs")
    return out


def _heatmap_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """At most :data:`MAX_HEATMAP_ROWS` rows: those farthest from the mean profile when there are more."""
    if len(df) <= MAX_HEATMAP_ROWS:
        return df, ""
    dist = np.linalg.norm(df.to_numpy(dtype=float) - df.to_numpy(dtype=float).mean(0), axis=1)  # (P,)
    keep = np.sort(np.argsort(-dist, kind="stable")[:MAX_HEATMAP_ROWS])
    return df.iloc[keep], f" ({MAX_HEATMAP_ROWS} most distinct of {len(df)})"


def _top_genes_grid(top: pd.DataFrame, *, n: int = 8, ncols: int = 3) -> Figure:
    """One panel of top-gene bars per program, three panels a row: 10 inches wide, printed at full size."""
    from matplotlib.figure import Figure

    programs = list(dict.fromkeys(top["program"].astype(str)))
    ncols = min(ncols, len(programs))
    nrows = math.ceil(len(programs) / ncols)
    fig = Figure(figsize=(10.0, (0.21 * 2 * n + 0.9) * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, program in zip(axes, programs, strict=False):
        plot_top_genes(top, program, ax=ax, n=n)
        ax.set_title(program.replace("_", " "), fontsize=11)
        ax.set_xlabel("weight", fontsize=9)
    for ax in axes[len(programs) :]:
        ax.set_axis_off()
    fig.suptitle(f"Top {n} genes of each sign per program (red: positive weight, blue: negative)", fontsize=12)
    return fig
