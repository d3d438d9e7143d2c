"""The robot I/O contract: profiles, end effectors and Kuavo codecs, both directions, for every shipped robot.

Round trips go through real messages: rosbags records (ROS 1 and ROS 2 bags) and, where rclpy is available,
rclpy classes; the bad inputs of issue 14 are real bags converted by the real converter.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace as Msg

import numpy as np
import pytest

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.contract.end_effectors import DexHand, JointStateGripper, LejuClaw
from kuavo_smolvla_ros.contract.profile import (
    ProfileError,
    available_profiles,
    load_profile,
    parse_overrides,
)
from kuavo_smolvla_ros.contract.streams import StreamDecoder, StreamEncoder, input_streams, recorded_streams
from kuavo_smolvla_ros.data.bags import read_messages
from kuavo_smolvla_ros.data.convert import convert
from kuavo_smolvla_ros.data.recording import KuavoRecorder
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, action_at, state_at, write_synthetic_bag

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ["kuavo4pro", "kuavo5", "leju_sim", "ros2_joint_state"]
MID = (robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2


def _claw(positions, names=("left_claw", "right_claw")):
    return Msg(data=Msg(position=list(positions), name=list(names)))


# ------------------------------------------------------------------------------------------- profiles
def test_the_shipped_profiles_load_and_say_what_they_are():
    assert available_profiles() == sorted(PROFILES)
    for name in PROFILES:
        profile = load_profile(name)
        assert profile.name == name and profile.source.endswith(f"config/robots/{name}.yaml")
        assert profile.camera_names == ("head_cam_h", "wrist_cam_l", "wrist_cam_r")
    kuavo = load_profile("kuavo4pro")
    assert kuavo.cameras[0].feature_key == "observation.images.head_cam_h"
    assert kuavo.cameras[1].topic == "/cam_l/color/image_raw/compressed" and kuavo.cameras[0].size == (480, 640)
    assert kuavo.state.topic == "/sensors_data_raw" and kuavo.action.topic == "/kuavo_arm_traj"
    assert kuavo.state.joint_q.length == 28 and kuavo.state.joint_q.left_arm == tuple(range(12, 19))
    kuavo5 = load_profile("kuavo5")
    assert kuavo5.state.joint_q.length == 29 and kuavo5.state.joint_q.left_arm == tuple(range(13, 20))
    assert kuavo5.state.joint_q.right_arm == tuple(range(20, 27))
    sim = load_profile("leju_sim").gripper
    assert isinstance(sim, JointStateGripper) and sim.names == ("left_gripper_joint", "right_gripper_joint")
    assert sim.command_scale == 255.0
    assert load_profile("ros2_joint_state").gripper is None


def test_feature_keys_are_lerobots():
    from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

    assert (features.OBS_STATE, features.OBS_IMAGES, features.ACTION) == (OBS_STATE, OBS_IMAGES, ACTION)
    assert features.image_key("wrist_cam_l") == f"{OBS_IMAGES}.wrist_cam_l"
    assert features.camera_of(features.image_key("x")) == "x" and features.camera_of(OBS_STATE) is None


def test_unknown_keys_and_forbidden_overrides_are_refused_by_path(tmp_path):
    text = (ROOT / "config/robots/kuavo4pro.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  source: kuavo_sensors", "  source: kuavo_sensors\n  sorce: x"))
    with pytest.raises(ProfileError, match=r"bad.yaml: unknown key\(s\) \['sorce'\] in state"):
        load_profile(bad)
    bad.write_text(text.replace("length: 28", "length: 20"))
    with pytest.raises(ProfileError, match=r"state.joint_q.left_arm: indices \[\] outside|indices .* outside joint_q"):
        load_profile(bad)
    bad.write_text(text.replace("max_age_s: 0.2", "max_age_s: fast"))
    with pytest.raises(ProfileError, match=r"action\.sync\.max_age_s must be a number, got 'fast'"):
        load_profile(bad)
    with pytest.raises(ProfileError, match=r"unknown robot profile 'kuavo9'.*kuavo4pro"):
        load_profile("kuavo9")
    with pytest.raises(ProfileError, match="'fps' cannot be overridden"):
        load_profile("kuavo4pro", {"fps": 30})
    with pytest.raises(ProfileError, match="no camera 'cam_x'"):
        load_profile("kuavo4pro", {"cameras.cam_x.topic": "/x"})
    with pytest.raises(ProfileError, match="KEY=VALUE"):
        parse_overrides(["state.topic"])


def test_overrides_change_only_what_they_name_and_are_recorded():
    profile = load_profile("kuavo4pro", parse_overrides(["cameras.wrist_cam_l.topic=/cam_r/x",
                                                         "state.sync.max_age_s=0.3", "end_effector.inverted=true"]))
    assert profile.camera("wrist_cam_l").topic == "/cam_r/x"
    assert profile.camera("wrist_cam_r").topic.startswith("/cam_r/color")
    assert profile.state.sync.max_age_s == 0.3 and profile.gripper.inverted
    assert profile.overrides == {"cameras.wrist_cam_l.topic": "/cam_r/x", "state.sync.max_age_s": 0.3,
                                 "end_effector.inverted": True}
    assert "with cameras.wrist_cam_l.topic=/cam_r/x" in profile.describe()
    assert load_profile("kuavo4pro") != profile  # the shipped file is untouched


# -------------------------------------------------------------------------------------- end effectors
@pytest.mark.parametrize(("effector", "raw_state", "raw_command"), [
    (LejuClaw(("left_claw", "right_claw"), 100.0, 100.0), 50.0, 50.0),
    (JointStateGripper(("left_claw", "right_claw"), 0.8, 140.0), 0.4, 70.0),
    (DexHand(("left", "right"), 100.0, 100.0), 50.0, 50.0)])
def test_end_effectors_map_half_travel_to_half(effector, raw_state, raw_command):
    assert effector.to_unit(raw_state, effector.state_scale) == pytest.approx(0.5)
    assert effector.to_unit(raw_command, effector.command_scale) == pytest.approx(0.5)
    assert effector.to_raw(0.5, effector.command_scale) == pytest.approx(raw_command)


def test_inverted_claw_flips_both_directions():
    claw = LejuClaw(("left_claw", "right_claw"), 100.0, 100.0, inverted=True)
    assert claw.decode_state(_claw([100.0, 0.0])) == pytest.approx((0.0, 1.0))
    assert claw.command_raw([1.0, 0.3]) == pytest.approx([0.0, 70.0])
    assert claw.decode_command(_claw(claw.command_raw([0.3, 0.9]))) == pytest.approx((0.3, 0.9))


def test_claws_are_read_by_name_and_bad_claw_messages_refused():
    claw = LejuClaw(("left_claw", "right_claw"), 100.0, 100.0)
    assert claw.decode_state(_claw([80.0, 20.0], ["right_claw", "left_claw"])) == pytest.approx((0.2, 0.8))
    for msg, message in [
        (_claw([1.0, 2.0], ["left_claw", "head_claw"]), r"unknown name\(s\) \['head_claw'\]"),
        (_claw([1.0, 2.0, 3.0]), "2 names and 3 positions"),
        (_claw([1.0, 2.0], ["left_claw", "left_claw"]), "names 'left_claw' twice"),
        (_claw([np.nan, 20.0]), "non-finite claw command"),
        (_claw([10.0, 130.0]), r"right value 130 is 1.30 on the 0..100 scale"),
    ]:
        with pytest.raises(ValueError, match=message):
            claw.decode_command(msg)


def test_arm_command_is_degrees_in_left_right_order_and_round_trips():
    from kuavo_smolvla_ros.contract import kuavo

    action = np.linspace(-0.5, 0.5, 16)
    action[[7, 15]] = (0.2, 0.9)
    fields = kuavo.arm_traj_fields(action, 0.0)
    assert fields["name"][13] == "arm_joint_13" and len(fields["position"]) == 14
    np.testing.assert_allclose(fields["position"][:7], np.degrees(action[0:7]))
    np.testing.assert_allclose(fields["position"][7:], np.degrees(action[8:15]))
    np.testing.assert_allclose(kuavo.arms_from_arm_traj(Msg(**fields)), action[robot.ARM_INDICES], atol=1e-12)
    unnamed = Msg(name=[], position=fields["position"])
    np.testing.assert_allclose(kuavo.arms_from_arm_traj(unnamed), action[robot.ARM_INDICES], atol=1e-12)
    claw = LejuClaw(("left_claw", "right_claw"), 100.0, 100.0)
    assert claw.command_fields(robot.gripper_units(action), 0.0)["data"]["position"] == pytest.approx([20.0, 90.0])
    with pytest.raises(ValueError, match="arm command has 13 positions, expected 14"):
        kuavo.arms_from_arm_traj(Msg(name=[], position=fields["position"][:13]))


def test_dexterous_hands_round_trip():
    hand = DexHand(("left", "right"), 100.0, 100.0)
    fields = hand.command_fields([0.3, 1.0], 0.0)
    assert fields["left_hand_position"] == [30] * 6 and fields["right_hand_position"] == [100] * 6
    assert hand.decode_command(Msg(**fields)) == pytest.approx((0.3, 1.0))
    state = hand.state_fields([0.5, 1.0], 0.0)
    assert hand.decode_state(Msg(**state)) == pytest.approx((0.5, 1.0))
    with pytest.raises(ValueError, match="hand state has 6 positions, expected 12"):
        hand.decode_state(Msg(position=[0.0] * 6))
    with pytest.raises(ValueError, match="hand command needs 6 fingers per hand, got 5 and 6"):
        hand.decode_command(Msg(left_hand_position=[1] * 5, right_hand_position=[1] * 6))


# ----------------------------------------------------------------------------------------- decoding
def test_state_waits_for_the_gripper_and_rejects_bad_values():
    profile = load_profile("kuavo4pro")
    decoder = StreamDecoder(profile)
    q = np.zeros(28)
    q[12:19] = 0.1
    sensors = Msg(joint_data=Msg(joint_q=q))
    assert decoder.state(sensors) is None  # no gripper state yet: no state at all
    decoder.update_grippers(_claw([50.0, 100.0]))
    state = decoder.state(sensors)
    assert state[robot.LEFT_ARM] == pytest.approx([0.1] * 7) and robot.gripper_units(state) == (0.5, 1.0)
    with pytest.raises(ValueError, match="non-finite claw state"):
        decoder.update_grippers(_claw([np.inf, 1.0]))
    assert decoder.grippers == (0.5, 1.0)  # the bad message changed nothing
    q[19] = np.nan
    with pytest.raises(ValueError, match="joint state contains non-finite values"):
        decoder.state(sensors)


@pytest.mark.parametrize(("profile", "length"), [("kuavo4pro", 29), ("kuavo4pro", 27), ("kuavo5", 28),
                                                  ("kuavo4pro", 1000)])
def test_a_joint_q_of_another_length_is_refused_never_shifted(profile, length):
    decoder = StreamDecoder(load_profile(profile))
    decoder.update_grippers(_claw([0.0, 0.0]))
    expected = load_profile(profile).state.joint_q.length
    with pytest.raises(ValueError, match=rf"joint_q has {length} entries; robot profile {profile} expects {expected}"):
        decoder.state(Msg(joint_data=Msg(joint_q=np.zeros(length))))


def test_whole_robot_joint_states_are_read_by_name_in_any_order():
    """A joint_state_broadcaster's message: the 16 layout joints plus legs and head, in its own order."""
    profile = load_profile("ros2_joint_state")
    names = [*profile.state.joint_names, *(f"leg_l{i}_joint" for i in range(1, 7)),
             *(f"leg_r{i}_joint" for i in range(1, 7)), "head_yaw", "head_pitch"]
    values = [*MID, *np.linspace(-1, 1, 14)]
    order = np.random.default_rng(0).permutation(len(names))
    msg = Msg(name=[names[i] for i in order], position=[values[i] for i in order])
    np.testing.assert_array_equal(StreamDecoder(profile).state(msg), MID)
    msg.name[0] = msg.name[1]
    with pytest.raises(ValueError, match="twice"):
        StreamDecoder(profile).state(msg)
    with pytest.raises(ValueError, match="lacks"):
        StreamDecoder(profile).state(Msg(name=names[1:16], position=values[1:16]))


