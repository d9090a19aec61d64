"""Bad input through the CLI: exit code != 0, one clear message naming the thing and the fix, no traceback,
and nothing that existed before is changed. Cases with no CLI command yet go through the Python API.

The catalogue (message and fix of every case) is in docs/reference/input-errors.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import perturbscore.cli._train  # noqa: F401  registers `train` even before cli/__init__ imports it
from perturbscore._constants import CHALLENGE_STATES
from perturbscore._errors import InputError, RunError
from perturbscore.cli import main
from perturbscore.io import parse_target, read_screen, read_targets, resolve_targets
from perturbscore.nn import ModelConfig
from perturbscore.tl import PerturbScoreModel
from perturbscore.train import TrainConfig, build_net

KNOCKOUTS = {"Tox2": 14, "Arid5b": 12, "Dvl2": 11, "Zeb2": 10, "Eomes": 10, "Ikzf3": 9}


# -- inputs ------------------------------------------------------------------------------------
def make_adata(cells: dict[str, int] | None = None, *, n_genes: int = 30, seed: int = 0) -> ad.AnnData:
    """Challenge layout: obs condition/state, X = log1p(CP10k) CSR, layers rawcounts (integers) and lognorm."""
    rng = np.random.default_rng(seed)
    cells = cells or {**KNOCKOUTS, "Unperturbed": 30}
    condition = np.repeat(list(cells), list(cells.values()))
    rng.shuffle(condition)
    n = condition.size
    counts = sp.random(n, n_genes, density=0.4, random_state=seed, format="csr", dtype=np.float32)
    counts.data = np.ceil(counts.data * 20).astype(np.float32)
    lib = np.asarray(counts.sum(axis=1)).ravel()
    lognorm = sp.csr_matrix(counts.multiply(1e4 / np.maximum(lib, 1)[:, None]), dtype=np.float32)
    lognorm.data = np.log1p(lognorm.data)
    state = pd.Categorical(rng.choice(CHALLENGE_STATES, size=n), categories=list(CHALLENGE_STATES))
    obs = pd.DataFrame({"condition": condition, "state": state}, index=[f"cell{i}" for i in range(n)])
    obs["lane"] = np.where(np.arange(n) % 2 == 0, "lane1", "lane2")  # another categorical column: not the states
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(X=lognorm, obs=obs, var=var, layers={"rawcounts": counts, "lognorm": lognorm.copy()})


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def good_features(genes: list[str] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {g: rng.normal(size=(4, 3)).astype(np.float32) for g in (genes or list(KNOCKOUTS))}


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@dataclass
class Workspace:
    """A tmp dir with a good screen, good features, an earlier run and a user's folder."""

    root: Path

    @property
    def screen(self) -> Path:
        return self.root / "screen.h5ad"

    @property
    def features(self) -> Path:
        return self.root / "features.npz"

    @property
    def old_run(self) -> Path:
        return self.root / "runs" / "old"

    @property
    def user_dir(self) -> Path:
        return self.root / "analysis"

    def write_screen(self, adata: ad.AnnData, name: str = "screen.h5ad") -> Path:
        adata.write_h5ad(self.root / name)
        return self.root / name

    def out(self) -> str:
        return str(self.root / "runs" / "new")

    @property
    def scored_run(self) -> Path:
        """A run holding a saved (untrained) model of the screen's 30 genes and 5 states."""
        return self.root / "runs" / "scored"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path)
    w.write_screen(make_adata())
    write_npz(w.features, good_features())
    w.old_run.mkdir(parents=True)
    (w.old_run / "config.json").write_text(json.dumps({"train": {"seed": 0}, "model": {"n_programs": 10}}))
    (w.old_run / "metrics.csv").write_text("epoch,step,val_pred_loss\n0,100,0.1\n")
    (w.old_run / "model").mkdir()
    (w.old_run / "model" / "model.json").write_text("{}")
    w.user_dir.mkdir()
    (w.user_dir / "notes.txt").write_text("my notes\n")
    (w.user_dir / "scores.csv").write_text("gene,score\nA,1\n")  # a file name a run also writes
    small_model(tuple(CHALLENGE_STATES)).save(w.scored_run / "model")
    return w


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``perturbscore ARGS``; return the exit code and stdout+stderr with whitespace collapsed."""
    rc = main(args)
    cap = capsys.readouterr()
    return rc, " ".join((cap.out + cap.err).split())


def train_args(ws: Workspace, *extra: str, screen: Path | None = None) -> list[str]:
    return ["train", str(screen or ws.screen), "--out", ws.out(), "--no-progress", "--max-steps", "2", *extra]


# -- the cases ---------------------------------------------------------------------------------
# Each case prepares its input and returns the CLI arguments; ``needles`` must all appear in the message
# (case-insensitive): the thing that is wrong, and the option or action that fixes it.
Case = Callable[[Workspace], list[str]]
CASES: dict[str, tuple[Case, tuple[str, ...], tuple[str, ...]]] = {}
#: Python-only advice that must never reach the command line.
PYTHON_ADVICE = ("(Python:", "states=None", "state_key=", "perturbation_key=", "overwrite=True")


def case(name: str, *needles: str, absent: tuple[str, ...] = ()) -> Callable[[Case], Case]:
    """Register a case: ``needles`` must all appear in the message, ``absent`` (and Python advice) must not."""

    def register(fn: Case) -> Case:
        CASES[name] = (fn, needles, absent)
        return fn

    return register


def score_args(ws: Workspace, *extra: str) -> list[str]:
    return ["score", str(ws.scored_run), "--screen", str(ws.screen), "--no-progress", "--n-boot", "2",
            "--out", str(ws.root / "runs" / "new" / "scores.csv"), *extra]  # fmt: skip


@case("perturbation-column-missing", "no perturbation column 'guide'", "'condition'", "--perturbation-key")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--perturbation-key", "guide")


@case("state-column-missing", "no state column 'cluster'", "'state'", "--state-key")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--state-key", "cluster")


@case("perturbation-labels-nan", "column 'condition'", "3 missing or empty labels", "drop those cells")
def _(ws: Workspace) -> list[str]:
    adata = make_adata()
    cond = adata.obs["condition"].astype(object)
    cond.iloc[[1, 5, 9]] = np.nan
    adata.obs["condition"] = cond
    return train_args(ws, screen=ws.write_screen(adata, "nan.h5ad"))


@case("state-labels-empty", "column 'state'", "2 missing or empty labels", "fill them")
def _(ws: Workspace) -> list[str]:
    adata = make_adata()
    state = adata.obs["state"].astype(str)
    state.iloc[[0, 3]] = ""
    adata.obs["state"] = state
    return train_args(ws, screen=ws.write_screen(adata, "empty.h5ad"))


@case("state-one-level", "only one level", "'progenitor'", "--state-key")
def _(ws: Workspace) -> list[str]:
    adata = make_adata()
    adata.obs["state"] = "progenitor"
    return train_args(ws, screen=ws.write_screen(adata, "onelevel.h5ad"))


@case("control-label-unknown", "control label 'NT' not found", "'Unperturbed' (30 cells)", "--control")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--control", "NT")


@case("too-few-cells-small-error", "fewer than 10 cells", "'Ikzf3' (9)", "--min-cells", "--small drop")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--min-cells", "10", "--small", "error")


@case("small-option-invalid", "small='maybe'", "'drop', 'error', 'keep'")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--small", "maybe")


@case("one-knockout", "1 knockout(s)", "at least 2", "--control")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, screen=ws.write_screen(make_adata({"Tox2": 20, "Unperturbed": 20}), "oneko.h5ad"))


@case("knockouts-dropped-below-two", "after dropping 5", "lower --min-cells")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--min-cells", "13")


@case("fewer-knockouts-than-split", "2 knockout(s)", "at least 3", "--perturbation-key")
def _(ws: Workspace) -> list[str]:
    adata = make_adata({"Tox2": 20, "Zeb2": 20, "Unperturbed": 20})
    return train_args(ws, screen=ws.write_screen(adata, "twoko.h5ad"))


@case("negative-expression", "X of", "4 negative values", "--layer")
def _(ws: Workspace) -> list[str]:
    adata = make_adata()
    adata.X.data[:4] = -1.5
    return train_args(ws, screen=ws.write_screen(adata, "neg.h5ad"))


@case("nan-expression", "X of", "2 NaN or infinite values", "must be finite")
def _(ws: Workspace) -> list[str]:
    adata = make_adata()
    adata.X.data[[0, 7]] = np.nan
    return train_args(ws, screen=ws.write_screen(adata, "nanx.h5ad"))


@case("inf-expression-dense", "X of", "1 NaN or infinite values")
def _(ws: Workspace) -> list[str]:
    adata = make_adata()
    dense = adata.X.toarray()
    dense[3, 2] = np.inf
    adata.X = dense
    return train_args(ws, screen=ws.write_screen(adata, "infx.h5ad"))


@case("counts-layer-not-counts", "layer 'lognorm'", "not non-negative integers", "--layer")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--layer", "lognorm")


@case("counts-layer-negative", "layer 'rawcounts'", "not non-negative integers", "1 negative")
def _(ws: Workspace) -> list[str]:
    adata = make_adata()
    adata.layers["rawcounts"].data[5] = -3
    return train_args(ws, "--layer", "rawcounts", screen=ws.write_screen(adata, "negcounts.h5ad"))


@case("layer-missing", "layer 'counts' not found", "'rawcounts'", "--layer")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--layer", "counts")


@case("features-genes-missing", "2 of 6 perturbed genes have no features", "'Zeb2'", "--allow-missing-features")
def _(ws: Workspace) -> list[str]:
    path = write_npz(ws.root / "partial.npz", good_features([g for g in KNOCKOUTS if g not in ("Zeb2", "Eomes")]))
    return train_args(ws, "--features", str(path))


@case("features-genes-duplicated", "1 duplicated gene(s)", "'Tox2'", "one entry per gene")
def _(ws: Workspace) -> list[str]:
    rows = [[g, *np.arange(3.0)] for g in [*KNOCKOUTS, "Tox2"]]
    path = ws.root / "dup.csv"
    pd.DataFrame(rows, columns=["gene", "d0", "d1", "d2"]).to_csv(path, index=False)
    return train_args(ws, "--features", str(path))


@case("features-inconsistent-shapes", "inconsistent shapes", "'Dvl2' is (5, 3)", "same windows and dimension")
def _(ws: Workspace) -> list[str]:
    arrays = good_features()
    arrays["Dvl2"] = np.zeros((5, 3), np.float32)
    return train_args(ws, "--features", str(write_npz(ws.root / "shape.npz", arrays)))


@case("features-wrong-ndim", "gene 'Eomes'", "shape (2, 2, 3)", "expected (windows, dim)")
def _(ws: Workspace) -> list[str]:
    arrays = good_features()
    arrays["Eomes"] = np.zeros((2, 2, 3), np.float32)
    return train_args(ws, "--features", str(write_npz(ws.root / "ndim.npz", arrays)))


@case("features-nan", "contain NaN or inf", "'Arid5b'", "recompute or drop")
def _(ws: Workspace) -> list[str]:
    arrays = good_features()
    arrays["Arid5b"][1, 2] = np.nan
    return train_args(ws, "--features", str(write_npz(ws.root / "nan.npz", arrays)))


@case("features-not-numeric", "features of gene 'Tox2' in", "are not numeric")
def _(ws: Workspace) -> list[str]:
    arrays: dict[str, np.ndarray] = dict(good_features())
    arrays["Tox2"] = np.array(["a", "b", "c"])
    return train_args(ws, "--features", str(write_npz(ws.root / "str.npz", arrays)))


@case("features-file-missing", "feature file", "does not exist", "--features")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, "--features", str(ws.root / "typo.npz"))


@case("features-unknown-suffix", "unknown suffix '.json'", ".npz")
def _(ws: Workspace) -> list[str]:
    (ws.root / "f.json").write_text("{}")
    return train_args(ws, "--features", str(ws.root / "f.json"))


@case("features-npz-truncated", "not a readable .npz", "re-save")
def _(ws: Workspace) -> list[str]:
    data = ws.features.read_bytes()
    (ws.root / "trunc.npz").write_bytes(data[: len(data) // 2])
    return train_args(ws, "--features", str(ws.root / "trunc.npz"))


@case("h5ad-truncated", "truncated", "re-export", "copy it again")
def _(ws: Workspace) -> list[str]:
    data = ws.screen.read_bytes()
    (ws.root / "trunc.h5ad").write_bytes(data[: len(data) // 3])
    return train_args(ws, screen=ws.root / "trunc.h5ad")


@case("h5ad-not-hdf5", "not a readable .h5ad (HDF5)", "re-export")
def _(ws: Workspace) -> list[str]:
    (ws.root / "text.h5ad").write_text("condition,state\nTox2,progenitor\n")
    return train_args(ws, screen=ws.root / "text.h5ad")


@case("h5-not-anndata", "not an AnnData .h5ad", "write_h5ad")
def _(ws: Workspace) -> list[str]:
    with h5py.File(ws.root / "plain.h5ad", "w") as f:
        f["X"] = np.zeros((3, 3))
    return train_args(ws, screen=ws.root / "plain.h5ad")


@case("h5ad-missing", "does not exist", "check the path", "'screen.h5ad'")
def _(ws: Workspace) -> list[str]:
    return train_args(ws, screen=ws.root / "screen_typo.h5ad")


@case("output-run-exists", "already holds a run", "--overwrite", "--resume")
def _(ws: Workspace) -> list[str]:
    return ["train", str(ws.screen), "--out", str(ws.old_run), "--no-progress", "--max-steps", "2"]


@case("overwrite-non-run-dir", "not a perturbscore run", "refusing to delete", "choose another --out")
def _(ws: Workspace) -> list[str]:
    return ["train", str(ws.screen), "--out", str(ws.user_dir), "--overwrite", "--no-progress", "--max-steps", "2"]


@case("resume-non-run-dir", "not a perturbscore run", "choose another --out")
def _(ws: Workspace) -> list[str]:
    return ["train", str(ws.screen), "--out", str(ws.user_dir), "--resume", "--no-progress", "--max-steps", "2"]


@case("overwrite-run-with-user-files", "did not write", "'raw.h5ad'", "--overwrite would delete")
def _(ws: Workspace) -> list[str]:
    (ws.old_run / "raw.h5ad").write_bytes(b"user data")
    return ["train", str(ws.screen), "--out", str(ws.old_run), "--overwrite", "--no-progress", "--max-steps", "2"]


@case("output-is-a-file", "exists and is a file", "another --out")
def _(ws: Workspace) -> list[str]:
    return ["train", str(ws.screen), "--out", str(ws.user_dir / "notes.txt"), "--no-progress", "--max-steps", "2"]


# -- mistakes made at scoring time, and option or file checks that must come before any heavy reading ---------
@case("score-state-name-with-space-unquoted", "'exhausted=1'", "looks like part of a target",
      "--target 'terminal exhausted=1'", "terminal_exhausted=1", absent=("holds no saved model",))  # fmt: skip
def _(ws: Workspace) -> list[str]:
    return score_args(
        ws, "--target", "terminal", "exhausted=1"
    )  # what the shell makes of: --target terminal exhausted=1


@case("score-target-neither-mix-nor-preset", "'terminal'", "neither state=fraction pairs nor a preset",
      "quote the whole target", "'ctrl:control'")  # fmt: skip
def _(ws: Workspace) -> list[str]:
    return score_args(ws, "--target", "terminal")


@case("score-state-key-of-other-states", "obs column 'lane'", "does not hold the states the model was trained on",
      "'progenitor'", "--state-key")  # fmt: skip
def _(ws: Workspace) -> list[str]:
    return score_args(ws, "--target", "progenitor", "--state-key", "lane")


@case("score-state-key-missing", "no state column 'cluster'", "--state-key", "'lane'")
def _(ws: Workspace) -> list[str]:
    return score_args(ws, "--target", "progenitor", "--state-key", "cluster")


@case("score-control-missing", "control label 'NT' not found", "--control none", absent=("control=None",))
def _(ws: Workspace) -> list[str]:
    return score_args(ws, "--target", "progenitor", "--control", "NT")


@case("score-run-missing", "holds no saved model", "perturbscore train")
def _(ws: Workspace) -> list[str]:
    return ["score", str(ws.root / "runs" / "typo"), "--screen", str(ws.screen), "--target", "progenitor"]


@case("score-out-exists-checked-before-reading", "exists", "--overwrite", absent=("does not exist",))
def _(ws: Workspace) -> list[str]:
    (ws.root / "runs" / "new").mkdir(parents=True)
    (ws.root / "runs" / "new" / "scores.csv").write_text("target,gene\n")
    return score_args(ws, "--target", "progenitor", "--screen", str(ws.root / "no_such_screen.h5ad"))


@case("score-features-missing-checked-before-reading", "--features", "does not exist", "typo.npz")
def _(ws: Workspace) -> list[str]:
    return score_args(ws, "--target", "progenitor", "--features", str(ws.root / "typo.npz"))


@case("score-constraint-unparsable", "cannot parse constraint 'cycling>'", "'cycling>=0.05'", "quote")
def _(ws: Workspace) -> list[str]:
    return score_args(ws, "--target", "progenitor", "--constraint", "cycling>")


@case("score-sequence-ranking-unknown", "--sequence-ranking 'maybe'", "auto, together or unranked")
def _(ws: Workspace) -> list[str]:
    return score_args(ws, "--target", "progenitor", "--sequence-ranking", "maybe")


@case("train-into-existing-run-refused-before-reading", "already holds a run", "--overwrite", "--resume",
      absent=("truncated", "re-export"))  # fmt: skip
def _(ws: Workspace) -> list[str]:
    data = ws.screen.read_bytes()
    (ws.root / "trunc.h5ad").write_bytes(data[: len(data) // 3])  # reading it would fail: the run check comes first
    return ["train", str(ws.root / "trunc.h5ad"), "--out", str(ws.old_run), "--no-progress", "--max-steps", "2"]


@case("train-features-missing-checked-before-reading", "--features", "does not exist", absent=("truncated",))
def _(ws: Workspace) -> list[str]:
    data = ws.screen.read_bytes()
    (ws.root / "trunc.h5ad").write_bytes(data[: len(data) // 3])
    return train_args(ws, "--features", str(ws.root / "typo.npz"), screen=ws.root / "trunc.h5ad")


@case("programs-gene-sets-missing-checked-before-reading", "--gene-sets", "does not exist")
def _(ws: Workspace) -> list[str]:
    return ["programs", str(ws.scored_run), "--screen", str(ws.screen), "--gene-sets", str(ws.root / "typo.gmt")]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_cli(name: str, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Each bad input: exit 2, one message naming the problem and the fix, no traceback, no file touched."""
    build, needles, absent = CASES[name]
    args = build(ws)
    before = snapshot(ws.root)
    rc, text = run_cli(args, capsys)
    assert rc == 2, text
    assert "Traceback" not in text
    assert text.count("error:") == 1, text
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in {text!r}"
    for word in (*absent, *PYTHON_ADVICE):
        assert word.lower() not in text.lower(), f"{word!r} in {text!r}"
    assert snapshot(ws.root) == before
    assert not (ws.root / "runs" / "new" / "config.json").exists()


