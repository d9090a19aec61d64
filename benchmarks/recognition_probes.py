"""What limits recognition R² on the 15k screen? Four probes, each paired on the same trained ``f`` and ``G``.

For every run given, the probes score ``rec_r2`` (``G``'s part, validation knockouts, statistics from up to
1,000 cells) of variants against a baseline refitted the same way, so that training noise cancels. Every
refit of ``T`` is the shipped ridge fit (the run's robust weights), rank and penalty chosen afresh on the
first of 20 fits to random 60 % subsets of the training knockouts, the read-out their mean (subagging).

- ``geometry``: how predictable are the true and the label log-ratio mix (``clr``), as they are and in the
  statistic's own geometry (their least-squares affine image on the training knockouts' statistics)?
- ``shrinkage``: each knockout's mean cell summary shrunk towards the training knockouts' mean before ``G``,
  by ``kappa / (n + kappa)`` (``n`` cells), or by the empirical-Bayes (Wiener) filter
  ``Sb (Sb + lam Sw / n)^-1`` from the between- and within-knockout covariances; does denoising knockouts
  with few cells help?
- ``weights``: ``T``'s fit weighting each training knockout by ``n / (n + kw)``: less for few cells.
- ``pooling``: ``T``'s window pooling (all-gene basis refitted for each): the run's learned Gaussian bump,
  the simulator's own profile (the matched filter), the leading eigenvector of the genes' window
  covariance (found without labels; it matches the profile), and the bump ``T`` starts from.
- ``readout`` (session 14): other read-outs of the same features for the same statistics, against ``T`` as
  stored (the moving average of training's fits) and the refit above: one ridge fit with rank and penalty
  chosen by leave-one-out; the average of the fits over every (rank, penalty) weighted by
  ``exp(-(e - e_min) / (0.1 e_min))`` of their leave-one-out errors ``e`` (no hard choice); the statistic's
  label-log-ratio part and its rest fitted apart, each with its own choice, and summed; and kernel ridge (RBF)
  and a Gaussian process (``_util.families``) on the leading 8 or 16 coordinates of ``T``'s basis.

Prints one line per run, then the means. Run from the repository root on runs that ``perturbscore reproduce``
trained (``checkpoints/`` kept), with the same screen options, e.g.
``.venv/bin/python benchmarks/recognition_probes.py geometry runs/X/runs/perturbscore-seed* --sim-genes 15077
--sim-seed 1``
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _util import (
    basis_coords,
    eval_screen_from_args,
    families,
    label_clr,
    oracle_targets,
    reference_stats,
    report_row,
    report_table,
)

import perturbscore as ps
from perturbscore.nn._recognition import candidate_ranks
from perturbscore.nn._ridge import RIDGE_ALPHAS, _loo_errors, _weighted_ridge
from perturbscore.tl._metrics import recognition_r2

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

BAGS, SHARE = 20, 0.6
KAPPAS = (2.0, 5.0, 10.0, 20.0)  # isotropic shrinkage: prior cells' worth
WIENER = (0.5, 1.0, 2.0)  # Wiener filter: multiple of the within-knockout noise
WEIGHT_KS = (10.0, 20.0, 40.0)  # T's knockout weights n / (n + kw)


def cells_used(screen: ps.io.Screen, genes: list[str]) -> np.ndarray:
    """How many cells each gene's reference statistic reads (``reference_stats``: up to 1,000)."""
    return np.array([min(1000, len(screen.cell_index[screen.index_of(g)])) for g in genes], dtype=float)


