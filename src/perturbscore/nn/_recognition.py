"""T in the paper: predict the statistic from sequence features of the perturbed gene."""

from __future__ import annotations

import math
from typing import Literal, cast

import torch
from torch import nn

from ._ridge import RIDGE_ALPHAS, _loo_errors, _loo_operators, _weighted_ridge

#: Leading components of the all-gene feature basis the ridge head may keep (chosen by leave-one-out; all of
#: them, i.e. plain ridge, is always a candidate).
BASIS_RANKS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
#: The basis is fitted only from at least this many genes per feature dimension (a covariance from fewer genes
#: is too noisy to rank directions by; the read-out is then plain ridge).
BASIS_MIN_GENES_PER_DIM = 2.0
#: With a basis, rank and penalty are chosen again every this many fits and kept in between: a search over
#: every rank (a leave-one-out pass per rank) at every fit made the default's forward 17.6 ms instead of 9.3
#: (benchmarks/bench_step.py, 15,077 genes), and the choice moves slowly as the statistic trains.
RESELECT_EVERY = 10
#: Reweighting passes of the robust ridge fit (``fit_predict(robust=...)``): each sets Huber weights from the
#: leave-one-out residuals of the fit before.
ROBUST_PASSES = 2


class SequenceRecognizer(nn.Module):
    """Pool a gene's ``(windows, dim)`` features, then a read-out to ``m2``.

    Parameters
    ----------
    n_features
        ``dim`` of each window's embedding.
    n_outputs
        ``m2``.
    pooling
        ``"gaussian"`` (a learned bump over window positions: centre and width, two parameters, for signal
        that sits at a fixed distance from the TSS), ``"attention"`` (learned softmax weights per window, from
        the window's content), or ``"conv"`` (the seed's two 1-D convolutions over windows, then a mean).
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
        ``T`` is on genes it has not seen. After :meth:`fit_basis` on the features of every gene a user
        has (not only the perturbed ones), the read-out sees the standardised features in the principal
        basis of all those genes and keeps the leading ``r`` components, ``r`` chosen by leave-one-out
        together with the penalty (principal-component ridge; ``r`` = all is plain ridge).
    ema
        Weight of the newest closed-form fit in the moving average (``head="ridge"``).
    """

    # buffers of the ridge head, registered in __init__ (head="ridge" only)
    feat_mean: torch.Tensor
    feat_sd: torch.Tensor
    coef: torch.Tensor
    intercept: torch.Tensor
    alpha: torch.Tensor
    n_fits: torch.Tensor
    basis: torch.Tensor
    basis_sd: torch.Tensor
    basis_genes: torch.Tensor
    rank: torch.Tensor

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        pooling: Literal["attention", "gaussian", "conv"] = "gaussian",
        hidden: int = 128,
        dropout: float = 0.0,
        head: Literal["mlp", "ridge"] = "mlp",
        ema: float = 0.1,
    ) -> None:
        super().__init__()
        if pooling not in ("attention", "gaussian", "conv"):
            raise ValueError(f"recognizer pooling must be attention, gaussian or conv, not {pooling!r}")
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
            self.register_buffer("alpha", torch.zeros(n_outputs, dtype=torch.float64))  # penalty last used, per output
            self.register_buffer("n_fits", torch.zeros((), dtype=torch.int64))
            # the all-gene feature basis (identity until fit_basis): columns are directions, leading first
            self.register_buffer("basis", torch.eye(n_features))
            self.register_buffer("basis_sd", torch.ones(n_features))
            self.register_buffer("basis_genes", torch.zeros((), dtype=torch.int64))  # genes it was fitted on
            self.register_buffer("rank", torch.full((n_outputs,), n_features, dtype=torch.int64))  # kept, per output

    @property
    def has_basis(self) -> bool:
        """Whether :meth:`fit_basis` fitted an all-gene basis (ridge head)."""
        return self.head == "ridge" and int(self.basis_genes) > 0

    @torch.no_grad()
    def fit_basis(self, features: torch.Tensor, *, chunk: int = 256) -> bool:
        """Fit the principal basis of the pooled, standardised features of every gene in ``features``.

        ``features`` ``(N, W, D)`` are the genes a user has features for (perturbed or not): no labels are
        read, so this uses what sequence alone says about which feature directions vary together across
        the genome. With fewer than :data:`BASIS_MIN_GENES_PER_DIM` genes per dimension the basis stays the
        identity and the head stays plain ridge. Returns whether a basis was fitted.
        """
        if self.head != "ridge":
            raise RuntimeError("fit_basis is for the ridge head; the MLP head has no closed-form read-out")
        n, d = features.shape[0], features.shape[-1]
        if n < BASIS_MIN_GENES_PER_DIM * d:
            return False
        pooled = torch.cat([self.pool(features[i : i + chunk].to(self.basis.device)) for i in range(0, n, chunk)])
        x = pooled.double()
        sd = x.std(0).clamp_min(1e-6)
        z = (x - x.mean(0)) / sd
        evals, evecs = torch.linalg.eigh(z.T @ z / n)
        vecs = evecs.flip(-1)  # leading first
        vecs = vecs * torch.sign(vecs[vecs.abs().argmax(0), torch.arange(d)])  # one sign per direction
        self.basis.copy_(vecs.to(self.basis.dtype))
        self.basis_sd.copy_(sd.to(self.basis_sd.dtype))
        self.basis_genes.fill_(n)
        return True

    def window_weights(self, n_windows: int) -> torch.Tensor:
        """``(W,)`` pooling weights of ``"gaussian"`` pooling (sum to 1)."""
        pos = torch.linspace(-1.0, 1.0, n_windows, device=self.centre.device)
        width = 2.0 * torch.exp(self.log_width)  # on the [-1, 1] scale
        w = torch.exp(-0.5 * ((pos - torch.tanh(self.centre)) / width) ** 2)
        return w / w.sum()

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """``(P, W, D) -> (P, D)``."""
        if self.pooling == "gaussian":
            # one (1, W) @ (W, D) product per gene reads the features in place (10x faster than matmul's
            # broadcast, which transposes a copy of them, and 3x faster than einsum); normalised after pooling
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
        second = cast(nn.Conv1d, second)  # __init__'s: integer padding, with a bias
        h = act(first(x))  # (P, hidden, W)
        n_win, pad = h.shape[-1], cast(tuple[int, ...], second.padding)[0]
        total = h.sum(-1)  # (P, hidden)
        sums = []
        for k in range(second.kernel_size[0]):
            o = k - pad  # output window w reads h[w + o]: all windows but the |o| at one edge
            edge = h[..., n_win + o :] if o < 0 else h[..., :o]
            sums.append(total if o == 0 else total - edge.sum(-1))
        taps = torch.stack(sums, dim=-1)  # (P, hidden, K)
        out = torch.einsum("pck,ock->po", taps, second.weight) / n_win  # (P, D)
        return out + cast(torch.Tensor, second.bias)

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
        self,
        features: torch.Tensor,
        target: torch.Tensor,
        rows: torch.Tensor | None = None,
        *,
        robust: float = 0.0,
        robust_dims: int | None = None,
        subsample: float = 0.0,
        refit: bool = True,
    ) -> torch.Tensor:
        """Ridge head, training: fit on ``(P, W, D)`` features and ``(P, m2)`` targets; leave-one-out predictions.

        The penalty (and, with a basis, the rank) minimises the leave-one-out error (each output dimension scaled
        by its variance), one choice for every output; with a basis they are chosen again every
        :data:`RESELECT_EVERY` fits. The fit is folded into the stored read-out (moving average, weight
        :attr:`ema`; the first fit replaces it); the returned ``(P, m2)`` predictions are each gene's
        prediction from a fit without that gene, differentiable in the pooling weights, so every loss that
        reads ``T(g)`` of a training gene sees what ``T`` does for an unseen gene. ``rows`` (bool or index)
        selects the genes of ``features`` that ``target`` belongs to.

        ``robust > 0`` weights the genes (Huber weights, :data:`ROBUST_PASSES` passes): a gene whose
        leave-one-out residual (on the first ``robust_dims`` entries, all when ``None``, each in units of its
        spread) is more than ``robust`` times the median residual gets weight ``robust * median / residual``.
        Extreme genes that the features predict keep their full weight; only those they do not are discounted,
        so one or two of them cannot steer the least-squares fit. ``0 < subsample < 1`` folds a fit to a random
        ``subsample`` share of the genes (same rank, penalty and weights; drawn from the fit count, so
        reproducible) into the stored read-out instead of the full fit: the moving average then averages fits
        to different subsets (subagging), which steadies what ``T`` predicts for unseen genes; with fewer than
        6 genes the full fit is kept. The returned leave-one-out predictions are the full fit's either way.

        ``refit=False`` reuses the last fit for new targets (the same genes, in the same order; otherwise it fits):
        with the features, weights and penalty held, the leave-one-out predictions are a linear map of the
        targets (:func:`~perturbscore.nn._ridge._loo_operators`), kept from that fit, so this costs one
        ``(P, P)`` product. They carry no gradient into the pooling, and the stored read-out is left as it is.
        """
        if self.head != "ridge":
            raise RuntimeError("fit_predict is for the ridge head; the MLP head is trained by gradient")
        y = target.detach()
        n, m = y.shape
        key = (features.data_ptr(), tuple(features.shape), None if rows is None else rows.detach().cpu())
        cached = getattr(self, "_loo_cache", None)
        if not refit and cached is not None and _same_key(cached[0], key) and n >= 3:
            loo = torch.empty_like(y)
            for cols, op in cached[1]:
                loo[:, cols] = (op @ y[:, cols].to(op.dtype)).to(y.dtype)
            return loo
        x = self.pool(features)
        x = x if rows is None else x[rows]  # (P, D)
        if n < 3:  # too few genes for a fit: keep the stored read-out
            return self.forward(features, rows)
        mean = x.detach().mean(0)
        sd = self.basis_sd if self.has_basis else x.detach().std(0).clamp_min(1e-6)
        xs = (x - mean) / sd  # (P, D)
        y_mean = y.mean(0)
        yc = y - y_mean
        d = xs.shape[1]
        xp = xs @ self.basis if self.has_basis else xs  # (P, D): coordinates in the all-gene basis
        ranks = candidate_ranks(d) if self.has_basis else [d]
        reselect = len(ranks) == 1 or int(self.n_fits) % RESELECT_EVERY == 0  # the choice moves slowly
        if reselect:
            self._select(xp.detach(), yc, ranks)
        weights = None
        for _ in range(ROBUST_PASSES if robust > 0 else 0):  # reweighting passes: Huber weights from LOO residuals
            loo, _, _ = _weighted_ridge(xp.detach(), y, self._choices(), weights)
            dims = robust_dims or m
            dist = torch.linalg.vector_norm((y - loo)[:, :dims] / y[:, :dims].std(0).clamp_min(1e-12), dim=1)
            weights = (robust * dist.median() / dist.clamp_min(1e-12)).clamp(max=1.0)
            if reselect:  # the penalty the weighted fit wants (a discounted outlier no longer asks for shrinkage)
                self._select(xp.detach(), y, ranks, weights)
        loo, coef, intercept = _weighted_ridge(xp, y, self._choices(), weights)
        self._loo_cache = (key, _loo_operators(xp, self._choices(), weights))  # for fits with refit=False
        if 0 < subsample < 1 and n >= 6:
            keep = self._subset(n, subsample)
            w_sub = torch.ones(n, dtype=xp.dtype, device=xp.device) if weights is None else weights
            _, coef, intercept = _weighted_ridge(xp.detach()[keep], y[keep], self._choices(), w_sub[keep])
        with torch.no_grad():
            if self.has_basis:  # (D, m2) on the standardised features (the kept directions only: zeros beyond)
                kept = int(self.rank.max())
                coef = self.basis[:, :kept] @ coef[:kept]
            self.last_weights_ = torch.ones(n) if weights is None else weights.detach()
            rate = 1.0 if int(self.n_fits) == 0 else self.ema
            for buf, new in (
                (self.feat_mean, mean),
                (self.feat_sd, sd),
                (self.coef, coef),
                (self.intercept, intercept),
            ):
                buf.lerp_(new.to(buf.dtype), rate)
            self.n_fits += 1
        return loo

    def _subset(self, n: int, share: float) -> torch.Tensor:
        """Draw a random ``share`` of ``n`` gene indices (at least 3, at most ``n - 1``), seeded by the fit count."""
        size = min(n - 1, max(3, round(share * n)))
        gen = torch.Generator().manual_seed(1_000_003 + int(self.n_fits))
        return torch.randperm(n, generator=gen)[:size].sort().values.to(self.coef.device)

    def _choices(self) -> torch.Tensor:
        """``(m2, 2)``: each output's rank and penalty."""
        return torch.stack([self.rank.to(torch.float64), self.alpha.to(torch.float64)], 1)

    @torch.no_grad()
    def _select(self, xp: torch.Tensor, y: torch.Tensor, ranks: list[int], weights: torch.Tensor | None = None) -> None:
        """Choose the rank and penalty of every output by leave-one-out; ``y`` centred when unweighted (else raw)."""
        x = xp.double()
        y = y.double()
        if weights is not None:  # weighted ridge: centre on weighted means, scale rows by sqrt(w)
            w = weights.double()
            root, share = w.sqrt()[:, None], w / w.sum()
            x, y = (x - share @ x) * root, (y - share @ y) * root
            scale = (y.pow(2).sum(0) / w.sum()).clamp_min(1e-12)
        else:
            w, scale = None, y.pow(2).mean(0).clamp_min(1e-12)  # (m2,)
        errs = torch.stack([_loo_errors(x[:, :r], y, scale, w) for r in ranks])
        errs = errs.nan_to_num(nan=math.inf)  # (ranks, A, m2)
        pick = int(torch.argmin(errs.mean(-1)))  # first of tied minima: fewest components, smallest penalty
        rank = ranks[pick // errs.shape[1]]
        self.rank.fill_(rank)
        self.alpha.fill_(float(RIDGE_ALPHAS[pick % errs.shape[1]] * rank))


def _same_key(a: tuple, b: tuple) -> bool:
    """Whether two ``(features pointer, shape, rows)`` keys name the same genes in the same order."""
    if a[0] != b[0] or a[1] != b[1] or (a[2] is None) != (b[2] is None):
        return False
    return a[2] is None or (a[2].shape == b[2].shape and bool((a[2] == b[2]).all()))


def candidate_ranks(dim: int) -> list[int]:
    """How many leading basis directions a read-out may keep: :data:`BASIS_RANKS` below ``dim``, then ``dim``."""
    return [r for r in BASIS_RANKS if r < dim] + [dim]
