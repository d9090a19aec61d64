"""Properties of the pure-torch modules: shapes, permutation invariance, masking, output range."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from perturbscore.nn import (
    DistanceHead,
    ModelConfig,
    PerturbationStatistic,
    ProgramMixer,
    SequenceRecognizer,
    StructuredDistanceHead,
    masked_mean,
    segment_mean,
    sparse_matmul,
)


@pytest.fixture
def cells() -> sp.csr_matrix:
    return sp.random(60, 120, density=0.1, format="csr", dtype=np.float32, random_state=np.random.default_rng(0))


@pytest.mark.parametrize("front_end", ["genes", "pca"])
def test_statistic_is_permutation_invariant(cells: sp.csr_matrix, front_end: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(n_genes=120, n_states=5, front_end=front_end, n_components=16)
    net = PerturbationStatistic(cfg)
    net.front.fit(cells)
    seg = torch.arange(60) // 20  # three sets of 20 cells
    s1 = net.statistic(net.programs(net.front.transform(cells)), seg, 3)
    perm = np.random.default_rng(1).permutation(60)
    s2 = net.statistic(net.programs(net.front.transform(cells[perm])), seg[perm], 3)
    assert s1.shape == (3, cfg.stat_dim) == (3, 10 + 5)
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=1e-5)


def test_masked_mean_ignores_padding() -> None:
    values = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    padded = values.clone()
    padded[0, 2:] = 1e6  # garbage in the padded slots must not leak
    out = masked_mean(padded, mask)
    torch.testing.assert_close(out[0], values[0, :2].mean(0))
    torch.testing.assert_close(out[1], values[1].mean(0))


def test_segment_mean_matches_masked_mean_for_ragged_sets() -> None:
    values = torch.randn(7, 3)
    seg = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    out = segment_mean(values, seg, 3)
    torch.testing.assert_close(out[0], values[:3].mean(0))
    torch.testing.assert_close(out[1], values[3:5].mean(0))


def test_sparse_matmul_gradient_matches_dense(cells: sp.csr_matrix) -> None:
    w1 = torch.randn(4, 120, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    sparse_matmul(cells, w1).pow(2).sum().backward()
    (torch.from_numpy(cells.toarray()) @ w2.T).pow(2).sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("head_cls", [DistanceHead, StructuredDistanceHead])
def test_heads_output_in_unit_interval(head_cls: type) -> None:
    torch.manual_seed(0)
    head = head_cls(6, 5)
    stat = torch.randn(8, 6) * 50  # extreme inputs
    targets = torch.distributions.Dirichlet(torch.ones(5)).sample((8, 3))
    out = head(stat, targets, torch.rand(8) * 4)
    assert out.shape == (8, 3)
    assert torch.all(out >= 0)
    assert torch.all(out <= 1)


@pytest.mark.parametrize("pooling", ["gaussian", "attention", "conv"])
def test_recognizer_shapes(pooling: str) -> None:
    rec = SequenceRecognizer(16, 10, pooling=pooling, hidden=32)
    assert rec(torch.randn(3, 200, 16)).shape == (3, 10)


def test_mixer_depends_on_program_identity() -> None:
    torch.manual_seed(0)
    mixer = ProgramMixer(4, 3)
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    y = torch.tensor([[0.0, 1.0, 0.0, 0.0]])  # same values, other program
    assert not torch.allclose(mixer(x), mixer(y))


@torch.no_grad()
def test_fusion_moves_from_prior_to_cells() -> None:
    net = PerturbationStatistic(ModelConfig(n_genes=10, n_states=3, n_features=4, front_end="genes"))
    stat, prior = torch.zeros(2, 10), torch.ones(2, 10)
    few = net.fuse(stat, prior, torch.tensor([1, 1]))
    many = net.fuse(stat, prior, torch.tensor([10_000, 10_000]))
    none = net.fuse(stat, prior, torch.tensor([0, 0]))
    torch.testing.assert_close(none, prior)
    assert float(many.abs().max()) < 1e-2 < float(few.min())


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="front_end"):
        ModelConfig(n_genes=10, n_states=3, front_end="nope")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(n_genes=10, n_states=3, d_model=30, n_heads=4)


def test_attention_pooling_equals_layernorm_then_softmax_weights() -> None:
    """The fused pooling (no normalised copy of the features) computes exactly LN -> score -> softmax -> sum."""
    from perturbscore.nn import SequenceRecognizer

    torch.manual_seed(0)
    t = SequenceRecognizer(32, 5, pooling="attention")
    with torch.no_grad():
        t.norm.weight.normal_()
        t.norm.bias.normal_()
    x = torch.randn(6, 50, 32) * 3 + 1
    ln = t.norm(x)
    w = torch.softmax(t.score(ln).squeeze(-1), dim=1)
    torch.testing.assert_close(t.pool(x), (w.unsqueeze(-1) * ln).sum(1), rtol=1e-5, atol=1e-5)


def test_front_end_fit_in_chunks_matches_one_block() -> None:
    """Fitting from rows read a chunk at a time gives the same front end as fitting the whole sample."""
    from perturbscore.nn import ModelConfig
    from perturbscore.nn._frontend import FrontEnd, _column_sums

    x = sp.random(300, 40, density=0.3, format="csr", dtype=np.float32, random_state=0)
    total, sumsq = _column_sums(x, block=97)  # several blocks
    dense = x.toarray().astype(np.float64)
    np.testing.assert_allclose(total, dense.sum(0), rtol=1e-6)
    np.testing.assert_allclose(sumsq, (dense**2).sum(0), rtol=1e-6)
    cfg = ModelConfig(n_genes=40, n_states=5, front_end="pca", n_top_genes=20, n_components=4)
    whole, chunked = FrontEnd(cfg), FrontEnd(cfg)
    whole.fit(x)
    rows = np.arange(300)
    chunked.fit_rows(lambda r: x[r], rows, chunk=7)
    for name in ("gene_index", "mean", "sd", "components"):
        torch.testing.assert_close(getattr(whole, name), getattr(chunked, name), rtol=1e-4, atol=1e-5)


def test_front_end_pca_is_the_exact_leading_subspace() -> None:
    """The Gram-matrix PCA returns the leading right singular vectors of the standardised, clipped sample."""
    import perturbscore.nn._frontend as fe
    from perturbscore.nn import ModelConfig

    rng = np.random.default_rng(0)
    latent = rng.standard_normal((400, 3)) @ rng.standard_normal((3, 30)) * 2  # a clear 3-dim structure
    x = sp.csr_matrix(np.maximum(latent + rng.standard_normal((400, 30)), 0).astype(np.float32))
    cfg = ModelConfig(n_genes=30, n_states=5, front_end="pca", n_top_genes=25, n_components=5)
    front = fe.FrontEnd(cfg)
    front.fit_rows(lambda r: x[r], np.arange(400), chunk=64)
    sel = front.gene_index.numpy()
    dense = x.toarray().astype(np.float64)[:, sel]
    std = np.clip((dense - front.mean.numpy()) / front.sd.numpy(), -10, 10)
    _, _, vt = np.linalg.svd(std, full_matrices=False)
    comp = front.components.numpy().astype(np.float64)
    np.testing.assert_allclose(np.abs((comp * vt[:5]).sum(1)), 1.0, atol=1e-4)  # each component, up to sign
    assert np.all(comp[np.arange(5), np.abs(comp).argmax(1)] > 0)  # sign: the largest loading is positive
    fe_limit = fe.GRAM_MAX_GENES
    try:  # more genes than the Gram path takes: the randomized SVD finds the same leading subspace
        fe.GRAM_MAX_GENES = 10
        other = fe.FrontEnd(cfg)
        other.fit_rows(lambda r: x[r], np.arange(400), chunk=64)
    finally:
        fe.GRAM_MAX_GENES = fe_limit
    cos = np.linalg.svd(comp[:3] @ other.components.numpy()[:3].T.astype(np.float64), compute_uv=False)
    assert cos.min() > 0.999


def test_mix_channel_is_the_mean_state_posterior(cells: sp.csr_matrix) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(n_genes=120, n_states=5, n_components=16, mix_channel=True)
    net = PerturbationStatistic(cfg)
    net.front.fit(cells)
    prog = net.programs(net.front.transform(cells))
    seg = torch.arange(60) // 20
    stat = net.statistic(prog, seg, 3)
    assert stat.shape == (3, cfg.n_stat + 5) == (3, cfg.stat_dim)
    post = torch.softmax(net.state_classifier(prog), dim=-1)
    torch.testing.assert_close(stat[:, cfg.n_stat :], segment_mean(post, seg, 3))
    torch.testing.assert_close(stat[:, : cfg.n_stat], net.mixer(segment_mean(prog, seg, 3)))
    perm = np.random.default_rng(1).permutation(60)
    torch.testing.assert_close(net.statistic(prog[perm], seg[perm], 3), stat, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_mix_channel_decoded_mix_moves_from_statistic_to_cells_with_k() -> None:
    torch.manual_seed(0)
    head = StructuredDistanceHead(6, 4, mix_channel=True)
    m = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    stat = torch.cat([torch.randn(1, 6), m], dim=-1)
    q_s = head.proportions(stat[:, :6])
    torch.testing.assert_close(head.decode(stat[:, :6], torch.log1p(torch.tensor([0.0]))), q_s)  # no mix: s only
    # no cells (a statistic predicted by T): its mix channel is T's prediction of the mix, read as it is
    torch.testing.assert_close(head.decode(stat, torch.log1p(torch.tensor([0.0]))), m)
    far = head.decode(stat, torch.log1p(torch.tensor([1e6])))  # many cells: the cells' posterior mean
    torch.testing.assert_close(far, m, atol=1e-4, rtol=1e-4)
    ks = [1.0, 3.0, 10.0, 100.0]
    gaps = [float((head.decode(stat, torch.log1p(torch.tensor([k]))) - m).abs().sum()) for k in ks]
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))  # more cells: closer to the cells' mix
    mid = head.decode(stat, torch.log1p(torch.tensor([10.0])))
    assert torch.all((mid - q_s).abs() <= (m - q_s).abs() + 1e-6)
    torch.testing.assert_close(mid.sum(-1), torch.ones(1))


def test_mix_channel_needs_state_classifier_and_structured_head() -> None:
    with pytest.raises(ValueError, match="mix_channel"):
        ModelConfig(n_genes=10, n_states=3, mix_channel=True, state_classifier=False)
    with pytest.raises(ValueError, match="mix_channel"):
        ModelConfig(n_genes=10, n_states=3, mix_channel=True, head="attention")


def test_config_round_trips_and_unknown_keys_are_refused() -> None:
    cfg = ModelConfig(n_genes=10, n_states=3, mix_channel=False, stat_activation="identity", stat_radius=2.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="mixer_logratio"):  # a field this version does not have
        ModelConfig.from_dict(cfg.to_dict() | {"mixer_logratio": False})


def test_conv_pooling_equals_convolving_then_averaging() -> None:
    """The seed's conv ``T`` skips its second convolution (linear, then averaged): same pooled value and gradient."""
    torch.manual_seed(0)
    t = SequenceRecognizer(16, 5, pooling="conv", hidden=24)
    x = torch.randn(4, 37, 16) * 2 + 0.5

    def by_convolution(features: torch.Tensor) -> torch.Tensor:
        ln = t.norm(features)
        return (ln + t.conv(ln.transpose(1, 2)).transpose(1, 2)).mean(1)

    torch.testing.assert_close(t.pool(x), by_convolution(x), rtol=1e-5, atol=1e-5)
    grad = torch.autograd.grad(t.pool(x).pow(2).sum(), t.conv[0].weight)[0]
    want = torch.autograd.grad(by_convolution(x).pow(2).sum(), t.conv[0].weight)[0]
    torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-5)


