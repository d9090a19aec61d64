"""Closed-form ridge maths behind ``T``'s read-out: the penalty grid, weighted solves, leave-one-out errors."""

from __future__ import annotations

import torch

#: Ridge penalties searched by leave-one-out (relative to the number of feature dimensions).
RIDGE_ALPHAS = tuple(10.0 ** (e / 4) for e in range(-8, 17))


def _weighted_ridge(
    xp: torch.Tensor, y: torch.Tensor, choices: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted ridge with an unpenalised intercept, one solve per distinct ``(rank, penalty)`` in ``choices``.

    ``xp`` ``(P, D)`` inputs (columns in order of importance: a rank keeps the leading ones), ``y`` ``(P, m2)``,
    ``choices`` ``(m2, 2)`` each output's rank and penalty, ``weights`` ``(P,)`` (``None``: all 1, and
    ``xp`` already centred, as standardised inputs are). Minimises
    ``sum_i w_i |y_i - b - x_i B|^2 + alpha |B|^2`` in the dual form (``P`` genes, fewer than ``D``). Returns
    the exact leave-one-out predictions ``(P, m2)`` (differentiable in ``xp``), the coefficients ``(D, m2)``
    (zero beyond each output's rank) and the intercept ``(m2,)``, both detached.
    """
    n, d = xp.shape
    share: float | torch.Tensor
    if weights is None:
        root, share = torch.ones(n, 1, dtype=xp.dtype, device=xp.device), 1.0 / n
        x_mean, y_mean = torch.zeros(d, dtype=xp.dtype, device=xp.device), y.mean(0)
        xw, yw = xp, y - y_mean
    else:
        root = weights.sqrt()[:, None]
        share = weights / weights.sum()
        x_mean, y_mean = share @ xp, share @ y  # weighted means: the intercept's fit
        xw, yw = (xp - x_mean) * root, (y - y_mean) * root
    eye = torch.eye(n, dtype=xp.dtype, device=xp.device)
    loo = torch.empty_like(y)
    coef = torch.zeros(d, y.shape[1], dtype=xp.dtype, device=xp.device)
    for rank_alpha in torch.unique(choices, dim=0):
        cols = (choices == rank_alpha).all(1)
        rank, alpha = int(rank_alpha[0]), float(rank_alpha[1])
        xr = xw[:, :rank]
        gram = xr @ xr.T  # (P, P)
        inv = torch.linalg.inv(gram + alpha * eye)
        hat_mat = gram @ inv
        hat = torch.diagonal(hat_mat) + share  # leverage, the intercept's included
        resid = (yw[:, cols] - hat_mat @ yw[:, cols]) / root  # on the targets' scale
        loo[:, cols] = y[:, cols] - resid / (1.0 - hat).clamp_min(1e-6)[:, None]
        with torch.no_grad():
            coef[:rank, cols] = xr.detach().T @ (inv.detach() @ yw[:, cols])
    with torch.no_grad():
        intercept = y_mean - x_mean.detach() @ coef
    return loo, coef, intercept


def _loo_operators(
    xp: torch.Tensor, choices: torch.Tensor, weights: torch.Tensor | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Return the leave-one-out predictions of :func:`_weighted_ridge` as linear maps of the targets, ``M @ y``.

    For fixed inputs ``xp`` ``(P, D)``, weights and ``(rank, penalty)``, the exact leave-one-out prediction of
    every gene is linear in the targets: ``M = I - diag(1 / (1 - h)) R^-1 (I - A) R (I - 1 s^T)``, with ``A`` the
    hat matrix, ``h`` the leverages (the intercept's included), ``R = diag(sqrt(w))`` and ``s`` the weights'
    shares. Returns ``(columns, M)`` per distinct choice in ``choices`` (detached, ``(P, P)``): the targets'
    columns that choice serves and its map, so a later step can reuse a fit for new targets at the cost of one
    product.
    """
    xp = xp.detach()
    n = xp.shape[0]
    eye = torch.eye(n, dtype=xp.dtype, device=xp.device)
    if weights is None:
        root = torch.ones(n, dtype=xp.dtype, device=xp.device)
        share = torch.full((n,), 1.0 / n, dtype=xp.dtype, device=xp.device)
        xw = xp
    else:
        w = weights.detach().to(xp.dtype)
        root, share = w.sqrt(), w / w.sum()
        xw = (xp - share @ xp) * root[:, None]
    centre = eye - share[None, :]  # (P, P): y - weighted mean of y
    out = []
    for rank_alpha in torch.unique(choices, dim=0):
        cols = (choices == rank_alpha).all(1)
        rank, alpha = int(rank_alpha[0]), float(rank_alpha[1])
        xr = xw[:, :rank]
        gram = xr @ xr.T  # (P, P)
        hat_mat = gram @ torch.linalg.inv(gram + alpha * eye)
        hat = torch.diagonal(hat_mat) + share
        resid = ((eye - hat_mat) @ (root[:, None] * centre)) / root[:, None]  # (P, P): residuals per unit target
        out.append((cols, eye - resid / (1.0 - hat).clamp_min(1e-6)[:, None]))
    return out


def _loo_errors(
    x: torch.Tensor, yc: torch.Tensor, scale: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Leave-one-out error of ridge (with intercept), every penalty in :data:`RIDGE_ALPHAS` ``x dim``: ``(A, m2)``.

    ``x`` ``(P, r)`` centred inputs, ``yc`` ``(P, m2)`` centred targets, ``scale`` ``(m2,)`` each output's
    variance (the error of each output, averaged over genes, is in those units). One eigendecomposition
    serves every penalty. With ``weights`` ``(P,)`` the fit is weighted ridge: ``x`` and ``yc`` are then
    centred on their weighted means and multiplied by the weights' square roots, and the error is the
    weighted mean.
    """
    n = x.shape[0]
    evals, evecs = torch.linalg.eigh(x @ x.T)
    evals = evals.clamp_min(0)
    uy = evecs.T @ yc  # (P, m2)
    alphas = torch.tensor(RIDGE_ALPHAS, dtype=evals.dtype, device=evals.device) * x.shape[1]
    shrink = evals / (evals + alphas[:, None])  # (A, P)
    fitted = evecs @ (shrink[:, :, None] * uy)  # (A, P, m2)
    share = 1.0 / n if weights is None else weights / weights.sum()
    hat = shrink @ evecs.pow(2).T + share  # (A, P) leverage incl. intercept
    loo = (yc - fitted) / (1.0 - hat).clamp_min(1e-6)[:, :, None]  # times sqrt(w) when weighted
    if weights is None:
        return (loo.pow(2) / scale).mean(1)
    return (loo.pow(2) / scale).sum(1) / weights.sum()
