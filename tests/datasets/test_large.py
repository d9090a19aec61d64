"""Genome-wide-sized screens streamed to disk, and training from them reading only sampled rows."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from perturbscore._constants import KEYS
from perturbscore._errors import RunError
from perturbscore.datasets import write_large_screen
from perturbscore.io import read_screen
from perturbscore.train import TrainConfig
from perturbscore.train._data import grouped, resolve_io


@pytest.fixture(scope="module")
def large_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("large")
    write_large_screen(
        out, n_cells=6_000, n_genes=1_000, n_knockouts=150, feature_dim=4, n_windows=8, seed=3, progress=False
    )
    return out


def test_large_screen_is_a_valid_grouped_h5ad(large_dir: Path) -> None:
    adata = ad.read_h5ad(large_dir / "screen.h5ad")
    assert adata.shape == (6_000, 1_000)
    conditions = adata.obs[KEYS.perturbation].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, conditions[1:] != conditions[:-1]])
    assert len(starts) == 151  # each perturbation's cells are one block of adjacent rows
    counts = pd.Series(conditions).value_counts()
    assert counts.drop(KEYS.control).min() >= 20
    x = adata.X
    assert x.dtype == np.float32
    assert np.isfinite(x.data).all()
    assert (x.data > 0).all()
    lib = np.expm1(x).sum(axis=1)  # log1p(CP10k): every cell sums to 1e4 again
    np.testing.assert_allclose(np.asarray(lib).ravel(), 1e4, rtol=1e-3)
    truth = pd.read_csv(large_dir / "truth.csv", index_col=0)
    assert len(truth) == 151
    off_panel = set(truth.index[truth["kind"] == "knockout"]) - set(adata.var_names)
    assert len(off_panel) == 50  # at most a tenth of the panel are knocked-out genes; the rest are off-panel


def test_large_screen_refuses_to_overwrite(large_dir: Path) -> None:
    with pytest.raises(RunError, match="already exists"):
        write_large_screen(large_dir, n_cells=6_000, n_genes=1_000, n_knockouts=150, progress=False)


def test_same_seed_same_screen(large_dir: Path, tmp_path: Path) -> None:
    write_large_screen(
        tmp_path, n_cells=6_000, n_genes=1_000, n_knockouts=150, feature_dim=4, n_windows=8, seed=3, progress=False
    )
    a, b = ad.read_h5ad(large_dir / "screen.h5ad"), ad.read_h5ad(tmp_path / "screen.h5ad")
    for name in ("data", "indices", "indptr"):  # uint16 column indices: compare the stored arrays
        np.testing.assert_array_equal(getattr(a.X, name), getattr(b.X, name))
    pd.testing.assert_frame_equal(a.obs, b.obs)


def test_training_from_disk_reads_each_row_once(large_dir: Path, tmp_path: Path) -> None:
    from perturbscore.tl import fit

    screen = read_screen(large_dir / "screen.h5ad", backed=True, features=large_dir / "features.npz")
    assert grouped(screen)
    cfg = resolve_io(TrainConfig(), screen)
    assert (cfg.sample_window, cfg.prefetch) == (4, 4)  # f on raw genes reads windows of the matrix from disk
    cfg = resolve_io(TrainConfig(), screen, front_end="pca")
    assert (cfg.sample_window, cfg.prefetch) == (0, 0)  # the default reads its embedding: nothing to window
    taken: list[int] = []
    take = screen.rows.take

    def counting_take(rows: np.ndarray):  # noqa: ANN202
        taken.append(len(rows))
        return take(rows)

    screen.rows.take = counting_take
    model = fit(
        screen, out=tmp_path / "run", progress=False, max_steps=6, steps_per_epoch=3, perturbations_per_step=8,
        n_train=120, n_val=20, front_end_cells=500, val_episodes=2, k_max=16,
    )  # fmt: skip
    n_cells = sum(len(ix) for ix in screen.cell_index)
    assert taken[:2] == [500, 500]  # the front end's sample: per-gene moments, then the PCA's Gram matrix
    assert sum(taken[2:]) == n_cells  # then one pass embeds every cell, in chunks; training, validation and the
    # calibration read the embedding only: no row of the matrix is read a second time
    config = pd.read_json(tmp_path / "run" / "config.json", typ="series")["train"]
    assert config["sampling"]["sample_window"] == 0  # the resolved value is recorded
    assert np.isfinite(model.statistic(take(screen.cell_index[0][:5]))).all()
