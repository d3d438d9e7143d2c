"""The simulated Kuavo without ROS: kinematics and limits, rendering, the tasks' success tests, the expert,
and the recorder's bags going through the real converter."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.sim import scenes
from kuavo_smolvla_ros.sim.evaluate import EVAL_SEED_BASE, episode_noise_seed, evaluate, run_episode
from kuavo_smolvla_ros.sim.expert import ScriptedExpert, plan
from kuavo_smolvla_ros.sim.kinematics import (
    ARMS,
    GEOMETRY,
    KinematicArms,
    arm_pose,
    arm_slice,
    gripper_index,
    home_state,
    reachable,
)
from kuavo_smolvla_ros.sim.record import RecordingConfig, record_episode, start_trim_s
from kuavo_smolvla_ros.sim.render import HEAD_VIEW, find_object, jpeg_round_trip, render_cameras, wrist_view
from kuavo_smolvla_ros.sim.scenes import Event, Scene
from kuavo_smolvla_ros.sim.world import SimWorld
from kuavo_smolvla_ros.tasks import default_catalog

TASKS = list(default_catalog())


def solve(world: SimWorld, task, seed: int) -> SimWorld:
    world.reset(task, seed)
    expert = ScriptedExpert(world)
    while not world.done:
        world.arms.set_command(expert.act())
        world.step(expert.dt)
    return world


# ------------------------------------------------------------------------------------ kinematics
def test_joints_track_commands_first_order():
    arms = KinematicArms(arm_tau_s=0.1, gripper_tau_s=0.2)
    start = arms.state.copy()
    target = start.copy()
    target[robot.LEFT_ARM] += 0.3
    target[robot.RIGHT_GRIPPER] = 1.0
    assert arms.set_command(target)
    for _ in range(20):
        arms.step(0.01)  # 0.2 s
    expected_arm = target[0] - 0.3 * np.exp(-0.2 / 0.1)
    expected_grip = 1.0 - np.exp(-0.2 / 0.2)
    assert arms.state[0] == pytest.approx(expected_arm, abs=1e-9)
    assert arms.state[robot.RIGHT_GRIPPER] == pytest.approx(expected_grip, abs=1e-9)
    assert arms.state[robot.RIGHT_ARM] == pytest.approx(start[robot.RIGHT_ARM])


def test_commands_are_clipped_into_the_limits_and_bad_ones_rejected():
    arms = KinematicArms()
    wild = np.full(robot.ACTION_DIM, 10.0)
    assert arms.set_command(wild)
    assert arms.commands_clipped == 1
    np.testing.assert_array_equal(arms.command, robot.UPPER_LIMITS)
    for _ in range(500):
        arms.step(0.01)
    assert robot.within_limits(arms.state)
    before = arms.command.copy()
    assert not arms.set_command([np.nan] * robot.ACTION_DIM)
    assert not arms.set_command([0.0] * 15)
    assert arms.commands_rejected == 2
    np.testing.assert_array_equal(arms.command, before)


def test_arm_pose_puts_the_hand_where_asked_and_every_target_is_reachable():
    for arm, geometry in GEOMETRY.items():
        for xy in [(0.0, 0.4), (geometry.shoulder[0], 0.6)]:
            np.testing.assert_allclose(geometry.hand(arm_pose(arm, xy)), xy, atol=1e-12)
    for scene in scenes.SCENES.values():
        needed = [*scene.targets, *scene.via] + ([scene.handover] if scene.handover else [])
        for xy in needed:
            assert reachable(scene.holders[-1], xy) or reachable(scene.holders[0], xy), (scene.task_name, xy)
    for x in scenes.CONVEYOR_X:
        assert reachable("left", (x, scenes.CONVEYOR_Y)) and reachable("right", (x, scenes.CONVEYOR_Y))
    assert robot.within_limits(home_state())


# ------------------------------------------------------------------------------------- rendering
@pytest.mark.parametrize("size", [(64, 64), (480, 640)])
def test_the_object_is_drawn_where_the_world_says(size):
    world = SimWorld()
    for seed in range(5):
        world.reset("sorting", seed)
        head = render_cameras(world, {"head_cam_h": size})["head_cam_h"]
        assert head.shape == (*size, 3) and head.dtype == np.uint8
        found = find_object(head)
        assert found is not None
        assert np.linalg.norm(found - world.object) < 1.5 * HEAD_VIEW.width_m / size[1] + 1e-3


def test_wrist_cameras_follow_their_hands():
    world = SimWorld()
    world.reset("moving_grasp", 0)
    world.object = np.array([-0.2, scenes.CONVEYOR_Y])  # far from the right hand's view
    world.arms.state[arm_slice("left")] = arm_pose("left", world.object + np.array([0.0, -0.1]))
    images = render_cameras(world, {name: (96, 96) for name in load_profile().camera_names})
    left = find_object(images["wrist_cam_l"], wrist_view(world.hand("left")))
    assert left is not None and np.linalg.norm(left - world.object) < 0.02
    assert find_object(images["wrist_cam_r"], wrist_view(world.hand("right"))) is None  # out of its view


# ------------------------------------------------------------------------------------- success tests
def _events(*steps):
    return [Event(kind, arm, xy, float(t)) for t, (kind, arm, xy) in enumerate(steps)]


def test_success_needs_the_holders_and_the_targets_in_order():
    scene = scenes.SCENES["moving_grasp"]
    a, b = scene.targets
    good = _events(("grasp", "left", (0, 0.55)), ("release", "left", a), ("grasp", "left", a), ("release", "left", b))
    assert scene.success(good, held=False)
    assert not scene.success(good, held=True)
    assert not scene.success(good[:2], held=False)  # only the first target
    swapped = _events(("grasp", "left", (0, 0.55)), ("release", "left", b), ("grasp", "left", b),
                      ("release", "left", a))
    assert not scene.success(swapped, held=False)
    wrong_hand = [Event(e.kind, "right", e.xy, e.t) for e in good]
    assert not scene.success(wrong_hand, held=False)
    off = _events(("grasp", "left", (0, 0.55)), ("release", "left", a), ("grasp", "left", a),
                  ("release", "left", (b[0] + 0.06, b[1])))
    assert not scene.success(off, held=False)


def test_handover_success_needs_both_hands_in_order():
    scene = scenes.SCENES["placement"]
    (y,) = scene.targets
    good = _events(("grasp", "left", (0, 0.55)), ("grasp", "right", scene.handover), ("release", "right", y))
    assert scene.success(good, held=False)
    right_only = _events(("grasp", "right", (0, 0.55)), ("release", "right", y))
    assert not scene.success(right_only, held=False)


def test_progress_counts_the_milestones_reached_in_order():
    scene = scenes.SCENES["moving_grasp"]
    a, b = scene.targets
    assert scene.milestones == ("left hand holds it", "put down at target 1 of 2", "put down at target 2 of 2")
    grasp = ("grasp", "left", (0, 0.55))
    assert scene.progress([]) == 0
    assert scene.progress(_events(grasp)) == 1
    assert scene.progress(_events(grasp, ("release", "left", (a[0], a[1] + 0.06)))) == 1  # 6 cm off: not there
    assert scene.progress(_events(grasp, ("release", "left", a))) == 2
    full = _events(grasp, ("release", "left", a), ("grasp", "left", a), ("release", "left", b))
    assert scene.progress(full) == 3 and scene.success(full, held=False)
    # the second target first does not count before the first
    assert scene.progress(_events(grasp, ("release", "left", b))) == 1
    # the wrong hand holds nothing of the plan, whatever it puts where
    assert scene.progress([Event(e.kind, "right", e.xy, e.t) for e in full]) == 0


def test_progress_of_a_handover_needs_the_hands_in_order_before_any_target():
    scene = scenes.SCENES["placement"]
    (y,) = scene.targets
    assert scene.milestones == ("left hand holds it", "right hand holds it", "put down at target 1 of 1")
    left = ("grasp", "left", (0, 0.55))
    assert scene.progress(_events(left, ("release", "left", y))) == 1  # left put it at the target itself
    assert scene.progress(_events(left, ("grasp", "right", scene.handover))) == 2
    assert scene.progress(_events(left, ("grasp", "right", scene.handover), ("release", "right", y))) == 3
    assert scene.progress(_events(("grasp", "right", (0, 0.55)), ("release", "right", y))) == 0
    # put down at the target by the left hand, before the right took it: the target does not count
    assert scene.progress(_events(left, ("release", "left", y), ("grasp", "right", y))) == 2
    # a third hand (the left again) ends the plan: its release at the target does not count
    assert scene.progress(_events(left, ("grasp", "right", scene.handover), ("grasp", "left", scene.handover),
                                  ("release", "left", y))) == 2


def test_progress_ends_at_a_hand_outside_the_plan():
    scene = scenes.SCENES["moving_grasp"]
    a, b = scene.targets
    events = _events(("grasp", "left", (0, 0.55)), ("release", "left", a), ("grasp", "right", a),
                     ("release", "right", b))
    assert scene.progress(events) == 2 and not scene.success(events, held=False)
    # all milestones, and still not solved: taken again and put down elsewhere
    away = _events(("grasp", "left", (0, 0.55)), ("release", "left", a), ("grasp", "left", a),
                   ("release", "left", b), ("grasp", "left", b), ("release", "left", (0.0, 0.0)))
    assert scene.progress(away) == 3 and not scene.success(away, held=False)


def test_every_scene_has_a_milestone_per_holder_and_target():
    for scene in scenes.SCENES.values():
        assert len(scene.milestones) == len(scene.holders) + len(scene.targets)


def test_every_scene_is_a_task_of_the_task_list_and_targets_differ():
    assert sorted(scenes.SCENES) == sorted(t.name for t in TASKS)
    finals = [scene.targets[-1] for scene in scenes.SCENES.values()]
    assert min(np.linalg.norm(np.subtract(p, q)) for i, p in enumerate(finals) for q in finals[i + 1:]) > 0.1
    assert isinstance(scenes.scene_for("task3"), Scene)
    with pytest.raises(KeyError, match="unknown task"):
        scenes.scene_for("juggling")


# ------------------------------------------------------------------------------------- the expert
@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_the_expert_solves_every_task(task):
    world = SimWorld()
    for seed in range(10):
        solve(world, task, seed)
        assert world.success, (task.name, seed, world.episode.events)
        assert world.arms.commands_clipped == 0
        holders = [e.arm for e in world.episode.events if e.kind == "grasp"]
        assert tuple(dict.fromkeys(holders)) == scenes.SCENES[task.name].holders


def test_the_expert_stays_within_the_nodes_safety_limits():
    world = SimWorld()
    world.reset("placement", 3)
    expert = ScriptedExpert(world)
    previous = world.state
    per_tick = robot.DEFAULT_MAX_VELOCITY / robot.CONTROL_RATE_HZ
    while not world.done:
        commands = []
        for _ in range(3):  # one policy tick = three expert ticks at 30 Hz
            commands.append(expert.act())
            world.arms.set_command(commands[-1])
            world.step(expert.dt)
        assert np.all(np.abs(commands[-1] - previous) <= per_tick + 1e-9)
        previous = commands[-1]
    assert world.success


@pytest.mark.parametrize("task", [t.name for t in TASKS])
def test_the_expert_never_opens_and_closes_a_gripper_in_the_same_place(task):
    """What a memoryless policy needs of its demonstrations: one command for one observation. Were the hand to
    close again where it opened (a second target), the same moment (hand there, gripper half closed) would be
    shown opening and closing; were it to carry the object back over that place, holding it there would be
    shown as "open" and as "carry on". The expert moves its open hand on towards the next target first
    (REGRASP_BACKOFF_M): every place where a gripper opens is that far from every place where it closes, and
    once it has opened somewhere its hand never holds the object near there again."""
    for seed in range(3):
        world = SimWorld()
        world.reset(task, seed)
        expert = ScriptedExpert(world)
        previous = world.state
        places = {"open": [], "close": []}
        held_after_opening = []  # (distance to the nearest place this hand opened at before)
        while not world.done:
            command = expert.act()
            for arm in ARMS:
                change = command[gripper_index(arm)] - previous[gripper_index(arm)]
                if change:
                    places["open" if change < 0 else "close"].append((arm, world.hand(arm).copy()))
                opened = [p for a, p in places["open"] if a == arm]
                if opened and not change and command[gripper_index(arm)] >= 0.9 and arm in world.holders:
                    held_after_opening.append(min(np.linalg.norm(world.hand(arm) - p) for p in opened))
            previous = command
            world.arms.set_command(command)
            world.step(expert.dt)
        assert world.success, (task, seed)
        assert places["open"] and places["close"]
        nearest = min(np.linalg.norm(p - q) for arm, p in places["open"] for other, q in places["close"]
                      if arm == other)
        assert nearest >= 0.02, (task, seed, nearest)  # (a move ends within ~1 cm)
        if len(scenes.SCENES[task].targets) > 1:
            assert held_after_opening and min(held_after_opening) >= 0.02, (task, seed, min(held_after_opening))


@pytest.mark.parametrize("first", [0, EVAL_SEED_BASE])
def test_consecutive_seeds_put_the_object_in_every_slot_equally_often(first):
    """Recorded demonstrations (seeds 0, 1, ...) and evaluation episodes (100000, ...) cover the conveyor
    evenly; the position within a slot is still drawn (continuous, never the same twice)."""
    world = SimWorld()
    starts = np.array([world.reset("moving_grasp", seed).object_start for seed in range(first, first + 20)])
    nearest = np.argmin(np.abs(starts[:, :1] - np.array(scenes.CONVEYOR_SLOTS)[None]), axis=1)
    assert sorted(np.bincount(nearest, minlength=3)) == [6, 7, 7]
    offsets = starts[:, 0] - np.array(scenes.CONVEYOR_SLOTS)[nearest]
    assert np.all(np.abs(offsets) <= scenes.SLOT_JITTER) and len(set(np.round(offsets, 6))) == 20
    assert np.all(starts[:, 1] == scenes.CONVEYOR_Y)


def test_the_plan_starts_at_the_object():
    world = SimWorld()
    world.reset("weighing", 1)
    first = plan(world)[0]
    assert first.kind == "move" and first.arm == "right"
    np.testing.assert_allclose(first.xy, world.episode.object_start)
    world.reset("weighing", 2)
    assert not np.allclose(plan(world)[0].xy, first.xy)


def test_a_policy_that_holds_still_fails_in_the_closed_loop():
    task = default_catalog().get("sorting")
    result = run_episode(lambda obs: np.repeat(obs.state[None].astype(np.float64), 50, axis=0), task, 7,
                         {"head_cam_h": (64, 64)})
    assert not result.success and result.duration == pytest.approx(SimWorld().config.max_episode_s)
    assert result.inferences == pytest.approx(len(result.states) / 8, abs=1)
    np.testing.assert_allclose(result.states[-1], home_state(), atol=1e-9)


def _towards(target: np.ndarray):
    """A policy whose every chunk asks for ``target`` at once (50 actions)."""
    return lambda obs: np.repeat(target[None], 50, axis=0)


@pytest.mark.parametrize("latency_ticks", [1, 3, 12])
def test_the_evaluation_runs_the_nodes_executor(latency_ticks):
    """The node's controller decides every command: nothing before the first chunk (collected latency_ticks
    after the first tick), a ramp-in from the measured state, never more than the node's max step per tick,
    held ticks only when the model takes longer than the 8 executed actions."""
    from kuavo_smolvla_ros.control.execution import ExecutionSettings
    from kuavo_smolvla_ros.sim.world import WorldConfig

    task, execution = default_catalog().get("sorting"), ExecutionSettings()
    arm = ~np.isin(np.arange(16), robot.GRIPPER_INDICES)
    target = np.clip(home_state() + np.where(arm, 1.0, 0.0), robot.LOWER_LIMITS, robot.UPPER_LIMITS)
    moving = np.abs(target - home_state()) > 0.9
    result = run_episode(_towards(target), task, 7, {"head_cam_h": (32, 32)}, execution=execution,
                         latency_ticks=latency_ticks, world_config=WorldConfig(max_episode_s=4.0))
    commands = result.commands
    assert commands.shape == (40, 16) and result.latency_ticks == latency_ticks
    assert np.isnan(commands[:latency_ticks]).all() and np.isfinite(commands[latency_ticks:]).all()
    steps = np.abs(np.diff(commands[latency_ticks:], axis=0))
    assert np.all(steps <= execution.max_step() + 1e-9)
    assert moving.sum() >= 4
    np.testing.assert_allclose(commands[latency_ticks], result.states[latency_ticks], atol=1e-9)  # from measured
    limit = execution.max_step()[moving]
    np.testing.assert_allclose(steps[0][moving], limit * 2 / 11, rtol=1e-6)  # the ramp-in: 1 s at 10 Hz
    np.testing.assert_allclose(steps[12][moving], limit, rtol=1e-6)  # then the full speed limit
    cycles = max(latency_ticks, execution.n_action_steps)
    assert result.inferences == pytest.approx(40 / cycles, abs=1.5)  # one chunk per cycle, one in flight
    assert (result.held_ticks > 0) == (latency_ticks > execution.n_action_steps)


def test_evaluation_shows_the_policy_the_frames_the_node_decodes_from_sim_robot():
    """Closed-loop evaluation's cameras are sim_robot's JPEG messages as the policy node decodes them (and as the
    converter decodes the recorded bags the policy trained on), not the raw rendered pixels."""
    from types import SimpleNamespace

    from kuavo_smolvla_ros.contract.streams import StreamDecoder, StreamEncoder
    from kuavo_smolvla_ros.ros.sim_params import SimSettings
    from kuavo_smolvla_ros.sim.evaluate import _Frames
    from kuavo_smolvla_ros.sim.world import WorldConfig

    profile = load_profile()
    world = SimWorld()
    world.reset("placement", 11)
    sizes = {name: (48, 64) for name in profile.camera_names}
    encoder, decoder = StreamEncoder(profile), StreamDecoder(profile, {name: None for name in sizes})
    frames = _Frames(world, sizes, SimSettings().jpeg_quality)
    raw = render_cameras(world, sizes)
    for name, image in raw.items():
        _, kind, fields = encoder.camera(name, image, 0.0, quality=SimSettings().jpeg_quality)
        assert kind == "CompressedImage"
        decoded = decoder.image(name, SimpleNamespace(format=fields["format"], data=fields["data"]))()
        seen = frames.loader(0, name)()
        np.testing.assert_array_equal(seen, decoded)
        assert np.abs(seen.astype(int) - image).mean() > 0.5  # the JPEG's loss is there
    np.testing.assert_array_equal(_Frames(world, sizes, None).loader(0, "head_cam_h")(), raw["head_cam_h"])

    # and what an episode shows the policy by default: its first observation, the rest pose through the JPEG
    seen = []

    def predict(observation, **_):
        seen.append(observation)
        return np.repeat(observation.state[None], 50, axis=0)

    for quality, expected in ((90, jpeg_round_trip(render_cameras(world, sizes)["head_cam_h"])),
                              (None, render_cameras(world, sizes)["head_cam_h"])):
        seen.clear()
        run_episode(predict, default_catalog().get("placement"), 11, sizes, latency_ticks=1, jpeg_quality=quality,
                    world_config=WorldConfig(max_episode_s=0.3))
        np.testing.assert_array_equal(seen[0].images["head_cam_h"], expected)
        np.testing.assert_array_equal(seen[0].state, world.state.astype(np.float32))


def test_episode_noise_depends_on_the_episode_alone():
    task, other = TASKS[0], TASKS[1]
    seeds = {episode_noise_seed(0, t, s, k) for t in (task, other) for s in (5, 6) for k in range(3)}
    assert len(seeds) == 12
    assert episode_noise_seed(0, task, 5, 2) == episode_noise_seed(0, task, 5, 2)
    assert episode_noise_seed(1, task, 5, 2) != episode_noise_seed(0, task, 5, 2)


def test_an_episode_replays_alone_with_the_same_noise(tiny_checkpoint):
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime

    runtime, task = PolicyRuntime.open(tiny_checkpoint), TASKS[2]
    batch = evaluate(runtime, [task], 2, progress=False, latency_ticks=2)[task.name]
    alone = evaluate(runtime, [task], 1, first_seed=EVAL_SEED_BASE + 1, progress=False, latency_ticks=2)[task.name][0]
    assert [r.seed for r in batch] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1] and alone.seed == EVAL_SEED_BASE + 1
    np.testing.assert_array_equal(alone.states, batch[1].states)
    other_noise = evaluate(runtime, [task], 1, first_seed=EVAL_SEED_BASE + 1, noise_seed=1, progress=False,
                           latency_ticks=2)
    assert not np.allclose(other_noise[task.name][0].states, alone.states)


# ------------------------------------------------------------------------------------- recorder
@pytest.mark.parametrize("storage", ["ros1", "mcap"])
def test_recorded_bags_convert_cleanly(tmp_path, storage):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from kuavo_smolvla_ros.data.convert import convert

    path = tmp_path / ("episode.bag" if storage == "ros1" else "episode")
    summary = record_episode(path, "weighing", 4, storage, RecordingConfig(image_size=(48, 64)))
    result = convert([path], tmp_path / "dataset", "weighing", storage="png", progress=False)
    assert result.failed == []
    report = json.loads((tmp_path / "dataset" / "meta" / "kuavo_conversion.json").read_text())
    episode = report["episodes"][0]
    assert episode["dropped_ticks"] == 0 and episode["rejected"] == {}
    expected_frames = int(np.floor(summary["duration"] * 10 + 1e-6)) + 1 - 6  # 10 fps, 3 trimmed at each end
    assert abs(episode["frames"] - expected_frames) <= 1
    dataset = LeRobotDataset("local/kuavo", root=tmp_path / "dataset", video_backend="pyav")
    assert dataset.meta.robot_type == load_profile().robot_type
    # Replay the expert to know the true states: frame k of the dataset is at t = (k + 3) / 10, and the expert
    # takes over at t = 0.3 s (the converter's start trim), so frame 0 is the robot at rest, about to move.
    world = SimWorld()
    world.reset("weighing", 4)
    rest, rest_image = world.state, render_cameras(world, {"head_cam_h": (48, 64)})["head_cam_h"]
    expert = ScriptedExpert(world)
    truth = {}
    for k in range(int(summary["duration"] * 30) + 1):
        command = world.state if k < round(start_trim_s() * 30) else expert.act()
        if k % 3 == 0:
            truth[k // 3] = (world.state, render_cameras(world, {"head_cam_h": (48, 64)})["head_cam_h"], command)
        world.arms.set_command(command)
        world.step(expert.dt)
    for index in (0, 1, len(dataset) // 2, len(dataset) - 1):
        item = dataset[index]
        state, image, command = truth[index + 3]
        np.testing.assert_allclose(item["observation.state"].numpy(), state, atol=1e-5)
        np.testing.assert_allclose(item["action"].numpy(), command, atol=1e-4)
        head = (item["observation.images.head_cam_h"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert np.linalg.norm(find_object(head) - find_object(image)) < 0.02  # JPEG-decoded, same place
    # Where an evaluation starts: the first frame is the rest pose (the same pixels an evaluation shows the
    # policy there: the JPEG of the rendered rest pose), its action the expert's first move.
    np.testing.assert_allclose(dataset[0]["observation.state"].numpy(), rest, atol=1e-6)
    first = (dataset[0]["observation.images.head_cam_h"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(first, jpeg_round_trip(rest_image))
    assert np.abs(dataset[0]["action"].numpy() - rest).max() > 0.01


def test_the_recording_lead_is_the_converters_start_trim():
    from kuavo_smolvla_ros.data.config import load_config
    from kuavo_smolvla_ros.sim.record import demonstrator_fingerprint
    from kuavo_smolvla_ros.sim.world import WorldConfig

    conversion = load_config()
    assert start_trim_s() == pytest.approx(conversion.trim.start_frames / conversion.rate) == pytest.approx(0.3)
    # the default lead is that trim: the same demonstrator as an explicit 0.3 s, another than no lead
    profile = load_profile()
    default = demonstrator_fingerprint("ros1", RecordingConfig(), profile)
    assert default == demonstrator_fingerprint("ros1", RecordingConfig(lead_s=start_trim_s()), profile)
    assert default != demonstrator_fingerprint("ros1", RecordingConfig(lead_s=0.0), profile)
    for lead in (-0.1, 20.0):
        with pytest.raises(ValueError, match=r"lead_s must be in \[0, max_episode_s = 20\) s"):
            record_episode("unused.bag", "weighing", 0, config=RecordingConfig(lead_s=lead,
                                                                              world=WorldConfig(max_episode_s=20.0)))


def test_real_time_chunking_gets_the_old_chunks_tail_and_the_delay():
    """With chunk_transition rtc every chunk after the first is requested with the actions the current chunk
    still holds from the request on, and how many of them execute before the new chunk takes over."""
    from kuavo_smolvla_ros.control.execution import ExecutionSettings
    from kuavo_smolvla_ros.sim.world import WorldConfig

    calls = []

    def predict(obs, prefix=None, inference_delay=0):
        chunk = obs.state[None] + 0.001 * np.arange(1, 51)[:, None] * (len(calls) + 1)
        calls.append((prefix, inference_delay, chunk))
        return chunk

    execution = ExecutionSettings(chunk_transition="rtc")
    result = run_episode(predict, default_catalog().get("sorting"), 3, {"head_cam_h": (16, 16)},
                         execution=execution, latency_ticks=3, world_config=WorldConfig(max_episode_s=3.0))
    assert calls[0][0] is None and len(calls) >= 3
    for (_, _, previous), (prefix, delay, _) in itertools.pairwise(calls):
        # requested latency + margin ticks before the window of 8 ends: 4 actions still to execute
        assert delay == 4
        np.testing.assert_allclose(prefix, previous[len(previous) - len(prefix):])
    assert result.held_ticks == 0
