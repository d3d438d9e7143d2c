"""Fuzz the real policy_node over DDS: thousands of bad messages per input stream, and what it did with them.

The node runs as its own process (tiny checkpoint, Kuavo 4 Pro profile, 64x64 cameras) while this process
publishes good camera, sensor and claw streams and, one stream at a time, ``--cases`` generated messages per
stream: random bytes, truncated and bomb images, wrong sizes; joint_q of wrong lengths, NaN/inf, 1e6/1e39
joints; claw states with repeated, unknown or missing names, NaN and values off the scale; instructions
without visible characters, control characters, oversized or random text. Each generated message is known
bad or good by construction. Printed per stream: cases sent, bad sent, rejections the node counted (from
/diagnostics "rejected <stream>"), whether the node crashed, and the commands it published that were
non-finite, outside the joint limits or faster than the speed limit per elapsed second of their stamps.

Usage: python bench/bench_fuzz_node.py [--cases 1000] [--rate 100]   (instructions at most 20 per second)
"""

from __future__ import annotations

import argparse
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
import numpy as np
import rclpy
from common import CACHE, machine, save
from diagnostic_msgs.msg import DiagnosticArray
from kuavo_smolvla_ros.msg import EndEffectorData, LejuClawState, SensorsData
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from ros_bench import start_process, stop_process
from sensor_msgs.msg import CompressedImage, JointState
from std_msgs.msg import String

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint
from kuavo_smolvla_ros.ros.spin import spinning_in_background

PROFILE = load_profile("kuavo4pro")
SIDE = 64
MID = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
MAX_VELOCITY, MAX_GRIPPER_VELOCITY = 1.0, 2.0


def _jpeg(rng) -> bytes:
    return cv2.imencode(".jpg", rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))[1].tobytes()


def _png_bomb(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def _jpeg_bomb(height: int, width: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00\xff\xd9"


def camera_case(rng) -> tuple[bytes, bool]:
    """(JPEG/PNG bytes, bad on arrival). Corrupt entropy data is found only when decoded (not counted here)."""
    kind = rng.integers(8)
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 200))), True
    if kind == 1:
        return _jpeg(rng)[: int(rng.integers(2, 200))], True
    if kind == 2:
        return _jpeg_bomb(int(rng.integers(5000, 60000)), int(rng.integers(5000, 60000))), True
    if kind == 3:
        return _png_bomb(int(rng.integers(5000, 60000)), int(rng.integers(5000, 60000))), True
    if kind == 4:  # the wrong size for the node's 64x64
        return cv2.imencode(".jpg", np.zeros((32, 48, 3), np.uint8))[1].tobytes(), True
    return _jpeg(rng), False


def sensors_case(rng) -> tuple[list[float], bool]:
    q = np.zeros(28)
    q[12:19], q[19:26] = MID[robot.LEFT_ARM], MID[robot.RIGHT_ARM]
    kind = rng.integers(7)
    if kind == 0:
        return np.zeros(int(rng.choice([0, 14, 26, 27, 29, 1000]))).tolist(), True
    if kind == 1:
        q[12 + rng.integers(14)] = rng.choice([np.nan, np.inf, -np.inf])
        return q.tolist(), True
    if kind == 2:
        q[12 + rng.integers(14)] = rng.choice([1e6, -1e6, 1e39, 5.0])
        return q.tolist(), True
    return q.tolist(), False


def claw_case(rng) -> tuple[list[str], list[float], bool]:
    kind = rng.integers(7)
    if kind == 0:
        return ["left_claw", "left_claw"], [10.0, 20.0], True
    if kind == 1:
        return ["left_claw", "thumb"], [10.0, 20.0], True
    if kind == 2:
        return ["left_claw", "right_claw"], [float(rng.choice([np.nan, np.inf])), 1.0], True
    if kind == 3:
        return ["left_claw", "right_claw"], [float(rng.uniform(110, 1e6)), 1.0], True
    if kind == 4:
        return ["left_claw", "right_claw", "head_claw"], [1.0, 2.0, 3.0], True
    return ["left_claw", "right_claw"], [float(rng.uniform(0, 100)), float(rng.uniform(0, 100))], False


