"""Which action goes out at each control tick: chunks executed n at a time, refilled ahead, seams blended.

Time is counted in executed actions ("progress"): it advances on every tick that sends an action
from a chunk and stands still while the robot holds. A chunk computed from the observation taken at
progress ``r`` holds the actions for progress ``r, r+1, ...``. Each chunk is executed for
``n_action_steps`` actions from the point it takes over; the next chunk takes over when they run out,
starting at the index of that point (the actions the robot executed while it was computed are
skipped), and its first ``blend_steps`` actions are blended with the old chunk's continuation so
commands do not jump. A chunk that arrives after the old one ran out takes over at once; in between
the caller holds the last command, and since holding does not advance progress, a slow model's
chunk still starts where the robot stopped instead of being thrown away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Chunk:
    """A predicted action chunk and where it came from."""

    actions: np.ndarray  # (chunk_size, action_dim)
    request_tick: int  # progress at the observation: actions[i] is meant for progress request_tick + i
    instruction: str
    seq: int = 0
    oldest_stamp: float = 0.0  # oldest input stamp used (seconds)
    inference_time: float = 0.0  # seconds

    def __len__(self) -> int:
        return int(self.actions.shape[0])


@dataclass(frozen=True)
class Takeover:
    """Reported when a chunk starts being executed."""

    chunk: Chunk
    progress: int
    start_index: int


class ChunkScheduler:
    """Holds the executing chunk (and one waiting to take over) and yields one action per tick."""

    def __init__(self, n_action_steps: int, blend_steps: int = 2, margin_ticks: int = 1):
        if n_action_steps < 1:
            raise ValueError(f"n_action_steps must be >= 1, got {n_action_steps}")
        if blend_steps < 0 or margin_ticks < 0:
            raise ValueError("blend_steps and margin_ticks must be >= 0")
        self.n_action_steps = int(n_action_steps)
        self.blend_steps = int(blend_steps)
        self.margin_ticks = int(margin_ticks)
        self.progress = 0  # actions executed so far
        self.current: Chunk | None = None
        self._start = 0  # progress at which the current chunk took over
        self._end = 0  # progress after the current chunk's executed window
        self._previous: Chunk | None = None  # the chunk replaced last, for the seam blend
        self._pending: Chunk | None = None  # accepted, waiting for _end
        self.discarded = 0  # chunks that had no action left to execute

    # ---------------------------------------------------------------------------------------------
    def _window_end(self) -> int:
        """Progress after which the current chunk has nothing left (its window or its length)."""
        if self.current is None:
            return self.progress
        return min(self._end, self.current.request_tick + len(self.current))

    def request_due(self, latency_s: float, period_s: float) -> bool:
        """Whether an inference started now is needed to be ready when the current chunk runs out."""
        if self._pending is not None:
            return False
        if self.current is None:
            return True
        latency_ticks = math.ceil(max(latency_s, 0.0) / period_s) + self.margin_ticks
        return self.progress >= self._window_end() - latency_ticks

    def queue_depth(self) -> int:
        """Actions still to be executed (the current window plus a waiting chunk)."""
        depth = max(0, self._window_end() - self.progress)
        if self._pending is not None:
            depth += max(0, min(self.n_action_steps, len(self._pending) - (self._end - self._pending.request_tick)))
        return depth

    def clear(self) -> None:
        """Drop every queued action (disable, hold on stale inputs)."""
        self.current = self._previous = self._pending = None
        self._start = self._end = self.progress

    # ---------------------------------------------------------------------------------------------
    def accept(self, chunk: Chunk, immediate: bool = False) -> Takeover | None:
        """Take a new chunk: now if nothing is executing (or ``immediate``, e.g. on a task switch),
        else when the current window ends. Returns the takeover if it happened now; a chunk with no
        action left is discarded (counted) and None is returned."""
        if self.current is None or immediate or self.progress >= self._window_end():
            return self._take_over(chunk)
        self._pending = chunk
        return None

    def _take_over(self, chunk: Chunk) -> Takeover | None:
        self._pending = None
        start_index = max(self.progress - chunk.request_tick, 0)
        if start_index >= len(chunk):
            self.discarded += 1
            return None
        self._previous = self.current
        self.current = chunk
        self._start = self.progress
        self._end = self.progress + self.n_action_steps
        return Takeover(chunk, self.progress, start_index)

    def leftover(self) -> tuple[np.ndarray | None, int]:
        """(the current chunk's actions from this tick's progress on, how many of them execute before a chunk
        requested now takes over): the prefix and inference delay of real-time chunking; (None, 0) without a
        current chunk."""
        if self.current is None:
            return None, 0
        index = self.progress - self.current.request_tick
        if index >= len(self.current):
            return None, 0
        return self.current.actions[index:].copy(), max(0, self._window_end() - self.progress)

    def planned_start_index(self, chunk: Chunk) -> int:
        """The index ``chunk`` starts executing at: now if it is current, else when it takes over."""
        start = self._start if chunk is self.current else self._end
        return max(0, start - chunk.request_tick)

    def next_action(self) -> tuple[np.ndarray | None, Takeover | None]:
        """The action for this tick (None: nothing left, hold) and a takeover if one happened now."""
        takeover = None
        if self._pending is not None and self.progress >= self._window_end():
            takeover = self._take_over(self._pending)
        chunk = self.current
        if chunk is None or self.progress >= self._window_end():
            return None, takeover
        action = chunk.actions[self.progress - chunk.request_tick].astype(np.float64)
        seam = self.progress - self._start
        if self._previous is not None and seam < self.blend_steps:
            old_index = self.progress - self._previous.request_tick
            if 0 <= old_index < len(self._previous):
                weight = (seam + 1) / (self.blend_steps + 1)
                action = weight * action + (1 - weight) * self._previous.actions[old_index]
        self.progress += 1
        return action, takeover
