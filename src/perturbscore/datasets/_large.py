"""Genome-wide-sized synthetic screens streamed straight to disk.

:func:`write_large_screen` draws the same kind of screen as :func:`~perturbscore.datasets.simulate_screen`
(same design, cells and counts) but never holds the matrix: counts are drawn a chunk of cells at a
time, log-normalised, and appended to raw ``data``/``indices`` files; a second pass copies them into
the ``.h5ad``'s contiguous (unchunked) datasets, so reading a run of rows later is one exact read.
Rows are grouped by perturbation (knockouts in name order, then the control), in random order within
each group: the layout the training sampler reads fastest (a few runs of adjacent rows per step).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .._constants import KEYS
from .._errors import RunError
from .._utils import anndata_strings_writable, atomic_path, track
from ._cells import plan_cells
from ._counts import iter_counts, log_normalize
from ._design import build_design
from ._features import simulate_features
from ._reference import draw_counts
from ._simulate import FEATURE_NOISE, _cell_totals, _check_args, _truth_frame, obs_frame, truth_uns
from ._write import write_features_npz, write_modules_gmt

logger = logging.getLogger(__name__)

COPY_BLOCK = 1 << 24  # values per copy from the raw files into the .h5ad


def write_large_screen(
    directory: str | Path,
    *,
    n_cells: int = 2_000_000,
    n_genes: int = 8_000,
    n_knockouts: int = 10_000,
    n_control_cells: int | None = None,
    feature_dim: int = 32,
    n_windows: int = 200,
    min_cells: int = 20,
    effect_dim: int = 5,
    feature_noise: float = FEATURE_NOISE,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Simulate a large screen and write it to ``directory`` without holding its matrix in memory.

    Knockouts beyond what the panel can measure are knocked out off-panel (their own drop is not
    measured), as in genome-wide screens whose panel is smaller than the library.

    Parameters
    ----------
    directory
        Output folder: ``screen.h5ad`` (``X`` = log1p(CP10k) float32 CSR, ``uint16`` column indices when
        there are fewer than 65,536 genes; no raw-count layer), ``features.npz``, ``modules.gmt``,
        ``truth.csv``.
    n_cells, n_genes, n_knockouts, n_control_cells, min_cells, effect_dim, feature_noise
        As in :func:`~perturbscore.datasets.simulate_screen`.
    feature_dim, n_windows
        Shape of each knockout's features (small by default: 10,000 x 200 x 32 float32 is 256 MB).
    seed
        The same seed gives the same screen.
    overwrite
        Replace existing files; otherwise an existing file raises :class:`~perturbscore._errors.RunError`.
    progress
        Show progress bars.

    Returns
    -------
    dict
        ``{"screen", "features", "modules", "truth"}`` -> path written.
    """
    started = time.perf_counter()
    directory = Path(directory)
    paths = {key: directory / name for key, name in _FILES.items()}
    if not overwrite and (existing := [p for p in paths.values() if p.exists()]):
        raise RunError(f"{existing[0]} already exists; pass --overwrite (overwrite=True) or choose another --out")
    n_cells, n_control = _cell_totals(n_cells, n_control_cells, n_knockouts, min_cells)
    _check_args(n_unseen_genes=0, feature_dim=feature_dim, n_windows=n_windows, noise=feature_noise)
    s_design, s_counts, s_cells, s_umi, s_feat = np.random.SeedSequence(seed).spawn(5)
    design = build_design(
        n_genes=n_genes, n_knockouts=n_knockouts, n_unseen=0, effect_dim=effect_dim, planted=None,
        rng=np.random.default_rng(s_design), off_panel=True,
    )  # fmt: skip
    counts = draw_counts(
        n_knockouts, total=n_cells - n_control, min_cells=min_cells, rng=np.random.default_rng(s_counts)
    )
    plan = plan_cells(design, counts, n_control=n_control, rng=np.random.default_rng(s_cells))
    names = np.array([*design.knockouts, KEYS.control])
    group = np.where(plan.perturbation >= 0, plan.perturbation, len(design.knockouts))
    rank = np.argsort(np.argsort(names))  # knockouts in name order, the control where its name sorts
    order = np.argsort(rank[group], kind="stable")  # grouped; within a group, the plan's random order
    directory.mkdir(parents=True, exist_ok=True)
    params = {
        "seed": int(seed), "n_genes": int(n_genes), "n_knockouts": int(n_knockouts), "n_cells": int(n_cells),
        "n_control_cells": int(n_control), "feature_dim": int(feature_dim), "n_windows": int(n_windows),
        "effect_dim": int(effect_dim), "feature_noise": float(feature_noise), "min_cells": int(min_cells),
        "layout": "grouped by perturbation",
    }  # fmt: skip
    nnz = _write_h5ad(paths["screen"], design, plan, order, params, seed=s_umi, progress=progress)
    values, _ = simulate_features(
        design.effects, z_mean=design.effect_mean, dim=feature_dim, n_windows=n_windows, noise=feature_noise,
        rng=np.random.default_rng(s_feat),
    )  # fmt: skip
    write_features_npz(np.array(design.knockouts), values, paths["features"])
    write_modules_gmt(design.modules, paths["modules"])
    with atomic_path(paths["truth"]) as tmp:
        _truth_frame(design, counts, n_control).to_csv(tmp)
    logger.info(
        "wrote %d cells x %d genes (%d knockouts, %d stored values) to %s in %.0f s",
        n_cells, n_genes, n_knockouts, nnz, directory, time.perf_counter() - started,
    )  # fmt: skip
    return paths


