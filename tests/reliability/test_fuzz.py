"""Property-based fuzzing of the input parsers, the screen validators and the episodic sampler.

Each property: either a valid result (shapes, proportions summing to 1, k within bounds) or the documented
error type (InputError for user input, ValueError for programmer arguments), never another exception.
"""

from __future__ import annotations

import logging
import math
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from perturbscore._constants import CHALLENGE_STATES
from perturbscore._errors import InputError
from perturbscore.data import EpisodeSampler, KSchedule, Screen, draw_rows
from perturbscore.io import parse_constraint, parse_target, read_screen, resolve_targets

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STATES = list(CHALLENGE_STATES)

logging.getLogger("perturbscore").setLevel(logging.ERROR)  # renormalisation/drop warnings are expected here

# -- targets and constraints -----------------------------------------------------------------
state_names = st.sampled_from([*STATES, "terminal_exhausted", "Terminal-Exhausted", "PROGENITOR", "naive", "", " "])
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=0, max_value=1e308),
    st.integers(-5, 5),
)
values = st.one_of(numbers.map(repr), st.text(alphabet="0123456789.-+eE naif,=;:", max_size=8))


def assert_mix(q: np.ndarray, n: int) -> None:
    assert q.shape == (n,)
    assert q.dtype.kind == "f"
    assert np.isfinite(q).all()
    assert (q >= 0).all()
    assert q.sum() == pytest.approx(1.0, abs=1e-9)


@FUZZ
@given(pairs=st.lists(st.tuples(state_names, values), max_size=6), sep=st.sampled_from([",", ";", ", "]))
@example(pairs=[("progenitor", "1e308"), ("effector", "1e308")], sep=",")  # the sum overflows to inf
@example(pairs=[("progenitor", "5e-324")], sep=",")  # the smallest positive float
def test_parse_target_pairs(pairs: list[tuple[str, str]], sep: str) -> None:
    text = sep.join(f"{name}={value}" for name, value in pairs)
    try:
        q = parse_target(text, STATES)
    except InputError:
        return
    assert_mix(q, len(STATES))


@FUZZ
@given(text=st.text(max_size=40))
def test_parse_target_any_text(text: str) -> None:
    try:
        q = parse_target(text, STATES)
    except InputError:
        return
    assert_mix(q, len(STATES))


@FUZZ
@given(
    specs=st.lists(
        st.one_of(
            st.sampled_from(["progenitor", "control", "challenge-objective", "stemness", "", ":"]),
            st.tuples(st.text(alphabet="abc:_ ", max_size=4), state_names, values).map(
                lambda t: f"{t[0]}:{t[1]}={t[2]}"
            ),
            st.tuples(state_names, values).map(lambda t: f"{t[0]}={t[1]}"),
        ),
        max_size=4,
    )
)
def test_resolve_targets(specs: list[str]) -> None:
    try:
        out = resolve_targets(specs, STATES)
    except InputError:
        return
    assert len(out) == len(specs)
    for q in out.values():
        assert_mix(q, len(STATES))


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=30),
        st.tuples(state_names, st.sampled_from([">=", "<=", ">", "<", "=", "=>", ""]), values).map("".join),
    )
)
def test_parse_constraint(text: str) -> None:
    try:
        c = parse_constraint(text, STATES)
    except InputError:
        return
    assert c.state in STATES
    assert STATES[c.index] == c.state
    assert 0.0 <= c.value <= 1.0
    assert c.op in (">=", "<=", ">", "<")
    mask = c.holds(np.full((3, len(STATES)), 1 / len(STATES)))
    assert mask.shape == (3,)
    assert mask.dtype == bool


# -- read_screen on random AnnData -----------------------------------------------------------
label_pool = st.sampled_from(["Tox2", "Zeb2", "Dvl2", "Unperturbed", "NT", "", "  ", None, np.nan, "42"])
state_pool = st.sampled_from([*STATES, "", None, np.nan])


@st.composite
def random_screens(draw: st.DrawFn) -> tuple[ad.AnnData, dict]:
    n = draw(st.integers(1, 40))
    g = draw(st.integers(1, 6))
    labels = draw(st.lists(label_pool, min_size=n, max_size=n))
    states = draw(st.lists(state_pool, min_size=n, max_size=n))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    counts = rng.poisson(draw(st.floats(0.0, 5.0)), size=(n, g)).astype(np.float32)  # (n, g)
    poison = draw(st.sampled_from(["none", "nan", "inf", "negative", "fraction"]))
    if poison != "none":
        i, j = rng.integers(n), rng.integers(g)
        counts[i, j] = {"nan": np.nan, "inf": np.inf, "negative": -2.0, "fraction": 0.5}[poison]
    obs = pd.DataFrame({"condition": pd.Series(labels, dtype=object), "state": pd.Series(states, dtype=object)})
    if draw(st.booleans()):
        obs["state"] = pd.Categorical(obs["state"], categories=[*STATES, "unused"])
    obs.index = [f"c{i}" for i in range(n)]
    x = np.log1p(counts) if poison != "negative" else counts
    matrix = sp.csr_matrix(x) if draw(st.booleans()) else x
    adata = ad.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(g)]), layers={"raw": counts})
    kw = {
        "control": draw(st.sampled_from(["Unperturbed", "NT", None])),
        "layer": draw(st.sampled_from([None, "raw", "missing"])),
        "min_cells": draw(st.integers(1, 6)),
        "small": draw(st.sampled_from(["drop", "error", "keep", "maybe"])),
    }
    return adata, kw


