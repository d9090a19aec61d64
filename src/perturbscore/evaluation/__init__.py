"""Judging a model: metrics, honest baselines, paired evaluation on held-out knockouts, ``reproduce`` and the panel."""

from __future__ import annotations

from ._baseline_base import Baseline
from ._baselines import BASELINES
from ._cells import summarise
from ._evaltable import BASELINE_LABELS, MODEL_LABELS, render_eval_markdown
from ._evaluate import DEFAULT_KS, evaluate, evaluate_baselines, evaluate_model
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
from ._panel import PANEL_SCREENS, render_panel_markdown, screen_checks
from ._reproduce import ABLATION, DEFAULT_MODELS, MODELS, kfold_splits, reproduce, reproduce_panel
from ._setup import EvalSetup, make_setup

__all__ = [
    "ABLATION",
    "BASELINES",
    "BASELINE_LABELS",
    "DEFAULT_KS",
    "DEFAULT_MODELS",
    "MODELS",
    "MODEL_LABELS",
    "PANEL_SCREENS",
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
    "render_panel_markdown",
    "reproduce",
    "reproduce_panel",
    "sample_targets",
    "screen_checks",
    "spearman_per_target",
    "stability",
    "summarise",
    "topk_hit_rate",
    "tv_distance",
]
