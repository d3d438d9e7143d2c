"""An operator for the simulated Kuavo: runs closed-loop episodes of the policy node over ROS.

For each episode it disables the policy (``<policy node>/enable``), resets the simulator (``simulator/reset``),
publishes the task's instruction on the profile's instruction topic (``task_instruction``), re-enables the
policy (which ramps in from the measured state) and records the measured 16-dim state until
``simulator/episode`` reports the episode done. Every name is relative: the operator lives in the namespace
of the nodes it drives (``namespace``). The demo and the end-to-end test drive the real nodes with it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import RobotProfile, load_profile
from kuavo_smolvla_ros.contract.streams import GRIPPER_STATE, STATE, StreamDecoder, input_streams
from kuavo_smolvla_ros.msg import PolicyStatus
from kuavo_smolvla_ros.ros import names
from kuavo_smolvla_ros.ros.fields import MESSAGE_TYPES
from kuavo_smolvla_ros.ros.params import NODE_NAME
from kuavo_smolvla_ros.tasks import Task

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class OperatorError(RuntimeError):
    """The simulator or the policy node did not answer in time."""


@dataclass
class RosEpisode:
    task: str
    seed: int
    success: bool
    success_time: float | None
    object_start: tuple[float, float]
    states: np.ndarray  # (N, 16) measured states as published by the simulator
    events: list = field(default_factory=list)
    wall_s: float = 0.0


class SimOperator(Node):
    """Drives ``sim_robot`` and ``policy_node`` (named ``policy_node``) in ``namespace`` through their topics and
    services; reads the simulated robot's state as its ``profile`` (a robot profile or its name) says."""

    def __init__(self, policy_node: str = NODE_NAME, profile: RobotProfile | str | None = None,
                 namespace: str = "", **kwargs):
        super().__init__("kuavo_sim_operator", namespace=namespace, **kwargs)
        self._cond = threading.Condition()
        self.episode: dict = {}
        self.status: PolicyStatus | None = None
        self._states: list[np.ndarray] = []
        self.profile = profile if isinstance(profile, RobotProfile) else load_profile(profile or "kuavo4pro")
        self._decoder = StreamDecoder(self.profile)
        # latched: it matches the node's volatile and its transient-local subscription alike (a volatile publisher
        # draws an 'incompatible QoS: DURABILITY' warning from the latter); the node takes the message once
        self.instruction_pub = self.create_publisher(String, names.relative(self.profile.instruction_topic), LATCHED)
        self.reset_client = self.create_client(Trigger, names.SIM_RESET)
        self.enable_client = self.create_client(SetBool, names.enable_service(policy_node.lstrip("/")))
        self.create_subscription(String, names.SIM_EPISODE, self._on_episode, LATCHED)
        self.create_subscription(PolicyStatus, names.STATUS, self._on_status, LATCHED)
        for stream in input_streams(self.profile):
            if stream.role in (STATE, GRIPPER_STATE):
                callback = self._on_state if stream.role == STATE else self._decoder.update_grippers
                self.create_subscription(MESSAGE_TYPES[stream.types[0]], names.relative(stream.topic), callback,
                                         qos_profile_sensor_data)

    # ------------------------------------------------------------------------------- callbacks
    def _on_episode(self, msg: String) -> None:
        with self._cond:
            self.episode = json.loads(msg.data)
            self._cond.notify_all()

    def _on_status(self, msg: PolicyStatus) -> None:
        with self._cond:
            self.status = msg
            self._cond.notify_all()

    def _on_state(self, msg) -> None:
        state = self._decoder.state(msg)
        if state is not None:
            with self._cond:
                self._states.append(state)

    # ------------------------------------------------------------------------------- waiting
    def wait_for(self, predicate, timeout: float, what: str):
        """Block until ``predicate()`` is truthy (checked on every message), or raise :class:`OperatorError`."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise OperatorError(f"timed out after {timeout:.0f} s waiting for {what}")
            return predicate()

    def _call(self, client, request, timeout: float):
        if not client.wait_for_service(timeout_sec=timeout):
            raise OperatorError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise OperatorError(f"service {client.srv_name} did not answer within {timeout:.0f} s")
        return future.result()

    def wait_until_ready(self, timeout: float = 120.0) -> None:
        """Until the policy node has loaded its checkpoint and the simulator publishes."""
        self.wait_for(lambda: self.status is not None, timeout, "the policy node's status")
        if not self.reset_client.wait_for_service(timeout_sec=timeout):
            raise OperatorError("the simulator's reset service is not available")

    def set_enabled(self, enabled: bool, timeout: float = 10.0) -> None:
        self._call(self.enable_client, SetBool.Request(data=enabled), timeout)
        self.wait_for(lambda: self.status is not None and self.status.enabled == enabled, timeout,
                      f"the policy to report enabled={enabled}")

    # ------------------------------------------------------------------------------- episodes
    def select_task(self, task: Task, timeout: float = 30.0) -> None:
        """Publish ``task``'s instruction (the policy's instruction and the simulator's next task) until
        the simulator reports it selected (a first message can precede discovery)."""
        deadline = time.monotonic() + timeout
        while True:
            self.instruction_pub.publish(String(data=task.instruction))
            try:
                self.wait_for(lambda: self.episode.get("next_task") == task.name, 1.0, "")
                return
            except OperatorError:
                if time.monotonic() > deadline:
                    raise OperatorError(f"the simulator did not select {task.name} within {timeout:.0f} s") from None

    def run_episode(self, task: Task, timeout: float = 60.0) -> RosEpisode:
        """One closed-loop episode of ``task``; returns what happened and the measured trajectory."""
        self.set_enabled(False)
        self.select_task(task, timeout)
        report = json.loads(self._call(self.reset_client, Trigger.Request(), timeout).message)
        number = report["episode"]
        with self._cond:
            self._states = []
        start = time.monotonic()
        self.set_enabled(True)
        final = self.wait_for(lambda: self.episode if self.episode.get("episode") == number
                              and self.episode.get("done") else None, timeout, f"episode {number} to end")
        self.set_enabled(False)
        with self._cond:
            states = np.array(self._states) if self._states else np.zeros((0, robot.STATE_DIM))
        return RosEpisode(task.name, final["seed"], bool(final["success"]), final.get("success_time"),
                          tuple(final["object_start"]), states, final["events"], time.monotonic() - start)
