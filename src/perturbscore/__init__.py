"""perturbscore: learned robust statistics for scoring perturbations in CRISPR single-cell screens.

Namespaces follow scverse habits: :mod:`~perturbscore.io` (read and validate), :mod:`~perturbscore.datasets`
(simulated screens), :mod:`~perturbscore.tl` (fit, evaluate, score, interpret), :mod:`~perturbscore.pl` (plots),
:mod:`~perturbscore.nn` (the PyTorch modules) and :mod:`~perturbscore.featurize` (sequence features).
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import datasets, featurize, io, pl, tl  # noqa: E402

__all__ = ["__version__", "datasets", "featurize", "io", "pl", "tl"]
