"""sim_robot over real Fast DDS: its streams, the two command inputs, reset and task choice, a solved
episode (the expert's plan commanded phase by phase), and bad parameters."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import yaml
from kuavo_smolvla_ros.msg import EndEffectorData, LejuClawCommand, LejuClawState, SensorsData
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_harness import FakeRobot, spinning
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.fields import seconds
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.contract.streams import StreamDecoder, StreamEncoder
from kuavo_smolvla_ros.ros import messages
from kuavo_smolvla_ros.ros.fields import build, to_time
from kuavo_smolvla_ros.ros.sim_node import LATCHED_QOS, NODE_NAME, SimNode
from kuavo_smolvla_ros.ros.sim_params import SimSettings
from kuavo_smolvla_ros.sim.expert import plan
from kuavo_smolvla_ros.sim.kinematics import arm_pose, arm_slice, gripper_index, home_state
from kuavo_smolvla_ros.sim.render import find_object
from kuavo_smolvla_ros.sim.world import SimWorld

pytestmark = pytest.mark.ros
HOME = home_state()
HEAD, WRIST = (120, 160), (48, 64)
# Small images and rates below the robot's: the test client shares the simulator's process and 2 cores.
SMALL = {"camera_height": HEAD[0], "camera_width": HEAD[1], "wrist_camera_height": WRIST[0],
         "wrist_camera_width": WRIST[1], "camera_rate_hz": 10.0, "state_rate_hz": 50.0, "claw_state_rate_hz": 25.0,
         "physics_rate_hz": 50.0}


class SimClient(Node):
    """Commands the simulator and records what it publishes (measured states assembled as the policy does)."""

    # The bounded waits and the recording of the policy node's test robot (they only use cond/received/arrival).
    _record, count, latest, wait_for, wait_count = (FakeRobot._record, FakeRobot.count, FakeRobot.latest,
                                                    FakeRobot.wait_for, FakeRobot.wait_count)

    def __init__(self, context, profile: str = "kuavo4pro"):
        super().__init__("test_sim_client", context=context)
        self.cond = threading.Condition()
        self.received: dict[str, list] = defaultdict(list)
        self.arrival: dict[str, list[float]] = defaultdict(list)
        self.profile = load_profile(profile)
        self.decoder = StreamDecoder(self.profile)
        self.encoder = StreamEncoder(self.profile)
        kuavo, joint_states = load_profile("kuavo4pro"), load_profile("ros2_joint_state")
        for camera in self.profile.cameras:
            self.create_subscription(CompressedImage, camera.topic, lambda m, n=camera.name: self._record(n, m),
                                     qos_profile_sensor_data)
        # Both kinds of state, whatever the simulator was told to publish (a test checks it publishes one).
        self.create_subscription(SensorsData, kuavo.state.topic, self._on_sensors, qos_profile_sensor_data)
        self.create_subscription(LejuClawState, kuavo.end_effector.state_topic, self._on_claw,
                                 qos_profile_sensor_data)
        self.create_subscription(JointState, joint_states.state.topic, self._on_joint_state, qos_profile_sensor_data)
        self.create_subscription(Bool, "/simulator/success", lambda m: self._record("success", m.data), LATCHED_QOS)
        self.create_subscription(String, "/simulator/episode", lambda m: self._record("episode", json.loads(m.data)),
                                 LATCHED_QOS)
        self.create_subscription(Clock, "/clock", lambda m: self._record("clock", seconds(m.clock)), 10)
        self.arm_pub = self.create_publisher(JointState, kuavo.action.topic, 10)
        self.claw_pub = self.create_publisher(LejuClawCommand, kuavo.end_effector.command_topic, 10)
        self.action_pub = self.create_publisher(JointState, "/kuavo_smolvla/action", 10)
        self.instruction_pub = self.create_publisher(String, self.profile.instruction_topic, 10)
        self.reset_client = self.create_client(Trigger, "/simulator/reset")

    # ---------------------------------------------------------------------------------- inputs
    def _on_sensors(self, msg: SensorsData) -> None:
        self._record("sensors", msg)
        state = self.decoder.state(msg)
        if state is not None:
            self._record("state", (seconds(msg.header.stamp), state))

    def _on_claw(self, msg: LejuClawState) -> None:
        self._record("claw", msg)
        self.decoder.update_grippers(msg)

    def _on_joint_state(self, msg: JointState) -> None:
        self._record("joint_states", msg)
        self._record("state", (seconds(msg.header.stamp), self.decoder.state(msg)))

    # -------------------------------------------------------------------------------- commands
    def send(self, command: np.ndarray, command_input: str = "robot") -> None:
        """A 16-dim command in the simulator's command input (as the policy node publishes it)."""
        stamp = self.get_clock().now().to_msg()
        command = np.asarray(command, dtype=float)
        if command_input == "action":
            self.action_pub.publish(messages.action_joint_state(command, stamp))
        else:
            arm, claw = self.encoder.action(command, stamp)
            self.arm_pub.publish(build(*arm[1:]))
            self.claw_pub.publish(build(*claw[1:]))

    def reset(self) -> dict:
        assert self.reset_client.wait_for_service(timeout_sec=10)
        future = self.reset_client.call_async(Trigger.Request())
        self.wait_for(future.done, 10, "reset reply")
        response = future.result()
        assert response.success
        return json.loads(response.message)

    # --------------------------------------------------------------------------------- waiting
    def state_now(self, timeout: float = 10) -> tuple[float, np.ndarray]:
        return self.wait_for(lambda: self.latest("state"), timeout, "a measured state")

    def wait_state(self, predicate, timeout: float, what: str, after: float = -1.0) -> tuple[float, np.ndarray]:
        """The first measured state stamped after ``after`` for which ``predicate(state)`` holds."""
        return self.wait_for(lambda: next(((t, s) for t, s in self.received["state"] if t > after and predicate(s)),
                                          None), timeout, what)

    def wait_episode(self, predicate, timeout: float, what: str) -> dict:
        return self.wait_for(lambda: next((e for e in reversed(self.received["episode"]) if predicate(e)), None),
                             timeout, what)


