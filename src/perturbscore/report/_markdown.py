"""Markdown to HTML for the report, with markdown-it-py (CommonMark, plus pipe tables).

markdown-it-py is already installed with rich (which the CLI uses), is CommonMark-compliant and well kept, so
it replaces a hand-written converter. Raw HTML in the source is escaped, never passed through. Links never
become ``href``s to other pages (the report must open on its own): only ``#anchor`` links stay links; any
other link is shown as its text followed by the target in plain text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token


def _link_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    href = str(tokens[idx].attrGet("href") or "")
    stack = env.setdefault("links", [])
    if href.startswith("#"):
        stack.append(None)
        return self.renderToken(tokens, idx, options, env)
    stack.append(href)
    return ""


def _link_close(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    href = env.setdefault("links", [None]).pop()
    if href is None:
        return self.renderToken(tokens, idx, options, env)
    return f' (<span class="url">{html.escape(href)}</span>)'


def _parser(heading_offset: int) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("link_close", _link_close)

    def heading(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
        token = tokens[idx]
        token.tag = f"h{min(6, int(token.tag[1]) + heading_offset)}"
        return self.renderToken(tokens, idx, options, env)

    def table_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
        tokens[idx].attrSet("class", "data")
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("heading_open", heading)
    md.add_render_rule("heading_close", heading)
    md.add_render_rule("table_open", table_open)
    return md


def markdown_to_html(text: str, *, heading_offset: int = 0) -> str:
    """Convert Markdown ``text`` to an HTML fragment.

    Parameters
    ----------
    text
        Markdown source (CommonMark with pipe tables).
    heading_offset
        Added to every heading level (capped at 6), to nest a document under the report's own headings.

    Returns
    -------
    HTML fragment; raw HTML in the source is escaped, and only in-page (``#``) links are links.
    """
    return _parser(heading_offset).render(text, {"links": []}).strip()
