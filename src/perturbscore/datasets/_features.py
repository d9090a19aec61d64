"""Synthetic sequence features per gene: ``(windows, dim)`` arrays that carry a noisy, nonlinear signal of ``z``.

A quarter of the dimensions (at least 12) are informative: half of those are ``tanh`` of a projection of the
effect ``z`` (partly visible to a linear model), half are centred squares of another projection
(invisible to a linear model, recoverable by a nonlinear one). Each gene's informative value is
``signal + feature_noise * gene noise``; uninformative dimensions carry gene noise of the same
scale. ``feature_signal`` scales the signal: 0 leaves the features independent of the effects
(uninformative), above 1 makes them more informative. The per-gene values are expressed mostly in windows near the TSS (a Gaussian bump over the
window index), on top of a shared per-window background and independent per-window noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INFORMATIVE_FRACTION = 0.25
MIN_INFORMATIVE = 12  # small feature dims keep enough signal
WINDOW_NOISE = 1.5
TANH_SLOPE = 2.5  # steep: a linear read-out of the tanh dimensions loses information


@dataclass(frozen=True)
class FeatureMap:
    """How features encode effects (kept in the truth for inspection)."""

    informative: np.ndarray  # (n_inf,) informative dimensions
    projection: np.ndarray  # (L, n_inf)
    offset: np.ndarray  # (n_inf,)
    is_square: np.ndarray  # (n_inf,) bool: centred square (True) or tanh (False)


def feature_map(effect_dim: int, dim: int, rng: np.random.Generator) -> FeatureMap:
    """Draw which dimensions are informative and how they read ``z``."""
    n_inf = max(round(INFORMATIVE_FRACTION * dim), min(dim, MIN_INFORMATIVE))
    informative = np.sort(rng.choice(dim, n_inf, replace=False))
    projection = rng.standard_normal((effect_dim, n_inf)) / np.sqrt(effect_dim)
    is_square = np.arange(n_inf) % 2 == 1
    return FeatureMap(informative, projection, rng.normal(0.0, 0.5, n_inf), is_square)


def signal(fmap: FeatureMap, effects: np.ndarray, z_mean: np.ndarray) -> np.ndarray:
    """Noise-free informative values ``(n, n_inf)``, each of roughly unit scale."""
    proj = (effects - z_mean) @ fmap.projection  # (n, n_inf), ~ N(0, 1) per column
    lin = np.tanh(TANH_SLOPE * proj + fmap.offset) / 0.75
    sq = (proj**2 - 1.0) / np.sqrt(2.0)
    return np.where(fmap.is_square[None, :], sq, lin)


def simulate_features(
    effects: np.ndarray,
    *,
    z_mean: np.ndarray,
    dim: int,
    n_windows: int,
    noise: float,
    rng: np.random.Generator,
    signal_scale: float = 1.0,
) -> tuple[np.ndarray, FeatureMap]:
    """Features ``(n, n_windows, dim)`` float32 for genes with effects ``(n, L)``.

    ``signal_scale`` multiplies the informative signal (0: features independent of ``effects``); the random
    draws do not depend on it, so screens that differ only in it share their noise.
    """
    n = effects.shape[0]
    fmap = feature_map(effects.shape[1], dim, rng)
    value = noise * rng.standard_normal((n, dim))  # (n, dim) gene-level noise
    if signal_scale != 0.0:
        value[:, fmap.informative] += signal_scale * signal(fmap, effects, z_mean)
    uninformative = np.setdiff1d(np.arange(dim), fmap.informative)
    value[:, uninformative] *= np.sqrt(1.0 + noise**2) / max(noise, 1e-12)  # same marginal scale
    centre = (n_windows - 1) / 2
    profile = np.exp(-0.5 * ((np.arange(n_windows) - centre) / max(n_windows / 16, 1.0)) ** 2)  # (W,)
    background = np.cumsum(rng.normal(0.0, 0.1, (n_windows, dim)), axis=0)  # (W, dim) smooth, shared
    out = np.empty((n, n_windows, dim), dtype=np.float32)
    for i in range(n):  # per gene, to keep memory at one (W, dim) block of float64
        block = profile[:, None] * value[i][None, :] + background
        block += rng.normal(0.0, WINDOW_NOISE, block.shape)
        out[i] = block
    return out, fmap
