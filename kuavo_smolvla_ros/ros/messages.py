"""The policy node's own outgoing messages: its action, chunks, status and diagnostics. (The robot's messages
are encoded and decoded by the robot contract, :mod:`kuavo_smolvla_ros.contract`.)"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import JointState

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.controller import ControlState, Snapshot
from kuavo_smolvla_ros.control.scheduler import Chunk
from kuavo_smolvla_ros.control.stats import Summary
from kuavo_smolvla_ros.msg import ActionChunk, LatencyStats, PolicyStatus
from kuavo_smolvla_ros.ros.fields import to_time


def action_joint_state(command: np.ndarray, stamp: Time) -> JointState:
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(robot.JOINT_NAMES)
    msg.position = command.tolist()
    return msg


def chunk_message(chunk: Chunk, start_index: int, n_execute: int, dt: float, num_steps: int) -> ActionChunk:
    msg = ActionChunk()
    msg.header.stamp = to_time(chunk.oldest_stamp)
    msg.header.frame_id = "base_link"
    msg.instruction = chunk.instruction
    msg.seq = chunk.seq
    msg.chunk_size, msg.action_dim = (int(x) for x in chunk.actions.shape)
    msg.joint_names = list(robot.JOINT_NAMES)
    msg.dt = dt
    msg.actions = chunk.actions.astype(np.float32).ravel()
    msg.n_execute = n_execute
    msg.start_index = max(0, start_index)
    msg.num_inference_steps = num_steps
    msg.inference_time = chunk.inference_time
    return msg


def _latency(summary: Summary) -> LatencyStats:
    return LatencyStats(count=summary.count, mean=summary.mean, p50=summary.p50, p95=summary.p95,
                        p99=summary.p99, max=summary.max)


def status_message(snap: Snapshot, stamp: Time, dry_run: bool, num_steps: int,
                   robot_profile: str = "") -> PolicyStatus:
    """The node's ``PolicyStatus``; ``robot_profile`` names the profile, its file and any overrides."""
    msg = PolicyStatus()
    msg.robot_profile = robot_profile
    msg.header.stamp = stamp
    msg.state = int(snap.state)
    msg.message = snap.message
    msg.active_instruction = snap.instruction
    msg.active_task = snap.task.name if snap.task else ""
    msg.stale_streams = list(snap.stale_streams)
    msg.enabled, msg.dry_run, msg.num_inference_steps = snap.enabled, dry_run, num_steps
    msg.inference_latency = _latency(snap.inference)
    msg.sensor_to_action_latency = _latency(snap.sensor_to_action)
    msg.control_jitter = _latency(snap.jitter)
    msg.node_overhead = _latency(snap.node_overhead)
    msg.queue_depth = snap.queue_depth
    c = snap.counters
    msg.inferences, msg.actions_published, msg.actions_held = c.inferences, c.actions_published, c.actions_held
    msg.actions_clamped, msg.non_finite_replaced, msg.inputs_rejected = (
        c.actions_clamped, c.non_finite_replaced, c.inputs_rejected)
    msg.rejections = [f"{stream}: {count} (first: {reason})" for stream, (count, reason) in snap.rejections.items()]
    return msg


_LEVELS = {
    ControlState.RUNNING: DiagnosticStatus.OK, ControlState.WAITING: DiagnosticStatus.OK,
    ControlState.DISABLED: DiagnosticStatus.OK, ControlState.HOLDING: DiagnosticStatus.WARN,
    ControlState.STALE: DiagnosticStatus.WARN, ControlState.ERROR: DiagnosticStatus.ERROR,
}


def diagnostics_message(snap: Snapshot, stamp: Time, node_name: str, checkpoint: str,
                        robot_profile: str = "") -> DiagnosticArray:
    """One ``DiagnosticStatus`` of the node: level by state, the counters and latencies as key-values."""
    status = DiagnosticStatus(level=_LEVELS[snap.state], name=f"{node_name}: policy",
                              message=f"{snap.state.name.lower()}: {snap.message}", hardware_id=checkpoint)
    c = snap.counters
    values = {
        "state": snap.state.name, "robot_profile": robot_profile, "instruction": snap.instruction,
        "task": snap.task.name if snap.task else "",
        "stale_streams": ",".join(snap.stale_streams), "enabled": str(snap.enabled),
        "queue_depth": str(snap.queue_depth),
        "inference_p50_ms": f"{snap.inference.p50 * 1e3:.1f}", "inference_p95_ms": f"{snap.inference.p95 * 1e3:.1f}",
        "inference_max_ms": f"{snap.inference.max * 1e3:.1f}",
        "sensor_to_action_p95_ms": f"{snap.sensor_to_action.p95 * 1e3:.1f}",
        "sensor_to_action_p99_ms": f"{snap.sensor_to_action.p99 * 1e3:.1f}",
        "control_jitter_p99_ms": f"{snap.jitter.p99 * 1e3:.2f}",
        "node_overhead_p95_ms": f"{snap.node_overhead.p95 * 1e3:.2f}",
        **{name: str(value) for name, value in vars(c).items()},
        **{f"rejected {stream}": f"{count} (first: {reason})" for stream, (count, reason) in snap.rejections.items()},
        **({"last clamp": snap.last_clamp} if snap.last_clamp else {}),
    }
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [status]
    return msg
