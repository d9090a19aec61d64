"""Validated screens and episodic sampling."""

from ._embedding import EMBED_KEY, CellEmbedding, EmbeddedCells, project_cells, state_fingerprint
from ._sampling import Episode, EpisodeSampler, KSchedule, draw_rows, sample_targets, tv
from ._screen import GeneFeatures, InMemoryRows, RowSource, Screen

__all__ = [
    "EMBED_KEY",
    "CellEmbedding",
    "EmbeddedCells",
    "Episode",
    "EpisodeSampler",
    "GeneFeatures",
    "InMemoryRows",
    "KSchedule",
    "RowSource",
    "Screen",
    "draw_rows",
    "project_cells",
    "sample_targets",
    "state_fingerprint",
    "tv",
]
