"""The last filter before the robot: joint limits, a maximum change per second, no non-finite values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kuavo_smolvla_ros import robot


@dataclass(frozen=True)
class FilterResult:
    """A safe command and what the filter had to do to get it."""

    command: np.ndarray
    clamped: bool = False
    non_finite: bool = False
    #: which limits changed the command: "" (none), "joint limits", "speed limit", "ramp-in" (the speed limit
    #: while ramping in), or two of them joined by " + "
    limit: str = ""
    #: the joint the limits moved most (index into the 16-dim layout; -1: none)
    joint: int = -1


class SafetyFilter:
    """Makes every outgoing command finite, inside ``[lower, upper]`` and within ``max_step`` of the
    previous one. After :meth:`reset` (start, re-enable) the allowed step ramps up from zero over
    ``ramp_ticks`` ticks, so the robot eases from its measured pose into the policy's commands.

    With ``period_s`` (the nominal control period, s) and command times given to :meth:`apply`, ``max_step``
    is allowed per ``period_s`` of elapsed command time, so the speed limit ``max_step / period_s`` holds per
    second whatever the timer does: a command only half a period after the last may move half a step; a
    late one no more than one step (never a catch-up jump); one at the same or an earlier time (a clock
    jump) holds."""

    def __init__(self, lower: np.ndarray = robot.LOWER_LIMITS, upper: np.ndarray = robot.UPPER_LIMITS,
                 max_step: np.ndarray | float = robot.DEFAULT_MAX_VELOCITY / robot.CONTROL_RATE_HZ,
                 ramp_ticks: int = 10, period_s: float | None = None):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.max_step = np.broadcast_to(np.asarray(max_step, dtype=np.float64), self.lower.shape).copy()
        if not (np.all(self.lower < self.upper) and np.all(self.max_step > 0)):
            raise ValueError("safety limits need lower < upper and max_step > 0 for every joint")
        self.ramp_ticks = max(0, int(ramp_ticks))
        if period_s is not None and not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self._last: np.ndarray | None = None
        self._last_time: float | None = None
        self._ticks_since_reset = 0

    @property
    def last(self) -> np.ndarray | None:
        """The last command let through (the hold command), or None before :meth:`reset`."""
        return None if self._last is None else self._last.copy()

    def reset(self, measured: np.ndarray, now: float | None = None) -> np.ndarray:
        """Start from the measured joint state (clipped into the limits) at time ``now`` (s); restarts the
        ramp-in. The caller passes a state it trusts (validated and plausible)."""
        measured = np.asarray(measured, dtype=np.float64).reshape(-1)
        if measured.shape != self.lower.shape or not np.all(np.isfinite(measured)):
            raise ValueError("the measured state used to reset the safety filter must be finite and 16-dim")
        self._last = np.clip(measured, self.lower, self.upper)
        self._last_time = now
        self._ticks_since_reset = 0
        return self._last.copy()

    def _elapsed_fraction(self, now: float | None) -> float:
        """The share of a full step that ``now`` allows: elapsed time since the last command over the period."""
        if now is None or self.period_s is None or self._last_time is None:
            return 1.0
        return float(np.clip((now - self._last_time) / self.period_s, 0.0, 1.0))

    def _step_limit(self) -> np.ndarray:
        if self.ramp_ticks and self._ticks_since_reset < self.ramp_ticks:
            return self.max_step * (self._ticks_since_reset + 1) / (self.ramp_ticks + 1)
        return self.max_step

    def apply(self, proposed: np.ndarray | None, now: float | None = None) -> FilterResult:
        """The safe command for ``proposed`` (None, or any non-finite value: hold the last command) to be
        stamped ``now`` (s; None: one nominal period after the last)."""
        if self._last is None:
            raise RuntimeError("SafetyFilter.apply before reset(measured_state)")
        step = self._step_limit() * self._elapsed_fraction(now)
        if now is not None:  # an earlier time (a clock jump back) held this command and re-bases the clock
            self._last_time = now
        self._ticks_since_reset += 1
        if proposed is None:
            return FilterResult(self._last.copy())
        proposed = np.asarray(proposed, dtype=np.float64).reshape(-1)
        if proposed.shape != self.lower.shape or not np.all(np.isfinite(proposed)):
            return FilterResult(self._last.copy(), non_finite=True)
        inside = np.clip(proposed, self.lower, self.upper)
        limited = np.clip(inside, self._last - step, self._last + step)
        moved = np.abs(limited - proposed)
        clamped = bool(np.any(moved > 1e-9))
        self._last = limited
        if not clamped:
            return FilterResult(limited.copy())
        ramping = self.ramp_ticks and self._ticks_since_reset <= self.ramp_ticks
        limits = [name for name, hit in (("joint limits", np.any(np.abs(inside - proposed) > 1e-9)),
                                         ("ramp-in" if ramping else "speed limit",
                                          np.any(np.abs(limited - inside) > 1e-9))) if hit]
        return FilterResult(limited.copy(), clamped=True, limit=" + ".join(limits), joint=int(np.argmax(moved)))
