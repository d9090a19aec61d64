"""Gene features: every file format, alignment, and every bad-feature error."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from perturbscore._errors import InputError
from perturbscore.data import GeneFeatures
from perturbscore.io import align_features, read_features

GENES = ["Tox2", "Arid5b", "Dvl2"]


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {g: rng.normal(size=(4, 6)).astype(np.float32) for g in GENES}


def _check(feats: GeneFeatures, arrays: dict[str, np.ndarray]) -> None:
    assert sorted(feats.genes) == sorted(GENES)
    for g in GENES:
        np.testing.assert_allclose(feats.get([g])[0], arrays[g].reshape(-1, arrays[g].shape[-1]), rtol=1e-6)


def test_npz(tmp_path, arrays):
    path = tmp_path / "f.npz"
    np.savez(path, **arrays)
    feats = read_features(path)
    assert feats.shape == (4, 6)
    assert feats.source == str(path)
    _check(feats, arrays)


def test_npz_vectors_become_one_window(tmp_path, arrays):
    vecs = {g: a[0] for g, a in arrays.items()}
    np.savez(tmp_path / "v.npz", **vecs)
    feats = read_features(tmp_path / "v.npz")
    assert feats.shape == (1, 6)
    _check(feats, vecs)


@pytest.mark.parametrize("group", [None, "features"])
@pytest.mark.parametrize("suffix", [".h5", ".hdf5"])
def test_h5(tmp_path, arrays, group, suffix):
    path = tmp_path / f"f{suffix}"
    with h5py.File(path, "w") as f:
        root = f if group is None else f.create_group(group)
        for g, a in arrays.items():
            root[g] = a
    _check(read_features(path), arrays)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
@pytest.mark.parametrize("as_index", [False, True])
def test_tables(tmp_path, arrays, suffix, as_index):
    table = pd.DataFrame({g: a[0] for g, a in arrays.items()}).T  # genes x dim
    table.columns = [f"d{i}" for i in range(6)]
    path = tmp_path / f"f{suffix}"
    if suffix == ".parquet":
        (table if as_index else table.rename_axis("gene").reset_index()).to_parquet(path, index=as_index)
    else:
        table.rename_axis("gene").to_csv(path, sep="\t" if suffix == ".tsv" else ",")
    feats = read_features(path)
    assert feats.shape == (1, 6)
    _check(feats, {g: a[0] for g, a in arrays.items()})


def test_align_features_order_and_mask(arrays):
    feats = GeneFeatures(genes=GENES, values=np.stack(list(arrays.values())), source="f.npz")
    values, mask = align_features(feats, ["Dvl2", "Tox2"])
    assert values.shape == (2, 4, 6)
    np.testing.assert_array_equal(values[0], arrays["Dvl2"])
    assert mask.all()
    values, mask = align_features(feats, ["Dvl2", "Nope", "Tox2"], allow_missing=True)
    assert mask.tolist() == [True, False, True]
    assert (values[1] == 0).all()


def test_missing_genes_error_names_them(arrays):
    feats = GeneFeatures(genes=GENES, values=np.stack(list(arrays.values())), source="f.npz")
    wanted = [*GENES, *[f"Gene{i}" for i in range(12)]]
    with pytest.raises(
        InputError,
        match=r"12 of 15 perturbed genes have no features in 'f.npz'.*'Gene9', \.\.\. "
        r"\(2 more\).*--allow-missing-features",
    ):
        align_features(feats, wanted)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="feature file .*nope.npz' does not exist"):
        read_features(tmp_path / "nope.npz")
    path = tmp_path / "f.json"
    path.write_text("{}")
    with pytest.raises(InputError, match=r"unknown suffix '.json'"):
        read_features(path)


def test_duplicated_genes_in_table(tmp_path):
    pd.DataFrame({"gene": ["A", "B", "A"], "d0": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(InputError, match=r"1 duplicated gene\(s\): 'A'"):
        read_features(tmp_path / "f.csv")


def test_duplicated_genes_in_python_features():
    feats = GeneFeatures(genes=["A", "A"], values=np.zeros((2, 1, 3)))
    with pytest.raises(InputError, match="duplicated gene"):
        align_features(feats, ["A"])


def test_nan_values(tmp_path, arrays):
    arrays["Dvl2"][1, 2] = np.nan
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(InputError, match=r"1 gene\(s\) .* contain NaN or inf: 'Dvl2'"):
        read_features(tmp_path / "f.npz")


def test_wrong_ndim(tmp_path, arrays):
    arrays["Tox2"] = np.zeros((2, 3, 4))
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(InputError, match=r"gene 'Tox2'.*shape \(2, 3, 4\); expected \(windows, dim\)"):
        read_features(tmp_path / "f.npz")


def test_inconsistent_shapes(tmp_path, arrays):
    arrays["Arid5b"] = np.zeros((5, 6))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        for g, a in arrays.items():
            f[g] = a
    with pytest.raises(InputError, match=r"inconsistent shapes: most are \(4, 6\), but 'Arid5b' is \(5, 6\)"):
        read_features(tmp_path / "f.h5")


def test_table_without_gene_column(tmp_path):
    pd.DataFrame({"d0": [1.0], "d1": [2.0]}).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(InputError, match="no gene column"):
        read_features(tmp_path / "f.csv")


def test_table_with_text_feature_column(tmp_path):
    pd.DataFrame({"gene": ["A"], "d0": [1.0], "note": ["x"]}).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(InputError, match=r"non-numeric: \['note'\]"):
        read_features(tmp_path / "f.csv")


def test_non_numeric_npz(tmp_path):
    np.savez(tmp_path / "f.npz", A=np.array(["a", "b"]))
    with pytest.raises(InputError, match="gene 'A'.*not numeric"):
        read_features(tmp_path / "f.npz")


def test_corrupt_h5(tmp_path):
    (tmp_path / "f.h5").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        read_features(tmp_path / "f.h5")
