"""Self-contained HTML report of a run directory."""

from __future__ import annotations

from ._html import build_report, render_report
from ._markdown import markdown_to_html

__all__ = ["build_report", "markdown_to_html", "render_report"]
