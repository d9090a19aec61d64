"""read_screen: in memory, backed, layers, state order, small perturbations, features."""

from __future__ import annotations

import logging
import pickle

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from perturbscore._constants import CHALLENGE_STATES
from perturbscore._errors import InputError
from perturbscore.data import GeneFeatures, InMemoryRows
from perturbscore.io import H5Rows, read_screen

ROWS = np.array([5, 3, 3, 0, 60, 61, 62, 17, 5, 2, 1, 75])  # unsorted, repeated, with runs


def _dense(m: sp.spmatrix) -> np.ndarray:
    return np.asarray(m.toarray())


def test_read_in_memory_structure(screen_file, adata):
    screen = read_screen(screen_file())
    assert screen.perturbations == ["Arid5b", "Dvl2", "Tox2", "Zeb2", "Unperturbed"]
    assert screen.knockouts == ["Arid5b", "Dvl2", "Tox2", "Zeb2"]
    assert screen.control == "Unperturbed"
    assert screen.states == CHALLENGE_STATES  # categorical order kept
    assert screen.counts.tolist() == [12, 7, 30, 2, 25]
    assert list(screen.gene_names) == list(adata.var_names)
    assert isinstance(screen.rows, InMemoryRows)
    for p, ix in zip(screen.perturbations, screen.cell_index, strict=True):
        assert (adata.obs["condition"].to_numpy()[ix] == p).all()
    want = adata.obs["state"].cat.codes.to_numpy()
    np.testing.assert_array_equal(screen.state_codes, want)
    np.testing.assert_allclose(_dense(screen.rows.take(ROWS)), adata.X[ROWS].toarray(), rtol=1e-6)
    np.testing.assert_allclose(screen.proportions.sum(axis=1), 1.0)


@pytest.mark.parametrize("layer", [None, "rawcounts"])
@pytest.mark.parametrize("dense", [False, True])
def test_backed_take_equals_in_memory(screen_file, layer, dense):
    path = screen_file(dense=dense)
    mem = read_screen(path, layer=layer)
    disk = read_screen(path, layer=layer, backed=True)
    assert isinstance(disk.rows, H5Rows)
    assert disk.rows.kind == ("dense" if dense and layer is None else "csr")
    got, want = disk.rows.take(ROWS), mem.rows.take(ROWS)
    assert got.shape == (ROWS.size, mem.n_genes)
    assert got.dtype == np.float32
    np.testing.assert_allclose(_dense(got), _dense(want), rtol=1e-6, atol=1e-7)
    assert disk.rows.take(np.array([], dtype=np.int64)).shape == (0, mem.n_genes)
    with pytest.raises(IndexError):
        disk.rows.take(np.array([disk.n_cells]))


def test_rawcounts_normalised_to_log1p_cp10k(screen_file, adata):
    screen = read_screen(screen_file(), layer="rawcounts")
    counts = adata.layers["rawcounts"].toarray().astype(np.float64)
    want = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(_dense(screen.rows.take(np.arange(screen.n_cells))), want, rtol=1e-5)


def test_zero_library_cell_stays_zero(make_adata):
    adata = make_adata()
    counts = adata.layers["rawcounts"].tolil()
    counts[0, :] = 0
    adata.layers["rawcounts"] = counts.tocsr()
    screen = read_screen(adata, layer="rawcounts")
    row = _dense(screen.rows.take(np.array([0])))
    assert np.isfinite(row).all()
    assert (row == 0).all()


def test_anndata_source_dense_x(make_adata):
    adata = make_adata(dense=True)
    screen = read_screen(adata)
    assert screen.source == "AnnData in memory"
    assert sp.issparse(screen.rows.take(np.array([0, 1])))
    np.testing.assert_allclose(_dense(screen.rows.take(ROWS)), adata.X[ROWS], rtol=1e-6)


def test_backed_anndata_object(screen_file):
    path = screen_file()
    backed_adata = ad.read_h5ad(path, backed="r")
    try:
        screen = read_screen(backed_adata, backed=True)
        mem = read_screen(path)
        assert isinstance(screen.rows, H5Rows)
        np.testing.assert_allclose(_dense(screen.rows.take(ROWS)), _dense(mem.rows.take(ROWS)))
    finally:
        backed_adata.file.close()


def test_h5rows_pickles_and_reopens(screen_file):
    rows = H5Rows(screen_file(), key="layers/rawcounts", normalize=True)
    first = _dense(rows.take(ROWS))
    clone = pickle.loads(pickle.dumps(rows))
    rows.close()
    np.testing.assert_array_equal(_dense(clone.take(ROWS)), first)
    np.testing.assert_array_equal(_dense(rows.take(ROWS)), first)  # reopens after close


@pytest.mark.filterwarnings("ignore:Writing zarr v2")
def test_zarr_source(tmp_path, adata):
    path = tmp_path / "screen.zarr"
    adata.write_zarr(path)
    screen = read_screen(path)
    assert screen.counts.tolist() == [12, 7, 30, 2, 25]
    with pytest.raises(InputError, match="backed=True needs an .h5ad"):
        read_screen(path, backed=True)


def test_state_order_fixed_and_sorted(make_adata):
    adata = make_adata()
    order = list(reversed(CHALLENGE_STATES))
    screen = read_screen(adata, states=order)
    assert screen.states == tuple(order)
    labels = adata.obs["state"].astype(str).to_numpy()
    np.testing.assert_array_equal(np.array(order)[screen.state_codes], labels)
    adata.obs["state"] = labels  # plain strings: sorted order
    assert read_screen(adata).states == tuple(sorted(CHALLENGE_STATES))


