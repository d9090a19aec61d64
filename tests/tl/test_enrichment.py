from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from perturbscore._errors import InputError
from perturbscore.io import read_gmt, write_gmt
from perturbscore.tl._enrichment import _es, bh_adjust, hypergeometric_enrichment, preranked_enrichment

GENES = [f"g{i}" for i in range(100)]


# --- GMT ---------------------------------------------------------------------------------------


def test_gmt_roundtrip(tmp_path):
    sets = {"A": ["g1", "g2", "g3"], "B set": ["g4"]}
    path = write_gmt(sets, tmp_path / "sets.gmt")
    assert path.read_text().splitlines()[0] == "A\tna\tg1\tg2\tg3"
    assert read_gmt(path) == sets


def test_read_gmt_skips_blank_lines_and_dedups(tmp_path):
    p = tmp_path / "s.gmt"
    p.write_text("A\tdesc\tg1\tg1\tg2\t\n\n\nB\t\tg3\r\n")
    assert read_gmt(p) == {"A": ["g1", "g2"], "B": ["g3"]}


def test_read_gmt_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.gmt"
    p.write_text("A\tna\tg1\nB g2 g3\n")
    with pytest.raises(InputError, match=r"bad\.gmt' line 2 is not GMT"):
        read_gmt(p)


def test_read_gmt_empty_set(tmp_path):
    p = tmp_path / "empty.gmt"
    p.write_text("A\tna\t \t\n")
    with pytest.raises(InputError, match=r"line 1: gene set 'A' has no genes"):
        read_gmt(p)


def test_read_gmt_duplicate_name_missing_and_empty_file(tmp_path):
    p = tmp_path / "dup.gmt"
    p.write_text("A\tna\tg1\nA\tna\tg2\n")
    with pytest.raises(InputError, match="appears twice"):
        read_gmt(p)
    with pytest.raises(InputError, match="does not exist"):
        read_gmt(tmp_path / "nope.gmt")
    (tmp_path / "blank.gmt").write_text("\n\n")
    with pytest.raises(InputError, match="contains no gene sets"):
        read_gmt(tmp_path / "blank.gmt")


def test_write_gmt_rejects_tabs_and_empty(tmp_path):
    with pytest.raises(InputError, match="tab or newline"):
        write_gmt({"A": ["g\t1"]}, tmp_path / "x.gmt")
    with pytest.raises(InputError, match="is empty"):
        write_gmt({"A": []}, tmp_path / "x.gmt")


# --- BH ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bh_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 1e-3, size=10), [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(bh_adjust(p), stats.false_discovery_control(p, method="bh"), rtol=1e-12)


def test_bh_keeps_nan_and_checks_range():
    q = bh_adjust([0.01, np.nan, 0.04])
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], stats.false_discovery_control([0.01, 0.04]))
    assert bh_adjust([]).shape == (0,)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        bh_adjust([0.5, 1.5])


# --- hypergeometric ----------------------------------------------------------------------------


def test_hypergeometric_against_scipy():
    sets = {"inside": GENES[:5], "half": GENES[3:13], "outside": GENES[50:60], "tiny": GENES[:2]}
    df = hypergeometric_enrichment(GENES[:10], GENES, sets, min_size=3).set_index("set")
    assert "tiny" not in df.index  # below min_size
    assert df.loc["inside", "overlap"] == 5
    assert df.loc["inside", "p"] == pytest.approx(stats.hypergeom.sf(4, 100, 5, 10))
    assert df.loc["inside", "p"] < 1e-4
    assert df.loc["half", "overlap"] == 7
    assert df.loc["half", "p"] == pytest.approx(stats.hypergeom.sf(6, 100, 10, 10))
    assert df.loc["outside", "p"] == pytest.approx(1.0)
    assert df.loc["half", "expected"] == pytest.approx(1.0)
    # half: a=7, b=3, c=3, d=87 (no zero cell, no correction)
    assert df.loc["half", "odds_ratio"] == pytest.approx(7 * 87 / (3 * 3))
    assert df.loc["half", "genes"] == ";".join(GENES[3:10])
    np.testing.assert_allclose(df["q"], stats.false_discovery_control(df["p"].to_numpy()))
    assert list(df["p"]) == sorted(df["p"])


def test_hypergeometric_restricts_sets_and_selection_to_universe():
    universe = GENES[:20]
    sets = {"A": [*GENES[:4], "notagene", "alsonot"]}
    df = hypergeometric_enrichment([*GENES[:4], "stranger"], universe, sets)
    row = df.iloc[0]
    assert (row["size"], row["overlap"]) == (4, 4)
    assert row["p"] == pytest.approx(stats.hypergeom.sf(3, 20, 4, 4))
    with pytest.raises(InputError, match="universe is empty"):
        hypergeometric_enrichment(["a"], [], sets)
    with pytest.raises(InputError, match="no gene sets"):
        hypergeometric_enrichment(["a"], ["a"], {})


def test_hypergeometric_empty_result_has_columns():
    df = hypergeometric_enrichment(GENES[:5], GENES, {"x": ["nope1", "nope2", "nope3"]})
    assert df.empty
    assert {"set", "p", "q", "odds_ratio"} <= set(df.columns)


