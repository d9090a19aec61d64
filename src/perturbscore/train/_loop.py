"""``train_statistic``: screen + configs -> a trained :class:`PerturbationStatistic`, with a run directory."""

from __future__ import annotations

import logging
import pickle
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from .._errors import RunError
from ..data import CellEmbedding, KSchedule, Screen
from ..nn import ModelConfig, PerturbationStatistic
from ._callbacks import EpochSeeder, MetricsCSV, StepProgressBar
from ._config import TrainConfig
from ._data import (
    EpisodeDataset,
    Split,
    front_end_inputs,
    identity,
    make_sampler,
    resolve_io,
    schedule_of,
)
from ._dist import check_devices
from ._module import REC_REFIT_EVERY, StatisticModule

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import ModelCheckpoint

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What training produced."""

    net: PerturbationStatistic
    split: Split
    history: pd.DataFrame
    best_val_pred_loss: float  # val_pred_loss of the kept checkpoint (chosen by val_select)
    embedding: CellEmbedding | None = None  # every cell's front-end coordinates, when the front end is a PCA


def model_config_for(screen: Screen, train: TrainConfig, **overrides: Any) -> ModelConfig:
    """Build the :class:`ModelConfig` for ``screen`` (feature dim only when T is trained)."""
    n_features = screen.features.shape[1] if (train.use_recognizer and screen.features is not None) else None
    return ModelConfig(n_genes=screen.n_genes, n_states=screen.n_states, n_features=n_features, **overrides)


def build_net(config: ModelConfig, *, seed: int) -> PerturbationStatistic:
    """Initialise the modules reproducibly without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PerturbationStatistic(config)


def fit_feature_basis(net: PerturbationStatistic, screen: Screen, config: TrainConfig) -> bool:
    """Fit ``T``'s feature basis on every gene of ``screen.features`` (ridge ``T``, ``config.feature_basis``).

    Returns whether a basis was fitted (not for an MLP ``T``, with the option off, or with too few genes).
    """
    rec = net.recognizer
    if rec is None or rec.head != "ridge" or not config.feature_basis or screen.features is None:
        return False
    n_genes, dim = len(screen.features.genes), screen.features.shape[1]
    fitted = rec.fit_basis(torch.from_numpy(screen.features.values))
    if fitted:
        logger.info("T's feature basis: fitted on the features of %d genes", n_genes)
    else:
        logger.info("T's feature basis: only %d genes have features (too few for %d dimensions); plain ridge",
                    n_genes, dim)  # fmt: skip
    return fitted


