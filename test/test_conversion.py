"""rosbag -> LeRobot v3 conversion on real bags (rosbags' writers) with exactly known content.

Expected values are computed here independently of the converter: per stream the "as of" sample
(latest record time at or before the tick, within the stream's max age) on the fps grid.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from processes import kill_when

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.fields import encode_jpeg
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.data.cli import main as cli
from kuavo_smolvla_ros.data.config import ConfigError, load_config
from kuavo_smolvla_ros.data.convert import ConversionError, convert
from kuavo_smolvla_ros.data.dataset import REPO_ID
from kuavo_smolvla_ros.data.recording import KuavoRecorder
from kuavo_smolvla_ros.data.synthetic import (
    SyntheticBag,
    action_at,
    frame_image,
    frame_number,
    state_at,
    write_synthetic_bag,
)
from kuavo_smolvla_ros.data.validate import validate
from kuavo_smolvla_ros.features import ACTION, OBS_STATE
from kuavo_smolvla_ros.tasks import default_catalog

ROOT = Path(__file__).resolve().parent.parent
KUAVO = load_profile("kuavo4pro")
START = 100.0
FPS = 10
CHUNK = 50
INSTRUCTION = default_catalog().get("moving_grasp").instruction
#: The converter's stream names for the bag's streams.
STREAM_NAMES = {"sensors": "state", "arm_command": "action", "claw_command": "gripper_command"}


def _bag_path(tmp_path: Path, name: str, storage: str) -> Path:
    return tmp_path / "bags" / (f"{name}.bag" if storage == "ros1" else name)


def _as_of(records: np.ndarray, tick: float, max_age: float | None) -> int | None:
    """Index of the latest record at or before ``tick`` within ``max_age`` (independent of sync.py)."""
    before = np.nonzero(records <= tick + 1e-9)[0]
    if not len(before) or (max_age is not None and tick - records[before[-1]] > max_age + 1e-9):
        return None
    return int(before[-1])


def expected_rows(written: dict, config) -> tuple[list[dict[str, int]], dict[str, int]]:
    """Per kept tick the index of each stream's sample, and the drops per stream."""
    records = {k: START + np.array([r for _, r in v]) for k, v in written.items()}
    # The state stream starts with the first sensors message after the first claw state (the node's latch).
    first_claw = records["claw_state"][0]
    sensors_start = np.nonzero(records["sensors"] > first_claw)[0][0]
    profile = config.profile
    ages = {c.name: c.sync.max_age_s for c in profile.cameras} | {
        "sensors": profile.state.sync.max_age_s, "arm_command": profile.action.sync.max_age_s,
        "claw_command": profile.end_effector.command_sync.max_age_s}
    firsts = [records[k][0] for k in ages if k != "sensors"] + [records["sensors"][sensors_start]]
    start = max(firsts)
    end = min(records[k][-1] for k in ages)
    ticks = start + np.arange(int(np.floor((end - start) * FPS + 1e-9)) + 1) / FPS
    ticks = ticks[config.trim.start_frames: len(ticks) - config.trim.end_frames]
    rows, drops = [], {}
    for tick in ticks:
        row = {k: _as_of(records[k], tick, age) for k, age in ages.items()}
        if row["sensors"] is not None and row["sensors"] < sensors_start:
            row["sensors"] = None
        missing = [STREAM_NAMES.get(k, k) for k, v in row.items() if v is None]
        for name in missing:
            drops[name] = drops.get(name, 0) + 1
        if not missing:
            rows.append(row)
    return rows, drops


def _read_back(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO_ID, root=root, video_backend="pyav",
                          delta_timestamps={ACTION: [i / FPS for i in range(CHUNK)]})


CASES = {
    # storage, images, what is special about the bag
    "ros1": ("video", SyntheticBag(jitter_s=0.004, seed=1)),
    "sqlite3": ("png", SyntheticBag(camera_gaps={"wrist_cam_l": (1.05, 1.25)}, seed=2)),
    "mcap": ("video", SyntheticBag(jitter_s=0.003, camera_gaps={"head_cam_h": (0.95, 1.2)}, seed=3)),
}


