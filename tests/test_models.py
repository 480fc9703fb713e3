"""Deep models: networks, model files and registry, tiled inference, training, honesty."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from em_restore.backend import simulate as sim
from em_restore.backend.models import (
    ModelConfig,
    ModelError,
    TrainConfig,
    build_network,
    default_model_name,
    iter_predict,
    list_models,
    load_model,
    plan_model,
    predict,
    predict_frame,
    predict_lazy,
    save_model,
    train,
)
from em_restore.backend.models.inference import blend_window, tile_grid
from em_restore.backend.models.nets import network_params
from em_restore.backend.models.store import file_sha256
from tests.conftest import range_psnr as psnr

NORM = {"kind": "percentile", "low": 0.1, "high": 99.9}


@pytest.fixture(scope="module")
def model():
    return load_model(default_model_name("tem"), device="cpu")


def tiny_config(name="tiny", **kw) -> ModelConfig:
    return ModelConfig(
        name=name,
        architecture="fast_denoiser",
        arch_params={"channels": 8, "blocks": [1, 1, 1]},
        normalisation=NORM,
        **kw,
    )


# ------------------------------------------------------------------- networks
@pytest.mark.parametrize("arch", ["fast_denoiser", "unet_resnet18"])
def test_networks_keep_the_shape_and_start_as_identity(arch):
    params = {} if arch == "fast_denoiser" else {"width": 8, "decoder": [16, 8, 8, 8, 8]}
    net = build_network(arch, params).eval()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert torch.equal(y, x)  # zero-initialised output layer: residual = identity


def test_fast_network_has_no_transposed_convolutions_and_is_small():
    net = build_network("fast_denoiser")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) < 1.5e6
    ref = build_network("unet_resnet18")
    assert sum(p.numel() for p in ref.parameters()) > 10 * sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    "arch, params, words",
    [
        ("fast_denoiser", {"chanels": 8}, "unknown key"),
        ("fast_denoiser", {"channels": -1}, "positive"),
        ("fast_denoiser", {"blocks": [1, 1]}, "3 entries"),
        ("fast_denoiser", {"unshuffle": 3}, "unshuffle"),
        ("resnet50", {}, "unknown architecture"),
    ],
)
def test_network_configs_are_strict(arch, params, words):
    with pytest.raises(ValueError, match=words):
        build_network(arch, params)


# ------------------------------------------------------------------- files and registry
def test_model_folder_round_trip_is_exact_and_hash_checked(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    net = cfg.build()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_model(tmp_path / "m", net, cfg)
    stored = json.loads((tmp_path / "m" / "config.json").read_text())
    assert stored["weights_sha256"] == file_sha256(tmp_path / "m" / "model.safetensors")
    loaded = load_model(tmp_path / "m", device="cpu")
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.net.state_dict()[k])
    assert loaded.to_metadata()["sha256"] == stored["weights_sha256"]
    with pytest.raises(FileExistsError):
        save_model(tmp_path / "m", net, cfg)
    # a damaged weights file is refused with a one-line reason
    w = tmp_path / "m" / "model.safetensors"
    blob = bytearray(w.read_bytes())
    blob[-1] ^= 0xFF
    w.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="does not match"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"extra": 1}, "unknown key"),
        ({"format": "pickle"}, "not an em-restore model"),
        ({"architecture": "nope"}, "unknown architecture"),
        ({"normalisation": {"kind": "percentile", "low": 50, "high": 10}}, "low < high"),
        ({"modalities": ["xray"]}, "subset of tem, stem, sem"),
    ],
)
def test_model_configs_are_strict(tmp_path, change, words):
    cfg = tiny_config()
    save_model(tmp_path / "m", cfg.build(), cfg)
    path = tmp_path / "m" / "config.json"
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=words):
        load_model(tmp_path / "m")


def test_weights_of_another_architecture_are_refused(tmp_path):
    cfg = tiny_config()
    save_model(tmp_path / "m", cfg.build(), cfg)
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    data["arch_params"] = {"channels": 16}
    data["weights_sha256"] = ""
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="do not fit"):
        load_model(tmp_path / "m")


def test_registry_lists_bundled_and_user_models(tmp_path, monkeypatch):
    monkeypatch.setenv("EM_RESTORE_MODELS", str(tmp_path))
    bundled = {e.name for e in list_models()}
    assert {default_model_name(m) for m in ("tem", "stem", "sem")} <= bundled
    cfg = tiny_config("my-model")
    save_model(tmp_path / "mine", cfg.build(), cfg)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    entries = {e.name: e for e in list_models()}
    assert entries["my-model"].source == "user"
    assert "broken" not in entries
    assert load_model("my-model").name == "my-model"
    with pytest.raises(ModelError, match="no model named"):
        load_model("no-such-model")


def test_unknown_images_get_the_all_modality_network_and_tem_sem_their_specialists():
    general = load_model(default_model_name(None))
    assert set(general.config.modalities) == {"tem", "stem", "sem"}
    assert default_model_name("stem") == general.name
    for modality in ("TEM", "sem"):
        own = load_model(default_model_name(modality))
        assert own.name != general.name and list(own.config.modalities) == [modality.lower()]
    with pytest.raises(ModelError, match="modality must be one of sem, stem, tem"):
        default_model_name("unknown")
    plan = plan_model(None, metadata={})
    assert plan.model.name == general.name and plan.modality_source.startswith("unknown")


def test_the_tem_default_keeps_a_grating_that_an_all_modality_network_takes_for_stripes():
    """Nearly horizontal bars (80 deg, 7 px period) at 20 e-/px on a counting camera: the
    network trained on the scanned modalities too wipes them out as row stripes (below
    the raw frame); the TEM network, which never saw a scan row, keeps them."""
    from em_restore.backend.simulate import wide

    raw, truth, info = wide.wide_pair(
        np.random.default_rng([7, 2]), (128, 128), modality="tem", dose_range=(20, 20),
        distortions=("counting",), specimens=("gratings",),
    )  # fmt: skip
    assert info.params["specimen_angle_rad"] == pytest.approx(1.398, abs=1e-3)
    raw = raw.astype(np.float32)
    tem = psnr(predict_frame(load_model(default_model_name("tem")), raw), truth)
    general = psnr(predict_frame(load_model(default_model_name(None)), raw), truth)
    assert tem >= psnr(raw, truth) + 2.0 and tem >= general + 5.0, (tem, general)


ZEISS_SEM = (
    Path(__file__).resolve().parents[1].parent
    / "shared/data/formats/tiff/test_tiff_Zeiss_SEM_512pix.tif"
)


@pytest.mark.skipif(not ZEISS_SEM.is_file(), reason=f"vendor file not found at {ZEISS_SEM}")
def test_the_counts_of_a_real_zeiss_sem_micrograph_support_the_sem_default_on_half_of_it():
    """A real 8-bit Zeiss SEM image at good signal: the all-modality network smoothed its
    fine surface grains away as noise, and the fidelity check rejected 11 of its 12 tiles
    (2026-12-07); the SEM network keeps them and the counts back it on half the tiles."""
    from em_restore import io
    from em_restore.backend.models.guarded import GuardedPlan

    image = io.read(ZEISS_SEM)
    plan = plan_model(None, metadata=image.metadata)
    assert (plan.modality, plan.modality_source) == ("sem", "file metadata")
    assert plan.model.name == default_model_name("sem")
    frame = np.asarray(image.data, np.float32)
    _, _, record = GuardedPlan(plan).apply_frame_checked(frame)
    assert record["tiles"] == 12 and record["tiles_fallen_back"] <= 6, record


def test_bundled_weights_fit_the_size_budget():
    from em_restore.backend.models.store import bundled_model_dir

    total = sum(p.stat().st_size for p in bundled_model_dir().rglob("*.safetensors"))
    assert 0 < total <= 30e6
    for entry in list_models():
        if entry.source == "bundled":
            assert entry.config.training["data"].startswith("em_restore.backend.simulate")
            assert entry.config.weights_sha256 == file_sha256(entry.path / "model.safetensors")


# ------------------------------------------------------------------- inference
def test_tile_grid_covers_the_image_on_the_stride():
    for shape in [(512, 300), (2048, 2048), (256, 256), (272, 1000)]:
        grid = tile_grid(shape, 256, 64)
        cover = np.zeros(shape, bool)
        for y, x in grid:
            cover[y : y + 256, x : x + 256] = True
            assert y % 16 == 0 or y == max(shape[0] - 256, 0)
        assert cover.all()


def test_blend_windows_sum_to_one_across_an_overlap():
    t, o = 128, 32
    a = blend_window(t, o, (False, False, False, True))[0]
    b = blend_window(t, o, (False, False, True, False))[0]
    overlap = a[t - o :] + b[:o]
    np.testing.assert_allclose(overlap, 1.0, atol=1e-12)
    assert a[-1] == 0 and b[0] == 0 and a[0] == 1


def test_tiles_reproduce_whole_image_prediction_at_2048(model):
    clean, _ = sim.random_specimen((2048, 2048), rng=11, kinds=("tissue",))
    noisy = sim.simulate_acquisition(clean, sim.AcquisitionConfig.low_dose_tem(dose=10), rng=12)
    whole = predict_frame(model, noisy, tile=2048)
    tiled = predict_frame(model, noisy, tile=256)  # default overlap
    rel = np.abs(tiled - whole).max() / np.ptp(whole)
    assert rel < 1e-3, rel


@pytest.mark.parametrize("shape", [(37, 50), (255, 129), (2, 2), (513, 17)])
def test_any_size_is_padded_and_cropped(model, shape):
    x = np.random.default_rng(0).poisson(20, size=shape).astype(np.uint16)
    y = predict_frame(model, x)
    assert y.shape == shape and y.dtype == np.float32 and np.isfinite(y).all()


def test_stacks_numpy_dask_and_lazy_agree_and_inputs_stay_untouched(model):
    clean, _ = sim.nanoparticles((96, 80), pixel_size_nm=0.5, rng=1)
    frames = np.stack(
        [
            sim.simulate_acquisition(clean, sim.AcquisitionConfig.low_dose_tem(dose=5), rng=k)
            for k in range(3)
        ]
    )
    before = frames.copy()
    eager = predict(model, frames)
    lazy = predict_lazy(model, da.from_array(frames, chunks=(2, 48, 40)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), eager)
    np.testing.assert_array_equal(predict(model, da.from_array(frames, chunks=(1, 96, 80))), eager)
    np.testing.assert_array_equal(eager[1], predict_frame(model, frames[1]))
    np.testing.assert_array_equal(frames, before)


def test_intensity_scale_and_offset_are_undone(model):
    clean, _ = sim.nanoparticles((128, 128), pixel_size_nm=0.5, rng=2)
    noisy = sim.simulate_acquisition(clean, sim.AcquisitionConfig.low_dose_tem(dose=20), rng=3)
    base = predict_frame(model, noisy)
    moved = predict_frame(model, noisy.astype(np.float64) * 7.5 + 300.0)
    np.testing.assert_allclose(moved, base * 7.5 + 300.0, rtol=1e-4, atol=1e-2 * 7.5)


def test_iter_predict_reports_progress_and_can_be_closed(model):
    stack = np.random.default_rng(0).poisson(10, size=(3, 96, 96)).astype(np.float32)
    gen = iter_predict(model, stack, tile=64, overlap=32, batch=1)
    first = next(gen)
    assert first.done == 0 and first.total > 3
    second = next(gen)
    assert second.done == 1
    gen.close()


def test_a_constant_frame_is_returned_as_it_is_with_a_full_progress_count(model):
    stack = np.random.default_rng(1).poisson(10, size=(3, 96, 96)).astype(np.float32)
    stack[1] = 7.0  # a blanked frame between two real ones
    gen = iter_predict(model, stack, tile=64, overlap=32, batch=1)
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        out = stop.value
    np.testing.assert_array_equal(out[1], 7.0)  # not the network's faint texture
    assert np.ptp(out[0]) > 0 and np.ptp(out[2]) > 0
    assert events[-1].done == events[-1].total  # the blank frame counts its tiles
    np.testing.assert_array_equal(predict_frame(model, np.zeros((40, 40))), 0.0)


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros(5), "2-D|at least 2 axes"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.zeros((8, 8), complex), "real"),
    ],
)
def test_bad_frames_raise_naming_the_problem(model, bad, words):
    with pytest.raises(ValueError, match=words):
        predict(model, bad)


def test_bad_tiling_is_refused(model):
    with pytest.raises(ValueError, match=f"multiple of {model.net.stride}"):
        predict_frame(model, np.zeros((64, 64)), tile=100)
    with pytest.raises(ValueError, match="overlap"):
        predict_frame(model, np.zeros((64, 64)), tile=64, overlap=64)


def test_the_flip_rotation_ensemble_averages_the_transformed_passes(model):
    rng = np.random.default_rng(5)
    x = rng.poisson(4.0, (72, 104)).astype(np.float64)
    one = predict_frame(model, x)
    assert np.array_equal(predict_frame(model, x, ensemble=1), one)
    # by hand: each of the 8 flips/rotations predicted, turned back and averaged
    passes = []
    for k in range(8):
        y = predict_frame(
            model,
            np.ascontiguousarray(np.rot90(x, k % 4)[:, ::-1] if k >= 4 else np.rot90(x, k % 4)),
        )
        y = y[:, ::-1] if k >= 4 else y
        passes.append(np.rot90(y, -(k % 4)))
    eight = predict_frame(model, x, ensemble=8)
    np.testing.assert_allclose(eight, np.mean(passes, axis=0), atol=2e-4 * np.ptp(x))
    np.testing.assert_allclose(
        predict_frame(model, x, ensemble=2), np.mean(passes[:2], axis=0), atol=2e-4 * np.ptp(x)
    )
    assert np.abs(eight - one).max() > 1e-3 * np.ptp(one)  # the passes do differ
    # the 8-ensemble commutes with the group: restoring the rotated frame rotates the result
    turned = predict_frame(model, np.ascontiguousarray(np.rot90(x)), ensemble=8)
    np.testing.assert_allclose(turned, np.rot90(eight), atol=2e-4 * np.ptp(x))
    # tiles and stacks take it too
    # (each tile is turned: tiny tiles agree with the whole frame about as well as without)
    tiles = {"tile": 48, "overlap": 16}
    tiled_one = psnr(predict_frame(model, x, **tiles), one)
    tiled_four = psnr(
        predict_frame(model, x, ensemble=4, **tiles), predict_frame(model, x, ensemble=4)
    )
    assert tiled_four > tiled_one - 1.5 and tiled_one > 35, (tiled_four, tiled_one)
    stack = predict(model, np.stack([x, x]), ensemble=4)
    np.testing.assert_array_equal(stack[1], predict_frame(model, x, ensemble=4))


def test_the_ensemble_gains_on_low_dose_frames_and_is_recorded(model):
    gains = []
    for seed, config in enumerate(
        [sim.AcquisitionConfig.low_dose_tem(dose=2.0), sim.AcquisitionConfig.stem(dose=5.0)]
    ):
        clean, _ = sim.nanoparticles((160, 160), pixel_size_nm=0.5, diameters_nm=(4, 9), rng=seed)
        noisy, truth = sim.simulate_acquisition(clean, config, rng=40 + seed, return_expected=True)
        single = psnr(predict_frame(model, noisy), truth)
        gains.append(psnr(predict_frame(model, noisy, ensemble=8), truth) - single)
    assert np.mean(gains) > 0.2 and min(gains) > -0.1, gains  # (measured +0.60, -0.01)
    plan = plan_model(None, modality="tem", device="cpu", ensemble=4)
    assert plan.to_metadata()["ensemble"] == 4
    assert plan_model(None, modality="tem", device="cpu").to_metadata()["ensemble"] == 1


@pytest.mark.parametrize("bad", [0, 3, 16, True, 2.5])
def test_a_bad_ensemble_is_refused_in_one_line(model, bad):
    with pytest.raises(ValueError, match="ensemble must be one of 1, 2, 4, 8"):
        predict_frame(model, np.zeros((32, 32)), ensemble=bad)


def test_a_model_config_carries_its_ensemble_and_writes_it_only_when_set(tmp_path):
    plain = tiny_config()
    assert "ensemble" not in plain.to_dict()  # files of one-pass models stay as they were
    cfg = tiny_config(ensemble=4)
    save_model(tmp_path / "m", cfg.build(), cfg)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["ensemble"] == 4
    loaded = load_model(tmp_path / "m", device="cpu")
    assert loaded.config.ensemble == 4
    assert plan_model(str(tmp_path / "m"), device="cpu").ensemble == 4
    assert plan_model(str(tmp_path / "m"), device="cpu", ensemble=1).ensemble == 1
    with pytest.raises(ModelError, match="ensemble must be one of"):
        tiny_config(ensemble=5)


# ------------------------------------------------------------------- quality and honesty
@pytest.mark.parametrize(
    "config",
    [
        sim.AcquisitionConfig.low_dose_tem(dose=5.0),
        sim.AcquisitionConfig.stem(dose=10.0),
        sim.AcquisitionConfig.sem(dose=10.0),
    ],
    ids=["tem", "stem", "sem"],
)
def test_model_beats_the_noisy_input_clearly(model, config):
    clean, _ = sim.nanoparticles((192, 192), pixel_size_nm=0.5, diameters_nm=(5, 12), rng=21)
    noisy, truth = sim.simulate_acquisition(clean, config, rng=22, return_expected=True)
    gain = psnr(predict_frame(model, noisy), truth) - psnr(noisy, truth)
    assert gain > 6.0, gain


NO_DEFECTS = {"spike_fraction": 0.0, "dead_fraction": 0.0}


@pytest.mark.parametrize(
    "config",
    [
        sim.AcquisitionConfig.low_dose_tem(dose=1.0, **NO_DEFECTS),
        sim.AcquisitionConfig.low_dose_tem(dose=5.0, **NO_DEFECTS),
        sim.AcquisitionConfig.high_dose_tem(**NO_DEFECTS),
        sim.AcquisitionConfig.stem(dose=10.0),
        sim.AcquisitionConfig.sem(dose=10.0),
    ],
    ids=["tem1", "tem5", "tem-high", "stem", "sem"],
)
def test_flat_field_gains_no_structure(model, config):
    """No blob above 3 sigma of the flat field's own noise after restoration.

    Detector defects are off here: a defect is real signal in the data, not structure
    the model invents (their removal is tested below).
    """
    flat = np.full((256, 256), 0.8)
    noisy, expected = sim.simulate_acquisition(flat, config, rng=5, return_expected=True)
    restored = predict_frame(model, noisy).astype(np.float64)
    sigma = float(np.std(noisy - expected))
    level = float(np.median(expected))
    blobs = np.abs(restored - level) > 3 * sigma
    assert ndi.label(blobs)[1] == 0
    # and it is smoother than the noise: the model does remove it
    assert np.std(restored) < 0.3 * sigma


def test_xray_spikes_are_mostly_removed(model):
    flat = np.full((256, 256), 0.8)
    config = sim.AcquisitionConfig.low_dose_tem(dose=5.0, spike_fraction=2e-4, dead_fraction=0.0)
    noisy, expected = sim.simulate_acquisition(flat, config, rng=6, return_expected=True)
    level = float(np.median(expected))
    spikes = noisy > level + 10 * np.sqrt(level)
    assert spikes.sum() >= 5
    restored = predict_frame(model, noisy)
    residual = (restored[spikes] - level) / (noisy[spikes] - level)
    assert np.median(residual) < 0.25, residual


@pytest.mark.parametrize("dose", [5.0, 10.0])
def test_particle_count_after_restoration_equals_the_truth(model, dose):
    """Otsu threshold, objects of at least 5 px: no particle lost, no blob invented.

    (At 5 e⁻/px the smallest particle comes out fainter: 7 px under the Otsu level of the
    restored frame, 61 px in the clean one; it is found, not sized, by this rule.)
    """
    clean, particles = sim.nanoparticles(
        (256, 256), pixel_size_nm=0.5, diameters_nm=(5, 10), n=14, min_gap_nm=3.0, rng=31
    )
    noisy = sim.simulate_acquisition(clean, sim.AcquisitionConfig.low_dose_tem(dose=dose), rng=32)

    def count(image) -> int:
        from skimage.filters import threshold_otsu

        image = np.asarray(image, dtype=np.float64)
        mask = image < threshold_otsu(image)  # bright-field: particles are dark
        labels, n = ndi.label(mask)
        sizes = ndi.sum(mask, labels, range(1, n + 1))
        return int(np.sum(sizes >= 5))

    assert count(predict_frame(model, noisy)) == len(particles)
    assert count(noisy) > 2 * len(particles)  # the raw frame cannot be counted this way


# ------------------------------------------------------------------- training
def _tiny_train_config(**kw) -> TrainConfig:
    """A training run of seconds: a tiny net, 48² pool images, validation every 3 steps."""
    cfg = TrainConfig(
        arch_params={"channels": 8, "blocks": [1, 1, 1]},
        batch=2,
        patch=32,
        pool=6,
        val_images=2,
        val_size=32,
        val_every=3,
        **kw,
    )
    return TrainConfig(**{**cfg.__dict__, "recipe": type(cfg.recipe)(image_size=48)})


def _save_tiny(folder, net, **config):
    """A trained tiny network saved as a model folder named after ``folder``."""
    return save_model(
        folder,
        net,
        ModelConfig(
            name=folder.name,
            architecture="fast_denoiser",
            arch_params=network_params(net),
            normalisation=NORM,
            **config,
        ),
    )


def test_training_is_reproducible_and_returns_the_best_checkpoint(tmp_path):
    cfg = _tiny_train_config(steps=6, seed=5)
    a, b = train(cfg), train(cfg)
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k
    vals = [e for e in a.history if type(e).__name__ == "Validation"]
    assert [v.step for v in vals] == [0, 3, 6]
    assert a.best_loss == min(v.loss for v in vals)
    record = a.record(cfg)
    json.dumps(record)
    assert record["config"]["seed"] == 5
    saved = _save_tiny(tmp_path / "t", a.net, training=record)
    assert load_model(saved).config.training["best_step"] == a.best_step


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path):
    from em_restore.backend.models.training import Validation, iter_train

    cfg = _tiny_train_config(steps=9, warmup=2, seed=7)
    whole = train(cfg)
    state = tmp_path / "training-state.pt"
    run = iter_train(cfg, checkpoint=state)
    for event in run:  # stopped (as a killed process would be) after the step-6 validation
        if isinstance(event, Validation) and event.step == 6:
            break
    run.close()
    assert state.is_file()
    resumed = train(cfg, checkpoint=state, resume=True)
    for k, v in whole.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    vals = [(v.step, v.loss) for v in resumed.history if isinstance(v, Validation)]
    assert vals == [(v.step, v.loss) for v in whole.history if isinstance(v, Validation)]
    assert resumed.best_step == whole.best_step
    other = TrainConfig(**{**cfg.__dict__, "seed": 8})
    with pytest.raises(ValueError, match=r"other settings \(seed\)"):
        train(other, checkpoint=state, resume=True)


def test_training_config_is_checked():
    with pytest.raises(ValueError, match="patch"):
        train(TrainConfig(patch=512))
    with pytest.raises(ValueError, match="steps"):
        train(TrainConfig(steps=0))


def test_fine_tuning_starts_from_the_named_model(tmp_path):
    """``start`` loads the named model's weights before the first step: with zero
    steps' worth of learning rate the result is that model bit for bit, and another
    architecture or normalisation is refused in one line."""
    base = train(_tiny_train_config(steps=3, seed=2))
    folder = _save_tiny(tmp_path / "base", base.net)
    cfg = _tiny_train_config(steps=3, seed=9, lr=1e-12, lr_min=1e-12, start=str(folder))
    tuned = train(cfg)
    for k, v in base.net.state_dict().items():
        assert torch.allclose(v, tuned.net.state_dict()[k], atol=1e-9), k
    scratch = train(_tiny_train_config(steps=3, seed=9, lr=1e-12, lr_min=1e-12))
    assert not all(
        torch.allclose(v, scratch.net.state_dict()[k]) for k, v in base.net.state_dict().items()
    )
    wider = _tiny_train_config(steps=3, start=str(folder))
    wider = TrainConfig(**{**wider.__dict__, "arch_params": {"channels": 12, "blocks": [1, 1, 1]}})
    with pytest.raises(ValueError, match="same architecture"):
        train(wider)
    other_rule = TrainConfig(**{**cfg.__dict__, "normalisation": {"kind": "noise", "scale": 4.0}})
    with pytest.raises(ValueError, match="same rule"):
        train(other_rule)


def test_a_mixed_recipe_draws_classic_pairs_at_its_fraction():
    from em_restore.backend.models.training import SimulationRecipe, simulated_pair

    mixed = SimulationRecipe(simulator="wide", classic_fraction=0.5, image_size=32)
    kinds = [
        type(simulated_pair(np.random.default_rng([4, i]), mixed)[2]).__name__ for i in range(40)
    ]
    classic = kinds.count("AcquisitionConfig")
    assert 10 <= classic <= 30, kinds  # binomial(40, 0.5): 10..30 holds with p > 0.999
    pure = SimulationRecipe(simulator="wide", image_size=32)
    a = simulated_pair(np.random.default_rng(3), pure)
    b = simulated_pair(np.random.default_rng(3), SimulationRecipe(simulator="wide", image_size=32))
    assert np.array_equal(a[0], b[0])  # a pure recipe draws nothing extra
    with pytest.raises(ValueError, match="classic_fraction"):
        train(TrainConfig(recipe=SimulationRecipe(classic_fraction=1.5, simulator="wide")))
    with pytest.raises(ValueError, match="simulator='wide'"):
        train(TrainConfig(recipe=SimulationRecipe(classic_fraction=0.5)))


def test_a_wide_recipe_draws_only_its_specimen_families():
    from em_restore.backend.models.training import SimulationRecipe, simulated_pair

    recipe = SimulationRecipe(
        simulator="wide", modalities=("tem",), specimens=("square", "hexagonal"), image_size=32
    )
    drawn = {simulated_pair(np.random.default_rng([8, i]), recipe)[2].specimen for i in range(12)}
    assert drawn == {"square", "hexagonal"}  # both drawn (p of missing one: 2 * 0.5**12)
    held = SimulationRecipe(
        simulator="wide", specimens=("square",), exclude_specimens=("square",), image_size=32
    )
    with pytest.raises(ValueError, match="specimens"):
        simulated_pair(np.random.default_rng(0), held)
    with pytest.raises(ValueError, match="simulator='wide'"):
        train(TrainConfig(recipe=SimulationRecipe(specimens=("square",))))


def test_a_checkpoint_from_before_a_new_setting_still_resumes():
    from em_restore.backend.models.loop import check_same_settings

    now = {"seed": 1, "start": None, "recipe": {"simulator": "wide", "classic_fraction": 0.0}}
    old = {"seed": 1, "recipe": {"simulator": "wide"}}
    check_same_settings("state.pt", old, now)  # settings added since, at their off value
    with pytest.raises(ValueError, match="start"):
        check_same_settings("state.pt", old, {**now, "start": "em-denoise-fast-v1"})
