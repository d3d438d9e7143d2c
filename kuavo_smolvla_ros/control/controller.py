"""The policy node's brain without ROS: inputs in, one safe command per control tick out.

The ROS layer feeds decoded-on-demand camera frames, joint states and instructions into
:class:`PolicyController` from its subscriptions and calls :meth:`PolicyController.tick` from its
control timer. ``tick`` never waits for the model: inference runs on an :class:`InferenceWorker`
thread, requested early enough (from the measured latency) that the next chunk is ready when the
current one runs out.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.safety import SafetyFilter
from kuavo_smolvla_ros.control.scheduler import Chunk, ChunkScheduler, Takeover
from kuavo_smolvla_ros.control.stats import LatencyWindow
from kuavo_smolvla_ros.control.worker import InferenceRequest, InferenceResult, InferenceWorker
from kuavo_smolvla_ros.observation import Observation
from kuavo_smolvla_ros.sync import StampSource, StreamBuffer, align
from kuavo_smolvla_ros.tasks import Task, TaskCatalog

STATE_STREAM = "joint_state"
#: Characters Unicode files as letters or symbols that render blank (Hangul fillers, the blank Braille pattern).
BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
MAX_INSTRUCTION_CHARS = 2000
CHUNK_TRANSITIONS = ("blend", "rtc")


class ControlState(IntEnum):
    """Same values as the ``PolicyStatus.STATE_*`` constants."""

    WAITING = 0
    RUNNING = 1
    STALE = 2
    HOLDING = 3
    ERROR = 4
    DISABLED = 5


class InputRejected(Exception):
    """An input could not be used (e.g. a camera frame that fails to decode); not a model error."""


@dataclass
class ControllerConfig:
    rate_hz: float = robot.CONTROL_RATE_HZ
    n_action_steps: int = 8
    blend_steps: int = 2
    #: Seconds after which a stream's latest sample is stale (every stream without an entry in stream_max_age_s).
    max_input_age_s: float = 0.5
    #: Per-stream max ages (camera name or :data:`STATE_STREAM` -> seconds; None: no limit), e.g. from the
    #: robot profile.
    stream_max_age_s: Mapping[str, float | None] | None = None
    #: On stale inputs: "finish" the queued actions then hold, or "hold" at once.
    stale_behaviour: str = "finish"
    #: Seconds to wait after a model error before trying again.
    error_retry_s: float = 1.0
    #: Tolerated amount by which input stamps may lie in the future of the local clock when sampling them.
    clock_skew_s: float = 0.05
    #: A sample stamped further than this ahead of the local clock is refused (it would sort after every real
    #: sample and evict them).
    future_tolerance_s: float = 0.05
    margin_ticks: int = 1
    #: Inference latency assumed before the first measurement (e.g. from the warm-up).
    initial_latency_s: float = 0.0
    #: Which time inputs are filed under ("receive" or "header"), as in the bag converter.
    stamp_source: str = StampSource.RECEIVE
    #: How chunks join: "blend" (the first ``blend_steps`` actions of a new chunk blended with the old one's
    #: continuation) or "rtc" (lerobot's real-time chunking: the new chunk is generated conditioned on the
    #: old one's actions that still execute while it is computed; no blend).
    chunk_transition: str = "blend"

    def __post_init__(self):
        if self.chunk_transition not in CHUNK_TRANSITIONS:
            raise ValueError(f"chunk_transition must be one of {CHUNK_TRANSITIONS}, got {self.chunk_transition!r}")
        if not 0 < self.rate_hz <= 1000:
            raise ValueError(f"rate_hz must be in (0, 1000], got {self.rate_hz}")
        if self.stale_behaviour not in ("finish", "hold"):
            raise ValueError(f"stale_behaviour must be 'finish' or 'hold', got {self.stale_behaviour!r}")
        ages = [self.max_input_age_s, *(self.stream_max_age_s or {}).values()]
        if any(age is not None and age <= 0 for age in ages):
            raise ValueError(f"max input ages must be > 0, got {ages}")

    def max_age(self, stream: str) -> float | None:
        """The max age of ``stream`` (s; None: no limit)."""
        return (self.stream_max_age_s or {}).get(stream, self.max_input_age_s)

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz


@dataclass
class Counters:
    inferences: int = 0
    inference_errors: int = 0
    actions_published: int = 0
    actions_held: int = 0
    actions_clamped: int = 0
    #: of those, clamped by the joint limits (the policy asked for a pose outside them)
    clamped_joint_limits: int = 0
    #: of those, clamped by the speed limit (including the ramp-in)
    clamped_speed: int = 0
    non_finite_replaced: int = 0
    inputs_rejected: int = 0
    chunks_discarded: int = 0
    #: Backward jumps of the clock (e.g. a simulator reset rewinding /clock): the input buffers were cleared.
    clock_jumps: int = 0


@dataclass
class TickOutput:
    """What one control tick produced."""

    command: np.ndarray | None  # the safe 16-dim command to publish; None: publish nothing
    state: ControlState
    held: bool = False
    new_chunk: Chunk | None = None  # a chunk that arrived this tick (publish it)
    new_chunk_start: int = 0  # index of new_chunk's first executed action
    takeover: Takeover | None = None  # a chunk whose first action is this tick's command
    error: InferenceResult | None = None  # a model failure reported this tick (log it)
    state_changed: bool = False
    proposed: np.ndarray | None = None  # the scheduled (blended) action before the safety filter; None: hold


@dataclass
class Snapshot:
    """A consistent copy of the controller's status, for status and diagnostics messages."""

    state: ControlState
    message: str
    instruction: str
    task: Task | None
    stale_streams: list[str]
    enabled: bool
    queue_depth: int
    counters: Counters
    inference: Any
    sensor_to_action: Any
    jitter: Any
    node_overhead: Any
    latency_estimate_s: float
    #: stream -> (messages rejected, the first reason)
    rejections: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: the latest clamped command: which limit, on which joint, asked vs sent ("" if none yet)
    last_clamp: str = ""


