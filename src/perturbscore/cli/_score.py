"""``perturbscore score``: rank knockouts, measured or unseen, against target state mixes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ._app import app
from ._common import (
    BackedOpt,
    MinCellsOpt,
    OverwriteOpt,
    ProgressOpt,
    RunControlOpt,
    RunLayerOpt,
    RunPertKeyOpt,
    RunStateKeyOpt,
    SmallOpt,
    check_inputs,
    console,
    load_screen,
)  # fmt: skip

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

EPILOG = """\b
Targets (--target, repeatable):
  progenitor=0.6,cycling=0.4        a mix; states left out are 0
  mine:progenitor=0.6,cycling=0.4   the same, named 'mine'
  progenitor                        a preset (progenitor, control), with its
                                    constraint (progenitor: cycling>=0.05)
  ctrl:control                      a preset under another name
Unnamed targets are named after their largest states, e.g.
'progenitor 60% + cycling 40%'.
A state name with a space: write it with _ or quote the whole target,
  --target terminal_exhausted=1   or   --target 'terminal exhausted=1'
and quote constraints (the shell reads > as a redirection):
  --constraint 'cycling>=0.05'

\b
Writes OUT: a .csv with OUT.json beside it, or a .parquet with the same
description inside. Every row names its target, the target's mix and its
constraint, and whether it is ranked."""


def _check_runs(runs: list[Path]) -> None:
    """Every RUN must hold a saved model; a RUN that looks like part of a target gets a quoting hint."""
    from .._errors import InputError, RunError

    for run in runs:
        if (run / "model" / "model.json").is_file() or (run / "model.json").is_file():
            continue
        if not run.exists() and "=" in str(run):
            raise InputError(
                f"RUN {str(run)!r} does not exist and looks like part of a target: a state name with a space splits "
                f"the target in two unless it is quoted. Write --target 'terminal exhausted=1' (quoted), or "
                f"--target terminal_exhausted=1."
            )
        raise RunError(f"{run} holds no saved model (model/model.json); train one with `perturbscore train`.")


def _targets(
    specs: list[str], presets: list[str], path: Path | None, states: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Named targets from --target, --preset-target and --targets; presets bring their own constraints."""
    from .._errors import InputError
    from ..io import TARGET_PRESETS, read_targets, resolve_target_specs

    for name in presets:
        if name.strip().lower() not in TARGET_PRESETS:
            raise InputError(f"unknown --preset-target {name!r}; presets: {', '.join(TARGET_PRESETS)}.")
    named, own = resolve_target_specs([*specs, *presets], states)
    for name, mix in (read_targets(path, states) if path is not None else {}).items():
        if name in named:
            raise InputError(f"target name {name!r} is used twice; give each target its own name (NAME:mix).")
        named[name] = mix
    if not named:
        raise InputError("no target given; pass --target state=fraction,..., --preset-target NAME or --targets FILE.")
    return named, own


def _print_top(df: pd.DataFrame, top: int) -> None:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    def fmt(value: object, spec: str = ".3f") -> str:
        return "-" if pd.isna(value) else format(value, spec)

    targets = df.attrs.get("params", {}).get("targets", {})
    extra = ["need"] if "cells_needed" in df else []
    for name, part in df.groupby("target", sort=False):
        ranked = part[part["rank"].notna()]
        info = targets.get(name, {})
        subtitle = info.get("description", "")
        if info.get("constraints_described"):
            subtitle += "; " + "; ".join(info["constraints_described"])
        table = Table(
            title=f"{name}: top {min(top, len(ranked))} of {len(ranked)} ranked (distance: 0-1, lower is closer)",
            caption=subtitle or None,
            title_justify="left",
            caption_justify="left",
        )
        for col in ["#", "gene", "from", "dist", "95% interval", "observed", "cells", *extra]:
            table.add_column(col, justify="left" if col in ("gene", "from") else "right", no_wrap=True)
        for _, r in ranked.head(top).iterrows():
            interval = "-" if pd.isna(r["lo"]) else f"{r['lo']:.3f}-{r['hi']:.3f}"
            row = [fmt(r["rank"], "d"), r["gene"], r["source"], fmt(r["pred_distance"]), interval]
            row += [fmt(r["empirical_distance"]), str(r["n_cells"])]
            table.add_row(*row, *([fmt(r["cells_needed"], "d")] if extra else []))
        Console().print(table)


