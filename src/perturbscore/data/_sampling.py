"""Episodic sampling: small random sets of cells per perturbation, noisy targets, true distances.

Each training step sees, for every training perturbation, ``k ~ U{k_min..k_max(step)}`` of its cells
(``k_max`` shrinking over training) and several targets ``Q = normalise(q(P') + U(0, alpha)^C)`` with
``P'`` an observed training perturbation; the true distance ``d(q(P), Q)`` uses all cells of ``P``.
Only the sampled rows are ever gathered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch


@dataclass(frozen=True)
class KSchedule:
    """How many cells each perturbation contributes per step.

    ``k ~ U{k_min..upper(step)}`` (or log-uniform), where ``upper`` moves linearly from ``start_max`` to
    ``k_max`` over the first ``shrink_steps`` steps (the seed shrinks its maximum as training goes on).
    """

    k_min: int = 2
    k_max: int = 10
    start_max: int | None = None
    shrink_steps: int = 0
    distribution: Literal["uniform", "loguniform"] = "uniform"

    def __post_init__(self) -> None:
        if not 1 <= self.k_min <= self.k_max:
            raise ValueError(f"need 1 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}")
        if self.start_max is not None and self.start_max < self.k_min:
            raise ValueError(f"start_max ({self.start_max}) must be >= k_min ({self.k_min})")

    def upper(self, step: int) -> int:
        """Largest ``k`` allowed at ``step``."""
        if self.start_max is None or self.shrink_steps <= 0:
            return self.k_max
        frac = min(1.0, step / self.shrink_steps)
        return max(self.k_min, round(self.start_max + (self.k_max - self.start_max) * frac))

    def draw(self, n: int, step: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of ``k`` at ``step``."""
        hi = self.upper(step)
        if self.distribution == "loguniform":
            u = rng.uniform(math.log(self.k_min), math.log(hi + 1), size=n)
            return np.clip(np.floor(np.exp(u)), self.k_min, hi).astype(np.int64)
        return rng.integers(self.k_min, hi + 1, size=n)


def sample_targets(
    pool: np.ndarray, n: int, *, alpha: float, rng: np.random.Generator, uniform_frac: float = 0.0
) -> np.ndarray:
    """``n`` targets ``normalise(q(P') + U(0, alpha)^C)`` with ``P'`` drawn from ``pool`` ``(P, C)``.

    A share ``uniform_frac`` of them is instead drawn from ``Dirichlet(0.5)`` over the whole simplex, so the
    head also learns targets far from any observed mix (e.g. "all progenitor").
    """
    base = pool[rng.integers(0, len(pool), size=n)]  # (n, C)
    noisy = base + rng.uniform(0.0, alpha, size=base.shape) if alpha > 0 else base
    out = noisy / noisy.sum(axis=1, keepdims=True)
    if uniform_frac > 0:
        wide = rng.random(n) < uniform_frac
        out[wide] = rng.dirichlet(np.full(pool.shape[1], 0.5), size=int(wide.sum()))
    return out


def tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation ``0.5 * sum |p - q|`` over the last axis."""
    return 0.5 * np.abs(p - q).sum(axis=-1)


def draw_rows(
    cell_index: list[np.ndarray],
    k: np.ndarray,
    rng: np.random.Generator,
    *,
    replace_small: bool = True,
    window: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``k[p]`` cells of each perturbation ``p`` (without replacement where it has enough cells).

    A perturbation with fewer than ``k[p]`` cells is sampled with replacement (``replace_small``) or gives
    all its cells. With ``window > 0`` the ``k`` cells are drawn from a random run of ``window * k``
    consecutive entries of the perturbation's index (cyclically): on a screen stored grouped by
    perturbation, in random order within groups, that is still a uniformly random set of cells, and it
    is read from disk as one short run instead of ``k`` scattered rows. Returns the concatenated row
    indices and the number of cells used per perturbation.
    """
    rows, used = [], np.empty(len(k), dtype=np.int64)
    for p, (ix, kp) in enumerate(zip(cell_index, k, strict=True)):
        n = len(ix)
        if window > 0 and n > window * kp:
            span = (rng.integers(n) + np.arange(window * kp)) % n  # (window * k,) a cyclic run
            pick = ix[np.sort(span[rng.choice(span.size, size=kp, replace=False)])]
        elif n >= kp:
            pick = ix[rng.choice(n, size=kp, replace=False)] if kp < n else ix
        elif replace_small:
            pick = ix[rng.integers(0, n, size=kp)]
        else:
            pick = ix
        rows.append(pick)
        used[p] = len(pick)
    return np.concatenate(rows), used


