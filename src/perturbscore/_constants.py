"""Every key and default name used across perturbscore, in one place."""

from __future__ import annotations

from typing import NamedTuple

#: The five T-cell states of the 2023 cancer-immunotherapy challenge, in the challenge's order.
CHALLENGE_STATES: tuple[str, ...] = ("progenitor", "effector", "terminal exhausted", "cycling", "other")
#: Control-cell state mix of the challenge screen (same order as ``CHALLENGE_STATES``).
CHALLENGE_CONTROL_MIX: tuple[float, ...] = (0.0675, 0.2097, 0.3134, 0.3921, 0.0173)


class _Keys(NamedTuple):
    perturbation: str = "condition"
    state: str = "state"
    control: str = "Unperturbed"
    raw_layer: str = "rawcounts"
    guide: str = "gRNA_maxID"
    # .uns keys written by the simulator
    truth: str = "perturbscore_truth"
    # .uns key written by scoring from Python
    scores: str = "perturbscore_scores"


KEYS = _Keys()

#: Genes with features but no cells in the simulated screens that ``reproduce`` and ``demo`` build: a user has
#: sequence embeddings for far more genes than were knocked out (every gene they may want to score), and the
#: ridge ``T``'s feature basis and the PCR baseline learn from those genes' features (never their labels).
EVAL_UNSEEN_GENES = 2_000

#: Floor added to every state's share before a log-ratio of a state mix (the log-ratio geometry loss,
#: ``train._loss.logratio_loss``, and ``ModelConfig.mixer_logratio``): about half a cell of a 25-cell knockout,
#: so a state with no cells gets a finite log-ratio instead of minus infinity.
LOGRATIO_FLOOR = 0.02
