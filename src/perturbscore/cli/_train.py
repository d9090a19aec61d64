"""``perturbscore train``: fit the learned statistic on a screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._app import app
from ._common import (
    AllowMissingOpt,
    BackedOpt,
    ControlOpt,
    FeaturesOpt,
    LayerOpt,
    MinCellsOpt,
    OverwriteOpt,
    PertKeyOpt,
    ProgressOpt,
    ScreenArg,
    SmallOpt,
    StateKeyOpt,
    console,
    load_screen,
)  # fmt: skip

#: What ``--help`` shows as the default of an option whose value comes from the chosen --preset.
PRESET_DEFAULT = "the preset's"


@app.command("train")
def train(
    screen: Path = ScreenArg,
    features: Path | None = FeaturesOpt,
    out: Path = typer.Option(Path("runs/train"), "--out", help="Run directory."),
    preset: str = typer.Option("default", "--preset", help="default, seed-baseline (no T, 60 cells) or seed-full."),
    max_steps: int | None = typer.Option(None, "--max-steps", show_default=PRESET_DEFAULT, help="Training steps."),
    k_min: int | None = typer.Option(
        None, "--k-min", show_default=PRESET_DEFAULT, help="Fewest cells per perturbation per step."
    ),
    k_max: int | None = typer.Option(
        None, "--k-max", show_default=PRESET_DEFAULT, help="Most cells per perturbation per step."
    ),
    lr: float | None = typer.Option(None, "--lr", show_default=PRESET_DEFAULT, help="Learning rate."),
    rec_weight: float | None = typer.Option(
        None, "--rec-weight", show_default=PRESET_DEFAULT, help="lambda, weight of the recognition loss."
    ),
    loss: str | None = typer.Option(
        None, "--loss", show_default=PRESET_DEFAULT, help="Prediction loss: l1, mse or huber."
    ),
    n_train: int | None = typer.Option(
        None, "--n-train", show_default=PRESET_DEFAULT, help="Knockouts to train on (default 50)."
    ),
    n_val: int | None = typer.Option(
        None, "--n-val", show_default=PRESET_DEFAULT, help="Knockouts to validate on (default 10)."
    ),
    seed: int | None = typer.Option(None, "--seed", show_default=PRESET_DEFAULT, help="Random seed."),
    threads: int | None = typer.Option(
        None, "--threads", show_default=PRESET_DEFAULT, help="CPU threads for PyTorch (0: PyTorch's default)."
    ),
    accelerator: str | None = typer.Option(
        None, "--accelerator", show_default=PRESET_DEFAULT, help="Lightning accelerator: cpu, gpu, auto."
    ),
    devices: str | None = typer.Option(
        None, "--devices", show_default=PRESET_DEFAULT, help="Lightning devices (e.g. 1, 4, auto)."
    ),
    strategy: str | None = typer.Option(
        None, "--strategy", show_default=PRESET_DEFAULT, help="Lightning strategy (e.g. ddp)."
    ),
    num_nodes: int | None = typer.Option(
        None, "--num-nodes", show_default=PRESET_DEFAULT, help="Machines (torchrun/SLURM multi-node DDP)."
    ),
    perturbations_per_step: int | None = typer.Option(
        None,
        "--perturbations-per-step",
        show_default=PRESET_DEFAULT,
        help="Perturbations per step (0: all; genome-wide screens: e.g. 64).",
    ),
    sample_window: int | None = typer.Option(
        None,
        "--sample-window",
        show_default=PRESET_DEFAULT,
        help="Draw k cells from a run of WINDOW x k adjacent rows (default: 4 on disk).",
    ),
    prefetch: int | None = typer.Option(
        None, "--prefetch", show_default=PRESET_DEFAULT, help="Episodes drawn ahead (default: 4 on disk)."
    ),
    stability_weight: float | None = typer.Option(
        None,
        "--stability-weight",
        show_default=PRESET_DEFAULT,
        help="Weight of the stability loss on G (default 0.5; 0 turns it off).",
    ),
    select_stability_weight: float | None = typer.Option(
        None,
        "--select-stability-weight",
        show_default=PRESET_DEFAULT,
        help="Keep the checkpoint with the lowest val_pred_loss + W x val_stability_loss (default 0.1; "
        "0: prediction alone).",
    ),
    mix_channel: bool | None = typer.Option(
        None,
        "--mix-channel/--no-mix-channel",
        show_default=PRESET_DEFAULT,
        help="Add the cells' mean decoded state posterior to the statistic (default preset: on; seed presets: off).",
    ),
    stat_activation: str | None = typer.Option(
        None,
        "--stat-activation",
        show_default=PRESET_DEFAULT,
        help="What G's output passes through: radial (default preset: direction kept, length r -> 4 asinh(r/4)) "
        "or identity (seed presets).",
    ),
    rec_robust: float | None = typer.Option(
        None,
        "--rec-robust",
        show_default=PRESET_DEFAULT,
        help="Robust fit of the ridge T: knockouts whose leave-one-out residual exceeds this many times the "
        "median one are down-weighted (default 1; 0: plain least squares).",
    ),
    rec_subsample: float | None = typer.Option(
        None,
        "--rec-subsample",
        show_default=PRESET_DEFAULT,
        help="Each ridge fit of T during training also fits this share of the training knockouts, drawn at "
        "random, and T's stored read-out averages those fits (default 0.6; 0: the full fits).",
    ),
    logratio_weight: float | None = typer.Option(
        None,
        "--logratio-weight",
        show_default=PRESET_DEFAULT,
        help="Weight of the loss that keeps G's part of the statistic in line with the knockouts' log-ratio state "
        "mix: the share of its spread that no affine map of that mix explains (default 0.3; 0: off).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    overwrite: bool = OverwriteOpt,
    progress: bool = ProgressOpt,
    perturbation_key: str = PertKeyOpt,
    state_key: str = StateKeyOpt,
    control: str = ControlOpt,
    layer: str | None = LayerOpt,
    backed: bool = BackedOpt,
    min_cells: int = MinCellsOpt,
    small: str = SmallOpt,
    allow_missing_features: bool = AllowMissingOpt,
) -> None:
    """Train the statistic s(P) = G(mean f(x)), its distance head H and recognizer T on SCREEN."""
    from ..model import check_run_dir, fit
    from ..train import check_options, is_main_process

    dev = None if devices is None else (int(devices) if devices.isdigit() else devices)
    options: dict[str, Any] = dict(
        max_steps=max_steps, k_min=k_min, k_max=k_max, lr=lr, rec_weight=rec_weight, loss=loss, n_train=n_train,
        n_val=n_val, seed=seed, threads=threads, accelerator=accelerator, devices=dev, strategy=strategy,
        num_nodes=num_nodes, perturbations_per_step=perturbations_per_step, sample_window=sample_window,
        prefetch=prefetch, stability_weight=stability_weight, mix_channel=mix_channel,
        select_stability_weight=select_stability_weight, stat_activation=stat_activation, rec_robust=rec_robust,
        rec_subsample=rec_subsample, logratio_weight=logratio_weight,
    )  # fmt: skip
    check_options(preset, **options)  # a bad option fails now, not after reading a large screen
    if is_main_process():  # under DDP rank 0 owns the run directory; the other ranks find it being written
        check_run_dir(out, overwrite=overwrite, resume=resume)  # so does a run that would be refused
    data = load_screen(
        screen, features=features, perturbation_key=perturbation_key, state_key=state_key, control=control,
        layer=layer, backed=backed, min_cells=min_cells, small=small, allow_missing_features=allow_missing_features,
    )  # fmt: skip
    fit(data, preset_name=preset, out=out, overwrite=overwrite, resume=resume, progress=progress, **options)
    if is_main_process():
        console.print(f"[green]trained[/] model in [bold]{out / 'model'}[/]; metrics in {out / 'metrics.csv'}")
