"""Command-line interface: ``perturbscore <command> ...``; each command lives in its own module."""

from __future__ import annotations

import sys

from rich.console import Console

from .._errors import PerturbScoreError
from ._app import STATE, app

# Importing a command module registers its command on ``app``.
from . import _simulate  # noqa: E402,F401  isort: skip

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear message (exit 2), tracebacks only with ``--debug``."""
    argv = sys.argv[1:] if argv is None else argv
    STATE["debug"] = "--debug" in argv
    try:
        app(args=argv, standalone_mode=False)
    except PerturbScoreError as err:
        if STATE["debug"]:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        if STATE["debug"]:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
        return 2
    except SystemExit as err:  # typer/click exit paths
        return int(err.code or 0)
    except Exception as err:  # click usage errors and the like
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            return err.exit_code
        if isinstance(err, click.exceptions.Abort):
            return 130
        raise
    return 0
