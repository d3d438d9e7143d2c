"""``kuavo-rosbag-to-lerobot``: convert Kuavo bags to a LeRobot v3 dataset, or validate one.

Exit status: see :data:`EXIT_CODES`. Each failed bag is printed once, as soon as it is done, as
``FAILED <bag>: <its first cause>`` and listed in the report; a bag cut into several episodes at breaks in
time is printed as ``CUT <bag>: ...``. Refusals are one ``error:`` line on stderr, and nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

EXIT_CODES = """exit status:
  0  convert: every bag converted (or already in the dataset); validate: the dataset is fit for training
  1  convert: one or more bags FAILED (each printed once; the others are in the dataset, which is not
     created when every bag failed); validate: problems found (listed)
  2  refused, one "error:" line, the dataset unchanged: bad arguments, config or robot profile, unknown
     --task, --output exists (without --resume) or is not a LeRobot dataset or holds another task or is
     another task's training folder, no bags found, assembling failed (converted episodes kept for
     --resume); validate: no dataset at the path
  130  interrupted (Ctrl-C): one "interrupted:" line; bags finished so far are kept for --resume, nothing
     half-written looks finished, the dataset is as it was
"""

EPILOG = """examples:
  kuavo-rosbag-to-lerobot convert ~/bags/grasp --output ~/datasets/task1_moving_grasp --task moving_grasp -j 2
  kuavo-rosbag-to-lerobot convert new_bags/ --output ~/datasets/task1_moving_grasp --task 1 --resume
  kuavo-rosbag-to-lerobot convert k5_bags/ -o ~/datasets/task2_weighing -t 2 --robot kuavo5 \\
      --override cameras.wrist_cam_l.topic=/cam_r/color/image_raw/compressed \\
      --override cameras.wrist_cam_r.topic=/cam_l/color/image_raw/compressed
  kuavo-rosbag-to-lerobot validate ~/datasets/task1_moving_grasp

