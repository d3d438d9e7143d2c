"""Reading (and, for tests and the recorder, writing) Kuavo rosbags with the pure-Python ``rosbags``.

ROS 1 bags (``.bag``) carry their message definitions, so Kuavo's ``kuavo_msgs`` types are read from
the bag itself. ROS 2 bags (folders with ``metadata.yaml``, sqlite3 or MCAP storage) may not: their
Kuavo types come from this package's ``msg/`` files, registered under both the ROS 2 name
(``kuavo_smolvla_ros/msg/SensorsData``) and the bridged name (``kuavo_msgs/msg/SensorsData``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_smolvla_ros.contract.fields import STANDARD_TYPES, Fields, time_parts
from kuavo_smolvla_ros.resources import PACKAGE_NAME, share_file

#: Kuavo types: this package's (ROS 2) name -> the ROS 1 ``kuavo_msgs`` name.
KUAVO_TYPES = {
    "SensorsData": "sensorsData", "JointData": "jointData", "ImuData": "imuData",
    "EndEffectorData": "endEffectorData", "LejuClawCommand": "lejuClawCommand",
    "LejuClawState": "lejuClawState", "RobotHandPosition": "robotHandPosition",
}
ROS1_PACKAGE = "kuavo_msgs"


class BagError(ValueError):
    """A bag that cannot be read; the message names the bag and the reason."""


@dataclass(frozen=True)
class BagMessage:
    """One message: topic, type name, when it was recorded (seconds) and the deserialised message."""

    topic: str
    msgtype: str
    recorded: float
    msg: Any


def _msg_text(name: str) -> str:
    return share_file(f"msg/{name}.msg").read_text()


def _ros1_text(text: str) -> str:
    """A ROS 2 .msg text in ROS 1 spelling: ``time`` for builtin_interfaces/Time, kuavo_msgs names."""
    text = text.replace("builtin_interfaces/Time", "time")
    for ros2, ros1 in KUAVO_TYPES.items():
        text = re.sub(rf"^(\s*){ros2}(\[\])?\s", rf"\g<1>{ros1}\g<2> ", text, flags=re.M)
    return text


@lru_cache(maxsize=2)
def kuavo_typestore(ros1: bool = False):
    """A rosbags typestore (Noetic or Kilted) that also knows the Kuavo types."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_KILTED)
    types: dict = {}
    for ros2, ros1_name in KUAVO_TYPES.items():
        text = _msg_text(ros2)
        if ros1:
            types |= get_types_from_msg(_ros1_text(text), f"{ROS1_PACKAGE}/msg/{ros1_name}")
        else:
            for package in (PACKAGE_NAME, ROS1_PACKAGE):
                local = re.sub(r"^(\s*)(" + "|".join(KUAVO_TYPES) + r")(\[\])?\s",
                               rf"\g<1>{package}/msg/\g<2>\g<3> ", text, flags=re.M)
                types |= get_types_from_msg(local, f"{package}/msg/{ros2}")
    store.register(types)
    return store


def find_bags(inputs: Iterable[str | Path]) -> list[Path]:
    """ROS 1 ``.bag`` files and ROS 2 bag folders (``metadata.yaml``) among ``inputs``, searched recursively."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise BagError(f"{item}: no such file or folder")
        if item.is_file() or (item / "metadata.yaml").is_file():
            found.append(item)
        else:
            ros2 = sorted(p.parent for p in item.rglob("metadata.yaml"))
            found += ros2
            found += sorted(p for p in item.rglob("*.bag") if not any(p.is_relative_to(r) for r in ros2))
    return sorted(dict.fromkeys(found))


def read_messages(path: str | Path, topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
    """Messages of ``topics`` (all if None) in recording order; raises :class:`BagError` on any problem."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    ros1 = path.is_file()
    try:
        with AnyReader([path], default_typestore=kuavo_typestore(ros1)) as reader:
            connections = [c for c in reader.connections if topics is None or c.topic in topics]
            for connection, timestamp, raw in reader.messages(connections=connections):
                yield BagMessage(connection.topic, connection.msgtype, timestamp / 1e9,
                                 reader.deserialize(raw, connection.msgtype))
    except Exception as err:
        raise _bag_error(path, err) from None


