"""Render evaluation results (``eval.json``) as ``eval.md``.

The ``results`` schema
----------------------
A plain, JSON-friendly dict. Every metric is a list with one value per training seed (or a bare
number for a single seed); ``k``-keyed metrics are dicts ``{k: [...]}`` whose keys may be ints or
their strings (as after a JSON round trip). Every key is optional: a missing entry renders as "—".
All distances and losses are on the TV scale (``0.5 * L1``, in ``[0, 1]``)::

    {
      "screen": {"source": str, "n_cells": int, "n_perturbations": int, "states": [str, ...]},
      "split": {"seed": int, "train": [gene, ...], "val": [gene, ...], "test": [gene, ...]},
      "seeds": [int, ...],                        # training seeds the lists run over
      "ks": [2, 5, 10, 25, 60],                   # columns of the k-tables (default: keys found)
      "eval_k": int,                              # cells per sample behind spearman/top1/top3
      "models": {
        "seed_baseline": {...},                   # the seed's baseline model: no T, 60 cells
        "full": {                                 # the full model: T, ~10 cells
          "val_pred_loss": [...],                 # validation prediction loss (mean |H - d|)
          "val_rec_loss": [...],                  # validation recognition loss (mean ||T(g) - s||^2, G's part)
          "rec_r2": [...],                        # recognition R^2 on validation perturbations (G's part)
          "rec_r2_mix": [...], "val_rec_loss_mix": [...],  # the same for the mix channel (if the model has one)
          "mae_cells": {k: [...]},                # pred_mae_cells@k
          "mae_sequence": [...],                  # pred_mae_sequence (no cells)
          "stability": {k: [...]},                # statistic stability at k cells (G's part)
          "stability_mix": {k: [...]},            # the mix channel's stability (if the model has one)
          "prior_strength": [...], "mix_strength": [...],  # learned kappa of the T fusion / of the mix channel
          "spearman": [...], "top1": [...], "top3": [...],
        },
      },
      "baselines": {                              # same metric keys as the models, where they apply
        "empirical": {"mae_cells": {k: [...]}, "stability": {k: [...]}, "spearman": [...], ...},
        "shrunk": {...}, "train_mean": {"mae_sequence": [...]}, "ridge": {...}, "pcr": {...}, "knn": {...},
        "oracle": {...},                          # a floor: shown, never bolded as best
      },
    }

Best values per column are bolded (lowest error, highest Spearman/hit rate/stability), among
every row but the oracle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._errors import InputError

__all__ = ["SEED_REPORTED_L1", "render_eval_markdown", "summarise"]

#: The seed's reported validation prediction losses, on the L1 scale (DESIGN §1b).
SEED_REPORTED_L1: dict[str, float] = {"seed_baseline": 0.23, "full": 0.28}
DASH = "—"
DEFAULT_KS = (2, 5, 10, 25, 60)
MODEL_LABELS = {
    "seed_baseline": "seed baseline model (no T, 60 cells)",
    "full": "full model (T, ~10 cells)",
    "perturbscore": "perturbscore default (T fused, 2-64 cells)",
}
BASELINE_LABELS = {
    "empirical": "empirical (k cells' labels)",
    "shrunk": "shrunk empirical",
    "train_mean": "train mean",
    "ridge": "ridge (features)",
    "pcr": "PCR (features, all-gene basis)",
    "knn": "k-NN (features)",
    "oracle": "oracle (reference)",
}
REFERENCE_ROWS = frozenset({"oracle"})
SEQUENCE_ONLY = frozenset({"train_mean", "ridge", "pcr", "knn"})


def summarise(values: float | Iterable[float] | None) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value) of per-seed values, NaNs ignored.

    Returns ``(nan, nan)`` for ``None`` or no finite values.
    """
    if values is None:
        return math.nan, math.nan
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _fmt(values: Any, *, scale: float = 1.0, bold: bool = False) -> str:
    mean, sd = summarise(values)
    if math.isnan(mean):
        return DASH
    n = np.atleast_1d(np.asarray(values, dtype=np.float64)).size
    text = f"{mean * scale:.3f}" + (f" ± {sd * scale:.3f}" if n > 1 else "")
    return f"**{text}**" if bold else text


