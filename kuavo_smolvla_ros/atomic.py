"""Writes that are either complete or absent: files and whole folders, swapped in by renaming.

Every file write goes through :func:`atomic_path`: the content is written to a temporary file beside the
target (``.<name>.<pid>.<n>.tmp``: hidden, unique per process and per call, on the same file system so the
rename is atomic), which is renamed over the target only once it is complete and removed otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_COUNTER = itertools.count()


def blocking_file(path: str | Path) -> Path | None:
    """The file (not folder) at ``path`` or at one of its parents, which would stop a folder being made there;
    None when the path is or can become a folder."""
    for candidate in (Path(path).absolute(), *Path(path).absolute().parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def folder_problem(path: str | Path) -> str | None:
    """Why a folder cannot be made at ``path`` (a file at it or at a parent; the nearest existing parent not
    writable), in words for an error line; None when it is a folder or can become one."""
    blocked = blocking_file(path)
    if blocked is not None:
        return f"{blocked} is a file, not a folder"
    existing = next(p for p in (Path(path).absolute(), *Path(path).absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def temporary_name(path: Path) -> Path:
    """A path beside ``path`` that no other writer uses: ``.<name>.<pid>.<n>.tmp`` (``n`` counts this
    process's calls, so threads and nested writes of the same target do not collide)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_COUNTER)}.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on leaving the block without an exception it
    is renamed over ``path`` (``os.replace``: readers see the old file or the new one, never a part), on an
    exception (``KeyboardInterrupt`` included) it is deleted and the exception propagates. ``path``'s
    folder must exist. The temporary file is not created: the writer creates it (so it gets the usual
    permissions, as a direct write would).

    Raises whatever the write raises, and ``OSError`` if the rename fails (then ``path`` is unchanged)."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any, default: Callable[[Any], Any] = float) -> None:
    """Write ``data`` as indented JSON plus a newline to ``path`` atomically (:func:`atomic_path`); values
    JSON does not know go through ``default`` (``float``, e.g. for numpy scalars, unless told otherwise).

    Raises ``TypeError``/``ValueError`` for data ``default`` cannot convert (nothing is written then)."""
    text = json.dumps(data, indent=2, default=default) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_png(figure: Any, path: str | Path, dpi: int = 100) -> None:
    """Save the matplotlib ``figure`` to ``path`` as a PNG of ``dpi`` dots per inch, atomically
    (:func:`atomic_path`: an interrupted save leaves the previous file or none, never a truncated image)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")


def replace_dir(ready: Path, target: Path, old: Path | None = None) -> None:
    """Put the finished folder ``ready`` at ``target``; a previous ``target`` moves aside to ``old`` (default
    ``.<name>.old`` beside it) for the moment between the two renames, then is deleted."""
    old = old or target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(ready, target)
    shutil.rmtree(old, ignore_errors=True)
