"""Robot profiles: every stream between a robot and the policy, stated once (``config/robots/<name>.yaml``).

A profile says which topics carry the cameras, the joint state, the recorded action and the end effector,
their message types, how the 16 layout entries are found in them (by index into Kuavo's ``joint_q`` or by
joint name), units and scales, how each stream is sampled (``sync``), which time stamps count and the rate.
The policy node, the bag converter, the simulator and the recorder all read their stream facts from the
selected profile; a user may override only what differs legitimately between two installations of the same
robot (topic names, max ages, the stamp source, a claw's direction): :data:`OVERRIDABLE`. Overrides are
recorded on the profile (:attr:`RobotProfile.overrides`) and shown in the node's status and the conversion
report. A new robot is a new YAML file; :func:`load_profile` takes a shipped name or a path.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract import schema
from kuavo_smolvla_ros.contract.end_effectors import KINDS, EndEffector
from kuavo_smolvla_ros.features import image_key
from kuavo_smolvla_ros.resources import share_file

PROFILES_DIR = "config/robots"
DEFAULT_PROFILE = "kuavo4pro"
#: The 14 names of Kuavo's ``/kuavo_arm_traj`` (left arm 7 then right arm 7, degrees).
ARM_TRAJ_NAMES: tuple[str, ...] = tuple(f"arm_joint_{i}" for i in range(2 * robot.ARM_DOF))
#: Profile keys a user may override (``*``: any camera name), e.g. ``cameras.wrist_cam_l.topic``.
OVERRIDABLE = (
    "stamp_source", "instruction_topic",
    "cameras.*.topic", "cameras.*.encoding", "cameras.*.sync.max_age_s",
    "state.topic", "state.sync.max_age_s", "action.topic", "action.sync.max_age_s",
    "end_effector.state_topic", "end_effector.command_topic", "end_effector.inverted",
    "end_effector.command_sync.max_age_s",
)


class ProfileError(ValueError):
    """A robot profile that cannot be used; the message names the profile and the key."""


@dataclass(frozen=True)
class SyncPolicy:
    """How a stream is sampled at a time ``t``: ``as_of`` (the latest sample stamped at or before ``t``, at
    most ``max_age_s`` old; null: any age) or ``nearest`` (the closest on either side within ``tolerance_s``;
    offline only, a live node cannot look ahead and samples it ``as_of`` with ``max_age_s = tolerance_s``)."""

    mode: Literal["as_of", "nearest"] = "as_of"
    max_age_s: float | None = 0.1
    tolerance_s: float | None = None

    def check(self, where: str) -> None:
        if self.mode == "nearest" and (self.tolerance_s is None or self.tolerance_s < 0):
            raise ProfileError(f"{where}.sync: nearest needs tolerance_s >= 0")
        if self.tolerance_s is not None and self.tolerance_s < 0:
            raise ProfileError(f"{where}.sync.tolerance_s must be >= 0, got {self.tolerance_s}")
        if self.max_age_s is not None and self.max_age_s <= 0:
            raise ProfileError(f"{where}.sync.max_age_s must be > 0 or null, got {self.max_age_s}")

    def buffer_args(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~kuavo_smolvla_ros.sync.StreamBuffer` for offline sampling."""
        if self.mode == "nearest":
            return {"max_age": None, "tolerance": self.tolerance_s}
        return {"max_age": self.max_age_s, "tolerance": None}

    @property
    def live_max_age(self) -> float | None:
        """The max age a live node applies (it samples every stream ``as_of``)."""
        return self.tolerance_s if self.mode == "nearest" else self.max_age_s


@dataclass(frozen=True)
class CameraSpec:
    """One RGB camera: policy name, topic, ``compressed`` (CompressedImage, JPEG/PNG) or ``raw`` (Image), and
    the robot's image size in pixels (null: any)."""

    name: str
    topic: str
    encoding: Literal["compressed", "raw"] = "compressed"
    height: int | None = None
    width: int | None = None
    sync: SyncPolicy = field(default_factory=SyncPolicy)

    @property
    def feature_key(self) -> str:
        """The LeRobot feature key (``observation.images.<name>``)."""
        return image_key(self.name)

    @property
    def size(self) -> tuple[int, int] | None:
        return (self.height, self.width) if self.height and self.width else None


