"""The policy's 16-dim joint layout: names, limits, units and velocity limits (the single source of them).

Layout (state and action alike), interleaved per arm::

    [left arm 7 (rad), left gripper (0..1, 0 open), right arm 7 (rad), right gripper (0..1)]

How a robot's messages map onto this layout (topics, message types, ``joint_q`` indices, end effectors)
is the robot profile's job (:mod:`kuavo_smolvla_ros.contract`); this module has no ROS imports and knows
no topic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ACTION_DIM = 16
STATE_DIM = 16
#: SmolVLA's pretrained base works on 32-dim state/action; the 16 real dims are zero-padded.
PADDED_DIM = 32
#: The rate at which Kuavo data is recorded and the policy is run by default.
CONTROL_RATE_HZ = 10.0

ARM_DOF = 7
LEFT_ARM = slice(0, 7)
LEFT_GRIPPER = 7
RIGHT_ARM = slice(8, 15)
RIGHT_GRIPPER = 15
ARM_INDICES = np.r_[0:7, 8:15]
GRIPPER_INDICES = np.array([LEFT_GRIPPER, RIGHT_GRIPPER])

#: Names of the 16 layout entries (JointState names, dataset feature names).
JOINT_NAMES: tuple[str, ...] = (
    *(f"zarm_l{i}_joint" for i in range(1, 8)),
    "left_gripper",
    *(f"zarm_r{i}_joint" for i in range(1, 8)),
    "right_gripper",
)

#: The Kuavo arm SDK rejects any arm joint command beyond +-pi.
SDK_ARM_LIMIT_RAD = math.pi

# Arm joint position limits (rad) from the Kuavo 4 Pro URDF (kuavo-ros-opensource,
# models/biped_s45/urdf/biped_s45.urdf; s46..s49 share them), joints 1..7 of each arm.
_LEFT_ARM_LOWER = (-math.pi, -0.349065850398866, -math.pi / 2, -2.61799387799149, -math.pi / 2,
                   -1.30899693899575, -0.698131700797732)
_LEFT_ARM_UPPER = (math.pi / 2, 2.0943951023932, math.pi / 2, 0.0, math.pi / 2, 0.698131700797732,
                   0.698131700797732)
_RIGHT_ARM_LOWER = (-math.pi, -2.0943951023932, -math.pi / 2, -2.61799387799149, -math.pi / 2,
                    -0.698131700797732, -0.698131700797732)
_RIGHT_ARM_UPPER = (math.pi / 2, 0.349065850398866, math.pi / 2, 0.0, math.pi / 2, 1.30899693899575,
                    0.698131700797732)

#: Per-entry lower/upper limits of the 16-dim layout (rad for arms, 0..1 for grippers).
LOWER_LIMITS = np.array([*_LEFT_ARM_LOWER, 0.0, *_RIGHT_ARM_LOWER, 0.0], dtype=np.float64)
UPPER_LIMITS = np.array([*_LEFT_ARM_UPPER, 1.0, *_RIGHT_ARM_UPPER, 1.0], dtype=np.float64)
#: Units of the 16 entries.
UNITS: tuple[str, ...] = tuple("rad" if i in ARM_INDICES else "unit" for i in range(ACTION_DIM))
#: Conservative default maximum changes per second used by the safety filter.
MAX_ARM_VELOCITY = 1.0  # rad/s
MAX_GRIPPER_VELOCITY = 2.0  # gripper units (0..1) per second
DEFAULT_MAX_VELOCITY = np.array([MAX_ARM_VELOCITY] * 7 + [MAX_GRIPPER_VELOCITY] + [MAX_ARM_VELOCITY] * 7
                                + [MAX_GRIPPER_VELOCITY], dtype=np.float64)


def _as_vector(values: Sequence[float] | np.ndarray, size: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape[0] != size:
        raise ValueError(f"{what} must have {size} values, got {array.shape[0]}")
    return array


def compose(left_arm: Sequence[float], left_gripper: float, right_arm: Sequence[float],
            right_gripper: float) -> np.ndarray:
    """Assemble a 16-dim layout vector from its parts (arms rad, grippers 0..1)."""
    out = np.empty(ACTION_DIM, dtype=np.float64)
    out[LEFT_ARM] = _as_vector(left_arm, ARM_DOF, "left arm")
    out[LEFT_GRIPPER] = left_gripper
    out[RIGHT_ARM] = _as_vector(right_arm, ARM_DOF, "right arm")
    out[RIGHT_GRIPPER] = right_gripper
    return out


def arm_radians(vector16: Sequence[float] | np.ndarray) -> np.ndarray:
    """The 14 arm joints (left 7, right 7) of a layout vector, radians."""
    return _as_vector(vector16, ACTION_DIM, "layout vector")[ARM_INDICES]


def arm_command_degrees(action16: Sequence[float] | np.ndarray) -> np.ndarray:
    """The /kuavo_arm_traj positions (14, degrees, names ``ARM_COMMAND_NAMES``) for an action."""
    return np.degrees(arm_radians(action16))


def gripper_units(vector16: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(left, right) gripper values (0..1) of a layout vector."""
    vector = _as_vector(vector16, ACTION_DIM, "layout vector")
    return float(vector[LEFT_GRIPPER]), float(vector[RIGHT_GRIPPER])


#: A measured joint may read this far outside its limits (calibration, sensor noise) and still be believed:
#: 0.2 rad for the arms, 0.05 for the grippers (0..1). Beyond it a state is implausible and rejected.
PLAUSIBILITY_MARGIN = np.where(np.isin(np.arange(ACTION_DIM), GRIPPER_INDICES), 0.05, 0.2)


def check_plausible(vector16: Sequence[float] | np.ndarray, what: str = "joint state") -> np.ndarray:
    """``vector16`` (float64) if every entry lies within the limits widened by :data:`PLAUSIBILITY_MARGIN`;
    ``ValueError`` naming the first offending joints and values otherwise."""
    vector = _as_vector(vector16, ACTION_DIM, what)
    bad = np.nonzero((vector < LOWER_LIMITS - PLAUSIBILITY_MARGIN) | (vector > UPPER_LIMITS + PLAUSIBILITY_MARGIN)
                     | ~np.isfinite(vector))[0]
    if bad.size:
        shown = ", ".join(f"{JOINT_NAMES[i]} = {vector[i]:.4g} (limits {LOWER_LIMITS[i]:.3g}..{UPPER_LIMITS[i]:.3g})"
                          for i in bad[:3])
        raise ValueError(f"implausible {what}: {shown}{' ...' if bad.size > 3 else ''}")
    return vector


def within_limits(vector16: Sequence[float] | np.ndarray, tolerance: float = 1e-6) -> bool:
    """Whether a layout vector is finite and inside ``LOWER_LIMITS``..``UPPER_LIMITS``."""
    vector = _as_vector(vector16, ACTION_DIM, "layout vector")
    return bool(
        np.all(np.isfinite(vector))
        and np.all(vector >= LOWER_LIMITS - tolerance)
        and np.all(vector <= UPPER_LIMITS + tolerance)
    )
