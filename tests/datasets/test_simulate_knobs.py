"""The simulator's panel knobs: feature informativeness, within-state expression shift, label noise."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import NearestCentroid

from perturbscore._constants import CHALLENGE_STATES, KEYS
from perturbscore._errors import InputError
from perturbscore.datasets import SCREEN_PANEL, simulate_screen

STATES = list(CHALLENGE_STATES)
CELLS = {"n_genes": 400, "n_knockouts": 24, "n_cells": 6_000, "feature_dim": 8, "n_windows": 8, "seed": 5}
GENES = {"n_genes": 200, "n_knockouts": 8, "n_cells": 600, "n_unseen_genes": 400, "feature_dim": 32, "seed": 7}


@pytest.fixture(scope="module")
def shift_screens():
    """The same screen with no within-state shift and with a strong one (cells at their state's centre)."""
    return {scale: simulate_screen(**CELLS, within_state_shift=scale, label_noise=0.0) for scale in (0.0, 2.0)}


@pytest.fixture(scope="module")
def feature_screens():
    """Many genes with features and effects, features at three levels of signal."""
    return {signal: simulate_screen(**GENES, feature_signal=signal) for signal in (0.0, 1.0, 3.0)}


def _module_z2(screen) -> float:
    """Mean squared z-score of knockout-vs-control differences of program-module scores within a state."""
    adata = screen.adata
    cond = adata.obs[KEYS.perturbation].to_numpy()
    state = adata.obs[KEYS.state].to_numpy()
    ctrl = cond == KEYS.control
    z2 = []
    for name, genes in screen.modules.items():
        if not name.startswith("effect_program_"):
            continue
        score = np.asarray(adata[:, genes].X.mean(axis=1)).ravel()
        for s in STATES:
            ko, co = score[~ctrl & (state == s)], score[ctrl & (state == s)]
            if min(ko.size, co.size) < 30:
                continue
            se = np.sqrt(ko.var(ddof=1) / ko.size + co.var(ddof=1) / co.size)
            z2.append(((ko.mean() - co.mean()) / se) ** 2)
    assert len(z2) >= 12
    return float(np.mean(z2))


def test_no_within_state_shift_leaves_expression_to_the_state(shift_screens):
    # with no shift, knockout and control cells in the same state differ only by sampling noise
    assert _module_z2(shift_screens[0.0]) < 2.5
    assert _module_z2(shift_screens[2.0]) > 10.0


def test_shift_knob_keeps_the_cells_and_labels(shift_screens):
    a, b = shift_screens[0.0], shift_screens[2.0]
    pd.testing.assert_frame_equal(a.adata.obs, b.adata.obs)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    np.testing.assert_array_equal(a.features.values, b.features.values)
    assert a.adata.uns[KEYS.truth]["params"]["within_state_shift"] == 0.0
    assert b.adata.uns[KEYS.truth]["params"]["within_state_shift"] == 2.0


def test_clean_labels_sit_at_the_state_centre():
    noisy = simulate_screen(**CELLS)
    clean = simulate_screen(**CELLS, label_noise=0.0)
    pd.testing.assert_frame_equal(noisy.adata.obs, clean.adata.obs)  # same cells, same labels
    assert clean.adata.uns[KEYS.truth]["params"]["label_noise"] == 0.0
    assert noisy.adata.uns[KEYS.truth]["params"]["label_noise"] == 1.0
    markers = [g for name, genes in clean.modules.items() if name.startswith("state_") for g in genes]
    y = clean.adata.obs[KEYS.state].cat.codes.to_numpy()[:3000]

    def accuracy(screen) -> float:
        x = screen.adata[:3000, markers].X.toarray()
        return float(cross_val_score(NearestCentroid(), x, y, cv=3).mean())

    assert accuracy(clean) > accuracy(noisy) + 0.02
    assert accuracy(clean) > 0.95


def _effect_r2(screen) -> np.ndarray:
    """Per feature dimension, the in-sample R^2 of the pooled feature on the effect and its squares."""
    truth = screen.truth[screen.truth["kind"] != "control"]
    z = truth[[c for c in truth.columns if c.startswith("effect_")]].to_numpy(float)
    design = np.column_stack([np.ones(len(z)), z, z**2, z[:, :1] * z[:, 1:]])
    x = screen.features.values.mean(axis=1).astype(np.float64)  # (genes, dim)
    fit = design @ np.linalg.lstsq(design, x, rcond=None)[0]
    return 1 - ((x - fit) ** 2).sum(axis=0) / ((x - x.mean(axis=0)) ** 2).sum(axis=0)


def test_uninformative_features_are_independent_of_the_effects(feature_screens):
    n_genes, n_cov = len(feature_screens[0.0].features.genes), 15
    r2_none = _effect_r2(feature_screens[0.0])
    # under independence R^2 ~ Beta(p/2, (n-p-1)/2): mean ~ 0.035, sd ~ 0.013 for 408 genes, 14 covariates
    assert r2_none.max() < 0.12
    assert abs(r2_none.mean() - (n_cov - 1) / (n_genes - 1)) < 0.02
    r2_weak, r2_strong = _effect_r2(feature_screens[1.0]), _effect_r2(feature_screens[3.0])
    assert np.sort(r2_weak)[-4:].min() > 0.3
    assert np.median(np.sort(r2_strong)[-8:]) > np.median(np.sort(r2_weak)[-8:]) + 0.1


def test_feature_signal_orders_how_well_features_predict_the_mix(feature_screens):
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    folds = KFold(5, shuffle=True, random_state=0)
    errors = {}
    for signal, screen in feature_screens.items():
        x = screen.features.values.mean(axis=1)
        q = screen.truth.loc[list(screen.features.genes), STATES].to_numpy(float)
        pred = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 4, 13)), x, q, cv=folds)
        mean = np.zeros_like(q)
        for train, test in folds.split(q):
            mean[test] = q[train].mean(axis=0)
        errors[signal] = 0.5 * np.abs(pred - q).sum(axis=1).mean() / (0.5 * np.abs(mean - q).sum(axis=1).mean())
    assert errors[0.0] > 0.97  # no better than the training mean
    assert errors[3.0] < errors[1.0] < 0.95
    assert feature_screens[3.0].adata.uns[KEYS.truth]["params"]["feature_signal"] == 3.0


def test_knobs_reject_bad_values():
    small = {"n_genes": 200, "n_knockouts": 8, "n_cells": 500}
    with pytest.raises(InputError, match="feature_signal"):
        simulate_screen(**small, feature_signal=-1.0)
    with pytest.raises(InputError, match="within_state_shift"):
        simulate_screen(**small, within_state_shift=float("nan"))
    with pytest.raises(InputError, match=r"label_noise=1.5: must be in \[0, 1\]"):
        simulate_screen(**small, label_noise=1.5)


def test_panel_settings_are_simulator_arguments():
    accepted = set(inspect.signature(simulate_screen).parameters)
    assert len(SCREEN_PANEL) >= 5
    assert SCREEN_PANEL["default"] == {}
    for name, kwargs in SCREEN_PANEL.items():
        assert set(kwargs) <= accepted, name
    # the panel ``reproduce --panel`` runs: every screen is a simulator setting, one of them genome-sized
    from perturbscore.evaluation import PANEL_SCREENS

    assert set(PANEL_SCREENS) <= set(SCREEN_PANEL)
    assert len(PANEL_SCREENS) >= 5
    assert any(SCREEN_PANEL[n].get("n_genes", 0) >= 15_000 for n in PANEL_SCREENS)
