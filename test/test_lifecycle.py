"""policy_node as a managed lifecycle node, driven over real Fast DDS through the standard lifecycle services
(``<node>/change_state``, ``<node>/get_state``, lifecycle_msgs) from a client node, as ``ros2 lifecycle`` and
lifecycle managers drive it: commands flow only while active, stop at once on deactivate and ramp in again
from the measured state on activate; cleanup frees the model; a refused checkpoint fails configure and
leaves the node unconfigured and alive; autostart (the default) is active at once and ``~/enable`` maps onto
activate / deactivate."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from kuavo_smolvla_ros.msg import PolicyStatus
from lifecycle_msgs.msg import Transition
from processes import wait_until
from ros_harness import MID_STATE, LifecycleClient, running
from std_srvs.srv import SetBool

from kuavo_smolvla_ros import robot

pytestmark = pytest.mark.ros
#: The largest first command step away from the measured state under the ramp-in (as test_policy_node: the
#: harness's max_joint_velocity 3.0 rad/s at 10 Hz, the ramp's first step of 11).
RAMP_FIRST_STEP = 3.0 / 10 / 11 + 1e-6
COMMANDS = ("action", "arm", "claw", "chunk")


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _commands(fake) -> dict[str, int]:
    return {name: fake.count(name) for name in COMMANDS}


def _quiet_for(fake, statuses: int) -> None:
    """Let ``statuses`` more status messages (5 Hz in the harness) go by."""
    fake.wait_count("status", fake.count("status") + statuses, timeout=10)


def _inference_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "inference" and t.is_alive()]


def test_a_managed_node_commands_only_while_active_and_cleanup_frees_the_model(tiny_checkpoint):
    """autostart false: unconfigured until a manager configures it; configure loads the model but sends
    nothing; activate ramps in from the measured state; deactivate stops at once; activate ramps in from the
    state measured since (not from the last command); cleanup frees the model and its inference thread;
    configure and activate again work; shutdown from active ends in finalized with nothing commanded."""
    others = set(_inference_threads())  # of nodes still stopping in other tests
    with running(tiny_checkpoint, autostart=False, default_instruction="task1") as (node, fake):
        lifecycle = LifecycleClient(fake)
        assert lifecycle.state() == "unconfigured" and node.runtime is None and node.controller is None
        status = fake.wait_status(lambda s: "unconfigured (lifecycle)" in s.message, 10, "unconfigured status")
        assert status.state == PolicyStatus.STATE_DISABLED and not status.enabled

        # configure: the model is loaded and warmed up, the inputs are buffered, nothing is commanded
        assert lifecycle.change("configure")
        assert lifecycle.state() == "inactive" and node.runtime is not None
        ours = set(_inference_threads()) - others
        assert ours
        fake.wait_status(lambda s: s.state == PolicyStatus.STATE_DISABLED and "inactive (lifecycle)" in s.message,
                         10, "inactive status")
        _quiet_for(fake, 5)
        assert _commands(fake) == dict.fromkeys(COMMANDS, 0)

        # activate: commands flow, the first within one ramp step of the measured state
        assert lifecycle.change("activate") and lifecycle.state() == "active"
        fake.wait_status(lambda s: s.enabled and s.state == PolicyStatus.STATE_RUNNING, 30, "RUNNING")
        first = np.array(fake.wait_count("action", 1, timeout=10)[0].position)
        assert np.max(np.abs(first - MID_STATE)) <= RAMP_FIRST_STEP
        fake.wait_count("arm", 5, timeout=10)
        fake.wait_count("claw", 5, timeout=10)

        # deactivate: no command is stamped after the inactive status (the node's clock at the transition)
        seen = fake.count("status")
        assert lifecycle.change("deactivate") and lifecycle.state() == "inactive"
        inactive = fake.wait_for(lambda: next((s for s in fake.received["status"][seen:] if not s.enabled), None),
                                 10, "the status of the deactivation")
        assert "inactive (lifecycle)" in inactive.message
        _quiet_for(fake, 2)  # commands sent before the transition may still be on their way
        sent = _commands(fake)
        _quiet_for(fake, 5)  # 1 s: ten control ticks
        assert _commands(fake) == sent
        for name in COMMANDS:
            assert all(_stamp(m) <= _stamp(inactive) for m in fake.received[name]), name

        # the robot moves while inactive: activate ramps in from where it is now, not from the last command
        moved = MID_STATE + 0.1
        assert robot.within_limits(moved)
        fake.state = moved
        _quiet_for(fake, 2)
        last_command = np.array(fake.received["action"][-1].position)
        assert lifecycle.change("activate")
        fake.wait_count("action", sent["action"] + 1, timeout=30)
        again = np.array(fake.received["action"][sent["action"]].position)
        assert np.max(np.abs(again - moved)) <= RAMP_FIRST_STEP
        assert np.max(np.abs(last_command - moved)) > RAMP_FIRST_STEP

        # cleanup (from inactive): the model is freed and the inference thread stopped
        assert lifecycle.change("deactivate")
        model = weakref.ref(node.runtime.policy)
        assert lifecycle.change("cleanup") and lifecycle.state() == "unconfigured"
        assert node.runtime is None and node.controller is None
        gc.collect()
        assert model() is None and not any(thread.is_alive() for thread in ours)
        fake.wait_status(lambda s: "unconfigured (lifecycle)" in s.message, 10, "unconfigured after cleanup")

        # configure and activate again, then shut down from active
        assert lifecycle.change("configure") and lifecycle.change("activate")
        ours = set(_inference_threads()) - others
        count = fake.count("action")
        fake.wait_count("action", count + 3, timeout=30)
        assert lifecycle.change(Transition.TRANSITION_ACTIVE_SHUTDOWN) and lifecycle.state() == "finalized"
        assert node.runtime is None and not any(thread.is_alive() for thread in ours)
        fake.wait_status(lambda s: "finalized (lifecycle)" in s.message, 10, "finalized status")
        _quiet_for(fake, 2)
        sent = _commands(fake)
        _quiet_for(fake, 3)
        assert _commands(fake) == sent
        # a finalized node takes no transition
        assert not lifecycle.change("configure")
        fake.wait_for(lambda: len(lifecycle.transitions()) >= 18, 10, "every transition event")
        events = lifecycle.transitions()
    assert [goal for _start, goal in events if goal in ("unconfigured", "inactive", "active", "finalized")] == [
        "inactive", "active", "inactive", "active", "inactive", "unconfigured", "inactive", "active", "finalized"]


def test_a_refused_checkpoint_fails_configure_and_the_node_lives_unconfigured(tmp_path, capfd):
    """configure answers failure (the one-line reason logged and in the status); the node stays unconfigured
    and keeps answering; activate and ~/enable true are refused."""
    missing = tmp_path / "no_checkpoint"
    with running(missing, autostart=False) as (node, fake):
        lifecycle = LifecycleClient(fake)
        assert not lifecycle.change("configure")
        assert lifecycle.state() == "unconfigured" and node.runtime is None
        reason = f"checkpoint {missing} does not exist"
        status = fake.wait_status(lambda s: "configure failed" in s.message, 10, "the failure in the status")
        assert reason in status.message and status.state == PolicyStatus.STATE_DISABLED
        diagnostics = fake.wait_for(lambda: next((d for d in reversed(fake.received["diagnostics"])
                                                  if "configure failed" in d.status[0].message), None), 10,
                                    "the failure in diagnostics")
        assert not lifecycle.change("activate")  # not a transition of unconfigured
        enable = fake.create_client(SetBool, "kuavo_smolvla_policy/enable")
        assert enable.wait_for_service(timeout_sec=10)
        future = enable.call_async(SetBool.Request(data=True))
        fake.wait_for(future.done, 10, "enable reply")
        assert not future.result().success and "configure it first" in future.result().message
        assert not lifecycle.change("configure")  # still refused, still alive
        assert lifecycle.state() == "unconfigured"
        assert fake.count("action") == 0
        # start -> configuring -> unconfigured (twice)
        fake.wait_for(lambda: len(lifecycle.transitions()) >= 4, 10, "transition events")
        assert {goal for _start, goal in lifecycle.transitions()} <= {"configuring", "unconfigured"}
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "configure failed:" in line]
    assert lines and all(reason in line and "[ERROR]" in line for line in lines), err[-2000:]
    assert "Traceback" not in err
    assert diagnostics.status[0].level == diagnostics.status[0].ERROR


def test_autostart_is_active_at_once_and_enable_maps_onto_activate_and_deactivate(tiny_checkpoint):
    """The default (autostart true): active without a manager, as ``ros2 run`` always was; ``~/enable false``
    is deactivate and ``~/enable true`` activate, seen through get_state and the transition events."""
    with running(tiny_checkpoint, default_instruction="task1") as (_node, fake):
        lifecycle = LifecycleClient(fake)
        assert lifecycle.state() == "active"
        fake.wait_count("action", 3, timeout=30)
        enable = fake.create_client(SetBool, "kuavo_smolvla_policy/enable")
        assert enable.wait_for_service(timeout_sec=10)

        def call(value: bool) -> SetBool.Response:
            future = enable.call_async(SetBool.Request(data=value))
            fake.wait_for(future.done, 10, "enable reply")
            return future.result()

        assert call(False).success and lifecycle.state() == "inactive"
        fake.wait_status(lambda s: not s.enabled and s.state == PolicyStatus.STATE_DISABLED, 10, "disabled")
        assert call(False).success  # already inactive: nothing to do
        assert call(True).success and lifecycle.state() == "active"
        fake.wait_status(lambda s: s.enabled, 10, "enabled")
        assert lifecycle.change("deactivate") and not lifecycle.change("deactivate")
        fake.wait_status(lambda s: not s.enabled, 10, "disabled by the lifecycle")
        assert call(True).success and lifecycle.state() == "active"
        fake.wait_for(lambda: len(lifecycle.transitions()) >= 8, 10, "transition events")
        goals = [goal for _start, goal in lifecycle.transitions() if goal in ("inactive", "active")]
    assert goals == ["inactive", "active", "inactive", "active"]


def test_the_executable_with_autostart_false_waits_for_a_manager(tiny_checkpoint, tmp_path):
    """``policy_node --ros-args -p autostart:=false``: unconfigured until a client configures and activates it
    over DDS (as ``ros2 lifecycle set`` does); Ctrl-C then stops it with code 0."""
    import rclpy
    from ros_harness import FakeRobot, spinning

    from kuavo_smolvla_ros.contract.profile import load_profile

    log = tmp_path / "policy.log"
    context = rclpy.Context()
    rclpy.init(context=context)
    fake = FakeRobot(context, load_profile("kuavo4pro"), namespace="robot1")
    with spinning(context, fake), log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node", "--ros-args", "-r", "__ns:=/robot1",
             "-p", f"checkpoint:={tiny_checkpoint}", "-p", "autostart:=false", "-p", "default_instruction:=task1",
             "-p", "warmup_iterations:=1", "-p", "torch_threads:=1", "-p", "max_joint_velocity:=3.0"],
            stdout=out, stderr=subprocess.STDOUT)
        try:
            assert wait_until(lambda: "unconfigured: waiting for a lifecycle manager" in log.read_text()
                              or process.poll() is not None, 120), log.read_text()[-3000:]
            lifecycle = LifecycleClient(fake, timeout=30)
            assert lifecycle.state() == "unconfigured"
            assert "loaded" not in log.read_text()  # the constructor does not load the model
            assert lifecycle.change("configure") and lifecycle.state() == "inactive"
            _quiet_for(fake, 3)
            assert fake.count("action") == 0
            assert lifecycle.change("activate")
            first = np.array(fake.wait_count("action", 1, timeout=60)[0].position)
            assert np.max(np.abs(first - MID_STATE)) <= RAMP_FIRST_STEP
            assert "ready: /robot1/kuavo_smolvla/action at 10 Hz" in log.read_text()
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                code = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
    assert code == 0, Path(log).read_text()[-2000:]


def test_an_exception_in_a_transition_ends_unconfigured_with_the_model_freed(tiny_checkpoint, capfd):
    """A failure inside activate (here: the controller raises) is logged with its traceback, the transition
    answers failure, and errorprocessing frees the model: the node is unconfigured, says why, sends nothing,
    and configures again."""
    with running(tiny_checkpoint, autostart=False, default_instruction="task1") as (node, fake):
        lifecycle = LifecycleClient(fake)
        assert lifecycle.change("configure")
        controller = node.controller
        real = controller.set_enabled

        def set_enabled(enabled: bool) -> None:
            if enabled:
                raise RuntimeError("the arm driver is gone")
            real(enabled)

        controller.set_enabled = set_enabled
        assert not lifecycle.change("activate")
        assert lifecycle.state() == "unconfigured" and node.runtime is None and node.controller is None
        status = fake.wait_status(lambda s: "activate failed" in s.message, 10, "the failure in the status")
        assert "RuntimeError: the arm driver is gone" in status.message and not status.enabled
        _quiet_for(fake, 3)
        assert fake.count("action") == 0 and fake.count("arm") == 0
        assert lifecycle.change("configure") and lifecycle.change("activate")  # the node recovers
        fake.wait_count("action", 1, timeout=30)
        fake.wait_for(lambda: len(lifecycle.transitions()) >= 9, 10, "transition events")
        goals = [goal for _start, goal in lifecycle.transitions()]
    assert goals[:6] == ["configuring", "inactive", "activating", "errorprocessing", "unconfigured", "configuring"]
    err = capfd.readouterr().err
    assert "activate failed: RuntimeError: the arm driver is gone" in err and "Traceback" in err
