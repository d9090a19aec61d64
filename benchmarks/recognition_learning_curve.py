"""Learning curve of T's recognition R2 vs training knockouts and feature noise (fixed learned statistic).

Run from the repository root: ``.venv/bin/python benchmarks/recognition_learning_curve.py 512``
(~6 min on 1 CPU thread). Writes ``recognition_learning_curve.json`` in the working directory.
"""

import json
import logging
import sys
import time
import warnings

import numpy as np
import torch

import perturbscore as ps
from perturbscore.datasets._design import build_design
from perturbscore.datasets._features import simulate_features
from perturbscore.nn import SequenceRecognizer
from perturbscore.tl._metrics import recognition_r2
from perturbscore.train import split_perturbations

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
NK, NVAL, SEED = int(sys.argv[1]), 100, 0
t0 = time.time()
sim = ps.datasets.simulate_screen(n_knockouts=NK, seed=SEED)
screen = ps.io.read_screen(sim.adata, features=sim.features)
split = split_perturbations(screen, n_train=NK - NVAL, n_val=NVAL, seed=123)
model = ps.tl.fit(
    screen, out=f"runs/lc{NK}", overwrite=True, split=split, progress=False, max_steps=1500, perturbations_per_step=64
)
print("trained", round(time.time() - t0), "s", flush=True)
trn = [p for p in split.train if p != screen.control]
val = list(split.val)
rng = np.random.default_rng(0)


def ref(names):
    out = []
    for p in names:
        ix = screen.cell_index[screen.index_of(p)]
        ix = rng.choice(ix, 1000, replace=False) if len(ix) > 1000 else ix
        out.append(model.statistic(screen.rows.take(np.sort(ix))))
    return np.stack(out)


S_tr, S_va = ref(trn), ref(val)
# features at other noise levels: same design and feature stream as simulate_screen (see _simulate.py)
ss = np.random.SeedSequence(SEED)
s_design, _, _, _, s_feat, _ = ss.spawn(6)
design = build_design(
    n_genes=2000, n_knockouts=NK, n_unseen=0, effect_dim=5, planted=None, rng=np.random.default_rng(s_design)
)
genes = list(design.knockouts)
rec0 = model.net.recognizer
res = {"n_knockouts": NK, "n_val": NVAL, "rows": []}
for noise in (0.5, 0.25, 0.1, 0.0):
    vals, _ = simulate_features(
        design.effects,
        z_mean=design.effect_mean,
        dim=128,
        n_windows=200,
        noise=noise,
        rng=np.random.default_rng(s_feat),
    )
    if noise == 0.5:
        assert np.allclose(vals[genes.index(trn[0])], screen.feature_block([trn[0]])[0]), "feature stream mismatch"
    F = {g: vals[i] for i, g in enumerate(genes)}
    Ftr = torch.as_tensor(np.stack([F[g] for g in trn]))
    Fva = torch.as_tensor(np.stack([F[g] for g in val]))
    for n in (25, 50, 100, 200, 400):
        if n > len(trn):
            continue
        r2s, r2m = [], []
        for rep in range(5):
            sub = np.random.default_rng(rep).choice(len(trn), n, replace=False)
            t = SequenceRecognizer(128, S_tr.shape[1], pooling="gaussian", head="ridge")
            t.centre.data.copy_(rec0.centre.data)
            t.log_width.data.copy_(rec0.log_width.data)
            with torch.no_grad():
                t.fit_predict(Ftr[sub], torch.as_tensor(S_tr[sub]))
                pred = t(Fva).numpy()
            r2s.append(recognition_r2(pred, S_va))
            r2m.append(recognition_r2(np.broadcast_to(S_tr[sub].mean(0), S_va.shape), S_va))
        row = {
            "feature_noise": noise,
            "n_train": n,
            "r2": float(np.mean(r2s)),
            "r2_sd": float(np.std(r2s)),
            "r2_train_mean": float(np.mean(r2m)),
        }
        print(json.dumps(row), flush=True)
        res["rows"].append(row)
with open("recognition_learning_curve.json", "w") as fh:
    json.dump(res, fh, indent=1)
