"""What every tool accepts and where it writes: AnnData, paths or screens in; ``.uns``/``.obsm``/``.varm`` out.

The tools take an AnnData (or an ``.h5ad``/``.zarr`` path, or a :class:`~perturbscore.data.Screen`) with the
keyword arguments pertpy and scanpy users know: ``perturbation_key``, ``state_key``, ``control`` and ``layer``.
A key left at ``None`` is the one the model was trained with (``model.keys``), else the challenge layout's
(``condition``, ``state``, ``Unperturbed``, ``X``). Results go into the AnnData with ``key_added`` (in place,
or into a copy with ``copy=True``) and every ``.uns`` entry records the call's ``params``, as scanpy does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data import Screen

if TYPE_CHECKING:
    import anndata as ad

    from ..model import PerturbScoreModel

Data = Screen | str | os.PathLike[str]


def is_anndata(obj: object) -> bool:
    """Whether ``obj`` is an AnnData (checked by shape, without importing anndata)."""
    return not isinstance(obj, Screen | str | os.PathLike) and hasattr(obj, "obs") and hasattr(obj, "var_names")


def resolve_screen(
    data: Screen | ad.AnnData | str | os.PathLike[str] | None,
    model: PerturbScoreModel | None = None,
    *,
    perturbation_key: str | None = None,
    state_key: str | None = None,
    control: str | None = None,
    layer: str | None = None,
    small: str = "drop",
    min_cells: int = 1,
    features: Any = None,
) -> Screen | None:
    """Return a validated :class:`Screen` of ``data`` in the model's state order (``None`` stays ``None``)."""
    from ..model import as_screen, read_keys

    if data is None:
        return None
    if isinstance(data, Screen):
        return as_screen(data, features=features) if features is not None else data

    keys = read_keys(model, perturbation_key=perturbation_key, state_key=state_key, control=control, layer=layer)
    states = list(model.states) if model is not None else None
    source: Any = Path(data) if isinstance(data, str | os.PathLike) else data
    return as_screen(source, features=features, **keys, states=states, small=small, min_cells=min_cells)


def target_adata(data: object, *, copy: bool) -> ad.AnnData | None:
    """Return the AnnData to write results into: ``data``, its copy (``copy=True``), or None (other input)."""
    if not is_anndata(data):
        return None
    if getattr(data, "isbacked", False) and not copy:
        return None  # a backed file is not rewritten behind the user's back; pass copy=True or load it
    adata: Any = data
    return adata.copy() if copy else adata


def h5_safe(obj: Any) -> Any:
    """Make ``obj`` writable by anndata's h5ad writer: string keys, no None, lists as typed arrays."""
    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): h5_safe(v) for k, v in obj.items()}
    if obj is None:
        return "none"
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, list | tuple):
        if all(isinstance(v, str) for v in obj):
            return np.array(obj, dtype=str) if obj else np.array([], dtype="<U1")
        if all(isinstance(v, int | float | np.number | bool) for v in obj):
            return np.asarray(obj)
        return {str(i): h5_safe(v) for i, v in enumerate(obj)}
    return obj


def plain(obj: Any) -> Any:
    """Undo :func:`h5_safe` as far as JSON needs: arrays to lists, numpy scalars to Python ones."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [plain(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
