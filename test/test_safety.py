"""The safety filter: limits, per-tick change, non-finite values, ramp-in."""

import numpy as np
import pytest

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.safety import SafetyFilter

MID = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2


def test_requires_a_reset_from_the_measured_state():
    with pytest.raises(RuntimeError, match="before reset"):
        SafetyFilter().apply(MID)
    with pytest.raises(ValueError, match="finite and 16-dim"):
        SafetyFilter().reset(np.full(16, np.nan))


def test_commands_stay_inside_limits_and_step_bounds():
    safety = SafetyFilter(max_step=0.05, ramp_ticks=0)
    safety.reset(MID)
    rng = np.random.default_rng(0)
    last = MID
    for _ in range(200):
        result = safety.apply(rng.uniform(-5, 5, 16))
        assert robot.within_limits(result.command)
        assert np.all(np.abs(result.command - last) <= 0.05 + 1e-12)
        last = result.command
    assert result.clamped


def test_non_finite_and_wrong_length_hold_the_last_command():
    safety = SafetyFilter(max_step=1.0, ramp_ticks=0)
    safety.reset(MID)
    target = MID + 0.01
    assert not safety.apply(target).clamped
    bad = target.copy()
    bad[4] = np.inf
    held = safety.apply(bad)
    assert held.non_finite and np.array_equal(held.command, target)
    assert safety.apply(target[:10]).non_finite
    assert np.array_equal(safety.apply(None).command, target)


def test_ramp_in_grows_the_allowed_step_from_zero():
    safety = SafetyFilter(max_step=0.1, ramp_ticks=4)
    safety.reset(MID)
    far = np.clip(MID + 1.0, robot.LOWER_LIMITS, robot.UPPER_LIMITS)
    steps = []
    last = MID
    for _ in range(6):
        command = safety.apply(far).command
        steps.append(float(np.max(np.abs(command - last))))
        last = command
    np.testing.assert_allclose(steps, [0.02, 0.04, 0.06, 0.08, 0.1, 0.1], atol=1e-9)


def test_reset_clips_an_out_of_range_measurement():
    safety = SafetyFilter()
    start = safety.reset(np.full(16, 10.0))
    np.testing.assert_allclose(start, robot.UPPER_LIMITS)


def test_a_clamped_command_says_which_limit_and_which_joint():
    start = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
    f = SafetyFilter(max_step=0.1, ramp_ticks=2)
    f.reset(start)
    fast = start.copy()
    fast[3] += 0.5
    ramping = f.apply(fast)
    assert ramping.clamped and ramping.limit == "ramp-in" and ramping.joint == 3
    f.apply(start)
    f.apply(start)
    speeding = f.apply(fast)
    assert (speeding.limit, speeding.joint) == ("speed limit", 3)
    outside = f.last.copy()
    outside[5] = robot.UPPER_LIMITS[5] + 1.0
    both = f.apply(outside)
    assert both.limit == "joint limits + speed limit" and both.joint == 5
    near = f.last.copy()
    near[2] = robot.UPPER_LIMITS[2] + 0.01
    f.reset(np.minimum(near, robot.UPPER_LIMITS))
    f.apply(f.last)
    f.apply(f.last)
    f.apply(f.last)
    only_position = f.apply(near)
    assert (only_position.limit, only_position.joint) == ("joint limits", 2)
    assert f.apply(f.last).limit == ""
