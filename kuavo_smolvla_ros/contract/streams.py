"""The streams of a robot profile, decoded into policy values and encoded back into messages.

:class:`StreamDecoder` is the one place where a message becomes a stream sample: the live node's callbacks
and the bag converter both call it, so training data and robot inputs are read by the same code
(``test_conversion_parity`` holds them to it). :class:`StreamEncoder` is its inverse, used by the simulator
node, the recorder and the node's command outputs. Both follow a :class:`~.profile.RobotProfile`. No ROS
imports: decoders read rclpy messages and rosbags records alike; encoders return ``(topic, type, fields)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kuavo_smolvla_ros import images, robot
from kuavo_smolvla_ros.contract import kuavo
from kuavo_smolvla_ros.contract.end_effectors import NonFiniteError, Units, named_values
from kuavo_smolvla_ros.contract.fields import Fields, encode_jpeg, header, joint_state_fields, jpeg_fields
from kuavo_smolvla_ros.contract.profile import RobotProfile, SyncPolicy

#: Stream roles besides the cameras (which go by their names).
STATE = "state"
ACTION = "action"
GRIPPER_STATE = "gripper_state"
GRIPPER_COMMAND = "gripper_command"
#: (topic, message type short name, fields): one message to publish or write.
Encoded = tuple[str, str, Fields]


@dataclass(frozen=True)
class Stream:
    """A topic of the profile: its role, the message types it may carry and how it is sampled (None: the
    latest value is held and combined with each state message, as for a separate gripper state)."""

    role: str
    topic: str
    types: tuple[str, ...]
    sync: SyncPolicy | None


def input_streams(profile: RobotProfile) -> list[Stream]:
    """The streams the policy reads: cameras, joint state and (if separate) the gripper state."""
    streams = [Stream(c.name, c.topic, ("CompressedImage",) if c.encoding == "compressed" else ("Image",), c.sync)
               for c in profile.cameras]
    state_type = "SensorsData" if profile.state.source == "kuavo_sensors" else "JointState"
    streams.append(Stream(STATE, profile.state.topic, (state_type,), profile.state.sync))
    if profile.has_gripper_state:
        streams.append(Stream(GRIPPER_STATE, profile.end_effector.state_topic, (profile.gripper.state_type,), None))
    return streams


def recorded_streams(profile: RobotProfile) -> list[Stream]:
    """The streams a recording needs: the inputs, the action and (if separate) the gripper command. Cameras
    may be recorded compressed or raw whatever the live encoding."""
    streams = [Stream(s.role, s.topic, ("CompressedImage", "Image"), s.sync) if s.role in profile.camera_names
               else s for s in input_streams(profile)]
    streams.append(Stream(ACTION, profile.action.topic, ("JointState",), profile.action.sync))
    if profile.has_gripper_command:
        ee = profile.end_effector
        streams.append(Stream(GRIPPER_COMMAND, ee.command_topic, (profile.gripper.command_type,), ee.command_sync))
    return streams


def _arm_units(vector: np.ndarray, units: str) -> np.ndarray:
    """Degrees -> radians for the arm entries of a 14-arm or 16-layout vector (grippers are 0..1 either way)."""
    if units != "deg":
        return vector
    vector = vector.copy()
    if vector.shape[0] == robot.ACTION_DIM:
        vector[robot.ARM_INDICES] = np.radians(vector[robot.ARM_INDICES])
    else:
        vector = np.radians(vector)
    return vector


def _to_units(vector: Sequence[float], units: str) -> np.ndarray:
    """Radians -> the stream's units (inverse of :func:`_arm_units`)."""
    vector = np.asarray(vector, dtype=np.float64).copy()
    if units == "deg":
        if vector.shape[0] == robot.ACTION_DIM:
            vector[robot.ARM_INDICES] = np.degrees(vector[robot.ARM_INDICES])
        else:
            vector = np.degrees(vector)
    return vector


def _layout(arms_or_layout: np.ndarray, grippers: Units | None) -> np.ndarray:
    if arms_or_layout.shape[0] == robot.ACTION_DIM:
        return arms_or_layout
    left, right = grippers if grippers is not None else (0.0, 0.0)
    return robot.compose(arms_or_layout[:robot.ARM_DOF], left, arms_or_layout[robot.ARM_DOF:], right)


def _finite(vector: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(vector)):
        raise NonFiniteError(f"{what} contains non-finite values")
    return vector