@contextmanager
def simulator(**overrides):
    """A SimNode and a SimClient, each on its own executor thread (as two processes, minus the GIL)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    values = {**SMALL, **overrides}
    node = SimNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    client = SimClient(context, overrides.get("robot_profile", "kuavo4pro"))
    with spinning(context, node, client):
        yield node, client


def _rgb(msg: CompressedImage) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image[:, :, ::-1]


def test_cameras_state_and_episode_describe_the_same_world():
    with simulator(seed=123) as (_node, client):
        episode = client.wait_episode(lambda e: True, 10, "the episode")
        # /simulator/success repeats at 10 Hz: every value so far says "not solved" (nothing was commanded).
        successes = list(client.wait_for(lambda: client.received["success"], 10, "success"))
        assert successes and set(successes) == {False}
        frames = {name: client.wait_count(name, 4, timeout=10) for name in client.profile.camera_names}
        all_sensors = client.wait_count("sensors", 30, timeout=10)
        sensors = all_sensors[-1]
        claw = client.wait_count("claw", 2, timeout=10)[-1]
        assert client.count("joint_states") == 0 and client.count("clock") == 0
    assert {k: episode[k] for k in ("task", "task_id", "seed", "episode", "success", "success_time", "done",
                                    "events", "next_task")} == {
        "task": "moving_grasp", "task_id": 1, "seed": 123, "episode": 1, "success": False, "success_time": None,
        "done": False, "events": [], "next_task": "moving_grasp"}
    world = SimWorld()
    np.testing.assert_allclose(episode["object_start"], world.reset("1", 123).object_start)
    for name, messages_ in frames.items():
        image = _rgb(messages_[-1])
        assert image.shape == ((*HEAD, 3) if name == "head_cam_h" else (*WRIST, 3)), name
        assert messages_[-1].format == "rgb8; jpeg compressed bgr8"
        stamps = [seconds(m.header.stamp) for m in messages_]
        assert abs(stamps[-1] - time.time()) < 5  # the node's (wall) clock
        assert np.median(np.diff(stamps)) == pytest.approx(0.1, abs=0.03)  # camera_rate_hz
    found = find_object(_rgb(frames["head_cam_h"][-1]))
    assert found is not None and np.linalg.norm(found - episode["object_start"]) < 0.03
    stamps = [seconds(m.header.stamp) for m in all_sensors]
    assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) == pytest.approx(50.0, rel=0.15)  # state_rate_hz
    q = np.array(sensors.joint_data.joint_q)
    assert q.shape == (28,)
    np.testing.assert_allclose(q[12:19], HOME[robot.LEFT_ARM], atol=1e-9)
    np.testing.assert_allclose(q[19:26], HOME[robot.RIGHT_ARM], atol=1e-9)
    assert not q[:12].any() and not q[26:].any()
    assert list(claw.data.name) == ["left_claw", "right_claw"] and list(claw.data.position) == [0.0, 0.0]
    assert list(claw.state) == [LejuClawState.STATE_REACHED] * 2


def _bad_commands(command_input: str, good: np.ndarray) -> list[tuple[object, object, str]]:
    """(publisher, message, counter) of a non-finite and a malformed command in ``command_input``'s format."""
    stamp = to_time(0.0)
    arm_command = lambda vector, stamp: build(*StreamEncoder(load_profile()).arm_command(vector, stamp)[1:])  # noqa: E731
    nan = good.copy()
    nan[2] = np.nan
    if command_input == "action":
        short = messages.action_joint_state(good, stamp)
        short.name, short.position = short.name[:15], list(short.position)[:15]
        return [("action_pub", messages.action_joint_state(nan, stamp), "rejected"),
                ("action_pub", short, "malformed")]
    short = arm_command(good, stamp)
    short.name, short.position = [], list(short.position)[:13]
    claw = LejuClawCommand(data=EndEffectorData(name=["left_claw"], position=[50.0]))
    return [("arm_pub", arm_command(nan, stamp), "rejected"), ("arm_pub", short, "malformed"),
            ("claw_pub", claw, "malformed")]


