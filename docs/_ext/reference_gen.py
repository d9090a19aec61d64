"""Write the API and CLI reference pages from the code, at every build.

The API pages list each public namespace's ``__all__`` in an ``autosummary`` table (autosummary then writes one
page per object); the CLI page walks the typer app's command tree. Nothing here is hand-maintained, so the
reference follows the code as it changes.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Documented namespaces, in reading order: (module, section on the reference index, one-line purpose).
NAMESPACES: tuple[tuple[str, str, str], ...] = (
    ("pp", "Analysis", "preprocessing: each cell's front-end coordinates, computed once and stored"),
    ("tl", "Analysis", "fit, evaluate, score knockouts against targets, interpret programs"),
    ("pl", "Analysis", "plots (each returns a matplotlib Figure)"),
    ("io", "Input and output", "read and validate screens, features, targets and gene sets"),
    ("datasets", "Input and output", "simulated screens with known ground truth"),
    ("featurize", "Input and output", "gene features from TSS-centred sequence"),
    ("report", "Input and output", "the self-contained HTML run report"),
    ("model", "Model and evaluation", "the fitted model: save, load, statistics, predictions"),
    ("evaluation", "Model and evaluation", "metrics, baselines, paired evaluation, reproduce"),
    ("data", "Building blocks", "validated screens and episodic sampling"),
    ("nn", "Building blocks", "the PyTorch modules f, G, H and T"),
    ("train", "Building blocks", "training configuration, presets and loop"),
)
PACKAGE = "perturbscore"
OTHER = "Other namespaces"


def namespaces() -> list[tuple[str, str, str]]:
    """Return :data:`NAMESPACES`, then any other public subpackage (its docstring's first line as purpose)."""
    import pkgutil

    package = importlib.import_module(PACKAGE)
    known = {name for name, _, _ in NAMESPACES}
    extra = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg and not info.name.startswith("_") and info.name != "cli" and info.name not in known:
            doc = (importlib.import_module(f"{PACKAGE}.{info.name}").__doc__ or "").strip().split("\n")[0]
            extra.append((info.name, OTHER, doc.rstrip(".") or info.name))
    return [*NAMESPACES, *sorted(extra)]


@dataclass
class Namespace:
    """What one namespace's page shows."""

    name: str
    documented: dict[str, list[str]] = field(default_factory=dict)  # kind -> names documented here
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (name, full name of the documented object)


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "data"


def _home(obj: Any) -> str | None:
    """Return the namespace whose private modules define ``obj`` (``perturbscore.model._fit`` -> ``model``)."""
    module = getattr(obj, "__module__", None) if _kind(obj) != "data" else None
    if not module or not module.startswith(PACKAGE + "."):
        return None
    return module.split(".")[1]


def collect() -> list[Namespace]:
    """Each namespace's public names, each object documented once (in its home namespace), linked elsewhere."""
    spaces = namespaces()
    modules = {name: importlib.import_module(f"{PACKAGE}.{name}") for name, _, _ in spaces}
    exported = {name: list(getattr(mod, "__all__", ())) for name, mod in modules.items()}
    owner: dict[int, str] = {}  # id(obj) -> full name where it is documented
    # First pass: objects in their home namespace; second: the rest, in reading order.
    for home_pass in (True, False):
        for name, _, _ in spaces:
            for attr in exported[name]:
                obj = getattr(modules[name], attr)
                if _kind(obj) == "data" or id(obj) in owner:
                    continue
                if home_pass == (_home(obj) == name):
                    owner[id(obj)] = f"{PACKAGE}.{name}.{attr}"
    pages = []
    for name, _, _ in spaces:
        page = Namespace(name)
        for attr in exported[name]:
            obj = getattr(modules[name], attr)
            full = f"{PACKAGE}.{name}.{attr}"
            kind = _kind(obj)
            if kind != "data" and owner.get(id(obj), full) != full:
                page.aliases.append((attr, owner[id(obj)]))
            else:
                page.documented.setdefault(kind, []).append(attr)
        pages.append(page)
    return pages


_HEADINGS = {"function": "Functions", "class": "Classes", "exception": "Exceptions", "data": "Constants"}


def _attr_doc(module: Any, name: str) -> list[str]:
    """Return the ``#:`` comment of ``name``: in the namespace's own modules first, then anywhere in the package."""
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    package = importlib.import_module(PACKAGE)
    own = [module.__name__] + [
        info.name for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=module.__name__ + ".")
    ]
    everywhere = [  # never the command line's modules: importing __main__ would run it
        info.name
        for info in pkgutil.walk_packages(package.__path__, prefix=PACKAGE + ".")
        if not {"__main__", "cli"} & set(info.name.split("."))
    ]
    for modname in [*own, *everywhere]:
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # noqa: BLE001  (a module without source: nothing to find there)
            continue
        if ("", name) in docs:
            return [line for line in docs[("", name)] if line is not None]
    return []


