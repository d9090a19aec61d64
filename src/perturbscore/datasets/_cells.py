"""Cells of a synthetic screen: labels, soft state mixtures, program activity, library sizes.

Each cell draws its dominant state from its perturbation's true mix ``q(P)`` and then a soft
mixture over states concentrated on it (a continuum: most of the rest goes to neighbouring
states); its label is the dominant state. Program activity is ``gain(state mix) * scale * (B z) + noise``.

Two knobs set how much a cell's expression says beyond its label: ``within_state_shift`` (the ``scale`` of
the programs; 0 = a knockout changes only its state mix, so its cells and control cells in the same state
have the same expected expression, apart from the knocked-out gene itself) and ``label_noise`` (the scale
of a cell's share outside its dominant state; 0 = every cell sits at its state's centre).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._constants import KEYS
from ._design import Design
from ._reference import challenge_cells_per_ko

#: How much of a cell's non-dominant share goes to each other state (rows: dominant state).
#: Order: progenitor, effector, terminal exhausted, cycling, other.
NEIGHBOURS = np.array(
    [
        [0.0, 1.0, 0.2, 0.6, 0.2],
        [0.6, 0.0, 1.0, 0.6, 0.2],
        [0.2, 1.0, 0.0, 0.6, 0.2],
        [0.5, 0.6, 0.6, 0.0, 0.2],
        [0.25, 0.25, 0.25, 0.25, 0.0],
    ]
)
LIBRARY_MEDIAN = 2_500.0  # whole-transcriptome UMIs per cell (median)
LIBRARY_SD = 0.45  # log-scale spread of library sizes
N_LANES = 4


@dataclass
class CellPlan:
    """Everything about each cell except its counts; arrays are ``(n_cells, ...)``."""

    perturbation: np.ndarray  # (n,) index into design.knockouts, -1 for control cells
    condition: np.ndarray  # (n,) str, knockout symbol or the control label
    guide: np.ndarray  # (n,) str
    lane: np.ndarray  # (n,) str
    state: np.ndarray  # (n,) int dominant state
    mix: np.ndarray  # (n, C) float soft state mixture, rows sum to 1
    activity: np.ndarray  # (n, K) program activity
    library: np.ndarray  # (n,) whole-transcriptome library size
    ko_drop: np.ndarray  # (n,) log-scale drop of the knocked-out gene (0 for controls)

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return self.state.size


def plan_cells(
    design: Design,
    counts: np.ndarray,
    *,
    n_control: int,
    rng: np.random.Generator,
    within_state_shift: float = 1.0,
    label_noise: float = 1.0,
) -> CellPlan:
    """Lay out ``counts[i]`` cells of knockout ``i`` and ``n_control`` control cells, in shuffled order.

    Parameters
    ----------
    design
        The screen's ground truth.
    counts
        Cells per knockout, ``(n_knockouts,)``.
    n_control
        Control cells.
    rng
        Random generator.
    within_state_shift
        Scale of the knockouts' within-state program shifts ``B z`` (1 = the default strength, 0 = none).
    label_noise
        Scale in [0, 1] of each cell's share outside its dominant state (1 = the default continuum,
        0 = cells at their state's centre). The random draws do not depend on either knob.
    """
    n_ko = len(design.knockouts)
    pert = np.concatenate([np.repeat(np.arange(n_ko), counts), np.full(n_control, -1)])
    pert = pert[rng.permutation(pert.size)]
    n = pert.size
    q = np.vstack([design.proportions[:n_ko], design.control_mix[None, :]])  # (P + 1, C); -1 -> control
    state = _draw_categorical(q[pert], rng)
    mix = _soft_mix(state, rng, spread=label_noise)
    z = np.vstack([design.effects[:n_ko], np.zeros((1, design.effects.shape[1]))])  # (P + 1, L)
    shift = z[pert] @ design.program_loadings.T  # (n, K)
    if within_state_shift != 1.0:
        shift = within_state_shift * shift
    gain = mix @ design.program_gain.T  # (n, K)
    activity = gain * shift + rng.normal(0.0, 0.3, shift.shape)
    lane_idx = rng.choice(N_LANES, size=n, p=rng.dirichlet(np.full(N_LANES, 20.0)))
    lane_effect = rng.normal(0.0, 0.1, N_LANES)
    library = np.exp(np.log(LIBRARY_MEDIAN) + lane_effect[lane_idx] + rng.normal(0.0, LIBRARY_SD, n))
    ko_drop = np.where(pert >= 0, np.clip(rng.normal(2.5, 0.5, n), 0.5, 4.0), 0.0)
    names = np.array([*design.knockouts, KEYS.control], dtype=object)
    return CellPlan(
        perturbation=pert,
        condition=names[pert],
        guide=_guides(pert, design.knockouts, rng),
        lane=np.array([f"lane{i + 1}" for i in range(N_LANES)], dtype=object)[lane_idx],
        state=state,
        mix=mix,
        activity=activity,
        library=library,
        ko_drop=ko_drop,
    )


def _draw_categorical(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of ``p`` (rows sum to 1), ``(n,)``."""
    cum = np.cumsum(p, axis=1)  # (n, C)
    u = rng.random((p.shape[0], 1)) * cum[:, -1:]
    return np.minimum((u > cum).sum(axis=1), p.shape[1] - 1)


def _soft_mix(state: np.ndarray, rng: np.random.Generator, *, spread: float = 1.0) -> np.ndarray:
    """Soft mixtures ``(n, C)`` concentrated on ``state``: dominant share >= 0.55, the rest to neighbours.

    ``spread`` scales the share outside the dominant state (0: one-hot mixtures); the draws do not depend on it.
    """
    n = state.size
    eps = np.minimum(rng.beta(2.0, 6.0, n), 0.45)  # (n,) share outside the dominant state
    if spread != 1.0:
        eps = spread * eps
    alpha = NEIGHBOURS[state] + 1e-3  # (n, C)
    other = rng.gamma(alpha)
    other[np.arange(n), state] = 0.0
    other /= other.sum(axis=1, keepdims=True)
    mix = eps[:, None] * other
    mix[np.arange(n), state] = 1.0 - eps
    return mix


def _guides(pert: np.ndarray, knockouts: list[str], rng: np.random.Generator) -> np.ndarray:
    """Guide per cell: ``<gene>-<k>`` for knockouts (3-4 guides each), real control guide names for controls."""
    out = np.empty(pert.size, dtype=object)
    for i, gene in enumerate(knockouts):
        cells = np.flatnonzero(pert == i)
        n_guides = int(rng.integers(3, 5))
        pick = rng.choice(n_guides, size=cells.size, p=rng.dirichlet(np.full(n_guides, 3.0)))
        out[cells] = np.array([f"{gene}-{k + 1}" for k in range(n_guides)], dtype=object)[pick]
    table = challenge_cells_per_ko()
    ctrl = table[table["condition"] == KEYS.control]
    weights = ctrl["total"].to_numpy(dtype=float)
    cells = np.flatnonzero(pert < 0)
    pick = rng.choice(weights.size, size=cells.size, p=weights / weights.sum())
    out[cells] = ctrl["condition_ext"].to_numpy(dtype=object)[pick]
    return out
