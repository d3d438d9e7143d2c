"""A background thread that runs one inference at a time, so the control loop never waits for the model."""

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
