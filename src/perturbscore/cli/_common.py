"""Options shared by several commands, and the screen loader behind them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)

ScreenArg = typer.Argument(
    ..., help="Screen .h5ad (challenge layout: obs 'condition' and 'state').", show_default=False
)
FeaturesOpt = typer.Option(None, "--features", help="Gene features (.npz/.h5 per gene, or a CSV/Parquet table).")
PertKeyOpt = typer.Option("condition", "--perturbation-key", help="obs column with the perturbed gene.")
StateKeyOpt = typer.Option("state", "--state-key", help="obs column with the cell state.")
ControlOpt = typer.Option(
    "Unperturbed", "--control", help="Control label in the perturbation column ('none': no control)."
)
LayerOpt = typer.Option(
    None, "--layer", help="Layer with raw counts (e.g. rawcounts), normalised on the fly; default X."
)
BackedOpt = typer.Option(False, "--backed", help="Read expression from disk on demand (screens larger than memory).")
MinCellsOpt = typer.Option(1, "--min-cells", help="Knockouts with fewer cells are dropped (or refused, see --small).")
SmallOpt = typer.Option("drop", "--small", help="What to do with knockouts under --min-cells: drop, error or keep.")
AllowMissingOpt = typer.Option(False, "--allow-missing-features", help="Genes without features train without T.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace existing outputs.")
ProgressOpt = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


def load_screen(
    screen: Path,
    *,
    features: Path | None,
    perturbation_key: str,
    state_key: str,
    control: str,
    layer: str | None,
    backed: bool = False,
    min_cells: int = 1,
    small: str = "drop",
    allow_missing_features: bool = False,
    states: tuple[str, ...] | None = None,
):  # noqa: ANN201
    """Read and validate a screen with the CLI's options."""
    from ..io import read_screen

    with console.status(f"reading {screen}"):
        return read_screen(
            screen,
            perturbation_key=perturbation_key,
            state_key=state_key,
            control=None if control.lower() == "none" else control,
            layer=layer,
            features=features,
            backed=backed,
            min_cells=min_cells,
            small=small,
            allow_missing_features=allow_missing_features,
            states=list(states) if states else None,
        )
