"""perturbscore: learned robust statistics for scoring perturbations in CRISPR single-cell screens.

Namespaces follow scverse habits: :mod:`~perturbscore.io` (read and validate), :mod:`~perturbscore.datasets`
(simulated screens), :mod:`~perturbscore.tl` (fit, evaluate, score, interpret), :mod:`~perturbscore.pl` (plots),
:mod:`~perturbscore.nn` (the PyTorch modules) and :mod:`~perturbscore.featurize` (sequence features).
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from types import ModuleType

__all__ = ["__version__", "datasets", "featurize", "io", "pl", "tl"]
#: Subpackages imported on first use (PEP 562): ``perturbscore --help`` need not load PyTorch or Lightning.
_LAZY = frozenset({"cli", "data", "datasets", "featurize", "io", "nn", "pl", "report", "tl", "train"})


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
