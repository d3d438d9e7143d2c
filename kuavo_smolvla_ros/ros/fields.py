"""rclpy messages from the contract's field mappings (:mod:`kuavo_smolvla_ros.contract.fields`).

The contract's encoders return plain mappings so that the recorder (rosbags) and the nodes (rclpy) build
their messages from the same values; this module is the rclpy half: type short names -> classes, and
:func:`build`.
"""

from __future__ import annotations

from typing import Any

from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from kuavo_smolvla_ros.contract.fields import Fields, time_parts
from kuavo_smolvla_ros.msg import LejuClawCommand, LejuClawState, RobotHandPosition, SensorsData

#: Message classes by the contract's type short names.
MESSAGE_TYPES: dict[str, type] = {
    "JointState": JointState, "CompressedImage": CompressedImage, "Image": Image, "String": String,
    "SensorsData": SensorsData, "LejuClawState": LejuClawState, "LejuClawCommand": LejuClawCommand,
    "RobotHandPosition": RobotHandPosition,
}


def to_time(value: float) -> Time:
    """Seconds as a ``builtin_interfaces/Time``."""
    sec, nanosec = time_parts(value)
    return Time(sec=sec, nanosec=nanosec)


def _fill(msg: Any, fields: Fields) -> Any:
    for name, value in fields.items():
        current = getattr(msg, name)  # AttributeError names a field the type lacks
        if isinstance(current, Time) and isinstance(value, int | float):
            value = to_time(float(value))
        elif isinstance(value, dict):
            value = _fill(type(current)(), value)
        setattr(msg, name, value)
    return msg


def build(short_type: str, fields: Fields) -> Any:
    """A message of the contract type ``short_type`` (``"SensorsData"``) holding ``fields``."""
    return _fill(MESSAGE_TYPES[short_type](), fields)
