"""The fitted model: :class:`PerturbScoreModel` (save, load, statistics, predictions), :func:`fit` and the calibration.

:class:`Calibration` blends the head's distance with empirical Bayes (:class:`FeatureRegression` prior, label
counts, :func:`posterior_distance`) into the reported number, with a conformal interval.
"""

from __future__ import annotations

from ._calibrate import fit_calibration
from ._calibration import CalibratedDistance, Calibration
from ._empirical_bayes import (
    N_POSTERIOR,
    N_SIM,
    choose_strength,
    pool_features,
    posterior_distance,
    simulate_draws,
)
from ._feature_regression import FeatureRegression
from ._fit import annotate_fit, as_screen, fit
from ._keys import read_keys
from ._model import PerturbScoreModel
from ._rundir import check_run_dir, is_run_dir, prepare_run_dir

__all__ = [
    "N_POSTERIOR",
    "N_SIM",
    "CalibratedDistance",
    "Calibration",
    "FeatureRegression",
    "PerturbScoreModel",
    "annotate_fit",
    "as_screen",
    "check_run_dir",
    "choose_strength",
    "fit",
    "fit_calibration",
    "is_run_dir",
    "pool_features",
    "posterior_distance",
    "prepare_run_dir",
    "read_keys",
    "simulate_draws",
]