def train_statistic(
    screen: Screen,
    config: TrainConfig,
    model_config: ModelConfig,
    *,
    run_dir: Path,
    split: Split,
    resume: bool = False,
    progress: bool = True,
    rec_refit_every: int = REC_REFIT_EVERY,
) -> TrainResult:
    """Train the statistic on ``split.train`` and validate on ``split.val`` every epoch.

    Writes ``run_dir/metrics.csv`` and ``run_dir/checkpoints/{best,last}.ckpt``; ``resume`` continues from
    ``last.ckpt``. The returned network carries the best validation weights.

    A PCA front end is taken from the screen's stored embedding (:func:`perturbscore.pp.embed`) when it has
    one, else fitted and every cell embedded once before the first step; the steps then gather rows of the
    embedding. ``rec_refit_every``: a ridge ``T`` is fitted in closed form every this many steps (and at the
    start of every epoch); the steps between reuse the fit's leave-one-out map for their targets.
    """
    check_devices(config.accelerator, config.devices)
    run_dir = Path(run_dir)
    if config.steps_per_epoch > config.max_steps:  # validation (and early stopping) needs one full epoch
        # TrainConfig's __init__ takes every option by name; mypy's dataclass plugin knows only the four groups
        config = replace(config, steps_per_epoch=config.max_steps)  # type: ignore[call-arg]
    config = resolve_io(config, screen, front_end=model_config.front_end)
    net = build_net(model_config, seed=config.seed)
    take, emb = front_end_inputs(
        net.front, screen, split.train, n_cells=config.front_end_cells, seed=config.seed, progress=progress
    )
    use_feats = config.use_recognizer and model_config.n_features is not None
    if use_feats:
        fit_feature_basis(net, screen, config)
    pool = screen.proportions[[screen.index_of(p) for p in split.train if p != screen.control]]
    train_sampler = make_sampler(
        screen, split.train, take, config=config, target_pool=pool, schedule=schedule_of(config),
        target_noise=config.target_noise, features=use_feats,
    )  # fmt: skip
    val_schedule = KSchedule(config.k_min, config.k_max, distribution=config.k_distribution)
    val_sampler = make_sampler(
        screen, split.val, take, config=config, target_pool=pool, schedule=val_schedule, target_noise=0.0,
        features=use_feats,
    )  # fmt: skip
    rng = np.random.default_rng([config.seed, 999_983])
    val_eps = [val_sampler.sample(config.max_steps, rng) for _ in range(config.val_episodes)]
    dataset = EpisodeDataset(
        train_sampler, steps_per_epoch=config.steps_per_epoch, seed=config.seed,
        prefetch=config.prefetch or 0,
    )  # fmt: skip
    module = StatisticModule(net, config, rec_refit_every=rec_refit_every)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    threads = torch.get_num_threads()
    pl_logger = logging.getLogger("lightning.pytorch")
    pl_level = pl_logger.level
    if not logger.isEnabledFor(logging.DEBUG):  # Lightning's banners and tips are noise here
        pl_logger.setLevel(logging.WARNING)
    trainer = _trainer(config, run_dir, dataset, progress=progress)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(config.seed)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")  # a resume writes where it left off
        warnings.filterwarnings("ignore", ".*sync_dist=True.*")  # DDP: train_* metrics are rank 0's, on purpose
        try:
            trainer.fit(
                module,
                train_dataloaders=DataLoader(dataset, batch_size=None, shuffle=False, collate_fn=identity),
                # a list is a map-style dataset (DataLoader reads __getitem__ and __len__; its stub wants a Dataset)
                val_dataloaders=DataLoader(val_eps, batch_size=None, shuffle=False, collate_fn=identity),  # type: ignore[arg-type]
                ckpt_path=str(ckpt) if resume and ckpt.exists() else None,
                weights_only=True,  # never unpickle arbitrary objects from a checkpoint
            )
        except pickle.UnpicklingError as err:
            raise RunError(
                f"{ckpt} is not a plain perturbscore checkpoint (it holds pickled objects); refusing to load it. "
                "Delete the checkpoints/ folder and train again without --resume."
            ) from err
        finally:
            dataset.close()
            if emb is not None and emb.params.get("temporary"):  # a store computed for this run alone
                shutil.rmtree(emb.params["temporary"], ignore_errors=True)
            torch.set_flush_denormal(False)  # the process default (the module flushes subnormals while it fits)
            torch.set_num_threads(threads)
            pl_logger.setLevel(pl_level)
    best = cast("ModelCheckpoint", trainer.checkpoint_callback).best_model_path  # checkpoint_callbacks' first
    best_step = None
    if best:
        saved = torch.load(best, map_location="cpu", weights_only=True)
        module.load_state_dict(saved["state_dict"])
        best_step = int(saved["global_step"])
    net = module.net.cpu()
    history = pd.read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else pd.DataFrame()
    return TrainResult(net, split, history, _val_pred_loss_at(history, best_step), emb)


def _val_pred_loss_at(history: pd.DataFrame, step: int | None) -> float:
    """Return the validation prediction loss logged at ``step`` (the kept checkpoint's), NaN if not logged."""
    if step is None or "val_pred_loss" not in history or "step" not in history:
        return float("nan")
    values = history.loc[history["step"] == step, "val_pred_loss"].dropna()
    return float(values.iloc[-1]) if len(values) else float("nan")


def _strategy(name: str) -> str:
    """Return Lightning's strategy for ``name``.

    DDP must tolerate parameters a step leaves unused (e.g. T's heads when a step's loss does not touch them).
    """
    return {"ddp": "ddp_find_unused_parameters_true", "ddp_spawn": "ddp_spawn_find_unused_parameters_true"}.get(
        name, name
    )


def checkpoint_callbacks(dirpath: Path, monitor: str = "val_select") -> list:
    """``best.ckpt`` (lowest ``monitor``) and ``last.ckpt`` (every validation), in that order.

    Lightning's ``save_last=True`` on a monitored checkpoint only writes ``last.ckpt`` when the monitored
    value improves, so a resumed run would restart from its last improvement, not where it stopped; the
    second, unmonitored callback keeps ``last.ckpt`` at the latest validation. ``trainer.checkpoint_callback``
    is the first, the best.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = ModelCheckpoint(
        dirpath=dirpath, filename="best", monitor=monitor, mode="min", save_top_k=1,
        enable_version_counter=False,
    )  # fmt: skip
    last = ModelCheckpoint(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
    return [best, last]


def _trainer(config: TrainConfig, run_dir: Path, dataset: EpisodeDataset, *, progress: bool) -> L.Trainer:
    from lightning.pytorch.callbacks import EarlyStopping

    callbacks = [
        EpochSeeder(dataset),
        MetricsCSV(run_dir / "metrics.csv"),
        *checkpoint_callbacks(run_dir / "checkpoints"),
        EarlyStopping(monitor="val_select", mode="min", patience=config.patience, check_on_train_epoch_end=False),
    ]
    if progress:
        callbacks.append(StepProgressBar())
    return L.Trainer(
        max_steps=config.max_steps,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=_strategy(config.strategy),
        num_nodes=config.num_nodes,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=1,
        deterministic=False,
        default_root_dir=str(run_dir),
        log_every_n_steps=max(1, config.steps_per_epoch),
    )
