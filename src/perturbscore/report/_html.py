"""One self-contained HTML page that answers a screen's question, for the biologist who asked it.

Sections, in reading order: what was asked (each target spelled out), the answer (ranked table, top candidates
with intervals), caveats (always shown), how good the model is (one plain table against the baselines), the
gene programs (top genes, enrichment), and the training diagnostics last. The page is rendered from a jinja2
template shipped with the package (``templates/report.html.j2``, autoescaped); CSS is inline and figures are
data URIs, so ``report.html`` can be mailed or archived on its own. Every file of the run is optional: a
missing one becomes a note, an unreadable one an error note in its section, never a crash.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any

from .._errors import RunError
from .._utils import write_text_atomic
from ..tl import sequence_verdict
from ._runfiles import load_run
from ._sections import (
    section_answer,
    section_asked,
    section_caveats,
    section_diagnostics,
    section_programs,
    section_quality,
)

logger = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;line-height:1.5;
color:#1d2329;background:#fff;max-width:1180px;margin:0 auto;padding:1.5rem 1.5rem 4rem}
h1{font-size:1.8rem;margin:.2rem 0 .4rem}h2{font-size:1.4rem;border-bottom:2px solid #e3e7eb;padding-bottom:.2rem;
margin-top:2.4rem}h3{font-size:1.15rem;margin-top:1.8rem}
.meta,.small{color:#5b6670;font-size:.9rem}.meta code{font-size:.85rem}
nav.toc{background:#f5f7f9;border:1px solid #e3e7eb;border-radius:6px;padding:.5rem 1.2rem;margin:1rem 0}
nav.toc ol{margin:.3rem 0;padding-left:1.4rem}nav.toc li{display:inline-block;margin-right:1.6rem}
.caveats{background:#fff4e5;border:1px solid #f0b35a;border-left:6px solid #e08e0b;border-radius:6px;
padding:.2rem 1.2rem .6rem;margin:1.6rem 0}.caveats h2{border:none;color:#8a4b00;margin-top:.8rem}
.caveats li{margin:.3rem 0}
.missing,.note{background:#f3f4f6;border-left:4px solid #9aa5b1;padding:.4rem .9rem;color:#3e4a55;border-radius:4px}
.warning{background:#fff4e5;border-left:4px solid #e08e0b;padding:.4rem .9rem;border-radius:4px}
.error{background:#fdecea;border-left:4px solid #d93025;padding:.4rem .9rem;border-radius:4px}
.target-mix{color:#3e4a55;margin-top:-.4rem}
ol.top li{margin:.15rem 0}
.table-wrap{overflow-x:auto;margin:.6rem 0 1rem}
table.data{border-collapse:collapse;width:100%;font-size:.88rem;font-variant-numeric:tabular-nums}
table.data caption{text-align:left;color:#4a5560;font-size:.9rem;padding-bottom:.3rem}
table.data th,table.data td{border:1px solid #dde2e6;padding:.25rem .5rem;text-align:left;vertical-align:top;
overflow-wrap:break-word}
table.data th{background:#e9eef2;font-weight:600}table.data tbody tr:nth-child(even){background:#f6f8fa}
table.data td.num,table.data th.num{text-align:right;white-space:nowrap;overflow-wrap:normal}
table.data tr.unranked td{color:#6b7680}
figure{margin:1.2rem 0;text-align:center}figure img{max-width:100%;height:auto;border:1px solid #eef0f2}
figcaption{color:#4a5560;font-size:.9rem;margin-top:.3rem}
pre{background:#f5f7f9;border:1px solid #e3e7eb;padding:.7rem;overflow-x:auto;font-size:.82rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
details{margin:.8rem 0}details summary{cursor:pointer;color:#2466a8}
""".strip()

SECTIONS = (
    ("asked", "What was asked"),
    ("answer", "The answer"),
    ("caveats", "Caveats"),
    ("quality", "How good the model is"),
    ("programs", "Gene programs"),
    ("diagnostics", "Training diagnostics"),
)


# -- rendering ------------------------------------------------------------------------------------------------------
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("perturbscore.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2"), default=True),
        trim_blocks=False,
        lstrip_blocks=False,
    )


def report_context(run_dir: str | os.PathLike[str], *, title: str | None = None) -> dict[str, Any]:
    """Everything the report template shows, as plain data (tested without rendering)."""
    from .. import __version__  # at call time: the package __init__ may import this module

    run_path = Path(run_dir)
    if not run_path.is_dir():
        raise RunError(f"run directory {str(run_path)!r} does not exist; pass the folder a training run wrote.")
    run = load_run(run_path)
    caveats = section_caveats(run)
    verdict = sequence_verdict(run.evaluation)
    return {
        "title": title or f"perturbscore run: {run_path.resolve().name}",
        "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "version": __version__,
        "run_dir": str(run_path.resolve()),
        "css": CSS,
        "sections": [{"id": i, "heading": h} for i, h in SECTIONS],
        "asked": section_asked(run),
        "answer": section_answer(run),
        "caveats": caveats,
        "caveat_notes": [],
        "no_caveats": "No caveat applies: the model beat every baseline on enough held-out knockouts"
        + (", and its sequence path beat the training mean." if verdict and verdict["better"] else "."),
        "quality": section_quality(run),
        "programs": section_programs(run),
        "diagnostics": section_diagnostics(run),
    }


def render_report(run_dir: str | os.PathLike[str], *, title: str | None = None) -> str:
    """Return the report of ``run_dir`` as one HTML string (see :func:`build_report`)."""
    context = report_context(run_dir, title=title)
    return _environment().get_template(TEMPLATE).render(**context)


def build_report(
    run_dir: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None, title: str | None = None
) -> Path:
    """Write a self-contained ``report.html`` for a run directory.

    Reads, when present: ``scores.csv`` (or ``scores.parquet``) with its description (``scores.json``),
    ``eval.json``, ``caveats.json`` (hand-written or earlier caveats, shown with those derived now),
    ``programs.csv`` and the other program tables, ``metrics.csv``, ``screen_summary.json``, ``config.json`` and
    ``plots/*.png`` (embedded). Absent files become notes; unreadable ones error notes. The page loads nothing
    from the network.

    Parameters
    ----------
    run_dir
        The run directory.
    out
        Output file; ``run_dir/report.html`` by default. Written atomically.
    title
        Page title; ``perturbscore run: <run name>`` by default.

    Returns
    -------
    The path written.
    """
    text = render_report(run_dir, title=title)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    write_text_atomic(path, text)
    logger.info("wrote report %s (%.1f kB)", path, len(text.encode()) / 1024)
    return path
