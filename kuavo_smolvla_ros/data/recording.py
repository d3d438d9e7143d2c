"""Write robot recordings as real bags from numpy values: the simulator's recorder, tests and benchmarks.

:class:`KuavoRecorder` writes what a robot's recorder writes, following a robot profile: the cameras, the
joint state, the end effector's state, the teleoperation command and the end effector's command, encoded
by the contract's :class:`~kuavo_smolvla_ros.contract.streams.StreamEncoder` (the functions the simulator
node publishes with), in a ROS 1 bag with the ``kuavo_msgs`` types or a ROS 2 bag (sqlite3 or MCAP) with
this package's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.fields import joint_state_fields, jpeg_fields
from kuavo_smolvla_ros.contract.profile import RobotProfile, load_profile
from kuavo_smolvla_ros.contract.streams import Encoded, StreamEncoder
from kuavo_smolvla_ros.data.bags import BagWriter


class KuavoRecorder:
    """A bag being written; ``storage`` is ``ros1``, ``sqlite3`` or ``mcap``; ``profile`` a robot profile or its
    name (default ``kuavo4pro``); ``compression`` (ROS 1 only) ``bz2`` or ``lz4`` chunks. Times are seconds;
    ``t`` is the record time, ``stamp`` the header stamp
    (default ``t``)."""

    def __init__(self, path: str | Path, storage: str = "ros1", profile: RobotProfile | str | None = None,
                 compression: str | None = None):
        self.bag = BagWriter(path, storage, compression)
        self.ros1 = self.bag.ros1
        self.profile = load_profile(profile)
        self.encoder = StreamEncoder(self.profile)
        self.path = self.bag.path

    def __enter__(self) -> KuavoRecorder:
        self.bag.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bag.__exit__(*exc)

    def write(self, encoded: Encoded, t: float) -> None:
        """Write one encoded message (topic, type short name, fields) recorded at ``t``."""
        topic, short_type, fields = encoded
        self.bag.write_fields(topic, short_type, fields, t)

    def camera(self, camera: str, t: float, image: np.ndarray | None = None, jpeg: bytes | None = None,
               stamp: float | None = None) -> None:
        """A frame of ``camera`` (HxWx3 uint8 RGB, or ready ``jpeg`` bytes) on its topic."""
        stamp = t if stamp is None else stamp
        if image is None:
            self.write((self.profile.camera(camera).topic, "CompressedImage", jpeg_fields(jpeg, stamp, camera)), t)
        else:
            self.write(self.encoder.camera(camera, image, stamp, jpeg=jpeg), t)

    def state(self, t: float, state16: Sequence[float], stamp: float | None = None) -> None:
        """The joint-state message of a measured layout vector (grippers only if the message carries them)."""
        self.write(self.encoder.joint_state(state16, t if stamp is None else stamp), t)

    def gripper_state(self, t: float, grippers: Sequence[float], stamp: float | None = None) -> None:
        """The end effector's state message for (left, right) gripper values in 0..1."""
        self.write(self.encoder.gripper_state(grippers, t if stamp is None else stamp), t)

    def arm_command(self, t: float, action16: Sequence[float], stamp: float | None = None) -> None:
        """The action stream's message (``/kuavo_arm_traj`` in degrees, or a JointState) for an action."""
        self.write(self.encoder.arm_command(action16, t if stamp is None else stamp), t)

    def gripper_command(self, t: float, action16: Sequence[float], stamp: float | None = None) -> None:
        """The end effector's command message for the grippers of an action."""
        self.write(self.encoder.gripper_command(robot.gripper_units(action16), t if stamp is None else stamp), t)

    def joint_state(self, topic: str, t: float, vector16: Sequence[float], stamp: float | None = None) -> None:
        """A JointState with the layout's names on any topic (e.g. a wrongly typed stream, for tests)."""
        stamp = t if stamp is None else stamp
        self.write((topic, "JointState", joint_state_fields(robot.JOINT_NAMES, vector16, stamp)), t)
