"""Convert Kuavo bags to one LeRobot dataset: bag search, per-bag parts (optionally in worker processes),
resume, the run report, and atomic assembly.

Python API::

    from kuavo_smolvla_ros.data.convert import convert
    result = convert(["bags/"], "datasets/moving_grasp", task="moving_grasp", workers=2)
    print(result.summary)
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros.atomic import write_json
from kuavo_smolvla_ros.contract.streams import StreamDecoder
from kuavo_smolvla_ros.data import dataset as lerobot_io
from kuavo_smolvla_ros.data.bags import BagError, find_bags, read_messages
from kuavo_smolvla_ros.data.config import ConversionConfig, config_from_dict, load_config
from kuavo_smolvla_ros.data.episode import (
    EpisodeError,
    build_episode,
    describe_error,
)
from kuavo_smolvla_ros.images import ImageError
from kuavo_smolvla_ros.tasks import default_catalog

REPORT_NAME = "kuavo_conversion.json"
PART_DONE = "episode.json"


class ConversionError(ValueError):
    """A conversion that cannot start (bad arguments, output in the way); nothing was written."""


@dataclass
class BagResult:
    """What became of one bag."""

    source: str
    sha256: str
    status: str  # converted | reused (finished part of an interrupted run) | skipped (already in the dataset) | failed
    reason: str = ""
    episode: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConversionResult:
    output: Path
    results: list[BagResult]
    report_path: Path | None
    summary: str

    @property
    def failed(self) -> list[BagResult]:
        return [r for r in self.results if r.status == "failed"]


def sha256_of(path: Path) -> str:
    """SHA-256 of a bag file, or of a ROS 2 bag folder's files (names and contents, in name order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def peek_image_shapes(bags: list[Path], config: ConversionConfig) -> dict[str, tuple[int, int]]:
    """Camera sizes for a new dataset: ``images.size`` if set, else the first readable frame of each camera in
    the first bag that has one on every camera; empty if no bag has (each bag then fails with its own reason)."""
    if config.images.size:
        return {c.name: tuple(config.images.size) for c in config.cameras}
    topics = {c.topic: c.name for c in config.cameras}
    for bag in bags:
        decoder = StreamDecoder(config.profile)
        shapes: dict[str, tuple[int, int]] = {}
        try:
            for message in read_messages(bag, list(topics)):
                name = topics[message.topic]
                if name not in shapes:
                    try:
                        frame = decoder.image(name, message.msg)
                    except ImageError:
                        continue
                    shapes[name] = (frame.height, frame.width)
                if len(shapes) == len(topics):
                    return shapes
        except (BagError, EpisodeError):
            continue
    return {}


def episode_report(episode, seconds: float) -> dict[str, Any]:
    return {
        "frames": len(episode), "grid_ticks": episode.grid_ticks, "dropped_ticks": episode.dropped_ticks,
        "dropped": episode.dropped, "messages": episode.messages, "rejected": episode.rejected,
        "reject_reasons": episode.reject_reasons,
        "span_s": [float(episode.times[0]), float(episode.times[-1])],
        "stamp_skew_s": episode.skew, "sample_age_s": episode.age, "conversion_s": round(seconds, 3),
    }


def convert_one(bag: str, part: str, config_data: dict, instruction: str,
                image_shapes: dict[str, tuple[int, int]], show_progress: bool = False) -> dict[str, Any]:
    """Convert one bag into the part folder ``part``; returns the episode report or ``{"error": reason}``.

    Runs in worker processes: every failure is caught and reported, the part folder is removed.
    """
    start = time.perf_counter()
    part_dir = Path(part)
    shutil.rmtree(part_dir, ignore_errors=True)
    try:
        config = config_from_dict(config_data)
        episode = build_episode(bag, config)
        if not image_shapes:  # no bag had a frame on every camera, yet this episode does: size from it
            image_shapes = {name: (frames[0].height, frames[0].width) for name, frames in episode.frames.items()}
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(episode), desc=f"  {Path(bag).name}", unit="frame", leave=False)
        try:
            lerobot_io.write_part(episode, part_dir / "dataset", config, instruction, image_shapes,
                                  progress=bar.update if bar else None)
        finally:
            if bar:
                bar.close()
        report = episode_report(episode, time.perf_counter() - start)
        write_json(part_dir / PART_DONE, report)  # written last: marks the part complete
        return report
    except Exception as err:
        shutil.rmtree(part_dir, ignore_errors=True)
        return {"error": describe_error(err).removeprefix(f"{bag}: ")}


def read_report(output: Path) -> dict[str, Any]:
    path = output / "meta" / REPORT_NAME
    if not path.is_file():
        return {"episodes": [], "runs": []}
    return json.loads(path.read_text())


