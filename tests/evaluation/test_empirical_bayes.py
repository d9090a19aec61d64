"""Empirical Bayes, CV-tuned feature regressions, conformal quantiles and the calibrated blend (numpy only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perturbscore.evaluation import BASELINES, render_panel_markdown, screen_checks
from perturbscore.evaluation._metrics import sample_targets, tv_distance
from perturbscore.model import Calibration, FeatureRegression, choose_strength, posterior_distance, simulate_draws
from perturbscore.model._calibrate import _conformal


def _mixes(n: int, rng: np.random.Generator, *, c: int = 4) -> np.ndarray:
    return rng.dirichlet(np.full(c, 3.0), size=n)


def _linear(n: int, rng: np.random.Generator, *, scales: np.ndarray, informative: int = 3) -> tuple:
    """Pooled features ``(n, D)`` (column ``j`` scaled by ``scales[j]``) whose first columns drive the mix."""
    z = rng.normal(size=(n, len(scales)))
    logits = np.zeros((n, 4))
    logits[:, :informative] = 1.5 * z[:, :informative]
    props = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return z * scales, props


# -- feature regressions -------------------------------------------------------------------------------
def test_linear_map_is_the_prediction() -> None:
    rng = np.random.default_rng(0)
    x, props = _linear(80, rng, scales=np.ones(10))
    for kind in ("ridge", "pcr", "auto"):
        reg = FeatureRegression(kind).fit(x[:60], props[:60], all_features=x, rng=0)
        w, b = reg.linear_map()
        pred = np.clip(x[60:] @ w + b, 0, None)
        np.testing.assert_allclose(pred / pred.sum(1, keepdims=True), reg.predict(x[60:]), atol=1e-10)


def test_preprocessing_is_chosen_by_cv() -> None:
    rng = np.random.default_rng(1)
    # informative features on a tiny scale among loud noise: raw ridge cannot use them, standardised can
    quiet, props = _linear(90, rng, scales=np.r_[np.full(3, 0.01), np.full(30, 10.0)])
    assert FeatureRegression("ridge").fit(quiet, props, rng=0).chosen_.standardise
    # informative features loud, noise tiny: standardising would blow the noise up to the signal's size
    loud, props = _linear(90, rng, scales=np.r_[np.full(3, 10.0), np.full(30, 0.01)])
    assert not FeatureRegression("ridge").fit(loud, props, rng=0).chosen_.standardise


def test_cross_fitted_prior_never_sees_its_own_label() -> None:
    rng = np.random.default_rng(2)
    x, props = _linear(40, rng, scales=np.ones(8))
    reg = FeatureRegression("ridge").fit(x, props, rng=0)
    before = reg.cross_fitted()
    i = 7
    reg.y_ = reg.y_.copy()
    reg.y_[i] = np.array([1.0, 0.0, 0.0, 0.0])  # change knockout i's label, keep the chosen setting and folds
    after = reg.cross_fitted()
    np.testing.assert_array_equal(after[i], before[i])  # its own prior is fitted without it
    assert not np.allclose(np.delete(after, i, 0), np.delete(before, i, 0))  # the others' priors did use it


# -- empirical Bayes --------------------------------------------------------------------------------------
def _draws(prior_of: str, seed: int = 3):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    props = _mixes(40, rng)
    counts = np.round(props * 400).astype(np.int64)
    props = counts / counts.sum(1, keepdims=True)
    prior = props if prior_of == "truth" else np.tile([0.0, 0.0, 0.0, 1.0], (40, 1)) * 0.97 + 0.01
    return simulate_draws(counts, prior, (0, 2, 10, 60), n_sim=6, target_noise=0.05, rng=rng)


def test_strength_follows_how_good_the_prior_is() -> None:
    exact, _, _ = choose_strength(_draws("truth"))
    useless, _, _ = choose_strength(_draws("wrong"))
    assert exact >= 100  # a prior equal to the truth is worth many cells
    assert useless <= 2  # a prior far from every knockout is worth (almost) none
    assert exact > 50 * max(useless, 0.1)


def test_posterior_distance_limits() -> None:
    rng = np.random.default_rng(4)
    q, prior = _mixes(6, rng), _mixes(6, rng)
    targets = sample_targets(q, 6, rng=5)
    # many cells: the empirical mix's distance, whatever the prior
    med, sd = posterior_distance(q * 1e6, prior, 20.0, targets)
    np.testing.assert_allclose(med, tv_distance(q, targets), atol=2e-3)
    assert (sd < 2e-3).all()
    # no cells and a very strong prior (or no spread): the prior's distance
    med, _ = posterior_distance(np.zeros_like(q), prior, 1e7, targets)
    np.testing.assert_allclose(med, tv_distance(prior, targets), atol=2e-3)
    med, sd = posterior_distance(np.zeros_like(q), prior, 5.0, targets, temper=np.inf)
    np.testing.assert_allclose(med, tv_distance(prior, targets), atol=1e-12)
    assert (sd == 0).all()
    # no cells and no prior strength: the prior mix itself
    med, _ = posterior_distance(np.zeros_like(q), prior, 0.0, targets)
    np.testing.assert_allclose(med, tv_distance(prior, targets), atol=1e-12)


def test_empirical_bayes_baseline_uses_the_feature_prior() -> None:
    rng = np.random.default_rng(6)
    x, props = _linear(90, rng, scales=np.ones(6))
    counts = np.round(props * 200).astype(np.int64)
    props = counts / counts.sum(1, keepdims=True)
    tr, te = slice(0, 60), slice(60, None)
    eb = BASELINES["empirical_bayes"]().fit(props[tr], train_counts=counts[tr], train_features=x[tr], rng=0)
    shrunk = BASELINES["shrunk"]().fit(props[tr], rng=0)
    assert eb.prior_setting_.startswith(("ridge", "pcr"))
    q = sample_targets(props[tr], 16, rng=7)
    k2 = rng.multinomial(2, props[te]).astype(float)
    truth = tv_distance(props[te][:, None, :], q[None])
    q3 = np.broadcast_to(q, (len(k2), *q.shape))
    mae_eb = np.abs(eb.predict_distance(q3, counts=k2, features=x[te]) - truth).mean()
    mae_shrunk = np.abs(tv_distance(shrunk.predict_proportions(counts=k2)[:, None, :], q[None]) - truth).mean()
    assert mae_eb < 0.8 * mae_shrunk
    seq = eb.predict_distance(q3, features=x[te])  # no counts: sequence only
    assert seq.shape == truth.shape


# -- conformal quantiles and the blend -------------------------------------------------------------------
def test_conformal_quantiles_cover_fresh_residuals() -> None:
    rng = np.random.default_rng(8)
    for draw in (rng.normal, rng.standard_cauchy):
        lo, hi = _conformal(draw(size=2000), 0.95)
        fresh = draw(size=50_000)
        cover = np.mean((fresh >= lo) & (fresh <= hi))
        assert 0.935 <= cover <= 0.965
    assert _conformal(np.zeros(0), 0.95) == (-np.inf, np.inf)


def _calibration(**kw: float) -> Calibration:
    ks = np.array([0.0, 2.0, 10.0, 60.0])
    blend = np.array([kw.pop("w_sequence", 0.0), 50.0, 0.0])  # w_sequence, w_cells at k = 10, slope
    base = {
        "train_mean": np.full(4, 0.25), "prior_weights": None, "prior_bias": np.full(4, 0.25),
        "prior_setting": "training mean", "prior_cv_error": 0.1, "strength": 10.0, "ks": ks, "blend": blend,
        "lo": np.full(4, -2.0), "hi": np.full(4, 2.0),
    }  # fmt: skip
    return Calibration(**(base | kw))  # type: ignore[arg-type]


def test_blend_tends_to_the_empirical_distance_with_many_cells() -> None:
    rng = np.random.default_rng(9)
    q = _mixes(5, rng)
    targets = np.broadcast_to(sample_targets(q, 3, rng=10), (5, 3, 4))
    cal = _calibration()
    head = np.full((5, 3), 0.9)  # a head that is far off
    res = cal.combine(head, q * 1e6, None, targets)
    np.testing.assert_allclose(res.distance, tv_distance(q[:, None, :], targets), atol=2e-3)
    assert (cal.weight(np.array([1e6])) < 1e-4).all()
    few = cal.combine(head, q * 2, None, targets)  # with 2 cells the head still weighs
    assert cal.weight(np.array([2.0]))[0] == pytest.approx(50 / 62)
    # the head's share falls with k, from its share at the first calibrated k to 0
    shares = cal.weight(np.array([1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 1e3, 1e5]))
    assert (np.diff(shares) <= 1e-12).all()
    assert np.abs(few.distance - head).mean() < np.abs(res.distance - head).mean()


def test_blend_without_cells_is_the_sequence_prior_or_the_head() -> None:
    rng = np.random.default_rng(11)
    targets = np.broadcast_to(sample_targets(_mixes(5, rng), 3, rng=12), (5, 3, 4))
    head = rng.uniform(0.1, 0.5, size=(5, 3))
    prior_only = _calibration(w_sequence=0.0, temper=np.inf).combine(head, None, None, targets)
    np.testing.assert_allclose(prior_only.distance, tv_distance(np.full(4, 0.25), targets), atol=1e-12)
    head_only = _calibration(w_sequence=np.inf).combine(head, None, None, targets)
    np.testing.assert_allclose(head_only.distance, head)
    assert (head_only.lo <= head_only.distance).all()
    assert (head_only.distance <= head_only.hi).all()


def test_calibration_json_round_trip_and_refusals() -> None:
    cal = _calibration(w_sequence=np.inf, temper=4.0)
    cal.held_out = {"a": 0, "b": 1}
    cal.fold_weights = np.array([[np.inf, 1.0, 0.0], [0.0, 2.0, -0.5]])
    cal.fold_lo, cal.fold_hi = np.full((2, 4), -1.0), np.full((2, 4), 1.5)
    text = json.dumps(cal.to_dict())
    back = Calibration.from_dict(json.loads(text))
    assert back.to_dict() == cal.to_dict()
    assert np.isinf(back.blend[0])
    assert back.temper == 4.0
    # a held-out knockout gets its own fold's weights; any other gene the pooled ones
    folds = back._folds(["a", "b", "zz"], 3)
    assert back.weight(np.zeros(3), folds).tolist() == [1.0, 0.0, 1.0]
    bad = cal.to_dict() | {"lo": [0.0]}
    with pytest.raises(ValueError, match="inconsistent"):
        Calibration.from_dict(bad)
    with pytest.raises(ValueError, match="not a calibration"):
        Calibration.from_dict({"train_mean": [0.5, 0.5]})


# -- the panel table ------------------------------------------------------------------------------------
def _result(default: float, best: float, *, shift: float = 1.0, spread: float = 0.0) -> dict:
    ks = [2, 5, 10, 25, 60]
    genes = [f"g{i}" for i in range(10)]
    wobble = np.linspace(-spread, spread, len(genes))  # knockout-to-knockout scatter of the default's edge

    def per_knockout(mean: float, jitter: np.ndarray) -> dict:
        return {g: [mean + j] for g, j in zip(genes, jitter, strict=True)}

    zero = np.zeros(len(genes))
    return {
        "ks": ks,
        "knobs": {"within_state_shift": shift},
        "models": {"perturbscore": {
            "mae_cells": {k: [default] for k in ks}, "mae_sequence": [default], "stability": {2: [0.9], 10: [0.95]},
            "knockout_mae_cells": {k: per_knockout(default, wobble) for k in ks},
            "knockout_mae_sequence": per_knockout(default, wobble),
            "coverage": {k: [0.95] for k in ks}, "coverage_sequence": [0.93],
            "all_cells": {"mae": [0.02], "mae_tally": [0.03], "spearman": [0.9], "spearman_tally": [0.85]},
        }},
        "baselines": {
            "empirical_bayes": {
                "mae_cells": {k: [best] for k in ks}, "mae_sequence": [best],
                "knockout_mae_cells": {k: per_knockout(best, zero) for k in ks},
                "knockout_mae_sequence": per_knockout(best, zero), "stability": {10: [0.7]},
            },
            "shrunk": {"mae_cells": {k: [best + 0.01] for k in ks}},
            "ridge": {"mae_sequence": [best]}, "train_mean": {"mae_sequence": [0.2]},
        },
    }  # fmt: skip


def test_panel_checks_and_table() -> None:
    close = screen_checks(_result(0.055, 0.06))  # below the best baseline, but by less than 10 %
    assert close["checks"]["cells <= best baseline, every k"]
    assert not close["checks"]["cells >= 10 % below best, k <= 10"]
    good = screen_checks(_result(0.05, 0.06))
    assert good["checks"]["cells >= 10 % below best, k <= 10"]
    assert screen_checks(_result(0.05, 0.06, shift=0.0))["checks"]["cells >= 10 % below best, k <= 10"] is None
    bad = screen_checks(_result(0.08, 0.06))
    assert not bad["checks"]["cells <= best baseline, every k"]
    assert good["cells"][2]["best_name"] == "empirical_bayes"
    md = render_panel_markdown({"settings": {"seeds": [0], "max_steps": 600, "command": "make panel"},
                                "screens": {"default": _result(0.05, 0.06), "worse": _result(0.08, 0.06)}})  # fmt: skip
    assert "make panel" in md
    assert "600 training steps" in md
    assert "**0.050 · EB 0.060 (-17 ± 0 %)**" in md
    assert "| coverage in [0.90, 0.97] | ✓ | ✓ |" in md
    assert "| never worse than the best baseline by 2 SE or more | ✓ | ✗ |" in md
    assert "| 0.950 (0.700) |" in md  # the default's stability at 10 cells, empirical Bayes's beside it
    assert "10 held-out knockouts" in md
    folded = render_panel_markdown(
        {"settings": {"seeds": [0], "folds": 5}, "screens": {"default": _result(0.05, 0.06)}}
    )
    assert "each held out once (5-fold over knockouts)" in folded


def test_panel_judges_stability_against_empirical_bayes_from_the_same_cells() -> None:
    shaky = _result(0.05, 0.06)
    shaky["models"]["perturbscore"]["stability"][10] = [0.75]  # below 0.9, above EB's 0.7
    checks = screen_checks(shaky)["checks"]
    assert not checks["stability k=10 >= 0.9"]
    assert checks["stability k=10 >= empirical Bayes's"]
    shaky["baselines"]["empirical_bayes"]["stability"][10] = [0.8]
    assert not screen_checks(shaky)["checks"]["stability k=10 >= empirical Bayes's"]
    del shaky["baselines"]["empirical_bayes"]["stability"]
    assert screen_checks(shaky)["checks"]["stability k=10 >= empirical Bayes's"] is None  # not measured


def test_panel_says_when_a_gap_is_within_the_luck_of_the_split() -> None:
    # worse than the baseline on average, but knockouts scatter widely around it: within 2 SE
    noisy = screen_checks(_result(0.062, 0.06, spread=0.03))
    assert not noisy["checks"]["cells <= best baseline, every k"]
    assert noisy["checks"]["never worse than the best baseline by 2 SE or more"]
    se = noisy["cells"][2]["se"]
    assert se == pytest.approx(np.linspace(-0.03, 0.03, 10).std(ddof=1) / np.sqrt(10))
    # the same gap on every knockout alike: beyond noise
    steady = screen_checks(_result(0.062, 0.06, spread=0.0))
    assert not steady["checks"]["never worse than the best baseline by 2 SE or more"]
    # results without per-knockout errors: not measured
    bare = _result(0.05, 0.06)
    del bare["models"]["perturbscore"]["knockout_mae_cells"]
    assert screen_checks(bare)["checks"]["never worse than the best baseline by 2 SE or more"] is None


def test_panel_ablation_table_judges_each_removal_against_the_noise() -> None:
    def with_variants(**variants: tuple[float, float]) -> dict:
        res = _result(0.05, 0.06, spread=0.01)
        for name, (mean, spread) in variants.items():
            res["models"][f"default-{name}"] = _result(mean, 0.06, spread=spread)["models"]["perturbscore"]
        return res

    plain = render_panel_markdown({"settings": {"seeds": [0]}, "screens": {"default": _result(0.05, 0.06)}})
    assert "removal" not in plain  # no variants trained: no ablation table
    screens = {
        # kept: +0.01 on each knockout of a; spare: +0.001 amid a wide scatter; mild: +2.2 SE on a alone
        "a": with_variants(kept=(0.06, 0.011), spare=(0.051, 0.04), mild=(0.0511, 0.0125)),
        # spare's removal helps on b; mild: nothing
        "b": with_variants(kept=(0.05, 0.011), spare=(0.045, 0.011), mild=(0.05, 0.0125)),
    }
    md = render_panel_markdown({"settings": {"seeds": [0]}, "screens": screens})
    table = md[md.index("## Each component's removal") :]
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert rows["kept"].endswith("| hurts on the panel, a |")
    assert "**+0.0100 k=2" in rows["kept"]
    assert "**+0.0050 k=2" in rows["kept"]  # the panel's mean change, beyond its pooled noise
    assert rows["spare"].endswith("| helps on b |")  # on b alone: a's wide scatter hides it in the mean
    assert "**-0.0050 k=2" in rows["spare"]
    # one screen past 2 SE but not 3 (the threshold for one of many comparisons), nothing on the other: noise
    assert "+0.0011 k=2 (+2." in rows["mild"]
    assert "**" not in rows["mild"]
    assert rows["mild"].endswith("| within noise |")
    assert "| 0.900 / 0.950 (0.900 / 0.950) |" in rows["kept"]  # stability at 2 / 10 cells without (default's)


def test_blend_rule_keeps_the_head_unless_empirical_bayes_is_clearly_better() -> None:
    from perturbscore.model._calibrate import _pick

    rng = np.random.default_rng(13)
    noise = rng.normal(scale=0.05, size=10)
    shares = np.array([0.0, 1.0])  # empirical Bayes alone, the head alone
    # empirical Bayes better by less than the knockouts' spread: the head stays
    assert _pick(np.stack([1.0 + noise, 1.01 + noise + rng.normal(scale=0.05, size=10)]), shares) == 1
    # empirical Bayes better on every knockout by far: it takes over
    assert _pick(np.stack([1.0 + noise, 1.5 + noise]), shares) == 0
