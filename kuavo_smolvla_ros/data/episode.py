"""One bag -> one aligned episode: streams filed into the node's sync buffers, sampled on a fixed grid.

Every message is turned into a stream sample by the code the live node uses (:mod:`kuavo_smolvla_ros.images`
for cameras, :class:`~kuavo_smolvla_ros.inputs.StateAssembler` for joints and grippers) and filed in a
:class:`~kuavo_smolvla_ros.sync.StreamBuffer`. The grid runs at ``fps`` over the span where every stream
has data; each tick takes each stream's sample by its sync policy and ticks where a stream has none are
dropped and counted. No LeRobot here: :mod:`kuavo_smolvla_ros.data.dataset` writes the result.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import images, robot
from kuavo_smolvla_ros.data.bags import BagError, bag_topics, read_messages
from kuavo_smolvla_ros.data.config import ConversionConfig
from kuavo_smolvla_ros.inputs import StateAssembler, gripper_command_units
from kuavo_smolvla_ros.sync import StreamBuffer, align

STATE = "state"
ARM_COMMAND = "action"
GRIPPER_COMMAND = "gripper_command"
GRIPPER_STATE = "gripper_state"


class EpisodeError(ValueError):
    """A bag that cannot become an episode; the message says why."""


@dataclass(frozen=True)
class Stream:
    """A topic the episode reads: its role, the message type names it accepts and its sample buffer."""

    topic: str
    role: str  # camera name, STATE, ARM_COMMAND, GRIPPER_COMMAND or GRIPPER_STATE
    types: tuple[str, ...]  # accepted type names (last path component, case-insensitive)


@dataclass
class Episode:
    """An aligned episode: per kept tick its time, state, action and one frame per camera."""

    source: Path
    times: np.ndarray  # (N,) grid tick times, seconds (bag clock)
    state: np.ndarray  # (N, 16) float32
    action: np.ndarray  # (N, 16) float32
    frames: dict[str, list[images.Frame]]  # camera -> N lazily decoded frames
    grid_ticks: int  # ticks on the grid after trimming
    dropped: dict[str, int]  # stream -> ticks that stream could not serve
    dropped_ticks: int  # ticks dropped (a tick missing several streams counts once)
    rejected: dict[str, int]  # stream -> messages rejected (malformed, non-finite, wrong size)
    reject_reasons: dict[str, str]  # stream -> the first rejection's reason
    messages: dict[str, int]  # stream -> messages read
    skew: dict[str, float]  # spread of sample stamps inside a kept tick: mean, p95, max (s)
    age: dict[str, dict[str, float]] = field(default_factory=dict)  # stream -> mean/p95/max (s)

    def __len__(self) -> int:
        return len(self.times)


def _type_ok(msgtype: str, accepted: tuple[str, ...]) -> bool:
    return msgtype.rsplit("/", 1)[-1].lower() in {a.lower() for a in accepted}


def plan_streams(config: ConversionConfig) -> list[Stream]:
    """The topics an episode needs under ``config``, with the message types each may carry."""
    streams = [Stream(c.topic, c.name, ("CompressedImage", "Image")) for c in config.cameras]
    joint_types = {"kuavo_sensors": ("SensorsData",), "joint_state": ("JointState",)}
    streams.append(Stream(config.state.topic, STATE, joint_types[config.state.source]))
    action_types = {"kuavo_arm_traj": ("JointState",), "joint_state": ("JointState",)}
    streams.append(Stream(config.action.topic, ARM_COMMAND, action_types[config.action.source]))
    gripper_state = {"leju_claw": ("LejuClawState",), "sim_gripper": ("JointState",), "dex_hand": ("JointState",)}
    gripper_command = {"leju_claw": ("LejuClawCommand",), "sim_gripper": ("JointState",),
                       "dex_hand": ("RobotHandPosition",)}
    if config.needs_gripper_state:
        streams.append(Stream(config.gripper.state_topic, GRIPPER_STATE, gripper_state[config.gripper.type]))
    if config.needs_gripper_command:
        streams.append(Stream(config.gripper.command_topic, GRIPPER_COMMAND, gripper_command[config.gripper.type]))
    return streams


def check_topics(path: Path, streams: list[Stream]) -> None:
    """Fail with the missing topics or mismatched types of a bag before reading its messages."""
    topics = bag_topics(path)
    if not topics:
        raise EpisodeError(f"{path}: empty bag (no topics)")
    missing = [s.topic for s in streams if s.topic not in topics]
    if missing:
        raise EpisodeError(f"{path}: missing topic(s) {missing} (the bag has {sorted(topics)})")
    for stream in streams:
        if not _type_ok(topics[stream.topic], stream.types):
            raise EpisodeError(f"{path}: topic {stream.topic} has type {topics[stream.topic]}, expected "
                               f"{' or '.join(stream.types)}")


class MessageDecoder:
    """Bag messages -> stream samples, by the live node's own conversions."""

    def __init__(self, config: ConversionConfig):
        self.config = config
        gripper = config.gripper
        self.states = StateAssembler(gripper.type, gripper.inverted, require_gripper=config.needs_gripper_state,
                                     joint_names=config.state.joint_names, allow_extra_joints=True)
        self.command_scaling = robot.gripper(gripper.type, gripper.inverted)
        self.expected_size: dict[str, tuple[int, int]] = {}

    def image(self, camera: str, msg) -> images.Frame:
        expected = self.expected_size.get(camera)
        if hasattr(msg, "format"):
            frame = images.compressed_frame(msg.format, msg.data, expected)
        else:
            frame = images.raw_frame(msg.encoding, msg.height, msg.width, msg.step, msg.data, expected)
        self.expected_size.setdefault(camera, (frame.height, frame.width))
        return frame

    def state(self, msg) -> np.ndarray | None:
        if self.config.state.source == "kuavo_sensors":
            return self.states.from_sensors(msg)
        return _joint_units(self.states.from_joint_state(msg), self.config.state.units)

    def arm_command(self, msg) -> np.ndarray:
        if self.config.action.source == "joint_state":
            vector = robot.layout_from_named(msg.name, msg.position, self.config.action.joint_names, allow_extra=True)
            return _joint_units(vector, self.config.action.units)
        degrees = np.asarray(msg.position, dtype=np.float64)
        if degrees.shape != (2 * robot.ARM_DOF,):
            raise ValueError(f"arm command has {degrees.size} positions, expected {2 * robot.ARM_DOF}")
        return np.radians(degrees)

    def gripper_command(self, msg) -> tuple[float, float]:
        return gripper_command_units(msg, self.config.gripper.type, self.command_scaling)