# ---------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("storage", ["ros1", "mcap"])
@pytest.mark.parametrize("name", PROFILES)
def test_encode_then_decode_returns_the_values_through_a_real_bag(tmp_path, name, storage):
    """The recorder's encoders and the node's/converter's decoders are inverse, for every profile and bag kind."""
    profile = load_profile(name)
    state, action = MID.copy(), MID.copy()
    state[[7, 15]], action[[7, 15]] = (0.25, 0.75), (0.5, 1.0)
    action[robot.ARM_INDICES] += 0.05
    image = np.zeros((8, 12, 3), dtype=np.uint8)
    image[..., 0] = 200
    path = tmp_path / ("a.bag" if storage == "ros1" else "a")
    with KuavoRecorder(path, storage, profile) as bag:
        for encoded in [*bag.encoder.state(state, 1.0), *bag.encoder.action(action, 1.0)]:
            bag.write(encoded, 1.0)
        bag.write(bag.encoder.camera("head_cam_h", image, 1.0), 1.0)
    by_topic = {m.topic: m.msg for m in read_messages(path)}
    streams = {s.role: s for s in recorded_streams(profile)}
    assert set(by_topic) == {s.topic for s in streams.values() if s.role not in ("wrist_cam_l", "wrist_cam_r")}
    decoder = StreamDecoder(profile)
    if "gripper_state" in streams:
        decoder.update_grippers(by_topic[streams["gripper_state"].topic])
    np.testing.assert_allclose(decoder.state(by_topic[profile.state.topic]), state, atol=1e-12)
    arm = decoder.arm_command(by_topic[profile.action.topic])
    grippers = decoder.gripper_command(by_topic[streams["gripper_command"].topic]) if profile.has_gripper_command \
        else None
    np.testing.assert_allclose(StreamDecoder.action(arm, grippers), action, atol=1e-9)
    frame = decoder.image("head_cam_h", by_topic[profile.cameras[0].topic])()
    assert frame.shape == (8, 12, 3) and abs(int(frame[..., 0].mean()) - 200) < 3


