"""``evaluate`` on an AnnData: the paired evaluation of :mod:`perturbscore.evaluation`, stored where users look.

:func:`perturbscore.evaluation.evaluate` works on a :class:`~perturbscore.data.Screen` and returns the
``eval.json`` dict. This wrapper reads an AnnData (or a path) with the usual keys, returns the results as a
tidy table (one row per method, metric and cell count), keeps the dict on the model (``model.evaluation``,
which scoring reads to decide whether genes scored from sequence alone can be ranked) and in
``adata.uns[key_added]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data import GeneFeatures, Screen
from ..evaluation import BASELINE_LABELS, DEFAULT_KS, MODEL_LABELS, summarise
from ..evaluation import evaluate as evaluate_screen
from ._data import h5_safe, resolve_screen, target_adata

if TYPE_CHECKING:
    import anndata as ad

    from ..model import PerturbScoreModel

#: Default ``key_added`` of :func:`evaluate`.
EVALUATION_KEY = "perturbscore_evaluation"
EVALUATION_COLUMNS = ["method", "kind", "label", "metric", "k", "mean", "sd", "n_runs"]


def evaluate(
    model: PerturbScoreModel,
    data: Screen | ad.AnnData | str | os.PathLike[str],
    *,
    features: GeneFeatures | str | os.PathLike[str] | None = None,
    ks: tuple[int, ...] = DEFAULT_KS,
    n_resamples: int = 30,
    rng: int = 1000,
    progress: bool = False,
    perturbation_key: str | None = None,
    state_key: str | None = None,
    control: str | None = None,
    layer: str | None = None,
    key_added: str = EVALUATION_KEY,
    copy: bool = False,
) -> pd.DataFrame | ad.AnnData:
    """Evaluate ``model`` and the honest baselines on the model's held-out (validation) knockouts.

    Parameters
    ----------
    model
        A fitted :class:`~perturbscore.model.PerturbScoreModel`.
    data
        The screen it was trained on: an AnnData, an ``.h5ad``/``.zarr`` path or a :class:`Screen`.
    features
        Gene features (path or :class:`GeneFeatures`), for the sequence path and the feature baselines.
    ks
        Cells per sample to evaluate.
    n_resamples
        Resamples of cells and targets.
    rng
        Seed of the resamples.
    progress
        Show a progress bar.
    perturbation_key, state_key, control, layer
        How to read an AnnData or path (default: the keys the model was trained with, else the challenge
        layout's).
    key_added
        An AnnData gets ``adata.uns[key_added]``: ``table`` (the returned DataFrame), ``results`` (the
        ``eval.json`` dict) and ``params``.
    copy
        Write into a copy of the AnnData and return that copy instead of the table.

    Returns
    -------
    pandas.DataFrame or anndata.AnnData
        One row per method, metric and ``k`` (cells per sample; empty for metrics without cells):
        ``method, kind`` (``model``/``baseline``), ``label``, ``metric, k, mean, sd, n_runs``; the full results
        dict is in ``df.attrs["results"]`` (and ``model.evaluation``). With ``copy=True``, the annotated copy.
    """
    screen = resolve_screen(data, model, perturbation_key=perturbation_key, state_key=state_key, control=control,
                            layer=layer, features=features)  # fmt: skip
    assert screen is not None
    results = evaluate_screen(model, screen, ks=tuple(ks), n_resamples=n_resamples, rng=rng, progress=progress)
    model.evaluation = results
    table = evaluation_table(results)
    table.attrs["results"] = results
    adata = target_adata(data, copy=copy)
    if adata is not None:
        params = {"ks": list(ks), "n_resamples": int(n_resamples), "rng": int(rng), "n_validation": len(model.split.get("val", []))}  # fmt: skip
        plain_table = table.copy()
        plain_table.attrs = {}
        adata.uns[key_added] = {"table": plain_table, "results": h5_safe(results), "params": h5_safe(params)}
    return adata if copy and adata is not None else table


def evaluation_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Turn ``eval.json`` results into a tidy table: one row per method, metric and ``k``.

    Parameters
    ----------
    results
        Evaluation results (the ``eval.json`` schema).

    Returns
    -------
    pandas.DataFrame
        Columns ``method, kind, label, metric, k`` (nullable int), ``mean, sd, n_runs``. Each held-out
        knockout's own error (``knockout_mae_cells``, ``knockout_mae_sequence``) is not a row here; it stays
        in ``results``.
    """
    rows = []
    for group, kind, labels in (("models", "model", MODEL_LABELS), ("baselines", "baseline", BASELINE_LABELS)):
        for method, entry in (results.get(group) or {}).items():
            for metric, value in (entry or {}).items():
                if metric.startswith("knockout_"):  # per knockout, not per method: kept in ``results``
                    continue
                for name, k, values in _values(metric, value):
                    mean, sd = summarise(values)
                    n = int(np.size(values)) if values is not None else 0
                    rows.append((method, kind, labels.get(method, method), name, k, mean, sd, n))
    df = pd.DataFrame(rows, columns=EVALUATION_COLUMNS)
    df["k"] = df["k"].astype("Int64")
    return df


def _values(metric: str, value: Any) -> list[tuple[str, int | None, Any]]:
    """``(metric, k, per-run values)`` rows of one entry: per-``k`` dicts, nested dicts, or plain values."""
    if isinstance(value, Mapping):
        keys = list(value)
        if keys and all(str(k).lstrip("-").isdigit() for k in keys):
            return [(metric, int(k), v) for k, v in value.items()]
        return [(f"{metric}_{sub}", None, v) for sub, v in value.items() if not isinstance(v, Mapping)]
    if isinstance(value, list | tuple | int | float | np.number):
        return [(metric, None, value)]
    return []
