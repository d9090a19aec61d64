"""The README's Python example uses public names only, and runs (on the small simulated screen, few steps)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_uses_public_names_only():
    code = _example()
    for attr in re.findall(r"\bps\.([\w.]+)", code):
        assert not any(part.startswith("_") for part in attr.split(".")), attr
    for internal in ("screen.rows", "cell_index", ".take(", "read_screen", "Screen("):
        assert internal not in code, internal


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _example().replace("simulate_screen(seed=0)", "synthetic_perturb_seq(seed=0)")
    code = code.replace("max_steps=1500", "max_steps=30, steps_per_epoch=15, n_train=6, n_val=2, progress=False")
    code = code.replace("features=features)", "features=features, ks=(2, 10), n_resamples=3)", 1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
    adata = namespace["adata"]
    for key in ("perturbscore", "perturbscore_evaluation", "perturbscore_scores", "perturbscore_programs"):
        assert key in adata.uns, key
    assert "X_perturbscore_programs" in adata.obsm
    assert isinstance(namespace["per_knockout"], pd.DataFrame)
    assert (tmp_path / "runs" / "py" / "scores.json").is_file()
