"""Writing a synthetic screen's files atomically: h5ad, features npz, FASTA, GMT, truth CSV."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._errors import RunError
from .._utils import anndata_strings_writable, atomic_path, write_text_atomic

if TYPE_CHECKING:
    from ._simulate import SyntheticScreen

logger = logging.getLogger(__name__)

FILES = {
    "screen": "screen.h5ad",
    "features": "features.npz",
    "sequences": "sequences.fa",
    "modules": "modules.gmt",
    "truth": "truth.csv",
}


def write_screen(screen: SyntheticScreen, directory: Path, *, overwrite: bool) -> dict[str, Path]:
    """Write every file of ``screen`` under ``directory``; refuse to replace files unless ``overwrite``."""
    if directory.exists() and not directory.is_dir():
        raise RunError(f"{directory} exists and is not a directory; choose another --out")
    paths = {key: directory / name for key, name in FILES.items() if key != "sequences" or screen.sequences}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise RunError(f"{path} already exists; pass --overwrite (overwrite=True) or choose another --out")
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths["screen"]) as tmp, anndata_strings_writable():
        screen.adata.write_h5ad(tmp)
    write_features_npz(screen.features.genes, screen.features.values, paths["features"])
    if screen.sequences:
        write_fasta(screen.sequences, paths["sequences"])
    write_modules_gmt(screen.modules, paths["modules"])
    with atomic_path(paths["truth"]) as tmp:
        screen.truth.to_csv(tmp)
    logger.info("wrote synthetic screen to %s", directory)
    return paths


def write_features_npz(genes: np.ndarray, values: np.ndarray, path: str | Path) -> Path:
    """Write ``values[i]`` (``(windows, dim)`` float32) under key ``genes[i]`` (the features file contract)."""
    from ..data import GeneFeatures
    from ..featurize import write_features

    return write_features(GeneFeatures(genes, values), path, overwrite=True)


def write_fasta(sequences: Mapping[str, str], path: str | Path, *, width: int = 80) -> Path:
    """Write one FASTA record per gene, ``width`` bases a line."""
    lines: list[str] = []
    for gene, seq in sequences.items():
        lines.append(f">{gene}")
        lines.extend(seq[i : i + width] for i in range(0, len(seq), width))
    return write_text_atomic(path, "\n".join(lines) + "\n")


def write_modules_gmt(modules: Mapping[str, list[str]], path: str | Path) -> Path:
    """Write a simulated screen's gene modules as GMT, each with a description of what it is."""
    from ..io import write_gmt

    return write_gmt(modules, path, descriptions={name: _describe(name) for name in modules})


def _describe(name: str) -> str:
    if name.startswith("state_"):
        return f"synthetic markers of the {name.removeprefix('state_').replace('_', ' ')} state"
    if name.startswith("effect_program_"):
        return f"synthetic effect program {name.removeprefix('effect_program_')}"
    return "synthetic gene set"
