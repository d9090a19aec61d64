"""Check, in headless Chromium at 1280 px, that every table of a report.html shows all of its columns.

Usage::

    python tools/report_layout.py runs/demo/report.html [--width 1280] [--chromium PATH] [--screenshot shot.png]

A copy of the page gets a small script that measures, once laid out, every table against the box that shows
it: a table wider than its box (it would scroll sideways), or a header cell whose right edge lies beyond the
box or the window, is a hidden column. The page itself must not scroll sideways either. Chromium prints the
laid-out page (``--dump-dom``) and the measurements are read back from it. Exits 0 when every column is
visible, 1 when one is hidden (each listed), 2 on bad arguments or when Chromium is missing or fails.
With ``--screenshot`` the page is also rendered to a PNG at the same width.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tools' shared helpers, however this file is loaded
from _chromium import find_chromium  # noqa: E402

MARKER = "report-layout-check"

# Runs after the page is parsed; writes its findings into an attribute of <body> (read from --dump-dom).
SCRIPT = """
<script>
(function () {
  var root = document.documentElement;
  var out = {viewport: root.clientWidth, page_scroll_width: root.scrollWidth, tables: []};
  document.querySelectorAll("table").forEach(function (t, i) {
    var box = t.parentElement;
    var shown = box.getBoundingClientRect();
    var right = Math.min(shown.right, window.innerWidth);
    var hidden = [];
    var heads = t.querySelectorAll("thead th");
    if (!heads.length && t.rows.length) { heads = t.rows[0].cells; }
    Array.prototype.forEach.call(heads, function (th, j) {
      var b = th.getBoundingClientRect();
      if (b.right > right + 1 || b.width < 2) { hidden.push((th.textContent || ("column " + (j + 1))).trim().slice(0, 40)); }
    });
    var cap = t.querySelector("caption");
    var h = t.closest("section") ? t.closest("section").querySelector("h2") : null;
    out.tables.push({
      index: i,
      where: (h ? h.textContent : "") + (cap ? ": " + cap.textContent : ""),
      columns: heads.length,
      table_width: Math.round(t.getBoundingClientRect().width),
      box_width: Math.round(shown.width),
      box_scroll_width: box.scrollWidth,
      box_client_width: box.clientWidth,
      hidden: hidden
    });
  });
  document.body.setAttribute("data-MARKER", JSON.stringify(out));
})();
</script>
""".replace("MARKER", MARKER)


def _chromium(chromium: str, page: Path, *args: str, width: int, height: int) -> str:
    with tempfile.TemporaryDirectory(prefix="report-layout-") as profile:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", *args, page.resolve().as_uri(),
        ]  # fmt: skip
        done = subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    return done.stdout.decode("utf-8", errors="replace")


def measure(chromium: str, report: Path, *, width: int = 1280) -> dict:
    """Lay ``report`` out at ``width`` px in Chromium and return the measurements of its tables."""
    text = report.read_text(encoding="utf-8")
    body_end = text.rfind("</body>")
    probe = text[:body_end] + SCRIPT + text[body_end:] if body_end >= 0 else text + SCRIPT
    with tempfile.TemporaryDirectory(prefix="report-layout-page-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(probe, encoding="utf-8")
        dom = _chromium(chromium, page, "--dump-dom", "--virtual-time-budget=5000", width=width, height=1000)
    found = re.search(rf'data-{MARKER}="([^"]*)"', dom)
    if found is None:
        raise RuntimeError("Chromium returned no measurements (the probe script did not run)")
    return json.loads(html.unescape(found.group(1)))


def problems(result: dict) -> list[str]:
    """Every hidden column, table that scrolls sideways, or sideways scroll of the page, as sentences."""
    out = []
    if result["page_scroll_width"] > result["viewport"] + 1:
        out.append(
            f"the page scrolls sideways: {result['page_scroll_width']} px wide in a {result['viewport']} px window"
        )
    for t in result["tables"]:
        where = t["where"] or f"table {t['index'] + 1}"
        if t["box_scroll_width"] > t["box_client_width"] + 1:
            out.append(f"{where}: the table is {t['box_scroll_width']} px wide but {t['box_client_width']} px are "
                       "shown (it scrolls sideways)")  # fmt: skip
        if t["hidden"]:
            out.append(f"{where}: columns hidden at this width: {', '.join(t['hidden'])}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report.html to check")
    parser.add_argument("--width", type=int, default=1280, help="window width in px (default 1280)")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: search PATH)")
    parser.add_argument("--screenshot", type=Path, default=None, help="also render the page to this PNG")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report} does not exist; pass the path of a report.html", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("error: Chromium not found; install it (apt-get install chromium) or pass --chromium PATH",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        result = measure(chromium, args.report, width=args.width)
        if args.screenshot is not None:
            _chromium(chromium, args.report, f"--screenshot={args.screenshot.resolve()}", width=args.width,
                      height=8000)  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError, ValueError) as err:
        print(f"error: Chromium failed: {err}", file=sys.stderr)
        return 2
    issues = problems(result)
    n_cols = sum(t["columns"] for t in result["tables"])
    if issues:
        print(f"FAIL at {args.width} px: " + "; ".join(issues))
        return 1
    shot = f"; screenshot {args.screenshot}" if args.screenshot else ""
    print(f"ok at {args.width} px: {len(result['tables'])} tables, {n_cols} columns, all visible{shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
