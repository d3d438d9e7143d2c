"""Which action goes out at each control tick: chunks executed n at a time, refilled ahead, seams blended.

Time is counted in control ticks. A chunk computed from the observation taken at tick ``r`` holds
the actions for ticks ``r, r+1, ...``. Each chunk is executed for ``n_action_steps`` ticks from the
tick it takes over; the next chunk takes over when they run out, starting at the index of that tick
(the actions whose time passed during inference are skipped), and its first ``blend_steps`` actions
are blended with the old chunk's continuation so commands do not jump. A chunk that arrives after
the old one ran out takes over at once; in between the caller holds the last command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Chunk:
    """A predicted action chunk and where it came from."""

    actions: np.ndarray  # (chunk_size, action_dim)
    request_tick: int  # control tick of the observation: actions[i] is meant for tick request_tick + i
    instruction: str
    seq: int = 0
    oldest_stamp: float = 0.0  # oldest input stamp used (seconds)
    inference_time: float = 0.0  # seconds
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])


@dataclass(frozen=True)
class Takeover:
    """Reported when a chunk starts being executed."""

    chunk: Chunk
    tick: int
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
        self.current: Chunk | None = None
        self._start_tick = 0  # tick the current chunk took over
        self._end_tick = 0  # first tick after the current chunk's executed window
        self._previous: Chunk | None = None  # the chunk replaced last, for the seam blend
        self._pending: Chunk | None = None  # accepted, waiting for _end_tick
        self.discarded = 0  # chunks that arrived too late to have any action left

    # ---------------------------------------------------------------------------------------------
    def request_due(self, tick: int, latency_s: float, period_s: float) -> bool:
        """Whether an inference started now is needed to be ready when the current chunk runs out."""
        if self._pending is not None:
            return False
        if self.current is None:
            return True
        latency_ticks = math.ceil(max(latency_s, 0.0) / period_s) + self.margin_ticks
        return tick >= self._end_tick - latency_ticks

    def queue_depth(self, tick: int) -> int:
        """Actions still to be executed from tick ``tick`` on (current window plus a waiting chunk)."""
        depth = 0
        if self.current is not None:
            depth = max(0, min(self._end_tick, self.current.request_tick + len(self.current)) - tick)
        if self._pending is not None:
            depth += min(self.n_action_steps, len(self._pending) - max(0, self._end_tick - self._pending.request_tick))
        return max(depth, 0)

    def planned_start_index(self, chunk: Chunk) -> int:
        """The index ``chunk`` starts executing at: now if it is current, else when it takes over."""
        start = self._start_tick if chunk is self.current else self._end_tick
        return max(0, start - chunk.request_tick)

    def exhausted(self, tick: int) -> bool:
        return self.queue_depth(tick) == 0

    def clear(self) -> None:
        """Drop every queued action (disable, hold on stale inputs)."""
        self.current = self._previous = self._pending = None

    # ---------------------------------------------------------------------------------------------
    def accept(self, chunk: Chunk, tick: int, immediate: bool = False) -> Takeover | None:
        """Take a new chunk at tick ``tick``: now if nothing is executing (or ``immediate``, e.g. on a
        task switch), else when the current window ends. Returns the takeover if it happened now; a
        chunk whose actions all lie in the past is discarded (counted) and None is returned."""
        if tick - chunk.request_tick >= len(chunk):
            self.discarded += 1
            return None
        if self.current is None or immediate or tick >= self._end_tick:
            return self._take_over(chunk, tick)
        self._pending = chunk
        return None

    def _take_over(self, chunk: Chunk, tick: int) -> Takeover | None:
        start_index = tick - chunk.request_tick
        if start_index >= len(chunk):
            self.discarded += 1
            self._pending = None
            return None
        self._previous = self.current
        self.current = chunk
        self._pending = None
        self._start_tick = tick
        self._end_tick = tick + self.n_action_steps
        return Takeover(chunk, tick, max(start_index, 0))

    def action(self, tick: int) -> tuple[np.ndarray | None, Takeover | None]:
        """The action for ``tick`` (None: nothing left, hold) and a takeover if one happened now."""
        takeover = None
        if self._pending is not None and tick >= self._end_tick:
            takeover = self._take_over(self._pending, tick)
        chunk = self.current
        if chunk is None or not self._start_tick <= tick < self._end_tick:
            return None, takeover
        index = tick - chunk.request_tick
        if not 0 <= index < len(chunk):
            return None, takeover
        action = chunk.actions[index].astype(np.float64)
        seam = tick - self._start_tick
        if self._previous is not None and seam < self.blend_steps:
            old_index = tick - self._previous.request_tick
            if 0 <= old_index < len(self._previous):
                weight = (seam + 1) / (self.blend_steps + 1)
                action = weight * action + (1 - weight) * self._previous.actions[old_index]
        return action, takeover
