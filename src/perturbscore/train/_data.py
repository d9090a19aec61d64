"""From a validated screen to training/validation episodes: split, front-end inputs, samplers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

from .._errors import InputError
from ..data import CellEmbedding, Episode, EpisodeSampler, InMemoryRows, KSchedule, Screen
from ..nn import FrontEnd
from ._config import TrainConfig

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class Split:
    """Perturbations used for training, validation and test (never split by cell)."""

    train: list[str]
    val: list[str]
    test: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        """JSON-ready dict."""
        return {"train": self.train, "val": self.val, "test": self.test}


def split_perturbations(screen: Screen, *, n_train: int, n_val: int, seed: int) -> Split:
    """Shuffle the knockouts with ``seed``; the first ``n_train`` train, the next ``n_val`` validate.

    The control (if any) always trains. With fewer knockouts than ``n_train + n_val``, about one in six
    validates and the rest train.
    """
    kos = sorted(screen.knockouts)
    if len(kos) < 3:
        raise InputError(
            f"{screen.source or 'the screen'} has {len(kos)} knockout(s); training needs at least 3 "
            "(2 to train, 1 to validate). Check --perturbation-key and --control."
        )
    order = [kos[i] for i in np.random.default_rng(seed).permutation(len(kos))]
    if len(kos) < n_train + n_val:
        n_val = max(1, len(kos) // 6)
        n_train = len(kos) - n_val
        logger.warning("only %d knockouts: using %d to train and %d to validate", len(kos), n_train, n_val)
    train = order[:n_train] + ([screen.control] if screen.control else [])
    return Split(train=train, val=order[n_train : n_train + n_val], test=order[n_train + n_val :])


def fit_front_end(front: FrontEnd, screen: Screen, train: list[str], *, n_cells: int, seed: int) -> None:
    """Fit the fixed front end on up to ``n_cells`` random training cells."""
    rows = np.concatenate([screen.cell_index[screen.index_of(p)] for p in train])
    rng = np.random.default_rng(seed)
    if len(rows) > n_cells:
        rows = np.sort(rng.choice(rows, size=n_cells, replace=False))
    front.fit_rows(screen.rows.take, rows, seed=seed)


def on_disk(screen: Screen) -> bool:
    """Whether the screen's matrix stays on disk (read row by row) rather than in memory."""
    return not isinstance(screen.rows, InMemoryRows)


def grouped(screen: Screen) -> bool:
    """Whether every perturbation's cells are adjacent rows (the layout fast to sample from disk)."""
    return all(ix.size == 0 or int(ix[-1]) - int(ix[0]) + 1 == ix.size for ix in screen.cell_index)


def resolve_io(config: TrainConfig, screen: Screen, *, front_end: str | None = None) -> TrainConfig:
    """Fill the automatic ``sample_window`` and ``prefetch`` from where the screen's matrix lives.

    Only ``f`` on raw genes reads the matrix at every step; a PCA front end (``front_end="pca"``) reads the
    cells' stored or precomputed coordinates, held in memory or memory-mapped, so it draws no windows and
    prefetches nothing. ``front_end=None`` assumes the steps read the matrix.
    """
    disk = on_disk(screen) and front_end != "pca"
    window = config.sample_window
    if window is None:
        window = 4 if disk and grouped(screen) else 0
        if disk and not window:
            logger.warning(
                "%s is read from disk but its rows are not grouped by perturbation: every step reads scattered "
                "rows. For large screens, rewrite it once with the cells of each perturbation together, e.g. "
                "adata[adata.obs['<perturbation column>'].argsort(kind='stable')].write_h5ad('grouped.h5ad'), "
                "or load it into memory (no --backed).",
                screen.source or "the screen",
            )
    prefetch = config.prefetch if config.prefetch is not None else (4 if disk else 0)
    # TrainConfig's __init__ takes every option by name; mypy's dataclass plugin knows only the four groups
    return replace(config, sample_window=window, prefetch=prefetch)  # type: ignore[call-arg]


