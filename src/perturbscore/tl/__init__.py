"""AnnData-facing tools: fit, evaluate, score, interpret."""

from ._advice import cells_needed, cells_needed_table
from ._baselines import BASELINES
from ._enrichment import bh_adjust, hypergeometric_enrichment, preranked_enrichment, read_gmt, write_gmt
from ._evaluate import evaluate
from ._fit import as_screen, fit
from ._interpret import PROGRAM_FILES, ProgramsResult, interpret_programs
from ._model import PerturbScoreModel
from ._programs import activity_by_group, program_enrichment, program_state_relation, top_genes
from ._reproduce import reproduce
from ._score import score_perturbations, score_to_anndata, scores_from_anndata

__all__ = [
    "BASELINES",
    "PROGRAM_FILES",
    "PerturbScoreModel",
    "ProgramsResult",
    "activity_by_group",
    "as_screen",
    "bh_adjust",
    "cells_needed",
    "cells_needed_table",
    "evaluate",
    "fit",
    "hypergeometric_enrichment",
    "interpret_programs",
    "preranked_enrichment",
    "program_enrichment",
    "program_state_relation",
    "read_gmt",
    "reproduce",
    "score_perturbations",
    "score_to_anndata",
    "scores_from_anndata",
    "top_genes",
    "write_gmt",
]
