"""The Lightning training plan: one episode per step, ``L_pred + lambda L_rec`` (+ auxiliary terms)."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F

from ..data._sampling import Episode
from ..nn import PerturbationStatistic, segment_mean
from ._config import TrainConfig
from ._loss import (
    LossOutput,
    logratio_loss,
    logratio_part,
    prediction_loss,
    recognition_loss,
    recognition_r2,
    stability_loss,
)


def log_k(k: torch.Tensor) -> torch.Tensor:
    """The head's cell-count input: ``log(1 + k)`` (0 for the sequence-only path)."""
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
        only_g = cfg.stability_grad == "mixer"
        use_ref = ep.ref_inputs is not None and (stable or has is not None)
        # G runs once on every set of means the step needs (its cost is per call, not per row): the sampled
        # cells', the reference sample's, and (stability on G only) the sampled cells' with f detached
        means = [segment_mean(net.cell_summary(programs), ep.segments, ep.n_sets)]  # (P, m1 [+ C])
        grad_ref = stable and torch.is_grad_enabled()
        if use_ref:
            with torch.set_grad_enabled(grad_ref and not only_g):
                ref_summary = net.cell_summary(net.programs(ep.ref_inputs))
            means.append(segment_mean(ref_summary, ep.ref_segments, ep.n_sets))
        if stable and use_ref and only_g:
            means.append(means[0].detach())  # G on the detached programs' means (the mix channel is not trained)
        stats = net.pool(torch.cat(means)).split(ep.n_sets)  # each (P, m2 [+ C])
        stat = stats[0]
        ref = None if not use_ref else (stats[1] if grad_ref else stats[1].detach())
        rec, target = None, None
        if has is not None and bool(has.any()):
            coupled = cfg.rec_mode == "coupled" and ref is not None  # trains G through the reference statistic
            target = (stat if ref is None else ref if coupled else ref.detach())[has]
            if cfg.rec_mix_target == "labels" and net.config.mix_channel:  # the exact mix, not a sample's
                target = torch.cat([target[:, : net.config.n_stat], ep.proportions[has].to(target.dtype)], -1)
            if cfg.rec_g_target == "logratio":  # T learns the part of G's statistic that the label mix explains
                m2 = net.config.n_stat
                g_part = target[:, :m2].detach()
                part = logratio_part(g_part, ep.proportions[has])
                part = part + cfg.rec_g_residual * (g_part - part)  # 0 (the default): the part alone
                target = torch.cat([part, target[:, m2:]], -1)
            # training: a closed-form T is fit here and returns leave-one-out predictions (honest for unseen genes)
            # T pools every gene's windows, then keeps those with features (cheaper than copying their windows)
            feats = ep.features
            if self.training:
                rec = net.recognize_fit(
                    feats,
                    target,
                    has,
                    clip=cfg.rec_target_clip,
                    per_part=cfg.rec_select == "per_part",
                    robust=cfg.rec_robust,
                    subsample=cfg.rec_subsample,
                )  # (P', m2)
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
            s_k = stats[2] if only_g else stat
            terms["stability_loss"] = stability_loss(net.mixed(s_k), net.mixed(ref))
            total = total + cfg.stability_weight * terms["stability_loss"]
        if cfg.logratio_weight > 0:  # G's part kept in line with the log-ratio mix, on the larger reference sample:
            # its programs carry no gradient unless stability_grad="all", so by default the loss trains G alone
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
            # G towards T's LOO prediction (in validation: the stored T's prediction, as rec is there); TrainConfig
            # allows the term with rec_mode="stopgrad" and a reference sample only
            if cfg.rec_couple_weight > 0 and use_ref:
                terms["couple_loss"] = recognition_loss(net.mixed(rec.detach()), net.mixed(stats[1][has]), "coupled")
                total = total + cfg.rec_couple_weight * terms["couple_loss"]
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