def test_statistic_activations_transform_the_linear_statistic(cells: sp.csr_matrix) -> None:
    """``"radial"`` keeps each output's direction and maps its length ``r`` to ``rho asinh(r / rho)``; the same map
    otherwise."""
    kinds = ("identity", "radial")
    rho = 0.5
    cfgs = [ModelConfig(n_genes=120, n_states=5, n_components=16, stat_activation=a, stat_radius=rho) for a in kinds]
    nets = []
    for cfg in cfgs:
        torch.manual_seed(0)
        nets.append(PerturbationStatistic(cfg))
    nets[0].front.fit(cells)
    for net in nets[1:]:
        net.load_state_dict(nets[0].state_dict())
    prog = nets[0].programs(nets[0].front.transform(cells))
    seg = torch.arange(60) // 20
    linear, radial = (net.statistic(prog, seg, 3)[:, : cfgs[0].n_stat] for net in nets)
    length = linear.norm(dim=1)
    torch.testing.assert_close(radial.norm(dim=1), rho * torch.asinh(length / rho))
    assert bool((radial.norm(dim=1) < length).all())  # compressed, never stretched
    cosine = (radial * linear).sum(1) / (radial.norm(dim=1) * length)
    torch.testing.assert_close(cosine, torch.ones(3))
    for unknown in ("relu", "tanh"):
        with pytest.raises(ValueError, match="stat_activation"):
            ModelConfig(n_genes=120, n_states=5, stat_activation=unknown)
    with pytest.raises(ValueError, match="stat_radius"):
        ModelConfig(n_genes=120, n_states=5, stat_radius=0.0)