def test_named_preset_target_is_parsed(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """``--target ctrl:control`` (a preset under another name, as --help offers) scores; the file names it."""
    from perturbscore.tl import read_scores

    out = ws.root / "runs" / "new" / "scores.csv"
    rc, text = run_cli(score_args(ws, "--target", "ctrl:control", "--target", "progenitor=0.6,cycling=0.4"), capsys)
    assert rc == 0, text
    df = read_scores(out)
    assert list(dict.fromkeys(df["target"])) == ["ctrl", "progenitor 60% + cycling 40%"]
    targets = df.attrs["params"]["targets"]
    assert targets["ctrl"]["mix"]["cycling"] == pytest.approx(0.3921)
    assert targets["ctrl"]["constraints"] == []
    assert "ctrl" in text


#: PyTorch sees no GPU here (CUDA or Apple's MPS): a GPU run must be refused.
NO_GPU = not torch.cuda.is_available() and not torch.backends.mps.is_available()

# Options whose values are checked by TrainConfig / preset(): today a ValueError with a traceback.
BAD_OPTIONS = {
    "k-min-zero": (["--k-min", "0"], "k_min"),
    "preset-unknown": (["--preset", "nope"], "preset"),
    "loss-unknown": (["--loss", "nope"], "loss"),
    "lr-negative": (["--lr", "-1"], "lr"),
    "stat-activation-unknown": (["--stat-activation", "relu"], "stat_activation"),
    "rec-robust-negative": (["--rec-robust", "-1"], "rec_robust"),
    "rec-subsample-one": (["--rec-subsample", "1"], "rec_subsample"),
    "logratio-weight-negative": (["--logratio-weight", "-0.5"], "logratio_weight"),
}


@pytest.mark.parametrize("name", list(BAD_OPTIONS))
def test_bad_option_values(name: str, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad option value is a user error: exit 2 and a message naming the option, not a traceback."""
    extra, needle = BAD_OPTIONS[name]
    try:
        rc, text = run_cli(train_args(ws, *extra), capsys)
    except ValueError as err:
        pytest.fail(f"traceback instead of a message: {err!r}")
    assert rc == 2
    assert "Traceback" not in text
    assert needle in text


def test_cli_wording_keeps_flags_only() -> None:
    """Messages shared with Python name both spellings; the command line keeps only the flag."""
    from perturbscore.cli import cli_wording

    assert cli_wording("Choose another with --state-key (Python: state_key=...).") == "Choose another with --state-key."
    assert cli_wording("pass overwrite=True (--overwrite) or") == "pass --overwrite or"
    assert cli_wording("pass small='drop' (--small drop) to drop them") == "pass --small drop to drop them"


def test_bad_option_fails_before_the_screen_is_read(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Options are checked first: a typo must not wait for a large screen to load (here: none exists)."""
    rc, text = run_cli(train_args(ws, "--stat-activation", "relu", screen=ws.root / "missing.h5ad"), capsys)
    assert rc == 2
    assert "stat_activation" in text
    assert "does not exist" not in text


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_gpu_without_one_fails_before_the_screen_is_read(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """--accelerator gpu where PyTorch sees no GPU: a message naming the option and what to do, and no run folder."""
    args = train_args(ws, "--accelerator", "gpu", screen=ws.root / "missing.h5ad")
    out = Path(args[args.index("--out") + 1])
    rc, text = run_cli(args, capsys)
    assert rc == 2
    assert "Traceback" not in text
    assert "--accelerator cpu" in text
    assert "does not exist" not in text
    assert not out.exists()


def test_debug_shows_traceback(ws: Workspace) -> None:
    """With --debug the error propagates (full traceback) instead of the one-line message."""
    with pytest.raises(InputError, match="control label 'NT' not found"):
        main(["--debug", *train_args(ws, "--control", "NT")])


def test_overwrite_run_replaces_only_a_run(ws: Workspace) -> None:
    """prepare_run_dir with overwrite deletes a recognised run, never a folder that merely has run-like names."""
    from perturbscore.model._rundir import prepare_run_dir

    with pytest.raises(RunError, match="not a perturbscore run"):
        prepare_run_dir(ws.user_dir, overwrite=True)
    assert (ws.user_dir / "notes.txt").exists()
    assert (ws.user_dir / "scores.csv").exists()
    out = prepare_run_dir(ws.old_run, overwrite=True)
    assert out.is_dir()
    assert not any(out.iterdir())
    empty = ws.root / "empty"
    empty.mkdir()
    assert prepare_run_dir(empty) == empty


# -- no CLI command yet: the Python API --------------------------------------------------------
def small_model(states: tuple[str, ...], n_genes: int = 30, **model_kw: object) -> PerturbScoreModel:
    cfg = ModelConfig(n_genes=n_genes, n_states=len(states), front_end="genes", **model_kw)
    net = build_net(cfg, seed=0)
    return PerturbScoreModel(net, cfg, TrainConfig(), states, np.array([f"gene{j}" for j in range(n_genes)]))


def test_saved_model_state_order_differs(ws: Workspace) -> None:
    """A screen with a state the model does not know is refused, naming the extra and missing states."""
    model = small_model(("progenitor", "effector", "terminal exhausted", "cycling", "naive"))
    with pytest.raises(InputError, match=r"extra in the screen: 'other'; missing from the screen: 'naive'"):
        read_screen(ws.screen, states=model.states)


def test_saved_model_state_order_permuted_is_realigned(ws: Workspace) -> None:
    """Same states in another order: the screen is read in the model's order, proportions follow the names."""
    own = read_screen(ws.screen)
    order = tuple(reversed(own.states))
    aligned = read_screen(ws.screen, states=order)
    assert aligned.states == order
    np.testing.assert_allclose(aligned.proportions, own.proportions[:, ::-1])


def test_target_state_order_follows_names(tmp_path: Path) -> None:
    """A targets table whose columns are in another order than the screen's maps by state name."""
    path = tmp_path / "t.csv"
    pd.DataFrame({"name": ["x"], "other": [0.5], "progenitor": [0.5]}).to_csv(path, index=False)
    q = read_targets(path, CHALLENGE_STATES)["x"]
    assert q[CHALLENGE_STATES.index("progenitor")] == 0.5
    assert q[CHALLENGE_STATES.index("other")] == 0.5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("progenitor=-0.1,effector=1", r"fraction '-0.1' for state 'progenitor'.*must be finite and >= 0"),
        ("naive=1", r"unknown state 'naive'.*valid states: 'progenitor'"),
        ("progenitor=abc", r"fraction 'abc' for state 'progenitor'.*is not a number"),
        ("progenitor=0,effector=0", r"is all zero"),
        ("progenitor=nan", r"must be finite"),
    ],
)
def test_bad_targets(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_target(text, CHALLENGE_STATES)


def test_target_not_summing_to_one_warns(caplog: pytest.LogCaptureFixture) -> None:
    """A target that does not sum to 1 is renormalised, with a warning that says so."""
    with caplog.at_level(logging.WARNING, logger="perturbscore.io._targets"):
        q = resolve_targets(["mine:progenitor=2,cycling=2"], CHALLENGE_STATES)["mine"]
    assert q.sum() == pytest.approx(1.0)
    assert q[0] == pytest.approx(0.5)
    assert any("sums to 4, not 1; renormalised" in r.getMessage() for r in caplog.records)


def test_targets_yaml_is_loaded_safely(tmp_path: Path) -> None:
    """A YAML targets file with a Python object tag is refused by yaml.safe_load; nothing is executed."""
    marker = tmp_path / "executed"
    path = tmp_path / "targets.yaml"
    path.write_text(f"x: !!python/object/apply:os.mkdir ['{marker}']\n")
    with pytest.raises(InputError, match="could not be parsed"):
        read_targets(path, CHALLENGE_STATES)
    assert not marker.exists()


def test_checkpoint_from_another_config(tmp_path: Path) -> None:
    """model.json edited to another n_programs than the weights: refused, naming both files."""
    states = tuple(CHALLENGE_STATES)
    path = small_model(states, n_programs=6).save(tmp_path / "model")
    meta = json.loads((path / "model.json").read_text())
    meta["model_config"]["n_programs"] = 9
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match=r"model\.safetensors does not match .*model\.json"):
        PerturbScoreModel.load(path)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: m.pop("states"), id="states-missing"),
        pytest.param(lambda m: m.__setitem__("states", ["a"]), id="states-wrong-length"),
        pytest.param(lambda m: m.__setitem__("gene_names", ["g0", "g1"]), id="genes-wrong-length"),
        pytest.param(lambda m: m.__setitem__("model_config", {"n_genes": "x"}), id="config-garbage"),
    ],
)
def test_model_json_damaged(tmp_path: Path, edit: Callable[[dict], object]) -> None:
    """A damaged model.json is a RunError naming the file, never a KeyError/TypeError or a silent misload."""
    path = small_model(tuple(CHALLENGE_STATES)).save(tmp_path / "model")
    meta = json.loads((path / "model.json").read_text())
    edit(meta)
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match=re.escape(str(path / "model.json"))):
        PerturbScoreModel.load(path)
