"""Check a converted dataset the way training will use it: lerobot opens it, every row has its video
frames, values are finite and inside the joint limits, timestamps run on the fps grid, tasks are set, and
consecutive rows are consecutive moments of their recording (no break in time joined into them).

Breaks in time are found two ways: from the data alone, a measured state that moves between two rows faster
than the joints can (:data:`JUMP_MARGIN` times :data:`~kuavo_smolvla_ros.robot.DEFAULT_MAX_VELOCITY`), which
also finds splices in datasets written by older converters; and from the conversion report
(``meta/kuavo_conversion.json``), which lists per episode the grid ticks joined between rows (``tick_gaps``)
or, written by older converters, the recording span of its rows (``span_s``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.data.config import TimeBreaks
from kuavo_smolvla_ros.data.convert import REPORT_NAME
from kuavo_smolvla_ros.data.dataset import REPO_ID, DatasetError, not_a_dataset, open_error, open_metadata, quiet_codecs
from kuavo_smolvla_ros.features import ACTION, OBS_STATE

#: Slack on the joint limits (rad / gripper units): recorded commands may touch a limit.
LIMIT_TOLERANCE = 1e-3
#: A measured joint moving between two consecutive rows faster than this many times its
#: ``robot.DEFAULT_MAX_VELOCITY`` (the safety filter's 1 rad/s for the arms, 2 units/s for the grippers; so
#: 5 rad/s and 10 units/s) did not move in one frame period: the rows are not consecutive moments.
JUMP_MARGIN = 5.0
#: Dropped grid ticks that may lie between two rows (the converter's default ``time_breaks.max_gap_frames``).
MAX_GAP_FRAMES = TimeBreaks().max_gap_frames


@dataclass
class Validation:
    root: Path
    episodes: int = 0
    frames: int = 0
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _video_frames(path: Path, start: float, end: float) -> int:
    """Frames of the video at ``path`` whose time lies in [start, end)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = 0
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * stream.time_base)
            if start - 1e-4 <= t < end - 1e-4:
                count += 1
        return count


def _check_values(name: str, episode: int, values: np.ndarray, findings: list[str]) -> None:
    if not np.all(np.isfinite(values)):
        rows = np.where(~np.all(np.isfinite(values), axis=1))[0]
        findings.append(f"episode {episode}: {name} has NaN/Inf in {len(rows)} row(s) (first: frame {rows[0]})")
        return
    low = values < robot.LOWER_LIMITS - LIMIT_TOLERANCE
    high = values > robot.UPPER_LIMITS + LIMIT_TOLERANCE
    bad = low | high
    if bad.any():
        joints = sorted({robot.JOINT_NAMES[j] for j in np.where(bad.any(axis=0))[0]})
        findings.append(f"episode {episode}: {name} outside the joint limits in {int(bad.any(axis=1).sum())} "
                        f"row(s) ({', '.join(joints)})")


def _check_jumps(episode: int, state: np.ndarray, fps: float, findings: list[str]) -> None:
    """A finding for measured states that move between consecutive rows faster than the joints can."""
    if len(state) < 2:
        return
    limit = JUMP_MARGIN * robot.DEFAULT_MAX_VELOCITY / fps  # per row
    steps = np.abs(np.diff(state, axis=0))
    rows = np.nonzero((steps > limit).any(axis=1))[0]
    if not rows.size:
        return
    first = int(rows[0])
    joint = int(np.argmax(steps[first] / limit))
    findings.append(
        f"episode {episode}: the measured state jumps between frames {first} and {first + 1} "
        f"({robot.JOINT_NAMES[joint]} moves {steps[first, joint]:.3f} {robot.UNITS[joint]} in 1/{fps:g} s, more than "
        f"{JUMP_MARGIN:g}x its {robot.DEFAULT_MAX_VELOCITY[joint]:g} {robot.UNITS[joint]}/s)"
        f"{f' and at {rows.size - 1} more row(s)' if rows.size > 1 else ''}: a break in time joined into "
        "consecutive frames? reconvert the bag (time_breaks) or drop the episode")


