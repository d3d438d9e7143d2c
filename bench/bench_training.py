"""Training throughput (samples per second): our sequential loop versus ``lerobot-train``, same tiny model.

Both trainers run as they are shipped, each in a fresh process, on the same tiny SmolVLA checkpoint
(everything trainable), the same batch size, CPU and torch thread count:

* ours: ``training/train_sequential.py task=tasks/task2_weighing`` for one epoch, i.e. stage 2 with
  replay on (every batch mixes task 1 (0.2) and task 2 (0.8) frames), starting from a copy of the tiny
  checkpoint placed as stage 1's ``best/``;
* lerobot's: ``lerobot-train --policy.path=<checkpoint> --dataset.root=<task 2's dataset>`` for as many
  steps as our epoch has.

Each process is started through a small launcher that registers a global ``torch.optim`` step post-hook
recording the time of every optimisation step, then calls the same entry point as the command line
(``lerobot.scripts.lerobot_train.main`` / ``training/train_sequential.py``). The rate is
``batch_size * steps / time`` between the first and last of the steps after ``--warmup`` ones: start-up,
the first steps, our validation and checkpoint saving (after the last step) and lerobot's final saving are
excluded; data loading, preprocessing, forward, backward, clipping, the optimizer and per-step logging
are included in both. Runs alternate between the two; medians over ``--repeats`` and their ratio.

The datasets (four, as the curriculum's statistics step opens all four; tasks 1 and 2 are the larger
ones) and the checkpoint are built once with lerobot's writer and cached under ``.cache/bench/training``.

Usage: python bench/bench_training.py [--repeats N] [--batch-size B] [--threads T] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import CACHE, ROOT, machine, save

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.data.dataset import REPO_ID
from kuavo_smolvla_ros.features import ACTION, OBS_STATE, image_key
from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint
from kuavo_smolvla_ros.tasks import default_catalog

HERE = CACHE / "training"
CAMERA = "head_cam_h"
IMAGE = 64
FPS = 10
#: (task id, episodes, frames per episode): stage 2 trains on task 2 (10% of its episodes held out) and
#: replays task 1; tasks 3 and 4 only need to exist for the curriculum's statistics.
DATASETS = ((1, 10, 48), (2, 20, 48), (3, 2, 16), (4, 2, 16))
TRAIN_SCRIPT = ROOT / "training" / "train_sequential.py"

# Run in a fresh interpreter: time-stamp every optimizer step, then run the trainer's own entry point.
LAUNCHER = r"""
import cProfile, json, os, runpy, sys, time
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
stamps, trainable = [], []


def hook(optimizer, args, kwargs):
    stamps.append(time.perf_counter())
    if not trainable:
        trainable.append(sum(p.numel() for group in optimizer.param_groups for p in group["params"] if p.requires_grad))


register_optimizer_step_post_hook(hook)
which, argv = sys.argv[1], sys.argv[2:]
profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None


def run():
    if which == "lerobot":
        from lerobot.scripts.lerobot_train import main
        sys.argv = ["lerobot-train", *argv]
        main()
    else:
        sys.argv = [argv[0], *argv[1:]]
        runpy.run_path(argv[0], run_name="__main__")


try:
    if profile:
        profile.runcall(run)
    else:
        run()
except SystemExit as err:
    if err.code not in (0, None):
        raise
finally:
    with open(os.environ["BENCH_STAMPS"], "w") as f:
        json.dump({"stamps": stamps, "trainable": trainable[0] if trainable else None}, f)
    if profile:
        profile.dump_stats(os.environ["BENCH_PROFILE"])