def convert(inputs: list[str | Path], output: str | Path, task: str,
            config: str | Path | ConversionConfig | None = None, fps: int | None = None, workers: int = 1,
            resume: bool = False, storage: str | None = None, progress: bool = True, robot: str | None = None,
            overrides: dict[str, Any] | None = None) -> ConversionResult:
    """Convert the bags found in ``inputs`` into the LeRobot dataset ``output`` (see the module doc).

    ``robot`` (a profile name or path) and ``overrides`` (profile overrides, added to the config's) take
    precedence over the config's. Raises :class:`ConversionError`, ``ConfigError`` or ``DatasetError`` when
    nothing can be done; a bag that fails is reported in the result, never raised."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    catalog = default_catalog()
    try:
        task_entry = catalog.get(task)
    except (KeyError, ValueError) as err:
        raise ConversionError(f"--task: {err.args[0]}") from None
    if not isinstance(config, ConversionConfig):
        config = load_config(config, fps=fps)
    elif fps:
        config.fps = fps
    if storage:
        config.images.storage = storage
    if robot:
        config.robot = robot
    if overrides:
        config.overrides = {**config.overrides, **overrides}
    config.validate()
    if workers < 1:
        raise ConversionError(f"--workers must be >= 1, got {workers}")
    output = Path(output).resolve()
    parts_root = lerobot_io.sibling(output, "parts")
    lerobot_io.recover(output)
    if output.exists() and not resume:
        raise ConversionError(f"{output} exists: pass --resume to add episodes to it, or choose another folder")
    if not resume:
        shutil.rmtree(parts_root, ignore_errors=True)
    try:
        bags = find_bags(inputs)
    except BagError as err:
        raise ConversionError(str(err)) from None
    if not bags:
        raise ConversionError(f"no bags found in {[str(i) for i in inputs]} (.bag files or folders with metadata.yaml)")

    report = read_report(output) if output.exists() else {"episodes": [], "runs": []}
    done = {e["sha256"] for e in report["episodes"]}
    if output.exists():
        image_shapes = lerobot_io.image_shapes_of(output)
        lerobot_io.check_compatible(output, config, image_shapes)
    else:
        image_shapes = peek_image_shapes(bags, config)

    results: list[BagResult] = []
    todo: list[tuple[BagResult, Path]] = []
    seen: set[str] = set()
    for bag in bags:
        sha = sha256_of(bag)
        result = BagResult(str(bag), sha, "pending")
        results.append(result)
        if sha in done or sha in seen:
            result.status, result.reason = "skipped", "already in the dataset" if sha in done else "duplicate input"
            continue
        seen.add(sha)
        part = parts_root / sha[:16]
        if resume and (part / PART_DONE).is_file():
            result.status, result.episode = "reused", json.loads((part / PART_DONE).read_text())
        else:
            todo.append((result, part))

    config_data = config.to_dict()
    _run_parts(todo, config_data, task_entry.instruction, image_shapes, workers, progress)

    finished = [(r, parts_root / r.sha256[:16]) for r in results if r.status in ("converted", "reused")]
    next_index = len(report["episodes"])
    for offset, (result, _) in enumerate(finished):
        report["episodes"].append({"episode_index": next_index + offset, "source": result.source,
                                   "sha256": result.sha256, "task": task_entry.name} | result.episode)
    counts = {s: sum(r.status == s for r in results) for s in ("converted", "reused", "skipped", "failed")}
    total_frames = sum(r.episode.get("frames", 0) for r, _ in finished)
    summary = (f"{output.name}: {len(finished)} episode(s) added ({total_frames} frames), "
               f"{counts['skipped']} skipped, {counts['failed']} failed, {len(report['episodes'])} in the dataset")
    report.update({"dataset": str(output), "format": "LeRobot v3.0", "robot_type": config.profile.robot_type,
                   "fps": config.rate, "config": config.report()})
    report["runs"].append({"started": started, "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                           "task": task_entry.name, "instruction": task_entry.instruction, "summary": summary,
                           "bags": [asdict(r) | {"episode": None} for r in results]})

    def finish(root: Path) -> None:
        write_json(root / "meta" / REPORT_NAME, report)

    if finished:
        lerobot_io.assemble(output, [part / "dataset" for _, part in finished], finish)
        shutil.rmtree(parts_root, ignore_errors=True)
    elif output.exists():
        finish(output)
    return ConversionResult(output, results, output / "meta" / REPORT_NAME if output.exists() else None, summary)


def _run_parts(todo: list[tuple[BagResult, Path]], config_data: dict, instruction: str,
               image_shapes: dict[str, tuple[int, int]], workers: int, progress: bool) -> None:
    """Convert the pending bags, in this process (workers=1) or a pool of processes."""
    from tqdm import tqdm

    def record(result: BagResult, outcome: dict[str, Any]) -> None:
        if "error" in outcome:
            result.status, result.reason = "failed", outcome["error"]
            tqdm.write(f"FAILED {result.source}: {result.reason}")
        else:
            result.status, result.episode = "converted", outcome

    bar = tqdm(total=len(todo), desc="bags", unit="bag", disable=not progress or not todo)
    try:
        if workers == 1 or len(todo) <= 1:
            for result, part in todo:
                record(result, convert_one(result.source, str(part), config_data, instruction, image_shapes,
                                           show_progress=progress))
                bar.update(1)
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(convert_one, result.source, str(part), config_data, instruction,
                                   image_shapes): result for result, part in todo}
            for future in as_completed(futures):
                record(futures[future], future.result())
                bar.update(1)
    finally:
        bar.close()
