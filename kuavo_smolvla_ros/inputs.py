"""Kuavo input messages -> the policy's 16-dim state and gripper values, shared by node and converter.

The live node's callbacks and the bag converter both turn joint and gripper messages into states with
:class:`StateAssembler`, so a recorded episode and the robot's live inputs are built by the same code
(``test_conversion_parity`` holds them to it). No ROS imports: rclpy messages and rosbags records
have the same field names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kuavo_smolvla_ros import robot


def gripper_state_units(msg, gripper_type: str, scaling: robot.GripperScaling) -> tuple[float, float]:
    """(left, right) gripper units from a gripper state message of ``gripper_type``.

    ``leju_claw``: ``LejuClawState`` (``data.name``/``data.position``); ``sim_gripper``: a JointState
    with the claw names; ``dex_hand``: a JointState of 12 finger positions (left six, right six).
    """
    if gripper_type == "dex_hand":
        fingers = list(msg.position)
        if len(fingers) < 2 * robot.HAND_FINGERS:
            raise ValueError(f"hand state has {len(fingers)} positions, expected {2 * robot.HAND_FINGERS}")
        n = robot.HAND_FINGERS
        units = robot.grippers_from_hands(fingers[:n], fingers[n:2 * n])
    else:
        data = getattr(msg, "data", msg)
        units = robot.grippers_from_claw(data.position, data.name, scaling)
    if not np.all(np.isfinite(units)):
        raise ValueError("non-finite gripper state")
    return units


def gripper_command_units(msg, gripper_type: str, scaling: robot.GripperScaling) -> tuple[float, float]:
    """(left, right) gripper units from a recorded gripper command of ``gripper_type``.

    ``leju_claw``: ``LejuClawCommand`` (``data.name``/``data.position``); ``sim_gripper``: a JointState
    ``[left, right]`` in command units; ``dex_hand``: ``RobotHandPosition`` (six fingers per hand).
    """
    if gripper_type == "dex_hand":
        left = np.asarray(msg.left_hand_position, dtype=np.float64)
        right = np.asarray(msg.right_hand_position, dtype=np.float64)
        if left.size != robot.HAND_FINGERS or right.size != robot.HAND_FINGERS:
            raise ValueError(f"hand command needs {robot.HAND_FINGERS} fingers per hand, "
                             f"got {left.size} and {right.size}")
        units = (scaling.command_to_unit(left.mean()), scaling.command_to_unit(right.mean()))
    else:
        data = getattr(msg, "data", msg)
        units = robot.grippers_from_claw(data.position, data.name, scaling, command=True)
    if not np.all(np.isfinite(units)):
        raise ValueError("non-finite gripper command")
    return units


def _finite(state: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(state)):
        raise ValueError(f"{what} contains non-finite values")
    return state


class StateAssembler:
    """16-dim states from joint messages plus the latest gripper state.

    Gripper state arrives on its own topic; its latest value is held and combined with each joint
    message. Until the first gripper state arrives no state is produced (``None``) unless
    ``require_gripper`` is False (recordings without grippers: they read 0).
    """

    def __init__(self, gripper_type: str = "leju_claw", inverted: bool = False, require_gripper: bool = True,
                 joint_names: Sequence[str] = robot.JOINT_NAMES, allow_extra_joints: bool = False):
        self.gripper_type = gripper_type
        self.scaling = robot.gripper(gripper_type, inverted)
        self.joint_names = tuple(joint_names)
        self.allow_extra_joints = allow_extra_joints
        self.grippers: tuple[float, float] | None = None if require_gripper else (0.0, 0.0)

    def update_grippers(self, msg) -> tuple[float, float]:
        """Hold the gripper values of a gripper state message; ``ValueError`` if it is malformed."""
        self.grippers = gripper_state_units(msg, self.gripper_type, self.scaling)
        return self.grippers

    def from_sensors(self, msg) -> np.ndarray | None:
        """The state for a ``SensorsData`` (arms from ``joint_q``), or None before any gripper state."""
        if self.grippers is None:
            return None
        return _finite(robot.state_from_sensors(msg.joint_data.joint_q, self.grippers), "sensors joint_q")

    def from_joint_state(self, msg) -> np.ndarray:
        """The state for a JointState naming the layout's joints (grippers included, by name)."""
        state = robot.layout_from_named(msg.name, msg.position, self.joint_names, self.allow_extra_joints)
        return _finite(state, "joint state")
