"""``perturbscore score``: rank knockouts, measured or unseen, against target state mixes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ._app import app
from ._common import (
    BackedOpt,
    ControlOpt,
    LayerOpt,
    MinCellsOpt,
    OverwriteOpt,
    PertKeyOpt,
    ProgressOpt,
    SmallOpt,
    StateKeyOpt,
    console,
    load_screen,
)  # fmt: skip

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..io import Constraint

OUT_SUFFIXES = (".csv", ".parquet", ".pq")


def _targets(
    specs: list[str], presets: list[str], path: Path | None, states: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, list[Constraint]]]:
    """Named targets from --target, --preset-target and --targets; presets bring their own constraints."""
    from .._errors import InputError
    from ..io import TARGET_PRESETS, parse_constraint, read_targets, resolve_targets

    for name in presets:
        if name.strip().lower() not in TARGET_PRESETS:
            raise InputError(f"unknown preset target {name!r}; presets: {', '.join(TARGET_PRESETS)}.")
    named = resolve_targets([*specs, *presets], states)
    for name, mix in (read_targets(path, states) if path is not None else {}).items():
        if name in named:
            raise InputError(f"target name {name!r} is used twice; give each target its own name (NAME:mix).")
        named[name] = mix
    if not named:
        raise InputError("no target given; pass --target state=fraction,..., --preset-target NAME or --targets FILE.")
    used = [TARGET_PRESETS[s.strip().lower()] for s in [*specs, *presets] if s.strip().lower() in TARGET_PRESETS]
    return named, {p.name: [parse_constraint(c, states) for c in p.constraints] for p in used}


def _check_out(out: Path, *, overwrite: bool) -> None:
    from .._errors import InputError, RunError

    if out.suffix.lower() not in OUT_SUFFIXES:
        raise InputError(f"--out {str(out)!r}: write .csv or .parquet (got suffix {out.suffix!r}).")
    if out.exists() and not overwrite:
        raise RunError(f"{out} exists; pass --overwrite to replace it or choose another --out.")


def _write(df: pd.DataFrame, out: Path) -> None:
    from .._utils import atomic_path

    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)


def _print_top(df: pd.DataFrame, top: int) -> None:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    def fmt(value: object, spec: str = ".3f") -> str:
        return "-" if pd.isna(value) else format(value, spec)  # type: ignore[arg-type]

    extra = ["need"] if "cells_needed" in df else []
    for name, part in df.groupby("target", sort=False):
        table = Table(title=f"target {name}: top {min(top, len(part))} (distance: TV in [0, 1])", title_justify="left")
        for col in ["#", "gene", "source", "dist", "95% interval", "empir.", "cells", *extra]:
            table.add_column(col, justify="left" if col in ("gene", "source") else "right", no_wrap=True)
        for _, r in part.head(top).iterrows():
            interval = "-" if pd.isna(r["lo"]) else f"{r['lo']:.3f}-{r['hi']:.3f}"
            row = [fmt(r["rank"], "d"), r["gene"], r["source"], fmt(r["pred_distance"]), interval]
            row += [fmt(r["empirical_distance"]), str(r["n_cells"])]
            table.add_row(*row, *([fmt(r["cells_needed"], "d")] if extra else []))
        Console().print(table)


@app.command("score")
def score(
    runs: list[Path] = typer.Argument(..., help="Run directories (or model folders); several form an ensemble."),
    target: list[str] | None = typer.Option(
        None, "--target", help="Target mix 'state=f,...' or 'NAME:state=f,...' (or a preset name); repeatable."
    ),
    targets_file: Path | None = typer.Option(None, "--targets", help="CSV/TSV/YAML/JSON file of named targets."),
    preset_target: list[str] | None = typer.Option(
        None, "--preset-target", help="A shipped target (e.g. progenitor), with its constraints; repeatable."
    ),
    screen: Path | None = typer.Option(None, "--screen", help="Screen .h5ad: score its knockouts from their cells."),
    features: Path | None = typer.Option(
        None, "--features", help="Gene features: score genes without cells from sequence (e.g. genome-wide)."
    ),
    constraint: list[str] | None = typer.Option(
        None, "--constraint", help="Bound on a state share for every target, e.g. 'cycling>=0.05'; repeatable."
    ),
    constraint_mode: str = typer.Option("filter", "--constraint-mode", help="filter (rank passing rows) or penalize."),
    n_boot: int = typer.Option(200, "--n-boot", help="Bootstrap resamples of each knockout's cells."),
    k_boot: int | None = typer.Option(None, "--k-boot", help="Cells per resample (default: all, at most 500)."),
    also_sequence: bool = typer.Option(False, "--also-sequence", help="Also score measured genes from sequence."),
    out: Path | None = typer.Option(None, "--out", help="scores.csv or .parquet (default: RUN/scores.csv)."),
    cells_needed: bool = typer.Option(False, "--cells-needed", help="Add the cells each knockout needs."),
    tolerance: float = typer.Option(0.05, "--tolerance", help="Allowed deviation for --cells-needed (TV scale)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the bootstrap."),
    top: int = typer.Option(10, "--top", help="Rows shown per target."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for PyTorch (small ops: 1 is fastest; 0: default)."),
    overwrite: bool = OverwriteOpt,
    progress: bool = ProgressOpt,
    perturbation_key: str = PertKeyOpt,
    state_key: str = StateKeyOpt,
    control: str = ControlOpt,
    layer: str | None = LayerOpt,
    backed: bool = BackedOpt,
    min_cells: int = MinCellsOpt,
    small: str = SmallOpt,
) -> None:
    """Score and rank knockouts of RUN's model against targets: from cells (--screen) and from sequence (--features)."""
    from .._errors import InputError
    from ..io import parse_constraint, read_features
    from ..tl import PerturbScoreModel
    from ..tl._advice import cells_needed_table
    from ..tl._score import score_perturbations

    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    out = out if out is not None else (runs[0] / "scores.csv" if (runs[0] / "model").is_dir() else Path("scores.csv"))
    _check_out(out, overwrite=overwrite)
    if screen is None and features is None:
        raise InputError("nothing to score: pass --screen (knockouts with cells) and/or --features (unseen genes).")
    models = [PerturbScoreModel.load(r) for r in runs]
    states = models[0].states
    named, own = _targets(target or [], preset_target or [], targets_file, states)
    common = [parse_constraint(c, states) for c in constraint or []]
    cons = {name: [*common, *own.get(name, [])] for name in named}
    data = None
    if screen is not None:
        data = load_screen(
            screen, features=None, perturbation_key=perturbation_key, state_key=state_key, control=control,
            layer=layer, backed=backed, min_cells=min_cells, small=small, states=states,
        )  # fmt: skip
    feats = read_features(features) if features is not None else None
    df = score_perturbations(
        models, data, targets=named, features=feats, constraints=cons, constraint_mode=constraint_mode,  # type: ignore[arg-type]
        n_boot=n_boot, k_boot=k_boot, also_sequence=also_sequence, rng=seed, progress=progress,
    )  # fmt: skip
    if cells_needed and data is not None:
        need = cells_needed_table(models, data, target=named, features=feats, tolerance=tolerance, rng=seed, progress=progress)  # fmt: skip
        need = need.assign(source="cells")[["target", "gene", "source", "cells_needed", "enough_cells"]]
        df = df.merge(need, on=["target", "gene", "source"], how="left")
    _write(df, out)
    _print_top(df, top)
    console.print(f"[green]scored[/] {df['gene'].nunique()} genes x {len(named)} targets: [bold]{out}[/]")
