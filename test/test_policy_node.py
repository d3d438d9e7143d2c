"""The policy node over real Fast DDS with the tiny checkpoint: rates, chunks, task switching, staleness,
bad inputs, model failures, dry run and ~/enable."""

from __future__ import annotations

import json
import math
import statistics
import threading
import time

import numpy as np
import pytest
import yaml
from kuavo_smolvla_ros.msg import PolicyStatus
from ros_harness import MID_STATE, running
from std_msgs.msg import String
from std_srvs.srv import SetBool

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.tasks import default_catalog

pytestmark = pytest.mark.ros
TASKS = default_catalog()


def _actions(messages) -> np.ndarray:
    return np.array([m.position for m in messages])


def test_actions_flow_at_the_control_rate_finite_and_within_limits(tiny_checkpoint):
    with running(tiny_checkpoint, default_instruction="task1", control_rate_hz=10.0) as (_node, fake):
        fake.wait_count("action", 2, timeout=30)
        first = fake.count("action")
        fake.wait_count("action", first + 30, timeout=10)
        times = fake.arrival["action"][first:first + 30]
        messages = fake.received["action"][first:first + 30]
    periods = np.diff(times)
    assert statistics.median(periods) == pytest.approx(0.1, rel=0.1)
    assert abs(len(periods) / (times[-1] - times[0]) - 10.0) < 1.0
    for msg in messages:
        assert list(msg.name) == list(robot.JOINT_NAMES)
        assert len(msg.position) == 16 and robot.within_limits(msg.position)


@pytest.mark.parametrize("transition", ["blend", "rtc"])
def test_every_chunk_is_published_once_in_order_and_counted(tiny_checkpoint, transition):
    """Both chunk transitions: the linear blend and lerobot's real-time chunking (chunks after the first are
    generated from the tail of the one executing)."""
    with running(tiny_checkpoint, default_instruction="task2", chunk_transition=transition) as (node, fake):
        assert node.runtime.rtc_enabled == (transition == "rtc")
        chunks = fake.wait_count("chunk", 4, timeout=30)
        status = fake.wait_status(lambda s: s.inferences >= len(chunks), 10, "status counting the chunks")
    seqs = [c.seq for c in chunks]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for chunk in chunks:
        assert (chunk.chunk_size, chunk.action_dim, chunk.n_execute, chunk.num_inference_steps) == (50, 16, 8, 10)
        assert len(chunk.actions) == 800 and np.all(np.isfinite(chunk.actions))
        assert chunk.instruction == TASKS.get(2).instruction and chunk.dt == pytest.approx(0.1)
        assert chunk.header.stamp.sec > 0 and chunk.inference_time > 0
    assert status.state == PolicyStatus.STATE_RUNNING and status.active_task == "weighing"
    assert status.inference_latency.count >= 1 and status.sensor_to_action_latency.p50 > 0
    assert status.node_overhead.count >= 1 and 0 <= status.node_overhead.p50 < 0.5


def test_task_switch_changes_the_actions_and_the_status(tiny_checkpoint):
    with running(tiny_checkpoint) as (_node, fake):
        fake.wait_status(lambda s: s.state == PolicyStatus.STATE_WAITING and "instruction" in s.message, 30,
                         "waiting for an instruction")
        fake.instruct("task1")
        first = fake.wait_for(lambda: next((c for c in fake.received["chunk"]
                                            if c.instruction == TASKS.get(1).instruction), None), 20, "task1 chunk")
        fake.wait_count("chunk", 3, timeout=10)
        switch_time = time.monotonic()
        fake.instruct("sorting")
        index = fake.wait_for(lambda: next((i for i, c in enumerate(fake.received["chunk"])
                                            if c.instruction == TASKS.get(4).instruction), None), 20, "task4 chunk")
        second, chunk_arrival = fake.received["chunk"][index], fake.arrival["chunk"][index]
        status = fake.wait_status(lambda s: s.active_task == "sorting", 10, "status with the new task")
        # Commands go on after the new task's first chunk (how soon that chunk came is asserted below).
        fake.wait_for(lambda: any(t >= chunk_arrival - 0.01 for t in fake.arrival["action"]), 1.0, "new action")
    assert status.active_instruction == TASKS.get(4).instruction
    # Within one inference latency plus one tick (plus DDS delivery slack) when the worker was idle; an
    # inference running for the old task cannot be interrupted, so the new one may wait for it: two latencies.
    assert chunk_arrival - switch_time <= 2 * status.inference_latency.max + 0.1 + 0.05
    # Same seed and inputs: only the instruction differs, so do the chunks.
    assert np.abs(np.asarray(first.actions) - np.asarray(second.actions)).max() > 1e-4


