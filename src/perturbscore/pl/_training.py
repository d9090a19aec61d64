"""Training curves from a Lightning-style ``metrics.csv``, and the seed's Figure 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import pandas as pd

from .._errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["figure1", "plot_training_curves"]

#: (column, label, colour, line style) of each curve.
_CURVES: dict[str, tuple[str, str, str, str]] = {
    "train_pred_loss": ("pred", "training: prediction", "C0", "-"),
    "val_pred_loss": ("pred", "validation: prediction", "C0", "--"),
    "train_rec_loss": ("rec", "training: sequence network", "C1", "-"),
    "val_rec_loss": ("rec", "validation: sequence network", "C1", "--"),
}


def _root(ax: Axes) -> Figure:
    """Return the figure holding ``ax`` (its root figure, not a subfigure)."""
    fig = ax.get_figure(root=True)
    assert fig is not None
    return fig


def _new_ax(ax: Axes | None, *, figsize: tuple[float, float] = (5.0, 3.5)) -> Axes:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _per_epoch(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch: Lightning logs train and val on separate rows, so average the non-NaN values."""
    if not isinstance(metrics, pd.DataFrame):
        raise InputError(f"metrics must be a pandas DataFrame read from metrics.csv, got {type(metrics).__name__}")
    present = [c for c in _CURVES if c in metrics.columns]
    if not present:
        raise InputError(
            f"metrics.csv has none of the loss columns {list(_CURVES)} (found {list(metrics.columns)}); "
            "pass the metrics.csv a training run wrote"
        )
    by = "epoch" if "epoch" in metrics.columns else "step" if "step" in metrics.columns else None
    if by is None:
        raise InputError("metrics.csv needs an 'epoch' or 'step' column to plot losses against")
    numeric = metrics[[by, *present]].apply(pd.to_numeric, errors="coerce")
    return numeric.dropna(subset=[by]).groupby(by).mean()  # mean skips NaN: takes the logged value(s)


def plot_training_curves(
    metrics: pd.DataFrame,
    *,
    losses: Sequence[Literal["pred", "rec"]] = ("pred", "rec"),
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Training and validation losses per epoch.

    Parameters
    ----------
    metrics
        A Lightning-style ``metrics.csv`` as a DataFrame: ``epoch`` (or ``step``) and any of
        ``train_pred_loss``, ``val_pred_loss``, ``train_rec_loss``, ``val_rec_loss`` (NaN where a
        row did not log that value).
    losses
        Which losses to draw: prediction (``"pred"``) and/or recognition (``"rec"``).
    title
        Axes title.
    ax
        Axes to draw into; a new figure when ``None``.

    Returns
    -------
    The figure holding the axes.
    """
    table = _per_epoch(metrics)
    ax = _new_ax(ax)
    drawn = 0
    for col, (kind, label, colour, style) in _CURVES.items():
        if kind not in losses or col not in table.columns or table[col].isna().all():
            continue
        series = table[col].dropna()
        ax.plot(series.index.to_numpy(), series.to_numpy(), style, color=colour, label=label, marker=".", ms=3)
        drawn += 1
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(table.index.name or "epoch")
    ax.set_ylabel("loss")
    if drawn:
        ax.legend(frameon=False, fontsize="small")
    else:
        ax.text(0.5, 0.5, "no logged values", ha="center", va="center", transform=ax.transAxes)
    if title:
        ax.set_title(title)
    return _root(ax)


def figure1(baseline_metrics: pd.DataFrame, full_metrics: pd.DataFrame) -> Figure:
    """Draw the seed's Figure 1 from two runs' ``metrics.csv``.

    Panel a: the baseline model's (no T, 60 cells) training and validation prediction loss.
    Panel b: the full model's training and validation prediction and recognition loss.

    Parameters
    ----------
    baseline_metrics, full_metrics
        The two runs' metrics tables (see :func:`plot_training_curves`).

    Returns
    -------
    A two-panel figure.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    ax_a, ax_b = fig.subplots(1, 2)
    plot_training_curves(baseline_metrics, losses=("pred",), title="baseline model (no T, 60 cells)", ax=ax_a)
    plot_training_curves(full_metrics, losses=("pred", "rec"), title="full model (T, ~10 cells)", ax=ax_b)
    for ax, letter in ((ax_a, "a"), (ax_b, "b")):
        ax.text(-0.1, 1.05, letter, transform=ax.transAxes, fontweight="bold", fontsize="large", va="bottom")
        ax.set_ylim(bottom=0)
    return fig
