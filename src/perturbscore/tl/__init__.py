"""Tools on a screen and a fitted model: fit, evaluate, score knockouts against targets, interpret programs.

Every tool takes an AnnData (or an ``.h5ad`` path, or a :class:`~perturbscore.data.Screen`) with the keys pertpy
users know (``perturbation_key``, ``state_key``, ``control``, ``layer``), writes its results into the AnnData
under ``key_added`` (``copy=True``: into a copy, which is returned) and returns a tidy table. :func:`fit` lives in
:mod:`perturbscore.model`; :func:`evaluate` wraps :func:`perturbscore.evaluation.evaluate` for AnnData input.
"""

from ..model import PerturbScoreModel, fit
from ._advice import cells_needed, cells_needed_table
from ._enrichment import bh_adjust, hypergeometric_enrichment, preranked_enrichment
from ._evaluate import evaluate, evaluation_table
from ._interpret import PROGRAM_FILES, ProgramsResult, interpret_programs
from ._programs import activity_by_group, program_enrichment, program_state_relation, top_genes
from ._score import score_perturbations, score_to_anndata, scores_from_anndata
from ._scorefile import check_score_path, read_scores, sequence_verdict, sidecar_path, write_scores

__all__ = [
    "PROGRAM_FILES",
    "PerturbScoreModel",
    "ProgramsResult",
    "activity_by_group",
    "bh_adjust",
    "cells_needed",
    "cells_needed_table",
    "check_score_path",
    "evaluate",
    "evaluation_table",
    "fit",
    "hypergeometric_enrichment",
    "interpret_programs",
    "preranked_enrichment",
    "program_enrichment",
    "program_state_relation",
    "read_scores",
    "score_perturbations",
    "score_to_anndata",
    "scores_from_anndata",
    "sequence_verdict",
    "sidecar_path",
    "top_genes",
    "write_scores",
]
