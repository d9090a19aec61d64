"""Small Sphinx hooks for the perturbscore docs: markdown tables in module docstrings, quieter build output."""

from __future__ import annotations

import re
import warnings
from typing import Any

_ROW = re.compile(r"^\s*\|.*\|\s*$")
_RULE = re.compile(r"^\s*\|[\s:|-]+\|\s*$")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_tables_to_rst(lines: list[str]) -> list[str]:
    """Rewrite pipe tables (``| a | b |`` rows, a ``|---|`` rule after the header) as RST list-tables.

    Some module docstrings carry a markdown table, which reStructuredText would read as substitutions.
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _ROW.match(lines[i]) and i + 1 < len(lines) and _RULE.match(lines[i + 1]):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and _ROW.match(lines[i]):
                rows.append(_cells(lines[i]))
                i += 1
            out += [".. list-table::", "   :header-rows: 1", ""]
            for row in [header, *rows]:
                out += [f"   * - {row[0]}"] + [f"     - {cell}" for cell in row[1:]]
            out.append("")
            continue
        out.append(lines[i])
        i += 1
    return out


def _process_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if any(_ROW.match(line) for line in lines):
        lines[:] = markdown_tables_to_rst(lines)


def setup(app: Any) -> dict[str, Any]:
    """Register the hooks."""
    try:  # sphinx-autodoc-typehints calls an API Sphinx 10 removes; the notice is not ours to fix
        from sphinx.deprecation import RemovedInSphinx10Warning

        warnings.filterwarnings("ignore", category=RemovedInSphinx10Warning)
    except ImportError:
        pass
    app.connect("autodoc-process-docstring", _process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