_FILES = {"screen": "screen.h5ad", "features": "features.npz", "modules": "modules.gmt", "truth": "truth.csv"}


def _write_h5ad(path: Path, design, plan, order: np.ndarray, params: dict, *, seed, progress: bool) -> int:  # noqa: ANN001
    """Stream the counts of ``order``'s cells into ``path``; returns the number of stored values."""
    n_genes = design.genes.size
    index_dtype = np.uint16 if n_genes < 1 << 16 else np.int32
    indptr = np.zeros(order.size + 1, dtype=np.int64)
    with atomic_path(path) as tmp:
        raw_data, raw_ind = tmp.with_suffix(".data.tmp"), tmp.with_suffix(".indices.tmp")
        try:
            row = 0
            with raw_data.open("wb") as fd, raw_ind.open("wb") as fi:
                for chunk in iter_counts(design, plan, seed=seed, order=order, progress=progress):
                    norm = log_normalize(chunk)
                    fd.write(norm.data.astype(np.float32, copy=False).tobytes())
                    fi.write(norm.indices.astype(index_dtype).tobytes())
                    indptr[row + 1 : row + 1 + norm.shape[0]] = indptr[row] + norm.indptr[1:]
                    row += norm.shape[0]
            nnz = int(indptr[-1])
            _assemble(tmp, design, plan, order, params, indptr, raw_data, raw_ind, index_dtype, progress=progress)
        finally:
            raw_data.unlink(missing_ok=True)
            raw_ind.unlink(missing_ok=True)
    return nnz


def _assemble(
    tmp: Path, design, plan, order, params, indptr, raw_data: Path, raw_ind: Path, index_dtype, *, progress: bool
) -> None:  # noqa: ANN001
    from anndata.io import write_elem

    nnz = int(indptr[-1])
    with h5py.File(tmp, "w") as f, anndata_strings_writable():
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        write_elem(f, "obs", obs_frame(design, plan, order))
        write_elem(f, "var", pd.DataFrame(index=pd.Index(design.genes.astype(str))))
        write_elem(f, "uns", {KEYS.truth: truth_uns(design, params, None)})
        for key in ("obsm", "varm", "obsp", "varp", "layers"):
            write_elem(f, key, {})
        x = f.create_group("X")
        x.attrs["encoding-type"], x.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        x.attrs["shape"] = np.array([order.size, design.genes.size], dtype=np.int64)
        x.create_dataset("indptr", data=indptr)
        for name, src, dtype in (("data", raw_data, np.float32), ("indices", raw_ind, index_dtype)):
            ds = x.create_dataset(name, shape=(nnz,), dtype=dtype)  # contiguous: exact reads of any run
            values = np.memmap(src, dtype=dtype, mode="r", shape=(nnz,)) if nnz else np.zeros(0, dtype)
            starts = range(0, nnz, COPY_BLOCK)
            for lo in track(starts, progress=progress, description=f"writing X/{name}", total=len(starts)):
                ds[lo : lo + COPY_BLOCK] = values[lo : lo + COPY_BLOCK]
            del values
