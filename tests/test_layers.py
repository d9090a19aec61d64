"""The package's layers read top-down: each subpackage imports only the ones below it, and the CLI only
public names (no ``_module`` of another subpackage)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "perturbscore"
#: Bottom to top. The root's private helpers (``_errors``, ``_utils``, ``_constants``) serve every layer.
LAYERS = (
    "data",
    "nn",
    "io",
    "featurize",
    "datasets",
    "pp",
    "train",
    "model",
    "evaluation",
    "tl",
    "pl",
    "report",
    "cli",
)
#: Layers that call each other (the embedding pass fits the front end as training does; training embeds once).
SAME_LEVEL = {"pp": "train"}
ROOT_HELPERS = {"_errors", "_utils", "_constants", "__version__"}


def _imports(path: Path) -> list[tuple[str, str | None, list[str]]]:
    """Return ``(subpackage, module below it or None, names)`` for every import of another subpackage."""
    rel = path.relative_to(SRC).parts
    here = list(rel[:-1])
    out = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:  # type annotations only: no import at run time
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            parts = (node.module or "").split(".")
            if parts[0] != "perturbscore" or len(parts) < 2:
                continue
            target = parts[1:]
        else:
            target = here[: len(here) - (node.level - 1)] + [p for p in (node.module or "").split(".") if p]
        names = [a.name for a in node.names]
        if not target:  # ``from .. import x``: x is a subpackage or a root name
            out.extend((n, None, []) for n in names)
        elif not here or target[0] != here[0]:
            out.append((target[0], target[1] if len(target) > 1 else None, names))
    return out


def _files(layer: str) -> list[Path]:
    folder = SRC / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else []


@pytest.mark.parametrize("layer", [name for name in LAYERS if (SRC / name).is_dir()])
def test_a_layer_imports_only_layers_below_it(layer: str) -> None:
    level = LAYERS.index(SAME_LEVEL.get(layer, layer))
    below = set(LAYERS[:level]) | {k for k, v in SAME_LEVEL.items() if v == layer} | {SAME_LEVEL.get(layer, layer)}
    below |= ROOT_HELPERS
    bad = [
        f"{path.relative_to(SRC)} imports {target}"
        for path in _files(layer)
        for target, _, _ in _imports(path)
        if target not in below
    ]
    assert bad == []


def test_every_subpackage_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS)


def test_cli_imports_public_names_only() -> None:
    bad = [
        f"{path.relative_to(SRC)} imports {target}.{module}"
        for path in _files("cli")
        for target, module, _ in _imports(path)
        if module is not None and module.startswith("_")
    ]
    assert bad == []
