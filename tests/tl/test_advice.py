"""Cells-needed advice and the resampling engine behind bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from perturbscore._errors import InputError
from perturbscore.datasets import PLANTED_KNOCKOUT, synthetic_perturb_seq
from perturbscore.io import read_screen
from perturbscore.tl import fit
from perturbscore.tl._advice import (
    as_models,
    cells_needed,
    cells_needed_table,
    distances_from_means,
    program_activities,
)

TARGET = np.array([0.6, 0.1, 0.1, 0.15, 0.05])


@pytest.fixture(scope="module")
def screen():
    return read_screen(synthetic_perturb_seq(seed=1).adata)  # no features: cells only


@pytest.fixture(scope="module")
def model(screen, tmp_path_factory):
    out = tmp_path_factory.mktemp("advice") / "run"
    return fit(screen, out=out, max_steps=60, steps_per_epoch=30, progress=False, n_train=6, n_val=2)


def test_engine_matches_model_api(model, screen):
    """program_activities + distances_from_means reproduce model.statistic -> predict_distance."""
    gene = screen.knockouts[0]
    cells = screen.rows.take(screen.cell_index[screen.index_of(gene)])
    expected = model.predict_distance(model.statistic(cells), TARGET, n_cells=cells.shape[0])
    acts = program_activities([model], screen, gene)
    got, mix = distances_from_means([model], [acts[0].mean(0, keepdims=True)], TARGET[None], np.array([cells.shape[0]]))
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-5)
    assert mix is None or np.allclose(mix.sum(1), 1, atol=1e-5)


def test_looser_tolerance_never_needs_more_cells(model, screen):
    needs = []
    for tol in (1e-9, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0):
        res = cells_needed(model, screen, PLANTED_KNOCKOUT, target=TARGET, tolerance=tol, n_resamples=50, rng=3)
        needs.append(np.inf if res["cells_needed"] is None else res["cells_needed"])
    assert all(a >= b for a, b in zip(needs, needs[1:], strict=False)), needs
    assert needs[0] == np.inf
    assert needs[-1] == 2


def test_curve_and_fields(model, screen):
    ks = (2, 5, 20, 200)
    res = cells_needed(model, screen, PLANTED_KNOCKOUT, target=TARGET, ks=ks, n_resamples=60, rng=0)
    curve = res["curve"]
    assert curve["k"].tolist() == list(ks)
    assert (curve["spread"] >= 0).all()
    assert curve["spread"].iloc[-1] < curve["spread"].iloc[0]  # many cells: a stable prediction
    assert res["n_cells"] == len(screen.cell_index[screen.index_of(PLANTED_KNOCKOUT)])
    if res["cells_needed"] is not None:
        assert res["enough_cells"] == (res["n_cells"] >= res["cells_needed"])
        assert (curve.loc[curve["k"] >= res["cells_needed"], "spread"] <= res["tolerance"]).all()
    assert 0 <= res["pred_distance"] <= 1


def test_table_covers_every_knockout_and_target(model, screen):
    targets = {"a": TARGET, "b": np.full(5, 0.2)}
    df = cells_needed_table(model, screen, target=targets, n_resamples=30, ks=(2, 10, 50), progress=False)
    assert len(df) == 2 * len(screen.knockouts)
    assert screen.control not in set(df["gene"])
    assert str(df["cells_needed"].dtype) == "Int64"
    known = df.dropna(subset=["cells_needed"])
    assert (known["enough_cells"] == (known["n_cells"] >= known["cells_needed"])).all()
    loose = cells_needed_table(model, screen, target=targets, tolerance=0.5, n_resamples=30, ks=(2, 10, 50), progress=False)  # fmt: skip
    both = df.merge(loose, on=["target", "gene"], suffixes=("", "_loose"))
    big = np.iinfo(np.int64).max
    assert (both["cells_needed_loose"].fillna(big) <= both["cells_needed"].fillna(big)).all()


def test_errors(model, screen):
    with pytest.raises(InputError, match="'Nope' is not in the screen"):
        cells_needed(model, screen, "Nope", target=TARGET)
    with pytest.raises(InputError, match="tolerance"):
        cells_needed(model, screen, PLANTED_KNOCKOUT, target=TARGET, tolerance=0)
    with pytest.raises(InputError, match="ks="):
        cells_needed(model, screen, PLANTED_KNOCKOUT, target=TARGET, ks=(0, 5))
    with pytest.raises(InputError, match="shape"):
        cells_needed(model, screen, PLANTED_KNOCKOUT, target=np.ones(2))
    with pytest.raises(InputError, match="no model"):
        as_models([])
