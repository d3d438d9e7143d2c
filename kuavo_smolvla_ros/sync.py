"""Per-stream sample buffers with a maximum age: how live topics and recorded bags are aligned.

The node gates its inputs with these buffers (a chunk is computed only from samples younger than
``max_age``), and the bag converter samples the very same buffers on its fixed-rate grid, so
training data and robot inputs are aligned by one piece of code.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Header stamps at or below this (seconds) count as "not set" and fall back to the receive time.
UNSET_STAMP = 1e-9


class StampSource(StrEnum):
    """Which time a sample is filed under."""

    HEADER = "header"  # the message's header stamp (receive time when the header is zero)
    RECEIVE = "receive"  # when the message arrived (or was recorded, for bags)


@dataclass(frozen=True)
class Sample:
    """One message of a stream: the stamp it is filed under, when it arrived, and its value."""

    stamp: float
    received: float
    value: Any


class StreamBuffer:
    """Recent samples of one stream, ordered by stamp, queried "as of" a time with a maximum age.

    ``max_age`` is in seconds (``None``: no limit). With ``tolerance`` set, :meth:`sample` picks the
    nearest sample on either side within that many seconds instead (offline use only: it may look into
    the future). ``capacity`` bounds memory (``None``: keep all, for offline use).
    """

    def __init__(self, name: str, max_age: float | None = None,
                 stamp_source: StampSource | str = StampSource.HEADER, capacity: int | None = 64,
                 tolerance: float | None = None):
        if max_age is not None and max_age <= 0:
            raise ValueError(f"stream {name}: max_age must be > 0 (or None), got {max_age}")
        if tolerance is not None and tolerance < 0:
            raise ValueError(f"stream {name}: tolerance must be >= 0 (or None), got {tolerance}")
        if capacity is not None and capacity < 1:
            raise ValueError(f"stream {name}: capacity must be >= 1 (or None), got {capacity}")
        self.name = name
        self.max_age = max_age
        self.tolerance = tolerance
        self.stamp_source = StampSource(stamp_source)
        self.capacity = capacity
        self._stamps: list[float] = []
        self._samples: list[Sample] = []

    def __len__(self) -> int:
        return len(self._samples)

    def stamp_of(self, header_stamp: float | None, received: float) -> float:
        """The time a message is filed under, by this stream's stamp source."""
        if self.stamp_source is StampSource.HEADER and header_stamp is not None and header_stamp > UNSET_STAMP:
            return float(header_stamp)
        return float(received)

    def add(self, value: Any, header_stamp: float | None, received: float) -> Sample:
        """File ``value`` (out-of-order stamps are inserted in order; the oldest are dropped)."""
        sample = Sample(self.stamp_of(header_stamp, received), float(received), value)
        index = bisect.bisect_right(self._stamps, sample.stamp)
        self._stamps.insert(index, sample.stamp)
        self._samples.insert(index, sample)
        if self.capacity is not None and len(self._samples) > self.capacity:
            del self._stamps[0]
            del self._samples[0]
        return sample

    def remove(self, value: Any) -> int:
        """Drop every sample holding ``value`` (the very object); returns how many were dropped."""
        keep = [i for i, sample in enumerate(self._samples) if sample.value is not value]
        dropped = len(self._samples) - len(keep)
        self._samples = [self._samples[i] for i in keep]
        self._stamps = [self._stamps[i] for i in keep]
        return dropped

    def clear(self) -> None:
        self._stamps.clear()
        self._samples.clear()

    def discard_before(self, time: float) -> int:
        """Drop the samples that :meth:`sample` can no longer return for ``time`` or any later time (offline
        streaming: the bag converter holds only its sync window): with ``tolerance``, those stamped before
        ``time - tolerance``; else all before the latest stamped at or before ``time``. Returns how many."""
        if self.tolerance is None:
            index = bisect.bisect_right(self._stamps, time) - 1
        else:
            index = bisect.bisect_left(self._stamps, time - self.tolerance)
        index = max(index, 0)
        del self._stamps[:index]
        del self._samples[:index]
        return index

    def latest(self) -> Sample | None:
        return self._samples[-1] if self._samples else None

    def as_of(self, time: float, lookahead: float = 0.0) -> Sample | None:
        """The latest sample stamped at or before ``time + lookahead`` and no more than ``max_age`` older than
        ``time``, else None. ``lookahead`` (s) tolerates stamps slightly ahead of a live clock (clock skew);
        offline sampling uses 0."""
        index = bisect.bisect_right(self._stamps, time + lookahead) - 1
        if index < 0:
            return None
        sample = self._samples[index]
        if self.max_age is not None and time - sample.stamp > self.max_age:
            return None
        return sample

    def nearest(self, time: float, tolerance: float) -> Sample | None:
        """The sample closest to ``time`` (either side) within ``tolerance`` seconds, else None."""
        index = bisect.bisect_left(self._stamps, time)
        best: Sample | None = None
        for candidate in (index - 1, index):
            if 0 <= candidate < len(self._samples):
                sample = self._samples[candidate]
                if abs(sample.stamp - time) <= tolerance and (
                        best is None or abs(sample.stamp - time) < abs(best.stamp - time)):
                    best = sample
        return best

    def sample(self, time: float, lookahead: float = 0.0) -> Sample | None:
        """This stream's sample for ``time``: nearest within ``tolerance`` if set, else :meth:`as_of`."""
        return self.as_of(time, lookahead) if self.tolerance is None else self.nearest(time, self.tolerance)

    def first(self) -> Sample | None:
        return self._samples[0] if self._samples else None

    def age(self, now: float) -> float | None:
        """Seconds since the latest sample's stamp, or None before the first sample."""
        latest = self.latest()
        return None if latest is None else now - latest.stamp


@dataclass(frozen=True)
class Aligned:
    """The samples of several streams as of one time, or the names of the streams that had none."""

    time: float
    samples: Mapping[str, Sample]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def oldest_stamp(self) -> float | None:
        return min((s.stamp for s in self.samples.values()), default=None)


def align(buffers: Iterable[StreamBuffer], time: float, lookahead: float = 0.0) -> Aligned:
    """Each buffer's :meth:`~StreamBuffer.sample` for ``time``; streams without one are ``missing``."""
    samples: dict[str, Sample] = {}
    missing: list[str] = []
    for buffer in buffers:
        sample = buffer.sample(time, lookahead)
        if sample is None:
            missing.append(buffer.name)
        else:
            samples[buffer.name] = sample
    return Aligned(time, samples, tuple(missing))
