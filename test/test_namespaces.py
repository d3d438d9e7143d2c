"""Namespaces: every topic and service of policy_node, sim_robot and the operator is a relative name, so a
namespace moves all of them (the robot's topics too); two robots side by side on one DDS domain, each in its
own namespace, never hear each other."""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack

import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import patient, running, spinning
from std_msgs.msg import String

from kuavo_smolvla_ros.tasks import default_catalog

pytestmark = pytest.mark.ros
TASKS = default_catalog()
#: Graph-wide names every rclpy node uses, whatever its namespace.
GLOBAL = {"/rosout", "/parameter_events"}


def names_of(node: Node) -> set[str]:
    """Every topic and service ``node`` publishes, subscribes, serves or calls (from the ROS graph)."""
    name, namespace = node.get_name(), node.get_namespace()
    found = set()
    for query in (node.get_publisher_names_and_types_by_node, node.get_subscriber_names_and_types_by_node,
                  node.get_service_names_and_types_by_node, node.get_client_names_and_types_by_node):
        found |= {topic for topic, _types in query(name, namespace)}
    return found


def outside(node: Node, namespace: str) -> set[str]:
    return {n for n in names_of(node) - GLOBAL if not n.startswith(f"/{namespace}/")}



def episode_listener(context, namespace: str) -> tuple[Node, threading.Condition, list[dict]]:
    """A node in ``namespace`` collecting the simulator's latched episode reports (relative ``simulator/episode``)."""
    listener = Node("listener", context=context, namespace=namespace)
    cond, reports = threading.Condition(), []

    def on_episode(msg: String) -> None:
        with cond:
            reports.append(json.loads(msg.data))
            cond.notify_all()

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    listener.create_subscription(String, "simulator/episode", on_episode, latched)
    return listener, cond, reports

def test_two_namespaced_policy_nodes_on_one_domain_do_not_hear_each_other(tiny_checkpoint):
    """robot1 runs task1, robot2 sorting, each with its own test robot in its namespace. Each node's chunks
    carry only its own instruction, an instruction to robot1 leaves robot2 alone, and every name of both
    nodes lies under their namespace."""
    with ExitStack() as stack:
        node1, fake1 = stack.enter_context(running(tiny_checkpoint, namespace="robot1", default_instruction="task1"))
        node2, fake2 = stack.enter_context(running(tiny_checkpoint, namespace="robot2",
                                                   default_instruction="sorting"))
        fake1.wait_count("chunk", 2, timeout=60)
        fake2.wait_count("chunk", 2, timeout=60)
        fake1.instruct("weighing")
        fake1.wait_status(lambda s: s.active_task == "weighing", 20, "robot1 on weighing")
        fake2.wait_count("chunk", fake2.count("chunk") + 2, timeout=30)
        status2 = fake2.latest("status")
        assert outside(node1, "robot1") == set() and outside(node2, "robot2") == set()
        assert {"/robot1/kuavo_smolvla/action", "/robot1/kuavo_smolvla/status", "/robot1/diagnostics",
                "/robot1/cam_h/color/image_raw/compressed", "/robot1/sensors_data_raw", "/robot1/kuavo_arm_traj",
                "/robot1/leju_claw_command", "/robot1/task_instruction",
                "/robot1/kuavo_smolvla_policy/enable"} <= names_of(node1)
        chunks1, chunks2 = list(fake1.received["chunk"]), list(fake2.received["chunk"])
        statuses1 = list(fake1.received["status"])
    assert {c.instruction for c in chunks1} <= {TASKS.get(1).instruction, TASKS.get("weighing").instruction}
    assert {c.instruction for c in chunks2} == {TASKS.get("sorting").instruction}
    assert status2.active_task == "sorting" and not any(s.active_task == "sorting" for s in statuses1)


def test_sim_robot_and_the_operator_live_in_their_namespace():
    """Two simulators (seeds 11 and 22) on one domain: each namespace's episode report is its own, and every
    name of the simulator and of the operator lies under the namespace (``/clock`` only with publish_clock)."""
    from kuavo_smolvla_ros.ros.sim_node import SimNode
    from kuavo_smolvla_ros.ros.sim_operator import SimOperator

    context = rclpy.Context()
    rclpy.init(context=context)
    small = {"camera_height": 24, "camera_width": 32, "camera_rate_hz": 5.0, "physics_rate_hz": 20.0,
             "state_rate_hz": 10.0, "claw_state_rate_hz": 5.0}
    sims = {ns: SimNode(context=context, namespace=ns, parameter_overrides=[
        Parameter(k, value=v) for k, v in {**small, "seed": seed}.items()]) for ns, seed in (("robot1", 11),
                                                                                          ("robot2", 22))}
    listener, cond, reports = episode_listener(context, "robot1")
    operator = SimOperator(context=context, namespace="robot2")
    with spinning(context, *sims.values(), listener, operator):
        with cond:
            assert cond.wait_for(lambda: len(reports) >= 3, patient(20)), reports
        assert operator.reset_client.wait_for_service(timeout_sec=20)
        for namespace, sim in sims.items():
            assert outside(sim, namespace) == set(), namespace
        assert outside(operator, "robot2") == set()
        assert {"/robot2/simulator/reset", "/robot2/kuavo_smolvla_policy/enable", "/robot2/kuavo_smolvla/status",
                "/robot2/simulator/episode", "/robot2/sensors_data_raw", "/robot2/task_instruction"} <= (
            names_of(operator))
    assert {r["seed"] for r in reports} == {11}


def test_the_executable_under_a_namespace_reads_the_shipped_params_file(tmp_path):
    """What ``ros2 launch ... namespace:=robot1`` runs: ``-r __ns:=/robot1 --params-file config/sim.yaml``.
    The file's ``/**/kuavo_sim`` matches the namespaced node, and its topics are under /robot1."""
    import subprocess
    import sys
    from pathlib import Path

    from processes import wait_until

    config = Path(__file__).resolve().parent.parent / "config" / "sim.yaml"
    log = tmp_path / "sim.log"
    context = rclpy.Context()
    rclpy.init(context=context)
    listener, _cond, reports = episode_listener(context, "robot1")
    with spinning(context, listener), log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "kuavo_smolvla_ros.ros.sim_node", "--ros-args", "-r",
                                    "__node:=kuavo_sim", "-r", "__ns:=/robot1", "--params-file", str(config),
                                    "-p", "seed:=5", "-p", "camera_height:=24", "-p", "camera_width:=32"],
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            assert wait_until(lambda: bool(reports) or process.poll() is not None, 60), log.read_text()[-2000:]
            assert reports, log.read_text()[-2000:]
        finally:
            process.terminate()
            process.wait(20)
    assert reports[0]["seed"] == 5 and reports[0]["next_task"] == "moving_grasp"
    assert wait_until(lambda: "namespace /robot1" in log.read_text(), 5), log.read_text()[-2000:]