@dataclass(frozen=True)
class JointQLayout:
    """Where the arms are in Kuavo's ``SensorsData.joint_data.joint_q``: its exact length and the 7 indices
    of each arm (joint 1..7)."""

    length: int
    left_arm: tuple[int, ...]
    right_arm: tuple[int, ...]

    def check(self, where: str) -> None:
        if not 14 <= self.length <= 1000:
            raise ProfileError(f"{where}.length must be in 14..1000, got {self.length}")
        for side, indices in (("left_arm", self.left_arm), ("right_arm", self.right_arm)):
            if len(indices) != robot.ARM_DOF:
                raise ProfileError(f"{where}.{side} must list {robot.ARM_DOF} indices, got {len(indices)}")
            bad = [i for i in indices if not 0 <= i < self.length]
            if bad:
                raise ProfileError(f"{where}.{side}: indices {bad} outside joint_q of length {self.length}")
        if len(set(self.left_arm) | set(self.right_arm)) != 2 * robot.ARM_DOF:
            raise ProfileError(f"{where}: left_arm and right_arm repeat an index")


@dataclass(frozen=True)
class StateSpec:
    """The measured joint state: Kuavo's ``SensorsData`` (arms by ``joint_q`` index) or a
    ``sensor_msgs/JointState`` (by ``joint_names``: the 16 layout entries in layout order, or the 14 arm
    joints when the end effector reports the grippers; other joints are ignored, any order)."""

    source: Literal["kuavo_sensors", "joint_state"]
    topic: str
    joint_q: JointQLayout | None = None
    joint_names: tuple[str, ...] | None = None
    units: Literal["rad", "deg"] | None = None
    sync: SyncPolicy = field(default_factory=SyncPolicy)


@dataclass(frozen=True)
class ActionSpec:
    """The recorded action (the teleoperation command) and the robot's arm command: Kuavo's
    ``/kuavo_arm_traj`` (JointState, 14 positions, degrees) or a JointState by ``joint_names`` as for the state."""

    source: Literal["kuavo_arm_traj", "joint_state"]
    topic: str
    joint_names: tuple[str, ...] | None = None
    units: Literal["rad", "deg"] | None = None
    sync: SyncPolicy = field(default_factory=lambda: SyncPolicy(max_age_s=0.2))


@dataclass(frozen=True)
class EndEffectorSpec:
    """The grippers: ``type`` (a kind of :mod:`~kuavo_smolvla_ros.contract.end_effectors`), their names in
    the messages, the raw value of a closed gripper in state and command messages, and the topics (null:
    not used)."""

    type: str
    names: tuple[str, str]
    state_scale: float
    command_scale: float
    state_topic: str | None = None
    command_topic: str | None = None
    inverted: bool = False
    command_sync: SyncPolicy = field(default_factory=lambda: SyncPolicy(max_age_s=0.5))


