"""One self-contained HTML page that summarises a run directory.

The page has no external resources: CSS is inline and figures are embedded as base64 data URIs, so
``report.html`` can be mailed or archived on its own. Every file is optional; a missing one becomes a
line in the "Not in this run" box, and an unreadable one a note in its section, never a crash.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import RunError
from .._utils import write_text_atomic
from ._markdown import markdown_to_html

logger = logging.getLogger(__name__)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;line-height:1.5;
color:#1d2329;background:#fff;max-width:1100px;margin:0 auto;padding:1.5rem 2rem 4rem}
h1{font-size:1.9rem;margin:.2rem 0 .4rem}h2{font-size:1.4rem;border-bottom:2px solid #e3e7eb;padding-bottom:.2rem;
margin-top:2.4rem}h3{font-size:1.15rem;margin-top:1.6rem}h4,h5,h6{font-size:1rem}
.meta{color:#5b6670;font-size:.92rem}.meta code{font-size:.88rem}
nav.toc{background:#f5f7f9;border:1px solid #e3e7eb;border-radius:6px;padding:.6rem 1.2rem;margin:1rem 0}
nav.toc ol{margin:.3rem 0;padding-left:1.4rem}
.caveats{background:#fff4e5;border:1px solid #f0b35a;border-left:6px solid #e08e0b;border-radius:6px;
padding:.7rem 1.2rem;margin:1rem 0}.caveats h2{border:none;margin:.2rem 0;font-size:1.2rem;color:#8a4b00}
.caveats li{margin:.25rem 0}
.missing{background:#f3f4f6;border-left:4px solid #9aa5b1;padding:.4rem .9rem;color:#3e4a55;border-radius:4px}
.error{background:#fdecea;border-left:4px solid #d93025;padding:.4rem .9rem;border-radius:4px}
table.data{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.88rem;font-variant-numeric:tabular-nums}
table.data th,table.data td{border:1px solid #dde2e6;padding:.25rem .55rem;text-align:left;vertical-align:top}
table.data th{background:#e9eef2}table.data tbody tr:nth-child(even){background:#f6f8fa}
table.data td.num{text-align:right;white-space:nowrap}.scroll{overflow-x:auto}
figure{margin:1.2rem 0;text-align:center}figure img{max-width:100%;height:auto;border:1px solid #eef0f2}
figcaption{color:#4a5560;font-size:.9rem;margin-top:.3rem}
pre{background:#f5f7f9;border:1px solid #e3e7eb;padding:.7rem;overflow-x:auto;font-size:.84rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}.url{color:#5b6670}
details summary{cursor:pointer;color:#2466a8}
""".strip()

#: file -> (what it is, how it is usually produced); used for the "Not in this run" notes.
_FILES = {
    "caveats.json": "caveats recorded by evaluation",
    "screen_summary.json": "summary of the screen (written when the run is trained)",
    "eval.md": "evaluation report (written by evaluation)",
    "eval.json": "evaluation metrics (written by evaluation)",
    "metrics.csv": "training curves (written during training)",
    "scores.csv": "perturbation scores (written by scoring)",
    "programs.csv": "top genes per program",
    "enrichment.csv": "gene-set enrichment of the programs (needs a GMT file)",
    "plots": "figures (plots/*.png)",
    "config.json": "resolved configuration",
}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def _table(df: pd.DataFrame, *, max_chars: int = 120) -> str:
    """Escaped HTML table of ``df`` (index dropped), numbers right-aligned and short."""
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    num = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    body = []
    for row in df.itertuples(index=False, name=None):
        cells = []
        for v, is_num in zip(row, num, strict=True):
            text = _fmt(v).replace(";", "; ")  # gene lists: let the browser wrap between genes
            text = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
            cells.append(f'<td class="num">{_esc(text)}</td>' if is_num else f"<td>{_esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(body)
        + ("</tbody></table></div>")
    )


def _note(text: str, kind: str = "missing") -> str:
    return f'<p class="{kind}">{_esc(text)}</p>'


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, list) and all(not isinstance(v, dict | list) for v in obj):
        return [(prefix, ", ".join(_fmt(v) for v in obj))]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in _flatten(v, f"{prefix}[{i}]")]
    return [(prefix, obj)]


def _kv_table(pairs: list[tuple[str, Any]], *, limit: int = 300) -> str:
    df = pd.DataFrame([(k, _fmt(v)) for k, v in pairs[:limit]], columns=["key", "value"])
    extra = _note(f"... {len(pairs) - limit} more entries not shown.") if len(pairs) > limit else ""
    return _table(df) + extra


