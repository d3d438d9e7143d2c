"""Conversions between the policy's numpy world and ROS messages (outgoing and joint-state input)."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import JointState

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.control.controller import ControlState, Snapshot
from kuavo_smolvla_ros.control.scheduler import Chunk
from kuavo_smolvla_ros.control.stats import Summary
from kuavo_smolvla_ros.msg import (
    ActionChunk,
    EndEffectorData,
    LatencyStats,
    LejuClawCommand,
    LejuClawState,
    PolicyStatus,
    RobotHandPosition,
    SensorsData,
)


def seconds(stamp) -> float:
    """A ``builtin_interfaces/Time`` in seconds."""
    return stamp.sec + stamp.nanosec / 1e9  # correctly rounded: a stamp on a tick stays on it


def to_time(value: float) -> Time:
    sec = int(np.floor(value))
    return Time(sec=sec, nanosec=min(round((value - sec) * 1e9), 999_999_999))


def action_joint_state(command: np.ndarray, stamp: Time) -> JointState:
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(robot.JOINT_NAMES)
    msg.position = command.tolist()
    return msg


def arm_command(command: np.ndarray, stamp: Time) -> JointState:
    """/kuavo_arm_traj: the 14 arm joints in degrees, names arm_joint_0..13."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(robot.ARM_COMMAND_NAMES)
    msg.position = robot.arm_command_degrees(command).tolist()
    return msg


def _gripper_positions(command: np.ndarray, scaling: robot.GripperScaling) -> list[float]:
    return [float(np.clip(v, 0.0, scaling.command_scale)) for v in robot.claw_command_positions(command, scaling)]


def claw_command(command: np.ndarray, stamp: Time, scaling: robot.GripperScaling) -> LejuClawCommand:
    msg = LejuClawCommand()
    msg.header.stamp = stamp
    msg.data = EndEffectorData(name=list(robot.CLAW_NAMES), position=_gripper_positions(command, scaling),
                               velocity=[50.0, 50.0], effort=[1.0, 1.0])
    return msg


def hand_command(command: np.ndarray, stamp: Time) -> RobotHandPosition:
    """Dexterous hands: six fingers per hand, 0 open .. 100 closed."""
    left, right = robot.hand_command_positions(command)
    msg = RobotHandPosition(left_hand_position=left, right_hand_position=right)
    msg.header.stamp = stamp
    return msg


def sim_gripper_command(command: np.ndarray, stamp: Time, scaling: robot.GripperScaling) -> JointState:
    """Simulator grippers (/gripper/command): left, right in the simulator's command units."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(robot.CLAW_NAMES)
    msg.position = _gripper_positions(command, scaling)
    return msg


def gripper_command(command: np.ndarray, stamp: Time, scaling: robot.GripperScaling):
    """The gripper command message for the end-effector type ``scaling.name``."""
    if scaling.name == "dex_hand":
        return hand_command(command, stamp)
    if scaling.name == "sim_gripper":
        return sim_gripper_command(command, stamp, scaling)
    return claw_command(command, stamp, scaling)


GRIPPER_COMMAND_TYPES = {"leju_claw": LejuClawCommand, "dex_hand": RobotHandPosition, "sim_gripper": JointState}


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


def status_message(snap: Snapshot, stamp: Time, dry_run: bool, num_steps: int) -> PolicyStatus:
    msg = PolicyStatus()
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
    return msg


_LEVELS = {
    ControlState.RUNNING: DiagnosticStatus.OK, ControlState.WAITING: DiagnosticStatus.OK,
    ControlState.DISABLED: DiagnosticStatus.OK, ControlState.HOLDING: DiagnosticStatus.WARN,
    ControlState.STALE: DiagnosticStatus.WARN, ControlState.ERROR: DiagnosticStatus.ERROR,
}


def diagnostics_message(snap: Snapshot, stamp: Time, node_name: str, checkpoint: str) -> DiagnosticArray:
    status = DiagnosticStatus(level=_LEVELS[snap.state], name=f"{node_name}: policy",
                              message=f"{snap.state.name.lower()}: {snap.message}", hardware_id=checkpoint)
    c = snap.counters
    values = {
        "state": snap.state.name, "instruction": snap.instruction, "task": snap.task.name if snap.task else "",
        "stale_streams": ",".join(snap.stale_streams), "enabled": str(snap.enabled),
        "queue_depth": str(snap.queue_depth),
        "inference_p50_ms": f"{snap.inference.p50 * 1e3:.1f}", "inference_p95_ms": f"{snap.inference.p95 * 1e3:.1f}",
        "inference_max_ms": f"{snap.inference.max * 1e3:.1f}",
        "sensor_to_action_p95_ms": f"{snap.sensor_to_action.p95 * 1e3:.1f}",
        "sensor_to_action_p99_ms": f"{snap.sensor_to_action.p99 * 1e3:.1f}",
        "control_jitter_p99_ms": f"{snap.jitter.p99 * 1e3:.2f}",
        "node_overhead_p95_ms": f"{snap.node_overhead.p95 * 1e3:.2f}",
        **{name: str(value) for name, value in vars(c).items()},
    }
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [status]
    return msg


def sensors_data(state16: np.ndarray, stamp: Time) -> SensorsData:
    """/sensors_data_raw for a 16-dim state: the arm joints in ``joint_q`` (28 entries, legs and head 0),
    a level IMU at rest; the layout the robot's recorder writes (``data.recording``)."""
    state = np.asarray(state16, dtype=np.float64)
    q = np.zeros(robot.SENSORS_JOINT_COUNT)
    q[robot.SENSORS_LEFT_ARM] = state[robot.LEFT_ARM]
    q[robot.SENSORS_RIGHT_ARM] = state[robot.RIGHT_ARM]
    zeros = [0.0] * robot.SENSORS_JOINT_COUNT
    msg = SensorsData()
    msg.header.stamp = stamp
    msg.sensor_time = stamp
    msg.joint_data.joint_q = q.tolist()
    msg.joint_data.joint_v, msg.joint_data.joint_vd, msg.joint_data.joint_torque = zeros, zeros, zeros
    msg.imu_data.acc.z = msg.imu_data.free_acc.z = 9.81
    msg.imu_data.quat.w = 1.0
    msg.end_effector_data = EndEffectorData(name=list(robot.CLAW_NAMES), position=[0.0, 0.0],
                                            velocity=[0.0, 0.0], effort=[0.0, 0.0])
    return msg


def claw_state(units, stamp: Time, scaling: robot.GripperScaling, states=None) -> LejuClawState:
    """/leju_claw_state for (left, right) gripper values 0..1 (raw = unit x the state scale); ``states``
    are the per-claw ``LejuClawState.STATE_*`` codes (default: reached)."""
    raw = [scaling.unit_to_command(u) * scaling.state_scale / scaling.command_scale for u in units]
    msg = LejuClawState()
    msg.header.stamp = stamp
    msg.state = list(states) if states is not None else [LejuClawState.STATE_REACHED] * len(raw)
    msg.data = EndEffectorData(name=list(robot.CLAW_NAMES), position=raw, velocity=[0.0, 0.0], effort=[0.0, 0.0])
    return msg
