"""Episodic sampler: k distribution and schedule, targets on the simplex, only sampled rows gathered."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from perturbscore.data import EpisodeSampler, KSchedule, draw_rows, sample_targets, tv


def test_kschedule_uniform_range_and_shrinking_upper() -> None:
    sched = KSchedule(k_min=2, k_max=10, start_max=50, shrink_steps=1000)
    rng = np.random.default_rng(0)
    assert sched.upper(0) == 50
    assert sched.upper(500) == 30
    assert sched.upper(5000) == 10
    early, late = sched.draw(5000, 0, rng), sched.draw(5000, 2000, rng)
    assert early.min() >= 2
    assert early.max() <= 50
    assert late.max() <= 10
    assert early.mean() > late.mean()  # the mean shrinks over training
    assert abs(late.mean() - 6) < 0.2  # U{2..10}


def test_kschedule_loguniform_favours_small_k() -> None:
    k = KSchedule(k_min=2, k_max=64, distribution="loguniform").draw(20000, 0, np.random.default_rng(0))
    assert k.min() == 2
    assert k.max() == 64
    assert np.median(k) < 20


def test_kschedule_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="k_min"):
        KSchedule(k_min=5, k_max=2)


def test_targets_on_simplex_and_near_pool() -> None:
    pool = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    q = sample_targets(pool, 1000, alpha=0.05, rng=np.random.default_rng(0))
    np.testing.assert_allclose(q.sum(1), 1)
    assert (q >= 0).all()
    assert tv(q[:, None, :], pool[None]).min(1).max() < 0.1  # each target is near an observed mix
    exact = sample_targets(pool, 10, alpha=0.0, rng=np.random.default_rng(0))
    assert all(any(np.allclose(e, p) for p in pool) for e in exact)


def test_draw_rows_without_replacement_and_small_perturbations() -> None:
    index = [np.arange(0, 100), np.arange(100, 103)]
    rows, used = draw_rows(index, np.array([10, 10]), np.random.default_rng(0))
    assert used.tolist() == [10, 10]
    assert len(set(rows[:10])) == 10
    assert set(rows[10:]) <= {100, 101, 102}
    rows, used = draw_rows(index, np.array([10, 10]), np.random.default_rng(0), replace_small=False)
    assert used.tolist() == [10, 3]


class _CountingTake:
    def __init__(self, matrix: sp.csr_matrix) -> None:
        self.matrix, self.rows = matrix, 0

    def __call__(self, rows: np.ndarray) -> sp.csr_matrix:
        self.rows += len(rows)
        return self.matrix[rows]


def test_episode_shapes_distances_and_gathers_only_sampled_rows() -> None:
    rng = np.random.default_rng(0)
    n_cells = 500
    states = rng.integers(0, 3, n_cells)
    index = [np.arange(i * 100, (i + 1) * 100) for i in range(5)]
    props = np.stack([np.bincount(states[ix], minlength=3) / 100 for ix in index])
    take = _CountingTake(sp.random(n_cells, 30, density=0.1, format="csr", random_state=0))
    sampler = EpisodeSampler(
        take, cell_index=index, state_codes=states, proportions=props, perturbation_ids=np.arange(5),
        target_pool=props, schedule=KSchedule(2, 10), targets_per_perturbation=3,
    )  # fmt: skip
    ep = sampler.sample(0, rng)
    n = int(ep.k.sum())
    assert take.rows == n
    assert ep.inputs.shape == (n, 30)
    assert ep.targets.shape == (5, 3, 3)
    assert ep.distances.shape == (5, 3)
    np.testing.assert_allclose(ep.distances.numpy(), tv(props[:, None, :], ep.targets.numpy()), atol=1e-6)
    assert ep.segments.bincount().tolist() == ep.k.tolist()
    assert ((ep.k >= 2) & (ep.k <= 10)).all()


# -- reading from disk: windows of adjacent rows, a batch of perturbations per step --------------
def test_window_sampling_draws_distinct_cells_from_a_short_cyclic_run() -> None:
    index = [np.arange(100, 300), np.arange(300, 310)]  # a 200-cell group, and one too small for a window
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        rows, used = draw_rows(index, np.array([10, 5]), rng, window=4)
        first = rows[:10]
        assert list(used) == [10, 5]
        assert len(set(first)) == 10
        assert set(first) <= set(index[0])
        pos = np.sort(first - 100)  # positions in the group
        gaps = np.diff(np.r_[pos, pos[0] + 200])  # including the gap that wraps around
        assert 200 - gaps.max() < 40  # all ten lie on a cyclic arc shorter than window * k = 40 rows
        assert set(rows[10:]) <= set(index[1])
        seen |= set(first.tolist())
    assert len(seen) == 200  # every cell is reachable: the run starts anywhere, wrapping around


def test_window_sampling_is_uniform_per_cell() -> None:
    index = [np.arange(60)]
    rng = np.random.default_rng(1)
    hits = np.zeros(60)
    for _ in range(6000):
        rows, _ = draw_rows(index, np.array([5]), rng, window=4)
        hits[rows] += 1
    share = hits / hits.sum()
    assert np.abs(share - 1 / 60).max() < 0.25 / 60  # each cell ~ k/n of the draws


def test_perturbations_per_step_batches_consistent_episodes(medium_screen) -> None:  # noqa: ANN001
    from perturbscore.io import read_screen

    screen = read_screen(medium_screen.adata, features=medium_screen.features)
    perts = screen.knockouts
    ids = np.array([screen.index_of(p) for p in perts])
    feats = screen.features.get(perts)
    sampler = EpisodeSampler(
        screen.rows.take, cell_index=[screen.cell_index[i] for i in ids], state_codes=screen.state_codes,
        proportions=screen.proportions[ids], perturbation_ids=ids, target_pool=screen.proportions[ids],
        schedule=KSchedule(3, 3), features=feats, has_features=np.ones(len(ids), bool), perturbations_per_step=5,
    )  # fmt: skip
    chosen = set()
    for step in range(20):
        ep = sampler.sample(step, np.random.default_rng(step))
        assert ep.n_sets == 5
        assert ep.inputs.shape[0] == 15
        assert ep.features.shape[0] == ep.proportions.shape[0] == ep.targets.shape[0] == 5
        for slot, pid in enumerate(ep.perturbation.tolist()):
            np.testing.assert_allclose(ep.proportions[slot].numpy(), screen.proportions[pid], rtol=1e-6)
            np.testing.assert_array_equal(
                ep.features[slot].numpy(), screen.features.get([screen.perturbations[pid]])[0]
            )
        chosen |= set(ep.perturbation.tolist())
    assert len(chosen) > 15  # different perturbations on different steps


# -- drawing every perturbation's cells at once (the sampler's path without windows) ---------------------------
def test_draw_rows_at_once_matches_draw_rows_cases() -> None:
    from perturbscore.data._sampling import draw_rows_at_once

    sizes = np.array([3, 10, 30, 500, 8])  # short, all, dense (k > half), sparse, short
    index = [np.arange(s) + 1000 * i for i, s in enumerate(sizes)]
    flat, starts = np.concatenate(index), np.r_[0, np.cumsum(sizes)[:-1]]
    k = np.array([5, 10, 20, 40, 12])
    for replace in (True, False):
        rows, used = draw_rows_at_once(flat, starts, sizes, k, np.random.default_rng(0), replace_small=replace)
        _, used_loop = draw_rows(index, k, np.random.default_rng(0), replace_small=replace)
        np.testing.assert_array_equal(used, used_loop)
        seg = np.repeat(np.arange(len(k)), used)
        for p, ix in enumerate(index):
            got = rows[seg == p]
            assert np.isin(got, ix).all()
            if sizes[p] >= k[p]:
                assert len(np.unique(got)) == k[p]  # without replacement
        np.testing.assert_array_equal(np.sort(rows[seg == 1]), index[1])  # k == size: every cell


def test_draw_rows_at_once_is_uniform_over_subsets() -> None:
    from perturbscore.data._sampling import draw_rows_at_once

    rng = np.random.default_rng(1)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(6000):  # 2 of 6 cells (sparse: redrawn repeats): 15 subsets, ~400 each
        rows, _ = draw_rows_at_once(np.arange(6), np.array([0]), np.array([6]), np.array([2]), rng)
        key = tuple(sorted(rows.tolist()))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 15
    assert max(counts.values()) < 1.25 * 400
    assert min(counts.values()) > 0.75 * 400


def test_sampler_draws_without_windows_at_once() -> None:
    """The sampler gives each perturbation k distinct cells of its own (the at-once path), and leaves scratch clean."""
    rng = np.random.default_rng(0)
    index = [np.arange(i * 100, i * 100 + 60 + 10 * i) for i in range(5)]
    sampler = EpisodeSampler(
        lambda rows: torch.from_numpy(np.asarray(rows, dtype=np.float32)[:, None]),
        cell_index=index, state_codes=np.zeros(1000, dtype=np.int64), proportions=np.full((5, 2), 0.5),
        perturbation_ids=np.arange(5), target_pool=np.full((5, 2), 0.5), schedule=KSchedule(8, 8),
        reference_k=40,
    )  # fmt: skip
    ep = sampler.sample(0, rng)
    rows = ep.inputs[:, 0].numpy().astype(np.int64)
    for p, ix in enumerate(index):
        got = rows[ep.segments.numpy() == p]
        assert len(np.unique(got)) == len(got) == 8
        assert np.isin(got, ix).all()
    assert (sampler._owner == -1).all()
