"""Every key and default name used across perturbscore, in one place."""

from __future__ import annotations

from typing import Any, NamedTuple

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
#: ``train._loss.logratio_loss``): about half a cell of a 25-cell knockout,
#: so a state with no cells gets a finite log-ratio instead of minus infinity.
LOGRATIO_FLOOR = 0.02

#: Every model ``reproduce`` can train: results key -> (training preset, overrides of TrainConfig/ModelConfig
#: fields). The seed's two models, perturbscore's default, and the default without one of its components each.
#: (Kept here, free of heavy imports, so that ``perturbscore reproduce --help`` can list them.)
REPRODUCE_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "seed_baseline": ("seed-baseline", {}),  # the seed's baseline: no T, 60 cells per sample
    "full": ("seed-full", {}),  # the seed's full model: T, 2-10 cells with a shrinking maximum
    "perturbscore": ("default", {}),  # the shipped default
    "default-fusion": ("default", {"fuse_prior": False}),  # cells alone, no sequence prior in the statistic
    "default-cell_mix": ("default", {"cell_mix_head": False, "cell_mix_weight": 0.0}),  # no per-cell mix loss
    "default-seq_loss": ("default", {"seq_weight": 0.0}),  # no sequence-path prediction loss
    "default-stability_loss": ("default", {"stability_weight": 0.0}),  # no stability loss on G
    "default-ridge_T": ("default", {"recognizer_pooling": "attention", "recognizer_head": "mlp"}),  # MLP T
    "default-mix_channel": ("default", {"mix_channel": False}),  # no decoded-mix channel in the statistic
    "default-logratio": ("default", {"logratio_weight": 0.0}),  # no log-ratio geometry loss
    "default-feature_basis": ("default", {"feature_basis": False}),  # T's basis from the training genes only
    "default-radial_stat": ("default", {"stat_activation": "identity"}),  # G's output left linear
    "default-narrow_head": ("default", {"head_hidden": 128}),  # the seed's 128-wide distance head
}
