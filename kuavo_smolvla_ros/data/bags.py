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
    """One message: topic, type name, when it was recorded (seconds) and the deserialised message (None, with
    ``error`` saying why, for a message that cannot be deserialised, when asked for)."""

    topic: str
    msgtype: str
    recorded: float
    msg: Any
    error: str = ""


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


#: Files that make a folder a ROS 2 bag (its storage), with or without their ``metadata.yaml``.
ROS2_STORAGE_SUFFIXES = (".db3", ".mcap", ".db3.zstd", ".mcap.zstd")
#: A ROS 1 recording that was never closed (``rosbag record`` killed): unindexed, unreadable as it is.
ACTIVE_SUFFIX = ".bag.active"


def _is_storage(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ROS2_STORAGE_SUFFIXES)


def find_bags(inputs: Iterable[str | Path]) -> list[Path]:
    """The bags among ``inputs``, searched recursively: ROS 1 ``.bag`` files, ROS 2 bag folders (a
    ``metadata.yaml``), and what looks like a damaged bag so that it is reported rather than silently
    skipped: a ROS 2 storage folder without ``metadata.yaml``, an unfinished ``.bag.active`` recording, a
    folder named ``*.bag``. Raises :class:`BagError` for an input that does not exist."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise BagError(f"{item}: no such file or folder")
        if item.is_file() or (item / "metadata.yaml").is_file() or item.name.endswith((".bag", ACTIVE_SUFFIX)):
            found.append(item)  # (a folder named like a ROS 1 bag, given as such, is reported as not a bag)
            continue
        ros2 = {p.parent for p in item.rglob("metadata.yaml")}
        ros2 |= {p.parent for p in item.rglob("*") if _is_storage(p)}  # storage without metadata.yaml
        ros1 = {p for pattern in ("*.bag", f"*{ACTIVE_SUFFIX}") for p in item.rglob(pattern)}
        found += sorted(ros2)
        found += sorted(p for p in ros1 if not any(p.is_relative_to(r) for r in ros2))
    return sorted(dict.fromkeys(found))


def open_reader(path: str | Path):
    """An unopened rosbags ``AnyReader`` of the bag at ``path`` with the Kuavo-aware typestore; raises
    :class:`BagError` for what is not a bag it can open (an unfinished recording, a folder without storage)."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if path.name.endswith(ACTIVE_SUFFIX):
        raise BagError(f"{path}: unfinished recording (.active: rosbag record did not close it); run "
                       "`rosbag reindex` on it with ROS 1, rename it to .bag and convert again")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        storage = sorted(p.name for p in path.iterdir() if _is_storage(p))
        if storage:
            raise BagError(f"{path}: ROS 2 bag folder without metadata.yaml (storage {storage[:3]}); run "
                           "`ros2 bag reindex` on it, then convert again")
        raise BagError(f"{path}: a folder without metadata.yaml or ROS 2 storage files is not a bag")
    try:
        return AnyReader([path], default_typestore=kuavo_typestore(path.suffix == ".bag"))
    except Exception as err:
        raise _bag_error(path, err) from None


def read_messages(path: str | Path, topics: Sequence[str] | None = None, order: str = "time",
                  undecodable: str = "raise") -> Iterator[BagMessage]:
    """Messages of ``topics`` (all if None), by record time (``order="time"``) or in the order the recorder
    wrote them (``"write"``: what a live subscriber saw; a record clock that jumped back shows as a step
    back). A message whose bytes cannot be deserialised raises (``undecodable="raise"``) or is yielded with
    ``msg`` None and its ``error`` (``"yield"``: one garbled message is that message's problem). Raises
    :class:`BagError` naming the bag and the cause for any other problem reading it."""
    if order not in ("time", "write"):
        raise ValueError(f"order must be 'time' or 'write', got {order!r}")
    if undecodable not in ("raise", "yield"):
        raise ValueError(f"undecodable must be 'raise' or 'yield', got {undecodable!r}")
    path = Path(path)
    try:
        with open_reader(path) as reader:
            connections = [c for c in reader.connections if topics is None or c.topic in topics]
            raw_messages = (_write_order(reader, connections) if order == "write"
                            else reader.messages(connections=connections))
            for connection, timestamp, raw in raw_messages:
                try:
                    msg, error = reader.deserialize(raw, connection.msgtype), ""
                except Exception as err:
                    if undecodable == "raise":
                        raise
                    msg, error = None, f"undecodable {connection.msgtype} ({type(err).__name__}: {_one_line(err)})"
                yield BagMessage(connection.topic, connection.msgtype, timestamp / 1e9, msg, error)
    except Exception as err:
        raise _bag_error(path, err) from None


