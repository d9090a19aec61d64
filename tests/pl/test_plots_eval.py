"""Evaluation plots, training curves / Figure 1, and the eval.md table (shared results fixture)."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from perturbscore import pl
from perturbscore._errors import InputError
from perturbscore.evaluation import render_eval_markdown, summarise


@pytest.fixture
def results() -> dict:
    return {
        "screen": {"source": "synthetic", "n_cells": 1000, "n_perturbations": 20, "states": ["a", "b"]},
        "split": {"seed": 123, "train": list("abcde"), "val": list("fg"), "test": ["h"]},
        "seeds": [0, 1],
        "ks": [2, 10],
        "eval_k": 10,
        "models": {
            "full": {
                "val_pred_loss": [0.14, 0.16],
                "val_rec_loss": [0.01, 0.03],
                "rec_r2": [0.5, 0.7],
                "mae_cells": {2: [0.09, 0.11], 10: [0.05, 0.07]},
                "mae_sequence": [0.12, 0.14],
                "stability": {2: [0.4, 0.6], 10: [0.8, 0.9]},
                "spearman": [0.7, 0.9],
                "top1": [0.5, 0.5],
                "top3": [0.9, 1.0],
            },
            "seed_baseline": {"val_pred_loss": [0.11], "mae_cells": {"2": [0.2], "10": [0.08]}},
        },
        "baselines": {
            "empirical": {"mae_cells": {2: [0.28, 0.28], 10: [0.1, 0.1]}, "spearman": [0.6, 0.6]},
            "shrunk": {"mae_cells": {2: [0.14, 0.15], 10: [0.09, 0.09]}},
            "train_mean": {"mae_sequence": [0.16, 0.16]},
            "ridge": {"mae_sequence": [0.15, 0.17]},
            "oracle": {"mae_cells": {2: [0.0, 0.0], 10: [0.0, 0.0]}, "mae_sequence": [0.0, 0.0]},
        },
    }


def _row(md: str, start: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(f"| {start}"))


def test_summarise() -> None:
    assert summarise([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2)))
    assert summarise([0.5]) == (0.5, 0.0)
    assert summarise(0.5) == (0.5, 0.0)
    assert all(np.isnan(summarise(None)))
    assert summarise([1.0, float("nan")]) == (1.0, 0.0)


def test_render_eval_markdown(results: dict) -> None:
    md = render_eval_markdown(results)
    for heading in ("(a) The seed's Section 3", "(b) Prediction MAE", "(c) Sequence-only", "(d) Stability"):
        assert heading in md
    seed_row = _row(md, "seed baseline model")
    assert "0.110" in seed_row
    assert "0.220" in seed_row
    assert "0.23" in seed_row
    assert seed_row.count("—") == 2  # no T: no recognition loss or R²
    full_row = _row(md, "full model")
    assert "0.150 ± 0.014" in full_row
    assert "0.300 ± 0.028" in full_row
    assert "0.28" in full_row
    mae_rows = md.split("## (b)")[1].split("## (c)")[0]
    assert "**0.100 ± 0.014**" in _row(mae_rows, "full model")  # best at k=2 (oracle excluded)
    assert "**0.060 ± 0.014**" in _row(mae_rows, "full model")  # best at k=10
    assert "**" not in _row(mae_rows, "oracle")
    assert _row(mae_rows, "seed baseline").count("—") == 0
    assert "| train mean" not in mae_rows
    seq = md.split("## (c)")[1].split("## (d)")[0]
    assert "**0.130 ± 0.014**" in _row(seq, "full model")
    assert "0.160" in _row(seq, "train mean")
    assert "**" not in _row(seq, "ridge")
    ranking = md.split("## (d)")[1]
    assert "k=10" in ranking
    assert "**0.800 ± 0.141**" in _row(ranking, "full model")
    assert "0.600" in _row(ranking, "empirical")
    assert "mean ± sd over 2 training seeds" in md
    assert "5 train / 2 val / 1 test" in md


def test_render_eval_markdown_reports_the_mix_channel_apart(results: dict) -> None:
    assert "mix channel" not in render_eval_markdown(results)
    results["models"]["full"] |= {"stability_mix": {2: [0.2, 0.3], 10: [0.45, 0.47]}, "rec_r2_mix": [0.2, 0.3]}
    tail = render_eval_markdown(results).split("## (d)")[1].split("mix channel")[1]
    row = _row(tail, "full model")
    assert "0.250 ± 0.071" in row
    assert "0.460 ± 0.014" in row
    assert "0.250 ± 0.071 |" in row.split("0.460")[1]  # rec R² of the mix, last column


def test_render_eval_markdown_json_roundtrip_and_empty(results: dict) -> None:
    assert render_eval_markdown(json.loads(json.dumps(results))) == render_eval_markdown(results)
    empty = render_eval_markdown({})
    assert _row(empty, "full model").count("—") == 4
    with pytest.raises(InputError, match="must map k"):
        render_eval_markdown({"models": {"full": {"mae_cells": [0.1]}}})
    with pytest.raises(InputError, match="content of eval.json"):
        render_eval_markdown([])  # type: ignore[arg-type]


def _metrics_csv(epochs: int, *, rec: bool) -> pd.DataFrame:
    """Lightning-style rows: train and val values logged on separate rows (NaN elsewhere)."""
    rows = []
    for e in range(epochs):
        train = {"epoch": e, "step": 10 * e + 9, "train_pred_loss": 0.3 / (e + 1)}
        val = {"epoch": e, "step": 10 * e + 9, "val_pred_loss": 0.35 / (e + 1)}
        if rec:
            train["train_rec_loss"], val["val_rec_loss"] = 0.1 / (e + 1), 0.12 / (e + 1)
        rows += [train, val]
    return pd.DataFrame(rows)


def test_training_curves_and_figure1() -> None:
    fig = pl.plot_training_curves(_metrics_csv(5, rec=True), title="run")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) == 4
    assert ax.get_title() == "run"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 0.3 / np.arange(1, 6))  # NaN rows merged per epoch
    fig1 = pl.figure1(_metrics_csv(4, rec=False), _metrics_csv(6, rec=True))
    a, b = fig1.axes
    assert len(a.lines) == 2
    assert len(b.lines) == 4
    with pytest.raises(InputError, match="none of the loss columns"):
        pl.plot_training_curves(pd.DataFrame({"epoch": [0], "loss": [1.0]}))
    with pytest.raises(InputError, match="'epoch' or 'step'"):
        pl.plot_training_curves(pd.DataFrame({"val_pred_loss": [1.0]}))


def test_plot_mae_vs_k(results: dict) -> None:
    fig = pl.plot_mae_vs_k(results)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert "this model (with sequence)" in labels  # plain names, no internal model keys
    assert {"observed labels, pulled to the average", "average training knockout (no cells)",
            "true mix (simulation only)"} <= set(labels)  # fmt: skip
    assert not any("seed" in lab or "T," in lab for lab in labels)
    with pytest.raises(InputError, match="content of eval.json"):
        pl.plot_mae_vs_k([1, 2])  # type: ignore[arg-type]


def test_plot_pred_vs_true_into_given_ax() -> None:
    fig = Figure()
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    true = rng.random(50) * 0.5
    out = pl.plot_pred_vs_true(true + 0.1, true, label="model", ax=ax)
    assert out is fig
    assert "mean error 0.100" in ax.get_title()
    with pytest.raises(InputError, match="matching distances"):
        pl.plot_pred_vs_true([0.1], [0.1, 0.2])


def test_plot_ranking() -> None:
    df = pd.DataFrame(
        {
            "gene": [f"g{i}" for i in range(30)],
            "pred": np.linspace(0.5, 0.1, 30),
            "source": ["cells", "sequence"] * 15,
        }
    )
    df["lo"], df["hi"] = df["pred"] - 0.05, df["pred"] + 0.05
    fig = pl.plot_ranking(df, top=10)
    ax = fig.axes[0]
    assert len(ax.patches) == 10
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "g29"  # lowest distance at the top
    with pytest.raises(InputError, match=r"lacks column\(s\) \['lo', 'hi'\]"):
        pl.plot_ranking(df.drop(columns=["lo", "hi"]))


def test_plot_ranking_whiskers_only_where_an_interval_exists() -> None:
    """Rows without an interval (sequence rows of one model) get no zero-width error caps."""
    df = pd.DataFrame({"gene": ["a", "b", "c", "d"], "pred": [0.1, 0.2, 0.3, 0.4],
                       "source": ["cells", "cells", "sequence", "sequence"]})  # fmt: skip
    df["lo"] = [0.05, 0.15, np.nan, np.nan]
    df["hi"] = [0.15, 0.25, np.nan, np.nan]
    ax = pl.plot_ranking(df, title="target: progenitor 60% + cycling 40% " * 4).axes[0]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 1
    segments = bars[0].lines[2][0].get_segments()
    assert len(segments) == 2  # the two cells rows only
    assert all(abs(s[1][0] - s[0][0]) > 0 for s in segments)
    title = ax.get_title()
    assert "\n" in title  # wrapped, not clipped at the figure's edge
    assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= 9
    assert ax.figure.get_figwidth() <= 10
