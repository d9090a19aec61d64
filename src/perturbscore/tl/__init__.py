"""AnnData-facing tools: fit, evaluate, score, interpret."""

from ._baselines import BASELINES
from ._fit import as_screen, fit
from ._model import PerturbScoreModel

__all__ = ["BASELINES", "PerturbScoreModel", "as_screen", "fit"]
