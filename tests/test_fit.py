"""Training on the user's own data (backend.models.datasets and .fit): numbers, not shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from em_restore.backend import simulate as sim  # noqa: E402
from em_restore.backend.models import datasets as ds  # noqa: E402
from em_restore.backend.models import default_model_name, load_model, predict_frame  # noqa: E402
from em_restore.backend.models import fit as F  # noqa: E402
from em_restore.backend.models.nets import build_network, network_params  # noqa: E402
from em_restore.backend.models.training import run_training  # noqa: E402
from tests.conftest import range_psnr as _psnr  # noqa: E402

TINY = {"channels": 8, "unshuffle": 2, "blocks": [1, 1, 1]}


@pytest.fixture(scope="module")
def recordings():
    """Low-dose TEM images (10 e-/px), misregistered high-dose twins, and the truth."""
    noisy, high, truth, shifts = [], [], [], []
    for i in range(6):
        gen = np.random.default_rng([99, i])
        spec, _ = sim.random_specimen((104, 104), rng=gen, kinds=("nanoparticles",))
        shift = gen.uniform(-1.5, 1.5, 2)
        here = sim.subpixel_crop(spec, (4.0, 4.0), (96, 96))
        there = sim.subpixel_crop(spec, tuple(4.0 + shift), (96, 96))
        x, t = sim.simulate_acquisition(
            np.maximum(here, 0), sim.AcquisitionConfig(dose=10.0), rng=gen, return_expected=True
        )
        h = sim.simulate_acquisition(
            np.maximum(there, 0), sim.AcquisitionConfig(dose=1000.0, gain=3.0, offset=50.0), rng=gen
        )
        noisy.append(x)
        high.append(h)
        truth.append(t)
        shifts.append(shift)
    return noisy, high, truth, shifts


# ----------------------------------------------------------------------------- data
def test_register_pair_finds_subpixel_shift_and_intensity_map(recordings):
    noisy, high, _, shifts = recordings
    for x, h, s in zip(noisy, high, shifts, strict=True):
        r = ds.register_pair(x, h)
        # crop(spec, 4 + s) is crop(spec, 4) moved by -s: shifting it by +s aligns it.
        assert np.allclose(r["shift"], s, atol=0.25)
        assert r["correlation"] > 0.5
        # high dose: 3 ADU/e-, 1000 e-/px, offset 50 -> noisy ~ (10/3000) * high - 10*50/3000
        assert r["gain"] == pytest.approx(10 / 3000, rel=0.1)
        assert r["target"].shape == x[r["crop"]].shape


def test_paired_data_refuses_mismatched_pairs(recordings):
    noisy, high, _, _ = recordings
    with pytest.raises(ValueError, match=r"pair 1: .*does not match"):
        ds.PairedData([noisy[0], noisy[1]], [high[0], high[3]])
    with pytest.raises(ValueError, match="2 noisy images but 3 clean"):
        ds.PairedData(noisy[:2], high[:3])
    with pytest.raises(ValueError, match="inverted contrast"):
        ds.PairedData(noisy[:1], [-high[0]])
    with pytest.raises(ValueError, match="at least 32"):
        ds.NoisyData(np.zeros((20, 20)))
    with pytest.raises(ValueError, match="NaN"):
        ds.NoisyData(np.full((64, 64), np.nan))


def test_validation_split_holds_out_whole_images_or_strips(recordings):
    noisy = recordings[0]
    many = ds.NoisyData(noisy, val_fraction=0.2)  # 6 images: 1 held out whole
    assert len(many.sampler.xs) == 5
    few = ds.NoisyData(noisy[:2], val_fraction=0.2)  # strips of 32 rows held out
    assert [x.shape for x in few.sampler.xs] == [(64, 96), (64, 96)]
    list(few.iter_prepare(16, 64))
    assert all(v.inputs[0].shape[-2] == 32 for v in few.validation)


def test_neighbour_indices_pick_two_adjacent_pixels():
    i1, i2 = F.n2n_indices(np.random.default_rng(0), (10000,))
    assert set(np.unique(i1)) == {0, 1, 2, 3}
    dy = np.abs(i1 // 2 - i2 // 2)
    dx = np.abs(i1 % 2 - i2 % 2)
    assert np.all(dy + dx == 1)  # edge neighbours: never the same pixel, never diagonal
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    g1, g2 = F.n2n_subsample(
        x, torch.zeros(1, 1, 2, 2, dtype=torch.long), torch.ones(1, 1, 2, 2, dtype=torch.long)
    )
    assert g1.flatten().tolist() == [0, 2, 8, 10] and g2.flatten().tolist() == [1, 3, 9, 11]


def test_simulated_data_from_user_clean_images(recordings):
    truth = recordings[2]
    data = ds.SimulatedData(
        truth[:2], modality="tem", dose_range=(5, 5), pool=4, size=64, val_images=2
    )
    list(data.iter_prepare(16, 64))
    (x,), y = data.batch(np.random.default_rng(0), 3, 32)
    assert x.shape == y.shape == (3, 1, 32, 32)
    assert data.describe()["specimens"] == "user clean images"
    # the noisy input scatters around its target by Poisson noise at 5 e-/px
    v = data.validation[0]
    assert 0.2 < float(np.std(v.inputs[0] - v.target)) / float(np.std(v.target)) < 5


def test_config_and_mode_errors(recordings):
    noisy = recordings[0]
    with pytest.raises(ValueError, match="needs the l2 loss"):
        F.fit(F.FitConfig(loss="l1"), ds.NoisyData(noisy))
    with pytest.raises(ValueError, match="does not fit burst data"):
        F.fit(F.FitConfig(from_scratch=True, architecture="fast_denoiser"), ds.BurstData(pool=1))
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        F.fit(F.FitConfig(epochs=0), ds.NoisyData(noisy))


# ----------------------------------------------------------------------------- training
def _cfg(**kw):
    base = dict(
        arch_params=TINY,
        epochs=4,
        steps_per_epoch=40,
        batch=8,
        patch=32,
        lr=2e-3,
        warmup=5,
        val_crop=64,
        from_scratch=True,
    )
    return F.FitConfig(**{**base, **kw})


def test_paired_training_learns_reloads_and_predicts_identically(recordings, tmp_path):
    """The issue's acceptance test: the loss falls, the checkpoint reloads, predictions match."""
    noisy, high, truth, _ = recordings
    data = ds.PairedData(noisy, high, seed=1)
    events = []
    cfg = _cfg()
    result = run_training(F.iter_train_model(cfg, data, tmp_path / "mine"), events.append)
    epochs = [e for e in events if isinstance(e, F.Epoch)]
    steps = [e for e in events if hasattr(e, "step") and not isinstance(e, F.Epoch)]
    assert len(epochs) == 4 and len(steps) == 160
    assert np.mean([s.loss for s in steps[-40:]]) < 0.8 * np.mean([s.loss for s in steps[:40]])
    assert epochs[-1].val_loss < 0.8 * epochs[0].val_loss
    assert result.best_psnr > result.input_psnr + 3  # held-out crops, dB in ADU
    assert result.best_ssim > result.input_ssim
    assert epochs[-1].preview.shape == (64, 64)
    model = load_model(tmp_path / "mine", device="cpu")
    assert (
        model.config.task == "denoise" and model.config.metrics["best_epoch"] == result.best_epoch
    )
    x = noisy[0]
    a = predict_frame(model, x)
    with torch.inference_mode():
        xn = (x - np.percentile(x, 0.1)) / (np.percentile(x, 99.9) - np.percentile(x, 0.1))
        b = result.net(torch.from_numpy(xn[None, None].astype(np.float32))).numpy()[0, 0]
    b = b * (np.percentile(x, 99.9) - np.percentile(x, 0.1)) + np.percentile(x, 0.1)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.ptp(x))
    assert _psnr(a, truth[0]) > _psnr(x, truth[0]) + 3
    card = (tmp_path / "mine" / F.CARD_FILE).read_text()
    assert "held-out validation: PSNR" in card and "registration" in card


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(recordings, tmp_path):
    noisy = recordings[0]
    cfg = _cfg(epochs=3, steps_per_epoch=4)
    full = F.fit(cfg, ds.NoisyData(noisy), checkpoint=tmp_path / "a.pt")
    gen = F.iter_fit(cfg, ds.NoisyData(noisy), checkpoint=tmp_path / "b.pt")
    for event in gen:  # stop after the second epoch, as a cancel or a crash would
        if isinstance(event, F.Epoch) and event.epoch == 2:
            break
    gen.close()
    resumed = F.fit(cfg, ds.NoisyData(noisy), checkpoint=tmp_path / "b.pt", resume=True)
    assert [e.epoch for e in resumed.history] == [1, 2, 3]
    for k, v in full.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    with pytest.raises(ValueError, match="other settings"):
        F.fit(
            _cfg(epochs=3, steps_per_epoch=5),
            ds.NoisyData(noisy),
            checkpoint=tmp_path / "b.pt",
            resume=True,
        )


