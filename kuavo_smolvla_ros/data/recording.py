"""Write Kuavo recordings as real bags from numpy values: the simulator's recorder, tests and benchmarks.

:class:`KuavoRecorder` writes the topics the robot's recorder writes (cameras as JPEG
``CompressedImage``, ``/sensors_data_raw``, claw state, ``/kuavo_arm_traj`` in degrees, claw command)
in a ROS 1 bag with the ``kuavo_msgs`` types or a ROS 2 bag (sqlite3 or MCAP) with this package's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.data.bags import KUAVO_TYPES, ROS1_PACKAGE, BagWriter
from kuavo_smolvla_ros.resources import PACKAGE_NAME

JOINT_STATE = "sensor_msgs/msg/JointState"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """An HxWx3 uint8 RGB image as JPEG bytes."""
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


class KuavoRecorder:
    """A Kuavo bag being written; ``storage`` is ``ros1``, ``sqlite3`` or ``mcap``. Times are seconds."""

    def __init__(self, path: str | Path, storage: str = "ros1",
                 gripper: robot.GripperScaling = robot.GRIPPERS["leju_claw"]):
        self.bag = BagWriter(path, storage)
        self.ros1 = self.bag.ros1
        self.gripper = gripper
        self.path = self.bag.path

    def __enter__(self) -> KuavoRecorder:
        self.bag.__enter__()
        self.T = self.bag.types()
        return self

    def __exit__(self, *exc) -> None:
        self.bag.__exit__(*exc)

    def kuavo_type(self, name: str) -> str:
        """The full type name of a Kuavo message (``SensorsData`` -> ``kuavo_msgs/msg/sensorsData`` in ROS 1)."""
        return f"{ROS1_PACKAGE}/msg/{KUAVO_TYPES[name]}" if self.ros1 else f"{PACKAGE_NAME}/msg/{name}"

    def _time(self, t: float):
        sec = int(np.floor(t))
        return self.T["builtin_interfaces/msg/Time"](sec=sec, nanosec=min(round((t - sec) * 1e9), 999_999_999))

    def header(self, t: float, frame_id: str = ""):
        extra = {"seq": 0} if self.ros1 else {}
        return self.T["std_msgs/msg/Header"](stamp=self._time(t), frame_id=frame_id, **extra)

    def _end_effector(self, positions: Sequence[float]):
        return self.T[self.kuavo_type("EndEffectorData")](
            name=list(robot.CLAW_NAMES), position=np.asarray(positions, dtype=np.float64),
            velocity=np.zeros(2), effort=np.zeros(2))

    def camera(self, topic: str, t: float, jpeg: bytes, stamp: float | None = None) -> None:
        msg = self.T[COMPRESSED_IMAGE](header=self.header(t if stamp is None else stamp),
                                       format="rgb8; jpeg compressed bgr8", data=np.frombuffer(jpeg, dtype=np.uint8))
        self.bag.write(topic, COMPRESSED_IMAGE, msg, t)

    def sensors(self, t: float, state16: Sequence[float], stamp: float | None = None,
                topic: str = robot.TOPICS.sensors) -> None:
        """``/sensors_data_raw`` with the arm joints of a layout vector (legs and head 0)."""
        state = np.asarray(state16, dtype=np.float64)
        q = np.zeros(robot.SENSORS_JOINT_COUNT)
        q[robot.SENSORS_LEFT_ARM] = state[robot.LEFT_ARM]
        q[robot.SENSORS_RIGHT_ARM] = state[robot.RIGHT_ARM]
        zeros = np.zeros(robot.SENSORS_JOINT_COUNT)
        vec = self.T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81)
        quat = self.T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
        msg = self.T[self.kuavo_type("SensorsData")](
            header=self.header(t if stamp is None else stamp), sensor_time=self._time(t),
            joint_data=self.T[self.kuavo_type("JointData")](joint_q=q, joint_v=zeros, joint_vd=zeros,
                                                           joint_torque=zeros),
            imu_data=self.T[self.kuavo_type("ImuData")](gyro=vec, acc=vec, free_acc=vec, quat=quat),
            end_effector_data=self._end_effector([0.0, 0.0]))
        self.bag.write(topic, self.kuavo_type("SensorsData"), msg, t)

    def claw_state(self, t: float, grippers: Sequence[float], topic: str = robot.TOPICS.claw_state) -> None:
        """``/leju_claw_state`` for gripper values in 0..1."""
        raw = [self.gripper.unit_to_command(u) * self.gripper.state_scale / self.gripper.command_scale
               for u in grippers]
        msg = self.T[self.kuavo_type("LejuClawState")](header=self.header(t), state=np.array([2, 2], dtype=np.int8),
                                                       data=self._end_effector(raw))
        self.bag.write(topic, self.kuavo_type("LejuClawState"), msg, t)

    def arm_command(self, t: float, action16: Sequence[float], topic: str = robot.TOPICS.arm_command) -> None:
        """``/kuavo_arm_traj``: the 14 arm joints of an action, in degrees."""
        msg = self.T[JOINT_STATE](header=self.header(t), name=list(robot.ARM_COMMAND_NAMES),
                                  position=robot.arm_command_degrees(action16), velocity=np.zeros(0),
                                  effort=np.zeros(0))
        self.bag.write(topic, JOINT_STATE, msg, t)

    def claw_command(self, t: float, action16: Sequence[float], topic: str = robot.TOPICS.claw_command) -> None:
        """``/leju_claw_command`` for the grippers of an action."""
        msg = self.T[self.kuavo_type("LejuClawCommand")](
            header=self.header(t), data=self._end_effector(robot.claw_command_positions(action16, self.gripper)))
        self.bag.write(topic, self.kuavo_type("LejuClawCommand"), msg, t)

    def joint_state(self, topic: str, t: float, vector16: Sequence[float], stamp: float | None = None) -> None:
        """A JointState with the layout's names (generic ROS 2 recordings)."""
        msg = self.T[JOINT_STATE](header=self.header(t if stamp is None else stamp), name=list(robot.JOINT_NAMES),
                                  position=np.asarray(vector16, dtype=np.float64), velocity=np.zeros(0),
                                  effort=np.zeros(0))
        self.bag.write(topic, JOINT_STATE, msg, t)
