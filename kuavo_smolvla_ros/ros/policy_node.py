"""``policy_node``: SmolVLA on the Kuavo under ROS 2 (thin rclpy layer around PolicyController).

Subscribes to the cameras, the joint state (and gripper state) and the instruction topic that the robot
profile (``robot_profile``, :mod:`kuavo_smolvla_ros.contract`) names, decoding them with the same
:class:`~kuavo_smolvla_ros.contract.streams.StreamDecoder` as the bag converter; publishes one safe action per
control tick on ``kuavo_smolvla/action`` and the robot's command topics (encoded by the profile), every
chunk on ``kuavo_smolvla/action_chunk``, status and diagnostics. Every topic and service name is relative
(:mod:`~kuavo_smolvla_ros.ros.names`): a namespace moves all of them. Parameters: :mod:`.params` (one table).
Frames of another size than the checkpoint's training size are resized with padding
(:mod:`kuavo_smolvla_ros.control.images`). Run: ``ros2 run kuavo_smolvla_ros policy_node --ros-args -p
checkpoint:=/path`` or ``ros2 launch kuavo_smolvla_ros policy.launch.py checkpoint:=/path``; ``policy_node
--help`` lists the parameters.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.fields import header_stamp
from kuavo_smolvla_ros.contract.streams import GRIPPER_STATE, STATE, StreamDecoder, StreamEncoder, input_streams
from kuavo_smolvla_ros.control.controller import STATE_STREAM, ControlState, TickOutput
from kuavo_smolvla_ros.control.execution import ExecutionSettings, make_controller
from kuavo_smolvla_ros.control.images import FrameFitter
from kuavo_smolvla_ros.msg import ActionChunk, PolicyStatus
from kuavo_smolvla_ros.policy.checkpoint import CheckpointError
from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
from kuavo_smolvla_ros.ros import messages, names, param_table, params
from kuavo_smolvla_ros.ros.fields import MESSAGE_TYPES, build
from kuavo_smolvla_ros.ros.spin import spin_node
from kuavo_smolvla_ros.tasks import default_catalog

NODE_NAME = params.NODE_NAME
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
INSTRUCTION_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_INSTRUCTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: A backward jump of the node's clock larger than this clears the input buffers (a rewound /clock).
CLOCK_JUMP_BACK = Duration(seconds=-0.05)


class PolicyNode(Node):
    """Parameters, subscriptions, publishers and timers; the decisions live in PolicyController."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.settings = s = params.declare(self)
        import torch

        torch.set_num_threads(s.torch_threads or max(1, (os.cpu_count() or 2) - 1))
        self.runtime = PolicyRuntime.open(s.checkpoint, device=s.device, vlm_path=s.vlm_path or None,
                                          num_steps=s.num_steps or None, chunk_size=s.chunk_size or None,
                                          n_action_steps=s.n_action_steps or None)
        profile = self.profile = s.profile
        s.check_against_checkpoint(self.runtime.cameras, self.runtime.info.image_shapes)
        latency = self.runtime.warmup(s.warmup_iterations) if s.warmup_iterations else 0.0
        trained = params.trained_sizes(self.runtime.info.image_shapes)
        self.get_logger().info(
            f"loaded {self.runtime.info.path} on {s.device}: {self.runtime.num_steps} steps, chunk "
            f"{self.runtime.chunk_size}, {self.runtime.n_action_steps} executed per chunk, cameras "
            f"{', '.join(f'{c} {h}x{w}' for c, (h, w) in trained.items())}, warm-up {latency * 1e3:.0f} ms; "
            f"robot profile {profile.describe()}")
        self.get_logger().info("safety settings: " + param_table.safety_line(s, {
            "control_rate_hz": s.rate_hz, "num_steps": self.runtime.num_steps,
            "chunk_size": self.runtime.chunk_size, "n_action_steps": self.runtime.n_action_steps,
            "namespace": self.get_namespace()}))
        self.catalog = default_catalog()
        ages = {c.name: c.sync.live_max_age for c in profile.cameras} | {STATE_STREAM: profile.state.sync.live_max_age}
        if s.chunk_transition == "rtc":
            self.runtime.enable_rtc()
        # The executor closed-loop evaluation runs too (control/execution.py): one code path.
        self.controller = make_controller(
            self.execution_settings(), self.runtime.cameras, self._predict, self.catalog,
            stream_max_age_s=ages, stale_behaviour=s.stale_behaviour, error_retry_s=s.error_retry_s,
            initial_latency_s=latency, stamp_source=profile.stamp_source)
        # Frames of any size are accepted (bounded by images.MAX_PIXELS) and fitted to the trained size.
        self.decoder = StreamDecoder(profile, {c: None for c in profile.camera_names})
        self.fitter = FrameFitter(trained, warn=self.get_logger().warning, inform=self.get_logger().info)
        self.encoder = StreamEncoder(profile)
        self._last_period_start: float | None = None
        self._last_instruction: tuple[str, str, float] = ("", "", -1.0)  # text, subscription, when
        self._make_publishers()
        self._make_subscriptions()
        self.create_service(SetBool, names.ENABLE, self._on_enable)
        # rclpy tells when the clock (e.g. a simulator's /clock under use_sim_time) jumps back.
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=CLOCK_JUMP_BACK, on_clock_change=True),
            post_callback=self._on_clock_jump)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        # Every callback is short (frames are decoded on the inference thread), so one executor thread
        # serves them all; rclpy's multi-threaded executor costs more than it gains under the GIL.
        self.create_timer(1.0 / s.rate_hz, self._on_control_tick)
        self.create_timer(1.0 / s.status_rate_hz, self._publish_status)
        if s.default_instruction:
            self._switch_instruction(s.default_instruction)
        self._publish_status()
        self.get_logger().info(f"ready: {self.resolve_topic_name(names.ACTION)} at {s.rate_hz:g} Hz, status on "
                               f"{self.resolve_topic_name(names.STATUS)}")

    # ----------------------------------------------------------------------------------- set-up
    def execution_settings(self) -> ExecutionSettings:
        """The parameters that shape what the robot is sent, as the shared executor takes them."""
        s = self.settings
        return ExecutionSettings(rate_hz=s.rate_hz, n_action_steps=self.runtime.n_action_steps,
                                 blend_steps=s.blend_steps, max_joint_velocity=s.max_joint_velocity,
                                 max_gripper_velocity=s.max_gripper_velocity, ramp_in_s=s.ramp_in_s,
                                 chunk_transition=s.chunk_transition)

    def _predict(self, observation, **guidance) -> np.ndarray:
        """The runtime's chunk (``guidance``: real-time chunking's prefix and inference delay)."""
        seed = self.settings.seed if self.settings.seed >= 0 else None
        return self.runtime.predict_chunk(observation, seed=seed, **guidance)

    def _make_publishers(self) -> None:
        s, profile = self.settings, self.profile
        self.action_pub = self.create_publisher(JointState, names.ACTION, COMMAND_QOS)
        self.chunk_pub = self.create_publisher(ActionChunk, names.ACTION_CHUNK, COMMAND_QOS)
        self.status_pub = self.create_publisher(PolicyStatus, names.STATUS, STATUS_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS, 10)
        self.arm_pub = self.gripper_pub = None
        if s.publish_arm_command:
            self.arm_pub = self.create_publisher(JointState, names.relative(profile.action.topic), COMMAND_QOS)
        if s.publish_gripper_command and profile.has_gripper_command:
            self.gripper_pub = self.create_publisher(MESSAGE_TYPES[profile.gripper.command_type],
                                                     names.relative(profile.end_effector.command_topic), COMMAND_QOS)

    def _make_subscriptions(self) -> None:
        for stream in input_streams(self.profile):
            msg_type = MESSAGE_TYPES[stream.types[0]]
            if stream.role == STATE:
                callback = self._on_state
            elif stream.role == GRIPPER_STATE:
                callback = self._on_gripper_state
            elif stream.role in self.runtime.cameras:
                callback = lambda m, n=stream.role: self._on_image(n, m)  # noqa: E731
            else:
                self.get_logger().warning(f"camera {stream.role} is not an input of the checkpoint: not subscribed")
                continue
            self.create_subscription(msg_type, names.relative(stream.topic), callback, qos_profile_sensor_data)
        # The instruction arrives whether it was published volatile (a plain `ros2 topic pub`, matched by the
        # first subscription) or transient local (latched before this node started, matched by the second;
        # a repeat of the active instruction changes nothing).
        topic = names.relative(self.profile.instruction_topic)
        self.create_subscription(String, topic, lambda m: self._on_instruction(m, "volatile"), INSTRUCTION_QOS)
        self.create_subscription(String, topic, lambda m: self._on_instruction(m, "latched"), LATCHED_INSTRUCTION_QOS,
                                 event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda _event: None))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reject(self, stream: str, what: str, err: Exception) -> None:
        self.controller.reject_input(stream, str(err))
        self.get_logger().warning(f"rejected {what}: {err}", throttle_duration_sec=2.0)

    # -------------------------------------------------------------------------------- callbacks
    def _on_image(self, name: str, msg: CompressedImage | Image) -> None:
        try:
            frame = self.fitter.fit(name, self.decoder.image(name, msg))
            self.controller.add_image(name, frame, header_stamp(msg), self._now())
        except ValueError as err:  # images.ImageError included
            self._reject(name, f"camera {name} frame", err)

    def _on_state(self, msg) -> None:
        try:
            state = self.decoder.state(msg)
            if state is not None:  # None until the first gripper state
                self.controller.add_state(state, header_stamp(msg), self._now())
        except ValueError as err:
            self._reject(STATE_STREAM, "joint state", err)

    def _on_gripper_state(self, msg) -> None:
        try:
            self.decoder.update_grippers(msg)
        except ValueError as err:
            self._reject(GRIPPER_STATE, "gripper state", err)

    def _on_clock_jump(self, jump) -> None:
        self.controller.clock_jumped(self._now())
        self.get_logger().warning(f"the clock jumped by {jump.delta.nanoseconds * 1e-9:.3f} s: input buffers cleared")

    def _on_instruction(self, msg: String, subscription: str) -> None:
        now = time.monotonic()
        text, source, at = self._last_instruction
        if msg.data == text and subscription != source and now - at < 0.2:
            return  # the same message through the other subscription (a latched publisher reaches both)
        self._last_instruction = (msg.data, subscription, now)
        try:
            self._switch_instruction(msg.data)
        except ValueError as err:
            self._reject("instruction", "instruction", err)

    def _switch_instruction(self, text: str) -> None:
        instruction, task, changed = self.controller.set_instruction(text, self._now())
        if not changed:
            return
        if task is not None:
            self.get_logger().info(f"task {task.id} ({task.name}) active")
        else:
            self.get_logger().info(f"free-text instruction active: {instruction!r}")
        tokens, limit = self.runtime.token_count(instruction), int(self.runtime.config.tokenizer_max_length)
        if tokens > limit:
            self.get_logger().warning(f"instruction has {tokens} tokens; the policy reads only the first {limit}")
        self._publish_status()

    def _check_parameters(self, parameters) -> SetParametersResult:
        """Every value set at run time is checked against the parameter table, as at start."""
        successful, reason = param_table.check_parameters(params.NodeSettings, parameters)
        return SetParametersResult(successful=successful, reason=reason)

    def _on_parameters_set(self, parameters) -> None:
        """Apply the dynamic parameters (``dynamic=True`` in the table; rclpy refuses the read-only ones and the
        on-set callback has checked every value against the table)."""
        for parameter in parameters:
            if hasattr(self.settings, parameter.name):  # a row of the table (use_sim_time is rclpy's own)
                setattr(self.settings, parameter.name, parameter.value)
            if parameter.name == "num_steps":
                # read at the start of each inference; 0 goes back to the checkpoint's own
                self.runtime.num_steps = int(parameter.value) or self.runtime.info.num_steps
            self.get_logger().info(f"parameter {parameter.name} set to {parameter.value}")
        self._publish_status()

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.controller.set_enabled(bool(request.data))
        response.success = True
        response.message = "enabled: ramping in from the measured state" if request.data else "disabled"
        self.get_logger().info(response.message)
        self._publish_status()
        return response

    # ----------------------------------------------------------------------------------- control
    def _on_control_tick(self) -> None:
        start = time.perf_counter()
        if self._last_period_start is not None:
            self.controller.record_period(start - self._last_period_start)
        self._last_period_start = start
        try:
            now = self.get_clock().now()  # the tick's time: the safety filter's speed limit and every stamp
            self._publish_tick(self.controller.tick(now.nanoseconds * 1e-9), now.to_msg())
        except Exception as err:  # a bug here must not stop the control loop of a robot
            self.get_logger().error(f"control tick failed: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _publish_tick(self, out: TickOutput, stamp) -> None:
        """Publish what one tick produced, every message stamped ``stamp`` (the time the tick ran at)."""
        if out.command is not None:
            self.action_pub.publish(messages.action_joint_state(out.command, stamp))
            if not self.settings.dry_run:
                if self.arm_pub is not None:
                    self.arm_pub.publish(build(*self.encoder.arm_command(out.command, stamp)[1:]))
                if self.gripper_pub is not None:
                    units = robot.gripper_units(out.command)
                    self.gripper_pub.publish(build(*self.encoder.gripper_command(units, stamp)[1:]))
        if out.new_chunk is not None:
            self.chunk_pub.publish(messages.chunk_message(
                out.new_chunk, out.new_chunk_start, self.runtime.n_action_steps,
                1.0 / self.settings.rate_hz, self.runtime.num_steps))
        if out.error is not None:
            self.get_logger().error(f"inference failed: {out.error.error}\n{out.error.detail}",
                                    throttle_duration_sec=5.0)
        if out.state_changed:
            text = f"state {out.state.name}: {self.controller.snapshot().message}"
            if out.state in (ControlState.STALE, ControlState.HOLDING, ControlState.ERROR):
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
            self._publish_status()

    def _publish_status(self) -> None:
        snap = self.controller.snapshot()
        stamp = self.get_clock().now().to_msg()
        profile = self.profile.describe()
        self.status_pub.publish(messages.status_message(snap, stamp, self.settings.dry_run, self.runtime.num_steps,
                                                        profile))
        self.diagnostics_pub.publish(messages.diagnostics_message(snap, stamp, self.get_fully_qualified_name(),
                                                                  str(self.runtime.info.path), profile))

    def destroy_node(self) -> None:
        controller = getattr(self, "controller", None)  # absent if the constructor failed
        if controller is not None:
            controller.close()
        super().destroy_node()


def main() -> int:
    if param_table.wants_help(sys.argv[1:]):
        print(params.help_text(), end="")
        return 0
    sys.setswitchinterval(0.0005)  # let the control timer's thread get the GIL promptly
    return spin_node(PolicyNode, startup_errors=(CheckpointError, ValueError, RuntimeError, ParameterException,
                                                 NameValidationException))


if __name__ == "__main__":
    raise SystemExit(main())