def test_self_supervised_training_denoises_without_clean_images(recordings):
    noisy, _, truth, _ = recordings
    result = F.fit(_cfg(epochs=4, steps_per_epoch=40), ds.NoisyData(noisy, seed=2))
    assert result.loss == "l2" and result.best_psnr is None
    vl = [e.val_loss for e in result.history]
    assert min(vl) < vl[0]
    x = noisy[1]
    with torch.inference_mode():
        lo, hi = np.percentile(x, [0.1, 99.9])
        out = result.net(torch.from_numpy(((x - lo) / (hi - lo))[None, None].astype(np.float32)))
    out = out.numpy()[0, 0] * (hi - lo) + lo
    assert _psnr(out, truth[1]) > _psnr(x, truth[1]) + 2


def test_early_stopping_and_time_limit(recordings):
    noisy = recordings[0]
    # A step of 1e-30 leaves every float32 weight as it is: the validation score
    # repeats, never improves, and training stops after exactly ``patience`` more epochs.
    result = F.fit(
        _cfg(epochs=30, steps_per_epoch=1, lr=1e-30, lr_min=1e-30, patience=2),
        ds.NoisyData(noisy),
    )
    assert result.stop_reason.startswith("early stopping") and len(result.history) == 3
    result = F.fit(_cfg(epochs=30, steps_per_epoch=1, max_minutes=1e-4), ds.NoisyData(noisy))
    assert result.stop_reason.startswith("time limit") and len(result.history) == 1


