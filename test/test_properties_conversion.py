"""Property-based tests (hypothesis) of the converter's input conversions: every stream the converter decodes
(camera frames compressed and raw, SensorsData and JointState states, JointState and /kuavo_arm_traj actions,
claw and simulator gripper states and commands, header stamps) fed arbitrary messages of the right ROS type:
nothing but ``ValueError`` escapes, every accepted output is finite and of the right shape. A few hundred cases
per stream here; ``bench/bench_fuzz_conversion.py`` runs thousands and counts them.

Then whole bags: arbitrary messages on every topic of a Kuavo recording, written as a real MCAP bag: the
converter counts every message it reads and every one it refuses, and fails the bag (never crashes) when
nothing usable is left.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.contract.streams import GRIPPER_STATE, STATE, recorded_streams
from kuavo_smolvla_ros.data import fuzz
from kuavo_smolvla_ros.data.bags import BagError, BagWriter
from kuavo_smolvla_ros.data.config import load_config
from kuavo_smolvla_ros.data.episode import (
    FUTURE_STAMP_TOLERANCE_S,
    EpisodeError,
    build_episodes,
    filing_stamp,
    read_streams,
)

STREAMS = fuzz.streams()
CASES = 250
QUICK = settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", list(STREAMS))
@QUICK
@given(data=st.data())
def test_a_stream_conversion_never_crashes_and_accepts_only_sound_values(name, data):
    stream = STREAMS[name]
    msg = data.draw(stream.messages, label="message")
    recorded = data.draw(fuzz.record_times, label="recorded")
    outcome, reason = fuzz.check(stream, msg, recorded)
    assert outcome == "accepted" or reason.strip(), "a rejection names its reason"


def test_the_fuzzed_streams_reach_both_outcomes():
    """Each stream's messages include accepted ones and rejected ones (the strategies reach both paths)."""
    for name, stream in STREAMS.items():
        outcomes: set[str] = set()
        probe(stream, outcomes)
        assert outcomes == {"accepted", "rejected"}, name


def probe(stream: fuzz.FuzzStream, outcomes: set[str]) -> None:
    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(msg=stream.messages)
    def run(msg):
        outcomes.add(fuzz.check(stream, msg, 2.1e9, decode=False)[0])

    run()


@QUICK
@given(sec=st.integers(-(2**31), 2**31 - 1), nanosec=st.integers(0, 2**32 - 1), recorded=fuzz.record_times,
       source=st.sampled_from(["header", "receive"]))
def test_filing_stamps_are_finite_and_never_in_the_future(sec, nanosec, recorded, source):
    msg = fuzz._compressed(fuzz._header(sec, nanosec), "jpeg", b"")
    try:
        stamp = filing_stamp(source, msg, recorded)
    except ValueError as err:
        assert source == "header" and "after it was recorded" in str(err)
        return
    assert math.isfinite(stamp) and stamp <= recorded + FUTURE_STAMP_TOLERANCE_S
    if source == "receive":
        assert stamp == recorded


# --------------------------------------------------------------------------------------------- whole bags
KUAVO = load_profile("kuavo4pro")
TOPIC_STREAMS = {s.topic: s.role for s in recorded_streams(KUAVO)}
FUZZED = {KUAVO.cameras[0].topic: "camera_compressed", KUAVO.cameras[1].topic: "camera_compressed",
          KUAVO.cameras[2].topic: "camera_raw", KUAVO.state.topic: "sensors_state",
          KUAVO.action.topic: "kuavo_arm_traj", KUAVO.end_effector.state_topic: "claw_state",
          KUAVO.end_effector.command_topic: "claw_command"}


@settings(max_examples=8, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_message_of_a_fuzzed_bag_is_counted(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzzed") / "bag"
    written: dict[str, int] = {}
    with BagWriter(path, "mcap") as bag:
        events = []
        for topic, name in FUZZED.items():
            messages = data.draw(st.lists(STREAMS[name].messages, min_size=1, max_size=8), label=topic)
            written[TOPIC_STREAMS[topic]] = written.get(TOPIC_STREAMS[topic], 0) + len(messages)
            msgtype = type(messages[0]).__msgtype__ if messages else None
            for msg in messages:
                events.append((data.draw(st.floats(100.0, 101.0), label="t"), topic, msgtype, msg))
        for t, topic, msgtype, msg in sorted(events, key=lambda e: e[0]):
            bag.write(topic, msgtype, msg, t)
    config = load_config()
    try:
        read = read_streams(path, config)
    except EpisodeError as err:  # a topic without any message is missing from the bag
        assert ("missing topic(s)" in str(err) or "empty bag" in str(err)) and min(written.values()) == 0
        return
    assert dict(read.read) == {k: v for k, v in written.items() if v}
    for role, count in read.read.items():
        filed = sum(len(segment[role]) for segment in read.segments if role in segment)
        assert read.rejected[role] <= count and (role not in read.reasons) == (read.rejected[role] == 0)
        if role == GRIPPER_STATE:
            assert filed == 0  # held, combined with the following states
        elif role == STATE:
            assert filed + read.rejected[role] <= count  # states before the first gripper state are not used
        else:
            assert filed + read.rejected[role] == count, role
    try:
        result = build_episodes(path, config)
    except (EpisodeError, BagError) as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
    else:
        for episode in result.episodes:
            assert np.all(np.isfinite(episode.state)) and np.all(np.isfinite(episode.action))
