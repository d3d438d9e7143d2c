"""The converter against damaged bags, refused bags, dying workers and breaks in time, on real bags (rosbags'
writers, then damaged byte by byte: :mod:`kuavo_smolvla_ros.data.damaged`) and real LeRobot datasets.

One damaged bag never stops a run or loses another bag, wherever it sorts; every refused bag's reason names
its own first cause, printed once; a break in a recording's time is never joined into consecutive frames (the
episode is cut there, or refused), and ``validate`` finds such joins in a dataset.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.data.cli import main as cli
from kuavo_smolvla_ros.data.config import load_config
from kuavo_smolvla_ros.data.convert import PART_DONE, BagResult, _run_parts, convert, convert_one
from kuavo_smolvla_ros.data.damaged import DAMAGES, write_damaged_bag
from kuavo_smolvla_ros.data.dataset import REPO_ID
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, frame_number, state_at, write_synthetic_bag
from kuavo_smolvla_ros.data.validate import validate
from kuavo_smolvla_ros.features import OBS_STATE

ROOT = Path(__file__).resolve().parent.parent
KUAVO = load_profile("kuavo4pro")
START = 100.0
FPS = 10
CAMERA_HZ = 30.0


def _report(output: Path) -> dict:
    return json.loads((output / "meta" / "kuavo_conversion.json").read_text())


def _dataset(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO_ID, root=root, video_backend="pyav")


def _failed_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("FAILED ")]


# --------------------------------------------------------------------------------------------- damaged bags
@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Every kind of damaged bag, written once: folder, and per bag name the fragment its reason holds."""
    folder = tmp_path_factory.mktemp("damaged")
    fragments = {}
    for kind in DAMAGES:
        path, fragment = write_damaged_bag(folder, kind, kind)
        fragments[path.name] = fragment
    return folder, fragments


