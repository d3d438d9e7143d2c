"""Bounded waits on files other processes write, and killing a process at a chosen moment."""

from __future__ import annotations

import os
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


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that must see Ctrl-C as in a terminal: SIGINT at its default. A background job
    of a non-interactive shell (CI) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_when(command: list[str], predicate: Callable[[subprocess.Popen], object], timeout: float,
                what: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``command`` as a terminal would and press Ctrl-C as soon as ``predicate(process)`` holds: SIGINT to
    its whole process group (a session of its own), its workers included; (exit status, stdout, stderr).

    The process starts with SIGINT at its default, as in a terminal: a background job of a non-interactive
    shell (CI) inherits it ignored, and Python then never raises KeyboardInterrupt. Fails if ``what`` does not
    happen within ``timeout`` s or the process ends first."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=env or os.environ | {"OMP_NUM_THREADS": "1"},
                               preexec_fn=sigint_as_in_a_terminal)
    try:
        assert wait_until(lambda: predicate(process) or process.poll() is not None, timeout), \
            f"{what} did not happen within {timeout} s"
        assert process.poll() is None, f"the process ended before the interrupt: {process.communicate()}"
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    return process.returncode, out, err