def test_given_states_absent_from_screen_warn(make_adata, caplog):
    adata = make_adata()
    with caplog.at_level(logging.WARNING):
        screen = read_screen(adata, states=[*CHALLENGE_STATES, "naive"])
    assert "naive" in caplog.text
    assert screen.proportions[:, -1].sum() == 0


def test_unused_state_category_left_out(make_adata):
    adata = make_adata()
    adata.obs["state"] = adata.obs["state"].cat.add_categories(["naive"])
    assert read_screen(adata).states == CHALLENGE_STATES


def test_small_drop_keep_error(make_adata, caplog):
    adata = make_adata()
    with caplog.at_level(logging.WARNING):
        screen = read_screen(adata, min_cells=5)
    assert "Zeb2" not in screen.perturbations
    assert "Zeb2" in caplog.text
    assert read_screen(adata, min_cells=5, small="keep").knockouts == ["Arid5b", "Dvl2", "Tox2", "Zeb2"]
    with pytest.raises(InputError, match=r"'Zeb2' \(2\)"):
        read_screen(adata, min_cells=5, small="error")
    with pytest.raises(InputError, match="small='maybe'"):
        read_screen(adata, min_cells=5, small="maybe")


def test_no_control(make_adata):
    adata = make_adata()
    screen = read_screen(adata, control="none")
    assert screen.control is None
    assert "Unperturbed" in screen.perturbations  # just another label now
    assert read_screen(adata, control=None).perturbations == screen.perturbations


def test_features_cover_knockouts_and_keep_other_genes(make_adata, caplog):
    adata = make_adata()
    rng = np.random.default_rng(1)
    genes = ["Tox2", "Arid5b", "Dvl2", "Zeb2", "Other"]
    feats = GeneFeatures(genes=genes, values=rng.normal(size=(5, 3, 4)))
    screen = read_screen(adata, features=feats)
    assert set(screen.knockouts) <= set(screen.features.genes)
    assert "Other" in screen.features  # a gene without cells: T's feature basis and sequence scoring use it
    np.testing.assert_array_equal(screen.feature_block(["Tox2", "Zeb2"]), feats.get(["Tox2", "Zeb2"]))
    partial = GeneFeatures(genes=genes[:2], values=rng.normal(size=(2, 3, 4)))
    with pytest.raises(InputError, match="2 of 4 perturbed genes"):
        read_screen(adata, features=partial)
    with caplog.at_level(logging.WARNING):
        screen = read_screen(adata, features=partial, allow_missing_features=True)
    assert sorted(screen.features.genes) == ["Arid5b", "Tox2"]
    assert "Dvl2" in caplog.text


def test_truth_read_from_uns(screen_file):
    def edit(a):
        a.uns["perturbscore_truth"] = {"effect": np.arange(3)}

    screen = read_screen(screen_file(edit=edit))
    np.testing.assert_array_equal(screen.truth["effect"], np.arange(3))


def test_chunked_dense_paths(screen_file, adata):
    from perturbscore.io._matrix import stored_values, to_csr

    dense = adata.X.toarray()
    csr = to_csr(dense, budget=100)  # 2 rows (of 40 genes) per block
    np.testing.assert_array_equal(csr.toarray(), dense)
    assert sum(b.shape[0] for b in stored_values(dense, budget=100)) == dense.shape[0]

    def edit(a):
        a.X[-1, -1] = np.nan  # in the last block only

    rows = H5Rows(screen_file(dense=True, edit=edit))
    blocks = list(rows.stored_values(budget=400))
    assert len(blocks) == 8
    assert np.isnan(blocks[-1]).any()
    assert not np.isnan(np.concatenate(blocks[:-1])).any()


def test_backed_view_refused(screen_file):
    backed_adata = ad.read_h5ad(screen_file(), backed="r")
    try:
        with pytest.raises(InputError, match=r"subset \(view\) of the backed file .*to_memory"):
            read_screen(backed_adata[:10])
    finally:
        backed_adata.file.close()


@pytest.mark.filterwarnings("ignore:Writing zarr v2")
def test_zarr_directory_without_suffix(tmp_path, adata):
    adata.write_zarr(tmp_path / "store")
    assert read_screen(tmp_path / "store").n_cells == adata.n_obs


@pytest.mark.parametrize("gap", [0, 30, 1 << 16])
def test_backed_gap_merging_same_rows(screen_file, adata, gap):
    rows = H5Rows(screen_file(), gap=gap)
    np.testing.assert_allclose(_dense(rows.take(ROWS)), adata.X[ROWS].toarray(), rtol=1e-6)


def test_merged_reads_stay_bounded() -> None:
    from perturbscore.io._backed import _merge_spans, _runs

    indptr = np.arange(0, 1001 * 100, 100)  # 1,000 rows of 100 values each
    spans = _merge_spans(_runs(np.arange(0, 1000, 3)), indptr, gap=10_000, max_span=5_000)
    assert all(indptr[b] - indptr[a] <= 5_000 for a, b in spans)
    covered = np.concatenate([np.arange(a, b) for a, b in spans])
    assert set(range(0, 1000, 3)) <= set(covered.tolist())


def test_backed_rows_reopen_in_a_forked_child(tmp_path) -> None:  # noqa: ANN001
    import multiprocessing as mp

    from perturbscore.datasets import synthetic_perturb_seq
    from perturbscore.io._backed import H5Rows

    path = tmp_path / "s.h5ad"
    synthetic_perturb_seq(seed=0).adata.write_h5ad(path)
    rows = H5Rows(path)
    expected = rows.take(np.array([5, 1, 900])).toarray()
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply(_take_in_child, (rows, [5, 1, 900]))
    np.testing.assert_array_equal(got, expected)


def _take_in_child(rows, idx):  # noqa: ANN001, ANN202
    return rows.take(np.array(idx)).toarray()
