"""Shared pieces of the ROS benchmarks: a sensor feeder/recorder node and node processes to measure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import rclpy
from kuavo_smolvla_ros.msg import PolicyStatus
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import RobotProfile, load_profile, parse_overrides
from kuavo_smolvla_ros.ros.spin import spinning_in_background

ROOT = Path(__file__).resolve().parent.parent
MID_STATE = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
#: The benchmarks' robot: /joint_states in, three cameras (JPEG, or raw rgb8 on the image_raw topics).
PROFILE = "ros2_joint_state"


def profile_overrides(camera_type: str) -> list[str]:
    """The ``profile_overrides`` of the benchmark robot for ``compressed`` or ``raw`` cameras."""
    if camera_type == "compressed":
        return []
    return [item for c in load_profile(PROFILE).cameras for item in
            (f"cameras.{c.name}.encoding=raw", f"cameras.{c.name}.topic={c.topic.removesuffix('/compressed')}")]


def bench_profile(camera_type: str) -> RobotProfile:
    return load_profile(PROFILE, parse_overrides(profile_overrides(camera_type)))


class Feeder(Node):
    """Publishes three cameras (raw rgb8 or JPEG) and /joint_states; records actions and status."""

    def __init__(self, context, camera_type: str, height: int = 480, width: int = 640, camera_hz: float = 30.0,
                 state_hz: float = 100.0):
        super().__init__("bench_feeder", context=context)
        self.camera_type = camera_type
        profile = bench_profile(camera_type)
        rng = np.random.default_rng(0)
        self.images = {c.name: rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for c in profile.cameras}
        self.jpegs = {n: cv2.imencode(".jpg", im)[1].tobytes() for n, im in self.images.items()}
        msg_type = CompressedImage if camera_type == "compressed" else Image
        self.camera_pubs = {c.name: self.create_publisher(msg_type, c.topic, qos_profile_sensor_data)
                            for c in profile.cameras}
        # Built once, only the stamp changes: the feeder's own cost stays out of the transport latency
        # the node measures (receive time - stamp).
        self.camera_messages = {name: self._camera_message(name) for name in self.camera_pubs}
        self.state_pub = self.create_publisher(JointState, profile.state.topic, qos_profile_sensor_data)
        self.action_times: list[float] = []
        self.status: PolicyStatus | None = None
        self.lock = threading.Condition()
        self.create_subscription(JointState, "/kuavo_smolvla/action", self._on_action, 100)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(PolicyStatus, "/kuavo_smolvla/status", self._on_status, latched)
        self.create_timer(1.0 / camera_hz, self._publish_cameras)
        self.create_timer(1.0 / state_hz, self._publish_state)

    def _camera_message(self, name: str):
        if self.camera_type == "compressed":
            return CompressedImage(format="jpeg", data=self.jpegs[name])
        image = self.images[name]
        return Image(height=image.shape[0], width=image.shape[1], encoding="rgb8", step=image.shape[1] * 3,
                     data=image.tobytes())

    def _publish_cameras(self) -> None:
        for name, publisher in self.camera_pubs.items():
            msg = self.camera_messages[name]
            msg.header.stamp = self.get_clock().now().to_msg()
            publisher.publish(msg)

    def _publish_state(self) -> None:
        msg = JointState(name=list(robot.JOINT_NAMES), position=MID_STATE.tolist())
        msg.header.stamp = self.get_clock().now().to_msg()
        self.state_pub.publish(msg)

    def _on_action(self, _msg) -> None:
        with self.lock:
            self.action_times.append(time.perf_counter())
            self.lock.notify_all()

    def _on_status(self, msg: PolicyStatus) -> None:
        with self.lock:
            self.status = msg
            self.lock.notify_all()

    def wait_actions(self, count: int, timeout: float) -> list[float]:
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.action_times) >= count, timeout):
                raise TimeoutError(f"only {len(self.action_times)} of {count} actions in {timeout:.0f} s")
            return list(self.action_times)


class FeederSession:
    """A Feeder spinning in a background thread of this process."""

    def __init__(self, camera_type: str, **kwargs):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Feeder(self.context, camera_type, **kwargs)
        self._spinning = ExitStack()
        self._spinning.enter_context(spinning_in_background(self.context, self.node))

    def close(self) -> None:
        try:
            self._spinning.close()
        finally:
            self.node.destroy_node()
            rclpy.shutdown(context=self.context)

    def __enter__(self) -> Feeder:
        return self.node

    def __exit__(self, *exc) -> None:
        self.close()


def start_process(command: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def policy_node_command(checkpoint: Path, camera_type: str, rate_hz: float, **params) -> list[str]:
    """The installed policy_node, joint_state input, the given cameras, no robot adapters."""
    overrides = profile_overrides(camera_type)
    values = {
        "checkpoint": str(checkpoint), "robot_profile": PROFILE, "control_rate_hz": float(rate_hz),
        "default_instruction": "task1", "dry_run": True, "seed": 0, "torch_threads": 1,
        "status_rate_hz": 2.0, "max_input_age_s": 1.0,
    } | ({"profile_overrides": f"[{','.join(overrides)}]"} if overrides else {}) | params
    command = [sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node", "--ros-args"]
    for key, value in values.items():
        command += ["-p", f"{key}:={str(value).lower() if isinstance(value, bool) else value}"]
    return command


def period_stats(times: list[float], rate_hz: float) -> dict:
    """Jitter (|period - 1/rate|) p50/p99 in ms and stalls (periods > 1.5/rate) per 1000 ticks."""
    periods = np.diff(np.asarray(times))
    nominal = 1.0 / rate_hz
    jitter = np.abs(periods - nominal)
    stalls = int(np.sum(periods > 1.5 * nominal))
    return {
        "ticks": len(periods), "jitter_p50_ms": float(np.percentile(jitter, 50) * 1e3),
        "jitter_p99_ms": float(np.percentile(jitter, 99) * 1e3), "max_period_ms": float(periods.max() * 1e3),
        "stalls": stalls, "stalls_per_1000": stalls * 1000.0 / len(periods),
    }
