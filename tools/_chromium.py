"""Finding the headless browser the screenshot checks (report, docs) render with."""

from __future__ import annotations

import shutil

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium(explicit: str | None = None) -> str | None:
    """Path of a Chromium binary: ``explicit``, else the first of :data:`CANDIDATES` found; None if absent."""
    for name in (explicit,) if explicit else CANDIDATES:
        found = shutil.which(name) if name else None
        if found:
            return found
    return None
