"""The synthetic screen simulator: layout, determinism, ground truth, features, sequences, files, CLI."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict, cross_val_score
from sklearn.neighbors import NearestCentroid
from typer.testing import CliRunner

import perturbscore.cli._simulate  # noqa: F401  registers the command
from perturbscore._constants import CHALLENGE_CONTROL_MIX, CHALLENGE_STATES, KEYS
from perturbscore._errors import InputError, RunError
from perturbscore.cli._app import app
from perturbscore.datasets import PLANTED_KNOCKOUT, simulate_screen
from perturbscore.datasets._counts import negative_binomial
from perturbscore.datasets._reference import draw_counts
from perturbscore.datasets._sequences import CENTRAL_BP, count_motif, motif_counts

STATES = list(CHALLENGE_STATES)


@pytest.fixture(scope="module")
def gene_screen():
    """Many genes with truth (30 knockouts + 90 unseen) and sequences, few cells."""
    return simulate_screen(
        n_genes=200, n_knockouts=30, n_cells=900, n_unseen_genes=90, feature_dim=32, sequences=True, seed=3
    )


def test_layout_matches_challenge_file(small_screen):
    adata = small_screen.adata
    assert list(adata.obs.columns) == [KEYS.guide, KEYS.state, KEYS.perturbation, "lane"]
    assert list(adata.obs[KEYS.state].cat.categories) == STATES
    assert set(adata.obs["lane"].unique()) <= {"lane1", "lane2", "lane3", "lane4"}
    assert adata.shape == (1_500, 200)
    assert sp.isspmatrix_csr(adata.X)
    assert adata.X.dtype == np.float32
    raw = adata.layers[KEYS.raw_layer]
    assert sp.isspmatrix_csr(raw)
    assert np.array_equal(raw.data, np.round(raw.data))
    knockouts = small_screen.truth.index[small_screen.truth["kind"] == "knockout"]
    assert set(knockouts) <= set(adata.var_names)
    assert adata.var_names.is_unique
    ctrl = adata.obs[KEYS.perturbation] == KEYS.control
    assert ctrl.sum() == 300
    guides = adata.obs[KEYS.guide].astype(str)
    assert guides[ctrl].str.contains("SITE").all()
    assert all(
        g.rsplit("-", 1)[0] == c for g, c in zip(guides[~ctrl], adata.obs[KEYS.perturbation][~ctrl], strict=True)
    )
    assert small_screen.features.values.shape == (12, 200, 16)
    assert list(small_screen.features.genes) == list(small_screen.truth.index[:-1])


def test_same_seed_same_screen_other_seed_differs(small_screen):
    from perturbscore.datasets import synthetic_perturb_seq

    again, other = synthetic_perturb_seq(seed=0), synthetic_perturb_seq(seed=1)
    assert (again.adata.X != small_screen.adata.X).nnz == 0
    pd.testing.assert_frame_equal(again.adata.obs, small_screen.adata.obs)
    np.testing.assert_array_equal(again.features.values, small_screen.features.values)
    assert again.sequences == small_screen.sequences
    assert other.adata.X.shape != small_screen.adata.X.shape or (other.adata.X != small_screen.adata.X).nnz > 0
    assert not np.allclose(other.features.values, small_screen.features.values)


def test_x_is_log1p_cp10k_of_rawcounts(medium_screen):
    raw = medium_screen.adata.layers[KEYS.raw_layer]
    expected = np.log1p(raw.toarray() / raw.toarray().sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(medium_screen.adata.X.toarray(), expected, rtol=1e-5, atol=1e-5)


def test_empirical_proportions_close_to_truth(medium_screen):
    obs, truth = medium_screen.adata.obs, medium_screen.truth
    emp = pd.crosstab(obs[KEYS.perturbation], obs[KEYS.state], normalize="index")[STATES]
    big = truth.index[truth["n_cells"] >= 200]
    assert len(big) >= 5
    for gene in big:
        se = np.sqrt(
            truth.loc[gene, STATES].to_numpy(float)
            * (1 - truth.loc[gene, STATES].to_numpy(float))
            / truth.loc[gene, "n_cells"]
        )
        assert np.all(np.abs(emp.loc[gene].to_numpy() - truth.loc[gene, STATES].to_numpy(float)) < 5 * se + 1e-3)
    np.testing.assert_allclose(truth.loc[KEYS.control, STATES].to_numpy(float), CHALLENGE_CONTROL_MIX, atol=1e-9)


def test_sparsity_and_library_sizes_realistic(medium_screen):
    raw = medium_screen.adata.layers[KEYS.raw_layer]
    zeros = 1 - raw.nnz / np.prod(raw.shape)
    assert 0.6 < zeros < 0.97
    assert (np.asarray(raw.sum(axis=1)).ravel() > 0).all()


def test_knocked_out_gene_drops(medium_screen):
    adata = medium_screen.adata
    raw = adata.layers[KEYS.raw_layer]
    cond = adata.obs[KEYS.perturbation].to_numpy()
    ctrl = cond == KEYS.control
    for gene in medium_screen.truth.index[medium_screen.truth["n_cells"] >= 50]:
        if gene == KEYS.control:
            continue
        col = adata.var_names.get_loc(gene)
        ko_mean = raw[cond == gene][:, col].mean()
        assert ko_mean < 0.3 * raw[ctrl][:, col].mean(), gene


def test_state_decodable_but_not_perfect(medium_screen):
    adata = medium_screen.adata
    y = adata.obs[KEYS.state].cat.codes.to_numpy()[:3000]
    markers = [g for name, genes in medium_screen.modules.items() if name.startswith("state_") for g in genes]
    x = adata[:3000, markers].X.toarray()  # (3000, 5 modules x 12 genes)
    acc = cross_val_score(NearestCentroid(), x, y, cv=3).mean()
    assert 0.8 < acc < 0.995


def test_state_modules_mark_their_state(medium_screen):
    adata = medium_screen.adata
    for state in STATES:
        genes = medium_screen.modules[f"state_{state.replace(' ', '_')}"]
        score = np.asarray(adata[:, genes].X.mean(axis=1)).ravel()
        inside = (adata.obs[KEYS.state] == state).to_numpy()
        assert score[inside].mean() > score[~inside].mean() + 0.3, state
    assert len([m for m in medium_screen.modules if m.startswith("effect_program_")]) == 6


def test_planted_knockout_raises_progenitors(small_screen):
    obs = small_screen.adata.obs
    share = (obs.loc[obs[KEYS.perturbation] == PLANTED_KNOCKOUT, KEYS.state] == "progenitor").mean()
    assert small_screen.truth.loc[PLANTED_KNOCKOUT, "progenitor"] == pytest.approx(0.62)
    assert share > 0.5 > 5 * CHALLENGE_CONTROL_MIX[0]


def test_cells_per_knockout_wide_with_floor():
    counts = draw_counts(64, total=23_719, min_cells=20, rng=np.random.default_rng(0))
    assert counts.sum() == 23_719
    assert counts.min() >= 20
    assert counts.max() / counts.min() > 50
    assert 60 < np.median(counts) < 300
    screen = simulate_screen(n_genes=300, n_knockouts=64, n_cells=8_000, feature_dim=4, n_windows=8, seed=0)
    per_ko = screen.truth.loc[screen.truth["kind"] == "knockout", "n_cells"]
    assert per_ko.min() >= 20
    assert per_ko.max() / per_ko.min() > 20
    assert (screen.adata.obs[KEYS.perturbation].value_counts()[per_ko.index] == per_ko).all()


def test_features_informative_but_imperfect(gene_screen):
    pooled = gene_screen.features.values.mean(axis=1)  # (n, dim)
    q = gene_screen.truth.loc[list(gene_screen.features.genes), STATES].to_numpy(float)
    folds = KFold(5, shuffle=True, random_state=0)
    ridge = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 4, 13)), pooled, q, cv=folds)
    mean = np.zeros_like(q)
    for train, test in folds.split(q):
        mean[test] = q[train].mean(axis=0)
    tv = lambda p: 0.5 * np.abs(p - q).sum(axis=1).mean()  # noqa: E731
    assert tv(ridge) < 0.9 * tv(mean)
    r2 = 1 - ((ridge - q) ** 2).sum() / ((q - q.mean(axis=0)) ** 2).sum()
    assert 0.05 < r2 < 0.9


def test_sequences_carry_motif_signal(gene_screen):
    seqs = gene_screen.sequences
    truth = gene_screen.adata.uns[KEYS.truth]
    assert len(seqs) == 120
    assert {len(s) for s in seqs.values()} == {6_880}
    assert set("".join(seqs.values())) == set("ACGT")
    genes = list(gene_screen.features.genes)
    from perturbscore.datasets._sequences import MotifMap

    mmap = MotifMap(tuple(truth["motifs"]), truth["motif_loadings"])
    effects = gene_screen.truth.loc[genes, [c for c in gene_screen.truth.columns if c.startswith("effect_")]].to_numpy()
    expected = motif_counts(mmap, effects, effects[:30].mean(axis=0))
    centre = 6_880 // 2
    for m, motif in enumerate(mmap.motifs):
        seen = np.array(
            [count_motif(seqs[g], motif, start=centre - CENTRAL_BP, stop=centre + CENTRAL_BP) for g in genes]
        )
        assert np.corrcoef(np.log1p(seen), np.log(expected[:, m]))[0, 1] > 0.4, motif


def test_write_round_trip_and_refuse_overwrite(small_screen, tmp_path):
    paths = small_screen.write(tmp_path / "sim")
    assert {p.name for p in paths.values()} == {
        "screen.h5ad",
        "features.npz",
        "sequences.fa",
        "modules.gmt",
        "truth.csv",
    }
    back = ad.read_h5ad(paths["screen"])
    assert (back.X != small_screen.adata.X).nnz == 0
    pd.testing.assert_frame_equal(back.obs, small_screen.adata.obs, check_index_type=False)  # pandas 3: NA vs NaN
    truth = back.uns[KEYS.truth]
    np.testing.assert_allclose(truth["proportions"], small_screen.adata.uns[KEYS.truth]["proportions"])
    assert list(truth["states"]) == STATES
    assert truth["params"]["seed"] == 0
    with np.load(paths["features"]) as npz:
        assert sorted(npz.files) == sorted(small_screen.features.genes)
        assert npz[PLANTED_KNOCKOUT].shape == (200, 16)
        assert npz[PLANTED_KNOCKOUT].dtype == np.float32
    gmt = [line.split("\t") for line in paths["modules"].read_text().splitlines()]
    assert {row[0]: row[2:] for row in gmt} == small_screen.modules
    fasta = paths["sequences"].read_text().splitlines()
    assert fasta[0] == f">{next(iter(small_screen.sequences))}"
    csv = pd.read_csv(paths["truth"], index_col="gene")
    np.testing.assert_allclose(csv[STATES].to_numpy(), small_screen.truth[STATES].to_numpy())
    with pytest.raises(RunError, match=r"screen\.h5ad already exists; pass --overwrite"):
        small_screen.write(tmp_path / "sim")
    assert small_screen.write(tmp_path / "sim", overwrite=True) == paths


def test_write_keeps_pandas_string_arrays(tmp_path):
    """Names held in pandas' string arrays (the default from pandas 3 on) are written and read back."""
    screen = simulate_screen(n_genes=200, n_knockouts=4, n_cells=300, n_control_cells=50, feature_dim=4, seed=2)
    screen.adata.obs_names = pd.Index(screen.adata.obs_names, dtype="string")
    with ad.settings.override(allow_write_nullable_strings=False):  # anndata's default (the tests' own is True)
        paths = screen.write(tmp_path / "sim")
    back = ad.read_h5ad(paths["screen"])
    assert list(back.obs_names) == list(screen.adata.obs_names)


