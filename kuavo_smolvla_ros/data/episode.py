"""One bag -> one aligned episode: streams filed into the node's sync buffers, sampled on a fixed grid.

The streams are the robot profile's (:func:`~kuavo_smolvla_ros.contract.streams.recorded_streams`); every
message is turned into a stream sample by the decoder the live node uses
(:class:`~kuavo_smolvla_ros.contract.streams.StreamDecoder`) and filed in a
:class:`~kuavo_smolvla_ros.sync.StreamBuffer` with the profile's per-stream sync. The grid runs at ``fps``
over the span where every stream has data; each tick takes each stream's sample by its sync policy and
ticks where a stream has none are dropped and counted. No LeRobot here: :mod:`kuavo_smolvla_ros.data.dataset`
writes the result.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import images
from kuavo_smolvla_ros.contract.fields import header_stamp
from kuavo_smolvla_ros.contract.streams import (
    ACTION,
    GRIPPER_COMMAND,
    STATE,
    Stream,
    StreamDecoder,
    recorded_streams,
)
from kuavo_smolvla_ros.data.bags import BagError, bag_topics, read_messages
from kuavo_smolvla_ros.data.config import ConversionConfig
from kuavo_smolvla_ros.sync import StreamBuffer, align


class EpisodeError(ValueError):
    """A bag that cannot become an episode; the message says why."""


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
    """The topics an episode needs under ``config``'s robot profile, with the message types each may carry."""
    return recorded_streams(config.profile)


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
    profile = config.profile
    buffers = {s.role: StreamBuffer(s.role, stamp_source=profile.stamp_source, capacity=None,
                                    **s.sync.buffer_args())
               for s in streams if s.sync is not None}
    decoder = StreamDecoder(profile)
    cameras = set(profile.camera_names)
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
            elif role == ACTION:
                value = decoder.arm_command(message.msg)
            elif role == GRIPPER_COMMAND:
                value = decoder.gripper_command(message.msg)
            else:  # GRIPPER_STATE: held, combined with the following states
                decoder.update_grippers(message.msg)
                continue
        except ValueError as err:  # includes images.ImageError
            rejected[role] += 1
            reasons.setdefault(role, str(err))
            continue
        buffers[role].add(value, header_stamp(message.msg), message.recorded)
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
    empty = [name for name, b in buffers.items() if len(b) == 0]
    if empty:
        causes = "; ".join(f"{name}: {rejected[name]} of {read[name]} messages rejected, the first because "
                           f"{reasons[name]}" if name in reasons else f"{name}: {read[name]} messages"
                           for name in empty)
        raise EpisodeError(f"no usable messages on stream(s) {empty} ({causes})")
    for name, count in rejected.items():  # a systematic fault (wrong scale, another robot's layout), not noise
        if count > config.max_dropped_fraction * read[name]:
            raise EpisodeError(f"stream {name}: {count} of {read[name]} messages rejected (more than "
                               f"max_dropped_fraction {config.max_dropped_fraction:.0%}), the first because "
                               f"{reasons[name]}")
    ticks = grid(buffers, config.rate, config.trim.start_frames, config.trim.end_frames)
    cameras = list(config.profile.camera_names)
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
        grippers = samples[GRIPPER_COMMAND].value if GRIPPER_COMMAND in samples else None
        actions.append(StreamDecoder.action(samples[ACTION].value, grippers))
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

