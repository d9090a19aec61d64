"""``perturbscore demo``: the whole pipeline on the embedded simulated screen, ending in one report."""

from __future__ import annotations

from pathlib import Path

import typer

from .._constants import EVAL_UNSEEN_GENES
from .._utils import write_json_atomic, write_text_atomic
from ._app import app
from ._common import OverwriteOpt, ProgressOpt, console


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory for the demo."),
    genes: int = typer.Option(2000, "--genes", help="Genes of the simulated screen."),
    unseen: int = typer.Option(
        EVAL_UNSEEN_GENES, "--unseen-genes", help="Genes with sequence features but no cells (scored from sequence)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated screen and of training."),
    max_steps: int = typer.Option(1500, "--max-steps", help="Training steps."),
    overwrite: bool = OverwriteOpt,
    progress: bool = ProgressOpt,
) -> None:
    """Simulate a challenge-like screen, train, evaluate, score, interpret and write report.html."""
    from ..datasets import simulate_screen
    from ..evaluation import evaluate, render_eval_markdown
    from ..io import read_screen
    from ..model import fit, prepare_run_dir
    from ..report import build_report

    run = prepare_run_dir(out, overwrite=overwrite)
    console.print(f"simulating a challenge-sized screen ({genes} genes)", highlight=False)
    sim = simulate_screen(n_genes=genes, seed=seed, n_unseen_genes=unseen)
    paths = sim.write(run / "simulated_screen", overwrite=True)
    console.print(
        f"[bold]1/6[/] simulated screen: {paths['screen']} ({sim.adata.n_obs} cells x {sim.adata.n_vars} genes)"
    )
    screen = read_screen(paths["screen"], features=paths["features"])
    console.print("[bold]2/6[/] training the model")
    model = fit(screen, out=run, resume=True, seed=seed, max_steps=max_steps, progress=progress)
    console.print("[bold]3/6[/] evaluating against the baselines")
    results = evaluate(model, screen, progress=progress)
    model.evaluation = results  # scoring reads it: genes from sequence are ranked only if that path beats the mean
    write_json_atomic(run / "eval.json", results)
    write_text_atomic(run / "eval.md", render_eval_markdown(results))
    console.print("[bold]4/6[/] scoring observed and unseen knockouts")
    _score(model, screen, run)
    console.print("[bold]5/6[/] interpreting the programs")
    programs = _programs(model, screen, paths.get("modules"), run)
    console.print("[bold]6/6[/] plots and report")
    from ..pl import save_run_plots

    save_run_plots(run, programs=programs, eval_results=results)
    _caveats(run, results)
    report = build_report(run, title="perturbscore demo: simulated challenge screen")
    console.print(f"[green]done[/]. Report: [bold]{report}[/]  (run directory {run})")


def _score(model, screen, run: Path) -> None:  # noqa: ANN001
    from ..tl import score_perturbations, write_scores

    # presets by name: each brings its own constraint (progenitor: cycling>=0.05; control: none)
    df = score_perturbations(model, screen, targets=["progenitor", "control"], progress=False)
    write_scores(df, run / "scores.csv", overwrite=True)


def _programs(model, screen, gmt: Path | None, run: Path):  # noqa: ANN001, ANN202
    from ..io import read_gmt
    from ..tl import interpret_programs

    sets = read_gmt(gmt) if gmt else None
    result = interpret_programs(model, screen, gene_sets=sets)
    result.write(run)
    return result


def _caveats(run: Path, results: dict) -> None:
    from ..report import derive_caveats

    write_json_atomic(run / "caveats.json", derive_caveats(results, split=results.get("split")))
