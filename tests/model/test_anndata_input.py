"""Cells from an AnnData: raw counts are normalised as scanpy does, and a scanpy log base other than e is flagged."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from perturbscore.io import read_screen
from perturbscore.model import PerturbScoreModel
from perturbscore.nn import ModelConfig
from perturbscore.train import TrainConfig, build_net

STATES = ("progenitor", "effector", "terminal exhausted", "cycling", "other")


def _counts(n_cells: int = 60, n_genes: int = 12) -> sp.csr_matrix:
    x = sp.random(n_cells, n_genes, density=0.5, random_state=0, format="csr", dtype=np.float32)
    x.data = np.ceil(x.data * 30)
    x.data[x.indptr[3] : x.indptr[4]] = 0  # a cell without counts
    x.eliminate_zeros()
    return sp.csr_matrix(x)


def _scanpy_lognorm(counts: sp.csr_matrix) -> np.ndarray:
    """What ``sc.pp.normalize_total(adata, target_sum=1e4); sc.pp.log1p(adata)`` computes (natural log)."""
    x = counts.toarray().astype(np.float64)
    total = x.sum(1, keepdims=True)
    return np.log1p(np.divide(x * 1e4, total, out=np.zeros_like(x), where=total > 0))


def _adata(counts: sp.csr_matrix) -> ad.AnnData:
    n = counts.shape[0]
    obs = pd.DataFrame({"guide": np.repeat(["A", "B", "C", "NT"], n // 4),
                        "cluster": np.resize(list(STATES), n)}, index=[f"c{i}" for i in range(n)])  # fmt: skip
    var = pd.DataFrame(index=[f"g{j}" for j in range(counts.shape[1])])
    return ad.AnnData(X=sp.csr_matrix(_scanpy_lognorm(counts), dtype=np.float32), obs=obs, var=var,
                      layers={"counts": counts.copy()})  # fmt: skip


def test_counts_layer_is_normalised_like_scanpy():
    counts = _counts()
    screen = read_screen(_adata(counts), perturbation_key="guide", state_key="cluster", control="NT", layer="counts")
    got = screen.rows.take(np.arange(counts.shape[0])).toarray()
    np.testing.assert_allclose(got, _scanpy_lognorm(counts), rtol=1e-5, atol=1e-5)
    assert not got[3].any()


def test_model_statistic_reads_x_or_a_counts_layer_alike():
    counts = _counts()
    adata = _adata(counts)
    cfg = ModelConfig(n_genes=counts.shape[1], n_states=len(STATES), front_end="genes")
    model = PerturbScoreModel(build_net(cfg, seed=0), cfg, TrainConfig(), STATES, np.asarray(adata.var_names))
    from_x = model.statistic(adata, groupby="guide")
    from_counts = model.statistic(adata, groupby="guide", layer="counts")
    pd.testing.assert_frame_equal(from_x, from_counts, rtol=1e-4, atol=1e-5)
    shuffled = adata[:, adata.var_names[::-1]].copy()  # genes matched by name, not position
    pd.testing.assert_frame_equal(model.statistic(shuffled, groupby="guide"), from_x, rtol=1e-4, atol=1e-5)


def test_a_scanpy_log_base_other_than_e_is_flagged(caplog: pytest.LogCaptureFixture):
    adata = _adata(_counts())
    adata.uns["log1p"] = {"base": 2.0}
    with caplog.at_level(logging.WARNING, logger="perturbscore.io._read"):
        read_screen(adata, perturbation_key="guide", state_key="cluster", control="NT")
    assert "log-transformed with base 2" in caplog.text
    caplog.clear()
    adata.uns["log1p"] = {"base": None}  # scanpy's default: natural log
    with caplog.at_level(logging.WARNING, logger="perturbscore.io._read"):
        read_screen(adata, perturbation_key="guide", state_key="cluster", control="NT")
    assert "log-transformed" not in caplog.text