# --- preranked ---------------------------------------------------------------------------------


def _brute_es(ranked: np.ndarray, mask: np.ndarray) -> float:
    w = np.abs(ranked)
    run = np.concatenate([[0.0], np.cumsum(np.where(mask, w / w[mask].sum(), -1.0 / (mask.size - mask.sum())))])
    return float(run[np.argmax(np.abs(run))])


def test_es_matches_brute_force_running_sum():
    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(10, 60))
        k = int(rng.integers(1, n))
        ranked = np.sort(rng.normal(size=n))[::-1]
        pos = np.sort(rng.choice(n, k, replace=False))
        mask = np.zeros(n, dtype=bool)
        mask[pos] = True
        got = _es(pos[None, :], np.abs(ranked[pos])[None, :], n)[0]
        assert abs(got) == pytest.approx(abs(_brute_es(ranked, mask)))


def _scores(n: int = 2000, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(rng.normal(size=n), index=[f"g{i}" for i in range(n)])


def test_preranked_planted_top_and_bottom_sets_vs_random():
    scores = _scores()
    order = scores.sort_values(ascending=False).index
    rng = np.random.default_rng(1)
    sets = {
        "top": list(order[:30]),
        "bottom": list(order[-30:]),
        "random": list(rng.choice(scores.index, 30, replace=False)),
    }
    df = preranked_enrichment(scores, sets, n_permutations=500, rng=0).set_index("set")
    assert df.loc["top", "nes"] > 1.5
    assert df.loc["top", "es"] > 0.9
    assert df.loc["top", "q"] < 0.01
    assert df.loc["top", "mw_p"] < 1e-10
    assert df.loc["top", "mw_auc"] > 0.95
    assert df.loc["bottom", "nes"] < -1.5
    assert df.loc["bottom", "q"] < 0.01
    assert df.loc["bottom", "mw_auc"] < 0.05
    assert df.loc["random", "p"] > 0.05
    assert abs(df.loc["random", "nes"]) < 1.5
    assert set(df.loc["top", "leading_edge"].split(";")) <= set(sets["top"])
    assert df.loc["top", "leading_edge"].split(";")[0] == order[0]
    assert df.loc["bottom", "leading_edge"].split(";")[0] == order[-1]
    np.testing.assert_allclose(df["q"], stats.false_discovery_control(df["p"].to_numpy()))


def test_preranked_mann_whitney_matches_scipy_and_is_reproducible():
    scores = _scores(300, seed=5)
    sets = {"s": list(scores.index[:40])}
    a = preranked_enrichment(scores, sets, n_permutations=200, rng=7)
    b = preranked_enrichment(scores, sets, n_permutations=200, rng=7)
    pd.testing.assert_frame_equal(a, b)
    inside = scores.index.isin(sets["s"])
    ref = stats.mannwhitneyu(scores[inside], scores[~inside])
    assert a.loc[0, "mw_p"] == pytest.approx(ref.pvalue)
    assert a.loc[0, "mw_auc"] == pytest.approx(ref.statistic / (40 * 260))


def test_preranked_null_is_calibrated():
    # random sets: permutation p-values should be roughly uniform
    scores = _scores(1000, seed=2)
    rng = np.random.default_rng(4)
    sets = {f"r{i}": list(rng.choice(scores.index, 25, replace=False)) for i in range(60)}
    df = preranked_enrichment(scores, sets, n_permutations=300, rng=1)
    assert 0.35 < df["p"].mean() < 0.65
    assert (df["p"] < 0.05).mean() < 0.15


def test_preranked_validation():
    with pytest.raises(InputError, match="pandas Series"):
        preranked_enrichment(np.zeros(5), {"a": ["x"]})
    dup = pd.Series([1.0, 2.0, 3.0], index=["a", "a", "b"])
    with pytest.raises(InputError, match=r"duplicated gene names \['a'\]"):
        preranked_enrichment(dup, {"s": ["a", "b"]})
    nan = pd.Series([1.0, np.nan, 3.0], index=["a", "b", "c"])
    with pytest.raises(InputError, match=r"non-numeric values for genes \['b'\]"):
        preranked_enrichment(nan, {"s": ["a", "b"]})
    with pytest.raises(InputError, match="n_permutations"):
        preranked_enrichment(_scores(10), {"s": ["g1", "g2", "g3"]}, n_permutations=0)
    with pytest.raises(InputError, match="at least two genes"):
        preranked_enrichment(pd.Series([1.0], index=["a"]), {"s": ["a"]})
    empty = preranked_enrichment(_scores(10), {"s": ["x", "y", "z"]})
    assert empty.empty
    assert "nes" in empty.columns


def test_preranked_speed_15000_genes():
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(15000)]
    sets = {f"s{j}": list(rng.choice(genes, int(rng.integers(15, 200)), replace=False)) for j in range(20)}
    start = time.perf_counter()
    for program in range(4):
        preranked_enrichment(pd.Series(rng.normal(size=15000), index=genes), sets, n_permutations=1000, rng=program)
    # ~0.3 s per program here (10 programs in ~3 s); the bound is generous for slow CI
    assert time.perf_counter() - start < 8.0
