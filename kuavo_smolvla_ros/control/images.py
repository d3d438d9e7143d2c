"""Camera frames to the image size the checkpoint was trained at, the way SmolVLA itself resizes.

A live camera may deliver frames of another size than the dataset the checkpoint was trained on (a camera
driver set to 1280x720, a 320x240 test rig). The node neither rejects such frames nor stretches them: it
resizes each to the trained (height, width) with lerobot's ``resize_with_pad`` (SmolVLA's own
preprocessing: keep the aspect ratio, bilinear, pad with black on the left and top), lazily, on the
inference thread. Frames of the trained size pass through untouched (bit parity with the converter). A
frame whose aspect ratio differs from the trained one is padded, which the model never saw in training:
:class:`FrameFitter` reports that once per camera so that it reaches the log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from kuavo_smolvla_ros.images import Frame

#: Aspect ratios closer than this (relative) count as equal (640x480 vs 320x240, 480x640 vs 481x640).
ASPECT_TOLERANCE = 0.01


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (HxWx3 uint8 RGB) resized to ``height`` x ``width`` by lerobot's SmolVLA ``resize_with_pad``
    (aspect ratio kept, bilinear, black padding on the left and top); returned as uint8 RGB."""
    if image.shape[:2] == (height, width):
        return image
    import torch
    from lerobot.policies.common.vla_utils import resize_with_pad as lerobot_resize_with_pad

    tensor = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)  # a copy: writable
    resized = lerobot_resize_with_pad(tensor.div_(255.0), height, width, pad_value=0.0)
    out = resized[0].permute(1, 2, 0).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(out.numpy())


def same_aspect(size: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether two (height, width) sizes have the same aspect ratio (within :data:`ASPECT_TOLERANCE`)."""
    return abs(size[1] / size[0] - other[1] / other[0]) <= ASPECT_TOLERANCE * other[1] / other[0]


class FrameFitter:
    """Per camera, frames of any size to the trained size (``trained``: camera -> (height, width)).

    ``warn(message)`` is called once per camera whose frames' aspect ratio differs from the trained one,
    ``inform(message)`` once per camera whose frames are resized with the same aspect ratio."""

    def __init__(self, trained: Mapping[str, tuple[int, int]], warn: Callable[[str], None],
                 inform: Callable[[str], None] | None = None):
        self.trained = {name: (int(size[0]), int(size[1])) for name, size in trained.items()}
        self._warn, self._inform = warn, inform or (lambda _message: None)
        self._reported: set[str] = set()

    def fit(self, camera: str, frame: Frame) -> Frame:
        """``frame`` itself if it has the trained size (or the camera has none), else a frame of the trained
        size that resizes with padding when decoded."""
        target = self.trained.get(camera)
        size = (frame.height, frame.width)
        if target is None or size == target:
            return frame
        self._report(camera, size, target)
        height, width = target
        return Frame(height, width, lambda: resize_with_pad(frame(), height, width))

    def _report(self, camera: str, size: tuple[int, int], target: tuple[int, int]) -> None:
        if camera in self._reported:
            return
        self._reported.add(camera)
        text = (f"camera {camera}: frames are {size[0]}x{size[1]} (HxW), the checkpoint was trained at "
                f"{target[0]}x{target[1]}: resized with padding as SmolVLA does (lerobot resize_with_pad)")
        if same_aspect(size, target):
            self._inform(text)
        else:
            self._warn(f"{text}; the aspect ratio differs, so the model sees black bands it was not trained on "
                       "(set the camera to the trained size or aspect ratio)")
