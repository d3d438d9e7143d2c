"""Inference workers: a background thread that runs one inference at a time, so the control loop never waits
for the model (:class:`InferenceWorker`), and its stand-in for simulated time (:class:`SteppedWorker`)."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class InferenceRequest:
    """What to compute: the inputs for the predictor plus bookkeeping returned with the result."""

    inputs: Any
    tick: int
    instruction: str
    oldest_stamp: float
    generation: int  # task-switch generation: results of an older generation are discarded
    transport_lag: float = 0.0  # largest (receive time - stamp) among the inputs used, seconds


@dataclass
class InferenceResult:
    request: InferenceRequest
    actions: Any = None  # the predictor's output, None on error
    error: str = ""  # one-line error, empty on success
    detail: str = ""  # traceback, for logs
    seconds: float = 0.0


class InferenceWorker:
    """Runs ``predictor(request.inputs)`` on its own thread; :meth:`submit` never blocks.

    One request is computed at a time; results are collected with :meth:`poll`.
    """

    def __init__(self, predictor: Callable[[Any], Any], name: str = "inference",
                 on_done: Callable[[], None] | None = None):
        self._predictor = predictor
        self._on_done = on_done
        self._lock = threading.Condition()
        self._request: InferenceRequest | None = None
        self._result: InferenceResult | None = None
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True from :meth:`submit` until the result has been collected by :meth:`poll`."""
        with self._lock:
            return self._busy

    def submit(self, request: InferenceRequest) -> bool:
        """Start computing ``request``; False (and nothing done) if one is already in flight."""
        with self._lock:
            if self._busy or self._stopping:
                return False
            self._busy = True
            self._request = request
            self._lock.notify_all()
            return True

    def poll(self) -> InferenceResult | None:
        """The finished result, once (None while computing or idle)."""
        with self._lock:
            result, self._result = self._result, None
            if result is not None:
                self._busy = False
            return result

    def wait(self, timeout: float) -> bool:
        """Block until a result is ready to poll (for tests and shutdown); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._result is not None or not self._busy, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._request is not None or self._stopping)
                if self._stopping:
                    return
                request, self._request = self._request, None
            start = time.perf_counter()
            try:
                result = InferenceResult(request, actions=self._predictor(request.inputs))
            except Exception as err:  # any model failure is reported, never kills the thread
                result = InferenceResult(request, error=f"{type(err).__name__}: {err}",
                                         detail=traceback.format_exc())
            result.seconds = time.perf_counter() - start
            with self._lock:
                self._result = result
                self._lock.notify_all()
            if self._on_done is not None:
                self._on_done()


class SteppedWorker:
    """:class:`InferenceWorker`'s interface in simulated time, for closed-loop evaluation that runs the node's
    controller without waiting: :meth:`submit` runs the predictor at once on the caller's thread, and the
    result is handed out by the ``latency_ticks``-th :meth:`poll` after it (the controller polls once per
    control tick), reporting ``seconds = (latency_ticks - 0.5) * period_s``: a model that needs between
    ``latency_ticks - 1`` and ``latency_ticks`` control periods, as the node would measure it.
    ``on_done`` is accepted for the interface and not called (results are collected by the next tick)."""

    def __init__(self, predictor: Callable[[Any], Any], name: str = "inference",
                 on_done: Callable[[], None] | None = None, *, latency_ticks: int = 1, period_s: float = 0.1):
        if latency_ticks < 1:
            raise ValueError(f"latency_ticks must be >= 1, got {latency_ticks}")
        self._predictor = predictor
        self.latency_ticks = int(latency_ticks)
        self.seconds = (self.latency_ticks - 0.5) * period_s
        self._result: InferenceResult | None = None
        self._polls_left = 0

    @property
    def busy(self) -> bool:
        return self._result is not None

    def submit(self, request: InferenceRequest) -> bool:
        if self._result is not None:
            return False
        try:
            self._result = InferenceResult(request, actions=self._predictor(request.inputs))
        except Exception as err:  # reported like the thread reports it
            self._result = InferenceResult(request, error=f"{type(err).__name__}: {err}",
                                           detail=traceback.format_exc())
        self._result.seconds = self.seconds
        self._polls_left = self.latency_ticks
        return True

    def poll(self) -> InferenceResult | None:
        if self._result is None:
            return None
        self._polls_left -= 1
        if self._polls_left > 0:
            return None
        result, self._result = self._result, None
        return result

    def wait(self, timeout: float) -> bool:
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._result = None
