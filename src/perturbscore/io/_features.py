"""Gene sequence features (the input of ``T``): read them from disk and align them to perturbed genes.

Formats, keyed by gene symbol:

- ``.npz``: one array per gene, each ``(windows, dim)`` or ``(dim,)``;
- ``.h5`` / ``.hdf5``: one dataset per gene, at the root or in a group ``features``;
- ``.csv`` / ``.tsv`` / ``.parquet``: a gene x dim table (first column or index = gene; numeric
  columns = dims), stored with ``windows == 1``.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .._errors import InputError
from ..data._screen import GeneFeatures
from ._validate import check_feature_arrays, check_features_cover

logger = logging.getLogger(__name__)

FEATURE_SUFFIXES = (".npz", ".h5", ".hdf5", ".csv", ".tsv", ".parquet", ".pq")


def read_features(path: str | Path) -> GeneFeatures:
    """Read per-gene sequence features.

    Parameters
    ----------
    path
        An ``.npz``, ``.h5``/``.hdf5``, ``.csv``, ``.tsv`` or ``.parquet`` file (see the module docstring).

    Returns
    -------
    GeneFeatures
        ``values`` of shape ``(n_genes, windows, dim)``, float32.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"feature file {str(path)!r} does not exist; check the path (--features).")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        genes, arrays = _read_npz(path)
    elif suffix in (".h5", ".hdf5"):
        genes, arrays = _read_h5(path)
    elif suffix in (".csv", ".tsv", ".parquet", ".pq"):
        genes, arrays = _read_table(path)
    else:
        raise InputError(
            f"feature file {str(path)!r} has unknown suffix {suffix!r}; use one of {', '.join(FEATURE_SUFFIXES)}."
        )
    check_feature_arrays(genes, arrays, source=str(path))
    first = arrays[0].reshape(-1, arrays[0].shape[-1]) if arrays else np.zeros((0, 0), np.float32)
    values = np.empty((len(arrays), *first.shape), dtype=np.float32)  # (n, windows, dim)
    shape = first.shape
    del first
    for i in range(len(arrays)):  # one copy of the features at a time, not a stack beside the per-gene arrays
        values[i] = arrays[i].reshape(shape)
        arrays[i] = np.empty(0, dtype=np.float32)  # release the gene's array as soon as it is copied
    logger.info("read features of %d genes, shape %s, from %s", len(genes), values.shape[1:], path)
    return GeneFeatures(genes=np.asarray(genes, dtype=str), values=values, source=str(path))


def _read_npz(path: Path) -> tuple[list[str], list[np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            genes = list(z.files)
            arrays = [_numeric(z[g], g, path) for g in genes]
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # truncated/corrupt zip
        raise InputError(f"{str(path)!r} is not a readable .npz file ({err}); re-save it with np.savez.") from err
    return genes, arrays


def _read_h5(path: Path) -> tuple[list[str], list[np.ndarray]]:
    try:
        with h5py.File(path, "r") as f:
            root = f["features"] if isinstance(f.get("features"), h5py.Group) else f
            genes = [k for k, v in root.items() if isinstance(v, h5py.Dataset)]
            arrays = [_numeric(root[g][()], g, path) for g in genes]
    except OSError as err:
        raise InputError(f"{str(path)!r} is not a readable HDF5 file ({err}); it may be truncated.") from err
    return genes, arrays


def _numeric(a: np.ndarray, gene: str, path: Path) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iufb":
        raise InputError(f"features of gene {gene!r} in {str(path)!r} are not numeric (dtype {a.dtype}).")
    return a.astype(np.float32, copy=False)


def _read_table(path: Path) -> tuple[list[str], list[np.ndarray]]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (OSError, ValueError) as err:
        raise InputError(f"{str(path)!r} could not be read as a {suffix} table ({err}).") from err
    if not isinstance(df.index, pd.RangeIndex):
        genes = df.index.astype(str).tolist()
    elif df.shape[1] > 0 and not pd.api.types.is_numeric_dtype(df.iloc[:, 0]):
        genes = df.iloc[:, 0].astype(str).tolist()
        df = df.iloc[:, 1:]
    else:
        raise InputError(
            f"feature table {str(path)!r} has no gene column (its first column is numeric). "
            "Put the gene symbols in the first column (or the index)."
        )
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad or df.shape[1] == 0:
        raise InputError(
            f"feature table {str(path)!r} needs numeric feature columns after the gene column; non-numeric: {bad[:10]}."
            if bad
            else f"feature table {str(path)!r} has no feature columns."
        )
    values = df.to_numpy(dtype=np.float32)  # (n_genes, dim)
    return genes, list(values)


def align_features(
    features: GeneFeatures, genes: list[str] | np.ndarray, *, allow_missing: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Line up features with ``genes``.

    Parameters
    ----------
    features
        The gene features.
    genes
        Perturbed gene symbols, in the order wanted.
    allow_missing
        If false (default) a gene without features is an error; if true its row is zeros and its mask false
        (the sequence model ``T`` is not trained on it).

    Returns
    -------
    values
        ``(len(genes), windows, dim)`` float32.
    mask
        ``(len(genes),)`` bool, true where the gene has features.
    """
    genes = [str(g) for g in genes]
    _check_gene_features(features)
    mask = np.array([g in features for g in genes], dtype=bool)
    missing = [g for g, m in zip(genes, mask, strict=True) if not m]
    if missing and not allow_missing:
        check_features_cover(missing, len(genes), source=features.source or "the given features")
    if missing:
        logger.warning("%d perturbed gene(s) have no features and are left out of T: %s", len(missing), missing[:10])
    windows, dim = features.shape
    values = np.zeros((len(genes), windows, dim), dtype=np.float32)  # (n, windows, dim)
    if mask.any():
        values[mask] = features.get([g for g, m in zip(genes, mask, strict=True) if m])
    return values, mask


def _check_gene_features(features: GeneFeatures) -> None:
    """Validate a :class:`GeneFeatures` built in Python (duplicates, NaN/inf, shape)."""
    if features.values.ndim != 3 or features.values.shape[0] != len(features.genes):
        raise InputError(
            f"features from {features.source or 'Python'!r} have values of shape {features.values.shape} for "
            f"{len(features.genes)} genes; expected (n_genes, windows, dim)."
        )
    check_feature_arrays(list(features.genes), list(features.values), source=features.source or "the given features")
