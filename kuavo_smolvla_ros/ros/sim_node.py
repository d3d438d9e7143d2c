"""``sim_robot``: the simulated Kuavo (:mod:`kuavo_smolvla_ros.sim`) behind a real robot's ROS interface.

Speaks the robot profile ``robot_profile`` (:mod:`kuavo_smolvla_ros.contract`, encoded with the same
:class:`~kuavo_smolvla_ros.contract.streams.StreamEncoder` as the recorder): publishes the cameras, the joint
state and the end effector's state (Kuavo 4 Pro: three JPEG cameras, ``sensors_data_raw`` +
``leju_claw_state``), ``simulator/success`` and ``simulator/episode`` (JSON); follows the profile's arm and
end-effector commands (Kuavo: ``kuavo_arm_traj`` + ``leju_claw_command``), or ``kuavo_smolvla/action``; the
instruction topic naming a task and the ``task`` parameter select the task of the next episode;
``simulator/reset`` (std_srvs/Trigger) starts one. Every name is relative to the node's namespace
(:mod:`~kuavo_smolvla_ros.ros.names`), except ``/clock``, published with ``publish_clock`` (for nodes run with
``use_sim_time:=true``). Parameters: :mod:`.sim_params` (one table); ``sim_robot --help`` lists them. Run:
``ros2 run kuavo_smolvla_ros sim_robot`` or ``ros2 launch kuavo_smolvla_ros sim.launch.py checkpoint:=/path``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import NameValidationException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.end_effectors import NonFiniteError, named_values
from kuavo_smolvla_ros.contract.streams import StreamDecoder, StreamEncoder
from kuavo_smolvla_ros.msg import LejuClawState
from kuavo_smolvla_ros.ros import names, param_table, sim_params
from kuavo_smolvla_ros.ros.fields import MESSAGE_TYPES, build, to_time
from kuavo_smolvla_ros.ros.spin import spin_node
from kuavo_smolvla_ros.sim.kinematics import ARMS, gripper_index
from kuavo_smolvla_ros.sim.render import render_cameras
from kuavo_smolvla_ros.sim.world import SimWorld, WorldConfig
from kuavo_smolvla_ros.tasks import Task, default_catalog

NODE_NAME = sim_params.NODE_NAME
ACTION_TOPIC = names.ACTION
SUCCESS_TOPIC = names.SIM_SUCCESS
EPISODE_TOPIC = names.SIM_EPISODE
RESET_SERVICE = names.SIM_RESET
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
SUCCESS_RATE_HZ = 10.0
EPISODE_RATE_HZ = 2.0
#: The world never advances more than this per tick (a stalled process slows the simulation down).
MAX_STEP_S = 0.1
#: With auto_reset, seconds (simulated) between the end of an episode and the next.
AUTO_RESET_DELAY_S = 1.0
#: A gripper this far (0..1) from its command reads as moving in /leju_claw_state.
CLAW_MOVING = 0.02


def episode_report(world: SimWorld, number: int, success: bool, done: bool, **extra) -> dict:
    """The JSON object of /simulator/episode and the reset service's reply for the world's episode."""
    episode = world.episode
    return {
        "task": episode.task.name, "task_id": episode.task.id, "seed": episode.seed, "episode": number,
        "object_start": [float(v) for v in episode.object_start], "time": round(world.time, 6),
        "success": success,
        "success_time": round(episode.success_time, 6) if success else None,  # rounded as "time": never after it
        "events": [{"kind": e.kind, "arm": e.arm, "xy": [float(v) for v in e.xy], "t": round(e.t, 6)}
                   for e in episode.events],
        "done": done, **extra,
    }


class _Stream:
    """A publication due every ``1/rate`` seconds of simulated time, polled once per physics tick: one due
    within ``slack`` (half a tick, for timer jitter) goes out on this tick."""

    def __init__(self, rate_hz: float, publish, slack: float):
        self.period, self.publish, self.slack, self.due = 1.0 / rate_hz, publish, slack, 0.0

    def poll(self, now: float) -> None:
        if now + self.slack >= self.due:
            self.publish()
            self.due = max(self.due + self.period, now)  # after a stall: on time again, no burst


class SimNode(Node):
    """Parameters, publishers, subscriptions, the reset service and one timer; the world is :class:`SimWorld`."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.settings = s = sim_params.declare(self)
        self.catalog = default_catalog()
        self.profile = s.profile
        self.encoder = StreamEncoder(self.profile)
        self.decoder = StreamDecoder(self.profile)
        self.world = SimWorld(WorldConfig(physics_hz=s.physics_rate_hz, max_episode_s=s.max_episode_s))
        self.sizes = s.camera_sizes()
        self.next_task: Task = sim_params.resolve_task(s.task)
        self.next_seed = s.seed
        self.episode_number = 0
        self.sim_time = 0.0  # simulated seconds since start, across episodes (the /clock time)
        self.commands = {"received": 0, "malformed": 0}
        self._make_publishers()
        self._make_subscriptions()
        self.create_service(Trigger, RESET_SERVICE, self._on_reset)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._reset()
        # One timer on the steady clock: the world's steps never wait for a /clock (not even its own).
        self._last_tick = time.monotonic()
        self.create_timer(1.0 / s.physics_rate_hz, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        sizes = ", ".join(f"{name} {h}x{w}" for name, (h, w) in self.sizes.items())
        self.get_logger().info(
            f"simulating task {self.world.episode.task.id} ({self.world.episode.task.name}), seed {s.seed}: "
            f"robot profile {self.profile.describe()}, {s.command_input} commands, cameras {sizes}"
            f"{', publishing /clock' if s.publish_clock else ''}; namespace {self.get_namespace()}")

    # ----------------------------------------------------------------------------------- set-up
    def _make_publishers(self) -> None:
        s, profile = self.settings, self.profile
        image_types = {"compressed": MESSAGE_TYPES["CompressedImage"], "raw": MESSAGE_TYPES["Image"]}
        self.camera_pubs = {c.name: self.create_publisher(image_types[c.encoding], names.relative(c.topic),
                                                   qos_profile_sensor_data) for c in profile.cameras}
        self.success_pub = self.create_publisher(Bool, SUCCESS_TOPIC, LATCHED_QOS)
        self.episode_pub = self.create_publisher(String, EPISODE_TOPIC, LATCHED_QOS)
        self.clock_pub = self.create_publisher(ClockMsg, names.CLOCK, 10) if s.publish_clock else None
        rates = {self._publish_cameras: s.camera_rate_hz, self._publish_success: SUCCESS_RATE_HZ,
                 self._publish_episode: EPISODE_RATE_HZ, self._publish_state: s.state_rate_hz}
        state_type = "SensorsData" if profile.state.source == "kuavo_sensors" else "JointState"
        self.state_pub = self.create_publisher(MESSAGE_TYPES[state_type], names.relative(profile.state.topic),
                                               qos_profile_sensor_data)
        if profile.has_gripper_state:
            self.gripper_pub = self.create_publisher(MESSAGE_TYPES[profile.gripper.state_type],
                                                     names.relative(profile.end_effector.state_topic),
                                                     qos_profile_sensor_data)
            rates[self._publish_gripper_state] = s.claw_state_rate_hz
        self.streams = [_Stream(rate, publish, 0.5 / s.physics_rate_hz) for publish, rate in rates.items()]

    def _make_subscriptions(self) -> None:
        profile = self.profile
        if self.settings.command_input == "robot":
            self.create_subscription(JointState, names.relative(profile.action.topic), self._on_arm_command, 10)
            if profile.has_gripper_command:
                self.create_subscription(MESSAGE_TYPES[profile.gripper.command_type],
                                         names.relative(profile.end_effector.command_topic),
                                         self._on_gripper_command, 10)
        else:
            self.create_subscription(JointState, ACTION_TOPIC, self._on_action, 10)
        self.create_subscription(String, names.relative(profile.instruction_topic), self._on_instruction, 10)

    def _seconds(self) -> float:
        """The stamp of what is published now (s): simulated time with ``publish_clock``, else the node's clock."""
        if self.settings.publish_clock:
            return self.sim_time
        return self.get_clock().now().nanoseconds * 1e-9

    # ---------------------------------------------------------------------------------- episodes
    def _reset(self) -> dict:
        """A new episode of the selected task with the next seed: arms home, grippers open, a new object. The new
        episode's state and camera frames go out at once, before the reset is answered: a policy enabled right
        after the reset does not pair the new rest state with a frame of the old episode (the next camera tick
        can be a whole camera period away)."""
        self.world.reset(self.next_task, self.next_seed)
        self.episode_number += 1
        self.next_seed += 1
        self._done_at: float | None = None
        self._commanded = False  # with wait_for_command, the episode's time starts at its first command
        self._reported = (0, False, False)  # (events, success, done) last published
        report = self._report()
        self.get_logger().info(f"episode {report['episode']}: task {report['task']}, seed {report['seed']}, "
                               f"object at ({report['object_start'][0]:.3f}, {report['object_start'][1]:.3f})")
        self._publish_state()  # the new scene first, then the report that announces it
        if self.profile.has_gripper_state:
            self._publish_gripper_state()
        self._publish_cameras()
        self._publish_success()
        self._publish_episode(report)
        return report

    @property
    def succeeded(self) -> bool:
        """Solved within the time limit (a late completion after a time-out does not count): ``SimWorld.success``,
        the definition closed-loop evaluation uses too."""
        return self.world.success

    def _report(self) -> dict:
        arms = self.world.arms
        counters = {**self.commands, "clipped": arms.commands_clipped, "rejected": arms.commands_rejected}
        return episode_report(self.world, self.episode_number, self.succeeded, self.world.done,
                              next_task=self.next_task.name, commands=counters,
                              waiting_for_command=self.settings.wait_for_command and not self._commanded)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        report = self._reset()
        response.success, response.message = True, json.dumps(report)
        return response

    def _select_task(self, task: Task, why: str) -> None:
        if task != self.next_task:
            self.next_task = task
            self.get_logger().info(f"{why}: task {task.id} ({task.name}) from the next reset")
            self._publish_episode()

    # ------------------------------------------------------------------------------------- tick
    def _tick(self) -> None:
        now = time.monotonic()
        dt, self._last_tick = min(now - self._last_tick, MAX_STEP_S), now
        try:
            if self._commanded or not self.settings.wait_for_command:
                self.world.step(dt)
            self.sim_time += dt
            if self.clock_pub is not None:
                self.clock_pub.publish(ClockMsg(clock=to_time(self.sim_time)))
            outcome = (len(self.world.episode.events), self.succeeded, self.world.done)
            if outcome != self._reported:  # an event, success or the end: say so at once
                if outcome[1] != self._reported[1]:
                    self._publish_success()
                if outcome[1:] != self._reported[1:]:
                    self._log_outcome()
                self._reported = outcome
                self._publish_episode()
            for stream in self.streams:
                stream.poll(self.sim_time)
            if self.world.done and self.settings.auto_reset:
                self._done_at = self.sim_time if self._done_at is None else self._done_at
                if self.sim_time - self._done_at >= AUTO_RESET_DELAY_S:
                    self._reset()
        except Exception as err:  # a bug here must not stop the simulated robot
            if not self.context.ok():  # a tick that ran into Ctrl-C's shutdown: nothing to report
                return
            self.get_logger().error(f"simulation tick failed: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _log_outcome(self) -> None:
        info = self.world.episode
        if self.succeeded:
            self.get_logger().info(
                f"episode {self.episode_number} ({info.task.name}) solved at {info.success_time:.2f} s")
        elif self.world.done:
            self.get_logger().info(f"episode {self.episode_number} ({info.task.name}) failed: "
                                   f"{self.world.config.max_episode_s:.1f} s without success")

    # ------------------------------------------------------------------------------- publishing
    def _publish_cameras(self) -> None:
        stamp = self._seconds()
        for name, image in render_cameras(self.world, self.sizes).items():
            _, kind, fields = self.encoder.camera(name, image, stamp, quality=self.settings.jpeg_quality)
            self.camera_pubs[name].publish(build(kind, fields))

    def _publish_state(self) -> None:
        self.state_pub.publish(build(*self.encoder.joint_state(self.world.state, self._seconds())[1:]))

    def _publish_gripper_state(self) -> None:
        state, command = self.world.state, self.world.arms.command
        codes = []  # lejuClawState's per-claw codes (other end effectors ignore them)
        for arm in ARMS:
            index = gripper_index(arm)
            if arm in self.world.holders:
                codes.append(LejuClawState.STATE_GRABBED)
            elif abs(command[index] - state[index]) > CLAW_MOVING:
                codes.append(LejuClawState.STATE_MOVING)
            else:
                codes.append(LejuClawState.STATE_REACHED)
        _, kind, fields = self.encoder.gripper_state(robot.gripper_units(state), self._seconds(), codes)
        self.gripper_pub.publish(build(kind, fields))

    def _publish_success(self) -> None:
        self.success_pub.publish(Bool(data=self.succeeded))

    def _publish_episode(self, report: dict | None = None) -> None:
        self.episode_pub.publish(String(data=json.dumps(report or self._report())))

    # -------------------------------------------------------------------------------- commands
    def _malformed(self, what: str, err: Exception) -> None:
        self.commands["malformed"] += 1
        self.get_logger().warning(f"ignored {what}: {err}", throttle_duration_sec=2.0)

    def _command(self, what: str, indices, values) -> None:
        self.commands["received"] += 1
        self._commanded = True
        if not self.world.arms.set_partial(indices, values):
            self.get_logger().warning(f"rejected {what}: non-finite values", throttle_duration_sec=2.0)

    def _decoded(self, what: str, decode):
        """``decode()``'s value, or None: a malformed command is counted as malformed, a non-finite one as
        received and rejected (the world keeps its last command either way)."""
        try:
            return decode()
        except NonFiniteError:
            self.commands["received"] += 1
            self.world.arms.commands_rejected += 1
            self.get_logger().warning(f"rejected {what}: non-finite values", throttle_duration_sec=2.0)
        except ValueError as err:
            self._malformed(what, err)
        return None

    def _on_arm_command(self, msg: JointState) -> None:
        arm = self._decoded("arm command", lambda: self.decoder.arm_command(msg))  # 14 arm joints or 16 (rad)
        if arm is None:
            return
        if arm.shape[0] == robot.ACTION_DIM:
            self._command("arm command", np.arange(robot.ACTION_DIM), arm)
        else:
            self._command("arm command", robot.ARM_INDICES, arm)

    def _on_gripper_command(self, msg) -> None:
        units = self._decoded("gripper command", lambda: self.decoder.gripper_command(msg))
        if units is None:
            return
        self._command("gripper command", robot.GRIPPER_INDICES, units)

    def _on_action(self, msg: JointState) -> None:
        try:
            action = named_values(msg.name, msg.position, robot.JOINT_NAMES, "action")
        except ValueError as err:
            self._malformed("action", err)
            return
        self._command("action", np.arange(robot.ACTION_DIM), action)

    # ----------------------------------------------------------------------------- task choice
    def _on_instruction(self, msg: String) -> None:
        task = self.catalog.find(msg.data)
        if task is None:
            self.get_logger().info(f"instruction {msg.data[:80]!r} names no task: the simulated task stays "
                                   f"{self.next_task.name}")
            return
        # Through the parameter, so that it always tells the task of the next episode.
        self.set_parameters([Parameter("task", value=task.name)])

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        successful, reason = param_table.check_parameters(sim_params.SimSettings, parameters)
        if not successful:
            return SetParametersResult(successful=False, reason=reason)
        for parameter in parameters:
            if parameter.name == "task":
                try:
                    sim_params.resolve_task(str(parameter.value))
                except ValueError as err:
                    return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _on_parameters_set(self, parameters: list[Parameter]) -> None:
        for parameter in parameters:
            if parameter.name == "task":
                self.settings.task = parameter.value
                self._select_task(sim_params.resolve_task(parameter.value), f"parameter task:={parameter.value}")
            elif parameter.name == "auto_reset":
                self.settings.auto_reset = bool(parameter.value)
                self.get_logger().info(f"auto_reset {'on' if parameter.value else 'off'}")


def main() -> int:
    if param_table.wants_help(sys.argv[1:]):
        print(sim_params.help_text(), end="")
        return 0
    stray = param_table.stray_arguments(sys.argv[1:])
    if stray:
        print(f"error: unknown argument(s) {' '.join(stray)}: parameters go after --ros-args "
              "(-p NAME:=VALUE, --params-file FILE); --help lists them", file=sys.stderr)
        return 2
    return spin_node(SimNode, startup_errors=(ValueError, NameValidationException))


if __name__ == "__main__":
    raise SystemExit(main())
