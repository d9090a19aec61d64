"""Run directories: creation that never clobbers an earlier run without ``overwrite``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

from .._errors import RunError

#: Top-level entries a run (training, evaluation, scoring, interpretation, report) may hold; ``overwrite``
#: deletes a run only when it holds nothing else, so a user's own files in it are never lost.
RUN_ENTRIES = frozenset(
    {
        "config.json", "config.yaml", "screen_summary.json", "metrics.csv", "checkpoints", "model", "plots",
        "eval.json", "eval.md", "scores.csv", "scores.parquet", "scores.json", "programs.csv", "enrichment.csv",
        "program_activity_state.csv", "program_activity_perturbation.csv", "stat_state_relation.csv", "caveats.json",
        "report.html", "report.png", "runs", "lightning_logs", "simulated_screen",
    }
)  # fmt: skip


def _json_dict(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a run perturbscore wrote (not merely files with run-like names).

    A training run has a ``config.json`` with ``train`` and ``model`` sections; an evaluation
    (``reproduce``) has an ``eval.json`` with ``models`` or training runs under ``runs/``.
    """
    path = Path(path)
    config = _json_dict(path / "config.json")
    if config is not None and {"train", "model"} <= set(config):
        return True
    evaluation = _json_dict(path / "eval.json")
    if evaluation is not None and "models" in evaluation:
        return True
    runs = path / "runs"
    return runs.is_dir() and any(is_run_dir(r) for r in runs.iterdir() if r.is_dir())


def _foreign_entries(path: Path) -> list[str]:
    """Entries of run directory ``path`` that perturbscore does not write (atomic-write temp files excepted)."""
    return sorted(
        p.name
        for p in path.iterdir()
        if p.name not in RUN_ENTRIES and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def _verdict(path: Path, *, overwrite: bool, resume: bool) -> Literal["create", "keep", "replace"]:
    """Return what starting a run in ``path`` does (create it, keep it, replace it); raise where it must not."""
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is a file; choose another --out")
    if not path.exists() or not any(path.iterdir()):
        return "create"
    if not is_run_dir(path):
        if not _foreign_entries(path):  # only entries perturbscore writes (e.g. the demo's screen): a run being started
            return "replace" if overwrite else "keep"
        action = "delete it with --overwrite" if overwrite else "write a run into it"
        raise RunError(
            f"{path} is not empty and is not a perturbscore run; refusing to {action}. "
            "Choose another --out (a new or empty directory)."
        )
    if resume:
        return "keep"
    if not overwrite:
        raise RunError(
            f"{path} already holds a run; pass --overwrite to replace it, --resume to continue it, "
            "or choose another --out"
        )
    foreign = _foreign_entries(path)
    if foreign or path.is_symlink():
        what = ", ".join(repr(f) for f in foreign[:10]) if foreign else "a symbolic link"
        raise RunError(
            f"{path} holds a run but also {what} that perturbscore did not write; --overwrite would delete "
            "them. Move them out of the run directory, or choose another --out."
        )
    return "replace"


def check_run_dir(out: str | Path, *, overwrite: bool = False, resume: bool = False) -> None:
    """Raise the error :func:`prepare_run_dir` would raise for ``out``, touching nothing.

    Call it before reading a large screen: a run that would be refused is refused at once.
    """
    _verdict(Path(out), overwrite=overwrite, resume=resume)


def prepare_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``path`` for a new run; refuse an existing run unless ``overwrite`` (replace) or ``resume``.

    With ``overwrite``, only a directory perturbscore wrote (see :func:`is_run_dir`) that holds nothing
    but run outputs is removed: a user's other folder, or their files inside a run, are never deleted.
    """
    path = Path(path)
    verdict = _verdict(path, overwrite=overwrite, resume=resume)
    if verdict == "keep":
        return path
    if verdict == "replace":
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
