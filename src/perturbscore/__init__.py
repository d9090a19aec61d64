"""perturbscore: learned robust statistics for scoring perturbations in CRISPR single-cell screens.

Namespaces follow scverse habits, bottom to top: :mod:`~perturbscore.io` (read and validate screens, features,
targets, gene sets), :mod:`~perturbscore.datasets` (simulated screens), :mod:`~perturbscore.pp` (every cell's
front-end coordinates, computed once), :mod:`~perturbscore.featurize` (gene
features from sequence), :mod:`~perturbscore.data` (screens and sampling), :mod:`~perturbscore.nn` (the PyTorch
modules), :mod:`~perturbscore.train`, :mod:`~perturbscore.model` (the fitted model), :mod:`~perturbscore.evaluation`
(metrics, baselines, paired evaluation), :mod:`~perturbscore.tl` (fit, evaluate, score, interpret),
:mod:`~perturbscore.pl` (plots) and :mod:`~perturbscore.report` (the HTML run report).
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from types import ModuleType

__all__ = ["__version__", "datasets", "evaluation", "featurize", "io", "model", "pl", "pp", "report", "tl"]
#: Subpackages imported on first use (PEP 562): ``perturbscore --help`` need not load PyTorch or Lightning.
_LAZY = frozenset(
    {"cli", "data", "datasets", "evaluation", "featurize", "io", "model", "nn", "pl", "pp", "report", "tl", "train"}
)


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