#: Without replacement, a perturbation drawing more than this share of its cells is drawn by a permutation of
#: them (redrawing repeats, :func:`draw_rows_at_once`, would take many rounds).
DENSE_SHARE = 0.5


def draw_rows_at_once(
    flat: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    k: np.ndarray,
    rng: np.random.Generator,
    *,
    replace_small: bool = True,
    owner: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`draw_rows` without ``window``, for all perturbations at once (no Python loop over them).

    Perturbation ``p``'s cells are ``flat[starts[p] : starts[p] + sizes[p]]``. Each draws ``k[p]`` positions
    uniformly; where draws of a perturbation land on the same cell, one keeps it and the others draw again,
    until no cell is drawn twice (every set of ``k[p]`` distinct cells is then equally likely, as with
    :func:`draw_rows`). Perturbations asked for more than :data:`DENSE_SHARE` of their cells, all of them or
    more than they have are handled as :func:`draw_rows` does. ``owner`` is scratch space, ``flat.size``
    int64 filled with -1 (left so on return; the sampler keeps one). Returns the row indices grouped by
    perturbation, in order, and the cells used per perturbation.
    """
    k = np.asarray(k, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    short = sizes < k
    used = np.where(short & (not replace_small), sizes, k)  # (P,)
    seg = np.repeat(np.arange(k.size), used)  # (N,) perturbation slot of each drawn cell
    n_of = sizes[seg]  # (N,)
    at = starts[seg] + np.floor(rng.random(seg.size) * n_of).astype(np.int64)  # (N,) positions in flat
    all_cells = (sizes == k) | (short & (not replace_small))
    dense = ~short & ~all_cells & (k > DENSE_SHARE * sizes)
    first = np.r_[0, np.cumsum(used)[:-1]]  # (P,) first slot of each perturbation
    for p in np.flatnonzero(all_cells):
        at[first[p] : first[p] + used[p]] = starts[p] + np.arange(used[p])
    for p in np.flatnonzero(dense):
        at[first[p] : first[p] + used[p]] = starts[p] + rng.permutation(sizes[p])[: used[p]]
    slots = np.flatnonzero((~short & ~all_cells & ~dense)[seg])  # a few cells of many: redraw repeats
    if slots.size:
        owner = np.full(flat.size, -1, dtype=np.int64) if owner is None else owner
        todo = slots
        while todo.size:
            free = todo[owner[at[todo]] < 0]
            owner[at[free]] = free  # of several slots on one free cell, the last written keeps it
            todo = todo[owner[at[todo]] != todo]
            at[todo] = starts[seg[todo]] + np.floor(rng.random(todo.size) * n_of[todo]).astype(np.int64)
        owner[at[slots]] = -1
    return flat[at], used


@dataclass
class Episode:
    """One step's batch. ``P`` perturbations, ``N`` sampled cells in all, ``T`` targets each."""

    inputs: sp.csr_matrix | torch.Tensor  # (N, n_inputs): CSR genes, or dense front-end coordinates
    segments: torch.Tensor  # (N,) which perturbation slot each cell belongs to
    perturbation: torch.Tensor  # (P,) index into the screen's perturbations
    k: torch.Tensor  # (P,) cells used per perturbation
    targets: torch.Tensor  # (P, T, C)
    distances: torch.Tensor  # (P, T) true TV distances from all cells
    proportions: torch.Tensor  # (P, C) true q(P)
    cell_states: torch.Tensor  # (N,) state code of each sampled cell
    features: torch.Tensor | None = None  # (P, W, D) gene features, zeros where missing
    has_features: torch.Tensor | None = None  # (P,) bool
    ref_inputs: sp.csr_matrix | torch.Tensor | None = None  # (N_ref, n_inputs) a larger reference sample
    ref_segments: torch.Tensor | None = None  # (N_ref,)

    @property
    def n_sets(self) -> int:
        """``P``."""
        return int(self.perturbation.shape[0])

    def to(self, device: torch.device | str, **kwargs: object) -> Episode:
        """Move tensors to ``device`` (scipy inputs stay on the host; the model moves them)."""
        moved = {
            name: getattr(self, name).to(device)
            for name in ("segments", "perturbation", "k", "targets", "distances", "proportions", "cell_states")
        }

        def mv(x: object) -> object:
            return x.to(device) if isinstance(x, torch.Tensor) else x

        extra: dict[str, Any] = {
            n: mv(getattr(self, n)) for n in ("inputs", "features", "has_features", "ref_inputs", "ref_segments")
        }
        return replace(self, **extra, **moved)


class EpisodeSampler:
    """Draw :class:`Episode` batches from a set of perturbations.

    Parameters
    ----------
    take
        ``take(rows) -> inputs`` for cell row indices (CSR rows, or cached front-end coordinates).
    cell_index
        Row indices of each perturbation's cells.
    state_codes
        State code of every cell (all rows of the screen).
    proportions
        ``q(P)`` of each perturbation ``(P, C)``.
    perturbation_ids
        Global index of each perturbation (reported in episodes).
    target_pool
        Observed mixes targets are drawn around (training perturbations only).
    schedule
        Cells per perturbation per step.
    targets_per_perturbation
        ``T``.
    target_noise
        ``alpha`` of the target noise (0: exact observed mixes, used for validation).
    replace_small
        Sample with replacement when a perturbation has fewer cells than ``k`` (else use all its cells).
    features
        ``(P, W, D)`` gene features, with ``has_features`` ``(P,)``.
    uniform_targets
        Share of targets drawn over the whole simplex instead of around observed mixes.
    reference_k
        If > 0, also draw ``reference_k`` cells per perturbation: a low-noise reference statistic for
        the recognition loss.
    perturbations_per_step
        If > 0 and fewer than the perturbations, each episode covers this many of them, drawn at random
        (genome-wide screens: a step cannot hold 10,000 perturbations).
    window
        Draw each perturbation's cells from a short run of its rows (see :func:`draw_rows`).
    """

    def __init__(
        self,
        take: Callable[[np.ndarray], sp.csr_matrix | torch.Tensor],
        *,
        cell_index: list[np.ndarray],
        state_codes: np.ndarray,
        proportions: np.ndarray,
        perturbation_ids: np.ndarray,
        target_pool: np.ndarray,
        schedule: KSchedule,
        targets_per_perturbation: int = 4,
        target_noise: float = 0.05,
        replace_small: bool = True,
        features: np.ndarray | None = None,
        has_features: np.ndarray | None = None,
        reference_k: int = 0,
        uniform_targets: float = 0.0,
        perturbations_per_step: int = 0,
        window: int = 0,
    ) -> None:
        if len(cell_index) == 0:
            raise ValueError("no perturbations to sample from")
        if any(len(ix) == 0 for ix in cell_index):
            raise ValueError("every perturbation needs at least one cell")
        self.take, self.cell_index, self.state_codes = take, cell_index, np.asarray(state_codes)
        self.proportions = np.asarray(proportions, dtype=np.float64)
        self.perturbation_ids = np.asarray(perturbation_ids, dtype=np.int64)
        self.target_pool = np.asarray(target_pool, dtype=np.float64)
        self.schedule, self.n_targets, self.alpha = schedule, targets_per_perturbation, target_noise
        self.replace_small, self.reference_k, self.uniform_targets = replace_small, reference_k, uniform_targets
        self.features = None if features is None else torch.as_tensor(features, dtype=torch.float32)
        self.has_features = None if has_features is None else torch.as_tensor(has_features, dtype=torch.bool)
        self.perturbations_per_step, self.window = int(perturbations_per_step), int(window)
        self._sizes = np.array([len(ix) for ix in cell_index], dtype=np.int64)  # (P,)
        self._starts = np.r_[0, np.cumsum(self._sizes)[:-1]].astype(np.int64)  # (P,)
        self._flat = np.concatenate([np.asarray(ix, dtype=np.int64) for ix in cell_index])  # every cell once
        self._owner = np.full(self._flat.size, -1, dtype=np.int64)  # scratch of draw_rows_at_once

    def draw_rows(
        self, k: np.ndarray, rng: np.random.Generator, subset: np.ndarray | None = None, *, window: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of ``k[p]`` cells of each perturbation (of ``subset``), and the actual counts used."""
        window = self.window if window is None else window
        if window <= 0:  # all perturbations at once
            sizes, starts = (
                (self._sizes, self._starts) if subset is None else (self._sizes[subset], self._starts[subset])
            )
            return draw_rows_at_once(
                self._flat, starts, sizes, k, rng, replace_small=self.replace_small, owner=self._owner
            )
        index = self.cell_index if subset is None else [self.cell_index[i] for i in subset]
        return draw_rows(index, k, rng, replace_small=self.replace_small, window=window)

    def sample(self, step: int, rng: np.random.Generator, *, k: int | np.ndarray | None = None) -> Episode:
        """One episode at training ``step`` (``k`` overrides the schedule: an int or one per perturbation)."""
        n_all = len(self.cell_index)
        sub = None
        if 0 < self.perturbations_per_step < n_all:
            sub = np.sort(rng.choice(n_all, size=self.perturbations_per_step, replace=False))
        P = n_all if sub is None else sub.size
        ks = self.schedule.draw(P, step, rng) if k is None else np.broadcast_to(np.asarray(k, np.int64), (P,))
        rows, used = self.draw_rows(ks, rng, sub)
        targets = sample_targets(
            self.target_pool, P * self.n_targets, alpha=self.alpha, rng=rng, uniform_frac=self.uniform_targets
        )
        targets = targets.reshape(P, self.n_targets, -1)  # (P, T, C)
        props = self.proportions if sub is None else self.proportions[sub]  # (P, C)
        dist = tv(props[:, None, :], targets)  # (P, T)
        ref_inputs = ref_segments = None
        if self.reference_k > 0:
            # on disk, the reference (a low-noise target, not training variety) is one run of adjacent rows
            ref_window = 1 if self.window else 0
            ref_rows, ref_used = self.draw_rows(np.full(P, self.reference_k), rng, sub, window=ref_window)
            ref_inputs, ref_segments = self.take(ref_rows), torch.from_numpy(np.repeat(np.arange(P), ref_used))
        return Episode(
            inputs=self.take(rows),
            segments=torch.from_numpy(np.repeat(np.arange(P), used)),
            perturbation=torch.from_numpy(self.perturbation_ids if sub is None else self.perturbation_ids[sub]),
            k=torch.from_numpy(used),
            targets=torch.from_numpy(targets.astype(np.float32)),
            distances=torch.from_numpy(dist.astype(np.float32)),
            proportions=torch.from_numpy(props.astype(np.float32)),
            cell_states=torch.from_numpy(self.state_codes[rows].astype(np.int64)),
            features=_subset(self.features, sub),
            has_features=_subset(self.has_features, sub),
            ref_inputs=ref_inputs,
            ref_segments=ref_segments,
        )


def _subset(x: torch.Tensor | None, sub: np.ndarray | None) -> torch.Tensor | None:
    return x if x is None or sub is None else x[torch.from_numpy(sub)]
