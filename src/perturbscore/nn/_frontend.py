"""A fixed (not trained) input transform in front of f: gene selection, standardisation, PCA."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..data._embedding import project_cells, state_fingerprint
from ._config import ModelConfig

#: Up to this many selected genes the PCA is an eigendecomposition of their Gram matrix (small, exact).
GRAM_MAX_GENES = 4096


class FrontEnd(nn.Module):
    """Map log-normalised cells (CSR, all genes) to f's input space.

    For ``front_end="pca"`` this is ``((x[genes] - mean) / sd) @ components.T``, computed sparsely.
    For ``front_end="genes"`` it passes the cells through unchanged.
    All parameters are buffers, saved with the model.
    """

    gene_index: torch.Tensor
    mean: torch.Tensor
    sd: torch.Tensor
    components: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kind = config.front_end
        n_sel, n_in = config.n_selected, config.n_inputs
        self.register_buffer("gene_index", torch.arange(n_sel, dtype=torch.int64))
        self.register_buffer("mean", torch.zeros(n_sel))
        self.register_buffer("sd", torch.ones(n_sel))
        self.register_buffer("components", torch.zeros(n_in, n_sel) if self.kind == "pca" else torch.zeros(0))

    # -- the fitted map as plain arrays (stored with an embedding; no pickle) -------------------
    def state(self, *, copy: bool = True) -> dict[str, Any]:
        """Return the fitted map as plain arrays: ``kind``, ``gene_index``, ``mean``, ``sd``, ``components``.

        ``gene_index`` is int64, the rest float32 (``components`` ``(n_components, n_selected)``; empty for
        ``front_end="genes"``). :meth:`load_state` reads it back, :func:`~perturbscore.data.state_fingerprint`
        hashes it. ``copy=False`` returns views of the buffers (on CPU), to read at once.
        """
        out: dict[str, Any] = {"kind": self.kind}
        for name, dtype in (("gene_index", np.int64), ("mean", np.float32), ("sd", np.float32),
                            ("components", np.float32)):  # fmt: skip
            arr = getattr(self, name).detach().cpu().numpy()
            out[name] = arr.astype(dtype, copy=copy)
        return out

    @torch.no_grad()
    def load_state(self, state: Mapping[str, Any]) -> None:
        """Set the fitted map from :meth:`state`'s arrays (lists are fine); shapes must match this front end."""
        kind = str(state.get("kind", "pca"))
        if kind != self.kind:
            raise ValueError(f"the stored front end is {kind!r}; this model's is {self.kind!r}")
        for name in ("gene_index", "mean", "sd", "components"):
            buf = getattr(self, name)
            value = torch.as_tensor(np.asarray(state[name]), dtype=buf.dtype)
            if tuple(value.shape) != tuple(buf.shape):
                raise ValueError(
                    f"the stored front end's {name} has shape {tuple(value.shape)}; this model's has {tuple(buf.shape)}"
                )
            buf.copy_(value)

    @property
    def fingerprint(self) -> str:
        """A hash of the fitted map (:func:`~perturbscore.data.state_fingerprint`), recomputed after the buffers change."""
        version = tuple((b.data_ptr(), b._version) for b in (self.gene_index, self.mean, self.sd, self.components))
        cached = getattr(self, "_fingerprint", None)
        if cached is None or cached[0] != version:
            cached = (version, state_fingerprint(self.state(copy=False)))
            self._fingerprint = cached
        return cached[1]

    @property
    def projection(self) -> np.ndarray:
        """``(n_components, n_selected)`` map from raw selected genes, with the 1/sd folded in."""
        return (self.components / self.sd).cpu().numpy()

    def transform(self, x: sp.csr_matrix) -> sp.csr_matrix | torch.Tensor:
        """Cells ``(N, n_genes)`` -> f's input: CSR unchanged, or dense ``(N, n_components)`` for PCA."""
        if self.kind != "pca":
            return x
        return torch.from_numpy(project_cells(self.state(copy=False), x))  # (N, n_comp)

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
        self.fit_rows(lambda rows: x[rows], np.arange(x.shape[0]), seed=seed)

    @torch.no_grad()
    def fit_rows(
        self, take: Callable[[np.ndarray], Any], rows: np.ndarray, *, seed: int = 0, chunk: int = 2048
    ) -> None:
        """Fit on the cells ``take(rows)`` (CSR), read ``chunk`` rows at a time.

        The sample is never held whole: one pass accumulates per-gene moments, and for PCA a second pass
        standardises each chunk's selected genes and accumulates their ``(n_selected, n_selected)`` Gram
        matrix, whose leading eigenvectors are the components (exact PCA; 32 MB for the default 2,000
        genes, where the dense sample would be 153 MB). With more selected genes than
        :data:`GRAM_MAX_GENES` the eigendecomposition would be slow, so the dense standardised sample is
        filled instead and a randomized SVD takes its components.
        """
        parts = [rows[i : i + chunk] for i in range(0, len(rows), chunk)]
        total = sumsq = None
        for part in parts:
            block = sp.csr_matrix(take(part), dtype=np.float32)
            if total is None:
                total, sumsq = np.zeros(block.shape[1]), np.zeros(block.shape[1])
            t, q = _column_sums(block)
            total += t
            sumsq += q
        n = max(len(rows), 1)
        mean = cast(np.ndarray, total) / n  # set by the first chunk (rows is not empty)
        var = cast(np.ndarray, sumsq) / n - mean**2
        sd = np.sqrt(np.maximum(var, 0)) + 1e-3
        if self.kind != "pca":
            self.mean.copy_(torch.from_numpy(mean))
            self.sd.copy_(torch.from_numpy(sd.astype(np.float32)))
            return
        n_sel = self.gene_index.numel()
        order = np.sort(np.argsort(-var, kind="stable")[:n_sel])
        centre, scale = mean[order].astype(np.float32), sd[order].astype(np.float32)

        def standardised(part: np.ndarray) -> np.ndarray:
            block = sp.csr_matrix(take(part), dtype=np.float32)[:, order].toarray()  # (chunk, n_sel)
            block -= centre
            block /= scale
            return np.clip(block, -10, 10, out=block)

        n_comp = self.components.shape[0]
        if n_sel <= GRAM_MAX_GENES:
            gram = np.zeros((n_sel, n_sel))
            for part in parts:
                block = standardised(part)
                gram += block.T @ block  # float32 product per chunk, float64 sum
            _, evecs = np.linalg.eigh(gram)  # ascending eigenvalues
            vt = evecs[:, ::-1][:, :n_comp].T  # (n_comp, n_sel), leading first
        else:
            from sklearn.utils.extmath import randomized_svd

            dense = np.empty((len(rows), n_sel), dtype=np.float32)  # filled in place: one copy of the sample
            start = 0
            for part in parts:
                dense[start : start + len(part)] = standardised(part)
                start += len(part)
            _, _, vt = randomized_svd(dense, n_components=n_comp, random_state=seed)
        big = np.abs(vt).argmax(1)  # one sign per component: its largest loading positive
        vt = vt * np.sign(vt[np.arange(len(vt)), big])[:, None]
        self.gene_index.copy_(torch.from_numpy(order.astype(np.int64)))
        self.mean.copy_(torch.from_numpy(centre))
        self.sd.copy_(torch.from_numpy(scale))
        self.components.copy_(torch.from_numpy(vt.astype(np.float32)))


def _column_sums(x: sp.csr_matrix, block: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene sum and sum of squares of CSR ``x``, float64, without copying the matrix."""
    g = x.shape[1]
    total, sumsq = np.zeros(g), np.zeros(g)
    for lo in range(0, x.nnz, block):  # bounded temporaries however many values the block holds
        idx, val = x.indices[lo : lo + block], x.data[lo : lo + block].astype(np.float64)
        total += np.bincount(idx, weights=val, minlength=g)
        sumsq += np.bincount(idx, weights=val * val, minlength=g)
    return total, sumsq
