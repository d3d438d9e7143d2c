"""The converter and the live node align the same message stream into the same sample.

One recorded bag is (a) converted by the converter and (b) replayed, message by message at its record
times, into the node's PolicyController through the node's own input conversions (images.compressed_frame,
StateAssembler). At each tick the observation the node hands to the model must equal the converter's row.
"""

from __future__ import annotations

import threading

import numpy as np

from kuavo_smolvla_ros import images, robot
from kuavo_smolvla_ros.control.controller import ControllerConfig, PolicyController
from kuavo_smolvla_ros.control.safety import SafetyFilter
from kuavo_smolvla_ros.data.bags import read_messages
from kuavo_smolvla_ros.data.config import Sync, load_config
from kuavo_smolvla_ros.data.episode import build_episode
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag
from kuavo_smolvla_ros.inputs import StateAssembler
from kuavo_smolvla_ros.tasks import default_catalog

MAX_AGE = 0.1  # the node has one max input age; give every converter stream the same


class CapturingModel:
    def __init__(self):
        self.observation = None
        self.called = threading.Event()

    def __call__(self, observation):
        self.observation = observation
        self.called.set()
        return np.tile((robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2, (50, 1))


def node_observation(messages, tick: float):
    """Replay the messages recorded up to ``tick`` into a fresh controller as policy_node's callbacks do."""
    model = CapturingModel()
    controller = PolicyController(
        ControllerConfig(max_input_age_s=MAX_AGE, clock_skew_s=0.0, stamp_source="receive"),
        list(robot.CAMERA_NAMES), model, SafetyFilter(max_step=1.0, ramp_ticks=0), default_catalog(),
        instruction="moving_grasp")
    states = StateAssembler("leju_claw")
    cameras = {c.topic: c.name for c in robot.CAMERAS}
    try:
        for message in messages:
            if message.recorded > tick:
                break
            stamp = message.msg.header.stamp.sec + message.msg.header.stamp.nanosec * 1e-9
            if message.topic in cameras:
                frame = images.compressed_frame(message.msg.format, message.msg.data)
                controller.add_image(cameras[message.topic], frame, stamp, message.recorded)
            elif message.topic == robot.TOPICS.claw_state:
                states.update_grippers(message.msg)
            elif message.topic == robot.TOPICS.sensors:
                state = states.from_sensors(message.msg)
                if state is not None:
                    controller.add_state(state, stamp, message.recorded)
        controller.tick(tick)
        assert model.called.wait(10), f"the node did not infer at tick {tick}"
        return model.observation
    finally:
        controller.close()


def test_converter_and_node_align_identically(tmp_path):
    write_synthetic_bag(tmp_path / "episode.bag", "ros1",
                        SyntheticBag(seconds=3, jitter_s=0.004, camera_gaps={"wrist_cam_r": (1.3, 1.5)}))
    config = load_config()
    for camera in config.cameras:
        camera.sync = Sync(max_age_s=MAX_AGE)
    config.state.sync = Sync(max_age_s=MAX_AGE)
    episode = build_episode(tmp_path / "episode.bag", config)
    assert episode.dropped  # the gap is longer than MAX_AGE: the comparison covers ticks around a drop
    messages = list(read_messages(tmp_path / "episode.bag"))
    for row in range(0, len(episode), 3):
        observation = node_observation(messages, float(episode.times[row]))
        np.testing.assert_array_equal(observation.state, episode.state[row])
        for camera in robot.CAMERA_NAMES:
            np.testing.assert_array_equal(observation.images[camera], episode.frames[camera][row]())
