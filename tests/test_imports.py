"""The package imports its heavy dependencies only when used: ``perturbscore --help`` starts fast."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_does_not_load_torch_lightning_or_anndata() -> None:
    code = (
        "import sys, perturbscore.cli; print(sorted(m for m in ('torch', 'lightning', 'anndata') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_subpackages_load_on_first_use() -> None:
    code = "import perturbscore as ps; print(ps.tl.fit.__name__, ps.train.TrainConfig.__name__, 'io' in dir(ps))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["fit", "TrainConfig", "True"]