def test_burst_training_from_user_clean_images(recordings, tmp_path):
    truth = recordings[2]
    data = ds.BurstData(truth, frames=3, pool=4, size=64, val_images=2)
    cfg = F.FitConfig(
        architecture="burst_dense_unet",
        arch_params={"channels": 8, "growth": 4, "levels": 2},
        from_scratch=True,
        epochs=2,
        steps_per_epoch=2,
        batch=2,
        patch=32,
        val_crop=64,
    )
    result = run_training(F.iter_train_model(cfg, data, tmp_path / "b"))
    assert result.loss == "l1+ssim" and result.input_psnr is not None
    model = load_model(tmp_path / "b", device="cpu")
    assert model.config.task == "burst" and model.config.modalities == ("tem",)


def test_existing_model_folder_is_refused(recordings, tmp_path):
    noisy = recordings[0]
    cfg = _cfg(epochs=1, steps_per_epoch=1)
    run_training(F.iter_train_model(cfg, ds.NoisyData(noisy), tmp_path / "m"))
    with pytest.raises(FileExistsError, match="already holds a model"):
        next(F.iter_train_model(cfg, ds.NoisyData(noisy), tmp_path / "m"))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        next(F.iter_train_model(cfg, ds.NoisyData(noisy), tmp_path / "n", resume=True))


# ----------------------------------------------------------------------------- fine-tuning
def _ft(**kw):
    """A fine-tuning run (the default): the bundled model's network, rule and weights."""
    base = dict(epochs=2, steps_per_epoch=20, batch=8, patch=32, warmup=5, val_crop=64)
    return F.FitConfig(**{**base, **kw})


def _bundled_val_psnr(model, data) -> float:
    """The model's mean PSNR (ADU) on the run's validation crops, computed here."""
    scores = []
    with torch.inference_mode():
        for v in data.validation:
            out = model.net(torch.from_numpy(v.inputs[0])).numpy()[0, 0]
            scores.append(_psnr(v.to_adu(out), v.to_adu(v.target[0, 0])))
    return float(np.mean(scores))


