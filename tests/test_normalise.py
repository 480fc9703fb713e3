"""Normalisation rules: the noise rule makes a network indifferent to gain and offset."""

from __future__ import annotations

import numpy as np
import pytest

from em_restore.backend import simulate as sim
from em_restore.backend.models import load_model, predict_frame, save_model
from em_restore.backend.models.nets import network_params
from em_restore.backend.models.normalise import check_rule, normaliser
from em_restore.backend.models.store import ModelConfig
from em_restore.backend.models.training import TrainConfig, train
from tests.conftest import range_psnr as _psnr

NOISE = {"kind": "noise", "scale": 4.0}


@pytest.mark.parametrize(
    "rule, words",
    [
        ({"kind": "noise"}, "scale must be a number > 0"),
        ({"kind": "noise", "scale": 0}, "scale must be a number > 0"),
        ({"kind": "noise", "scale": 4, "low": 1}, "unknown key"),
        ({"kind": "noise", "low": 50, "high": 10}, "low < high"),
        ({"kind": "zscore"}, "must be"),
        ({"kind": "percentile", "low": 9, "high": 1}, "low < high"),
    ],
)
def test_rules_are_checked(rule, words):
    with pytest.raises(ValueError, match=words):
        check_rule(rule)


def _frame(seed: int, modality: str, dose: float, size: int = 128):
    g = np.random.default_rng(seed)
    clean, _ = sim.random_specimen((size, size), rng=g, kinds=("nanoparticles", "tissue"))
    cfg = sim.random_acquisition_config(g, modality=modality).replace(dose=dose)
    raw, truth = sim.simulate_acquisition(clean, cfg, rng=g, return_expected=True)
    return raw.astype(np.float64), truth


@pytest.mark.parametrize("modality, dose", [("tem", 30.0), ("stem", 30.0), ("sem", 300.0)])
def test_noise_rule_gives_unit_noise_and_a_round_trip(modality, dose):
    raw, truth = _frame(3, modality, dose)
    norm = normaliser(raw, NOISE)
    # the target's round trip is exact: what training feeds back is what it took in
    assert np.allclose(
        norm.inverse(norm.forward(truth)), truth, rtol=1e-4, atol=1e-3 * np.ptp(truth)
    )
    # the residual raw - truth, in network units, has the noise's s.d. 1/k (robust
    # s.d.: the recordings carry X-ray hits and dead pixels)
    resid = norm.forward(raw) - norm.forward(truth)
    sd = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    assert 0.75 / 4 < sd < 1.3 / 4, sd


def test_noise_rule_with_percentiles_spans_the_stabilised_frame():
    raw, truth = _frame(3, "tem", 30.0)
    rule = {"kind": "noise", "low": 0.1, "high": 99.9}
    norm = normaliser(raw, rule)
    xn = norm.forward(raw)
    assert np.percentile(xn, 0.1) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(xn, 99.9) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(
        norm.inverse(norm.forward(truth)), truth, rtol=1e-4, atol=1e-3 * np.ptp(truth)
    )
    # gain and offset change nothing in the network's units
    other = normaliser(7 * raw + 1000, rule)
    assert np.abs(other.forward(7 * raw + 1000) - xn).max() < 1e-3


def test_a_frame_without_noise_gets_a_floor_not_a_division_by_zero():
    flat = np.full((64, 64), 5.0)
    ramp = np.add.outer(np.arange(64.0), np.arange(64.0))
    for x in (flat, ramp):
        n = normaliser(x, NOISE)
        assert np.all(np.isfinite(n.forward(x)))
        assert np.allclose(n.inverse(n.forward(x)), x, atol=1e-3 * max(np.ptp(x), 1))


@pytest.fixture(scope="module")
def noise_model(tmp_path_factory):
    """A small fast_denoiser trained briefly under the noise rule (non-trivial weights)."""
    cfg = TrainConfig(
        arch_params={"channels": 8, "unshuffle": 2, "blocks": [1, 1, 1]},
        steps=100,
        batch=4,
        patch=32,
        pool=8,
        val_images=2,
        val_size=32,
        val_every=100,
        seed=2,
        normalisation=dict(NOISE),
    )
    cfg = TrainConfig(**{**cfg.__dict__, "recipe": type(cfg.recipe)(image_size=64)})
    result = train(cfg)
    folder = save_model(
        tmp_path_factory.mktemp("m") / "noise-rule",
        result.net,
        ModelConfig(
            name="noise-rule",
            architecture="fast_denoiser",
            arch_params=network_params(result.net),
            normalisation=dict(NOISE),
            training=result.record(cfg),
        ),
    )
    return load_model(folder, device="cpu")


