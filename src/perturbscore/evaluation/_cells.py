"""Reading and formatting the per-seed results that the panel and ablation tables are built from."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._evaltable import summarise

#: What a table shows where a value was not measured.
DASH = "—"


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
