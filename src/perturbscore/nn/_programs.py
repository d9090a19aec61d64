"""f in the paper: cells' expression -> gene-expression programs, ``tanh(W x + b)``."""

from __future__ import annotations

import scipy.sparse as sp
import torch
from torch import nn

from ._sparse import sparse_matmul


class ProgramEncoder(nn.Module):
    """Linear map + tanh from the input space (genes, or a fixed front-end space) to ``m1`` programs.

    Parameters
    ----------
    n_inputs
        Input dimension (number of genes, or front-end components).
    n_programs
        ``m1``, the number of gene-expression programs.
    """

    def __init__(self, n_inputs: int, n_programs: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_programs, n_inputs))
        self.bias = nn.Parameter(torch.zeros(n_programs))
        nn.init.normal_(self.weight, std=1.0 / max(n_inputs, 1) ** 0.5)
        # Per-input affine standardisation folded into W (x - mu) / sd: keeps sparse inputs sparse.
        self.register_buffer("in_scale", torch.ones(n_inputs))
        self.register_buffer("in_shift", torch.zeros(n_inputs))

    def set_standardisation(self, mean: torch.Tensor, sd: torch.Tensor) -> None:
        """Standardise inputs as ``(x - mean) / sd`` without densifying them."""
        self.in_scale.copy_(1.0 / sd.clamp_min(1e-6))
        self.in_shift.copy_(mean)

    @property
    def effective_weight(self) -> torch.Tensor:
        """``(m1, n_inputs)`` weight applied to unstandardised inputs."""
        return self.weight * self.in_scale

    def pre_activation(self, x: sp.csr_matrix | torch.Tensor) -> torch.Tensor:
        """``W (x - mu)/sd + b`` for cells ``x`` (N, n_inputs), sparse or dense -> ``(N, m1)``."""
        w = self.effective_weight  # (m1, n_inputs)
        return sparse_matmul(x, w) - (w @ self.in_shift) + self.bias

    def forward(self, x: sp.csr_matrix | torch.Tensor) -> torch.Tensor:
        """Program activities ``(N, m1)`` in (-1, 1)."""
        return torch.tanh(self.pre_activation(x))
