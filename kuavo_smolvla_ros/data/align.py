"""One bag -> aligned episodes as it is read: each grid tick is aligned, and its row handed on, as soon as no
later message can change it; memory is bounded by the per-stream sync windows, not by the bag's length.

The bag's messages come from :class:`~kuavo_smolvla_ros.data.episode.StreamFiler` (recording order, the
node's decoder, clock segments) and are filed in the node's :class:`~kuavo_smolvla_ros.sync.StreamBuffer`\\ s
with the profile's per-stream sync. Per clock segment the grid runs at ``fps`` from the latest first stamp of
all streams to the earliest last stamp, trimmed at both ends; each tick takes each stream's sample by its sync
policy (:func:`~kuavo_smolvla_ros.sync.align`), ticks where a stream has none are dropped and counted, and a
run of more than ``time_breaks.max_gap_frames`` dropped ticks cuts the segment into pieces (episodes-to-be).

When a tick is final: a later message of a stream is stamped no earlier than a frame period (``1 / fps``)
before that stream's latest stamp (with ``stamp_source: receive``, before the latest record time), or it
starts a new clock segment. A tick ``t`` is therefore aligned once every stream's bound has passed ``t`` (plus
its ``tolerance``); the buffers then drop what no later tick can sample
(:meth:`~kuavo_smolvla_ros.sync.StreamBuffer.discard_before`). What is held: per stream the samples between
the next tick and its latest message, the ``trim.end_frames`` rows not yet known to be outside the trim, and
per kept row its time, state and action (a few hundred bytes: 2400 rows for four minutes at 10 fps).
Two cases hold more, for as long as they last (never for the whole bag): until every stream has its first
message, everything since the segment began; with header stamps, while one stream is silent, the other
streams' samples since its last message (its next one could be stamped that far back).

Rows go to a :class:`RowSink` (the dataset writer, or :func:`build_episodes`' collector) piece by piece. A
piece with fewer than ``min_frames`` rows is discarded by the sink when it ends. Whether a clock segment is
usable (``max_dropped_fraction``, clocks of header stamps) is known only at its end: in the rare bag cut into
several segments where one that fails had already handed on a finished piece, :class:`Replan` is raised and
:func:`stream_episodes` converts the bag again without that segment's rows.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from kuavo_smolvla_ros import images, robot
from kuavo_smolvla_ros.contract.streams import ACTION, GRIPPER_COMMAND, STATE, StreamDecoder
from kuavo_smolvla_ros.data.config import ConversionConfig
from kuavo_smolvla_ros.data.episode import (
    BagEpisodes,
    Episode,
    EpisodeError,
    Filed,
    StreamFiler,
    TimeBreak,
    check_stamp_clocks,
    empty_cause,
)
from kuavo_smolvla_ros.sync import Aligned, StampSource, StreamBuffer, align


@dataclass(frozen=True)
class Row:
    """One kept tick: its time (s, bag clock), state and action ((16,) float32) and one frame per camera (the
    profile's camera order), not yet decoded."""

    time: float
    state: np.ndarray
    action: np.ndarray
    frames: dict[str, images.Frame]


class RowSink(Protocol):
    """Where aligned rows go, piece by piece: ``begin()``, ``add(row)`` for each row of the piece, then
    ``end(keep)``: keep the piece as an episode, or drop its rows (a piece too short, or in a clock segment that
    fails). ``discard()`` drops everything kept so far (the bag failed, or is converted again)."""

    def begin(self) -> None: ...

    def add(self, row: Row) -> None: ...

    def end(self, keep: bool) -> None: ...

    def discard(self) -> None: ...


class Replan(Exception):
    """A clock segment that fails had handed finished pieces on: convert the bag again skipping the rows of
    the clock segments ``skip`` (0-based)."""

    def __init__(self, skip: frozenset[int]):
        super().__init__(f"convert again without the rows of clock segments {sorted(skip)}")
        self.skip = skip


def _summary(values: Iterable[float]) -> dict[str, float]:
    array_ = np.asarray(list(values), dtype=np.float64)
    if not array_.size:
        return {"mean": 0.0, "p95": 0.0, "max": 0.0}
    return {"mean": float(array_.mean()), "p95": float(np.percentile(array_, 95)), "max": float(array_.max())}


@dataclass
class _Piece:
    """An episode-to-be: grid ticks ``first..last`` of its segment (after trimming) and its kept rows' data."""

    first: int
    first_time: float | None = None  # the time of tick ``first`` (None: the segment has no ticks)
    last: int = -1
    times: list[float] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    tick_gaps: list[tuple[int, int]] = field(default_factory=list)
    skews: list[float] = field(default_factory=list)
    ages: dict[str, list[float]] = field(default_factory=dict)
    previous: int | None = None  # the index of its latest kept tick
    begun: bool = False  # rows of it went to the sink
    kept: bool = False  # it has min_frames rows in a usable segment (the sink keeps it if it has begun it)


@dataclass
class _Run:
    """A run of dropped ticks: from tick ``start`` (at ``time``), ``length`` ticks."""

    start: int
    time: float
    length: int = 0
    missing: Counter = field(default_factory=Counter)
    hole: bool = False  # at some of its ticks no stream had a sample


class _Segment:
    """One clock segment's alignment, fed message by message (:meth:`file`, :meth:`advance`), finished by
    :meth:`close`; its rows go to ``sink`` unless ``emit`` is False."""

    def __init__(self, number: int, buffers: dict[str, StreamBuffer], config: ConversionConfig, sink: RowSink,
                 emit: bool):
        self.number, self.buffers, self.config, self.sink, self.emit = number, buffers, config, sink, emit
        self.names = list(buffers)
        self.cameras = list(config.profile.camera_names)
        self.fps = config.rate
        self.back = 1.0 / config.rate
        self.receive = config.profile.stamp_source != StampSource.HEADER
        self.tolerance = {name: buffer.tolerance or 0.0 for name, buffer in buffers.items()}
        self.first: dict[str, float] = {}  # per stream its earliest filed stamp (s)
        self.last: dict[str, float] = {}  # per stream its latest filed stamp (s)
        self.filed: Counter = Counter()
        self.lags: dict[str, array] = {}  # header stamps: per stream record time - stamp (s)
        self.start: float | None = None  # the grid's first tick, once final
        self.next = 0  # the next grid index to align (before trimming)
        self.delay: deque[tuple[float, Aligned]] = deque()  # aligned ticks that may still be trimmed at the end
        self.released = 0  # ticks past both trims so far: the next one's index in the segment
        self.pieces = [_Piece(0)]
        self.run: _Run | None = None
        self.breaks: list[TimeBreak] = []
        self.holes = 0  # ticks of breaks where no stream had data (time that jumped, not data lost)
        self.dropped_ticks = 0  # dropped ticks outside holes
        self.dropped: Counter = Counter()  # per stream, its dropped ticks outside holes
        self.error = ""

    # ---------------------------------------------------------------------------------------- feeding
    def file(self, filed: Filed) -> None:
        """File one accepted message (nothing for a value of None)."""
        if filed.value is None:
            return
        role = filed.role
        self.buffers[role].add(filed.value, filed.stamp, filed.recorded)
        self.first[role] = min(filed.stamp, self.first.get(role, filed.stamp))
        self.last[role] = max(filed.stamp, self.last.get(role, filed.stamp))
        self.filed[role] += 1
        if not self.receive:
            self.lags.setdefault(role, array("d")).append(filed.recorded - filed.stamp)

    def _bounds(self, latest: dict[str, float], clock: float | None) -> dict[str, float] | None:
        """Per stream the stamp every later message of it in this segment is at or after (s), or None while a
        stream has had no message since the segment (re)started."""
        bounds = {}
        for name in self.names:
            if name not in latest:
                return None
            bound = max(latest[name], clock) if self.receive and clock is not None else latest[name]
            bounds[name] = bound - self.back
        return bounds

    def advance(self, filer: StreamFiler) -> None:
        """Align every tick no later message can change (see the module doc)."""
        if not filer.settled:
            return
        bounds = self._bounds(filer.latest, filer.clock)
        if bounds is None:
            return
        if self.start is None:
            if any(self.filed[name] == 0 or bounds[name] <= self.first[name] for name in self.names):
                return
            self.start = max(self.first[name] for name in self.names)
        end = min(self.last[name] for name in self.names)
        if end < self.start:
            return
        limit = math.floor((end - self.start) * self.fps + 1e-9)  # the last grid index known to exist
        moved = False
        while self.next <= limit:
            tick = self.start + self.next / self.fps
            if any(bounds[name] <= tick + self.tolerance[name] for name in self.names):
                break
            self._tick(tick)
            moved = True
        if moved:
            tick = self.start + self.next / self.fps
            for buffer in self.buffers.values():
                buffer.discard_before(tick)

    def _tick(self, tick: float) -> None:
        aligned = align(self.buffers.values(), tick)
        index, self.next = self.next, self.next + 1
        if index < self.config.trim.start_frames:
            return
        self.delay.append((tick, aligned))
        if len(self.delay) > self.config.trim.end_frames:
            self._release(*self.delay.popleft())

    # ---------------------------------------------------------------------------------------- pieces
    def _release(self, tick: float, aligned: Aligned) -> None:
        """A tick inside both trims, in order: kept, or one more of a run of dropped ticks."""
        index, self.released = self.released, self.released + 1
        if index == 0:
            self.pieces[0].first_time = tick
        if not aligned.complete:
            if self.run is None:
                self.run = _Run(index, tick)
            self.run.length += 1
            self.run.missing.update(aligned.missing)
            self.run.hole |= len(aligned.missing) == len(self.names)
            return
        run, self.run = self.run, None
        if run is not None:
            limit = self.config.time_breaks.max_gap_frames
            if run.start == 0 or run.length <= limit:  # dropped at the segment's start, or a short gap joined
                self._drop(self.pieces[-1], run)
            else:  # a break: the piece ends before the run, a new one starts here
                self.breaks.append(TimeBreak("hole" if run.hole else "gap", run.time, run.length / self.fps,
                                             tuple(name for name, _ in run.missing.most_common()), run.length))
                if run.hole:
                    self.holes += run.length
                else:
                    self.dropped_ticks += run.length
                    self.dropped.update(run.missing)
                self._end_piece(run.start - 1, usable=True)
                self.pieces.append(_Piece(index, tick))
        self._keep(self.pieces[-1], index, tick, aligned)

    def _drop(self, piece: _Piece, run: _Run) -> None:
        """A run of dropped ticks inside ``piece`` (joined, or at an end of the segment)."""
        piece.dropped.update(run.missing)
        self.dropped_ticks += run.length
        self.dropped.update(run.missing)

    def _keep(self, piece: _Piece, index: int, tick: float, aligned: Aligned) -> None:
        if piece.previous is not None and index - piece.previous > 1:
            piece.tick_gaps.append((len(piece.times), index - piece.previous - 1))
        piece.previous = index
        samples = aligned.samples
        grippers = samples[GRIPPER_COMMAND].value if GRIPPER_COMMAND in samples else None
        row = Row(tick, np.asarray(samples[STATE].value, dtype=np.float32),
                  np.asarray(StreamDecoder.action(samples[ACTION].value, grippers), dtype=np.float32),
                  {camera: samples[camera].value for camera in self.cameras})
        piece.times.append(tick)
        piece.states.append(row.state)
        piece.actions.append(row.action)
        stamps = [s.stamp for s in samples.values()]
        piece.skews.append(max(stamps) - min(stamps))
        for name, sample in samples.items():
            piece.ages.setdefault(name, []).append(tick - sample.stamp)
        if self.emit:
            if not piece.begun:
                self.sink.begin()
                piece.begun = True
            self.sink.add(row)

    def _end_piece(self, last: int, usable: bool) -> None:
        piece = self.pieces[-1]
        piece.last = last
        piece.kept = usable and len(piece.times) >= self.config.min_frames
        if piece.begun:
            self.sink.end(piece.kept)

    # ---------------------------------------------------------------------------------------- the end
    def close(self, path: Path) -> None:
        """The segment's messages are all filed: align its last ticks, end its last piece, and check it
        (``error`` says why it is unusable, without the bag's path)."""
        if self.start is None and all(self.filed[name] for name in self.names):
            self.start = max(self.first[name] for name in self.names)
        count = 0
        if self.start is not None:
            end = min(self.last[name] for name in self.names)
            count = math.floor((end - self.start) * self.fps + 1e-9) + 1 if end >= self.start else 0
        while self.next < count:
            self._tick(self.start + self.next / self.fps)
        self.delay.clear()  # the ticks trimmed at the end
        for buffer in self.buffers.values():
            buffer.clear()
        if self.run is not None:  # dropped at the segment's end
            self._drop(self.pieces[-1], self.run)
            self.run = None
        self.error = self._check(path, count)
        self._end_piece(self.released - 1, usable=not self.error)

    def _check(self, path: Path, count: int) -> str:
        """Why this segment cannot be used ("" if it can), as ``build_episodes`` has always checked it."""
        try:
            if not self.receive and self.lags:
                check_stamp_clocks(self.lags)
        except EpisodeError as err:
            return str(err)
        empty = [name for name in self.names if not self.filed[name]]
        if empty:
            return f"no usable messages on stream(s) {empty}"
        if count == 0:
            end = min(self.last[name] for name in self.names)
            return f"the streams never overlap in time (latest start {self.start:.3f}, earliest end {end:.3f})"
        counted = self.released - self.holes
        if counted and self.dropped_ticks / counted > self.config.max_dropped_fraction:
            worst = ", ".join(f"{k}: {v}" for k, v in self.dropped.most_common())
            return (f"{path}: {self.dropped_ticks} of {counted} ticks dropped "
                    f"({self.dropped_ticks / counted:.0%} > max_dropped_fraction "
                    f"{self.config.max_dropped_fraction:.0%}); streams without a valid sample: {worst}")
        return ""


def _episode(path: Path, piece: _Piece, filer: StreamFiler) -> Episode:
    grid_ticks = piece.last - piece.first + 1
    return Episode(
        source=path, times=np.asarray(piece.times),
        state=np.asarray(piece.states, dtype=np.float32).reshape(-1, robot.STATE_DIM),
        action=np.asarray(piece.actions, dtype=np.float32).reshape(-1, robot.ACTION_DIM), frames={},
        grid_ticks=grid_ticks, dropped=dict(piece.dropped), dropped_ticks=grid_ticks - len(piece.times),
        rejected=dict(filer.rejected), reject_reasons=dict(filer.reasons), messages=dict(filer.read),
        skew=_summary(piece.skews), age={name: _summary(values) for name, values in piece.ages.items()},
        tick_gaps=piece.tick_gaps, out_of_order=dict(filer.out_of_order))


def align_bag(path: str | Path, config: ConversionConfig, sink: RowSink, check_frames: bool = False,
              skip: frozenset[int] = frozenset()) -> BagEpisodes:
    """Read, align and check one bag, cut at its breaks in time (``config.time_breaks``), handing each piece's
    rows to ``sink`` as they are aligned (none of the clock segments in ``skip``). Returns its episodes (without
    frames: they went to ``sink``), breaks and left-out pieces. ``check_frames``: see
    :class:`~kuavo_smolvla_ros.data.episode.StreamFiler`. Raises :class:`EpisodeError` or ``BagError`` (one line:
    the bag and the first cause) when nothing usable remains, :class:`Replan` (see the module doc), and what
    ``sink`` raises."""
    path = Path(path)
    filer = StreamFiler(path, config, check_frames)

    def segment(number: int) -> _Segment:
        return _Segment(number, filer.buffers(), config, sink, emit=number not in skip)

    segments = [segment(0)]
    for filed in filer:
        if filed.segment != segments[-1].number:
            segments[-1].close(path)
            segments.append(segment(filed.segment))
        segments[-1].file(filed)
        segments[-1].advance(filer)
    segments[-1].close(path)

    names = segments[0].names
    empty = [name for name in names if not any(s.filed[name] for s in segments)]
    if empty:
        causes = "; ".join(empty_cause(name, filer, config) for name in empty)
        raise EpisodeError(f"{path}: no usable messages on stream(s) {empty} ({causes})")
    for name, count in filer.rejected.items():  # a systematic fault (wrong scale, another robot's layout), not noise
        if count > config.max_dropped_fraction * filer.read[name]:
            raise EpisodeError(f"{path}: stream {name}: {count} of {filer.read[name]} messages rejected (more than "
                               f"max_dropped_fraction {config.max_dropped_fraction:.0%}), the first because "
                               f"{filer.reasons[name]}")
    rules = config.time_breaks
    breaks = list(filer.breaks)
    discarded: list[str] = []
    cut: list[_Piece] = []
    for number, seg in enumerate(segments, 1):
        if seg.error:
            if len(segments) == 1:
                raise EpisodeError(seg.error if seg.error.startswith(f"{path}: ") else f"{path}: {seg.error}")
            discarded.append(f"clock segment {number} of {len(segments)}: {seg.error.removeprefix(f'{path}: ')}")
            continue
        breaks += seg.breaks
        cut += seg.pieces
    if breaks and rules.action == "refuse":
        raise EpisodeError(f"{path}: {len(breaks)} break(s) in time: {'; '.join(b.describe() for b in breaks)} "
                           f"(time_breaks.action: refuse, max_gap_frames {rules.max_gap_frames})")
    keep = [piece for piece in cut if len(piece.times) >= config.min_frames]
    for piece in cut:
        if len(piece.times) < config.min_frames:
            where = f" from {piece.first_time:.3f} s" if piece.first_time is not None else ""
            discarded.append(f"piece{where}: only {len(piece.times)} frames (min_frames {config.min_frames})")
    if not keep:
        if not breaks and len(cut) == 1:
            raise EpisodeError(f"{path}: only {len(cut[0].times)} frames after trimming and drops "
                               f"(min_frames {config.min_frames})")
        described = "; ".join(b.describe() for b in breaks)
        raise EpisodeError(f"{path}: cut at {len(breaks)} break(s) in time ({described}); no piece is usable: "
                           f"{'; '.join(discarded)}")
    stale = frozenset(s.number for s in segments if s.error and any(p.kept and p.begun for p in s.pieces))
    if stale:
        raise Replan(skip | stale)
    episodes = [_episode(path, piece, filer) for piece in keep]
    for number, episode in enumerate(episodes):
        episode.piece, episode.pieces = number, len(episodes)
    return BagEpisodes(path, episodes, breaks, discarded)


def stream_episodes[Sink: RowSink](path: str | Path, config: ConversionConfig, open_sink: Callable[[], Sink],
                                   check_frames: bool = False) -> tuple[BagEpisodes, Sink]:
    """:func:`align_bag` into a sink from ``open_sink()``; on :class:`Replan` the sink's rows are discarded and
    the bag is aligned again into a new one. On any error the sink is discarded and the error raised. Returns
    the bag's episodes and the sink that holds their rows."""
    skip: frozenset[int] = frozenset()
    while True:
        sink = open_sink()
        try:
            return align_bag(path, config, sink, check_frames, skip), sink
        except Replan as replan:
            sink.discard()
            skip = replan.skip
        except BaseException:
            sink.discard()
            raise


class _Collector:
    """A :class:`RowSink` keeping the frames of each kept piece in memory (for :func:`build_episodes`)."""

    def __init__(self, cameras: list[str]):
        self.cameras = cameras
        self.kept: list[dict[str, list[images.Frame]]] = []
        self._piece: dict[str, list[images.Frame]] = {}

    def begin(self) -> None:
        self._piece = {camera: [] for camera in self.cameras}

    def add(self, row: Row) -> None:
        for camera, frame in row.frames.items():
            self._piece[camera].append(frame)

    def end(self, keep: bool) -> None:
        if keep:
            self.kept.append(self._piece)
        self._piece = {}

    def discard(self) -> None:
        self.kept.clear()


def build_episodes(path: str | Path, config: ConversionConfig, check_frames: bool = False) -> BagEpisodes:
    """Read, align and check one bag, cut at its breaks in time (see :func:`align_bag`), keeping its episodes
    whole in memory, frames included (for tests and small bags; the converter streams them to its writer).
    Raises :class:`EpisodeError` or ``BagError`` (one line: the bag and the first cause) when nothing usable
    remains."""
    built, collector = stream_episodes(path, config, lambda: _Collector(list(config.profile.camera_names)),
                                       check_frames)
    for episode, frames in zip(built.episodes, collector.kept, strict=True):
        episode.frames = frames
    return built


def build_episode(path: str | Path, config: ConversionConfig) -> Episode:
    """The one episode of a bag (see :func:`build_episodes`); raises :class:`EpisodeError` also when the bag is
    cut into several at breaks in time."""
    result = build_episodes(path, config)
    if len(result.episodes) != 1:
        raise EpisodeError(f"{result.source}: cut into {len(result.episodes)} episodes at break(s) in time: "
                           f"{'; '.join(b.describe() for b in result.breaks)}")
    return result.episodes[0]
