"""Kuavo's own messages <-> the 16-dim layout, both directions, for any profile's ``joint_q`` layout.

Decoders (node and converter) and encoders (simulator node, recorder, synthetic bags) of ``SensorsData``
and ``/kuavo_arm_traj`` live here and nowhere else; end effectors are in
:mod:`~kuavo_smolvla_ros.contract.end_effectors`. No ROS imports: decoders read any object with the message's
field names (rclpy messages, rosbags records), encoders return field mappings
(:mod:`~kuavo_smolvla_ros.contract.fields`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.end_effectors import named_values
from kuavo_smolvla_ros.contract.fields import Fields, header, joint_state_fields
from kuavo_smolvla_ros.contract.profile import ARM_TRAJ_NAMES, JointQLayout


def arms_from_joint_q(joint_q: Sequence[float], layout: JointQLayout, profile: str) -> np.ndarray:
    """The 14 arm joints (left 7, right 7; rad) of a ``SensorsData.joint_data.joint_q``.

    Raises ``ValueError`` naming the profile, the expected and the received length when ``joint_q`` does not
    have exactly ``layout.length`` entries (another robot's layout is refused, never read shifted)."""
    q = np.asarray(joint_q, dtype=np.float64).reshape(-1)
    if q.shape[0] != layout.length:
        raise ValueError(f"joint_q has {q.shape[0]} entries; robot profile {profile} expects {layout.length} "
                         "(another robot's joint layout? choose its profile)")
    return np.concatenate([q[list(layout.left_arm)], q[list(layout.right_arm)]])


def joint_q_from_state(state16: Sequence[float], layout: JointQLayout) -> np.ndarray:
    """A ``joint_q`` of ``layout.length`` entries holding the arm joints of a layout vector (others 0)."""
    arms = robot.arm_radians(state16)
    q = np.zeros(layout.length)
    q[list(layout.left_arm)] = arms[:robot.ARM_DOF]
    q[list(layout.right_arm)] = arms[robot.ARM_DOF:]
    return q


def sensors_fields(state16: Sequence[float], stamp: float, layout: JointQLayout) -> Fields:
    """``SensorsData`` for a layout vector: arms in ``joint_q`` (legs, waist and head 0), a level IMU at rest."""
    q = joint_q_from_state(state16, layout).tolist()
    zeros = [0.0] * layout.length
    gravity = {"x": 0.0, "y": 0.0, "z": 9.81}
    return {
        "header": header(stamp), "sensor_time": stamp,
        "joint_data": {"joint_q": q, "joint_v": zeros, "joint_vd": zeros, "joint_torque": zeros},
        "imu_data": {"gyro": {"x": 0.0, "y": 0.0, "z": 0.0}, "acc": gravity, "free_acc": gravity,
                     "quat": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
        "end_effector_data": {"name": [], "position": [], "velocity": [], "effort": []},
    }


def arms_from_arm_traj(msg: Any, names: Sequence[str] = ARM_TRAJ_NAMES) -> np.ndarray:
    """The 14 arm joints (rad) of a ``/kuavo_arm_traj`` JointState (degrees), by name; a message without
    names is read in ``names`` order. ``ValueError`` for a wrong count, repeated or unknown names."""
    positions = list(msg.position)
    if not list(msg.name):
        if len(positions) != len(names):
            raise ValueError(f"arm command has {len(positions)} positions, expected {len(names)}")
        degrees = np.asarray(positions, dtype=np.float64)
    else:
        degrees = named_values(msg.name, positions, names, "arm command")
    return np.radians(degrees)


def arm_traj_fields(action16: Sequence[float], stamp: float, names: Sequence[str] = ARM_TRAJ_NAMES) -> Fields:
    """``/kuavo_arm_traj`` for an action: the 14 arm joints in degrees."""
    return joint_state_fields(names, robot.arm_command_degrees(action16), stamp)
