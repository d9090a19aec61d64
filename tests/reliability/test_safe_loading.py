"""Safe loading: no file perturbscore reads can run code (it never unpickles arbitrary objects).

Malicious pickles here would create a marker directory when unpickled; every test asserts it was refused
AND that the marker does not exist. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (which flips torch.load's default
to full unpickling) is set where a loader relies on torch's default instead of passing ``weights_only=True``.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import perturbscore
import perturbscore.cli._train  # noqa: F401  registers `train`
from perturbscore._constants import CHALLENGE_STATES
from perturbscore._errors import RunError
from perturbscore.cli import main
from perturbscore.nn import ModelConfig
from perturbscore.tl import PerturbScoreModel, fit
from perturbscore.train import TrainConfig, build_net

SRC = Path(perturbscore.__file__).parent


class MarkerPayload:
    """Unpickling this calls ``os.mkdir(marker)``: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


def write_pickle(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": {"w": MarkerPayload(marker)}, "epoch": 0}, fh)
    return path


def write_torch_pickle(path: Path, marker: Path) -> Path:
    """A torch.save file (zip format, what Lightning writes) whose data.pkl holds the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": MarkerPayload(marker)}, "epoch": 0}, path)
    return path


@pytest.fixture
def saved_model(tmp_path: Path) -> Path:
    cfg = ModelConfig(n_genes=12, n_states=len(CHALLENGE_STATES), front_end="genes")
    genes = np.array([f"g{i}" for i in range(12)])
    model = PerturbScoreModel(build_net(cfg, seed=0), cfg, TrainConfig(), tuple(CHALLENGE_STATES), genes)
    return model.save(tmp_path / "model")


# -- PerturbScoreModel.load ------------------------------------------------------------------
@pytest.mark.parametrize("writer", [write_pickle, write_torch_pickle], ids=["pickle", "torch-save"])
def test_model_load_refuses_pickled_weights(
    saved_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer
) -> None:
    """model.safetensors replaced by a pickle: refused with a RunError, nothing executed."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "executed"
    writer(saved_model / "model.safetensors", marker)
    with pytest.raises(RunError, match=r"model\.safetensors"):
        PerturbScoreModel.load(saved_model)
    assert not marker.exists()


def test_model_load_roundtrip(saved_model: Path) -> None:
    """Positive control: the untouched saved model loads, with the same weights."""
    model = PerturbScoreModel.load(saved_model)
    again = PerturbScoreModel.load(saved_model)
    for (k, a), (_, b) in zip(model.net.state_dict().items(), again.net.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert model.states == tuple(CHALLENGE_STATES)


def test_model_json_is_plain_json(saved_model: Path, tmp_path: Path) -> None:
    """model.json is parsed with json only: a YAML/pickle payload there is a clean RunError."""
    marker = tmp_path / "executed"
    (saved_model / "model.json").write_bytes(pickle.dumps(MarkerPayload(marker)))
    with pytest.raises(RunError, match=r"model\.json is not a perturbscore model description"):
        PerturbScoreModel.load(saved_model)
    assert not marker.exists()


# -- Lightning checkpoints -------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from perturbscore.datasets import synthetic_perturb_seq

    out = tmp_path_factory.mktemp("sim")
    synthetic_perturb_seq(seed=0).write(out)
    return out


def test_best_checkpoint_loaded_weights_only(sim_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loop reloads best.ckpt with weights_only=True: a pickled best.ckpt fails, nothing runs."""
    import lightning as L

    import perturbscore.train._loop as loop

    marker = tmp_path / "executed"

    class Poison(L.Callback):
        def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            best = trainer.checkpoint_callback.best_model_path
            assert best
            assert Path(best).exists()
            write_torch_pickle(Path(best), marker)

    original = loop._trainer

    def poisoned(*args: object, **kwargs: object) -> L.Trainer:
        trainer = original(*args, **kwargs)
        trainer.callbacks.append(Poison())
        return trainer

    monkeypatch.setattr(loop, "_trainer", poisoned)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises((pickle.UnpicklingError, RunError)):
        fit(
            sim_dir / "screen.h5ad", out=tmp_path / "run", max_steps=4, steps_per_epoch=2, progress=False,
            use_recognizer=False,
        )  # fmt: skip
    assert not marker.exists()


def _run_with_last_ckpt(sim_dir: Path, tmp_path: Path, marker: Path) -> Path:
    """A finished small run whose last.ckpt is then replaced by a malicious pickle."""
    run = tmp_path / "run"
    fit(sim_dir / "screen.h5ad", out=run, max_steps=4, progress=False)  # the CLI's defaults, so --resume matches
    write_torch_pickle(run / "checkpoints" / "last.ckpt", marker)
    return run


def _resume_args(sim_dir: Path, run: Path) -> list[str]:
    return ["train", str(sim_dir / "screen.h5ad"), "--out", str(run), "--resume", "--max-steps", "8", "--no-progress"]


def test_resume_never_unpickles_checkpoint(sim_dir: Path, tmp_path: Path) -> None:
    """--resume with a pickled last.ckpt (torch's default loader): refused, nothing executed."""
    marker = tmp_path / "executed"
    run = _run_with_last_ckpt(sim_dir, tmp_path, marker)
    try:
        rc = main(_resume_args(sim_dir, run))
    except pickle.UnpicklingError:  # a traceback instead of the one-line refusal would still be safe
        rc = 1
    assert rc != 0
    assert not marker.exists()


def test_resume_with_forced_unsafe_default_is_refused_cleanly(
    sim_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even with torch's default flipped to unsafe, --resume refuses a pickled checkpoint with one message."""
    marker = tmp_path / "executed"
    run = _run_with_last_ckpt(sim_dir, tmp_path, marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    try:
        rc = main(_resume_args(sim_dir, run))
    except Exception as err:  # noqa: BLE001 - any exception here is the bug being documented
        rc = -1
        print(repr(err))
    executed = marker.exists()
    if executed:
        shutil.rmtree(marker)
    text = " ".join(capsys.readouterr().err.split())
    assert not executed, "the pickled checkpoint ran code"
    assert rc == 2
    assert "last.ckpt" in text
    assert "Traceback" not in text


# -- the source never uses an unsafe loader ----------------------------------------------------
def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(node: ast.AST) -> str:
    """Dotted name of a call target, e.g. ``yaml.load`` or ``torch.load``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return "?"


def _kw(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return None


def _unsafe_loads(text: str, label: str) -> list[str]:
    problems = []
    for call in _calls(ast.parse(text)):
        name = _name(call.func)
        where = f"{label}:{call.lineno} {name}"
        last = name.rsplit(".", 1)[-1]
        if (
            name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all")
            or name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle")
            and last.startswith("load")
            or last in ("read_pickle", "Unpickler")
            or name in ("marshal.loads", "shelve.open")
        ):
            problems.append(where)
        elif name.endswith("torch.load") or name == "load" and "from torch import load" in text:
            if _kw(call, "weights_only") is not True:
                problems.append(where + " without weights_only=True")
        elif last == "load" and name.split(".")[0] in ("np", "numpy") and _kw(call, "allow_pickle") is not False:
            problems.append(where + " without allow_pickle=False")
        elif name in ("eval", "exec"):
            problems.append(where)
    return problems


def test_no_unsafe_loaders_in_source() -> None:
    """yaml.load / pickle / torch.load without weights_only=True / np.load with pickles: none in src/."""
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems = [p for f in files for p in _unsafe_loads(f.read_text(encoding="utf-8"), str(f.relative_to(SRC)))]
    assert problems == []


def test_unsafe_loader_scan_detects() -> None:
    """The scan itself flags each unsafe pattern (so the test above can fail)."""
    code = (
        "import yaml, pickle, torch, numpy as np\n"
        "yaml.load(s)\npickle.loads(b)\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
        "np.load(p, allow_pickle=True)\nnp.load(p)\ntorch.load(p, weights_only=True)\nyaml.safe_load(s)\n"
        "np.load(p, allow_pickle=False)\n"
    )
    found = _unsafe_loads(code, "probe.py")
    assert [f.split()[1] for f in found] == [
        "yaml.load",
        "pickle.loads",
        "torch.load",
        "torch.load",
        "np.load",
        "np.load",
    ]


def _lightning_loads_without_weights_only(path: Path) -> list[str]:
    problems = []
    for call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
        name = _name(call.func)
        loads_ckpt = _kw(call, "ckpt_path") not in (None,) or name.endswith("load_from_checkpoint")
        if loads_ckpt and _kw(call, "weights_only") is not True:
            problems.append(f"{path.relative_to(SRC.parent)}:{call.lineno} {name}")
    return problems


def test_lightning_checkpoint_loads_pass_weights_only() -> None:
    """Every Lightning call that loads a checkpoint (ckpt_path=, load_from_checkpoint) says weights_only=True."""
    problems = [p for f in sorted(SRC.rglob("*.py")) for p in _lightning_loads_without_weights_only(f)]
    assert problems == []


def test_configs_written_are_safe_yaml(sim_dir: Path, tmp_path: Path) -> None:
    """A run's config.yaml is plain YAML (safe_load reads it back equal to config.json)."""
    import yaml

    run = tmp_path / "run"
    fit(sim_dir / "screen.h5ad", out=run, max_steps=2, steps_per_epoch=2, progress=False, use_recognizer=False)
    from_yaml = yaml.safe_load((run / "config.yaml").read_text())
    from_json = json.loads((run / "config.json").read_text())
    assert from_yaml["train"] == from_json["train"]
    assert from_yaml["model"] == from_json["model"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert "state_dict" in ckpt
    assert ckpt["global_step"] == 2