def _bag_error(path: Path, err: Exception) -> Exception:
    """The :class:`BagError` for a reader failure (other exceptions are returned unchanged)."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Ros1Error
    from rosbags.rosbag2 import ReaderError as Ros2Error

    if isinstance(err, AnyReaderError | Ros1Error | Ros2Error):
        reason = str(err)
        if "index" in reason.lower():
            reason += " (run `rosbag reindex` on it with ROS 1, then convert again)"
        return BagError(f"{path}: corrupt or truncated bag ({reason})")
    if isinstance(err, KeyError | ValueError | EOFError | OSError) and not isinstance(err, BagError):
        return BagError(f"{path}: unreadable ({type(err).__name__}: {err})")
    return err


def bag_topics(path: str | Path) -> dict[str, str]:
    """Topic -> message type of a bag."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    try:
        with AnyReader([path], default_typestore=kuavo_typestore(path.is_file())) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except Exception as err:
        raise _bag_error(path, err) from None


class BagWriter:
    """Write a ROS 1 bag or a ROS 2 bag (``sqlite3`` or ``mcap``) from message objects of the
    Kuavo-aware typestore; ``write(topic, msgtype, msg, seconds)``."""

    def __init__(self, path: str | Path, storage: str = "ros1"):
        from rosbags.rosbag1 import Writer as Ros1Writer
        from rosbags.rosbag2 import StoragePlugin
        from rosbags.rosbag2 import Writer as Ros2Writer

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ros1 = storage == "ros1"
        self.store = kuavo_typestore(self.ros1)
        if self.ros1:
            self._writer = Ros1Writer(self.path)
        elif storage in ("sqlite3", "mcap"):
            plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
            self._writer = Ros2Writer(self.path, version=9, storage_plugin=plugin)
        else:
            raise ValueError(f"storage must be ros1, sqlite3 or mcap, got {storage!r}")
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def types(self):
        """Message classes by type name (``bag.types()['sensor_msgs/msg/JointState']``)."""
        return self.store.types

    def full_type(self, short: str) -> str:
        """The full type name in this bag of a contract type short name (``SensorsData`` ->
        ``kuavo_msgs/msg/sensorsData`` in ROS 1, ``kuavo_smolvla_ros/msg/SensorsData`` in ROS 2)."""
        if short in KUAVO_TYPES:
            return f"{ROS1_PACKAGE}/msg/{KUAVO_TYPES[short]}" if self.ros1 else f"{PACKAGE_NAME}/msg/{short}"
        return STANDARD_TYPES[short]

    def build(self, msgtype: str, fields: Fields) -> Any:
        """A message record of ``msgtype`` (full name) from a field mapping (see
        :mod:`kuavo_smolvla_ros.contract.fields`); fields left out take zero/empty values."""
        _, defs = self.store.fielddefs[msgtype]
        unknown = set(fields) - {name for name, _ in defs}
        if unknown:
            raise ValueError(f"{msgtype} has no field(s) {sorted(unknown)}")
        return self.store.types[msgtype](**{name: self._value(kind, fields.get(name)) for name, kind in defs})

    def _value(self, kind: tuple, value: Any) -> Any:
        from rosbags.typesys.base import Nodetype

        nodetype, detail = kind
        if nodetype == Nodetype.NAME:
            if detail == "builtin_interfaces/msg/Time" and isinstance(value, int | float):
                sec, nanosec = time_parts(float(value))
                return self.store.types[detail](sec=sec, nanosec=nanosec)
            return self.build(detail, value or {})
        if nodetype == Nodetype.BASE:
            base = detail[0]
            if value is None:
                return "" if base == "string" else False if base == "bool" else 0
            return value
        (item_type, item_detail), length = detail
        if item_type == Nodetype.BASE and item_detail[0] != "string":
            dtype = {"bool": np.bool_, "byte": np.uint8, "char": np.int8}.get(item_detail[0], item_detail[0])
            if isinstance(value, bytes | bytearray | memoryview):
                return np.frombuffer(value, dtype=np.uint8).copy()
            array = np.asarray(value if value is not None else [], dtype=dtype)
            return np.zeros(length, dtype=dtype) if nodetype == Nodetype.ARRAY and not array.size else array
        if item_type == Nodetype.BASE:
            return list(value or [])
        return [self._value((item_type, item_detail), v) for v in value or []]

    def write_fields(self, topic: str, short_type: str, fields: Fields, seconds: float) -> None:
        """Write a message given as a field mapping, recorded at ``seconds``."""
        msgtype = self.full_type(short_type)
        self.write(topic, msgtype, self.build(msgtype, fields), seconds)

    def write(self, topic: str, msgtype: str, msg: Any, seconds: float) -> None:
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        raw = self.store.serialize_ros1(msg, msgtype) if self.ros1 else self.store.serialize_cdr(msg, msgtype)
        self._writer.write(self._connections[topic], round(seconds * 1e9), raw)
