"""Score files that say what they scored, and whether genes scored from sequence alone can be ranked.

A score table carries its meaning in ``df.attrs["params"]``: every target's mix and constraints, the states,
how intervals were made, and whether the sequence path was ranked. :func:`write_scores` keeps that with
the table: in the Parquet file's metadata, or in a JSON file beside a CSV (``scores.csv`` ->
``scores.json``); the table's ``target_mix`` and ``constraint`` columns repeat each target's mix and bounds,
so even a CSV read without its JSON tells them. :func:`read_scores` reads either back with its params.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from .._errors import InputError, RunError
from .._utils import atomic_path, write_json_atomic
from ..evaluation import summarise

#: The key of the score table's description in a Parquet file's metadata.
PARQUET_KEY = b"perturbscore"
SCORE_SUFFIXES = (".csv", ".parquet", ".pq")
#: Learned-model entries of an evaluation (the first present is the one judged).
LEARNED_KEYS = ("perturbscore", "full")
#: The ``flag`` of a row from sequence left unranked.
UNRANKED_FLAG = "not ranked: sequence path no better than the training mean"

#: What each column of a score table holds (stored with the table).
COLUMNS: dict[str, str] = {
    "target": "name of the target mix",
    "target_mix": "the target mix, state=share pairs (states left out: 0)",
    "constraint": "bounds a row must meet to be ranked for this target ('none' if none)",
    "gene": "the knocked-out (or unseen) gene",
    "source": "'cells': scored from the knockout's cells; 'sequence': from the gene's sequence features alone",
    "pred_distance": "predicted total-variation distance between the knockout's state mix and the target (0-1)",
    "lo": "lower end of the 95% interval of pred_distance",
    "hi": "upper end of the 95% interval of pred_distance",
    "interval": "how the interval was made",
    "empirical_distance": "distance of the knockout's observed state labels to the target (cells rows)",
    "n_cells": "cells of the knockout in the screen",
    "trained_on": "models of the ensemble that trained on this knockout",
    "constraint_ok": "whether the row meets the target's constraints",
    "flag": "why a row is not ranked although it meets the constraints (empty otherwise)",
    "rank": "rank within the target, 1 = closest (empty: not ranked)",
    "cells_needed": "cells the knockout needs for a stable prediction",
    "enough_cells": "whether the screen has that many cells of the knockout",
}


def column_glossary(columns: list[str]) -> dict[str, str]:
    """Describe each column of a score table (``pred_<state>``: the decoded mix)."""
    out = {}
    for c in columns:
        if c in COLUMNS:
            out[c] = COLUMNS[c]
        elif c.startswith("pred_"):
            out[c] = f"predicted share of state {c[5:].replace('_', ' ')!r} in the knockout's cells"
    return out


def sequence_verdict(evaluation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """How the sequence path did in an evaluation, against predicting the training mean for every gene.

    Parameters
    ----------
    evaluation
        Results in the ``eval.json`` schema (:func:`~perturbscore.evaluation.evaluate`).

    Returns
    -------
    dict or None
        ``model``, ``model_mae`` (the learned model's sequence-only MAE), ``train_mean_mae`` and ``better``
        (the model's MAE is strictly lower); ``None`` when the evaluation has no such comparison.
    """
    if not evaluation:
        return None
    models, baselines = evaluation.get("models") or {}, evaluation.get("baselines") or {}
    key = next((k for k in LEARNED_KEYS if k in models), None)
    if key is None:
        return None
    ours = summarise((models[key] or {}).get("mae_sequence"))[0]
    mean = summarise((baselines.get("train_mean") or {}).get("mae_sequence"))[0]
    if ours != ours or mean != mean:  # NaN: not measured
        return None
    return {"model": key, "model_mae": float(ours), "train_mean_mae": float(mean), "better": bool(ours < mean)}


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Return the JSON file that describes a CSV score table: ``scores.csv`` -> ``scores.json``."""
    return Path(path).with_suffix(".json")


def score_description(df: pd.DataFrame) -> dict[str, Any]:
    """Describe what a score table scored (its ``attrs["params"]``) and what its columns hold, JSON-ready."""
    from ._data import plain

    return {
        "format": "perturbscore scores",
        "perturbscore_version": __version__,
        "params": plain(df.attrs.get("params", {})),
        "columns": column_glossary(list(df.columns)),
    }


def check_score_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Refuse a score file path :func:`write_scores` cannot or should not write (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() not in SCORE_SUFFIXES:
        raise InputError(f"--out {str(path)!r}: write .csv or .parquet (got suffix {path.suffix!r}).")
    if not overwrite:
        for p in (path, sidecar_path(path)) if path.suffix.lower() == ".csv" else (path,):
            if p.exists():
                raise RunError(f"{p} exists; pass overwrite=True (--overwrite) or choose another path (--out).")
    return path


def write_scores(df: pd.DataFrame, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a score table with its description: Parquet metadata, or a JSON file beside a CSV.

    Parameters
    ----------
    df
        The table :func:`~perturbscore.tl.score_perturbations` returned.
    path
        ``.csv`` (plus ``<stem>.json`` beside it) or ``.parquet``.
    overwrite
        Replace existing files.

    Returns
    -------
    pathlib.Path
        The table's path.
    """
    path = check_score_path(path, overwrite=overwrite)
    meta = score_description(df)
    if path.suffix.lower() == ".csv":
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        write_json_atomic(sidecar_path(path), meta)
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), PARQUET_KEY: json.dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a score table :func:`write_scores` wrote; its description is in ``df.attrs``.

    ``df.attrs["params"]`` holds the targets (mix, constraints), states and settings; ``df.attrs["columns"]``
    what each column holds. A CSV without its JSON file is read with empty params.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"score file {str(path)!r} does not exist; write one with `perturbscore score`.")
    meta: dict[str, Any] = {}
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path)
        side = sidecar_path(path)
        if side.is_file():
            try:
                meta = json.loads(side.read_text(encoding="utf-8"))
            except ValueError as err:
                raise InputError(f"{side} is not valid JSON ({err}); re-run `perturbscore score`.") from err
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(PARQUET_KEY)
        meta = json.loads(raw) if raw else {}
        df = table.to_pandas()
    if "rank" in df:
        df["rank"] = pd.to_numeric(df["rank"], errors="coerce").astype("Float64").round().astype("Int64")
    if "flag" in df:
        df["flag"] = df["flag"].fillna("").astype(str)
    df.attrs["params"] = meta.get("params", {})
    df.attrs["columns"] = meta.get("columns", column_glossary(list(df.columns)))
    return df
