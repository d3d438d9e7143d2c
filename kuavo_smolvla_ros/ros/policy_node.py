"""``policy_node``: SmolVLA on the Kuavo under ROS 2 (thin rclpy layer around PolicyController).

A managed lifecycle node (``rclpy.lifecycle``; services ``~/change_state``, ``~/get_state``, ... and the
``~/transition_event`` topic, as every ROS 2 lifecycle node has):

- the constructor declares the parameters only (a bad value: one line, exit 2);
- **configure** opens and checks the checkpoint, warms it up, builds the controller, publishers,
  subscriptions and control timer (inputs are buffered from here on); a refused checkpoint or parameter
  fails the transition (back to *unconfigured*, the reason logged in one line);
- **activate** starts the commands: the controller ramps in from the measured state;
- **deactivate** stops the commands at once (the robot holds; the status says ``inactive``);
- **cleanup** frees the model (runtime, controller and its inference thread); **shutdown** does the same
  and ends in *finalized*; an unexpected exception in a transition goes through *errorprocessing* (the
  model is freed) back to *unconfigured*.

``autostart`` (default true) configures and activates in the constructor, so one ``ros2 run`` / ``ros2
launch`` starts commanding as before (a configure failure then exits 2: ``cannot start: ...``). ``~/enable``
(``std_srvs/SetBool``) is a convenience for activate (true) and deactivate (false).

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

import dataclasses
import functools
import gc
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.fields import header_stamp
from kuavo_smolvla_ros.contract.streams import GRIPPER_STATE, STATE, StreamDecoder, StreamEncoder, input_streams
from kuavo_smolvla_ros.control.controller import STATE_STREAM, ControlState, PolicyController, Snapshot, TickOutput
from kuavo_smolvla_ros.control.execution import ExecutionSettings, make_controller
from kuavo_smolvla_ros.control.images import FrameFitter
from kuavo_smolvla_ros.control.worker import SteppedWorker
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
#: What refuses a configuration (checkpoint, parameters against it, device, topic names): the configure
#: transition fails (back to unconfigured) with this one line; with autostart the process exits 2 with it.
CONFIGURE_ERRORS: tuple[type[Exception], ...] = (CheckpointError, ValueError, RuntimeError, OSError,
                                                 ParameterException, NameValidationException)
#: The primary lifecycle states (lifecycle_msgs/State labels) the node reports in its status.
UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED = "unconfigured", "inactive", "active", "finalized"
SUCCESS, FAILURE, ERROR = (TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE,
                           TransitionCallbackReturn.ERROR)


def _transition(name: str) -> Callable[[Callable[..., TransitionCallbackReturn]],
                                      Callable[..., TransitionCallbackReturn]]:
    """A transition callback whose exception is logged with its traceback (rclpy drops it silently) and
    returns ERROR: the node goes through errorprocessing (:meth:`PolicyNode.on_error`) to unconfigured."""

    def wrap(method: Callable[..., TransitionCallbackReturn]) -> Callable[..., TransitionCallbackReturn]:
        @functools.wraps(method)
        def run(self: PolicyNode, state: LifecycleState) -> TransitionCallbackReturn:
            try:
                return method(self, state)
            except Exception as err:
                self.last_error = f"{name} failed: {type(err).__name__}: {err}"
                self.get_logger().error(f"{self.last_error}\n{traceback.format_exc()}")
                return ERROR
        return run
    return wrap


class PolicyNode(LifecycleNode):
    """Parameters, lifecycle transitions, subscriptions, publishers and timers; the decisions live in
    PolicyController (built on configure, dropped on cleanup)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.settings = s = params.declare(self)
        self.profile = s.profile
        self.catalog = default_catalog()
        #: The primary lifecycle state (unconfigured, inactive, active, finalized), as status reports it.
        self.lifecycle_state = UNCONFIGURED
        #: Why the last configure failed (None after a successful one).
        self.configure_error: Exception | None = None
        #: The last failed transition, in one line, for the status (None after a successful configure).
        self.last_error: str | None = None
        self._autostarting = False
        # Built on configure, dropped on cleanup.
        self.runtime: PolicyRuntime | None = None
        self.controller: PolicyController | None = None
        self.decoder: StreamDecoder | None = None
        self.fitter: FrameFitter | None = None
        self.encoder: StreamEncoder | None = None
        self.action_pub = self.chunk_pub = self.arm_pub = self.gripper_pub = None
        self._configured_entities: list[tuple[str, Any]] = []  # (kind, entity) to destroy on cleanup
        self._last_period_start: float | None = None
        self._last_instruction: tuple[str, str, float] = ("", "", -1.0)  # text, subscription, when
        # Status, diagnostics and ~/enable live as long as the node: they report every lifecycle state.
        self.status_pub = self.create_publisher(PolicyStatus, names.STATUS, STATUS_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS, 10)
        self.create_service(SetBool, names.ENABLE, self._on_enable)
        # rclpy tells when the clock (e.g. a simulator's /clock under use_sim_time) jumps back.
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=CLOCK_JUMP_BACK, on_clock_change=True),
            post_callback=self._on_clock_jump)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self.create_timer(1.0 / s.status_rate_hz, self._publish_status)
        if s.autostart:
            self.autostart()
        else:
            self.get_logger().info(
                f"unconfigured: waiting for a lifecycle manager ({self.resolve_service_name('~/change_state')}: "
                "configure loads the checkpoint, activate sends commands)")
            self._publish_status()

    def autostart(self) -> None:
        """Configure and activate now (the ``autostart`` parameter); raise the reason if configure fails (the
        executable then exits 2 with it in one line, as before the lifecycle)."""
        self._autostarting = True
        try:
            configured = self.trigger_configure()
        finally:
            self._autostarting = False
        if configured != SUCCESS:
            raise self.configure_error or RuntimeError("configure failed (see the log)")
        if self.trigger_activate() != SUCCESS:
            raise RuntimeError("activate failed (see the log)")

    # -------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and check the checkpoint, warm up, build the controller (disabled) and the ROS entities."""
        try:
            self._configure()
        except CONFIGURE_ERRORS as err:
            self._release()
            self.configure_error, self.last_error = err, f"configure failed: {err}"
            if not self._autostarting:  # with autostart the executable reports it (cannot start: ...)
                self.get_logger().error(f"configure failed: {err}")
            self._publish_status()
            return FAILURE
        except Exception as err:  # a bug: errorprocessing frees what was built, back to unconfigured
            self.configure_error, self.last_error = err, f"configure failed: {type(err).__name__}: {err}"
            self.get_logger().error(f"{self.last_error}\n{traceback.format_exc()}")
            return ERROR
        self.configure_error = self.last_error = None
        result = super().on_configure(state)
        self.lifecycle_state = INACTIVE
        self.get_logger().info("configured: inactive, no commands until activate (or ~/enable true)")
        self._publish_status()
        return result

    @_transition("activate")
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Commands start: the controller ramps in from the measured state; command publishers enabled."""
        result = super().on_activate(state)  # the lifecycle publishers
        self.controller.set_enabled(True)
        self.lifecycle_state = ACTIVE
        self.get_logger().info(
            f"ready: {self.resolve_topic_name(names.ACTION)} at {self.settings.rate_hz:g} Hz, status on "
            f"{self.resolve_topic_name(names.STATUS)}; active: ramping in from the measured state")
        self._publish_status()
        return result

    @_transition("deactivate")
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Commands stop at once (the robot holds); an inference in flight is discarded."""
        self.controller.set_enabled(False)
        result = super().on_deactivate(state)  # the lifecycle publishers publish nothing from here on
        self.lifecycle_state = INACTIVE
        self.get_logger().info("deactivated: inactive, no commands to the robot (it holds)")
        self._publish_status()
        return result

    @_transition("cleanup")
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model: the runtime, the controller and its inference thread, the ROS entities of configure."""
        result = super().on_cleanup(state)
        self._release()
        self.lifecycle_state = UNCONFIGURED
        self.get_logger().info("cleaned up: model freed, unconfigured")
        self._publish_status()
        return result

    @_transition("shutdown")
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any primary state: stop commands, free the model, end in finalized."""
        if self.controller is not None:
            self.controller.set_enabled(False)
        result = super().on_shutdown(state)
        self._release()
        self.lifecycle_state = FINALIZED
        self.get_logger().info("shut down: finalized")
        self._publish_status()
        return result

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """An exception in a transition from ``state``: stop commands, free the model, back to unconfigured."""
        for publisher in [e for kind, e in self._configured_entities if kind == "publisher"]:
            publisher.on_deactivate(state)  # no command goes out from here on, whatever the controller does
        super().on_error(state)
        self._release()
        self.lifecycle_state = UNCONFIGURED
        self.get_logger().error(f"error in a transition from {state.label}: model freed, back to unconfigured")
        self._publish_status()
        return SUCCESS

    def _configure(self) -> None:
        s, profile = self.settings, self.profile
        import torch

        torch.set_num_threads(s.torch_threads or max(1, (os.cpu_count() or 2) - 1))
        runtime = self.runtime = PolicyRuntime.open(
            s.checkpoint, device=s.device, vlm_path=s.vlm_path or None, num_steps=s.num_steps or None,
            chunk_size=s.chunk_size or None, n_action_steps=s.n_action_steps or None)
        s.check_against_checkpoint(runtime.cameras, runtime.info.image_shapes)
        latency = runtime.warmup(s.warmup_iterations) if s.warmup_iterations else 0.0
        trained = params.trained_sizes(runtime.info.image_shapes)
        self.get_logger().info(
            f"loaded {runtime.info.path} on {s.device}: {runtime.num_steps} steps, chunk "
            f"{runtime.chunk_size}, {runtime.n_action_steps} executed per chunk, cameras "
            f"{', '.join(f'{c} {h}x{w}' for c, (h, w) in trained.items())}, warm-up {latency * 1e3:.0f} ms; "
            f"robot profile {profile.describe()}")
        self.get_logger().info("safety settings: " + param_table.safety_line(s, {
            "control_rate_hz": s.rate_hz, "num_steps": runtime.num_steps,
            "chunk_size": runtime.chunk_size, "n_action_steps": runtime.n_action_steps,
            "namespace": self.get_namespace()}))
        ages = {c.name: c.sync.live_max_age for c in profile.cameras} | {STATE_STREAM: profile.state.sync.live_max_age}
        if s.chunk_transition == "rtc":
            runtime.enable_rtc()
        # The executor closed-loop evaluation runs too (control/execution.py): one code path.
        execution = self.execution_settings()
        worker: dict[str, Any] = {}
        if s.inference_latency_ticks:  # as evaluation in simulated time runs the model: N ticks per chunk
            worker["worker"] = functools.partial(SteppedWorker, latency_ticks=s.inference_latency_ticks,
                                                 period_s=execution.period_s)
            latency = (s.inference_latency_ticks - 0.5) * execution.period_s
        self.controller = make_controller(
            execution, runtime.cameras, self._predict, self.catalog,
            stream_max_age_s=ages, stale_behaviour=s.stale_behaviour, error_retry_s=s.error_retry_s,
            initial_latency_s=latency, stamp_source=profile.stamp_source, **worker)
        self.controller.set_enabled(False)  # inactive until activate
        # Frames of any size are accepted (bounded by images.MAX_PIXELS) and fitted to the trained size.
        self.decoder = StreamDecoder(profile, {c: None for c in profile.camera_names})
        self.fitter = FrameFitter(trained, warn=self.get_logger().warning, inform=self.get_logger().info)
        self.encoder = StreamEncoder(profile)
        self._last_period_start = None
        self._last_instruction = ("", "", -1.0)
        self._make_publishers()
        self._make_subscriptions()
        # Every callback is short (frames are decoded on the inference thread), so one executor thread
        # serves them all; rclpy's multi-threaded executor costs more than it gains under the GIL.
        self._configured_entities.append(("timer", self.create_timer(1.0 / s.rate_hz, self._on_control_tick)))
        if s.default_instruction:
            self._switch_instruction(s.default_instruction)

    def _release(self) -> None:
        """Drop what configure built (safe to call in any state): entities, controller (its inference thread
        stops), runtime (the model); the memory is returned."""
        for kind, entity in reversed(self._configured_entities):
            if kind == "timer":
                self.destroy_timer(entity)
            elif kind == "subscription":
                self.destroy_subscription(entity)
            else:
                self.destroy_lifecycle_publisher(entity)
        self._configured_entities.clear()
        self.action_pub = self.chunk_pub = self.arm_pub = self.gripper_pub = None
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.close()
        runtime, self.runtime = self.runtime, None
        self.decoder = self.fitter = self.encoder = None
        if runtime is not None:
            device = runtime.device
            del runtime
            gc.collect()
            if str(device).startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

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
        """The command publishers: lifecycle publishers, silent unless the node is active."""
        s, profile = self.settings, self.profile

        def publisher(msg_type: Any, topic: str) -> Any:
            made = self.create_lifecycle_publisher(msg_type, topic, COMMAND_QOS)
            self._configured_entities.append(("publisher", made))
            return made

        self.action_pub = publisher(JointState, names.ACTION)
        self.chunk_pub = publisher(ActionChunk, names.ACTION_CHUNK)
        if s.publish_arm_command:
            self.arm_pub = publisher(JointState, names.relative(profile.action.topic))
        if s.publish_gripper_command and profile.has_gripper_command:
            self.gripper_pub = publisher(MESSAGE_TYPES[profile.gripper.command_type],
                                         names.relative(profile.end_effector.command_topic))

    def _make_subscriptions(self) -> None:
        """The robot's inputs and the instruction: buffered from configure on, so activate ramps in at once."""

        def subscribe(msg_type: Any, topic: str, callback: Any, qos: QoSProfile, **kwargs: Any) -> None:
            made = self.create_subscription(msg_type, topic, callback, qos, **kwargs)
            self._configured_entities.append(("subscription", made))

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
            subscribe(msg_type, names.relative(stream.topic), callback, qos_profile_sensor_data)
        # The instruction arrives whether it was published volatile (a plain `ros2 topic pub`, matched by the
        # first subscription) or transient local (latched before this node started, matched by the second;
        # a repeat of the active instruction changes nothing).
        topic = names.relative(self.profile.instruction_topic)
        subscribe(String, topic, lambda m: self._on_instruction(m, "volatile"), INSTRUCTION_QOS)
        subscribe(String, topic, lambda m: self._on_instruction(m, "latched"), LATCHED_INSTRUCTION_QOS,
                  event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda _event: None))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reject(self, stream: str, what: str, err: Exception) -> None:
        self.controller.reject_input(stream, str(err))
        self.get_logger().warning(f"rejected {what}: {err}", throttle_duration_sec=2.0)

    # -------------------------------------------------------------------------------- callbacks
    # The input callbacks exist from configure to cleanup only; the guards cover a message already taken.
    def _on_image(self, name: str, msg: CompressedImage | Image) -> None:
        if self.controller is None:
            return
        try:
            frame = self.fitter.fit(name, self.decoder.image(name, msg))
            self.controller.add_image(name, frame, header_stamp(msg), self._now())
        except ValueError as err:  # images.ImageError included
            self._reject(name, f"camera {name} frame", err)

    def _on_state(self, msg: Any) -> None:
        if self.controller is None:
            return
        try:
            state = self.decoder.state(msg)
            if state is not None:  # None until the first gripper state
                self.controller.add_state(state, header_stamp(msg), self._now())
        except ValueError as err:
            self._reject(STATE_STREAM, "joint state", err)

    def _on_gripper_state(self, msg: Any) -> None:
        if self.controller is None:
            return
        try:
            self.decoder.update_grippers(msg)
        except ValueError as err:
            self._reject(GRIPPER_STATE, "gripper state", err)

    def _on_clock_jump(self, jump: Any) -> None:
        if self.controller is None:
            return
        self.controller.clock_jumped(self._now())
        self.get_logger().warning(f"the clock jumped by {jump.delta.nanoseconds * 1e-9:.3f} s: input buffers cleared")

    def _on_instruction(self, msg: String, subscription: str) -> None:
        if self.controller is None:
            return
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
            if parameter.name == "num_steps" and self.runtime is not None:  # else: applied on configure
                # read at the start of each inference; 0 goes back to the checkpoint's own
                self.runtime.num_steps = int(parameter.value) or self.runtime.info.num_steps
            self.get_logger().info(f"parameter {parameter.name} set to {parameter.value}")
        self._publish_status()

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """``~/enable``: true activates (from inactive), false deactivates (from active); the lifecycle
        transitions themselves, so a lifecycle manager sees the same states."""
        state = self.lifecycle_state
        if request.data and state == INACTIVE:
            response.success = self.trigger_activate() == SUCCESS
            response.message = ("enabled: activated, ramping in from the measured state" if response.success
                                else f"activate failed: the node is {self.lifecycle_state}")
        elif not request.data and state == ACTIVE:
            response.success = self.trigger_deactivate() == SUCCESS
            response.message = ("disabled: deactivated, no commands to the robot" if response.success
                                else f"deactivate failed: the node is {self.lifecycle_state}")
        elif request.data and state != ACTIVE:
            response.success = False
            response.message = (f"cannot enable: the node is {state}; configure it first (~/change_state)"
                                if state == UNCONFIGURED else f"cannot enable: the node is {state}")
        else:
            response.success = True
            response.message = f"already {state}"
        self.get_logger().info(f"~/enable {str(bool(request.data)).lower()}: {response.message}")
        self._publish_status()
        return response

    # ----------------------------------------------------------------------------------- control
    def _on_control_tick(self) -> None:
        if self.controller is None:
            return
        start = time.perf_counter()
        if self._last_period_start is not None:
            self.controller.record_period(start - self._last_period_start)
        self._last_period_start = start
        try:
            now = self.get_clock().now()  # the tick's time: the safety filter's speed limit and every stamp
            self._publish_tick(self.controller.tick(now.nanoseconds * 1e-9), now.to_msg())
        except Exception as err:  # a bug here must not stop the control loop of a robot
            self.get_logger().error(f"control tick failed: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _publish_tick(self, out: TickOutput, stamp: Any) -> None:
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
            text = f"state {out.state.name}: {self._snapshot().message}"
            if out.state in (ControlState.STALE, ControlState.HOLDING, ControlState.ERROR):
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
            self._publish_status()

    def _snapshot(self) -> Snapshot:
        """The controller's snapshot, its state and message saying so while the node is not active (at once:
        the controller's own state follows at its next tick)."""
        snap = self.controller.snapshot()
        if self.lifecycle_state != ACTIVE:
            snap = dataclasses.replace(snap, state=ControlState.DISABLED, enabled=False, message=(
                f"{self.lifecycle_state} (lifecycle): no commands to the robot; activate (or ~/enable true) to "
                "ramp in from the measured state"))
        return snap

    def _publish_status(self) -> None:
        """PolicyStatus and diagnostics, in every lifecycle state (with no model loaded, a DISABLED status
        saying which state the node is in)."""
        stamp = self.get_clock().now().to_msg()
        profile = self.profile.describe()
        if self.controller is None:
            status, diagnostics = self._unconfigured_messages(stamp, profile)
        else:
            snap = self._snapshot()
            status = messages.status_message(snap, stamp, self.settings.dry_run, self.runtime.num_steps, profile)
            diagnostics = messages.diagnostics_message(snap, stamp, self.get_fully_qualified_name(),
                                                       str(self.runtime.info.path), profile)
            diagnostics.status[0].values.append(KeyValue(key="lifecycle_state", value=self.lifecycle_state))
        self.status_pub.publish(status)
        self.diagnostics_pub.publish(diagnostics)

    def _unconfigured_messages(self, stamp: Any, profile: str) -> tuple[PolicyStatus, DiagnosticArray]:
        """Status and diagnostics with no model loaded (unconfigured or finalized)."""
        if self.lifecycle_state == FINALIZED:
            text = "finalized (lifecycle): shut down, no model loaded"
        elif self.last_error is not None:
            text = f"unconfigured (lifecycle): {self.last_error}"
        else:
            text = "unconfigured (lifecycle): no model loaded; configure (~/change_state) loads the checkpoint"
        status = PolicyStatus(state=PolicyStatus.STATE_DISABLED, message=text, enabled=False,
                              dry_run=self.settings.dry_run, robot_profile=profile)
        status.header.stamp = stamp
        level = DiagnosticStatus.ERROR if self.last_error is not None else DiagnosticStatus.OK
        values = {"state": ControlState.DISABLED.name, "lifecycle_state": self.lifecycle_state,
                  "robot_profile": profile, "enabled": "False", "checkpoint": self.settings.checkpoint}
        diagnostics = DiagnosticArray(status=[DiagnosticStatus(
            level=level, name=f"{self.get_fully_qualified_name()}: policy", message=f"disabled: {text}",
            hardware_id=self.settings.checkpoint, values=[KeyValue(key=k, value=v) for k, v in values.items()])])
        diagnostics.header.stamp = stamp
        return status, diagnostics

    def destroy_node(self) -> None:
        """Stop the inference thread and drop the model, then destroy the node."""
        if hasattr(self, "_configured_entities"):  # absent if the constructor failed early
            self._release()
        super().destroy_node()


def main() -> int:
    if param_table.wants_help(sys.argv[1:]):
        print(params.help_text(), end="")
        return 0
    stray = param_table.stray_arguments(sys.argv[1:])
    if stray:
        print(f"error: unknown argument(s) {' '.join(stray)}: parameters go after --ros-args "
              "(-p NAME:=VALUE, --params-file FILE); --help lists them", file=sys.stderr)
        return 2
    sys.setswitchinterval(0.0005)  # let the control timer's thread get the GIL promptly
    return spin_node(PolicyNode, startup_errors=CONFIGURE_ERRORS)


if __name__ == "__main__":
    raise SystemExit(main())
