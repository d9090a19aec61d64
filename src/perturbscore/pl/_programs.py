"""Plots of learned gene programs: top genes, heatmaps (program x state / knockout), enrichment dot plots.

Each function draws on ``ax`` (or a new figure) and returns the Figure; none shows or saves. Figures
are built without pyplot, so no global figure state is touched (safe in scripts, threads and the CLI).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._errors import InputError

POS_COLOUR = "#c0392b"
NEG_COLOUR = "#2466a8"
#: Smallest font (points) of any label: figures are printed at 110 dpi and shown at most 10 inches wide, so 9 pt
#: is about 14 screen pixels.
MIN_FONT = 9
#: Widest figure (inches) a plot makes on its own: wider ones are scaled down in the report, shrinking the text.
MAX_WIDTH = 10.0


def wrap_title(ax: Axes, title: str, *, fontsize: float = 11) -> None:
    """Set ``title`` wrapped to the width of ``ax``'s figure, so a long title is never clipped."""
    import textwrap

    fig: Any = ax.get_figure(root=True)
    width_in = fig.get_figwidth()
    chars = max(20, int(width_in * 72 / (fontsize * 0.55)))
    ax.set_title("\n".join(textwrap.wrap(title, chars)), fontsize=fontsize)


def tick_label(name: object) -> str:
    """Make a tick label readable: ``program_3`` -> ``program 3``, ``stat_2`` -> ``summary 2``, ``mix_a`` -> ``mix: a``."""
    text = str(name)
    if text.startswith("stat_"):
        return "summary " + text[5:]
    if text.startswith("mix_"):
        return "mix: " + text[4:].replace("_", " ")
    return text.replace("program_", "program ")


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure(root=True)
        assert fig is not None
        return fig, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _require(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what} is missing column(s) {missing}; pass the table returned by perturbscore.tl.")


def plot_top_genes(top_df: pd.DataFrame, program: str, ax: Axes | None = None, *, n: int | None = None) -> Figure:
    """Horizontal bars of a program's top positive (red) and negative (blue) genes.

    Parameters
    ----------
    top_df
        Output of :func:`perturbscore.tl.top_genes` (columns program, sign, rank, gene, loading).
    program
        Which program to draw.
    ax
        Axes to draw on; a new figure when None.
    n
        Keep at most ``n`` genes per sign (all in ``top_df`` by default).

    Returns
    -------
    The Figure.
    """
    _require(top_df, ["program", "sign", "rank", "gene", "loading"], "top_df")
    sub = top_df[top_df["program"].astype(str) == str(program)]
    if sub.empty:
        known = sorted(top_df["program"].astype(str).unique().tolist())[:10]
        raise InputError(f"program {program!r} is not in top_df (programs: {known}); pick one of those.")
    if n is not None:
        sub = sub[sub["rank"] <= n]
    pos = sub[sub["sign"] == "+"].sort_values("rank")
    neg = sub[sub["sign"] == "-"].sort_values("rank", ascending=False)
    rows = pd.concat([pos, neg]).iloc[::-1]  # bottom-up: most negative at y=0, most positive on top
    fig, ax = _figure_and_axes(ax, (5.0, max(2.5, 0.24 * len(rows) + 1.2)))
    y = np.arange(len(rows))
    colours = np.where(rows["loading"].to_numpy() >= 0, POS_COLOUR, NEG_COLOUR)
    ax.barh(y, rows["loading"].to_numpy(dtype=float), color=colours, height=0.75)
    ax.set_yticks(y, rows["gene"].astype(str).tolist(), fontsize=MIN_FONT + 1 if len(rows) <= 20 else MIN_FONT)
    ax.tick_params(axis="x", labelsize=MIN_FONT)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, symmetric=True))  # few ticks: they never run into each other
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("weight")
    ax.set_title(f"{tick_label(program)}: top genes (red +, blue -)", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_heatmap(
    df: pd.DataFrame,
    *,
    title: str,
    cmap: str = "RdBu_r",
    center: float | None = 0,
    ax: Axes | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    colorbar_label: str = "",
    annotate: bool | None = None,
) -> Figure:
    """Heatmap of a labelled matrix, e.g. program x state correlations or knockout x program activity.

    Parameters
    ----------
    df
        Numeric matrix; its index labels the rows and its columns the columns. Readable up to ~70 rows.
    title
        Axes title.
    cmap
        Matplotlib colormap name.
    center
        Value mapped to the colormap's middle (symmetric limits around it); None for plain min-max.
    ax
        Axes to draw on; a new figure sized to the matrix when None.
    xlabel, ylabel
        Axis labels (default: the column and index names, when set).
    colorbar_label
        Label of the colourbar.
    annotate
        Write each value in its cell; by default only when the matrix has at most 150 cells.

    Returns
    -------
    The Figure.
    """
    values = df.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)  # (rows, cols)
    if values.size == 0:
        raise InputError(f"cannot draw heatmap {title!r}: the matrix is empty.")
    n_rows, n_cols = values.shape
    fig, ax = _figure_and_axes(ax, (min(MAX_WIDTH, 3.6 + 0.55 * n_cols), min(24.0, 2.2 + 0.22 * n_rows)))
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if center is not None:
        half = max(abs(hi - center), abs(center - lo)) or 1.0
        norm = TwoSlopeNorm(vcenter=center, vmin=center - half, vmax=center + half)
    else:
        norm = None
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    row_fs = MIN_FONT if n_rows <= 80 else 6  # 0.22 in per row when we size the figure: 9 pt fits
    ax.set_yticks(np.arange(n_rows), [tick_label(i) for i in df.index], fontsize=row_fs)
    ax.set_xticks(np.arange(n_cols), [tick_label(c) for c in df.columns], fontsize=MIN_FONT, rotation=90)
    ax.set_xlabel(xlabel if xlabel is not None else (df.columns.name or ""))
    ax.set_ylabel(ylabel if ylabel is not None else (df.index.name or ""))
    wrap_title(ax, title)
    if annotate if annotate is not None else values.size <= 150:
        _annotate(ax, values, im)
    cbar = fig.colorbar(im, ax=ax, shrink=0.8 if n_rows > 10 else 1.0)
    cbar.set_label(colorbar_label)
    return fig


