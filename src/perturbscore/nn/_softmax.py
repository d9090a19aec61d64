"""Softmax and cross-entropy over a short axis, in the layout CPU kernels reduce fastest.

The model's softmaxes run over a handful of entries: ``G``'s attention over 10 program tokens, the state
posteriors over 5 states. PyTorch's CPU kernel for a softmax over a short *last* axis is slow (it vectorises
along that axis, which holds fewer values than one SIMD register): on ``G``'s ``(189, 4, 10, 10)`` attention
weights a training step's forward and backward cost 2.8 ms, many times the exponentials they compute. Moving the
axis to the front first makes every other axis the contiguous, vectorised one; the copy costs far less than it
saves (a quarter of the time on these shapes; ``benchmarks/bench_step.py`` prints both). The results equal
:func:`torch.softmax` to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Axes longer than this take PyTorch's kernels as they are (they are then the fast ones).
SHORT_AXIS = 32


def _short_axis(fn: Callable[..., torch.Tensor], x: torch.Tensor, dim: int) -> torch.Tensor:
    """``fn(x, dim=dim)`` with ``dim`` moved to the front first when it is short and ``x`` is on the CPU."""
    if x.dim() < 2 or x.shape[dim] > SHORT_AXIS or x.device.type != "cpu":
        return fn(x, dim=dim)
    return fn(x.movedim(dim, 0).contiguous(), dim=0).movedim(0, dim)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.softmax(x, dim)``, computed with ``dim`` moved to the front when it is short (see module docs)."""
    return _short_axis(torch.softmax, x, dim)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.log_softmax(x, dim)``, computed like :func:`softmax`."""
    return _short_axis(torch.log_softmax, x, dim)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(N, C)`` logits against ``(N,)`` class labels (:func:`torch.nn.functional.cross_entropy`)."""
    return -log_softmax(logits, dim=-1).gather(1, labels[:, None]).mean()