def test_free_text_is_accepted_and_bad_text_rejected(tiny_checkpoint):
    with running(tiny_checkpoint, default_instruction="task3") as (_node, fake):
        fake.wait_count("chunk", 1, timeout=30)
        rejected = fake.wait_status(lambda s: s.inferences >= 1, 10, "running").inputs_rejected
        fake.instruct("   ")
        fake.instruct("x" * 5000)
        fake.wait_status(lambda s: s.inputs_rejected == rejected + 2, 10, "two rejected instructions")
        fake.instruct("wave at the camera")
        status = fake.wait_status(lambda s: s.active_instruction == "wave at the camera", 10, "free text active")
    assert status.active_task == ""


def test_stale_camera_stops_inferences_and_is_reported(tiny_checkpoint):
    with running(tiny_checkpoint, default_instruction="task1", max_input_age_s=0.3) as (_node, fake):
        fake.wait_count("chunk", 2, timeout=30)
        fake.cameras_on["wrist_cam_l"] = False
        status = fake.wait_status(lambda s: s.state == PolicyStatus.STATE_STALE, 10, "STALE status")
        # an inference in flight may still land: wait one inference latency (as measured) and two ticks at 10 Hz
        in_flight = math.ceil(status.inference_latency.max / 0.1) + 2
        fake.wait_count("action", fake.count("action") + in_flight, timeout=5 + in_flight * 0.1)
        chunks_when_stale = fake.count("chunk")
        fake.wait_count("action", fake.count("action") + 15, timeout=5)  # 1.5 s of further commands
        assert fake.count("chunk") == chunks_when_stale
        fake.cameras_on["wrist_cam_l"] = True
        fake.wait_status(lambda s: s.state == PolicyStatus.STATE_RUNNING, 10, "RUNNING again")
        fake.wait_count("chunk", chunks_when_stale + 1, timeout=10)
    assert list(status.stale_streams) == ["wrist_cam_l"] and "wrist_cam_l" in status.message


def test_bad_inputs_are_rejected_counted_and_never_reach_the_robot(tiny_checkpoint):
    with running(tiny_checkpoint, robot_profile="ros2_joint_state", default_instruction="task1") as (_node, fake):
        fake.wait_count("chunk", 1, timeout=30)
        before = fake.wait_status(lambda s: s.inferences >= 1, 10, "running").inputs_rejected
        bad_names = list(robot.JOINT_NAMES)
        bad_names[3] = "elbow"
        nan_state = MID_STATE.copy()
        nan_state[2] = np.nan
        camera = fake.camera_pubs["head_cam_h"]
        bad_inputs = [
            (fake.joint_pub, fake.joint_state_message(MID_STATE[:14], robot.JOINT_NAMES[:14])),  # wrong length
            (fake.joint_pub, fake.joint_state_message(MID_STATE, bad_names)),  # unknown joint name
            (fake.joint_pub, fake.joint_state_message(nan_state)),  # NaN
            (camera, fake.camera_message("head_cam_h", b"\xff\xd8not a jpeg at all\xff\xd9")),  # corrupt JPEG
            (camera, fake.camera_message("head_cam_h", b"GIF89a")),  # neither JPEG nor PNG
        ]
        # One at a time: the subscriptions keep the last few messages, a burst could be squeezed out.
        for i, (publisher, message) in enumerate(bad_inputs, start=1):
            publisher.publish(message)
            status = fake.wait_status(lambda s, n=before + i: s.inputs_rejected >= n, 10, f"rejected input {i}")
        actions_now = fake.count("action")
        fake.wait_count("action", actions_now + 10, timeout=5)  # the node is alive
        actions = _actions(fake.received["action"])
    assert status.inputs_rejected == before + 5
    assert np.all(np.isfinite(actions)) and all(robot.within_limits(a) for a in actions)


