"""Command-line interface: ``perturbscore <command> ...``; each command lives in its own module."""

from __future__ import annotations

import re
import sys

from rich.console import Console

from .._errors import PerturbScoreError
from ._app import STATE, app

# Importing a command module registers its command on ``app`` (in pipeline order for ``--help``).
from . import _simulate, _featurize, _embed, _train, _evaluate, _score, _programs, _report, _demo  # noqa: E402,F401,I001  isort: skip

__all__ = ["app", "cli_wording", "main"]

#: Python-only advice inside messages shared with the Python API, and its command-line wording.
_PYTHON_ASIDE = re.compile(r"\s*\(Python: [^)]*\)")
_KEYWORD_WITH_FLAG = re.compile(r"\b[a-z_]+=(?:'[^']*'|\S+?) \((--[\w-]+(?: [^)\s]+)?)\)")
_REWORDED = {
    "Relabel the cells to the model's states or pass states=None to use the screen's own order.":
        "Pass the obs column that holds the model's states with --state-key, or relabel the cells.",
    "read the screen with states=model.states and the same state column the model was trained on":
        "pass the obs column the model was trained on with --state-key",
}  # fmt: skip


def cli_wording(message: str) -> str:
    """Reword an error message for the command line: flags, not Python keyword names.

    Messages shared with the Python API name both (``--state-key (Python: state_key=...)``, ``overwrite=True
    (--overwrite)``); on the command line only the flag is kept.
    """
    for python, cli in _REWORDED.items():
        message = message.replace(python, cli)
    message = _PYTHON_ASIDE.sub("", message)
    return _KEYWORD_WITH_FLAG.sub(r"\1", message)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear message (exit 2), tracebacks only with ``--debug``."""
    argv = sys.argv[1:] if argv is None else argv
    STATE["debug"] = "--debug" in argv
    try:
        app(args=argv, standalone_mode=False)
    except (PerturbScoreError, FileNotFoundError, PermissionError, IsADirectoryError) as err:
        if STATE["debug"]:
            raise
        console = Console(stderr=True)
        console.print("[bold red]error:[/] ", end="")
        console.print(cli_wording(str(err)), highlight=False, markup=False, soft_wrap=True)
        return 2
    except SystemExit as err:  # typer/click exit paths
        return int(err.code or 0)
    except Exception as err:  # click usage errors (typer may bundle its own click: match by shape)
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            return int(err.exit_code)
        if type(err).__name__ == "Abort":
            return 130
        raise
    return 0
