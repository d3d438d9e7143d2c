"""One bag -> aligned episodes: streams filed into the node's sync buffers, sampled on a fixed grid, cut at
breaks in time.

The streams are the robot profile's (:func:`~kuavo_smolvla_ros.contract.streams.recorded_streams`); every
message is turned into a stream sample by the decoder the live node uses
(:class:`~kuavo_smolvla_ros.contract.streams.StreamDecoder`, through :func:`decode_message`) and filed in a
:class:`~kuavo_smolvla_ros.sync.StreamBuffer` with the profile's per-stream sync. Messages are read in the
order the recorder wrote them (what a live subscriber saw). The grid runs at ``fps`` over the span where
every stream has data; each tick takes each stream's sample by its sync policy and ticks where a stream has
none are dropped and counted.

Time is never spliced: a run of more than ``time_breaks.max_gap_frames`` dropped ticks, or a stream whose
stamps go back by more than a frame period in recording order (a record clock that jumped back: simulator
reset, rewound ``/clock``; header stamps that jumped), is a :class:`TimeBreak`. The bag is then cut into
separate episodes at its breaks, or refused (``time_breaks.action``). No LeRobot here:
:mod:`kuavo_smolvla_ros.data.dataset` writes the result.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_smolvla_ros import images, robot
from kuavo_smolvla_ros.contract.fields import header_stamp
from kuavo_smolvla_ros.contract.streams import (
    ACTION,
    GRIPPER_COMMAND,
    GRIPPER_STATE,
    STATE,
    Stream,
    StreamDecoder,
    recorded_streams,
)
from kuavo_smolvla_ros.data.bags import BagError, bag_topics, read_messages
from kuavo_smolvla_ros.data.config import ConversionConfig
from kuavo_smolvla_ros.sync import UNSET_STAMP, Aligned, StampSource, StreamBuffer, align

#: A header stamp may lie this far after the message's record time (clock skew between the publisher's and
#: the recorder's machines; the node's ``clock_skew_s`` default); later is refused as stamped in the future.
FUTURE_STAMP_TOLERANCE_S = 0.05
#: With header stamps, the streams of a recording may lag their record times differently (transport,
#: encoding) by up to this much (s); more means their stamps come from different clocks.
MAX_CLOCK_SPREAD_S = 0.5


class EpisodeError(ValueError):
    """A bag that cannot become an episode; the message says why."""


@dataclass(frozen=True)
class TimeBreak:
    """A break in a recording's time, which no two consecutive dataset frames may span.

    ``kind``: ``gap`` (some streams had no sample for more than ``max_gap_frames`` ticks), ``hole`` (at some
    of those ticks no stream had one: the record clock jumped forwards, a paused simulator, a stalled
    recorder; not counted as dropped ticks) or ``backward`` (in recording order the record clock, or a
    stream's stamps, went back by more than a frame period: a simulator reset, a rewound clock; ``streams``
    is ``("record clock",)`` or the stream). ``at``: the stamp
    (s, bag clock) where it starts; ``seconds``: the time missing, or how far the stamps went back;
    ``streams``: the streams without samples / whose stamps went back; ``ticks``: grid ticks lost.
    """

    kind: str
    at: float
    seconds: float
    streams: tuple[str, ...]
    ticks: int = 0

    def describe(self) -> str:
        """One line, e.g. ``gap of 5 ticks (0.50 s) at 101.200 s without wrist_cam_r``."""
        if self.kind == "backward":
            what = "the record clock jumps" if self.streams == ("record clock",) \
                else f"stamps of {', '.join(self.streams)} jump"
            return f"{what} back {self.seconds:.3f} s at {self.at:.3f} s"
        without = "any stream (the record clock jumped or the recording paused)" if self.kind == "hole" \
            else ", ".join(self.streams)
        return f"{self.kind} of {self.ticks} tick(s) ({self.seconds:.2f} s) at {self.at:.3f} s without {without}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"streams": list(self.streams), "at": round(self.at, 6),
                               "seconds": round(self.seconds, 6)}


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
    #: (frame index, ticks) for each run of dropped ticks joined between frame index-1 and index (at most
    #: ``time_breaks.max_gap_frames`` ticks each): the rows there are 1 + ticks grid periods apart.
    tick_gaps: list[tuple[int, int]] = field(default_factory=list)
    #: This episode's place among the episodes its bag was cut into (0-based) and their number.
    piece: int = 0
    pieces: int = 1
    #: Stream -> messages stamped before an earlier one of the stream (within a frame period: re-sorted).
    out_of_order: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class BagEpisodes:
    """What one bag became: its episodes (one, or several when cut at breaks in time), the breaks, and the
    pieces that were left out with their reasons."""

    source: Path
    episodes: list[Episode]
    breaks: list[TimeBreak] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)


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


# ------------------------------------------------------------------------------------------ input conversions
def _vector(value: Any, sizes: tuple[int, ...], what: str) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float64)
    if vector.ndim != 1 or vector.shape[0] not in sizes:
        raise ValueError(f"{what} has shape {vector.shape}, expected ({' or '.join(map(str, sizes))},)")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"{what} contains non-finite values")
    return vector


def decode_message(decoder: StreamDecoder, role: str, msg: Any) -> Any:
    """The converter's conversion of one message of stream ``role`` (a camera name, ``state``, ``action``,
    ``gripper_command`` or ``gripper_state``) by the node's decoder, with its output checked.

    Returns an :class:`~kuavo_smolvla_ros.images.Frame` (camera), a finite 16-dim state (float64; None before
    the first gripper state, which the node would not have either), a finite 14- or 16-dim arm command (rad),
    finite (left, right) gripper values, or None for a gripper state (held by ``decoder`` and combined with
    the following states). Raises ``ValueError`` with the reason for a message that cannot be used
    (``images.ImageError`` for frames); nothing else.
    """
    if role in decoder.profile.camera_names:
        frame = decoder.image(role, msg)
        if not (int(frame.height) > 0 and int(frame.width) > 0):
            raise ValueError(f"camera {role}: frame of {frame.height}x{frame.width} pixels")
        return frame
    if role == STATE:
        state = decoder.state(msg)
        return None if state is None else _vector(state, (robot.STATE_DIM,), "joint state")
    if role == ACTION:
        return _vector(decoder.arm_command(msg), (2 * robot.ARM_DOF, robot.ACTION_DIM), "arm command")
    if role == GRIPPER_COMMAND:
        return tuple(_vector(decoder.gripper_command(msg), (2,), "gripper command"))
    if role == GRIPPER_STATE:
        held = decoder.grippers
        try:
            _vector(decoder.update_grippers(msg), (2,), "gripper state")
        except ValueError:
            decoder.grippers = held  # a refused state is never held
            raise
        return None
    raise ValueError(f"unknown stream {role!r}")


def filing_stamp(stamp_source: str, msg: Any, recorded: float) -> float:
    """The time (s) a recorded message is filed under: its header stamp (``stamp_source: header``, when set)
    or its record time. ``ValueError`` for a header stamp later than the record time by more than
    :data:`FUTURE_STAMP_TOLERANCE_S` (a message cannot be stamped after it was recorded: unsynchronised
    clocks, or a bad stamp) or a stamp that is not a finite number."""
    if StampSource(stamp_source) is StampSource.HEADER:
        try:
            stamp = header_stamp(msg)
        except (AttributeError, TypeError) as err:
            raise ValueError(f"unreadable header stamp ({err})") from None
        if stamp is not None and stamp > UNSET_STAMP:
            if not math.isfinite(stamp):
                raise ValueError(f"header stamp {stamp} is not finite")
            if stamp > recorded + FUTURE_STAMP_TOLERANCE_S:
                raise ValueError(f"stamped {stamp - recorded:.3f} s after it was recorded (more than "
                                 f"{FUTURE_STAMP_TOLERANCE_S} s: clocks not synchronised? try stamp_source: receive)")
            return float(stamp)
    return float(recorded)


# ------------------------------------------------------------------------------------------ reading a bag
@dataclass
class StreamsRead:
    """A bag's messages filed by stream: one set of buffers per clock segment (a new segment starts where a
    stream's stamps go back by more than a frame period in recording order), with per stream the messages
    read, rejected (and the first reason) and out of order."""

    segments: list[dict[str, StreamBuffer]]
    read: Counter
    rejected: Counter
    reasons: dict[str, str]
    out_of_order: Counter
    breaks: list[TimeBreak]
    #: Per segment and stream, each kept message's record time minus its filing stamp (s).
    lags: list[dict[str, list[float]]] = field(default_factory=list)


def read_streams(path: Path, config: ConversionConfig, check_frames: bool = False) -> StreamsRead:
    """Every message of the bag's needed topics, in recording order, decoded and filed in offline buffers.
    ``check_frames``: decode every camera frame now (not only when it is written), so that a frame whose data
    is corrupt is rejected like any bad message (slower: for bags known to hold such frames)."""
    streams = plan_streams(config)
    check_topics(path, streams)
    by_topic = {s.topic: s for s in streams}
    profile = config.profile

    def buffers() -> dict[str, StreamBuffer]:
        return {s.role: StreamBuffer(s.role, stamp_source=profile.stamp_source, capacity=None,
                                     **s.sync.buffer_args())
                for s in streams if s.sync is not None}

    decoder = StreamDecoder(profile)
    initial_grippers = decoder.grippers
    back = 1.0 / config.rate  # time going back further than a frame period: a clock jumped
    read, rejected, out_of_order = Counter(), Counter(), Counter()
    reasons: dict[str, str] = {}
    segments = [buffers()]
    latest: dict[str, float] = {}  # per stream, its latest filing stamp in this segment
    clock: float | None = None  # the latest record time in this segment
    begun: float | None = None  # the first record time in this segment
    lags: list[dict[str, list[float]]] = [{}]  # per segment and stream: record time - filing stamp (s)
    breaks: list[TimeBreak] = []
    for message in read_messages(path, list(by_topic), order="write", undecodable="yield"):
        role = by_topic[message.topic].role
        read[role] += 1
        try:
            if message.msg is None:
                raise ValueError(message.error)
            stamp = filing_stamp(profile.stamp_source, message.msg, message.recorded)
            value = decode_message(decoder, role, message.msg)
            if check_frames and isinstance(value, images.Frame):
                value.decode()
        except ValueError as err:  # includes images.ImageError
            rejected[role] += 1
            reasons.setdefault(role, str(err))
            continue
        last = latest.get(role)
        jump = None
        if clock is not None and message.recorded < clock - back:  # the recorder's clock went back
            jump = TimeBreak("backward", clock, clock - message.recorded, ("record clock",))
        elif last is not None and stamp < last - back:  # this stream's stamps went back
            jump = TimeBreak("backward", last, last - stamp, (role,))
        if jump is not None and len(segments) > 1 and begun is not None and clock - begun < back:
            latest, clock, begun = {}, None, None  # the same jump seen on another clock (stamps, then recorder)
        elif jump is not None:  # a new clock segment: nothing before it is combined with what follows
            breaks.append(jump)
            segments.append(buffers())
            lags.append({})
            latest, clock, begun = {}, None, None
            if role != GRIPPER_STATE:  # (a gripper state's value is held: the new segment starts with it)
                decoder.grippers = initial_grippers
                if role == STATE and initial_grippers is None:
                    value = None
        elif last is not None and stamp < last:
            out_of_order[role] += 1
        latest[role] = max(stamp, latest.get(role, stamp))
        clock = message.recorded if clock is None else max(clock, message.recorded)
        begun = message.recorded if begun is None else begun
        if value is not None:
            segments[-1][role].add(value, stamp, message.recorded)
            lags[-1].setdefault(role, []).append(message.recorded - stamp)
    return StreamsRead(segments, read, rejected, reasons, out_of_order, breaks, lags)


def check_stamp_clocks(lags: dict[str, list[float]]) -> None:
    """Refuse a clock segment whose streams' stamps run on different clocks (``stamp_source: header``): a
    stream whose stamps lie further before their record times than the others' by more than
    :data:`MAX_CLOCK_SPREAD_S` (its publisher's clock is off, or jumped) would be aligned with the wrong
    moments of the others. Raises :class:`EpisodeError` naming the stream."""
    medians = {name: float(np.median(values)) for name, values in lags.items() if values}
    if len(medians) < 2:
        return
    base = min(medians.values())
    off = {name: lag - base for name, lag in medians.items() if lag - base > MAX_CLOCK_SPREAD_S}
    if off:
        worst = max(off, key=off.get)
        others = [n for n in medians if n not in off]
        raise EpisodeError(f"stamps of {', '.join(sorted(off))} lie {off[worst]:.2f} s further before their record "
                           f"times than those of {', '.join(others)} (more than {MAX_CLOCK_SPREAD_S} s): their clocks "
                           "differ (a jumped or unsynchronised clock); stamp_source: receive would align them")


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


@dataclass
class _Piece:
    """Grid ticks of one episode-to-be: indices into the segment's ticks, first..last (inclusive)."""

    first: int
    last: int
    kept: list[int] = field(default_factory=list)


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """(start, stop) of each run of False in ``flags``."""
    runs, start = [], None
    for i, ok in enumerate([*flags, True]):
        if not ok and start is None:
            start = i
        elif ok and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _segment_pieces(path: Path, buffers: dict[str, StreamBuffer], config: ConversionConfig
                    ) -> tuple[np.ndarray, list[Aligned], list[_Piece], list[TimeBreak]]:
    """Align one clock segment on its grid and cut it at its gaps; raises :class:`EpisodeError` when the
    segment loses more than ``max_dropped_fraction`` of its ticks (holes that are breaks excepted)."""
    ticks = grid(buffers, config.rate, config.trim.start_frames, config.trim.end_frames)
    aligned = [align(buffers.values(), float(tick)) for tick in ticks]
    complete = [a.complete for a in aligned]
    streams = len(buffers)
    limit = config.time_breaks.max_gap_frames
    pieces = [_Piece(0, len(ticks) - 1)]
    breaks: list[TimeBreak] = []
    holes: set[int] = set()  # ticks of breaks where the recording has no data: time that jumped, not data lost
    for start, stop in _runs(complete):
        if start == 0 or stop == len(ticks) or stop - start <= limit:
            continue  # dropped at an end of the segment, or a short run joined (a tick gap)
        missing: Counter = Counter()
        for a in aligned[start:stop]:
            missing.update(a.missing)
        hole = any(len(a.missing) == streams for a in aligned[start:stop])  # at some tick no stream at all
        if hole:
            holes.update(range(start, stop))
        breaks.append(TimeBreak("hole" if hole else "gap", float(ticks[start]), (stop - start) / config.rate,
                                tuple(name for name, _ in missing.most_common()), stop - start))
        pieces[-1].last = start - 1
        pieces.append(_Piece(stop, len(ticks) - 1))
    counted = len(ticks) - len(holes)
    dropped_ticks = complete.count(False) - len(holes)
    if counted and dropped_ticks / counted > config.max_dropped_fraction:
        dropped: Counter = Counter()
        for index, a in enumerate(aligned):
            if index not in holes:
                dropped.update(a.missing)
        worst = ", ".join(f"{k}: {v}" for k, v in dropped.most_common())
        raise EpisodeError(f"{path}: {dropped_ticks} of {counted} ticks dropped "
                           f"({dropped_ticks / counted:.0%} > max_dropped_fraction "
                           f"{config.max_dropped_fraction:.0%}); streams without a valid sample: {worst}")
    for piece in pieces:
        piece.kept = [i for i in range(piece.first, piece.last + 1) if complete[i]]
    return ticks, aligned, pieces, breaks


def _episode(path: Path, ticks: np.ndarray, aligned: list[Aligned], piece: _Piece, config: ConversionConfig,
             read: StreamsRead) -> Episode:
    cameras = list(config.profile.camera_names)
    kept_times, states, actions, skews = [], [], [], []
    frames: dict[str, list[images.Frame]] = {c: [] for c in cameras}
    dropped: Counter = Counter()
    ages: dict[str, list[float]] = {}
    tick_gaps: list[tuple[int, int]] = []
    previous = None
    for index in range(piece.first, piece.last + 1):
        tick, row = float(ticks[index]), aligned[index]
        if not row.complete:
            dropped.update(row.missing)
            continue
        if previous is not None and index - previous > 1:
            tick_gaps.append((len(kept_times), index - previous - 1))
        previous = index
        samples = row.samples
        kept_times.append(tick)
        states.append(samples[STATE].value)
        grippers = samples[GRIPPER_COMMAND].value if GRIPPER_COMMAND in samples else None
        actions.append(StreamDecoder.action(samples[ACTION].value, grippers))
        for camera in cameras:
            frames[camera].append(samples[camera].value)
        stamps = [s.stamp for s in samples.values()]
        skews.append(max(stamps) - min(stamps))
        for name, sample in samples.items():
            ages.setdefault(name, []).append(tick - sample.stamp)
    grid_ticks = piece.last - piece.first + 1
    return Episode(
        source=path, times=np.asarray(kept_times),
        state=np.asarray(states, dtype=np.float32).reshape(-1, robot.STATE_DIM),
        action=np.asarray(actions, dtype=np.float32).reshape(-1, robot.ACTION_DIM), frames=frames,
        grid_ticks=grid_ticks, dropped=dict(dropped), dropped_ticks=grid_ticks - len(kept_times),
        rejected=dict(read.rejected), reject_reasons=dict(read.reasons), messages=dict(read.read),
        skew=_summary(skews), age={name: _summary(values) for name, values in ages.items()}, tick_gaps=tick_gaps,
        out_of_order=dict(read.out_of_order))


def _empty_cause(name: str, read: StreamsRead, config: ConversionConfig) -> str:
    """Why stream ``name`` has no usable sample: its rejections, or (the state) the gripper state it waits for."""
    if name in read.reasons:
        return (f"{name}: {read.rejected[name]} of {read.read[name]} messages rejected, the first because "
                f"{read.reasons[name]}")
    cause = f"{name}: {read.read[name]} messages"
    if name == STATE and read.read[name] and config.profile.has_gripper_state:
        topic = config.profile.end_effector.state_topic
        if GRIPPER_STATE in read.reasons:
            cause += (f", none after a usable gripper state ({topic}: {read.rejected[GRIPPER_STATE]} of "
                      f"{read.read[GRIPPER_STATE]} messages rejected, the first because {read.reasons[GRIPPER_STATE]})")
        else:
            cause += f", none after a gripper state ({topic}: {read.read[GRIPPER_STATE]} messages)"
    return cause


def build_episodes(path: str | Path, config: ConversionConfig, check_frames: bool = False) -> BagEpisodes:
    """Read, align and check one bag, cut at its breaks in time (``config.time_breaks``): its episodes, breaks
    and left-out pieces. ``check_frames``: see :func:`read_streams`. Raises :class:`EpisodeError` or
    ``BagError`` (one line: the bag and the first cause) when nothing usable remains."""
    path = Path(path)
    read = read_streams(path, config, check_frames)
    names = list(read.segments[0])
    empty = [name for name in names if not any(len(segment[name]) for segment in read.segments)]
    if empty:
        causes = "; ".join(_empty_cause(name, read, config) for name in empty)
        raise EpisodeError(f"{path}: no usable messages on stream(s) {empty} ({causes})")
    for name, count in read.rejected.items():  # a systematic fault (wrong scale, another robot's layout), not noise
        if count > config.max_dropped_fraction * read.read[name]:
            raise EpisodeError(f"{path}: stream {name}: {count} of {read.read[name]} messages rejected (more than "
                               f"max_dropped_fraction {config.max_dropped_fraction:.0%}), the first because "
                               f"{read.reasons[name]}")
    rules = config.time_breaks
    breaks = list(read.breaks)
    discarded: list[str] = []
    cut: list[tuple[np.ndarray, list[Aligned], _Piece]] = []
    several = len(read.segments) > 1
    for number, buffers in enumerate(read.segments, 1):
        try:
            if config.profile.stamp_source == StampSource.HEADER and read.lags:
                check_stamp_clocks(read.lags[number - 1])
            ticks, aligned, pieces, gaps = _segment_pieces(path, buffers, config)
        except EpisodeError as err:
            if not several:
                raise err if str(err).startswith(f"{path}: ") else EpisodeError(f"{path}: {err}") from None
            discarded.append(f"clock segment {number} of {len(read.segments)}: "
                             f"{str(err).removeprefix(f'{path}: ')}")
            continue
        breaks += gaps
        cut += [(ticks, aligned, piece) for piece in pieces]
    if breaks and rules.action == "refuse":
        raise EpisodeError(f"{path}: {len(breaks)} break(s) in time: {'; '.join(b.describe() for b in breaks)} "
                           f"(time_breaks.action: refuse, max_gap_frames {rules.max_gap_frames})")
    keep = [(ticks, aligned, piece) for ticks, aligned, piece in cut if len(piece.kept) >= config.min_frames]
    for ticks, _, piece in cut:
        if len(piece.kept) < config.min_frames:
            where = f" from {float(ticks[piece.first]):.3f} s" if piece.first < len(ticks) else ""
            discarded.append(f"piece{where}: only {len(piece.kept)} frames (min_frames {config.min_frames})")
    if not keep:
        if not breaks and len(cut) == 1:
            raise EpisodeError(f"{path}: only {len(cut[0][2].kept)} frames after trimming and drops "
                               f"(min_frames {config.min_frames})")
        described = "; ".join(b.describe() for b in breaks)
        raise EpisodeError(f"{path}: cut at {len(breaks)} break(s) in time ({described}); no piece is usable: "
                           f"{'; '.join(discarded)}")
    episodes = [_episode(path, ticks, aligned, piece, config, read) for ticks, aligned, piece in keep]
    for number, episode in enumerate(episodes):
        episode.piece, episode.pieces = number, len(episodes)
    return BagEpisodes(path, episodes, breaks, discarded)


def build_episode(path: str | Path, config: ConversionConfig) -> Episode:
    """The one episode of a bag (see :func:`build_episodes`); raises :class:`EpisodeError` also when the bag is
    cut into several at breaks in time."""
    result = build_episodes(path, config)
    if len(result.episodes) != 1:
        raise EpisodeError(f"{result.source}: cut into {len(result.episodes)} episodes at break(s) in time: "
                           f"{'; '.join(b.describe() for b in result.breaks)}")
    return result.episodes[0]


def describe_error(err: BaseException) -> str:
    """A one-line reason for a failed bag."""
    if isinstance(err, (EpisodeError, BagError)):
        text = str(err)
    else:
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return " ".join(text.split())
