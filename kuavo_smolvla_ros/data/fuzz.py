"""Arbitrary messages for the converter's input conversions, and the check they must pass: for the property
tests (``test/test_properties_conversion.py``) and the fuzz benchmark (``bench/bench_fuzz_conversion.py``).

Each fuzzed stream is one path of :func:`~kuavo_smolvla_ros.data.episode.decode_message` (the node's
:class:`~kuavo_smolvla_ros.contract.streams.StreamDecoder`, as the converter calls it) under a shipped robot
profile, fed messages of the right ROS type (as a bag delivers them: rosbags records) with arbitrary
content: wrong lengths, NaN/inf/huge values, duplicate and unknown names, random bytes as images, damaged
JPEGs, extreme sizes in image headers, arbitrary header stamps. :func:`check` says whether a message was
accepted or rejected and raises ``AssertionError`` when an accepted output is not finite or has the wrong
shape; any exception other than ``ValueError`` escaping the conversion is a crash (it propagates).
Needs ``hypothesis`` (a development requirement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from hypothesis import strategies as st

from kuavo_smolvla_ros import images, robot
from kuavo_smolvla_ros.contract.end_effectors import UNIT_MARGIN
from kuavo_smolvla_ros.contract.fields import encode_jpeg
from kuavo_smolvla_ros.contract.profile import RobotProfile, load_profile
from kuavo_smolvla_ros.contract.streams import ACTION, GRIPPER_COMMAND, GRIPPER_STATE, STATE, StreamDecoder
from kuavo_smolvla_ros.data.bags import kuavo_typestore
from kuavo_smolvla_ros.data.episode import FUTURE_STAMP_TOLERANCE_S, decode_message, filing_stamp

PACKAGE = "kuavo_smolvla_ros/msg"
#: Frames with more pixels than this are checked but not decoded (decoding is what images.py bounds).
DECODE_PIXELS = 256 * 256


@cache
def _store():
    return kuavo_typestore(False)


def _types():
    return _store().types


def _time(seconds: int, nanoseconds: int):
    return _types()["builtin_interfaces/msg/Time"](sec=seconds, nanosec=nanoseconds)


def _header(seconds: int, nanoseconds: int):
    return _types()["std_msgs/msg/Header"](stamp=_time(seconds, nanoseconds), frame_id="")


# ------------------------------------------------------------------------------------------------ values
#: Floats a message may carry: ordinary joint angles, then NaN, infinities, huge and tiny magnitudes.
floats = st.one_of(
    st.floats(-3.5, 3.5, allow_nan=False),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e39, -1e39, 1e6, 1e308, 5e-324, 0.0, -0.0]),
)
int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)
headers = st.builds(_header, st.one_of(st.integers(0, 2_000_000_000), int32), st.one_of(st.integers(0, 999_999_999),
                                                                                        uint32))


def _lengths(expected: int) -> st.SearchStrategy[int]:
    """Mostly the expected length, else a neighbour, empty, or far too many."""
    return st.one_of(st.just(expected), st.just(expected), st.just(expected), st.integers(0, expected + 3),
                     st.sampled_from([1000]))


@st.composite
def _values(draw, count: int, low: float, high: float) -> np.ndarray:
    """``count`` values: plausible ones (``low``..``high``), half the time with up to three replaced by anything."""
    plain = st.floats(low, high, allow_nan=False)
    values = np.asarray(draw(st.lists(plain, min_size=count, max_size=count)), dtype=np.float64)
    if count and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            values[draw(st.integers(0, count - 1))] = draw(floats)
    return values


def _vectors(expected: int, low: float, high: float) -> st.SearchStrategy[np.ndarray]:
    return _lengths(expected).flatmap(lambda n: _values(n, low, high))


def _names(expected: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    """The expected names (shuffled), with some dropped, repeated or unknown ones added; or none at all."""
    pool = st.sampled_from([*expected, "unknown_joint", "", "zarm_l1_joint ", "left_claw\x00"])
    exact = st.permutations(list(expected))
    damaged = st.tuples(exact, st.lists(pool, max_size=4), st.integers(0, len(expected))).map(
        lambda t: [*t[0][:t[2]], *t[1], *t[0][t[2]:]])
    return st.one_of(exact, exact, exact, damaged, st.just([]), st.lists(pool, max_size=20))


def _named(expected: tuple[str, ...], low: float, high: float
           ) -> st.SearchStrategy[tuple[list[str], np.ndarray]]:
    """(names, positions): positions usually as many as names, sometimes not; values in ``low``..``high``,
    some replaced by anything."""
    def positions(names: list[str]) -> st.SearchStrategy[tuple[list[str], np.ndarray]]:
        count = st.one_of(st.just(len(names)), st.just(len(names)), st.integers(0, len(names) + 2))
        return count.flatmap(lambda n: _values(n, low, high)).map(lambda values: (names, values))

    return _names(expected).flatmap(positions)


def _joint_state(named: tuple[list[str], np.ndarray], header) -> Any:
    names, positions = named
    return _types()["sensor_msgs/msg/JointState"](header=header, name=names, position=positions,
                                                  velocity=np.zeros(0), effort=np.zeros(0))


def _end_effector_data(named: tuple[list[str], np.ndarray]) -> Any:
    names, positions = named
    return _types()[f"{PACKAGE}/EndEffectorData"](name=names, position=positions, velocity=np.zeros(0),
                                                  effort=np.zeros(0))


# ------------------------------------------------------------------------------------------------ images
def _jpeg(number: int, height: int, width: int) -> bytes:
    from kuavo_smolvla_ros.data.synthetic import frame_image

    return encode_jpeg(frame_image(number, height, width))


def _jpeg_claiming(height: int, width: int) -> bytes:
    """A tiny JPEG whose frame header claims ``height`` x ``width`` (a decompression bomb's header)."""
    data = bytearray(_jpeg(1, 8, 8))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _damaged(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        out[position % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


jpeg_payloads = st.one_of(
    st.builds(_jpeg, st.integers(0, 1023), st.integers(1, 48), st.integers(1, 48)),  # good frames
    st.builds(_damaged, st.builds(_jpeg, st.integers(0, 1023), st.integers(8, 48), st.integers(8, 48)),
              st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
              st.one_of(st.none(), st.integers(0, 2000))),  # flipped bytes, cut short
    st.builds(_jpeg_claiming, st.integers(0, 65535), st.integers(0, 65535)),  # any claimed size
    st.binary(max_size=2048),  # random bytes
    st.binary(max_size=512).map(lambda b: b"\xff\xd8" + b + b"\xff\xd9"),  # JPEG markers around garbage
    st.binary(max_size=512).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),  # a PNG signature then garbage
)


def _compressed(header, fmt: str, payload: bytes) -> Any:
    return _types()["sensor_msgs/msg/CompressedImage"](header=header, format=fmt,
                                                       data=np.frombuffer(payload, dtype=np.uint8))


compressed_images = st.builds(_compressed, headers, st.sampled_from(["jpeg", "rgb8; jpeg compressed bgr8", "png", ""]),
                              jpeg_payloads)


def _raw(header, encoding: str, height: int, width: int, step: int, data: bytes) -> Any:
    return _types()["sensor_msgs/msg/Image"](header=header, height=height, width=width, encoding=encoding,
                                             is_bigendian=0, step=step, data=np.frombuffer(data, dtype=np.uint8))


@st.composite
def raw_images(draw) -> Any:
    """``sensor_msgs/Image``: consistent small images, or any sizes, steps and data lengths (up to 2^32 - 1)."""
    encoding = draw(st.one_of(st.sampled_from(list(images.RAW_ENCODINGS)),
                              st.sampled_from(["mono8", "16UC1", "yuv422", "", "RGB8", "rgb8 "])))
    channels = images.RAW_ENCODINGS.get(encoding, (1, False))[0]
    if draw(st.booleans()):
        height, width = draw(st.integers(1, 32)), draw(st.integers(1, 32))
        step = width * channels + draw(st.sampled_from([0, 0, 0, 1, 3, -1]))
        size = height * max(step, 0) + draw(st.sampled_from([0, 0, 0, -1, 1]))
    else:
        height, width = draw(st.one_of(uint32, st.integers(0, 64))), draw(st.one_of(uint32, st.integers(0, 64)))
        step, size = draw(st.one_of(uint32, st.integers(0, 256))), draw(st.integers(0, 4096))
    data = draw(st.binary(min_size=max(size, 0), max_size=max(size, 0)))
    return _raw(draw(headers), encoding, height, width, max(step, 0), data)


# ------------------------------------------------------------------------------------------------ streams
def _sensors(header, joint_q: np.ndarray, sensor_time) -> Any:
    T = _types()
    vector = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81)
    quat = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    zeros = np.zeros(len(joint_q))
    return T[f"{PACKAGE}/SensorsData"](
        header=header, sensor_time=sensor_time,
        joint_data=T[f"{PACKAGE}/JointData"](joint_q=joint_q, joint_v=zeros, joint_vd=zeros, joint_torque=zeros),
        imu_data=T[f"{PACKAGE}/ImuData"](gyro=vector, acc=vector, free_acc=vector, quat=quat),
        end_effector_data=_end_effector_data(([], np.zeros(0))))


def _claw_state(header, named, codes: list[int]) -> Any:
    return _types()[f"{PACKAGE}/LejuClawState"](header=header, state=np.asarray(codes, dtype=np.int8),
                                                data=_end_effector_data(named))


def _claw_command(header, named) -> Any:
    return _types()[f"{PACKAGE}/LejuClawCommand"](header=header, data=_end_effector_data(named))


@dataclass(frozen=True)
class FuzzStream:
    """One input conversion of the converter: a profile, the stream role and its messages."""

    profile: str
    role: str
    messages: st.SearchStrategy[Any]
    describe: str


def streams() -> dict[str, FuzzStream]:
    """Every fuzzed stream by name."""
    kuavo, generic, sim = (load_profile(n) for n in ("kuavo4pro", "ros2_joint_state", "leju_sim"))
    claws = tuple(kuavo.end_effector.names)
    sim_grippers = tuple(sim.end_effector.names)
    codes = st.lists(st.integers(-128, 127), max_size=4)
    return {
        "camera_compressed": FuzzStream("kuavo4pro", "head_cam_h", compressed_images,
                                        "CompressedImage: JPEG/PNG, damaged, bombs, random bytes"),
        "camera_raw": FuzzStream("kuavo4pro", "head_cam_h", raw_images(),
                                 "Image: any encoding, sizes up to 2^32-1, wrong steps and lengths"),
        "sensors_state": FuzzStream("kuavo4pro", STATE, st.builds(_sensors, headers, _vectors(28, -1.0, 0.3),
                                                                   st.builds(_time, int32, uint32)),
                                    "SensorsData joint_q: any length, NaN/inf/huge"),
        "joint_state_state": FuzzStream("ros2_joint_state", STATE,
                                        st.builds(_joint_state, _named(generic.state.joint_names, 0.0, 0.3), headers),
                                        "JointState state by name: duplicates, unknown, missing, lengths"),
        "joint_state_action": FuzzStream("ros2_joint_state", ACTION,
                                         st.builds(_joint_state, _named(generic.action.joint_names, 0.0, 0.3), headers),
                                         "JointState action by name"),
        "kuavo_arm_traj": FuzzStream("kuavo4pro", ACTION,
                                     st.builds(_joint_state, _named(kuavo.arm_command_names, -30.0, 20.0), headers),
                                     "/kuavo_arm_traj degrees: names or none, any values"),
        "claw_state": FuzzStream("kuavo4pro", GRIPPER_STATE,
                                 st.builds(_claw_state, headers, _named(claws, 0.0, 100.0), codes), "lejuClawState"),
        "claw_command": FuzzStream("kuavo4pro", GRIPPER_COMMAND,
                                   st.builds(_claw_command, headers, _named(claws, 0.0, 100.0)), "lejuClawCommand"),
        "sim_gripper_state": FuzzStream("leju_sim", GRIPPER_STATE,
                                        st.builds(_joint_state, _named(sim_grippers, 0.0, 0.8), headers),
                                        "simulator gripper JointState state"),
        "sim_gripper_command": FuzzStream("leju_sim", GRIPPER_COMMAND,
                                          st.builds(_joint_state, _named(sim_grippers, 0.0, 255.0), headers),
                                          "simulator gripper JointState command"),
    }


@cache
def _profile(name: str) -> RobotProfile:
    return load_profile(name)


#: Record times a message may come with (s): mostly after any header stamp, else anything (stamps then lie
#: in its future).
record_times = st.one_of(st.just(2.2e9), st.just(2.2e9), st.floats(0, 2.2e9, allow_nan=False),
                         st.sampled_from([0.0, 100.0, 1.7e9]))


def check(stream: FuzzStream, msg: Any, recorded: float = 100.0, decode: bool = True) -> tuple[str, str]:
    """Run ``msg`` through the converter's conversion of ``stream`` (and its filing stamp, with header
    stamps); returns ``("accepted", "")`` or ``("rejected", reason)``. Raises ``AssertionError`` for an
    accepted output that is not finite or of the wrong shape; any other exception is a crash."""
    profile = _profile(stream.profile)
    decoder = StreamDecoder(profile)
    if stream.role == STATE and decoder.grippers is None:
        decoder.grippers = (0.5, 0.5)  # a gripper state held before: the joint state itself is under test
    try:
        value = decode_message(decoder, stream.role, msg)
        stamp = filing_stamp("header", msg, recorded)
    except ValueError as err:
        return "rejected", str(err)
    assert isinstance(stamp, float) and math.isfinite(stamp) and stamp <= recorded + FUTURE_STAMP_TOLERANCE_S, stamp
    if stream.role in profile.camera_names:
        _check_frame(value, decode)
    elif stream.role == STATE:
        assert value.shape == (robot.STATE_DIM,) and value.dtype == np.float64 and np.all(np.isfinite(value))
        _check_grippers(value[robot.GRIPPER_INDICES])
    elif stream.role == ACTION:
        assert value.shape in ((2 * robot.ARM_DOF,), (robot.ACTION_DIM,)) and np.all(np.isfinite(value))
        action = StreamDecoder.action(value, (0.5, 0.5))
        assert action.shape == (robot.ACTION_DIM,) and np.all(np.isfinite(action))
    elif stream.role == GRIPPER_COMMAND:
        _check_grippers(value)
    else:  # the gripper state is held by the decoder
        assert value is None
        _check_grippers(decoder.grippers)
    return "accepted", ""


def _check_grippers(values) -> None:
    array = np.asarray(values, dtype=np.float64)
    assert array.shape == (2,) and np.all(np.isfinite(array)), values
    assert np.all((array >= -UNIT_MARGIN) & (array <= 1 + UNIT_MARGIN)), values


def _check_frame(frame: images.Frame, decode: bool) -> None:
    assert isinstance(frame, images.Frame) and frame.height > 0 and frame.width > 0
    if not decode or frame.height * frame.width > DECODE_PIXELS:
        return
    try:
        image = frame.decode()
    except ValueError:  # images.ImageError: corrupt data found when decoding (the converter fails the row)
        return
    assert image.shape == (frame.height, frame.width, 3) and image.dtype == np.uint8, image.shape
