"""The whole learned statistic: front end, f, G, H and (optionally) T, composed."""

from __future__ import annotations

import math

import scipy.sparse as sp
import torch
from torch import nn

from .._constants import LOGRATIO_FLOOR
from ._config import ModelConfig
from ._frontend import FrontEnd
from ._head import DistanceHead, StructuredDistanceHead
from ._mixer import ProgramMixer
from ._pooling import segment_mean
from ._programs import ProgramEncoder
from ._recognition import SequenceRecognizer
from ._softmax import softmax


def centred_log_ratio(mix: torch.Tensor, floor: float = LOGRATIO_FLOOR) -> torch.Tensor:
    """``clr(mix + floor)`` over the last axis: the log of each share, floored, minus the mean log share."""
    log_q = torch.log(mix + floor)
    return log_q - log_q.mean(-1, keepdim=True)


class PerturbationStatistic(nn.Module):
    """``s(P) = G(mean_{x in P} f(x))``, the head ``H(s, Q)`` and the recognizer ``T(g)``.

    Parameters
    ----------
    config
        Sizes and choices; see :class:`ModelConfig`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.front = FrontEnd(config)
        self.encoder = ProgramEncoder(config.n_inputs, config.n_programs)
        self.mixer = ProgramMixer(
            config.n_programs, config.n_stat, d_model=config.d_model, n_heads=config.n_heads,
            activation=config.stat_activation, radius=config.stat_radius,
        )  # fmt: skip
        if config.head == "attention":
            self.head: nn.Module = DistanceHead(
                config.n_stat, config.n_states, n_slots=config.head_slots, hidden=config.head_hidden
            )
        else:
            self.head = StructuredDistanceHead(
                config.n_stat, config.n_states, hidden=config.head_hidden, mix_channel=config.mix_channel
            )
        self.recognizer = (
            SequenceRecognizer(
                config.n_features,
                config.stat_dim,
                pooling=config.recognizer_pooling,
                hidden=config.recognizer_hidden,
                dropout=config.recognizer_dropout,
                head=config.t_head,
            )
            if config.n_features
            else None
        )
        self.state_classifier = nn.Linear(config.n_programs, config.n_states) if config.state_classifier else None
        self.cell_mix = nn.Linear(config.n_programs, config.n_states) if config.cell_mix_head else None
        self.prior_logit = (
            nn.Parameter(torch.tensor(math.log(math.expm1(config.prior_strength))))
            if config.fuse_prior and self.recognizer is not None
            else None
        )

    def programs(self, x: sp.csr_matrix | torch.Tensor) -> torch.Tensor:
        """f: front-end inputs ``(N, n_inputs)`` (already transformed) -> programs ``(N, m1)``."""
        return self.encoder(x)

    def cell_summary(self, programs: torch.Tensor) -> torch.Tensor:
        """Return what the statistic averages per cell: ``f(x)`` ``(N, m1)``, and the state posterior (mix channel)."""
        if not self.config.mix_channel:
            return programs
        assert self.state_classifier is not None  # ModelConfig: the mix channel needs the state classifier
        return torch.cat([programs, softmax(self.state_classifier(programs), dim=-1)], dim=-1)

    def pool(self, means: torch.Tensor) -> torch.Tensor:
        """Compute the statistic from per-set means of :meth:`cell_summary`: ``G`` on the programs, the mix kept."""
        m1 = self.config.n_programs
        stat = self.mixer(means[:, :m1])
        return stat if means.shape[1] == m1 else torch.cat([stat, means[:, m1:]], dim=-1)

    def statistic(self, programs: torch.Tensor, segments: torch.Tensor, n_sets: int) -> torch.Tensor:
        """G of the per-set mean of ``programs`` ``(N, m1)`` grouped by ``segments`` -> ``(n_sets, m2)``.

        With the mix channel the cells' mean decoded state posterior follows: ``(n_sets, m2 + C)``.
        """
        return self.pool(segment_mean(self.cell_summary(programs), segments, n_sets))

    def mixed(self, stat: torch.Tensor) -> torch.Tensor:
        """Return the part of a statistic made by ``G`` (drops the mix channel, if any): ``(P, m2)``."""
        return stat[:, : self.config.n_stat]

    def distance(self, stat: torch.Tensor, targets: torch.Tensor, log_k: torch.Tensor | None = None) -> torch.Tensor:
        """H: predicted TV distances ``(P, T)`` from statistics ``(P, m2 [+ C])`` and targets ``(P, T, C)``."""
        return self.head(stat, targets, log_k)

    def distances(
        self, calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """H on several ``(stat, targets, log_k)`` at once: distances ``(P_i, T_i)`` and decoded mixes ``(P_i, C)``.

        The same numbers as :meth:`distance` and :meth:`proportions` call by call; a structured head runs its
        networks once on all of them (a head without a decoded mix gives ``None`` mixes).
        """
        many = getattr(self.head, "forward_many", None)
        if many is not None:
            return many(calls)
        return [self.head(*call) for call in calls], [self.proportions(s, lk) for s, _, lk in calls]

    def proportions(self, stat: torch.Tensor, log_k: torch.Tensor | None = None) -> torch.Tensor | None:
        """Decode the state mix ``(P, C)`` where the head has one, else ``None`` (``log_k``: cells behind each)."""
        decode = getattr(self.head, "decode", None)
        return None if decode is None else decode(stat, log_k)

    @property
    def fuses_prior(self) -> bool:
        """Whether cell statistics are combined with the sequence prior ``T(g)``."""
        return self.prior_logit is not None

    def fuse(self, stat: torch.Tensor, prior: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Posterior statistic ``(k s + kappa T(g)) / (k + kappa)`` for ``(P, m2)`` inputs and ``k`` ``(P,)``.

        With the mix channel ``T`` predicts it too (the mix of the gene's cells), and both parts are fused.
        """
        if self.prior_logit is None:
            return stat
        kappa = torch.nn.functional.softplus(self.prior_logit)
        w = (k.to(stat.dtype) / (k.to(stat.dtype) + kappa)).unsqueeze(-1)  # (P, 1)
        m2 = prior.shape[1]
        fused = w * stat[:, :m2] + (1 - w) * prior
        return fused if stat.shape[1] == m2 else torch.cat([fused, stat[:, m2:]], dim=-1)

    def recognize(self, features: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """T: the statistic predicted from gene features ``(P, W, D)`` -> ``(P, m2 [+ C])`` (``rows``: only those)."""
        if self.recognizer is None:
            raise RuntimeError("this model was trained without gene features, so it has no recognition network")
        return self.recognizer(features, rows)

    def recognize_fit(
        self,
        features: torch.Tensor,
        target: torch.Tensor,
        rows: torch.Tensor | None = None,
        *,
        robust: float = 0.0,
        subsample: float = 0.0,
        refit: bool = True,
    ) -> torch.Tensor:
        """T during training: closed-form heads fit on ``target`` and return leave-one-out predictions.

        Gradient-trained heads just predict (``target`` is then used by the recognition loss only).
        ``rows`` (bool or index) selects the genes of ``features`` that ``target`` belongs to. For a closed-form
        head (:meth:`SequenceRecognizer.fit_predict`), ``robust`` down-weights knockouts that ``T`` predicts
        badly (Huber weights from ``G``'s part of the residuals) and ``subsample`` folds a fit to a random share
        of the knockouts into the stored read-out instead of the full fit. ``refit=False`` reuses the last fit
        for the new ``target`` (one product; see :meth:`SequenceRecognizer.fit_predict`).
        """
        if self.recognizer is not None and self.recognizer.head == "ridge":
            return self.recognizer.fit_predict(
                features, target, rows, robust=robust, robust_dims=self.config.n_stat, subsample=subsample,
                refit=refit,
            )  # fmt: skip
        return self.recognize(features, rows)
