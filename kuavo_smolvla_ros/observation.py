"""The policy's input, shared by the controller (which assembles it) and the runtime (which predicts from it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class Observation:
    """One policy input: camera name -> HxWx3 uint8 RGB image, 16-dim state (layout units: rad, gripper
    0..1), instruction text."""

    images: Mapping[str, np.ndarray]
    state: np.ndarray
    instruction: str
