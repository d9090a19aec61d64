"""Check the built documentation site (``make docs-check``).

1. Headless Chromium screenshots of the built index and tutorial pages, checked to hold a readable page
   (not blank, not a browser error page); their paths are printed so they can be looked at.
2. Every page the index links to exists in the build.
3. Every public object (each namespace's ``__all__``) is in the API reference, and every CLI command and option
   of the typer app is in the CLI reference.
4. The tutorial page holds its executed outputs (figures and tables).
5. ``docs/results`` holds at most 15 files, each cited by a page, and no page is about internal work sessions.

Exit status 0 when every check passes, 1 otherwise (every failure is listed).

Usage: ``python tools/docs_check.py docs/_build/html [--screenshots DIR]``
"""

from __future__ import annotations

import argparse
import html.parser
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urldefrag, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tools' shared helpers, however this file is loaded
from _chromium import find_chromium  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MAX_RESULTS = 15
#: Words that mark a page as written about internal work rather than about the package.
INTERNAL = re.compile(r"\bsession[ -]?\d+|\bsession\d|\bissue[ -]?#?\d+|DESIGN\s*§", re.IGNORECASE)
#: Pages to screenshot: (page in the build, screenshot name, window height in px).
SHOTS = (
    ("index.html", "index.png", 1600),
    ("tutorials/tutorial.html", "tutorial.png", 2400),
    ("tutorials/tutorial.html", "tutorial-full.png", 9000),  # the whole notebook, figures included
)


class _Links(html.parser.HTMLParser):
    """Collect the ``href`` of every ``<a>`` and the ``id`` of every element."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "img" and values.get("src"):
            self.images.append(values["src"] or "")
        if values.get("id"):
            self.ids.add(values["id"] or "")


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def check_index_links(build: Path) -> list[str]:
    """Every local page linked from ``index.html`` exists."""
    index = build / "index.html"
    if not index.is_file():
        return [f"{index} does not exist: build the docs first (make docs)"]
    problems = []
    pages = set()
    for href in _parse(index).hrefs:
        url, _ = urldefrag(href)
        if not url or urlparse(url).scheme or url.startswith(("mailto:", "//")):
            continue
        pages.add(url)
    for url in sorted(pages):
        if not (build / url).resolve().is_file():
            problems.append(f"index.html links to {url}, which is not in the build")
    if len(pages) < 10:
        problems.append(f"index.html links to only {len(pages)} local pages; the navigation seems to be missing")
    print(f"index links: {len(pages)} local pages, {len(pages) - len(problems)} present")
    return problems


def _inventory(build: Path) -> set[str]:
    from sphinx.util.inventory import InventoryFile

    with (build / "objects.inv").open("rb") as fh:
        inv = InventoryFile.load(fh, "", lambda base, uri: uri)
    names: set[str] = set()
    for role, entries in inv.items():
        if role.startswith("py:"):
            names.update(entries)
    return names


def public_namespaces() -> list[str]:
    """Every public subpackage of perturbscore except the CLI (documented from the typer app instead)."""
    import perturbscore

    return sorted(
        info.name
        for info in pkgutil.iter_modules(perturbscore.__path__)
        if info.ispkg and not info.name.startswith("_") and info.name != "cli"
    )


def check_api(build: Path) -> list[str]:
    """Every name in each namespace's ``__all__`` is documented, or is the same object as one that is."""
    problems = []
    documented = _inventory(build)
    objects: dict[int, str] = {}
    modules = {ns: importlib.import_module(f"perturbscore.{ns}") for ns in public_namespaces()}
    for ns, mod in modules.items():
        for name in getattr(mod, "__all__", ()):
            full = f"perturbscore.{ns}.{name}"
            obj = getattr(mod, name)
            if full in documented and (inspect.isclass(obj) or callable(obj)):
                objects[id(obj)] = full
    n = 0
    for ns, mod in modules.items():
        names = list(getattr(mod, "__all__", ()))
        if not names:
            problems.append(f"perturbscore.{ns} has no __all__")
        page = build / "reference" / "api" / f"{ns}.html"
        if not page.is_file():
            problems.append(f"no API page for perturbscore.{ns} ({page.relative_to(build)})")
            continue
        text = page.read_text(encoding="utf-8")
        for name in names:
            n += 1
            full = f"perturbscore.{ns}.{name}"
            if full in documented:
                continue
            alias = objects.get(id(getattr(mod, name)))
            if alias and name in text:
                continue  # a re-export, listed on this page and linked to where it is documented
            problems.append(f"{full} is public (in __all__) but not in the API reference")
    print(f"API reference: {n} public names in {len(modules)} namespaces checked")
    return problems


