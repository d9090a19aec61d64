"""The fitted model a user holds: modules + configs + state order + gene names, with save/load."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .. import __version__
from .._errors import InputError, RunError
from ..data import EmbeddedCells
from ..nn import ModelConfig, PerturbationStatistic
from ..train import TrainConfig
from ._calibration import CalibratedDistance, Calibration
from ._saved import read_model, write_model

if TYPE_CHECKING:
    import anndata as ad

#: Cells per forward pass when a statistic is computed from an AnnData.
BLOCK_CELLS = 20_000


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
        Anything else worth keeping with the model (e.g. training mean proportions, the ``obs`` keys it was
        trained with under ``"keys"``).
    evaluation
        The run's evaluation (``eval.json`` of :func:`~perturbscore.tl.evaluate`), when known: loaded from the
        run directory, or set by :func:`~perturbscore.tl.evaluate`. Scoring reads it to decide whether genes
        scored from sequence alone can be ranked.
    calibration
        How the head's distance is blended with empirical Bayes into the reported number, with its interval
        (:class:`~perturbscore.model.Calibration`, fitted at the end of :func:`~perturbscore.model.fit`);
        ``None`` for a model saved without one.
    """

    net: PerturbationStatistic
    model_config: ModelConfig
    train_config: TrainConfig
    states: tuple[str, ...]
    gene_names: np.ndarray
    split: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = field(default=None, repr=False)
    calibration: Calibration | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.net.eval()
        self.gene_names = np.asarray(self.gene_names, dtype=str)

    # -- the statistic ------------------------------------------------------------------------
    @property
    def has_recognizer(self) -> bool:
        """Whether the model can score genes from sequence features alone."""
        return self.net.recognizer is not None

    def _inputs(self, cells: sp.spmatrix | np.ndarray | EmbeddedCells) -> sp.csr_matrix | torch.Tensor:
        if isinstance(cells, EmbeddedCells):  # stored front-end coordinates (pp.embed): no projection
            if cells.fingerprint != self.net.front.fingerprint:
                raise InputError(
                    "these cells' stored coordinates were made by another front end than this model's; pass their "
                    "expression instead (or embed the screen with the model's front end)"
                )
            return cells.tensor()
        x = sp.csr_matrix(cells, dtype=np.float32)
        if x.shape[1] != len(self.gene_names):
            raise InputError(
                f"cells have {x.shape[1]} genes but the model was trained on {len(self.gene_names)}; "
                "subset/reorder the screen's genes to the model's gene_names"
            )
        return self.net.front.transform(x)

    @torch.no_grad()
    def program_activity(self, cells: sp.spmatrix | np.ndarray | ad.AnnData, *, layer: str | None = None) -> np.ndarray:
        """Program activities ``f(x)`` per cell: ``(n_cells, m1)``, in (-1, 1).

        ``cells`` is log-normalised expression in the model's gene order, or an AnnData (genes matched by name;
        ``X``, or ``layer`` with raw counts normalised on the fly; read in blocks).
        """
        if isinstance(cells, sp.spmatrix | np.ndarray) or not hasattr(cells, "obs"):
            return self.net.programs(self._inputs(cells)).numpy()
        stored = _stored_coordinates(cells, self.net.front, layer)  # obsm of pp.embed, when it is this front end's
        if stored is not None:
            return self.net.programs(stored).numpy()
        blocks = [self.net.programs(self._inputs(x)).numpy() for _, x in self._blocks(cells, layer)]
        return np.vstack(blocks) if blocks else np.zeros((0, self.model_config.n_programs), dtype=np.float32)

    def _blocks(self, adata: ad.AnnData, layer: str | None) -> Iterator[tuple[int, sp.csr_matrix]]:
        """``(first row, log-normalised CSR block in the model's gene order)`` over an AnnData's cells."""
        from ..io._matrix import lognorm_csr, to_csr

        if layer is not None and layer not in adata.layers:
            raise InputError(f"the AnnData has no layer {layer!r}; layers: {list(adata.layers)} (None reads X)")
        cols = _gene_columns(np.asarray(adata.var_names, dtype=str), self.gene_names)
        matrix = adata.X if layer is None else adata.layers[layer]
        if matrix is None:
            raise InputError("the AnnData's X is empty; pass layer= the layer with raw counts")
        for start in range(0, adata.n_obs, BLOCK_CELLS):
            block = to_csr(matrix[start : start + BLOCK_CELLS])
            # a raw-count layer is normalised as the screen was for training: 1e4 per cell, then log1p
            block = lognorm_csr(block) if layer is not None else block
            yield start, sp.csr_matrix(block[:, cols])

    @torch.no_grad()
    def cell_summary(self, cells: sp.spmatrix | np.ndarray) -> np.ndarray:
        """Return what the statistic averages per cell.

        ``(n_cells, m1)`` programs (plus ``C`` state posteriors with the mix channel); ``net.pool`` turns means
        of these rows into statistics.
        """
        return self.net.cell_summary(self.net.programs(self._inputs(cells))).numpy()

    @property
    def stat_names(self) -> list[str]:
        """Names of the statistic's entries: ``stat_1..stat_m2``, then ``mix_<state>`` with the mix channel."""
        names = [f"stat_{j + 1}" for j in range(self.model_config.n_stat)]
        return names + ([f"mix_{s}" for s in self.states] if self.model_config.mix_channel else [])

    @property
    def keys(self) -> dict[str, Any]:
        """The ``obs`` keys, control label and layer the model was trained with (empty if not recorded)."""
        return dict(self.extra.get("keys") or {})

    @torch.no_grad()
    def statistic(
        self,
        cells: sp.spmatrix | np.ndarray | ad.AnnData,
        *,
        groups: np.ndarray | None = None,
        groupby: str | None = None,
        layer: str | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """``s(P)`` of a group of cells, or of each group.

        Parameters
        ----------
        cells
            Log-normalised expression ``(n, genes)`` in the model's gene order, or an AnnData: its genes are
            matched to the model's by name, and ``X`` (log-normalised) or ``layer`` (raw counts, normalised like
            the screen was: 1e4 per cell, then ``log1p``) is read in blocks, so a backed file works too.
        groups
            One label per cell (matrix input): the rows follow ``np.unique(groups)``.
        groupby
            An ``obs`` column of the AnnData (e.g. the perturbation column): one statistic per group.
        layer
            AnnData layer with raw counts; default ``X``.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            For a matrix, ``(m2,)``, or ``(n_groups, m2)`` with ``groups``. For an AnnData, a DataFrame with one
            row per group (or one row, ``"all cells"``) and the columns :attr:`stat_names`, with ``n_cells``.
            ``m2`` is ``ModelConfig.stat_dim``: ``G``'s outputs, then the mix channel if the model has one.
        """
        if not isinstance(cells, sp.spmatrix | np.ndarray) and hasattr(cells, "obs"):
            return self._statistic_anndata(cells, groupby=groupby, layer=layer)
        if groupby is not None:
            raise InputError("groupby names an obs column of an AnnData; with a matrix of cells pass groups=labels")
        prog = self.net.programs(self._inputs(cells))  # (n, m1)
        if groups is None:
            seg, n = torch.zeros(prog.shape[0], dtype=torch.int64), 1
        else:
            _, inv = np.unique(np.asarray(groups), return_inverse=True)
            seg, n = torch.from_numpy(inv.astype(np.int64)), int(inv.max()) + 1
        stat = self.net.statistic(prog, seg, n).numpy()
        return stat[0] if groups is None else stat

    def _statistic_anndata(self, adata: ad.AnnData, *, groupby: str | None, layer: str | None) -> pd.DataFrame:
        """Per-group statistics of an AnnData's cells, read in blocks of :data:`BLOCK_CELLS` rows."""
        if groupby is not None and groupby not in adata.obs.columns:
            raise InputError(
                f"the AnnData has no obs column {groupby!r}; pass groupby= one of {list(adata.obs.columns)[:20]}"
            )
        labels = (
            pd.Categorical(adata.obs[groupby].astype(str))
            if groupby is not None
            else pd.Categorical(np.repeat("all cells", adata.n_obs))
        )
        codes, names = labels.codes.astype(np.int64), [str(c) for c in labels.categories]
        n_cells = np.bincount(codes, minlength=len(names))
        sums = torch.zeros(
            len(names), self.model_config.n_programs + (len(self.states) if self.model_config.mix_channel else 0)
        )
        for start, x in self._blocks(adata, layer):
            summary = self.net.cell_summary(self.net.programs(self._inputs(x)))  # (b, m1 [+ C])
            sums.index_add_(0, torch.from_numpy(codes[start : start + x.shape[0]]), summary)
        keep = n_cells > 0
        means = sums[torch.from_numpy(keep)] / torch.from_numpy(n_cells[keep]).unsqueeze(1).float()
        stat = self.net.pool(means).numpy()
        index = pd.Index([n for n, k in zip(names, keep, strict=True) if k], name=groupby or "group")
        out = pd.DataFrame(stat, index=index, columns=self.stat_names)
        out.insert(0, "n_cells", n_cells[keep])
        return out

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
        """Return the decoded state mix ``(n, C)`` where the head provides one (structured head), else ``None``.

        ``n_cells`` (cells behind each statistic, 0 = from sequence) matters with the mix channel only.
        """
        s = torch.as_tensor(np.atleast_2d(np.asarray(stat, dtype=np.float32)))
        k = np.minimum(np.broadcast_to(np.asarray(n_cells), (s.shape[0],)), self.train_config.k_max)
        out = self.net.proportions(s, torch.log1p(torch.as_tensor(k, dtype=torch.float32)))
        return None if out is None else out.numpy()

    def calibrated_distance(
        self,
        stat: np.ndarray,
        targets: np.ndarray,
        *,
        counts: np.ndarray | None = None,
        features: np.ndarray | None = None,
        genes: list[str] | None = None,
    ) -> CalibratedDistance:
        """Return the reported distance: the head's blended with empirical Bayes, and its 95 % interval.

        ``d = lam d_head + (1 - lam) d_eb`` with ``lam = w / (w + k + a)`` (see :mod:`perturbscore.model`'s
        :class:`Calibration`): empirical Bayes at ``w = 0``, the empirical label mix's distance as ``k`` grows.

        Parameters
        ----------
        stat
            ``(n, m2)`` statistics the head reads: from ``k`` cells (fused with ``T(g)`` by
            :meth:`posterior_statistic` where the model fuses), or ``T(g)`` for sequence-only rows.
        targets
            ``(C,)``, ``(n, C)`` or ``(n, T, C)`` targets, as for :meth:`predict_distance`.
        counts
            ``(n, C)`` label counts of the cells behind each statistic (state order :attr:`states`); ``None``
            or a row of zeros: no cells.
        features
            ``(n, W, D)`` gene features of the knockouts (the prior of empirical Bayes; ``None``: the training
            mean).
        genes
            Knockout names; a knockout the calibration was fitted on gets the weights and quantiles fitted
            without it (a cross-fitted, honest evaluation).

        Returns
        -------
        CalibratedDistance
            ``distance``, ``lo``, ``hi`` (the 95 % interval), ``head`` (``H`` alone) and ``empirical_bayes``,
            each ``(n,)`` or ``(n, T)``. Without a calibration, ``distance`` is the head's and the interval NaN.
        """
        s = np.atleast_2d(np.asarray(stat, dtype=np.float32))
        k = np.zeros(len(s)) if counts is None else np.atleast_2d(np.asarray(counts, dtype=np.float64)).sum(axis=1)
        head = self.predict_distance(s, targets, n_cells=k.astype(np.int64))
        if self.calibration is None:
            nan = np.full(head.shape, np.nan)
            return CalibratedDistance(head, nan, nan.copy(), head, nan.copy())
        return self.calibration.combine(head, counts, features, targets, genes=genes)

    def program_loadings(self) -> pd.DataFrame:
        """Program weights of ``f`` on genes: a genes × programs table (PCA front end mapped back to genes)."""
        w = self.net.front.gene_loadings(self.net.encoder.weight, len(self.gene_names))  # (m1, genes)
        cols = [f"program_{i + 1}" for i in range(w.shape[0])]
        return pd.DataFrame(w.T, index=pd.Index(self.gene_names, name="gene"), columns=cols)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` + ``model.json`` into directory ``path`` (atomic, no pickle)."""
        meta = {
            "perturbscore_version": __version__,
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "states": list(self.states),
            "gene_names": self.gene_names.tolist(),
            "split": self.split,
            "extra": self.extra,
        }
        return write_model(Path(path), self.net, meta, self.calibration, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> PerturbScoreModel:
        """Load a model saved by :meth:`save`; never unpickles anything."""
        return cls(**read_model(Path(path)))


def _stored_coordinates(adata: ad.AnnData, front: Any, layer: str | None) -> torch.Tensor | None:
    """Every cell's coordinates in ``adata.obsm`` (:func:`perturbscore.pp.embed` of ``layer``) if made by ``front``."""
    from ..pp import embedding_from

    emb = embedding_from(adata) if getattr(front, "kind", "") == "pca" else None
    if emb is None or not emb.matches(front) or emb.n_cells != adata.n_obs:
        return None
    if str(emb.params.get("layer", "X")) != ("X" if layer is None else layer):
        return None
    return torch.from_numpy(np.ascontiguousarray(emb.values, dtype=np.float32))


def _gene_columns(have: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Positions of the genes ``want`` among ``have`` (the AnnData's var_names); raises for missing genes."""
    index = pd.Index(have)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise InputError(f"the AnnData has duplicated gene names {dup}; call adata.var_names_make_unique() first")
    pos = index.get_indexer(want)
    if (pos < 0).any():
        missing = want[pos < 0]
        raise InputError(
            f"the AnnData lacks {missing.size} of the model's {len(want)} genes (e.g. {missing[:5].tolist()}); "
            "use cells measured on the genes the model was trained on"
        )
    return pos
