"""Ctrl-C is never lost in a library's bare ``except:``.

Some libraries import their optional parts inside ``try: ... except: ...`` (ruamel.yaml, which rosbags imports,
looks for its C extension ``_ruamel_yaml`` that way, and the search over ``sys.path`` takes a noticeable moment;
OpenCV's loader has one too). A ``KeyboardInterrupt`` raised in that moment is swallowed and the command goes on
as if Ctrl-C had never been pressed: CI saw ``kuavo-sim-record`` interrupted while it first opened a bag write
all its bags and exit 0.

:func:`guard` counts SIGINTs (still raising ``KeyboardInterrupt`` at once, as Python's own handler does) and
wraps ``builtins.__import__``: an import statement of the main thread that ends normally although a SIGINT
arrived while it ran raises ``KeyboardInterrupt`` again at its end, so the interrupt reaches the command's own
handler a moment later instead of never. Other threads never see it (signals go to the main thread).
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
    """How many SIGINTs arrived since :func:`guard` was installed (0 before)."""
    return _received


def _on_sigint(signum: int, frame: Any) -> None:
    global _received
    _received += 1
    raise KeyboardInterrupt


def _guarded_import(*args: Any, **kwargs: Any) -> Any:
    if threading.get_ident() != _main_thread_id:
        return _import(*args, **kwargs)
    before = _received
    module = _import(*args, **kwargs)
    if _received != before:  # a SIGINT came during the import and something in it swallowed the interrupt
        raise KeyboardInterrupt
    return module


def guard() -> bool:
    """Install the SIGINT counter and the import guard for this process; True when installed (now or before).

    Installs nothing (False) off the main thread, or when SIGINT is not at Python's default handler: ignored
    (a background job of a non-interactive shell) or handled by someone else, whose choice stands.
    Idempotent."""
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
