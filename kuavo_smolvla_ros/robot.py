"""Kuavo 4 Pro robot facts: the single source of truth for the 16-dim layout, limits, units and topics.

Layout (state and action alike), interleaved per arm::

    [left arm 7 (rad), left gripper (0..1), right arm 7 (rad), right gripper (0..1)]

Everything that talks to the robot, records it, trains on it or simulates it imports from here.
This module has no ROS imports: the conversions take plain sequences (or any object with the
Kuavo message field names), so ROS 2 messages, rosbags records and numpy arrays all work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ROBOT_TYPE = "kuavo4pro"
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

#: Names used by the Kuavo arm command topic (/kuavo_arm_traj): left 7 then right 7, degrees.
ARM_COMMAND_NAMES: tuple[str, ...] = tuple(f"arm_joint_{i}" for i in range(14))
#: Names of the Leju claws in lejuClawCommand / lejuClawState.
CLAW_NAMES: tuple[str, str] = ("left_claw", "right_claw")

#: Indices of the arm joints inside /sensors_data_raw joint_q (28 entries: 6+6 legs, 7+7 arms, 2 head).
SENSORS_LEFT_ARM = slice(12, 19)
SENSORS_RIGHT_ARM = slice(19, 26)
SENSORS_JOINT_COUNT = 28

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


@dataclass(frozen=True)
class Camera:
    """One Kuavo camera: its short name, ROS 1/2 topic and LeRobot dataset key."""

    name: str
    topic: str
    compressed: bool = True

    @property
    def feature_key(self) -> str:
        return f"observation.images.{self.name}"


#: The three RGB cameras (640x480 JPEG at 30 Hz). Old recordings swapped l/r once: topics are
#: remappable in every config that uses them.
CAMERAS: tuple[Camera, ...] = (
    Camera("head_cam_h", "/cam_h/color/image_raw/compressed"),
    Camera("wrist_cam_l", "/cam_l/color/image_raw/compressed"),
    Camera("wrist_cam_r", "/cam_r/color/image_raw/compressed"),
)
CAMERA_NAMES: tuple[str, ...] = tuple(c.name for c in CAMERAS)
CAMERA_HEIGHT = 480
CAMERA_WIDTH = 640

STATE_FEATURE = "observation.state"
ACTION_FEATURE = "action"


@dataclass(frozen=True)
class Topics:
    """Default Kuavo topic names (ROS 1 names, kept as ROS 2 defaults; all remappable)."""

    sensors: str = "/sensors_data_raw"
    arm_command: str = "/kuavo_arm_traj"
    claw_command: str = "/leju_claw_command"
    claw_state: str = "/leju_claw_state"
    hand_command: str = "/control_robot_hand_position"
    hand_state: str = "/dexhand/state"
    sim_gripper_command: str = "/gripper/command"
    sim_gripper_state: str = "/gripper/state"
    joint_states: str = "/joint_states"
    task_instruction: str = "/task_instruction"
    arm_mode_service: str = "/arm_traj_change_mode"


TOPICS = Topics()
#: control_mode value of /arm_traj_change_mode under which the arm follows /kuavo_arm_traj.
ARM_MODE_EXTERNAL_CONTROL = 2


@dataclass(frozen=True)
class GripperScaling:
    """How one end-effector type maps its raw state/command values to the layout's 0..1.

    unit = raw_state / state_scale and raw_command = unit * command_scale; with ``inverted`` the
    unit value is flipped (1 - unit) on both sides, for claws whose raw 0 means closed.
    """

    name: str
    state_scale: float
    command_scale: float
    inverted: bool = False

    def state_to_unit(self, raw: float) -> float:
        unit = float(raw) / self.state_scale
        return 1.0 - unit if self.inverted else unit

    def command_to_unit(self, raw: float) -> float:
        unit = float(raw) / self.command_scale
        return 1.0 - unit if self.inverted else unit

    def unit_to_command(self, unit: float) -> float:
        value = 1.0 - float(unit) if self.inverted else float(unit)
        return value * self.command_scale


#: End-effector types met in Kuavo data and deployments.
GRIPPERS: dict[str, GripperScaling] = {
    # Leju claw: lejuClawCommand / lejuClawState positions 0 open .. 100 closed (Leju's API docs and
    # SDK; some message comments say the opposite, hence ``inverted``).
    "leju_claw": GripperScaling("leju_claw", state_scale=100.0, command_scale=100.0),
    # Simulator (Robotiq-style) gripper on /gripper/*: state 0..0.8, command 0..140.
    "sim_gripper": GripperScaling("sim_gripper", state_scale=0.8, command_scale=140.0),
    # Dexterous hand: six fingers 0 open .. 100 closed (the mean is the gripper value).
    "dex_hand": GripperScaling("dex_hand", state_scale=100.0, command_scale=100.0),
}
HAND_FINGERS = 6


def gripper(name: str, inverted: bool = False) -> GripperScaling:
    """The scaling of end-effector type ``name`` (``leju_claw``, ``sim_gripper``, ``dex_hand``)."""
    try:
        base = GRIPPERS[name]
    except KeyError:
        raise ValueError(f"unknown gripper type {name!r}; expected one of {sorted(GRIPPERS)}") from None
    return GripperScaling(base.name, base.state_scale, base.command_scale, inverted)


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


def state_from_sensors(joint_q: Sequence[float], gripper_units: Sequence[float]) -> np.ndarray:
    """16-dim state from /sensors_data_raw ``joint_q`` (rad) and the two gripper values (0..1)."""
    q = np.asarray(joint_q, dtype=np.float64).reshape(-1)
    if q.shape[0] < SENSORS_RIGHT_ARM.stop:
        raise ValueError(
            f"sensors joint_q has {q.shape[0]} entries; the arms need at least {SENSORS_RIGHT_ARM.stop}"
        )
    left, right = _as_vector(gripper_units, 2, "gripper values")
    return compose(q[SENSORS_LEFT_ARM], left, q[SENSORS_RIGHT_ARM], right)


def grippers_from_claw(positions: Sequence[float], names: Sequence[str] = CLAW_NAMES,
                       scaling: GripperScaling = GRIPPERS["leju_claw"], command: bool = False) -> tuple[float, float]:
    """(left, right) gripper units from a claw/gripper state's (or, with ``command``, a recorded
    command's) ``position`` and ``name`` lists."""
    what = "claw command" if command else "claw state"
    to_unit = scaling.command_to_unit if command else scaling.state_to_unit
    values = list(positions)
    names = list(names) if names else list(CLAW_NAMES[: len(values)])
    if len(values) != len(names):
        raise ValueError(f"{what} has {len(values)} positions for {len(names)} names")
    by_name = dict(zip(names, values, strict=True))
    try:
        return tuple(to_unit(by_name[n]) for n in CLAW_NAMES)  # type: ignore[return-value]
    except KeyError as err:
        raise ValueError(f"{what} lacks {err.args[0]!r} (names: {names})") from None