def test_input_errors_name_the_fix():
    with pytest.raises(InputError, match="pass --genes >="):
        simulate_screen(n_genes=50, n_knockouts=8, n_cells=500)
    with pytest.raises(InputError, match="fewer than min_cells=20 each; pass --cells >="):
        simulate_screen(n_genes=200, n_knockouts=8, n_cells=150, n_control_cells=10)
    with pytest.raises(InputError, match="not challenge knockouts"):
        simulate_screen(n_genes=200, n_knockouts=8, n_cells=500, planted={"Nope1": (0.2,) * 5})
    with pytest.raises(InputError, match="positive share to each of the 5 states"):
        simulate_screen(n_genes=200, n_knockouts=8, n_cells=500, planted={"Tox2": (1.0, 0, 0, 0, 0)})
    with pytest.raises(InputError, match="pass --unseen-genes >= 0"):
        simulate_screen(n_genes=200, n_knockouts=8, n_cells=500, n_unseen_genes=-1)


def test_negative_binomial_moments():
    rng = np.random.default_rng(0)
    mean = np.repeat(np.array([[0.05, 0.8, 3.0, 9.0]], dtype=np.float32), 40_000, axis=0)  # (n, 4)
    phi = np.array([0.2, 0.5, 0.3, 0.4])
    flat, vals = negative_binomial(mean, phi, rng)
    draws = np.zeros(mean.size)
    draws[flat] = vals
    draws = draws.reshape(mean.shape)
    m = mean[0].astype(float)
    np.testing.assert_allclose(draws.mean(axis=0), m, rtol=0.05)
    np.testing.assert_allclose(draws.var(axis=0), m + phi * m**2, rtol=0.08)


