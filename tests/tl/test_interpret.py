from __future__ import annotations

import json
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from perturbscore._errors import InputError, RunError  # noqa: E402
from perturbscore.datasets import synthetic_perturb_seq  # noqa: E402
from perturbscore.model import as_screen, fit  # noqa: E402
from perturbscore.pl import _save  # noqa: E402
from perturbscore.pl._save import save_figure, save_run_plots  # noqa: E402
from perturbscore.tl._interpret import PROGRAM_FILES, ProgramsResult, interpret_programs  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sim():
    return synthetic_perturb_seq(seed=0)


@pytest.fixture(scope="module")
def model(sim, tmp_path_factory):
    run = tmp_path_factory.mktemp("interpret") / "run"
    # targets around observed mixes only (the seed's sampling): with 25 % whole-simplex targets (the default)
    # 150 steps on this tiny screen recover only 2 of the 5 state modules (see the closing note)
    return fit(
        sim.adata, features=sim.features, max_steps=150, steps_per_epoch=30, progress=False, out=run, seed=0,
        uniform_targets=0.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def result(sim, model):
    return interpret_programs(model, sim.adata, gene_sets=sim.modules, n_top=20, n_permutations=500, rng=0)


def _gene_sd(x) -> np.ndarray:
    mean = np.asarray(x.mean(axis=0)).ravel()
    return np.sqrt(np.maximum(np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2, 0))


def test_tables_shapes_and_values(sim, model, result):
    m1 = model.model_config.n_programs
    m2 = model.model_config.n_stat
    programs = [f"program_{i + 1}" for i in range(m1)]
    assert result.loadings.shape == (sim.adata.n_vars, m1)
    assert list(result.loadings.columns) == programs
    top = result.top_genes
    assert list(top.columns) == ["program", "sign", "rank", "gene", "loading", "raw_loading"]
    counts = top.groupby(["program", "sign"]).size()
    assert counts.max() == 20
    assert set(top["program"]) == set(programs)
    for (program, sign), sub in top.groupby(["program", "sign"]):
        mag = sub.sort_values("rank")["loading"].abs().to_numpy()
        assert (np.diff(mag) <= 1e-12).all()  # most extreme first
        assert ((sub["loading"] > 0) == (sign == "+")).all()
        # the ranked loading is the raw loading times the gene's spread in the cells
        raw = model.program_loadings()[program].reindex(sub["gene"]).to_numpy()
        np.testing.assert_allclose(sub["raw_loading"].to_numpy(), raw, rtol=1e-6)
    assert result.activity_by_state.shape == (m1, 5)
    assert list(result.activity_by_state.columns) == list(model.states)
    assert np.abs(result.activity_by_state.to_numpy()).max() < 1
    assert result.activity_by_perturbation.shape == (9, m1)
    assert set(result.activity_by_perturbation.index) == set(sim.adata.obs["condition"].astype(str))
    rel = result.stat_state_relation
    assert rel.shape == (model.model_config.stat_dim, 5)
    assert np.nanmax(np.abs(rel.to_numpy())) <= 1
    mix = [f"mix_{s}" for s in model.states] if model.model_config.mix_channel else []
    assert list(rel.index) == [f"stat_{j + 1}" for j in range(m2)] + mix
    if mix:  # the mix channel is each state's mean posterior: it tracks that state's share across knockouts
        diag = [rel.loc[f"mix_{s}", s] for s in model.states]
        assert np.nanmean(diag) > 0.5


def test_tables_match_direct_computation(sim, model, result):
    # every cell is used (1,500 < max_cells; fewer than 500 cells per knockout except the control)
    x = sim.adata.X
    act = model.program_activity(x)  # (cells, m1)
    state = sim.adata.obs["state"].astype(str).to_numpy()
    for s in model.states:
        np.testing.assert_allclose(result.activity_by_state[s].to_numpy(), act[state == s].mean(0), atol=1e-5)
    cond = sim.adata.obs["condition"].astype(str).to_numpy()
    small = [p for p in result.activity_by_perturbation.index if (cond == p).sum() <= 500]
    assert small
    for p in small:
        np.testing.assert_allclose(result.activity_by_perturbation.loc[p].to_numpy(), act[cond == p].mean(0), atol=1e-5)
    sd = _gene_sd(x)
    expected = model.program_loadings().mul(sd, axis=0)
    np.testing.assert_allclose(result.loadings.to_numpy(), expected.to_numpy(), rtol=1e-4, atol=1e-7)
    assert (result.loadings[sd == 0] == 0).all().all()  # constant genes carry no program


def test_planted_state_modules_enriched(sim, model, result):
    enr = result.enrichment
    sig = enr[(enr["q"] < 0.05) & enr["set"].str.startswith("state_")]
    # the planted state-marker modules come back: at least 4 of the 5 in some program at q < 0.05
    assert sig["set"].nunique() >= 4, enr.sort_values("q").groupby("set").head(1)
    # a module enriched among a program's positive genes marks a state where that program is active
    act = result.activity_by_state
    agree = [
        (act.loc[r.program, r.set.removeprefix("state_").replace("_", " ")] > act.loc[r.program].mean())
        == (r.direction == "+")
        for r in sig.itertuples()
    ]
    assert np.mean(agree) >= 0.75
    # negative control: random gene sets of the same size are rarely "enriched"
    rng = np.random.default_rng(5)
    genes = list(model.gene_names)
    random_sets = {f"random_{i}": list(rng.choice(genes, size=len(m), replace=False))
                   for i, m in enumerate(sim.modules.values())}  # fmt: skip
    null = interpret_programs(model, None, gene_sets=random_sets, n_top=20, n_permutations=500, rng=0).enrichment
    assert (null["q"] < 0.05).sum() < len(sig)


def test_without_screen_and_raw_scale(model, result):
    bare = interpret_programs(model, n_top=5, scale="raw")
    assert bare.activity_by_state is None
    assert bare.enrichment is None
    assert bare.stat_state_relation is None
    np.testing.assert_allclose(bare.top_genes["loading"], bare.top_genes["raw_loading"])
    # without cells the front end's stored SDs give (nearly) the same ranking as the screen's
    sd_only = interpret_programs(model, n_top=20)
    for program in ("program_1", "program_2"):
        a, b = (
            set(t[(t["program"] == program) & (t["sign"] == "+")]["gene"].head(5))
            for t in (sd_only.top_genes, result.top_genes)
        )
        assert len(a & b) >= 3


def test_write_read_and_overwrite(result, tmp_path):
    paths = result.write(tmp_path)
    assert {p.name for p in paths.values()} == set(PROGRAM_FILES.values())
    back = ProgramsResult.read(tmp_path)
    pd.testing.assert_frame_equal(back.top_genes, result.top_genes, check_dtype=False)
    pd.testing.assert_frame_equal(back.activity_by_state, result.activity_by_state, check_names=False)
    assert list(back.activity_by_perturbation.index) == list(result.activity_by_perturbation.index)
    with pytest.raises(RunError, match="already holds program results"):
        result.write(tmp_path)
    ProgramsResult(top_genes=result.top_genes).write(tmp_path, overwrite=True)
    assert not (tmp_path / "enrichment.csv").exists()  # a stale table is removed
    assert ProgramsResult.read(tmp_path / "nothing") is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_input_errors(sim, model):
    with pytest.raises(InputError, match="lacks 1 of the model's 200 genes"):
        interpret_programs(model, sim.adata[:, 1:].copy())
    with pytest.raises(InputError, match="must all be >= 1"):
        interpret_programs(model, n_top=0)
    with pytest.raises(InputError, match="scale must be 'sd' or 'raw'"):
        interpret_programs(model, scale="z")
    screen = replace(as_screen(sim.adata), states=("a", "b"))
    with pytest.raises(InputError, match="differ from the model's"):
        interpret_programs(model, screen)


def test_interpret_reorders_genes(sim, model, result):
    shuffled = sim.adata[:, sim.adata.var_names[::-1]].copy()
    again = interpret_programs(model, shuffled, n_top=20, rng=0)
    pd.testing.assert_frame_equal(again.top_genes, result.top_genes)
    np.testing.assert_allclose(again.activity_by_state, result.activity_by_state, atol=1e-5)


def _eval_results() -> dict:
    return {
        "eval_k": 10,
        "models": {"perturbscore": {"mae_cells": {"2": [0.2, 0.22], "10": [0.1, 0.12]}, "mae_sequence": [0.15]}},
        "baselines": {"empirical": {"mae_cells": {"2": [0.3], "10": [0.09]}}, "ridge": {"mae_sequence": [0.14]}},
        "scatter": {"pred": [0.1, 0.2, 0.3], "true": [0.12, 0.18, 0.35]},
    }


def test_save_run_plots(result, tmp_path, monkeypatch):
    run = tmp_path
    pd.DataFrame({"epoch": [0, 0, 1, 1], "train_pred_loss": [0.3, np.nan, 0.2, np.nan],
                  "val_pred_loss": [np.nan, 0.35, np.nan, 0.25]}).to_csv(run / "metrics.csv", index=False)  # fmt: skip
    pd.DataFrame({"target": ["A"] * 3 + ["B"], "gene": ["g1", "g2", "g3", "g1"], "source": "cells",
                  "pred_distance": [0.3, 0.1, 0.2, 0.5], "lo": 0.0, "hi": 0.6,
                  "rank": [2, 1, pd.NA, 1]}).to_csv(run / "scores.csv", index=False)  # fmt: skip
    n_figs = len(plt.get_fignums())
    seen = {}

    def spy(fig, path, *, dpi):
        seen[path.stem] = (fig.axes[0].get_title(), [t.get_text() for t in fig.axes[0].get_yticklabels()])
        return save_figure(fig, path, dpi=dpi)

    monkeypatch.setattr(_save, "save_figure", spy)
    paths = save_run_plots(run, programs=result, eval_results=_eval_results(), dpi=40)

    # each file holds its own table (no late-binding mix-ups between plots); tick labels are made readable
    def readable(index):
        return [str(i).replace("program_", "program ").replace("stat_", "summary ").replace("mix_", "mix: ")
                for i in index]  # fmt: skip

    assert seen["program_activity_perturbation"][1] == readable(result.activity_by_perturbation.index)
    assert seen["program_activity_state"][1] == readable(result.activity_by_state.index)
    assert seen["stat_state_relation"][1] == readable(result.stat_state_relation.index)
    assert "per knockout" in seen["program_activity_perturbation"][0]
    assert seen["ranking_1"][1] == ["g1", "g2"]  # unranked g3 left out, closest at the top
    assert seen["ranking_1"][0] == "target: A"
    assert seen["ranking_2"][1] == ["g1"]  # one ranking per target
    names = {p.name for p in paths}
    assert names == {"training_curves.png", "mae_vs_k.png", "pred_vs_true.png", "ranking_1.png", "ranking_2.png",
                     "program_activity_state.png", "program_activity_perturbation.png", "stat_state_relation.png",
                     "program_top_genes.png", "enrichment.png"}  # fmt: skip
    for p in paths:
        assert p.parent == run / "plots"
        assert p.stat().st_size > 1000
        assert p.read_bytes().startswith(PNG)
    assert len(plt.get_fignums()) == n_figs  # no pyplot state leaked
    assert not list((run / "plots").glob(".*.tmp"))
    assert save_run_plots(run, programs=result, eval_results=_eval_results(), skip_existing=True) == []


def test_save_run_plots_from_files(result, tmp_path):
    two = result.top_genes["program"].isin(["program_1", "program_2"])
    ProgramsResult(top_genes=result.top_genes[two], enrichment=result.enrichment.head(5)).write(tmp_path)
    (tmp_path / "eval.json").write_text(json.dumps(_eval_results()))
    names = {p.name for p in save_run_plots(tmp_path, groups=("programs", "evaluation"), dpi=40)}
    assert {"program_top_genes.png", "enrichment.png", "mae_vs_k.png", "pred_vs_true.png"} <= names
    empty = tmp_path / "empty"
    empty.mkdir()
    assert save_run_plots(empty) == []
    with pytest.raises(InputError, match=r"unknown plot group\(s\) \['bogus'\]"):
        save_run_plots(tmp_path, groups=("bogus",))
    with pytest.raises(InputError, match="does not exist"):
        save_run_plots(tmp_path / "missing")
