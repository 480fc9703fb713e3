"""Burst deblurring backend: registration, fusion, windows, the burst network."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from em_restore.backend import burst as B
from em_restore.backend import simulate as sim
from em_restore.backend.models import list_models
from em_restore.backend.models.augment import dihedral, dihedral_vec
from em_restore.backend.models.burst import (
    BurstRecipe,
    BurstTrainConfig,
    iter_train_burst,
    simulated_window,
    train_burst,
)
from em_restore.backend.models.nets import BurstDenseUNet, BurstDenseUNetConfig
from tests.conftest import range_psnr as psnr

HAVE_MODEL = any(e.name == "em-burst" for e in list_models(task="burst"))
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="bundled em-burst model not built")


@pytest.fixture(scope="module")
def scene():
    return ndi.gaussian_filter(np.random.default_rng(0).random((160, 200)), 2.0)


@pytest.fixture(scope="module")
def stream():
    """A 7-frame TEM stream scrolling 6 px/frame to the right, 200 e-/px, and its truth."""
    spec, _ = sim.random_specimen((140, 240), rng=3, kinds=("nanoparticles",))
    noisy, sharp, offsets = sim.moving_stage_stream(
        spec, n_frames=7, frame_shape=(96, 96), velocity_px_per_frame=(0.0, 6.0), dose=200, rng=4
    )
    return noisy, 200 * sharp, offsets


# --------------------------------------------------------------------------- registration
def test_register_recovers_subpixel_shifts(scene):
    truth = np.array([[-2.6, 3.1], [-1.3, 1.4], [0.0, 0.0], [1.7, -1.2], [3.25, -2.8]])
    frames = np.stack([sim.subpixel_crop(scene, (40 + dy, 50 + dx), (80, 96)) for dy, dx in truth])
    shifts = B.register_window(frames)
    assert np.abs(shifts - truth).max() < 0.05


def test_register_large_frames_binned_search_then_full_resolution():
    """Frames over 512 px are searched binned (memory), then refined at full resolution."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(7)
    big = ndi.gaussian_filter(rng.random((760, 1200)), 3)
    truth = np.array([[0.0, 0.0], [6.4, -21.7]])
    frames = np.stack([sim.subpixel_crop(big, (40 + dy, 60 + dx), (600, 1040)) for dy, dx in truth])
    assert max(frames.shape[1:]) > B.GLOBAL_SIDE
    shifts = B.register_window(frames, reference=0)
    assert np.abs(shifts - truth).max() < 0.05


def test_register_noisy_stream_and_reference(stream):
    noisy, _, offsets = stream
    shifts = B.register_window(noisy)
    err = np.hypot(*(shifts - (offsets - offsets[3])).T)
    assert np.median(err) < 0.3 and err.max() < 1.0
    assert np.allclose(B.register_window(noisy, reference=0)[0], 0)


def test_align_window_masks_and_fill(scene):
    frames = np.stack([scene[20:100, 30 + 7 * k : 126 + 7 * k] for k in range(3)])
    aw = B.align_window(frames, shifts=[[0, -7], [0, 0], [0, 7]])
    assert aw.masks[1].all() and not aw.masks[0][:, -7:].any() and aw.masks[0][:, :-7].all()
    assert np.allclose(aw.frames[0][:, :-7], frames[1][:, :-7])  # exact for integer shifts
    assert np.array_equal(aw.frames[0][:, -7:], frames[1][:, -7:])  # filled by the reference
    assert aw.common.sum() == 80 * (96 - 14)
    before = frames.copy()
    B.align_window(frames)
    assert np.array_equal(frames, before)  # input untouched


# --------------------------------------------------------------------------- fusion
def test_mean_averages_noise_down_by_sqrt_n():
    rng = np.random.default_rng(1)
    clean = np.full((64, 64), 100.0)
    frames = clean + rng.normal(0, 10, (8, 64, 64))
    out = B.fuse_mean(B.align_window(frames, shifts=np.zeros((8, 2))))
    assert abs(np.std(out - clean) - 10 / math.sqrt(8)) < 0.2


def test_fba_p0_is_the_mean_and_keeps_the_dc(stream):
    aw = B.align_window(stream[0][:5])
    masked = B.AlignedWindow(aw.frames, np.ones_like(aw.masks), aw.shifts, aw.reference)
    assert np.allclose(B.fuse_fba(masked, p=0), B.fuse_mean(masked), atol=1e-6)
    assert abs(B.fuse_fba(aw).mean() - aw.frames.mean()) < 1e-6 * abs(aw.frames.mean())


