"""Kuavo's two 7-joint arms and two grippers as a kinematic model in the 16-dim layout.

Joints track their commanded positions with a first-order lag and stay inside the robot's limits
(:mod:`kuavo_smolvla_ros.robot`). Where a hand is on the table is a deliberately simple projection:
shoulder yaw (joint 3) moves it sideways and shoulder pitch (joint 1) forwards, linearly, so that a
hand position has exactly one arm pose (:func:`arm_pose`). The other joints follow a fixed posture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kuavo_smolvla_ros import robot

ARMS = ("left", "right")
_ARM_SLICE = {"left": robot.LEFT_ARM, "right": robot.RIGHT_ARM}
_GRIPPER = {"left": robot.LEFT_GRIPPER, "right": robot.RIGHT_GRIPPER}
PITCH, ROLL, YAW, ELBOW = 0, 1, 2, 3


@dataclass(frozen=True)
class ArmGeometry:
    """Table position (metres; x to the robot's right, y forwards) of one hand as a function of its arm."""

    shoulder: tuple[float, float]
    #: Shoulder roll of the fixed posture (the arm held slightly away from the body).
    roll: float
    lateral_gain: float = 0.3  # m per rad of shoulder yaw
    forward_gain: float = 0.3  # m per rad of shoulder pitch (negative pitch raises the arm forwards)
    #: Elbow angle per rad of shoulder pitch in the posture.
    elbow_per_pitch: float = 0.6

    def hand(self, arm7: np.ndarray) -> np.ndarray:
        return np.array([self.shoulder[0] + self.lateral_gain * arm7[YAW],
                         self.shoulder[1] - self.forward_gain * arm7[PITCH]])

    def pose(self, xy) -> np.ndarray:
        """The 7 arm joints that put the hand at ``xy`` (not clipped: see :meth:`reachable`)."""
        arm = np.zeros(robot.ARM_DOF)
        arm[YAW] = (xy[0] - self.shoulder[0]) / self.lateral_gain
        arm[PITCH] = -(xy[1] - self.shoulder[1]) / self.forward_gain
        arm[ROLL] = self.roll
        arm[ELBOW] = self.elbow_per_pitch * arm[PITCH]
        return arm


GEOMETRY = {"left": ArmGeometry(shoulder=(-0.2, 0.15), roll=0.2),
            "right": ArmGeometry(shoulder=(0.2, 0.15), roll=-0.2)}
#: Where the hands rest between tasks (a little in front of the shoulders).
HOME = {"left": (-0.2, 0.25), "right": (0.2, 0.25)}


def arm_slice(arm: str) -> slice:
    return _ARM_SLICE[arm]


def gripper_index(arm: str) -> int:
    return _GRIPPER[arm]


def hand_position(state16: np.ndarray, arm: str) -> np.ndarray:
    """Table xy of ``arm``'s hand for a 16-dim state."""
    return GEOMETRY[arm].hand(np.asarray(state16)[_ARM_SLICE[arm]])


def arm_pose(arm: str, xy) -> np.ndarray:
    return GEOMETRY[arm].pose(xy)


def reachable(arm: str, xy) -> bool:
    """Whether ``arm``'s hand can be put at ``xy`` without leaving the joint limits."""
    vector = home_state()
    vector[_ARM_SLICE[arm]] = arm_pose(arm, xy)
    return robot.within_limits(vector)


def home_state() -> np.ndarray:
    """Both hands at :data:`HOME`, grippers open."""
    state = np.zeros(robot.STATE_DIM)
    for arm in ARMS:
        state[_ARM_SLICE[arm]] = arm_pose(arm, HOME[arm])
    return state


class KinematicArms:
    """The 16 joints: commands are clipped into the limits (and counted when they were outside), the
    measured positions follow them with time constants ``arm_tau_s`` / ``gripper_tau_s``."""

    def __init__(self, arm_tau_s: float = 0.08, gripper_tau_s: float = 0.12):
        if arm_tau_s <= 0 or gripper_tau_s <= 0:
            raise ValueError("time constants must be > 0")
        self.tau = np.full(robot.STATE_DIM, arm_tau_s)
        self.tau[robot.GRIPPER_INDICES] = gripper_tau_s
        self.state = home_state()
        self.command = self.state.copy()
        self.commands_clipped = 0
        self.commands_rejected = 0

    def reset(self, state: np.ndarray | None = None) -> None:
        self.state = np.clip(home_state() if state is None else np.asarray(state, dtype=np.float64),
                             robot.LOWER_LIMITS, robot.UPPER_LIMITS)
        self.command = self.state.copy()

    def set_command(self, command16) -> bool:
        """Accept a 16-dim target; a non-finite or wrongly sized one is rejected (False), the last kept."""
        command = np.asarray(command16, dtype=np.float64).reshape(-1)
        if command.shape != (robot.ACTION_DIM,) or not np.all(np.isfinite(command)):
            self.commands_rejected += 1
            return False
        clipped = np.clip(command, robot.LOWER_LIMITS, robot.UPPER_LIMITS)
        if np.any(clipped != command):
            self.commands_clipped += 1
        self.command = clipped
        return True

    def set_partial(self, indices, values) -> bool:
        """Command some entries only (an arm from /kuavo_arm_traj, the grippers from the claw command)."""
        command = self.command.copy()
        command[np.asarray(indices)] = np.asarray(values, dtype=np.float64)
        return self.set_command(command)

    def step(self, dt: float) -> None:
        self.state = self.state + (self.command - self.state) * (1.0 - np.exp(-dt / self.tau))
