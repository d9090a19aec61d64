from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from perturbscore._errors import InputError
from perturbscore.tl._programs import (
    PROGRAM_ENRICHMENT_COLUMNS,
    activity_by_group,
    program_enrichment,
    program_state_relation,
    top_genes,
)


def _loadings(n_genes: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        rng.normal(size=(n_genes, 3)), index=[f"g{i}" for i in range(n_genes)], columns=["p0", "p1", "p2"]
    )


def test_top_genes_both_signs_and_order():
    load = pd.DataFrame({"A": [3.0, -1.0, 0.5, -4.0, 2.0, 0.0]}, index=list("abcdef"))
    df = top_genes(load, n=2)
    assert list(df.columns) == ["program", "sign", "rank", "gene", "loading"]
    pos = df[df["sign"] == "+"]
    neg = df[df["sign"] == "-"]
    assert list(pos["gene"]) == ["a", "e"]
    assert list(pos["rank"]) == [1, 2]
    assert list(neg["gene"]) == ["d", "b"]
    assert list(neg["loading"]) == [-4.0, -1.0]
    # n larger than the genes of one sign: only genes of that sign are listed (f has loading 0: neither)
    big = top_genes(load, n=10)
    assert sorted(big.loc[big["sign"] == "+", "gene"]) == ["a", "c", "e"]
    assert sorted(big.loc[big["sign"] == "-", "gene"]) == ["b", "d"]


def test_top_genes_many_programs_sorted():
    df = top_genes(_loadings(), n=20)
    assert df.groupby(["program", "sign"]).size().eq(20).all()
    for (_, sign), sub in df.groupby(["program", "sign"]):
        vals = sub.sort_values("rank")["loading"].to_numpy()
        assert (np.diff(vals) <= 0).all() if sign == "+" else (np.diff(vals) >= 0).all()
        assert (vals > 0).all() if sign == "+" else (vals < 0).all()


def test_top_genes_validation():
    with pytest.raises(InputError, match="n must be >= 1"):
        top_genes(_loadings(), n=0)
    with pytest.raises(InputError, match="DataFrame of genes"):
        top_genes(np.zeros((3, 2)))
    dup = pd.DataFrame({"A": [1.0, 2.0]}, index=["x", "x"])
    with pytest.raises(InputError, match=r"duplicated gene names \['x'\]"):
        top_genes(dup)
    nan = pd.DataFrame({"A": [1.0, np.nan]}, index=["x", "y"])
    with pytest.raises(InputError, match=r"non-numeric values in program\(s\) \['A'\]"):
        top_genes(nan)
    with pytest.raises(InputError, match="empty"):
        top_genes(pd.DataFrame())


def test_program_enrichment_finds_planted_sets():
    load = _loadings()
    order0 = load["p0"].sort_values(ascending=False).index
    order1 = load["p1"].sort_values().index  # most negative first
    rng = np.random.default_rng(2)
    sets = {
        "up_in_p0": list(order0[:15]),
        "down_in_p1": list(order1[:15]),
        "random": list(rng.choice(load.index, 15, replace=False)),
    }
    df = program_enrichment(load, sets, n_top=30, n_permutations=300, rng=0)
    assert list(df.columns) == PROGRAM_ENRICHMENT_COLUMNS
    assert set(df["method"]) == {"hypergeometric", "preranked"}
    hg = df[(df["method"] == "hypergeometric") & (df["set"] == "up_in_p0")].set_index(["program", "direction"])
    assert hg.loc[("p0", "+"), "overlap"] == 15
    assert hg.loc[("p0", "+"), "q"] < 1e-6
    assert hg.loc[("p0", "-"), "overlap"] == 0
    pr = df[df["method"] == "preranked"].set_index(["program", "set"])
    assert pr.loc[("p0", "up_in_p0"), "direction"] == "+"
    assert pr.loc[("p0", "up_in_p0"), "effect"] > 1.5
    assert pr.loc[("p1", "down_in_p1"), "direction"] == "-"
    assert pr.loc[("p1", "down_in_p1"), "effect"] < -1.5
    assert pr.loc[("p1", "down_in_p1"), "q"] < 0.05
    assert pr.loc[("p2", "random"), "p"] > 0.05
    assert df.loc[df["method"] == "preranked", "overlap"].isna().all()
    assert df.loc[df["method"] == "hypergeometric", "es"].isna().all()


