"""Damaged bags made on purpose, each damaged in one known way: for the converter's robustness tests and
benchmark (one damaged bag must never stop a run or lose another bag).

Every kind starts from a good synthetic recording (:func:`~kuavo_smolvla_ros.data.synthetic.write_synthetic_bag`)
and damages its bytes or files the way real bags get damaged: a recorder killed mid-write, a disk that ran
full, a copy cut short, a chunk header that lies about its compression, a ROS 2 folder missing its
``metadata.yaml``. ROS 1 bags are edited record by record (the ROS 1 bag 2.0 format: a magic line, then
records of ``header length, header fields name=value, data length, data``).
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag

MAGIC = b"#ROSBAG V2.0\n"
#: ROS 1 record op codes.
OP_MSGDATA, OP_BAGHEADER, OP_INDEXDATA, OP_CHUNK, OP_CHUNKINFO, OP_CONNECTION = 2, 3, 4, 5, 6, 7


@dataclass(frozen=True)
class Record:
    """One ROS 1 record: its op code, header fields and where it lies in the file (byte offsets)."""

    op: int
    fields: dict[str, bytes]
    start: int  # the header length field
    data_start: int  # the first data byte
    end: int  # one past the last data byte


def ros1_records(data: bytes, start: int = len(MAGIC), end: int | None = None) -> list[Record]:
    """The top-level records of a ROS 1 bag's bytes (or of a decompressed chunk with ``start=0``)."""
    records: list[Record] = []
    pos, end = start, len(data) if end is None else end
    while pos + 4 <= end:
        (header_len,) = struct.unpack_from("<I", data, pos)
        fields: dict[str, bytes] = {}
        field_pos = pos + 4
        while field_pos < pos + 4 + header_len:
            (size,) = struct.unpack_from("<I", data, field_pos)
            name, _, value = data[field_pos + 4: field_pos + 4 + size].partition(b"=")
            fields[name.decode()] = value
            field_pos += 4 + size
        (data_len,) = struct.unpack_from("<I", data, pos + 4 + header_len)
        data_start = pos + 8 + header_len
        records.append(Record(fields["op"][0], fields, pos, data_start, data_start + data_len))
        pos = data_start + data_len
    return records


def _serialise(fields: dict[str, bytes], data: bytes) -> bytes:
    header = b"".join(struct.pack("<I", len(k) + 1 + len(v)) + k.encode() + b"=" + v for k, v in fields.items())
    return struct.pack("<I", len(header)) + header + struct.pack("<I", len(data)) + data


def _good(path: Path, storage: str = "ros1", compression: str | None = None, seconds: float = 2.0) -> Path:
    """A good recording to damage; its seed comes from its name, so no two damaged bags are identical."""
    seed = zlib.crc32(path.name.encode()) % 10_000
    write_synthetic_bag(path, storage, SyntheticBag(seconds=seconds, seed=seed, jitter_s=0.002),
                        compression=compression)
    return path


def _first(records: list[Record], op: int) -> Record:
    return next(r for r in records if r.op == op)


def wrong_compression(path: Path) -> str:
    """The first chunk's header says lz4 but the chunk holds bz2 data."""
    _good(path, compression="bz2")
    data = bytearray(path.read_bytes())
    chunk = _first(ros1_records(bytes(data)), OP_CHUNK)
    header = bytes(data[chunk.start: chunk.data_start])
    at = chunk.start + header.index(b"compression=bz2") + len(b"compression=")
    data[at: at + 3] = b"lz4"
    path.write_bytes(bytes(data))
    return "lz4"


def truncated_header(path: Path) -> str:
    """Cut inside the 4 KiB bag header record (a copy that stopped almost at once)."""
    _good(path)
    path.write_bytes(path.read_bytes()[:2000])
    return "corrupt or truncated bag"


