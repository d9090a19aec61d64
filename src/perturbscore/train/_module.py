"""The Lightning training plan: one episode per step, ``L_pred + lambda L_rec`` (+ auxiliary terms)."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F

from ..data._sampling import Episode
from ..nn import PerturbationStatistic, segment_mean
from ._config import TrainConfig
from ._loss import LossOutput, logratio_loss, prediction_loss, recognition_loss, recognition_r2, stability_loss


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

    def __init__(self, net: PerturbationStatistic, config: TrainConfig) -> None:
        super().__init__()
        self.net, self.cfg = net, config
        self.use_rec = config.use_recognizer and net.recognizer is not None

    def compute(self, ep: Episode) -> LossOutput:
        """All loss terms of an episode."""
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
            if self.training:
                rec = net.recognize_fit(feats, target, has, robust=cfg.rec_robust, subsample=cfg.rec_subsample)
            else:
                rec = net.recognize(feats, has)
        used = stat
        if rec is not None and net.fuses_prior:
            used = stat.clone()
            used[has] = net.fuse(stat[has], rec, ep.k[has])
        pred = net.distance(used, ep.targets, log_k(ep.k))  # (P, T)
        pred_loss = prediction_loss(pred, ep.distances, cfg.loss)
        terms = {"pred_loss": pred_loss, "pred_mae": (pred - ep.distances).abs().mean().detach()}
        total = pred_loss
        if net.config.mix_channel:  # H on G's part alone too, so s stays a full summary (T learns it for unseen genes)
            terms["pred_loss_stat"] = prediction_loss(net.distance(net.mixed(used), ep.targets, log_k(ep.k)),
                                                      ep.distances, cfg.loss)  # fmt: skip
            total = total + terms["pred_loss_stat"]
        if cfg.state_weight > 0 and net.state_classifier is not None:
            terms["state_loss"] = F.cross_entropy(net.state_classifier(programs), ep.cell_states)
            total = total + cfg.state_weight * terms["state_loss"]
        if cfg.cell_mix_weight > 0 and net.cell_mix is not None:
            cell_q = torch.softmax(net.cell_mix(programs), dim=-1)  # (N, C)
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
        q_hat = net.proportions(used, log_k(ep.k))
        if q_hat is not None and cfg.prop_weight > 0:
            terms["prop_loss"] = 0.5 * (q_hat - ep.proportions).abs().sum(-1).mean()
            if net.config.mix_channel:  # the statistic's own decoded mix (all that sequence-only scoring has)
                q_s = net.proportions(net.mixed(used))
                terms["prop_loss"] = terms["prop_loss"] + 0.5 * (q_s - ep.proportions).abs().sum(-1).mean()
            total = total + cfg.prop_weight * terms["prop_loss"]
        if rec is not None and target is not None:
            terms["rec_loss"] = recognition_loss(rec, target, cfg.rec_mode)
            terms["rec_r2"] = recognition_r2(net.mixed(rec.detach()), net.mixed(target.detach()))  # G's part
            total = total + cfg.rec_weight * terms["rec_loss"]
            seq_pred = net.distance(rec, ep.targets[has], torch.zeros_like(ep.k[has]))
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

    def on_fit_end(self) -> None:
        """Back to the process default (``train_statistic`` also restores it if fitting fails)."""
        torch.set_flush_denormal(False)

    def training_step(self, batch: Episode, batch_idx: int) -> torch.Tensor:
        """One optimisation step."""
        out = self.compute(batch)
        for name, value in out.terms.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=batch.n_sets)
        return out.total

    def validation_step(self, batch: Episode, batch_idx: int) -> None:
        """Held-out perturbations, fixed episodes."""
        out = self.compute(batch)
        terms = dict(out.terms)
        terms["select"] = terms["pred_loss"] + self.cfg.select_stability_weight * terms.get("stability_loss", 0.0)
        for name, value in terms.items():
            self.log(f"val_{name}", value, on_step=False, on_epoch=True, batch_size=batch.n_sets, sync_dist=True)

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's union of return types
        """AdamW with optional warm-up + cosine decay."""
        cfg = self.cfg
        # Lists in module order (never sets): resumed optimizer state must pair with the same tensors.
        rec = list(self.net.recognizer.parameters()) if self.net.recognizer is not None else []
        rec_ids = {id(p) for p in rec}
        groups = [
            {"params": [p for p in self.net.parameters() if id(p) not in rec_ids], "weight_decay": cfg.weight_decay},
            {"params": rec, "weight_decay": cfg.rec_weight_decay},
        ]
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, foreach=True)
        if cfg.lr_schedule == "constant":
            return opt

        def factor(step: int) -> float:
            if step < cfg.warmup_steps:
                return (step + 1) / cfg.warmup_steps
            frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
