"""Label-only inputs: state proportions from per-cell labels, and per-knockout state-count tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._constants import CHALLENGE_STATES, KEYS
from .._errors import InputError


def proportions_from_labels(
    perturbations: Sequence[str] | np.ndarray | pd.Series,
    states_per_cell: Sequence[str] | np.ndarray | pd.Series,
    state_order: Sequence[str],
    *,
    control: str | None = None,
) -> pd.DataFrame:
    """State proportions ``q(P)`` of each perturbation from per-cell labels.

    Parameters
    ----------
    perturbations
        Perturbation label of every cell.
    states_per_cell
        State label of every cell.
    state_order
        The state columns, in order; every cell's state must be one of them.
    control
        If given and present, the control row is placed last (after the sorted knockouts).

    Returns
    -------
    pandas.DataFrame
        Perturbations x states, rows summing to 1.
    """
    pert = pd.Series(np.asarray(perturbations, dtype=object), name="perturbation")
    state = pd.Series(np.asarray(states_per_cell, dtype=object), name="state")
    if len(pert) != len(state):
        raise InputError(f"{len(pert)} perturbation labels but {len(state)} state labels; give one of each per cell.")
    unknown = sorted(set(state.dropna().astype(str)) - set(state_order))
    if unknown or state.isna().any():
        raise InputError(
            f"cell states {unknown or ['<missing>']} are not in the state order {list(state_order)}; "
            "relabel those cells or extend state_order."
        )
    counts = pd.crosstab(pert.astype(str), state.astype(str)).reindex(columns=list(state_order), fill_value=0)
    order = sorted(i for i in counts.index if i != control) + ([control] if control in counts.index else [])
    counts = counts.loc[order]
    counts.columns.name = None
    return counts.div(counts.sum(axis=1), axis=0)


def read_state_counts_table(
    path: str | Path,
    *,
    condition_key: str = KEYS.perturbation,
    states: Sequence[str] = CHALLENGE_STATES,
) -> pd.DataFrame:
    """Read a per-knockout state-count table (like the challenge's ``cells_per_ko.csv``).

    Rows sharing a ``condition`` (e.g. the 30 control guides, all ``Unperturbed``) are summed into one.

    Parameters
    ----------
    path
        CSV/TSV with a ``condition`` column and one count column per state.
    condition_key
        Column holding the perturbation.
    states
        State count columns, in the order wanted.

    Returns
    -------
    pandas.DataFrame
        Integer counts, index = condition (first-appearance order), columns = ``states``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"counts table {str(path)!r} does not exist; check the path.")
    table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    missing = [c for c in (condition_key, *states) if c not in table.columns]
    if missing:
        raise InputError(
            f"counts table {str(path)!r} lacks column(s) {missing}; it needs {condition_key!r} and one count "
            f"column per state ({list(states)}). Columns present: {list(table.columns)}."
        )
    counts = table[list(states)].to_numpy(dtype=np.float64)
    if not np.isfinite(counts).all() or (counts < 0).any() or (counts != np.round(counts)).any():
        raise InputError(f"state counts in {str(path)!r} must be non-negative integers.")
    out = table.groupby(condition_key, sort=False)[list(states)].sum().astype(np.int64)
    out.index = out.index.astype(str)
    out.index.name = condition_key
    return out
