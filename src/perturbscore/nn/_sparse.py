"""Sparse × dense products with autograd for the weight only (cells are data, never trained).

On CPU, scipy's CSR kernels beat ``torch.sparse`` with autograd by ~7x for this shape (DESIGN §9);
on CUDA we hand torch a sparse CSR tensor on the device.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


class _ScipySparseMatmul(torch.autograd.Function):
    """``Y = X @ W.T`` for a scipy CSR ``X`` (N, G) and a dense ``W`` (m, G)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, x: sp.csr_matrix) -> torch.Tensor:  # type: ignore[override]
        ctx.x = x
        w = weight.detach().cpu().numpy()
        out = np.asarray(x @ w.T, dtype=np.float32)  # (N, m)
        return torch.from_numpy(out).to(weight.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        x: sp.csr_matrix = ctx.x
        g = grad_out.detach().cpu().numpy().astype(np.float32, copy=False)  # (N, m)
        grad_w = np.asarray(x.T @ g, dtype=np.float32).T  # (m, G)
        return torch.from_numpy(np.ascontiguousarray(grad_w)), None


def sparse_matmul(x: sp.csr_matrix | torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Return ``x @ weight.T`` with gradients for ``weight``.

    Parameters
    ----------
    x
        Cells × genes, a scipy CSR matrix (CPU) or a torch sparse/dense tensor (any device).
    weight
        ``(m, genes)`` dense weight.

    Returns
    -------
    ``(cells, m)`` dense tensor.
    """
    if isinstance(x, sp.spmatrix | sp.sparray):
        if weight.device.type != "cpu":
            x = csr_to_torch(sp.csr_matrix(x), device=weight.device)
        else:
            return _ScipySparseMatmul.apply(weight, sp.csr_matrix(x))
    if x.is_sparse or x.layout == torch.sparse_csr:
        return torch.sparse.mm(x, weight.T)
    return x @ weight.T


def csr_to_torch(x: sp.csr_matrix, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Convert a scipy CSR matrix to a torch sparse COO tensor on ``device`` (autograd-friendly)."""
    coo = x.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    val = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(idx, val, size=x.shape, device=device).coalesce()