def test_raw_images_with_unsupported_encoding_are_rejected(tiny_checkpoint):
    with running(tiny_checkpoint, camera_type="raw", default_instruction="task1") as (_node, fake):
        fake.wait_count("chunk", 1, timeout=30)
        before = fake.wait_status(lambda s: s.inferences >= 1, 10, "running").inputs_rejected
        msg = fake.camera_message("head_cam_h")
        msg.encoding = "mono16"
        fake.camera_pubs["head_cam_h"].publish(msg)
        fake.wait_status(lambda s: s.inputs_rejected == before + 1, 10, "mono16 frame rejected")
        short = fake.camera_message("head_cam_h")
        short.data = bytes(short.data)[:100]
        fake.camera_pubs["head_cam_h"].publish(short)
        fake.wait_status(lambda s: s.inputs_rejected == before + 2, 10, "short frame rejected")
        fake.wait_count("chunk", fake.count("chunk") + 1, timeout=10)


def test_a_model_exception_is_survived_reported_and_recovered(tiny_checkpoint):
    with running(tiny_checkpoint, default_instruction="task1", error_retry_s=0.2) as (node, fake):
        fake.wait_count("chunk", 1, timeout=30)
        real_predict = node.runtime.predict_chunk
        failing = threading.Event()
        failing.set()

        def predict(observation, **kwargs):
            if failing.is_set():
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return real_predict(observation, **kwargs)

        node.runtime.predict_chunk = predict
        status = fake.wait_status(lambda s: s.state == PolicyStatus.STATE_ERROR, 10, "ERROR status")
        held_before = status.actions_held
        fake.wait_status(lambda s: s.actions_held > held_before + 3, 10, "held commands while in error")
        failing.clear()
        fake.wait_status(lambda s: s.state == PolicyStatus.STATE_RUNNING, 10, "RUNNING after recovery")
        actions = _actions(fake.received["action"])
    assert "illegal memory access" in status.message
    assert np.all(np.isfinite(actions))


def test_dry_run_publishes_nothing_to_the_robot(tiny_checkpoint):
    with running(tiny_checkpoint, default_instruction="task1", dry_run=True) as (_node, fake):
        fake.wait_count("chunk", 2, timeout=30)
        fake.wait_count("action", fake.count("action") + 10, timeout=5)
        status = fake.latest("status")
    assert status.dry_run and fake.count("arm") == 0 and fake.count("claw") == 0


def test_robot_adapters_carry_the_action_in_kuavo_units(tiny_checkpoint):
    with running(tiny_checkpoint, default_instruction="task1") as (_node, fake):
        fake.wait_count("arm", 5, timeout=30)
        fake.wait_count("claw", 5, timeout=5)
        # Pair messages by stamp: the node stamps the three outputs of a tick alike.
        actions = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in fake.received["action"]}
        arm = next(m for m in fake.received["arm"] if (m.header.stamp.sec, m.header.stamp.nanosec) in actions)
        claw = next(m for m in fake.received["claw"] if (m.header.stamp.sec, m.header.stamp.nanosec) == (
            arm.header.stamp.sec, arm.header.stamp.nanosec))
    action = np.array(actions[(arm.header.stamp.sec, arm.header.stamp.nanosec)].position)
    assert list(arm.name) == [f"arm_joint_{i}" for i in range(14)]
    np.testing.assert_allclose(arm.position, np.degrees(action[robot.ARM_INDICES]), atol=1e-9)
    assert list(claw.data.name) == ["left_claw", "right_claw"]
    np.testing.assert_allclose(claw.data.position, action[[7, 15]] * 100, atol=1e-9)


