"""Training: configs, presets, the Lightning plan and the loop (no AnnData here)."""

from ._config import (
    PRESET_TABLE,
    PRESETS,
    LossConfig,
    RecognizerConfig,
    RuntimeConfig,
    SamplingConfig,
    TrainConfig,
    check_options,
    preset,
)
from ._data import Split, split_perturbations
from ._loop import TrainResult, build_net, model_config_for, train_statistic
from ._module import StatisticModule

__all__ = [
    "PRESETS",
    "LossConfig",
    "RecognizerConfig",
    "RuntimeConfig",
    "SamplingConfig",
    "PRESET_TABLE",
    "Split",
    "StatisticModule",
    "TrainConfig",
    "TrainResult",
    "build_net",
    "check_options",
    "model_config_for",
    "preset",
    "split_perturbations",
    "train_statistic",
]