# --- sections: each takes the run directory and returns HTML, or None when its files are absent ---


def _caveats(run: Path) -> str | None:
    path = run / "caveats.json"
    if not path.is_file():
        return None
    items = _read_json(path)
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        return _note("caveats.json should hold a JSON list of strings; it could not be shown.", "error")
    if not items:
        return "<p>No caveats were recorded for this run.</p>"
    return "<ul>" + "".join(f"<li>{_esc(c)}</li>" for c in items) + "</ul>"


def _screen(run: Path) -> str | None:
    path = run / "screen_summary.json"
    if not path.is_file():
        return None
    summary = _read_json(path)
    if not isinstance(summary, dict):
        return _note("screen_summary.json should hold a JSON object; it could not be shown.", "error")
    return _kv_table(_flatten(summary))


def _evaluation(run: Path) -> str | None:
    md, js = run / "eval.md", run / "eval.json"
    if not md.is_file() and not js.is_file():
        return None
    parts = []
    if md.is_file():
        parts.append(markdown_to_html(md.read_text(encoding="utf-8"), heading_offset=2))
    if js.is_file():
        table = _kv_table(_flatten(_read_json(js)))
        parts.append(f"<details><summary>All values in eval.json</summary>{table}</details>" if md.is_file() else table)
    return "\n".join(parts)


def _metrics(run: Path) -> str | None:
    path = run / "metrics.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    cols = [c for c in df.columns if c not in ("epoch", "step") and pd.api.types.is_numeric_dtype(df[c])]
    if not cols:
        return _note("metrics.csv has no numeric metric columns.")
    rows = []
    for c in cols:
        s = df[c].dropna()
        if s.empty:
            continue
        step = df.loc[s.index[-1], "step"] if "step" in df.columns else s.index[-1]
        rows.append({"metric": c, "n": len(s), "first": s.iloc[0], "last": s.iloc[-1], "min": s.min(),
                     "max": s.max(), "last step": step})  # fmt: skip
    n_steps = int(df["step"].max()) if "step" in df.columns and df["step"].notna().any() else len(df)
    return f"<p>{len(df)} logged rows, up to step {n_steps}.</p>" + _table(pd.DataFrame(rows))


def _scores(run: Path, per_target: int = 20) -> str | None:
    path = run / "scores.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    if "target" not in df.columns:
        df = df.assign(target="(single target)")
    key = "rank" if "rank" in df.columns else "pred_distance" if "pred_distance" in df.columns else None
    parts = [f"<p>{len(df)} rows; the top {per_target} perturbations per target (lowest rank first).</p>"]
    for target, sub in df.groupby("target", sort=False):
        sub = sub.sort_values(key, kind="stable") if key else sub
        shown = sub.drop(columns="target").head(per_target)
        parts.append(f"<h3>Target: {_esc(target)}</h3>" + _table(shown))
    return "\n".join(parts)


def _programs(run: Path, per_sign: int = 10) -> str | None:
    path = run / "programs.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    if not {"program", "sign", "gene"}.issubset(df.columns):
        return _table(df.head(40))
    order = df.sort_values("rank", kind="stable") if "rank" in df.columns else df
    rows = []
    for program, sub in order.groupby("program", sort=False):
        genes = {s: ", ".join(sub.loc[sub["sign"] == s, "gene"].astype(str).head(per_sign)) for s in ("+", "-")}
        rows.append({"program": program, "top + genes": genes["+"], "top - genes": genes["-"]})
    note = f"<p>Top {per_sign} genes of each sign per program (full list: <code>programs.csv</code>).</p>"
    return note + _table(pd.DataFrame(rows), max_chars=400)


def _enrichment(run: Path, n: int = 30) -> str | None:
    path = run / "enrichment.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    if "q" in df.columns:
        df = df.sort_values(["q", "p"] if "p" in df.columns else ["q"], kind="stable")
        n_sig = int((pd.to_numeric(df["q"], errors="coerce") < 0.05).sum())
        head = f"<p>{len(df)} tests, {n_sig} with q &lt; 0.05; the {min(n, len(df))} smallest q shown.</p>"
    else:
        head = f"<p>{len(df)} rows; the first {min(n, len(df))} shown.</p>"
    return head + _table(df.head(n), max_chars=80)


def _caption(path: Path) -> str:
    text = path.stem.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:] if text else path.name


