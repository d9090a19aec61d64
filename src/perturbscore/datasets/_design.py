"""The ground truth of a synthetic screen: genes, modules, latent effects and true state mixes.

Every knockout (and every unseen gene) has a latent effect ``z`` (``L`` dims). It drives both
its true state mix, ``q = softmax(control_logits + A z)``, and the activity of within-state
expression programs, ``B z``. ``A`` is fitted so that ``A z`` with ``z ~ N(mu, I)`` has the mean
and covariance of the real knockouts' centred-log-ratio shifts from the control mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .._constants import CHALLENGE_STATES
from .._errors import InputError
from ._reference import CHALLENGE_N_GENES, challenge_summary

N_PROGRAMS = 6
#: log-abundance of background genes ~ N(0, BACKGROUND_SD^2); marker/program/knockout genes sit higher.
BACKGROUND_SD = 1.8
SPECIAL_MEAN, SPECIAL_SD = 3.5, 0.7


@dataclass
class Design:
    """Ground truth shared by the cells, the features and the sequences of one synthetic screen."""

    genes: np.ndarray  # (G,) var names, in column order
    log_abundance: np.ndarray  # (G,) log share of a cell's library, before state/program effects
    dispersion: np.ndarray  # (G,) negative-binomial dispersion phi (var = mu + phi mu^2)
    knockouts: list[str]
    unseen: list[str]
    effects: np.ndarray  # (n_knockouts + n_unseen, L) latent z, knockouts first
    effect_mean: np.ndarray  # (L,) mean of z over knockouts (A mu = the real mean shift)
    proportions: np.ndarray  # (n_knockouts + n_unseen, C) true q
    control_logits: np.ndarray  # (C,)
    state_loadings: np.ndarray  # (C, L) = A
    program_loadings: np.ndarray  # (K, L) = B
    program_gain: np.ndarray  # (K, C) how strongly each program responds in each state
    special_cols: np.ndarray  # (S,) columns touched by state markers or programs
    marker_lfc: np.ndarray  # (C, S) log fold change of each special gene in each state
    program_lfc: np.ndarray  # (K, S) log fold change per unit program activity
    modules: dict[str, list[str]]

    @property
    def n_states(self) -> int:
        """Number of states ``C``."""
        return self.control_logits.size

    @property
    def control_mix(self) -> np.ndarray:
        """The control cells' true state mix, ``(C,)``."""
        return _softmax(self.control_logits)


def module_size(n_genes: int) -> int:
    """Genes per state-marker or program module: about 30 for 2,000 genes, 12 to 40 overall."""
    return int(np.clip(round(n_genes / 60), 12, 40))


def panel_room(n_genes: int) -> int:
    """How many knocked-out genes a panel of ``n_genes`` can measure beside the modules (may be <= 0)."""
    return n_genes - (len(CHALLENGE_STATES) + N_PROGRAMS) * module_size(n_genes) - 10


def check_sizes(*, n_genes: int, n_knockouts: int, effect_dim: int) -> None:
    """Raise :class:`InputError` when the gene panel cannot hold the modules and the knockouts."""
    if n_knockouts < 1:
        raise InputError(f"n_knockouts={n_knockouts}: a screen needs at least one knockout; pass --knockouts >= 1")
    if effect_dim < 1:
        raise InputError(
            f"effect_dim={effect_dim}: the latent effect needs at least one dimension; pass effect_dim >= 1"
        )
    need = n_genes - panel_room(n_genes) + n_knockouts
    if n_genes < need:
        raise InputError(
            f"n_genes={n_genes} is too small for {n_knockouts} knockouts plus the state-marker and program "
            f"modules; pass --genes >= {need} (or fewer --knockouts)"
        )


