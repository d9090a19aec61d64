"""``fit``: train the learned statistic on a screen (AnnData, path or Screen) and save a run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._utils import write_json_atomic, write_text_atomic
from ..data import GeneFeatures, Screen
from ..nn import ModelConfig
from ..train import Split, TrainConfig, model_config_for, preset, split_perturbations, train_statistic
from ..train._data import resolve_io
from ..train._dist import is_main_process
from ._model import PerturbScoreModel
from ._rundir import prepare_run_dir

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)


def as_screen(
    data: Screen | ad.AnnData | str | Path, *, features: GeneFeatures | str | Path | None = None, **read_kw: Any
) -> Screen:
    """Turn an AnnData, a path or a :class:`Screen` into a validated :class:`Screen`."""
    if isinstance(data, Screen):
        if features is not None:
            from ..io import read_features

            data.features = features if isinstance(features, GeneFeatures) else read_features(features)
        return data
    from ..io import read_screen

    return read_screen(data, features=features, **read_kw)


def fit(
    data: Screen | ad.AnnData | str | Path,
    *,
    features: GeneFeatures | str | Path | None = None,
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
        A screen: AnnData in the challenge layout, a ``.h5ad`` path, or a :class:`~perturbscore.data.Screen`.
    features
        Gene features for the recognition network ``T`` (path or :class:`GeneFeatures`).
    preset_name
        ``"default"``, ``"seed-baseline"`` (no T, 60 cells) or ``"seed-full"``.
    config
        A full :class:`~perturbscore.train.TrainConfig` (overrides ``preset_name``'s).
    model_overrides
        :class:`~perturbscore.nn.ModelConfig` fields to change.
    out
        Run directory (``config.json``, ``metrics.csv``, ``checkpoints/``, ``model/``); a temporary one if None.
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
    The fitted :class:`PerturbScoreModel` (also saved in ``out/model``).

    Examples
    --------
    >>> import perturbscore as ps
    >>> sim = ps.datasets.synthetic_perturb_seq(seed=0)
    >>> model = ps.tl.fit(sim.adata, features=sim.features, max_steps=20, progress=False)  # doctest: +SKIP
    """
    screen = as_screen(data, features=features)
    tcfg, mover = preset(preset_name, **overrides)
    if config is not None:
        tcfg = config
    mover |= model_overrides or {}
    tcfg = resolve_io(tcfg, screen)  # record the sampling window and prefetch actually used
    mcfg = model_config_for(screen, tcfg, **mover)
    main = is_main_process()  # under DDP every process runs this; only rank 0 writes the run's files
    if out is None:
        if not main:
            from .._errors import RunError

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
    extra = {
        "train_mean_proportions": screen.proportions[train_ids].mean(0).tolist(),
        "best_val_pred_loss": result.best_val_pred_loss,
    }
    model = PerturbScoreModel(result.net, mcfg, tcfg, screen.states, screen.gene_names, split.to_dict(), extra)
    if main:
        model.save(run_dir / "model", overwrite=True)
        logger.info("trained model saved in %s", run_dir / "model")
    return model


def _check_resume(run_dir: Path, config: TrainConfig, model_config: ModelConfig) -> None:
    """Refuse to resume a run with other settings than it started with (``max_steps`` may grow)."""
    import json

    from .._errors import RunError

    path = run_dir / "config.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    try:  # through from_dict: it knows the defaults of runs saved before an option existed (trained without it)
        model = ModelConfig.from_dict(saved["model"]).to_dict() if "model" in saved else {}
        train = TrainConfig.from_dict(saved["train"]).to_dict() if "train" in saved else {}
    except (TypeError, ValueError) as err:
        raise RunError(f"cannot resume {run_dir}: its config.json has an unreadable config ({err})") from err
    stored = train | {f"model.{k}": v for k, v in model.items()}
    new = config.to_dict() | {f"model.{k}": v for k, v in model_config.to_dict().items()}
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
