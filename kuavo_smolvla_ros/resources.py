"""Locate the package's shared files (config/) wherever the package was installed from.

Search order: ``$KUAVO_SMOLVLA_SHARE``; the ament index (a colcon install or a ROS underlay,
``<prefix>/share/kuavo_smolvla_ros``); the Python prefix (``pip install`` places the same
``share/kuavo_smolvla_ros`` folder there); the source tree this module lives in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_NAME = "kuavo_smolvla_ros"
SHARE_ENV = "KUAVO_SMOLVLA_SHARE"


def _candidates() -> list[Path]:
    found: list[Path] = []
    if os.environ.get(SHARE_ENV):
        found.append(Path(os.environ[SHARE_ENV]))
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            found.append(Path(prefix) / "share" / PACKAGE_NAME)
    found.append(Path(sys.prefix) / "share" / PACKAGE_NAME)
    found.append(Path(__file__).resolve().parent.parent)
    return found


def share_file(relative: str) -> Path:
    """Absolute path of ``relative`` (e.g. ``config/tasks.yaml``) in the first share folder holding it."""
    tried = []
    for root in _candidates():
        path = root / relative
        if path.is_file():
            return path
        tried.append(str(root))
    raise FileNotFoundError(f"{relative} not found in any of: {', '.join(tried)} (set ${SHARE_ENV})")
