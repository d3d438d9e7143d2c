"""Writes that are either complete or absent: JSON files and whole folders, swapped in by renaming."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def replace_dir(ready: Path, target: Path, old: Path | None = None) -> None:
    """Put the finished folder ``ready`` at ``target``; a previous ``target`` moves aside to ``old`` (default
    ``.<name>.old`` beside it) for the moment between the two renames, then is deleted."""
    old = old or target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(ready, target)
    shutil.rmtree(old, ignore_errors=True)
