"""A Ctrl-C that a library's bare ``except:`` swallows still stops the command.

Some libraries import their optional parts inside ``try: ... except: ...`` (ruamel.yaml, which rosbags imports,
looks for its C extension ``_ruamel_yaml`` that way, and the search over ``sys.path`` takes a noticeable moment;
OpenCV's loader has one too). A ``KeyboardInterrupt`` raised in that moment is swallowed and the command goes on
as if Ctrl-C had never been pressed: CI saw ``kuavo-sim-record`` interrupted while it first opened a bag write
all its bags and exit 0.

:func:`guard` counts SIGINTs (still raising ``KeyboardInterrupt`` at once, as Python's own handler does) and
wraps ``builtins.__import__``: an import statement of the main thread that ends (normally or with another
error) although a SIGINT arrived while it ran raises ``KeyboardInterrupt`` at its end, so the interrupt
reaches the command's own handler when the import in progress ends. Other threads never see it (Python runs
signal handlers in the main thread). An interrupt swallowed outside any import is not raised again; the
commands look at :func:`received` at their milestones (after their imports, before their work, after
building a node, at the end: exit status 130).

Side effects of the wrapper: a failed import's traceback has one more frame (``_guarded_import``), and a
warning an imported module raises with ``stacklevel=2`` names this module instead of the importing line (so a
``DeprecationWarning`` from an import in ``__main__`` is no longer shown by default). The counter and the
wrapper last for the process: a test calling :func:`guard` in-process keeps them.
"""

from __future__ import annotations

import builtins
import signal
import threading
from collections.abc import Callable
from typing import Any

_received = 0
_main_thread_id: int | None = None
_import: Callable[..., Any] | None = None  # the wrapped builtins.__import__


def received() -> int:
    """How many SIGINTs arrived since :func:`guard` was installed (0 before, or when it installed nothing)."""
    return _received


def _on_sigint(signum: int, frame: Any) -> None:
    global _received
    _received += 1
    raise KeyboardInterrupt


def _guarded_import(*args: Any, **kwargs: Any) -> Any:
    if threading.get_ident() != _main_thread_id:
        return _import(*args, **kwargs)
    before = _received
    try:
        module = _import(*args, **kwargs)
    except Exception as err:  # (a KeyboardInterrupt passes as it is)
        if _received != before:  # swallowed inside, then the import failed: the interrupt comes first
            raise KeyboardInterrupt from err
        raise
    if _received != before:  # a SIGINT came during the import and something in it swallowed the interrupt
        raise KeyboardInterrupt
    return module


def guard() -> bool:
    """Install the SIGINT counter and the import guard for this process; True when installed (now or before).

    Installs nothing (False) off the main thread, or when SIGINT is not at Python's default handler: ignored
    (a background job of a non-interactive shell) or handled by someone else, whose choice stands. Call it
    before ``rclpy.init()``: rclpy's handler then passes the signal on to this one. Idempotent."""
    global _main_thread_id, _import
    if _import is not None:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    _main_thread_id = threading.get_ident()
    _import = builtins.__import__
    builtins.__import__ = _guarded_import
    signal.signal(signal.SIGINT, _on_sigint)
    return True


def raise_if_received() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived since :func:`guard` (a milestone of a one-shot command:
    an interrupt a library swallowed outside an import stops the command here)."""
    if _received:
        raise KeyboardInterrupt