@app.command("score", epilog=EPILOG)
def score(
    runs: list[Path] = typer.Argument(
        ...,
        help="Run directories (or model folders); several form an ensemble.",
        show_default=False,
        metavar="RUN",
    ),  # fmt: skip
    target: list[str] | None = typer.Option(
        None,
        "--target",
        metavar="TARGET",
        help="Target mix: 'state=f,...', 'NAME:state=f,...', a preset or 'NAME:PRESET' (see below); repeatable.",
        show_default="none",
    ),  # fmt: skip
    targets_file: Path | None = typer.Option(
        None, "--targets", metavar="FILE", help="CSV/TSV/YAML/JSON file of named targets.", show_default="none"
    ),
    preset_target: list[str] | None = typer.Option(
        None,
        "--preset-target",
        metavar="NAME",
        help="A shipped target (progenitor, control), with its constraints; repeatable.",
        show_default="none",
    ),  # fmt: skip
    screen: Path | None = typer.Option(
        None,
        "--screen",
        metavar="H5AD",
        help="Screen .h5ad: score its knockouts from their cells.",
        show_default="none",
    ),
    features: Path | None = typer.Option(
        None,
        "--features",
        metavar="FILE",
        help="Gene features: score genes without cells from sequence (e.g. genome-wide).",
        show_default="none",
    ),  # fmt: skip
    constraint: list[str] | None = typer.Option(
        None,
        "--constraint",
        metavar="BOUND",
        help="Bound on a state share for every target, quoted: 'cycling>=0.05'; repeatable.",
        show_default="none",
    ),  # fmt: skip
    constraint_mode: str = typer.Option(
        "filter", "--constraint-mode", help="filter (rank passing rows only) or penalize (rank failing rows last)."
    ),
    n_boot: int = typer.Option(200, "--n-boot", help="Bootstrap resamples of each knockout's cells."),
    k_boot: int | None = typer.Option(
        None, "--k-boot", help="Cells per resample.", show_default="the knockout's cells, at most 500"
    ),
    also_sequence: bool = typer.Option(False, "--also-sequence", help="Also score measured genes from sequence."),
    sequence_ranking: str = typer.Option(
        "auto",
        "--sequence-ranking",
        help="Rank genes scored from sequence: auto (not when the run's evaluation "
        "found the sequence path no better than the training mean), together or unranked.",
    ),  # fmt: skip
    out: Path | None = typer.Option(
        None, "--out", metavar="FILE", help="scores.csv or .parquet.", show_default="RUN/scores.csv"
    ),
    cells_needed: bool = typer.Option(False, "--cells-needed", help="Add the cells each knockout needs."),
    tolerance: float = typer.Option(0.05, "--tolerance", help="Allowed deviation for --cells-needed (0-1 scale)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the bootstrap."),
    top: int = typer.Option(10, "--top", help="Rows shown per target."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for PyTorch (small ops: 1 is fastest; 0: all)."),
    overwrite: bool = OverwriteOpt,
    progress: bool = ProgressOpt,
    perturbation_key: str | None = RunPertKeyOpt,
    state_key: str | None = RunStateKeyOpt,
    control: str | None = RunControlOpt,
    layer: str | None = RunLayerOpt,
    backed: bool = BackedOpt,
    min_cells: int = MinCellsOpt,
    small: str = SmallOpt,
) -> None:
    """Rank knockouts of RUN's model against target mixes: from cells (--screen) and sequence (--features)."""
    from .._errors import InputError
    from ..io import parse_constraint, read_features
    from ..model import PerturbScoreModel, read_keys
    from ..tl import cells_needed_table, check_score_path, score_perturbations, write_scores

    _check_runs(runs)
    out = out if out is not None else (runs[0] / "scores.csv" if (runs[0] / "model").is_dir() else Path("scores.csv"))
    check_score_path(out, overwrite=overwrite)
    if screen is None and features is None:
        raise InputError("nothing to score: pass --screen (knockouts with cells) and/or --features (unseen genes).")
    if constraint_mode not in ("filter", "penalize"):
        raise InputError(f"--constraint-mode {constraint_mode!r}: use filter or penalize.")
    if sequence_ranking not in ("auto", "together", "unranked"):
        raise InputError(f"--sequence-ranking {sequence_ranking!r}: use auto, together or unranked.")
    check_inputs(screen=screen, files=[("--features", features), ("--targets", targets_file)])
    models = [PerturbScoreModel.load(r) for r in runs]
    states = models[0].states
    named, own = _targets(target or [], preset_target or [], targets_file, states)
    common = [str(parse_constraint(c, states)) for c in constraint or []]
    cons = {name: [*own.get(name, []), *common] for name in named}
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    data = None
    if screen is not None:
        given = {"perturbation_key": perturbation_key, "state_key": state_key, "control": control, "layer": layer}
        keys = read_keys(models[0], **given)
        differ = [str(r) for r, m in zip(runs, models, strict=True) if read_keys(m, **given) != keys]
        if differ:
            raise InputError(
                f"the runs read their screens with different obs keys ({runs[0]}: {keys}; not so: "
                f"{', '.join(differ)}); pass --perturbation-key, --state-key, --control and --layer to say how to "
                "read --screen."
            )
        data = load_screen(
            screen, features=None, **keys, backed=backed, min_cells=min_cells, small=small, states=states
        )  # fmt: skip
    feats = read_features(features) if features is not None else None
    df = score_perturbations(
        models, data, targets=named, features=feats, constraints=cons, constraint_mode=constraint_mode,  # type: ignore[arg-type]
        n_boot=n_boot, k_boot=k_boot, also_sequence=also_sequence, sequence_ranking=sequence_ranking,  # type: ignore[arg-type]
        rng=seed, progress=progress,
    )  # fmt: skip
    if cells_needed and data is not None:
        need = cells_needed_table(models, data, target=named, features=feats, tolerance=tolerance, rng=seed, progress=progress)  # fmt: skip
        need = need.assign(source="cells")[["target", "gene", "source", "cells_needed", "enough_cells"]]
        attrs = df.attrs
        df = df.merge(need, on=["target", "gene", "source"], how="left")
        df.attrs = attrs
    write_scores(df, out, overwrite=True)
    _print_top(df, top)
    info = df.attrs["params"].get("sequence", {})
    if info.get("ranking") == "unranked":
        n = df.loc[df["source"] == "sequence", "gene"].nunique()
        console.print(f"[bold yellow]warning:[/] {n} genes scored from sequence alone are not ranked: "
                      f"{info['reason']} (--sequence-ranking together ranks them anyway).", highlight=False)  # fmt: skip
    elif info.get("ranking") == "together" and info.get("reason"):
        console.print(f"[bold yellow]note:[/] genes scored from sequence are ranked, but {info['reason']}; run "
                      "`perturbscore evaluate` first to check them.", highlight=False)  # fmt: skip
    side = " (and its description in " + str(out.with_suffix(".json")) + ")" if out.suffix.lower() == ".csv" else ""
    console.print(f"[green]scored[/] {df['gene'].nunique()} genes x {len(named)} targets: [bold]{out}[/]{side}")
