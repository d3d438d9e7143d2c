"""Record the scripted expert's demonstrations as real Kuavo bags: the converter's input.

Each episode is one bag (ROS 1 ``.bag`` with the ``kuavo_msgs`` types, or a ROS 2 MCAP/sqlite3 folder with
this package's) holding what the robot's recorder holds: the three JPEG cameras, ``/sensors_data_raw``,
``/leju_claw_state``, and the teleoperation commands ``/kuavo_arm_traj`` (degrees) and
``/leju_claw_command``. The simulation runs in simulated time, so recording is much faster than real time.

Command line: ``kuavo-sim-record OUTPUT --tasks all --episodes 20 [--format ros1|mcap|sqlite3]``;
bags go to ``OUTPUT/task{id}_{name}/episode_{seed}.bag`` (or a folder for ROS 2).
"""

from __future__ import annotations

import argparse
import heapq
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.atomic import blocking_file
from kuavo_smolvla_ros.contract.profile import ProfileError, RobotProfile, available_profiles, load_profile
from kuavo_smolvla_ros.data.recording import KuavoRecorder
from kuavo_smolvla_ros.features import IMAGE_SIDE
from kuavo_smolvla_ros.sim.expert import ScriptedExpert
from kuavo_smolvla_ros.sim.render import CAMERA_JPEG_QUALITY, CAMERA_VIEWS, render_cameras
from kuavo_smolvla_ros.sim.world import SimWorld, WorldConfig
from kuavo_smolvla_ros.tasks import Task, default_catalog

FORMATS = {"ros1": ".bag", "mcap": "", "sqlite3": ""}


@dataclass(frozen=True)
class RecordingConfig:
    """Stream rates (Hz), camera size and how long to keep recording after success."""

    camera_hz: float = 30.0
    sensors_hz: float = 100.0
    claw_state_hz: float = 50.0
    command_hz: float = 30.0  # the expert's (teleoperator's) command rate
    image_size: tuple[int, int] = (64, 64)
    jpeg_quality: int = CAMERA_JPEG_QUALITY
    tail_s: float = 0.5
    #: Seconds at the start before the expert moves (the operator taking over). None: as long as the converter
    #: trims from an episode's start (:func:`start_trim_s`), so that the first frame of every converted episode
    #: shows the robot at rest where an evaluation (and the node on the robot) starts, with the expert's first
    #: move as its action. With no lead the converter cut the first 0.3 s of every reach, no demonstration
    #: showed the start pose, and after a second task a policy left that pose hesitantly or not at all.
    lead_s: float | None = None
    world: WorldConfig = field(default_factory=WorldConfig)


def start_trim_s(profile: RobotProfile | str | None = None) -> float:
    """Seconds the shipped conversion config (``config/conversion/kuavo.yaml``: ``trim.start_frames`` at its fps,
    else ``profile``'s) drops from the start of every episode."""
    from kuavo_smolvla_ros.data.config import load_config

    profile = load_profile(profile)
    conversion = load_config()
    return conversion.trim.start_frames / (conversion.fps or profile.fps)


def _resolved(config: RecordingConfig, profile: RobotProfile) -> RecordingConfig:
    """``config`` with its lead in seconds (None -> :func:`start_trim_s`). Raises ``ValueError`` for a lead that
    is negative or leaves the expert no time (>= the world's ``max_episode_s``, which the lead counts in)."""
    import dataclasses

    if config.lead_s is None:
        config = dataclasses.replace(config, lead_s=start_trim_s(profile))
    if not 0.0 <= config.lead_s < config.world.max_episode_s:
        raise ValueError(f"lead_s must be in [0, max_episode_s = {config.world.max_episode_s:g}) s, "
                         f"got {config.lead_s:g}")
    return config


