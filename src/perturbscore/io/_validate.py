"""Up-front checks of user input; every failure is an :class:`~perturbscore._errors.InputError`.

Each message names the file, the column or the gene, and says what to do about it.
The full catalogue of cases lives in ``docs/reference/input-errors.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .._errors import InputError

logger = logging.getLogger(__name__)

#: CLI flag that chooses each setting, quoted in messages.
FLAGS = {
    "perturbation_key": "--perturbation-key",
    "state_key": "--state-key",
    "control": "--control",
    "layer": "--layer",
    "allow_missing": "--allow-missing-features",
    "min_cells": "--min-cells",
}


def _listing(items: Iterable[object], limit: int = 10) -> str:
    items = [str(i) for i in items]
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


# -- files -----------------------------------------------------------------------------------
def check_file(path: str | Path) -> Path:
    """Return ``path`` as a :class:`Path` if it exists, else raise."""
    path = Path(path).expanduser()
    if not path.exists():
        near = sorted(p.name for p in path.parent.glob("*.h5ad")) if path.parent.is_dir() else []
        hint = f" .h5ad files in {str(path.parent)!r}: {_listing(near)}." if near else ""
        raise InputError(f"screen file {str(path)!r} does not exist; check the path.{hint}")
    return path


def open_h5(path: Path) -> h5py.File:
    """Open ``path`` read-only as HDF5, turning low-level failures into a clear message."""
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise InputError(
            f"{str(path)!r} is not a readable .h5ad (HDF5) file; it may be truncated by an interrupted "
            f"copy or download. Re-export it with adata.write_h5ad(...) or copy it again. ({err})"
        ) from err
    if "obs" not in f or "var" not in f:
        f.close()
        raise InputError(
            f"{str(path)!r} is an HDF5 file but not an AnnData .h5ad (no 'obs'/'var' groups); "
            "write the screen with anndata's adata.write_h5ad(...)."
        )
    return f


def unreadable(path: str, err: Exception) -> InputError:
    """Return an error for a file that opened but failed mid-read (a truncated or corrupt file)."""
    return InputError(
        f"{path!r} could not be read completely; the .h5ad file may be truncated or corrupt. "
        f"Re-export it with adata.write_h5ad(...) or copy it again. ({type(err).__name__}: {err})"
    )


# -- obs columns and labels ------------------------------------------------------------------
def check_column(obs: pd.DataFrame, key: str, *, role: str, option: str, source: str) -> None:
    """Raise if ``obs`` lacks column ``key``, listing the columns it has."""
    if key not in obs.columns:
        raise InputError(
            f"{source!r} has no {role} column {key!r} in obs. Available obs columns: "
            f"{_listing(obs.columns, 30)}. Choose another with {FLAGS[option]} (Python: {option}=...)."
        )


def check_labels(values: pd.Series, *, key: str, source: str) -> None:
    """Raise if column ``key`` has missing (NaN/None) or empty labels."""
    bad = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    if bad.any():
        examples = _listing(values.index[bad][:5])
        raise InputError(
            f"obs column {key!r} of {source!r} has {int(bad.sum())} missing or empty labels "
            f"(e.g. cells {examples}). Drop those cells (adata = adata[adata.obs[{key!r}].notna()]) "
            f"or fill them with a label before reading."
        )


def check_state_levels(states: Sequence[str], *, key: str, source: str) -> None:
    """Raise if the state column has fewer than two levels."""
    if len(states) < 2:
        raise InputError(
            f"state column {key!r} of {source!r} has only one level ({_listing(states)}); scoring needs at "
            f"least two cell states. Choose the right column with {FLAGS['state_key']} (Python: state_key=...)."
        )


def check_control(labels: pd.Series, control: str, *, key: str, source: str) -> None:
    """Raise if the control label is absent, listing the most frequent labels."""
    if not (labels == control).any():
        top = labels.value_counts().head(8)
        common = ", ".join(f"{k!r} ({v} cells)" for k, v in top.items())
        raise InputError(
            f"control label {control!r} not found in obs column {key!r} of {source!r}. Most frequent labels: "
            f"{common}. Pass the right label with {FLAGS['control']} LABEL, or {FLAGS['control']} none if the "
            "screen has no control cells (Python: control=None)."
        )


def check_knockouts(knockouts: Sequence[str], *, key: str, source: str, dropped: Sequence[str] = ()) -> None:
    """Raise if fewer than two knockouts remain."""
    if len(knockouts) < 2:
        why = f" after dropping {len(dropped)} with too few cells ({_listing(dropped)})" if dropped else ""
        raise InputError(
            f"{source!r} has {len(knockouts)} knockout(s) in obs column {key!r}{why} ({_listing(knockouts)}); "
            f"at least 2 are needed. Check {FLAGS['perturbation_key']} and {FLAGS['control']}"
            + (f", or lower {FLAGS['min_cells']}." if dropped else ".")
        )


def check_states_match(given: Sequence[str], found: Sequence[str], *, key: str, source: str) -> None:
    """Raise if the screen has states outside ``given``; warn about given states with no cells."""
    extra = [s for s in found if s not in set(given)]
    missing = [s for s in given if s not in set(found)]
    if extra:
        raise InputError(
            f"states of obs column {key!r} in {source!r} differ from the fixed state order {list(given)}: "
            f"extra in the screen: {_listing(extra)}; missing from the screen: {_listing(missing) or 'none'}. "
            "Relabel the cells to the model's states or pass states=None to use the screen's own order."
        )
    if missing:
        logger.warning("states %s have no cells in %s; their proportions are 0", missing, source)


def split_small(counts: pd.Series, *, min_cells: int, small: str, key: str, source: str) -> tuple[list[str], list[str]]:
    """Split knockouts into (kept, dropped) by ``min_cells`` according to ``small``."""
    if small not in ("drop", "error", "keep"):
        raise InputError(f"small={small!r} is not one of 'drop', 'error', 'keep'.")
    few = counts[counts < min_cells]
    if few.empty or small == "keep":
        return sorted(counts.index), []
    listing = ", ".join(f"{k!r} ({v})" for k, v in few.sort_values().head(10).items())
    if small == "error":
        raise InputError(
            f"{len(few)} perturbation(s) in obs column {key!r} of {source!r} have fewer than {min_cells} cells: "
            f"{listing}. Lower {FLAGS['min_cells']}, or pass small='drop' (--small drop) to drop them or "
            "small='keep' (--small keep) to keep them and sample their cells with replacement."
        )
    logger.warning(
        "dropping %d perturbation(s) with fewer than %d cells from %s: %s", len(few), min_cells, source, listing
    )
    return sorted(k for k in counts.index if k not in few.index), sorted(few.index)


# -- expression matrix ----------------------------------------------------------------------
def check_layer(layer: str, layers: Sequence[str], *, source: str) -> None:
    """Raise if ``layer`` is not among ``layers``."""
    if layer not in layers:
        raise InputError(
            f"layer {layer!r} not found in {source!r}. Available layers: {_listing(layers) or 'none'}. "
            f"Pass one of them with {FLAGS['layer']}, or omit {FLAGS['layer']} to use X (log-normalised)."
        )


def check_values(chunks: Iterable[np.ndarray], *, what: str, source: str, counts: bool) -> None:
    """Scan the stored (non-zero) values of a matrix in chunks.

    Parameters
    ----------
    chunks
        Arrays of stored values (CSR ``data`` slices or dense row blocks).
    what
        ``"X"`` or ``"layer 'name'"``, used in messages.
    source
        The file or object the matrix came from.
    counts
        If true the values must be non-negative integers (raw counts); else non-negative and finite.
    """
    n_nonfinite = n_negative = n_fraction = 0
    example = None
    for chunk in chunks:
        chunk = np.asarray(chunk)
        if chunk.dtype.kind in "iub":
            n_negative += int((chunk < 0).sum()) if chunk.dtype.kind == "i" else 0
            continue
        finite = np.isfinite(chunk)
        n_nonfinite += int((~finite).sum())
        n_negative += int((chunk < 0).sum())
        if counts:
            frac = finite & (chunk != np.floor(chunk))
            n_fraction += int(frac.sum())
            if example is None and frac.any():
                example = float(chunk[frac][0])
    _raise_values(n_nonfinite, n_negative, n_fraction, example, what=what, source=source, counts=counts)


def _raise_values(
    n_nonfinite: int, n_negative: int, n_fraction: int, example: float | None, *, what: str, source: str, counts: bool
) -> None:
    if counts and (n_negative or n_nonfinite or n_fraction):
        raise InputError(
            f"{what} of {source!r} is read as raw counts but is not non-negative integers ({n_fraction} fractional"
            + (f", e.g. {example:.4g}" if example is not None else "")
            + f"; {n_negative} negative; {n_nonfinite} NaN/inf). If it is already log-normalised, use X "
            f"(omit {FLAGS['layer']}) or read the layer as is (Python: normalize=False); otherwise name the raw-count "
            f"layer with {FLAGS['layer']}."
        )
    if n_nonfinite:
        raise InputError(
            f"{what} of {source!r} has {n_nonfinite} NaN or infinite values; expression must be finite. "
            f"Fix or drop those cells, or read raw counts with {FLAGS['layer']} rawcounts."
        )
    if n_negative:
        raise InputError(
            f"{what} of {source!r} has {n_negative} negative values; expected log-normalised expression (>= 0), "
            f"not scaled/z-scored data. Read the raw counts with {FLAGS['layer']} LAYER, or store log1p of "
            "normalised counts in X."
        )


# -- features -------------------------------------------------------------------------------
def check_feature_arrays(genes: Sequence[str], arrays: Sequence[np.ndarray], *, source: str) -> None:
    """Raise for duplicated genes, bad ndim, inconsistent shapes, or NaN/inf in gene feature arrays."""
    if len(genes) == 0:
        raise InputError(f"feature file {source!r} holds no genes; expected one array (or table row) per gene.")
    dup = pd.Index(genes)[pd.Index(genes).duplicated()].unique()
    if len(dup):
        raise InputError(
            f"feature file {source!r} has {len(dup)} duplicated gene(s): {_listing(dup)}. Keep one entry per gene."
        )
    for g, a in zip(genes, arrays, strict=True):
        if a.ndim not in (1, 2) or a.size == 0:
            raise InputError(
                f"features of gene {g!r} in {source!r} have shape {a.shape}; expected (windows, dim) or (dim,)."
            )
    shapes = pd.Series([_as_2d_shape(a) for a in arrays], index=list(genes))
    if shapes.nunique() > 1:
        common = shapes.value_counts().index[0]
        odd = shapes[shapes != common]
        raise InputError(
            f"feature arrays in {source!r} have inconsistent shapes: most are {common}, but "
            + ", ".join(f"{g!r} is {s}" for g, s in odd.head(10).items())
            + f" ({len(odd)} gene(s) in all). Recompute them with the same windows and dimension."
        )
    bad = [g for g, a in zip(genes, arrays, strict=True) if not np.isfinite(a).all()]
    if bad:
        raise InputError(
            f"features of {len(bad)} gene(s) in {source!r} contain NaN or inf: {_listing(bad)}. "
            "Recompute or drop those genes."
        )


def _as_2d_shape(a: np.ndarray) -> tuple[int, int]:
    return (1, a.shape[0]) if a.ndim == 1 else (a.shape[0], a.shape[1])


def check_features_cover(missing: Sequence[str], n_genes: int, *, source: str) -> None:
    """Raise if some perturbed genes have no features."""
    if missing:
        raise InputError(
            f"{len(missing)} of {n_genes} perturbed genes have no features in {source!r}: {_listing(missing)}. "
            f"Add them to the feature file, or pass {FLAGS['allow_missing']} (Python: allow_missing=True) to "
            "train the sequence model T without them."
        )
