"""Outgoing message conversions: robot adapters per gripper type, joint-state input, chunk layout."""

import numpy as np
import pytest

pytest.importorskip("rclpy")

from kuavo_smolvla_ros.msg import LejuClawCommand, RobotHandPosition

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.scheduler import Chunk
from kuavo_smolvla_ros.ros import messages

ACTION = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
ACTION[[7, 15]] = (0.25, 1.0)
STAMP = messages.to_time(12.5)


@pytest.mark.parametrize(("kind", "expected_type"), [
    ("leju_claw", LejuClawCommand), ("dex_hand", RobotHandPosition), ("sim_gripper", messages.JointState)])
def test_gripper_command_per_end_effector(kind, expected_type):
    msg = messages.gripper_command(ACTION, STAMP, robot.gripper(kind))
    assert isinstance(msg, expected_type) and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500_000_000)
    if kind == "leju_claw":
        assert list(msg.data.name) == ["left_claw", "right_claw"] and list(msg.data.position) == [25.0, 100.0]
    elif kind == "dex_hand":
        assert list(msg.left_hand_position) == [25] * 6 and list(msg.right_hand_position) == [100] * 6
    else:
        assert list(msg.position) == [35.0, 140.0]


def test_inverted_claw_command():
    msg = messages.gripper_command(ACTION, STAMP, robot.gripper("leju_claw", inverted=True))
    assert list(msg.data.position) == [75.0, 0.0]


def test_arm_command_and_action_message():
    arm = messages.arm_command(ACTION, STAMP)
    np.testing.assert_allclose(arm.position, np.degrees(ACTION[robot.ARM_INDICES]))
    action = messages.action_joint_state(ACTION, STAMP)
    assert list(action.name) == list(robot.JOINT_NAMES) and list(action.position) == ACTION.tolist()


def test_joint_state_input_in_any_order():
    msg = messages.JointState(name=list(reversed(robot.JOINT_NAMES)), position=list(reversed(ACTION.tolist())))
    np.testing.assert_array_equal(robot.layout_from_named(msg.name, msg.position), ACTION)
    msg.position = msg.position[:-1]
    with pytest.raises(ValueError, match="16 names and 15 positions"):
        robot.layout_from_named(msg.name, msg.position)


def test_chunk_message_is_row_major_and_stamped_with_the_observation():
    actions = np.arange(50 * 16, dtype=np.float64).reshape(50, 16)
    chunk = Chunk(actions, 3, "text", seq=4, oldest_stamp=7.25, inference_time=0.05)
    msg = messages.chunk_message(chunk, start_index=2, n_execute=8, dt=0.1, num_steps=10)
    assert (msg.chunk_size, msg.action_dim, msg.start_index, msg.n_execute) == (50, 16, 2, 8)
    np.testing.assert_array_equal(np.asarray(msg.actions).reshape(50, 16), actions)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7, 250_000_000)
