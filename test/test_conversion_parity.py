"""The converter and the live node align the same message stream into the same sample.

One recorded bag per shipped robot profile is (a) converted by the converter and (b) replayed, message by
message at its record times, into the node's PolicyController through the node's own input path (the
profile's StreamDecoder and per-stream max ages). At each tick the observation the node hands to the model
must equal the converter's row, bit for bit.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.fields import header_stamp
from kuavo_smolvla_ros.contract.profile import RobotProfile, available_profiles, load_profile
from kuavo_smolvla_ros.contract.streams import GRIPPER_STATE, STATE, StreamDecoder, input_streams
from kuavo_smolvla_ros.control.controller import STATE_STREAM, ControllerConfig, PolicyController
from kuavo_smolvla_ros.control.safety import SafetyFilter
from kuavo_smolvla_ros.data.bags import read_messages
from kuavo_smolvla_ros.data.config import load_config
from kuavo_smolvla_ros.data.episode import build_episode
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag
from kuavo_smolvla_ros.tasks import default_catalog


class CapturingModel:
    def __init__(self):
        self.observation = None
        self.called = threading.Event()

    def __call__(self, observation):
        self.observation = observation
        self.called.set()
        return np.tile((robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2, (50, 1))


def node_observation(messages, tick: float, profile: RobotProfile, delay: float = 0.0):
    """Replay the messages recorded up to ``tick + delay`` into a fresh controller as policy_node's callbacks do
    (the profile's input streams, its decoder, its per-stream max ages and stamp source) and infer as of
    ``tick``. ``delay``: how late a message stamped at ``tick`` may arrive (header stamps only)."""
    model = CapturingModel()
    ages = {c.name: c.sync.live_max_age for c in profile.cameras} | {STATE_STREAM: profile.state.sync.live_max_age}
    controller = PolicyController(
        ControllerConfig(stream_max_age_s=ages, clock_skew_s=0.0, stamp_source=profile.stamp_source),
        list(profile.camera_names), model, SafetyFilter(max_step=1.0, ramp_ticks=0), default_catalog(),
        instruction="moving_grasp")
    decoder = StreamDecoder(profile, {c.name: None for c in profile.cameras})
    roles = {s.topic: s.role for s in input_streams(profile)}
    try:
        for message in messages:
            if message.recorded > tick + delay:
                break
            role = roles.get(message.topic)
            stamp = header_stamp(message.msg)
            if role in profile.camera_names:
                controller.add_image(role, decoder.image(role, message.msg), stamp, message.recorded)
            elif role == GRIPPER_STATE:
                decoder.update_grippers(message.msg)
            elif role == STATE:
                state = decoder.state(message.msg)
                if state is not None:
                    controller.add_state(state, stamp, message.recorded)
        controller.tick(tick)
        assert model.called.wait(10), f"the node did not infer at tick {tick}"
        return model.observation
    finally:
        controller.close()


@pytest.mark.parametrize("name", available_profiles())
def test_converter_and_node_align_identically(tmp_path, name):
    """Every shipped profile, with its own per-stream sync settings (nothing forced equal)."""
    profile = load_profile(name)
    jitter = 0.004
    write_synthetic_bag(tmp_path / "episode.bag", "ros1",
                        SyntheticBag(seconds=3, jitter_s=jitter, camera_gaps={"wrist_cam_r": (1.3, 1.5)}), profile)
    # With header stamps a message stamped at the tick may be recorded up to `jitter` later: the node infers
    # once it has arrived (with receive stamps the record time is the stamp, nothing arrives late).
    delay = jitter if profile.stamp_source == "header" else 0.0
    episode = build_episode(tmp_path / "episode.bag", load_config(robot=name))
    assert episode.dropped  # the gap is longer than the camera's max age: the comparison covers ticks around a drop
    messages = list(read_messages(tmp_path / "episode.bag"))
    for row in range(0, len(episode), 3):
        observation = node_observation(messages, float(episode.times[row]), profile, delay)
        np.testing.assert_array_equal(observation.state, episode.state[row])
        for camera in profile.camera_names:
            np.testing.assert_array_equal(observation.images[camera], episode.frames[camera][row]())
