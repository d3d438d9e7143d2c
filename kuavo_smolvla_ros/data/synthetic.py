"""Kuavo bags whose content is known exactly: for the converter's tests and benchmark.

Joint angles and commands are known functions of time (:func:`state_at`, :func:`action_at`), every
camera frame encodes its own number (:func:`frame_image` / :func:`frame_number`), each stream runs at
its own rate, record times may be jittered and cameras may drop frames over given intervals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.fields import encode_jpeg
from kuavo_smolvla_ros.contract.profile import RobotProfile
from kuavo_smolvla_ros.data.recording import KuavoRecorder

_MID = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2


def state_at(t: float) -> np.ndarray:
    """The measured 16-dim state ``t`` seconds into the episode (arms inside their limits)."""
    phase = 0.7 * t + 0.3 * np.arange(robot.STATE_DIM)
    state = _MID + 0.3 * np.sin(phase)
    state[robot.GRIPPER_INDICES] = 0.5 + 0.4 * np.sin(0.9 * t + np.array([0.0, 1.0]))
    return state


def action_at(t: float) -> np.ndarray:
    """The commanded 16-dim action at ``t`` (the state 0.2 s ahead)."""
    return state_at(t + 0.2)


def frame_image(number: int, height: int, width: int) -> np.ndarray:
    """A flat image whose red and green levels spell ``number`` (0..1023), robust to JPEG and video codecs."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = 16 * (number % 16) + 8
    image[..., 1] = 16 * ((number // 16) % 16) + 8
    image[..., 2] = 16 * (number // 256) + 8
    return image


def frame_number(image: np.ndarray) -> int:
    """The number :func:`frame_image` encoded (from the image's centre)."""
    h, w = image.shape[:2]
    r, g, b = (round((v - 8) / 16) for v in image[h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(-1, 3).mean(axis=0))
    return int(r + 16 * g + 256 * b)


def raw_image_fields(image: np.ndarray, encoding: str, stamp: float, frame_id: str = "") -> dict:
    """A ``sensor_msgs/Image`` of an RGB image in ``encoding`` (``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, or
    ``mono8``: its grey levels)."""
    height, width = image.shape[:2]
    if encoding == "mono8":
        pixels = image.mean(axis=2).astype(np.uint8)
    else:
        pixels = image[:, :, ::-1] if encoding.startswith("bgr") else image
        if encoding.endswith("a8"):
            pixels = np.concatenate([pixels, np.full((height, width, 1), 255, np.uint8)], axis=2)
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    return {"header": {"stamp": stamp, "frame_id": frame_id}, "height": height, "width": width,
            "encoding": encoding, "is_bigendian": 0, "step": pixels.strides[0], "data": pixels.tobytes()}


def textured_image(number: int, height: int, width: int, base: np.ndarray) -> np.ndarray:
    """A camera-like frame (smooth texture, moving) for timing: JPEG sizes like real 640x480 frames."""
    return np.roll(base, shift=(3 * number) % width, axis=1)[:height, :width]


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, size=(height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    import cv2

    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 1.5, size=smooth.shape), 0, 255).astype(np.uint8)


@dataclass
class SyntheticBag:
    """What to write; rates in Hz, times in seconds relative to ``start``."""

    seconds: float = 3.0
    start: float = 100.0
    camera_hz: float = 30.0
    sensors_hz: float = 100.0
    claw_state_hz: float = 50.0
    command_hz: float = 50.0
    claw_command_hz: float = 20.0
    image_size: tuple[int, int] = (48, 64)
    #: Record times jitter uniformly by up to this much (header stamps stay exact).
    jitter_s: float = 0.0
    #: camera name -> (from, to): frames recorded in that interval are dropped.
    camera_gaps: dict[str, tuple[float, float]] = field(default_factory=dict)
    textured: bool = False
    #: Topics left out (a bag with a missing topic) or written as JointState (a type mismatch).
    omit_topics: tuple[str, ...] = ()
    joint_state_topics: tuple[str, ...] = ()
    seed: int = 0
    #: Nominal time -> seconds the recording's clock (record times and header stamps) jumps by from then on
    #: (negative: back, as a simulator reset or a rewound /clock; positive: forwards, as a paused simulator).
    #: Messages are still written in the order they happened.
    clock_jumps: dict[float, float] = field(default_factory=dict)
    #: Stream name -> (from, seconds): that stream's header stamps jump by ``seconds`` from nominal time
    #: ``from`` on (a driver restarted on another clock); record times are unchanged.
    stamp_jumps: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: Camera name -> a raw ``sensor_msgs/Image`` encoding its frames are written in instead of JPEG
    #: (``rgb8``, ``bgr8``; or one the converter refuses, such as ``mono8``, whose frames are grey levels).
    raw_encodings: dict[str, str] = field(default_factory=dict)
    #: Camera name -> numbers of its frames whose JPEG data is cut short (header and end marker intact: only
    #: decoding finds it).
    corrupt_frames: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def clock_offset(self, nominal: float) -> float:
        """Seconds the clock has jumped by at nominal time ``nominal``."""
        return sum(seconds for at, seconds in self.clock_jumps.items() if nominal >= at)

    def times(self, rate: float, rng: np.random.Generator) -> Iterator[tuple[int, float, float]]:
        """(index, nominal time, record time) of each message of a stream at ``rate``."""
        for k in range(int(np.floor(self.seconds * rate + 1e-9)) + 1):
            nominal = k / rate
            yield k, nominal, nominal + (rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0)


def write_synthetic_bag(path: str | Path, storage: str = "ros1", spec: SyntheticBag | None = None,
                        profile: RobotProfile | str | None = None, compression: str | None = None) -> dict:
    """Write the bag with ``profile``'s streams (default ``kuavo4pro``); returns per stream the (nominal,
    record) times written (record times relative to ``start``, clock jumps included), for expectations.
    Streams: the camera names, ``sensors`` (the joint state), ``claw_state`` and ``claw_command`` (the end
    effector's, if the profile has separate topics) and ``arm_command`` (the action stream); cameras and
    joint states are stamped with their nominal time, the others with their record time. ``compression``:
    ROS 1 chunks compressed with ``bz2`` or ``lz4``."""
    spec = spec or SyntheticBag()
    rng = np.random.default_rng(spec.seed)
    height, width = spec.image_size
    base = texture(height, width * 2, spec.seed) if spec.textured else None
    events: list[tuple[float, float, str, tuple]] = []  # (arrival, record time, stream, (stamp, nominal, ...))
    written: dict[str, list[tuple[float, float]]] = {}
    with KuavoRecorder(path, storage, profile, compression) as bag:
        profile = bag.profile

        def add(stream: str, arrival: float, nominal: float, args: tuple) -> None:
            record = arrival + spec.clock_offset(arrival)  # the recorder's clock when it arrived
            jump_from, jump = spec.stamp_jumps.get(stream, (0.0, 0.0))
            exact = stream in profile.camera_names or stream == "sensors"
            stamp = nominal + spec.clock_offset(nominal) if exact else record
            stamp += jump if nominal >= jump_from else 0.0
            events.append((arrival, spec.start + record, stream, (spec.start + stamp, nominal, *args)))
            written.setdefault(stream, []).append((nominal, record))

        for camera in profile.cameras:
            gap = spec.camera_gaps.get(camera.name)
            for k, nominal, record in spec.times(spec.camera_hz, rng):
                if gap and gap[0] <= nominal < gap[1]:
                    continue
                add(camera.name, record, nominal, (k,))
        rates = {"sensors": spec.sensors_hz, "arm_command": spec.command_hz}
        if profile.has_gripper_state:
            rates["claw_state"] = spec.claw_state_hz
        if profile.has_gripper_command:
            rates["claw_command"] = spec.claw_command_hz
        for stream, rate in rates.items():
            for _, nominal, record in spec.times(rate, rng):
                add(stream, record, nominal, ())
        topics = {c.name: c.topic for c in profile.cameras} | {"sensors": profile.state.topic,
                                                               "arm_command": profile.action.topic}
        if profile.end_effector is not None:
            topics |= {"claw_state": profile.end_effector.state_topic,
                       "claw_command": profile.end_effector.command_topic}
        events.sort(key=lambda e: e[0])  # the order they happened (what a recorder writes)
        for _, record, stream, (stamp, t, *args) in events:
            topic = topics[stream]
            if topic in spec.omit_topics:
                continue
            if topic in spec.joint_state_topics:
                bag.joint_state(topic, record, state_at(t))
            elif stream in profile.camera_names:
                k = args[0]
                image = textured_image(k, height, width, base) if base is not None else frame_image(k, height, width)
                if stream in spec.raw_encodings:
                    bag.write((topic, "Image", raw_image_fields(image, spec.raw_encodings[stream], stamp, stream)),
                              record)
                else:
                    jpeg = encode_jpeg(image)
                    if k in spec.corrupt_frames.get(stream, ()):  # its scan data cut in the middle
                        scan = jpeg.index(b"\xff\xda")
                        jpeg = jpeg[: (scan + len(jpeg)) // 2] + b"\xff\xd9"
                    bag.camera(stream, record, jpeg=jpeg, stamp=stamp)
            elif stream == "sensors":
                bag.state(record, state_at(t), stamp=stamp)
            elif stream == "claw_state":
                bag.gripper_state(record, robot.gripper_units(state_at(t)), stamp=stamp)
            elif stream == "arm_command":
                bag.arm_command(record, action_at(t), stamp=stamp)
            else:
                bag.gripper_command(record, action_at(t), stamp=stamp)
    return written
