"""Pieces of the fast training step: T's reused fit, H on several statistics at once, the front end's state."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from perturbscore.nn import FrontEnd, ModelConfig, PerturbationStatistic, SequenceRecognizer
from perturbscore.nn._head import StructuredDistanceHead
from perturbscore.nn._ridge import _loo_operators, _weighted_ridge


@pytest.mark.parametrize("weighted", [False, True])
def test_loo_operator_gives_the_fits_leave_one_out_predictions(weighted: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 12, generator=gen, dtype=torch.float64)
    x = x - x.mean(0)  # the unweighted solve expects centred inputs
    w = torch.rand(30, generator=gen, dtype=torch.float64) + 0.2 if weighted else None
    choices = torch.tensor([[12.0, 3.0], [12.0, 3.0], [6.0, 0.5]], dtype=torch.float64)  # two distinct choices
    for _ in range(2):  # any targets: the map is linear in them
        y = torch.randn(30, 3, generator=gen, dtype=torch.float64)
        loo, _, _ = _weighted_ridge(x, y, choices, w)
        via_map = torch.empty_like(y)
        for cols, op in _loo_operators(x, choices, w):
            via_map[:, cols] = op @ y[:, cols]
        torch.testing.assert_close(via_map, loo)


@pytest.mark.parametrize("robust", [0.0, 1.0])
def test_recognizer_reuses_its_fit_for_new_targets(robust: float) -> None:
    torch.manual_seed(0)
    rec = SequenceRecognizer(16, 6, pooling="gaussian", head="ridge")
    feats = torch.randn(40, 20, 16)
    has = torch.ones(40, dtype=torch.bool)
    has[3] = False
    y = torch.randn(39, 6)
    loo = rec.fit_predict(feats, y, has, robust=robust)
    coef, fits = rec.coef.clone(), int(rec.n_fits)
    torch.testing.assert_close(rec.fit_predict(feats, y, has, robust=robust, refit=False), loo.detach())
    y2 = torch.randn(39, 6)
    reused = rec.fit_predict(feats, y2, has, robust=robust, refit=False)
    assert not reused.requires_grad
    assert int(rec.n_fits) == fits  # the stored read-out is kept
    assert torch.equal(rec.coef, coef)
    # the same as a fit to y2 with the first fit's weights, penalty and rank
    from perturbscore.nn._ridge import _weighted_ridge as solve

    x = rec.pool(feats)[has].detach()
    xp = ((x - x.mean(0)) / rec.basis_sd) @ rec.basis if rec.has_basis else (x - x.mean(0)) / x.std(0)
    weights = None if robust == 0 else rec.last_weights_
    expected, _, _ = solve(xp, y2, rec._choices(), weights)
    torch.testing.assert_close(reused, expected, rtol=1e-4, atol=1e-5)
    other = has.clone()
    other[5] = False  # other genes: the reused fit does not apply, so it fits
    rec.fit_predict(feats, y2[:-1], other, robust=robust, refit=False)
    assert int(rec.n_fits) == fits + 1


def test_head_on_several_statistics_at_once_equals_one_by_one() -> None:
    torch.manual_seed(0)
    head = StructuredDistanceHead(6, 4, hidden=32, mix_channel=True)
    stat, rec = torch.randn(7, 10), torch.randn(5, 10)
    targets = torch.softmax(torch.randn(7, 3, 4), -1)
    lk = torch.log1p(torch.randint(1, 20, (7,)).float())
    calls = [(stat, targets, lk), (stat[:, :6], targets, lk), (rec, targets[:5], torch.zeros(5))]
    dists, mixes = head.forward_many(calls)
    for (s, t, k), d, m in zip(calls, dists, mixes, strict=True):
        torch.testing.assert_close(d, head(s, t, k))
        torch.testing.assert_close(m, head.decode(s, k))


def test_front_end_state_round_trip_and_fingerprint() -> None:
    rng = np.random.default_rng(0)
    x = sp.random(300, 50, density=0.3, random_state=0, format="csr", dtype=np.float32)
    cfg = ModelConfig(n_genes=50, n_states=3, n_top_genes=30, n_components=6)
    a, b = FrontEnd(cfg), FrontEnd(cfg)
    a.fit(x)
    before = b.fingerprint
    b.load_state(a.state())
    assert b.fingerprint == a.fingerprint != before  # recomputed after the buffers changed
    rows = rng.choice(300, 20, replace=False)
    torch.testing.assert_close(b.transform(x[rows]), a.transform(x[rows]))
    with pytest.raises(ValueError, match="shape"):
        FrontEnd(ModelConfig(n_genes=50, n_states=3, n_top_genes=30, n_components=5)).load_state(a.state())
    net = PerturbationStatistic(cfg)
    net.front.load_state(a.state())
    assert net.front.fingerprint == a.fingerprint


def test_mixer_layer_written_out_equals_the_module() -> None:
    from perturbscore.nn._mixer import ProgramMixer, encoder_layer

    torch.manual_seed(0)
    mixer = ProgramMixer(10, 6, d_model=32, n_heads=4)
    for p in mixer.parameters():  # away from the initial zeros and ones
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(20, 10, 32)
    torch.testing.assert_close(encoder_layer(mixer.layer, x), mixer.layer(x), rtol=1e-5, atol=1e-5)
    mixer.layer.eval()
    with torch.no_grad():  # the module's inference fast path too
        torch.testing.assert_close(encoder_layer(mixer.layer, x), mixer.layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("shape", "dim"), [((7, 4, 10, 10), -1), ((300, 5), -1), ((6, 5, 3), 1), ((4, 40), -1)])
def test_short_axis_softmax_equals_torch_forward_and_backward(shape: tuple[int, ...], dim: int) -> None:
    from perturbscore.nn import cross_entropy, log_softmax, softmax

    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(*shape, generator=gen) * 5).requires_grad_()
    up = torch.randn(*shape, generator=gen)
    for ours, theirs in ((softmax, torch.softmax), (log_softmax, torch.log_softmax)):
        (g_ours,) = torch.autograd.grad((ours(x, dim) * up).sum(), x)
        (g_theirs,) = torch.autograd.grad((theirs(x, dim) * up).sum(), x)
        torch.testing.assert_close(ours(x, dim), theirs(x, dim))
        torch.testing.assert_close(g_ours, g_theirs)
    if len(shape) == 2:
        labels = torch.randint(0, shape[1], (shape[0],), generator=gen)
        torch.testing.assert_close(cross_entropy(x, labels), torch.nn.functional.cross_entropy(x, labels))
