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
          "mae_cells": {k: [...]},                # pred_mae_cells@k of the reported (calibrated) number
          "mae_sequence": [...],                  # pred_mae_sequence (no cells), the reported number
          "mae_cells_head": {k: [...]}, "mae_sequence_head": [...],  # the distance head alone (diagnosis)
          "coverage": {k: [...]}, "interval_width": {k: [...]},     # the 95 % intervals of the reported number
          "coverage_sequence": [...], "interval_width_sequence": [...],
          "all_cells": {"mae": [...], "mae_tally": [...], "spearman": [...], "spearman_tally": [...],
                        "coverage": [...]},       # all cells of each knockout vs the generating mix (simulated)
          "stability": {k: [...]},                # statistic stability at k cells (G's part)
          "stability_mix": {k: [...]},            # the mix channel's stability (if the model has one)
          "prior_strength": [...], "mix_strength": [...],  # learned kappa of the T fusion / of the mix channel
          "spearman": [...], "top1": [...], "top3": [...],
        },
      },
      "baselines": {                              # same metric keys as the models, where they apply
        "empirical": {"mae_cells": {k: [...]}, "stability": {k: [...]}, "spearman": [...], ...},
        "shrunk": {...}, "empirical_bayes": {"mae_cells": {...}, "mae_sequence": [...], ...},
        "train_mean": {"mae_sequence": [...]}, "ridge": {...}, "pcr": {...}, "knn": {...},
        "oracle": {...},                          # a floor: shown, never bolded as best
      },
    }

Best values per column are bolded (lowest error, highest Spearman/hit rate/stability), among
every row but the oracle and the head-alone diagnosis row. Under (b) and (c) a "best baseline" line
names the best baseline of each column, the bar the default is judged against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import InputError
from ._cells import paired_se, summarise

__all__ = ["SEED_REPORTED_L1", "render_eval_markdown"]

#: The seed's reported validation prediction losses, on the L1 scale.
SEED_REPORTED_L1: dict[str, float] = {"seed_baseline": 0.23, "full": 0.28}
#: What a table shows where a value was not measured.
DASH = "—"
#: Cells per sample at which evaluations measure the cells path.
DEFAULT_KS = (2, 5, 10, 25, 60)
#: Table labels of the models ``reproduce`` trains by default.
MODEL_LABELS = {
    "seed_baseline": "seed baseline model (no T, 60 cells)",
    "full": "full model (T, ~10 cells)",
    "perturbscore": "perturbscore default (T fused, 2-64 cells)",
}
#: Label of the head-alone row of a model (its distance head without the empirical-Bayes blend).
HEAD_SUFFIX = ": head alone"
#: Table labels of the baselines.
BASELINE_LABELS = {
    "empirical": "empirical (k cells' labels)",
    "shrunk": "shrunk empirical",
    "empirical_bayes": "empirical Bayes (labels + feature prior)",
    "train_mean": "train mean",
    "ridge": "ridge (features)",
    "pcr": "PCR (features, all-gene basis)",
    "knn": "k-NN (features)",
    "oracle": "oracle (reference)",
}
REFERENCE_ROWS = frozenset({"oracle"})
#: Cells per sample in the coverage table (where evaluated).
COVERAGE_KS = (2, 10, 60)
SEQUENCE_ONLY = frozenset({"train_mean", "ridge", "pcr", "knn"})


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
    out: list[tuple[str, str, Mapping[str, Any]]] = []
    for group, labels in (("models", MODEL_LABELS), ("baselines", BASELINE_LABELS)):
        section = results.get(group) or {}
        if not isinstance(section, Mapping):
            raise InputError(f"results[{group!r}] must be a dict of name -> metrics, got {type(section).__name__}")
        out += [(str(name), str(labels.get(name, name)), section[name] or {}) for name in section]
    return out


