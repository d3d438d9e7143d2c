"""Conversion config: which topics become which LeRobot features, and how streams are aligned.

Loaded from YAML (``config/conversion/kuavo.yaml`` is the shipped Kuavo default, ``joint_state.yaml`` the
generic ROS 2 one); every key is checked and an unknown or inconsistent one is rejected with its path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.resources import share_file
from kuavo_smolvla_ros.sync import StampSource

STATE_SOURCES = ("kuavo_sensors", "joint_state")
ACTION_SOURCES = ("kuavo_arm_traj", "joint_state")
IMAGE_STORAGES = ("video", "png")
DEFAULT_CONFIG = "config/conversion/kuavo.yaml"


class ConfigError(ValueError):
    """A conversion config that cannot be used; the message names the key."""


@dataclass
class Sync:
    """How a stream is sampled at a grid tick: ``as_of`` (latest at or before, within ``max_age_s``;
    null: any age) or ``nearest`` (either side, within ``tolerance_s``)."""

    mode: str = "as_of"
    max_age_s: float | None = 0.1
    tolerance_s: float | None = None

    def check(self, where: str) -> None:
        if self.mode not in ("as_of", "nearest"):
            raise ConfigError(f"{where}.sync.mode must be as_of or nearest, got {self.mode!r}")
        if self.mode == "nearest" and (self.tolerance_s is None or self.tolerance_s < 0):
            raise ConfigError(f"{where}.sync: nearest needs tolerance_s >= 0")
        if self.max_age_s is not None and self.max_age_s <= 0:
            raise ConfigError(f"{where}.sync.max_age_s must be > 0 or null")

    def buffer_args(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~kuavo_smolvla_ros.sync.StreamBuffer` for this policy."""
        if self.mode == "nearest":
            return {"max_age": None, "tolerance": self.tolerance_s}
        return {"max_age": self.max_age_s, "tolerance": None}


@dataclass
class CameraConfig:
    name: str
    topic: str
    sync: Sync = field(default_factory=lambda: Sync(max_age_s=0.05))

    @property
    def feature_key(self) -> str:
        return f"observation.images.{self.name}"


@dataclass
class StreamConfig:
    """A joint stream: Kuavo's own message or a JointState mapped by ``joint_names`` (16, layout order)."""

    source: str
    topic: str
    sync: Sync = field(default_factory=Sync)
    joint_names: list[str] = field(default_factory=lambda: list(robot.JOINT_NAMES))
    #: For JointState sources: "rad" or "deg" (arms; grippers are 0..1 either way).
    units: str = "rad"


@dataclass
class GripperConfig:
    """End effector: type (scalings from the robot facts), and its state/command topics (null: none)."""

    type: str = "leju_claw"
    inverted: bool = False
    state_topic: str | None = robot.TOPICS.claw_state
    command_topic: str | None = robot.TOPICS.claw_command
    command_sync: Sync = field(default_factory=lambda: Sync(max_age_s=0.5))


@dataclass
class VideoConfig:
    """Video encoding (lerobot's encoder settings). h264 'ultrafast' keeps conversion fast on two cores;
    'veryfast' makes ~40% smaller files at about twice the encoding time; lerobot's default is libsvtav1."""

    codec: str = "h264"
    preset: str | int | None = "ultrafast"
    crf: int = 23
    gop: int = 2


@dataclass
class ImagesConfig:
    storage: str = "video"
    #: [height, width] to resize to; null keeps the recorded size.
    size: list[int] | None = None
    video: VideoConfig = field(default_factory=VideoConfig)


@dataclass
class Trim:
    """Grid ticks removed at each end of an episode (teleoperation start-up and hand-off)."""

    start_frames: int = 3
    end_frames: int = 3