def record_episode(path: str | Path, task: Task | str, seed: int, storage: str = "ros1",
                   config: RecordingConfig | None = None, profile: RobotProfile | str | None = None) -> dict:
    """Run the expert on ``task`` with object seed ``seed`` and write the bag with ``profile``'s streams
    (default ``kuavo4pro``); returns a summary. Raises ``RuntimeError`` if the expert fails (the bag is then
    removed)."""
    profile = load_profile(profile)
    config = _resolved(config or RecordingConfig(), profile)
    world = SimWorld(config.world)
    episode = world.reset(task, seed)
    expert = ScriptedExpert(world, rate_hz=config.command_hz)
    streams = {"camera": config.camera_hz, "sensors": config.sensors_hz, "claw_state": config.claw_state_hz,
               "command": config.command_hz}
    order = {name: i for i, name in enumerate(("command", "claw_state", "sensors", "camera"))}
    limit = config.world.max_episode_s  # (success counts within it, the lead included)
    queue = [(0.0, order[name], name, rate, 0) for name, rate in streams.items()]
    heapq.heapify(queue)
    command = world.state
    end = None
    path = Path(path)
    with KuavoRecorder(path, storage, profile) as bag:
        sizes = {name: config.image_size for name in bag.profile.camera_names}
        separate_gripper = bag.profile.has_gripper_state
        while queue:
            t, _, name, rate, k = heapq.heappop(queue)
            if (end is not None and t > end + 1e-9) or t > limit:
                continue
            world.step(t - world.time)
            if name == "command":
                if t >= config.lead_s - 1e-9:
                    command = expert.act()
                world.arms.set_command(command)
                for encoded in bag.encoder.action(command, t):
                    bag.write(encoded, t)
            elif name == "sensors":
                bag.state(t, world.state)
            elif name == "claw_state":
                if separate_gripper:
                    bag.gripper_state(t, robot.gripper_units(world.state))
            else:
                for camera, image in render_cameras(world, sizes).items():
                    bag.write(bag.encoder.camera(camera, image, t, quality=config.jpeg_quality), t)
            if end is None and world.success:
                end = world.time + config.tail_s
            heapq.heappush(queue, ((k + 1) / rate, order[name], name, rate, k + 1))
    if not world.success:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        raise RuntimeError(f"the expert failed {episode.task.name} with seed {seed} within "
                           f"{config.world.max_episode_s} s (after a {config.lead_s:g} s lead)")
    return {"path": str(path), "task": episode.task.name, "seed": seed, "success_time": episode.success_time,
            "duration": end, "object": [float(v) for v in episode.object_start]}


def episode_path(output: Path, task: Task, seed: int, storage: str) -> Path:
    return output / task.stage_dir / f"episode_{seed:05d}{FORMATS[storage]}"


#: The modules whose code decides what a recorded demonstration holds: the expert's plan, the scenes and the
#: object's place per seed, the world, the arms, the cameras, this recorder.
DEMONSTRATOR_MODULES = ("expert", "scenes", "world", "kinematics", "render", "record")
#: Beside the task folders of a recording: per task folder, the fingerprint of the demonstrator that wrote it.
STAMP_FILE = "demonstrations.json"


class StaleDemonstrations(Exception):
    """The output folder holds bags that another demonstrator (other code or settings) recorded: adding to
    them would mix two demonstrators in one dataset, and keeping them would train on the old one."""


def demonstrator_fingerprint(storage: str, config: RecordingConfig, profile: RobotProfile) -> str:
    """sha256 (hex, 16 digits) of :data:`DEMONSTRATOR_MODULES`' code, the recording settings (the lead
    resolved), the format and the robot profile's name: two recordings with the same fingerprint hold the same
    bag for the same seed."""
    import dataclasses
    import hashlib
    import json

    config = _resolved(config, profile)

    digest = hashlib.sha256()
    for name in DEMONSTRATOR_MODULES:
        digest.update((Path(__file__).parent / f"{name}.py").read_bytes() + b"\0")
    settings = {"config": dataclasses.asdict(config), "storage": storage, "profile": profile.name}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def recorded_fingerprints(output: str | Path) -> dict[str, str]:
    """``output/demonstrations.json``: task folder -> fingerprint of the demonstrator that wrote its bags (empty
    if there is none yet). Raises :class:`StaleDemonstrations` if it is there but unreadable (not a file, not
    JSON, not an object of strings): which demonstrator wrote the bags is then unknown."""
    import json

    stamp = Path(output) / STAMP_FILE
    if not stamp.exists():
        return {}
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise StaleDemonstrations(f"{stamp} is unreadable ({reason}): it says which demonstrator recorded the bags "
                                  "beside it; restore it, or record into a new folder") from None
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise StaleDemonstrations(f"{stamp} is not an object of fingerprints: it says which demonstrator recorded "
                                  "the bags beside it; restore it, or record into a new folder")
    return recorded


