"""Synthetic Perturb-seq screens with known ground truth, laid out like the 2023 challenge file."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .._constants import CHALLENGE_STATES, KEYS
from .._errors import InputError
from ..data import GeneFeatures
from ._cells import LIBRARY_MEDIAN, CellPlan, plan_cells
from ._counts import log_normalize, simulate_counts
from ._design import Design, build_design
from ._features import simulate_features
from ._reference import CHALLENGE_N_CELLS, CHALLENGE_N_CONTROL, draw_counts
from ._sequences import MotifMap, simulate_sequences
from ._write import write_screen

logger = logging.getLogger(__name__)

#: Default gene-level noise of the features, relative to the unit-scale signal.
FEATURE_NOISE = 0.5
#: The knockout planted in :func:`synthetic_perturb_seq` (its true state mix is :data:`PLANTED_MIX`).
PLANTED_KNOCKOUT = "Prdm1"
#: The planted knockout's true state mix, in the order of the default states.
PLANTED_MIX = (0.62, 0.12, 0.09, 0.15, 0.02)
#: Values (genes x cells) above which ``simulate_screen(progress=None)`` shows a progress bar.
PROGRESS_VALUES = 10_000_000

#: Named settings of the panel of screens the scores are judged on: how informative the features are
#: (``feature_signal``), how much knockouts shift expression within a state (``within_state_shift``) and
#: whether cells sit on a continuum between states (``label_noise``). ``{}`` is the default screen.
SCREEN_PANEL: dict[str, dict[str, float | int]] = {
    "default": {},
    "features_strong": {"feature_signal": 3.0},
    "features_none": {"feature_signal": 0.0},
    "shift_strong": {"within_state_shift": 2.0},
    "shift_none": {"within_state_shift": 0.0},
    "labels_clean": {"label_noise": 0.0},
    "labels_only": {"within_state_shift": 0.0, "label_noise": 0.0},
    "genes_15k": {"n_genes": 15_077},
}


@dataclass
class SyntheticScreen:
    """A simulated screen and its ground truth.

    Attributes
    ----------
    adata
        Cells x genes, like the challenge file: ``obs`` columns ``gRNA_maxID``, ``state``
        (categorical, :data:`~perturbscore._constants.CHALLENGE_STATES` order), ``condition``
        (knockout or ``Unperturbed``), ``lane``; ``X`` = log1p(CP10k) float32 CSR;
        ``layers["rawcounts"]`` = UMI counts (float32 CSR); ``uns["perturbscore_truth"]``.
    features
        ``(windows, dim)`` features of every knockout, then every unseen gene.
    sequences
        TSS-centred sequences of the same genes (``None`` unless asked for).
    modules
        Gene modules: ``state_<state>`` markers and ``program_<k>`` effect programs.
    truth
        Per gene (knockouts, unseen genes, then the control): true proportion of every state,
        ``observed`` (has cells), ``kind`` (``knockout``/``unseen``/``control``), ``n_cells`` and
        the latent effect ``effect_1..effect_L``.
    """

    adata: ad.AnnData
    features: GeneFeatures
    sequences: dict[str, str] | None
    modules: dict[str, list[str]]
    truth: pd.DataFrame

    def write(self, directory: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
        """Write ``screen.h5ad``, ``features.npz``, ``sequences.fa`` (if any), ``modules.gmt``, ``truth.csv``.

        Parameters
        ----------
        directory
            Output folder (created if missing).
        overwrite
            Replace existing files; otherwise an existing file raises :class:`~perturbscore._errors.RunError`.

        Returns
        -------
        dict
            ``{"screen", "features", ["sequences",] "modules", "truth"}`` -> path written.
        """
        return write_screen(self, Path(directory), overwrite=overwrite)


def simulate_screen(
    *,
    n_genes: int = 2_000,
    n_knockouts: int = 64,
    n_cells: int | None = None,
    n_control_cells: int | None = None,
    n_unseen_genes: int = 0,
    feature_dim: int = 128,
    n_windows: int = 200,
    sequences: bool = False,
    min_cells: int = 20,
    effect_dim: int = 5,
    feature_noise: float = FEATURE_NOISE,
    feature_signal: float = 1.0,
    within_state_shift: float = 1.0,
    label_noise: float = 1.0,
    planted: Mapping[str, Sequence[float]] | None = None,
    seed: int | np.random.Generator | None = 0,
    progress: bool | None = False,
) -> SyntheticScreen:
    """Simulate a Perturb-seq screen with known effects, true state mixes and gene features.

    Each knockout has a latent effect ``z`` (``effect_dim`` dims) that sets both its true state mix
    ``q = softmax(control_logits + A z)`` (``A`` fitted to the real knockouts' spread) and the
    activity of within-state expression programs (``B z``). Cells sit on a continuum between
    states, labelled by their dominant one; counts are negative binomial. Features and sequences
    carry a noisy, nonlinear signal of ``z``.

    Three knobs (defaults: the default screen) vary what each source of evidence says, for a panel of
    screens (:data:`SCREEN_PANEL`); the random draws do not depend on them, so screens that differ only in
    a knob share their cells, labels and noise.

    Parameters
    ----------
    n_genes
        Genes (columns). The challenge file has 15,077.
    n_knockouts
        Knocked-out genes; the first 66 take the challenge's knockout symbols.
    n_cells
        All cells, control included. Default: the challenge's 28,697, scaled by ``n_knockouts / 64``.
    n_control_cells
        Control cells. Default: the challenge's share (17.3%) of ``n_cells``.
    n_unseen_genes
        Extra genes with an effect, a true mix and features but no cells (to score unseen genes).
    feature_dim, n_windows
        Shape of each gene's feature array.
    sequences
        Also simulate TSS-centred sequences (``512 + 32 (n_windows - 1)`` bp) with planted motifs.
    min_cells
        Fewest cells any knockout gets; cells per knockout otherwise follow the real screen's spread.
    effect_dim
        Dimension ``L`` of the latent effect.
    feature_noise
        Gene-level noise of the features relative to their signal; higher is harder.
    feature_signal
        Scale of the effect's signal in the features: 1 (default) is weakly informative, 3 strongly,
        0 makes the features independent of the effects (uninformative).
    within_state_shift
        Scale of the within-state expression programs ``B z``: 1 (default) as today, 2 strong, 0 none (a
        knockout changes only its state mix; its cells and control cells in the same state have the same
        expected expression, apart from the knocked-out gene itself).
    label_noise
        Scale in [0, 1] of each cell's share outside its labelled (dominant) state: 1 (default) puts cells on
        a continuum between states, 0 puts every cell at its state's centre.
    planted
        Knockouts (challenge symbols) whose true mix is fixed: ``{"Prdm1": (0.6, 0.1, 0.1, 0.15, 0.05)}``
        in :data:`~perturbscore._constants.CHALLENGE_STATES` order. They get the most cells.
    seed
        Seed or generator; the same seed gives the same screen.
    progress
        Show a progress bar over chunks of cells; ``None``: when the screen holds more than 10 million values
        (genes x cells).

    Returns
    -------
    SyntheticScreen
    """
    started = time.perf_counter()
    seed_int = int(seed.integers(2**63)) if isinstance(seed, np.random.Generator) else seed
    n_cells, n_control = _cell_totals(n_cells, n_control_cells, n_knockouts, min_cells)
    if progress is None:
        progress = n_genes * n_cells > PROGRESS_VALUES
    _check_args(n_unseen_genes=n_unseen_genes, feature_dim=feature_dim, n_windows=n_windows, noise=feature_noise)
    _check_knobs(feature_signal=feature_signal, within_state_shift=within_state_shift, label_noise=label_noise)
    ss = np.random.SeedSequence(seed_int)
    s_design, s_counts, s_cells, s_umi, s_feat, s_seq = ss.spawn(6)
    design = build_design(
        n_genes=n_genes,
        n_knockouts=n_knockouts,
        n_unseen=n_unseen_genes,
        effect_dim=effect_dim,
        planted=planted,
        rng=np.random.default_rng(s_design),
    )
    counts = draw_counts(
        n_knockouts, total=n_cells - n_control, min_cells=min_cells, rng=np.random.default_rng(s_counts)
    )
    if planted:  # planted knockouts come first in design.knockouts; give them the most cells
        order = np.argsort(counts)[::-1]
        counts = np.concatenate([counts[order[: len(planted)]], counts[np.sort(order[len(planted) :])]])
    plan = plan_cells(
        design,
        counts,
        n_control=n_control,
        rng=np.random.default_rng(s_cells),
        within_state_shift=within_state_shift,
        label_noise=label_noise,
    )
    raw = simulate_counts(design, plan, seed=s_umi, progress=progress)
    genes = [*design.knockouts, *design.unseen]
    values, _ = simulate_features(
        design.effects,
        z_mean=design.effect_mean,
        dim=feature_dim,
        n_windows=n_windows,
        noise=feature_noise,
        rng=np.random.default_rng(s_feat),
        signal_scale=feature_signal,
    )
    seqs, motifs = None, None
    if sequences:
        seqs, motifs = simulate_sequences(
            genes, design.effects, z_mean=design.effect_mean, n_windows=n_windows, rng=np.random.default_rng(s_seq)
        )
    params = {
        "seed": -1 if seed_int is None else int(seed_int),
        "n_genes": int(n_genes),
        "n_knockouts": int(n_knockouts),
        "n_cells": int(n_cells),
        "n_control_cells": int(n_control),
        "n_unseen_genes": int(n_unseen_genes),
        "feature_dim": int(feature_dim),
        "n_windows": int(n_windows),
        "effect_dim": int(effect_dim),
        "feature_noise": float(feature_noise),
        "feature_signal": float(feature_signal),
        "within_state_shift": float(within_state_shift),
        "label_noise": float(label_noise),
        "min_cells": int(min_cells),
        "sequences": bool(sequences),
        "library_median": float(LIBRARY_MEDIAN),
        "planted": ",".join(planted or {}),
    }
    adata = _anndata(design, plan, raw, params, motifs)
    truth = _truth_frame(design, counts, n_control)
    logger.info(
        "simulated %d cells x %d genes (%d knockouts, %d unseen genes) in %.1f s",
        *adata.shape,
        n_knockouts,
        n_unseen_genes,
        time.perf_counter() - started,
    )
    return SyntheticScreen(
        adata=adata,
        features=GeneFeatures(genes=np.array(genes), values=values, source=f"simulated (seed={params['seed']})"),
        sequences=seqs,
        modules=design.modules,
        truth=truth,
    )


def synthetic_perturb_seq(*, seed: int | np.random.Generator | None = 0) -> SyntheticScreen:
    """Simulate a small screen for docs and tests: ~1,500 cells, 200 genes, 8 knockouts + control, 4 unseen genes.

    Features are ``(200, 16)`` per gene, sequences are included, and the knockout
    :data:`PLANTED_KNOCKOUT` (``"Prdm1"``) strongly raises the progenitor share (true mix
    :data:`PLANTED_MIX`; the control's progenitor share is 0.0675).
    """
    return simulate_screen(
        n_genes=200,
        n_knockouts=8,
        n_cells=1_500,
        n_control_cells=300,
        n_unseen_genes=4,
        feature_dim=16,
        sequences=True,
        min_cells=20,
        planted={PLANTED_KNOCKOUT: PLANTED_MIX},
        seed=seed,
    )


def _cell_totals(n_cells: int | None, n_control: int | None, n_knockouts: int, min_cells: int) -> tuple[int, int]:
    if min_cells < 1:
        raise InputError(f"min_cells={min_cells}: every knockout needs at least one cell; pass min_cells >= 1")
    if n_cells is None:
        n_cells = round(CHALLENGE_N_CELLS * max(n_knockouts, 1) / 64)
    if n_control is None:
        n_control = round(n_cells * CHALLENGE_N_CONTROL / CHALLENGE_N_CELLS)
    if n_control < 0 or n_cells < 1:
        raise InputError(f"n_cells={n_cells}, n_control_cells={n_control}: both must be positive; pass --cells > 0")
    if n_cells - n_control < n_knockouts * min_cells:
        raise InputError(
            f"n_cells={n_cells} with {n_control} control cells leaves {n_cells - n_control} cells for "
            f"{n_knockouts} knockouts, fewer than min_cells={min_cells} each; pass --cells >= "
            f"{n_control + n_knockouts * min_cells} or fewer --knockouts"
        )
    return int(n_cells), int(n_control)


def _check_args(*, n_unseen_genes: int, feature_dim: int, n_windows: int, noise: float) -> None:
    if n_unseen_genes < 0:
        raise InputError(f"n_unseen_genes={n_unseen_genes} is negative; pass --unseen-genes >= 0")
    if feature_dim < 1 or n_windows < 1:
        raise InputError(f"feature_dim={feature_dim}, n_windows={n_windows}: both must be >= 1")
    if not noise >= 0:
        raise InputError(f"feature_noise={noise}: must be a non-negative number")


def _check_knobs(*, feature_signal: float, within_state_shift: float, label_noise: float) -> None:
    if not (np.isfinite(feature_signal) and feature_signal >= 0):
        raise InputError(
            f"feature_signal={feature_signal}: must be a finite number >= 0 (0 = uninformative features); pass --feature-signal >= 0"
        )
    if not (np.isfinite(within_state_shift) and within_state_shift >= 0):
        raise InputError(
            f"within_state_shift={within_state_shift}: must be a finite number >= 0 (0 = no shift); pass --within-state-shift >= 0"
        )
    if not 0 <= label_noise <= 1:
        raise InputError(
            f"label_noise={label_noise}: must be in [0, 1] (0 = cells at their state's centre); pass --label-noise in [0, 1]"
        )


def _anndata(design: Design, plan: CellPlan, raw, params: dict, motifs: MotifMap | None) -> ad.AnnData:
    """Assemble the AnnData: obs like the challenge file, X = log1p(CP10k), rawcounts layer, truth in uns."""
    adata = ad.AnnData(
        X=log_normalize(raw),
        obs=obs_frame(design, plan),
        var=pd.DataFrame(index=pd.Index(design.genes.astype(str))),
        layers={KEYS.raw_layer: raw},
        uns={KEYS.truth: truth_uns(design, params, motifs)},
    )
    return adata


def obs_frame(design: Design, plan: CellPlan, order: np.ndarray | None = None) -> pd.DataFrame:
    """``obs`` like the challenge file for the cells ``order`` of ``plan`` (default: plan order)."""
    order = np.arange(plan.n_cells) if order is None else order
    width = max(6, len(str(order.size - 1)))
    return pd.DataFrame(
        {
            KEYS.guide: pd.Categorical(plan.guide[order]),
            KEYS.state: pd.Categorical.from_codes(plan.state[order], categories=list(CHALLENGE_STATES)),
            KEYS.perturbation: pd.Categorical(
                plan.condition[order], categories=[*sorted(design.knockouts), KEYS.control]
            ),
            "lane": pd.Categorical(plan.lane[order]),
        },
        index=pd.Index([f"cell{i:0{width}d}" for i in range(order.size)]),
    )


def truth_uns(design: Design, params: dict, motifs: MotifMap | None) -> dict:
    """Return the ground truth stored in ``uns["perturbscore_truth"]``."""
    n_ko = len(design.knockouts)
    names = [*design.knockouts, *design.unseen, KEYS.control]
    truth = {
        "perturbations": np.array(names, dtype=str),
        "observed": np.array([True] * n_ko + [False] * len(design.unseen) + [True]),
        "proportions": np.vstack([design.proportions, design.control_mix[None, :]]),  # (P, C)
        "effects": np.vstack([design.effects, np.zeros((1, design.effects.shape[1]))]),  # (P, L)
        "states": np.array(CHALLENGE_STATES, dtype=str),
        "state_loadings": design.state_loadings,
        "program_loadings": design.program_loadings,
        "params": params,
    }
    if motifs is not None:
        truth["motifs"] = np.array(motifs.motifs, dtype=str)
        truth["motif_loadings"] = motifs.loadings
    return truth


def _truth_frame(design: Design, counts: np.ndarray, n_control: int) -> pd.DataFrame:
    """Per gene: true state proportions, observed/kind/n_cells, effect columns; the control last."""
    n_ko, n_un = len(design.knockouts), len(design.unseen)
    frame = pd.DataFrame(
        np.vstack([design.proportions, design.control_mix[None, :]]),
        columns=list(CHALLENGE_STATES),
        index=pd.Index([*design.knockouts, *design.unseen, KEYS.control], name="gene"),
    )
    frame["observed"] = [True] * n_ko + [False] * n_un + [True]
    frame["kind"] = ["knockout"] * n_ko + ["unseen"] * n_un + ["control"]
    frame["n_cells"] = np.concatenate([counts, np.zeros(n_un, dtype=np.int64), [n_control]])
    effects = np.vstack([design.effects, np.zeros((1, design.effects.shape[1]))])
    for j in range(effects.shape[1]):
        frame[f"effect_{j + 1}"] = effects[:, j]
    return frame