def _describe(value: Any) -> list[str]:
    """Return a generated one-line description of a constant that has no ``#:`` comment."""
    from collections.abc import Mapping

    kind = type(value).__name__
    if isinstance(value, Mapping):
        keys = ", ".join(f"``{k!r}``" for k in list(value)[:8]) + (", ..." if len(value) > 8 else "")
        return [f"A ``{kind}`` of {len(value)} entries: {keys}."]
    if isinstance(value, tuple | list | set | frozenset):
        return [f"A ``{kind}`` of {len(value)} items."]
    return [f"A ``{kind}``."]


def _constant(module: Any, name: str) -> list[str]:
    """Return a ``py:data`` entry: the constant's ``#:`` comment, and its value when it is short."""
    obj = getattr(module, name)
    value = repr(obj)
    lines = [f".. py:data:: {name}"]
    short = len(value) <= 80 and "\n" not in value
    if short:
        lines.append(f"   :value: {value}")
    lines.append("")
    doc = _attr_doc(module, name) or ([] if short else _describe(obj))
    lines += [f"   {line}" if line else "" for line in doc]
    return [*lines, ""]


def _api_page(page: Namespace, purpose: str) -> str:
    mod = f"{PACKAGE}.{page.name}"
    module = importlib.import_module(mod)
    lines = [
        f"# `{mod}`",
        "",
        f"*{purpose}.* Generated at build time from `{mod}.__all__`.",
        "",
        "```{eval-rst}",
        f".. automodule:: {mod}",
        "   :no-members:",
        "",
        f".. currentmodule:: {mod}",
        "```",
        "",
    ]
    for kind in ("function", "class", "exception"):
        names = page.documented.get(kind)
        if not names:
            continue
        lines += [f"## {_HEADINGS[kind]}", "", "```{eval-rst}", ".. autosummary::", "   :toctree: ../generated", ""]
        lines += [f"   {n}" for n in sorted(names, key=str.lower)]
        lines += ["```", ""]
    if page.documented.get("data"):
        lines += [f"## {_HEADINGS['data']}", "", "```{eval-rst}", f".. currentmodule:: {mod}", ""]
        for name in sorted(page.documented["data"], key=str.lower):
            lines += _constant(module, name)
        lines += ["```", ""]
    if page.aliases:
        lines += ["## Also available here", "", "The same objects as elsewhere, under this namespace too:", ""]
        lines += ["```{eval-rst}", f".. currentmodule:: {mod}", ""]
        for attr, full in page.aliases:
            role = "class" if inspect.isclass(getattr(module, attr)) else "function"
            lines += [
                f".. py:{role}:: {attr}",
                "   :no-contents-entry:",
                "",
                f"   The same as :{'class' if role == 'class' else 'func'}:`{full}`.",
                "",
            ]
        lines += ["```", ""]
    return "\n".join(lines)


def _api_index(pages: list[Namespace]) -> str:
    purposes = {name: (section, purpose) for name, section, purpose in namespaces()}
    lines = [
        "# Python API",
        "",
        "```python",
        "import perturbscore as ps",
        "```",
        "",
        "Each namespace below is `ps.<name>`; its page lists everything in its `__all__`.",
        "",
    ]
    section = None
    for page in pages:
        sec, purpose = purposes[page.name]
        if sec != section:
            lines += [f"## {sec}", ""]
            section = sec
        lines.append(f"- [`ps.{page.name}`]({page.name}.md): {purpose}")
    lines += ["", "```{toctree}", ":hidden:", ""] + [p.name for p in pages] + ["```", ""]
    return "\n".join(lines)


