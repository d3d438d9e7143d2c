"""Conversion config: which robot profile the bags come from, and how episodes are cut and stored.

The streams (topics, message types, joint mapping, end effector, per-stream sync, stamp source, fps) come
from the robot profile (:mod:`kuavo_smolvla_ros.contract.profile`), exactly as the live node reads them;
this config adds only what is the converter's own: the profile's name (``robot``), the overrides a user may
apply to it (``overrides``: topic names, max ages, ...), trimming, drop limits and image storage. Loaded
from YAML (``config/conversion/kuavo.yaml`` is the shipped default); every key is checked and an unknown or
inconsistent one is rejected with its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from kuavo_smolvla_ros.contract import schema
from kuavo_smolvla_ros.contract.profile import DEFAULT_PROFILE, ProfileError, RobotProfile, load_profile
from kuavo_smolvla_ros.resources import share_file

IMAGE_STORAGES = ("video", "png")
DEFAULT_CONFIG = "config/conversion/kuavo.yaml"
#: Keys of conversion configs written before the robot profiles existed: they now live in the profile.
_PROFILE_KEYS = ("cameras", "state", "action", "gripper", "stamp_source")


#: Dataset rates (frames per second) a conversion accepts.
FPS_RANGE = (1, 1000)

class ConfigError(ValueError):
    """A conversion config that cannot be used; the message names the key."""


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
class TimeBreaks:
    """What a break in a recording's time becomes: never consecutive dataset frames.

    A break is more than ``max_gap_frames`` consecutive grid ticks without a sample of some stream (a camera
    that stopped, a record clock that jumped forwards, a paused simulator) or a stream whose stamps go back by
    more than one frame period in recording order (a simulator reset, a rewound ``/clock``, header stamps
    from a restarted driver). ``split``: the episode is cut at each break into separate episodes (each still
    needs ``min_frames``); ``refuse``: the bag fails, with the breaks in its reason. Shorter runs of dropped
    ticks (at most ``max_gap_frames``) are joined and listed per episode in the report (``tick_gaps``).
    """

    max_gap_frames: int = 2
    action: Literal["split", "refuse"] = "split"


@dataclass
class ConversionConfig:
    """What the converter does with one robot's bags (see the module doc)."""

    #: A shipped robot profile name (config/robots/NAME.yaml) or a path to a profile YAML.
    robot: str = DEFAULT_PROFILE
    #: Profile overrides, dotted key -> value (e.g. ``cameras.wrist_cam_l.topic: /cam_r/...``).
    overrides: dict[str, Any] = field(default_factory=dict)
    #: The dataset's rate; null: the profile's.
    fps: int | None = None
    trim: Trim = field(default_factory=Trim)
    #: An episode whose dropped ticks exceed this fraction of its grid fails.
    max_dropped_fraction: float = 0.1
    #: An episode with fewer frames than this (after trimming and drops) fails.
    min_frames: int = 10
    #: Breaks in time inside an episode: split or refuse (see :class:`TimeBreaks`).
    time_breaks: TimeBreaks = field(default_factory=TimeBreaks)
    images: ImagesConfig = field(default_factory=ImagesConfig)

    @cached_property
    def profile(self) -> RobotProfile:
        """The robot profile with the overrides applied (:class:`ConfigError` if it cannot be loaded)."""
        try:
            return load_profile(self.robot, self.overrides)
        except ProfileError as err:
            raise ConfigError(str(err)) from None

    @property
    def rate(self) -> int:
        """The dataset's fps: ``fps`` if set, else the profile's."""
        return self.fps or self.profile.fps

    @property
    def cameras(self):
        return self.profile.cameras

    def validate(self) -> ConversionConfig:
        self.__dict__.pop("profile", None)  # robot or overrides may have changed since the last look
        _ = self.profile
        if not FPS_RANGE[0] <= self.rate <= FPS_RANGE[1]:
            raise ConfigError(f"fps must be in {FPS_RANGE[0]}..{FPS_RANGE[1]}, got {self.rate}")
        if self.trim.start_frames < 0 or self.trim.end_frames < 0:
            raise ConfigError("trim.start_frames and trim.end_frames must be >= 0")
        if not 0 <= self.max_dropped_fraction <= 1:
            raise ConfigError(f"max_dropped_fraction must be in 0..1, got {self.max_dropped_fraction}")
        if self.min_frames < 1:
            raise ConfigError(f"min_frames must be >= 1, got {self.min_frames}")
        if self.time_breaks.max_gap_frames < 0:
            raise ConfigError(f"time_breaks.max_gap_frames must be >= 0, got {self.time_breaks.max_gap_frames}")
        if self.images.storage not in IMAGE_STORAGES:
            raise ConfigError(f"images.storage must be one of {IMAGE_STORAGES}, got {self.images.storage!r}")
        if self.images.size is not None and (len(self.images.size) != 2 or min(self.images.size) < 1):
            raise ConfigError(f"images.size must be [height, width] or null, got {self.images.size}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as a mapping :func:`config_from_dict` reads back (the profile by name/path + overrides)."""
        return schema.to_dict(self)

    def report(self) -> dict[str, Any]:
        """What a conversion report records: the config and the resolved profile with its overrides."""
        profile = self.profile
        return self.to_dict() | {"fps": self.rate, "robot_profile": {
            "name": profile.name, "source": profile.source, "overrides": dict(profile.overrides),
            "profile": profile.to_dict()}}


def _build(data: Any, where: str = "") -> ConversionConfig:
    if isinstance(data, dict):
        moved = [k for k in _PROFILE_KEYS if k in data]
        if moved:
            raise ConfigError(f"{moved} are stream facts of the robot profile now: choose one with `robot:` "
                              "(config/robots/*.yaml) and change topics or max ages with `overrides:`, e.g. "
                              "overrides: {cameras.head_cam_h.topic: /my_cam}")
    try:
        return schema.build(ConversionConfig, data, where)
    except schema.SchemaError as err:
        raise ConfigError(str(err)) from None


def config_from_dict(data: dict[str, Any]) -> ConversionConfig:
    """A validated config from nested dicts (as :meth:`ConversionConfig.to_dict` writes them)."""
    return _build(data).validate()


def load_config(path: str | Path | None = None, **overrides: Any) -> ConversionConfig:
    """The config at ``path`` (default: the shipped Kuavo one), with top-level ``overrides`` (e.g. ``fps``,
    ``robot``) applied when not None. Raises :class:`ConfigError` naming the file and key."""
    source = Path(path) if path else share_file(DEFAULT_CONFIG)
    try:
        data = schema.read_yaml(source, "conversion config")
    except schema.SchemaError as err:
        raise ConfigError(str(err)) from None
    try:
        config = _build(data)
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        return config.validate()
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
