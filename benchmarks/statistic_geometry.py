"""Shape of a trained statistic across knockouts: variance per direction, what its main direction tracks, tails.

Run from the repository root on a model that ``perturbscore reproduce`` trained on a simulated screen,
with the same screen options:

``.venv/bin/python benchmarks/statistic_geometry.py runs/X/runs/perturbscore-seed0/model --sim-genes 15077 --sim-seed 1``

Each knockout's statistic comes from up to 1,000 of its cells, like ``rec_r2``'s reference. The script
prints four things:

- each principal direction's share of the between-knockout variance of ``G``'s part;
- the correlation of the first three directions with the true state shares and effects;
- the knockouts furthest from the median, in multiples of the median distance;
- the share of ``G``'s part's spread across knockouts that an affine map of the true log-ratio mix explains
  (in-sample least squares; what the log-ratio geometry loss of session 11 asks to be high);
- the leave-one-out R² over all knockouts of the shipped ridge ``T`` (all-gene basis) fitted to ``G``'s
  part, to its first direction, and to oracle targets (effects, clr, true mix).
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import torch
from _util import eval_screen_from_args, oracle_targets, reference_stats, ridge_t_factory

import perturbscore as ps
from perturbscore.tl._metrics import recognition_r2

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def main() -> None:
    """Parse the arguments and print the statistic's geometry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a saved model directory (runs/<name>-seed<s>/model)")
    args, sim, screen = eval_screen_from_args(parser)
    model = ps.tl.PerturbScoreModel.load(args.model)
    kos = list(screen.knockouts)
    oracles = oracle_targets(sim, screen, kos)
    mix, z = oracles["true mix"], oracles["true effects z"]
    s = reference_stats(model, screen, kos)[:, : model.model_config.n_stat].astype(float)
    centred = s - s.mean(0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    scores = centred @ vt.T
    print("variance share per direction:", np.round(sv**2 / (sv**2).sum(), 3).tolist())
    for d in range(3):
        corr = [np.corrcoef(scores[:, d], mix[:, c])[0, 1] for c in range(mix.shape[1])]
        zc = [np.corrcoef(scores[:, d], z[:, j])[0, 1] for j in range(z.shape[1])]
        shares = ", ".join(f"{st} {c:+.2f}" for st, c in zip(screen.states, corr, strict=True))
        print(f"direction {d + 1}: corr with shares {shares}; with effects {np.round(zc, 2).tolist()}")
    dist = np.linalg.norm(s - np.median(s, 0), axis=1)
    med = np.median(dist)
    split = model.split
    for i in np.argsort(-dist)[:6]:
        role = "train" if kos[i] in split["train"] else "val" if kos[i] in split["val"] else "test"
        print(f"  {kos[i]} ({role}): {dist[i] / med:.1f}x the median distance, |z| {np.linalg.norm(z[i]):.2f}")
    clr = oracles["log-ratio mix (clr)"]
    design = clr - clr.mean(0)  # centred, like the statistic: the affine fit's intercept is taken care of
    resid = centred - design @ np.linalg.lstsq(design, centred, rcond=None)[0]
    print(
        f"share of the spread explained by an affine map of the true log-ratio mix: {1 - (resid**2).sum() / (centred**2).sum():.3f}"
    )
    feats = torch.from_numpy(screen.feature_block(kos))
    new_t = ridge_t_factory(torch.from_numpy(screen.features.values))
    targets = {"G's part of the statistic": s, "its first direction": scores[:, :1]} | oracles
    for name, y in targets.items():
        with torch.no_grad():
            loo = new_t(y.shape[1]).fit_predict(feats, torch.tensor(y, dtype=torch.float32)).numpy()
        print(f"leave-one-out R² over all {len(kos)} knockouts, {name}: {recognition_r2(loo, y):.3f}")


if __name__ == "__main__":
    main()
