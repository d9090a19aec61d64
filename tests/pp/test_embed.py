"""``pp.embed``: the stored embedding equals the per-step projection, trains and scores the same, and on Dask."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import perturbscore as ps
from perturbscore.data import EMBED_KEY, CellEmbedding, EmbeddedCells
from perturbscore.io import read_screen
from perturbscore.nn import FrontEnd, ModelConfig

FAST = {"max_steps": 40, "steps_per_epoch": 20, "n_train": 6, "n_val": 2, "progress": False}
FRONT = {"n_train": 6, "n_val": 2}  # the split FAST trains on, so the embedded front end is training's own


@pytest.fixture
def sim():  # noqa: ANN201
    """A fresh copy of the small simulated screen (tests write into its AnnData)."""
    return ps.datasets.synthetic_perturb_seq(seed=0)


def _dense_projection(emb: CellEmbedding, x: np.ndarray) -> np.ndarray:
    """The front end written out densely: ``((x[:, genes] - mean) / sd) @ components.T`` in float64."""
    f = emb.front
    z = (x[:, f["gene_index"]].astype(np.float64) - f["mean"]) / f["sd"]
    return z @ f["components"].T.astype(np.float64)


def test_embedding_equals_the_per_step_projection(sim) -> None:  # noqa: ANN001
    emb = ps.pp.embed(sim.adata, **FRONT)
    assert sim.adata.obsm[EMBED_KEY].shape == (sim.adata.n_obs, 64)
    assert set(sim.adata.uns[EMBED_KEY]) >= {"front_end", "fingerprint", "params"}
    screen = read_screen(sim.adata)
    front = FrontEnd(ModelConfig(n_genes=screen.n_genes, n_states=screen.n_states))
    front.load_state(sim.adata.uns[EMBED_KEY]["front_end"])
    rows = np.random.default_rng(0).choice(screen.n_cells, size=300, replace=False)
    per_step = front.transform(screen.rows.take(rows)).numpy()  # what each training step computed before
    stored = sim.adata.obsm[EMBED_KEY][rows]
    np.testing.assert_allclose(stored, per_step, rtol=1e-5, atol=1e-5)
    dense = _dense_projection(emb, screen.rows.take(rows).toarray())
    np.testing.assert_allclose(stored, dense, rtol=1e-4, atol=1e-4)
    assert emb.matches(front)
    assert emb.fingerprint == front.fingerprint


def test_embedded_front_end_is_the_one_training_fits(sim, tmp_path) -> None:  # noqa: ANN001
    """Without a stored embedding, training fits the same front end pp.embed stores (same sample, same map)."""
    emb = ps.pp.embed(sim.adata.copy(), **FRONT)
    model = ps.model.fit(sim.adata, features=sim.features, out=tmp_path / "run", embedding_key=None, **FAST)
    assert model.net.front.fingerprint == emb.fingerprint


def test_model_trained_with_stored_embedding_scores_the_same(sim, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    without = sim.adata.copy()
    plain = ps.model.fit(without, features=sim.features, out=tmp_path / "a", seed=1, **FAST)
    ps.pp.embed(sim.adata, seed=1, **FRONT)  # the seed training draws its front end's cells with
    screen = read_screen(sim.adata, features=sim.features)
    ps.pp.attach_embedding(screen, sim.adata)
    assert screen.embedding is not None
    embedded = ps.model.fit(screen, out=tmp_path / "b", seed=1, **FAST)
    for name, value in plain.net.state_dict().items():
        torch.testing.assert_close(embedded.net.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    loadings = embedded.program_loadings()  # genes x programs, through the stored front end's components
    np.testing.assert_allclose(loadings.to_numpy(), plain.program_loadings().to_numpy(), rtol=1e-4, atol=1e-6)
    assert (loadings.abs().sum(axis=1) > 0).sum() == embedded.model_config.n_selected  # the genes the front end reads
    targets = {"progenitor": 0.6, "effector": 0.4}
    assert EMBED_KEY not in without.obsm  # fit does not write an embedding into the AnnData
    a = ps.tl.score_perturbations(plain, without, targets=targets, features=sim.features)  # from expression
    read = []
    original = CellEmbedding.cells
    monkeypatch.setattr(CellEmbedding, "cells", lambda self, rows: read.append(len(rows)) or original(self, rows))
    b = ps.tl.score_perturbations(embedded, sim.adata, targets=targets, features=sim.features)  # stored coordinates
    assert sum(read) == sum(len(ix) for ix in screen.cell_index[:-1])  # every knockout's cells, from the embedding
    np.testing.assert_allclose(a["pred_distance"].to_numpy(), b["pred_distance"].to_numpy(), rtol=1e-4, atol=1e-5)


def _refuse(rows: np.ndarray) -> None:
    raise AssertionError("read the expression matrix")


def test_scoring_and_programs_read_the_stored_coordinates(sim, tmp_path) -> None:  # noqa: ANN001
    model = ps.model.fit(sim.adata, features=sim.features, out=tmp_path / "r", **FAST)
    assert model.net.front.kind == "pca"
    screen = read_screen(sim.adata)
    rows = screen.cell_index[0]
    from_genes = model.statistic(screen.rows.take(rows))
    ps.pp.attach_embedding(screen, sim.adata)
    assert screen.embedding is None  # nothing stored yet
    ps.pp.embed(sim.adata, **FRONT)
    ps.pp.attach_embedding(screen, sim.adata)
    cells = screen.cells(rows, front=model.net.front)
    assert isinstance(cells, EmbeddedCells)
    np.testing.assert_allclose(model.statistic(cells), from_genes, rtol=1e-4, atol=1e-5)
    activity = model.program_activity(sim.adata)  # every cell, from obsm
    np.testing.assert_allclose(activity[rows], model.program_activity(screen.rows.take(rows)), rtol=1e-4, atol=1e-5)
    other = EmbeddedCells(cells.values, "0" * 40)
    with pytest.raises(ps._errors.InputError, match="another front end"):
        model.statistic(other)


def test_dask_pass_on_a_local_cluster_equals_the_in_memory_embedding(sim, tmp_path) -> None:  # noqa: ANN001
    from distributed import Client, LocalCluster

    path = tmp_path / "screen.h5ad"
    sim.adata.write_h5ad(path)
    in_memory = ps.pp.embed(sim.adata, **FRONT)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        on_dask = ps.pp.embed(path, scheduler=client, chunk=256, **FRONT)  # 6 chunks over 2 workers
    assert on_dask.path == CellEmbedding.store_path(path)
    assert isinstance(on_dask.values, np.memmap)
    assert on_dask.fingerprint == in_memory.fingerprint
    np.testing.assert_allclose(np.asarray(on_dask.values), in_memory.values, rtol=1e-6, atol=1e-6)
    again = CellEmbedding.load(on_dask.path)
    assert again.params["cells_per_second"] > 0
    assert again.params["n_cells"] == sim.adata.n_obs
    local = ps.pp.embed(path, store=tmp_path / "threads", chunk=300, **FRONT)  # Dask's local threads
    np.testing.assert_array_equal(np.asarray(local.values), np.asarray(on_dask.values))


def test_training_from_disk_reads_only_the_embedding(sim, tmp_path) -> None:  # noqa: ANN001
    from perturbscore.train import model_config_for, preset, split_perturbations, train_statistic

    path = tmp_path / "screen.h5ad"
    sim.adata.write_h5ad(path)
    ps.pp.embed(path, **FRONT)
    screen = read_screen(path, backed=True, features=sim.features)
    ps.pp.attach_embedding(screen)  # the store beside the file
    assert screen.embedding is not None
    assert screen.embedding.path is not None
    screen.rows.take = _refuse  # type: ignore[method-assign]
    cfg, over = preset("default", max_steps=40, steps_per_epoch=20, **FRONT)
    split = split_perturbations(screen, n_train=cfg.n_train, n_val=cfg.n_val, seed=cfg.split_seed)
    res = train_statistic(screen, cfg, model_config_for(screen, cfg, **over), run_dir=tmp_path / "run", split=split,
                          progress=False)  # fmt: skip
    assert res.net.front.fingerprint == screen.embedding.fingerprint
    assert len(res.history) == 2


def test_embedding_survives_h5ad_round_trip_and_cli(sim, tmp_path) -> None:  # noqa: ANN001
    from perturbscore.cli import main

    ps.pp.embed(sim.adata, key_added="X_mine", **FRONT)
    path = tmp_path / "embedded.h5ad"
    sim.adata.write_h5ad(path)
    back = ps.pp.embedding_from(path, key="X_mine")
    assert back is not None
    np.testing.assert_array_equal(back.values, sim.adata.obsm["X_mine"])
    assert back.fingerprint == sim.adata.uns["X_mine"]["fingerprint"]
    plain = tmp_path / "plain.h5ad"
    del sim.adata.obsm["X_mine"], sim.adata.uns["X_mine"]
    sim.adata.write_h5ad(plain)
    assert main(["embed", str(plain), "--n-train", "6", "--n-val", "2", "--chunk", "500"]) == 0
    store = CellEmbedding.store_path(plain)
    np.testing.assert_allclose(np.asarray(CellEmbedding.load(store).values), back.values, rtol=1e-6, atol=1e-6)
    assert main(["embed", str(plain), "--n-train", "6", "--n-val", "2"]) == 2  # exists: refused without --overwrite


def test_an_embedding_of_other_cells_is_ignored(sim, tmp_path, caplog) -> None:  # noqa: ANN001
    ps.pp.embed(sim.adata, **FRONT)
    sim.adata.obsm[EMBED_KEY] = sim.adata.obsm[EMBED_KEY][::-1].copy()  # rows out of order
    screen = read_screen(sim.adata)
    with caplog.at_level(logging.WARNING, logger="perturbscore"):
        ps.pp.attach_embedding(screen, sim.adata)
    assert screen.embedding is None
    assert "differ from their expression" in caplog.text


def test_seed_presets_have_nothing_to_embed(sim) -> None:  # noqa: ANN001
    with pytest.raises(ps._errors.InputError, match="raw genes"):
        ps.pp.embed(sim.adata, preset_name="seed-baseline")