def test_enable_service_stops_and_ramps_back_in(tiny_checkpoint):
    with running(tiny_checkpoint, default_instruction="task1") as (_node, fake):
        fake.wait_count("chunk", 1, timeout=30)
        client = fake.create_client(SetBool, "/kuavo_smolvla_policy/enable")
        assert client.wait_for_service(timeout_sec=10)

        def call(value: bool):
            future = client.call_async(SetBool.Request(data=value))
            fake.wait_for(future.done, 10, "enable service reply")
            return future.result()

        assert call(False).success
        fake.wait_status(lambda s: s.state == PolicyStatus.STATE_DISABLED and not s.enabled, 10, "DISABLED")
        statuses = fake.count("status")
        fake.wait_count("status", statuses + 2, timeout=5)  # let commands sent before the switch arrive
        disabled_at = fake.count("action")
        fake.wait_count("status", statuses + 5, timeout=5)  # 0.6 s at 5 Hz
        assert fake.count("action") == disabled_at
        assert call(True).success
        fake.wait_count("action", disabled_at + 5, timeout=20)
        first_after = np.array(fake.received["action"][disabled_at].position)
    # Ramp-in: the first command after enabling is within one ramp step of the measured state.
    assert np.max(np.abs(first_after - MID_STATE)) <= 3.0 / 10 / 11 + 1e-6


