"""Bounded waits on files other processes write, and killing a process at a chosen moment."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def kill_when(process: subprocess.Popen, predicate: Callable[[], object], timeout: float, what: str) -> None:
    """SIGKILL ``process`` as soon as ``predicate`` holds; fail if it does not within ``timeout``."""
    try:
        assert wait_until(predicate, timeout), f"{what} did not happen within {timeout} s"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
