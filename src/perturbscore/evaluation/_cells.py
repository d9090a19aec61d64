"""Reading the per-seed and per-knockout results every evaluation table is built from, and formatting a cell."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: What a table shows where a value was not measured.
DASH = "—"


def summarise(values: float | Iterable[float] | None) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value) of per-seed values, NaNs ignored.

    Returns ``(nan, nan)`` for ``None`` or no finite values.
    """
    if values is None:
        return math.nan, math.nan
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def paired_se(model: Mapping[str, Any], baseline: Mapping[str, Any] | None, key: str, k: int | None = None) -> float:
    """Return the standard error of a model's mean error less a baseline's, over the held-out knockouts they share.

    Each knockout's difference is averaged over seeds first, since seeds do not change which knockouts were
    held out.

    Parameters
    ----------
    model, baseline
        Result entries (``results["models"][name]``, ``results["baselines"][name]``).
    key
        Per-knockout errors, ``{knockout: [one per seed]}``: ``"knockout_mae_cells"`` (under ``k``) or
        ``"knockout_mae_sequence"``.
    k
        Cells per sample, for per-``k`` metrics.

    Returns
    -------
    The standard error; NaN when either side lacks per-knockout errors or fewer than 2 knockouts are shared.
    """

    def errors(entry: Mapping[str, Any] | None) -> dict[str, float]:
        raw = (entry or {}).get(key) or {}
        if k is not None:
            raw = {int(kk): v for kk, v in raw.items()}.get(k) or {}
        return {str(g): summarise(v)[0] for g, v in raw.items()}

    ours, theirs = errors(model), errors(baseline)
    diff = np.array([ours[g] - theirs[g] for g in ours if g in theirs])
    diff = diff[np.isfinite(diff)]
    return float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) >= 2 else math.nan


def mean_over_seeds(values: Any) -> float:
    """Return the mean of one result over its training seeds (NaN when it was not measured)."""
    return summarise(values)[0]


def at(entry: Mapping[str, Any] | None, key: str, k: int | None = None) -> float:
    """Mean over seeds of ``entry[key]`` (or ``entry[key][k]``), NaN when absent."""
    raw = (entry or {}).get(key)
    if k is not None:
        raw = {int(kk): v for kk, v in (raw or {}).items()}.get(k)
    return mean_over_seeds(raw)


def fmt(x: float, digits: int = 3) -> str:
    """Format a table cell: ``x`` to ``digits`` decimals, or :data:`DASH` when it was not measured."""
    return DASH if math.isnan(x) else f"{x:.{digits}f}"