def test_velocity_and_motion_kernels():
    v = B.window_velocity([[0, -12], [0, -6], [0, 0], [0, 6], [0, 12]])
    assert np.allclose(v, [[0, 6]] * 5)
    k = B.motion_kernels([[0, -6], [0, 0], [0, 6]], exposure=0.5)[1]
    assert math.isclose(k.sum(), 1.0) and (k.sum(axis=0) > 1e-3).sum() in (3, 4, 5)
    assert (k.sum(axis=1) > 1e-3).sum() == 1  # horizontal motion: one row


def test_classical_deblurs_better_than_the_mean_and_single_frames(stream):
    noisy, sharp, _ = stream
    aw = B.align_window(noisy[1:6])
    truth = sharp[3]
    single = max(psnr(f, truth) for f in aw.frames)
    mean = psnr(B.fuse_mean(aw), truth)
    wiener = psnr(B.fuse_wiener(aw), truth)
    assert mean > single + 3.0
    assert wiener > mean + 2.0, (single, mean, wiener)


# --------------------------------------------------------------------------- windows
def test_iter_burst_windows_stride_and_equivalence(stream):
    noisy = stream[0]
    plan = B.plan_burst("mean", frames=3, stride=2)
    out, info = B.drain(B.iter_burst(noisy, plan))
    assert out.shape == (3, 96, 96) and out.dtype == np.float32
    assert info["centres"] == [1, 3, 5] and len(info["shifts"]) == 3
    assert np.allclose(out[1], B.fuse_mean(B.align_window(noisy[2:5])), atol=1e-4)
    lazy = B.burst_lazy(da.from_array(noisy, chunks=(1, 96, 96)), plan)
    assert lazy.shape == out.shape
    assert np.allclose(lazy.compute(), out)
    via_dask, _ = B.drain(B.iter_burst(da.from_array(noisy, chunks=(2, 96, 96)), plan))
    assert np.array_equal(via_dask, out)


def test_burst_metadata_is_json(stream):
    import json

    out, meta = B.burst(stream[0][:4], "classical", frames=3)
    assert out.shape == (2, 96, 96)
    assert meta["method"] == "classical" and meta["fusion"]["name"] == "multi_frame_wiener"
    json.dumps(meta)


@pytest.mark.parametrize(
    ("stack", "kw", "match"),
    [
        (np.zeros((32, 32)), {}, "single frame"),
        (np.zeros((1, 32, 32)), {}, "at least 2 frames"),
        (np.zeros((3, 32, 32)), {"frames": 5}, "frames <= 3"),
        (np.zeros((3, 8, 32)), {"frames": 2}, "16"),
        (np.zeros((2, 3, 32, 32)), {"frames": 2}, "stack"),
    ],
)
def test_bad_stacks_are_clear_errors(stack, kw, match):
    with pytest.raises(ValueError, match=match):
        B.burst(stack, "mean", **kw)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="method"):
        B.plan_burst("magic")
    with pytest.raises(ValueError, match="frames"):
        B.plan_burst("mean", frames=1)
    with pytest.raises(ValueError, match="only used with method='network'"):
        B.plan_burst("mean", model="em-burst")
    with pytest.raises(ValueError, match="exposure"):
        B.plan_burst("classical", exposure=1.5)
    with pytest.raises(ValueError, match="NaN"):
        B.burst(np.full((3, 32, 32), np.nan), "mean", frames=3)


