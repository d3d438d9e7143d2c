"""The 16-dim layout and its limits (the Kuavo message mappings are the contract's: test_contract)."""

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