def _joint_units(vector: np.ndarray, units: str) -> np.ndarray:
    if units == "deg":
        vector = vector.copy()
        vector[robot.ARM_INDICES] = np.radians(vector[robot.ARM_INDICES])
    if not np.all(np.isfinite(vector)):
        raise ValueError("non-finite joint values")
    return vector


def _stamp(msg) -> float | None:
    header = getattr(msg, "header", None)
    return None if header is None else header.stamp.sec + header.stamp.nanosec / 1e9


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p95": 0.0, "max": 0.0}
    array = np.asarray(values)
    return {"mean": float(array.mean()), "p95": float(np.percentile(array, 95)), "max": float(array.max())}


def read_streams(path: Path, config: ConversionConfig
                 ) -> tuple[dict[str, StreamBuffer], Counter, Counter, dict[str, str]]:
    """Every message of the bag's needed topics filed in offline buffers (all kept), with per stream the
    messages read, the messages rejected and the first rejection's reason."""
    streams = plan_streams(config)
    check_topics(path, streams)
    by_topic = {s.topic: s for s in streams}
    sync = {c.name: c.sync for c in config.cameras} | {STATE: config.state.sync, ARM_COMMAND: config.action.sync,
                                                       GRIPPER_COMMAND: config.gripper.command_sync}
    buffers = {s.role: StreamBuffer(s.role, stamp_source=config.stamp_source, capacity=None,
                                    **sync[s.role].buffer_args())
               for s in streams if s.role != GRIPPER_STATE}
    decoder = MessageDecoder(config)
    cameras = {c.name for c in config.cameras}
    read, rejected = Counter(), Counter()
    reasons: dict[str, str] = {}
    for message in read_messages(path, list(by_topic)):
        role = by_topic[message.topic].role
        read[role] += 1
        try:
            if role in cameras:
                value = decoder.image(role, message.msg)
            elif role == STATE:
                value = decoder.state(message.msg)
                if value is None:
                    continue  # no gripper state yet: the node would not have a state either
            elif role == ARM_COMMAND:
                value = decoder.arm_command(message.msg)
            elif role == GRIPPER_COMMAND:
                value = decoder.gripper_command(message.msg)
            else:
                decoder.states.update_grippers(message.msg)
                continue
        except ValueError as err:  # includes images.ImageError
            rejected[role] += 1
            reasons.setdefault(role, str(err))
            continue
        buffers[role].add(value, _stamp(message.msg), message.recorded)
    return buffers, read, rejected, reasons