""" + EXIT_CODES

#: Progress bars of the libraries the converter calls (lerobot's tqdm bars, datasets' "Map"), off with
#: ``--quiet`` or when stderr is not a terminal: environment variables, so that worker processes inherit them.
QUIET_ENV = {"HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
#: datasets warns each time lerobot re-enables its bars while the variable keeps them off.
BARS_WARNING = "Cannot enable progress bars"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kuavo-rosbag-to-lerobot", description=__doc__.splitlines()[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert bags (one bag = one episode)", epilog=EXIT_CODES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="ROS 1 .bag files, ROS 2 bag folders, or folders searched recursively")
    convert.add_argument("--output", "-o", required=True, help="dataset folder (created; see --resume)")
    convert.add_argument("--task", "-t", required=True,
                         help="task id, name or alias from config/tasks.yaml (its instruction labels every frame)")
    convert.add_argument("--config", "-c", help="conversion YAML (default: the shipped Kuavo config)")
    convert.add_argument("--robot", "-r", help="robot profile the bags come from: kuavo4pro (default), kuavo5, "
                                               "leju_sim, ros2_joint_state, or a path to a profile YAML")
    convert.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                         help="change the robot profile (repeatable): topics, sync max ages, stamp_source, "
                              "end_effector.inverted, e.g. cameras.head_cam_h.topic=/head/image_raw/compressed")
    convert.add_argument("--fps", type=int, help="dataset rate (overrides the config)")
    convert.add_argument("--workers", "-j", type=int, default=1, help="bags converted in parallel processes")
    convert.add_argument("--resume", action="store_true",
                         help="add to an existing output: bags already in it (by SHA-256) are skipped, finished "
                              "episodes of an interrupted run are reused")
    media = convert.add_mutually_exclusive_group()
    media.add_argument("--video", dest="storage", action="store_const", const="video", help="cameras as MP4 video")
    media.add_argument("--png", dest="storage", action="store_const", const="png", help="cameras as PNG images")
    convert.add_argument("--quiet", "-q", action="store_true",
                         help="no progress bars, ours or the libraries' (all are off whenever stderr is not a "
                              "terminal); FAILED/CUT lines, the summary and errors still print")
    validate = commands.add_parser("validate", help="check a dataset (lerobot opens it, frames, values, limits, "
                                                    "no break in time between consecutive rows)",
                                   epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    validate.add_argument("dataset", help="dataset folder")
    validate.add_argument("--max-gap-frames", type=int, default=None, metavar="N",
                          help="dropped grid ticks the conversion report may show between two rows (default 2)")
    return parser


def _quiet_libraries() -> dict[str, str | None]:
    """Turn the libraries' progress bars off (:data:`QUIET_ENV`); the environment values it replaced."""
    import warnings

    saved = {key: os.environ.get(key) for key in [*QUIET_ENV, "PYTHONWARNINGS"]}
    os.environ.update(QUIET_ENV)
    warnings.filterwarnings("ignore", message=BARS_WARNING)
    ignore = f"ignore:{BARS_WARNING}"  # in the worker processes too
    if ignore not in (saved["PYTHONWARNINGS"] or ""):
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [saved["PYTHONWARNINGS"], ignore]))
    if "datasets" in sys.modules:  # imported before (an in-process call): the variable is read at import
        from datasets.utils import disable_progress_bars

        disable_progress_bars()
    return saved


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("lerobot").setLevel(logging.WARNING)
    quiet = args.command == "validate" or args.quiet or not sys.stderr.isatty()
    saved = _quiet_libraries() if quiet else {}
    try:
        return _validate(args) if args.command == "validate" else _convert(args)
    except KeyboardInterrupt:  # (the conversion's own interrupt is reported by _convert)
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _validate(args: argparse.Namespace) -> int:
    from kuavo_smolvla_ros.data.dataset import not_a_dataset
    from kuavo_smolvla_ros.data.validate import MAX_GAP_FRAMES, validate

    if args.max_gap_frames is not None and args.max_gap_frames < 0:
        print(f"error: --max-gap-frames must be >= 0, got {args.max_gap_frames}", file=sys.stderr)
        return 2
    absent = not_a_dataset(args.dataset)
    if absent:  # checked first: lerobot would create the folder and look for the dataset on the Hub
        print(f"error: no dataset at {args.dataset} ({absent})", file=sys.stderr)
        return 2
    result = validate(args.dataset, MAX_GAP_FRAMES if args.max_gap_frames is None else args.max_gap_frames)
    if result.ok:
        print(f"OK: {result.root}: {result.episodes} episode(s), {result.frames} frames")
        return 0
    print(f"{len(result.findings)} problem(s) in {result.root}:")
    for finding in result.findings:
        print(f"  - {finding}")
    return 1


def _convert(args: argparse.Namespace) -> int:
    from kuavo_smolvla_ros.contract.profile import ProfileError, parse_overrides
    from kuavo_smolvla_ros.data.config import FPS_RANGE, ConfigError
    from kuavo_smolvla_ros.data.convert import ConversionError, ConversionInterrupted, convert, print_failure
    from kuavo_smolvla_ros.data.dataset import DatasetError

    if args.fps is not None and not FPS_RANGE[0] <= args.fps <= FPS_RANGE[1]:
        print(f"error: --fps must be {FPS_RANGE[0]}..{FPS_RANGE[1]}, got {args.fps}", file=sys.stderr)
        return 2
    try:  # each failed bag is printed once, as soon as it is done: FAILED <bag>: <its first cause>
        result = convert(args.inputs, args.output, task=args.task, config=args.config, fps=args.fps,
                         workers=args.workers, resume=args.resume, storage=args.storage,
                         progress=not args.quiet and sys.stderr.isatty(),
                         robot=args.robot, overrides=parse_overrides(args.override), on_result=print_failure)
    except (ConversionError, ConfigError, DatasetError, ProfileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConversionInterrupted as stop:
        print(f"interrupted: {stop.done} of {stop.total} bag(s) done, resume with --resume", file=sys.stderr)
        return 130
    print(result.summary)
    if result.report_path:
        print(f"report: {result.report_path}")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
