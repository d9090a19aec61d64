"""Validated screens and episodic sampling."""

from ._sampling import Episode, EpisodeSampler, KSchedule, sample_targets, tv
from ._screen import GeneFeatures, InMemoryRows, RowSource, Screen

__all__ = [
    "Episode",
    "EpisodeSampler",
    "GeneFeatures",
    "InMemoryRows",
    "KSchedule",
    "RowSource",
    "Screen",
    "sample_targets",
    "tv",
]
