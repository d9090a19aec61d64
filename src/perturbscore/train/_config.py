"""Training configuration and the named presets (the seed's two models and perturbscore's default)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from .._errors import InputError
from ..nn import ModelConfig
from ._dist import check_devices


@dataclass(frozen=True)
class SamplingConfig:
    """Which cells, targets and knockouts each training step and each validation sees."""

    k_min: int = 2
    """Fewest cells per perturbation in a step (``--k-min``)."""
    k_max: int = 64
    """Most cells per perturbation in a step, once any shrinking schedule is over (``--k-max``)."""
    k_start_max: int | None = None
    """The most cells per perturbation at the first step, shrinking to ``k_max`` (``None``: no schedule)."""
    shrink_steps: int = 0
    """Steps over which the upper end moves from ``k_start_max`` down to ``k_max`` (0: no schedule)."""
    k_distribution: Literal["uniform", "loguniform"] = "loguniform"
    """How ``k`` is drawn in ``[k_min, k_max]``: uniform (the seed) or log-uniform (more small samples)."""
    targets_per_perturbation: int = 8
    """Target mixes ``Q`` per perturbation per step."""
    target_noise: float = 0.05
    """Noise ``alpha`` of the targets drawn around the observed mixes."""
    uniform_targets: float = 0.25
    """Share of targets drawn over the whole simplex, so that targets far from every observed mix score well."""
    replace_small: bool = True
    """Sample with replacement from perturbations with fewer than ``k`` cells."""
    perturbations_per_step: int = 0
    """Perturbations per step and per validation episode; 0: all (``--perturbations-per-step``)."""
    sample_window: int | None = None
    """Draw ``k`` cells from a run of ``sample_window * k`` adjacent rows; ``None``: 4 on disk, else 0."""
    n_train: int = 50
    """Knockouts that train the statistic (``--n-train``)."""
    n_val: int = 10
    """Knockouts that validate it (``--n-val``); the rest are test knockouts."""
    split_seed: int = 123
    """Seed of the shuffle that splits the knockouts."""
    val_episodes: int = 8
    """Fixed validation episodes evaluated every epoch."""
    front_end_cells: int = 20000
    """Training cells that fit the fixed front end (gene selection, standardisation, PCA)."""

    def __post_init__(self) -> None:
        _check(
            (self.k_min >= 1, "k_min must be >= 1"),
            (self.k_max >= self.k_min, "k_max must be >= k_min"),
            (self.targets_per_perturbation >= 1, "targets_per_perturbation must be >= 1"),
            (self.target_noise >= 0, "target_noise must be >= 0"),
            (self.n_train >= 1 and self.n_val >= 1, "n_train and n_val must be >= 1"),
            (self.perturbations_per_step >= 0, "perturbations_per_step must be >= 0 (0: all)"),
            ((self.sample_window or 0) >= 0, "sample_window must be >= 0"),
        )


@dataclass(frozen=True)
class LossConfig:
    """The terms of the training objective, and which validation checkpoint is kept."""

    loss: Literal["l1", "mse", "huber"] = "l1"
    """Prediction loss on the distance: ``"l1"`` (the seed), ``"mse"`` or ``"huber"`` (``--loss``)."""
    rec_weight: float = 1.0
    """Weight ``lambda`` of the recognition loss ``L_rec`` (``--rec-weight``)."""
    rec_mode: Literal["seed", "stopgrad"] = "stopgrad"
    """``"seed"``: plain MSE into T and the statistic; ``"stopgrad"``: T chases the statistic, variance-normalised."""
    rec_reference_k: int = 64
    """Cells of each perturbation's reference sample, whose statistic T chases and the stability loss reads."""
    seq_weight: float = 1.0
    """Weight of the sequence-path prediction loss ``|H(T(g), Q) - d|`` (0 in the seed)."""
    state_weight: float = 0.5
    """Weight of the per-cell state cross-entropy on ``f`` (0 in the seed)."""
    prop_weight: float = 1.0
    """Weight of the decoded-mix loss ``TV(q_hat(s), q(P))`` (structured head only)."""
    cell_mix_weight: float = 0.5
    """Weight of the per-cell mix loss ``TV(softmax(A f(x)), q(P))`` (0 in the seed)."""
    stability_weight: float = 0.5
    """Weight of the stability loss on ``G``: within- over between-perturbation variance (``--stability-weight``)."""
    select_stability_weight: float = 0.1
    """Checkpoint kept: lowest ``val_pred_loss + this * val_stability_loss`` (``--select-stability-weight``)."""
    logratio_weight: float = 0.3
    """Weight of the loss keeping ``G``'s part in line with the log-ratio state mix (``--logratio-weight``)."""

    def __post_init__(self) -> None:
        weights = (self.rec_weight, self.seq_weight, self.state_weight, self.prop_weight, self.cell_mix_weight)
        _check(
            (min(weights) >= 0, "weights must be >= 0"),
            (self.loss in ("l1", "mse", "huber"), f"loss must be l1, mse or huber, not {self.loss!r}"),
            (self.rec_mode in ("seed", "stopgrad"), f"rec_mode must be 'seed' or 'stopgrad', not {self.rec_mode!r}"),
            (self.stability_weight >= 0, "stability_weight must be >= 0"),
            (self.select_stability_weight >= 0, "select_stability_weight must be >= 0"),
            (self.logratio_weight >= 0, "logratio_weight must be >= 0 (0: off)"),
        )


