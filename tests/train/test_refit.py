"""``rec_refit_cells``: after training, the ridge T is fitted once more, to the final statistic of many cells."""

from __future__ import annotations

import numpy as np
import torch

from perturbscore.nn import SequenceRecognizer
from perturbscore.nn._recognition import _BASIS_BUFFERS
from perturbscore.tl import PerturbScoreModel, fit


def test_refit_is_one_fit_to_the_final_statistic_of_all_cells(screen_with_unseen, tmp_path) -> None:
    screen = screen_with_unseen
    model = fit(screen, out=tmp_path / "run", max_steps=6, progress=False, threads=1, rec_refit_cells=10_000)
    rec = model.net.recognizer
    assert int(rec.n_fits) == 1  # the moving average was replaced, not added to
    train = [g for g in model.split["train"] if g in screen.features]
    stats = np.stack([model.statistic(screen.rows.take(screen.cell_index[screen.index_of(g)])) for g in train])
    fresh = SequenceRecognizer(16, stats.shape[1], pooling=rec.pooling, head="ridge")
    fresh.load_state_dict({k: v for k, v in rec.state_dict().items() if k in _BASIS_BUFFERS or "centre" in k
                           or "log_width" in k or k.startswith("norm.")}, strict=False)  # fmt: skip
    with torch.no_grad():
        fresh.fit_predict(
            torch.from_numpy(screen.feature_block(train)),
            torch.from_numpy(stats).float(),
            clip_dims=model.model_config.n_stat,
            robust=model.train_config.rec_robust,  # the same robust weights as the refit (the default: 1)
        )
    torch.testing.assert_close(rec.coef, fresh.coef, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rec.intercept, fresh.intercept, rtol=1e-4, atol=1e-5)
    loaded = PerturbScoreModel.load(tmp_path / "run" / "model")  # what is saved is the refitted T
    torch.testing.assert_close(loaded.net.recognizer.coef, rec.coef)


def test_without_refit_the_moving_average_is_kept(screen_with_unseen, tmp_path) -> None:
    screen = screen_with_unseen
    model = fit(screen, out=tmp_path / "run", max_steps=6, progress=False, threads=1)
    assert int(model.net.recognizer.n_fits) > 1


def test_training_passes_the_robust_and_per_part_options_to_t(screen_with_unseen, tmp_path) -> None:
    screen = screen_with_unseen
    plain = fit(screen, out=tmp_path / "plain", max_steps=3, progress=False, threads=1, rec_robust=0.0)
    robust = fit(
        screen, out=tmp_path / "robust", max_steps=3, progress=False, threads=1, rec_robust=1.0, rec_select="per_part"
    )
    assert bool((plain.net.recognizer.last_weights_ == 1).all())
    assert float(robust.net.recognizer.last_weights_.min()) < 1.0  # knockouts T predicts worst are discounted
    assert not torch.equal(plain.net.recognizer.coef, robust.net.recognizer.coef)


def test_training_passes_the_subsample_option_to_t(screen_with_unseen, tmp_path) -> None:
    """Same steps, same leave-one-out fits; only T's stored read-out differs (it averages subset fits)."""
    screen = screen_with_unseen
    full = fit(screen, out=tmp_path / "full", max_steps=3, progress=False, threads=1, rec_subsample=0.0)
    sub = fit(screen, out=tmp_path / "sub", max_steps=3, progress=False, threads=1, rec_subsample=0.6)
    assert sub.train_config.rec_subsample == 0.6
    assert not torch.equal(full.net.recognizer.coef, sub.net.recognizer.coef)