@pytest.mark.parametrize(("robot_profile", "command_input"), [("kuavo4pro", "robot"), ("ros2_joint_state", "action")])
def test_commands_move_the_arms_within_limits_and_bad_ones_are_survived(robot_profile, command_input):
    with simulator(robot_profile=robot_profile, command_input=command_input, publish_clock=True) as (_node, client):
        if robot_profile == "ros2_joint_state":
            msg = client.wait_count("joint_states", 1, timeout=10)[-1]
            assert list(msg.name) == list(robot.JOINT_NAMES)
            np.testing.assert_allclose(msg.position, HOME, atol=1e-9)
        # Within limits: reached (first order) in about half a second of simulated time.
        target = HOME.copy()
        target[robot.LEFT_ARM] += [-0.3, 0.2, 0.1, -0.4, 0.2, 0.1, -0.1]
        target[robot.RIGHT_ARM] += [0.2, -0.1, -0.2, -0.3, 0.1, -0.1, 0.2]
        target[robot.GRIPPER_INDICES] = [1.0, 0.6]
        assert robot.within_limits(target)
        t0, _ = client.state_now()
        client.send(target, command_input)
        t, _ = client.wait_state(lambda s: np.max(np.abs(s[robot.ARM_INDICES] - target[robot.ARM_INDICES]))
                                       < 0.02, 5, "the commanded arm pose", after=t0)
        assert t - t0 <= 0.5 + 0.1
        _, later = client.wait_state(lambda s: True, 5, "a later state", after=t0 + 0.7)
        np.testing.assert_allclose(later[robot.GRIPPER_INDICES], [1.0, 0.6], atol=0.02)
        # Beyond the limits: clipped to them.
        beyond = target.copy()
        beyond[0], beyond[9], beyond[7] = 3.0, -3.0, 1.5
        t0, _ = client.state_now()
        client.send(beyond, command_input)
        _, clipped = client.wait_state(lambda s: True, 5, "a state after the clipped command", after=t0 + 0.7)
        assert clipped[0] == pytest.approx(robot.UPPER_LIMITS[0], abs=0.02)
        assert clipped[9] == pytest.approx(robot.LOWER_LIMITS[9], abs=0.02)
        assert clipped[7] == pytest.approx(1.0, abs=0.02)
        # Non-finite and malformed commands: counted and ignored, the last command stays.
        before = client.wait_episode(lambda e: e["commands"]["clipped"] >= 1, 5, "the clipped command counted")
        for i, (publisher, message, counter) in enumerate(_bad_commands(command_input, target)):
            getattr(client, publisher).publish(message)
            client.wait_episode(lambda e, c=counter, n=before["commands"][counter] + 1: e["commands"][c] >= n, 5,
                                f"bad command {i} counted")
            before = client.latest("episode")
        t0, _ = client.state_now()
        _, last = client.wait_state(lambda s: True, 5, "states after the bad commands", after=t0 + 0.3)
        np.testing.assert_allclose(last, clipped, atol=0.02)
        states = np.array([s for _, s in client.received["state"]])
        stamps = [t for t, _ in client.received["state"]]
        clock = client.wait_count("clock", 10, timeout=5)
    assert all(robot.within_limits(s) for s in states)
    assert np.all(np.diff(stamps) > 0) and np.all(np.diff(clock) > 0)  # simulated time, monotonic
    assert stamps[-1] <= clock[-1] + 1e-6 and stamps[-1] < 100  # stamps from the simulation clock