def state_from_kuavo(sensors, claw_state=None, *, hand_state=None,
                     scaling: GripperScaling = GRIPPERS["leju_claw"]) -> np.ndarray:
    """16-dim state from Kuavo messages (ROS 2 classes or rosbags records with the same fields).

    ``sensors`` is a ``SensorsData``; the grippers come from a ``LejuClawState``/gripper state with
    ``data.name``/``data.position`` (``claw_state``) or a dexterous-hand ``JointState`` whose first
    twelve positions are the left then right fingers (``hand_state``); with neither they are 0.
    """
    if claw_state is not None:
        data = getattr(claw_state, "data", claw_state)
        grippers = grippers_from_claw(data.position, data.name, scaling)
    elif hand_state is not None:
        fingers = list(hand_state.position)
        if len(fingers) < 2 * HAND_FINGERS:
            raise ValueError(f"hand state has {len(fingers)} positions, expected {2 * HAND_FINGERS}")
        grippers = grippers_from_hands(fingers[:HAND_FINGERS], fingers[HAND_FINGERS:2 * HAND_FINGERS])
    else:
        grippers = (0.0, 0.0)
    return state_from_sensors(sensors.joint_data.joint_q, grippers)


def grippers_from_hands(left_fingers: Sequence[float], right_fingers: Sequence[float]) -> tuple[float, float]:
    """(left, right) gripper units from dexterous-hand finger positions (0 open..100 closed)."""
    scaling = GRIPPERS["dex_hand"]
    return (
        scaling.state_to_unit(float(np.mean(_as_vector(left_fingers, HAND_FINGERS, "left hand")))),
        scaling.state_to_unit(float(np.mean(_as_vector(right_fingers, HAND_FINGERS, "right hand")))),
    )


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


