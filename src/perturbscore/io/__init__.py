"""Read and validate user input: screens, gene features, targets, label tables and gene-set (GMT) files."""

from __future__ import annotations

from ._backed import H5Rows
from ._constraints import Constraint, parse_constraint
from ._features import align_features, read_features
from ._gmt import read_gmt, write_gmt
from ._labels import proportions_from_labels, read_state_counts_table
from ._read import read_screen
from ._targets import (
    TARGET_PRESETS,
    TargetPreset,
    as_targets,
    challenge_objective,
    default_target_name,
    describe_mix,
    mix_to_spec,
    parse_target,
    read_targets,
    resolve_target_specs,
    resolve_targets,
)

__all__ = [
    "TARGET_PRESETS",
    "Constraint",
    "H5Rows",
    "TargetPreset",
    "align_features",
    "as_targets",
    "challenge_objective",
    "default_target_name",
    "describe_mix",
    "mix_to_spec",
    "parse_constraint",
    "parse_target",
    "proportions_from_labels",
    "read_features",
    "read_gmt",
    "read_screen",
    "read_state_counts_table",
    "read_targets",
    "resolve_target_specs",
    "resolve_targets",
    "write_gmt",
]
