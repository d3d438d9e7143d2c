"""Messages as plain field mappings: what the encoders of the contract produce.

An encoder returns a nested mapping of field names to values (lists, numbers, strings, nested mappings);
a ``builtin_interfaces/Time`` field holds seconds as a float. Two builders turn such a mapping into a
message: :func:`kuavo_smolvla_ros.ros.fields.build` (rclpy classes, for the nodes) and
:meth:`kuavo_smolvla_ros.data.bags.BagWriter.build` (rosbags records, for bags), so the simulator node and the
recorder encode with the same functions. Fields left out keep the message type's defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Fields = dict[str, Any]

#: Message type short names -> full ROS 2 names of the standard types the contract uses.
STANDARD_TYPES = {
    "JointState": "sensor_msgs/msg/JointState",
    "CompressedImage": "sensor_msgs/msg/CompressedImage",
    "Image": "sensor_msgs/msg/Image",
    "String": "std_msgs/msg/String",
}
#: The ``format`` of the JPEG ``CompressedImage``s Kuavo's cameras (and image_transport) publish.
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"


def header(stamp: Any, frame_id: str = "") -> Fields:
    """A ``std_msgs/Header`` stamped ``stamp``: seconds (float), or a ready ``builtin_interfaces/Time``."""
    return {"stamp": stamp, "frame_id": frame_id}


def seconds(stamp: Any) -> float:
    """A ``builtin_interfaces/Time`` (rclpy or rosbags) in seconds, correctly rounded: a stamp on a tick stays on it."""
    return stamp.sec + stamp.nanosec / 1e9


def time_parts(value: float) -> tuple[int, int]:
    """(sec, nanosec) of a time in seconds."""
    sec = int(value // 1)
    return sec, min(round((value - sec) * 1e9), 999_999_999)


def header_stamp(msg: Any) -> float | None:
    """The header stamp of a message in seconds, or None if it has no header."""
    head = getattr(msg, "header", None)
    return None if head is None else seconds(head.stamp)


def joint_state_fields(names: Sequence[str], positions: Sequence[float], stamp: Any) -> Fields:
    """A ``sensor_msgs/JointState`` with positions only."""
    return {"header": header(stamp), "name": list(names), "position": [float(v) for v in positions]}


def jpeg_fields(jpeg: bytes, stamp: float, frame_id: str = "") -> Fields:
    """A ``sensor_msgs/CompressedImage`` holding JPEG bytes."""
    return {"header": header(stamp, frame_id), "format": JPEG_FORMAT, "data": jpeg}


def encode_jpeg(image: Any, quality: int = 90) -> bytes:
    """An HxWx3 uint8 RGB image as JPEG bytes; ``ValueError`` if OpenCV cannot encode it."""
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
