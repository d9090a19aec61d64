"""H in the paper: predict the distance between a perturbation's state mix and a target ``Q``."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._softmax import softmax


def _mlp(n_in: int, hidden: int, n_out: int, *, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    mods.append(nn.Linear(width, n_out))
    return nn.Sequential(*mods)


class DistanceHead(nn.Module):
    """The seed's cross-attention head, output squashed to [0, 1] (total-variation scale).

    An MLP maps ``Q`` to a key matrix ``K`` (n × m2) and a value vector ``v`` (n); the statistic
    attends over the ``n`` slots, ``a = softmax(K s)``; the output is ``sigmoid(MLP(a * v))``.

    Parameters
    ----------
    n_stat
        ``m2``, the statistic size.
    n_states
        ``C``, the number of cell states.
    n_slots
        ``n``, attention slots (the seed used 20).
    hidden
        Width of the MLPs (the seed used 128).
    """

    def __init__(self, n_stat: int, n_states: int, *, n_slots: int = 20, hidden: int = 128) -> None:
        super().__init__()
        self.n_slots, self.n_stat = n_slots, n_stat
        self.target_net = _mlp(n_states, hidden, n_slots * n_stat + n_slots)
        self.out = _mlp(n_slots, hidden, 1, layers=1)

    def forward(self, stat: torch.Tensor, targets: torch.Tensor, log_k: torch.Tensor | None = None) -> torch.Tensor:
        """Distances ``(P, T)`` for statistics ``(P, m2)`` and targets ``(P, T, C)``; ``log_k`` unused."""
        P, T, _ = targets.shape
        kv = self.target_net(targets)  # (P, T, n*m2 + n)
        keys = kv[..., : self.n_slots * self.n_stat].reshape(P, T, self.n_slots, self.n_stat)  # (P, T, n, m2)
        values = kv[..., self.n_slots * self.n_stat :]  # (P, T, n)
        attn = softmax((keys @ stat[:, None, :, None]).squeeze(-1), dim=-1)  # (P, T, n)
        return torch.sigmoid(self.out(attn * values).squeeze(-1))  # (P, T)


class ProportionHead(nn.Module):
    """Decode a state mix ``q_hat`` (on the simplex) from the statistic: ``softmax(MLP(s))``."""

    def __init__(self, n_stat: int, n_states: int, *, hidden: int = 64) -> None:
        super().__init__()
        self.net = _mlp(n_stat, hidden, n_states, layers=1)

    def forward(self, stat: torch.Tensor) -> torch.Tensor:
        """``(P, m2) -> (P, C)`` proportions."""
        return softmax(self.net(stat), dim=-1)


class StructuredDistanceHead(nn.Module):
    """Distance head that sees the statistic, the target, a decoded mix and how many cells were used.

    Input per (perturbation, target): ``[s, Q, q_hat, |q_hat - Q|, TV(q_hat, Q), log k]``; an MLP maps it
    to a distance in [0, 1]. With ``mix_channel`` a statistic has ``m2 + C`` entries (``G``'s part, then the
    cells' mean state posterior ``m``) and ``q_hat = w m + (1 - w) q_hat(G part)``, ``w = k / (k + kappa_mix)``
    (:meth:`decode`); with no cells (``k = 0``: a statistic predicted by ``T``) the channel holds ``T``'s
    prediction of the mix and is read as it is; a statistic of ``m2`` entries is decoded from ``G``'s part.
    Knowing ``k`` lets the head shrink small-sample estimates by the right amount;
    ``q_hat`` gives it the geometry of total variation for free. This replaces the seed's cross-attention
    head in perturbscore's default configuration.
    """

    def __init__(self, n_stat: int, n_states: int, *, hidden: int = 128, mix_channel: bool = False) -> None:
        super().__init__()
        self.n_stat = n_stat
        self.proportions = ProportionHead(n_stat, n_states)
        self.net = _mlp(n_stat + 3 * n_states + 2, hidden, 1)
        # kappa_mix: cells' worth of the statistic's decoded mix against the cells' mean posterior
        self.mix_logit = nn.Parameter(torch.tensor(math.log(math.expm1(10.0)))) if mix_channel else None

    def decode(self, stat: torch.Tensor, log_k: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the state mix ``(P, C)`` of statistics ``(P, m2 [+ C])`` (``log_k``: cells behind each, 0 = none)."""
        return self._blend(self.proportions(stat[:, : self.n_stat]), stat, log_k)

    def _blend(self, q_s: torch.Tensor, stat: torch.Tensor, log_k: torch.Tensor | None) -> torch.Tensor:
        """:meth:`decode` given ``q_s``, the mix decoded from ``G``'s part of ``stat``."""
        if self.mix_logit is None or stat.shape[1] == self.n_stat:  # no mix channel, or G's part alone
            return q_s
        m = stat[:, self.n_stat :].clamp_min(0.0)
        m = m / m.sum(-1, keepdim=True).clamp_min(1e-6)
        k = torch.zeros(stat.shape[0], device=stat.device) if log_k is None else torch.expm1(log_k.to(stat.dtype))
        w = k / (k + torch.nn.functional.softplus(self.mix_logit))  # (P,)
        # no cells (T(g) alone): the channel holds T's own prediction of the mix, read as it is
        w = torch.where(k > 0, w, torch.ones_like(w)).unsqueeze(-1)  # (P, 1)
        return w * m + (1 - w) * q_s

    def forward(self, stat: torch.Tensor, targets: torch.Tensor, log_k: torch.Tensor | None = None) -> torch.Tensor:
        """Distances ``(P, T)`` for statistics ``(P, m2 [+ C])``, targets ``(P, T, C)`` and ``log_k`` ``(P,)``."""
        return self.forward_many([(stat, targets, log_k)])[0][0]

    def forward_many(
        self, calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """:meth:`forward` and :meth:`decode` of several ``(stat, targets, log_k)``, each network run once on all.

        Returns the distances ``(P_i, T_i)`` and the decoded mixes ``(P_i, C)`` of each call.
        """
        sizes = [stat.shape[0] for stat, _, _ in calls]
        core = (
            torch.cat([stat[:, : self.n_stat] for stat, _, _ in calls])
            if len(calls) > 1
            else calls[0][0][:, : self.n_stat]
        )
        q_s = self.proportions(core).split(sizes)  # each (P_i, C)
        mixes, rows = [], []
        for (stat, targets, log_k), q in zip(calls, q_s, strict=True):
            P, T, _ = targets.shape
            q_hat = self._blend(q, stat, log_k)  # (P, C)
            mixes.append(q_hat)
            q_pt = q_hat[:, None, :].expand(P, T, -1)  # (P, T, C)
            gap = (q_pt - targets).abs()  # (P, T, C)
            tv = 0.5 * gap.sum(-1, keepdim=True)  # (P, T, 1)
            lk = torch.zeros(P, device=stat.device) if log_k is None else log_k.to(stat.dtype)
            s = stat[:, None, : self.n_stat].expand(P, T, -1)
            rows.append(torch.cat([s, targets, q_pt, gap, tv, lk[:, None, None].expand(P, T, 1)], dim=-1).flatten(0, 1))
        x = torch.cat(rows) if len(rows) > 1 else rows[0]  # (sum P_i T_i, n_in)
        out = torch.sigmoid(self.net(x).squeeze(-1)).split([t.shape[0] * t.shape[1] for _, t, _ in calls])
        return [o.view(t.shape[0], t.shape[1]) for o, (_, t, _) in zip(out, calls, strict=True)], mixes
