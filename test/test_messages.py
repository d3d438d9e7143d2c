"""Outgoing messages: robot adapters per end effector (the contract's encoders built as rclpy messages),
joint-state input, chunk layout."""

import numpy as np
import pytest

pytest.importorskip("rclpy")

from kuavo_smolvla_ros.msg import LejuClawCommand, RobotHandPosition
from sensor_msgs.msg import JointState

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.end_effectors import named_values
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.contract.streams import StreamEncoder
from kuavo_smolvla_ros.control.scheduler import Chunk
from kuavo_smolvla_ros.ros import messages
from kuavo_smolvla_ros.ros.fields import build, to_time

ACTION = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
ACTION[[7, 15]] = (0.25, 1.0)
STAMP = to_time(12.5)
DEX = "name: dex\ncameras: [{name: head_cam_h, topic: /c}]\nstate: {source: joint_state, topic: /s, joint_names: " \
      f"{[f'j{i}' for i in range(14)]}}}\naction: {{source: kuavo_arm_traj, topic: /kuavo_arm_traj}}\n" \
      "end_effector: {type: dex_hand, names: [l, r], state_scale: 100.0, command_scale: 100.0, state_topic: /h, " \
      "command_topic: /control_robot_hand_position}\n"


def _profile(name: str, tmp_path, **overrides):
    if name == "dex":
        path = tmp_path / "dex.yaml"
        path.write_text(DEX)
        name = str(path)
    return load_profile(name, overrides)


@pytest.mark.parametrize(("profile", "expected_type"), [
    ("kuavo4pro", LejuClawCommand), ("dex", RobotHandPosition), ("leju_sim", JointState)])
def test_gripper_command_per_end_effector(tmp_path, profile, expected_type):
    _, kind, fields = StreamEncoder(_profile(profile, tmp_path)).gripper_command(robot.gripper_units(ACTION), 12.5)
    msg = build(kind, fields)
    assert isinstance(msg, expected_type) and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500_000_000)
    if profile == "kuavo4pro":
        assert list(msg.data.name) == ["left_claw", "right_claw"] and list(msg.data.position) == [25.0, 100.0]
    elif profile == "dex":
        assert list(msg.left_hand_position) == [25] * 6 and list(msg.right_hand_position) == [100] * 6
    else:
        assert list(msg.name) == ["left_gripper_joint", "right_gripper_joint"]
        assert list(msg.position) == [63.75, 255.0]


def test_inverted_claw_command(tmp_path):
    encoder = StreamEncoder(_profile("kuavo4pro", tmp_path, **{"end_effector.inverted": True}))
    msg = build(*encoder.gripper_command(robot.gripper_units(ACTION), 12.5)[1:])
    assert list(msg.data.position) == [75.0, 0.0]


def test_arm_command_and_action_message():
    arm = build(*StreamEncoder(load_profile()).arm_command(ACTION, 12.5)[1:])
    np.testing.assert_allclose(arm.position, np.degrees(ACTION[robot.ARM_INDICES]))
    action = messages.action_joint_state(ACTION, STAMP)
    assert list(action.name) == list(robot.JOINT_NAMES) and list(action.position) == ACTION.tolist()


def test_joint_state_input_in_any_order():
    msg = JointState(name=list(reversed(robot.JOINT_NAMES)), position=list(reversed(ACTION.tolist())))
    np.testing.assert_array_equal(named_values(msg.name, msg.position, robot.JOINT_NAMES, "joint state"), ACTION)
    msg.position = msg.position[:-1]
    with pytest.raises(ValueError, match="16 names and 15 positions"):
        named_values(msg.name, msg.position, robot.JOINT_NAMES, "joint state")


def test_chunk_message_is_row_major_and_stamped_with_the_observation():
    actions = np.arange(50 * 16, dtype=np.float64).reshape(50, 16)
    chunk = Chunk(actions, 3, "text", seq=4, oldest_stamp=7.25, inference_time=0.05)
    msg = messages.chunk_message(chunk, start_index=2, n_execute=8, dt=0.1, num_steps=10)
    assert (msg.chunk_size, msg.action_dim, msg.start_index, msg.n_execute) == (50, 16, 2, 8)
    np.testing.assert_array_equal(np.asarray(msg.actions).reshape(50, 16), actions)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7, 250_000_000)
