"""``perturbscore report``: one self-contained ``report.html`` for a run directory."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import typer

from ._app import app
from ._common import OverwriteOpt, console

#: Learned-model keys in ``eval.json`` (the first present is checked), and the baselines it must beat.
LEARNED_KEYS = ("perturbscore", "full")
CELL_BASELINES = ("empirical", "shrunk")
SEQUENCE_BASELINES = ("ridge", "pcr", "knn")
_NAMES = {"empirical": "empirical", "shrunk": "shrunk empirical", "ridge": "ridge", "pcr": "PCR", "knn": "k-NN"}


@app.command("report")
def report(
    run: Path = typer.Argument(..., help="Run directory.", show_default=False),
    out: Path | None = typer.Option(None, "--out", help="Output HTML file (default RUN/report.html)."),
    open_check: bool = typer.Option(
        False, "--open-check", help="Re-read the written page: no external resources, every image decodes."
    ),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Build RUN/report.html (plots are drawn first for whatever in RUN has none yet)."""
    from .._errors import RunError
    from .._utils import write_json_atomic
    from ..pl._save import save_run_plots
    from ..report import build_report

    if not run.is_dir():
        raise RunError(f"run directory {str(run)!r} does not exist; pass the folder a training run wrote")
    target = out if out is not None else run / "report.html"
    if target.exists() and not overwrite:
        raise RunError(f"{target} exists; pass --overwrite to rebuild it, or --out another file")
    eval_path, caveats_path = run / "eval.json", run / "caveats.json"
    if not caveats_path.exists() and eval_path.is_file():
        caveats = derive_caveats(json.loads(eval_path.read_text(encoding="utf-8")))
        write_json_atomic(caveats_path, caveats)
        console.print(f"wrote {len(caveats)} caveat(s) from eval.json to {caveats_path}")
    with console.status("drawing plots"):
        new = save_run_plots(run, skip_existing=True)
    if new:
        console.print(f"[green]plots[/]: {', '.join(p.name for p in new)} in {run / 'plots'}")
    path = build_report(run, out=target)
    if open_check:
        n_images = check_report(path)
        console.print(f"[green]open check passed[/]: {n_images} embedded image(s), no external resources")
    console.print(f"[green]report[/] in [bold]{path}[/]")


def _mean(values: Any) -> float | None:
    from ..tl._evaltable import summarise

    mean = summarise(values)[0] if values is not None else float("nan")
    return None if mean != mean else mean  # NaN -> None


def derive_caveats(results: Mapping[str, Any]) -> list[str]:
    """Caveat sentences where the learned model loses to a simple baseline in ``eval.json`` results.

    One sentence per ``k`` where the learned model's ``mae_cells`` exceeds the empirical or shrunk
    baseline's, and one where its ``mae_sequence`` exceeds the ridge, PCR or k-NN feature regression's.

    Parameters
    ----------
    results
        Evaluation results (schema in :mod:`perturbscore.tl._evaltable`).

    Returns
    -------
    The sentences (empty when the model beats every baseline, or no learned model was evaluated).
    """
    models, baselines = results.get("models") or {}, results.get("baselines") or {}
    key = next((k for k in LEARNED_KEYS if k in models), None)
    if key is None:
        return []
    model = models[key] or {}
    out = []
    by_k = {int(k): v for k, v in (model.get("mae_cells") or {}).items()}
    for k in sorted(by_k):
        ours = _mean(by_k[k])
        if ours is None:
            continue
        beaten = [
            (name, m)
            for name in CELL_BASELINES
            if (m := _mean(_at_k((baselines.get(name) or {}).get("mae_cells"), k))) is not None and ours > m
        ]
        if beaten:
            out.append(f"With k={k} cells per perturbation, the learned model's prediction MAE ({ours:.3f}) is higher "
                       f"than {_list(beaten)}: at this k, prefer the simpler estimate.")  # fmt: skip
    ours = _mean(model.get("mae_sequence"))
    if ours is not None:
        beaten = [
            (name, m)
            for name in SEQUENCE_BASELINES
            if (m := _mean((baselines.get(name) or {}).get("mae_sequence"))) is not None and ours > m
        ]
        if beaten:
            out.append(f"For genes without cells (from sequence features alone), the learned model's prediction MAE "
                       f"({ours:.3f}) is higher than {_list(beaten)}: for unseen genes, a plain regression on "
                       "the features is the better predictor on this evaluation.")  # fmt: skip
    return out


def _at_k(by_k: Mapping[Any, Any] | None, k: int) -> Any:
    return None if not by_k else {int(kk): v for kk, v in by_k.items()}.get(k)


def _list(beaten: list[tuple[str, float]]) -> str:
    parts = [f"the {_NAMES.get(name, name)} baseline's ({mae:.3f})" for name, mae in beaten]
    return " and ".join(parts)


class _Resources(HTMLParser):
    """Collect every ``src``/``href`` value of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links.extend((tag, k, v or "") for k, v in attrs if k in ("src", "href"))


def check_report(path: Path) -> int:
    """Check that a report opens on its own: every ``src``/``href`` is an in-page anchor or a data URI,
    and every embedded PNG decodes. Returns the number of images; raises :class:`RunError` otherwise."""
    from .._errors import RunError

    parser = _Resources()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    n_images = 0
    for tag, attr, value in parser.links:
        if value.startswith("#"):
            continue
        if not value.startswith("data:"):
            raise RunError(f"{path}: <{tag} {attr}={value[:80]!r}> needs a file or the network; the report is not "
                           "self-contained. Rebuild it with `perturbscore report --overwrite`")  # fmt: skip
        if value.startswith("data:image/png;base64,"):
            try:
                data = base64.b64decode(value.split(",", 1)[1], validate=True)
            except (binascii.Error, ValueError) as err:
                raise RunError(f"{path}: an embedded image is not valid base64 ({err}); rebuild the report") from err
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                raise RunError(f"{path}: an embedded image is not a PNG; rebuild the report")
            n_images += 1
    return n_images
