"""Small shared helpers: progress bars, atomic writes, RNG coercion."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def track(
    iterable: Iterable[T], *, progress: bool = True, description: str = "", total: int | None = None
) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm progress bar when ``progress`` is true (scvi's ``track``)."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description, total=total, leave=False, dynamic_ncols=True)


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Coerce ``rng`` (Generator, seed or None) into a :class:`numpy.random.Generator`."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


@contextlib.contextmanager
def anndata_strings_writable() -> Iterator[None]:
    """Let anndata write pandas' string arrays, which pandas >= 3 uses for every name and label by default.

    anndata refuses to write them unless told otherwise, because anndata < 0.11 cannot read them back.
    """
    import anndata as ad

    if not hasattr(ad.settings, "allow_write_nullable_strings"):  # anndata < 0.11 has no such arrays to allow
        yield
        return
    with ad.settings.override(allow_write_nullable_strings=True):
        yield


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash mid-write never leaves a truncated file where a good one was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():  # mkstemp makes 0600 files; give results the user's usual permissions
            tmp_path.chmod(0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
