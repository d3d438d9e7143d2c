"""Camera dropout, the one augmentation the trainers share (pretraining and sequential fine-tuning): the
``camera_dropout`` setting and what it does to a training batch.

Why: a policy reads the camera that is easiest to read during training. In the primitives both wrist cameras
see the block from the first frame, so a base trained on every camera reads the block from them and never
learns the head camera (measured: its first chunk's slope against the block's position comes from the wrists
alone); in the factory tasks only the head camera sees the object at the start. Dropping the wrist cameras in
a share of the samples makes the head camera necessary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kuavo_smolvla_ros.features import image_key
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError

if TYPE_CHECKING:
    import numpy as np


def camera_dropout_setting(value: Any, cameras: Iterable[str] | None = None) -> dict[str, float]:
    """The ``camera_dropout`` setting (``{camera: probability}``; null or ``{}``: none) as a dict without the
    zeros. Raises :class:`TrainingConfigError` for a value that is not a mapping, a probability outside
    [0, 1) (1 would hide the camera always: leave it out of the dataset instead) and, when ``cameras`` is
    given, a camera not among them."""
    value = value or {}
    if not isinstance(value, Mapping):
        raise TrainingConfigError(f"camera_dropout: expected {{camera: probability}}, got {value!r}")
    known = None if cameras is None else list(cameras)
    for camera, chance in value.items():
        if known is not None and camera not in known:
            raise TrainingConfigError(f"camera_dropout: {camera!r} is not one of the cameras {known}")
        if isinstance(chance, bool) or not isinstance(chance, (int, float)) or not 0 <= chance < 1:
            raise TrainingConfigError(f"camera_dropout.{camera} must be a probability in [0, 1), got {chance!r}")
    return {str(camera): float(chance) for camera, chance in value.items() if chance}


def drop_cameras(batch: dict[str, Any], dropout: Mapping[str, float], rng: np.random.Generator) -> dict[str, Any]:
    """Black out each camera's image (all zeros, shape kept) in a random share of the batch's samples, each
    camera independently with its probability in ``dropout`` (camera name -> probability; the batch holds
    ``observation.images.<camera>`` of shape (B, C, H, W)); returns ``batch`` (its image tensors changed in
    place: pass a batch gathered for this step, not a view of a cached dataset)."""
    import torch

    for camera, chance in dropout.items():
        images = batch[image_key(camera)]
        dropped = torch.as_tensor(rng.random(len(images)) < chance)
        images[dropped] = 0
    return batch
