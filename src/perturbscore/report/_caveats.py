"""Caveats of a run, in plain words: what limits how far its scores can be trusted.

From the evaluation (``eval.json``): a validation set too small to judge the model, a sequence path no better
than predicting the training mean, a learned model that loses to a simple baseline. From the scores: what the
intervals cover, how often they held the observed distance of held-out knockouts, rows left unranked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..evaluation import summarise
from ..tl import sequence_verdict

#: Learned-model keys in ``eval.json`` (the first present is checked), and the baselines it must beat.
LEARNED_KEYS = ("perturbscore", "full")
CELL_BASELINES = ("empirical", "shrunk", "empirical_bayes")
SEQUENCE_BASELINES = ("empirical_bayes", "ridge", "pcr", "knn")
#: Coverage of the 95 % intervals outside this range is a caveat.
COVERAGE_RANGE = (0.90, 0.97)
#: Fewer held-out knockouts than this and the evaluation's figures are called rough.
MIN_VALIDATION = 20
_NAMES = {
    "empirical": "empirical",
    "shrunk": "shrunk empirical",
    "empirical_bayes": "empirical-Bayes (label counts plus a feature prior)",
    "ridge": "ridge",
    "pcr": "PCR",
    "knn": "k-NN",
    "train_mean": "training-mean",
}


def _mean(values: Any) -> float | None:
    mean = summarise(values)[0] if values is not None else float("nan")
    return None if mean != mean else mean  # NaN -> None


def validation_size(results: Mapping[str, Any] | None, split: Mapping[str, Any] | None = None) -> int | None:
    """Count the held-out (validation) knockouts the evaluation judged the model on, if known."""
    for source in ((results or {}).get("split"), split):
        if isinstance(source, Mapping) and source.get("val") is not None:
            return len(source["val"])
    return None


def derive_caveats(results: Mapping[str, Any], *, split: Mapping[str, Any] | None = None) -> list[str]:
    """Derive caveat sentences from evaluation results (``eval.json``).

    In order: a validation set of fewer than :data:`MIN_VALIDATION` knockouts; a sequence path no better than
    predicting the training mean; one sentence per ``k`` where the learned model's ``mae_cells`` exceeds the
    empirical, shrunk or empirical-Bayes baseline's; one where its ``mae_sequence`` exceeds the empirical-Bayes
    prior's or the ridge, PCR or k-NN feature regression's.

    Parameters
    ----------
    results
        Evaluation results (the ``eval.json`` schema of :func:`~perturbscore.evaluation.evaluate`).
    split
        The run's split (``config.json``), used when ``results`` does not record one.

    Returns
    -------
    The sentences (empty when none applies, or no learned model was evaluated).
    """
    models, baselines = results.get("models") or {}, results.get("baselines") or {}
    key = next((k for k in LEARNED_KEYS if k in models), None)
    if key is None:
        return []
    model = models[key] or {}
    out = []
    n_val = validation_size(results, split)
    if n_val is not None and n_val < MIN_VALIDATION:
        trivial = (f" With {n_val} of them, a top-3 hit rate is 1 for every method whatever it predicts."
                   if n_val <= 3 else "")  # fmt: skip
        out.append(
            f"The model was checked on only {n_val} held-out knockout{'s' if n_val != 1 else ''} (at least "
            f'{MIN_VALIDATION} are needed for a reliable check), so the figures under "How good the model is" '
            f"are rough.{trivial}"
        )
    verdict = sequence_verdict(results)
    if verdict is not None and not verdict["better"]:
        out.append(
            "For genes without cells, predictions from sequence features were no better than giving every gene "
            f"the average training knockout's mix (error {verdict['model_mae']:.3f} vs "
            f"{verdict['train_mean_mae']:.3f}): scores from sequence alone are noise on this screen, and are not "
            "ranked."
        )
    by_k = {int(k): v for k, v in (model.get("mae_cells") or {}).items()}
    for k in sorted(by_k):
        ours = _mean(by_k[k])
        if ours is None:
            continue
        beaten = [
            (name, m)
            for name in CELL_BASELINES
            if (m := _mean(_at_k((baselines.get(name) or {}).get("mae_cells"), k))) is not None and ours > m
        ]
        if beaten:
            out.append(f"With k={k} cells per knockout, the model's prediction error ({ours:.3f}) is higher than "
                       f"{_list(beaten)}: with so few cells, the observed state labels are the better "
                       "estimate.")  # fmt: skip
    ours = _mean(model.get("mae_sequence"))
    if ours is not None:
        beaten = [
            (name, m)
            for name in SEQUENCE_BASELINES
            if (m := _mean((baselines.get(name) or {}).get("mae_sequence"))) is not None and ours > m
        ]
        if beaten:
            out.append(f"For genes without cells (from sequence features alone), the model's prediction error "
                       f"({ours:.3f}) is higher than {_list(beaten)}: for unseen genes, a plain regression on "
                       "the features is the better predictor on this evaluation.")  # fmt: skip
    coverage = {f"{int(k)} cells": _mean(v) for k, v in (model.get("coverage") or {}).items()}
    coverage["sequence alone"] = _mean(model.get("coverage_sequence"))
    lo, hi = COVERAGE_RANGE
    off = {where: c for where, c in coverage.items() if c is not None and not lo <= c <= hi}
    if off:
        shown = ", ".join(f"{c:.0%} of the time with {where}" for where, c in off.items())
        reading = ("too narrow" if max(off.values()) < lo else "wider than needed" if min(off.values()) > hi
                   else "not calibrated there")  # fmt: skip
        out.append(f"The 95% intervals held the true distance of held-out knockouts {shown}: they are {reading}.")
    return out


def score_caveats(scores: pd.DataFrame, *, split: Mapping[str, Any] | None = None) -> list[str]:
    """Derive caveat sentences from a score table (and its ``attrs["params"]``).

    What the intervals cover and how often they held the observed distance of the held-out knockouts; genes
    scored from sequence left unranked, or ranked without an evaluation of the sequence path; sequence rows
    without an interval.
    """
    if scores.empty or "source" not in scores:
        return []
    out = []
    params = scores.attrs.get("params", {}) or {}
    cells = scores[scores["source"] == "cells"]
    if len(cells) and {"lo", "hi"} <= set(cells.columns) and cells["lo"].notna().any():
        conformal = cells["interval"].astype(str).str.startswith("conformal").any() if "interval" in cells else False
        text = (("The 95% intervals are conformal: calibrated on the errors of held-out knockouts, they include the "
                 "model's own error as well as the sampling of cells.") if conformal else
                ("The 95% intervals of knockouts with cells show how much the prediction moves with the sample of "
                 "cells; they do not include the model's own error."))  # fmt: skip
        val = set((split or {}).get("val") or [])
        held = cells[cells["gene"].isin(val) & cells["empirical_distance"].notna() & cells["lo"].notna()]
        if len(held):
            inside = (held["lo"] <= held["empirical_distance"]) & (held["empirical_distance"] <= held["hi"])
            text += (f" For the held-out knockouts they contained the distance of the observed state labels in "
                     f"{int(inside.sum())} of {len(held)} cases (knockout x target).")  # fmt: skip
        out.append(text)
    seq = scores[scores["source"] == "sequence"]
    if len(seq):
        n_genes = seq["gene"].nunique()
        info = params.get("sequence") or {}
        if info.get("ranking") == "unranked":
            out.append(f"{n_genes} genes scored from sequence features alone are listed but not ranked: "
                       f"{info.get('reason') or 'the sequence path was not trusted'}.")  # fmt: skip
        elif isinstance(info.get("verdict"), str) or not info:
            out.append(f"{n_genes} genes scored from sequence features alone are ranked, but the sequence path of "
                       "this model was not compared with the training mean; run `perturbscore evaluate` before "
                       "trusting their ranks.")  # fmt: skip
        if seq["lo"].isna().all() if "lo" in seq else True:
            out.append("Scores from sequence alone have no interval (one model); score with several runs (an "
                       "ensemble) to get their spread.")  # fmt: skip
    return out


def merge_caveats(*groups: Sequence[str]) -> list[str]:
    """Join caveat lists in order, each sentence once."""
    return list(dict.fromkeys(str(c) for g in groups for c in g if str(c).strip()))


def _at_k(by_k: Mapping[Any, Any] | None, k: int) -> Any:
    return None if not by_k else {int(kk): v for kk, v in by_k.items()}.get(k)


def _list(beaten: list[tuple[str, float]]) -> str:
    parts = [f"the {_NAMES.get(name, name)} baseline's ({mae:.3f})" for name, mae in beaten]
    return " and ".join(parts)
