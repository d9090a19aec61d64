"""Validated screens and episodic sampling."""

from ._sampling import Episode, EpisodeSampler, KSchedule, draw_rows, sample_targets, tv
from ._screen import GeneFeatures, InMemoryRows, RowSource, Screen

__all__ = [
    "Episode",
    "EpisodeSampler",
    "GeneFeatures",
    "InMemoryRows",
    "KSchedule",
    "RowSource",
    "Screen",
    "draw_rows",
    "sample_targets",
    "tv",
]