def test_fine_tuning_starts_where_the_bundled_model_is_and_records_it(recordings, tmp_path):
    noisy, high, _, _ = recordings
    # no modality given: the run starts from the all-modality default
    bundled = load_model(default_model_name(None), device="cpu")
    # the dataset's own rule is replaced by the start model's
    data = ds.PairedData(noisy, high, rule={"kind": "percentile", "low": 2.0, "high": 98.0})
    # A step of 1e-30 leaves every weight as it is: epoch 1 scores what the model scores.
    cfg = _ft(epochs=1, steps_per_epoch=2, lr=1e-30, lr_min=1e-30)
    result = run_training(F.iter_train_model(cfg, data, tmp_path / "ft"))
    assert data.rule == bundled.config.normalisation
    own = _bundled_val_psnr(bundled, data)
    assert result.start["val_psnr_db"] == pytest.approx(own, abs=1e-4)
    assert result.history[0].val_psnr == pytest.approx(own, abs=1e-4)
    assert result.start["val_psnr_db"] > result.input_psnr + 1  # the bundled model denoises
    # no epoch beat the start: its weights are what the folder holds
    assert result.best_epoch == 0
    mine = load_model(tmp_path / "ft", device="cpu")
    for k, v in bundled.net.state_dict().items():
        assert torch.equal(v, mine.net.state_dict()[k]), k
    cfg_out = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg_out["training"]["fine_tuned_from"] == {
        "name": bundled.name,
        "weights_sha256": bundled.sha256,
    }
    assert cfg_out["training"]["start_val_psnr_db"] == pytest.approx(own, abs=1e-3)
    assert cfg_out["training"]["config"]["lr"] == 1e-30
    for key in ("architecture", "arch_params", "normalisation"):
        assert cfg_out[key] == bundled.config.to_dict()[key], key
    assert "fine-tuned from " + bundled.name in (tmp_path / "ft" / F.CARD_FILE).read_text()


def test_fine_tuning_beats_training_from_scratch_with_the_same_steps(recordings):
    noisy, high, _, _ = recordings
    tuned = F.fit(_ft(), ds.PairedData(noisy, high, seed=1))
    assert tuned.config.lr == F.LR_FINE_TUNE and tuned.start["name"] == default_model_name(None)
    bundled = tuned.net.__class__.__name__, network_params(tuned.net)
    scratch = F.fit(
        _ft(
            from_scratch=True,
            architecture=tuned.config.architecture,
            arch_params=tuned.config.arch_params,
        ),
        ds.PairedData(noisy, high, seed=1),
    )
    assert (scratch.net.__class__.__name__, network_params(scratch.net)) == bundled
    assert scratch.start is None and scratch.config.lr == F.LR_SCRATCH
    # the same network and 40 steps: the start model's weights are worth several dB
    assert tuned.best_psnr > scratch.best_psnr + 3
    assert tuned.best_psnr >= tuned.start["val_psnr_db"]  # never below where it started