@dataclass
class ConversionConfig:
    fps: int = int(robot.CONTROL_RATE_HZ)
    stamp_source: str = StampSource.RECEIVE
    trim: Trim = field(default_factory=Trim)
    #: An episode whose dropped ticks exceed this fraction of its grid fails.
    max_dropped_fraction: float = 0.1
    #: An episode with fewer frames than this (after trimming and drops) fails.
    min_frames: int = 10
    images: ImagesConfig = field(default_factory=ImagesConfig)
    cameras: list[CameraConfig] = field(default_factory=lambda: [
        CameraConfig(c.name, c.topic) for c in robot.CAMERAS])
    state: StreamConfig = field(default_factory=lambda: StreamConfig(
        "kuavo_sensors", robot.TOPICS.sensors, Sync(max_age_s=0.05)))
    action: StreamConfig = field(default_factory=lambda: StreamConfig(
        "kuavo_arm_traj", robot.TOPICS.arm_command, Sync(max_age_s=0.2)))
    gripper: GripperConfig = field(default_factory=GripperConfig)

    def validate(self) -> ConversionConfig:
        if not 1 <= self.fps <= 1000:
            raise ConfigError(f"fps must be in 1..1000, got {self.fps}")
        if self.stamp_source not in tuple(StampSource):
            raise ConfigError(f"stamp_source must be header or receive, got {self.stamp_source!r}")
        if self.trim.start_frames < 0 or self.trim.end_frames < 0:
            raise ConfigError("trim.start_frames and trim.end_frames must be >= 0")
        if not 0 <= self.max_dropped_fraction <= 1:
            raise ConfigError(f"max_dropped_fraction must be in 0..1, got {self.max_dropped_fraction}")
        if self.images.storage not in IMAGE_STORAGES:
            raise ConfigError(f"images.storage must be one of {IMAGE_STORAGES}, got {self.images.storage!r}")
        if self.images.size is not None and (len(self.images.size) != 2 or min(self.images.size) < 1):
            raise ConfigError(f"images.size must be [height, width] or null, got {self.images.size}")
        if not self.cameras:
            raise ConfigError("cameras: at least one camera is needed")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ConfigError(f"cameras: duplicate names in {names}")
        for i, camera in enumerate(self.cameras):
            if not camera.name or not camera.topic:
                raise ConfigError(f"cameras[{i}] needs a name and a topic")
            camera.sync.check(f"cameras[{i}]")
        for where, stream, sources in (("state", self.state, STATE_SOURCES), ("action", self.action, ACTION_SOURCES)):
            if stream.source not in sources:
                raise ConfigError(f"{where}.source must be one of {sources}, got {stream.source!r}")
            if len(stream.joint_names) != robot.ACTION_DIM:
                raise ConfigError(f"{where}.joint_names must list {robot.ACTION_DIM} names (layout order)")
            if stream.units not in ("rad", "deg"):
                raise ConfigError(f"{where}.units must be rad or deg")
            stream.sync.check(where)
        if self.gripper.type not in robot.GRIPPERS:
            raise ConfigError(f"gripper.type must be one of {sorted(robot.GRIPPERS)}, got {self.gripper.type!r}")
        self.gripper.command_sync.check("gripper.command")
        if self.action.source == "kuavo_arm_traj" and not self.gripper.command_topic:
            raise ConfigError("action.source kuavo_arm_traj needs gripper.command_topic (the arm command has no "
                              "grippers)")
        return self

    @property
    def needs_gripper_state(self) -> bool:
        return self.state.source == "kuavo_sensors" and bool(self.gripper.state_topic)

    @property
    def needs_gripper_command(self) -> bool:
        return self.action.source == "kuavo_arm_traj"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls, data: Any, where: str):
    """A ``cls`` dataclass from a mapping over its defaults, rejecting unknown keys by their dotted path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where or 'config'} (known: {sorted(known)})")
    result = CameraConfig("", "") if cls is CameraConfig else StreamConfig("", "") if cls is StreamConfig else cls()
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        current = getattr(result, key)
        if key == "cameras":
            if not isinstance(value, list):
                raise ConfigError("cameras must be a list")
            value = [_build(CameraConfig, item, f"cameras[{i}]") for i, item in enumerate(value)]
        elif is_dataclass(current) and isinstance(value, dict):
            value = _build(type(current), asdict(current) | value, path)
        setattr(result, key, value)
    return result


def config_from_dict(data: dict[str, Any]) -> ConversionConfig:
    """A validated config from nested dicts (as :meth:`ConversionConfig.to_dict` writes them)."""
    return _build(ConversionConfig, data, "").validate()


def load_config(path: str | Path | None = None, **overrides: Any) -> ConversionConfig:
    """The config at ``path`` (default: the shipped Kuavo one), with top-level ``overrides`` applied."""
    source = Path(path) if path else share_file(DEFAULT_CONFIG)
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"cannot read conversion config {source}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML ({err})") from None
    try:
        config = _build(ConversionConfig, data, "")
    except (TypeError, ConfigError) as err:
        raise ConfigError(f"{source}: {err}") from None
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    try:
        return config.validate()
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
