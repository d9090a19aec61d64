"""Architecture configuration of the learned statistic (f, G, H, T)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from .._errors import InputError


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and choices of every module; saved with each run as JSON.

    Attributes
    ----------
    n_genes
        Expression genes the model reads (columns of the screen).
    n_states
        ``C``, cell states.
    n_features
        Dimension of a gene-feature window; ``None`` means no recognition network ``T``.
    front_end
        ``"genes"``: f reads log-normalised genes (the seed presets). ``"pca"`` (default): a fixed PCA of
        standardised top-variance genes, fitted once on training cells; f then reads ``n_components``
        coordinates.
    n_top_genes, n_components
        Gene selection and PCA size for ``front_end="pca"``.
    n_programs
        ``m1``, gene-expression programs (rows of f's weights).
    n_stat
        ``m2``, multicellular programs: the size of ``G``'s output (the statistic adds the mix channel's
        ``n_states`` entries to it, see :attr:`stat_dim`).
    d_model, n_heads
        Token width and heads of G's self-attention.
    head
        ``"attention"``: the seed's cross-attention head. ``"structured"``: sees a decoded mix and ``log k``.
    head_slots, head_hidden
        Attention slots ``n`` and MLP width of H: 64 by default, the seed's 128 in the seed presets (across the
        panel of simulated screens the narrower structured head scores as well, and costs a quarter of the
        wider one's arithmetic, the largest part of a training step).
    recognizer_pooling, recognizer_hidden, recognizer_dropout
        T's pooling over windows: ``"gaussian"`` (default), ``"conv"`` (the seed presets) or ``"attention"``
        (content-weighted windows); see :class:`~perturbscore.nn.SequenceRecognizer`. MLP width and dropout
        (MLP read-out only).
    state_classifier
        Add a per-cell state classifier on f (for the auxiliary state loss, and the mix channel's posteriors).
    cell_mix_head
        Add a per-cell head predicting the cell's perturbation's state mix from f (auxiliary loss): pushes f
        to carry every per-cell signal of the perturbation's effect, not only the cell's own state.
    fuse_prior
        Where gene features exist, combine the cells' statistic with T's prediction as a prior,
        ``(k s_cells + kappa T(g)) / (k + kappa)`` with a learned ``kappa`` (initial ``prior_strength``):
        few cells lean on the sequence, many cells override it; no cells gives ``T(g)``.
    mix_channel
        (Default; off in the seed presets; ``--mix-channel/--no-mix-channel``.) Append the cells' mean decoded
        state posterior ``mean_x softmax(A f(x))`` (``A``: the state classifier) to the statistic, which then has
        ``n_stat + n_states`` entries: ``[G(mean f), mean posterior]``. The head reads the decoded mix as
        ``w m + (1 - w) q_hat(s)`` with ``w = k / (k + kappa_mix)`` (``w = 1`` for ``T(g)`` alone, whose
        channel is ``T``'s prediction of the mix), so many cells give a plug-in estimate of the mix that
        cannot memorise knockout-specific expression.
    recognizer_head
        T's read-out: ``"mlp"`` (trained by gradient, the seed) or ``"ridge"`` (closed-form, penalty by
        leave-one-out; see :class:`~perturbscore.nn.SequenceRecognizer`; best with ``"gaussian"`` pooling,
        the default). ``None`` (default): ``"ridge"``, except with the seed's ``"conv"`` pooling, which keeps
        the MLP.
    stat_activation
        What ``G``'s output passes through (``--stat-activation``). ``"radial"`` (default) keeps its direction
        and compresses its length ``r`` to ``rho asinh(r / rho)`` (``rho``: :attr:`stat_radius`): a knockout
        with an extreme effect stays the furthest out, but not 10x further than the rest, where it would steer
        ``T``'s regression. ``"identity"`` (the seed presets) leaves it linear.
    stat_radius
        ``rho`` of the radial activation, ``u rho asinh(|u| / rho) / |u|``: lengths well below it pass nearly
        unchanged, longer ones grow like their logarithm (default 4).
    """

    n_genes: int
    n_states: int
    n_features: int | None = None
    front_end: Literal["genes", "pca"] = "pca"
    n_top_genes: int = 2000
    n_components: int = 64
    n_programs: int = 10
    n_stat: int = 10
    d_model: int = 32
    n_heads: int = 4
    head: Literal["attention", "structured"] = "structured"
    head_slots: int = 20
    head_hidden: int = 64
    recognizer_pooling: Literal["attention", "gaussian", "conv"] = "gaussian"
    recognizer_hidden: int = 128
    recognizer_dropout: float = 0.0
    state_classifier: bool = True
    cell_mix_head: bool = True
    fuse_prior: bool = True
    prior_strength: float = 5.0
    recognizer_head: Literal["mlp", "ridge"] | None = None
    mix_channel: bool = True
    stat_activation: Literal["identity", "radial"] = "radial"
    stat_radius: float = 4.0

    def __post_init__(self) -> None:
        if self.n_genes < 1 or self.n_states < 2:
            raise ValueError(f"need >= 1 gene and >= 2 states, got {self.n_genes} genes, {self.n_states} states")
        if self.front_end not in ("genes", "pca"):
            raise ValueError(f"front_end must be 'genes' or 'pca', not {self.front_end!r}")
        if self.head not in ("attention", "structured"):
            raise ValueError(f"head must be 'attention' or 'structured', not {self.head!r}")
        if self.recognizer_head not in (None, "mlp", "ridge"):
            raise ValueError(f"recognizer_head must be 'mlp' or 'ridge', not {self.recognizer_head!r}")
        if self.stat_radius <= 0:
            raise InputError(f"invalid model option: stat_radius must be > 0, not {self.stat_radius}")
        if self.stat_activation not in ("identity", "radial"):
            raise InputError(
                f"invalid model option: stat_activation (--stat-activation) must be 'identity' or 'radial', "
                f"not {self.stat_activation!r}"
            )
        if self.mix_channel and not (self.state_classifier and self.head == "structured"):
            raise InputError(
                "mix_channel needs the state classifier and the structured head; turn it off with "
                "mix_channel=False (--no-mix-channel) or keep state_classifier=True, head='structured'"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    @property
    def t_head(self) -> Literal["mlp", "ridge"]:
        """T's read-out after resolving ``recognizer_head=None``."""
        if self.recognizer_head is not None:
            return self.recognizer_head
        return "mlp" if self.recognizer_pooling == "conv" else "ridge"

    @property
    def stat_dim(self) -> int:
        """Length of the statistic vector: ``n_stat``, plus ``n_states`` with the mix channel."""
        return self.n_stat + (self.n_states if self.mix_channel else 0)

    @property
    def n_selected(self) -> int:
        """Genes kept by the front end."""
        return min(self.n_top_genes, self.n_genes) if self.front_end == "pca" else self.n_genes

    @property
    def n_inputs(self) -> int:
        """Input dimension of f."""
        return min(self.n_components, self.n_selected) if self.front_end == "pca" else self.n_genes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a config from another version)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**data)