def build_design(
    *,
    n_genes: int,
    n_knockouts: int,
    n_unseen: int,
    effect_dim: int,
    planted: Mapping[str, Sequence[float]] | None,
    rng: np.random.Generator,
    off_panel: bool = False,
) -> Design:
    """Draw the genes, modules, effects and true mixes of one screen (see module docstring).

    With ``off_panel`` a screen may knock out more genes than its panel measures (as genome-wide screens
    do): knocked-out genes make up at most a tenth of the panel (they are highly expressed, so more would
    inflate every cell's counts), and the rest are knocked out without being measured.
    """
    n_in_panel = min(n_knockouts, panel_room(n_genes), n_genes // 10) if off_panel else n_knockouts
    check_sizes(n_genes=n_genes, n_knockouts=max(n_in_panel, min(n_knockouts, 1)), effect_dim=effect_dim)
    states = CHALLENGE_STATES
    knockouts, background, extra = _names(n_genes, n_knockouts, n_unseen, planted or {}, rng, n_in_panel=n_in_panel)
    size = module_size(n_genes)
    pool = rng.permutation(background)
    modules: dict[str, list[str]] = {}
    for i, state in enumerate(states):
        modules[f"state_{state.replace(' ', '_')}"] = sorted(pool[i * size : (i + 1) * size].tolist())
    offset = len(states) * size
    for k in range(N_PROGRAMS):
        modules[f"effect_program_{k + 1}"] = sorted(pool[offset + k * size : offset + (k + 1) * size].tolist())
    spare = pool[offset + N_PROGRAMS * size :][:n_unseen].tolist()  # unseen genes: panel genes outside modules,
    unseen = [*spare, *extra[: n_unseen - len(spare)].tolist()]  # then names beyond the panel
    genes = rng.permutation(np.concatenate([knockouts[:n_in_panel], background]))
    col = {g: i for i, g in enumerate(genes)}
    special = np.array(sorted(col[g] for m in modules.values() for g in m), dtype=np.int64)
    spos = {c: j for j, c in enumerate(special)}

    log_ab = rng.normal(0.0, BACKGROUND_SD, genes.size)
    boosted = np.concatenate([special, [col[g] for g in knockouts[:n_in_panel]]]).astype(np.int64)
    log_ab[boosted] = rng.normal(SPECIAL_MEAN, SPECIAL_SD, boosted.size)
    dispersion = np.exp(rng.normal(np.log(0.3), 0.4, genes.size))

    marker_lfc = np.zeros((len(states), special.size))
    for i, state in enumerate(states):
        cols = [spos[col[g]] for g in modules[f"state_{state.replace(' ', '_')}"]]
        marker_lfc[i, cols] = rng.uniform(1.0, 2.2, len(cols))
    program_lfc = np.zeros((N_PROGRAMS, special.size))
    for k in range(N_PROGRAMS):
        cols = [spos[col[g]] for g in modules[f"effect_program_{k + 1}"]]
        sign = np.where(rng.random(len(cols)) < 0.2, -1.0, 1.0)
        program_lfc[k, cols] = sign * rng.uniform(0.4, 1.0, len(cols))

    summary = challenge_summary()
    a_mat, z_mean = _state_loadings(summary.shift_cov, summary.shift_mean, effect_dim, rng)
    b_mat = rng.normal(0.0, 1.0 / np.sqrt(effect_dim), (N_PROGRAMS, effect_dim))
    names = [*knockouts, *unseen]
    z = z_mean + rng.standard_normal((len(names), effect_dim))  # (P, L)
    for gene, mix in (planted or {}).items():
        z[names.index(gene)] = _solve_effect(
            np.asarray(mix, float), summary.control_logits, a_mat, z[names.index(gene)]
        )
    q = _softmax(summary.control_logits + z @ a_mat.T)  # (P, C)
    return Design(
        genes=genes,
        log_abundance=log_ab,
        dispersion=dispersion,
        knockouts=knockouts,
        unseen=unseen,
        effects=z,
        effect_mean=z_mean,
        proportions=q,
        control_logits=summary.control_logits,
        state_loadings=a_mat,
        program_loadings=b_mat,
        program_gain=rng.uniform(0.3, 1.2, (N_PROGRAMS, len(states))),
        special_cols=special,
        marker_lfc=marker_lfc,
        program_lfc=program_lfc,
        modules=modules,
    )


def _names(
    n_genes: int,
    n_knockouts: int,
    n_unseen: int,
    planted: Mapping[str, Sequence[float]],
    rng: np.random.Generator,
    *,
    n_in_panel: int,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Knockout symbols (planted ones, then real ones, then generated), background genes, spare names.

    The first ``n_in_panel`` knockouts are panel genes; the background fills the rest of the panel.
    """
    real = list(challenge_summary().knockouts)
    unknown = [g for g in planted if g not in real]
    if unknown:
        raise InputError(f"planted knockout(s) {unknown} are not challenge knockouts; choose from {sorted(real)}")
    if len(planted) > n_knockouts:
        raise InputError(f"{len(planted)} planted knockouts but n_knockouts={n_knockouts}; raise n_knockouts")
    others = [str(g) for g in rng.permutation([g for g in real if g not in planted])]
    chosen = [*planted, *others[: max(0, n_knockouts - len(planted))]]
    n_new = n_knockouts - len(chosen)
    n_background = n_genes - n_in_panel
    n_generated = n_new + n_background + n_unseen
    width = max(5, len(str(n_generated)))
    generated = np.array([f"Gm{i:0{width}d}" for i in range(1, n_generated + 1)])
    knockouts = [*chosen, *generated[:n_new].tolist()]
    return knockouts, generated[n_new : n_new + n_background], generated[n_new + n_background :]


def _state_loadings(
    cov: np.ndarray, mean: np.ndarray, effect_dim: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``A`` (C x L) with ``cov(A z) = cov`` (top components if L < C - 1) and ``mu`` with ``A mu = mean``."""
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1]
    r = min(effect_dim, int((vals > 1e-9).sum()))
    basis = vecs[:, order[:r]] * np.sqrt(vals[order[:r]])  # (C, r)
    rot, _ = np.linalg.qr(rng.standard_normal((effect_dim, effect_dim)))
    a_mat = basis @ rot[:r]  # (C, L): rows of rot[:r] are orthonormal, so A A^T = basis basis^T
    mu = np.linalg.lstsq(a_mat, mean, rcond=None)[0]
    return a_mat, mu


def _solve_effect(mix: np.ndarray, control_logits: np.ndarray, a_mat: np.ndarray, z0: np.ndarray) -> np.ndarray:
    """Return the effect closest to ``z0`` whose true mix is ``mix`` (exact when ``A`` spans the simplex)."""
    if mix.shape != control_logits.shape or (mix <= 0).any():
        raise InputError(
            f"a planted mix must give a positive share to each of the {control_logits.size} states "
            f"{list(CHALLENGE_STATES)}; got {mix.tolist()}"
        )
    target = np.log(mix / mix.sum())
    target = target - target.mean() - control_logits
    pinv = np.linalg.pinv(a_mat)  # (L, C)
    return pinv @ target + (np.eye(a_mat.shape[1]) - pinv @ a_mat) @ z0


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


#: Reference gene count, for scaling per-gene shares to a whole transcriptome.
REFERENCE_GENES = CHALLENGE_N_GENES
