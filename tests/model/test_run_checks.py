"""A run that would be refused is refused before any screen is read, with the same message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perturbscore._errors import RunError
from perturbscore.model import check_run_dir, fit, prepare_run_dir


def _run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"train": {}, "model": {}}))
    (path / "metrics.csv").write_text("epoch\n0\n")
    return path


@pytest.mark.parametrize(
    ("layout", "options"),
    [
        ("missing", {}),
        ("empty", {}),
        ("run", {}),
        ("run", {"overwrite": True}),
        ("run", {"resume": True}),
        ("run+user-file", {"overwrite": True}),
        ("user-folder", {}),
        ("user-folder", {"overwrite": True}),
        ("file", {}),
        ("only-run-entries", {}),
    ],
)
def test_check_run_dir_agrees_with_prepare_run_dir(tmp_path, layout, options):
    """Whatever prepare_run_dir refuses, check_run_dir refuses with the same message, touching nothing."""
    path = tmp_path / "out"
    if layout == "empty":
        path.mkdir()
    elif layout.startswith("run"):
        _run(path)
        if layout == "run+user-file":
            (path / "raw.h5ad").write_bytes(b"mine")
    elif layout == "user-folder":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    elif layout == "file":
        path.write_text("a file")
    elif layout == "only-run-entries":
        (path / "simulated_screen").mkdir(parents=True)
    before = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
    try:
        check_run_dir(path, **options)
        checked = None
    except RunError as err:
        checked = str(err)
    assert (sorted(p.name for p in path.iterdir()) if path.is_dir() else None) == before  # nothing touched
    try:
        prepare_run_dir(path, **options)
        prepared = None
    except RunError as err:
        prepared = str(err)
    assert checked == prepared


def test_fit_refuses_an_existing_run_before_reading_the_screen(tmp_path):
    """The screen path does not exist: the run check answers first, so the user fixes the real problem."""
    run = _run(tmp_path / "run")
    with pytest.raises(RunError, match="already holds a run"):
        fit(tmp_path / "no_such_screen.h5ad", out=run, max_steps=2, progress=False)
