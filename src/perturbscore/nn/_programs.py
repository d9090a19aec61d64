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

    def pre_activation(self, x: sp.csr_matrix | torch.Tensor) -> torch.Tensor:
        """``W x + b`` for cells ``x`` (N, n_inputs), sparse or dense -> ``(N, m1)``."""
        return sparse_matmul(x, self.weight) + self.bias

    def forward(self, x: sp.csr_matrix | torch.Tensor) -> torch.Tensor:
        """Program activities ``(N, m1)`` in (-1, 1)."""
        return torch.tanh(self.pre_activation(x))
