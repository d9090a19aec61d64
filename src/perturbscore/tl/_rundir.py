"""Run directories (DESIGN §7): creation that never clobbers an earlier run without ``overwrite``."""

from __future__ import annotations

import shutil
from pathlib import Path

from .._errors import RunError

#: Files that mark a directory as a perturbscore run (safe to replace with ``overwrite``).
RUN_MARKERS = ("config.json", "model", "metrics.csv", "eval.json", "scores.csv", "report.html")


def prepare_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``path`` for a new run; refuse an existing run unless ``overwrite`` (replace) or ``resume``.

    With ``overwrite``, only a directory that looks like a run (or is empty) is removed: a user's other
    folder is never deleted.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is a file; choose another --out")
    if path.exists() and any(path.iterdir()):
        is_run = any((path / m).exists() for m in RUN_MARKERS)
        if resume and is_run:
            return path
        if not overwrite:
            raise RunError(
                f"{path} already holds a run; pass --overwrite to replace it, --resume to continue it, "
                "or choose another --out"
            )
        if not is_run:
            raise RunError(
                f"{path} is not empty and is not a perturbscore run; refusing to delete it with "
                "--overwrite. Choose another --out"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
