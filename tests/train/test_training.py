"""Training: determinism, the loss falls, metrics.csv, presets, save/load round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from perturbscore._errors import InputError
from perturbscore.io import read_screen
from perturbscore.nn import ModelConfig
from perturbscore.tl import PerturbScoreModel, fit
from perturbscore.train import TrainConfig, preset

FAST = {"max_steps": 80, "steps_per_epoch": 20, "progress": False, "n_train": 6, "n_val": 2}


@pytest.fixture(scope="module")
def screen(small_screen):  # noqa: ANN001, ANN201
    return read_screen(small_screen.adata, features=small_screen.features)


@pytest.fixture(scope="module")
def trained(screen, tmp_path_factory):  # noqa: ANN001, ANN201
    out = tmp_path_factory.mktemp("runs") / "a"
    return fit(screen, out=out, seed=3, **FAST), out


def test_run_directory_and_metrics(trained) -> None:  # noqa: ANN001
    model, out = trained
    for name in ("config.json", "config.yaml", "metrics.csv", "model/model.safetensors", "model/model.json"):
        assert (out / name).exists(), name
    m = pd.read_csv(out / "metrics.csv")
    assert len(m) == 4  # 80 steps / 20 per epoch
    for col in ("train_pred_loss", "val_pred_loss", "train_rec_loss", "val_rec_loss", "val_rec_r2"):
        assert col in m.columns, col
        assert m[col].notna().all(), col


def test_loss_falls(screen, tmp_path) -> None:  # noqa: ANN001
    fit(screen, out=tmp_path / "r", seed=0, **(FAST | {"max_steps": 200, "steps_per_epoch": 50}))
    m = pd.read_csv(tmp_path / "r" / "metrics.csv")
    assert m["train_pred_loss"].iloc[-1] < 0.8 * m["train_pred_loss"].iloc[0]


def test_training_is_deterministic_for_a_seed(screen, trained, tmp_path) -> None:  # noqa: ANN001
    model, out = trained
    again = fit(screen, out=tmp_path / "b", seed=3, **FAST)
    a, b = (pd.read_csv(p).drop(columns="wall_s") for p in (out / "metrics.csv", tmp_path / "b" / "metrics.csv"))
    pd.testing.assert_frame_equal(a, b)
    cells = screen.rows.take(screen.cell_index[0])
    np.testing.assert_array_equal(model.statistic(cells), again.statistic(cells))


def test_save_load_round_trip_gives_identical_outputs(screen, trained, tmp_path) -> None:  # noqa: ANN001
    model, _ = trained
    model.save(tmp_path / "m")
    loaded = PerturbScoreModel.load(tmp_path / "m")
    cells = screen.rows.take(screen.cell_index[1])
    s1, s2 = model.statistic(cells), loaded.statistic(cells)
    np.testing.assert_array_equal(s1, s2)
    q = np.full(len(model.states), 1 / len(model.states))
    np.testing.assert_array_equal(model.predict_distance(s1, q, n_cells=5), loaded.predict_distance(s2, q, n_cells=5))
    feats = screen.feature_block(screen.knockouts[:2])
    np.testing.assert_array_equal(model.statistic_from_sequence(feats), loaded.statistic_from_sequence(feats))
    assert loaded.states == model.states
    assert list(loaded.gene_names) == list(model.gene_names)


def test_seed_baseline_is_one_flag(screen, tmp_path) -> None:  # noqa: ANN001
    cfg, model_over = preset("seed-baseline")
    assert not cfg.use_recognizer
    assert cfg.k_min == cfg.k_max == 60
    assert model_over["head"] == "attention"
    assert model_over["stat_activation"] == "identity"  # the seed's G output is linear
    model = fit(screen, out=tmp_path / "s", preset_name="seed-baseline", **(FAST | {"max_steps": 20}))
    assert not model.has_recognizer


def test_existing_run_is_not_overwritten(screen, trained) -> None:  # noqa: ANN001
    from perturbscore._errors import RunError

    _, out = trained
    before = (out / "model" / "model.safetensors").read_bytes()
    with pytest.raises(RunError, match="--overwrite"):
        fit(screen, out=out, **FAST)
    assert (out / "model" / "model.safetensors").read_bytes() == before


def test_train_config_validates() -> None:
    with pytest.raises(ValueError, match="k_max"):
        TrainConfig(k_min=5, k_max=2)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")


def _flushes_subnormals() -> bool:
    return float(torch.tensor([1e-40]) * 1.0) == 0.0


def test_subnormals_are_flushed_while_fitting_only(screen, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Training flushes subnormal floats (several times slower on CPUs) and leaves the process as it found it."""
    from lightning.pytorch.callbacks import Callback

    import perturbscore.train._loop as loop

    seen: list[bool] = []

    class Probe(Callback):
        def on_train_batch_start(self, *args: object) -> None:
            seen.append(_flushes_subnormals())

    make = loop._trainer

    def with_probe(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        trainer = make(*args, **kwargs)
        trainer.callbacks.append(Probe())
        return trainer

    monkeypatch.setattr(loop, "_trainer", with_probe)
    assert not _flushes_subnormals()
    fit(screen, out=tmp_path / "d", seed=0, **(FAST | {"max_steps": 3, "steps_per_epoch": 3}))
    assert seen
    assert all(seen)
    assert not _flushes_subnormals()


def test_kept_checkpoint_minimises_the_selection_score(trained) -> None:  # noqa: ANN001
    """best.ckpt is the validation with the lowest val_pred_loss + select_stability_weight * val_stability_loss."""
    model, out = trained
    m = pd.read_csv(out / "metrics.csv")
    w = model.train_config.select_stability_weight
    assert w > 0
    assert model.train_config.stability_weight > 0
    np.testing.assert_allclose(m["val_select"], m["val_pred_loss"] + w * m["val_stability_loss"], rtol=1e-5)
    best = m.loc[m["val_select"].idxmin()]
    kept = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert kept == int(best["step"])
    assert model.extra["best_val_pred_loss"] == pytest.approx(best["val_pred_loss"])
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert last == int(m["step"].iloc[-1])  # the latest validation, whichever was best


def test_t_is_robust_and_subsampled_by_default_and_not_in_the_seed_presets() -> None:
    cfg = TrainConfig()
    assert (cfg.rec_robust, cfg.rec_subsample) == (1.0, 0.6)
    for name in ("seed-full", "seed-baseline"):  # the seed's T is an MLP: no closed-form fit to weight or subsample
        seed = preset(name)[0]
        assert (seed.rec_robust, seed.rec_subsample) == (0.0, 0.0)
    for bad in ({"rec_robust": -1.0}, {"rec_subsample": 1.0}, {"rec_mode": "coupled"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_config_round_trips_and_unknown_keys_are_refused() -> None:
    cfg = TrainConfig(rec_robust=1.5, k_start_max=30, shrink_steps=10)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    saved = cfg.to_dict()
    saved["recognizer"] = saved["recognizer"] | {"rec_target_clip": 0.0}  # an option this version does not have
    with pytest.raises(ValueError, match="rec_target_clip"):
        TrainConfig.from_dict(saved)
    with pytest.raises(ValueError, match="optimiser"):
        TrainConfig.from_dict(cfg.to_dict() | {"optimiser": {}})  # a group this version does not have
    with pytest.raises(TypeError, match="rec_target_clip"):
        TrainConfig(rec_target_clip=0.0)


def test_options_are_grouped_and_read_by_name() -> None:
    from dataclasses import replace

    cfg = TrainConfig(k_min=5, lr=1e-3, rec_robust=2.0, stability_weight=0.0)
    assert (cfg.sampling.k_min, cfg.runtime.lr, cfg.recognizer.rec_robust, cfg.losses.stability_weight) == (
        5, 1e-3, 2.0, 0.0)  # fmt: skip
    assert (cfg.k_min, cfg.lr) == (5, 1e-3)
    moved = replace(cfg, lr=2e-3, k_max=9)
    assert (moved.lr, moved.k_max, moved.k_min, cfg.lr) == (2e-3, 9, 5, 1e-3)  # a copy; the original is unchanged
    assert set(cfg.options()) == {name for group in cfg.to_dict().values() for name in group}
    with pytest.raises(AttributeError):
        _ = cfg.no_such_option


def test_presets_apply_overrides_of_either_config_and_ignore_none() -> None:
    from perturbscore.train import PRESETS

    assert PRESETS == ("default", "seed-baseline", "seed-full")
    default, model = preset("default")
    assert default == TrainConfig()
    assert model == {}
    cfg, model = preset("seed-full", max_steps=7, lr=None, mix_channel=True, stat_activation=None)
    assert (cfg.preset, cfg.max_steps, cfg.lr, cfg.k_start_max) == ("seed-full", 7, 1e-3, 50)
    assert model["mix_channel"] is True
    assert model["stat_activation"] == "identity"  # None: the preset's value
    model["front_end"] = "pca"  # the caller's copy: the next call sees the preset unchanged
    assert preset("seed-full")[1]["front_end"] == "genes"
    # the seed presets keep the seed's 128-wide head; the default's is narrower
    seed_net = ModelConfig(n_genes=10, n_states=3, **preset("seed-baseline")[1])
    assert (seed_net.head, seed_net.head_hidden, ModelConfig(n_genes=10, n_states=3).head_hidden) == (
        "attention",
        128,
        64,
    )


def test_progress_is_one_bar_over_the_step_budget(screen, tmp_path, capsys) -> None:  # noqa: ANN001
    fit(screen, out=tmp_path / "p", seed=0, **(FAST | {"max_steps": 40, "steps_per_epoch": 10, "progress": True}))
    shown = capsys.readouterr()
    lines = [line for line in (shown.out + shown.err).replace("\r", "\n").splitlines() if line.strip()]
    training = [line for line in lines if line.startswith("training steps")]
    assert training, lines
    assert "40/40" in training[-1]
    assert not any("/?" in line for line in training), training  # the total is known from the first line
    assert "val_select=" in training[-1]
    assert not any(line.lstrip().startswith(("Epoch", "Validation", "Training:")) for line in lines), lines


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU")
def test_a_gpu_run_without_a_gpu_fails_before_anything_is_written(screen, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(InputError, match=r"accelerator='gpu' \(--accelerator gpu\) asks for a GPU"):
        fit(screen, out=tmp_path / "run", accelerator="gpu", **FAST)
    assert not (tmp_path / "run").exists()