def stale_task_folders(output: str | Path, tasks: Sequence[Task], fingerprint: str) -> list[Path]:
    """The task folders under ``output`` that hold bags (``episode_*``) not recorded with ``fingerprint``
    (another demonstrator, or one from before fingerprints were kept). Raises :class:`StaleDemonstrations` as
    :func:`recorded_fingerprints`."""
    output = Path(output)
    recorded = recorded_fingerprints(output)
    return [output / task.stage_dir for task in tasks
            if any((output / task.stage_dir).glob("episode_*")) and recorded.get(task.stage_dir) != fingerprint]


def _stamp(output: Path, tasks: Sequence[Task], fingerprint: str) -> None:
    from kuavo_smolvla_ros.atomic import write_json

    recorded = recorded_fingerprints(output)
    updated = recorded | {task.stage_dir: fingerprint for task in tasks}
    if updated != recorded:  # (a run that adds nothing writes nothing)
        write_json(output / STAMP_FILE, updated)


def record(output: str | Path, tasks: Sequence[Task], episodes: int, storage: str = "ros1", first_seed: int = 0,
           config: RecordingConfig | None = None, progress: bool = True,
           profile: RobotProfile | str | None = None) -> list[dict]:
    """Record ``episodes`` bags per task (seeds ``first_seed``...) with ``profile``'s streams; existing bags are
    kept (skipped). Raises :class:`StaleDemonstrations` (nothing written) if a task folder holds bags of another
    demonstrator (:func:`demonstrator_fingerprint`, kept in ``output/demonstrations.json``)."""
    from tqdm import tqdm

    if storage not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {storage!r}")
    profile = load_profile(profile)
    unknown = [c for c in profile.camera_names if c not in CAMERA_VIEWS]
    if unknown:
        raise ValueError(f"robot profile {profile.name} has camera(s) {unknown} the simulator does not render "
                         f"(it renders {sorted(CAMERA_VIEWS)})")
    output = Path(output)
    config = _resolved(config or RecordingConfig(), profile)
    fingerprint = demonstrator_fingerprint(storage, config, profile)
    stale = stale_task_folders(output, tasks, fingerprint)
    if stale:
        raise StaleDemonstrations(
            f"{', '.join(str(p) for p in stale)} hold(s) bags recorded by another version of the simulated expert "
            "or with other settings: record into a new folder, or remove them (they would mix two demonstrators "
            "in one dataset)")
    output.mkdir(parents=True, exist_ok=True)
    _stamp(output, tasks, fingerprint)
    jobs = ((task, first_seed + i) for task in tasks for i in range(episodes))  # (lazily: any count)
    written = []
    for task, seed in tqdm(jobs, desc="recording", unit="bag", total=len(tasks) * episodes, disable=not progress):
        path = episode_path(output, task, seed, storage)
        if path.exists():
            continue
        # Written under its final name inside a hidden folder, then moved into place: a ROS 2 bag's storage file
        # is named after its folder, and an interrupted recording never looks like a bag.
        staging = path.parent / f".recording-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            summary = record_episode(staging / path.name, task, seed, storage, config, profile)
            (staging / path.name).rename(path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written.append(summary | {"path": str(path)})
    return written


def parse_tasks(text: str) -> list[Task]:
    catalog = default_catalog()
    if text.strip().lower() == "all":
        return list(catalog)
    return [catalog.get(part.strip()) for part in text.split(",") if part.strip()]


RECORD_EXIT_CODES = """exit status:
  0  every bag written (bags already in OUTPUT are kept, not written again)
  2  refused, one "error:" line, nothing written: bad arguments, unknown task, robot profile refused, OUTPUT
     is a file, or OUTPUT holds bags of another demonstrator (other code or settings) or an unreadable
     demonstrations.json; or OUTPUT cannot be written (bags written before that are kept)
  130  interrupted (Ctrl-C): one "interrupted:" line; the bags written so far are kept (never a half-written
     one), the same command again records the rest
"""
#: Camera rates (Hz) the recorder accepts (image sides: :data:`kuavo_smolvla_ros.features.IMAGE_SIDE`).
CAMERA_HZ = (1.0, 120.0)


def check_arguments(args: argparse.Namespace) -> tuple[list[Task], str | None]:
    """The tasks to record and, when an argument is refused, the reason (one line naming the flag)."""
    import math

    names = [part.strip().lower() for part in args.tasks.split(",")]
    if "all" in names and len([n for n in names if n]) > 1:
        return [], f"--tasks: 'all' stands alone, got {args.tasks!r}"
    try:
        tasks = parse_tasks(args.tasks)
    except KeyError as err:
        return [], f"--tasks: {err.args[0]}"
    if not tasks:
        return [], f"--tasks names no task ({args.tasks!r}): 'all', or task ids/names separated by commas"
    repeated = sorted({t.name for t in tasks if tasks.count(t) > 1})
    if repeated:
        return [], f"--tasks names {', '.join(repeated)} more than once"
    if args.episodes < 1:
        return [], f"--episodes must be >= 1, got {args.episodes}"
    if args.first_seed < 0:
        return [], f"--first-seed must be >= 0, got {args.first_seed}"
    low, high = IMAGE_SIDE
    if not all(low <= side <= high for side in args.image_size):
        return [], f"--image-size must be {low}..{high} pixels per side, got {args.image_size[0]} {args.image_size[1]}"
    low_hz, high_hz = CAMERA_HZ
    if not (math.isfinite(args.camera_hz) and low_hz <= args.camera_hz <= high_hz):
        return [], f"--camera-hz must be {low_hz:g}..{high_hz:g}, got {args.camera_hz:g}"
    blocked = blocking_file(args.output)
    if blocked is not None:
        return [], f"{blocked} is a file, not a folder"
    return tasks, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the simulated Kuavo's scripted expert as Kuavo bags.",
                                     epilog=RECORD_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="folder; bags go to OUTPUT/task{id}_{name}/")
    parser.add_argument("--tasks", default="all",
                        help="'all' (default) or task ids/names/aliases separated by commas, e.g. 1,weighing")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="ros1",
                        help="ros1 (default: .bag, kuavo_msgs types) | mcap | sqlite3 (ROS 2 folders)")
    parser.add_argument("--first-seed", type=int, default=0, help="object-position seed of the first episode")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=(64, 64),
                        help="camera image height and width in pixels (default 64 64)")
    parser.add_argument("--camera-hz", type=float, default=30.0, help="camera rate (default 30)")
    parser.add_argument("--robot", default="kuavo4pro",
                        help="robot profile whose topics and messages the bags hold "
                             f"({', '.join(available_profiles())}, or a path to a profile YAML)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar (it is off whenever stderr is not a terminal)")
    args = parser.parse_args(argv)
    tasks, refused = check_arguments(args)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    try:
        profile = load_profile(args.robot)
    except ProfileError as err:
        print(f"error: --robot: {err}", file=sys.stderr)
        return 2
    config = RecordingConfig(camera_hz=args.camera_hz, image_size=tuple(args.image_size))
    before = {p for task in tasks for p in (args.output / task.stage_dir).glob("episode_*")}
    try:
        written = record(args.output, tasks, args.episodes, args.format, args.first_seed, config,
                         not args.quiet and sys.stderr.isatty(), profile)
    except ValueError as err:
        print(f"error: --robot: {err}", file=sys.stderr)
        return 2
    except StaleDemonstrations as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an unwritable folder, a full disk: the bags written so far are kept
        print(f"error: {err.filename or args.output}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        done = {p for task in tasks for p in (args.output / task.stage_dir).glob("episode_*")} - before
        print(f"interrupted: {len(done)} bag(s) written under {args.output}; the same command again records the "
              "rest", file=sys.stderr)
        return 130
    kept = len(tasks) * args.episodes - len(written)
    print(f"wrote {len(written)} bag(s) under {args.output} ({kept} already there)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
