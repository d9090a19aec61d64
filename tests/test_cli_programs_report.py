from __future__ import annotations

import json
import re
import shutil

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import perturbscore.cli._programs  # noqa: E402,F401  registers `programs`
import perturbscore.cli._report  # noqa: E402,F401  registers `report`
from perturbscore._errors import RunError  # noqa: E402
from perturbscore.cli._app import app  # noqa: E402
from perturbscore.datasets import synthetic_perturb_seq  # noqa: E402
from perturbscore.report import check_report, derive_caveats  # noqa: E402
from perturbscore.tl import fit  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A simulated screen on disk and a tiny trained run: (screen dir, run dir)."""
    base = tmp_path_factory.mktemp("cli_programs")
    sim = synthetic_perturb_seq(seed=0)
    sim.write(base / "data")
    fit(sim.adata, features=sim.features, max_steps=60, steps_per_epoch=30, progress=False, out=base / "run", seed=0)
    return base / "data", base / "run"


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run, so each test starts from the same state."""
    return shutil.copytree(trained[1], tmp_path / "run")


def _eval(model_mae2: float) -> dict:
    return {
        "eval_k": 10,
        "models": {"perturbscore": {"mae_cells": {"2": [model_mae2], "10": [0.08]}, "mae_sequence": [0.2, 0.22]}},
        "baselines": {
            "empirical": {"mae_cells": {"2": [0.25], "10": [0.1]}},
            "shrunk": {"mae_cells": {"2": [0.2], "10": [0.09]}},
            "ridge": {"mae_sequence": [0.15]},
            "knn": {"mae_sequence": [0.3]},
        },
        "scatter": {"pred": [0.1, 0.3], "true": [0.12, 0.25]},
    }


def test_help():
    for cmd, flags in (("programs", ["--screen", "--gene-sets", "--n-top", "--permutations", "--overwrite"]),
                       ("report", ["--out", "--open-check", "--overwrite"])):  # fmt: skip
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0
        text = re.sub(r"\x1b\[[0-9;]*m", "", res.output)
        for flag in flags:
            assert flag in text


def test_programs_command(trained, run):
    data, _ = trained
    args = ["programs", str(run), "--screen", str(data / "screen.h5ad"), "--gene-sets", str(data / "modules.gmt"),
            "--n-top", "10", "--permutations", "100"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for name in ("programs.csv", "enrichment.csv", "program_activity_state.csv", "program_activity_perturbation.csv",
                 "stat_state_relation.csv"):  # fmt: skip
        assert (run / name).stat().st_size > 0
    top = pd.read_csv(run / "programs.csv")
    assert set(top["sign"]) == {"+", "-"}
    assert top.groupby(["program", "sign"]).size().max() == 10
    for png in ("program_top_genes", "program_activity_state", "enrichment"):
        assert (run / "plots" / f"{png}.png").read_bytes().startswith(b"\x89PNG")
    out = " ".join(res.output.split())
    assert "program_1" in out
    assert "state_" in out or "program_" in out  # the most significant gene set is named
    assert str(run.name) in out
    # refuses to replace, then replaces; a run without gene sets leaves no stale enrichment table
    again = runner.invoke(app, args)
    assert again.exit_code != 0
    assert isinstance(again.exception, RunError)
    assert "--overwrite" in str(again.exception)
    res = runner.invoke(app, ["programs", str(run), "--n-top", "5", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert not (run / "enrichment.csv").exists()
    assert "(no --gene-sets)" in res.output


def test_report_command(run):
    (run / "eval.json").write_text(json.dumps(_eval(0.3)))
    res = runner.invoke(app, ["report", str(run), "--open-check"])
    assert res.exit_code == 0, res.output
    html = (run / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", html)
    assert "open check passed" in res.output
    caveats = json.loads((run / "caveats.json").read_text())
    assert len(caveats) == 2  # k=2 loses to both cell baselines; sequence loses to ridge (not k-NN)
    assert "k=2" in caveats[0]
    assert "empirical" in caveats[0]
    assert "ridge" in caveats[1]
    assert "k-NN" not in caveats[1]
    assert "k=2" in html
    assert (run / "plots" / "training_curves.png").exists()
    assert (run / "plots" / "mae_vs_k.png").exists()
    again = runner.invoke(app, ["report", str(run)])
    assert isinstance(again.exception, RunError)
    # an existing caveats.json is kept; --out writes elsewhere
    (run / "caveats.json").write_text(json.dumps(["hand-written caveat"]))
    res = runner.invoke(app, ["report", str(run), "--out", str(run / "other.html")])
    assert res.exit_code == 0, res.output
    assert "hand-written caveat" in (run / "other.html").read_text()


def test_report_missing_run(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert isinstance(res.exception, RunError)
    assert "does not exist" in str(res.exception)


def test_derive_caveats():
    assert derive_caveats(_eval(0.1)) == [derive_caveats(_eval(0.1))[0]]  # only the sequence caveat
    assert "sequence" in derive_caveats(_eval(0.1))[0]
    good = _eval(0.1)
    good["models"]["perturbscore"]["mae_sequence"] = [0.1]
    assert derive_caveats(good) == []
    full = {"models": {"full": _eval(0.3)["models"]["perturbscore"]}, "baselines": _eval(0.3)["baselines"]}
    assert len(derive_caveats(full)) == 2
    assert derive_caveats({"models": {"seed_baseline": {}}}) == []


def test_check_report(tmp_path):
    ok = tmp_path / "ok.html"
    ok.write_text('<html><body><a href="#x">x</a><img src="data:image/png;base64,iVBORw0KGgo="></body></html>')
    assert check_report(ok) == 1
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="https://example.org/a.png"></body></html>')
    with pytest.raises(RunError, match="not self-contained"):
        check_report(bad)
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><img src="data:image/png;base64,R0lGODlh"></body></html>')
    with pytest.raises(RunError, match="not a PNG"):
        check_report(broken)