"""


# ------------------------------------------------------------------------------------------- inputs
def write_dataset(root: Path, task_id: int, episodes: int, frames: int, seed: int) -> Path:
    """A LeRobot v3 dataset written with lerobot's own writer: random PNG images, smooth random joints."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    vector = {"dtype": "float32", "shape": (robot.STATE_DIM,), "names": list(robot.JOINT_NAMES)}
    features = {OBS_STATE: vector, ACTION: dict(vector),
                image_key(CAMERA): {"dtype": "image", "shape": (IMAGE, IMAGE, 3),
                                                 "names": ["height", "width", "channels"]}}
    instruction = default_catalog().get(task_id).instruction
    dataset = LeRobotDataset.create(REPO_ID, FPS, features, root=root, robot_type=load_profile().robot_type,
                                    use_videos=False, video_backend="pyav")
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        state = rng.uniform(-0.5, 0.5, robot.STATE_DIM).astype(np.float32)
        for _ in range(frames):
            step = rng.normal(0, 0.02, robot.STATE_DIM).astype(np.float32)
            dataset.add_frame({OBS_STATE: state, ACTION: state + step,
                               image_key(CAMERA): rng.integers(0, 256, (IMAGE, IMAGE, 3), np.uint8),
                               "task": instruction})
            state = state + step
        dataset.save_episode()
    dataset.finalize()
    return root


def inputs() -> tuple[Path, Path]:
    """(checkpoint, data root), built once under ``.cache/bench/training``."""
    checkpoint, data_root = HERE / f"checkpoint_{IMAGE}", HERE / "datasets"
    if not (checkpoint / "model.safetensors").is_file():
        print(f"building the tiny checkpoint in {checkpoint} (once) ...", flush=True)
        shutil.rmtree(checkpoint, ignore_errors=True)
        build_checkpoint(checkpoint, TinyCheckpointSpec(cameras=(CAMERA,), image_shape=(IMAGE, IMAGE),
                                                        train_everything=True))
    catalog = default_catalog()
    for task_id, episodes, frames in DATASETS:
        root = data_root / catalog.get(task_id).stage_dir
        if not (root / "meta" / "info.json").is_file():
            print(f"writing {root} ({episodes} x {frames} frames, once) ...", flush=True)
            shutil.rmtree(root, ignore_errors=True)
            write_dataset(root, task_id, episodes, frames, seed=task_id)
    return checkpoint, data_root


