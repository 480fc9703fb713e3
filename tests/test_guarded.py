"""The automatic default: the network's result is kept where the counts support it and
replaced by the classical plan's, tile by tile, where they do not."""

from __future__ import annotations

import numpy as np
import pytest

from em_restore.backend import denoise as dn
from em_restore.backend import simulate as sim
from em_restore.backend.models import plan_model
from em_restore.backend.models.guarded import FALLBACK_TILE, GuardedPlan, fallback_weight
from em_restore.backend.risk import TOLERANCE
from tests.conftest import range_psnr as _psnr


@pytest.fixture(scope="module")
def frame():
    clean, _ = sim.nanoparticles((256, 256), pixel_size_nm=1.0, rng=11)
    cfg = sim.AcquisitionConfig(modality="tem", dose=5.0)
    raw, truth = sim.simulate_acquisition(clean, cfg, rng=12, return_expected=True)
    return raw.astype(np.float64), truth


@pytest.fixture(scope="module")
def model_plan():
    return plan_model(None, modality="tem", device="cpu")


def test_a_supported_result_is_the_network_result_exactly(frame, model_plan):
    # checked only (--no-compare): the network plus the test
    raw, _ = frame
    plan = GuardedPlan(model_plan, compare=False)
    out = plan.apply_frame(raw)
    np.testing.assert_array_equal(out, model_plan.apply_frame(raw))
    assert plan.classical is None  # no fallback: the classical plan is never made
    meta = plan.to_metadata()
    assert meta["method"] == "model" and meta["checked"] is True
    assert meta["model"]["sha256"] == model_plan.model.sha256
    rec = meta["fallback"]["frames"][0]
    assert rec["tiles_fallen_back"] == 0 and rec["tiles"] == 4
    assert "supported" in plan.notice()


def test_invented_detail_falls_back_to_the_classical_plan_on_its_tile(frame, model_plan):
    raw, truth = frame

    class Painting:
        """The bundled network's result with a bright square painted into one tile."""

        def __init__(self, inner):
            self.inner = inner
            self.model = inner.model
            self.modality = inner.modality
            self.modality_source = inner.modality_source

        def apply_frame(self, x):
            out = self.inner.apply_frame(x).copy()
            out[20:100, 20:100] += 3.0  # 60 % of the level at 5 e-/px, in tile (0, 0)
            return out

        def to_metadata(self):
            return self.inner.to_metadata()

    plan = GuardedPlan(model_plan, compare=False)
    plan.model_plan = Painting(model_plan)
    out = plan.apply_frame(raw)
    rec = plan.frames[0]
    assert rec["tile_flagged"][0][0] > 0.3
    assert rec["tiles_fallen_back"] >= 1
    classical = dn.apply_plan(raw, plan.classical)
    painted = plan.model_plan.apply_frame(raw)
    # the painted tile is the classical result; a far tile is still the network's
    np.testing.assert_allclose(out[40:80, 40:80], classical[40:80, 40:80], rtol=1e-5)
    np.testing.assert_array_equal(out[200:, 200:], painted[200:, 200:])
    assert _psnr(out, truth) > _psnr(painted, truth) + 1.0
    assert "not supported" in plan.notice()
    meta = plan.to_metadata()["fallback"]
    assert meta["classical"]["method"] == plan.classical.method
    assert meta["frames"][0]["fallback_area"] > 0.1
    # compared too (the default): the checked result is what is weighed against the
    # classical one, so the painting stays out and the rest is not lost
    both = GuardedPlan(model_plan)
    both.model_plan = Painting(model_plan)
    out2 = both.apply_frame(raw)
    assert both.frames[0]["tiles_fallen_back"] >= 1 and "blend" in both.frames[0]
    assert _psnr(out2, truth) >= max(_psnr(out, truth), _psnr(classical, truth)) - 0.3


def test_the_comparison_keeps_the_better_of_the_network_and_the_classical_plan(frame, model_plan):
    # where the network is better (5 e-/px nanoparticles) it is kept; where the classical
    # plan is (an SEM frame at 20 e-/px of bench_fidelity's (c): the network 27.75 dB,
    # the classical plan 29.81 dB) the blend comes within 0.3 dB of it
    raw, truth = frame
    g = np.random.default_rng([31337, 0, 2, 20])
    clean, _ = sim.random_specimen((256, 256), rng=g)
    cfg = sim.random_acquisition_config(g, modality="sem").replace(dose=20.0)
    sem_raw, sem_truth = sim.simulate_acquisition(clean, cfg, rng=g, return_expected=True)
    sem_plan = plan_model(None, modality="sem", device="cpu")
    for x, t, mp in ((raw, truth, model_plan), (sem_raw, sem_truth, sem_plan)):
        plan = GuardedPlan(mp)
        out = plan.apply_frame(x)
        net = _psnr(mp.apply_frame(x), t)
        classical = _psnr(dn.apply_plan(x, plan.classical), t)
        assert _psnr(out, t) >= max(net, classical) - 0.3, (net, classical, _psnr(out, t))
        rec = plan.frames[0]["blend"]
        assert 0.0 <= rec["weight"] <= 1.0 and rec["expected_gain"] >= 0.0
        meta = plan.to_metadata()["fallback"]
        assert meta["policy"]["compare"] is True and meta["policy"]["tolerance"] == TOLERANCE
        assert meta["classical"]["method"] == plan.classical.method
    assert classical > net + 1.0  # the SEM frame: the comparison had something to find
    assert _psnr(out, sem_truth) > net + 1.0 and rec["weight"] < 0.6
    assert "blended in on 1 of 1 frame(s)" in plan.notice()


