"""``perturbscore evaluate`` and ``perturbscore reproduce``."""

from __future__ import annotations

from pathlib import Path

import typer

from .._constants import EVAL_UNSEEN_GENES, REPRODUCE_MODELS
from .._utils import write_json_atomic, write_text_atomic
from ._app import app
from ._common import (
    ControlOpt,
    FeaturesOpt,
    LayerOpt,
    OverwriteOpt,
    PertKeyOpt,
    ProgressOpt,
    RunControlOpt,
    RunLayerOpt,
    RunPertKeyOpt,
    RunStateKeyOpt,
    StateKeyOpt,
    check_inputs,
    console,
    load_screen,
)  # fmt: skip


def _ints(text: str, *, flag: str = "--ks", minimum: int = 1) -> tuple[int, ...]:
    """Parse a comma-separated list of integers given to ``flag``."""
    from .._errors import InputError

    try:
        values = tuple(int(x) for x in text.replace(" ", "").split(","))
    except ValueError as err:
        raise InputError(f"{flag} {text!r}: give comma-separated integers, e.g. 2,5,10") from err
    if not values or min(values) < minimum:
        raise InputError(f"{flag} {text!r}: every value must be >= {minimum}")
    return values


@app.command("evaluate")
def evaluate(
    run: Path = typer.Argument(..., help="Run directory made by `perturbscore train`.", show_default=False),
    screen: Path = typer.Option(..., "--screen", help="The screen the run was trained on (.h5ad).", show_default=False),
    features: Path | None = FeaturesOpt,
    ks: str = typer.Option("2,5,10,25,60", "--ks", help="Cells per sample to evaluate."),
    resamples: int = typer.Option(30, "--resamples", help="Resamples of cells and targets."),
    overwrite: bool = OverwriteOpt,
    progress: bool = ProgressOpt,
    perturbation_key: str | None = RunPertKeyOpt,
    state_key: str | None = RunStateKeyOpt,
    control: str | None = RunControlOpt,
    layer: str | None = RunLayerOpt,
) -> None:
    """Compare a trained model with simple baselines on its held-out knockouts."""
    from .._errors import RunError
    from ..evaluation import evaluate as run_eval
    from ..evaluation import render_eval_markdown
    from ..model import PerturbScoreModel, read_keys

    if (run / "eval.json").exists() and not overwrite:
        raise RunError(f"{run / 'eval.json'} exists; pass --overwrite to replace it")
    ks_values = _ints(ks)
    check_inputs(screen=screen, files=[("--features", features)])
    model = PerturbScoreModel.load(run)
    keys = read_keys(model, perturbation_key=perturbation_key, state_key=state_key, control=control, layer=layer)
    data = load_screen(screen, features=features, **keys, states=model.states)
    results = run_eval(model, data, ks=ks_values, n_resamples=resamples, progress=progress)
    write_json_atomic(run / "eval.json", results)
    write_text_atomic(run / "eval.md", render_eval_markdown(results))
    _plots(run, results)
    console.print(f"[green]evaluation[/] in [bold]{run / 'eval.md'}[/] (and eval.json, plots/)")