# ---- CLI ----------------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Return one line of help text for a table cell: pipes escaped, and ``*`` and ``<`` outside code spans."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside backtick code spans
        parts[i] = parts[i].replace("*", "\\*").replace("<", "\\<")
    return "`".join(parts)


def _flags(param: Any) -> str:
    if getattr(param, "param_type_name", "") == "argument":
        return (param.metavar or param.name).upper()
    flags = list(param.opts)
    if getattr(param, "secondary_opts", None):
        flags = [f"{a} / {b}" for a, b in zip(param.opts, param.secondary_opts, strict=False)] or flags
    return ", ".join(flags)


_TYPE_NAMES = {"Path": "path", "int": "integer", "float": "number", "str": "text", "bool": "flag"}


def _type(param: Any) -> str:
    """Return a short type name from click's ``type`` or, for typer's own parameter classes, the annotation."""
    if getattr(param, "is_flag", False):
        return "flag"
    click_type = getattr(param, "type", None)
    if click_type is not None and getattr(click_type, "name", None):
        return str(click_type.name).lower()
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None:
        return ""
    args = getattr(annotation, "__args__", None)
    if args:  # list[X]: repeatable
        return f"{_TYPE_NAMES.get(getattr(args[0], '__name__', ''), 'text')}, repeatable"
    return _TYPE_NAMES.get(getattr(annotation, "__name__", ""), "text")


def _default(param: Any) -> str:
    if getattr(param, "required", False):
        return "required"
    shown = getattr(param, "show_default", None)
    if isinstance(shown, str):  # a default described in words, as --help shows it
        return _cell(shown)
    default = param.default
    if default is None or getattr(param, "is_flag", False) and default is False:
        return ""
    if callable(default) or repr(default).startswith("<"):
        return ""
    return f"`{default}`"


def _param_table(params: list[Any]) -> list[str]:
    rows = [p for p in params if not getattr(p, "hidden", False) and p.name != "help"]
    if not rows:
        return []
    out = ["| option | type | default | what it does |", "|---|---|---|---|"]
    for p in rows:
        out.append(f"| `{_flags(p)}` | {_type(p)} | {_default(p)} | {_cell(getattr(p, 'help', '') or '')} |")
    return [*out, ""]


def _usage(prog: str, cmd: Any) -> str:
    args = [
        (p.metavar or p.name).upper() + ("..." if p.nargs == -1 else "")
        if p.required
        else f"[{(p.metavar or p.name).upper()}]"
        for p in cmd.params
        if getattr(p, "param_type_name", "") == "argument"
    ]
    return " ".join([prog, "[OPTIONS]", *args])


