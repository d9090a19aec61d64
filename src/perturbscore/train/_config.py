"""Training configuration and the named presets (the seed's two models and perturbscore's default)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from .._errors import InputError
from ..nn import ModelConfig

PRESETS = ("default", "seed-baseline", "seed-full")


@dataclass(frozen=True)
class TrainConfig:
    """Everything about how the statistic is trained; saved with the run, one CLI flag per field.

    Attributes
    ----------
    preset
        Name of the preset these values started from (for the record).
    use_recognizer
        Train the recognition network ``T`` (needs gene features). The seed's baseline has none.
    k_min, k_max, k_start_max, shrink_steps, k_distribution
        Cells per perturbation per step: ``U{k_min..k_max}`` (or log-uniform), the upper end moving from
        ``k_start_max`` down to ``k_max`` over ``shrink_steps`` steps.
    targets_per_perturbation, target_noise
        Targets ``T`` per perturbation per step and their noise ``alpha``.
    uniform_targets
        Share of training targets drawn over the whole simplex (0 in the seed), so that users' targets far
        from every observed mix (e.g. pure progenitor) are scored correctly.
    max_steps, steps_per_epoch, patience
        Step budget, steps between validations, early-stopping patience in epochs.
    lr, weight_decay, lr_schedule, warmup_steps
        AdamW settings; ``"cosine"`` decays to 5 % of ``lr``.
    loss
        Prediction loss: ``"l1"`` (the seed), ``"mse"`` or ``"huber"``.
    rec_weight, rec_mode
        ``lambda`` and how ``L_rec`` couples to the statistic: ``"seed"`` (plain MSE, gradients into both
        T and the statistic), ``"stopgrad"`` (T chases the statistic, variance-normalised, so a collapsed
        statistic is never a cheap minimum) or ``"coupled"`` (the same variance-normalised loss, also trained
        into ``G`` through the reference statistic: each dimension's ``1 - R²`` of T's leave-one-out
        prediction, which rescaling or shrinking the statistic cannot lower; the seed's intent that the
        statistic be predictable from sequence, without its collapse).
    seq_weight
        Weight of the sequence-path prediction loss ``|H(T(g), Q) - d|`` (0 in the seed).
    state_weight
        Weight of the auxiliary per-cell state cross-entropy on f (0 in the seed).
    prop_weight
        Weight of the decoded-mix loss ``TV(q_hat(s), q(P))`` (structured head only).
    cell_mix_weight
        Weight of the per-cell mix loss ``TV(softmax(A f(x)), q(P))`` (0 in the seed).
    rec_reference_k
        T chases the statistic of a separate ``rec_reference_k``-cell sample (no gradient) instead of the
        step's small, noisy one (``"stopgrad"`` mode only; 0 = the step's sample).
    rec_weight_decay
        AdamW weight decay of T's parameters (few genes train T: regularise it harder).
    replace_small
        Sample with replacement from perturbations with fewer than ``k`` cells.
    front_end_cells
        Training cells used to fit the fixed front end (selection, standardisation, PCA).
    n_train, n_val, split_seed
        Knockouts for training / validation (the rest are test), shuffled with ``split_seed``.
    val_episodes
        Fixed validation episodes evaluated every epoch.
    perturbations_per_step
        Perturbations per training episode (and per validation episode); 0 uses all of them every step.
        Genome-wide screens need a batch (e.g. 64).
    sample_window
        Draw each perturbation's ``k`` cells from a random run of ``sample_window * k`` adjacent rows
        (fast reads from a screen on disk grouped by perturbation). ``None``: 4 for a screen read from
        disk whose rows are grouped by perturbation, else 0 (uniform over all its cells).
    prefetch
        Episodes drawn ahead on a background thread while the model trains. ``None``: 4 for a screen
        read from disk, else 0.
    seed
        Seed for initialisation, sampling and everything else.
    threads
        CPU threads for PyTorch during training (this model's ops are small: one thread avoids
        oversubscription; 0 keeps PyTorch's default).
    accelerator, devices, strategy, num_nodes
        Passed to Lightning (``"cpu"``, ``"gpu"``, ``"auto"``; DDP via ``strategy="ddp"``; ``num_nodes``
        machines under torchrun or SLURM).
    stability_weight
        Weight of the stability loss: within- over between-perturbation variance of the statistic, the
        step's ``k``-cell sample against the ``rec_reference_k``-cell reference (0 in the seed; needs the
        reference sample, i.e. ``rec_mode="stopgrad"`` and ``rec_reference_k > 0``).
    stability_grad
        What the stability loss trains: ``"mixer"`` (``G`` only, on detached program activities, so ``f``
        keeps the programs the state and prediction losses give it) or ``"all"`` (``f`` too).
    select_stability_weight
        Which validation checkpoint is kept (``best.ckpt``, the returned model) and when training stops early:
        the lowest ``val_pred_loss + select_stability_weight * val_stability_loss`` (logged as ``val_select``).
        0 selects on prediction alone, which on a screen whose validation error is lowest early can keep a
        model from before the stability loss has made the statistic stable (``docs/ablation.md``, session 6).
        Only used when the stability loss is computed (``stability_weight > 0``).
    feature_basis
        Fit the ridge ``T``'s feature basis on every gene the features cover, perturbed or not (no labels:
        the principal directions of their pooled features), and let leave-one-out choose how many leading
        directions the read-out keeps (principal-component ridge). Needs at least
        :data:`~perturbscore.nn._recognition.BASIS_MIN_GENES_PER_DIM` genes per feature dimension; with fewer
        the read-out stays plain ridge. Ridge ``T`` only.
    rec_target_clip
        Winsorise the ridge ``T``'s training targets: a knockout whose statistic lies further than this many
        times the median distance from the median is pulled in to that distance before each fit (0, the
        default: off). Tried in session 8 against one or two knockouts with extreme effects steering the fit
        for every other gene; at 4 it lowered the default screen's recognition R² below 0.5
        (``docs/ablation.md``, session 8). Ridge ``T`` only.
    rec_mix_target
        What ``T`` learns for the mix channel (``ModelConfig.mix_channel``) of a training knockout:
        ``"cells"``, the mean state posterior of its reference sample (``rec_reference_k`` cells, as for
        ``G``'s part), or ``"labels"``, its state proportions ``q(P)`` over all its labelled cells (no
        sampling noise).
    rec_g_target
        What ``T`` learns for ``G``'s part of a training knockout's statistic: ``"statistic"``, its reference
        sample's statistic, or ``"logratio"``, the part of it that the knockout's label log-ratio mix explains:
        the fitted values of the step's least-squares affine fit of the reference statistics on
        ``clr(q(P) + 0.02)`` over the training knockouts (the fit the log-ratio loss measures). The rest of a
        knockout's statistic (its few cells' sampling noise, expression that its mix does not explain) is
        not there for sequence to predict, and fitting it only adds variance to ``T``. Evaluation still
        scores ``T`` against the statistic itself.
    rec_g_residual
        With ``rec_g_target="logratio"``: the share of the rest of ``G``'s part (the statistic minus its
        log-ratio part) that ``T``'s target keeps, ``part + rec_g_residual * (statistic - part)``; 0 (the
        default) fits the log-ratio part alone, 1 is the same as ``"statistic"``.
    rec_select
        How the ridge ``T`` chooses its rank and penalty by leave-one-out: ``"joint"``, one choice for every
        output, or ``"per_part"``, one for ``G``'s part and one for the mix channel.
    rec_robust
        Robust fit of the ridge ``T`` (0: off, plain least squares): knockouts whose leave-one-out residual is
        over ``rec_robust`` times the median one are down-weighted (Huber weights; see
        :meth:`~perturbscore.nn.SequenceRecognizer.fit_predict`). Ridge ``T`` only. 1 since session 9; runs
        saved before it load with 0, as they were trained.
    rec_subsample
        Each ridge fit of ``T`` during training also fits the genes of a random share ``rec_subsample`` of the
        training knockouts, and that fit, not the full one, goes into the stored read-out's moving average
        (0: off, the full fit). The moving average then averages fits to different subsets of the ~50
        knockouts (subagging), so no few knockouts steer what ``T`` predicts for unseen genes. The
        leave-one-out predictions the losses read are the full fit's either way. Ridge ``T`` only. 0.6 since
        session 10 (``docs/ablation.md``); runs saved before it load with 0, as they were trained.
    rec_refit_cells
        After training, refit the ridge ``T`` once on each training knockout's final statistic from up to this
        many of its cells, instead of keeping the moving average of the fits made while the statistic
        trained (0: off). Ridge ``T`` only.
    logratio_weight
        Weight of the log-ratio geometry loss (:func:`~perturbscore.train._loss.logratio_loss`, 0: off): the
        share of the spread of ``G``'s part of the statistic (each knockout's reference sample) that no affine
        map of the knockouts' centred log-ratio state mix explains. Rescaling the statistic does not lower it;
        pushing a few knockouts far out of line with the rest raises it, so the statistic varies with the mix
        as smoothly as sequence features can follow. 0.3 since session 11 (``docs/method.md``, item 18); runs
        saved before it load with 0, as they were trained.
    rec_couple_weight
        Weight of a coupling term beside the stop-gradient recognition loss (0: off): ``1 - R²`` of ``T``'s
        leave-one-out prediction (detached) of ``G``'s part of the training knockouts' reference statistics,
        trained into ``G`` alone (and into ``f`` too with ``stability_grad="all"``, whose reference programs
        carry gradient). It pulls the statistic towards what sequence features predict, at a weight small enough
        that the prediction and stability losses keep it on the cells (``rec_mode="coupled"`` is this term at
        full weight, without the stop-gradient loss). Needs ``rec_mode="stopgrad"`` and a reference sample
        (``rec_reference_k > 0``).
    """

    preset: str = "default"
    use_recognizer: bool = True
    k_min: int = 2
    k_max: int = 64
    k_start_max: int | None = None
    shrink_steps: int = 0
    k_distribution: Literal["uniform", "loguniform"] = "loguniform"
    targets_per_perturbation: int = 8
    target_noise: float = 0.05
    uniform_targets: float = 0.25
    max_steps: int = 3000
    steps_per_epoch: int = 100
    patience: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 100
    loss: Literal["l1", "mse", "huber"] = "l1"
    rec_weight: float = 1.0
    rec_mode: Literal["seed", "stopgrad", "coupled"] = "stopgrad"
    seq_weight: float = 1.0
    state_weight: float = 0.5
    prop_weight: float = 1.0
    cell_mix_weight: float = 0.5
    rec_weight_decay: float = 1e-2
    rec_reference_k: int = 64
    replace_small: bool = True
    front_end_cells: int = 20000
    n_train: int = 50
    n_val: int = 10
    split_seed: int = 123
    val_episodes: int = 8
    perturbations_per_step: int = 0
    sample_window: int | None = None
    prefetch: int | None = None
    seed: int = 0
    threads: int = 1
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    stability_weight: float = 0.5
    stability_grad: Literal["mixer", "all"] = "mixer"
    select_stability_weight: float = 0.1
    feature_basis: bool = True
    rec_target_clip: float = 0.0
    rec_mix_target: Literal["cells", "labels"] = "cells"
    rec_g_target: Literal["statistic", "logratio"] = "statistic"
    rec_g_residual: float = 0.0
    rec_select: Literal["joint", "per_part"] = "joint"
    rec_robust: float = 1.0
    rec_refit_cells: int = 0
    rec_subsample: float = 0.6
    logratio_weight: float = 0.3
    rec_couple_weight: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            (self.k_min >= 1, "k_min must be >= 1"),
            (self.k_max >= self.k_min, "k_max must be >= k_min"),
            (self.max_steps >= 1 and self.steps_per_epoch >= 1, "max_steps and steps_per_epoch must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.targets_per_perturbation >= 1, "targets_per_perturbation must be >= 1"),
            (self.target_noise >= 0, "target_noise must be >= 0"),
            (min(self.rec_weight, self.seq_weight, self.state_weight, self.prop_weight) >= 0, "weights must be >= 0"),
            (self.loss in ("l1", "mse", "huber"), f"loss must be l1, mse or huber, not {self.loss!r}"),
            (
                self.rec_mode in ("seed", "stopgrad", "coupled"),
                f"rec_mode must be 'seed', 'stopgrad' or 'coupled', not {self.rec_mode!r}",
            ),
            (self.n_train >= 1 and self.n_val >= 1, "n_train and n_val must be >= 1"),
            (self.perturbations_per_step >= 0, "perturbations_per_step must be >= 0 (0: all)"),
            ((self.sample_window or 0) >= 0 and (self.prefetch or 0) >= 0, "sample_window and prefetch must be >= 0"),
            (self.num_nodes >= 1, "num_nodes must be >= 1"),
            (self.stability_weight >= 0, "stability_weight must be >= 0"),
            (self.select_stability_weight >= 0, "select_stability_weight must be >= 0"),
            (self.rec_target_clip >= 0, "rec_target_clip must be >= 0 (0: off)"),
            (self.rec_robust >= 0, "rec_robust must be >= 0 (0: off)"),
            (self.rec_refit_cells >= 0, "rec_refit_cells must be >= 0 (0: off)"),
            (0 <= self.rec_subsample < 1, "rec_subsample must be in [0, 1) (0: off)"),
            (self.logratio_weight >= 0, "logratio_weight must be >= 0 (0: off)"),
            (0 <= self.rec_g_residual <= 1, "rec_g_residual must be in [0, 1]"),
            (
                self.rec_g_residual == 0 or self.rec_g_target == "logratio",
                "rec_g_residual applies to rec_g_target='logratio' only: set rec_g_target='logratio' or leave it 0",
            ),
            (self.rec_couple_weight >= 0, "rec_couple_weight must be >= 0 (0: off)"),
            (
                self.rec_couple_weight == 0 or (self.rec_mode == "stopgrad" and self.rec_reference_k > 0),
                "rec_couple_weight needs rec_mode='stopgrad' and rec_reference_k > 0 (it reads the reference sample)",
            ),
            (
                self.rec_mix_target in ("cells", "labels"),
                f"rec_mix_target must be 'cells' or 'labels', not {self.rec_mix_target!r}",
            ),
            (
                self.rec_g_target in ("statistic", "logratio"),
                f"rec_g_target must be 'statistic' or 'logratio', not {self.rec_g_target!r}",
            ),
            (
                self.rec_select in ("joint", "per_part"),
                f"rec_select must be 'joint' or 'per_part', not {self.rec_select!r}",
            ),
            (
                self.stability_grad in ("mixer", "all"),
                f"stability_grad must be 'mixer' or 'all', not {self.stability_grad!r}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(f"invalid training option: {msg}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown train config keys {sorted(unknown)}")
        # saved before the robust T (session 9): plain least squares; before the subsampled read-out (session 10):
        # the full fit; before the log-ratio geometry loss (session 11): none
        return cls(**({"rec_robust": 0.0, "rec_subsample": 0.0, "logratio_weight": 0.0} | data))


def check_options(name: str, **overrides: Any) -> None:
    """Raise :class:`~perturbscore._errors.InputError` for a bad preset or option before any data is read.

    Builds the preset's :class:`TrainConfig` and a :class:`~perturbscore.nn.ModelConfig` for a stand-in screen
    size (their option checks do not depend on it), so a typo in an option fails in a second, not after
    reading a genome-wide screen.
    """
    _, model = preset(name, **overrides)
    ModelConfig(n_genes=1, n_states=2, **model)


def preset(name: str, **overrides: Any) -> tuple[TrainConfig, dict[str, Any]]:
    """Return the :class:`TrainConfig` and model-config overrides of a named preset.

    ``"seed-baseline"``: the seed's baseline — no T, 60 cells per sample, seed architecture.
    ``"seed-full"``: the seed's full model — T, 2–10 cells with a shrinking maximum, ``lambda = 1``
    with gradients into the statistic, seed architecture. ``"default"``: perturbscore's best
    configuration (see docs/ablation.md).
    """
    seed_arch = {
        "front_end": "genes",
        "head": "attention",
        "n_stat": 5,
        "state_classifier": False,
        "recognizer_pooling": "conv",
        "recognizer_head": "mlp",
        "cell_mix_head": False,
        "fuse_prior": False,
        "mix_channel": False,
        "stat_activation": "identity",
    }
    seed_train = {
        "rec_mode": "seed",
        "seq_weight": 0.0,
        "state_weight": 0.0,
        "prop_weight": 0.0,
        "cell_mix_weight": 0.0,
    }
    seed_train |= {"rec_weight_decay": 1e-4, "rec_reference_k": 0, "uniform_targets": 0.0, "stability_weight": 0.0}
    seed_train |= {"rec_robust": 0.0, "rec_subsample": 0.0}  # (the seed's T is an MLP: no closed-form fit)
    seed_train |= {"logratio_weight": 0.0}
    seed_train |= {"k_distribution": "uniform", "lr_schedule": "constant", "lr": 1e-3, "targets_per_perturbation": 1}
    if name == "seed-baseline":
        cfg = TrainConfig(preset=name, use_recognizer=False, k_min=60, k_max=60, rec_weight=0.0, **seed_train)
        model = dict(seed_arch)
    elif name == "seed-full":
        cfg = TrainConfig(preset=name, k_min=2, k_max=10, k_start_max=50, shrink_steps=1000, **seed_train)
        model = dict(seed_arch)
    elif name == "default":
        cfg, model = TrainConfig(preset=name), {}
    else:
        raise InputError(f"unknown preset {name!r} (--preset); choose one of {', '.join(PRESETS)}")
    model_keys = {f.name for f in fields(ModelConfig)} - {"n_genes", "n_states", "n_features"}
    model |= {k: v for k, v in overrides.items() if k in model_keys and v is not None}
    train_over = {k: v for k, v in overrides.items() if k not in model_keys and v is not None}
    return replace(cfg, **train_over), model
