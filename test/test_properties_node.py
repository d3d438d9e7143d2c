"""Property-based tests (hypothesis) of the node's input path and its last filter: whatever arrives, no
exception but a ValueError escapes, nothing implausible is filed, and every command is finite, inside the
limits and within the speed limit per elapsed second. A few hundred cases each here; `bench/bench_fuzz_node.py`
runs the real node over DDS with thousands."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_controller import GatedModel, make

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.controller import STATE_STREAM
from kuavo_smolvla_ros.control.safety import SafetyFilter
from kuavo_smolvla_ros.images import ImageError, compressed_frame, raw_frame

MID = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.floats(-4.0, 4.0), st.sampled_from([1e6, -1e6, 1e39, 1e-300, 0.0]))
CASES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@CASES
@given(st.lists(st.tuples(st.one_of(st.none(), st.lists(FLOATS, min_size=16, max_size=16),
                                    st.lists(FLOATS, max_size=20)),
                          st.sampled_from([0.0, 0.0005, 0.01, 0.05, 0.1, 0.2, 1.0, -3.0])), max_size=40),
       st.integers(0, 5))
def test_every_command_is_finite_in_limits_and_within_the_speed_limit(sequence, ramp):
    period, step = 0.1, np.full(16, 0.05)
    safety = SafetyFilter(max_step=step, ramp_ticks=ramp, period_s=period)
    last, now = safety.reset(MID, now=0.0), 0.0
    for proposed, dt in sequence:
        previous = now
        now += dt
        command = safety.apply(None if proposed is None else np.asarray(proposed, dtype=np.float64), now).command
        assert np.all(np.isfinite(command)) and robot.within_limits(command)
        elapsed = min(max(now - previous, 0.0), period)
        assert np.all(np.abs(command - last) <= step * elapsed / period + 1e-12)
        last = command


@CASES
@given(st.lists(FLOATS, min_size=0, max_size=20), st.floats(-1e9, 1e9) | st.none(),
       st.sampled_from(["receive", "header"]))
def test_states_are_filed_only_when_finite_plausible_and_not_from_the_future(values, stamp, source):
    controller = make(GatedModel(), stamp_source=source)
    try:
        try:
            controller.add_state(np.asarray(values, dtype=np.float64), stamp, 100.0)
        except ValueError:
            assert len(controller.buffers[STATE_STREAM]) == 0
            return
        filed = controller.buffers[STATE_STREAM].latest()
        assert len(values) == 16 and np.all(np.isfinite(filed.value))
        robot.check_plausible(filed.value)
        assert filed.stamp <= 100.0 + controller.config.future_tolerance_s
    finally:
        controller.close()


@CASES
@given(st.one_of(st.binary(max_size=64), st.builds(lambda tail: b"\xff\xd8" + tail, st.binary(max_size=200)),
                 st.builds(lambda tail: b"\x89PNG\r\n\x1a\n" + tail, st.binary(max_size=200))),
       st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed bgr8"]))
def test_compressed_frames_fail_only_with_image_errors(data, fmt):
    try:
        frame = compressed_frame(fmt, data)
    except ImageError:
        return
    assert 0 < frame.height * frame.width <= 4096 * 4096
    try:
        image = frame()
    except ImageError:
        return
    assert image.shape == (frame.height, frame.width, 3) and image.dtype == np.uint8


@CASES
@given(st.sampled_from(["rgb8", "bgr8", "rgba8", "mono8", "16UC1", ""]), st.integers(-5, 70000),
       st.integers(-5, 70000), st.integers(-5, 300), st.binary(max_size=512))
def test_raw_frames_fail_only_with_image_errors(encoding, height, width, step, data):
    try:
        frame = raw_frame(encoding, height, width, step, data)
    except ImageError:
        return
    image = frame()
    assert image.shape == (height, width, 3) and len(data) == height * step


@pytest.mark.parametrize("text", ["\u200b", "\ufeff", "\u2060\u200c", "\x00", " \t\n"])
def test_invisible_instructions_are_refused(text):
    controller = make(GatedModel())
    try:
        with pytest.raises(ValueError):
            controller.set_instruction(text)
    finally:
        controller.close()


@CASES
@given(st.text(max_size=300))
def test_any_text_is_an_instruction_or_a_value_error(text):
    controller = make(GatedModel())
    try:
        try:
            instruction, _task, changed = controller.set_instruction(text)
        except ValueError:
            assert controller.instruction == ""
            return
        assert changed and instruction.strip()
    finally:
        controller.close()