def assert_screen(screen: Screen, adata: ad.AnnData, kw: dict) -> None:
    assert screen.n_cells == adata.n_obs
    assert screen.n_genes == adata.n_vars
    assert len(screen.states) >= 2
    assert len(screen.knockouts) >= 2
    codes = np.asarray(screen.state_codes)
    assert codes.shape == (adata.n_obs,)
    assert codes.min() >= 0
    assert codes.max() < len(screen.states)
    props = np.asarray(screen.proportions)
    assert props.shape == (len(screen.perturbations), len(screen.states))
    np.testing.assert_allclose(props.sum(1), 1.0, atol=1e-9)
    for p, ix in zip(screen.perturbations, screen.cell_index, strict=True):
        assert len(ix) > 0
        assert (adata.obs["condition"].astype(str).to_numpy()[ix] == p).all()
        if p != screen.control and kw["small"] != "keep":
            assert len(ix) >= kw["min_cells"]
    rows = screen.rows.take(np.arange(min(3, adata.n_obs)))
    dense = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
    assert np.isfinite(dense).all()
    assert (dense >= 0).all()


@FUZZ
@given(case=random_screens())
def test_read_screen_random_anndata(case: tuple[ad.AnnData, dict]) -> None:
    adata, kw = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            screen = read_screen(adata, **kw)
        except InputError:
            return
    assert_screen(screen, adata, kw)


# -- the sampler ---------------------------------------------------------------------------
@FUZZ
@given(
    k_min=st.integers(-2, 12),
    k_max=st.integers(-2, 40),
    start_max=st.one_of(st.none(), st.integers(-2, 80)),
    shrink=st.integers(-5, 500),
    dist=st.sampled_from(["uniform", "loguniform"]),
    step=st.integers(0, 10_000),
    seed=st.integers(0, 2**16),
)
def test_kschedule(k_min: int, k_max: int, start_max: int | None, shrink: int, dist: str, step: int, seed: int) -> None:
    try:
        sched = KSchedule(k_min, k_max, start_max=start_max, shrink_steps=shrink, distribution=dist)
    except ValueError:
        assert not (1 <= k_min <= k_max) or (start_max is not None and start_max < k_min)
        return
    hi = sched.upper(step)
    assert k_min <= hi <= max(k_max, start_max or k_max)
    if start_max is None or shrink <= 0 or step >= shrink:
        assert hi == k_max
    k = sched.draw(50, step, np.random.default_rng(seed))
    assert k.shape == (50,)
    assert k.dtype.kind == "i"
    assert (k >= k_min).all()
    assert (k <= hi).all()


cell_counts = st.lists(st.integers(0, 12), min_size=1, max_size=6)


@FUZZ
@given(
    counts=cell_counts,
    ks=st.lists(st.integers(-1, 15), min_size=6, max_size=6),
    replace=st.booleans(),
    seed=st.integers(0, 99),
)
def test_draw_rows(counts: list[int], ks: list[int], replace: bool, seed: int) -> None:
    starts = np.cumsum([0, *counts])
    cell_index = [np.arange(starts[i], starts[i + 1]) for i in range(len(counts))]
    k = np.asarray(ks[: len(counts)], dtype=np.int64)
    try:
        rows, used = draw_rows(cell_index, k, np.random.default_rng(seed), replace_small=replace)
    except ValueError:
        assert (k < 0).any() or any(n == 0 and kp > 0 and replace for n, kp in zip(counts, k, strict=True))
        return
    assert used.shape == k.shape
    assert rows.shape == (used.sum(),)
    offsets = np.cumsum([0, *used])
    for p, (n, kp) in enumerate(zip(counts, k, strict=True)):
        assert used[p] == (kp if (n >= kp or replace) else n)
        picked = rows[offsets[p] : offsets[p + 1]]
        assert np.isin(picked, cell_index[p]).all()
        if n >= kp:
            assert len(np.unique(picked)) == len(picked)  # without replacement when there are enough cells


@st.composite
def sampler_cases(draw: st.DrawFn) -> dict:
    P = draw(st.integers(1, 5))
    C = draw(st.integers(2, 5))
    counts = draw(st.lists(st.integers(0, 10), min_size=P, max_size=P))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    raw = rng.dirichlet(np.ones(C), size=P)  # (P, C)
    return {
        "counts": counts,
        "proportions": raw,
        "pool": rng.dirichlet(np.ones(C), size=draw(st.integers(1, 4))),
        "k_min": draw(st.integers(1, 4)),
        "k_extra": draw(st.integers(0, 8)),
        "T": draw(st.integers(1, 4)),
        "alpha": draw(st.sampled_from([0.0, 0.05, 1.0])),
        "replace": draw(st.booleans()),
        "features": draw(st.booleans()),
        "step": draw(st.integers(0, 1000)),
        "k_override": draw(st.one_of(st.none(), st.integers(1, 12))),
        "seed": seed,
        "C": C,
    }


