"""Every bad-input case of read_screen raises an InputError that names the thing and the fix."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from perturbscore._errors import InputError
from perturbscore.io import H5Rows, read_screen


def test_missing_file(tmp_path, screen_file):
    screen_file("real.h5ad")
    with pytest.raises(InputError, match=r"does not exist.*'real.h5ad'"):
        read_screen(tmp_path / "typo.h5ad")


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5ad"
    path.write_text("not an hdf5 file")
    with pytest.raises(InputError, match=r"notes.h5ad' is not a readable .h5ad.*truncated.*Re-export"):
        read_screen(path)


def test_truncated_file(screen_file):
    path = screen_file()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"screen.h5ad.*truncated"):
        read_screen(path)


def test_hdf5_but_not_anndata(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(InputError, match=r"plain.h5' is an HDF5 file but not an AnnData"):
        read_screen(path)


def test_missing_perturbation_column(adata):
    with pytest.raises(InputError, match=r"perturbation column 'guide'.*'condition', 'state'.*--perturbation-key"):
        read_screen(adata, perturbation_key="guide")


def test_missing_state_column(adata):
    with pytest.raises(InputError, match=r"state column 'cluster'.*Available obs columns.*--state-key"):
        read_screen(adata, state_key="cluster")


def test_nan_perturbation_labels(adata):
    adata.obs["condition"] = adata.obs["condition"].astype(object)
    adata.obs.iloc[[3, 7], 0] = np.nan
    with pytest.raises(InputError, match=r"'condition'.* 2 missing or empty labels.*'cell3', 'cell7'.*[Dd]rop"):
        read_screen(adata)


def test_empty_state_labels(adata):
    adata.obs["state"] = adata.obs["state"].astype(str)
    adata.obs.iloc[5, 1] = " "
    with pytest.raises(InputError, match=r"'state'.* 1 missing or empty labels.*'cell5'"):
        read_screen(adata)


def test_single_state_level(adata):
    adata.obs["state"] = "progenitor"
    with pytest.raises(InputError, match=r"state column 'state'.*only one level \('progenitor'\)"):
        read_screen(adata)


def test_unknown_control(adata):
    with pytest.raises(InputError, match=r"control label 'NT' not found.*'Tox2' \(30 cells\).*--control none"):
        read_screen(adata, control="NT")


def test_too_few_knockouts(make_adata):
    adata = make_adata(cells={"Tox2": 10, "Unperturbed": 10})
    with pytest.raises(InputError, match=r"1 knockout\(s\) in obs column 'condition'.*at least 2"):
        read_screen(adata)


def test_too_few_knockouts_after_dropping(make_adata):
    adata = make_adata(cells={"Tox2": 10, "Zeb2": 2, "Unperturbed": 10})
    with pytest.raises(InputError, match=r"after dropping 1 with too few cells \('Zeb2'\).*--min-cells"):
        read_screen(adata, min_cells=3)


def test_negative_values_in_x(adata):
    adata.X.data[:4] = -1.0
    with pytest.raises(InputError, match=r"X of 'AnnData in memory' has 4 negative values.*--layer"):
        read_screen(adata)


def test_nonfinite_values_in_x(screen_file):
    def edit(a):
        a.X.data[[0, 9]] = [np.nan, np.inf]

    path = screen_file(edit=edit)
    for backed in (False, True):
        with pytest.raises(InputError, match=r"X of '.*screen.h5ad' has 2 NaN or infinite values"):
            read_screen(path, backed=backed)


def test_negative_values_in_dense_backed_x(screen_file):
    def edit(a):
        a.X[0, :] = -0.5

    with pytest.raises(InputError, match=r"X of .* has 40 negative values"):
        read_screen(screen_file(dense=True, edit=edit), backed=True)


def test_rawcounts_not_integers(screen_file):
    def edit(a):
        a.layers["lognorm"] = a.X.copy()

    path = screen_file(edit=edit)
    for backed in (False, True):
        with pytest.raises(InputError, match=r"layer 'lognorm' of .* raw counts but is not non-negative integers"):
            read_screen(path, layer="lognorm", backed=backed)
    assert read_screen(path, layer="lognorm", normalize=False).n_cells == 76  # a log-normalised layer, as told


def test_rawcounts_negative(adata):
    adata.layers["rawcounts"].data[0] = -3
    with pytest.raises(InputError, match=r"layer 'rawcounts'.*1 negative"):
        read_screen(adata, layer="rawcounts")


def test_missing_layer(screen_file, adata):
    with pytest.raises(InputError, match=r"layer 'counts' not found.*Available layers: 'rawcounts'.*--layer"):
        read_screen(screen_file(), layer="counts", backed=True)
    with pytest.raises(InputError, match=r"layer 'counts' not found in 'AnnData in memory'"):
        read_screen(adata, layer="counts")


def test_states_differ(adata):
    with pytest.raises(InputError, match=r"extra in the screen: 'cycling', 'other'; missing from the screen: 'naive'"):
        read_screen(adata, states=["progenitor", "effector", "terminal exhausted", "naive"])


def test_csc_backed_refused(screen_file):
    def edit(a):
        a.X = sp.csc_matrix(a.X)

    path = screen_file(edit=edit)
    with pytest.raises(InputError, match=r"column-major \(CSC\).*backed=False"):
        H5Rows(path)
    assert read_screen(path).n_cells == 76  # in memory is fine


def test_x_missing(screen_file):
    def edit(a):
        a.X = None

    path = screen_file(edit=edit)
    for backed in (False, True):
        with pytest.raises(InputError, match=r"has no X matrix.*--layer"):
            read_screen(path, backed=backed)


def test_x_none_in_memory(adata):
    adata.X = None
    with pytest.raises(InputError, match=r"AnnData in memory: X is empty; pass --layer"):
        read_screen(adata)


def test_matrix_shape_disagrees_with_var(screen_file):
    path = screen_file()
    with h5py.File(path, "r+") as f:
        n, g = f["X"].attrs["shape"]
        f["X"].attrs["shape"] = np.array([n, g + 1])
    for backed in (False, True):
        with pytest.raises(InputError, match=r"matrix shape \(76, 41\) does not match 76 obs x 40 var"):
            read_screen(path, backed=backed)