def test_reset_starts_the_next_seed_at_home_with_the_selected_task():
    with simulator(seed=7) as (node, client):
        client.wait_episode(lambda e: e["seed"] == 7, 10, "episode 1")
        away = HOME.copy()
        away[robot.RIGHT_ARM] += [0.3, 0.1, 0.3, -0.3, 0.2, 0.2, 0.2]
        away[robot.LEFT_GRIPPER] = 1.0
        assert robot.within_limits(away)
        client.state_now()
        client.send(away)
        client.wait_state(lambda s: np.max(np.abs(s - away)) < 0.05, 5, "the arms away from home")
        client.instruction_pub.publish(String(data="wave at the camera"))  # free text: ignored
        client.instruction_pub.publish(String(data="weighing"))
        client.wait_episode(lambda e: e["next_task"] == "weighing", 5, "weighing selected")
        assert all(e["task"] == "moving_grasp" and e["next_task"] in ("moving_grasp", "weighing")
                   for e in client.received["episode"])
        t0, _ = client.state_now()
        reply = client.reset()
        assert {k: reply[k] for k in ("task", "task_id", "seed", "episode", "success", "events", "done")} == {
            "task": "weighing", "task_id": 2, "seed": 8, "episode": 2, "success": False, "events": [], "done": False}
        np.testing.assert_allclose(reply["object_start"], SimWorld().reset("weighing", 8).object_start)
        client.wait_state(lambda s: np.max(np.abs(s - HOME)) < 1e-9, 5, "the arms at home", after=t0)
        # The task parameter, checked and applied at the next reset.
        (refused,) = node.set_parameters([Parameter("task", value="nonexistent")])
        assert not refused.successful and "unknown task 'nonexistent'" in refused.reason
        (accepted,) = node.set_parameters([Parameter("task", value="task4")])
        assert accepted.successful
        client.wait_episode(lambda e: e["next_task"] == "sorting", 5, "sorting selected")
        reply = client.reset()
    assert (reply["task"], reply["seed"], reply["episode"]) == ("sorting", 9, 3)


def test_a_reset_publishes_the_new_episodes_frames_at_once():
    """A policy enabled right after a reset must not see the old episode's last frame with the new rest state:
    the reset sends the new state and frames before it answers, not at the next camera tick (here 5 s away)."""
    with simulator(seed=7, camera_rate_hz=0.2) as (_node, client):
        client.wait_episode(lambda e: e["seed"] == 7, 10, "episode 1")
        reply = client.reset()
        answered = time.monotonic()
        new_object = np.asarray(reply["object_start"])

        def new_frame():
            with client.cond:
                frames = list(zip(client.arrival["head_cam_h"], client.received["head_cam_h"], strict=True))
            for arrived, msg in frames:
                found = find_object(_rgb(msg))
                if arrived >= answered - 1.0 and found is not None and np.linalg.norm(found - new_object) < 0.03:
                    return arrived
            return None

        arrived = client.wait_for(new_frame, 2.0, "a head-camera frame of the new episode")
        assert arrived - answered < 1.0  # (the camera's own next tick: up to 5 s)
        client.wait_state(lambda s: np.max(np.abs(s - HOME)) < 1e-9, 2.0, "the rest state")


def _reached(phase, state: np.ndarray) -> bool:
    if phase.kind == "move":
        return bool(np.max(np.abs(state[arm_slice(phase.arm)] - arm_pose(phase.arm, phase.xy))) < 0.01 / 0.3)
    grip = state[gripper_index(phase.arm)]
    return bool(grip > 0.9) if phase.kind == "close" else bool(grip < 0.1)


