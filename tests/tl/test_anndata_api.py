"""The tools on a plain AnnData with non-default keys: what each writes into it, and the target forms it reads."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import perturbscore as ps
from perturbscore._errors import InputError
from perturbscore.datasets import synthetic_perturb_seq

STATES = ("progenitor", "effector", "terminal exhausted", "cycling", "other")
KEYS = {"perturbation_key": "guide", "state_key": "cluster", "control": "NT"}


def _plain_anndata() -> tuple[ad.AnnData, object]:
    """The small simulated screen as a user's AnnData: obs 'guide' (control 'NT') and 'cluster', nothing else."""
    sim = synthetic_perturb_seq(seed=0)
    a = ad.AnnData(X=sim.adata.X.copy(), var=pd.DataFrame(index=sim.adata.var_names.copy()))
    a.obs_names = sim.adata.obs_names.copy()
    a.obs["guide"] = sim.adata.obs["condition"].astype(str).replace({"Unperturbed": "NT"}).to_numpy()
    a.obs["cluster"] = pd.Categorical(sim.adata.obs["state"].astype(str), categories=list(STATES))
    return a, sim


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny model fitted on the plain AnnData (the fit writes into it): (adata, sim, model, run dir)."""
    adata, sim = _plain_anndata()
    run = tmp_path_factory.mktemp("anndata") / "run"
    model = ps.tl.fit(adata, features=sim.features, **KEYS, max_steps=40, steps_per_epoch=20, progress=False,
                      out=run, n_train=6, n_val=2, seed=0)  # fmt: skip
    return adata, sim, model, run


def test_fit_writes_keys_and_split_into_the_anndata(fitted):
    adata, _, model, run = fitted
    params = adata.uns["perturbscore"]["params"]
    assert params["perturbation_key"] == "guide"
    assert params["state_key"] == "cluster"
    assert params["control"] == "NT"
    assert list(params["states"]) == list(STATES)
    assert params["run_dir"] == str(run)
    split = adata.obs["perturbscore_split"]
    assert list(split.cat.categories) == ["train", "validation", "test", "control", "not used"]
    assert (split[adata.obs["guide"] == "NT"] == "control").all()
    val = set(adata.uns["perturbscore"]["split"]["val"])
    assert len(val) == 2
    assert (split[adata.obs["guide"].isin(val)] == "validation").all()
    assert model.keys == {**KEYS, "layer": None}
    assert ps.tl.PerturbScoreModel.load(run).keys == model.keys  # kept with the saved model


def test_fit_wrong_key_is_an_input_error_not_a_type_error():
    adata, _ = _plain_anndata()
    with pytest.raises(InputError, match=r"no perturbation column 'condition'.*'guide'"):
        ps.tl.fit(adata, max_steps=2, progress=False)  # default key: the message lists the columns there are
    assert "perturbscore" not in adata.uns  # nothing written for a failed fit


def test_evaluate_writes_its_table_into_uns(fitted):
    adata, sim, model, _ = fitted
    model.evaluation = None
    table = ps.tl.evaluate(model, adata, features=sim.features, ks=(2, 10), n_resamples=3)  # keys from the model
    assert list(table.columns) == ["method", "kind", "label", "metric", "k", "mean", "sd", "n_runs"]
    row = table[(table["method"] == "perturbscore") & (table["metric"] == "mae_cells") & (table["k"] == 10)]
    assert len(row) == 1
    assert 0 <= row["mean"].iloc[0] <= 1
    assert {"empirical", "shrunk", "train_mean"} <= set(table["method"])
    entry = adata.uns["perturbscore_evaluation"]
    assert set(entry) == {"table", "results", "params"}
    pd.testing.assert_frame_equal(entry["table"], table, check_dtype=False)
    assert entry["params"]["n_validation"] == 2
    assert not table["metric"].str.startswith("knockout_").any()  # per-knockout errors stay in the results
    per_knockout = entry["results"]["models"]["perturbscore"]["knockout_mae_cells"]
    assert len(per_knockout["10"]) == 2  # uns keys are strings (HDF5)
    assert model.evaluation is table.attrs["results"]  # scoring reads it (sequence ranking)


def test_score_dict_target_writes_table_params_and_statistic(fitted, tmp_path):
    adata, _, model, _ = fitted
    df = ps.tl.score_perturbations(model, adata, targets={"progenitor": 0.6, "cycling": 0.4}, n_boot=5, progress=False)
    name = "progenitor 60% + cycling 40%"
    assert set(df["target"]) == {name}
    assert (df["target_mix"] == "progenitor=0.6,cycling=0.4").all()
    assert sorted(df.loc[df["source"] == "cells", "gene"]) == sorted(set(adata.obs["guide"]) - {"NT"})
    entry = adata.uns["perturbscore_scores"]
    assert set(entry) >= {"table", "params", "statistic"}
    assert entry["params"]["targets"][name]["mix"]["progenitor"] == pytest.approx(0.6)
    stat = entry["statistic"]
    assert list(stat.columns) == model.stat_names
    assert set(stat.index) == set(adata.obs["guide"]) - {"NT"}
    adata.write_h5ad(tmp_path / "scored.h5ad")
    back = ps.tl.scores_from_anndata(ad.read_h5ad(tmp_path / "scored.h5ad"))
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back.attrs["params"]["targets"][name]["spec"] == "progenitor=0.6,cycling=0.4"


def test_score_copy_leaves_the_input_untouched(fitted):
    adata, _, model, _ = fitted
    out = ps.tl.score_perturbations(model, adata, targets="progenitor", n_boot=0, progress=False, copy=True,
                                    key_added="copied")  # fmt: skip
    assert isinstance(out, ad.AnnData)
    assert "copied" in out.uns
    assert "copied" not in adata.uns
    table = ps.tl.scores_from_anndata(out, key="copied")
    assert (table["constraint"] == "cycling>=0.05").all()  # the preset brought its own constraint


@pytest.mark.parametrize(
    "targets",
    [
        {"progenitor": 0.6, "cycling": 0.4},
        pd.Series({"cycling": 0.4, "progenitor": 0.6}),
        np.array([0.6, 0.0, 0.0, 0.4, 0.0]),
        "progenitor=0.6,cycling=0.4",
        {"progenitor 60% + cycling 40%": {"progenitor": 3, "cycling": 2}},
        pd.DataFrame({"progenitor": [0.6], "cycling": [0.4]}, index=["progenitor 60% + cycling 40%"]),
    ],
    ids=["dict", "series", "array", "spec", "named-mapping", "dataframe"],
)
def test_every_target_form_scores_the_same(fitted, targets):
    adata, _, model, _ = fitted
    ref = ps.tl.score_perturbations(model, adata, targets={"progenitor": 0.6, "cycling": 0.4}, n_boot=0,
                                    progress=False, key_added="ref")  # fmt: skip
    got = ps.tl.score_perturbations(model, adata, targets=targets, n_boot=0, progress=False, key_added="form")
    assert list(got["target"].unique()) == ["progenitor 60% + cycling 40%"]
    pd.testing.assert_series_equal(got["pred_distance"], ref["pred_distance"])


def test_target_errors():
    with pytest.raises(InputError, match="unknown state 'naive'"):
        ps.io.as_targets({"naive": 1.0}, STATES)
    with pytest.raises(InputError, match=r"has shape \(3,\)"):
        ps.io.as_targets(np.ones(3), STATES)
    with pytest.raises(InputError, match="all zero"):
        ps.io.as_targets({"progenitor": 0.0}, STATES)


def test_interpret_programs_writes_obsm_varm_and_tables(fitted):
    adata, sim, model, _ = fitted
    result = ps.tl.interpret_programs(model, adata, gene_sets=sim.modules, n_top=10, n_permutations=50)
    m1 = model.model_config.n_programs
    act = adata.obsm["X_perturbscore_programs"]
    assert act.shape == (adata.n_obs, m1)
    np.testing.assert_allclose(act[:50], model.program_activity(adata.X[:50]), rtol=1e-5, atol=1e-6)
    assert adata.varm["perturbscore_programs"].shape == (adata.n_vars, m1)
    entry = adata.uns["perturbscore_programs"]
    for name in ("params", "top_genes", "enrichment", "activity_by_state", "activity_by_perturbation"):
        assert name in entry
    pd.testing.assert_frame_equal(entry["top_genes"], result.top_genes)
    assert list(entry["params"]["programs"]) == [f"program_{i + 1}" for i in range(m1)]
    copied = ps.tl.interpret_programs(model, adata, n_top=5, key_added="again", copy=True)
    assert "X_again" in copied.obsm
    assert "X_again" not in adata.obsm


def test_statistic_of_groups_of_an_anndata(fitted):
    adata, _, model, _ = fitted
    by_guide = model.statistic(adata, groupby="guide")
    assert list(by_guide.columns) == ["n_cells", *model.stat_names]
    assert set(by_guide.index) == set(adata.obs["guide"])
    cells = np.flatnonzero(adata.obs["guide"].to_numpy() == "Prdm1")
    np.testing.assert_allclose(by_guide.loc["Prdm1", model.stat_names].to_numpy(dtype=float),
                               model.statistic(adata.X[cells]), rtol=1e-4, atol=1e-5)  # fmt: skip
    assert by_guide.loc["Prdm1", "n_cells"] == len(cells)
    whole = model.statistic(adata)
    assert list(whole.index) == ["all cells"]
    with pytest.raises(InputError, match="no obs column 'lane'"):
        model.statistic(adata, groupby="lane")


def test_cells_needed_table_on_an_anndata(fitted):
    adata, _, model, _ = fitted
    df = ps.tl.cells_needed_table(model, adata, target={"progenitor": 1.0}, ks=(2, 5), n_resamples=5, progress=False)
    assert set(df["gene"]) == set(adata.obs["guide"]) - {"NT"}
    assert "perturbscore_cells_needed" in adata.uns
    assert list(adata.uns["perturbscore_cells_needed"]["params"]["ks"]) == [2, 5]


def _evaluation(model_mae: float, mean_mae: float) -> dict:
    return {"models": {"perturbscore": {"mae_sequence": [model_mae]}},
            "baselines": {"train_mean": {"mae_sequence": [mean_mae]}}}  # fmt: skip


def test_sequence_rows_left_unranked_when_no_better_than_the_mean(fitted):
    adata, sim, model, _ = fitted
    kw = {"targets": "progenitor=1", "features": sim.features, "n_boot": 0, "progress": False, "key_added": "seq"}
    worse = ps.tl.score_perturbations(model, adata, evaluation=_evaluation(0.2, 0.1), **kw)
    seq = worse[worse["source"] == "sequence"]
    assert len(seq)
    assert seq["rank"].isna().all()
    assert (seq["flag"] == "not ranked: sequence path no better than the training mean").all()
    cells = worse[worse["source"] == "cells"]
    assert sorted(cells["rank"].dropna()) == list(range(1, len(cells) + 1))  # ranked among themselves
    info = worse.attrs["params"]["sequence"]
    assert info["ranking"] == "unranked"
    assert "0.200 vs 0.100" in info["reason"]
    forced = ps.tl.score_perturbations(model, adata, evaluation=_evaluation(0.2, 0.1), sequence_ranking="together", **kw)  # fmt: skip
    assert forced.loc[forced["source"] == "sequence", "rank"].notna().all()
    better = ps.tl.score_perturbations(model, adata, evaluation=_evaluation(0.05, 0.1), **kw)
    assert better["rank"].notna().all()
    assert (better["flag"] == "").all()
    model.evaluation = None
    unknown = ps.tl.score_perturbations(model, adata, **kw)
    assert unknown.attrs["params"]["sequence"]["verdict"] == "not evaluated"
    assert "not evaluated" in unknown.attrs["params"]["sequence"]["reason"]


def test_model_loaded_from_a_run_reads_its_evaluation(fitted, tmp_path):
    import json
    import shutil

    _, _, _, run = fitted
    copy = shutil.copytree(run, tmp_path / "run")
    assert ps.tl.PerturbScoreModel.load(copy).evaluation is None
    (copy / "eval.json").write_text(json.dumps(_evaluation(0.3, 0.1)))
    loaded = ps.tl.PerturbScoreModel.load(copy)
    assert ps.tl.sequence_verdict(loaded.evaluation)["better"] is False