def our_steps(episodes: int, frames: int, batch_size: int) -> int:
    """Optimisation steps of one stage-2 epoch: one pass over task 2's training frames (10% held out)."""
    from kuavo_smolvla_ros.training.sampling import split_episodes

    train, _ = split_episodes(episodes, 0.1, seed=1000 + 2)
    return -(-len(train) * frames // batch_size)


# -------------------------------------------------------------------------------------------- runs
def commands(checkpoint: Path, data_root: Path, work: Path, batch_size: int, steps: int) -> dict[str, list[str]]:
    """The two trainers' command lines (arguments after the launcher's ``ours`` / ``lerobot``)."""
    ours = [str(TRAIN_SCRIPT), "task=tasks/task2_weighing", f"pretrained_path={checkpoint}",
            f"data_root={data_root}", f"output_root={work / 'ours'}", f"batch_size={batch_size}", "num_workers=0",
            "device=cpu", "stage_overrides.epochs=1", "policy.train_expert_only=false",
            "policy.freeze_vision_encoder=false"]
    lerobot = [f"--policy.path={checkpoint}", f"--dataset.repo_id={REPO_ID}",
               f"--dataset.root={data_root / default_catalog().get(2).stage_dir}", f"--batch_size={batch_size}",
               f"--steps={steps}", "--num_workers=0", f"--output_dir={work / 'lerobot'}", "--policy.device=cpu",
               "--policy.push_to_hub=false", "--wandb.enable=false", "--save_checkpoint=false",
               "--env_eval_freq=0", f"--log_freq={steps}", "--seed=1000"]
    return {"ours": ours, "lerobot": lerobot}


def prepare(which: str, checkpoint: Path, work: Path) -> None:
    shutil.rmtree(work / which, ignore_errors=True)
    if which == "ours":  # stage 2 starts from stage 1's best: the tiny checkpoint itself
        shutil.copytree(checkpoint, work / "ours" / default_catalog().get(1).stage_dir / "best")


def run_once(which: str, argv: list[str], work: Path, threads: int, warmup: int, batch_size: int,
             profile: Path | None = None) -> dict:
    stamps_file = work / f"{which}_stamps.json"
    env = dict(os.environ, BENCH_STAMPS=str(stamps_file), BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT) + (
                   os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    if profile:
        env["BENCH_PROFILE"] = str(profile)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, which, *argv], env=env, cwd=work,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    (HERE / f"{which}_last.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{which} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    recorded = json.loads(stamps_file.read_text())
    stamps = recorded["stamps"]
    timed = stamps[warmup:]
    if len(timed) < 2:
        raise RuntimeError(f"{which}: only {len(stamps)} optimizer steps, need more than warmup={warmup} + 1")
    rate = batch_size * (len(timed) - 1) / (timed[-1] - timed[0])
    return {"steps": len(stamps), "timed_steps": len(timed) - 1, "samples_per_s": rate, "wall_s": wall,
            "trainable_parameters": recorded["trainable"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each trainer (alternating)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads of both trainers")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the timing")
    parser.add_argument("--profile", action="store_true",
                        help="also run each trainer once under cProfile and print the top functions")
    args = parser.parse_args()
    checkpoint, data_root = inputs()
    _, episodes, frames = DATASETS[1]
    steps = our_steps(episodes, frames, args.batch_size)
    print(f"machine: {machine()}, device cpu, {args.threads} threads for both, batch {args.batch_size}, "
          f"{steps} steps per run ({args.warmup} warm-up steps not timed)", flush=True)
    runs: dict[str, list[dict]] = {"lerobot": [], "ours": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_training_", dir=HERE) as tmp:
        work = Path(tmp)
        argvs = commands(checkpoint, data_root, work, args.batch_size, steps)
        for repeat in range(args.repeats):
            for which in runs:
                prepare(which, checkpoint, work)
                row = run_once(which, argvs[which], work, args.threads, args.warmup, args.batch_size)
                runs[which].append(row)
                print(f"  run {repeat + 1} {which:7s}: {row['samples_per_s']:7.1f} samples/s over "
                      f"{row['timed_steps']} steps ({row['steps']} in all, process {row['wall_s']:.1f} s, "
                      f"{row['trainable_parameters']} trainable parameters)",
                      flush=True)
        profiles = {}
        if args.profile:
            import pstats

            for which in runs:
                prepare(which, checkpoint, work)
                path = HERE / f"profile_{which}.prof"
                run_once(which, argvs[which], work, args.threads, args.warmup, args.batch_size, profile=path)
                profiles[which] = str(path)
                print(f"\n--- cProfile of {which} (whole process, top 25 by cumulative time): {path}")
                pstats.Stats(str(path)).sort_stats("cumulative").print_stats(25)
    medians = {which: statistics.median(r["samples_per_s"] for r in rows) for which, rows in runs.items()}
    ratio = medians["ours"] / medians["lerobot"]
    print(f"\n{'trainer':10s} {'samples/s (median)':>19s} {'runs':>28s}")
    for which, rows in runs.items():
        print(f"{which:10s} {medians[which]:19.1f}   " + " ".join(f"{r['samples_per_s']:7.1f}" for r in rows))
    print(f"ratio ours / lerobot-train: {ratio:.3f}   (total {time.perf_counter() - started:.0f} s)")
    shown = commands(checkpoint, data_root, Path("<work>"), args.batch_size, steps)
    path = save("training", {
        "machine": machine(), "device": "cpu", "threads": args.threads, "batch_size": args.batch_size,
        "steps_per_run": steps, "warmup_steps": args.warmup, "repeats": args.repeats, "image": f"{IMAGE}x{IMAGE}",
        "datasets": {default_catalog().get(t).stage_dir: {"episodes": e, "frames_per_episode": f}
                     for t, e, f in DATASETS},
        "commands": {"ours": "python " + " ".join(shown["ours"]), "lerobot": "lerobot-train " + " ".join(
            shown["lerobot"])},
        "runs": runs, "median_samples_per_s": medians, "ratio": ratio, "profiles": profiles,
    })
    print(f"results: {path}")
    print(f"goal (ours >= 0.95 x lerobot-train, replay on): {'met' if ratio >= 0.95 else 'NOT met'} "
          f"(ratio {ratio:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
