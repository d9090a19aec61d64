"""T in the paper: predict the statistic from sequence features of the perturbed gene."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class SequenceRecognizer(nn.Module):
    """Pool a gene's ``(windows, dim)`` features, then an MLP to ``m2``.

    Parameters
    ----------
    n_features
        ``dim`` of each window's embedding.
    n_outputs
        ``m2``.
    pooling
        ``"mean"`` over windows, ``"attention"`` (learned softmax weights per window), or ``"conv"``
        (the seed's two 1-D convolutions over windows, then a mean).
    hidden
        MLP width.
    dropout
        Dropout before the last layer (few genes: regularise).
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        pooling: Literal["mean", "attention", "conv"] = "mean",
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.norm = nn.LayerNorm(n_features)
        if pooling == "attention":
            self.score = nn.Linear(n_features, 1)
        elif pooling == "conv":
            self.conv = nn.Sequential(
                nn.Conv1d(n_features, hidden, kernel_size=5, padding=2),
                nn.GELU(),
                nn.Conv1d(hidden, n_features, kernel_size=5, padding=2),
            )
        self.mlp = nn.Sequential(
            nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs)
        )

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """``(P, W, D) -> (P, D)``."""
        if self.pooling == "mean":  # normalise after pooling: 200x cheaper when scoring a genome
            return self.norm(features.mean(1))
        x = self.norm(features)  # (P, W, D)
        if self.pooling == "attention":
            w = torch.softmax(self.score(x).squeeze(-1), dim=1)  # (P, W)
            return (w.unsqueeze(-1) * x).sum(1)
        if self.pooling == "conv":
            x = x + self.conv(x.transpose(1, 2)).transpose(1, 2)  # (P, D, W) -> (P, W, D)
        return x.mean(1)  # (P, D)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted statistic ``(P, m2)`` from features ``(P, W, D)``."""
        return self.mlp(self.pool(features))
