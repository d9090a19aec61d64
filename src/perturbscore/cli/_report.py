"""``perturbscore report``: one self-contained ``report.html`` for a run directory."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import app
from ._common import OverwriteOpt, console


@app.command("report")
def report(
    run: Path = typer.Argument(..., help="Run directory.", show_default=False),
    out: Path | None = typer.Option(None, "--out", help="Output HTML file.", show_default="RUN/report.html"),
    open_check: bool = typer.Option(
        False, "--open-check", help="Re-read the written page: no external resources, every image decodes."
    ),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Build RUN/report.html (plots are drawn first for whatever in RUN has none yet)."""
    from .._errors import RunError
    from .._utils import write_json_atomic
    from ..pl import save_run_plots
    from ..report import build_report, check_report, derive_caveats

    if not run.is_dir():
        raise RunError(f"run directory {str(run)!r} does not exist; pass the folder a training run wrote")
    target = out if out is not None else run / "report.html"
    if target.exists() and not overwrite:
        raise RunError(f"{target} exists; pass --overwrite to rebuild it, or --out another file")
    eval_path, caveats_path = run / "eval.json", run / "caveats.json"
    if not caveats_path.exists() and eval_path.is_file():
        results = json.loads(eval_path.read_text(encoding="utf-8"))
        caveats = derive_caveats(results, split=results.get("split"))
        write_json_atomic(caveats_path, caveats)
        console.print(f"wrote {len(caveats)} caveat(s) from eval.json to {caveats_path}")
    console.print("drawing plots", highlight=False)
    new = save_run_plots(run, skip_existing=True)
    if new:
        console.print(f"[green]plots[/]: {', '.join(p.name for p in new)} in {run / 'plots'}")
    path = build_report(run, out=target)
    if open_check:
        n_images = check_report(path)
        console.print(f"[green]open check passed[/]: {n_images} embedded image(s), no external resources")
    console.print(f"[green]report[/] in [bold]{path}[/]")
