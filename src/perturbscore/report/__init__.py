"""The run report: one self-contained HTML page, its caveats, and a check that it opens on its own."""

from __future__ import annotations

from ._caveats import derive_caveats, merge_caveats, score_caveats
from ._check import check_report
from ._html import build_report, render_report, report_context
from ._markdown import markdown_to_html

__all__ = [
    "build_report",
    "check_report",
    "derive_caveats",
    "markdown_to_html",
    "merge_caveats",
    "render_report",
    "report_context",
    "score_caveats",
]
