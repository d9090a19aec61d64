"""Losses: prediction, recognition (seed or stop-gradient), and the auxiliary terms."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .._constants import LOGRATIO_FLOOR
from ..nn._statistic import centred_log_ratio


def prediction_loss(pred: torch.Tensor, true: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean L1, MSE or Huber (delta 0.05 on the TV scale) between predicted and true distances."""
    if kind == "l1":
        return (pred - true).abs().mean()
    if kind == "mse":
        return F.mse_loss(pred, true)
    return F.huber_loss(pred, true, delta=0.05)


def recognition_loss(recognized: torch.Tensor, stat: torch.Tensor, mode: str) -> torch.Tensor:
    """``||T(g) - s_hat||^2`` (``"seed"``, gradients into both); ``"stopgrad"``: variance-normalised, detached.

    Dividing by the statistic's variance across perturbations (per dimension) makes the loss scale-free,
    so shrinking the statistic towards a constant is never a cheap way to lower it.
    """
    if mode == "seed":
        return ((recognized - stat) ** 2).sum(-1).mean()
    target = stat.detach()
    var = target.var(dim=0, unbiased=False).clamp_min(1e-4) if target.shape[0] > 1 else torch.ones_like(target[0])
    return (((recognized - target) ** 2) / var).mean()


def recognition_r2(recognized: torch.Tensor, stat: torch.Tensor) -> torch.Tensor:
    """``1 - residual / variance`` of the statistic across perturbations (pooled over dimensions)."""
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


def logratio_loss(stat: torch.Tensor, proportions: torch.Tensor, *, floor: float = LOGRATIO_FLOOR) -> torch.Tensor:
    """Share of the statistic's spread that no affine map of the log-ratio mix explains: ``1 - R²`` of that fit.

    ``stat`` ``(P, m2)`` is each perturbation's statistic, ``proportions`` ``(P, C)`` its state mix ``q(P)``.
    The statistic is regressed by least squares on the centred log-ratio ``clr(q + floor)`` (the mix in
    compositional, Aitchison, geometry), ``stat ~ clr B + b``, and the loss is the residual sum of squares
    over the statistic's spread around its mean. Rescaling the whole statistic leaves it unchanged, so it
    does not reward collapse; bending the statistic, e.g. pushing a few perturbations far out of line with
    the rest (a heavy tail that sequence features, which move the mix smoothly, cannot follow), raises it.
    Directions of the statistic that the log-ratio mix does not explain are what it charges for, so it does
    push their spread down; the prediction losses are what keep them where ``H`` needs them. ``0`` when there
    are no more perturbations than the fit has parameters (``C``).
    """
    n, c = proportions.shape
    if n <= c:  # C - 1 log-ratios and an intercept fit C points exactly: nothing to measure
        return stat.new_zeros(())
    y, resid = _logratio_fit(stat, proportions, floor)
    return (resid.pow(2).sum() / y.pow(2).sum().clamp_min(1e-24)).to(stat.dtype)


def _logratio_fit(stat: torch.Tensor, proportions: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``stat`` centred and the residual of its least-squares affine fit on ``clr(proportions + floor)``, float64."""
    c = proportions.shape[1]
    clr = centred_log_ratio(proportions.double(), floor)
    x = clr[:, : c - 1] - clr[:, : c - 1].mean(0, keepdim=True)  # (P, C - 1), centred: the intercept's part done
    y = stat.double() - stat.double().mean(0, keepdim=True)  # centred: float64 keeps a far-off statistic exact
    return y, y - x @ (torch.linalg.pinv(x) @ y)  # (P, m2); the regressors carry no gradient


@dataclass
class LossOutput:
    """Every term of one step, for logging; ``total`` is what is minimised."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
