from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from perturbscore._errors import InputError  # noqa: E402
from perturbscore.pl._programs import plot_enrichment, plot_heatmap, plot_top_genes  # noqa: E402
from perturbscore.tl._programs import program_enrichment, top_genes  # noqa: E402


def _render(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


@pytest.fixture
def loadings() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(200, 3)), index=[f"g{i}" for i in range(200)], columns=["p0", "p1", "p2"])


def test_plot_top_genes(loadings):
    top = top_genes(loadings, n=8)
    fig = plot_top_genes(top, "p1")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    sub = top[top["program"] == "p1"]
    assert len(labels) == 16
    # most positive gene at the top of the plot, most negative at the bottom
    assert labels[-1] == sub[(sub["sign"] == "+") & (sub["rank"] == 1)]["gene"].item()
    assert labels[0] == sub[(sub["sign"] == "-") & (sub["rank"] == 1)]["gene"].item()
    colours = {tuple(np.round(p.get_facecolor(), 3)) for p in ax.patches}
    assert len(colours) == 2
    assert _render(fig).startswith(b"\x89PNG")
    assert len(plot_top_genes(top, "p1", n=3).axes[0].patches) == 6
    with pytest.raises(InputError, match="program 'nope' is not in top_df"):
        plot_top_genes(top, "nope")
    with pytest.raises(InputError, match=r"missing column\(s\) \['loading'\]"):
        plot_top_genes(top.drop(columns="loading"), "p1")


def test_plot_top_genes_on_given_axes(loadings):
    fig, axes = plt.subplots(1, 2)
    try:
        out = plot_top_genes(top_genes(loadings, n=5), "p0", ax=axes[1])
        assert out is fig
        assert axes[1].patches
    finally:
        plt.close(fig)


@pytest.mark.parametrize("n_rows", [5, 70])
def test_plot_heatmap(n_rows):
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.normal(size=(n_rows, 5)), index=[f"KO{i}" for i in range(n_rows)],
                      columns=["progenitor", "effector", "terminal exhausted", "cycling", "other"])  # fmt: skip
    df.iloc[0, 0] = np.nan
    fig = plot_heatmap(df, title="program x state", xlabel="state", ylabel="knockout")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(df.index)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(df.columns)
    assert ax.get_title() == "program x state"
    assert ax.get_xlabel() == "state"
    assert len(fig.axes) == 2  # heatmap + colourbar
    im = ax.images[0]
    assert im.norm.vmin == pytest.approx(-im.norm.vmax)  # symmetric around center=0
    assert (len(ax.texts) > 0) == (n_rows == 5)  # annotated only when small
    assert _render(fig).startswith(b"\x89PNG")


def test_plot_heatmap_uncentred_and_empty():
    df = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=["a", "b"], columns=["x", "y"])
    fig = plot_heatmap(df, title="t", center=None, cmap="viridis")
    assert fig.axes[0].images[0].norm.vmin == pytest.approx(1.0)
    with pytest.raises(InputError, match="matrix is empty"):
        plot_heatmap(pd.DataFrame(), title="empty")


def test_plot_enrichment(loadings):
    order = loadings["p0"].sort_values(ascending=False).index
    sets = {"top": list(order[:10]), "other": list(loadings.index[50:60])}
    enr = program_enrichment(loadings, sets, n_top=20, n_permutations=100, rng=0)
    fig = plot_enrichment(enr, n=5)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 5
    assert labels[-1].startswith("top  (")  # the gene set first, then where it was found
    assert labels[-1].endswith("(p0 + preranked)") or labels[-1].endswith("(p0 + hypergeometric)")
    assert _render(fig).startswith(b"\x89PNG")
    empty = plot_enrichment(enr.iloc[0:0])
    assert empty.axes[0].texts[0].get_text() == "no enrichment results"
    with pytest.raises(InputError, match=r"missing column\(s\) \['q'\]"):
        plot_enrichment(enr.drop(columns="q"))


def test_plots_legible_at_printed_size(loadings):
    """Labels of at least 9 pt, figures at most 10 in wide (shown unscaled in the report), titles never clipped."""
    from perturbscore.pl._save import _top_genes_grid

    grid = _top_genes_grid(top_genes(pd.concat([loadings] * 4, axis=1, keys=range(4)).droplevel(0, axis=1)
                                     .T.drop_duplicates().T, n=8))  # fmt: skip
    assert grid.get_figwidth() <= 10
    for ax in grid.axes:
        if ax.get_yticklabels():
            assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= 9
            assert len(ax.get_xticklabels()) <= 7  # few weight ticks: they cannot run into each other
    wide = pd.DataFrame(np.random.default_rng(0).normal(size=(15, 5)), index=[f"stat_{i}" for i in range(15)],
                        columns=["progenitor", "effector", "terminal exhausted", "cycling", "other"])  # fmt: skip
    title = "knockout summary vs state share (Spearman across knockouts)"
    ax = plot_heatmap(wide, title=title).axes[0]
    assert ax.get_title().replace("\n", " ") == title
    fig = ax.figure
    fig.canvas.draw()
    box = ax.title.get_window_extent()
    assert box.x0 >= 0  # the whole title lies inside the figure
    assert box.x1 <= fig.bbox.width + 1
    assert ax.get_yticklabels()[0].get_text() == "summary 0"  # internal names made readable
    assert min(t.get_fontsize() for t in ax.get_yticklabels() + ax.get_xticklabels()) >= 9
