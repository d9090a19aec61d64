"""``fit``: train the learned statistic on a screen (AnnData, path or Screen) and save a run.

An AnnData in memory is annotated as scanpy tools do: ``adata.uns[key_added]`` holds the call's parameters
(the ``obs`` keys, the states, the run directory) and the split, and ``adata.obs[key_added + "_split"]``
says for every cell whether its perturbation trained, validated or was held out for testing.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._constants import KEYS
from .._errors import RunError
from .._utils import write_json_atomic, write_text_atomic
from ..data import EMBED_KEY, GeneFeatures, Screen
from ..nn import ModelConfig
from ..train import (
    Split,
    TrainConfig,
    check_devices,
    is_main_process,
    model_config_for,
    preset,
    resolve_io,
    split_perturbations,
    train_statistic,
)
from ._calibrate import fit_calibration
from ._model import PerturbScoreModel
from ._rundir import check_run_dir, prepare_run_dir

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

#: Default ``key_added`` of :func:`fit`: ``adata.uns["perturbscore"]`` and ``adata.obs["perturbscore_split"]``.
FIT_KEY = "perturbscore"
#: The role of each cell's perturbation in ``adata.obs[key_added + "_split"]``.
SPLIT_CATEGORIES = ("train", "validation", "test", "control", "not used")


def as_screen(
    data: Screen | ad.AnnData | str | Path,
    *,
    features: GeneFeatures | str | Path | None = None,
    embedding_key: str | None = EMBED_KEY,
    **read_kw: Any,
) -> Screen:
    """Turn an AnnData, a path or a :class:`Screen` into a validated :class:`Screen`.

    The cells' stored embedding under ``embedding_key`` (:func:`perturbscore.pp.embed`: ``obsm``/``uns``, or a
    store beside the file) is attached when it belongs to the screen (``None``: never).
    """
    from ..pp import attach_embedding

    if isinstance(data, Screen):
        if features is not None:
            from ..io import read_features

            data.features = features if isinstance(features, GeneFeatures) else read_features(features)
        return data if embedding_key is None else attach_embedding(data, key=embedding_key)
    from ..io import read_screen

    screen = read_screen(data, features=features, **read_kw)
    return screen if embedding_key is None else attach_embedding(screen, data, key=embedding_key)


def fit(
    data: Screen | ad.AnnData | str | Path,
    *,
    features: GeneFeatures | str | Path | None = None,
    perturbation_key: str = KEYS.perturbation,
    state_key: str = KEYS.state,
    control: str | None = KEYS.control,
    layer: str | None = None,
    min_cells: int = 1,
    small: str = "drop",
    backed: bool = False,
    allow_missing_features: bool = False,
    key_added: str = FIT_KEY,
    embedding_key: str | None = EMBED_KEY,
    preset_name: str = "default",
    config: TrainConfig | None = None,
    model_overrides: dict[str, Any] | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    split: Split | None = None,
    **overrides: Any,
) -> PerturbScoreModel:
    """Train the learned statistic on a screen.

    Parameters
    ----------
    data
        A screen: an AnnData, an ``.h5ad``/``.zarr`` path, or a :class:`~perturbscore.data.Screen`.
    features
        Gene features for the recognition network ``T`` (path or :class:`GeneFeatures`).
    perturbation_key, state_key
        ``obs`` columns with each cell's perturbation and state (AnnData or path).
    control
        The control label in the perturbation column; ``None`` for a screen without control cells.
    layer
        Layer with raw counts, normalised like :func:`~perturbscore.io.read_screen` does; default ``X``.
    min_cells, small, backed, allow_missing_features
        How the screen is read (see :func:`~perturbscore.io.read_screen`).
    key_added
        An in-memory AnnData gets ``adata.uns[key_added]`` (``params``: keys, states, run directory, preset;
        ``split``: the perturbations of each part) and ``adata.obs[key_added + "_split"]`` (each cell's part:
        train, validation, test, control or not used).
    embedding_key
        The cells' stored embedding to train on (:func:`perturbscore.pp.embed`: ``obsm``/``uns`` of an AnnData, or
        a store beside an ``.h5ad``), used when it belongs to the screen and has the model's front-end shape;
        without one the front end is fitted and every cell embedded once before the first step. ``None``: never.
    preset_name
        ``"default"``, ``"seed-baseline"`` (no T, 60 cells) or ``"seed-full"``.
    config
        A full :class:`~perturbscore.train.TrainConfig` (overrides ``preset_name``'s).
    model_overrides
        :class:`~perturbscore.nn.ModelConfig` fields to change.
    out
        Run directory (``config.json``, ``metrics.csv``, ``checkpoints/``, ``model/``); a temporary one if None.
        An existing run is refused before the screen is read (unless ``overwrite`` or ``resume``).
    overwrite, resume
        Replace an existing run, or continue it from its last checkpoint.
    progress
        Show a progress bar.
    split
        Explicit train/validation/test perturbations (default: ``n_train``/``n_val`` shuffled by ``split_seed``).
    **overrides
        TrainConfig fields (e.g. ``max_steps=500``) applied on top of the preset.

    Returns
    -------
    PerturbScoreModel
        The fitted model (also saved in ``out/model``); ``model.keys`` holds the ``obs`` keys it was trained with.

    Examples
    --------
    >>> import perturbscore as ps
    >>> sim = ps.datasets.synthetic_perturb_seq(seed=0)
    >>> model = ps.tl.fit(sim.adata, features=sim.features, max_steps=20, progress=False)  # doctest: +SKIP
    >>> sim.adata.obs["perturbscore_split"].value_counts()  # doctest: +SKIP
    """
    if out is not None and is_main_process():
        check_run_dir(out, overwrite=overwrite, resume=resume)  # before reading a screen that may be large
    tcfg, mover = preset(preset_name, **overrides)  # a bad option fails before the screen is read, too
    if config is not None:
        tcfg = config
    check_devices(tcfg.accelerator, tcfg.devices)  # no GPU: fail now, not after reading the screen
    keys = {"perturbation_key": perturbation_key, "state_key": state_key, "control": control, "layer": layer}
    screen = as_screen(
        data, features=features, embedding_key=embedding_key, **keys, min_cells=min_cells, small=small,
        backed=backed, allow_missing_features=allow_missing_features,
    )  # fmt: skip
    mover |= model_overrides or {}
    mcfg = model_config_for(screen, tcfg, **mover)
    # record the sampling window and prefetch actually used (a PCA front end reads embedded cells, never the matrix)
    tcfg = resolve_io(tcfg, screen, front_end=mcfg.front_end)
    main = is_main_process()  # under DDP every process runs this; only rank 0 writes the run's files
    if out is None:
        if not main:
            raise RunError("distributed training needs a run directory every process shares: pass out=...")
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="perturbscore-run-"))
    run_dir = prepare_run_dir(out, overwrite=overwrite, resume=resume) if main else Path(out)
    if resume and main:
        _check_resume(run_dir, tcfg, mcfg)
    if split is None:
        split = split_perturbations(screen, n_train=tcfg.n_train, n_val=tcfg.n_val, seed=tcfg.split_seed)
    config_dict = {
        "train": tcfg.to_dict(),
        "model": mcfg.to_dict(),
        "split": split.to_dict(),
        "screen": screen.summary(),
    }
    if main:
        write_json_atomic(run_dir / "config.json", config_dict)
        _write_yaml(run_dir / "config.yaml", config_dict)
        write_json_atomic(run_dir / "screen_summary.json", screen.summary())
    result = train_statistic(screen, tcfg, mcfg, run_dir=run_dir, split=split, resume=resume, progress=progress)
    train_ids = [screen.index_of(p) for p in split.train if p != screen.control]
    extra: dict[str, Any] = {
        "train_mean_proportions": screen.proportions[train_ids].mean(0).tolist(),
        "best_val_pred_loss": result.best_val_pred_loss,
    }
    if screen.keys:  # the keys the screen was read with (read_screen records them)
        extra["keys"] = dict(screen.keys)
    model = PerturbScoreModel(result.net, mcfg, tcfg, screen.states, screen.gene_names, split.to_dict(), extra)
    # the reported number: the head blended with empirical Bayes, weights and intervals from held-out knockouts
    if result.embedding is not None and screen.embedding is None:  # calibrate on the coordinates training used
        screen = dataclasses.replace(screen, embedding=result.embedding)
    model.calibration = fit_calibration(model, screen, train=split.train, held_out=split.val, seed=tcfg.seed)
    if main:
        model.save(run_dir / "model", overwrite=True)
        logger.info("trained model saved in %s", run_dir / "model")
    if _in_memory_anndata(data):
        annotate_fit(data, model, key_added=key_added, run_dir=run_dir, preset_name=preset_name)
    return model


def _in_memory_anndata(data: object) -> bool:
    return not isinstance(data, Screen | str | Path) and hasattr(data, "obs") and not getattr(data, "isbacked", True)


def annotate_fit(
    adata: ad.AnnData, model: PerturbScoreModel, *, key_added: str = FIT_KEY, run_dir: Path | None = None,
    preset_name: str | None = None,
) -> None:  # fmt: skip
    """Write what :func:`fit` records into ``adata``: ``uns[key_added]`` and ``obs[key_added + "_split"]``."""
    keys = model.keys or {"perturbation_key": KEYS.perturbation, "control": KEYS.control}
    pkey, control = keys.get("perturbation_key"), keys.get("control")
    params = {
        **{k: ("none" if v is None else v) for k, v in keys.items()},
        "states": list(model.states),
        "preset": preset_name or "",
        "run_dir": "" if run_dir is None else str(run_dir),
        "max_steps": int(model.train_config.max_steps),
        "seed": int(model.train_config.seed),
    }
    split = {part: np.asarray(model.split.get(part, []), dtype=str) for part in ("train", "val", "test")}
    adata.uns[key_added] = {"params": params, "split": split}
    if pkey in adata.obs.columns:
        role = {p: name for part, name in (("train", "train"), ("val", "validation"), ("test", "test"))
                for p in model.split.get(part, [])}  # fmt: skip
        if control is not None:
            role[str(control)] = "control"
        labels = adata.obs[pkey].astype(str).map(lambda p: role.get(p, "not used"))
        adata.obs[f"{key_added}_split"] = pd.Categorical(labels, categories=list(SPLIT_CATEGORIES))


def _check_resume(run_dir: Path, config: TrainConfig, model_config: ModelConfig) -> None:
    """Refuse to resume a run with other settings than it started with (``max_steps`` may grow)."""
    import json

    path = run_dir / "config.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    try:  # through from_dict: a config from another version (unknown keys) is refused
        model = ModelConfig.from_dict(saved["model"]).to_dict() if "model" in saved else {}
        train = TrainConfig.from_dict(saved["train"]).options() if "train" in saved else {}
    except (TypeError, ValueError) as err:
        raise RunError(f"cannot resume {run_dir}: its config.json has an unreadable config ({err})") from err
    stored = train | {f"model.{k}": v for k, v in model.items()}
    new = config.options() | {f"model.{k}": v for k, v in model_config.to_dict().items()}
    diff = sorted(k for k in new if k != "max_steps" and k in stored and stored[k] != new[k])
    if diff:
        shown = ", ".join(f"{k}: {stored[k]!r} -> {new[k]!r}" for k in diff[:6])
        raise RunError(
            f"cannot resume {run_dir} with other settings ({shown}); resume with the original options "
            "or start a new run with --out/--overwrite"
        )


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    import yaml

    write_text_atomic(path, yaml.safe_dump(_plain(data), sort_keys=False))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
