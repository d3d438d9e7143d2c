"""Every generated interface travels through a real publisher/subscriber pair over Fast DDS."""

from __future__ import annotations

import threading

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
msg = pytest.importorskip("kuavo_smolvla_ros.msg")

pytestmark = pytest.mark.ros


def _stamp(message, sec=12, nanosec=345):
    message.header.stamp.sec, message.header.stamp.nanosec = sec, nanosec
    message.header.frame_id = "base_link"
    return message


def _end_effector(names=("left_claw", "right_claw")):
    data = msg.EndEffectorData()
    data.name = list(names)
    data.position = [10.0, 90.0]
    data.velocity = [50.0, 50.0]
    data.effort = [1.0, 1.5]
    return data


def _sensors():
    m = _stamp(msg.SensorsData())
    m.sensor_time.sec = 11
    m.joint_data.joint_q = [i / 10 for i in range(28)]
    m.joint_data.joint_v = [0.5] * 28
    m.joint_data.joint_vd = [0.0] * 28
    m.joint_data.joint_torque = [1.0] * 28
    m.imu_data.gyro.x, m.imu_data.acc.z, m.imu_data.quat.w = 0.1, 9.81, 1.0
    m.end_effector_data = _end_effector()
    return m


def _claw_state():
    m = _stamp(msg.LejuClawState())
    m.state = [msg.LejuClawState.STATE_REACHED, msg.LejuClawState.STATE_ERROR]
    m.data = _end_effector()
    return m


def _claw_command():
    m = _stamp(msg.LejuClawCommand())
    m.data = _end_effector()
    return m


def _hand():
    m = _stamp(msg.RobotHandPosition())
    m.left_hand_position = [0, 20, 40, 60, 80, 100]
    m.right_hand_position = [100] * 6
    return m


def _chunk():
    m = _stamp(msg.ActionChunk())
    m.instruction, m.seq, m.chunk_size, m.action_dim = "task1", 7, 50, 16
    m.joint_names = [f"j{i}" for i in range(16)]
    m.dt, m.n_execute, m.start_index, m.num_inference_steps, m.inference_time = 0.1, 8, 2, 10, 0.05
    m.actions = np.arange(800, dtype=np.float32) / 800
    return m


def _status():
    m = _stamp(msg.PolicyStatus())
    m.state = msg.PolicyStatus.STATE_STALE
    m.message, m.active_instruction, m.active_task = "camera head_cam_h stale", "Pick up", "weighing"
    m.stale_streams = ["head_cam_h"]
    m.enabled, m.dry_run, m.num_inference_steps = True, False, 10
    m.inference_latency.count, m.inference_latency.p95 = 20, 0.12
    m.sensor_to_action_latency.p99 = 0.2
    m.control_jitter.max = 0.001
    m.queue_depth, m.inferences, m.actions_published = 5, 3, 40
    m.actions_held, m.actions_clamped, m.non_finite_replaced, m.inputs_rejected = 1, 2, 3, 4
    return m


def _latency():
    m = msg.LatencyStats()
    m.count, m.mean, m.p50, m.p95, m.p99, m.max = 100, 0.01, 0.009, 0.02, 0.03, 0.04
    return m


def _imu():
    m = msg.ImuData()
    m.free_acc.y, m.quat.x = -0.2, 0.5
    return m


def _joint_data():
    m = msg.JointData()
    m.joint_q = [0.1, 0.2]
    return m


FACTORIES = {
    "SensorsData": _sensors, "JointData": _joint_data, "ImuData": _imu, "EndEffectorData": _end_effector,
    "LejuClawCommand": _claw_command, "LejuClawState": _claw_state, "RobotHandPosition": _hand,
    "ActionChunk": _chunk, "PolicyStatus": _status, "LatencyStats": _latency,
}


def _as_plain(message):
    """Nested dict of a message's fields (numpy arrays as lists) for equality checks."""
    if hasattr(message, "get_fields_and_field_types"):
        return {f: _as_plain(getattr(message, f)) for f in message.get_fields_and_field_types()}
    if isinstance(message, np.ndarray | list | tuple):
        return [_as_plain(v) for v in message]
    if isinstance(message, np.generic):
        return message.item()
    return message


def test_every_msg_file_has_a_generated_class():
    from pathlib import Path

    names = {p.stem for p in (Path(__file__).parent.parent / "msg").glob("*.msg")}
    assert names == set(FACTORIES)
    for name in names:
        assert getattr(msg, name).__module__.startswith("kuavo_smolvla_ros.msg")


def test_constants_are_exposed():
    status = msg.PolicyStatus
    assert [status.STATE_WAITING, status.STATE_RUNNING, status.STATE_STALE, status.STATE_HOLDING,
            status.STATE_ERROR, status.STATE_DISABLED] == [0, 1, 2, 3, 4, 5]
    assert msg.LejuClawState.STATE_GRABBED == 3 and msg.LejuClawState.STATE_ERROR == -1


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_roundtrip_over_dds(ros_node, name):
    from rclpy.executors import SingleThreadedExecutor

    cls = getattr(msg, name)
    sent = FACTORIES[name]()
    received: list = []
    arrived = threading.Event()

    def on_message(m):
        received.append(m)
        arrived.set()

    topic = f"/test_interfaces/{name.lower()}"
    ros_node.create_subscription(cls, topic, on_message, 10)
    publisher = ros_node.create_publisher(cls, topic, 10)
    executor = SingleThreadedExecutor(context=ros_node.context)
    executor.add_node(ros_node)
    try:
        # Publish until the subscription has matched and the message arrived (bounded).
        for _ in range(100):
            if publisher.get_subscription_count() > 0:
                publisher.publish(sent)
            executor.spin_once(timeout_sec=0.05)
            if arrived.is_set():
                break
    finally:
        executor.remove_node(ros_node)
        executor.shutdown()
    assert arrived.is_set(), f"{name} never arrived over DDS"
    assert _as_plain(received[0]) == _as_plain(sent)


def test_robot_mappings_accept_the_generated_messages():
    from kuavo_smolvla_ros import robot
    from kuavo_smolvla_ros.contract.kuavo import arms_from_joint_q
    from kuavo_smolvla_ros.contract.profile import load_profile

    # The codec's mapping (the decoder would also refuse these test values as implausible joint angles).
    profile = load_profile("kuavo4pro")
    arms = arms_from_joint_q(_sensors().joint_data.joint_q, profile.state.joint_q, profile.name)
    left, right = profile.gripper.decode_state(_claw_state())
    state = robot.compose(arms[:7], left, arms[7:], right)
    np.testing.assert_allclose(state[robot.LEFT_ARM], [i / 10 for i in range(12, 19)])
    np.testing.assert_allclose(state[robot.RIGHT_ARM], [i / 10 for i in range(19, 26)])
    assert robot.gripper_units(state) == pytest.approx((0.1, 0.9))
