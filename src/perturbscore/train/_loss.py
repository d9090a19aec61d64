"""Losses: prediction, recognition (seed or stop-gradient), and the auxiliary terms."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def prediction_loss(pred: torch.Tensor, true: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean L1, MSE or Huber (delta 0.05 on the TV scale) between predicted and true distances."""
    if kind == "l1":
        return (pred - true).abs().mean()
    if kind == "mse":
        return F.mse_loss(pred, true)
    return F.huber_loss(pred, true, delta=0.05)


def recognition_loss(recognized: torch.Tensor, stat: torch.Tensor, mode: str) -> torch.Tensor:
    """``||T(g) - s_hat||^2`` (``"seed"``); otherwise variance-normalised (``s_hat`` detached for ``"stopgrad"``).

    Dividing by the statistic's variance across perturbations (per dimension) makes the loss scale-free,
    so shrinking the statistic towards a constant is never a cheap way to lower it.
    """
    if mode == "seed":
        return ((recognized - stat) ** 2).sum(-1).mean()
    if mode == "coupled":  # 1 - R² pooled over dimensions, its gradient reaching the statistic: no floor on the
        # variance to hide under (a per-dimension floor let one dimension's spread collapse below it)
        spread = (stat - stat.mean(0, keepdim=True)).pow(2).sum()
        return (recognized - stat).pow(2).sum() / spread.clamp_min(1e-12)
    target = stat.detach()
    var = target.var(dim=0, unbiased=False).clamp_min(1e-4) if target.shape[0] > 1 else torch.ones_like(target[0])
    return (((recognized - target) ** 2) / var).mean()


def recognition_r2(recognized: torch.Tensor, stat: torch.Tensor) -> torch.Tensor:
    """``1 - residual / variance`` of the statistic across perturbations (DESIGN §3)."""
    if stat.shape[0] < 2:  # no spread to explain
        return torch.tensor(float("nan"))
    resid = ((recognized - stat) ** 2).sum()
    total = ((stat - stat.mean(0, keepdim=True)) ** 2).sum().clamp_min(1e-12)
    return 1 - resid / total


def stability_loss(stat: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Within- over between-perturbation variance of the statistic: ``sum |s_k - s_ref|^2 / sum Var_P(s_ref)``.

    ``stat`` ``(P, m2)`` comes from the step's ``k`` cells per perturbation, ``reference`` from an independent,
    larger sample of the same perturbations. The ratio is scale-free (shrinking the statistic does not lower
    it) and falls as the statistic's between-perturbation share of variance (its stability) rises.
    """
    within = (stat - reference).pow(2).sum(-1).mean()
    between = (reference - reference.mean(0, keepdim=True)).pow(2).sum(-1).mean().clamp_min(1e-8)
    return within / between


#: Floor added to every state's share before the log-ratio in :func:`logratio_loss` (about half a cell of a
#: 25-cell knockout): a state with no cells gets a finite log-ratio instead of minus infinity.
LOGRATIO_FLOOR = 0.02


def logratio_loss(stat: torch.Tensor, proportions: torch.Tensor, *, floor: float = LOGRATIO_FLOOR) -> torch.Tensor:
    """Share of the statistic's spread that no linear map of the log-ratio mix explains: ``1 - R²`` of the fit.

    ``stat`` ``(P, m2)`` is each perturbation's statistic, ``proportions`` ``(P, C)`` its state mix ``q(P)``.
    The centred log-ratio ``clr(q + floor)`` (the mix in compositional, Aitchison, geometry) is regressed on
    by least squares, ``stat ~ clr B + b``, and the loss is the residual sum of squares over the statistic's
    spread around its mean. Both scale with the statistic, so shrinking or rescaling it does not lower the
    loss; bending it does. It is zero when the statistic is an affine function of the log-ratio mix, and it
    grows when a few perturbations are pushed far out of line with the rest (a heavy tail that sequence
    features, which move the mix smoothly, cannot follow). ``0`` when there are too few perturbations to fit.
    """
    n, c = proportions.shape
    if n <= c + 1:  # an affine map of C - 1 log-ratios fits C points exactly: nothing to measure
        return stat.new_zeros(())
    log_q = torch.log(proportions.to(stat.dtype) + floor)
    clr = log_q - log_q.mean(-1, keepdim=True)
    x = torch.cat([clr[:, : c - 1], torch.ones_like(clr[:, :1])], -1)  # (P, C): C - 1 log-ratios span the clr
    proj = x @ torch.linalg.pinv(x)  # (P, P) the hat matrix of the regressors (constant: no gradient)
    resid = stat - proj @ stat
    spread = (stat - stat.mean(0, keepdim=True)).pow(2).sum()
    return resid.pow(2).sum() / spread.clamp_min(1e-12)


@dataclass
class LossOutput:
    """Every term of one step, for logging; ``total`` is what is minimised."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