def test_the_blend_weight_ramps_across_tile_seams():
    decisions = np.array([[True, False], [False, False]])
    wt = fallback_weight(decisions, (256, 256), FALLBACK_TILE)
    assert wt[10, 10] == 1.0 and wt[250, 250] == 0.0
    row = wt[10, 100:160]
    assert np.all(np.diff(row) <= 1e-6) and row[0] == 1.0 and row[-1] == 0.0


def test_a_stack_is_checked_frame_by_frame(frame, model_plan):
    raw, _ = frame
    stack = np.stack([raw[:128, :128], raw[128:, 128:]])
    plan = GuardedPlan(model_plan)
    gen = plan.iter_apply(stack)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        out = stop.value
    assert out.shape == stack.shape
    assert [f["frame"] for f in plan.to_metadata()["fallback"]["frames"]] == [[0], [1]]
    lazy = np.asarray(GuardedPlan(model_plan).lazy(stack))
    np.testing.assert_array_equal(lazy, out)


def test_only_a_model_plan_can_be_guarded():
    with pytest.raises(ValueError, match="plan_model"):
        GuardedPlan("em-denoise-fast")


def test_a_guarded_plan_travels_to_a_worker(frame, model_plan):
    import pickle

    raw, _ = frame
    plan = GuardedPlan(model_plan)
    copy = pickle.loads(pickle.dumps(plan))
    np.testing.assert_array_equal(copy.apply_frame(raw), plan.apply_frame(raw))


def test_blank_frames_are_returned_as_they_are_and_do_not_stop_a_stack(frame, model_plan):
    # a blanked beam or an empty readout: a constant frame has no noise to test against
    raw, _ = frame
    part = raw[:128, :128]
    stack = np.stack([part, np.zeros_like(part), np.zeros_like(part)])  # the middle is blank
    plan = GuardedPlan(model_plan)
    out = drain_apply(plan, stack)
    np.testing.assert_array_equal(out[1:], 0.0)  # not the network's faint texture
    np.testing.assert_array_equal(out[0], GuardedPlan(model_plan).apply_frame(part))
    frames = plan.to_metadata()["fallback"]["frames"]
    assert frames[0]["tiles"] > 0 and "flagged_fraction" in frames[0]  # the real one checked
    assert [f["checked"] for f in frames[1:]] == [False, False]
    assert "constant" in frames[1]["reason"]
    assert plan.noise.gain > 0 or plan.noise.readout_sigma > 0  # from the frame with noise
    single = GuardedPlan(model_plan)
    np.testing.assert_array_equal(single.apply_frame(np.full((64, 64), 7.0)), 7.0)
    assert "not checked" in single.notice() and "constant" in single.notice()


def drain_apply(plan, stack):
    gen = plan.iter_apply(stack)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def test_a_compared_stack_reports_the_classical_plan_progress_first(frame, model_plan):
    raw, _ = frame
    stack = np.stack([raw[:128, :128], raw[128:, 128:]])
    events = list(GuardedPlan(model_plan).iter_apply(stack))
    plan_events = [p for p in events if p.message.startswith("comparison: ")]
    assert plan_events and events.index(plan_events[-1]) < len(events) - 3
    assert [p.done for p in events[-3:]] == [0, 1, 2]  # then the frames
    assert not any(
        p.message.startswith("comparison")
        for p in GuardedPlan(model_plan, compare=False).iter_apply(stack)
    )


def test_a_stack_whose_reference_frame_keeps_the_network_is_compared_there_only(frame, model_plan):
    raw, _ = frame
    stack = np.stack([raw[:128, :128], raw[128:, 128:], raw[:128, 128:]])
    plan = GuardedPlan(model_plan)
    out = drain_apply(plan, stack)
    meta = plan.to_metadata()["fallback"]
    assert meta["reference"] == {"frame": [1], "weight": 1.0}  # the middle frame
    recs = {tuple(f["frame"]): f for f in meta["frames"]}
    assert len(recs) == 3 and "reason" not in recs[(1,)]["blend"]
    for k in (0, 2):  # checked only: the network plus the test, as with compare=False
        assert "reference frame [1]" in recs[(k,)]["blend"]["reason"]
        np.testing.assert_array_equal(
            out[k], GuardedPlan(model_plan, compare=False).apply_frame(stack[k])
        )
    assert "kept on all 3 frame(s)" in plan.notice()
    np.testing.assert_array_equal(np.asarray(GuardedPlan(model_plan).lazy(stack)), out)