def test_from_scratch_starts_from_seeded_random_weights(recordings):
    noisy = recordings[0]
    cfg = _cfg(epochs=1, steps_per_epoch=1, lr=1e-30, lr_min=1e-30)
    result = F.fit(cfg, ds.NoisyData(noisy))
    torch.manual_seed(cfg.seed)
    fresh = build_network("fast_denoiser", TINY)
    for k, v in fresh.state_dict().items():  # a 1e-30 step moves a weight by 1e-30 at most
        torch.testing.assert_close(v, result.net.state_dict()[k], rtol=0, atol=1e-25)
    assert result.start is None and "fine_tuned_from" not in result.record()
    plan = F.check_fit(F.FitConfig(from_scratch=True), ds.NoisyData(noisy))
    assert (plan.config.architecture, plan.config.lr, plan.start) == ("fast_denoiser", 1e-3, None)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"architecture": "unet_resnet18"}, "got unet_resnet18: drop the choice, or pass"),
        ({"arch_params": TINY}, "to choose an architecture"),
        ({"start": "em-burst"}, "em-burst is a burst model and cannot start denoise training"),
        ({"start": "em-denoise-fast", "from_scratch": True}, "exclude each other"),
        ({"start": "no-such-model"}, "no model named or found at 'no-such-model'"),
    ],
)
def test_fine_tuning_refuses_a_conflicting_choice_in_one_line(recordings, tmp_path, kw, message):
    with pytest.raises(ValueError, match=message) as err:
        next(F.iter_train_model(_ft(**kw), ds.NoisyData(recordings[0]), tmp_path / "m"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "m").exists()


def test_burst_training_fine_tunes_the_bundled_burst_model(recordings):
    data = ds.BurstData(recordings[2], frames=3, pool=2, size=64, val_images=1)
    plan = F.check_fit(F.FitConfig(patch=32), data)
    assert plan.start.name == "em-burst" and plan.config.architecture == "burst_dense_unet"
    assert plan.config.arch_params == plan.start.config.arch_params


def test_resuming_a_fine_tuned_run_gives_the_same_weights(recordings, tmp_path):
    noisy = recordings[0]
    cfg = _ft(epochs=3, steps_per_epoch=3, batch=4)
    full = F.fit(cfg, ds.NoisyData(noisy), checkpoint=tmp_path / "a.pt")
    gen = F.iter_fit(cfg, ds.NoisyData(noisy), checkpoint=tmp_path / "b.pt")
    for event in gen:
        if isinstance(event, F.Epoch) and event.epoch == 2:
            break
    gen.close()
    resumed = F.fit(cfg, ds.NoisyData(noisy), checkpoint=tmp_path / "b.pt", resume=True)
    assert [e.epoch for e in resumed.history] == [1, 2, 3]
    assert resumed.start == full.start and resumed.best_epoch == full.best_epoch
    for k, v in full.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    with pytest.raises(ValueError, match=r"other settings \(.*from_scratch"):
        F.fit(
            _ft(epochs=3, steps_per_epoch=3, batch=4, from_scratch=True, architecture=None),
            ds.NoisyData(noisy),
            checkpoint=tmp_path / "b.pt",
            resume=True,
        )


def test_self_supervised_training_refuses_a_start_model_in_noise_units(recordings, tmp_path):
    """N2N learns E[f(x)] in the stabilised domain; mapped back algebraically it is
    biased at low dose, so a noise-rule start model is refused for it, in one line."""
    from em_restore.backend.models import save_model
    from em_restore.backend.models.store import ModelConfig

    v1 = load_model("em-denoise-fast-v1", device="cpu")
    folder = save_model(
        tmp_path / "noise-units",
        v1.net,
        ModelConfig(
            name="noise-units",
            architecture=v1.config.architecture,
            arch_params=v1.config.arch_params,
            normalisation={"kind": "noise", "scale": 4.0},
        ),
    )
    with pytest.raises(ValueError, match="pass --from-scratch") as err:
        F.check_fit(F.FitConfig(start=str(folder)), ds.NoisyData(recordings[0]))
    assert "\n" not in str(err.value)
    # paired data may start from it
    pairs = ds.PairedData(recordings[0], recordings[1])
    assert F.check_fit(F.FitConfig(start=str(folder)), pairs).rule["kind"] == "noise"


def test_the_torch_free_request_tables_match_the_networks():
    from em_restore.backend.models import fit_config as C
    from em_restore.backend.models.nets import ARCHITECTURES

    assert {a for t in C.TASKS for a in C.TASK_ARCHITECTURES[t]} == set(ARCHITECTURES)
    for task in C.TASKS:
        assert C.SCRATCH_ARCHITECTURE[task] in C.TASK_ARCHITECTURES[task]
    assert set(C.DOSE_DEFAULTS) == set(C.POOL_DEFAULTS) == set(C.TASKS)
    # the datasets' own defaults are the request's
    sim_data = ds.SimulatedData(None, pool=1)
    assert sim_data.dose_range == C.DOSE_DEFAULTS["denoise"]
    with pytest.raises(ValueError, match="burst networks train on simulated streams; X"):
        C.check_task_mode("burst", "self", "X")