def _bold_best(
    cells: list[list[Any]], *, keys: list[str], higher: bool, skip: frozenset[str] | set[str] = frozenset()
) -> list[list[str]]:
    """Format a column-major grid of per-seed values, bolding each column's best mean (not of ``skip`` rows)."""
    rows = [[DASH] * len(cells[0]) for _ in cells] if cells else []
    out_of = REFERENCE_ROWS | set(skip)
    for j in range(len(cells[0]) if cells else 0):
        means = [summarise(row[j])[0] for row in cells]
        pool = [m if (keys[i] not in out_of and not math.isnan(m)) else math.nan for i, m in enumerate(means)]
        best = (np.nanmax if higher else np.nanmin)(pool) if not all(math.isnan(m) for m in pool) else math.nan
        for i, row in enumerate(cells):
            rows[i][j] = _fmt(row[j], bold=not math.isnan(best) and means[i] == best and keys[i] not in out_of)
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


#: The row that says whether the default's edge over the best baseline is more than the luck of the split.
GAP_LABEL = "default less best baseline (± SE)"
GAP_NOTE = (
    "The last row: the default's mean error less the best baseline's, ± the standard error of that gap over the "
    "held-out knockouts (each knockout's gap averaged over seeds first: seeds do not change which knockouts were "
    "held out). A gap within about two standard errors could be the luck of which knockouts were held out."
)


def _best_baseline(results: Mapping[str, Any], values: dict[str, Any]) -> tuple[str, Any]:
    """``(name, per-seed values)`` of the baseline with the lowest mean among ``values`` (oracle excluded)."""
    base = results.get("baselines") or {}
    means = {n: summarise(v)[0] for n, v in values.items() if n in base and n not in REFERENCE_ROWS}
    means = {n: m for n, m in means.items() if not math.isnan(m)}
    if not means:
        return "", None
    name = min(means, key=lambda n: means[n])
    return name, values[name]


def _best_line(results: Mapping[str, Any], columns: list[dict[str, Any]]) -> list[str]:
    """Cells of the "best baseline" row: the best baseline's mean and name per column."""
    cells = []
    for values in columns:
        name, best = _best_baseline(results, values)
        cells.append(DASH if not name else f"{_fmt(best)} ({BASELINE_LABELS.get(name, name).split(' (')[0]})")
    return cells


def _gap_line(results: Mapping[str, Any], columns: list[dict[str, Any]], key: str, ks: list[int | None]) -> list[str]:
    """Cells of the "default less best baseline" row: the gap in mean error ± its SE over the held-out knockouts."""
    ours = (results.get("models") or {}).get("perturbscore")
    base = results.get("baselines") or {}
    cells = []
    for values, k in zip(columns, ks, strict=True):
        name, best = _best_baseline(results, values)
        mean = summarise(
            (ours or {}).get(key.replace("knockout_", ""))
            if k is None
            else _by_k(ours or {}, key.replace("knockout_", "")).get(k)
        )[0]
        se = paired_se(ours or {}, base.get(name), key, k) if name else math.nan
        gap = mean - summarise(best)[0] if name else math.nan
        cells.append(DASH if math.isnan(gap) else f"{gap:+.3f}" + ("" if math.isnan(se) else f" ± {se:.3f}"))
    return cells


