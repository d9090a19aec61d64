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


@pytest.fixture(scope="session")
def one_step():
    """A factory: ``(net, module, episode)`` for one training step of a preset (the default) with ``overrides``.

    The net is fresh (front end fitted on the training knockouts of the small default simulated screen); the
    episode is step 0's, so a test can call ``module.compute(episode)`` and backpropagate one loss term.
    """
    from dataclasses import replace

    import numpy as np

    from perturbscore.datasets import synthetic_perturb_seq
    from perturbscore.train import (
        StatisticModule,
        build_net,
        front_end_inputs,
        make_sampler,
        model_config_for,
        preset,
        schedule_of,
        split_perturbations,
    )

    sim = synthetic_perturb_seq(seed=0)
    screen = read_screen(sim.adata, features=sim.features)

    def make(preset_name: str = "default", **overrides):  # noqa: ANN003, ANN202
        cfg, over = preset(preset_name)
        cfg = replace(cfg, **overrides)
        net = build_net(model_config_for(screen, cfg, **over), seed=0)
        split = split_perturbations(screen, n_train=cfg.n_train, n_val=cfg.n_val, seed=0)
        take, _ = front_end_inputs(net.front, screen, split.train, n_cells=2000, seed=0)
        sampler = make_sampler(screen, split.train, take, config=cfg,
                               target_pool=screen.proportions, schedule=schedule_of(cfg), target_noise=0.05,
                               features=cfg.use_recognizer)  # fmt: skip
        return net, StatisticModule(net, cfg), sampler.sample(0, np.random.default_rng(0))

    return make
