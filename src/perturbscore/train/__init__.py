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
from ._data import (
    Split,
    fit_front_end,
    front_end_inputs,
    make_sampler,
    resolve_io,
    schedule_of,
    split_perturbations,
)
from ._dist import check_devices, is_main_process
from ._loop import TrainResult, build_net, fit_feature_basis, model_config_for, train_statistic
from ._module import REC_REFIT_EVERY, StatisticModule

__all__ = [
    "PRESETS",
    "PRESET_TABLE",
    "REC_REFIT_EVERY",
    "LossConfig",
    "RecognizerConfig",
    "RuntimeConfig",
    "SamplingConfig",
    "Split",
    "StatisticModule",
    "TrainConfig",
    "TrainResult",
    "build_net",
    "check_devices",
    "check_options",
    "fit_feature_basis",
    "fit_front_end",
    "front_end_inputs",
    "is_main_process",
    "make_sampler",
    "model_config_for",
    "preset",
    "resolve_io",
    "schedule_of",
    "split_perturbations",
    "train_statistic",
]