def front_end_inputs(
    front: FrontEnd, screen: Screen, train: list[str], *, n_cells: int, seed: int, progress: bool = False
) -> tuple[Callable[[np.ndarray], sp.csr_matrix | torch.Tensor], CellEmbedding | None]:
    """Ready ``front`` and return ``take(rows) -> f's inputs`` for the sampler, and the embedding it reads.

    ``f`` on raw genes reads the screen's rows. A PCA front end reads every cell's coordinates: the screen's
    stored embedding (:func:`perturbscore.pp.embed`; its front end is loaded into ``front``) when it has one
    of ``front``'s shape, else ``front`` is fitted on up to ``n_cells`` training cells and the embedding is
    computed once, here (in memory, or a temporary store for a very large screen).
    """
    if front.kind != "pca":
        return screen.rows.take, None
    from ..pp import attach_embedding
    from ..pp._pass import embedding_for_training

    emb = attach_embedding(screen).embedding
    shape = tuple(front.components.shape)
    if emb is not None and tuple(emb.front["components"].shape) != shape:
        logger.warning(
            "the stored embedding %r has %d components of %d genes; this model's front end has %d of %d: fitting "
            "a new one (embed again with n_components=%d, n_top_genes=%d to reuse it)",
            emb.key, emb.n_components, emb.n_selected, shape[0], shape[1], shape[0], shape[1],
        )  # fmt: skip
        emb = None
    if emb is not None:
        front.load_state(emb.front)
        return emb.take, emb
    fit_front_end(front, screen, train, n_cells=n_cells, seed=seed)
    emb = embedding_for_training(screen.rows, front.state(), key="training", progress=progress)
    if on_disk(screen):
        logger.info(
            "computed the embedding of %s for this run (%.0f s); `perturbscore embed` stores it for later runs",
            screen.source or "the screen", emb.params.get("pass_seconds", 0.0),
        )  # fmt: skip
    return emb.take, emb


def make_sampler(
    screen: Screen,
    perturbations: list[str],
    take,  # noqa: ANN001
    *,
    config: TrainConfig,
    target_pool: np.ndarray,
    schedule: KSchedule,
    target_noise: float,
    features: bool,
) -> EpisodeSampler:
    """Build an :class:`EpisodeSampler` over ``perturbations`` of ``screen``."""
    ids = np.array([screen.index_of(p) for p in perturbations])
    feats = has = None
    if features and screen.features is not None:
        has = np.array([p in screen.features for p in perturbations])
        w, d = screen.features.shape
        feats = np.zeros((len(perturbations), w, d), dtype=np.float32)  # (P, W, D)
        if has.any():
            feats[has] = screen.features.get([p for p, h in zip(perturbations, has, strict=True) if h])
    return EpisodeSampler(
        take,
        cell_index=[screen.cell_index[i] for i in ids],
        state_codes=screen.state_codes,
        proportions=screen.proportions[ids],
        perturbation_ids=ids,
        target_pool=target_pool,
        schedule=schedule,
        targets_per_perturbation=config.targets_per_perturbation,
        target_noise=target_noise,
        uniform_targets=config.uniform_targets if target_noise > 0 else 0.0,  # validation: observed mixes only
        replace_small=config.replace_small,
        features=feats,
        has_features=has,
        reference_k=config.rec_reference_k if (features and config.rec_mode != "seed") else 0,
        perturbations_per_step=config.perturbations_per_step,
        window=config.sample_window or 0,
    )


def schedule_of(config: TrainConfig) -> KSchedule:
    """Return the training :class:`KSchedule` of ``config``."""
    return KSchedule(
        k_min=config.k_min,
        k_max=config.k_max,
        start_max=config.k_start_max,
        shrink_steps=config.shrink_steps,
        distribution=config.k_distribution,
    )


class EpisodeDataset(Dataset):
    """``steps_per_epoch`` freshly sampled episodes per epoch, each seeded by ``(seed, step, rank)``.

    Seeding per step (not per process) makes a resumed run draw exactly the episodes the original would.
    With ``prefetch > 0`` the next ``prefetch`` episodes are drawn on a background thread while the
    current one trains (reads from disk overlap compute); the episodes are the same either way.
    """

    def __init__(
        self, sampler: EpisodeSampler, *, steps_per_epoch: int, seed: int, rank: int = 0, prefetch: int = 0
    ) -> None:
        self.sampler, self.steps, self.seed, self.rank = sampler, steps_per_epoch, seed, rank
        self.prefetch = int(prefetch)
        self.epoch = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future] = {}
        self._last: int | None = None

    def __len__(self) -> int:
        return self.steps

    def draw(self, step: int) -> Episode:
        """Draw the episode of global ``step``."""
        return self.sampler.sample(step, np.random.default_rng([self.seed, step, self.rank]))

    def __getitem__(self, i: int) -> Episode:
        step = self.epoch * self.steps + i
        if self.prefetch <= 0:
            return self.draw(step)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perturbscore-prefetch")
        stride = step - self._last if self._last is not None and step > self._last else 1  # DDP: every n-th step
        self._last = step
        for s in range(step, step + stride * self.prefetch + 1, stride):
            if s not in self._pending:
                self._pending[s] = self._pool.submit(self.draw, s)
        for stale in [s for s in self._pending if s < step]:  # a resume or a skipped index
            self._pending.pop(stale).cancel()
        return self._pending.pop(step).result()

    def close(self) -> None:
        """Stop the prefetch thread (pending draws are dropped)."""
        if self._pool is not None:
            for fut in self._pending.values():
                fut.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
            self._pool = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pool"], state["_pending"], state["_last"] = None, {}, None
        return state


def identity(batch: _T) -> _T:
    """Collate function: episodes are already batches."""
    return batch
