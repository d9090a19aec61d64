"""Commands that read a trained run take the obs keys, control label and layer it was trained with."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import perturbscore.cli  # noqa: E402,F401  registers every command
from perturbscore.cli._app import app  # noqa: E402
from perturbscore.datasets import synthetic_perturb_seq  # noqa: E402
from perturbscore.model import read_keys  # noqa: E402
from perturbscore.tl import fit  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def own_layout(tmp_path_factory):
    """A screen with its own obs names (gene / cell_type / NTC) on disk, and a run trained on it."""
    base = tmp_path_factory.mktemp("run_keys")
    adata = synthetic_perturb_seq(seed=0).adata
    adata.obs = adata.obs.rename(columns={"condition": "gene", "state": "cell_type"})
    adata.obs["gene"] = adata.obs["gene"].astype(str).replace({"Unperturbed": "NTC"})
    adata.write_h5ad(base / "screen.h5ad")
    fit(adata, perturbation_key="gene", state_key="cell_type", control="NTC", max_steps=40, steps_per_epoch=20,
        progress=False, out=base / "run", seed=0)  # fmt: skip
    return base / "screen.h5ad", base / "run"


def test_score_and_evaluate_read_the_screen_with_the_runs_keys(own_layout) -> None:  # noqa: ANN001
    screen, run = own_layout
    res = runner.invoke(app, ["score", str(run), "--screen", str(screen), "--preset-target", "progenitor",
                              "--n-boot", "20", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(run / "scores.csv")
    assert "NTC" not in set(scores["gene"])  # the run's control label, not the challenge layout's
    res = runner.invoke(app, ["evaluate", str(run), "--screen", str(screen), "--ks", "2,10", "--resamples", "2",
                              "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (run / "eval.md").exists()


def test_keys_given_override_the_runs(own_layout) -> None:  # noqa: ANN001
    screen, run = own_layout
    res = runner.invoke(app, ["score", str(run), "--screen", str(screen), "--preset-target", "progenitor",
                              "--state-key", "state", "--out", str(run / "other.csv"), "--no-progress"])  # fmt: skip
    assert res.exit_code != 0
    assert "'state'" in str(res.exception)  # the key given was used, and named in the error


def test_read_keys_order() -> None:
    assert read_keys(None) == {"perturbation_key": "condition", "state_key": "state", "control": "Unperturbed",
                               "layer": None}  # fmt: skip
    assert read_keys(None, control="none")["control"] == "none"