def grid(buffers: dict[str, StreamBuffer], fps: int, trim_start: int = 0, trim_end: int = 0) -> np.ndarray:
    """Tick times at ``fps`` over the span where every stream has data, trimmed at both ends."""
    empty = [name for name, b in buffers.items() if len(b) == 0]
    if empty:
        raise EpisodeError(f"no usable messages on stream(s) {empty}")
    start = max(b.first().stamp for b in buffers.values())
    end = min(b.latest().stamp for b in buffers.values())
    if end < start:
        raise EpisodeError(f"the streams never overlap in time (latest start {start:.3f}, earliest end {end:.3f})")
    count = math.floor((end - start) * fps + 1e-9) + 1
    ticks = start + np.arange(count) / fps
    return ticks[trim_start: count - trim_end] if trim_end else ticks[trim_start:]


def build_episode(path: str | Path, config: ConversionConfig) -> Episode:
    """Read, align and check one bag; raises :class:`EpisodeError` or ``BagError`` with the reason."""
    path = Path(path)
    buffers, read, rejected, reasons = read_streams(path, config)
    ticks = grid(buffers, config.fps, config.trim.start_frames, config.trim.end_frames)
    cameras = [c.name for c in config.cameras]
    kept_times, states, actions, skews = [], [], [], []
    frames: dict[str, list[images.Frame]] = {c: [] for c in cameras}
    dropped: Counter = Counter()
    ages: dict[str, list[float]] = {name: [] for name in buffers}
    for tick in ticks:
        aligned = align(buffers.values(), float(tick))
        if not aligned.complete:
            dropped.update(aligned.missing)
            continue
        samples = aligned.samples
        kept_times.append(float(tick))
        states.append(samples[STATE].value)
        arm = samples[ARM_COMMAND].value
        if arm.shape == (robot.ACTION_DIM,):  # a JointState action carries its grippers
            actions.append(arm)
        else:
            left, right = samples[GRIPPER_COMMAND].value
            actions.append(robot.compose(arm[:robot.ARM_DOF], left, arm[robot.ARM_DOF:], right))
        for camera in cameras:
            frames[camera].append(samples[camera].value)
        stamps = [s.stamp for s in samples.values()]
        skews.append(max(stamps) - min(stamps))
        for name, sample in samples.items():
            ages[name].append(float(tick) - sample.stamp)
    dropped_ticks = len(ticks) - len(kept_times)
    if len(ticks) and dropped_ticks / len(ticks) > config.max_dropped_fraction:
        worst = ", ".join(f"{k}: {v}" for k, v in dropped.most_common())
        raise EpisodeError(f"{path}: {dropped_ticks} of {len(ticks)} ticks dropped "
                           f"({dropped_ticks / len(ticks):.0%} > max_dropped_fraction "
                           f"{config.max_dropped_fraction:.0%}); streams without a valid sample: {worst}")
    if len(kept_times) < config.min_frames:
        raise EpisodeError(f"{path}: only {len(kept_times)} frames after trimming and drops "
                           f"(min_frames {config.min_frames})")
    return Episode(
        source=path, times=np.asarray(kept_times), state=np.asarray(states, dtype=np.float32),
        action=np.asarray(actions, dtype=np.float32), frames=frames, grid_ticks=len(ticks),
        dropped=dict(dropped), dropped_ticks=dropped_ticks,
        rejected=dict(rejected), reject_reasons=reasons, messages=dict(read), skew=_summary(skews),
        age={name: _summary(values) for name, values in ages.items()},
    )


def describe_error(err: Exception) -> str:
    """A one-line reason for a failed bag."""
    if isinstance(err, (EpisodeError, BagError)):
        return str(err)
    return f"{type(err).__name__}: {err}"