def _by_k(entry: Mapping[str, Any], key: str) -> dict[int, Any]:
    """``entry[key]`` as ``{int k: values}`` (JSON turns int keys into strings)."""
    raw = entry.get(key) or {}
    if not isinstance(raw, Mapping):
        raise InputError(f"results entry {key!r} must map k (cells) to per-seed values, got {type(raw).__name__}")
    return {int(k): v for k, v in raw.items()}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _entries(results: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(key, label, metrics)`` for every model, then every baseline."""
    out = []
    for group, labels in (("models", MODEL_LABELS), ("baselines", BASELINE_LABELS)):
        section = results.get(group) or {}
        if not isinstance(section, Mapping):
            raise InputError(f"results[{group!r}] must be a dict of name -> metrics, got {type(section).__name__}")
        out += [(name, labels.get(name, name), section[name] or {}) for name in section]
    return out


def _bold_best(cells: list[list[Any]], *, keys: list[str], higher: bool) -> list[list[str]]:
    """Format a column-major grid of per-seed values, bolding each column's best non-reference mean."""
    rows = [[DASH] * len(cells[0]) for _ in cells] if cells else []
    for j in range(len(cells[0]) if cells else 0):
        means = [summarise(row[j])[0] for row in cells]
        pool = [m if (keys[i] not in REFERENCE_ROWS and not math.isnan(m)) else math.nan for i, m in enumerate(means)]
        best = (np.nanmax if higher else np.nanmin)(pool) if not all(math.isnan(m) for m in pool) else math.nan
        for i, row in enumerate(cells):
            rows[i][j] = _fmt(row[j], bold=not math.isnan(best) and means[i] == best and keys[i] not in REFERENCE_ROWS)
    return rows


def _ks(results: Mapping[str, Any]) -> list[int]:
    if results.get("ks"):
        return [int(k) for k in results["ks"]]
    found = {k for _, _, e in _entries(results) for key in ("mae_cells", "stability") for k in _by_k(e, key)}
    return sorted(found) or list(DEFAULT_KS)


def _section_seed(results: Mapping[str, Any]) -> str:
    models = results.get("models") or {}
    rows = []
    for name in ("seed_baseline", "full", "perturbscore"):
        if name == "perturbscore" and name not in models:
            continue
        e = models.get(name) or {}
        seed = SEED_REPORTED_L1.get(name)
        rows.append(
            [
                MODEL_LABELS[name],
                _fmt(e.get("val_pred_loss")),
                _fmt(e.get("val_pred_loss"), scale=2.0),
                DASH if seed is None else f"{seed:.2f}",
                _fmt(e.get("val_rec_loss")),
                _fmt(e.get("rec_r2")),
            ]
        )
    header = ["model", "val pred loss (TV)", "val pred loss (L1)", "seed's reported (L1)", "val rec loss", "rec R²"]
    return "## (a) The seed's Section 3\n\n" + _table(header, rows)


def _section_mae_k(results: Mapping[str, Any], ks: list[int]) -> str:
    # every model and cell-based baseline; the sequence-only baselines use no cells and live in (c)
    entries = [(n, lab, e) for n, lab, e in _entries(results) if "mae_cells" in e or n not in SEQUENCE_ONLY]
    cells = [[_by_k(e, "mae_cells").get(k) for k in ks] for _, _, e in entries]
    body = _bold_best(cells, keys=[n for n, _, _ in entries], higher=False)
    rows = [[label, *r] for (_, label, _), r in zip(entries, body, strict=True)]
    text = "## (b) Prediction MAE vs cells per sample (TV scale; lower is better)\n\n"
    note = "\n\nSequence-only methods (train mean, ridge, k-NN) use no cells: see (c)."
    return text + _table(["method", *[f"k={k}" for k in ks]], rows) + note


def _section_sequence(results: Mapping[str, Any]) -> str:
    entries = [(n, lab, e) for n, lab, e in _entries(results) if "mae_sequence" in e or n in SEQUENCE_ONLY]
    body = _bold_best([[e.get("mae_sequence")] for _, _, e in entries], keys=[n for n, _, _ in entries], higher=False)
    rows = [[label, *r] for (_, label, _), r in zip(entries, body, strict=True)]
    text = "## (c) Sequence-only prediction MAE (unseen genes, no cells; TV scale)\n\n"
    return text + _table(["method", "MAE"], rows)


def _section_ranking(results: Mapping[str, Any], ks: list[int]) -> str:
    keys = ("stability", "spearman", "top1", "top3")
    entries = [(n, lab, e) for n, lab, e in _entries(results) if any(e.get(key) for key in keys)]
    cells = [[_by_k(e, "stability").get(k) for k in ks] + [e.get(k) for k in keys[1:]] for _, _, e in entries]
    body = _bold_best(cells, keys=[n for n, _, _ in entries], higher=True)
    rows = [[label, *r] for (_, label, _), r in zip(entries, body, strict=True)]
    eval_k = results.get("eval_k")
    note = f" (Spearman and hit rates at k={eval_k})" if eval_k is not None else ""
    header = ["method", *[f"stability k={k}" for k in ks], "Spearman", "top-1", "top-3"]
    text = f"## (d) Stability, ranking and hit rates{note}; higher is better\n\n"
    text += _table(header, rows) if rows else "No stability or ranking results."
    mix = [(lab, e) for _, lab, e in entries if e.get("stability_mix")]
    if mix:  # reported apart: a soft count of k cells' states is as noisy as counting their labels
        grid = [[_fmt(_by_k(e, "stability_mix").get(k)) for k in ks] + [_fmt(e.get("rec_r2_mix"))] for _, e in mix]
        text += (
            "\n\nStability above is that of `G`'s part of the statistic (the seed's `s(P)`). The mix channel (the "
            "cells' mean decoded state posterior) is reported apart:\n\n"
            + _table(
                ["model", *[f"stability k={k}" for k in ks], "rec R² (mix)"],
                [[lab, *r] for (lab, _), r in zip(mix, grid, strict=True)],
            )  # fmt: skip
        )
    return text


def _preamble(results: Mapping[str, Any]) -> str:
    lines = ["# Evaluation", ""]
    screen, split, seeds = results.get("screen") or {}, results.get("split") or {}, results.get("seeds") or []
    if screen:
        lines.append(
            f"- Screen: {screen.get('source', DASH)}: {screen.get('n_cells', DASH)} cells, "
            f"{screen.get('n_perturbations', DASH)} perturbations, states {', '.join(screen.get('states', [])) or DASH}"
        )
    if split:
        sizes = " / ".join(f"{len(split.get(s) or [])} {s}" for s in ("train", "val", "test"))
        lines.append(f"- Split by perturbation (seed {split.get('seed', DASH)}): {sizes}")
    n, folds = len(seeds), int(results.get("folds") or 0)
    if folds:
        lines.append(f"- Values: mean ± sd over {n} training seed(s) x {folds} folds ({n * folds} runs)")
    else:
        lines.append(f"- Values: mean ± sd over {n} training seeds" if n > 1 else "- Values: one training seed")
    lines.append("- Distances are total variation (TV = L1 / 2, in [0, 1]); the seed reported L1 (in [0, 2]).")
    return "\n".join(lines)


def render_eval_markdown(results: Mapping[str, Any]) -> str:
    """Render ``results`` (schema in this module's docstring) as the Markdown of ``eval.md``.

    Parameters
    ----------
    results
        Evaluation results; every key is optional.

    Returns
    -------
    Markdown with (a) the seed's Section 3 table, (b) MAE vs k, (c) sequence-only MAE and
    (d) stability, Spearman and top-1/top-3 hit rates.
    """
    if not isinstance(results, Mapping):
        raise InputError(f"results must be a dict (the content of eval.json), got {type(results).__name__}")
    ks = _ks(results)
    parts = [
        _preamble(results),
        _section_seed(results),
        _section_mae_k(results, ks),
        _section_sequence(results),
        _section_ranking(results, ks),
    ]
    return "\n\n".join(parts) + "\n"
