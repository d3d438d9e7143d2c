"""The input conversions the node and the converter share: gripper states and commands, joint states."""

from __future__ import annotations

from types import SimpleNamespace as Msg

import numpy as np
import pytest

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.inputs import StateAssembler, gripper_command_units

CLAW = robot.gripper("leju_claw")


def _claw(positions, names=robot.CLAW_NAMES):
    return Msg(data=Msg(position=list(positions), name=list(names)))


def test_gripper_commands_per_end_effector():
    assert gripper_command_units(_claw([20.0, 80.0]), "leju_claw", CLAW) == pytest.approx((0.2, 0.8))
    assert gripper_command_units(_claw([80.0, 20.0], ["right_claw", "left_claw"]), "leju_claw",
                                 CLAW) == pytest.approx((0.2, 0.8))
    sim = robot.gripper("sim_gripper")
    assert gripper_command_units(Msg(position=[70.0, 140.0], name=[]), "sim_gripper", sim) == pytest.approx((0.5, 1))
    hand = Msg(left_hand_position=[50] * 6, right_hand_position=[100] * 6)
    assert gripper_command_units(hand, "dex_hand", robot.gripper("dex_hand")) == pytest.approx((0.5, 1.0))


@pytest.mark.parametrize(("msg", "kind", "message"), [
    (_claw([10.0]), "leju_claw", "claw command has 1 positions for 2 names"),
    (_claw([10.0, 20.0], ["left_claw", "thumb"]), "leju_claw", "claw command lacks 'right_claw'"),
    (_claw([np.nan, 20.0]), "leju_claw", "non-finite gripper command"),
    (Msg(left_hand_position=[1] * 5, right_hand_position=[1] * 6), "dex_hand",
     "hand command needs 6 fingers per hand, got 5 and 6"),
])
def test_bad_gripper_commands_are_rejected(msg, kind, message):
    with pytest.raises(ValueError, match=message):
        gripper_command_units(msg, kind, robot.gripper(kind))


def test_state_waits_for_the_gripper_and_rejects_bad_values():
    states = StateAssembler("leju_claw")
    q = np.zeros(robot.SENSORS_JOINT_COUNT)
    q[robot.SENSORS_LEFT_ARM] = 0.1
    sensors = Msg(joint_data=Msg(joint_q=q))
    assert states.from_sensors(sensors) is None  # no gripper state yet: no state at all
    states.update_grippers(_claw([50.0, 100.0]))
    state = states.from_sensors(sensors)
    assert state[robot.LEFT_ARM] == pytest.approx([0.1] * 7) and robot.gripper_units(state) == (0.5, 1.0)
    with pytest.raises(ValueError, match="non-finite gripper state"):
        states.update_grippers(_claw([np.inf, 1.0]))
    assert states.grippers == (0.5, 1.0)  # the bad message changed nothing
    q[robot.SENSORS_RIGHT_ARM.start] = np.nan
    with pytest.raises(ValueError, match="sensors joint_q contains non-finite values"):
        states.from_sensors(sensors)
    assert StateAssembler("leju_claw", require_gripper=False).from_sensors(Msg(joint_data=Msg(joint_q=np.zeros(28))))[
        robot.GRIPPER_INDICES].tolist() == [0.0, 0.0]
