"""Masked means over ragged sets of cells."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the set axis, ignoring padded slots.

    Parameters
    ----------
    values
        ``(P, K, m)``: up to ``K`` cells per perturbation, padded.
    mask
        ``(P, K)`` bool, true for real cells. Every row needs at least one real cell.

    Returns
    -------
    ``(P, m)`` means over the real cells; invariant to their order.
    """
    w = mask.to(values.dtype).unsqueeze(-1)  # (P, K, 1)
    return (values * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def segment_mean(values: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Mean of the rows of ``values`` (N, m) grouped by ``segments`` (N,) into ``(n_segments, m)``."""
    out = torch.zeros(n_segments, values.shape[1], dtype=values.dtype, device=values.device)
    out.index_add_(0, segments, values)
    counts = torch.bincount(segments, minlength=n_segments).clamp_min(1).to(values.dtype)
    return out / counts.unsqueeze(1)
