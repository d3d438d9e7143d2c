"""Stream buffers: as-of lookups with a maximum age, nearest within a tolerance, stamp sources."""

import pytest

from kuavo_smolvla_ros.sync import StampSource, StreamBuffer, align


def test_as_of_never_returns_a_future_sample_and_respects_max_age():
    buffer = StreamBuffer("cam", max_age=0.1)
    for t in (1.0, 1.1, 1.2):
        buffer.add(f"frame@{t}", header_stamp=t, received=t + 0.01)
    assert buffer.as_of(1.15).value == "frame@1.1"
    assert buffer.as_of(1.2).value == "frame@1.2"
    assert buffer.as_of(0.99) is None
    assert buffer.as_of(1.35) is None  # the latest is 0.15 s old
    assert buffer.age(1.25) == pytest.approx(0.05)


def test_zero_header_stamp_falls_back_to_receive_time():
    buffer = StreamBuffer("state", stamp_source=StampSource.HEADER)
    assert buffer.add("a", header_stamp=0.0, received=5.0).stamp == 5.0
    assert buffer.add("b", header_stamp=6.0, received=7.0).stamp == 6.0
    receive = StreamBuffer("state", stamp_source="receive")
    assert receive.add("c", header_stamp=6.0, received=7.0).stamp == 7.0


def test_out_of_order_samples_are_filed_in_order_and_capacity_bounds_memory():
    buffer = StreamBuffer("cam", capacity=3)
    for t in (3.0, 1.0, 2.0, 4.0):
        buffer.add(t, header_stamp=t, received=10.0)
    assert len(buffer) == 3
    assert [buffer.as_of(t).value for t in (2.5, 3.5, 4.5)] == [2.0, 3.0, 4.0]
    assert buffer.as_of(1.5) is None  # 1.0 was dropped as the oldest


def test_nearest_within_tolerance_either_side():
    buffer = StreamBuffer("cmd", capacity=None)
    for t in (1.0, 1.3):
        buffer.add(t, header_stamp=t, received=t)
    assert buffer.nearest(1.2, tolerance=0.15).value == 1.3
    assert buffer.nearest(1.1, tolerance=0.15).value == 1.0
    assert buffer.nearest(1.15, tolerance=0.1) is None


def test_align_reports_missing_streams_and_the_oldest_stamp():
    cam, state = StreamBuffer("cam", max_age=0.2), StreamBuffer("state", max_age=0.2)
    cam.add("img", 1.0, 1.0)
    state.add("q", 1.1, 1.1)
    aligned = align([cam, state], 1.15)
    assert aligned.complete and aligned.oldest_stamp == 1.0
    late = align([cam, state], 1.25)
    assert late.missing == ("cam",) and not late.complete


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="max_age must be > 0"):
        StreamBuffer("x", max_age=0)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        StreamBuffer("x", capacity=0)