def test_training_under_the_noise_rule_learns(noise_model):
    for seed in (11, 12):
        raw, truth = _frame(seed, "tem", 10.0)
        assert _psnr(predict_frame(noise_model, raw), truth) > _psnr(raw, truth) + 1.0


@pytest.mark.parametrize("modality, dose", [("tem", 5.0), ("stem", 20.0), ("sem", 100.0)])
def test_gain_and_offset_do_not_change_the_restoration(noise_model, modality, dose):
    raw, truth = _frame(7, modality, dose)
    base = predict_frame(noise_model, raw)
    ref = _psnr(base, truth)
    for a in (0.1, 7.0, 300.0):
        for b in (0.0, 1000.0):
            out = predict_frame(noise_model, a * raw + b)
            back = (np.asarray(out, np.float64) - b) / a
            assert abs(_psnr(back, truth) - ref) < 0.1, (a, b)
            assert _psnr(back, base) > 40.0, (a, b)


def test_percentile_rule_is_unchanged():
    """The percentile rule's numbers are the old ones (bundled models rely on it)."""
    x = np.random.default_rng(0).normal(100.0, 10.0, (48, 48))
    n = normaliser(x, {"kind": "percentile", "low": 0.1, "high": 99.9})
    lo, hi = np.percentile(x, [0.1, 99.9])
    assert n.lo == lo and n.scale == hi - lo
    assert np.array_equal(n.forward(x), ((x - lo) / (hi - lo)).astype(np.float32))


def test_a_stack_is_normalised_by_one_noise_model_recorded_in_the_plan(noise_model):
    from em_restore.backend._progress import drain
    from em_restore.backend.models.inference import ModelPlan, iter_predict, stack_noise

    g = np.random.default_rng(5)
    clean, _ = sim.random_specimen((128, 128), rng=g, kinds=("nanoparticles",))
    cfg = sim.random_acquisition_config(g, modality="tem").replace(dose=10.0)
    # one detector, three exposures
    stack = np.stack([sim.simulate_acquisition(clean, cfg, rng=k) for k in range(3)])
    stack = stack.astype(np.float64)
    raw = stack[0]
    noise = stack_noise(noise_model, stack)
    assert noise is not None and float(noise.variance(stack[1].mean())) > 0
    # frames restored with the stack's model equal the frame restored on its own
    # with that model passed in, and come close to the frame's own estimate
    out = drain(iter_predict(noise_model, stack))
    assert np.array_equal(out[1], predict_frame(noise_model, stack[1]))  # the middle frame's
    alone = predict_frame(noise_model, stack[0], noise=noise)
    assert np.array_equal(out[0], alone)
    own = predict_frame(noise_model, stack[0])
    assert 35.0 < _psnr(out[0], own) < 200.0
    plan = ModelPlan(noise_model)
    plan.apply_frame(raw)
    meta = plan.to_metadata()
    assert meta["noise"]["gain"] == pytest.approx(plan.noise.gain)
    first = plan.noise
    plan.apply_frame(stack[2])  # a live stream: estimated once
    assert plan.noise is first


def test_each_stack_gets_its_own_noise_model_and_fresh_plans_start_empty(noise_model):
    from em_restore.backend._progress import drain
    from em_restore.backend.models.inference import ModelPlan

    plan = ModelPlan(noise_model)
    a = _frame(21, "tem", 10.0)[0]
    b = 50.0 * _frame(21, "tem", 10.0)[0] + 1000.0  # another gain and offset
    drain(plan.iter_apply(a))
    gain_a = plan.noise.gain + plan.noise.readout_sigma
    drain(plan.iter_apply(b))
    assert plan.noise.gain + plan.noise.readout_sigma == pytest.approx(50.0 * gain_a, rel=1e-3)
    other = plan.fresh()
    assert other.noise is None and other.model is plan.model


def test_a_burst_model_must_use_percentiles():
    from em_restore.backend.models.store import ModelConfig, ModelError

    with pytest.raises(ModelError, match="burst model takes percentile"):
        ModelConfig(
            name="b",
            architecture="burst_dense_unet",
            arch_params={},
            normalisation=dict(NOISE),
            task="burst",
        )
