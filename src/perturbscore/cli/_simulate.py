"""``perturbscore simulate``: write a synthetic screen with known ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ._app import app


@app.command("simulate")
def simulate(
    out: Path = typer.Option(..., "--out", help="Output folder for screen.h5ad, features.npz, modules.gmt, truth.csv."),
    genes: int | None = typer.Option(
        None, "--genes", help="Genes (columns); the challenge file has 15,077 [default: 2,000, or --like's]."
    ),
    knockouts: int = typer.Option(64, "--knockouts", help="Knocked-out genes."),
    cells: int | None = typer.Option(
        None, "--cells", help="All cells, control included [default: ~28,700 for 64 knockouts]."
    ),
    unseen_genes: int = typer.Option(0, "--unseen-genes", help="Extra genes with features and truth but no cells."),
    feature_dim: int = typer.Option(128, "--feature-dim", help="Feature dimensions per window."),
    like: str = typer.Option(
        "default",
        "--like",
        help="Panel screen whose knobs to start from (default, features_strong, shift_none, ...); "
        "the knob options below override it.",
    ),
    feature_signal: float | None = typer.Option(
        None, "--feature-signal", help="Effect signal in the features: 1 weak, 3 strong, 0 none [default: --like's]."
    ),
    within_state_shift: float | None = typer.Option(
        None,
        "--within-state-shift",
        help="Within-state expression shift of knockouts: 1, 2 strong, 0 none [default: --like's].",
    ),
    label_noise: float | None = typer.Option(
        None, "--label-noise", help="Cells' share outside their labelled state, 0-1; 0 is clean [default: --like's]."
    ),
    sequences: bool = typer.Option(False, "--sequences/--no-sequences", help="Also write TSS-centred sequences.fa."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same screen."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files in --out."),
) -> None:
    """Simulate a Perturb-seq screen with known effects, true state mixes and gene features."""
    from .._errors import InputError
    from ..datasets import SCREEN_PANEL, simulate_screen

    if like not in SCREEN_PANEL:
        raise InputError(f"unknown panel screen --like {like!r}; choose one of {', '.join(SCREEN_PANEL)}.")
    # the panel screen's knobs, then each knob option given; the rest keep simulate_screen's defaults
    given = {
        "n_genes": genes,
        "feature_signal": feature_signal,
        "within_state_shift": within_state_shift,
        "label_noise": label_noise,
    }
    knobs: dict[str, Any] = SCREEN_PANEL[like] | {name: value for name, value in given.items() if value is not None}
    console = Console()
    screen = simulate_screen(
        **knobs,
        n_knockouts=knockouts,
        n_cells=cells,
        n_unseen_genes=unseen_genes,
        feature_dim=feature_dim,
        sequences=sequences,
        seed=seed,
        progress=None,  # a bar for a large screen
    )
    paths = screen.write(out, overwrite=overwrite)
    n_cells, n_genes = screen.adata.shape
    console.print(
        f"simulated {n_cells:,} cells x {n_genes:,} genes, {knockouts} knockouts (seed {seed})", highlight=False
    )
    for name, path in paths.items():
        console.print(f"  {name:<9} {path}", highlight=False)
