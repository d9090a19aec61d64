"""What a run directory holds, each file loaded once for the report.

Absent files are noted, unreadable ones kept as error notes of their section: never a crash.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from ..tl import ProgramsResult, read_scores

logger = logging.getLogger(__name__)

#: Widest a figure is shown (CSS px): wider PNGs are scaled down, so their text would shrink below its printed size.
MAX_FIGURE_PX = 1100

#: file -> what it is, for the "Not in this run" list.
FILES = {
    "scores.csv": "the ranked knockouts (written by `perturbscore score`)",
    "eval.json": "the comparison with the baselines (written by `perturbscore evaluate`)",
    "programs.csv": "the gene programs (written by `perturbscore programs`)",
    "enrichment.csv": "gene-set enrichment of the programs (`perturbscore programs --gene-sets FILE`)",
    "metrics.csv": "training curves (written during training)",
    "screen_summary.json": "summary of the screen (written when the run is trained)",
    "config.json": "the settings of the run",
    "plots": "figures (plots/*.png)",
}

#: Figure stem -> (section, caption).
FIGURES: dict[str, tuple[str, str]] = {
    "mae_vs_k": ("quality", "Prediction error against the number of cells per knockout, for the model and every "
                 "baseline (lower is better; dotted lines use no cells)."),
    "pred_vs_true": ("quality", "Predicted against true distance to the target, held-out knockouts."),
    "program_top_genes": ("programs", "Genes with the largest positive (red) and negative (blue) weight in each "
                          "program."),
    "program_activity_state": ("programs", "Mean activity of each program in the cells of each state."),
    "program_activity_perturbation": ("programs", "Mean activity of each program in each knockout's cells."),
    "enrichment": ("enrichment", "Gene sets enriched in the programs (right of the dashed line: q < 0.05; red: "
                   "positive weights, blue: negative)."),
    "training_curves": ("diagnostics", "Training and validation loss."),
    "stat_state_relation": ("diagnostics", "How each entry of the model's knockout summary follows each "
                            "state's share across knockouts (Spearman correlation)."),
    "figure1": ("diagnostics", "Loss curves of the two reference models."),
}  # fmt: skip


def note(text: str, kind: str = "note") -> dict[str, str]:
    return {"text": text, "kind": kind}


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def png_uri(path: Path) -> tuple[str, int] | None:
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    width = int.from_bytes(data[16:20], "big") if len(data) >= 24 else 0
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), width


# -- the run --------------------------------------------------------------------------------------------------------
@dataclass
class RunFiles:
    """What a run directory holds, each part loaded once (``None``: absent; ``errors``: unreadable)."""

    path: Path
    config: dict | None = None
    summary: dict | None = None
    evaluation: dict | None = None
    scores: pd.DataFrame | None = None
    programs: ProgramsResult | None = None
    metrics: pd.DataFrame | None = None
    caveats: list[str] = field(default_factory=list)
    figures: dict[str, tuple[str, int]] = field(default_factory=dict)
    errors: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def split(self) -> dict | None:
        if self.config and isinstance(self.config.get("split"), dict):
            return self.config["split"]
        if self.evaluation and isinstance(self.evaluation.get("split"), dict):
            return self.evaluation["split"]
        return None

    def error(self, section: str, text: str) -> None:
        self.errors.setdefault(section, []).append(note(text, "error"))


def load_run(run: Path) -> RunFiles:
    out = RunFiles(run)

    def attempt(section: str, what: str, load: Callable[[], Any]) -> Any:
        try:
            return load()
        except (OSError, ValueError, KeyError, TypeError, pd.errors.ParserError) as err:  # a corrupt file
            logger.warning("report: %s could not be read: %s", what, err)
            out.error(section, f"{what} could not be read ({type(err).__name__}: {err}).")
            return None

    for name, attr, section in (("config.json", "config", "diagnostics"), ("screen_summary.json", "summary",
                                "diagnostics"), ("eval.json", "evaluation", "quality")):  # fmt: skip
        path = run / name
        if path.is_file():
            value = attempt(section, name, partial(read_json, path))
            if value is not None and not isinstance(value, dict):
                out.error(section, f"{name} should hold a JSON object; it could not be shown.")
                value = None
            setattr(out, attr, value)
        else:
            out.missing.append(name)
    score_file = next((run / f for f in ("scores.csv", "scores.parquet") if (run / f).is_file()), None)
    if score_file is not None:
        out.scores = attempt("answer", score_file.name, lambda: read_scores(score_file))
    else:
        out.missing.append("scores.csv")
    if (run / "programs.csv").is_file():
        out.programs = attempt("programs", "programs.csv", lambda: ProgramsResult.read(run))
    else:
        out.missing.append("programs.csv")
    if out.programs is not None and out.programs.enrichment is None:
        out.missing.append("enrichment.csv")
    if (run / "metrics.csv").is_file():
        out.metrics = attempt("diagnostics", "metrics.csv", lambda: pd.read_csv(run / "metrics.csv"))
    else:
        out.missing.append("metrics.csv")
    if (run / "caveats.json").is_file():
        items = attempt("caveats", "caveats.json", lambda: read_json(run / "caveats.json"))
        items = [items] if isinstance(items, str) else items
        if isinstance(items, list):
            out.caveats = [str(c) for c in items]
        elif items is not None:
            out.error("caveats", "caveats.json should hold a JSON list of sentences; it could not be shown.")
    plots = run / "plots"
    for f in sorted(plots.glob("*.png")) if plots.is_dir() else []:
        uri = attempt("diagnostics", f"plots/{f.name}", partial(png_uri, f))
        if uri is None:
            out.error("diagnostics", f"plots/{f.name} is not a PNG image; skipped.")
        else:
            out.figures[f.stem] = uri
    if not out.figures:
        out.missing.append("plots")
    return out


def figure(run: RunFiles, stem: str, caption: str) -> dict[str, Any]:
    uri, width = run.figures[stem]
    return {"uri": uri, "caption": caption, "width": min(width, MAX_FIGURE_PX) if width else None}


def figures_of(run: RunFiles, section: str) -> list[dict[str, Any]]:
    known = [figure(run, stem, cap) for stem, (sec, cap) in FIGURES.items() if sec == section and stem in run.figures]
    if section == "diagnostics":  # anything else in plots/ that no section claims
        claimed = set(FIGURES) | {s for s in run.figures if s.startswith("ranking")}
        known += [figure(run, s, s.replace("_", " ").capitalize()) for s in run.figures if s not in claimed]
    return known
