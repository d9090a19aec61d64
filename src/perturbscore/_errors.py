"""User-facing errors: each names the offending file, column or gene and says what to do."""

from __future__ import annotations


class PerturbScoreError(Exception):
    """Base class for every error meant for the user (the CLI prints it without a traceback)."""


class InputError(PerturbScoreError, ValueError):
    """Invalid screen, feature, target or configuration input."""


class RunError(PerturbScoreError):
    """A problem with a run directory (exists, incomplete, incompatible checkpoint)."""