@pytest.mark.parametrize("storage", list(CASES))
def test_values_frames_and_drops_match_the_recording(tmp_path, storage):
    media, spec = CASES[storage]
    written = write_synthetic_bag(_bag_path(tmp_path, "episode", storage), storage, spec)
    result = convert([tmp_path / "bags"], tmp_path / "dataset", task="moving_grasp", storage=media, progress=False)
    assert [r.status for r in result.results] == ["converted"], result.results
    config = load_config()
    rows, drops = expected_rows(written, config)
    episode = result.results[0].episode
    assert episode["frames"] == len(rows)
    assert episode["dropped"] == drops
    assert (sum(drops.values()) > 0) == bool(spec.camera_gaps)

    dataset = _read_back(tmp_path / "dataset")
    assert len(dataset) == len(rows) and dataset.meta.robot_type == KUAVO.robot_type
    assert dataset.meta.features[OBS_STATE]["names"] == list(robot.JOINT_NAMES)
    nominal = {k: np.array([n for n, _ in v]) for k, v in written.items()}
    actions = []
    for i, row in enumerate(rows):
        item = dataset[i]
        assert item["task"] == INSTRUCTION
        assert float(item["timestamp"]) == pytest.approx(i / FPS, abs=1e-4)
        state = item[OBS_STATE].numpy()
        np.testing.assert_allclose(state[robot.ARM_INDICES], state_at(nominal["sensors"][row["sensors"]])[
            robot.ARM_INDICES], atol=1e-5)
        np.testing.assert_allclose(state[robot.GRIPPER_INDICES], state_at(nominal["sensors"][row["sensors"]])[
            robot.GRIPPER_INDICES], atol=0.02)  # the claw state held from up to one claw period before
        action = np.empty(robot.ACTION_DIM)
        action[robot.ARM_INDICES] = action_at(nominal["arm_command"][row["arm_command"]])[robot.ARM_INDICES]
        action[robot.GRIPPER_INDICES] = action_at(nominal["claw_command"][row["claw_command"]])[robot.GRIPPER_INDICES]
        actions.append(action)
        for camera in KUAVO.camera_names:
            image = (item[f"observation.images.{camera}"].numpy().transpose(1, 2, 0) * 255).round()
            assert frame_number(image) == round(nominal[camera][row[camera]] * spec.camera_hz), (i, camera)
    actions = np.array(actions)
    for i in (0, len(rows) // 2, len(rows) - 1):  # 50-step chunks, padded past the episode's end
        item = dataset[i]
        chunk, pad = item[ACTION].numpy(), item["action_is_pad"].numpy()
        real = min(CHUNK, len(rows) - i)
        assert chunk.shape == (CHUNK, robot.ACTION_DIM) and not pad[:real].any() and pad[real:].all()
        np.testing.assert_allclose(chunk[:real], actions[i:i + real], atol=1e-5)
    assert validate(tmp_path / "dataset").findings == []


def _empty_bag(path: Path) -> Path:
    with KuavoRecorder(path, "ros1"):
        pass
    return path


def test_bad_bags_are_reported_and_the_others_converted(tmp_path, capsys):
    bags = tmp_path / "bags"
    good = bags / "a_good.bag"
    write_synthetic_bag(good, "ros1", SyntheticBag(seconds=2))
    truncated = bags / "b_truncated.bag"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    write_synthetic_bag(bags / "c_missing", "mcap", SyntheticBag(seconds=2, omit_topics=(KUAVO.action.topic,)))
    _empty_bag(bags / "d_empty.bag")
    write_synthetic_bag(bags / "e_mismatch.bag", "ros1",
                        SyntheticBag(seconds=2, joint_state_topics=(KUAVO.state.topic,)))
    write_synthetic_bag(bags / "f_too_short.bag", "ros1", SyntheticBag(seconds=0.5))
    write_synthetic_bag(bags / "g_gappy.bag", "ros1", SyntheticBag(seconds=2, camera_gaps={"wrist_cam_r": (0.5, 1.0)}))
    code = cli(["convert", str(bags), "--output", str(tmp_path / "out"), "--task", "weighing", "--quiet"])
    assert code == 1
    report = json.loads((tmp_path / "out" / "meta" / "kuavo_conversion.json").read_text())
    reasons = {Path(b["source"]).name: b["reason"] for b in report["runs"][-1]["bags"] if b["status"] == "failed"}
    assert set(reasons) == {"b_truncated.bag", "c_missing", "d_empty.bag", "e_mismatch.bag", "f_too_short.bag",
                            "g_gappy.bag"}
    assert "corrupt or truncated" in reasons["b_truncated.bag"] and "rosbag reindex" in reasons["b_truncated.bag"]
    assert "missing topic(s) ['/kuavo_arm_traj']" in reasons["c_missing"]
    assert "empty bag" in reasons["d_empty.bag"]
    assert "/sensors_data_raw has type sensor_msgs/msg/JointState, expected SensorsData" in reasons["e_mismatch.bag"]
    assert "min_frames" in reasons["f_too_short.bag"]
    assert "> max_dropped_fraction 10%); streams without a valid sample: wrist_cam_r: 4" in reasons["g_gappy.bag"]
    assert [Path(e["source"]).name for e in report["episodes"]] == ["a_good.bag"]
    assert report["episodes"][0]["task"] == "weighing"
    err = capsys.readouterr().err
    assert "FAILED" in err and "e_mismatch.bag" in err
    assert validate(tmp_path / "out").ok


def test_arguments_and_config_errors(tmp_path, capsys):
    write_synthetic_bag(tmp_path / "a.bag", "ros1", SyntheticBag(seconds=2))
    with pytest.raises(ConversionError, match="unknown task 'juggling'"):
        convert([tmp_path / "a.bag"], tmp_path / "out", task="juggling")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no bags found"):
        convert([tmp_path / "empty"], tmp_path / "out", task="1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("fps: 10\noverrides: {state.sorce: joint_state}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sorce'\] in state"):
        load_config(bad)
    assert cli(["convert", str(tmp_path / "a.bag"), "-o", str(tmp_path / "out"), "-t", "1", "-c", str(bad)]) == 2
    assert "sorce" in capsys.readouterr().err
    assert cli(["convert", str(tmp_path / "a.bag"), "-o", str(tmp_path / "out"), "-t", "1", "-q"]) == 0
    assert cli(["convert", str(tmp_path / "a.bag"), "-o", str(tmp_path / "out"), "-t", "1", "-q"]) == 2
    assert "exists: pass --resume" in capsys.readouterr().err


def test_generic_joint_state_recordings(tmp_path):
    """ROS 2 recordings with sensor_msgs/JointState state and action, mapped by joint names."""
    spec = SyntheticBag(seconds=2, seed=4)
    path = tmp_path / "js"
    with KuavoRecorder(path, "mcap", "ros2_joint_state") as bag:
        rng = np.random.default_rng(0)
        for k, nominal, record in spec.times(30.0, rng):
            for camera in bag.profile.camera_names:
                bag.camera(camera, START + record, jpeg=encode_jpeg(frame_image(k, 48, 64)), stamp=START + nominal)
            bag.state(START + record, state_at(nominal), stamp=START + nominal)
            bag.arm_command(START + record, action_at(nominal), stamp=START + nominal)
    result = convert([path], tmp_path / "out", task="sorting", robot="ros2_joint_state", progress=False)
    assert result.results[0].status == "converted", result.results[0].reason
    dataset = _read_back(tmp_path / "out")
    first = dataset[0]
    t = (first["observation.images.head_cam_h"].numpy().transpose(1, 2, 0) * 255).round()
    t = frame_number(t) / 30.0
    np.testing.assert_allclose(first[OBS_STATE].numpy(), state_at(t), atol=1e-5)
    np.testing.assert_allclose(first[ACTION].numpy()[0], action_at(t), atol=1e-5)


def test_interrupted_run_resumes_without_duplicates(tmp_path):
    bags = tmp_path / "bags"
    for i, seconds in enumerate((2, 2, 2)):
        write_synthetic_bag(bags / f"ep{i}.bag", "ros1", SyntheticBag(seconds=seconds, jitter_s=0.002, seed=10 + i))
    output = tmp_path / "out"
    command = [sys.executable, "-m", "kuavo_smolvla_ros.data.cli", "convert", str(bags), "-o", str(output),
               "-t", "2", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=os.environ | {"OMP_NUM_THREADS": "1"})
    parts = output.with_name("out.parts")
    kill_when(process, lambda: any(parts.glob("*/episode.json")), 120, "a finished episode")
    # Whatever the moment of the kill, the output is absent or a dataset lerobot opens.
    assert not output.exists() or validate(output).ok
    result = convert([bags], output, task="2", resume=True, progress=False)
    statuses = [r.status for r in result.results]
    assert "reused" in statuses and "failed" not in statuses
    again = convert([bags, bags / "ep0.bag"], output, task="2", resume=True, progress=False)
    assert [r.status for r in again.results] == ["skipped"] * 3
    report = json.loads((output / "meta" / "kuavo_conversion.json").read_text())
    assert sorted(Path(e["source"]).name for e in report["episodes"]) == ["ep0.bag", "ep1.bag", "ep2.bag"]
    assert len({e["sha256"] for e in report["episodes"]}) == 3
    assert [e["episode_index"] for e in report["episodes"]] == [0, 1, 2]
    check = validate(output)
    assert check.ok and check.episodes == 3
    assert not output.with_name("out.parts").exists()


def test_two_workers_give_the_same_dataset_as_one(tmp_path):
    bags = tmp_path / "bags"
    for i in range(2):
        write_synthetic_bag(bags / f"ep{i}.bag", "ros1", SyntheticBag(seconds=2, jitter_s=0.002, seed=20 + i))
    one = convert([bags], tmp_path / "one", task="3", workers=1, storage="png", progress=False)
    two = convert([bags], tmp_path / "two", task="3", workers=2, storage="png", progress=False)
    assert [r.episode["frames"] for r in one.results] == [r.episode["frames"] for r in two.results]
    import pandas as pd

    frames = [pd.concat([pd.read_parquet(path, columns=[OBS_STATE, ACTION, "episode_index"])
                         for path in sorted((tmp_path / name / "data").rglob("*.parquet"))], ignore_index=True)
              for name in ("one", "two")]
    assert list(frames[0]["episode_index"].unique()) == [0, 1]
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_png_parts_are_assembled_one_data_file_each_with_the_rows_and_statistics_of_packed_files(tmp_path,
                                                                                                  monkeypatch):
    """Images in parquet: assembling keeps a data file per bag (lerobot's packing re-embeds the growing file's
    images for every part: quadratic); lerobot reads back the same items, and the statistics are the same, as
    from the packed layout (lerobot's default, forced here)."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from kuavo_smolvla_ros.data import dataset as lerobot_io

    bags = tmp_path / "bags"
    for i in range(3):
        write_synthetic_bag(bags / f"ep{i}.bag", "ros1", SyntheticBag(seconds=2, jitter_s=0.002, seed=40 + i))
    result = convert([bags], tmp_path / "split", task="4", storage="png", progress=False)
    assert [r.status for r in result.results] == ["converted"] * 3, result.summary
    monkeypatch.setattr(lerobot_io, "images_in_parquet", lambda root: False)  # lerobot's packing, as before
    convert([bags], tmp_path / "packed", task="4", storage="png", progress=False)
    files = {name: sorted(p.name for p in (tmp_path / name / "data").rglob("*.parquet"))
             for name in ("split", "packed")}
    assert files == {"split": ["file-000.parquet", "file-001.parquet", "file-002.parquet"],
                     "packed": ["file-000.parquet"]}
    stats = [json.loads((tmp_path / name / "meta" / "stats.json").read_text()) for name in ("split", "packed")]
    assert stats[0] == stats[1]
    split, packed = (LeRobotDataset(REPO_ID, root=tmp_path / name) for name in ("split", "packed"))
    assert len(split) == len(packed) > 30 and split.meta.total_episodes == 3
    for index in range(len(split)):
        mine, theirs = split[index], packed[index]
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            assert torch.equal(value, theirs[key]) if isinstance(value, torch.Tensor) else value == theirs[key], key
    assert validate(tmp_path / "split").ok


def test_validate_reports_bad_values(tmp_path, capsys):
    import pandas as pd

    write_synthetic_bag(tmp_path / "a.bag", "ros1", SyntheticBag(seconds=2))
    convert([tmp_path / "a.bag"], tmp_path / "out", task="1", storage="png", progress=False)
    path = next((tmp_path / "out" / "data").rglob("*.parquet"))
    table = pd.read_parquet(path)
    state = np.stack(table[OBS_STATE].to_numpy())
    action = np.stack(table[ACTION].to_numpy())
    state[3, 2] = np.nan
    action[5, 0] = 4.0  # beyond zarm_l1_joint's upper limit
    table[OBS_STATE] = list(state)
    table[ACTION] = list(action)
    table.to_parquet(path)
    assert cli(["validate", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "observation.state has NaN/Inf in 1 row(s) (first: frame 3)" in out
    assert "action outside the joint limits in 1 row(s) (zarm_l1_joint)" in out
    shutil.rmtree(tmp_path / "out" / "meta")
    assert "lerobot cannot open" in validate(tmp_path / "out").findings[0]


def test_the_converted_dataset_trains_the_policy(tmp_path):
    """A few optimisation steps of the tiny SmolVLA on a converted dataset, as training feeds it."""
    import torch

    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

    write_synthetic_bag(tmp_path / "a.bag", "ros1", SyntheticBag(seconds=3))
    convert([tmp_path / "a.bag"], tmp_path / "out", task="1", progress=False)
    dataset = _read_back(tmp_path / "out")
    stats = {key: {"mean": dataset.meta.stats[key]["mean"].tolist(),
                   "std": np.maximum(dataset.meta.stats[key]["std"], 1e-3).tolist()}
             for key in (OBS_STATE, ACTION)}
    checkpoint = build_checkpoint(tmp_path / "policy", TinyCheckpointSpec(stats=stats, train_everything=True))
    runtime = PolicyRuntime.open(checkpoint)
    policy = runtime.policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in policy.parameters() if p.requires_grad]
    losses = []
    for step, batch in enumerate(loader):
        loss, _ = policy.forward(runtime.preprocessor(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step == 2:
            break
    assert len(losses) == 3 and all(np.isfinite(losses))
    after = [p for p in policy.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_resize_and_nearest_sync(tmp_path):
    """images.size resizes; a nearest-within-tolerance stream may take the frame stamped just after the
    tick where an as-of stream takes the one before (24 Hz cameras against the 10 Hz grid)."""
    write_synthetic_bag(tmp_path / "a.bag", "ros1", SyntheticBag(seconds=2, camera_hz=24.0))
    profile = tmp_path / "nearest.yaml"  # the head camera sampled nearest, on header stamps
    profile.write_text((ROOT / "config/robots/kuavo4pro.yaml").read_text().replace(
        "stamp_source: receive", "stamp_source: header").replace(
        "{name: head_cam_h, topic: /cam_h/color/image_raw/compressed, encoding: compressed, height: 480, width: 640,\n"
        "     sync: {mode: as_of, max_age_s: 0.1}}",
        "{name: head_cam_h, topic: /cam_h/color/image_raw/compressed, sync: {mode: nearest, tolerance_s: 0.025}}"))
    config = load_config(robot=str(profile))
    assert config.profile.cameras[0].sync.mode == "nearest"
    config.images.size = [24, 32]
    result = convert([tmp_path / "a.bag"], tmp_path / "out", task="4", config=config, progress=False)
    assert result.results[0].status == "converted", result.results[0].reason
    dataset = _read_back(tmp_path / "out")
    assert tuple(dataset.meta.features["observation.images.head_cam_h"]["shape"]) == (24, 32, 3)
    start = result.results[0].episode["span_s"][0] - START
    heads, wrists, nearest, as_of = [], [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        heads.append(frame_number((item["observation.images.head_cam_h"].numpy().transpose(1, 2, 0) * 255).round()))
        wrists.append(frame_number((item["observation.images.wrist_cam_l"].numpy().transpose(1, 2, 0) * 255).round()))
        tick = start + i / FPS
        nearest.append(round(tick * 24))
        as_of.append(int(np.floor(tick * 24 + 1e-6)))
    assert heads == nearest and wrists == as_of
    assert any(h == w + 1 for h, w in zip(heads, wrists, strict=True))  # nearest looked past the tick
