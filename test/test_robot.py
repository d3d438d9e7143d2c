"""Robot facts: the 16-dim layout, limits and the Kuavo message mappings."""

import math

import numpy as np
import pytest

from kuavo_smolvla_ros import robot


def test_layout_is_interleaved_per_arm():
    assert len(robot.JOINT_NAMES) == robot.ACTION_DIM == 16
    assert robot.JOINT_NAMES[:7] == tuple(f"zarm_l{i}_joint" for i in range(1, 8))
    assert robot.JOINT_NAMES[7] == "left_gripper"
    assert robot.JOINT_NAMES[8:15] == tuple(f"zarm_r{i}_joint" for i in range(1, 8))
    assert robot.JOINT_NAMES[15] == "right_gripper"
    assert list(robot.ARM_INDICES) == [*range(7), *range(8, 15)]
    assert robot.UNITS[7] == robot.UNITS[15] == "unit" and robot.UNITS[0] == "rad"


def test_limits_are_consistent_and_inside_the_sdk_range():
    assert robot.LOWER_LIMITS.shape == robot.UPPER_LIMITS.shape == (16,)
    assert np.all(robot.LOWER_LIMITS < robot.UPPER_LIMITS)
    assert np.all(np.abs(robot.LOWER_LIMITS[robot.ARM_INDICES]) <= robot.SDK_ARM_LIMIT_RAD + 1e-9)
    assert np.all(np.abs(robot.UPPER_LIMITS[robot.ARM_INDICES]) <= robot.SDK_ARM_LIMIT_RAD + 1e-9)
    # Grippers are normalised 0..1; elbows (joint 4) only bend one way; arm 2 mirrors between sides.
    assert (robot.LOWER_LIMITS[7], robot.UPPER_LIMITS[7]) == (0.0, 1.0)
    assert robot.UPPER_LIMITS[3] == robot.UPPER_LIMITS[11] == 0.0
    assert robot.LOWER_LIMITS[1] == pytest.approx(-robot.UPPER_LIMITS[9])


def test_state_from_sensors_takes_the_arm_slices():
    joint_q = np.arange(28, dtype=float) / 100.0
    state = robot.state_from_sensors(joint_q, (0.25, 0.75))
    np.testing.assert_allclose(state[robot.LEFT_ARM], joint_q[12:19])
    np.testing.assert_allclose(state[robot.RIGHT_ARM], joint_q[19:26])
    assert (state[7], state[15]) == (0.25, 0.75)
    with pytest.raises(ValueError, match="at least 26"):
        robot.state_from_sensors(joint_q[:20], (0, 0))
    with pytest.raises(ValueError, match="gripper values must have 2"):
        robot.state_from_sensors(joint_q, (0.1,))


def test_arm_command_is_degrees_in_left_right_order_and_round_trips():
    action = np.linspace(-0.5, 0.5, 16)
    action[[7, 15]] = (0.2, 0.9)
    degrees = robot.arm_command_degrees(action)
    assert degrees.shape == (14,)
    np.testing.assert_allclose(degrees[:7], np.degrees(action[0:7]))
    np.testing.assert_allclose(degrees[7:], np.degrees(action[8:15]))
    claw = robot.claw_command_positions(action)
    assert claw == pytest.approx([20.0, 90.0])
    back = robot.action_from_commands(degrees, claw)
    np.testing.assert_allclose(back, action, atol=1e-12)
    assert len(robot.ARM_COMMAND_NAMES) == 14 and robot.ARM_COMMAND_NAMES[13] == "arm_joint_13"


@pytest.mark.parametrize(("kind", "raw_state", "raw_command"), [
    ("leju_claw", 50.0, 50.0), ("sim_gripper", 0.4, 70.0), ("dex_hand", 50.0, 50.0)])
def test_gripper_scalings_map_half_travel_to_half(kind, raw_state, raw_command):
    scaling = robot.gripper(kind)
    assert scaling.state_to_unit(raw_state) == pytest.approx(0.5)
    assert scaling.command_to_unit(raw_command) == pytest.approx(0.5)
    assert scaling.unit_to_command(scaling.command_to_unit(raw_command)) == pytest.approx(raw_command)


def test_inverted_claw_flips_both_directions():
    claw = robot.gripper("leju_claw", inverted=True)
    assert claw.state_to_unit(100.0) == pytest.approx(0.0)
    assert claw.unit_to_command(1.0) == pytest.approx(0.0)
    assert claw.command_to_unit(claw.unit_to_command(0.3)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unknown gripper type 'robotiq'"):
        robot.gripper("robotiq")


def test_claw_state_is_read_by_name():
    assert robot.grippers_from_claw([80.0, 20.0], ["right_claw", "left_claw"]) == pytest.approx((0.2, 0.8))
    with pytest.raises(ValueError, match="lacks 'right_claw'"):
        robot.grippers_from_claw([1.0, 2.0], ["left_claw", "head_claw"])
    with pytest.raises(ValueError, match="3 positions for 2 names"):
        robot.grippers_from_claw([1.0, 2.0, 3.0], ["left_claw", "right_claw"])


def test_dexterous_hand_mapping_round_trips():
    action = np.zeros(16)
    action[[7, 15]] = (0.3, 1.0)
    left, right = robot.hand_command_positions(action)
    assert left == [30] * 6 and right == [100] * 6
    assert robot.grippers_from_hands(left, right) == pytest.approx((0.3, 1.0))


def test_within_limits_rejects_non_finite_and_out_of_range():
    mid = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
    assert robot.within_limits(mid)
    bad = mid.copy()
    bad[3] = 0.5  # elbow beyond its 0 rad upper limit
    assert not robot.within_limits(bad)
    bad = mid.copy()
    bad[0] = math.nan
    assert not robot.within_limits(bad)
    with pytest.raises(ValueError, match="must have 16 values"):
        robot.within_limits(mid[:15])


def test_cameras_have_dataset_keys_and_kuavo_topics():
    assert robot.CAMERA_NAMES == ("head_cam_h", "wrist_cam_l", "wrist_cam_r")
    assert robot.CAMERAS[0].feature_key == "observation.images.head_cam_h"
    assert robot.CAMERAS[1].topic == "/cam_l/color/image_raw/compressed"
    assert robot.TOPICS.sensors == "/sensors_data_raw" and robot.TOPICS.arm_command == "/kuavo_arm_traj"


def test_state_from_kuavo_messages():
    """The same mapping serves ROS 2 message classes and rosbags records (duck-typed fields)."""
    from types import SimpleNamespace as NS

    sensors = NS(joint_data=NS(joint_q=[0.01 * i for i in range(28)]))
    claw = NS(data=NS(name=["left_claw", "right_claw"], position=[100.0, 0.0]))
    state = robot.state_from_kuavo(sensors, claw)
    np.testing.assert_allclose(state[robot.LEFT_ARM], np.arange(12, 19) * 0.01)
    assert (state[7], state[15]) == (1.0, 0.0)
    hands = NS(position=[50.0] * 6 + [100.0] * 6)
    assert robot.gripper_units(robot.state_from_kuavo(sensors, hand_state=hands)) == pytest.approx((0.5, 1.0))
    assert robot.gripper_units(robot.state_from_kuavo(sensors)) == (0.0, 0.0)
    with pytest.raises(ValueError, match="hand state has 6 positions, expected 12"):
        robot.state_from_kuavo(sensors, hand_state=NS(position=[0.0] * 6))
