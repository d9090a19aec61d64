"""Options shared by several commands, the checks every command runs first, and the screen loader.

Every command checks its options and input paths before it reads anything large: a typo fails in a second,
not after a screen has been read. Progress is shown one way only: tqdm bars with a known total (the library's
and Lightning's); the CLI itself prints plain status lines, never a rich spinner between them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)

ScreenArg = typer.Argument(
    ..., help="Screen .h5ad (challenge layout: obs 'condition' and 'state').", show_default=False
)
FeaturesOpt = typer.Option(
    None, "--features", help="Gene features (.npz/.h5 per gene, or a CSV/Parquet table).", show_default="none"
)
# The obs keys: training commands default to the challenge layout's; commands that read a trained run take the
# keys it was trained with unless given (`perturbscore.model.read_keys`).
_KEY_HELP = {
    "--perturbation-key": "obs column with the perturbed gene.",
    "--state-key": "obs column with the cell state.",
    "--control": "Control label in the perturbation column ('none': no control).",
    "--layer": "Layer with raw counts (e.g. rawcounts), normalised on the fly; X: the matrix X itself.",
}
PertKeyOpt = typer.Option("condition", "--perturbation-key", help=_KEY_HELP["--perturbation-key"])
StateKeyOpt = typer.Option("state", "--state-key", help=_KEY_HELP["--state-key"])
ControlOpt = typer.Option("Unperturbed", "--control", help=_KEY_HELP["--control"])
LayerOpt = typer.Option(None, "--layer", help=_KEY_HELP["--layer"], show_default="X")
RunPertKeyOpt, RunStateKeyOpt, RunControlOpt, RunLayerOpt = (
    typer.Option(None, flag, help=_KEY_HELP[flag], show_default="the run's") for flag in _KEY_HELP
)
BackedOpt = typer.Option(False, "--backed", help="Read expression from disk on demand (screens larger than memory).")
MinCellsOpt = typer.Option(1, "--min-cells", help="Knockouts with fewer cells are dropped (or refused, see --small).")
SmallOpt = typer.Option("drop", "--small", help="What to do with knockouts under --min-cells: drop, error or keep.")
AllowMissingOpt = typer.Option(False, "--allow-missing-features", help="Genes without features train without T.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace existing outputs.")
ProgressOpt = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")
_FILE_KINDS = {"--features": "feature file", "--gene-sets": "gene-set file", "--targets": "targets file"}


def check_inputs(*, screen: Path | None = None, files: Iterable[tuple[str, Path | None]] = ()) -> None:
    """Refuse a missing screen or input file before anything is read (``files``: ``(flag, path)`` pairs)."""
    from .._errors import InputError

    if screen is not None and not screen.expanduser().exists():
        near = sorted(p.name for p in screen.parent.glob("*.h5ad")) if screen.parent.is_dir() else []
        hint = f" .h5ad files in {str(screen.parent)!r}: {', '.join(map(repr, near[:10]))}." if near else ""
        raise InputError(f"screen file {str(screen)!r} does not exist; check the path.{hint}")
    for flag, path in files:
        if path is not None and not path.expanduser().exists():
            what = _FILE_KINDS.get(flag, "file")
            raise InputError(f"{what} {str(path)!r} does not exist; check the path ({flag}).")


def load_screen(
    screen: Path,
    *,
    features: Path | None,
    perturbation_key: str,
    state_key: str,
    control: str | None,
    layer: str | None,
    backed: bool = False,
    min_cells: int = 1,
    small: str = "drop",
    allow_missing_features: bool = False,
    states: tuple[str, ...] | None = None,
):  # noqa: ANN201
    """Read and validate a screen with the CLI's options (``states``: the saved model's state order)."""
    from .._errors import InputError
    from ..io import read_screen

    check_inputs(screen=screen, files=[("--features", features)])
    console.print(f"reading {screen}", highlight=False)
    try:
        return read_screen(
            screen,
            perturbation_key=perturbation_key,
            state_key=state_key,
            control=control,  # None or "none": a screen without control cells (read_screen says so)
            layer=None if layer == "X" else layer,
            features=features,
            backed=backed,
            min_cells=min_cells,
            small=small,
            allow_missing_features=allow_missing_features,
            states=list(states) if states else None,
        )
    except InputError as err:
        if states and "differ from the fixed state order" in str(err):
            found = re.search(r"extra in the screen: .*?; missing from the screen: [^.]*", str(err))
            raise InputError(
                f"obs column {state_key!r} of {str(screen)!r} does not hold the states the model was trained on "
                f"({', '.join(map(repr, states))})" + (f"; {found.group(0)}" if found else "") + ". Pass the obs "
                f"column that holds them with --state-key (read: --state-key {state_key}), or relabel the cells."
            ) from err
        raise