def truncated_chunk(path: Path) -> str:
    """Cut in the middle of the first chunk (a recorder killed while writing; no index)."""
    _good(path)
    data = path.read_bytes()
    chunk = _first(ros1_records(data, end=_index_pos(data)), OP_CHUNK)
    path.write_bytes(data[: (chunk.data_start + chunk.end) // 2])
    return "corrupt or truncated bag"


def truncated_index(path: Path) -> str:
    """Cut in the middle of the index at the end of the file (a copy cut short)."""
    _good(path)
    data = path.read_bytes()
    index = _index_pos(data)
    path.write_bytes(data[: index + (len(data) - index) // 2])
    return "index"


def zero_length(path: Path) -> str:
    """An empty file (the disk ran full before anything was written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return "empty"


def garbage_chunk(path: Path) -> str:
    """Random bytes over the record headers in the middle of the first (uncompressed) chunk."""
    _good(path)
    data = bytearray(path.read_bytes())
    chunk = _first(ros1_records(bytes(data), end=_index_pos(bytes(data))), OP_CHUNK)
    inner = ros1_records(bytes(data), start=chunk.data_start, end=chunk.end)
    victim = inner[len(inner) // 2]
    rng = np.random.default_rng(0)
    data[victim.start: victim.start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return "corrupt or truncated bag"


def garbage_bz2_chunk(path: Path) -> str:
    """Random bytes in the middle of the first bz2-compressed chunk's data."""
    _good(path, compression="bz2")
    data = bytearray(path.read_bytes())
    chunk = _first(ros1_records(bytes(data), end=_index_pos(bytes(data))), OP_CHUNK)
    middle = (chunk.data_start + chunk.end) // 2
    data[middle: middle + 256] = np.random.default_rng(1).integers(0, 256, 256, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return "Invalid data stream"


def _index_pos(data: bytes) -> int:
    header = ros1_records(data, end=len(MAGIC) + 4096 + 4)[0]
    return struct.unpack("<Q", header.fields["index_pos"])[0]


def _rewrite_index_connection(path: Path, topic: str, **changes: bytes) -> None:
    """Change header fields of ``topic``'s connection record in the index section (what readers use)."""
    data = path.read_bytes()
    index = _index_pos(data)
    out = bytearray(data[:index])
    for record in ros1_records(data, start=index):
        raw = data[record.start: record.end]
        if record.op == OP_CONNECTION and record.fields.get("topic") == topic.encode():
            fields = _plain_fields(data[record.data_start: record.end])
            fields.update(changes)
            body = b"".join(struct.pack("<I", len(k) + 1 + len(v)) + k.encode() + b"=" + v for k, v in fields.items())
            raw = _serialise(record.fields, body)
        out += raw
    path.write_bytes(bytes(out))


def _plain_fields(body: bytes) -> dict[str, bytes]:
    """The name=value fields of a connection record's data (a header without an op)."""
    fields: dict[str, bytes] = {}
    pos = 0
    while pos < len(body):
        (size,) = struct.unpack_from("<I", body, pos)
        name, _, value = body[pos + 4: pos + 4 + size].partition(b"=")
        fields[name.decode()] = value
        pos += 4 + size
    return fields


def unknown_type(path: Path) -> str:
    """The joint state's connection names a message type nobody knows, with an empty definition."""
    _good(path)
    _rewrite_index_connection(path, "/sensors_data_raw", type=b"acme_msgs/Mystery", message_definition=b"",
                              md5sum=b"d41d8cd98f00b204e9800998ecf8427e")
    return "acme_msgs"


def bad_definition(path: Path) -> str:
    """The joint state's connection carries a message definition that does not parse."""
    _good(path)
    _rewrite_index_connection(path, "/sensors_data_raw", message_definition=b"float64[ joint_q\n}{ garbage")
    return "Could not parse"


def not_indexed(path: Path) -> str:
    """A bag whose header says it has no index (``rosbag record`` killed before closing it)."""
    _good(path)
    data = bytearray(path.read_bytes())
    header = ros1_records(bytes(data), end=len(MAGIC) + 4096 + 4)[0]
    at = data.index(b"index_pos=", header.start) + len(b"index_pos=")
    data[at: at + 8] = struct.pack("<Q", 0)
    path.write_bytes(bytes(data))
    return "reindex"


def active_recording(path: Path) -> str:
    """An unfinished ``.bag.active`` file (named ``<path>.active``)."""
    not_indexed(path)
    return "unfinished recording"


def garbage_message(path: Path, topic: str = "/sensors_data_raw") -> str:
    """A good bag but for one message of ``topic`` in the middle of the first chunk whose bytes are all 0xFF
    (it cannot be deserialised). Not a kind of :data:`DAMAGES`: the bag still converts, that message is
    rejected and counted."""
    _good(path)
    data = bytearray(path.read_bytes())
    chunk = _first(ros1_records(bytes(data), end=_index_pos(bytes(data))), OP_CHUNK)
    inner = ros1_records(bytes(data), start=chunk.data_start, end=chunk.end)
    conns = {r.fields["conn"]: _plain_fields(bytes(data[r.data_start: r.end])).get("topic")
             for r in inner if r.op == OP_CONNECTION}
    mine = [r for r in inner if r.op == OP_MSGDATA and conns.get(r.fields["conn"]) == topic.encode()]
    victim = mine[len(mine) // 2]
    data[victim.data_start: victim.end] = b"\xff" * (victim.end - victim.data_start)
    path.write_bytes(bytes(data))
    return "undecodable"


def _ros2(path: Path, storage: str) -> Path:
    return _good(path, storage)


def missing_metadata(path: Path) -> str:
    """A ROS 2 (MCAP) bag folder whose ``metadata.yaml`` is gone."""
    (_ros2(path, "mcap") / "metadata.yaml").unlink()
    return "without metadata.yaml"


def corrupt_metadata(path: Path) -> str:
    """A ROS 2 (sqlite3) bag folder whose ``metadata.yaml`` is not valid YAML."""
    (_ros2(path, "sqlite3") / "metadata.yaml").write_text("rosbag2_bagfile_information: [version: 9, {\n")
    return "YAML"


def incomplete_metadata(path: Path) -> str:
    """A ROS 2 (MCAP) bag folder whose ``metadata.yaml`` lacks its keys."""
    (_ros2(path, "mcap") / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    return "corrupt or truncated bag"


def sqlite_cut(path: Path) -> str:
    """A ROS 2 sqlite3 bag whose database file was cut short."""
    db = next(_ros2(path, "sqlite3").glob("*.db3"))
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    return "malformed"


def mcap_cut(path: Path) -> str:
    """A ROS 2 MCAP bag whose storage file was cut short."""
    storage = next(_ros2(path, "mcap").glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    return "corrupt or truncated bag"


def no_storage(path: Path) -> str:
    """A ROS 2 bag folder with its ``metadata.yaml`` but without its storage file."""
    folder = _ros2(path, "sqlite3")
    for storage in folder.glob("*.db3"):
        storage.unlink()
    return "missing"


def folder_named_bag(path: Path) -> str:
    """An empty folder named like a ROS 1 bag (``<path>.bag/``)."""
    path.mkdir(parents=True)
    return "not a bag"


@dataclass(frozen=True)
class Damage:
    """A kind of damage: how to make it (``make(path)`` writes the damaged bag and returns a fragment of the
    reason the converter gives for it) and the bag's name suffix (``.bag``, ``.bag.active``, "" for a folder)."""

    make: Callable[[Path], str]
    suffix: str


#: Every kind of damage, by name.
DAMAGES: dict[str, Damage] = {
    "wrong_compression": Damage(wrong_compression, ".bag"),
    "truncated_header": Damage(truncated_header, ".bag"),
    "truncated_chunk": Damage(truncated_chunk, ".bag"),
    "truncated_index": Damage(truncated_index, ".bag"),
    "zero_length": Damage(zero_length, ".bag"),
    "garbage_chunk": Damage(garbage_chunk, ".bag"),
    "garbage_bz2_chunk": Damage(garbage_bz2_chunk, ".bag"),
    "unknown_type": Damage(unknown_type, ".bag"),
    "bad_definition": Damage(bad_definition, ".bag"),
    "not_indexed": Damage(not_indexed, ".bag"),
    "active_recording": Damage(active_recording, ".bag.active"),
    "missing_metadata": Damage(missing_metadata, ""),
    "corrupt_metadata": Damage(corrupt_metadata, ""),
    "incomplete_metadata": Damage(incomplete_metadata, ""),
    "sqlite_cut": Damage(sqlite_cut, ""),
    "mcap_cut": Damage(mcap_cut, ""),
    "no_storage": Damage(no_storage, ""),
    "folder_named_bag": Damage(folder_named_bag, ".bag"),
}


def write_damaged_bag(folder: str | Path, name: str, kind: str) -> tuple[Path, str]:
    """Write a bag damaged by ``kind`` (a key of :data:`DAMAGES`) as ``folder/<name><suffix>``; returns its
    path and a fragment of the reason the converter gives for it."""
    damage = DAMAGES[kind]
    path = Path(folder) / f"{name}{damage.suffix}"
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, damage.make(path)