def test_program_enrichment_empty_and_validation():
    df = program_enrichment(_loadings(50), {"x": ["nope1", "nope2", "nope3"]}, n_permutations=10, rng=0)
    assert df.empty
    assert list(df.columns) == PROGRAM_ENRICHMENT_COLUMNS
    with pytest.raises(InputError, match="n_top must be >= 1"):
        program_enrichment(_loadings(50), {"x": ["g1"]}, n_top=0)


def test_activity_by_group_means_and_order():
    act = np.array([[1.0, 0.0], [3.0, 2.0], [10.0, -1.0], [0.0, 0.0]])  # (cells, m)
    groups = pd.Categorical(["b", "b", "a", "c"], categories=["c", "b", "a", "unused"])
    df = activity_by_group(act, groups, programs=["x", "y"])
    assert list(df.index) == ["c", "b", "a"]  # categorical order, empty category dropped
    assert df.loc["b", "x"] == 2.0
    assert df.loc["b", "y"] == 1.0
    assert df.loc["a", "y"] == -1.0
    plain = activity_by_group(act, ["b", "b", "a", "c"])
    assert list(plain.index) == ["a", "b", "c"]
    assert list(plain.columns) == ["program_0", "program_1"]


def test_activity_by_group_validation():
    act = np.zeros((3, 2))
    with pytest.raises(InputError, match="groups has 2 labels but activity has 3 cells"):
        activity_by_group(act, ["a", "b"])
    with pytest.raises(InputError, match="missing label"):
        activity_by_group(act, ["a", None, "b"])
    with pytest.raises(InputError, match="2-D array"):
        activity_by_group(np.zeros(3), ["a", "b", "c"])
    with pytest.raises(InputError, match="NaN or infinite"):
        activity_by_group(np.full((3, 2), np.nan), ["a", "b", "c"])
    with pytest.raises(InputError, match="3 program names for 2 columns"):
        activity_by_group(act, ["a", "b", "c"], programs=["x", "y", "z"])


def test_program_state_relation_planted_monotone():
    rng = np.random.default_rng(0)
    n_pert = 20
    props = rng.dirichlet(np.ones(3), size=n_pert)  # (P, C)
    stat = np.column_stack([np.exp(3 * props[:, 0]), -(props[:, 1] ** 3), rng.normal(size=n_pert)])  # (P, m2)
    df = program_state_relation(stat, props, ["prog", "eff", "cyc"], programs=["m0", "m1", "m2"])
    assert df.shape == (3, 3)
    assert list(df.columns) == ["prog", "eff", "cyc"]
    assert df.loc["m0", "prog"] == pytest.approx(1.0)
    assert df.loc["m1", "eff"] == pytest.approx(-1.0)
    for i, prog in enumerate(df.index):
        for j, state in enumerate(df.columns):
            assert df.loc[prog, state] == pytest.approx(stats.spearmanr(stat[:, i], props[:, j]).statistic)


def test_program_state_relation_constant_and_validation():
    props = np.random.default_rng(1).dirichlet(np.ones(2), size=5)
    stat = np.column_stack([np.ones(5), np.arange(5.0)])
    df = program_state_relation(stat, props, ["a", "b"])
    assert df.iloc[0].isna().all()
    assert df.iloc[1].notna().all()
    with pytest.raises(InputError, match="stat has 5 perturbations but proportions has 4"):
        program_state_relation(stat, props[:4], ["a", "b"])
    with pytest.raises(InputError, match="1 state names for 2 proportion columns"):
        program_state_relation(stat, props, ["a"])
    with pytest.raises(InputError, match="at least 3 perturbations"):
        program_state_relation(stat[:2], props[:2], ["a", "b"])