class Run:
    """One trained run: its model, stored ``T``, split, and reference statistics."""

    def __init__(self, path: Path, screen: ps.io.Screen) -> None:
        self.model = ps.tl.PerturbScoreModel.load(path / "model")
        ckpt = torch.load(path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        self.trained = {
            k.removeprefix("net.recognizer."): v for k, v in ckpt.items() if k.startswith("net.recognizer.")
        }
        self.m2 = self.model.model_config.n_stat
        kos = list(screen.knockouts)
        self.train = [g for g in self.model.split["train"] if g in screen.features and g != screen.control]
        self.val = [g for g in kos if g in self.model.split["val"]]
        self.stat_train = reference_stats(self.model, screen, self.train)  # (P, m2 + C)
        self.stat_val = reference_stats(self.model, screen, self.val)
        self.feat_train = torch.from_numpy(screen.feature_block(self.train))
        self.feat_val = screen.feature_block(self.val)
        self.n_train, self.n_val = cells_used(screen, self.train), cells_used(screen, self.val)

    def refit_r2(self, g_train: np.ndarray, g_val: np.ndarray, *, sample_weight: np.ndarray | None = None) -> float:
        """R² on the validation knockouts of ``T`` refitted to ``g_train`` as ``G``'s part (zero-padded to ``m2``)."""
        model, rec, m2, d = self.model, self.model.net.recognizer, self.m2, g_train.shape[1]
        pad = np.zeros((len(g_train), m2 - d))
        target = torch.from_numpy(np.concatenate([g_train, pad, self.stat_train[:, m2:]], 1)).float()
        weight = None if sample_weight is None else torch.from_numpy(sample_weight)
        cfg = model.train_config
        rec.n_fits.zero_()
        with torch.no_grad():
            for bag in range(BAGS):
                model.net.recognize_fit(self.feat_train, target, clip=cfg.rec_target_clip, robust=cfg.rec_robust,
                                        subsample=SHARE, rate=1.0 / (bag + 1), reselect=bag == 0,
                                        sample_weight=weight)  # fmt: skip
        return recognition_r2(model.statistic_from_sequence(self.feat_val)[:, :d], g_val)

    def restore(self) -> None:
        """Put the run's trained ``T`` back."""
        self.model.net.recognizer.load_state_dict(self.trained)


def affine_fit(x: np.ndarray, stat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``stat ~ x B + b``: ``B`` ``(dx, m2)`` and the fitted values ``(P, m2)``."""
    design = np.c_[x, np.ones(len(x))]
    coef = np.linalg.lstsq(design, stat, rcond=None)[0]
    return coef[:-1], design @ coef


def probe_geometry(run: Run, sim: object, screen: ps.io.Screen) -> dict[str, float]:
    """True and label log-ratio mix, raw and in the statistic's geometry; the statistic itself."""
    s_t, s_v = run.stat_train[:, : run.m2], run.stat_val[:, : run.m2]
    key = "log-ratio mix (clr)"
    true_t, true_v = oracle_targets(sim, screen, run.train)[key], oracle_targets(sim, screen, run.val)[key]
    lab_t, lab_v = label_clr(screen, run.train), label_clr(screen, run.val)
    true_map, true_part = affine_fit(true_t, s_t)  # the statistic's own geometry, read from the training knockouts
    lab_map, lab_part = affine_fit(lab_t, s_t)
    out = {"statistic": run.refit_r2(s_t, s_v), "true clr": run.refit_r2(true_t, true_v)}
    out["true clr, stat geometry"] = run.refit_r2(true_t @ true_map, true_v @ true_map)
    out["label clr"] = run.refit_r2(lab_t, lab_v)
    out["label clr, stat geometry"] = run.refit_r2(lab_t @ lab_map, lab_v @ lab_map)
    out["T fitted to the stat's label-clr part"] = run.refit_r2(lab_part, s_v)
    out["T fitted to the stat's true-clr part"] = run.refit_r2(true_part, s_v)
    resid = s_t - true_part
    out["share of stat spread affine in true clr"] = 1 - (resid**2).sum() / ((s_t - s_t.mean(0)) ** 2).sum()
    return out


def _means(run: Run, screen: ps.io.Screen, genes: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Mean cell summary (programs [+ posterior]) of up to 1,000 cells per knockout, and their scatter matrices."""
    net, rng = run.model.net, np.random.default_rng(0)
    means, scatter = [], []
    with torch.no_grad():
        for g in genes:
            ix = screen.cell_index[screen.index_of(g)]
            ix = rng.choice(ix, size=1000, replace=False) if len(ix) > 1000 else ix
            cells = run.model._inputs(screen.rows.take(np.sort(ix)))
            summary = net.cell_summary(net.programs(cells)).double().numpy()
            means.append(summary.mean(0))
            centred = summary - summary.mean(0)
            scatter.append(centred.T @ centred)
    return np.stack(means), scatter


def probe_shrinkage(run: Run, screen: ps.io.Screen) -> dict[str, float]:
    """Knockout means shrunk towards the training mean before ``G`` (isotropic and Wiener)."""
    m_t, scatter = _means(run, screen, run.train)
    m_v, _ = _means(run, screen, run.val)
    mu, dim = m_t.mean(0), m_t.shape[1]
    within = sum(scatter) / (run.n_train.sum() - len(run.n_train))  # per-cell covariance within knockouts
    between = np.cov(m_t.T) - within * np.mean(1 / run.n_train)
    evals, evecs = np.linalg.eigh(between)
    between = (evecs * np.clip(evals, 1e-8, None)) @ evecs.T

    def stat(means: np.ndarray, filt: Callable[[float], np.ndarray], n: np.ndarray) -> np.ndarray:
        post = np.stack([mu + filt(n_i) @ (m - mu) for m, n_i in zip(means, n, strict=True)])
        with torch.no_grad():
            return run.model.net.pool(torch.from_numpy(post).float()).double().numpy()[:, : run.m2]

    out = {
        "none": run.refit_r2(stat(m_t, lambda n: np.eye(dim), run.n_train), stat(m_v, lambda n: np.eye(dim), run.n_val))
    }
    for kappa in KAPPAS:
        filt = lambda n, kappa=kappa: np.eye(dim) * n / (n + kappa)  # noqa: E731
        out[f"kappa {kappa:g}"] = run.refit_r2(stat(m_t, filt, run.n_train), stat(m_v, filt, run.n_val))
    for lam in WIENER:
        filt = lambda n, lam=lam: between @ np.linalg.inv(between + lam * within / n)  # noqa: E731
        out[f"Wiener x{lam:g}"] = run.refit_r2(stat(m_t, filt, run.n_train), stat(m_v, filt, run.n_val))
    return out


def probe_weights(run: Run) -> dict[str, float]:
    """``T``'s knockouts weighted by ``n / (n + kw)``."""
    s_t, s_v = run.stat_train[:, : run.m2], run.stat_val[:, : run.m2]
    out = {"equal": run.refit_r2(s_t, s_v)}
    for kw in WEIGHT_KS:
        out[f"kw {kw:g}"] = run.refit_r2(s_t, s_v, sample_weight=run.n_train / (run.n_train + kw))
    return out


def window_profiles(run: Run, all_features: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(W,)`` pooling weights: learned, matched filter, leading window eigenvector, initial bump."""
    n, w, d = all_features.shape
    x = all_features.double() - all_features.double().mean(0, keepdim=True)
    evals, evecs = torch.linalg.eigh(torch.einsum("nwd,nvd->wv", x, x) / (n * d))
    lead = evecs[:, -1] * torch.sign(evecs[:, -1].sum())
    pos = torch.arange(w, dtype=torch.float64)

    def bump(sd: float) -> torch.Tensor:
        b = torch.exp(-0.5 * ((pos - (w - 1) / 2) / sd) ** 2)
        return (b / b.sum()).float()

    rec = run.model.net.recognizer
    run.restore()
    return {
        "learned": rec.window_weights(w).detach().clone(),
        "matched filter (the simulator's profile)": bump(max(w / 16, 1.0)),
        "leading window eigenvector": (lead / lead.sum()).float(),
        "initial bump": bump(0.125 * (w - 1)),
    }


def probe_pooling(run: Run, all_features: torch.Tensor) -> dict[str, float]:
    """``T``'s window pooling, the all-gene basis refitted for each."""
    rec, out = run.model.net.recognizer, {}
    s_t, s_v = run.stat_train[:, : run.m2], run.stat_val[:, : run.m2]
    for name, weights in window_profiles(run, all_features).items():
        run.restore()
        rec.window_weights = lambda n, weights=weights: weights  # the pooling the basis and the fits read
        rec.fit_basis(all_features)
        out[name] = run.refit_r2(s_t, s_v)
        del rec.window_weights
    return out


def ridge_paths(x_t: np.ndarray, y: np.ndarray, x_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge (unpenalised intercept) for every (rank, penalty) of ``T``'s grid: leave-one-out errors and predictions.

    ``x_t`` ``(P, D)`` and ``x_v`` are basis coordinates (leading first), ``y`` ``(P, m)``. Returns the errors
    ``(K,)`` (mean squared leave-one-out residual, each output in units of its variance, as ``T`` chooses)
    and the validation predictions ``(K, P_val, m)``.
    """
    mu = x_t.mean(0)
    xt, xv, yt = torch.from_numpy(x_t - mu), x_v - mu, torch.from_numpy(y).double()  # the fits read centred inputs
    yc = yt - yt.mean(0)
    scale = yc.pow(2).mean(0).clamp_min(1e-12)
    errs, preds = [], []
    for rank in candidate_ranks(xt.shape[1]):  # T's own leave-one-out errors and fits
        errs.append(_loo_errors(xt[:, :rank], yc, scale).mean(1))  # (A,): every penalty at this rank
        for alpha in RIDGE_ALPHAS:
            choices = torch.tensor([[rank, alpha * rank]], dtype=torch.float64).expand(y.shape[1], 2)
            _, coef, intercept = _weighted_ridge(xt, yt, choices, None)
            preds.append(xv @ coef.numpy() + intercept.numpy())
    return torch.cat(errs).numpy(), np.stack(preds)


def probe_readout(run: Run, screen: ps.io.Screen) -> dict[str, float]:
    """Other read-outs of the same features for the same statistics (see the module docstring)."""
    s_t, s_v = run.stat_train[:, : run.m2], run.stat_val[:, : run.m2]
    rec = run.model.net.recognizer
    run.restore()
    out = {"stored (shipped)": recognition_r2(run.model.statistic_from_sequence(run.feat_val)[:, : run.m2], s_v)}
    x_t, x_v = basis_coords(rec, run.feat_train), basis_coords(rec, run.feat_val)  # the stored T's pooling, basis
    out["refit, 20 bags"] = run.refit_r2(s_t, s_v)
    errs, preds = ridge_paths(x_t, s_t, x_v)
    out["one ridge fit, LOO choice"] = recognition_r2(preds[errs.argmin()], s_v)
    weights = np.exp(-(errs - errs.min()) / (0.1 * errs.min()))
    out["ridge averaged over choices"] = recognition_r2(np.tensordot(weights / weights.sum(), preds, 1), s_v)
    _, part = affine_fit(label_clr(screen, run.train), s_t)
    pred = sum(p[e.argmin()] for e, p in (ridge_paths(x_t, part, x_v), ridge_paths(x_t, s_t - part, x_v)))
    out["label-clr part + rest, apart"] = recognition_r2(pred, s_v)
    for name in ("kernel ridge (RBF)", "Gaussian process"):
        make = families()[name]
        for q in (8, 16):
            model = make().fit(x_t[:, :q], s_t - s_t.mean(0))
            out[f"{name}, {q} coords"] = recognition_r2(model.predict(x_v[:, :q]) + s_t.mean(0), s_v)
    return out


def main() -> None:
    """Parse the arguments and print one line per run, then the means."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=("geometry", "shrinkage", "weights", "pooling", "readout"))
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (runs/<name>-seed<s>[-fold<f>])")
    args, sim, screen = eval_screen_from_args(parser)
    all_features = torch.from_numpy(np.asarray(screen.features.values))
    scores: dict[str, list[float]] = {}
    for path in args.runs:
        run = Run(path, screen)
        run.restore()
        if args.probe == "geometry":
            row = probe_geometry(run, sim, screen)
        elif args.probe == "shrinkage":
            row = probe_shrinkage(run, screen)
        elif args.probe == "weights":
            row = probe_weights(run)
        elif args.probe == "readout":
            row = probe_readout(run, screen)
        else:
            row = probe_pooling(run, all_features)
        report_row(scores, path.name, row)
    report_table(args.probe, scores)


if __name__ == "__main__":
    main()
