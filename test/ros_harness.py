"""A test robot for the policy node: publishes cameras, joint state and instructions over real DDS and
records everything the node publishes, with bounded waits on what arrives."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from kuavo_smolvla_ros.msg import (
    ActionChunk,
    EndEffectorData,
    LejuClawCommand,
    LejuClawState,
    PolicyStatus,
    SensorsData,
)
from lifecycle_msgs.msg import Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import RobotProfile, load_profile, parse_overrides
from kuavo_smolvla_ros.ros.names import relative
from kuavo_smolvla_ros.ros.spin import spinning_in_background

IMAGE_SIDE = 64
# Lower than the robot's (30 Hz cameras, 500 Hz state): the test robot shares the node's process.
CAMERA_HZ = 15
STATE_HZ = 50
MID_STATE = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2
#: How much longer than its nominal bound a liveness wait may take: a CI machine stalled for tens of seconds
#: (once: 20 s an inference where 0.2 s is usual, the test robots' inputs stale) must not fail a test whose event
#: comes late, only one whose event never comes. ``KUAVO_TEST_PATIENCE`` sets it.
PATIENCE = float(os.environ.get("KUAVO_TEST_PATIENCE", "4"))
if not PATIENCE >= 1:
    raise ValueError(f"KUAVO_TEST_PATIENCE={PATIENCE:g}: must be 1 or more (how much longer a wait may take)")


def patient(timeout: float) -> float:
    """A liveness bound ``timeout`` (seconds, on this machine unloaded) stretched by :data:`PATIENCE`."""
    return timeout * PATIENCE


def jpeg(seed: int, side: int = IMAGE_SIDE) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


class FakeRobot(Node):
    """Publishes a robot's sensors as its profile says, at fixed rates (a timer); records the node's outputs.

    Messages are built here by hand (not with the contract's encoders), so the node's decoding is tested
    against an independent writer. ``joint_state_extra`` adds joints a whole-robot joint_state_broadcaster
    publishes (legs, head) and shuffles the order. Every name is relative (the profile's topics without their
    leading ``/``), as the node's: in ``namespace`` the robot and the node both move."""

    def __init__(self, context, profile: RobotProfile, joint_state_extra: bool = False, namespace: str = ""):
        super().__init__("test_robot", context=context, namespace=namespace)
        self.profile = profile
        self.state_source = "kuavo" if profile.state.source == "kuavo_sensors" else "joint_state"
        self.joint_state_extra = joint_state_extra
        self.cond = threading.Condition()
        self.received: dict[str, list] = defaultdict(list)
        self.arrival: dict[str, list[float]] = defaultdict(list)
        self.cameras_on = {name: True for name in profile.camera_names}
        self.state = MID_STATE.copy()
        self.frames = {name: jpeg(i) for i, name in enumerate(profile.camera_names)}
        self.camera_types = {c.name: c.encoding for c in profile.cameras}
        self.camera_pubs = {c.name: self.create_publisher(CompressedImage if c.encoding == "compressed" else Image,
                                                          relative(c.topic), qos_profile_sensor_data)
                            for c in profile.cameras}
        if self.state_source == "kuavo":
            self.sensors_pub = self.create_publisher(SensorsData, relative(profile.state.topic),
                                                     qos_profile_sensor_data)
        else:
            self.joint_pub = self.create_publisher(JointState, relative(profile.state.topic),
                                                   qos_profile_sensor_data)
        if profile.has_gripper_state:
            self.claw_pub = self.create_publisher(LejuClawState, relative(profile.end_effector.state_topic),
                                                  qos_profile_sensor_data)
        self.instruction_pub = self.create_publisher(String, relative(profile.instruction_topic), 10)  # default QoS
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        outputs = [("action", JointState, "kuavo_smolvla/action", 10),
                   ("chunk", ActionChunk, "kuavo_smolvla/action_chunk", 10),
                   ("status", PolicyStatus, "kuavo_smolvla/status", latched),
                   ("diagnostics", DiagnosticArray, "diagnostics", 10),
                   ("arm", JointState, relative(profile.action.topic), 10)]
        if profile.has_gripper_command:
            outputs.append(("claw", LejuClawCommand, relative(profile.end_effector.command_topic), 10))
        for name, msg_type, topic, qos in outputs:
            self.create_subscription(msg_type, topic, lambda m, n=name: self._record(n, m), qos)
        self.create_timer(1 / CAMERA_HZ, self._publish_cameras)
        self.create_timer(1 / STATE_HZ, self._publish_state)

    # ------------------------------------------------------------------------------ publishing
    def _stamp(self, msg):
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def camera_message(self, name: str, data: bytes | None = None):
        if self.camera_types[name] == "compressed":
            msg = self._stamp(CompressedImage())
            msg.format = "jpeg"
            msg.data = data if data is not None else self.frames[name]
            return msg
        image = cv2.cvtColor(cv2.imdecode(np.frombuffer(self.frames[name], np.uint8), cv2.IMREAD_COLOR),
                             cv2.COLOR_BGR2RGB)
        msg = self._stamp(Image())
        msg.height, msg.width, msg.encoding, msg.step = IMAGE_SIDE, IMAGE_SIDE, "rgb8", IMAGE_SIDE * 3
        msg.data = image.tobytes()
        return msg

    def _publish_cameras(self):
        for name, on in self.cameras_on.items():
            if on:
                self.camera_pubs[name].publish(self.camera_message(name))

    def sensors_message(self, state: np.ndarray) -> SensorsData:
        layout = self.profile.state.joint_q
        msg = self._stamp(SensorsData())
        q = np.zeros(layout.length)
        q[list(layout.left_arm)], q[list(layout.right_arm)] = state[robot.LEFT_ARM], state[robot.RIGHT_ARM]
        msg.joint_data.joint_q = q.tolist()
        return msg

    def joint_state_message(self, state: np.ndarray, names=None) -> JointState:
        names = list(self.profile.state.joint_names if names is None else names)
        values = [float(v) for v in state]
        if self.joint_state_extra:  # a whole robot: legs and head too, in the broadcaster's order
            names += [*(f"leg_l{i}_joint" for i in range(1, 7)), *(f"leg_r{i}_joint" for i in range(1, 7)),
                      "head_yaw_joint", "head_pitch_joint"]
            values += [0.1 * i for i in range(14)]
            order = np.random.default_rng(len(names)).permutation(len(names))
            names, values = [names[i] for i in order], [values[i] for i in order]
        msg = self._stamp(JointState())
        msg.name, msg.position = names, values
        return msg

    def _publish_state(self):
        if self.state_source == "kuavo":
            self.sensors_pub.publish(self.sensors_message(self.state))
        else:
            self.joint_pub.publish(self.joint_state_message(self.state))
        if self.profile.has_gripper_state:
            claw = self._stamp(LejuClawState())
            claw.state = [2, 2]
            claw.data = EndEffectorData(name=list(self.profile.end_effector.names),
                                        position=[self.state[7] * 100, self.state[15] * 100])
            self.claw_pub.publish(claw)

    def instruct(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    # ------------------------------------------------------------------------------- recording
    def _record(self, name: str, msg) -> None:
        with self.cond:
            self.received[name].append(msg)
            self.arrival[name].append(time.monotonic())
            self.cond.notify_all()

    def count(self, name: str) -> int:
        with self.cond:
            return len(self.received[name])

    def latest(self, name: str):
        with self.cond:
            return self.received[name][-1] if self.received[name] else None

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str = "condition",
                 prompt: bool = False):
        """Wait (bounded) until ``predicate()`` is truthy; returns its value, fails the test otherwise.

        ``timeout`` is what the wait takes on this machine at most when nothing else loads it; it is stretched
        by :data:`PATIENCE` (a liveness wait ends when the event comes, so only a failing test waits longer),
        unless ``prompt``: then how soon the event comes is what the test asserts, and ``timeout`` is exact."""
        bound = timeout if prompt else patient(timeout)
        deadline = time.monotonic() + bound
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    stretched = "" if prompt else f" ({timeout:g} s x KUAVO_TEST_PATIENCE {PATIENCE:g})"
                    raise AssertionError(f"timed out after {bound:g} s{stretched} waiting for {what}")
                self.cond.wait(min(remaining, 0.1))

    def wait_count(self, name: str, count: int, timeout: float) -> list:
        self.wait_for(lambda: len(self.received[name]) >= count, timeout, f"{count} {name} messages")
        with self.cond:
            return list(self.received[name])

    def wait_status(self, predicate: Callable[[PolicyStatus], bool], timeout: float, what: str) -> PolicyStatus:
        return self.wait_for(lambda: next((s for s in reversed(self.received["status"]) if predicate(s)), None),
                             timeout, what)


class LifecycleClient:
    """Drives a lifecycle node through its standard services (``<node>/change_state``, ``<node>/get_state``)
    and records its ``<node>/transition_event`` messages, from ``client`` (a spinning FakeRobot), as
    ``ros2 lifecycle`` or a lifecycle manager does."""

    def __init__(self, client: FakeRobot, node: str = "kuavo_smolvla_policy", timeout: float = 10.0):
        self.client, self.timeout = client, timeout
        self.change_client = client.create_client(ChangeState, f"{node}/change_state")
        self.get_client = client.create_client(GetState, f"{node}/get_state")
        client.create_subscription(TransitionEvent, f"{node}/transition_event",
                                   lambda m: client._record("transition", m), 10)
        for service in (self.change_client, self.get_client):
            assert service.wait_for_service(timeout_sec=patient(timeout)), f"{service.srv_name} not available"

    def _call(self, service, request, what: str):
        future = service.call_async(request)
        self.client.wait_for(future.done, self.timeout, what)
        return future.result()

    def change(self, transition: str | int) -> bool:
        """Trigger ``transition`` (a label such as ``configure``, or a ``Transition.TRANSITION_*`` id);
        whether the node reports success."""
        request = ChangeState.Request()
        if isinstance(transition, str):
            request.transition.label = transition
        else:
            request.transition = Transition(id=transition)
        # Configure loads and warms up the model: allow it more time than a plain service call.
        future = self.change_client.call_async(request)
        self.client.wait_for(future.done, max(self.timeout, 120.0), f"change_state {transition}")
        return future.result().success

    def state(self) -> str:
        """The node's current lifecycle state label (``unconfigured``, ``inactive``, ``active``, ...)."""
        return self._call(self.get_client, GetState.Request(), "get_state").current_state.label

    def transitions(self) -> list[tuple[str, str]]:
        """(start, goal) labels of the transition events received so far."""
        with self.client.cond:
            return [(m.start_state.label, m.goal_state.label) for m in self.client.received["transition"]]


def node_parameters(checkpoint, **overrides) -> list[Parameter]:
    values = {
        "checkpoint": str(checkpoint), "seed": 0,
        "warmup_iterations": 1, "torch_threads": 1, "max_input_age_s": 0.5, "status_rate_hz": 5.0,
        "max_joint_velocity": 3.0,
    }
    values.update(overrides)
    return [Parameter(k, value=v) for k, v in values.items()]


@contextmanager
def running(checkpoint, robot_profile: str = "kuavo4pro", camera_type: str = "compressed",
            joint_state_extra: bool = False, fake_profile: str | None = None, before_node=None, namespace: str = "",
            **overrides):
    """A PolicyNode and a FakeRobot (both following ``robot_profile``, with the cameras' encoding
    ``camera_type``; the robot follows ``fake_profile`` if given; both in ``namespace``), each spinning in a
    background thread. ``before_node(fake)`` runs before the node is created."""
    from kuavo_smolvla_ros.ros.policy_node import PolicyNode

    context = rclpy.Context()
    rclpy.init(context=context)
    profile_overrides = [f"cameras.{c}.encoding={camera_type}" for c in load_profile(robot_profile).camera_names]
    profile = load_profile(fake_profile or robot_profile, parse_overrides(profile_overrides))
    fake = FakeRobot(context, profile, joint_state_extra, namespace)
    if before_node is not None:
        before_node(fake)
    node = PolicyNode(context=context, namespace=namespace, parameter_overrides=node_parameters(
        checkpoint, robot_profile=robot_profile, profile_overrides=profile_overrides, **overrides))
    with spinning(context, fake, node):
        yield node, fake


@contextmanager
def spinning(context, *nodes: Node):
    """Each node on its own single-threaded executor and thread, as in separate processes (minus the
    GIL); on exit the threads are joined, the nodes destroyed and ``context`` shut down."""
    try:
        with spinning_in_background(context, *nodes):
            yield nodes
    finally:
        for member in nodes:
            member.destroy_node()
        rclpy.shutdown(context=context)
