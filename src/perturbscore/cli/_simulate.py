"""``perturbscore simulate``: write a synthetic screen with known ground truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ._app import app


@app.command("simulate")
def simulate(
    out: Path = typer.Option(..., "--out", help="Output folder for screen.h5ad, features.npz, modules.gmt, truth.csv."),
    genes: int = typer.Option(2_000, "--genes", help="Genes (columns); the challenge file has 15,077."),
    knockouts: int = typer.Option(64, "--knockouts", help="Knocked-out genes."),
    cells: int | None = typer.Option(
        None, "--cells", help="All cells, control included [default: ~28,700 for 64 knockouts]."
    ),
    unseen_genes: int = typer.Option(0, "--unseen-genes", help="Extra genes with features and truth but no cells."),
    feature_dim: int = typer.Option(128, "--feature-dim", help="Feature dimensions per window."),
    sequences: bool = typer.Option(False, "--sequences/--no-sequences", help="Also write TSS-centred sequences.fa."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same screen."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files in --out."),
) -> None:
    """Simulate a Perturb-seq screen with known effects, true state mixes and gene features."""
    from ..datasets import simulate_screen

    console = Console()
    screen = simulate_screen(
        n_genes=genes,
        n_knockouts=knockouts,
        n_cells=cells,
        n_unseen_genes=unseen_genes,
        feature_dim=feature_dim,
        sequences=sequences,
        seed=seed,
        progress=genes * (cells or 28_697) > 10_000_000,
    )
    paths = screen.write(out, overwrite=overwrite)
    n_cells, n_genes = screen.adata.shape
    console.print(
        f"simulated {n_cells:,} cells x {n_genes:,} genes, {knockouts} knockouts (seed {seed})", highlight=False
    )
    for name, path in paths.items():
        console.print(f"  {name:<9} {path}", highlight=False)