def _head_rows(results: Mapping[str, Any], key: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    """Diagnosis rows: each model's distance head alone, where the model reports a calibrated number."""
    out: list[tuple[str, str, Mapping[str, Any]]] = []
    for name, e in (results.get("models") or {}).items():
        e = e or {}
        if e.get(f"{key}_head") is not None:
            out.append((f"{name}{HEAD_SUFFIX}", MODEL_LABELS.get(name, name) + HEAD_SUFFIX, {key: e[f"{key}_head"]}))
    return out


def _section_mae_k(results: Mapping[str, Any], ks: list[int]) -> str:
    # every model and cell-based baseline; the sequence-only baselines use no cells and live in (c)
    entries = [(n, lab, e) for n, lab, e in _entries(results) if "mae_cells" in e or n not in SEQUENCE_ONLY]
    heads = _head_rows(results, "mae_cells")
    keys = [n for n, _, _ in entries] + [n for n, _, _ in heads]
    cells = [[_by_k(e, "mae_cells").get(k) for k in ks] for _, _, e in entries + heads]
    body = _bold_best(cells, keys=keys, higher=False, skip={n for n, _, _ in heads})
    rows = [[label, *r] for (_, label, _), r in zip(entries + heads, body, strict=True)]
    columns = [{n: _by_k(e, "mae_cells").get(k) for n, _, e in entries} for k in ks]
    rows.append(["best baseline", *_best_line(results, columns)])
    if "perturbscore" in (results.get("models") or {}):
        rows.append([GAP_LABEL, *_gap_line(results, columns, "knockout_mae_cells", list(ks))])
    text = "## (b) Prediction MAE vs cells per sample (TV scale; lower is better)\n\n"
    note = (
        "\n\nThe default's number is its distance head blended with empirical Bayes by weights fitted on held-out "
        "knockouts (each evaluated knockout with weights fitted without it); the head-alone row is a diagnosis. "
        "Sequence-only methods (train mean, ridge, PCR, k-NN) use no cells: see (c). " + GAP_NOTE
    )
    return text + _table(["method", *[f"k={k}" for k in ks]], rows) + note


def _section_sequence(results: Mapping[str, Any]) -> str:
    entries = [(n, lab, e) for n, lab, e in _entries(results) if "mae_sequence" in e or n in SEQUENCE_ONLY]
    heads = _head_rows(results, "mae_sequence")
    body = _bold_best(
        [[e.get("mae_sequence")] for _, _, e in entries + heads],
        keys=[n for n, _, _ in entries + heads],
        higher=False,
        skip={n for n, _, _ in heads},
    )
    rows = [[label, *r] for (_, label, _), r in zip(entries + heads, body, strict=True)]
    column = {n: e.get("mae_sequence") for n, _, e in entries}
    rows.append(["best baseline", *_best_line(results, [column])])
    if "perturbscore" in (results.get("models") or {}):
        rows.append([GAP_LABEL, *_gap_line(results, [column], "knockout_mae_sequence", [None])])
    text = "## (c) Sequence-only prediction MAE (unseen genes, no cells; TV scale)\n\n"
    return text + _table(["method", "MAE"], rows)


def _section_coverage(results: Mapping[str, Any]) -> str | None:
    """Coverage and width of the models' 95 % intervals, and the all-cells check against the generating mix."""
    models = [(n, e or {}) for n, e in (results.get("models") or {}).items()]
    models = [(n, e) for n, e in models if e.get("coverage") or e.get("coverage_sequence")]
    if not models:
        return None
    cover_ks = [k for k in COVERAGE_KS if any(k in _by_k(e, "coverage") for _, e in models)]
    rows = []
    for name, e in models:
        cov, width = _by_k(e, "coverage"), _by_k(e, "interval_width")
        cells = [f"{_fmt(cov.get(k))} (width {_fmt(width.get(k))})" for k in cover_ks]
        seq = f"{_fmt(e.get('coverage_sequence'))} (width {_fmt(e.get('interval_width_sequence'))})"
        all_cells = (e.get("all_cells") or {}).get("coverage")
        rows.append([MODEL_LABELS.get(name, name), *cells, seq, _fmt(all_cells)])
    header = ["model", *[f"k={k}" for k in cover_ks], "sequence only", "all cells (generating mix)"]
    text = (
        "## (e) Coverage of the 95 % intervals (held-out knockouts; target 0.90-0.97)\n\n"
        "Share of held-out (knockout, target, resample) rows whose true distance lies in the interval; width is "
        "the mean interval length (TV scale). Intervals are split-conformal, from residuals of knockouts the "
        "network did not train on, cross-fitted so no knockout's interval is fitted on its own residuals.\n\n"
    )
    text += _table(header, rows)
    checks = [(name, e["all_cells"]) for name, e in models if e.get("all_cells")]
    if checks:
        grid = [
            [MODEL_LABELS.get(n, n), _fmt(a.get("mae")), _fmt(a.get("mae_tally")), _fmt(a.get("spearman")),
             _fmt(a.get("spearman_tally"))]
            for n, a in checks
        ]  # fmt: skip
        text += (
            "\n\nAll cells of each held-out knockout, as `score` reports them, against the distance of the "
            "generating mix (simulated screens only):\n\n"
            + _table(["model", "MAE", "label tally MAE", "Spearman", "label tally Spearman"], grid)
        )
    return text


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
    Markdown with (a) the seed's Section 3 table, (b) MAE vs k, (c) sequence-only MAE,
    (d) stability, Spearman and top-1/top-3 hit rates and (e) coverage of the 95 % intervals.
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
        _section_coverage(results),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"
