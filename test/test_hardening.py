"""Bad input, broken time and the safety filter's references, without ROS (issue 15): image bombs and corrupt
JPEG data, implausible and future-stamped states, clock jumps, instructions without visible text, and speed
limits that hold per elapsed second of the command stamps."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from test_controller import GatedModel, feed, make

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.controller import STATE_STREAM, ControlState
from kuavo_smolvla_ros.control.safety import SafetyFilter
from kuavo_smolvla_ros.images import MAX_PIXELS, ImageError, compressed_frame, raw_frame

MID = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2


# -------------------------------------------------------------------------------------------- images
def jpeg_bomb(height: int = 13400, width: int = 13400) -> bytes:
    """A 27-byte JPEG: SOI, a baseline SOF0 header (one component) claiming height x width, an SOS, EOI."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + b"\xff\xd9"


def png_bomb(height: int = 13370, width: int = 13385) -> bytes:
    """A 45-byte PNG (as in the issue): signature, an IHDR claiming width x height (RGB, 8 bit) and IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def test_image_bombs_are_refused_from_their_header_before_any_decoding():
    assert len(jpeg_bomb()) == 27 and len(png_bomb()) == 45
    with pytest.raises(ImageError, match=r"JPEG header claims more pixels than 16777216 \(decompression bomb"):
        compressed_frame("jpeg", jpeg_bomb())
    with pytest.raises(ImageError, match=r"PNG header claims more pixels than 16777216 \(decompression bomb"):
        compressed_frame("png", png_bomb())
    with pytest.raises(ImageError, match="claims 5000x5000 pixels"):
        compressed_frame("jpeg", jpeg_bomb(5000, 5000))
    with pytest.raises(ImageError, match="claims 100000x4 pixels"):
        raw_frame("rgb8", 100000, 4, 12, b"")
    assert MAX_PIXELS == 4096 * 4096


def _jpeg(seed: int = 0) -> bytes:
    image = cv2.GaussianBlur(np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_jpeg_data_the_decoder_reports_corrupt_is_rejected_not_used():
    good = _jpeg()
    scan = good.index(b"\xff\xda") + 20
    outcomes = []
    for offset in range(0, len(good) - scan - 4, 7):
        bad = bytearray(good)
        bad[scan + offset] = 0xFF  # a stray marker inside the entropy-coded data: libjpeg reports it
        frame = compressed_frame("jpeg", bytes(bad))  # the header is intact: accepted on arrival
        try:
            frame()
            outcomes.append(bad[scan + offset + 1] in (0x00, 0xFF))  # FF00 is a stuffed byte: valid data
        except ImageError as err:
            assert "corrupt JPEG data" in str(err)
            outcomes.append(True)
    assert len(outcomes) > 500 and all(outcomes)
    np.testing.assert_array_equal(compressed_frame("jpeg", good)().shape, (96, 128, 3))


def test_a_frame_that_fails_to_decode_is_counted_and_no_inference_uses_it():
    model = GatedModel()
    controller = make(model)
    bad = bytearray(_jpeg())
    bad[bad.index(b"\xff\xda") + 30] = 0xFF
    try:
        controller.add_image("cam", compressed_frame("jpeg", bytes(bad)), 1.0, 1.0)
        controller.add_state(MID, 1.0, 1.0)
        controller.set_instruction("task1")
        controller.tick(1.0)
        controller.worker.wait(2.0)
        out = controller.tick(1.05)
        assert controller.counters.inputs_rejected == 1 and out.new_chunk is None and not model.calls
        # Counted on its camera with the reason, and dropped: the camera is stale until a good frame comes.
        assert controller.rejections == {"cam": 1} and "corrupt JPEG data" in controller.first_rejection["cam"]
        assert len(controller.buffers["cam"]) == 0 and "cam" in controller.snapshot().stale_streams
    finally:
        controller.close()


# --------------------------------------------------------------------------------------- the state
@pytest.mark.parametrize("value", [1e6, 1e39, -4.0])
def test_implausible_states_are_refused_and_the_ramp_in_starts_from_the_last_plausible_one(value):
    model = GatedModel()
    controller = make(model)
    try:
        controller.set_instruction("task1")
        feed(controller, 1.0)
        bad = MID.copy()
        bad[2] = value
        with pytest.raises(ValueError, match="implausible joint state: zarm_l3_joint"):
            controller.add_state(bad, 1.05, 1.05)
        assert controller.buffers[STATE_STREAM].latest().value[2] == MID[2]
        controller.set_enabled(False)
        controller.set_enabled(True)
        controller.tick(1.1)
        controller.worker.wait(2.0)
        out = controller.tick(1.2)
        assert out.command is not None and np.max(np.abs(out.command - MID)) <= 1.0 + 1e-9  # one step from MID
        assert abs(out.command[2] - MID[2]) < 0.01
    finally:
        controller.close()


def test_states_stamped_in_the_future_are_refused_and_do_not_evict_real_ones():
    controller = make(GatedModel(), stamp_source="header")
    try:
        for i in range(4):  # an hour ahead: would fill the 4-sample buffer and evict every real message
            with pytest.raises(ValueError, match="ahead of this node's clock"):
                controller.add_state(MID, 3600.0 + 10.0 + i, 10.0 + 0.01 * i)
        feed(controller, 10.1)
        assert controller.buffers[STATE_STREAM].as_of(10.1) is not None
        controller.set_instruction("task1")
        out = controller.tick(10.1)
        assert out.state is not ControlState.STALE and not controller.snapshot().stale_streams
    finally:
        controller.close()


def test_a_clock_that_jumps_back_clears_the_buffers_and_the_node_runs_again_on_fresh_data():
    controller = make(GatedModel(), max_input_age_s=0.3)
    try:
        controller.set_instruction("task1")
        for i in range(5):
            feed(controller, 100.0 + 0.1 * i)
            controller.tick(100.0 + 0.1 * i)
            controller.worker.wait(2.0)
        assert controller.tick(100.5).state is ControlState.RUNNING
        out = controller.tick(80.0)  # a simulator reset rewound /clock by 20 s
        assert controller.counters.clock_jumps == 1 and out.state is ControlState.STALE
        states = []
        for i in range(1, 11):
            now = 80.0 + 0.1 * i
            feed(controller, now)
            states.append(controller.tick(now).state)
            controller.worker.wait(2.0)
        assert ControlState.RUNNING in states[:10]  # within one second of fresh data
    finally:
        controller.close()


# ----------------------------------------------------------------------------------- instructions
@pytest.mark.parametrize(("text", "message"), [
    ("\u200b", "no visible character"), (" \u200b\u200d ", "no visible character"), ("", "empty instruction"),
    ("\u3164", "no visible character"), ("\u2800 \u2800", "no visible character"),
    ("task1\x00", "control characters"), ("\x1b[2Jtask1", "control characters")])
def test_instructions_need_visible_printable_text(text, message):
    controller = make(GatedModel())
    try:
        with pytest.raises(ValueError, match=message):
            controller.set_instruction(text)
        assert controller.instruction == ""
        assert controller.set_instruction("pick the bottle\n")[2]  # a newline is fine
    finally:
        controller.close()


# --------------------------------------------------------------------------------- speed per second
def test_speed_limits_hold_per_elapsed_second_whatever_the_timer_does():
    period, step = 0.1, 0.05  # 0.5 rad/s
    safety = SafetyFilter(max_step=step, ramp_ticks=0, period_s=period)
    safety.reset(MID, now=0.0)
    far = np.clip(MID + 1.0, robot.LOWER_LIMITS, robot.UPPER_LIMITS)
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.choice([0.0, 0.001, 0.02, 0.05, 0.1, 0.3], size=300))  # bursts, early and late ticks
    last, last_time = safety.last, 0.0
    for now in times:
        command = safety.apply(far, now=float(now)).command
        moved = np.max(np.abs(command - last))
        assert moved <= step * min(now - last_time, period) / period + 1e-12
        last, last_time = command, now
    assert safety.apply(far, now=float(times[-1]) - 5.0).command.tolist() == last.tolist()  # clock jumped back