@dataclass(frozen=True)
class RobotProfile:
    """One robot's I/O contract (see the module doc). Load with :func:`load_profile`."""

    name: str
    cameras: tuple[CameraSpec, ...]
    state: StateSpec
    action: ActionSpec
    end_effector: EndEffectorSpec | None = None
    description: str = ""
    robot_type: str = ""
    #: The dataset's and the policy's control rate (Hz).
    fps: int = 10
    #: Time samples are filed under: ``receive`` (arrival, or record time in a bag) or ``header``.
    stamp_source: Literal["receive", "header"] = "receive"
    instruction_topic: str = "/task_instruction"
    #: Where it was loaded from, and the overrides applied (key -> value); not part of the YAML.
    source: str = field(default="", compare=False, metadata={"schema": False})
    overrides: dict[str, Any] = field(default_factory=dict, compare=False, metadata={"schema": False})

    # ----------------------------------------------------------------------------------- checks
    def validate(self) -> RobotProfile:
        """Raise :class:`ProfileError` naming the first inconsistent key; returns self."""
        if not self.name:
            raise ProfileError("name must not be empty")
        if not 1 <= self.fps <= 1000:
            raise ProfileError(f"fps must be in 1..1000, got {self.fps}")
        if not self.cameras:
            raise ProfileError("cameras: at least one camera is needed")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ProfileError(f"cameras: duplicate names in {names}")
        for i, camera in enumerate(self.cameras):
            if not camera.name or not camera.topic:
                raise ProfileError(f"cameras[{i}] needs a name and a topic")
            sizes = (camera.height, camera.width)
            if (sizes[0] is None) != (sizes[1] is None) or any(v is not None and not 1 <= v <= 8192 for v in sizes):
                raise ProfileError(f"cameras[{i}]: height and width must both be in 1..8192 or both null, got "
                                   f"{camera.height}x{camera.width}")
            camera.sync.check(f"cameras[{i}]")
        self._check_topics()
        ee = self.end_effector
        if ee is not None:
            if ee.type not in KINDS:
                raise ProfileError(f"end_effector.type must be one of {sorted(KINDS)}, got {ee.type!r}")
            if len(ee.names) != 2 or len(set(ee.names)) != 2 or ee.state_scale <= 0 or ee.command_scale <= 0:
                raise ProfileError("end_effector needs two different names and positive state_scale and "
                                   f"command_scale, got {list(ee.names)}, {ee.state_scale}, {ee.command_scale}")
            ee.command_sync.check("end_effector.command")
        state = self.state
        natural = {"kuavo_sensors": "rad", "kuavo_arm_traj": "deg"}
        for where, stream in (("state", state), ("action", self.action)):
            if stream.source in natural and stream.units not in (None, natural[stream.source]):
                raise ProfileError(f"{where}.units: {stream.source} is always in {natural[stream.source]}, got "
                                   f"{stream.units!r} (leave it out)")
        if state.source == "kuavo_sensors":
            if state.joint_q is None:
                raise ProfileError("state.source kuavo_sensors needs state.joint_q (length, left_arm, right_arm)")
            state.joint_q.check("state.joint_q")
        else:
            self._check_names("state", state.joint_names, self.grippers_in_state)
        state.sync.check("state")
        action = self.action
        if action.source == "kuavo_arm_traj":
            if action.joint_names is not None and len(action.joint_names) != 2 * robot.ARM_DOF:
                raise ProfileError(f"action.joint_names must list {2 * robot.ARM_DOF} names for kuavo_arm_traj")
        else:
            self._check_names("action", action.joint_names, not self.has_gripper_command)
        if not self.grippers_in_action and not self.has_gripper_command:
            raise ProfileError("action: the grippers' commands come from neither the action stream (16 joint_names) "
                               "nor end_effector.command_topic")
        action.sync.check("action")
        return self

    def _check_topics(self) -> None:
        """Every topic named, without spaces, and no two streams on one topic (one would starve the other)."""
        topics = [(f"cameras.{c.name}.topic", c.topic) for c in self.cameras]
        topics += [("state.topic", self.state.topic), ("action.topic", self.action.topic)]
        if self.end_effector is not None:
            topics += [(f"end_effector.{k}", getattr(self.end_effector, k)) for k in ("state_topic", "command_topic")
                       if getattr(self.end_effector, k) is not None]
        topics.append(("instruction_topic", self.instruction_topic))
        seen: dict[str, str] = {}
        for key, topic in topics:
            if not topic or any(c.isspace() for c in topic):
                raise ProfileError(f"{key} must be a topic name, got {topic!r}")
            if topic in seen:
                raise ProfileError(f"{key} {topic} is also {seen[topic]}: two streams cannot share a topic "
                                   "(swapping two cameras? override both topics)")
            seen[topic] = key

    @staticmethod
    def _check_names(where: str, names: tuple[str, ...] | None, with_grippers: bool) -> None:
        count = robot.ACTION_DIM if with_grippers else 2 * robot.ARM_DOF
        if names is None or len(names) != count:
            what = "the 16 layout entries" if with_grippers else "the 14 arm joints (the end effector has the grippers)"
            raise ProfileError(f"{where}.joint_names must list {count} names, {what}; got "
                               f"{0 if names is None else len(names)}")
        if len(set(names)) != len(names):
            raise ProfileError(f"{where}.joint_names repeats a name")

    # ------------------------------------------------------------------------------- derived facts
    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraSpec:
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise KeyError(f"profile {self.name} has no camera {name!r} (cameras: {list(self.camera_names)})")

    @property
    def has_gripper_state(self) -> bool:
        """Whether the grippers' state comes from the end effector's own state topic."""
        return self.end_effector is not None and bool(self.end_effector.state_topic)

    @property
    def has_gripper_command(self) -> bool:
        return self.end_effector is not None and bool(self.end_effector.command_topic)

    @property
    def grippers_in_state(self) -> bool:
        """Whether a JointState state carries the grippers itself (16 names)."""
        return self.state.source == "joint_state" and not self.has_gripper_state

    @property
    def grippers_in_action(self) -> bool:
        return self.action.source == "joint_state" and not self.has_gripper_command

    @cached_property
    def gripper(self) -> EndEffector | None:
        """The end-effector object (units both ways, its messages), or None if the profile has none."""
        ee = self.end_effector
        if ee is None:
            return None
        return KINDS[ee.type](tuple(ee.names), ee.state_scale, ee.command_scale, ee.inverted)

    @property
    def arm_command_names(self) -> tuple[str, ...]:
        """Names of the action stream's JointState entries (14 arm joints or the 16 layout entries)."""
        if self.action.source == "kuavo_arm_traj":
            return tuple(self.action.joint_names or ARM_TRAJ_NAMES)
        return tuple(self.action.joint_names or ())

    def to_dict(self) -> dict[str, Any]:
        """The profile as the YAML mapping it was loaded from (overrides applied)."""
        return schema.to_dict(self)

    def describe(self) -> str:
        """One line: name, source and overrides (for logs, status and reports)."""
        text = f"{self.name} ({self.source or 'built in code'})"
        if self.overrides:
            text += " with " + ", ".join(f"{k}={v}" for k, v in self.overrides.items())
        return text

    # ------------------------------------------------------------------------------------ overrides
    def with_overrides(self, overrides: dict[str, Any] | None) -> RobotProfile:
        """A copy with ``overrides`` (dotted key -> value, keys from :data:`OVERRIDABLE`) applied and recorded.

        Raises :class:`ProfileError` for a key that may not be overridden, names no camera, or a value that
        does not fit the schema."""
        if not overrides:
            return self
        data = self.to_dict()
        for key, value in overrides.items():
            _set_path(data, key.split("."), value, self.name)
            if not any(fnmatch.fnmatchcase(key, pattern) for pattern in OVERRIDABLE):
                raise ProfileError(f"profile {self.name}: {key!r} cannot be overridden "
                                   f"(allowed: {', '.join(OVERRIDABLE)})")
        profile = _from_dict(data, self.source)
        return replace(profile, overrides={**self.overrides, **overrides})


