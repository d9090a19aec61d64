"""Read and validate user input: screens, gene features, targets and label tables."""

from __future__ import annotations

from ._backed import H5Rows
from ._features import align_features, read_features
from ._labels import proportions_from_labels, read_state_counts_table
from ._read import read_screen
from ._targets import (
    TARGET_PRESETS,
    Constraint,
    TargetPreset,
    challenge_objective,
    parse_constraint,
    parse_target,
    read_targets,
    resolve_targets,
)

__all__ = [
    "TARGET_PRESETS",
    "Constraint",
    "H5Rows",
    "TargetPreset",
    "align_features",
    "challenge_objective",
    "parse_constraint",
    "parse_target",
    "proportions_from_labels",
    "read_features",
    "read_screen",
    "read_state_counts_table",
    "read_targets",
    "resolve_targets",
]