def _place(damaged: tuple[Path, dict[str, str]], bags: Path, prefix: str) -> dict[str, str]:
    """Copy the damaged bags into ``bags`` with ``prefix`` (which decides where they sort among the good ones)."""
    folder, fragments = damaged
    bags.mkdir(parents=True, exist_ok=True)
    placed = {}
    for name, fragment in fragments.items():
        source, target = folder / name, bags / f"{prefix}{name}"
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        placed[target.name] = fragment
    return placed


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_damaged_bags_never_stop_a_run(tmp_path, capsys, damaged, position):
    """Every kind of damage, sorting before, between or after two good bags (ROS 1 and MCAP): exit 1, both
    good bags in the dataset, each damaged bag failed once with its own first cause (the middle run uses two
    worker processes)."""
    bags = tmp_path / "bags"
    write_synthetic_bag(bags / "b_good.bag", "ros1", SyntheticBag(seconds=2, seed=31))
    write_synthetic_bag(bags / "d_good", "mcap", SyntheticBag(seconds=2, seed=32))
    prefix = {"first": "a_", "middle": "c_", "last": "e_"}[position]
    expected = _place(damaged, bags, prefix)
    workers = "2" if position == "middle" else "1"
    code = cli(["convert", str(bags), "-o", str(tmp_path / "out"), "-t", "1", "-q", "--png", "-j", workers])
    assert code == 1
    report = _report(tmp_path / "out")
    assert [Path(e["source"]).name for e in report["episodes"]] == ["b_good.bag", "d_good"]
    statuses = {Path(b["source"]).name: (b["status"], b["reason"]) for b in report["runs"][-1]["bags"]}
    assert len(statuses) == len(expected) + 2
    err = capsys.readouterr().err
    lines = _failed_lines(err)
    assert len(lines) == len(expected)  # once per failed bag
    for name, fragment in expected.items():
        status, reason = statuses[name]
        assert status == "failed", (name, status)
        assert fragment.lower() in reason.lower(), (name, reason)
        assert "\n" not in reason
        mine = [line for line in lines if line.startswith(f"FAILED {bags / name}: ")]
        assert len(mine) == 1 and reason in mine[0], (name, mine)
    assert _dataset(tmp_path / "out").meta.total_episodes == 2


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_bag_alone_names_its_own_cause(tmp_path, capsys, damaged, kind):
    folder, fragments = damaged
    name = next(n for n in fragments if n.startswith(kind))
    bags = tmp_path / "bags"
    _place((folder, {name: fragments[name]}), bags, "")
    code = cli(["convert", str(bags / name), "-o", str(tmp_path / "out"), "-t", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = _failed_lines(err)
    assert len(lines) == 1 and fragments[name].lower() in lines[0].lower(), lines
    assert "no bag has a readable frame" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.parts").exists()


def test_bags_found_in_folders_include_damaged_ones(tmp_path):
    """A ROS 2 storage folder without metadata.yaml, an unfinished .bag.active and a folder named .bag are
    found (and then fail with their reason), never silently skipped."""
    from kuavo_smolvla_ros.data.bags import find_bags

    for kind in ("missing_metadata", "active_recording", "folder_named_bag", "zero_length"):
        write_damaged_bag(tmp_path / "day", kind, kind)
    write_synthetic_bag(tmp_path / "day" / "good", "sqlite3", SyntheticBag(seconds=1))
    found = [p.name for p in find_bags([tmp_path])]
    assert found == ["active_recording.bag.active", "folder_named_bag.bag", "good", "missing_metadata",
                     "zero_length.bag"]


def test_one_undecodable_message_is_counted_not_the_bags_failure(tmp_path):
    from kuavo_smolvla_ros.data.damaged import garbage_message

    bag = tmp_path / "garbled.bag"
    garbage_message(bag, KUAVO.state.topic)  # one SensorsData whose bytes are all 0xFF
    result = convert([bag], tmp_path / "out", task="1", storage="png", progress=False)
    (outcome,) = result.results
    assert outcome.status == "converted" and outcome.episode["rejected"] == {"state": 1}
    assert outcome.episode["reject_reasons"]["state"].startswith("undecodable kuavo_msgs/msg/sensorsData (")


# ------------------------------------------------------------------------------------- refused bags, alone
def _claw_scale_profile(tmp_path: Path) -> Path:
    """Kuavo 4 Pro with claw states on a 0..255 scale (what another claw firmware reports)."""
    path = tmp_path / "claw255.yaml"
    path.write_text((ROOT / "config/robots/kuavo4pro.yaml").read_text().replace("state_scale: 100.0",
                                                                                 "state_scale: 255.0"))
    return path


@pytest.mark.parametrize("case", ["no_claw_state", "mono8_camera", "claw_state_scale", "joint_q_length"])
def test_a_refused_bag_alone_names_its_own_cause(tmp_path, capsys, case):
    bag = tmp_path / f"{case}.bag"
    spec = SyntheticBag(seconds=2, seed=41)
    profile = None
    expected = {
        "no_claw_state": "missing topic(s) ['/leju_claw_state']",
        "mono8_camera": "head_cam_h: 61 of 61 messages rejected, the first because unsupported encoding 'mono8'",
        "claw_state_scale": "state: 201 messages, none after a usable gripper state (/leju_claw_state: 101 of 101 "
                            "messages rejected, the first because claw state: left value",
        "joint_q_length": "state: 201 of 201 messages rejected, the first because joint_q has 28 entries; robot "
                          "profile kuavo5 expects",
    }[case]
    robot_name = "kuavo4pro"
    if case == "no_claw_state":
        spec.omit_topics = ("/leju_claw_state",)
    elif case == "mono8_camera":
        spec.raw_encodings = {"head_cam_h": "mono8"}
    elif case == "claw_state_scale":
        profile = load_profile(_claw_scale_profile(tmp_path))
    else:
        robot_name = "kuavo5"  # a Kuavo 4 Pro recording converted as a Kuavo 5 one
    write_synthetic_bag(bag, "ros1", spec, profile)
    code = cli(["convert", str(bag), "-o", str(tmp_path / "out"), "-t", "1", "-q", "--robot", robot_name])
    err = capsys.readouterr().err
    assert code == 1
    lines = _failed_lines(err)
    assert len(lines) == 1 and expected in lines[0], lines


# ---------------------------------------------------------------------------------------- dying workers
def crash_marked(bag: str, part: str, *args, **kwargs) -> dict:
    """A worker that dies (SIGKILL, as the kernel's OOM killer does) on bags named ``*crash*``."""
    if "crash" in Path(bag).name:
        os.kill(os.getpid(), signal.SIGKILL)
    return convert_one(bag, part, *args, **kwargs)


def test_a_dying_worker_loses_no_other_bag(tmp_path):
    bags = tmp_path / "bags"
    names = ["a.bag", "b_crash.bag", "c.bag"]
    for i, name in enumerate(names):
        write_synthetic_bag(bags / name, "ros1", SyntheticBag(seconds=2, seed=50 + i))
    config = load_config()
    config.images.storage = "png"
    parts = tmp_path / "parts"
    todo = [(BagResult(str(bags / n), f"{i:016d}", "pending"), parts / f"{i:016d}") for i, n in enumerate(names)]
    _run_parts(todo, config.to_dict(), "pick", {}, workers=2, progress=False, work=crash_marked)
    outcome = {Path(r.source).name: r for r, _ in todo}
    assert outcome["a.bag"].status == outcome["c.bag"].status == "converted"
    assert outcome["b_crash.bag"].status == "failed"
    assert "its conversion process died (killed by SIGKILL" in outcome["b_crash.bag"].reason
    assert all((part / PART_DONE).is_file() for result, part in todo if result.status == "converted")
    assert not (parts / f"{1:016d}").exists()


def test_resume_converts_the_bag_a_dead_run_was_on_in_its_own_process(tmp_path):
    """A run killed while converting a bag leaves it marked; --resume converts it in a process of its own."""
    write_synthetic_bag(tmp_path / "a.bag", "ros1", SyntheticBag(seconds=2, seed=60))
    from kuavo_smolvla_ros.data.convert import STARTED_SUFFIX, sha256_of

    parts = tmp_path / "out.parts"
    marker = parts / (sha256_of(tmp_path / "a.bag")[:16] + STARTED_SUFFIX)
    marker.parent.mkdir()
    marker.touch()
    result = convert([tmp_path / "a.bag"], tmp_path / "out", task="1", resume=True, storage="png", progress=False)
    assert [r.status for r in result.results] == ["converted"]
    assert not marker.exists() and validate(tmp_path / "out").ok


# ---------------------------------------------------------------------------------------- breaks in time
def _frames(item) -> int:
    return frame_number((item["observation.images.head_cam_h"].numpy().transpose(1, 2, 0) * 255).round())


def _check_consecutive(dataset, episode: int, camera_hz: float = CAMERA_HZ) -> list[float]:
    """The nominal recording time of each row of ``episode`` (from its head camera frame number), checking
    that rows are one grid period apart (within a camera frame) and that the state is that moment's."""
    meta = dataset.meta.episodes[episode]
    start, end = meta["dataset_from_index"], meta["dataset_to_index"]
    times = []
    for index in range(start, end):
        item = dataset[index]
        t = _frames(item) / camera_hz
        np.testing.assert_allclose(item[OBS_STATE].numpy()[robot.ARM_INDICES],
                                   state_at(t)[robot.ARM_INDICES], atol=0.011)  # state sample within 1/30 s
        times.append(t)
    steps = np.diff(times)
    assert np.all(np.abs(steps - 1 / FPS) <= 1 / camera_hz + 1e-6), steps
    return times


def test_a_camera_gap_cuts_the_episode_in_two(tmp_path, capsys):
    """A 0.5 s wrist camera outage inside an episode (under the 10% drop limit): two episodes, none of their
    consecutive rows spans the gap; the report lists the break and both pieces with their source."""
    bag = tmp_path / "gap.bag"
    write_synthetic_bag(bag, "ros1", SyntheticBag(seconds=6, camera_gaps={"wrist_cam_r": (2.0, 2.5)}, seed=70))
    code = cli(["convert", str(bag), "-o", str(tmp_path / "out"), "-t", "1", "-q", "--png"])
    assert code == 0
    err = capsys.readouterr().err
    assert not _failed_lines(err) and len([line for line in err.splitlines() if line.startswith("CUT ")]) == 1
    report = _report(tmp_path / "out")
    episodes = report["episodes"]
    assert [e["source"] for e in episodes] == [str(bag)] * 2
    assert [e["piece"] for e in episodes] == [[1, 2], [2, 2]]
    (brk,) = episodes[0]["time_breaks"]
    assert brk["kind"] == "gap" and brk["streams"] == ["wrist_cam_r"] and brk["ticks"] == 4
    assert brk["seconds"] == pytest.approx(0.4) and 102.0 < brk["at"] < 102.2
    assert episodes[0]["span_s"][1] < brk["at"] and episodes[1]["span_s"][0] > brk["at"] + 0.35
    dataset = _dataset(tmp_path / "out")
    assert dataset.meta.total_episodes == 2
    first, second = (_check_consecutive(dataset, e) for e in (0, 1))
    assert second[0] - first[-1] >= 0.5 - 1e-6  # the gap lies between the episodes, not between two rows
    assert validate(tmp_path / "out").ok


def test_a_camera_gap_refused_when_configured(tmp_path, capsys):
    bag = tmp_path / "gap.bag"
    write_synthetic_bag(bag, "ros1", SyntheticBag(seconds=6, camera_gaps={"wrist_cam_r": (2.0, 2.5)}, seed=70))
    config = tmp_path / "refuse.yaml"
    config.write_text((ROOT / "config/conversion/kuavo.yaml").read_text().replace(
        "time_breaks: {max_gap_frames: 2, action: split}", "time_breaks: {max_gap_frames: 2, action: refuse}"))
    code = cli(["convert", str(bag), "-o", str(tmp_path / "out"), "-t", "1", "-q", "-c", str(config)])
    assert code == 1
    (line,) = _failed_lines(capsys.readouterr().err)
    assert re.search(r"1 break\(s\) in time: gap of 4 tick\(s\) \(0\.40 s\) at 102\.\d+ s without wrist_cam_r "
                     r"\(time_breaks.action: refuse, max_gap_frames 2\)", line), line


def test_short_gaps_are_joined_and_listed(tmp_path):
    """One dropped tick (at most max_gap_frames) is joined, listed in the report, and validate accepts it."""
    bag = tmp_path / "short.bag"
    write_synthetic_bag(bag, "ros1", SyntheticBag(seconds=4, camera_gaps={"head_cam_h": (2.0, 2.2)}, seed=71))
    result = convert([bag], tmp_path / "out", task="1", storage="png", progress=False)
    (episode,) = result.results[0].episodes
    assert episode["dropped_ticks"] == 1 and episode["tick_gaps"] == [[episode["tick_gaps"][0][0], 1]]
    assert "time_breaks" not in _report(tmp_path / "out")["episodes"][0]
    assert validate(tmp_path / "out").ok


@pytest.mark.parametrize(("jump", "storage"), [(-2.0, "ros1"), (-2.0, "sqlite3"), (-2.0, "mcap"), (4.0, "ros1")],
                         ids=["simulator_reset", "simulator_reset_sqlite3", "simulator_reset_mcap", "paused_clock"])
def test_a_record_clock_jump_cuts_the_episode(tmp_path, jump, storage):
    """The record clock jumps back 2 s (a simulator reset with use_sim_time: the bag's messages, sorted by
    record time, interleave two moments) or forwards 4 s (a paused simulator) at 3 s: two episodes, each
    made of its own moments, none joined across the jump."""
    bag = tmp_path / ("jump.bag" if storage == "ros1" else "jump")
    write_synthetic_bag(bag, storage, SyntheticBag(seconds=6, clock_jumps={3.0: jump}, jitter_s=0.003, seed=72))
    result = convert([bag], tmp_path / "out", task="1", storage="png", progress=False)
    (outcome,) = result.results
    assert outcome.status == "converted" and len(outcome.episodes) == 2, outcome
    (brk,) = outcome.time_breaks
    if jump < 0:
        assert brk["kind"] == "backward" and brk["streams"] == ["record clock"]
        assert brk["seconds"] == pytest.approx(2.0, abs=0.01)
    else:
        assert brk["kind"] == "hole" and brk["seconds"] == pytest.approx(3.9, abs=0.11)
    dataset = _dataset(tmp_path / "out")
    first, second = (_check_consecutive(dataset, e) for e in (0, 1))
    assert first[-1] < 3.0 <= second[0]
    assert validate(tmp_path / "out").ok


def test_header_stamps_that_jump(tmp_path):
    """stamp_source: header. A simulator reset (record clock and stamps back 2 s): two episodes. One camera's
    stamps jumping back 1 s (its driver restarted on another clock): the part after it is left out with the
    reason, never aligned 1 s off. Stamps of another camera 1 s in the future: refused, counted."""
    bags = tmp_path / "bags"
    specs = {
        "a_reset.bag": SyntheticBag(seconds=6, clock_jumps={3.0: -2.0}, jitter_s=0.003, seed=73),
        "b_camera_clock.bag": SyntheticBag(seconds=6, stamp_jumps={"wrist_cam_l": (3.0, -1.0)}, seed=74),
        "c_future.bag": SyntheticBag(seconds=6, stamp_jumps={"wrist_cam_r": (5.5, 1.0)}, seed=75),
    }
    for name, spec in specs.items():
        write_synthetic_bag(bags / name, "ros1", spec, "ros2_joint_state")
    result = convert([bags], tmp_path / "out", task="1", storage="png", robot="ros2_joint_state", progress=False)
    reset, camera_clock, future = result.results
    assert reset.status == "converted" and len(reset.episodes) == 2
    assert [b["kind"] for b in reset.time_breaks] == ["backward"]
    assert camera_clock.status == "converted" and len(camera_clock.episodes) == 1
    assert camera_clock.time_breaks[0]["streams"] == ["wrist_cam_l"]
    (left_out,) = camera_clock.discarded
    assert left_out.startswith("clock segment 2 of 2: stamps of wrist_cam_l lie 1.00 s further before their record "
                               "times than those of")
    assert camera_clock.episode["span_s"][1] < START + 3.0
    assert future.status == "converted" and future.episode["rejected"] == {"wrist_cam_r": 16}
    assert future.episode["reject_reasons"]["wrist_cam_r"].startswith("stamped 1.0")
    dataset = _dataset(tmp_path / "out")
    assert dataset.meta.total_episodes == 4
    for episode in range(4):
        _check_consecutive(dataset, episode)


def test_messages_out_of_order_are_counted_not_breaks(tmp_path):
    """Header stamps arriving out of order by up to 20 ms (the recorder's threads): re-sorted and counted."""
    bag = tmp_path / "ooo.bag"
    write_synthetic_bag(bag, "ros1", SyntheticBag(seconds=3, jitter_s=0.02, seed=76), "ros2_joint_state")
    result = convert([bag], tmp_path / "out", task="1", storage="png", robot="ros2_joint_state", progress=False)
    (outcome,) = result.results
    assert outcome.status == "converted" and not outcome.time_breaks
    assert outcome.episode["out_of_order"]["state"] > 10
    _check_consecutive(_dataset(tmp_path / "out"), 0)


def test_frames_with_corrupt_data_are_rejected_and_counted(tmp_path):
    """JPEG frames whose scan data is cut short (headers fine: only decoding finds it) are rejected like any
    bad message, counted with the decoder's reason, and never written: rows take the previous good frame
    within the camera's max age."""
    bag = tmp_path / "corrupt.bag"
    corrupt = (30, 31, 45)
    write_synthetic_bag(bag, "ros1", SyntheticBag(seconds=3, corrupt_frames={"head_cam_h": corrupt}, seed=77))
    result = convert([bag], tmp_path / "out", task="1", storage="png", progress=False)
    (outcome,) = result.results
    assert outcome.status == "converted", outcome.reason
    assert outcome.episode["rejected"] == {"head_cam_h": 3}
    assert outcome.episode["reject_reasons"]["head_cam_h"].startswith("corrupt JPEG data")
    dataset = _dataset(tmp_path / "out")
    heads = [_frames(dataset[i]) for i in range(len(dataset))]
    assert not set(heads) & set(corrupt) and 29 in heads  # frame 29 stands in for 30 (and 31) at 1.0 s
    assert validate(tmp_path / "out").ok


# ------------------------------------------------------------------------------------------ validate
def test_validate_finds_time_joined_into_consecutive_frames(tmp_path, capsys):
    """A dataset converted with a tolerance that joins a 0.4 s gap: validate finds it from the report's tick
    gaps, from an older report's span (no tick gaps), and from the data alone when the state jumps."""
    bag = tmp_path / "gap.bag"
    write_synthetic_bag(bag, "ros1", SyntheticBag(seconds=6, camera_gaps={"wrist_cam_r": (2.0, 2.5)}, seed=70))
    config = load_config()
    config.time_breaks.max_gap_frames = 10  # joins the gap, as converters before time_breaks did
    config.images.storage = "png"
    result = convert([bag], tmp_path / "out", task="1", config=config, progress=False)
    (episode,) = result.results[0].episodes
    assert [n for _, n in episode["tick_gaps"]] == [4]
    assert cli(["validate", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert re.search(r"episode 0: 1 break\(s\) in time joined into consecutive frames \(conversion report: 4 "
                     r"tick\(s\) \(0\.40 s\) before frame \d+; more than 2 ticks\)", out), out
    assert validate(tmp_path / "out", max_gap_frames=4).ok

    report_path = tmp_path / "out" / "meta" / "kuavo_conversion.json"
    report = json.loads(report_path.read_text())
    for entry in report["episodes"]:
        del entry["tick_gaps"]  # as an older converter wrote it
    report_path.write_text(json.dumps(report))
    (finding,) = validate(tmp_path / "out").findings
    assert re.match(r"episode 0: its \d+ frames span [\d.]+ s of its recording, 4 grid tick\(s\) more than its rows",
                    finding), finding

    report_path.unlink()  # no report: the data alone (this recording moves slowly: nothing to see)
    assert validate(tmp_path / "out").ok
    path = next((tmp_path / "out" / "data").rglob("*.parquet"))
    table = pd.read_parquet(path)
    state = np.stack(table[OBS_STATE].to_numpy())
    state[20:, 0] += 0.8  # zarm_l1_joint: 0.8 rad in 0.1 s (8 rad/s) between frames 19 and 20
    table[OBS_STATE] = list(state)
    table.to_parquet(path)
    (finding,) = validate(tmp_path / "out").findings
    assert finding.startswith("episode 0: the measured state jumps between frames 19 and 20 (zarm_l1_joint moves "
                              "0.79"), finding