def test_cli_simulate_writes_files_and_refuses_overwrite(tmp_path):
    runner = CliRunner()
    args = ["simulate", "--out", str(tmp_path), "--genes", "200", "--knockouts", "8", "--cells", "800"]
    args += ["--feature-dim", "8", "--sequences", "--seed", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("screen.h5ad", "features.npz", "sequences.fa", "modules.gmt", "truth.csv"):
        assert (tmp_path / name).exists()
        assert name in result.output
    again = runner.invoke(app, args)
    assert isinstance(again.exception, RunError)
    assert "--overwrite" in str(again.exception)
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_cli_simulate_takes_a_panel_screen_and_its_knobs(tmp_path):
    """``--like`` starts from a panel screen's knobs; a knob option overrides it; the truth records both."""
    runner = CliRunner()
    base = ["simulate", "--genes", "200", "--knockouts", "8", "--cells", "800", "--feature-dim", "8"]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--like", "shift_none", "--label-noise", "0"])
    assert result.exit_code == 0, result.output
    params = ad.read_h5ad(tmp_path / "a" / "screen.h5ad").uns["perturbscore_truth"]["params"]
    assert (params["within_state_shift"], params["label_noise"], params["feature_signal"]) == (0.0, 0.0, 1.0)
    bad = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--like", "features_weak"])
    assert isinstance(bad.exception, InputError)
    assert "features_weak" in str(bad.exception)
    assert "features_strong" in str(bad.exception)
    bad = runner.invoke(app, [*base, "--out", str(tmp_path / "c"), "--label-noise", "2"])
    assert isinstance(bad.exception, InputError)
    assert "--label-noise" in str(bad.exception)