@app.command("reproduce")
def reproduce(
    screen: Path | None = typer.Argument(None, help="Screen .h5ad.", show_default="the embedded simulated screen"),
    features: Path | None = FeaturesOpt,
    out: Path = typer.Option(Path("runs/reproduce"), "--out", help="Output directory."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Training seeds."),
    folds: int = typer.Option(
        0, "--folds", help="0: one 50/10 split; else k-fold over knockouts (every knockout held out once)."
    ),
    models: str = typer.Option(
        "",
        "--models",
        help=f"Comma-separated models to train, of: {', '.join(REPRODUCE_MODELS)}.",
        show_default="seed_baseline,full,perturbscore",
    ),
    ablation: bool = typer.Option(
        False,
        "--ablation",
        help="Train the ablation: the reference full model, the default, the default less each part. "
        "With --panel: the default less each part on every screen, in a second table.",
    ),
    panel: bool = typer.Option(
        False,
        "--panel",
        help="Run the default and every baseline over the panel of simulated screens and write one table "
        "(OUT/panel.md, OUT/panel.json); SCREEN, --models and --sim-genes do not apply.",
    ),
    panel_screens: str = typer.Option(
        "", "--panel-screens", help="Comma-separated panel screens.", show_default="every screen of the panel"
    ),
    resume: bool = typer.Option(False, "--resume", help="With --panel: keep the screens already finished in OUT."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="Training steps for every model.", show_default="each preset's"
    ),
    ks: str = typer.Option("2,5,10,25,60", "--ks", help="Cells per sample to evaluate."),
    resamples: int = typer.Option(30, "--resamples", help="Resamples of cells and targets."),
    sim_genes: int = typer.Option(2000, "--sim-genes", help="Genes of the simulated screen (no SCREEN given)."),
    sim_seed: int = typer.Option(0, "--sim-seed", help="Seed of the simulated screen (no SCREEN given)."),
    sim_unseen: int = typer.Option(
        EVAL_UNSEEN_GENES,
        "--sim-unseen",
        help="Genes of the simulated screen with features but no cells (no SCREEN given), as a genome's "
        "embeddings would be: T's feature basis and the PCR baseline learn from their features (not labels).",
    ),
    overwrite: bool = OverwriteOpt,
    progress: bool = ProgressOpt,
    perturbation_key: str = PertKeyOpt,
    state_key: str = StateKeyOpt,
    control: str = ControlOpt,
    layer: str | None = LayerOpt,
) -> None:
    """Train the reference models (no sequence at 60 cells; with sequence at ~10) and compare every baseline."""
    from ..evaluation import ABLATION, DEFAULT_MODELS, MODELS
    from ..evaluation import reproduce as run_reproduce

    if panel:
        _panel(out, screen, panel_screens, seeds, folds, max_steps, sim_seed, sim_unseen, ks, resamples,
               ablation=ablation, overwrite=overwrite, resume=resume, progress=progress)  # fmt: skip
        return
    keys = tuple(m.strip() for m in models.split(",")) if models else (ABLATION if ablation else DEFAULT_MODELS)
    bad = [m for m in keys if m not in MODELS]
    if bad:
        from .._errors import InputError

        raise InputError(f"--models: unknown {', '.join(bad)}; choose from {', '.join(MODELS)}")
    data = _screen_or_simulated(
        screen, features, sim_genes, sim_seed, perturbation_key, state_key, control, layer, unseen=sim_unseen
    )
    over = {m: {"max_steps": max_steps} for m in keys} if max_steps else None
    results = run_reproduce(
        data, out=out, seeds=_ints(seeds, flag="--seeds", minimum=0), models=keys, folds=folds, ks=_ints(ks),
        n_resamples=resamples, overwrite=overwrite, progress=progress, train_overrides=over,
    )  # fmt: skip
    _figure1(out, keys)
    _plots(out, results)
    console.print((out / "eval.md").read_text())
    console.print(f"[green]reproduced[/]: [bold]{out / 'eval.md'}[/], {out / 'eval.json'}, {out / 'plots'}")


def _panel(
    out,
    screen,
    names,
    seeds,
    folds,
    max_steps,
    sim_seed,
    sim_unseen,
    ks,
    resamples,
    *,
    ablation,
    overwrite,
    resume,
    progress,
):  # noqa: ANN001, ANN202
    """``reproduce --panel``: the default and every baseline over the simulated panel, one table."""
    import shlex

    from .._errors import InputError
    from ..evaluation import ABLATION, PANEL_SCREENS, reproduce_panel

    if screen is not None:
        raise InputError("--panel simulates its own screens; drop the SCREEN argument")
    chosen = tuple(n.strip() for n in names.split(",") if n.strip()) or PANEL_SCREENS
    # the default and the default less each part (the seed's full model is no part of the default)
    models = tuple(m for m in ABLATION if m != "full") if ablation else ("perturbscore",)
    command = ["perturbscore", "reproduce", "--panel", *(["--ablation"] if ablation else []), "--seeds", seeds]
    command += ["--out", str(out)]
    command += ["--folds", str(folds)] if folds else []
    command += ["--max-steps", str(max_steps)] if max_steps else []
    command += ["--panel-screens", ",".join(chosen)] if names else []
    command += ["--resamples", str(resamples)]
    reproduce_panel(
        out=out, screens=chosen, models=models, seeds=_ints(seeds, flag="--seeds", minimum=0), folds=folds,
        max_steps=max_steps,
        sim_seed=sim_seed, sim_unseen=sim_unseen, ks=_ints(ks), n_resamples=resamples, overwrite=overwrite,
        resume=resume, progress=progress, command=shlex.join(command),
    )  # fmt: skip
    console.print((out / "panel.md").read_text())
    console.print(f"[green]panel[/]: [bold]{out / 'panel.md'}[/], {out / 'panel.json'}")


def _screen_or_simulated(screen, features, genes, seed, pkey, skey, control, layer, *, unseen=0):  # noqa: ANN001, ANN202
    if screen is not None:
        return load_screen(
            screen, features=features, perturbation_key=pkey, state_key=skey, control=control, layer=layer
        )
    from ..datasets import simulate_screen
    from ..io import read_screen

    console.print(f"simulating the default screen ({genes} genes, seed {seed}, {unseen} genes without cells)",
                  highlight=False)  # fmt: skip
    sim = simulate_screen(n_genes=genes, seed=seed, n_unseen_genes=unseen)
    return read_screen(sim.adata, features=sim.features)


def _figure1(out: Path, keys: tuple[str, ...]) -> None:
    """Draw the seed's Figure 1 from the first seed's runs, when both seed models were trained."""
    import pandas as pd

    from ..pl import figure1

    runs = sorted((out / "runs").glob("seed_baseline-seed*")), sorted((out / "runs").glob("full-seed*"))
    if not runs[0] or not runs[1]:
        return
    fig = figure1(pd.read_csv(runs[0][0] / "metrics.csv"), pd.read_csv(runs[1][0] / "metrics.csv"))
    _save(fig, out / "plots" / "figure1.png")


def _plots(out: Path, results: dict) -> None:
    from ..pl import plot_mae_vs_k, plot_pred_vs_true

    _save(plot_mae_vs_k(results), out / "plots" / "mae_vs_k.png")
    if results.get("scatter"):
        sc = results["scatter"]
        _save(plot_pred_vs_true(sc["pred"], sc["true"]), out / "plots" / "pred_vs_true.png")


def _save(fig, path: Path) -> None:  # noqa: ANN001
    from .._utils import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
