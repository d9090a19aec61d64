"""Small challenge-layout screens for the io tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from perturbscore._constants import CHALLENGE_STATES


def make_screen_adata(
    *,
    cells: dict[str, int] | None = None,
    n_genes: int = 40,
    seed: int = 0,
    dense: bool = False,
) -> ad.AnnData:
    """A challenge-layout AnnData: obs condition/state/gRNA_maxID, X = log1p(CP10k), layers['rawcounts']."""
    rng = np.random.default_rng(seed)
    cells = cells or {"Tox2": 30, "Arid5b": 12, "Dvl2": 7, "Zeb2": 2, "Unperturbed": 25}
    condition = np.repeat(list(cells), list(cells.values()))
    rng.shuffle(condition)
    n = condition.size
    counts = sp.random(n, n_genes, density=0.3, random_state=seed, format="csr", dtype=np.float32)
    counts.data = np.ceil(counts.data * 20).astype(np.float32)  # positive integers
    lib = np.asarray(counts.sum(axis=1)).ravel()
    lognorm = sp.csr_matrix(counts.multiply(1e4 / np.maximum(lib, 1)[:, None]))
    lognorm.data = np.log1p(lognorm.data)
    state = pd.Categorical(rng.choice(CHALLENGE_STATES, size=n), categories=list(CHALLENGE_STATES))
    obs = pd.DataFrame(
        {"condition": condition, "state": state, "gRNA_maxID": [f"{c}-1" for c in condition]},
        index=[f"cell{i}" for i in range(n)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    x = lognorm.toarray() if dense else lognorm
    return ad.AnnData(X=x, obs=obs, var=var, layers={"rawcounts": counts})


@pytest.fixture
def screen_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write ``make_screen_adata(**kw)`` (optionally edited by ``edit``) to an .h5ad; return the path."""

    def _write(name: str = "screen.h5ad", edit: Callable[[ad.AnnData], ad.AnnData | None] | None = None, **kw) -> Path:
        adata = make_screen_adata(**kw)
        if edit is not None:
            adata = edit(adata) or adata
        path = tmp_path / name
        adata.write_h5ad(path)
        return path

    return _write


@pytest.fixture
def adata() -> ad.AnnData:
    """The default small screen, in memory."""
    return make_screen_adata()


@pytest.fixture
def make_adata() -> Callable[..., ad.AnnData]:
    """The ``make_screen_adata`` factory."""
    return make_screen_adata
