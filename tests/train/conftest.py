"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest

from perturbscore.datasets import simulate_screen
from perturbscore.io import read_screen


@pytest.fixture(scope="session")
def screen_with_unseen():
    """8 knockouts with 16-dim features over 20 windows, plus 40 genes with features and no cells."""
    sim = simulate_screen(
        n_genes=200, n_knockouts=8, n_cells=1_200, n_control_cells=200, n_unseen_genes=40, feature_dim=16,
        n_windows=20, seed=3,
    )  # fmt: skip
    return read_screen(sim.adata, features=sim.features)
