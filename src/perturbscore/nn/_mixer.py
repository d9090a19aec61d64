"""G in the paper: self-attention over programs -> multicellular programs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._softmax import softmax

#: Output activations of :class:`ProgramMixer` (``ModelConfig.stat_activation``).
ACTIVATIONS = ("identity", "radial")


class ProgramMixer(nn.Module):
    """Treat the ``m1`` mean program activities as tokens, mix them with self-attention, project to ``m2``.

    Each token is ``value_i * embedding_i + position_i`` so the layer knows which program it carries.

    Parameters
    ----------
    n_programs
        ``m1``.
    n_outputs
        ``m2``, the size of the statistic.
    d_model, n_heads
        Token width and attention heads of the Transformer encoder layer.
    activation
        What the output passes through: ``"identity"`` (the seed) or ``"radial"`` (``u rho asinh(|u| / rho) /
        |u|``: the direction kept, the length compressed to its log beyond ``rho``, so one knockout with an
        extreme effect cannot sit 10x further out than the rest).
    radius
        ``rho`` of the radial activation: lengths well below it pass nearly unchanged.
    """

    def __init__(
        self,
        n_programs: int,
        n_outputs: int,
        *,
        d_model: int = 32,
        n_heads: int = 4,
        activation: str = "identity",
        radius: float = 4.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"statistic activation must be one of {ACTIVATIONS}, not {activation!r}")
        self.activation, self.radius = activation, radius
        self.value_embedding = nn.Parameter(torch.randn(n_programs, d_model) / d_model**0.5)
        self.position = nn.Parameter(torch.zeros(n_programs, d_model))
        self.layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.project = nn.Linear(n_programs * d_model, n_outputs)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map mean programs ``(P, m1)`` to the statistic ``(P, m2)``."""
        tokens = pooled.unsqueeze(-1) * self.value_embedding + self.position  # (P, m1, d)
        mixed = encoder_layer(self.layer, tokens)  # (P, m1, d)
        out = self.project(mixed.flatten(1))  # (P, m1*d) -> (P, m2)
        if self.activation == "radial":
            length = torch.linalg.vector_norm(out, dim=-1, keepdim=True).clamp_min(1e-6)
            return out * (self.radius * torch.asinh(length / self.radius) / length)
        return out


def encoder_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a pre-norm, ReLU, dropout-free encoder layer, written out with its own parameters.

    The same arithmetic as the module (to float rounding), in fewer and cheaper operations for ``G``'s many tiny
    sequences (``P`` sets x ``m1`` tokens): attention as two batched products instead of the module's checks and
    scaled-dot-product kernel, whose forward and backward cost a quarter more on CPU (``benchmarks/bench_step.py``).
    """
    attn = layer.self_attn
    P, L, d = x.shape
    heads = attn.num_heads
    h = F.layer_norm(x, (d,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)  # (P, L, 3d)
    q, k, v = qkv.view(P, L, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # each (P, heads, L, d / heads)
    weights = softmax((q * (d // heads) ** -0.5) @ k.transpose(-1, -2), dim=-1)  # (P, heads, L, L)
    mixed = (weights @ v).transpose(1, 2).reshape(P, L, d)  # (P, heads, L, d / heads) -> (P, L, d)
    x = x + F.linear(mixed, attn.out_proj.weight, attn.out_proj.bias)
    h = F.layer_norm(x, (d,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    return x + F.linear(F.relu(F.linear(h, layer.linear1.weight, layer.linear1.bias)), layer.linear2.weight,
                        layer.linear2.bias)  # fmt: skip
