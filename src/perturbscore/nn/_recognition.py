"""T in the paper: predict the statistic from sequence features of the perturbed gene."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

#: Ridge penalties searched by leave-one-out (relative to the number of feature dimensions).
RIDGE_ALPHAS = tuple(10.0 ** (e / 4) for e in range(-8, 17))


class SequenceRecognizer(nn.Module):
    """Pool a gene's ``(windows, dim)`` features, then a read-out to ``m2``.

    Parameters
    ----------
    n_features
        ``dim`` of each window's embedding.
    n_outputs
        ``m2``.
    pooling
        ``"mean"`` over windows, ``"attention"`` (learned softmax weights per window, from the window's
        content), ``"gaussian"`` (a learned bump over window positions: centre and width, two parameters,
        for signal that sits at a fixed distance from the TSS), or ``"conv"`` (the seed's two 1-D
        convolutions over windows, then a mean).
    hidden
        MLP width (``head="mlp"``).
    dropout
        Dropout before the MLP's last layer (few genes: regularise).
    head
        ``"mlp"``: a two-layer MLP trained by gradient (the seed). ``"ridge"``: a linear read-out of the
        standardised pooled features, solved in closed form at every training step by
        :meth:`fit_predict` (penalty chosen by leave-one-out over the training genes), kept as an
        exponential moving average for prediction. With few training genes this is the estimator that
        does not overfit them, and its leave-one-out predictions tell the rest of the model how good
        ``T`` is on genes it has not seen.
    ema
        Weight of the newest closed-form fit in the moving average (``head="ridge"``).
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        pooling: Literal["mean", "attention", "gaussian", "conv"] = "mean",
        hidden: int = 128,
        dropout: float = 0.0,
        head: Literal["mlp", "ridge"] = "mlp",
        ema: float = 0.1,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "attention", "gaussian", "conv"):
            raise ValueError(f"recognizer pooling must be mean, attention, gaussian or conv, not {pooling!r}")
        if head not in ("mlp", "ridge"):
            raise ValueError(f"recognizer head must be 'mlp' or 'ridge', not {head!r}")
        self.pooling, self.head, self.ema = pooling, head, ema
        self.norm = nn.LayerNorm(n_features)
        if pooling == "attention":
            self.score = nn.Linear(n_features, 1)
        elif pooling == "gaussian":
            self.centre = nn.Parameter(torch.zeros(()))  # tanh -> offset from the middle window, in half-widths
            self.log_width = nn.Parameter(torch.tensor(math.log(0.125)))  # sd as a fraction of the windows
        elif pooling == "conv":
            self.conv = nn.Sequential(
                nn.Conv1d(n_features, hidden, kernel_size=5, padding=2),
                nn.GELU(),
                nn.Conv1d(hidden, n_features, kernel_size=5, padding=2),
            )
        if head == "mlp":
            self.mlp = nn.Sequential(
                nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs)
            )
        else:
            self.register_buffer("feat_mean", torch.zeros(n_features))
            self.register_buffer("feat_sd", torch.ones(n_features))
            self.register_buffer("coef", torch.zeros(n_features, n_outputs))
            self.register_buffer("intercept", torch.zeros(n_outputs))
            self.register_buffer("alpha", torch.zeros(()))
            self.register_buffer("n_fits", torch.zeros((), dtype=torch.int64))

    def window_weights(self, n_windows: int) -> torch.Tensor:
        """``(W,)`` pooling weights of ``"gaussian"`` pooling (sum to 1)."""
        pos = torch.linspace(-1.0, 1.0, n_windows, device=self.centre.device)
        width = 2.0 * torch.exp(self.log_width)  # on the [-1, 1] scale
        w = torch.exp(-0.5 * ((pos - torch.tanh(self.centre)) / width) ** 2)
        return w / w.sum()

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """``(P, W, D) -> (P, D)``."""
        if self.pooling in ("mean", "gaussian"):
            if self.pooling == "mean":  # normalise after pooling: 200x cheaper when scoring a genome
                x = features.mean(1)
            else:
                # one (1, W) @ (W, D) product per gene reads the features in place (10x faster than matmul's
                # broadcast, which transposes a copy of them, and 3x faster than einsum)
                w = self.window_weights(features.shape[1]).to(features.dtype)
                x = torch.bmm(w.expand(features.shape[0], 1, -1).contiguous(), features).squeeze(1)
            return x if self.head == "ridge" else self.norm(x)  # ridge standardises per dimension itself
        if self.pooling == "attention":
            return self._attention_pool(features)
        x = self.norm(features)  # (P, W, D)
        return x.mean(1) + self._conv_mean(x.transpose(1, 2))  # (P, D): mean_w of x + conv(x)

    def _conv_mean(self, x: torch.Tensor) -> torch.Tensor:
        """``mean_w conv2(gelu(conv1(x)))[w]`` for ``x`` ``(P, D, W)``, without running the second convolution.

        The second convolution is linear and followed by a mean over windows, so its output's mean is each
        tap's weights times the sum of ``h`` over the windows that tap reads (all of them but the zero-padded
        edge): ``(b W + sum_k W_k S_k) / W``. The same number as convolving then averaging, for half the
        arithmetic of the seed's convolutional ``T`` (forward and backward).
        """
        first, act, second = self.conv
        h = act(first(x))  # (P, hidden, W)
        n_win, pad = h.shape[-1], second.padding[0]
        total = h.sum(-1)  # (P, hidden)
        sums = []
        for k in range(second.kernel_size[0]):
            o = k - pad  # output window w reads h[w + o]: all windows but the |o| at one edge
            edge = h[..., n_win + o :] if o < 0 else h[..., :o]
            sums.append(total if o == 0 else total - edge.sum(-1))
        taps = torch.stack(sums, dim=-1)  # (P, hidden, K)
        out = torch.einsum("pck,ock->po", taps, second.weight) / n_win  # (P, D)
        return out + second.bias

    def _attention_pool(self, features: torch.Tensor) -> torch.Tensor:
        """``sum_w softmax_w(v . LN(x_w)) LN(x_w)`` without materialising ``LN(x)`` (a genome is ~2 GB of features).

        With ``LN(x_w) = gamma (x_w - mu_w) / sigma_w + beta`` the score is ``((v gamma) . x_w - mu_w sum(v
        gamma)) / sigma_w`` plus a constant, and the pooled value ``gamma (sum_w c_w x_w - sum_w c_w mu_w) +
        beta`` with ``c_w = a_w / sigma_w``: three passes over the features (moments, one product, one
        weighted sum) instead of normalising, scoring and summing a full copy.
        """
        norm = self.norm
        d = features.shape[-1]
        mu = features.mean(-1)  # (P, W); plain reductions: torch.var_mean is ~20x slower here on CPU
        var = (torch.linalg.vector_norm(features, dim=-1) ** 2 / d - mu**2).clamp_min(0.0)
        sigma = torch.sqrt(var + norm.eps)
        vg = self.score.weight[0] * norm.weight  # (D,)
        logits = (features @ vg - mu * vg.sum()) / sigma  # (P, W)
        c = torch.softmax(logits, dim=1) / sigma  # (P, W)
        pooled = torch.einsum("pw,pwd->pd", c, features) - (c * mu).sum(1, keepdim=True)  # (P, D)
        return pooled * norm.weight + norm.bias

    def forward(self, features: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted statistic ``(P, m2)`` from features ``(P, W, D)`` (the ridge head uses its stored fit).

        ``rows`` (bool or index) keeps only those genes: pooling first and selecting after avoids copying
        the selected genes' features.
        """
        x = self.pool(features)
        x = x if rows is None else x[rows]
        if self.head == "mlp":
            return self.mlp(x)
        return ((x - self.feat_mean) / self.feat_sd) @ self.coef + self.intercept

    def fit_predict(
        self, features: torch.Tensor, target: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Ridge head, training: fit on ``(P, W, D)`` features and ``(P, m2)`` targets; leave-one-out predictions.

        The penalty minimises the leave-one-out error (each output dimension scaled by its variance).
        The fit is folded into the stored read-out (moving average); the returned ``(P, m2)`` predictions
        are each gene's prediction from a fit without that gene, differentiable in the pooling weights,
        so every loss that reads ``T(g)`` of a training gene sees what ``T`` does for an unseen gene.
        ``rows`` (bool or index) selects the genes of ``features`` that ``target`` belongs to.
        """
        if self.head != "ridge":
            raise RuntimeError("fit_predict is for the ridge head; the MLP head is trained by gradient")
        y = target.detach()
        n = y.shape[0]
        x = self.pool(features)
        x = x if rows is None else x[rows]  # (P, D)
        if n < 3:  # too few genes for a fit: keep the stored read-out
            return self.forward(features, rows)
        mean, sd = x.detach().mean(0), x.detach().std(0).clamp_min(1e-6)
        xs = (x - mean) / sd  # (P, D)
        y_mean = y.mean(0)
        yc = y - y_mean
        gram = xs @ xs.T  # (P, P), dual form: P training genes < D feature dimensions typically
        d = xs.shape[1]
        with torch.no_grad():
            evals, evecs = torch.linalg.eigh(gram.double())
            evals = evals.clamp_min(0)
            uy = evecs.T @ yc.double()  # (P, m2)
            scale = yc.double().pow(2).mean(0).clamp_min(1e-12)  # (m2,)
            # every penalty at once: (A, P) shrinkage, (A, P, m2) fits, (A,) leave-one-out errors
            alphas = torch.tensor(RIDGE_ALPHAS, dtype=evals.dtype, device=evals.device) * d
            shrink = evals / (evals + alphas[:, None])  # (A, P)
            fitted = evecs @ (shrink[:, :, None] * uy)  # (A, P, m2)
            hat = shrink @ evecs.pow(2).T + 1.0 / n  # (A, P) leverage incl. intercept
            loo = (yc.double() - fitted) / (1.0 - hat).clamp_min(1e-6)[:, :, None]
            err = (loo.pow(2) / scale).mean((1, 2)).nan_to_num(nan=math.inf)  # (A,)
            best = float(alphas[int(torch.argmin(err))])  # the first of tied minima, the smallest penalty
        eye = torch.eye(n, dtype=xs.dtype, device=xs.device)
        inv = torch.linalg.inv(gram + best * eye)  # (P, P)
        hat_mat = gram @ inv
        fitted = hat_mat @ yc
        hat = torch.diagonal(hat_mat) + 1.0 / n
        loo = y - (yc - fitted) / (1.0 - hat).clamp_min(1e-6)[:, None]
        with torch.no_grad():
            coef = xs.detach().T @ (inv.detach() @ yc)  # (D, m2)
            rate = 1.0 if int(self.n_fits) == 0 else self.ema
            for buf, new in ((self.feat_mean, mean), (self.feat_sd, sd), (self.coef, coef), (self.intercept, y_mean)):
                buf.lerp_(new.to(buf.dtype), rate)
            self.alpha.fill_(best)
            self.n_fits += 1
        return loo
