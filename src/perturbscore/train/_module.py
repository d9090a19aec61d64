"""The Lightning training plan: one episode per step, ``L_pred + lambda L_rec`` (+ auxiliary terms)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import lightning as L
import torch

from .._errors import RunError
from ..data import state_fingerprint
from ..data._sampling import Episode
from ..nn import PerturbationStatistic, cross_entropy, segment_mean, softmax
from ._config import TrainConfig
from ._loss import LossOutput, logratio_loss, prediction_loss, recognition_loss, recognition_r2, stability_loss

if TYPE_CHECKING:
    from lightning.pytorch.utilities.types import OptimizerLRScheduler

#: Training steps per closed-form fit of a ridge ``T`` (the steps between reuse its leave-one-out map).
REC_REFIT_EVERY = 4


def log_k(k: torch.Tensor) -> torch.Tensor:
    """Return the head's cell-count input: ``log(1 + k)`` (0 for the sequence-only path)."""
    return torch.log1p(k.to(torch.float32))


class StatisticModule(L.LightningModule):
    """Train a :class:`~perturbscore.nn.PerturbationStatistic` on episodes.

    Parameters
    ----------
    net
        The modules (front end fitted beforehand).
    config
        Loss weights, optimiser and schedule.
    """

    def __init__(self, net: PerturbationStatistic, config: TrainConfig, *, rec_refit_every: int = 1) -> None:
        super().__init__()
        self.net, self.cfg = net, config
        self.use_rec = config.use_recognizer and net.recognizer is not None
        self.rec_refit_every = max(1, int(rec_refit_every))
        self._sums: dict[str, torch.Tensor] | None = None  # the epoch's loss terms so far, times perturbations
        self._weight = 0.0

    def compute(self, ep: Episode, *, refit: bool = True) -> LossOutput:
        """All loss terms of an episode.

        ``refit=False`` (training) reuses ``T``'s last closed-form fit for this step's targets instead of fitting
        again (see :meth:`~perturbscore.nn.SequenceRecognizer.fit_predict`).
        """
        net, cfg = self.net, self.cfg
        programs = net.programs(ep.inputs)  # (N, m1)
        has = ep.has_features if (self.use_rec and ep.features is not None) else None
        stable = cfg.stability_weight > 0 and ep.n_sets > 1
        use_ref = ep.ref_inputs is not None and (stable or has is not None)
        # G runs once on every set of means the step needs (its cost is per call, not per row): the sampled
        # cells', the reference sample's, and (for the stability loss) the sampled cells' with f detached.
        # The losses that read the reference sample or the detached means train G alone: f keeps the programs
        # that the state and prediction losses give it.
        means = [segment_mean(net.cell_summary(programs), ep.segments, ep.n_sets)]  # (P, m1 [+ C])
        grad_ref = stable and torch.is_grad_enabled()
        if use_ref:
            with torch.no_grad():
                ref_summary = net.cell_summary(net.programs(ep.ref_inputs))
            assert ep.ref_segments is not None  # drawn with ref_inputs
            means.append(segment_mean(ref_summary, ep.ref_segments, ep.n_sets))
        if stable and use_ref:
            means.append(means[0].detach())  # G on the detached programs' means (the mix channel is not trained)
        stats = net.pool(torch.cat(means)).split(ep.n_sets)  # each (P, m2 [+ C])
        stat = stats[0]
        ref = None if not use_ref else (stats[1] if grad_ref else stats[1].detach())
        rec, target = None, None
        if has is not None and bool(has.any()):
            target = (stat if ref is None else ref.detach())[has]
            # training: a closed-form T is fit here and returns leave-one-out predictions (honest for unseen genes)
            # T pools every gene's windows, then keeps those with features (cheaper than copying their windows)
            feats = ep.features
            assert feats is not None  # has is set only with features
            if self.training:
                rec = net.recognize_fit(
                    feats, target, has, robust=cfg.rec_robust, subsample=cfg.rec_subsample, refit=refit
                )
            else:
                rec = net.recognize(feats, has)
        used = stat
        if rec is not None and net.fuses_prior:
            used = stat.clone()
            used[has] = net.fuse(stat[has], rec, ep.k[has])
        # H runs once on every statistic the step scores: the (fused) statistic, G's part alone (mix channel: so s
        # stays a full summary, which T learns for unseen genes) and T's predictions (the sequence path)
        lk = log_k(ep.k)
        calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = [(used, ep.targets, lk)]
        if net.config.mix_channel:
            calls.append((net.mixed(used), ep.targets, lk))
        if rec is not None and target is not None:
            calls.append((rec, ep.targets[has], torch.zeros_like(lk[has])))
        dists, mixes = net.distances(calls)  # (P, T) each; decoded mixes (P, C)
        pred = dists[0]
        pred_loss = prediction_loss(pred, ep.distances, cfg.loss)
        terms = {"pred_loss": pred_loss, "pred_mae": (pred - ep.distances).abs().mean().detach()}
        total = pred_loss
        if net.config.mix_channel:
            terms["pred_loss_stat"] = prediction_loss(dists[1], ep.distances, cfg.loss)
            total = total + terms["pred_loss_stat"]
        if cfg.state_weight > 0 and net.state_classifier is not None:
            terms["state_loss"] = cross_entropy(net.state_classifier(programs), ep.cell_states)
            total = total + cfg.state_weight * terms["state_loss"]
        if cfg.cell_mix_weight > 0 and net.cell_mix is not None:
            cell_q = softmax(net.cell_mix(programs), dim=-1)  # (N, C)
            terms["cell_mix_loss"] = 0.5 * (cell_q - ep.proportions[ep.segments]).abs().sum(-1).mean()
            total = total + cfg.cell_mix_weight * terms["cell_mix_loss"]
        if stable and ref is not None:
            terms["stability_loss"] = stability_loss(net.mixed(stats[2]), net.mixed(ref))
            total = total + cfg.stability_weight * terms["stability_loss"]
        if cfg.logratio_weight > 0:  # G's part kept in line with the log-ratio mix, on the larger reference sample
            # (its programs carry no gradient: the loss trains G alone)
            geo = stats[1] if use_ref else stat
            terms["logratio_loss"] = logratio_loss(net.mixed(geo), ep.proportions)
            total = total + cfg.logratio_weight * terms["logratio_loss"]
        q_hat = mixes[0]  # the decoded mix of the statistic
        if q_hat is not None and cfg.prop_weight > 0:
            terms["prop_loss"] = 0.5 * (q_hat - ep.proportions).abs().sum(-1).mean()
            if net.config.mix_channel:  # the statistic's own decoded mix (all that sequence-only scoring has)
                assert mixes[1] is not None  # the mix channel's structured head decodes every call
                terms["prop_loss"] = terms["prop_loss"] + 0.5 * (mixes[1] - ep.proportions).abs().sum(-1).mean()
            total = total + cfg.prop_weight * terms["prop_loss"]
        if rec is not None and target is not None:
            terms["rec_loss"] = recognition_loss(rec, target, cfg.rec_mode)
            terms["rec_r2"] = recognition_r2(net.mixed(rec.detach()), net.mixed(target.detach()))  # G's part
            total = total + cfg.rec_weight * terms["rec_loss"]
            seq_pred = dists[-1]
            terms["seq_mae"] = (seq_pred - ep.distances[has]).abs().mean().detach()
            if cfg.seq_weight > 0:
                terms["seq_loss"] = prediction_loss(seq_pred, ep.distances[has], cfg.loss)
                total = total + cfg.seq_weight * terms["seq_loss"]
        return LossOutput(total=total, terms=terms)

    def on_fit_start(self) -> None:
        """Flush subnormal floats to zero while fitting (in every process of a distributed run).

        Tiny gradients and Adam's second moments become subnormal as training goes on, and CPU arithmetic on
        them is several times slower: the seed presets' step grew from 6 to 30 ms within 100 steps
        (``benchmarks/bench_step.py``). Values below ~1e-38 do not change what the model learns.
        """
        torch.set_flush_denormal(True)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse to resume with another front end than the run's (its steps read cells embedded by this one)."""
        if self.net.front.kind != "pca":
            return
        state = checkpoint.get("state_dict", {})
        saved = {name: state.get(f"net.front.{name}") for name in ("gene_index", "mean", "sd", "components")}
        if any(v is None for v in saved.values()):
            return
        arrays = {name: value.cpu().numpy() for name, value in saved.items()}
        if state_fingerprint({"kind": "pca", **arrays}) != self.net.front.fingerprint:
            raise RunError(
                "this run was started with another front end than the screen's stored embedding now holds (it was "
                "embedded again in between?); resume without the new embedding (embedding_key=None) or start a new run"
            )

    def on_fit_end(self) -> None:
        """Back to the process default (``train_statistic`` also restores it if fitting fails)."""
        torch.set_flush_denormal(False)

    def training_step(self, batch: Episode, batch_idx: int) -> torch.Tensor:
        """One optimisation step.

        The loss terms are summed here and logged once, at the epoch's last step, as their means over the epoch
        (weighted by perturbations per step): what ``self.log(..., on_epoch=True)`` at every step would give,
        without its cost at every step (it was most of a step's time on CPU).
        """
        out = self.compute(batch, refit=batch_idx % self.rec_refit_every == 0)  # each epoch starts with a fit
        if batch_idx == 0 or self._sums is None:
            self._sums, self._weight = {}, 0.0
        with torch.no_grad():
            for name, value in out.terms.items():
                value = value.detach().float()
                self._sums[name] = (
                    value * batch.n_sets if name not in self._sums else self._sums[name] + value * batch.n_sets
                )
        self._weight += batch.n_sets
        if self._last_of_epoch(batch_idx):
            for name, total in self._sums.items():
                self.log(f"train_{name}", total / self._weight, on_step=False, on_epoch=True, batch_size=batch.n_sets)
            self._sums, self._weight = None, 0.0
        return out.total

    def _last_of_epoch(self, batch_idx: int) -> bool:
        """Whether this is the epoch's last step (the trainer's count: a distributed run splits an epoch's steps)."""
        trainer = self._trainer
        per_epoch = trainer.num_training_batches if trainer is not None else self.cfg.steps_per_epoch
        max_steps = trainer.max_steps if trainer is not None else self.cfg.max_steps
        return batch_idx + 1 >= per_epoch or self.global_step + 1 >= max_steps

    def validation_step(self, batch: Episode, batch_idx: int) -> None:
        """Held-out perturbations, fixed episodes."""
        out = self.compute(batch)
        terms = dict(out.terms)
        terms["select"] = terms["pred_loss"] + self.cfg.select_stability_weight * terms.get("stability_loss", 0.0)
        for name, value in terms.items():
            self.log(
                f"val_{name}", value, on_step=False, on_epoch=True, batch_size=batch.n_sets, sync_dist=True,
                prog_bar=name in ("pred_loss", "select"),
            )  # fmt: skip

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW with optional warm-up + cosine decay."""
        cfg = self.cfg
        # Lists in module order (never sets): resumed optimizer state must pair with the same tensors.
        rec = list(self.net.recognizer.parameters()) if self.net.recognizer is not None else []
        rec_ids = {id(p) for p in rec}
        groups = [
            {"params": [p for p in self.net.parameters() if id(p) not in rec_ids], "weight_decay": cfg.weight_decay},
            {"params": rec, "weight_decay": cfg.rec_weight_decay},
        ]
        opt = _adamw([g for g in groups if g["params"]], lr=cfg.lr)
        if cfg.lr_schedule == "constant":
            return opt

        def factor(step: int) -> float:
            if step < cfg.warmup_steps:
                return (step + 1) / cfg.warmup_steps
            frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _adamw(groups: list[dict], *, lr: float) -> torch.optim.AdamW:
    """AdamW, fused where PyTorch has it for these tensors (a third of foreach's time for many small ones on CPU)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or PyTorch version
        return torch.optim.AdamW(groups, lr=lr, foreach=True)
