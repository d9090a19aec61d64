"""A small, safe Markdown-to-HTML converter for the run report (eval.md and similar).

Supports ATX headings, paragraphs, bullet and numbered lists, fenced code blocks, pipe tables
(with alignment), inline code, bold, italics and links. All text is HTML-escaped first. Links never
become ``href``s to other sites (the report must not point outside itself): only ``#anchor`` links
stay links; any other link is shown as its text followed by the target in plain text.
"""

from __future__ import annotations

import html
import re

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline(text: str) -> str:
    """Convert inline Markdown of one line to HTML; the text is escaped."""
    codes: list[str] = []

    def stash(m: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(m.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE_SPAN.sub(stash, text)
    text = html.escape(text, quote=True)
    text = _LINK.sub(_link, text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], text)


def _link(m: re.Match[str]) -> str:
    label, target = m.group(1), m.group(2)
    if re.fullmatch(r"#[\w\-.:]+", target):
        return f'<a href="{target}">{label}</a>'
    return f'{label} (<span class="url">{target}</span>)'


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def _alignments(sep: str) -> list[str]:
    out = []
    for cell in _cells(sep):
        left, right = cell.startswith(":"), cell.endswith(":")
        out.append("center" if left and right else "right" if right else "left")
    return out


def _table(header: str, sep: str, body: list[str]) -> str:
    aligns = _alignments(sep)
    heads = _cells(header)

    def row(cells: list[str], tag: str) -> str:
        cells = (cells + [""] * len(heads))[: len(heads)]
        tds = "".join(
            f'<{tag} style="text-align:{aligns[i] if i < len(aligns) else "left"}">{inline(c)}</{tag}>'
            for i, c in enumerate(cells)
        )
        return f"<tr>{tds}</tr>"

    rows = "\n".join(row(_cells(b), "td") for b in body)
    return f'<table class="data">\n<thead>{row(heads, "th")}</thead>\n<tbody>\n{rows}\n</tbody>\n</table>'


def markdown_to_html(text: str, *, heading_offset: int = 0) -> str:
    """Convert Markdown ``text`` to an HTML fragment.

    Parameters
    ----------
    text
        Markdown source.
    heading_offset
        Added to every heading level (capped at 6), to nest a document under the report's own headings.

    Returns
    -------
    HTML fragment; every piece of source text is escaped.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            out.append(f"<p>{inline(' '.join(s.strip() for s in para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1 : j]))}</code></pre>")
            i = j + 1
        elif not line.strip():
            flush()
            i += 1
        elif m := _HEADING.match(line):
            flush()
            level = min(6, len(m.group(1)) + heading_offset)
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
            i += 1
        elif "|" in line and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]) and "-" in lines[i + 1]:
            flush()
            j = i + 2
            while j < len(lines) and lines[j].strip() and "|" in lines[j]:
                j += 1
            out.append(_table(line, lines[i + 1], lines[i + 2 : j]))
            i = j
        elif _BULLET.match(line) or _NUMBERED.match(line):
            flush()
            i = _list(lines, i, out)
        else:
            para.append(line)
            i += 1
    flush()
    return "\n".join(out)


def _list(lines: list[str], i: int, out: list[str]) -> int:
    """Emit one flat list starting at line ``i``; return the index after it."""
    pattern, tag = (_BULLET, "ul") if _BULLET.match(lines[i]) else (_NUMBERED, "ol")
    items: list[str] = []
    while i < len(lines):
        if m := pattern.match(lines[i]):
            items.append(m.group(1))
        elif lines[i].strip() and lines[i].startswith((" ", "\t")) and items:
            items[-1] += " " + lines[i].strip()  # continuation of the previous item
        else:
            break
        i += 1
    out.append(f"<{tag}>" + "".join(f"<li>{inline(it)}</li>" for it in items) + f"</{tag}>")
    return i