def claw_command_positions(action16: Sequence[float] | np.ndarray,
                           scaling: GripperScaling = GRIPPERS["leju_claw"]) -> list[float]:
    """lejuClawCommand ``data.position`` ([left, right], raw units) for an action."""
    return [scaling.unit_to_command(u) for u in gripper_units(action16)]


def hand_command_positions(action16: Sequence[float] | np.ndarray) -> tuple[list[int], list[int]]:
    """robotHandPosition finger targets (six uint8 0..100 per hand) for an action."""
    scaling = GRIPPERS["dex_hand"]
    left, right = (round(min(max(scaling.unit_to_command(u), 0.0), 100.0)) for u in gripper_units(action16))
    return [left] * HAND_FINGERS, [right] * HAND_FINGERS


def action_from_commands(arm_degrees: Sequence[float], gripper_commands: Sequence[float],
                         scaling: GripperScaling = GRIPPERS["leju_claw"]) -> np.ndarray:
    """16-dim action from a recorded /kuavo_arm_traj (14, degrees) and gripper commands (raw)."""
    arm = np.radians(_as_vector(arm_degrees, 2 * ARM_DOF, "arm command"))
    left, right = (scaling.command_to_unit(v) for v in _as_vector(gripper_commands, 2, "gripper commands"))
    return compose(arm[:ARM_DOF], left, arm[ARM_DOF:], right)


def layout_from_named(names: Sequence[str], positions: Sequence[float],
                      layout_names: Sequence[str] = JOINT_NAMES, allow_extra: bool = False) -> np.ndarray:
    """A 16-dim vector from a JointState-like ``name``/``position`` pair; ``layout_names[i]`` is the
    source name of layout entry ``i`` (default: the layout's own names). Extra joints are an error
    unless ``allow_extra``."""
    names, positions = list(names), list(positions)
    if len(names) != len(positions):
        raise ValueError(f"joint state has {len(names)} names and {len(positions)} positions")
    index = {name: i for i, name in enumerate(names)}
    if not allow_extra:
        unknown = [n for n in names if n not in set(layout_names)]
        if unknown:
            raise ValueError(f"joint state has unknown joint names {unknown[:3]}")
    missing = [n for n in layout_names if n not in index]
    if missing:
        raise ValueError(f"joint state lacks {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    return np.array([float(positions[index[n]]) for n in layout_names], dtype=np.float64)


def within_limits(vector16: Sequence[float] | np.ndarray, tolerance: float = 1e-6) -> bool:
    """Whether a layout vector is finite and inside ``LOWER_LIMITS``..``UPPER_LIMITS``."""
    vector = _as_vector(vector16, ACTION_DIM, "layout vector")
    return bool(
        np.all(np.isfinite(vector))
        and np.all(vector >= LOWER_LIMITS - tolerance)
        and np.all(vector <= UPPER_LIMITS + tolerance)
    )
