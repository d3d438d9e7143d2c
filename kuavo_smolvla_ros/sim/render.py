"""Camera images of the simulated table: a top-down head camera and one close-up per wrist.

Drawn with numpy rectangles so that a frame costs well under a millisecond at policy sizes: the table,
the conveyor band, every task's targets (grey squares), the object (an orange square) and the two hands
(blue left, red right; brighter when the gripper is closed). Sizes scale with the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kuavo_smolvla_ros.sim import scenes
from kuavo_smolvla_ros.sim.kinematics import ARMS, gripper_index

TABLE = (196, 186, 164)
CONVEYOR = (120, 120, 128)
TARGET = (90, 90, 90)
OBJECT = (255, 140, 0)
HAND = {"left": (40, 80, 255), "right": (230, 40, 40)}
OBJECT_SIZE = 0.16  # m, side of the object square
TARGET_SIZE = 0.06
HAND_SIZE = 0.05


@dataclass(frozen=True)
class View:
    """A top-down view: the table rectangle centred at ``center`` (m) spanning ``width_m`` across."""

    center: tuple[float, float]
    width_m: float

    def to_pixel(self, xy, height: int, width: int) -> tuple[float, float]:
        """(row, column) of table point ``xy`` (floats; rows grow towards the robot)."""
        scale = width / self.width_m
        column = (xy[0] - self.center[0]) * scale + width / 2
        row = height / 2 - (xy[1] - self.center[1]) * scale
        return row, column

    def to_table(self, row: float, column: float, height: int, width: int) -> np.ndarray:
        scale = width / self.width_m
        return np.array([(column - width / 2) / scale + self.center[0], (height / 2 - row) / scale + self.center[1]])


HEAD_VIEW = View(center=(0.0, 0.45), width_m=1.1)


def wrist_view(hand_xy) -> View:
    return View(center=(float(hand_xy[0]), float(hand_xy[1]) + 0.1), width_m=0.4)


def _square(image: np.ndarray, view: View, xy, size_m: float, color, outline: bool = False) -> None:
    height, width = image.shape[:2]
    row, column = view.to_pixel(xy, height, width)
    half = max(size_m * width / view.width_m / 2, 0.75)
    r0, r1 = round(row - half), round(row + half)
    c0, c1 = round(column - half), round(column + half)
    r0c, r1c, c0c, c1c = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
    if r0c >= r1c or c0c >= c1c:
        return
    if outline and r1 - r0 > 2:
        image[r0c:r1c, c0c:c1c] = color
        inner = (max(r0 + 1, 0), min(r1 - 1, height), max(c0 + 1, 0), min(c1 - 1, width))
        if inner[0] < inner[1] and inner[2] < inner[3]:
            image[inner[0]:inner[1], inner[2]:inner[3]] = TABLE
    else:
        image[r0c:r1c, c0c:c1c] = color


def render(view: View, height: int, width: int, state16: np.ndarray, object_xy, hands: dict) -> np.ndarray:
    """An HxWx3 uint8 RGB image of the table seen through ``view``; ``hands`` maps arm -> table xy."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = TABLE
    top, _ = view.to_pixel((0.0, scenes.CONVEYOR_Y + 0.05), height, width)
    bottom, _ = view.to_pixel((0.0, scenes.CONVEYOR_Y - 0.05), height, width)
    image[max(round(top), 0):max(round(bottom), 0)] = CONVEYOR
    for target in scenes.all_targets():
        _square(image, view, target, TARGET_SIZE, TARGET, outline=True)
    _square(image, view, object_xy, OBJECT_SIZE, OBJECT)
    for arm in ARMS:
        closed = float(np.clip(state16[gripper_index(arm)], 0.0, 1.0))
        color = tuple(int(c * (0.55 + 0.45 * closed)) for c in HAND[arm])
        _square(image, view, hands[arm], HAND_SIZE, color)
    return image


#: The cameras the simulator renders (the robot profiles' camera names): what each one sees.
CAMERA_VIEWS = {"head_cam_h": "head", "wrist_cam_l": "left", "wrist_cam_r": "right"}


def render_cameras(world, sizes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """The cameras named in ``sizes`` (keys of :data:`CAMERA_VIEWS`) of a
    :class:`~kuavo_smolvla_ros.sim.world.SimWorld` at (height, width) each: the head camera sees the whole
    table, each wrist camera a close-up ahead of its hand. ``KeyError`` for a camera the simulator lacks."""
    state = world.state
    hands = {arm: world.hand(arm) for arm in ARMS}
    views = {"head": HEAD_VIEW, "left": wrist_view(hands["left"]), "right": wrist_view(hands["right"])}
    unknown = [name for name in sizes if name not in CAMERA_VIEWS]
    if unknown:
        raise KeyError(f"the simulator renders cameras {sorted(CAMERA_VIEWS)}, not {unknown}")
    return {name: render(views[CAMERA_VIEWS[name]], *size, state, world.object, hands) for name, size in sizes.items()}


#: JPEG quality of the simulated cameras, as the Kuavo publishes its compressed camera topics: ``sim_robot``
#: publishes at it (parameter ``jpeg_quality``), ``kuavo-sim-record`` writes bags at it, and closed-loop
#: evaluation and the pretraining primitives show the policy frames that went through it.
CAMERA_JPEG_QUALITY = 90


def jpeg_round_trip(image: np.ndarray, quality: int = CAMERA_JPEG_QUALITY) -> np.ndarray:
    """``image`` (HxWx3 uint8 RGB) as the policy sees it after a JPEG at ``quality``: encoded as ``sim_robot`` and
    the recorder encode a camera frame, decoded as the policy node and the bag converter decode one. Without it a
    policy trained on converted bags is evaluated on pixels it never saw (2-3 grey levels apart on average)."""
    from kuavo_smolvla_ros.contract.fields import encode_jpeg
    from kuavo_smolvla_ros.images import compressed_frame

    return compressed_frame("jpeg", encode_jpeg(image, quality))()


def find_object(image: np.ndarray, view: View = HEAD_VIEW, tolerance: int = 150) -> np.ndarray | None:
    """Table xy of the object's centre in an image (None if not visible): the centroid of the pixels
    within ``tolerance`` (sum of absolute RGB differences) of its colour; JPEG-decoded frames work."""
    mask = np.abs(image.astype(np.int16) - np.array(OBJECT)).sum(axis=-1) < tolerance
    if not mask.any():
        return None
    rows, columns = np.nonzero(mask)
    height, width = image.shape[:2]
    return view.to_table(rows.mean() + 0.5, columns.mean() + 0.5, height, width)
