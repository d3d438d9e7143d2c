"""One bag's messages -> stream samples: what an aligned episode is, and reading a bag into it.

The streams are the robot profile's (:func:`~kuavo_smolvla_ros.contract.streams.recorded_streams`); every
message is turned into a stream sample by the decoder the live node uses
(:class:`~kuavo_smolvla_ros.contract.streams.StreamDecoder`, through :func:`decode_message`), filed under
its header stamp or record time (:func:`filing_stamp`). Messages are read in the order the recorder wrote
them (what a live subscriber saw) by :class:`StreamFiler`, which yields them one by one and splits the bag
into clock segments. :mod:`kuavo_smolvla_ros.data.align` aligns them on the fixed grid as they come.

Time is never spliced: a run of more than ``time_breaks.max_gap_frames`` dropped ticks, or a stream whose
stamps go back by more than a frame period in recording order (a record clock that jumped back: simulator
reset, rewound ``/clock``; header stamps that jumped), is a :class:`TimeBreak`. The bag is then cut into
separate episodes at its breaks, or refused (``time_breaks.action``). No LeRobot here:
:mod:`kuavo_smolvla_ros.data.dataset` writes the result.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
from kuavo_smolvla_ros.sync import UNSET_STAMP, StampSource, StreamBuffer

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
    """An aligned episode: per kept tick its time, state, action and (when kept) one frame per camera.

    ``frames`` is filled by :func:`~kuavo_smolvla_ros.data.align.build_episodes` (the whole episode in memory);
    an episode streamed to a writer (:func:`~kuavo_smolvla_ros.data.align.align_bag`) has ``frames`` empty: its
    frames went to the writer as their ticks were aligned.
    """

    source: Path
    times: np.ndarray  # (N,) grid tick times, seconds (bag clock)
    state: np.ndarray  # (N, 16) float32
    action: np.ndarray  # (N, 16) float32
    frames: dict[str, list[images.Frame]]  # camera -> N lazily decoded frames (or empty: streamed)
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
@dataclass(frozen=True)
class Filed:
    """One message of a bag that was read and accepted, as :class:`StreamFiler` yields it.

    ``segment``: the clock segment it belongs to (0-based); ``role``: its stream; ``value``: what
    :func:`decode_message` made of it (None: nothing to file, such as a gripper state, which the decoder holds,
    or a state before the first gripper state); ``stamp``: its filing stamp (s); ``recorded``: its record time (s).
    """

    segment: int
    role: str
    value: Any
    stamp: float
    recorded: float


class StreamFiler:
    """A bag's messages of the needed topics, read in the order the recorder wrote them (what a live subscriber
    saw), decoded by the node's decoder and split into clock segments; iterating yields one :class:`Filed` per
    accepted message, holding nothing itself.

    A new segment starts where the record clock, or a stream's stamps, go back by more than a frame period
    (``1 / config.rate`` s) in recording order (the :class:`TimeBreak` is appended to ``breaks``). While
    iterating it keeps per stream the messages read, rejected (and the first reason) and out of order, and, for
    the current segment, ``latest`` (stream -> its latest filing stamp, s): a message of a stream accepted later
    in the same segment is stamped no earlier than ``latest[stream] - 1 / config.rate`` once :attr:`settled`
    (before, the same jump may still be seen on another clock). Raises ``BagError`` or :class:`EpisodeError`
    (missing topics, wrong types) before the first message; a message that cannot be used is counted, never
    raised. ``check_frames``: decode every camera frame now, so that a frame whose data is corrupt is rejected
    like any bad message (slower: for bags known to hold such frames).
    """

    def __init__(self, path: Path, config: ConversionConfig, check_frames: bool = False):
        self.path = Path(path)
        self.config = config
        self.check_frames = check_frames
        self.streams = plan_streams(config)
        #: The streams filed in sync buffers (all but the held gripper state), in the profile's order.
        self.synced = [s for s in self.streams if s.sync is not None]
        self.back = 1.0 / config.rate  # time going back further than a frame period: a clock jumped
        self.read, self.rejected, self.out_of_order = Counter(), Counter(), Counter()
        self.reasons: dict[str, str] = {}
        self.breaks: list[TimeBreak] = []
        self.segment = 0
        self.latest: dict[str, float] = {}
        self._clock: float | None = None  # the latest record time in this segment
        self._begun: float | None = None  # the first record time in this segment

    @property
    def clock(self) -> float | None:
        """The latest record time (s) in the current segment (None before its first message): a later message of
        the segment is recorded no earlier than a frame period before it."""
        return self._clock

    @property
    def settled(self) -> bool:
        """Whether the current segment's stamps are bounded by ``latest`` (no jump seen on a second clock can
        reset them any more: more than a frame period of record time has passed since it began)."""
        return self._begun is not None and self._clock is not None and self._clock - self._begun >= self.back

    def buffers(self) -> dict[str, StreamBuffer]:
        """Empty sync buffers of the filed streams (the profile's per-stream sync, unbounded)."""
        stamp_source = self.config.profile.stamp_source
        return {s.role: StreamBuffer(s.role, stamp_source=stamp_source, capacity=None, **s.sync.buffer_args())
                for s in self.synced}

    def __iter__(self) -> Iterator[Filed]:
        check_topics(self.path, self.streams)
        by_topic = {s.topic: s for s in self.streams}
        profile = self.config.profile
        decoder = StreamDecoder(profile)
        initial_grippers = decoder.grippers
        back = self.back
        for message in read_messages(self.path, list(by_topic), order="write", undecodable="yield"):
            role = by_topic[message.topic].role
            self.read[role] += 1
            try:
                if message.msg is None:
                    raise ValueError(message.error)
                stamp = filing_stamp(profile.stamp_source, message.msg, message.recorded)
                value = decode_message(decoder, role, message.msg)
                if self.check_frames and isinstance(value, images.Frame):
                    value.decode()
            except ValueError as err:  # includes images.ImageError
                self.rejected[role] += 1
                self.reasons.setdefault(role, str(err))
                continue
            last, clock = self.latest.get(role), self._clock
            jump = None
            if clock is not None and message.recorded < clock - back:  # the recorder's clock went back
                jump = TimeBreak("backward", clock, clock - message.recorded, ("record clock",))
            elif last is not None and stamp < last - back:  # this stream's stamps went back
                jump = TimeBreak("backward", last, last - stamp, (role,))
            if jump is not None and self.segment > 0 and self._begun is not None and clock - self._begun < back:
                self._reset()  # the same jump seen on another clock (stamps, then recorder)
            elif jump is not None:  # a new clock segment: nothing before it is combined with what follows
                self.breaks.append(jump)
                self.segment += 1
                self._reset()
                if role != GRIPPER_STATE:  # (a gripper state's value is held: the new segment starts with it)
                    decoder.grippers = initial_grippers
                    if role == STATE and initial_grippers is None:
                        value = None
            elif last is not None and stamp < last:
                self.out_of_order[role] += 1
            self.latest[role] = max(stamp, self.latest.get(role, stamp))
            self._clock = message.recorded if self._clock is None else max(self._clock, message.recorded)
            self._begun = message.recorded if self._begun is None else self._begun
            yield Filed(self.segment, role, value, stamp, message.recorded)

    def _reset(self) -> None:
        self.latest, self._clock, self._begun = {}, None, None


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
    """Every message of the bag's needed topics (see :class:`StreamFiler`), filed in unbounded offline buffers
    per clock segment: the whole bag in memory (the converter aligns as it reads instead:
    :mod:`kuavo_smolvla_ros.data.align`)."""
    filer = StreamFiler(path, config, check_frames)
    segments = [filer.buffers()]
    lags: list[dict[str, list[float]]] = [{}]
    for filed in filer:
        while filed.segment >= len(segments):
            segments.append(filer.buffers())
            lags.append({})
        if filed.value is not None:
            segments[filed.segment][filed.role].add(filed.value, filed.stamp, filed.recorded)
            lags[filed.segment].setdefault(filed.role, []).append(filed.recorded - filed.stamp)
    while filer.segment >= len(segments):  # (a segment begun by a message with nothing to file)
        segments.append(filer.buffers())
        lags.append({})
    return StreamsRead(segments, filer.read, filer.rejected, filer.reasons, filer.out_of_order, filer.breaks, lags)


def check_stamp_clocks(lags: Mapping[str, Sequence[float]]) -> None:
    """Refuse a clock segment whose streams' stamps run on different clocks (``stamp_source: header``): a
    stream whose stamps lie further before their record times than the others' by more than
    :data:`MAX_CLOCK_SPREAD_S` (its publisher's clock is off, or jumped) would be aligned with the wrong
    moments of the others. ``lags``: stream -> each filed message's record time minus its stamp (s). Raises
    :class:`EpisodeError` naming the stream."""
    medians = {name: float(np.median(np.asarray(values))) for name, values in lags.items() if len(values)}
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


class ReadCounts(Protocol):
    """Per-stream counts of a bag's reading (:class:`StreamFiler`, :class:`StreamsRead`)."""

    read: Counter
    rejected: Counter
    reasons: dict[str, str]


def empty_cause(name: str, read: ReadCounts, config: ConversionConfig) -> str:
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


def __getattr__(name: str) -> Any:
    """``build_episodes`` and ``build_episode`` (in :mod:`kuavo_smolvla_ros.data.align`, which reads bags with
    this module) under their former address."""
    if name in ("build_episodes", "build_episode"):
        from kuavo_smolvla_ros.data import align

        return getattr(align, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def describe_error(err: BaseException) -> str:
    """A one-line reason for a failed bag."""
    if isinstance(err, (EpisodeError, BagError)):
        text = str(err)
    else:
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return " ".join(text.split())
