"""A fitted model on disk, written atomically and read back without unpickling anything.

``model.safetensors`` holds the weights, ``model.json`` the configs, states, genes and split, and
``calibration.json`` the calibration, when the model has one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import RunError
from .._utils import atomic_path, write_json_atomic
from ..nn import ModelConfig, PerturbationStatistic
from ..train import TrainConfig, build_net
from ._calibration import CALIBRATION_FILE, Calibration

WEIGHTS, META = "model.safetensors", "model.json"
#: The run's evaluation, read beside a saved model when it is loaded from a run directory.
EVAL_FILE = "eval.json"


def write_model(
    path: Path, net: PerturbationStatistic, meta: dict[str, Any], calibration: Calibration | None, *, overwrite: bool
) -> Path:
    """Write ``net``'s weights, ``meta`` and the calibration into directory ``path``; return ``path``."""
    from safetensors.torch import save_file

    if (path / WEIGHTS).exists() and not overwrite:
        raise RunError(f"{path / WEIGHTS} exists; pass overwrite=True (--overwrite) or choose another path")
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_json_atomic(path / META, meta)
    if calibration is not None:
        write_json_atomic(path / CALIBRATION_FILE, calibration.to_dict())
    elif (path / CALIBRATION_FILE).exists():
        (path / CALIBRATION_FILE).unlink()
    return path


def read_model(path: Path) -> dict[str, Any]:
    """Read a model written by :func:`write_model` (``path`` or its run directory): the model's fields, by name."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if (path / "model").is_dir() and not (path / META).exists():
        path = path / "model"  # a run directory
    if not (path / META).exists() or not (path / WEIGHTS).exists():
        raise RunError(f"{path} holds no saved model ({META} + {WEIGHTS}); train one with `perturbscore train`")
    try:
        meta = json.loads((path / META).read_text())
        mcfg = ModelConfig.from_dict(meta["model_config"])
        tcfg = TrainConfig.from_dict(meta["train_config"])
        states, genes = tuple(str(s) for s in meta["states"]), np.asarray(meta["gene_names"], dtype=str)
        split, extra = dict(meta.get("split") or {}), dict(meta.get("extra") or {})
        if len(states) != mcfg.n_states or len(genes) != mcfg.n_genes:
            raise ValueError(
                f"{len(states)} states and {len(genes)} gene names, but its model_config has "
                f"{mcfg.n_states} states and {mcfg.n_genes} genes"
            )
    except (ValueError, KeyError, TypeError) as err:
        raise RunError(f"{path / META} is not a perturbscore model description ({err}); re-train or re-save") from err
    net = build_net(mcfg, seed=0)
    try:
        state = load_file(str(path / WEIGHTS))
        net.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise RunError(
            f"{path / WEIGHTS} does not match {path / META} (a checkpoint from another model config, or a "
            f"damaged file): {str(err).splitlines()[0]}"
        ) from err
    return {
        "net": net, "model_config": mcfg, "train_config": tcfg, "states": states, "gene_names": genes, "split": split,
        "extra": extra, "evaluation": _read_evaluation(path.parent), "calibration": _read_calibration(path / CALIBRATION_FILE),
    }  # fmt: skip


def _read_calibration(path: Path) -> Calibration | None:
    """Read the calibration saved beside a model (JSON, never unpickled); ``None`` when there is none."""
    if not path.exists():
        return None
    try:
        return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise RunError(f"{path} is not a perturbscore calibration ({err}); re-train or delete it") from err


def _read_evaluation(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/eval.json`` when it holds an evaluation of a model, else None (absent or unreadable)."""
    try:
        data = json.loads((run_dir / EVAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("models"), dict) else None
