"""Render a report.html in headless Chromium and check the screenshot is not blank.

Usage::

    python tools/report_check.py runs/demo/report.html [--out shot.png] [--chromium PATH]

Prints the screenshot's path and exits 0 when the page rendered to a non-blank image; exits 0 with
``skipped: chromium not found`` when no Chromium is installed; exits 1 on a failed render. The page is
opened from disk with networking features off, so a report that needs the network shows up broken.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tools' shared helpers, however this file is loaded
from _chromium import find_chromium  # noqa: E402


def screenshot(chromium: str, page: Path, out: Path, *, width: int = 1280, height: int = 4000) -> None:
    """Render ``page`` to the PNG ``out`` with headless Chromium (raises on failure or timeout)."""
    with tempfile.TemporaryDirectory(prefix="report-check-") as profile:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={out}",
            f"--window-size={width},{height}", page.resolve().as_uri(),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def is_blank(png: Path) -> bool:
    """True when the image has a single colour (nothing rendered)."""
    import matplotlib.image as mpimg

    img = np.asarray(mpimg.imread(png))  # (H, W, channels)
    pixels = img.reshape(-1, img.shape[-1]) if img.ndim == 3 else img.reshape(-1, 1)
    return np.unique(pixels, axis=0).shape[0] <= 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report.html to render")
    parser.add_argument("--out", type=Path, default=None, help="screenshot path (default: <report>.png)")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: search PATH)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report} does not exist; pass the path of a report.html", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None and args.chromium:
        print(f"error: --chromium {args.chromium} is not an executable; fix the path or leave it out", file=sys.stderr)
        return 2
    if chromium is None:
        print("skipped: chromium not found")
        return 0
    out = (args.out or args.report.with_suffix(".png")).resolve()
    out.unlink(missing_ok=True)
    try:
        screenshot(chromium, args.report, out)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        stderr = getattr(err, "stderr", b"") or b""
        print(f"error: chromium failed: {err}\n{stderr.decode(errors='replace')[-2000:]}", file=sys.stderr)
        return 1
    if not out.is_file() or out.stat().st_size == 0:
        print(f"error: chromium wrote no screenshot at {out}", file=sys.stderr)
        return 1
    if is_blank(out):
        print(f"error: screenshot {out} is blank (one colour)", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
