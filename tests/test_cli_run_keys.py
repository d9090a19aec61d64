"""Commands that read a trained run take the obs keys, control label and layer it was trained with."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import perturbscore.cli  # noqa: E402,F401  registers every command
from perturbscore._errors import InputError  # noqa: E402
from perturbscore.cli._app import app  # noqa: E402
from perturbscore.datasets import synthetic_perturb_seq  # noqa: E402
from perturbscore.model import PerturbScoreModel, read_keys  # noqa: E402
from perturbscore.tl import fit  # noqa: E402

runner = CliRunner()
OWN_KEYS = {"perturbation_key": "gene", "state_key": "cell_type", "control": "NTC", "layer": None}


@pytest.fixture(scope="module")
def own_layout(tmp_path_factory):
    """A screen with its own obs names (gene / cell_type / NTC) on disk, and a run `perturbscore train` made."""
    base = tmp_path_factory.mktemp("run_keys")
    synthetic_perturb_seq(seed=0).write(base / "sim")
    adata = ad.read_h5ad(base / "sim" / "screen.h5ad")
    adata.obs = adata.obs.rename(columns={"condition": "gene", "state": "cell_type"})
    adata.obs["gene"] = adata.obs["gene"].astype(str).replace({"Unperturbed": "NTC"})
    adata.write_h5ad(base / "screen.h5ad")
    res = runner.invoke(app, ["train", str(base / "screen.h5ad"), "--features", str(base / "sim" / "features.npz"),
                              "--out", str(base / "run"), "--max-steps", "40", "--no-progress",
                              "--perturbation-key", "gene", "--state-key", "cell_type", "--control", "NTC"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return base / "screen.h5ad", base / "run"


def test_a_trained_run_keeps_the_keys_it_read_its_screen_with(own_layout) -> None:  # noqa: ANN001
    _, run = own_layout
    assert PerturbScoreModel.load(run).keys == OWN_KEYS


def test_score_and_evaluate_read_the_screen_with_the_runs_keys(own_layout) -> None:  # noqa: ANN001
    screen, run = own_layout
    res = runner.invoke(app, ["score", str(run), "--screen", str(screen), "--preset-target", "progenitor",
                              "--n-boot", "20", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(run / "scores.csv")
    assert "NTC" not in set(scores["gene"])  # the run's control label, not the challenge layout's
    # the screen has 8 knockouts, so 1 is held out: evaluated too (stability, undefined there, is left blank)
    res = runner.invoke(app, ["evaluate", str(run), "--screen", str(screen), "--ks", "2,10", "--resamples", "2",
                              "--layer", "X", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (run / "eval.md").exists()


def test_keys_given_override_the_runs(own_layout) -> None:  # noqa: ANN001
    screen, run = own_layout
    res = runner.invoke(app, ["score", str(run), "--screen", str(screen), "--preset-target", "progenitor",
                              "--state-key", "state", "--out", str(run / "other.csv"), "--no-progress"])  # fmt: skip
    assert res.exit_code != 0
    assert "'state'" in str(res.exception)  # the key given was used, and named in the error


def test_an_ensemble_of_runs_with_other_keys_asks_which_to_use(own_layout, tmp_path) -> None:  # noqa: ANN001
    screen, run = own_layout
    sim = synthetic_perturb_seq(seed=0)
    fit(sim.adata, features=sim.features, max_steps=20, progress=False, out=tmp_path / "challenge", seed=0)
    args = ["score", str(run), str(tmp_path / "challenge"), "--screen", str(screen), "--preset-target", "progenitor",
            "--out", str(tmp_path / "s.csv"), "--no-progress"]  # fmt: skip
    res = runner.invoke(app, args)
    assert isinstance(res.exception, InputError)
    assert "different obs keys" in str(res.exception)
    assert "--perturbation-key" in str(res.exception)


def test_read_keys_takes_those_given_then_the_models_then_the_challenge_layout(own_layout) -> None:  # noqa: ANN001
    _, run = own_layout
    model = PerturbScoreModel.load(run)
    assert read_keys(model) == OWN_KEYS
    assert read_keys(model, state_key="state")["state_key"] == "state"
    assert read_keys(None) == {"perturbation_key": "condition", "state_key": "state", "control": "Unperturbed",
                               "layer": None}  # fmt: skip
    model.extra["keys"] = OWN_KEYS | {"control": None}  # trained on a screen without control cells
    assert read_keys(model)["control"] is None
    model.extra.pop("keys")  # a run that recorded no keys
    assert read_keys(model)["perturbation_key"] == "condition"
