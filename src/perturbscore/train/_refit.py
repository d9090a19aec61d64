"""After training: refit the closed-form ``T`` once, on each training knockout's statistic from many cells."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from ..data import Screen
from ..nn import PerturbationStatistic
from ._config import TrainConfig

logger = logging.getLogger(__name__)


@torch.no_grad()
def refit_recognizer(
    net: PerturbationStatistic,
    screen: Screen,
    genes: list[str],
    take: Callable[[np.ndarray], torch.Tensor],
    config: TrainConfig,
) -> int:
    """Replace the ridge ``T``'s moving average by one fit on the final statistic of ``genes``' cells.

    During training ``T`` chases statistics of ``rec_reference_k``-cell samples that change as ``f`` and ``G``
    train, and keeps a moving average of those fits. This fit reads the trained statistic of each knockout in
    ``genes`` that has features, from up to ``config.rec_refit_cells`` of its cells, and chooses rank and
    penalty afresh by leave-one-out, with the same options (``rec_target_clip``, ``rec_select``,
    ``rec_robust``) as during training. Returns the number of knockouts it was fitted on (0: nothing done,
    for an MLP ``T``, no features or fewer than 3 knockouts with them).
    """
    rec = net.recognizer
    if rec is None or rec.head != "ridge" or screen.features is None or config.rec_refit_cells <= 0:
        return 0
    kept = [g for g in genes if g != screen.control and g in screen.features]
    if len(kept) < 3:
        return 0
    rng = np.random.default_rng([config.seed, 7_919])
    rows = []
    for g in kept:
        ix = screen.cell_index[screen.index_of(g)]
        if len(ix) > config.rec_refit_cells:
            ix = np.sort(rng.choice(ix, size=config.rec_refit_cells, replace=False))
        rows.append(ix)
    was_training = net.training
    net.eval()
    summaries = []
    for ix in rows:  # one knockout at a time: at most rec_refit_cells rows in memory
        summaries.append(net.cell_summary(net.programs(take(ix))).mean(0, keepdim=True))
    means = torch.cat(summaries)  # (P, m1 [+ C]): each knockout's mean cell summary
    target = net.pool(means)  # (P, m2 [+ C])
    net.train(was_training)
    feats = torch.from_numpy(screen.feature_block(kept))
    rec.n_fits.zero_()  # the fit replaces the average (rate 1) and searches rank and penalty again
    net.recognize_fit(
        feats,
        target,
        clip=config.rec_target_clip,
        per_part=config.rec_select == "per_part",
        robust=config.rec_robust,
    )
    logger.info("T refitted on the statistics of %d training knockouts (up to %d cells each)", len(kept),
                config.rec_refit_cells)  # fmt: skip
    return len(kept)