def _set_path(data: dict[str, Any], path: list[str], value: Any, profile: str) -> None:
    """Set ``data[path...] = value``; a camera is addressed by name; an unknown key is refused by its path."""
    node: Any = data
    for i, part in enumerate(path):
        where = ".".join(path[:i]) or "the top level"
        if isinstance(node, list):  # cameras by name
            matches = [item for item in node if item.get("name") == part]
            if not matches:
                raise ProfileError(f"profile {profile}: no camera {part!r} in {where} "
                                   f"(cameras: {[item.get('name') for item in node]})")
            node = matches[0]
            continue
        if not isinstance(node, dict):
            raise ProfileError(f"profile {profile}: {where} is not set, cannot override {'.'.join(path)}")
        if part not in node:
            raise ProfileError(f"unknown key(s) {[part]} in {where} (known: {sorted(node)})")
        if i == len(path) - 1:
            node[part] = value
        else:
            node = node[part]


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["cameras.head_cam_h.topic=/cam", "state.sync.max_age_s=0.2"]`` -> a mapping (values read as YAML
    scalars). Raises :class:`ProfileError` for an item without ``=``."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ProfileError(f"override {item!r} must be KEY=VALUE (e.g. cameras.head_cam_h.topic=/cam)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        result[key.strip()] = value
    return result


def _from_dict(data: Any, source: str) -> RobotProfile:
    where = f"robot profile {source}" if source else "robot profile"
    try:
        profile = schema.build(RobotProfile, copy.deepcopy(data))
        return replace(profile, source=source).validate()
    except (schema.SchemaError, ProfileError) as err:
        raise ProfileError(f"{where}: {err}") from None


def profile_path(name: str | Path) -> Path:
    """The YAML file of a shipped profile name, or ``name`` itself if it is a path to a file."""
    text = str(name)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or "/" in text:
        if not path.is_file():
            raise ProfileError(f"robot profile {text}: no such file")
        return path
    try:
        return share_file(f"{PROFILES_DIR}/{text}.yaml")
    except FileNotFoundError:
        raise ProfileError(f"unknown robot profile {text!r}: shipped profiles are {available_profiles()}, or give a "
                           "path to a YAML file") from None


def available_profiles() -> list[str]:
    """Names of the shipped profiles (``config/robots/*.yaml``)."""
    folder = share_file(f"{PROFILES_DIR}/{DEFAULT_PROFILE}.yaml").parent
    return sorted(p.stem for p in folder.glob("*.yaml"))


@lru_cache(maxsize=1)
def default_profile() -> RobotProfile:
    """The shipped default profile (Kuavo 4 Pro), loaded once: defaults such as the policy's camera names."""
    return load_profile(DEFAULT_PROFILE)


def load_profile(name: str | Path | RobotProfile | None = DEFAULT_PROFILE,
                 overrides: dict[str, Any] | None = None) -> RobotProfile:
    """A validated profile: a shipped name (``kuavo4pro``, ``kuavo5``, ``leju_sim``, ``ros2_joint_state``; None:
    the default) or a path to a YAML file, with ``overrides`` applied. Raises :class:`ProfileError` naming
    file and key."""
    if name is None:
        name = DEFAULT_PROFILE
    if isinstance(name, RobotProfile):
        return name.with_overrides(overrides)
    path = profile_path(name)
    try:
        data = schema.read_yaml(path, "robot profile")
    except schema.SchemaError as err:
        raise ProfileError(str(err)) from None
    return _from_dict(data, str(path)).with_overrides(overrides)
