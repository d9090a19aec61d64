"""Checking that a written report opens on its own."""

from __future__ import annotations

import base64
import binascii
from html.parser import HTMLParser
from pathlib import Path

from .._errors import RunError


class _Resources(HTMLParser):
    """Collect every ``src``/``href`` value of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links.extend((tag, k, v or "") for k, v in attrs if k in ("src", "href"))


def check_report(path: Path) -> int:
    """Check that a report opens on its own.

    Every ``src``/``href`` must be an in-page anchor or a data URI, and every embedded PNG must decode.

    Returns
    -------
    The number of embedded images.

    Raises
    ------
    RunError
        The page needs a file or the network, or an image does not decode.
    """
    parser = _Resources()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    n_images = 0
    for tag, attr, value in parser.links:
        if value.startswith("#"):
            continue
        if not value.startswith("data:"):
            raise RunError(f"{path}: <{tag} {attr}={value[:80]!r}> needs a file or the network; the report is not "
                           "self-contained. Rebuild it with `perturbscore report --overwrite`")  # fmt: skip
        if value.startswith("data:image/png;base64,"):
            try:
                data = base64.b64decode(value.split(",", 1)[1], validate=True)
            except (binascii.Error, ValueError) as err:
                raise RunError(f"{path}: an embedded image is not valid base64 ({err}); rebuild the report") from err
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                raise RunError(f"{path}: an embedded image is not a PNG; rebuild the report")
            n_images += 1
    return n_images
