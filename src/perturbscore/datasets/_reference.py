"""The real challenge screen's per-knockout state counts, and the summaries the simulator draws from.

The table ships inside the package (``challenge_cells_per_ko.csv``); it is read with
:mod:`importlib.resources`, never from a path outside the package.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from .._constants import CHALLENGE_CONTROL_MIX, CHALLENGE_STATES, KEYS

#: Cells and control cells in the challenge's ``sc_training.h5ad``.
CHALLENGE_N_CELLS = 28_697
CHALLENGE_N_CONTROL = 4_978
CHALLENGE_N_GENES = 15_077


def challenge_cells_per_ko() -> pd.DataFrame:
    """Return the challenge screen's cell-state counts per knockout and control guide.

    Returns
    -------
    pandas.DataFrame
        One row per knockout (66) and control guide (30, ``condition == "Unperturbed"``, guide in
        ``condition_ext``), with per-state proportions (``prop_<state>``), per-state counts
        (``<state>``) and ``total``.
    """
    return _table().copy()


@functools.cache
def _table() -> pd.DataFrame:
    with resources.files(__package__).joinpath("challenge_cells_per_ko.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, index_col=0)


@dataclass(frozen=True)
class ChallengeSummary:
    """What the simulator mirrors from the real screen.

    Attributes
    ----------
    knockouts
        The 66 knockout symbols, in the table's order.
    log_counts
        Sorted ``log`` cells per knockout, ``(66,)``.
    control_logits
        Centred log of the control mix, ``(C,)``.
    shift_mean
        Mean centred-log-ratio shift of the knockouts' mixes from the control mix, ``(C,)``.
    shift_cov
        Covariance of those shifts, ``(C, C)`` (rank ``C - 1``).
    """

    knockouts: tuple[str, ...]
    log_counts: np.ndarray
    control_logits: np.ndarray
    shift_mean: np.ndarray
    shift_cov: np.ndarray


@functools.cache
def challenge_summary(min_cells: int = 50, pseudocount: float = 0.5) -> ChallengeSummary:
    """Fit the real knockouts' cell counts and state-mix shifts (knockouts with >= ``min_cells`` cells).

    Small knockouts are left out of the mix fit: their proportions are mostly sampling noise.
    """
    table = _table()
    ko = table[table["condition"] != KEYS.control]
    counts = ko[list(CHALLENGE_STATES)].to_numpy(dtype=np.float64)  # (66, C)
    big = ko["total"].to_numpy() >= min_cells
    clr = _clr(counts[big] + pseudocount)  # (n_big, C)
    control = _clr(np.asarray(CHALLENGE_CONTROL_MIX, dtype=np.float64)[None, :])[0]
    shift = clr - control
    return ChallengeSummary(
        knockouts=tuple(str(g) for g in ko["condition"]),
        log_counts=np.sort(np.log(ko["total"].to_numpy(dtype=np.float64))),
        control_logits=control,
        shift_mean=shift.mean(axis=0),
        shift_cov=np.cov(shift, rowvar=False),
    )


def _clr(x: np.ndarray) -> np.ndarray:
    """Centred log ratio of each row of positive ``x``."""
    lx = np.log(x / x.sum(axis=1, keepdims=True))
    return lx - lx.mean(axis=1, keepdims=True)


def draw_counts(n: int, *, total: int, min_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Cells for ``n`` knockouts, spread like the real knockouts', summing to ``total``, each >= ``min_cells``.

    Draws stratified quantiles of the real ``log`` counts (so 64 draws span the real range), rescales
    them to ``total`` and lifts the small ones to ``min_cells``, taking the difference from the large ones.
    """
    ref = challenge_summary().log_counts
    u = (np.arange(n) + rng.random(n)) / n  # stratified uniforms
    grid = (np.arange(ref.size) + 0.5) / ref.size
    weights = np.exp(np.interp(u, grid, ref))
    weights = rng.permutation(weights)
    return _fit_total(weights, total=total, floor=min_cells)


def _fit_total(weights: np.ndarray, *, total: int, floor: int) -> np.ndarray:
    """Integer counts proportional to ``weights``, each >= ``floor``, summing exactly to ``total``."""
    n = weights.size
    fixed = np.zeros(n, dtype=bool)
    counts = np.zeros(n, dtype=np.int64)
    for _ in range(n + 1):  # each pass pins at least one more knockout to the floor, or finishes
        free_total = total - floor * fixed.sum()
        share = weights * ~fixed
        raw = share / share.sum() * free_total
        low = ~fixed & (raw < floor)
        if not low.any():
            break
        fixed |= low
        if fixed.all():
            return np.full(n, total // n, dtype=np.int64) + (np.arange(n) < total % n)
    counts[fixed] = floor
    free = ~fixed
    raw = raw[free]
    base = np.floor(raw).astype(np.int64)
    rest = int(total - floor * fixed.sum() - base.sum())
    base[np.argsort(raw - base)[::-1][:rest]] += 1  # largest remainders get the leftover cells
    counts[free] = base
    return counts