def _annotate(ax: Axes, values: np.ndarray, im) -> None:
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            r, g, b, _ = im.cmap(im.norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8, color="white" if dark else "black")


def plot_enrichment(
    enr_df: pd.DataFrame, ax: Axes | None = None, *, n: int = 20, title: str = "Gene-set enrichment"
) -> Figure:
    """Dot plot of the ``n`` most significant gene sets: x = -log10 q, dot size = set size.

    Parameters
    ----------
    enr_df
        Output of :func:`perturbscore.tl.program_enrichment`, :func:`~perturbscore.tl.hypergeometric_enrichment`
        or :func:`~perturbscore.tl.preranked_enrichment` (needs ``set`` and ``q``).
    ax
        Axes to draw on; a new figure when None.
    n
        Rows to show.
    title
        Axes title.

    Returns
    -------
    The Figure. Red dots are enriched among positive loadings (or over-represented), blue among
    negative; the dashed line is q = 0.05.
    """
    _require(enr_df, ["set", "q"], "enr_df")
    top = enr_df.assign(_q=pd.to_numeric(enr_df["q"], errors="coerce")).dropna(subset=["_q"])
    top = top.sort_values("_q", kind="stable").head(n).iloc[::-1]
    fig, ax = _figure_and_axes(ax, (MAX_WIDTH, max(2.5, 0.32 * len(top) + 1.4)))
    if top.empty:
        ax.text(0.5, 0.5, "no enrichment results", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    x = -np.log10(np.clip(top["_q"].to_numpy(dtype=float), 1e-300, 1.0))
    y = np.arange(len(top))
    ax.scatter(x, y, s=_dot_sizes(top), c=_dot_colours(top), alpha=0.85, edgecolors="0.2", linewidths=0.5)
    ax.set_yticks(y, _labels(top), fontsize=MIN_FONT)
    ax.axvline(-np.log10(0.05), color="0.4", ls="--", lw=0.8)
    ax.set_xlabel("-log10 q (Benjamini-Hochberg)")
    ax.set_xlim(left=0, right=max(float(x.max()) * 1.1, 1.5))
    wrap_title(ax, title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _labels(df: pd.DataFrame) -> list[str]:
    parts = [df[c].astype(str).map(tick_label) for c in ("program", "direction", "method") if c in df.columns]
    prefix = [" ".join(t) for t in zip(*parts, strict=True)] if parts else [""] * len(df)
    return [f"{s}  ({p})" if p else str(s) for p, s in zip(prefix, df["set"].astype(str), strict=True)]


def _dot_sizes(df: pd.DataFrame) -> np.ndarray:
    col = "overlap" if "overlap" in df.columns and df["overlap"].notna().all() else "size"
    if col not in df.columns:
        return np.full(len(df), 40.0)
    v = pd.to_numeric(df[col], errors="coerce").fillna(1).to_numpy(dtype=float)
    return 20 + 180 * v / max(v.max(), 1)


def _dot_colours(df: pd.DataFrame) -> list[str]:
    if "direction" in df.columns:
        return [NEG_COLOUR if d == "-" else POS_COLOUR for d in df["direction"]]
    if "nes" in df.columns:
        return [NEG_COLOUR if v < 0 else POS_COLOUR for v in df["nes"].fillna(0)]
    return [POS_COLOUR] * len(df)