# --------------------------------------------------------------------------- network
def _inputs(b=2, t=5, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, t, n, n, generator=g)
    m = (torch.rand(b, t, n, n, generator=g) > 0.1).float()
    m[:, t // 2] = 1
    v = torch.randn(b, t, 2, generator=g) * 4
    base = torch.rand(b, 1, n, n, generator=g)
    return x, m, v, base


def test_network_any_frame_count_and_order_invariant():
    torch.manual_seed(0)
    net = BurstDenseUNet(BurstDenseUNetConfig(channels=8, growth=4)).eval()
    with torch.no_grad():
        for p in net.parameters():  # a non-trivial network (the tail starts near zero)
            p.add_(0.05 * torch.randn_like(p))
    for t in (3, 4, 8):
        x, m, v, base = _inputs(t=t)
        with torch.inference_mode():
            y = net(x, m, v, base)
            order = torch.randperm(t)
            yp = net(x[:, order], m[:, order], v[:, order], base)
        assert y.shape == (2, 1, 32, 32)
        assert float((y - yp).abs().max()) < 1e-4
        assert float((y - base).abs().max()) > 1e-3  # the permutation test is not vacuous


@needs_model
def test_bundled_model_is_order_invariant():
    from em_restore.backend.models import load_model

    model = load_model("em-burst", device="cpu")
    x, m, v, base = _inputs(b=1, t=6, n=64, seed=3)
    with torch.inference_mode():
        y = model.net(x, m, v, base)
        for seed in range(3):
            order = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
            yp = model.net(x[:, order], m[:, order], v[:, order], base)
            assert float((y - yp).abs().max()) < 1e-4


@needs_model
def test_bundled_model_beats_classical_and_single_frames():
    """Held-out simulated windows (seeds the training never used)."""
    from em_restore.backend.models import load_model
    from em_restore.backend.models.burst import predict_burst

    model = load_model("em-burst", device="cpu")
    gains_single, gains_classical = [], []
    for i in range(6):
        aw, truth, _ = simulated_window(
            np.random.default_rng([424242, i]), BurstRecipe(size=96, frames=5)
        )
        net = psnr(predict_burst(model, aw), truth)
        gains_single.append(net - max(psnr(f, truth) for f in aw.frames))
        gains_classical.append(net - psnr(B.fuse_wiener(aw), truth))
    assert np.mean(gains_single) > 1.5, gains_single
    assert np.mean(gains_classical) > 0.2, gains_classical


@needs_model
def test_network_plan_records_the_model(stream):
    out, meta = B.burst(stream[0][:5], "network", frames=5, device="cpu")
    assert out.shape == (1, 96, 96) and np.isfinite(out).all()
    assert meta["model"]["name"] == "em-burst" and len(meta["model"]["sha256"]) == 64


def test_denoise_refuses_a_burst_model_and_burst_a_denoiser():
    from em_restore.backend.models import ModelError

    with pytest.raises(ModelError, match="not a burst model"):
        B.plan_burst("network", model="em-denoise-fast")
    if HAVE_MODEL:
        from em_restore.backend.models.inference import plan_model

        with pytest.raises(ModelError, match="not a denoiser"):
            plan_model("em-burst")


# --------------------------------------------------------------------------- training
def test_dihedral_vectors_follow_the_images():
    img = np.zeros((9, 9))
    img[4, 4], img[4, 6] = 1, 2  # displacement (0, +2) from the 1 to the 2
    for k in range(8):
        t = dihedral(img, k)
        a, b = np.argwhere(t == 1)[0], np.argwhere(t == 2)[0]
        assert np.allclose(b - a, dihedral_vec(np.array([0.0, 2.0]), k)), k


def test_training_runs_and_learns_a_little():
    cfg = BurstTrainConfig(
        arch_params={"channels": 8, "growth": 4},
        steps=12,
        batch=2,
        patch=32,
        pool=4,
        val_windows=2,
        val_size=32,
        val_every=6,
        warmup=2,
        max_frames=5,
        recipe=BurstRecipe(size=48, frames=5),
    )
    gen = iter_train_burst(cfg)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    losses = [e.loss for e in events if type(e).__name__ == "TrainStep"]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert result.best_step in (0, 6, 12) and isinstance(result.net, BurstDenseUNet)


def test_an_interrupted_burst_training_resumes_to_the_same_weights(tmp_path):
    from em_restore.backend.models.training import Validation

    cfg = BurstTrainConfig(
        arch_params={"channels": 8, "growth": 4},
        steps=8,
        batch=2,
        patch=32,
        pool=3,
        val_windows=2,
        val_size=32,
        val_every=3,
        warmup=2,
        max_frames=5,
        recipe=BurstRecipe(size=48, frames=5),
    )
    whole = train_burst(cfg)
    state = tmp_path / "training-state.pt"
    run = iter_train_burst(cfg, checkpoint=state)
    for event in run:  # stopped, as a killed process would be, after the step-6 validation
        if isinstance(event, Validation) and event.step == 6:
            break
    run.close()
    resumed = train_burst(cfg, checkpoint=state, resume=True)
    for k, v in whole.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    vals = [(v.step, v.loss) for v in resumed.history if isinstance(v, Validation)]
    assert vals == [(v.step, v.loss) for v in whole.history if isinstance(v, Validation)]
    assert [v.step for v in resumed.history if isinstance(v, Validation)] == [0, 3, 6, 8]
    other = BurstTrainConfig(**{**cfg.__dict__, "seed": 1})
    with pytest.raises(ValueError, match=r"other settings \(seed\)"):
        train_burst(other, checkpoint=state, resume=True)
