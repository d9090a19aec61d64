"""Synthetic Perturb-seq screens with known ground truth, and the real challenge's reference counts."""

from __future__ import annotations

from ._large import write_large_screen
from ._reference import challenge_cells_per_ko
from ._simulate import (
    PLANTED_KNOCKOUT,
    PLANTED_MIX,
    SCREEN_PANEL,
    SyntheticScreen,
    simulate_screen,
    synthetic_perturb_seq,
)
from ._write import write_fasta, write_features_npz, write_modules_gmt

__all__ = [
    "PLANTED_KNOCKOUT",
    "PLANTED_MIX",
    "SCREEN_PANEL",
    "SyntheticScreen",
    "challenge_cells_per_ko",
    "simulate_screen",
    "synthetic_perturb_seq",
    "write_fasta",
    "write_features_npz",
    "write_modules_gmt",
    "write_large_screen",
]
