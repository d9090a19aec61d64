"""Read a screen (``.h5ad``, ``.zarr`` or an in-memory AnnData) into a validated :class:`Screen`."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import pandas as pd

from .._constants import KEYS
from .._errors import InputError
from ..data._screen import GeneFeatures, InMemoryRows, RowSource, Screen
from . import _validate as v
from ._backed import H5Rows, matrix_kind
from ._features import align_features, read_features
from ._matrix import lognorm_csr, stored_values, to_csr

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)


@dataclass
class _Opened:
    """What was found in the input before any matrix is loaded."""

    obs: pd.DataFrame
    var_names: np.ndarray
    layers: list[str]
    label: str
    path: Path | None = None  # an .h5ad holding the matrix, if any
    adata: ad.AnnData | None = None  # an in-memory AnnData holding the matrix, if any
    truth: dict = field(default_factory=dict)


def _report_damaged(read: Callable[..., Screen]) -> Callable[..., Screen]:
    """Turn a file that opens but fails mid-read (truncated, bit-flipped) into an :class:`InputError`."""

    @functools.wraps(read)
    def wrapper(source: str | Path | ad.AnnData, **kwargs: object) -> Screen:
        try:
            return read(source, **kwargs)
        except InputError:
            raise
        except Exception as err:  # h5py/anndata raise many types on damaged bytes (OSError, KeyError, ...)
            if isinstance(source, str | Path):
                raise v.unreadable(str(source), err) from err
            raise

    return wrapper


@_report_damaged
def read_screen(
    source: str | Path | ad.AnnData,
    *,
    perturbation_key: str = KEYS.perturbation,
    state_key: str = KEYS.state,
    control: str | None = KEYS.control,
    layer: str | None = None,
    states: list[str] | tuple[str, ...] | None = None,
    features: str | Path | GeneFeatures | None = None,
    backed: bool = False,
    min_cells: int = 1,
    small: str = "drop",
    allow_missing_features: bool = False,
    normalize: bool | None = None,
) -> Screen:
    """Read and validate a pooled CRISPR screen.

    Parameters
    ----------
    source
        An ``.h5ad`` (or ``.zarr``) path, or an AnnData object.
    perturbation_key, state_key
        ``obs`` columns with each cell's perturbation and state.
    control
        The control label; ``None`` (or ``"none"``) when the screen has no control cells.
    layer
        ``None`` uses ``X`` (log-normalised). A layer name reads that layer as raw counts and normalises
        it on the fly as scanpy's ``sc.pp.normalize_total(adata, target_sum=1e4)`` then ``sc.pp.log1p`` do
        (natural log; cells without counts stay zero). The normalisation is computed here, row by row, rather
        than by scanpy: scanpy is not a dependency, and row-local arithmetic gives the same values for any
        subset of cells, which a backed file read in chunks needs.
    states
        A fixed state order (e.g. from a saved model). Default: the categorical order of the state column if
        categorical, else sorted.
    features
        Gene features (a path or :class:`GeneFeatures`) covering the knockouts; genes beyond them (e.g. a
        genome-wide table) are kept too.
    backed
        Keep the matrix on disk and read rows on demand (``.h5ad`` only).
    min_cells, small
        Knockouts with fewer than ``min_cells`` cells are dropped with a warning (``"drop"``), refused
        (``"error"``) or kept (``"keep"``).
    allow_missing_features
        Drop knockouts without features from the features (``T`` is not trained on them) instead of failing.
    normalize
        Override whether the matrix holds raw counts to normalise (default: ``layer is not None``).

    Returns
    -------
    Screen
        Perturbations are the sorted knockouts, then the control (if present).
    """
    opened = _open(source, backed=backed)
    control = None if control is None or str(control).lower() == "none" else str(control)
    obs, label = opened.obs, opened.label
    for key, role, option in (
        (perturbation_key, "perturbation", "perturbation_key"),
        (state_key, "state", "state_key"),
    ):
        v.check_column(obs, key, role=role, option=option, source=label)
        v.check_labels(obs[key], key=key, source=label)
    perts = obs[perturbation_key].astype(str).to_numpy()
    state_order, codes = _state_codes(obs[state_key], states, key=state_key, source=label)
    knockouts = _select_knockouts(perts, control, perturbation_key, label, min_cells=min_cells, small=small)
    normalize = layer is not None if normalize is None else normalize
    rows = _row_source(opened, layer, backed=backed, normalize=normalize)
    if rows.shape != (len(obs), len(opened.var_names)):
        raise InputError(
            f"{label!r}: matrix shape {rows.shape} does not match {len(obs)} obs x {len(opened.var_names)} var; "
            "the file is inconsistent, re-export it with adata.write_h5ad(...)."
        )
    groups = pd.Series(np.arange(len(perts))).groupby(perts).indices
    perturbations = knockouts + ([control] if control is not None else [])
    screen = Screen(
        rows=rows,
        gene_names=opened.var_names,
        perturbations=perturbations,
        cell_index=[groups[p] for p in perturbations],
        state_codes=codes,
        states=state_order,
        control=control,
        features=_load_features(features, knockouts, allow_missing=allow_missing_features),
        source=label,
        truth=opened.truth,
        keys={"perturbation_key": perturbation_key, "state_key": state_key, "control": control, "layer": layer},
    )
    logger.info("read screen %s: %s", label, screen.summary())
    return screen


# -- opening ---------------------------------------------------------------------------------
def _open(source: str | Path | ad.AnnData, *, backed: bool) -> _Opened:
    import anndata as ad  # imported on first use: it is slow to import

    if isinstance(source, ad.AnnData):
        return _open_anndata(source)
    if not isinstance(source, str | Path):
        hint = (
            " (a simulated screen: pass sim.adata, features=sim.features)"
            if isinstance(getattr(source, "adata", None), ad.AnnData)
            else ""
        )
        raise TypeError(
            f"expected an AnnData, a Screen or the path of an .h5ad/.zarr file, got {type(source).__name__}{hint}."
        )
    path = Path(source).expanduser()
    if path.suffix.lower() == ".zarr" or path.is_dir():
        if backed:
            raise InputError(
                f"backed=True needs an .h5ad file, not {str(path)!r}; pass backed=False, or convert "
                "it once: anndata.read_zarr(path).write_h5ad('screen.h5ad')."
            )
        v.check_file(path)
        try:
            adata = ad.read_zarr(path)
        except Exception as err:  # zarr raises many types for a damaged store
            raise v.unreadable(str(path), err) from err
        out = _open_anndata(adata)
        out.label = str(path)
        return out
    path = v.check_file(path)
    with v.open_h5(path) as f:
        try:
            obs = _read_elem(f["obs"])
            var_names = np.asarray(_read_elem(f["var"]).index, dtype=str)
            truth = _read_elem(f["uns"][KEYS.truth]) if "uns" in f and KEYS.truth in f["uns"] else {}
        except (OSError, KeyError, ValueError) as err:
            raise v.unreadable(str(path), err) from err
        layers = list(f["layers"].keys()) if "layers" in f else []
    return _Opened(obs=obs, var_names=var_names, layers=layers, label=str(path), path=path, truth=dict(truth))


def _open_anndata(adata: ad.AnnData) -> _Opened:
    if adata.isbacked and adata.is_view:
        raise InputError(
            f"a subset (view) of the backed file {str(adata.filename)!r} cannot be read by file; pass "
            "adata.to_memory(), or write the subset to its own .h5ad and read that."
        )
    label = str(adata.filename) if adata.isbacked else "AnnData in memory"
    _check_log_base(dict(adata.uns), source=label)
    path = Path(adata.filename) if adata.isbacked else None
    return _Opened(
        obs=adata.obs,
        var_names=np.asarray(adata.var_names, dtype=str),
        layers=list(adata.layers.keys()),
        label=label,
        path=path,
        adata=None if adata.isbacked else adata,
        truth=dict(adata.uns.get(KEYS.truth, {})),
    )


# -- labels ----------------------------------------------------------------------------------
def _state_codes(
    column: pd.Series, states: list[str] | tuple[str, ...] | None, *, key: str, source: str
) -> tuple[tuple[str, ...], np.ndarray]:
    labels = column.astype(str).to_numpy()
    found = sorted(set(labels))
    v.check_state_levels(found, key=key, source=source)
    if states is not None:
        order = [str(s) for s in states]
        v.check_states_match(order, found, key=key, source=source)
    elif isinstance(column.dtype, pd.CategoricalDtype):
        order = [str(c) for c in column.cat.categories if str(c) in set(found)]
        unused = [str(c) for c in column.cat.categories if str(c) not in set(found)]
        if unused:
            logger.info("state categories %s of %s have no cells and are left out", unused, source)
    else:
        order = found
    codes = pd.Categorical(labels, categories=order).codes.astype(np.int64)  # (n_cells,)
    return tuple(order), codes


def _select_knockouts(
    perts: np.ndarray, control: str | None, key: str, source: str, *, min_cells: int, small: str
) -> list[str]:
    labels = pd.Series(perts)
    if control is not None:
        v.check_control(labels, control, key=key, source=source)
        n_control = int((labels == control).sum())
        if n_control < min_cells:
            logger.warning("control %r has only %d cells in %s (min_cells=%d)", control, n_control, source, min_cells)
    counts = labels[labels != control].value_counts()
    kept, dropped = v.split_small(counts, min_cells=min_cells, small=small, key=key, source=source)
    v.check_knockouts(kept, key=key, source=source, dropped=dropped)
    return kept


# -- expression ------------------------------------------------------------------------------
def _row_source(opened: _Opened, layer: str | None, *, backed: bool, normalize: bool) -> RowSource:
    if layer is not None:
        v.check_layer(layer, opened.layers, source=opened.label)
    what = "X" if layer is None else f"layer {layer!r}"
    if opened.adata is not None:
        if backed:
            logger.info("backed=True ignored: the AnnData is already in memory")
        matrix = opened.adata.X if layer is None else opened.adata.layers[layer]
        if matrix is None:
            raise InputError(f"{opened.label}: X is empty; pass --layer LAYER to read a layer instead.")
        return _in_memory(to_csr(matrix), what=what, source=opened.label, normalize=normalize)
    key = "X" if layer is None else f"layers/{layer}"
    assert opened.path is not None
    try:
        with h5py.File(opened.path, "r") as f:
            if key not in f:
                raise InputError(f"{opened.label!r} has no X matrix; pass --layer LAYER to read a layer instead.")
        if backed:
            rows = H5Rows(opened.path, key=key, normalize=normalize)
            v.check_values(rows.stored_values(), what=what, source=opened.label, counts=normalize)
            return rows
        with h5py.File(opened.path, "r") as f:
            node = f[key]
            matrix = to_csr(node) if matrix_kind(node) == "dense" else to_csr(_read_elem(node))
    except (OSError, KeyError) as err:
        raise v.unreadable(opened.label, err) from err
    return _in_memory(matrix, what=what, source=opened.label, normalize=normalize)


def _check_log_base(uns: object, *, source: str) -> None:
    """Warn when scanpy recorded a log1p of another base than e (``uns["log1p"]["base"]``).

    X is then scaled differently from the natural-log expression the model expects.
    """
    base = (uns or {}).get("log1p", {}).get("base") if isinstance(uns, dict) else None
    if base is not None and str(base) != "none" and not np.isclose(float(base), math.e):
        logger.warning(
            "%s: X was log-transformed with base %s (adata.uns['log1p']); perturbscore reads natural-log "
            "expression. Pass the raw counts with layer= (--layer) to have them normalised the usual way.",
            source, base,
        )  # fmt: skip


def _in_memory(matrix: object, *, what: str, source: str, normalize: bool) -> InMemoryRows:
    v.check_values(stored_values(matrix), what=what, source=source, counts=normalize)
    return InMemoryRows(lognorm_csr(matrix) if normalize else matrix)


def _load_features(
    features: str | Path | GeneFeatures | None, knockouts: list[str], *, allow_missing: bool
) -> GeneFeatures | None:
    if features is None:
        return None
    gf = features if isinstance(features, GeneFeatures) else read_features(features)
    align_features(gf, knockouts, allow_missing=allow_missing)  # checks the knockouts are covered
    # every gene of the file is kept, knocked out or not: T's feature basis learns from all of them, and
    # scoring ranks the ones without cells from sequence
    return gf


def _read_elem(node: h5py.Group | h5py.Dataset) -> Any:
    """Read an AnnData element with anndata's reader (``anndata.io`` from 0.11, ``anndata.experimental`` before)."""
    try:
        from anndata.io import read_elem
    except ImportError:  # anndata 0.10
        from anndata.experimental import read_elem

    return read_elem(node)