@dataclass(frozen=True)
class RecognizerConfig:
    """How the recognition network ``T`` is fitted."""

    use_recognizer: bool = True
    """Train ``T`` from gene features (the seed's baseline has none; ``--no-recognizer``)."""
    rec_weight_decay: float = 1e-2
    """AdamW weight decay of ``T``'s parameters (few knockouts train ``T``: regularise it harder)."""
    feature_basis: bool = True
    """Ridge ``T``: fit its feature basis on every gene the features cover, and choose its rank by leave-one-out."""
    rec_robust: float = 1.0
    """Ridge ``T``: Huber down-weighting of knockouts over this many median residuals; 0: off (``--rec-robust``)."""
    rec_subsample: float = 0.6
    """Ridge ``T``: its stored read-out averages fits to this share of the knockouts; 0: off (``--rec-subsample``)."""

    def __post_init__(self) -> None:
        _check(
            (self.rec_robust >= 0, "rec_robust must be >= 0 (0: off)"),
            (0 <= self.rec_subsample < 1, "rec_subsample must be in [0, 1) (0: off)"),
        )


@dataclass(frozen=True)
class RuntimeConfig:
    """Step budget, optimiser, seeds and hardware."""

    preset: str = "default"
    """Name of the preset these values started from, for the record (``--preset``)."""
    max_steps: int = 3000
    """Step budget (``--max-steps``)."""
    steps_per_epoch: int = 100
    """Steps between validations."""
    patience: int = 8
    """Early-stopping patience, in epochs without a better validation."""
    lr: float = 3e-3
    """AdamW learning rate (``--lr``)."""
    weight_decay: float = 1e-4
    """AdamW weight decay of every module but ``T``."""
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """``"cosine"`` decays to 5 % of ``lr`` after the warm-up; ``"constant"`` (the seed) keeps ``lr``."""
    warmup_steps: int = 100
    """Steps of linear warm-up before the cosine decay."""
    prefetch: int | None = None
    """Episodes drawn ahead on a background thread; ``None``: 4 for a screen on disk, else 0 (``--prefetch``)."""
    seed: int = 0
    """Seed for initialisation, sampling and everything else (``--seed``)."""
    threads: int = 1
    """CPU threads for PyTorch while training; 0 keeps PyTorch's default (``--threads``)."""
    accelerator: str = "cpu"
    """Lightning accelerator: ``"cpu"``, ``"gpu"`` or ``"auto"`` (``--accelerator``)."""
    devices: int | str = 1
    """Lightning devices per machine (``--devices``)."""
    strategy: str = "auto"
    """Lightning strategy, e.g. ``"ddp"`` (``--strategy``)."""
    num_nodes: int = 1
    """Machines, under torchrun or SLURM (``--num-nodes``)."""

    def __post_init__(self) -> None:
        _check(
            (self.max_steps >= 1 and self.steps_per_epoch >= 1, "max_steps and steps_per_epoch must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            ((self.prefetch or 0) >= 0, "prefetch must be >= 0"),
            (self.num_nodes >= 1, "num_nodes must be >= 1"),
        )


def _check(*checks: tuple[bool, str]) -> None:
    for ok, msg in checks:
        if not ok:
            raise InputError(f"invalid training option: {msg}")


#: The groups of :class:`TrainConfig`, by attribute name.
GROUPS: dict[str, type] = {
    "sampling": SamplingConfig,
    "losses": LossConfig,
    "recognizer": RecognizerConfig,
    "runtime": RuntimeConfig,
}
#: Each option's group: option name -> group attribute of :class:`TrainConfig`.
OPTION_GROUP: dict[str, str] = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Everything about how the statistic is trained; saved with the run as ``config.json``.

    Four groups: :attr:`sampling` (:class:`SamplingConfig`), :attr:`losses` (:class:`LossConfig`),
    :attr:`recognizer` (:class:`RecognizerConfig`) and :attr:`runtime` (:class:`RuntimeConfig`). Every option
    is also read and set by its own name: ``TrainConfig(k_min=5).k_min``, ``dataclasses.replace(cfg, lr=1e-3)``,
    and every option is a keyword of :func:`~perturbscore.model.fit`.

    Parameters
    ----------
    sampling, losses, recognizer, runtime
        Whole groups (default: each group's defaults).
    **options
        Single options by name, applied on top of the groups.
    """

    sampling: SamplingConfig
    losses: LossConfig
    recognizer: RecognizerConfig
    runtime: RuntimeConfig

    def __init__(
        self,
        sampling: SamplingConfig | None = None,
        losses: LossConfig | None = None,
        recognizer: RecognizerConfig | None = None,
        runtime: RuntimeConfig | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(OPTION_GROUP))
        if unknown:
            raise TypeError(f"TrainConfig got unknown option(s) {unknown}")
        given: dict[str, Any] = {"sampling": sampling, "losses": losses, "recognizer": recognizer, "runtime": runtime}
        for group, cls in GROUPS.items():
            mine = {k: v for k, v in options.items() if OPTION_GROUP[k] == group}
            base = given[group] if given[group] is not None else cls()
            object.__setattr__(self, group, replace(base, **mine) if mine else base)

    def __getattr__(self, name: str) -> Any:
        group = OPTION_GROUP.get(name)
        if group is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, group), name)

    def options(self) -> dict[str, Any]:
        """Return every option by name, flat (``{"k_min": 2, ...}``)."""
        return {k: v for group in GROUPS for k, v in asdict(getattr(self, group)).items()}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, one entry per group."""
        return {group: asdict(getattr(self, group)) for group in GROUPS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict`'s output; unknown groups or options are an error (another version)."""
        unknown = sorted(set(data) - set(GROUPS))
        if unknown:
            raise ValueError(f"unknown train config groups {unknown}")
        built = {}
        for group, cls_ in GROUPS.items():
            values = data.get(group) or {}
            bad = sorted(set(values) - {f.name for f in fields(cls_)})
            if bad:
                raise ValueError(f"unknown train config keys {bad} in {group!r}")
            built[group] = cls_(**values)
        return cls(**built)


#: The seed's architecture (``ModelConfig`` fields), shared by both seed presets.
_SEED_MODEL: dict[str, Any] = {
    "front_end": "genes",
    "head": "attention",
    "head_hidden": 128,
    "n_stat": 5,
    "state_classifier": False,
    "recognizer_pooling": "conv",
    "recognizer_head": "mlp",
    "cell_mix_head": False,
    "fuse_prior": False,
    "mix_channel": False,
    "stat_activation": "identity",
}
#: The seed's training (``TrainConfig`` fields), shared by both seed presets: its losses only, its sampling and
#: optimiser, and none of the ridge ``T``'s options (the seed's ``T`` is an MLP).
_SEED_TRAIN: dict[str, Any] = {
    "rec_mode": "seed",
    "seq_weight": 0.0,
    "state_weight": 0.0,
    "prop_weight": 0.0,
    "cell_mix_weight": 0.0,
    "rec_weight_decay": 1e-4,
    "rec_reference_k": 0,
    "uniform_targets": 0.0,
    "stability_weight": 0.0,
    "rec_robust": 0.0,
    "rec_subsample": 0.0,
    "logratio_weight": 0.0,
    "k_distribution": "uniform",
    "lr_schedule": "constant",
    "lr": 1e-3,
    "targets_per_perturbation": 1,
}

#: Each preset's changes to the ``TrainConfig`` (``"train"``) and ``ModelConfig`` (``"model"``) defaults.
#: ``"default"``: perturbscore's configuration, every field's default. ``"seed-baseline"``: the seed's baseline,
#: no T, 60 cells per sample, seed architecture. ``"seed-full"``: the seed's full model, T, 2-10 cells with a
#: maximum shrinking from 50, ``lambda = 1`` with gradients into the statistic, seed architecture.
PRESET_TABLE: dict[str, dict[str, dict[str, Any]]] = {
    "default": {"train": {}, "model": {}},
    "seed-baseline": {
        "train": _SEED_TRAIN | {"use_recognizer": False, "k_min": 60, "k_max": 60, "rec_weight": 0.0},
        "model": _SEED_MODEL,
    },
    "seed-full": {
        "train": _SEED_TRAIN | {"k_min": 2, "k_max": 10, "k_start_max": 50, "shrink_steps": 1000},
        "model": _SEED_MODEL,
    },
}
#: Names of the presets (``--preset``).
PRESETS = tuple(PRESET_TABLE)


def check_options(name: str, **overrides: Any) -> None:
    """Raise :class:`~perturbscore._errors.InputError` for a bad preset or option before any data is read.

    Builds the preset's :class:`TrainConfig` and a :class:`~perturbscore.nn.ModelConfig` for a stand-in screen
    size (their option checks do not depend on it), so a typo in an option fails in a second, not after
    reading a genome-wide screen; so does a GPU run on a machine without one (:func:`~perturbscore.train.check_devices`).
    """
    train, model = preset(name, **overrides)
    ModelConfig(n_genes=1, n_states=2, **model)
    check_devices(train.accelerator, train.devices)


def preset(name: str, **overrides: Any) -> tuple[TrainConfig, dict[str, Any]]:
    """Return the :class:`TrainConfig` and model-config overrides of a named preset (see :data:`PRESET_TABLE`).

    ``overrides`` are fields of either config, applied on top of the preset's values (``None`` values are
    ignored: an option not given).
    """
    if name not in PRESET_TABLE:
        raise InputError(f"unknown preset {name!r} (--preset); choose one of {', '.join(PRESETS)}")
    table = PRESET_TABLE[name]
    model_keys = {f.name for f in fields(ModelConfig)} - {"n_genes", "n_states", "n_features"}
    given = {k: v for k, v in overrides.items() if v is not None}
    model = table["model"] | {k: v for k, v in given.items() if k in model_keys}
    train = {"preset": name} | table["train"] | {k: v for k, v in given.items() if k not in model_keys}
    return TrainConfig(**train), model