def _figures(run: Path) -> str | None:
    plots = run / "plots"
    files = sorted(plots.glob("*.png")) if plots.is_dir() else []
    if not files:
        return None
    parts = []
    for f in files:
        data = f.read_bytes()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            parts.append(_note(f"plots/{f.name} is not a PNG image; skipped.", "error"))
            continue
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        cap = _esc(_caption(f))
        parts.append(f'<figure><img src="{uri}" alt="{cap}"><figcaption>{cap} '
                     f"(<code>plots/{_esc(f.name)}</code>)</figcaption></figure>")  # fmt: skip
    return "\n".join(parts)


def _config(run: Path) -> str | None:
    for name in ("config.json", "config.yaml"):
        path = run / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if name.endswith(".json"):
                text = json.dumps(json.loads(text), indent=2, sort_keys=False)
            return f"<p>From <code>{name}</code>.</p><pre><code>{_esc(text)}</code></pre>"
    return None


_SECTIONS: list[tuple[str, str, str, Callable[[Path], str | None]]] = [
    # (anchor id, heading, file it needs, builder)
    ("caveats", "Caveats", "caveats.json", _caveats),
    ("screen", "Screen", "screen_summary.json", _screen),
    ("evaluation", "Evaluation", "eval.md", _evaluation),
    ("training", "Training metrics", "metrics.csv", _metrics),
    ("scores", "Scores", "scores.csv", _scores),
    ("programs", "Gene programs", "programs.csv", _programs),
    ("enrichment", "Gene-set enrichment", "enrichment.csv", _enrichment),
    ("figures", "Figures", "plots", _figures),
    ("config", "Configuration", "config.json", _config),
]


def _build_section(run: Path, anchor: str, builder: Callable[[Path], str | None]) -> str | None:
    try:
        return builder(run)
    except (OSError, ValueError, KeyError, TypeError, pd.errors.ParserError) as err:
        # a corrupt file must not cost the user the rest of the report
        logger.warning("report section %r could not be built: %s", anchor, err)
        return _note(f"This section could not be built: {type(err).__name__}: {err}", "error")


def _section(anchor: str, heading: str, body: str) -> str:
    cls = ' class="caveats"' if anchor == "caveats" else ""
    return f'<section id="{anchor}"{cls}>\n<h2>{_esc(heading)}</h2>\n{body}\n</section>'


def _missing_box(missing: list[str]) -> str:
    if not missing:
        return ""
    items = "".join(f"<li><code>{_esc(m)}</code>: {_esc(_FILES.get(m, ''))}</li>" for m in missing)
    return f'<section id="missing" class="missing"><strong>Not in this run</strong> (sections left out):<ul>{items}</ul></section>'


def render_report(run_dir: str | os.PathLike[str], *, title: str | None = None) -> str:
    """Return the report of ``run_dir`` as one HTML string (see :func:`build_report`)."""
    from .. import __version__  # at call time: the package __init__ may import this module

    run = Path(run_dir)
    if not run.is_dir():
        raise RunError(f"run directory {str(run)!r} does not exist; pass the folder a training run wrote.")
    title = title or f"perturbscore run: {run.resolve().name}"
    built, missing = [], []
    for anchor, heading, needed, builder in _SECTIONS:
        body = _build_section(run, anchor, builder)
        if body is None:
            missing.append(needed)
        else:
            built.append((anchor, heading, body))
    # caveats go above the table of contents, so they cannot be missed
    top = [_section(*b) for b in built if b[0] == "caveats"]
    rest = [_section(*b) for b in built if b[0] != "caveats"]
    toc = "".join(f'<li><a href="#{a}">{_esc(h)}</a></li>' for a, h, _ in built)
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        f'<header>\n<h1>{_esc(title)}</h1>\n<p class="meta">Generated {_esc(now)} by perturbscore '
        f"{_esc(__version__)} from <code>{_esc(run.resolve())}</code></p>\n</header>\n"
    )
    nav = f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>'
    return "\n".join([head, *top, nav, _missing_box(missing), *rest, "</body>\n</html>\n"])


def build_report(
    run_dir: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None, title: str | None = None
) -> Path:
    """Write a self-contained ``report.html`` summarising a run directory.

    Reads, when present: ``caveats.json`` (list of strings, shown first), ``screen_summary.json``,
    ``eval.md`` (rendered) and ``eval.json``, ``metrics.csv``, ``scores.csv`` (top 20 per target),
    ``programs.csv``, ``enrichment.csv``, ``plots/*.png`` (embedded as base64) and ``config.json``
    (or ``config.yaml``). Absent files are listed in a "Not in this run" box; unreadable ones get an
    error note in their section. The page loads nothing from the network.

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
