"""The fitted model a user holds: modules + configs + state order + gene names, with save/load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .. import __version__
from .._errors import InputError, RunError
from .._utils import atomic_path, write_json_atomic
from ..nn import ModelConfig, PerturbationStatistic
from ..train import TrainConfig, build_net

WEIGHTS, META = "model.safetensors", "model.json"


@dataclass
class PerturbScoreModel:
    """A trained statistic ``s(P) = G(mean f(x))`` with its head ``H`` and recognizer ``T``.

    Attributes
    ----------
    net
        The PyTorch modules.
    model_config, train_config
        How it was built and trained.
    states
        State order of every proportion/target vector this model reads or writes.
    gene_names
        Expression genes, in the column order the model expects.
    split
        Perturbations used for training / validation / test.
    extra
        Anything else worth keeping with the model (e.g. training mean proportions).
    """

    net: PerturbationStatistic
    model_config: ModelConfig
    train_config: TrainConfig
    states: tuple[str, ...]
    gene_names: np.ndarray
    split: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.net.eval()
        self.gene_names = np.asarray(self.gene_names, dtype=str)

    # -- the statistic ------------------------------------------------------------------------
    @property
    def has_recognizer(self) -> bool:
        """Whether the model can score genes from sequence features alone."""
        return self.net.recognizer is not None

    def _inputs(self, cells: sp.spmatrix | np.ndarray) -> sp.csr_matrix | torch.Tensor:
        x = sp.csr_matrix(cells, dtype=np.float32)
        if x.shape[1] != len(self.gene_names):
            raise InputError(
                f"cells have {x.shape[1]} genes but the model was trained on {len(self.gene_names)}; "
                "subset/reorder the screen's genes to the model's gene_names"
            )
        return self.net.front.transform(x)

    @torch.no_grad()
    def program_activity(self, cells: sp.spmatrix | np.ndarray) -> np.ndarray:
        """f per cell: ``(n_cells, m1)`` program activities in (-1, 1)."""
        return self.net.programs(self._inputs(cells)).numpy()

    @torch.no_grad()
    def cell_summary(self, cells: sp.spmatrix | np.ndarray) -> np.ndarray:
        """What the statistic averages per cell: ``(n_cells, m1)`` programs (plus ``C`` state posteriors with the
        mix channel); ``net.pool`` turns means of these rows into statistics."""
        return self.net.cell_summary(self.net.programs(self._inputs(cells))).numpy()

    @property
    def stat_names(self) -> list[str]:
        """Names of the statistic's entries: ``stat_1..stat_m2``, then ``mix_<state>`` with the mix channel."""
        names = [f"stat_{j + 1}" for j in range(self.model_config.n_stat)]
        return names + ([f"mix_{s}" for s in self.states] if self.model_config.mix_channel else [])

    @torch.no_grad()
    def statistic(self, cells: sp.spmatrix | np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray:
        """``s(P)`` from cells ``(n, genes)`` (log-normalised): ``(m2,)``, or ``(n_groups, m2)`` per group.

        ``m2`` is ``ModelConfig.stat_dim``: ``G``'s outputs, then the mix channel if the model has one
        (:attr:`stat_names`).

        With ``groups`` (one label per cell) the rows follow ``np.unique(groups)``.
        """
        prog = self.net.programs(self._inputs(cells))  # (n, m1)
        if groups is None:
            seg, n = torch.zeros(prog.shape[0], dtype=torch.int64), 1
        else:
            _, inv = np.unique(np.asarray(groups), return_inverse=True)
            seg, n = torch.from_numpy(inv.astype(np.int64)), int(inv.max()) + 1
        stat = self.net.statistic(prog, seg, n).numpy()
        return stat[0] if groups is None else stat

    @torch.no_grad()
    def statistic_from_sequence(self, features: np.ndarray) -> np.ndarray:
        """``T(g)``: the statistic predicted from gene features ``(n, W, D)`` or ``(W, D)`` -> ``(n, m2)``."""
        if not self.has_recognizer:
            raise RunError("this model has no recognition network (it was trained without gene features)")
        f = torch.as_tensor(np.asarray(features, dtype=np.float32))
        f = f[None] if f.ndim == 2 else f  # (n, W, D)
        if f.shape[-1] != self.model_config.n_features:
            raise InputError(f"features have dim {f.shape[-1]}; the model expects {self.model_config.n_features}")
        return self.net.recognize(f).numpy()

    @torch.no_grad()
    def posterior_statistic(self, stat: np.ndarray, features: np.ndarray | None, n_cells: np.ndarray) -> np.ndarray:
        """Combine cell statistics ``(n, m2)`` with the sequence prior ``T(g)`` where the model fuses them.

        ``(k s + kappa T(g)) / (k + kappa)``: returns ``stat`` unchanged for models without fusion or
        without features.
        """
        if features is None or not self.net.fuses_prior:
            return stat
        prior = torch.as_tensor(self.statistic_from_sequence(features))
        k = torch.as_tensor(np.broadcast_to(np.asarray(n_cells), (len(prior),)).astype(np.float32))
        return self.net.fuse(torch.as_tensor(np.atleast_2d(stat)), prior, k).numpy()

    @property
    def mix_strength(self) -> float | None:
        """The learned ``kappa_mix`` (cells' worth of ``G``'s decoded mix against the mix channel), if any."""
        logit = getattr(self.net.head, "mix_logit", None)
        return None if logit is None else float(torch.nn.functional.softplus(logit.detach()))

    @property
    def prior_strength(self) -> float | None:
        """The learned ``kappa`` (cells' worth of evidence in the sequence prior), if fused."""
        if self.net.prior_logit is None:
            return None
        return float(torch.nn.functional.softplus(self.net.prior_logit.detach()))

    @torch.no_grad()
    def predict_distance(self, stat: np.ndarray, targets: np.ndarray, *, n_cells: int | np.ndarray = 0) -> np.ndarray:
        """``H(s, Q)``: predicted TV distances.

        Parameters
        ----------
        stat
            ``(n, m2)`` (or ``(m2,)``) statistics.
        targets
            ``(C,)`` one target for all, ``(n, C)`` one each, or ``(n, T, C)``.
        n_cells
            Cells behind each statistic (0 = from sequence); capped at the training maximum.

        Returns
        -------
        ``(n,)`` or ``(n, T)`` distances in [0, 1].
        """
        s = torch.as_tensor(np.atleast_2d(np.asarray(stat, dtype=np.float32)))  # (n, m2)
        q = np.asarray(targets, dtype=np.float32)
        if q.shape[-1] != len(self.states):
            raise InputError(f"targets have {q.shape[-1]} states; the model's states are {list(self.states)}")
        squeeze = q.ndim <= 2
        q = np.broadcast_to(q, (s.shape[0], q.shape[-1])) if q.ndim == 1 else q
        q = q[:, None, :] if q.ndim == 2 else q  # (n, T, C)
        k = np.minimum(np.broadcast_to(np.asarray(n_cells), (s.shape[0],)), self.train_config.k_max)
        lk = torch.log1p(torch.as_tensor(k, dtype=torch.float32))
        d = self.net.distance(s, torch.from_numpy(np.array(q, dtype=np.float32)), lk).numpy()  # (n, T)
        return d[:, 0] if squeeze else d

    @torch.no_grad()
    def predict_proportions(self, stat: np.ndarray, *, n_cells: int | np.ndarray = 0) -> np.ndarray | None:
        """Decoded state mix ``(n, C)`` where the head provides one (structured head), else ``None``.

        ``n_cells`` (cells behind each statistic, 0 = from sequence) matters with the mix channel only.
        """
        s = torch.as_tensor(np.atleast_2d(np.asarray(stat, dtype=np.float32)))
        k = np.minimum(np.broadcast_to(np.asarray(n_cells), (s.shape[0],)), self.train_config.k_max)
        out = self.net.proportions(s, torch.log1p(torch.as_tensor(k, dtype=torch.float32)))
        return None if out is None else out.numpy()

    def program_loadings(self) -> pd.DataFrame:
        """f's weights on genes: a genes × programs table (PCA front end mapped back to genes)."""
        w = self.net.front.gene_loadings(self.net.encoder.effective_weight, len(self.gene_names))  # (m1, genes)
        cols = [f"program_{i + 1}" for i in range(w.shape[0])]
        return pd.DataFrame(w.T, index=pd.Index(self.gene_names, name="gene"), columns=cols)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` + ``model.json`` into directory ``path`` (atomic, no pickle)."""
        from safetensors.torch import save_file

        path = Path(path)
        if (path / WEIGHTS).exists() and not overwrite:
            raise RunError(f"{path / WEIGHTS} exists; pass overwrite=True (--overwrite) or choose another path")
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        with atomic_path(path / WEIGHTS) as tmp:
            save_file(state, str(tmp))
        meta = {
            "perturbscore_version": __version__,
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "states": list(self.states),
            "gene_names": self.gene_names.tolist(),
            "split": self.split,
            "extra": self.extra,
        }
        write_json_atomic(path / META, meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PerturbScoreModel:
        """Load a model saved by :meth:`save`; never unpickles anything."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
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
            raise RunError(
                f"{path / META} is not a perturbscore model description ({err}); re-train or re-save"
            ) from err
        net = build_net(mcfg, seed=0)
        try:
            state = load_file(str(path / WEIGHTS))
            net.load_state_dict(state, strict=True)
        except (SafetensorError, RuntimeError, OSError) as err:
            raise RunError(
                f"{path / WEIGHTS} does not match {path / META} (a checkpoint from another model config, or a "
                f"damaged file): {str(err).splitlines()[0]}"
            ) from err
        return cls(net, mcfg, tcfg, states, genes, split, extra)
