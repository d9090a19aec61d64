"""A fixed (not trained) input transform in front of f: gene selection, standardisation, PCA."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ._config import ModelConfig


class FrontEnd(nn.Module):
    """Map log-normalised cells (CSR, all genes) to f's input space.

    For ``front_end="pca"`` this is ``((x[genes] - mean) / sd) @ components.T``, computed sparsely.
    Otherwise it passes the cells through and f standardises internally (``"standardize"``) or not.
    All parameters are buffers, saved with the model.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kind = config.front_end
        n_sel, n_in = config.n_selected, config.n_inputs
        self.register_buffer("gene_index", torch.arange(n_sel, dtype=torch.int64))
        self.register_buffer("mean", torch.zeros(n_sel))
        self.register_buffer("sd", torch.ones(n_sel))
        self.register_buffer("components", torch.zeros(n_in, n_sel) if self.kind == "pca" else torch.zeros(0))

    @property
    def projection(self) -> np.ndarray:
        """``(n_components, n_selected)`` map from raw selected genes, with the 1/sd folded in."""
        return (self.components / self.sd).cpu().numpy()

    def transform(self, x: sp.csr_matrix) -> sp.csr_matrix | torch.Tensor:
        """Cells ``(N, n_genes)`` -> f's input: CSR unchanged, or dense ``(N, n_components)`` for PCA."""
        if self.kind != "pca":
            return x
        sel = sp.csr_matrix(x)[:, self.gene_index.cpu().numpy()]  # (N, n_sel)
        proj = self.projection  # (n_comp, n_sel)
        offset = proj @ self.mean.cpu().numpy()  # (n_comp,)
        z = np.asarray(sel @ proj.T, dtype=np.float32) - offset  # (N, n_comp)
        return torch.from_numpy(z.astype(np.float32))

    def gene_loadings(self, weight: torch.Tensor, n_genes: int) -> np.ndarray:
        """Express f's weight ``(m1, n_inputs)`` as loadings on all ``n_genes`` raw genes."""
        w = weight.detach().cpu().numpy()
        if self.kind != "pca":
            return w
        out = np.zeros((w.shape[0], n_genes), dtype=np.float32)
        out[:, self.gene_index.cpu().numpy()] = w @ self.projection  # (m1, n_sel)
        return out

    @torch.no_grad()
    def fit(self, x: sp.csr_matrix, *, seed: int = 0) -> None:
        """Fit selection, standardisation and PCA on training cells ``x`` (a CSR sample, up to ~20k rows)."""
        x = sp.csr_matrix(x, dtype=np.float32)
        mean = np.asarray(x.mean(axis=0)).ravel()
        var = np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2
        sd = np.sqrt(np.maximum(var, 0)) + 1e-3
        if self.kind != "pca":
            self.mean.copy_(torch.from_numpy(mean))
            self.sd.copy_(torch.from_numpy(sd.astype(np.float32)))
            return
        n_sel = self.gene_index.numel()
        order = np.sort(np.argsort(-var, kind="stable")[:n_sel])
        dense = (x[:, order].toarray() - mean[order]) / sd[order]  # (N, n_sel); a sample only
        np.clip(dense, -10, 10, out=dense)
        n_comp = self.components.shape[0]
        from sklearn.utils.extmath import randomized_svd

        _, _, vt = randomized_svd(dense, n_components=n_comp, random_state=seed)
        self.gene_index.copy_(torch.from_numpy(order.astype(np.int64)))
        self.mean.copy_(torch.from_numpy(mean[order].astype(np.float32)))
        self.sd.copy_(torch.from_numpy(sd[order].astype(np.float32)))
        self.components.copy_(torch.from_numpy(vt.astype(np.float32)))
