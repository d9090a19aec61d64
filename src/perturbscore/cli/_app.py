"""The typer application every subcommand registers on; thin layer over the Python API.

Help is click's plain layout (``rich_markup_mode=None``): it wraps each option's help under its full name at
any width, where typer's rich panels cut long option names (``--perturbations-per-…``) at 80 columns and
show a type column (``<bool>``) for flags. Rich still draws the result tables and error messages.
"""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="perturbscore",
    help="Learned robust statistics for scoring CRISPR perturbations in single-cell screens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

STATE = {"debug": False}


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logging."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show warnings and errors."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Learned robust statistics for scoring CRISPR perturbations in single-cell screens."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    STATE["debug"] = debug
