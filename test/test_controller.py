"""PolicyController without ROS: scheduling against a slow model, staleness policies, errors, switching."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.controller import STATE_STREAM, ControllerConfig, ControlState, PolicyController
from kuavo_smolvla_ros.control.safety import SafetyFilter
from kuavo_smolvla_ros.images import ImageError
from kuavo_smolvla_ros.tasks import default_catalog

MID = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
PERIOD = 0.1


class GatedModel:
    """A predictor whose every call waits until the test releases it (a model of controllable speed)."""

    def __init__(self, auto: bool = True):
        self.auto = auto
        self.release = threading.Semaphore(0)
        self.entered = threading.Semaphore(0)
        self.calls: list = []
        self.fail = False

    def __call__(self, observation):
        self.calls.append(observation)
        self.entered.release()
        if not self.auto:
            assert self.release.acquire(timeout=10)
        if self.fail:
            raise RuntimeError("model exploded")
        offset = 0.001 * len(self.calls)
        return np.tile(MID + offset, (50, 1))


def make(model, **config) -> PolicyController:
    controller = PolicyController(ControllerConfig(**({"max_input_age_s": 0.5} | config)), ["cam"], model,
                                  SafetyFilter(max_step=1.0, ramp_ticks=0), default_catalog())
    return controller


def feed(controller, now):
    controller.add_image("cam", np.zeros((4, 4, 3), np.uint8), now, now)
    controller.add_state(MID, now, now)


def run_ticks(controller, start, count, model=None):
    outputs = []
    for i in range(count):
        now = start + i * PERIOD
        feed(controller, now)
        outputs.append(controller.tick(now))
        controller.worker.wait(2.0)
    return outputs


def test_waits_for_an_instruction_then_runs():
    model = GatedModel()
    controller = make(model)
    try:
        out = run_ticks(controller, 0.0, 3)
        assert all(o.state == ControlState.WAITING and o.command is None for o in out)
        controller.set_instruction("task1")
        out = run_ticks(controller, 0.3, 12)
        assert out[-1].state == ControlState.RUNNING and out[-1].command is not None
        assert model.calls[0].instruction == default_catalog().get(1).instruction
        assert controller.counters.actions_held == 0
    finally:
        controller.close()


def test_slow_model_holds_the_last_command_and_counts_it():
    model = GatedModel(auto=False)
    controller = make(model, n_action_steps=2)
    controller.set_instruction("task2")
    try:
        for tick in range(3):
            feed(controller, tick * PERIOD)
            controller.tick(tick * PERIOD)
        model.release.release()  # the first chunk
        controller.worker.wait(2.0)
        outputs = []
        for tick in range(3, 9):  # 2 actions, then the model is still busy: hold
            feed(controller, tick * PERIOD)
            outputs.append(controller.tick(tick * PERIOD))
        states = [o.state for o in outputs]
        assert states[0] == ControlState.RUNNING and ControlState.HOLDING in states
        held = [o for o in outputs if o.held]
        assert held and all(np.array_equal(o.command, held[0].command) for o in held)
        assert controller.counters.actions_held == len(held)
        assert "holding" in controller.snapshot().message
    finally:
        model.release.release()
        model.release.release()
        controller.close()


@pytest.mark.parametrize(("behaviour", "expect_finish"), [("finish", True), ("hold", False)])
def test_stale_inputs_finish_or_hold(behaviour, expect_finish):
    model = GatedModel()
    controller = make(model, n_action_steps=8, stale_behaviour=behaviour, max_input_age_s=0.25)
    controller.set_instruction("task1")
    try:
        run_ticks(controller, 0.0, 3)
        # Only the state keeps coming: the camera goes stale after 0.25 s.
        outputs = []
        for i in range(3, 10):
            now = i * PERIOD
            controller.add_state(MID, now, now)
            outputs.append(controller.tick(now))
        stale = [o for o in outputs if o.state == ControlState.STALE]
        assert stale and controller.snapshot().stale_streams == ["cam"]
        assert all(not o.held for o in outputs[:2])
        fresh = [o for o in stale if not o.held]
        assert bool(fresh) is expect_finish
        calls = len(model.calls)
        for i in range(10, 14):
            controller.add_state(MID, i * PERIOD, i * PERIOD)
            controller.tick(i * PERIOD)
        assert len(model.calls) == calls  # no inference from stale inputs
    finally:
        controller.close()


def test_model_error_holds_reports_and_retries():
    model = GatedModel()
    controller = make(model, error_retry_s=0.3)
    controller.set_instruction("task1")
    try:
        run_ticks(controller, 0.0, 3)
        model.fail = True
        outputs = run_ticks(controller, 0.3, 12)
        errors = [o for o in outputs if o.error is not None]
        assert errors and "model exploded" in errors[0].error.error
        assert ControlState.ERROR in [o.state for o in outputs]
        assert controller.counters.inference_errors >= 2  # retried after error_retry_s
        model.fail = False
        outputs = run_ticks(controller, 1.5, 6)
        assert outputs[-1].state == ControlState.RUNNING
    finally:
        controller.close()


def test_undecodable_frame_is_an_input_rejection_not_a_model_error():
    model = GatedModel()
    controller = make(model)
    controller.set_instruction("task1")

    def broken():
        raise ImageError("corrupt JPEG data")

    try:
        controller.add_image("cam", broken, 0.0, 0.0)
        controller.add_state(MID, 0.0, 0.0)
        controller.tick(0.0)
        controller.worker.wait(2.0)
        out = controller.tick(0.1)
        assert out.state != ControlState.ERROR and controller.counters.inputs_rejected == 1
        assert controller.counters.inference_errors == 0 and not model.calls
    finally:
        controller.close()


def test_task_switch_discards_the_old_inference_and_takes_over_at_once():
    model = GatedModel(auto=False)
    controller = make(model, n_action_steps=2)
    controller.set_instruction("task1")
    try:
        feed(controller, 0.0)
        controller.tick(0.0)
        assert model.entered.acquire(timeout=5)
        model.release.release()
        controller.worker.wait(2.0)
        feed(controller, 0.1)
        first = controller.tick(0.1)  # chunk 1 takes over; chunk 2 (task1) is requested at once
        assert first.new_chunk is not None and model.entered.acquire(timeout=5)
        # Switch while task1's second inference runs: its result is dropped and task4's starts
        # from the worker thread as soon as it ends, without waiting for a tick.
        controller.set_instruction("task4", now=0.15)
        model.release.release()
        assert model.entered.acquire(timeout=5)
        assert model.calls[2].instruction == default_catalog().get(4).instruction
        model.release.release()
        controller.worker.wait(2.0)
        feed(controller, 0.2)
        out = controller.tick(0.2)
        assert out.new_chunk.instruction == default_catalog().get(4).instruction
        assert out.takeover is not None and out.takeover.progress == 1  # immediately, not after chunk 1's window
        assert controller.counters.inferences == 2  # the abandoned task1 chunk was never used
    finally:
        model.release.release()
        controller.close()


def test_invalid_inputs_and_config():
    controller = make(GatedModel())
    try:
        with pytest.raises(ValueError, match="must have 16 values"):
            controller.add_state(MID[:3], 0.0, 0.0)
        with pytest.raises(ValueError, match="non-finite"):
            controller.add_state(np.full(16, np.nan), 0.0, 0.0)
        assert controller.buffers[STATE_STREAM].latest() is None
        with pytest.raises(ValueError, match="empty instruction"):
            controller.set_instruction(" ")
        with pytest.raises(ValueError, match="exceeds"):
            controller.set_instruction("a" * 3000)
    finally:
        controller.close()
    with pytest.raises(ValueError, match="stale_behaviour"):
        ControllerConfig(stale_behaviour="panic")


def test_the_stepped_worker_hands_results_out_after_its_latency_in_ticks():
    from kuavo_smolvla_ros.control.worker import InferenceRequest, SteppedWorker

    worker = SteppedWorker(lambda x: x * 2, latency_ticks=3, period_s=0.1)
    request = InferenceRequest(21, tick=0, instruction="a", oldest_stamp=0.0, generation=1)
    assert worker.submit(request) and worker.busy and not worker.submit(request)
    assert worker.poll() is None and worker.poll() is None
    result = worker.poll()
    assert result.actions == 42 and result.seconds == pytest.approx(0.25) and not worker.busy
    assert worker.poll() is None
    failing = SteppedWorker(lambda x: 1 / 0, latency_ticks=1)
    failing.submit(request)
    assert failing.poll().error.startswith("ZeroDivisionError")
    with pytest.raises(ValueError, match="latency_ticks must be >= 1"):
        SteppedWorker(lambda x: x, latency_ticks=0)