def instruction_case(rng) -> tuple[str, bool]:
    kind = rng.integers(6)
    if kind == 0:
        return str(rng.choice(["", " ", "\u200b", "\ufeff\u200d", "\t\n"])), True
    if kind == 1:  # (a NUL would not survive DDS: a ROS string ends there)
        return "task1" + str(rng.choice(["\x07", "\x1b[2J", "\x7f"])) + "x" * int(rng.integers(5)), True
    if kind == 2:
        return "a" * 2001, True
    if kind == 3:
        return "".join(chr(int(c)) for c in rng.integers(0x20, 0x7e, 30)), False
    return str(rng.choice(["task1", "weighing", "task3", "sorting"])), False


class Fuzzer(Node):
    def __init__(self, context):
        super().__init__("fuzzer", context=context)
        self.lock = threading.Condition()
        self.actions: list[tuple[float, np.ndarray]] = []
        self.diagnostics: dict[str, str] = {}
        self.rng = np.random.default_rng(0)
        self.good_jpeg = _jpeg(self.rng)
        self.cameras = {c.name: self.create_publisher(CompressedImage, c.topic, qos_profile_sensor_data)
                        for c in PROFILE.cameras}
        self.sensors = self.create_publisher(SensorsData, PROFILE.state.topic, qos_profile_sensor_data)
        self.claw = self.create_publisher(LejuClawState, PROFILE.end_effector.state_topic, qos_profile_sensor_data)
        self.instruction = self.create_publisher(String, PROFILE.instruction_topic, 10)
        self.create_subscription(JointState, "/kuavo_smolvla/action", self._on_action, 100)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.create_timer(1 / 15, self._good_cameras)
        self.create_timer(1 / 50, self._good_state)

    def stamp(self, msg):
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def camera_msg(self, data: bytes) -> CompressedImage:
        return self.stamp(CompressedImage(format="jpeg", data=data))

    def sensors_msg(self, q) -> SensorsData:
        msg = self.stamp(SensorsData())
        msg.joint_data.joint_q = [float(v) for v in q]
        return msg

    def claw_msg(self, names, positions) -> LejuClawState:
        msg = self.stamp(LejuClawState(state=[2] * len(names)))
        msg.data = EndEffectorData(name=list(names), position=[float(p) for p in positions])
        return msg

    def _good_cameras(self):
        for publisher in self.cameras.values():
            publisher.publish(self.camera_msg(self.good_jpeg))

    def _good_state(self):
        self.sensors.publish(self.sensors_msg(_good_joint_q()))
        self.claw.publish(self.claw_msg(["left_claw", "right_claw"], [10.0, 80.0]))

    def _on_action(self, msg: JointState):
        with self.lock:
            self.actions.append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, np.array(msg.position)))
            self.lock.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray):
        with self.lock:
            self.diagnostics = {v.key: v.value for v in msg.status[0].values}
            self.lock.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(predicate, timeout)


def _good_joint_q() -> list[float]:
    q = np.zeros(28)
    q[12:19], q[19:26] = MID[robot.LEFT_ARM], MID[robot.RIGHT_ARM]
    return q.tolist()


def unsafe_commands(actions: list[tuple[float, np.ndarray]], ramp_ticks: int) -> dict[str, int]:
    """Commands that are non-finite, outside the limits, or faster than the limit per elapsed stamp time."""
    velocity = np.full(16, MAX_VELOCITY)
    velocity[robot.GRIPPER_INDICES] = MAX_GRIPPER_VELOCITY
    bad = {"non_finite": 0, "out_of_limits": 0, "too_fast": 0}
    for i, (stamp, command) in enumerate(actions):
        if len(command) != 16 or not np.all(np.isfinite(command)):
            bad["non_finite"] += 1
            continue
        bad["out_of_limits"] += int(not robot.within_limits(command))
        if i:
            elapsed = max(stamp - actions[i - 1][0], 0.0)
            # 1e-6 s of slack: stamps in float seconds since 1970 carry ~0.2 us of rounding
            if np.any(np.abs(command - actions[i - 1][1]) > velocity * (elapsed + 1e-6)):
                bad["too_fast"] += 1
                if bad["too_fast"] <= 3:
                    ratio = np.max(np.abs(command - actions[i - 1][1]) / (velocity * max(elapsed, 1e-9)))
                    print(f"  too fast: command {i}, {elapsed * 1e3:.1f} ms after the last, {ratio:.2f}x the limit")
    return bad


