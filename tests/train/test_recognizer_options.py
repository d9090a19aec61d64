"""Training passes the ridge T's options (robust weights, subsampled read-out) to every fit of T."""

from __future__ import annotations

import torch

from perturbscore.tl import fit
from perturbscore.train import REC_REFIT_EVERY


def test_training_passes_the_robust_option_to_t(screen_with_unseen, tmp_path) -> None:  # noqa: ANN001
    screen = screen_with_unseen
    plain = fit(screen, out=tmp_path / "plain", max_steps=3, progress=False, threads=1, rec_robust=0.0)
    robust = fit(screen, out=tmp_path / "robust", max_steps=3, progress=False, threads=1, rec_robust=1.0)
    assert bool((plain.net.recognizer.last_weights_ == 1).all())
    assert float(robust.net.recognizer.last_weights_.min()) < 1.0  # knockouts T predicts worst are discounted
    assert not torch.equal(plain.net.recognizer.coef, robust.net.recognizer.coef)


def test_training_passes_the_subsample_option_to_t(screen_with_unseen, tmp_path) -> None:  # noqa: ANN001
    """Same steps, same leave-one-out fits; only T's stored read-out differs (it averages subset fits)."""
    screen = screen_with_unseen
    steps = REC_REFIT_EVERY + 2
    full = fit(screen, out=tmp_path / "full", max_steps=steps, progress=False, threads=1, rec_subsample=0.0)
    sub = fit(screen, out=tmp_path / "sub", max_steps=steps, progress=False, threads=1, rec_subsample=0.6)
    assert sub.train_config.rec_subsample == 0.6
    assert int(sub.net.recognizer.n_fits) == 2  # steps 0 and REC_REFIT_EVERY fold a fit into the moving average
    assert not torch.equal(full.net.recognizer.coef, sub.net.recognizer.coef)