@pytest.mark.parametrize("name", PROFILES)
def test_encode_then_decode_through_rclpy_messages(name):
    pytest.importorskip("rclpy")
    from kuavo_smolvla_ros.ros.fields import build

    profile = load_profile(name)
    encoder, decoder = StreamEncoder(profile), StreamDecoder(profile)
    state = MID.copy()
    state[[7, 15]] = (0.1, 0.9)
    messages = {topic: build(kind, fields) for topic, kind, fields in encoder.state(state, 12.5)}
    if profile.has_gripper_state:
        decoder.update_grippers(messages[profile.end_effector.state_topic])
    msg = messages[profile.state.topic]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500_000_000)
    np.testing.assert_allclose(decoder.state(msg), state, atol=1e-12)
    assert [s.topic for s in input_streams(profile)][:3] == [c.topic for c in profile.cameras]


# ----------------------------------------------------------------------------- the inputs of issue 14
def _convert(tmp_path, bags, profile, **kwargs):
    return convert(bags, tmp_path / "out", task="task1_moving_grasp", robot=profile, progress=False, **kwargs)


def test_a_kuavo5_bag_converts_with_its_profile_and_is_refused_by_the_4pro_one(tmp_path):
    """The v52 layout: waist yaw at joint_q[12]; read as a 4 Pro it would shift every arm joint by one."""
    bag = tmp_path / "bags" / "kuavo5.bag"
    written = write_synthetic_bag(bag, "ros1", SyntheticBag(seconds=2, seed=5), profile="kuavo5")
    with KuavoRecorder(tmp_path / "probe.bag", "ros1", "kuavo5") as probe:
        q = probe.encoder.joint_state(state_at(0.0), 0.0)[2]["joint_data"]["joint_q"]
    assert len(q) == 29 and q[12] == 0.0 and q[13:20] == pytest.approx(state_at(0.0)[robot.LEFT_ARM])

    refused = _convert(tmp_path, [bag], "kuavo4pro")
    assert [r.status for r in refused.results] == ["failed"]
    assert "joint_q has 29 entries; robot profile kuavo4pro expects 28" in refused.results[0].reason

    result = convert([bag], tmp_path / "ok", task="task1_moving_grasp", robot="kuavo5", progress=False)
    assert [r.status for r in result.results] == ["converted"], result.results[0].reason
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/kuavo", root=tmp_path / "ok", video_backend="pyav")
    assert dataset.meta.robot_type == "kuavo5"
    nominal = np.array([n for n, _ in written["sensors"]])
    for i in (0, len(dataset) // 2):
        state = dataset[i][features.OBS_STATE].numpy()
        # the state is one of the recorded states (no shift: every arm joint matches the same time)
        errors = [np.abs(state[robot.ARM_INDICES] - state_at(t)[robot.ARM_INDICES]).max() for t in nominal]
        assert min(errors) < 1e-5
    report = json.loads((tmp_path / "ok" / "meta" / "kuavo_conversion.json").read_text())
    assert report["config"]["robot_profile"]["name"] == "kuavo5"


def test_leju_simulator_grippers_convert_on_their_scale_and_a_wrong_scale_is_refused(tmp_path):
    """Leju's simulator: JointState grippers named left/right_gripper_joint, commands 0..255."""
    bags = tmp_path / "bags"
    write_synthetic_bag(bags / "sim.bag", "ros1", SyntheticBag(seconds=2, seed=6), profile="leju_sim")
    refused = _convert(tmp_path, [bags], "kuavo4pro")
    assert "missing topic(s) ['/leju_claw_state', '/leju_claw_command']" in refused.results[0].reason

    result = convert([bags], tmp_path / "ok", task="weighing", robot="leju_sim", progress=False)
    assert result.results[0].status == "converted", result.results[0].reason
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/kuavo", root=tmp_path / "ok", video_backend="pyav")
    actions = np.stack([dataset[i][features.ACTION].numpy() for i in range(len(dataset))])
    assert actions[:, robot.GRIPPER_INDICES].max() <= 1.0 and actions[:, robot.GRIPPER_INDICES].min() >= 0.0
    expected = np.array([action_at(t)[robot.GRIPPER_INDICES] for t in np.linspace(0, 2, 200)])
    assert actions[:, robot.GRIPPER_INDICES].max() == pytest.approx(expected.max(), abs=0.05)

    # The same bag read on the old fixed 0..140 command scale: every command beyond 140 is refused with the cause.
    profile = tmp_path / "wrong_scale.yaml"
    profile.write_text((ROOT / "config/robots/leju_sim.yaml").read_text().replace("command_scale: 255.0",
                                                                                 "command_scale: 140.0"))
    wrong = convert([bags], tmp_path / "wrong", task="weighing", robot=str(profile), progress=False)
    episode = wrong.results[0].episode if wrong.results[0].status == "converted" else None
    reason = wrong.results[0].reason or json.dumps(episode)
    assert "on the 0..140 scale, outside 0..1" in reason


def test_a_fifth_robot_is_one_yaml_file(tmp_path):
    """A robot the package has never seen: JointState arms in degrees (14 names), dexterous hands, two raw
    cameras under its own names. Written here, converted by the unchanged converter."""
    yaml_text = """
name: my_robot
robot_type: my_robot
fps: 10
stamp_source: header
cameras:
  - {name: head_cam_h, topic: /head/image_raw, encoding: raw, sync: {max_age_s: 0.1}}
  - {name: wrist_cam_l, topic: /left/image_raw, encoding: raw, sync: {max_age_s: 0.1}}
state:
  source: joint_state
  topic: /arm_states
  units: deg
  joint_names: [l1, l2, l3, l4, l5, l6, l7, r1, r2, r3, r4, r5, r6, r7]
action:
  source: joint_state
  topic: /arm_commands
  units: deg
  joint_names: [l1, l2, l3, l4, l5, l6, l7, r1, r2, r3, r4, r5, r6, r7]
end_effector:
  type: dex_hand
  names: [left, right]
  state_scale: 100.0
  command_scale: 100.0
  state_topic: /dexhand/state
  command_topic: /control_robot_hand_position
"""
    path = tmp_path / "my_robot.yaml"
    path.write_text(yaml_text)
    profile = load_profile(path)
    assert profile.name == "my_robot" and profile.camera_names == ("head_cam_h", "wrist_cam_l")
    bag = tmp_path / "bags" / "mine"
    write_synthetic_bag(bag, "mcap", SyntheticBag(seconds=2, seed=7), profile=str(path))
    result = convert([bag], tmp_path / "out", task="sorting", robot=str(path), progress=False)
    assert result.results[0].status == "converted", result.results[0].reason
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/kuavo", root=tmp_path / "out", video_backend="pyav")
    assert set(dataset.meta.camera_keys) == {"observation.images.head_cam_h", "observation.images.wrist_cam_l"}
    item = dataset[0]
    state = item[features.OBS_STATE].numpy()
    t = float(item["timestamp"])  # not needed for the check below: every recorded state is inside the limits
    assert robot.within_limits(state, tolerance=1e-4), (t, state)


# ------------------------------------------------------------------------------------- import layers
LAYERS = {  # package (or module) -> packages it must never import
    "kuavo_smolvla_ros.contract": ("policy", "control", "data", "training", "sim", "ros"),
    "kuavo_smolvla_ros.interrupts": ("robot", "features", "contract", "policy", "control", "data", "training", "sim",
                                     "ros"),
    "kuavo_smolvla_ros.robot": ("contract", "policy", "control", "data", "training", "sim", "ros"),
    "kuavo_smolvla_ros.features": ("contract", "policy", "control", "data", "training", "sim", "ros"),
    "kuavo_smolvla_ros.sync": ("policy", "control", "data", "training", "sim", "ros"),
    "kuavo_smolvla_ros.images": ("policy", "control", "data", "training", "sim", "ros"),
    "kuavo_smolvla_ros.observation": ("policy", "control", "data", "training", "sim", "ros"),
    "kuavo_smolvla_ros.policy": ("control", "data", "training", "sim", "ros"),
    "kuavo_smolvla_ros.control": ("policy.runtime", "data", "training", "sim", "ros"),
    "kuavo_smolvla_ros.data": ("policy", "control", "training", "sim", "ros"),
    "kuavo_smolvla_ros.sim": ("training", "ros"),
    "kuavo_smolvla_ros.ros.sim_node": ("data", "training"),
    "kuavo_smolvla_ros.training": ("ros",),
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_lower_layers_never_import_higher_ones():
    package = ROOT / "kuavo_smolvla_ros"
    violations = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for layer, forbidden in LAYERS.items():
            if module != layer and not module.startswith(layer + "."):
                continue
            for imported in _imports(path):
                for target in forbidden:
                    full = f"kuavo_smolvla_ros.{target}"
                    if imported == full or imported.startswith(full + "."):
                        violations.append(f"{module} imports {imported}")
    users = {p for p in package.rglob("*.py") if not p.is_relative_to(package / "ros")
             for i in _imports(p) if i.startswith("kuavo_smolvla_ros.ros")}
    assert not violations and not users, (violations, users)


def test_the_converter_command_takes_the_robot_and_overrides_and_reports_them(tmp_path, capsys):
    from kuavo_smolvla_ros.data.cli import main as cli

    bag = tmp_path / "bags" / "k5.bag"
    write_synthetic_bag(bag, "ros1", SyntheticBag(seconds=2, seed=8), profile="kuavo5")
    assert cli(["convert", str(bag), "-o", str(tmp_path / "out"), "-t", "1", "--robot", "kuavo9", "-q"]) == 2
    assert "unknown robot profile 'kuavo9'" in capsys.readouterr().err
    assert cli(["convert", str(bag), "-o", str(tmp_path / "out"), "-t", "1", "--override", "fps=5", "-q"]) == 2
    assert "'fps' cannot be overridden" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert cli(["convert", str(bag), "-o", str(tmp_path / "out"), "-t", "1", "--robot", "kuavo5",
                "--override", "state.sync.max_age_s=0.2", "-q"]) == 0
    report = json.loads((tmp_path / "out" / "meta" / "kuavo_conversion.json").read_text())
    profile = report["config"]["robot_profile"]
    assert profile["name"] == "kuavo5" and profile["overrides"] == {"state.sync.max_age_s": 0.2}
    assert profile["profile"]["state"]["sync"]["max_age_s"] == 0.2 and report["robot_type"] == "kuavo5"


@pytest.mark.parametrize(("override", "message"), [
    ({"cameras.wrist_cam_l.topic": "/cam_r/color/image_raw/compressed"},
     r"cameras\.wrist_cam_r\.topic /cam_r/color/image_raw/compressed is also cameras\.wrist_cam_l\.topic"),
    ({"state.sync.max_age_s": float("nan")}, r"state\.sync\.max_age_s must be a finite number"),
    ({"action.sync.max_age_s": "1e-1"}, None),  # YAML 1.1 reads 1e-1 as a string: still a number
    ({"state.topic": ""}, r"state\.topic must be a topic name"),
    ({"state.topic": "/sensors data"}, r"state\.topic must be a topic name"),
])
def test_overrides_that_would_break_a_stream_are_refused(override, message):
    if message is None:
        assert load_profile("kuavo4pro", override).action.sync.max_age_s == pytest.approx(0.1)
        return
    with pytest.raises(ProfileError, match=message):
        load_profile("kuavo4pro", override)


@pytest.mark.parametrize(("change", "message"), [
    (("state_scale: 100.0", "state_scale: .inf"), r"end_effector\.state_scale must be a finite number"),
    (("height: 480, width: 640,\n     sync: {mode: as_of, max_age_s: 0.1}}\n  - {name: wrist_cam_l",
      "height: 0, width: 0,\n     sync: {mode: as_of, max_age_s: 0.1}}\n  - {name: wrist_cam_l"),
     r"height and width must both be in 1\.\.8192"),
    (("names: [left_claw, right_claw]", "names: [left_claw, left_claw]"), "two different names"),
    (("  topic: /kuavo_arm_traj\n", "  topic: /kuavo_arm_traj\n  units: rad\n"),
     r"action\.units: kuavo_arm_traj is always in deg"),
    (("fps: 10 ", "fps: 10\nfps: 20 "), r"key\(s\) \['fps'\] given twice"),
    (("length: 28", "length: 1000000000"), r"length must be in 14\.\.1000"),
])
def test_profile_values_that_would_mislead_are_refused(tmp_path, change, message):
    text = (ROOT / "config/robots/kuavo4pro.yaml").read_text()
    assert change[0] in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ProfileError, match=message):
        load_profile(bad)