def test_the_experts_plan_solves_the_episode_and_auto_reset_starts_the_next():
    with simulator(seed=11, auto_reset=True, publish_clock=True) as (_node, client):
        episode = client.wait_episode(lambda e: True, 10, "the episode")
        world = SimWorld()
        world.reset(episode["task"], episode["seed"])
        command = HOME.copy()
        for phase in plan(world):  # the scripted expert's phases, one command each, closed on the measured state
            if phase.kind == "move":
                command[arm_slice(phase.arm)] = arm_pose(phase.arm, phase.xy)
            else:
                command[gripper_index(phase.arm)] = 1.0 if phase.kind == "close" else 0.0
            t0, _ = client.state_now()
            client.send(command)
            client.wait_state(lambda s, p=phase: _reached(p, s), 10, f"phase {phase}", after=t0)
        client.wait_for(lambda: True in client.received["success"], 10, "/simulator/success true")
        solved = client.wait_episode(lambda e: e["success"], 5, "a successful episode report")
        following = client.wait_episode(lambda e: e["episode"] == 2, 10, "the automatic next episode")
        # The latched success follows the new episode.
        client.wait_for(lambda: client.received["success"][-1] is False, 5, "/simulator/success false again")
    assert solved["done"] and 0 < solved["success_time"] <= solved["time"] and solved["seed"] == 11
    assert [(e["kind"], e["arm"]) for e in solved["events"]] == [
        ("grasp", "left"), ("release", "left"), ("grasp", "left"), ("release", "left")]
    assert (following["seed"], following["success"], following["events"]) == (12, False, [])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"robot_profile": "foo"}, "unknown robot profile 'foo'"),
    ({"command_input": "bar"}, "parameter command_input: 'bar' is not allowed; allowed: one of robot, action"),
    ({"task": "nonexistent"}, "parameter 'task': unknown task 'nonexistent'; known tasks: 1/moving_grasp"),
    ({"camera_rate_hz": 200.0}, "camera_rate_hz (200.0) exceeds physics_rate_hz (100.0)"),
    ({"jpeg_quality": 0}, "parameter jpeg_quality: 0 is out of range; allowed: 1..100"),
    ({"seed": "x"}, "parameter seed: 'x' is not an integer; allowed: 0..2147483647"),
    ({"camera_rate_hz": float("nan")}, "parameter camera_rate_hz: nan is not a double"),
])
def test_bad_parameters_fail_the_start_clearly(overrides, message):
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ValueError) as raised:
            SimNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        assert message in str(raised.value)
    finally:
        rclpy.shutdown(context=context)


def test_the_executable_exits_2_with_the_reason():
    result = subprocess.run([sys.executable, "-m", "kuavo_smolvla_ros.ros.sim_node", "--ros-args",
                             "-p", "task:=nonexistent"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot start: parameter 'task': unknown task 'nonexistent'" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_sim_yaml_holds_the_node_defaults():
    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "sim.yaml").read_text())
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(SimSettings()).items()}
    assert config == {f"/**/{NODE_NAME}": {"ros__parameters": defaults}}


def test_an_episode_starts_with_its_first_command_so_a_loading_policy_loses_nothing():
    """wait_for_command (default): the world stands still (episode time 0, not done) while simulated time and
    the sensor streams run, until the first command; then the episode's time runs."""
    with simulator(seed=3, publish_clock=True, max_episode_s=1.0) as (_node, client):
        client.wait_for(lambda: (client.latest("clock") or 0.0) > 1.5, 20, "/clock past the episode's length")
        waiting = client.wait_episode(lambda e: e["waiting_for_command"], 5, "an episode waiting for a command")
        assert waiting["time"] == 0.0 and not waiting["done"]
        client.send(HOME)
        started = client.wait_episode(lambda e: not e["waiting_for_command"] and e["time"] > 0, 10, "time running")
        ended = client.wait_episode(lambda e: e["done"], 10, "the time-out, counted from the command")
    assert started["episode"] == ended["episode"] == waiting["episode"]
    assert not ended["success"] and ended["time"] == pytest.approx(1.0, abs=0.05)