@FUZZ
@given(case=sampler_cases())
def test_episode_sampler(case: dict) -> None:
    counts, C = case["counts"], case["C"]
    P = len(counts)
    starts = np.cumsum([0, *counts])
    n_cells = int(starts[-1])
    cell_index = [np.arange(starts[i], starts[i + 1]) for i in range(P)]
    cache = np.arange(max(n_cells, 1) * 3, dtype=np.float32).reshape(-1, 3)  # (cells, 3) fake front end

    def take(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(cache[rows])

    feats = np.ones((P, 2, 3), np.float32) if case["features"] else None
    has = np.ones(P, bool) if case["features"] else None
    sched = KSchedule(case["k_min"], case["k_min"] + case["k_extra"])

    def build() -> EpisodeSampler:
        return EpisodeSampler(
            take, cell_index=cell_index, state_codes=np.arange(n_cells) % C, proportions=case["proportions"],
            perturbation_ids=np.arange(P), target_pool=case["pool"], schedule=sched,
            targets_per_perturbation=case["T"], target_noise=case["alpha"], replace_small=case["replace"],
            features=feats, has_features=has,
        )  # fmt: skip

    if any(c == 0 for c in counts):  # a perturbation without cells is refused up front
        with pytest.raises(ValueError, match="at least one cell"):
            build()
        return
    sampler = build()
    ep = sampler.sample(case["step"], np.random.default_rng(case["seed"]), k=case["k_override"])
    T = case["T"]
    assert ep.targets.shape == (P, T, C)
    assert ep.distances.shape == (P, T)
    assert ep.proportions.shape == (P, C)
    assert torch.allclose(ep.targets.sum(-1), torch.ones(P, T), atol=1e-5)
    assert (ep.targets >= 0).all()
    assert torch.isfinite(ep.targets).all()
    assert ((ep.distances >= -1e-6) & (ep.distances <= 1 + 1e-6)).all()
    k = ep.k.numpy()
    lo, hi = (case["k_override"],) * 2 if case["k_override"] else (sched.k_min, sched.upper(case["step"]))
    for p, n in enumerate(counts):
        assert k[p] <= hi
        assert k[p] >= lo or (not case["replace"] and k[p] == n)
    N = int(k.sum())
    assert ep.inputs.shape == (N, 3)
    assert ep.segments.shape == (N,)
    assert ep.cell_states.shape == (N,)
    assert (torch.bincount(ep.segments, minlength=P).numpy() == k).all()
    cell_of_row = (ep.inputs[:, 0] / 3).long().numpy()
    for p in range(P):
        assert np.isin(cell_of_row[ep.segments.numpy() == p], cell_index[p]).all()
    assert math.isclose(float(ep.proportions.sum()), P, rel_tol=1e-5)


# -- damaged files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Bytes of a valid small .h5ad and a valid features .npz."""
    root = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    n, g = 60, 8
    counts = rng.poisson(2.0, size=(n, g)).astype(np.float32)  # (n, g)
    obs = pd.DataFrame(
        {"condition": rng.choice(["Tox2", "Zeb2", "Dvl2", "Unperturbed"], n), "state": rng.choice(STATES, n)},
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=sp.csr_matrix(np.log1p(counts)), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(g)]))
    adata.write_h5ad(root / "s.h5ad")
    np.savez(root / "f.npz", **{k: rng.normal(size=(4, 3)) for k in ("Tox2", "Zeb2", "Dvl2")})
    return {".h5ad": (root / "s.h5ad").read_bytes(), ".npz": (root / "f.npz").read_bytes()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    suffix=st.sampled_from([".h5ad", ".npz"]),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=12),
    backed=st.booleans(),
)
def test_damaged_files(
    good_files: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
    suffix: str,
    cut: float | None,
    flips: list[tuple[float, int]],
    backed: bool,
) -> None:
    """A truncated or bit-flipped screen/feature file reads (if the damage missed) or raises InputError."""
    from perturbscore.io import read_features

    blob = bytearray(good_files[suffix])
    for where, byte in flips:
        blob[int(where * len(blob))] = byte
    if cut is not None:
        blob = blob[: int(cut * len(blob))]
    path = tmp_path_factory.mktemp("damaged") / f"x{suffix}"
    path.write_bytes(bytes(blob))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if suffix == ".npz":
                feats = read_features(path)
                assert feats.values.ndim == 3
                assert np.isfinite(feats.values).all()
            else:
                screen = read_screen(path, backed=backed)
                assert len(screen.knockouts) >= 2
                assert screen.n_genes == 8
        except InputError:
            return
