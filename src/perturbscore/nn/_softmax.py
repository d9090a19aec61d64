"""Softmax and cross-entropy over a short axis, in the layout CPU kernels reduce fastest.

The model's softmaxes run over a handful of entries: ``G``'s attention over 10 program tokens, the state
posteriors over 5 states. PyTorch's CPU kernel for a softmax over a short *last* axis is slow (it vectorises
along that axis, which holds fewer values than one SIMD register): on ``(192, 4, 10, 10)`` attention weights it
costs 1.7 ms forward, 8x the exponentials it computes. Moving the axis to the front first makes every other
axis the contiguous, vectorised one; the copy costs far less than it saves (5x less forward and backward on
these shapes; ``benchmarks/bench_step.py``). The results equal :func:`torch.softmax` to float rounding.
"""

from __future__ import annotations

import torch

#: Axes longer than this take :func:`torch.softmax` as it is (its kernel is then the fast one).
SHORT_AXIS = 32


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.softmax(x, dim)``, computed with ``dim`` moved to the front when it is short (see module docs)."""
    if x.shape[dim] > SHORT_AXIS or x.dim() < 2 or x.device.type != "cpu":
        return torch.softmax(x, dim=dim)
    return torch.softmax(x.movedim(dim, 0).contiguous(), dim=0).movedim(0, dim)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.log_softmax(x, dim)``, computed like :func:`softmax`."""
    if x.shape[dim] > SHORT_AXIS or x.dim() < 2 or x.device.type != "cpu":
        return torch.log_softmax(x, dim=dim)
    return torch.log_softmax(x.movedim(dim, 0).contiguous(), dim=0).movedim(0, dim)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(N, C)`` logits against ``(N,)`` class labels (:func:`torch.nn.functional.cross_entropy`)."""
    return -log_softmax(logits, dim=-1).gather(1, labels[:, None]).mean()