def decode_image(value: Any) -> np.ndarray:
    """A camera frame as stored: an HxWx3 uint8 array, or a zero-argument loader returning one."""
    return value() if callable(value) else value


class PolicyController:
    """Input buffers, chunk scheduling, safety and bookkeeping for one policy."""

    def __init__(self, config: ControllerConfig, cameras: list[str],
                 predict: Callable[[Observation], np.ndarray], safety: SafetyFilter, catalog: TaskCatalog,
                 instruction: str = "", worker: Callable[..., InferenceWorker] = InferenceWorker):
        """``worker(predictor, on_done=...)`` makes the inference worker: a thread (the node), or
        :class:`~kuavo_smolvla_ros.control.worker.SteppedWorker` for simulated time (closed-loop evaluation)."""
        self.config = config
        self.cameras = list(cameras)
        self.catalog = catalog
        self.safety = safety
        self._predict = predict
        self._lock = threading.RLock()
        self.buffers = {name: StreamBuffer(name, config.max_age(name), config.stamp_source, capacity=4)
                        for name in [*self.cameras, STATE_STREAM]}
        blend = 0 if config.chunk_transition == "rtc" else config.blend_steps
        self.scheduler = ChunkScheduler(config.n_action_steps, blend, config.margin_ticks)
        self.worker = worker(self._run_inference, on_done=self._on_inference_done)
        self.counters = Counters()
        #: Rejected input messages per stream, and the first reason for each.
        self.rejections: dict[str, int] = {}
        self.first_rejection: dict[str, str] = {}
        self.inference_latency = LatencyWindow()
        self.sensor_to_action = LatencyWindow()
        self.jitter = LatencyWindow(1000)
        self.node_overhead = LatencyWindow()
        #: the latest clamped command: which limit, on which joint, asked vs sent
        self.last_clamp = ""
        self._seq = 0
        self._generation = 0
        self._instruction = ""
        self._task: Task | None = None
        self._switch_pending = False
        self._enabled = True
        self._needs_reset = True
        self._state = ControlState.WAITING
        self._message = "waiting for inputs"
        self._stale: list[str] = []
        self._error_time: float | None = None
        self._ever_complete = False
        self._now = 0.0  # time of the last tick or instruction
        self._late_result: InferenceResult | None = None
        if instruction:
            self.set_instruction(instruction)

    # ------------------------------------------------------------------------------------- inputs
    def _check_stamp(self, stream: str, header_stamp: float | None, now: float) -> None:
        """Refuse a sample whose stamp (the one it would be filed under) lies beyond ``now + future_tolerance_s``:
        it would sort after every real sample and evict them from the buffer."""
        stamp = self.buffers[stream].stamp_of(header_stamp, now)
        if stamp > now + self.config.future_tolerance_s:
            raise ValueError(f"stamped {stamp - now:.3f} s ahead of this node's clock (more than "
                             f"{self.config.future_tolerance_s} s)")

    def add_image(self, camera: str, image: Any, header_stamp: float | None, now: float) -> None:
        """File a camera frame (an array or a loader that decodes it when an inference needs it); raises
        ``ValueError`` (nothing filed) for a frame stamped in the future."""
        with self._lock:
            self._check_stamp(camera, header_stamp, now)
            self.buffers[camera].add(image, header_stamp, now)

    def add_state(self, state: np.ndarray, header_stamp: float | None, now: float) -> None:
        """File a measured 16-dim joint state; raises ``ValueError`` (nothing filed) if malformed, non-finite
        or implausible (beyond the joint limits by more than ``robot.PLAUSIBILITY_MARGIN``): the safety
        filter's ramp-in starts from the latest filed state, so none that a sensor could not report is kept."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.shape != (robot.STATE_DIM,):
            raise ValueError(f"joint state must have {robot.STATE_DIM} values, got {state.shape[0]}")
        if not np.all(np.isfinite(state)):
            raise ValueError("joint state contains non-finite values")
        robot.check_plausible(state, "joint state")
        with self._lock:
            self._check_stamp(STATE_STREAM, header_stamp, now)
            self.buffers[STATE_STREAM].add(state, header_stamp, now)

    def reject_input(self, stream: str = "", reason: str = "") -> None:
        """Count an input message the ROS layer could not use, per stream with its first reason."""
        with self._lock:
            self.counters.inputs_rejected += 1
            if stream:
                self.rejections[stream] = self.rejections.get(stream, 0) + 1
                self.first_rejection.setdefault(stream, reason)

    def clock_jumped(self, now: float | None = None) -> None:
        """The clock went back (a simulator reset, a replayed bag): clear the input buffers, whose samples now
        lie in the future, and the error back-off, so the node runs again as soon as fresh inputs arrive."""
        with self._lock:
            for buffer in self.buffers.values():
                buffer.clear()
            self._error_time = None
            self.counters.clock_jumps += 1
            if now is not None:
                self._now = now

    def set_instruction(self, text: str, now: float | None = None) -> tuple[str, Task | None, bool]:
        """Switch to ``text`` (an alias from tasks.yaml, a full instruction or free text).

        With ``now`` given, the new instruction's inference starts at once (if the inputs allow) rather
        than at the next tick. Returns (instruction, task, changed). Raises ``ValueError`` for empty or
        oversized text.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty instruction")
        if not any(unicodedata.category(c)[0] in "LNPS" and c not in BLANK_CHARACTERS for c in text):
            raise ValueError("instruction has no visible character")
        if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text):
            raise ValueError("instruction contains control characters")
        if len(text) > MAX_INSTRUCTION_CHARS:
            raise ValueError(f"instruction of {len(text)} characters exceeds {MAX_INSTRUCTION_CHARS}")
        instruction, task = self.catalog.resolve_instruction(text)
        with self._lock:
            if instruction == self._instruction:
                return instruction, task, False
            had_one = bool(self._instruction)
            self._instruction, self._task = instruction, task
            self._generation += 1  # an inference in flight for the old text is discarded
            self._switch_pending = had_one
            self._error_time = None
            self._now = now if now is not None else self._now
            if now is not None and self._enabled:
                self._maybe_request(now)
            return instruction, task, True

    def set_enabled(self, enabled: bool) -> None:
        """Disabled: no commands and no inferences; enabling again ramps in from the measured state."""
        with self._lock:
            if enabled == self._enabled:
                return
            self._enabled = enabled
            self._generation += 1
            self.scheduler.clear()
            self._needs_reset = True
            self._switch_pending = False

    @property
    def instruction(self) -> str:
        return self._instruction

    def record_period(self, period_s: float) -> None:
        """Record one measured control period (the timer's jitter is |period - 1/rate|)."""
        with self._lock:
            self.jitter.add(abs(period_s - self.config.period_s))

    def latency_estimate(self) -> float:
        """Inference latency the scheduler plans with: the recent p95, or the initial estimate."""
        if len(self.inference_latency) == 0:
            return self.config.initial_latency_s
        return self.inference_latency.percentile(95)

    # --------------------------------------------------------------------------------------- tick
    def tick(self, now: float) -> TickOutput:
        """One control period at time ``now`` (seconds, the clock the input stamps use)."""
        with self._lock:
            if now < self._now - self.config.period_s:  # the clock went back by more than a period
                self.clock_jumped()
            self._now = now
            previous_state = self._state
            out = TickOutput(command=None, state=previous_state)
            self._collect(now, out)
            self._stale = self._stale_streams(now)
            if self._stale and self._ever_complete and self.config.stale_behaviour == "hold":
                self.scheduler.clear()
            self._command(now, out)
            if self._enabled:
                self._maybe_request(now)
            out.state = self._state = self._decide_state(out)
            out.state_changed = out.state != previous_state
            return out

    def _collect(self, now: float, out: TickOutput) -> None:
        result, self._late_result = self._late_result or self.worker.poll(), None
        if result is None or result.request.generation != self._generation:
            return
        if result.error:
            if result.error.startswith(InputRejected.__name__):
                return  # counted, and the frame dropped, where it failed to decode (_run_inference)
            self.counters.inference_errors += 1
            self._error_time = now
            self._message = f"model error: {result.error}"
            out.error = result
            return
        actions, prepare_s = result.actions
        actions = np.asarray(actions, dtype=np.float64)
        self.counters.inferences += 1
        self.inference_latency.add(result.seconds - prepare_s)
        self.node_overhead.add(result.request.transport_lag + prepare_s)
        if actions.ndim != 2 or actions.shape[1] != robot.ACTION_DIM:
            self.counters.inference_errors += 1
            self._error_time = now
            self._message = f"model returned actions of shape {actions.shape}, expected (N, {robot.ACTION_DIM})"
            return
        self._error_time = None
        self._seq += 1
        chunk = Chunk(actions, result.request.tick, result.request.instruction, self._seq,
                      result.request.oldest_stamp, result.seconds - prepare_s)
        out.new_chunk = chunk
        immediate, self._switch_pending = self._switch_pending, False
        out.takeover = self.scheduler.accept(chunk, immediate=immediate)
        out.new_chunk_start = self.scheduler.planned_start_index(chunk)
        self.counters.chunks_discarded = self.scheduler.discarded

    def _command(self, now: float, out: TickOutput) -> None:
        if not self._enabled:
            return
        proposed, takeover = self.scheduler.next_action()
        out.takeover = out.takeover or takeover
        if self._needs_reset:
            if proposed is None:
                return  # nothing commanded yet: publish nothing until the first chunk takes over
            # The ramp-in starts from the latest measured state: only validated, plausible states are filed.
            measured = self.buffers[STATE_STREAM].latest()
            self.safety.reset(measured.value if measured is not None else proposed, now)
            self._needs_reset = False
        result = self.safety.apply(proposed, now)
        out.command, out.proposed = result.command, proposed
        out.held = proposed is None
        self.counters.actions_published += 1
        self.counters.actions_held += int(out.held)
        self.counters.actions_clamped += int(result.clamped)
        if result.clamped:
            self.counters.clamped_joint_limits += int("joint limits" in result.limit)
            self.counters.clamped_speed += int("speed" in result.limit or "ramp" in result.limit)
            self.last_clamp = (f"{result.limit} on {robot.JOINT_NAMES[result.joint]}: asked "
                               f"{proposed[result.joint]:+.3f}, sent {result.command[result.joint]:+.3f}")
        self.counters.non_finite_replaced += int(result.non_finite)
        if out.takeover is not None and proposed is not None:  # the chunk's first action goes out now
            self.sensor_to_action.add(now - out.takeover.chunk.oldest_stamp)

    def _stale_streams(self, now: float) -> list[str]:
        skew = self.config.clock_skew_s
        return [name for name, buffer in self.buffers.items() if buffer.as_of(now, skew) is None]

    def _maybe_request(self, now: float) -> None:
        if not self._instruction or self.worker.busy:
            return
        if self._error_time is not None and now - self._error_time < self.config.error_retry_s:
            return
        if not (self._switch_pending or self.scheduler.request_due(self.latency_estimate(), self.config.period_s)):
            return
        if self._stale:
            return
        aligned = align(self.buffers.values(), now, self.config.clock_skew_s)
        if not aligned.complete:
            return
        self._ever_complete = True
        images = {name: aligned.samples[name].value for name in self.cameras}
        state = aligned.samples[STATE_STREAM].value
        prefix, delay = self.scheduler.leftover() if self.config.chunk_transition == "rtc" else (None, 0)
        inputs = (images, state.astype(np.float32), self._instruction, prefix, delay)
        lag = max(max(s.received - s.stamp, 0.0) for s in aligned.samples.values())
        self.worker.submit(InferenceRequest(inputs, self.scheduler.progress, self._instruction,
                                            aligned.oldest_stamp or now, self._generation, transport_lag=lag))

    def _on_inference_done(self) -> None:
        """Worker thread: a result for an abandoned instruction is dropped and the new instruction's
        inference starts at once, instead of waiting for the next tick."""
        with self._lock:
            if not (self._switch_pending and self._enabled):
                return
            result = self.worker.poll()
            if result is None:
                return
            if result.request.generation == self._generation:
                self._late_result = result  # current: handled by the next tick
                return
            self._maybe_request(self._now)

    def _run_inference(self, inputs: tuple[Mapping[str, Any], np.ndarray, str, np.ndarray | None, int]
                       ) -> tuple[np.ndarray, float]:
        """Runs on the worker thread: decode the frames, then predict (with real-time chunking's prefix and
        inference delay when there is a prefix). Returns (actions, decode seconds)."""
        images, state, instruction, prefix, delay = inputs
        start = time.perf_counter()
        decoded = {}
        for name, value in images.items():
            try:
                decoded[name] = decode_image(value)
            except Exception as err:
                # A frame whose data fails to decode (e.g. corrupt JPEG data under an intact header) is
                # counted on its camera's stream and dropped, so the stream goes stale instead of failing
                # every inference; the next good frame brings it back.
                with self._lock:
                    self.buffers[name].remove(value)
                    self.reject_input(name, str(err))
                raise InputRejected(f"camera {name}: {err}") from err
        prepare_s = time.perf_counter() - start
        observation = Observation(decoded, state, instruction)
        if prefix is not None:
            return self._predict(observation, prefix=prefix, inference_delay=delay), prepare_s
        return self._predict(observation), prepare_s

    def _decide_state(self, out: TickOutput) -> ControlState:
        if not self._enabled:
            self._message = "disabled by ~/enable"
            return ControlState.DISABLED
        if self._error_time is not None:
            return ControlState.ERROR
        if self._stale and (self._ever_complete or self.scheduler.current is not None):
            self._message = f"stale inputs: {', '.join(self._stale)}"
            return ControlState.STALE
        if not self._instruction:
            self._message = "waiting for an instruction on the instruction topic"
            return ControlState.WAITING
        if out.command is None:
            self._message = ("waiting for inputs: " + ", ".join(self._stale)) if self._stale else \
                "waiting for the first chunk"
            return ControlState.WAITING
        if out.held:
            self._message = "model behind the control rate: holding the last command"
            return ControlState.HOLDING
        self._message = "running"
        return ControlState.RUNNING

    # ------------------------------------------------------------------------------------ status
    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                state=self._state, message=self._message, instruction=self._instruction, task=self._task,
                stale_streams=list(self._stale), enabled=self._enabled,
                queue_depth=self.scheduler.queue_depth(), counters=Counters(**vars(self.counters)),
                inference=self.inference_latency.summary(), sensor_to_action=self.sensor_to_action.summary(),
                jitter=self.jitter.summary(), node_overhead=self.node_overhead.summary(),
                latency_estimate_s=self.latency_estimate(),
                rejections={s: (n, self.first_rejection.get(s, "")) for s, n in self.rejections.items()},
                last_clamp=self.last_clamp,
            )

    def close(self) -> None:
        self.worker.stop()