class StreamDecoder:
    """Messages of a profile's streams -> stream samples (frames, 16-dim states, actions).

    ``image_sizes`` maps a camera to the (height, width) its frames must have; a camera not in it takes
    the size of its first frame (the converter: one size per recording). Every decoder raises
    ``ValueError`` (``images.ImageError`` for frames) with the reason when a message cannot be used.
    """

    def __init__(self, profile: RobotProfile, image_sizes: Mapping[str, tuple[int, int] | None] | None = None):
        self.profile = profile
        self.gripper = profile.gripper
        self.image_sizes: dict[str, tuple[int, int] | None] = dict(image_sizes or {})
        self._pin_sizes = image_sizes is None
        #: The latest gripper state (separate gripper topic); None until the first arrives.
        self.grippers: Units | None = None if profile.has_gripper_state else (0.0, 0.0)

    # ---------------------------------------------------------------------------------- inputs
    def image(self, camera: str, msg: Any) -> images.Frame:
        """A validated, lazily decoded frame of ``camera`` from a CompressedImage or Image."""
        expected = self.image_sizes.get(camera)
        if hasattr(msg, "format"):
            frame = images.compressed_frame(msg.format, msg.data, expected)
        else:
            frame = images.raw_frame(msg.encoding, msg.height, msg.width, msg.step, msg.data, expected)
        if self._pin_sizes:
            self.image_sizes.setdefault(camera, (frame.height, frame.width))
        return frame

    def update_grippers(self, msg: Any) -> Units:
        """Hold the values of a gripper state message (they complete the following states)."""
        self.grippers = self.gripper.decode_state(msg)
        return self.grippers

    def state(self, msg: Any) -> np.ndarray | None:
        """The 16-dim state of a joint-state message, or None before the first gripper state."""
        spec = self.profile.state
        if spec.source == "kuavo_sensors":
            arms = kuavo.arms_from_joint_q(msg.joint_data.joint_q, spec.joint_q, self.profile.name)
        else:
            arms = _arm_units(named_values(msg.name, msg.position, spec.joint_names, "joint state",
                                           allow_extra=True), spec.units)
        if self.grippers is None and not self.profile.grippers_in_state:
            return None
        return robot.check_plausible(_finite(_layout(arms, self.grippers), "joint state"), "joint state")

    def arm_command(self, msg: Any) -> np.ndarray:
        """The recorded action stream's arm joints (14, rad) or whole layout vector (16)."""
        spec = self.profile.action
        if spec.source == "kuavo_arm_traj":
            return _finite(kuavo.arms_from_arm_traj(msg, self.profile.arm_command_names), "arm command")
        vector = named_values(msg.name, msg.position, spec.joint_names, "action", allow_extra=True)
        return _finite(_arm_units(vector, spec.units), "action")

    def gripper_command(self, msg: Any) -> Units:
        """(left, right) layout values of a recorded gripper command."""
        return self.gripper.decode_command(msg)

    @staticmethod
    def action(arm: np.ndarray, grippers: Units | None) -> np.ndarray:
        """The 16-dim action from an action-stream sample and (if separate) the gripper command sample."""
        return _layout(np.asarray(arm, dtype=np.float64), grippers)


class StreamEncoder:
    """16-dim values -> the profile's messages, as ``(topic, type, fields)``: what the robot (or its recorder)
    would publish. The inverse of :class:`StreamDecoder` (a round trip returns the values)."""

    def __init__(self, profile: RobotProfile):
        self.profile = profile
        self.gripper = profile.gripper

    def camera(self, camera: str, image: np.ndarray, stamp: float, jpeg: bytes | None = None,
               quality: int = 90) -> Encoded:
        """A frame (HxWx3 uint8 RGB) on ``camera``'s topic: JPEG (``jpeg`` if given) or raw rgb8 by its encoding."""
        spec = self.profile.camera(camera)
        if spec.encoding == "compressed":
            return spec.topic, "CompressedImage", jpeg_fields(jpeg or encode_jpeg(image, quality), stamp, camera)
        height, width = image.shape[:2]
        return spec.topic, "Image", {"header": header(stamp, camera), "height": height, "width": width,
                                     "encoding": "rgb8", "is_bigendian": 0, "step": 3 * width,
                                     "data": np.ascontiguousarray(image, dtype=np.uint8).tobytes()}

    def joint_state(self, state16: Sequence[float], stamp: float) -> Encoded:
        """The joint-state message of a measured 16-dim state (with the grippers only if it carries them)."""
        spec = self.profile.state
        state = np.asarray(state16, dtype=np.float64)
        if spec.source == "kuavo_sensors":
            return spec.topic, "SensorsData", kuavo.sensors_fields(state, stamp, spec.joint_q)
        values = state if self.profile.grippers_in_state else robot.arm_radians(state)
        return spec.topic, "JointState", joint_state_fields(spec.joint_names, _to_units(values, spec.units), stamp)

    def gripper_state(self, units: Sequence[float], stamp: float, codes: Sequence[int] | None = None) -> Encoded:
        """The end effector's state message for (left, right) layout values."""
        return (self.profile.end_effector.state_topic, self.gripper.state_type,
                self.gripper.state_fields(units, stamp, codes))

    def state(self, state16: Sequence[float], stamp: float) -> list[Encoded]:
        """Every message reporting a 16-dim state: the joint state and, if separate, the gripper state."""
        out = [self.joint_state(state16, stamp)]
        if self.profile.has_gripper_state:
            out.append(self.gripper_state(robot.gripper_units(state16), stamp))
        return out

    def arm_command(self, action16: Sequence[float], stamp: float) -> Encoded:
        """The action stream's message for a 16-dim action (``/kuavo_arm_traj`` degrees, or a JointState)."""
        spec = self.profile.action
        action = np.asarray(action16, dtype=np.float64)
        if spec.source == "kuavo_arm_traj":
            return spec.topic, "JointState", kuavo.arm_traj_fields(action, stamp, self.profile.arm_command_names)
        values = action if self.profile.grippers_in_action else robot.arm_radians(action)
        return spec.topic, "JointState", joint_state_fields(spec.joint_names, _to_units(values, spec.units), stamp)

    def gripper_command(self, units: Sequence[float], stamp: float) -> Encoded:
        """The end effector's command message for (left, right) layout values."""
        return (self.profile.end_effector.command_topic, self.gripper.command_type,
                self.gripper.command_fields(units, stamp))

    def action(self, action16: Sequence[float], stamp: float) -> list[Encoded]:
        """Every message commanding a 16-dim action: the arm command and, if separate, the gripper command."""
        out = [self.arm_command(action16, stamp)]
        if self.profile.has_gripper_command:
            out.append(self.gripper_command(robot.gripper_units(action16), stamp))
        return out
