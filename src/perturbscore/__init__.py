"""perturbscore: learned robust statistics for scoring perturbations in CRISPR single-cell screens."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
