"""``perturbscore reproduce --panel``: refusals that cost no training."""

from __future__ import annotations

from pathlib import Path

import pytest

from perturbscore._errors import InputError
from perturbscore.cli import main
from perturbscore.evaluation import reproduce_panel


def test_panel_refuses_unknown_screens_and_a_screen_argument(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["reproduce", "--panel", "--panel-screens", "nope", "--out", str(tmp_path / "p")]) == 2
    assert "unknown panel screen" in capsys.readouterr().err
    assert main(["reproduce", str(tmp_path / "x.h5ad"), "--panel", "--out", str(tmp_path / "p")]) == 2
    assert "drop the SCREEN argument" in capsys.readouterr().err


def test_panel_never_deletes_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a panel run"):
        reproduce_panel(out=tmp_path, screens=("default",), overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