def check_cli(build: Path) -> list[str]:
    """Every command of the typer app, and every option of each, is on the CLI page."""
    import typer.main

    from perturbscore.cli import app

    page = build / "reference" / "cli.html"
    if not page.is_file():
        return [f"no CLI reference page ({page.relative_to(build)})"]
    text = page.read_text(encoding="utf-8")
    ids = _parse(page).ids
    problems = []
    group = typer.main.get_command(app)
    n_options = 0
    for name, cmd in group.commands.items():
        if f"cli-{name}" not in ids:
            problems.append(f"CLI command {name!r} has no section on the CLI page")
        for param in cmd.params:
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            flags = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
            if getattr(param, "param_type_name", "") == "argument":
                flags = [(param.metavar or param.name).upper()]
            n_options += 1
            if not any(flag in text for flag in flags):
                problems.append(f"option {flags[0]} of {name!r} is not on the CLI page")
    print(f"CLI reference: {len(group.commands)} commands, {n_options} options and arguments checked")
    return problems


def check_tutorial_outputs(build: Path) -> list[str]:
    """The tutorial page carries the notebook's executed outputs: figures and tables."""
    page = build / "tutorials" / "tutorial.html"
    if not page.is_file():
        return ["no tutorial page (tutorials/tutorial.html)"]
    text = page.read_text(encoding="utf-8")
    images = [src for src in _parse(page).images if "_images/" in src]
    outputs = text.count("cell_output")
    problems = []
    if len(images) < 5:
        problems.append(f"the tutorial page shows {len(images)} figures; its notebook draws at least 5")
    if outputs < 8 or "<table" not in text:
        problems.append(f"the tutorial page has {outputs} cell outputs and no table: was the notebook executed?")
    for src in images:
        if not (page.parent / src).resolve().is_file():
            problems.append(f"tutorial figure {src} is missing from the build")
    print(f"tutorial: {len(images)} figures, {outputs} cell outputs")
    return problems


def check_sources() -> list[str]:
    """``docs/results`` is small and cited; no page is about internal work sessions."""
    problems = []
    results = DOCS / "results"
    files = sorted(p for p in results.rglob("*") if p.is_file())
    if len(files) > MAX_RESULTS:
        problems.append(f"docs/results holds {len(files)} files (at most {MAX_RESULTS})")
    pages = [
        p
        for p in DOCS.rglob("*")
        if p.suffix in {".md", ".ipynb", ".rst", ".py", ".txt"}
        and "_build" not in p.parts
        and "jupyter_execute" not in p.parts
    ]
    cited = "\n".join(p.read_text(encoding="utf-8") for p in pages if results not in p.parents)
    for f in files:
        if f.name not in cited:
            problems.append(f"docs/results/{f.relative_to(results)} is not cited by any page")
    for p in [*pages, *files]:
        if p.suffix in {".png", ".json"}:
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if INTERNAL.search(line):
                problems.append(f"{p.relative_to(ROOT)}:{i} refers to internal work: {line.strip()[:100]}")
    print(f"docs/results: {len(files)} files; {len(pages)} source pages scanned")
    return problems


def screenshot(chromium: str, page: Path, out: Path, height: int) -> None:
    """Render ``page`` headless into the PNG ``out`` (1280 px wide)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}",
            f"--window-size=1280,{height}",
            "--virtual-time-budget=5000",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)


def readable(png: Path) -> str | None:
    """Return why the screenshot does not look like a rendered page, or None if it does."""
    from PIL import Image

    if not png.is_file() or png.stat().st_size < 20_000:
        return f"{png} is missing or too small to hold a page"
    with Image.open(png) as img:
        grey = img.convert("L")
        width, height = grey.size
        hist = grey.histogram()
    total = width * height
    light = sum(hist[200:]) / total  # page background
    dark = sum(hist[:100]) / total  # text
    if light < 0.5:
        return f"{png}: mostly dark ({light:.0%} light pixels): not a rendered page"
    if dark < 0.005:
        return f"{png}: almost no dark pixels ({dark:.2%}): no text rendered"
    return None


def check_screenshots(build: Path, out_dir: Path) -> list[str]:
    """Screenshot the index and the tutorial and check that each shows a readable page."""
    chromium = find_chromium()
    if chromium is None:
        return ["no Chromium found; install it (apt-get update && apt-get install -y chromium) and rerun"]
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = []
    for page, name, height in SHOTS:
        png = out_dir / name
        png.unlink(missing_ok=True)
        try:
            screenshot(chromium, build / page, png, height)
        except (subprocess.SubprocessError, OSError) as err:
            problems.append(f"screenshot of {page} failed: {err}")
            continue
        why = readable(png)
        if why:
            problems.append(why)
        else:
            print(f"screenshot: {png} ({page})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the built HTML folder (docs/_build/html)")
    parser.add_argument("--screenshots", type=Path, default=None, help="where to write the PNGs")
    parser.add_argument("--no-screenshots", action="store_true", help="skip the Chromium screenshots")
    args = parser.parse_args(argv)
    build: Path = args.build
    problems = check_index_links(build)
    if (build / "objects.inv").is_file():
        problems += check_api(build)
        problems += check_cli(build)
        problems += check_tutorial_outputs(build)
    else:
        problems.append(f"{build / 'objects.inv'} does not exist: build the docs first (make docs)")
    problems += check_sources()
    if not args.no_screenshots:
        problems += check_screenshots(build, args.screenshots or build.parent / "screenshots")
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    print("docs-check: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
