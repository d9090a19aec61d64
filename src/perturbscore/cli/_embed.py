"""``perturbscore embed``: fit the front end once and store every cell's coordinates beside the screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._app import app
from ._common import (
    ControlOpt,
    LayerOpt,
    MinCellsOpt,
    OverwriteOpt,
    PertKeyOpt,
    ScreenArg,
    SmallOpt,
    StateKeyOpt,
    console,
)


@app.command("embed")
def embed(
    screen: Path = ScreenArg,
    key: str = typer.Option("X_perturbscore", "--key", help="Name of the embedding (the store is <stem>.<key>/)."),
    preset: str = typer.Option("default", "--preset", help="Training preset whose front end is fitted."),
    n_components: int | None = typer.Option(None, "--n-components", help="PCA components (default 64)."),
    n_top_genes: int | None = typer.Option(None, "--n-top-genes", help="Most variable genes kept (default 2,000)."),
    front_end_cells: int | None = typer.Option(
        None, "--front-end-cells", help="Training cells the front end is fitted on (default 20,000)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the cell sample (default 0)."),
    n_train: int | None = typer.Option(None, "--n-train", help="Training knockouts, as you train (default 50)."),
    n_val: int | None = typer.Option(None, "--n-val", help="Validation knockouts, as you train (default 10)."),
    store: Path | None = typer.Option(None, "--store", help="Store folder [default: <stem>.<key>/ beside SCREEN]."),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Dask scheduler address (e.g. tcp://host:8786) to run the pass on an existing cluster whose workers "
        "see the store's folder; default: local threads.",
    ),
    chunk: int = typer.Option(8192, "--chunk", help="Cells per chunk (one Dask task each)."),
    in_memory: bool = typer.Option(False, "--in-memory", help="Load the matrix into memory first (small screens)."),
    overwrite: bool = OverwriteOpt,
    perturbation_key: str = PertKeyOpt,
    state_key: str = StateKeyOpt,
    control: str = ControlOpt,
    layer: str | None = LayerOpt,
    min_cells: int = MinCellsOpt,
    small: str = SmallOpt,
) -> None:
    """Fit the front end (gene selection, standardisation, PCA) as training does and store every cell's coordinates.

    The store goes beside SCREEN; `perturbscore train` (and the Python tools) then read the stored coordinates
    instead of projecting cells at every step.
    """
    from .._errors import InputError
    from ..pp import embed as embed_screen
    from ._common import check_inputs

    check_inputs(screen=screen)
    if chunk < 1:
        raise InputError(f"--chunk must be >= 1, not {chunk}")
    options: dict[str, Any] = {
        "n_components": n_components, "n_top_genes": n_top_genes, "front_end_cells": front_end_cells, "seed": seed,
        "n_train": n_train, "n_val": n_val,
    }  # fmt: skip
    console.print(f"embedding {screen}", highlight=False)
    emb = embed_screen(
        screen, key_added=key, perturbation_key=perturbation_key, state_key=state_key,
        control=None if control.lower() == "none" else control, layer=layer, min_cells=min_cells, small=small,
        preset_name=preset, backed=not in_memory, store=store, scheduler=scheduler, chunk=chunk, overwrite=overwrite,
        **{k: v for k, v in options.items() if v is not None},
    )  # fmt: skip
    p = emb.params
    console.print(
        f"[green]embedded[/] {emb.n_cells:,} cells x {emb.n_components} components in {p['pass_seconds']:.1f} s "
        f"({p['cells_per_second']:,.0f} cells/s; front end fitted in {p['fit_seconds']:.1f} s) -> {emb.path}",
        highlight=False,
    )