def cli_page() -> str:
    """Return the CLI reference as MyST markdown, from the typer app's command tree."""
    import typer.main

    from perturbscore.cli import app

    group = typer.main.get_command(app)
    prog = PACKAGE
    lines = [
        "# Command line",
        "",
        "Generated at build time from the `perturbscore` typer app (`perturbscore.cli.app`). "
        "Every command also answers `--help`.",
        "",
        "```text",
        f"{prog} [GLOBAL OPTIONS] COMMAND [ARGS]...",
        "```",
        "",
        _cell(group.help or ""),
        "",
        "Global options (before the command):",
        "",
        *_param_table(list(group.params)),
        "| command | what it does |",
        "|---|---|",
    ]
    commands = list(group.commands.items())
    for name, cmd in commands:
        summary = (cmd.help or "").strip().split("\n\n")[0]
        lines.append(f"| [`{name}`](#cli-{name}) | {_cell(summary)} |")
    lines.append("")
    for name, cmd in commands:
        lines += [
            f"(cli-{name})=",
            f"## `{prog} {name}`",
            "",
            "```text",
            _usage(f"{prog} {name}", cmd),
            "```",
            "",
            _cell(cmd.help or ""),
            "",
            *_param_table(list(cmd.params)),
        ]
        if cmd.epilog:  # click's \b marks a paragraph kept as written: shown as a text block
            lines += ["```text", *[ln for ln in cmd.epilog.splitlines() if ln != "\b"], "```", ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    """Write only when the text changed, so Sphinx does not re-read unchanged pages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def panel_section(docs: Path) -> str:
    """Return the evaluation page's panel section: the table ``make panel`` wrote, or how to make it."""
    intro = (
        "`make panel` trains the default with three seeds on each screen of a panel of simulated screens that "
        "differ in where the signal lies (strong or no sequence signal, strong or no state shifts, a "
        "15,077-gene screen, clean labels) and evaluates every baseline beside it"
    )
    simulate = (
        " Any screen of the panel can be written to disk on its own, to train or score on it: "
        "`perturbscore simulate --like shift_none --out DIR` (the knobs can also be set one by one: "
        "`--feature-signal`, `--within-state-shift`, `--label-noise`).\n"
    )
    if not (docs / "results" / "panel.md").is_file():
        return f"## Across screens\n\n{intro}; its table appears here once `make panel` has been run.{simulate}"
    out = (
        f"## Across screens\n\n{intro}. It writes the table below to `docs/results/panel.md` (raw numbers in "
        "`panel.json`); the table's first lines say how it was measured.\n\n"
        f"{simulate.lstrip()}\n```{{include}} ../results/panel.md\n:heading-offset: 2\n```\n"
        "\n### Where the cells add little\n\n"
        "- **Strong gene features** (`features_strong`): the default sits only a few per cent below empirical "
        "Bayes with a few cells, where on the default screen it is about a third below, although the two screens "
        "hold the very same cells (only the features differ). In the simulator a knockout's within-state shifts "
        "and its features both follow its one latent effect: once the features say what the effect is, a few "
        "cells' expression says little more, and the label counts carry the rest. Expect the learned statistic to matter most where "
        "the features are weak.\n"
        "- **No within-state shifts** (`shift_none`): a knockout's cells then say only which states they are in, "
        "so a statistic of ten cells can be only as stable as their labels and the gene's features allow. The "
        "default's stability is the panel's lowest there, and no lower than that of empirical Bayes's posterior "
        "mix from the same ten cells (in brackets in the stability column), which reads just those labels and "
        "features.\n"
    )
    if (docs / "results" / "panel_folds.md").is_file():
        out += (
            "\n### Every knockout held out\n\n"
            "Ten held-out knockouts resolve a gap to the best baseline only to a few per cent (the ± above), so a "
            'strict check such as "at or below the best baseline at every k" can fail on one split by the luck '
            "of which ten were held out. `make panel-folds` reruns the screens where the default is "
            "above the best baseline at some k on the ten held-out knockouts, with every knockout held out once (5 folds, 3 seeds each), so each gap is measured on all 64 knockouts. "
            "Judge the default by these gaps and their standard errors: never worse than the best baseline by "
            "two standard errors (raw numbers in `panel_folds.json`).\n\n"
            "```{include} ../results/panel_folds.md\n:heading-offset: 3\n```\n"
        )
    return out


def generate(docs: Path) -> None:
    """Write ``reference/api/*.md`` and ``reference/cli.md`` under ``docs``."""
    pages = collect()
    purposes = {name: purpose for name, _, purpose in namespaces()}
    api = docs / "reference" / "api"
    for page in pages:
        _write(api / f"{page.name}.md", _api_page(page, purposes[page.name]))
    _write(api / "index.md", _api_index(pages))
    # autosummary writes a stub per documented function and class; drop those of names no longer public
    expected = {
        f"{PACKAGE}.{page.name}.{attr}"
        for page in pages
        for kind, names in page.documented.items()
        if kind != "data"
        for attr in names
    }
    for stub in (docs / "reference" / "generated").glob("*.*"):
        if stub.stem not in expected:
            stub.unlink()
    stale = {p.name for p in api.glob("*.md")} - {f"{p.name}.md" for p in pages} - {"index.md"}
    for name in stale:
        (api / name).unlink()
    _write(docs / "reference" / "cli.md", cli_page())
    _write(docs / "explanation" / "_panel.md", panel_section(docs))
