"""Judging a model: metrics, honest baselines, paired evaluation on held-out knockouts, and ``reproduce``."""

from __future__ import annotations

from ._baseline_base import Baseline
from ._baselines import BASELINES
from ._evaltable import BASELINE_LABELS, MODEL_LABELS, render_eval_markdown, summarise
from ._evaluate import DEFAULT_KS, EvalSetup, evaluate, evaluate_baselines, evaluate_model, make_setup
from ._metrics import (
    bootstrap_label_samples,
    l1_distance,
    normalise,
    pred_mae,
    recognition_r2,
    sample_targets,
    spearman_per_target,
    stability,
    topk_hit_rate,
    tv_distance,
)
from ._reproduce import ABLATION, DEFAULT_MODELS, MODELS, kfold_splits, reproduce

__all__ = [
    "ABLATION",
    "BASELINES",
    "BASELINE_LABELS",
    "DEFAULT_KS",
    "DEFAULT_MODELS",
    "MODELS",
    "MODEL_LABELS",
    "Baseline",
    "EvalSetup",
    "bootstrap_label_samples",
    "evaluate",
    "evaluate_baselines",
    "evaluate_model",
    "kfold_splits",
    "l1_distance",
    "make_setup",
    "normalise",
    "pred_mae",
    "recognition_r2",
    "render_eval_markdown",
    "reproduce",
    "sample_targets",
    "spearman_per_target",
    "stability",
    "summarise",
    "topk_hit_rate",
    "tv_distance",
]