def _write_order(reader, connections: list) -> Iterator[tuple[Any, int, bytes]]:
    """(connection, record time ns, raw) in the order the recorder wrote them: ROS 1 by chunk and offset,
    sqlite3 by row id, MCAP by file position. Uses rosbags' readers' own records (stable since 0.9); a
    storage it does not know is read by time."""
    if not connections:
        return
    for sub in reader.readers:
        if hasattr(sub, "indexes") and hasattr(sub, "chunks"):  # rosbags.rosbag1.Reader
            yield from _ros1_write_order(sub, [c for c in connections if c.owner is sub])
            continue
        top = sub.storage  # rosbags.rosbag2.Reader: a DirectoryReader (storage files) or one storage file
        mine = [c for c in connections if c.owner in (sub, top)]
        for storage in getattr(top, "storages", [top]):
            by_id = {x.id: c for x in storage.connections for c in mine
                     if c.topic == x.topic and c.msgtype == x.msgtype}
            if not by_id:
                continue
            if getattr(storage, "dbconn", None) is not None:  # sqlite3
                ids = tuple(by_id)
                rows = storage.dbconn.execute(
                    f"SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN ({','.join('?' * len(ids))}) "
                    "ORDER BY id", ids)
                for cid, timestamp, data in rows:
                    yield by_id[cid], timestamp, data
            elif hasattr(storage, "messages_scan"):  # MCAP
                wanted = [x for x in storage.connections if x.id in by_id]
                for connection, timestamp, data in storage.messages_scan(wanted):
                    yield by_id[connection.id], timestamp, data
            else:
                wanted = [x for x in storage.connections if x.id in by_id]
                for connection, timestamp, data in storage.messages(wanted):
                    yield by_id[connection.id], timestamp, data


def _ros1_write_order(reader, connections: list) -> Iterator[tuple[Any, int, bytes]]:
    """A ROS 1 bag's messages by (chunk position, offset in the chunk): the order ``rosbag record`` wrote.
    The order is sorted as four int64 columns (32 bytes a message, not a tuple of Python ints)."""
    import os
    from io import BytesIO

    from rosbags.rosbag1.reader import Header, ReaderError, RecordType, read_bytes, read_uint32

    by_id = {c.id: c for c in connections}
    count = sum(len(reader.indexes.get(cid, ())) for cid in by_id)
    columns = np.empty((4, count), dtype=np.int64)  # chunk position, offset, time (ns), connection id
    filled = 0
    for cid in by_id:
        index = reader.indexes.get(cid, ())
        for row, values in enumerate(([e.chunk_pos for e in index], [e.offset for e in index],
                                      [e.time for e in index])):
            columns[row, filled: filled + len(index)] = values
        columns[3, filled: filled + len(index)] = cid
        filled += len(index)
    order = np.lexsort(columns[::-1])  # by chunk position, then offset (then time, connection: as sorted tuples)
    current, chunk = None, BytesIO()
    for chunk_pos, offset, time, cid in (entry for start in range(0, count, 4096)  # as Python ints, a block a time
                                         for entry in columns[:, order[start: start + 4096]].T.tolist()):
        if chunk_pos != current:
            info = reader.chunks[chunk_pos]
            reader.bio.seek(info.datapos)
            chunk = BytesIO(info.decompressor(read_bytes(reader.bio, info.datasize)))
            current = chunk_pos
        chunk.seek(offset)
        while True:
            header = Header.read(chunk)
            op = header.get_uint8("op")
            if op != RecordType.CONNECTION:
                break
            chunk.seek(read_uint32(chunk), os.SEEK_CUR)
        if op != RecordType.MSGDATA:
            raise ReaderError(f"expected message data at offset {offset} of the chunk at {chunk_pos}")
        data = read_bytes(chunk, read_uint32(chunk))
        if header.get_uint32("conn") != cid or header.get_time("time") != time:
            raise ReaderError(f"the index does not match the message at offset {offset} of the chunk at {chunk_pos}")
        yield by_id[cid], time, data


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bag_error(path: Path, err: BaseException) -> BagError:
    """The :class:`BagError` for any failure reading the bag at ``path`` (one line: the bag, the cause)."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Ros1Error
    from rosbags.rosbag2 import ReaderError as Ros2Error

    if isinstance(err, BagError):
        return err
    if isinstance(err, AnyReaderError | Ros1Error | Ros2Error):
        reason = _one_line(err)
        if "index" in reason.lower() and path.is_file():
            reason += " (run `rosbag reindex` on it with ROS 1, then convert again)"
        return BagError(f"{path}: corrupt or truncated bag ({reason})")
    if isinstance(err, MemoryError):
        return BagError(f"{path}: unreadable (out of memory: a corrupt size field or a decompression bomb?)")
    if isinstance(err, FileNotFoundError) and path.is_dir():
        return BagError(f"{path}: ROS 2 bag folder without a readable metadata.yaml ({_one_line(err)})")
    return BagError(f"{path}: unreadable ({type(err).__name__}: {_one_line(err) or 'no details'})")


def bag_topics(path: str | Path) -> dict[str, str]:
    """Topic -> message type of a bag; raises :class:`BagError` naming the bag and the cause."""
    path = Path(path)
    try:
        with open_reader(path) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except Exception as err:
        raise _bag_error(path, err) from None


class BagWriter:
    """Write a ROS 1 bag (chunks uncompressed, or ``compression`` bz2/lz4) or a ROS 2 bag (``sqlite3`` or
    ``mcap``) from message objects of the Kuavo-aware typestore; ``write(topic, msgtype, msg, seconds)``."""

    def __init__(self, path: str | Path, storage: str = "ros1", compression: str | None = None):
        from rosbags.rosbag1 import Writer as Ros1Writer
        from rosbags.rosbag2 import StoragePlugin
        from rosbags.rosbag2 import Writer as Ros2Writer

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ros1 = storage == "ros1"
        self.store = kuavo_typestore(self.ros1)
        if compression not in (None, "bz2", "lz4") or (compression and storage != "ros1"):
            raise ValueError(f"compression must be None, bz2 or lz4 (ROS 1 only), got {compression!r}")
        if self.ros1:
            self._writer = Ros1Writer(self.path)
            if compression:
                self._writer.set_compression(Ros1Writer.CompressionFormat[compression.upper()])
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
