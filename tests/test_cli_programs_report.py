from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

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


def _help(command: str, capsys, monkeypatch) -> str:
    from perturbscore.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


def _commands():
    import typer

    import perturbscore.cli  # noqa: F401  registers every command

    return typer.main.get_command(app).commands


def _all_commands() -> list[str]:
    import typer

    import perturbscore.cli as cli  # noqa: F401  registers every command

    return sorted(typer.main.get_command(cli.app).commands)


@pytest.mark.parametrize("command", _all_commands())
def test_help_readable_at_80_columns(command, capsys, monkeypatch):
    """Every option's full name, no line over 80 characters, no cut names and no type column for flags."""
    text = _help(command, capsys, monkeypatch)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text
    assert "<bool>" not in text
    for param in _commands()[command].params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("--"):
                assert opt in text, f"{opt} missing from `{command} --help`"


@pytest.mark.parametrize("command", ["evaluate", "score", "programs", "report", "demo"])
def test_help_shows_defaults(command, capsys, monkeypatch):
    """Each option that takes a value says its default (a flag's is off; a required one says so)."""
    options = _help(command, capsys, monkeypatch).split("Options:", 1)[1]
    blocks = {m.group(1): " ".join(m.group(2).split()) for m in re.finditer(r"^  (--[\w-]+)(.*?)(?=^  -|\Z)", options, re.M | re.S)}  # fmt: skip
    for param in _commands()[command].params:
        if getattr(param, "is_flag", False) or param.param_type_name == "argument" or param.required:
            continue
        name = param.opts[0]
        assert "[default:" in blocks[name], f"`{command} --help`: {name} shows no default: {blocks[name]!r}"


def test_score_help_spells_out_targets_and_quoting(capsys, monkeypatch):
    text = _help("score", capsys, monkeypatch)
    for form in ("progenitor=0.6,cycling=0.4", "mine:progenitor=0.6", "ctrl:control", "'terminal", "exhausted=1'",
                 "terminal_exhausted=1", "'cycling>=0.05'"):  # fmt: skip
        assert form in text, form


def test_one_kind_of_progress_display():
    """The CLI prints plain status lines: no rich spinner or progress bar beside the tqdm bars of the library."""
    root = Path(__file__).resolve().parents[1] / "src" / "perturbscore"
    for path in root.rglob("*.py"):
        source = path.read_text()
        assert "console.status(" not in source, path
        assert "rich.progress" not in source, path


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


def test_demo_scores_each_preset_target_with_its_own_constraint(trained, tmp_path):
    """progenitor brings cycling>=0.05; control brings none (it used to get progenitor's too)."""
    from perturbscore.cli._demo import _score
    from perturbscore.io import read_screen
    from perturbscore.model import PerturbScoreModel
    from perturbscore.tl import read_scores

    data, run = trained
    model = PerturbScoreModel.load(run)
    _score(model, read_screen(data / "screen.h5ad", states=list(model.states)), tmp_path)
    df = read_scores(tmp_path / "scores.csv")
    by_target = df.groupby("target", sort=False)["constraint"].first().to_dict()
    assert by_target == {"progenitor": "cycling>=0.05", "control": "none"}
    assert df.attrs["params"]["targets"]["control"]["constraints"] == []
    assert (tmp_path / "scores.json").is_file()


def test_score_leaves_sequence_rows_unranked_with_a_visible_warning(trained, run):
    """The run's evaluation found the sequence path worse than the training mean: flagged, unranked, said so."""
    from perturbscore.tl import read_scores

    data, _ = trained
    (run / "eval.json").write_text(json.dumps({
        "models": {"perturbscore": {"mae_sequence": [0.2]}}, "baselines": {"train_mean": {"mae_sequence": [0.1]}},
    }))  # fmt: skip
    args = ["score", str(run), "--screen", str(data / "screen.h5ad"), "--features", str(data / "features.npz"),
            "--target", "progenitor=1", "--n-boot", "5", "--no-progress"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "warning:" in text
    assert "genes scored from sequence alone are not ranked" in text
    assert "(error 0.200 vs 0.100)" in text
    df = read_scores(run / "scores.csv")
    seq = df[df["source"] == "sequence"]
    assert len(seq)
    assert seq["rank"].isna().all()
    assert seq["flag"].str.startswith("not ranked").all()
    assert df.attrs["params"]["sequence"]["ranking"] == "unranked"