@pytest.mark.parametrize(("params", "message"), [
    (["-p", "checkpoint:=/nonexistent/ck"], "cannot start: checkpoint /nonexistent/ck does not exist"),
    (["-p", "checkpoint:=CK", "-p", "robot_profile:=PROFILE"],
     "needs cameras ['wrist_cam_l', 'wrist_cam_r'] that robot profile head_only does not provide"),
    (["-p", "checkpoint:=CK", "-p", "robot_profile:=kuavo9"], "unknown robot profile 'kuavo9'"),
    (["-p", "checkpoint:=CK", "-p", "profile_overrides:=[fps=30]"], "'fps' cannot be overridden"),
    (["-p", "checkpoint:=CK", "-p", "profile_overrides:=[state.sync.max_age_s=null]"], "['state'] have no max age"),
    (["-p", "checkpoint:=CK", "-p", "profile_overrides:=[state.topic=/a//b]"], "cannot start: Invalid topic name"),
    (["-p", "checkpoint:=CK", "-p", "profile_overrides:=fps=5"],
     "cannot start: parameter profile_overrides: 'fps=5' is not a string array; allowed: a list of strings"),
    (["-p", "checkpoint:=CK", "-p", "n_action_steps:=60"], "n_action_steps (60) must be <= chunk_size (50)"),
    # Values the parameter table refuses: one line naming parameter, value and what is allowed.
    (["-p", "checkpoint:=CK", "-p", "control_rate_hz:=5000.0"],
     "cannot start: parameter control_rate_hz: 5000.0 is out of range; allowed: 0.0..200.0"),
    (["-p", "checkpoint:=CK", "-p", "dry_run:=maybe"],
     "cannot start: parameter dry_run: 'maybe' is not a bool; allowed: true or false"),
    (["-p", "checkpoint:=CK", "-p", "stale_behaviour:=later"],
     "cannot start: parameter stale_behaviour: 'later' is not allowed; allowed: one of finish, hold"),
    (["-p", "checkpoint:=CK", "-p", "max_joint_velocity:=fast"],
     "cannot start: parameter max_joint_velocity: 'fast' is not a double; allowed: 0.01..10.0"),
    # The model's shape: what contradicts the checkpoint is refused with both values.
    (["-p", "checkpoint:=CK", "-p", "chunk_size:=60"], "chunk_size must be in 1..50 (the checkpoint's), got 60"),
    (["-p", "checkpoint:=CK", "-p", "camera_height:=480", "-p", "camera_width:=640"],
     "parameters camera_height/camera_width 480x640 contradict the checkpoint, trained at head_cam_h 64x64"),
    (["-p", "checkpoint:=CK", "-p", "cameras:=[head_cam_h]"],
     "parameter cameras ['head_cam_h'] contradicts the checkpoint, which takes ['head_cam_h', 'wrist_cam_l', "
     "'wrist_cam_r']"),
])
def test_startup_errors_exit_with_a_clear_message(tiny_checkpoint, tmp_path, params, message):
    import subprocess
    import sys

    profile = tmp_path / "head_only.yaml"  # a robot with the head camera only
    data = load_profile("kuavo4pro").to_dict()
    profile.write_text(yaml.safe_dump(data | {"name": "head_only", "cameras": data["cameras"][:1]}))
    params = [p.replace("CK", str(tiny_checkpoint)).replace("PROFILE", str(profile)) for p in params]
    result = subprocess.run([sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node", "--ros-args", *params],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_dry_run_and_num_steps_can_be_changed_at_run_time(tiny_checkpoint):
    from rclpy.parameter import Parameter

    with running(tiny_checkpoint, default_instruction="task1") as (node, fake):
        fake.wait_count("arm", 3, timeout=30)
        results = node.set_parameters([Parameter("dry_run", value=True), Parameter("num_steps", value=3)])
        assert all(r.successful for r in results)
        status = fake.wait_status(lambda s: s.dry_run and s.num_inference_steps == 3, 10, "dry_run status")
        arm_count = fake.count("arm")
        fake.wait_count("action", fake.count("action") + 5, timeout=5)
        chunk = fake.wait_for(lambda: next((c for c in reversed(fake.received["chunk"])
                                            if c.num_inference_steps == 3), None), 10, "a 3-step chunk")
        assert fake.count("arm") <= arm_count + 1  # at most one already on its way
        rejected = node.set_parameters([Parameter("max_input_age_s", value=2.0)])
        assert not rejected[0].successful and "read-only" in rejected[0].reason
    assert status.dry_run and chunk.num_inference_steps == 3


def test_the_node_runs_a_checkpoint_at_its_own_step_count_unless_told_otherwise(checkpoint_copy):
    """A reflow student's config.json says 2 steps: the node's default (num_steps 0) keeps them; setting the
    parameter overrides them, and 0 goes back to the checkpoint's."""
    from rclpy.parameter import Parameter

    config = json.loads((checkpoint_copy / "config.json").read_text())
    (checkpoint_copy / "config.json").write_text(json.dumps({**config, "num_steps": 2}))
    with running(checkpoint_copy, default_instruction="task1") as (node, fake):
        def next_status_with(steps: int, what: str):
            seen = len(fake.received["status"])
            return fake.wait_for(lambda: next((s for s in fake.received["status"][seen:]
                                               if s.num_inference_steps == steps), None), 15, what)

        next_status_with(2, "the checkpoint's 2 steps")
        assert node.get_parameter("num_steps").value == 0
        assert all(r.successful for r in node.set_parameters([Parameter("num_steps", value=5)]))
        next_status_with(5, "5 steps once set")
        assert all(r.successful for r in node.set_parameters([Parameter("num_steps", value=0)]))
        next_status_with(2, "back to the checkpoint's 2 steps")


def test_a_whole_robot_joint_state_drives_the_node(tiny_checkpoint):
    """A joint_state_broadcaster's /joint_states: the 16 layout joints plus legs and head, in its own order."""
    with running(tiny_checkpoint, robot_profile="ros2_joint_state", joint_state_extra=True,
                 default_instruction="task1") as (_node, fake):
        fake.wait_count("chunk", 2, timeout=30)
        status = fake.wait_status(lambda s: s.inferences >= 2, 10, "two inferences")
        fake.wait_count("arm", 3, timeout=10)
    assert status.inputs_rejected == 0 and status.robot_profile.startswith("ros2_joint_state (")
    assert list(fake.received["arm"][-1].name) == list(robot.JOINT_NAMES)  # the profile's action stream


def test_another_robots_joint_q_is_refused_and_counted_never_shifted(tiny_checkpoint):
    """A Kuavo 4 Pro's 28-entry joint_q sent to a node configured for the Kuavo 5 (29 entries)."""
    with running(tiny_checkpoint, robot_profile="kuavo5", fake_profile="kuavo4pro",
                 default_instruction="task1") as (_node, fake):
        status = fake.wait_status(lambda s: s.inputs_rejected >= 20, 15, "rejected 28-entry joint states")
    assert status.inferences == 0 and fake.count("chunk") == 0 and "joint_state" in status.message


def test_a_latched_instruction_published_before_the_node_started_arrives(tiny_checkpoint):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publishers = []

    def publish_latched(fake):
        publisher = fake.create_publisher(String, "/task_instruction", latched)
        publisher.publish(String(data="weighing"))
        publishers.append(publisher)

    with running(tiny_checkpoint, before_node=publish_latched) as (_node, fake):
        status = fake.wait_status(lambda s: s.active_task == "weighing", 30, "the latched instruction active")
        fake.wait_count("chunk", 1, timeout=30)
    assert status.active_instruction == TASKS.get("weighing").instruction


def test_image_bombs_and_corrupt_frames_over_dds_are_counted_and_the_node_lives(tiny_checkpoint):
    from test_hardening import jpeg_bomb, png_bomb

    with running(tiny_checkpoint, default_instruction="task1") as (_node, fake):
        fake.wait_count("chunk", 1, timeout=30)
        before = fake.wait_status(lambda s: s.inferences >= 1, 10, "running").inputs_rejected
        camera = fake.camera_pubs["wrist_cam_l"]
        for i, data in enumerate((jpeg_bomb(), png_bomb()), start=1):
            camera.publish(fake.camera_message("wrist_cam_l", data))
            fake.wait_status(lambda s, n=before + i: s.inputs_rejected >= n, 10, f"bomb {i} rejected")
        chunks = fake.count("chunk")
        fake.wait_count("chunk", chunks + 2, timeout=20)  # alive and inferring
        diagnostics = fake.wait_for(lambda: next((d for d in reversed(fake.received["diagnostics"]) if any(
            v.key == "rejected wrist_cam_l" for v in d.status[0].values)), None), 10, "the rejection in diagnostics")
    values = {v.key: v.value for v in diagnostics.status[0].values}
    assert values["rejected wrist_cam_l"].startswith("2 (first: JPEG header claims more pixels")
    assert any(r.startswith("wrist_cam_l: 2 (first: JPEG header") for r in fake.latest("status").rejections)


def test_a_checkpoint_with_a_shorter_chunk_starts_with_its_path_alone(checkpoint_copy):
    """chunk_size and n_action_steps default to the checkpoint's (0): a checkpoint fine-tuned with chunk 10
    needs no other parameter."""
    config = json.loads((checkpoint_copy / "config.json").read_text())
    (checkpoint_copy / "config.json").write_text(json.dumps({**config, "chunk_size": 10, "n_action_steps": 6}))
    with running(checkpoint_copy, default_instruction="task1") as (node, fake):
        chunk = fake.wait_count("chunk", 1, timeout=30)[0]
    assert (chunk.chunk_size, chunk.n_execute) == (10, 6)
    assert node.get_parameter("chunk_size").value == 0 and node.get_parameter("n_action_steps").value == 0


def _jpeg(height: int, width: int, seed: int = 0) -> bytes:
    import cv2

    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_frames_of_another_size_are_resized_with_padding_and_warned_about_once(tiny_checkpoint, capfd):
    """The tiny checkpoint was trained at 64x64; the robot's cameras send 48x96 (head, another aspect ratio,
    a warning once) and 32x32 (wrists, the same aspect ratio: an info line once). Commands flow, nothing is
    rejected, and the model gets frames of its training size."""
    sizes = {"head_cam_h": (48, 96), "wrist_cam_l": (32, 32), "wrist_cam_r": (32, 32)}

    def other_sizes(fake):
        fake.frames = {name: _jpeg(*size, seed=i) for i, (name, size) in enumerate(sizes.items())}

    seen = []
    with running(tiny_checkpoint, default_instruction="task1", before_node=other_sizes) as (node, fake):
        predict = node.controller._predict

        def recording(observation):
            seen.append({name: image.shape for name, image in observation.images.items()})
            return predict(observation)

        node.controller._predict = recording
        fake.wait_count("chunk", 3, timeout=30)
        fake.wait_count("arm", fake.count("arm") + 5, timeout=10)
        status = fake.wait_status(lambda s: s.inferences >= 3, 10, "three inferences")
    err = capfd.readouterr().err
    assert status.inputs_rejected == 0 and status.state == PolicyStatus.STATE_RUNNING
    assert seen and all(shapes == {name: (64, 64, 3) for name in sizes} for shapes in seen)
    head = [line for line in err.splitlines() if "camera head_cam_h: frames are 48x96" in line]
    assert len(head) == 1 and "[WARN]" in head[0] and "aspect ratio differs" in head[0], err[-3000:]
    assert "trained at 64x64: resized with padding as SmolVLA does" in head[0]
    wrist = [line for line in err.splitlines() if "camera wrist_cam_l: frames are 32x32" in line]
    assert len(wrist) == 1 and "[INFO]" in wrist[0] and "aspect ratio" not in wrist[0]


def test_a_simulator_reset_that_rewinds_clock_does_not_leave_the_node_stale(tiny_checkpoint):
    """use_sim_time: /clock runs from 1000 s, then jumps back 20 s (a simulator reset). The node clears its
    input buffers (rclpy's clock-jump callback) and infers again within a second of fresh data."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    clock = {"now": 1000.0}

    def start_clock(fake):
        publisher = fake.create_publisher(Clock, "/clock", 10)

        def tick():
            clock["now"] += 0.01
            sec = int(clock["now"])
            publisher.publish(Clock(clock=Time(sec=sec, nanosec=int((clock["now"] - sec) * 1e9))))
        fake.create_timer(0.01, tick)  # the fake's own timers run on the wall clock

    with running(tiny_checkpoint, default_instruction="task1", use_sim_time=True,
                 before_node=start_clock) as (_node, fake):
        fake.wait_status(lambda s: s.state == PolicyStatus.STATE_RUNNING, 60, "RUNNING on simulated time")
        inferences = fake.latest("status").inferences
        clock["now"] -= 20.0  # the reset
        rewound_at = time.monotonic()
        fake.wait_status(lambda s, n=inferences: s.header.stamp.sec < 990 and s.inferences > n + 1, 15,
                         "inferences after the rewind")
        recovered_s = time.monotonic() - rewound_at
        diagnostics = fake.wait_for(lambda: next((d for d in reversed(fake.received["diagnostics"])
                                                  if d.header.stamp.sec < 990), None), 10, "post-rewind diagnostics")
    values = {v.key: v.value for v in diagnostics.status[0].values}
    assert int(values["clock_jumps"]) >= 1 and recovered_s < 5.0
