"""Shared, session-scoped, seeded synthetic screens for every test area."""

from __future__ import annotations

import anndata as ad
import pytest
from hypothesis import settings

from perturbscore.datasets import SyntheticScreen, simulate_screen, synthetic_perturb_seq

# The tests' own fixtures write AnnData files; from pandas 3 on their names are string arrays, which anndata
# writes only when allowed (the package's own writers allow it themselves: tests/datasets/test_simulate.py).
if hasattr(ad.settings, "allow_write_nullable_strings"):
    ad.settings.allow_write_nullable_strings = True

# Property tests draw the same examples on every run (CI included): a failure is reproducible.
settings.register_profile("perturbscore", derandomize=True, deadline=None)
settings.load_profile("perturbscore")


@pytest.fixture(scope="session")
def small_screen() -> SyntheticScreen:
    """~1,500 cells x 200 genes, 8 knockouts (``Prdm1`` planted: high progenitor share) + 4 unseen genes."""
    return synthetic_perturb_seq(seed=0)


@pytest.fixture(scope="session")
def medium_screen() -> SyntheticScreen:
    """6,000 cells x 400 genes, 24 knockouts, features (200, 32), seed 1."""
    return simulate_screen(n_genes=400, n_knockouts=24, n_cells=6_000, feature_dim=32, seed=1)


@pytest.fixture(autouse=True)
def _perturbscore_loggers_enabled() -> None:
    """Keep our loggers capturable: a library that reconfigures logging (``disable_existing_loggers``)
    or a CLI run's ``basicConfig`` must not silence the warnings the tests check."""
    import logging

    for name, obj in list(logging.root.manager.loggerDict.items()):
        if name.startswith("perturbscore") and isinstance(obj, logging.Logger):
            obj.disabled = False
            obj.propagate = True
            obj.setLevel(logging.NOTSET)