def fuzz(fuzzer: Fuzzer, checkpoint: Path, args: argparse.Namespace) -> int:
    """Start the node, send each stream's cases, check every command it sent; 1 if it crashed or sent an unsafe
    command, else 0."""
    params = {"checkpoint": str(checkpoint), "camera_height": SIDE, "camera_width": SIDE, "seed": 0,
              "torch_threads": 1, "default_instruction": "task1", "max_input_age_s": 0.5, "status_rate_hz": 5.0,
              "warmup_iterations": 1}
    command = [sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node", "--ros-args"]
    for key, value in params.items():
        command += ["-p", f"{key}:={value}"]
    log = CACHE / "fuzz_node.log"
    process = start_process(command, log)
    rows, crashed = [], False
    try:
        if not fuzzer.wait(lambda: len(fuzzer.actions) >= 5, 180):
            raise RuntimeError(f"the node published no actions (log: {log})")
        streams = {
            "head_cam_h": lambda rng: (lambda d, bad: (fuzzer.cameras["head_cam_h"], fuzzer.camera_msg(d), bad))(
                *camera_case(rng)),
            "joint_state": lambda rng: (lambda q, bad: (fuzzer.sensors, fuzzer.sensors_msg(q), bad))(
                *sensors_case(rng)),
            "gripper_state": lambda rng: (lambda n, p, bad: (fuzzer.claw, fuzzer.claw_msg(n, p), bad))(
                *claw_case(rng)),
            "instruction": lambda rng: (lambda t, bad: (fuzzer.instruction, String(data=t), bad))(
                *instruction_case(rng)),
        }
        for stream, generate in streams.items():
            rng = np.random.default_rng(hash(stream) % 2**32)
            key = f"rejected {stream}"
            before = int(fuzzer.diagnostics.get(key, "0").split(" ")[0])
            bad_sent = 0
            # Instructions at 20 per second: each accepted one starts an inference and a status message, and the
            # subscription keeps 10 (a faster burst overflows it; cameras and states are sensor-data QoS anyway).
            rate = min(args.rate, 20.0) if stream == "instruction" else args.rate
            for _ in range(args.cases):
                publisher, msg, bad = generate(rng)
                publisher.publish(msg)
                bad_sent += bad
                time.sleep(1.0 / rate)

            def counted(key=key, before=before):
                return int(fuzzer.diagnostics.get(key, "0").split(" ")[0]) - before
            fuzzer.wait(lambda c=counted, n=bad_sent: c() >= n, 10)
            crashed = crashed or process.poll() is not None
            rows.append({"stream": stream, "cases": args.cases, "bad_sent": bad_sent, "counted": counted(),
                         "alive": process.poll() is None})
            print(f"{stream:14s} cases {args.cases:5d}  bad sent {bad_sent:5d}  rejections counted {counted():5d}"
                  f"  node alive {process.poll() is None}", flush=True)
        n = len(fuzzer.actions)
        fuzzer.wait(lambda: len(fuzzer.actions) >= n + 5, 10)
    finally:
        stop_process(process)
    exit_code = process.returncode
    unsafe = unsafe_commands(fuzzer.actions, ramp_ticks=10)
    print(f"commands checked {len(fuzzer.actions)}: {unsafe}; node exit code on SIGINT: {exit_code}; "
          f"crashes: {int(crashed)}")
    save("fuzz_node", {"machine": machine(), "rows": rows, "commands": len(fuzzer.actions), "unsafe": unsafe,
                       "crashed": crashed, "exit_code": exit_code})
    return 1 if crashed or any(unsafe.values()) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="generated messages per stream")
    parser.add_argument("--rate", type=float, default=100.0, help="generated messages per second")
    args = parser.parse_args()
    checkpoint = CACHE / "tiny_64"
    if not (checkpoint / "model.safetensors").is_file():
        build_checkpoint(checkpoint, TinyCheckpointSpec())
    print(f"machine: {machine()}")
    context = rclpy.Context()
    rclpy.init(context=context)
    fuzzer = Fuzzer(context)
    try:
        with spinning_in_background(context, fuzzer):
            return fuzz(fuzzer, checkpoint, args)
    finally:
        fuzzer.destroy_node()
        rclpy.shutdown(context=context)


if __name__ == "__main__":
    raise SystemExit(main())
