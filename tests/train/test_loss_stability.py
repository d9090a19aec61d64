"""The stability loss: within- over between-perturbation variance of the statistic."""

from __future__ import annotations

import torch

from perturbscore.train._loss import stability_loss


def test_stability_loss_is_zero_for_identical_samples_and_scale_free() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(12, 5, generator=g)
    assert float(stability_loss(ref, ref)) == 0.0
    noisy = ref + 0.3 * torch.randn(12, 5, generator=g)
    torch.testing.assert_close(stability_loss(noisy, ref), stability_loss(10 * noisy, 10 * ref))


def test_stability_loss_falls_as_noise_falls() -> None:
    g = torch.Generator().manual_seed(0)
    ref, eps = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    assert float(stability_loss(ref + 0.1 * eps, ref)) < float(stability_loss(ref + 1.0 * eps, ref))


def test_collapsing_the_statistic_is_not_a_minimum() -> None:
    """Shrinking everything (statistic and reference) leaves the loss unchanged: no reward for collapse."""
    g = torch.Generator().manual_seed(0)
    ref, eps = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    scale = torch.tensor(1.0, requires_grad=True)
    stability_loss(scale * (ref + 0.5 * eps), scale * ref).backward()
    assert abs(float(scale.grad)) < 1e-5


def test_stability_loss_trains_g_only(one_step) -> None:  # noqa: ANN001
    """The stability loss reads detached program activities: G's parameters get a gradient from it, f's none."""
    net, module, episode = one_step(stability_weight=0.5, n_train=6, n_val=2)
    module.compute(episode).terms["stability_loss"].backward()
    f_grad = net.encoder.weight.grad
    g_grad = [p.grad for p in net.mixer.parameters() if p.grad is not None]
    assert g_grad
    assert any(float(g.abs().sum()) > 0 for g in g_grad)
    assert f_grad is None or float(f_grad.abs().sum()) == 0.0


def test_cli_stability_weight_flag_reaches_the_run_config(tmp_path) -> None:  # noqa: ANN001
    """``perturbscore train --stability-weight 0`` turns the loss off (the default is 0.5), as recorded."""
    import json

    from typer.testing import CliRunner

    from perturbscore.cli._app import app
    from perturbscore.datasets import synthetic_perturb_seq

    synthetic_perturb_seq(seed=0).write(tmp_path / "sim")
    runs = {}
    for name, extra in (("off", ["--stability-weight", "0", "--select-stability-weight", "0"]), ("default", [])):
        out = tmp_path / name
        args = ["train", str(tmp_path / "sim" / "screen.h5ad"), "--features", str(tmp_path / "sim" / "features.npz"),
                "--out", str(out), "--max-steps", "3", "--threads", "1", "--no-progress", *extra]  # fmt: skip
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        train = json.loads((out / "config.json").read_text())["train"]
        runs[name] = (train["losses"]["stability_weight"], train["losses"]["select_stability_weight"])
    assert runs == {"off": (0.0, 0.0), "default": (0.5, 0.1)}
