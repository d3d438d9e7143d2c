"""Rolling latency statistics (p50/p95/p99/max) over a window of recent samples."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Statistics of a window, seconds."""

    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0


class LatencyWindow:
    """The last ``size`` samples of one latency, summarised on demand."""

    def __init__(self, size: int = 200):
        self._samples: deque[float] = deque(maxlen=size)
        self.total = 0

    def add(self, seconds: float) -> None:
        self._samples.append(float(seconds))
        self.total += 1

    def __len__(self) -> int:
        return len(self._samples)

    def percentile(self, q: float, default: float = 0.0) -> float:
        return float(np.percentile(self._samples, q)) if self._samples else default

    def summary(self) -> Summary:
        if not self._samples:
            return Summary()
        data = np.fromiter(self._samples, dtype=float)
        p50, p95, p99 = np.percentile(data, [50, 95, 99])
        return Summary(len(data), float(data.mean()), float(p50), float(p95), float(p99), float(data.max()))