def _report_episodes(root: Path) -> dict[int, dict[str, Any]]:
    """The conversion report's episode entries by index (empty without a readable report)."""
    try:
        report = json.loads((root / "meta" / REPORT_NAME).read_text())
        return {int(e["episode_index"]): e for e in report.get("episodes", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _check_reported_time(episode: int, entry: dict[str, Any], rows: int, fps: float, max_gap_frames: int,
                         findings: list[str]) -> None:
    """A finding for rows the conversion report shows are more than ``max_gap_frames`` ticks apart."""
    if entry.get("frames") != rows:
        return  # the report does not describe this episode as it is now
    if "tick_gaps" in entry:
        big = [(int(i), int(n)) for i, n in entry["tick_gaps"] if int(n) > max_gap_frames]
        if big:
            listed = ", ".join(f"{n} tick(s) ({n / fps:.2f} s) before frame {i}" for i, n in big[:3])
            findings.append(f"episode {episode}: {len(big)} break(s) in time joined into consecutive frames "
                            f"(conversion report: {listed}; more than {max_gap_frames} ticks): reconvert the bag "
                            "(time_breaks) or drop the episode")
        return
    span = entry.get("span_s")
    if isinstance(span, list) and len(span) == 2:
        missing = round((float(span[1]) - float(span[0])) * fps) + 1 - rows
        if missing > max_gap_frames:
            findings.append(f"episode {episode}: its {rows} frames span {float(span[1]) - float(span[0]):.2f} s of "
                            f"its recording, {missing} grid tick(s) more than its rows (conversion report, written "
                            "without time-break detection): recording time is joined into consecutive frames; "
                            "reconvert the bag")


def validate(root: str | Path, max_gap_frames: int = MAX_GAP_FRAMES) -> Validation:
    """Findings for the dataset at ``root`` (an empty list means it is fit for training). ``max_gap_frames``:
    how many dropped grid ticks the conversion report may show between two rows."""
    import pandas as pd

    root = Path(root)
    result = Validation(root)
    findings = result.findings
    absent = not_a_dataset(root)
    if absent:  # lerobot is not asked: it would create the folder and look for the dataset on the Hub
        findings.append(f"lerobot cannot open {root}: {absent}")
        return result
    quiet_codecs()
    try:
        meta = open_metadata(root)
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        dataset = LeRobotDataset(REPO_ID, root=root, video_backend="pyav")
    except DatasetError as err:
        findings.append(str(err))
        return result
    except Exception as err:  # any failure to open is the finding
        findings.append(open_error(root, err))
        return result
    result.episodes, result.frames, fps = meta.total_episodes, meta.total_frames, meta.fps
    for key in (OBS_STATE, ACTION):
        shape = tuple(meta.features.get(key, {}).get("shape", ()))
        if shape != (robot.ACTION_DIM,):
            findings.append(f"feature {key} has shape {shape}, expected ({robot.ACTION_DIM},)")
    if findings:
        return result
    tasks = {int(i): str(t) for t, i in zip(meta.tasks.index, meta.tasks["task_index"], strict=True)}
    empty = [i for i, t in tasks.items() if not t.strip()]
    if empty:
        findings.append(f"task(s) {empty} have an empty instruction")
    columns = ["episode_index", "frame_index", "timestamp", "task_index", OBS_STATE, ACTION]
    data = pd.concat([pd.read_parquet(p, columns=columns) for p in sorted((root / "data").rglob("*.parquet"))])
    if len(data) != meta.total_frames:
        findings.append(f"data has {len(data)} rows, meta/info.json says {meta.total_frames}")
    unknown_tasks = sorted(set(data["task_index"].unique()) - set(tasks))
    if unknown_tasks:
        findings.append(f"rows refer to task indices {unknown_tasks} missing from meta/tasks")
    reported = _report_episodes(root)
    for episode in meta.episodes:
        index = episode["episode_index"]
        rows = data[data["episode_index"] == index].sort_values("frame_index")
        if len(rows) != episode["length"]:
            findings.append(f"episode {index}: {len(rows)} rows, its metadata says {episode['length']}")
        stamps = rows["timestamp"].to_numpy(dtype=np.float64)
        if len(stamps) > 1 and not np.all(np.diff(stamps) > 0):
            findings.append(f"episode {index}: timestamps are not strictly increasing")
        elif not np.allclose(stamps, rows["frame_index"].to_numpy() / fps, atol=1e-3):
            findings.append(f"episode {index}: timestamps are off the {fps} fps grid")
        for key in (OBS_STATE, ACTION):
            _check_values(key, index, np.stack(rows[key].to_numpy()).astype(np.float64), findings)
        if len(rows):
            state = np.stack(rows[OBS_STATE].to_numpy()).astype(np.float64)
            if np.all(np.isfinite(state)):
                _check_jumps(index, state, fps, findings)
        if index in reported:
            _check_reported_time(index, reported[index], len(rows), fps, max_gap_frames, findings)
        for key in meta.video_keys:
            path = root / meta.get_video_file_path(index, key)
            start, end = episode[f"videos/{key}/from_timestamp"], episode[f"videos/{key}/to_timestamp"]
            try:
                frames = _video_frames(path, start, end)
            except Exception as err:
                findings.append(f"episode {index}: {key} video {path.name} unreadable ({err})")
                continue
            if frames != len(rows):
                findings.append(f"episode {index}: {key} has {frames} video frames for {len(rows)} rows")
    if not findings and len(dataset):
        try:  # what training does: decode the first and last items through lerobot
            for item in (dataset[0], dataset[len(dataset) - 1]):
                for key in meta.camera_keys:
                    if not np.isfinite(item[key].numpy()).all():
                        findings.append(f"{key}: decoded image has non-finite values")
        except Exception as err:
            findings.append(f"lerobot cannot decode items: {type(err).__name__}: {err}")
    return result
