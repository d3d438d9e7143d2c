"""rosbags reading and writing: Kuavo custom types in ROS 1 bags (from the bag's own definitions) and
ROS 2 sqlite3 / MCAP bags, folder search, and clear errors for broken bags."""

from __future__ import annotations

import numpy as np
import pytest

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.end_effectors import LejuClaw
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.data.bags import BagError, BagWriter, bag_topics, find_bags, read_messages

PROFILE = load_profile("kuavo4pro")
SENSORS, CLAW_STATE, CAMERA = PROFILE.state.topic, PROFILE.end_effector.state_topic, PROFILE.cameras[0].topic
NAMES = {
    "ros1": {"sensors": "kuavo_msgs/msg/sensorsData", "joint": "kuavo_msgs/msg/jointData",
             "imu": "kuavo_msgs/msg/imuData", "ee": "kuavo_msgs/msg/endEffectorData",
             "claw": "kuavo_msgs/msg/lejuClawState"},
    "ros2": {"sensors": "kuavo_smolvla_ros/msg/SensorsData", "joint": "kuavo_smolvla_ros/msg/JointData",
             "imu": "kuavo_smolvla_ros/msg/ImuData", "ee": "kuavo_smolvla_ros/msg/EndEffectorData",
             "claw": "kuavo_smolvla_ros/msg/LejuClawState"},
}


def _time(T, t: float):
    return T["builtin_interfaces/msg/Time"](sec=int(t), nanosec=round((t % 1) * 1e9))


def _header(T, t: float, ros1: bool):
    stamp = _time(T, t)
    if ros1:
        return T["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id="")
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id="")


def write_kuavo_bag(path, storage: str, seconds: int = 2, rate: int = 10):
    """A bag whose joint angles are known functions of time: joint_q[i] = 0.01 * i + 0.1 * t."""
    kind = "ros1" if storage == "ros1" else "ros2"
    names = NAMES[kind]
    with BagWriter(path, storage) as bag:
        T = bag.types()
        vec = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.8)
        quat = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
        for k in range(seconds * rate):
            t = 100.0 + k / rate
            q = np.array([0.01 * i + 0.1 * (t - 100.0) for i in range(28)])
            joint = T[names["joint"]](joint_q=q, joint_v=np.zeros(28), joint_vd=np.zeros(28),
                                      joint_torque=np.zeros(28))
            ee = T[names["ee"]](name=["left_claw", "right_claw"], position=np.array([10.0, 90.0]),
                                velocity=np.zeros(2), effort=np.zeros(2))
            sensors = T[names["sensors"]](
                header=_header(T, t, kind == "ros1"), sensor_time=_time(T, t), joint_data=joint,
                imu_data=T[names["imu"]](gyro=vec, acc=vec, free_acc=vec, quat=quat), end_effector_data=ee)
            bag.write(SENSORS, names["sensors"], sensors, t)
            claw = T[names["claw"]](header=_header(T, t, kind == "ros1"), state=np.array([2, 2], dtype=np.int8),
                                    data=ee)
            bag.write(CLAW_STATE, names["claw"], claw, t + 0.001)
            image = T["sensor_msgs/msg/CompressedImage"](header=_header(T, t, kind == "ros1"), format="jpeg",
                                                         data=np.frombuffer(b"\xff\xd8" + bytes([k]) + b"\xff\xd9",
                                                                            dtype=np.uint8))
            bag.write(CAMERA, "sensor_msgs/msg/CompressedImage", image, t + 0.002)
    return path


@pytest.mark.parametrize("storage", ["ros1", "sqlite3", "mcap"])
def test_round_trip_with_kuavo_types(tmp_path, storage):
    path = write_kuavo_bag(tmp_path / ("kuavo.bag" if storage == "ros1" else "kuavo"), storage)
    topics = bag_topics(path)
    assert set(topics) == {SENSORS, CLAW_STATE, CAMERA}
    messages = list(read_messages(path, [SENSORS, CAMERA]))
    sensors = [m for m in messages if m.topic == SENSORS]
    images = [m for m in messages if m.topic != SENSORS]
    assert len(sensors) == len(images) == 20
    assert [m.recorded for m in sensors] == pytest.approx([100.0 + k / 10 for k in range(20)])
    for k, message in enumerate(sensors):
        arms = message.msg.joint_data.joint_q[12:26]
        grippers = LejuClaw(("left_claw", "right_claw"), 100.0, 100.0).decode_state(message.msg.end_effector_data)
        state = robot.compose(arms[:7], grippers[0], arms[7:], grippers[1])
        t = k / 10
        np.testing.assert_allclose(state[robot.LEFT_ARM], [0.01 * i + 0.1 * t for i in range(12, 19)], atol=1e-12)
        assert robot.gripper_units(state) == pytest.approx((0.1, 0.9))
    assert [bytes(m.msg.data)[2] for m in images] == list(range(20))  # frame k carries k


def test_ros1_bag_is_read_from_its_own_definitions(tmp_path):
    """A reader that has never heard of kuavo_msgs decodes them from the bag's connection records."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = write_kuavo_bag(tmp_path / "kuavo.bag", "ros1", seconds=1)
    with AnyReader([path], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        connection = next(c for c in reader.connections if c.topic == SENSORS)
        _, _, raw = next(iter(reader.messages(connections=[connection])))
        msg = reader.deserialize(raw, connection.msgtype)
    assert connection.msgtype == "kuavo_msgs/msg/sensorsData" and len(msg.joint_data.joint_q) == 28


def test_find_bags_searches_folders(tmp_path):
    write_kuavo_bag(tmp_path / "day1" / "a.bag", "ros1", seconds=1)
    write_kuavo_bag(tmp_path / "day2" / "episode_3", "mcap", seconds=1)
    (tmp_path / "day2" / "notes.txt").write_text("not a bag")
    found = find_bags([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["day1/a.bag", "day2/episode_3"]
    with pytest.raises(BagError, match="no such file or folder"):
        find_bags([tmp_path / "missing"])


def test_broken_bags_give_clear_errors(tmp_path):
    good = write_kuavo_bag(tmp_path / "good.bag", "ros1", seconds=1)
    truncated = tmp_path / "truncated.bag"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.bag"
    garbage.write_bytes(b"#ROSBAG V2.0\n" + bytes(100))
    not_a_bag = tmp_path / "photo.bag"
    not_a_bag.write_bytes(b"\x89PNG....")
    mcap = write_kuavo_bag(tmp_path / "cut_mcap", "mcap", seconds=1)
    storage_file = next(mcap.glob("*.mcap"))
    storage_file.write_bytes(storage_file.read_bytes()[:200])
    for path in (truncated, garbage, not_a_bag, mcap):
        with pytest.raises(BagError, match=rf"{path.name}: (corrupt or truncated bag|unreadable)"):
            list(read_messages(path))
    assert len(list(read_messages(good))) == 30
