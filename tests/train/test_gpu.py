"""Training on a GPU: a step computes what it computes on the CPU, and ``fit`` runs end to end (needs CUDA)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from perturbscore.data import Screen
from perturbscore.io import read_screen
from perturbscore.tl import fit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def screen(small_screen) -> Screen:  # noqa: ANN001
    return read_screen(small_screen.adata, features=small_screen.features)


@pytest.mark.parametrize("name", ["default", "seed-baseline", "seed-full"])
def test_a_step_on_the_gpu_equals_the_cpu_step(one_step, name: str) -> None:  # noqa: ANN001
    _, cpu, ep = one_step(name, k_min=5, k_max=5, n_train=6, n_val=2)
    gpu = copy.deepcopy(cpu).cuda()
    out_cpu, out_gpu = cpu.compute(ep), gpu.compute(ep.to("cuda"))
    out_cpu.total.backward()
    out_gpu.total.backward()
    assert out_cpu.terms.keys() == out_gpu.terms.keys()
    for term, value in out_cpu.terms.items():
        np.testing.assert_allclose(out_gpu.terms[term].item(), value.item(), rtol=2e-3, atol=1e-5, err_msg=term)
    for (pname, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        if p_cpu.grad is None:
            assert p_gpu.grad is None or not p_gpu.grad.any(), pname
            continue
        g_cpu, g_gpu = p_cpu.grad, p_gpu.grad.cpu()
        scale = float(g_cpu.norm()) + 1e-8
        assert float((g_gpu - g_cpu).norm()) / scale < 5e-3, pname


@pytest.mark.parametrize("name", ["default", "seed-baseline"])
def test_fit_on_the_gpu_trains_and_returns_a_cpu_model(screen: Screen, name: str, tmp_path) -> None:  # noqa: ANN001
    model = fit(
        screen, preset_name=name, out=tmp_path / "run", accelerator="gpu", max_steps=60, steps_per_epoch=20,
        n_train=6, n_val=2, progress=False,
    )  # fmt: skip
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert len(m) == 3
    assert np.isfinite(m["val_pred_loss"]).all()
    assert all(p.device.type == "cpu" for p in model.net.parameters())
    cells = screen.rows.take(screen.cell_index[0])
    assert np.isfinite(model.statistic(cells)).all()
