"""``perturbscore programs``: what the learned gene programs mean (top genes, enrichment, activity)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ._app import app
from ._common import (
    BackedOpt,
    OverwriteOpt,
    RunControlOpt,
    RunLayerOpt,
    RunPertKeyOpt,
    RunStateKeyOpt,
    check_inputs,
    console,
    load_screen,
)

if TYPE_CHECKING:
    from ..tl import ProgramsResult

RunArg = typer.Argument(..., help="Run directory written by `perturbscore train` (holds model/).", show_default=False)


@app.command("programs")
def programs(
    run: Path = RunArg,
    screen: Path | None = typer.Option(
        None,
        "--screen",
        help="Screen .h5ad the model was trained on (for activity per state and perturbation).",
        show_default="none",
    ),
    gene_sets: Path | None = typer.Option(
        None, "--gene-sets", help="Gene sets (GMT file) to test for enrichment.", show_default="none"
    ),
    n_top: int = typer.Option(50, "--n-top", help="Top genes per program and sign (also the hypergeometric set)."),
    permutations: int = typer.Option(1000, "--permutations", help="Permutations of the preranked enrichment test."),
    seed: int = typer.Option(0, "--seed", help="Random seed (cell sampling, permutations)."),
    overwrite: bool = OverwriteOpt,
    perturbation_key: str | None = RunPertKeyOpt,
    state_key: str | None = RunStateKeyOpt,
    control: str | None = RunControlOpt,
    layer: str | None = RunLayerOpt,
    backed: bool = BackedOpt,
) -> None:
    """Interpret the gene programs of the model in RUN; write CSVs into RUN and plots into RUN/plots."""
    from .._errors import RunError
    from ..io import read_gmt
    from ..model import PerturbScoreModel, read_keys
    from ..pl import save_run_plots
    from ..tl import PROGRAM_FILES, interpret_programs

    existing = [f for f in PROGRAM_FILES.values() if (run / f).exists()]
    if existing and not overwrite:
        raise RunError(f"{run} already holds {', '.join(existing)}; pass --overwrite to replace them")
    check_inputs(screen=screen, files=[("--gene-sets", gene_sets)])
    model = PerturbScoreModel.load(run)
    sets = read_gmt(gene_sets) if gene_sets is not None else None
    data = None
    if screen is not None:
        keys = read_keys(model, perturbation_key=perturbation_key, state_key=state_key, control=control, layer=layer)
        data = load_screen(screen, features=None, **keys, backed=backed, small="keep", states=model.states)
    console.print("interpreting the programs", highlight=False)
    result = interpret_programs(model, data, gene_sets=sets, n_top=n_top, n_permutations=permutations, rng=seed)
    written = result.write(run, overwrite=overwrite)
    plots = save_run_plots(run, programs=result, groups=("programs",))
    _print_summary(result)
    console.print(f"[green]wrote[/] {', '.join(p.name for p in written.values())} in [bold]{run}[/]")
    console.print(f"[green]plots[/]: {', '.join(p.name for p in plots)} in [bold]{run / 'plots'}[/]")


def _print_summary(result: ProgramsResult, *, n: int = 5) -> None:
    """Per program: its top ``n`` genes of each sign and its most significant gene set."""
    from rich.table import Table

    top = result.top_genes
    table = Table(title=f"Programs (top {n} genes per sign; loadings per gene SD)", show_lines=False)
    for col in ("program", "top + genes", "top - genes", "most significant gene set"):
        table.add_column(col, overflow="fold")
    for program in dict.fromkeys(top["program"]):
        sub = top[top["program"] == program]
        genes = {s: ", ".join(sub.loc[sub["sign"] == s].sort_values("rank")["gene"].astype(str).head(n))
                 for s in ("+", "-")}  # fmt: skip
        table.add_row(str(program), genes["+"] or "-", genes["-"] or "-", _best_set(result, program))
    console.print(table)


def _best_set(result: ProgramsResult, program: str) -> str:
    enr = result.enrichment
    if enr is None:
        return "(no --gene-sets)"
    sub = enr[enr["program"] == program].dropna(subset=["q"])
    if sub.empty:
        return "(no set tested)"
    best = sub.sort_values(["q", "p"], kind="stable").iloc[0]
    return f"{best['set']} ({best['direction']}, {best['method']}, q={best['q']:.2g})"
