"""``make demo``: the whole product on a simulated Kuavo, from recorded bags to the policy switching tasks.

Steps (each skipped when its output is already there; ``--force`` starts from scratch):

1. record the scripted expert's demonstrations as Kuavo ROS 1 bags (``kuavo_smolvla_ros.sim.record``);
2. convert them into one LeRobot dataset per task (``kuavo-rosbag-to-lerobot``'s code);
3. take the tiny SmolVLA pretrained on the simulator's primitives (other tasks than the four): the repository's
   ``assets/pretrained_base`` (``make base``; built by ``training/pretrain_base.py``, which runs only when its
   settings are changed), copied to ``pretrained_base/``, then fine-tune it with the real recipe (frozen vision
   encoder and VLM, action expert + state projection, replay, the stage learning rates' ratios) on the four tasks
   in sequence (``training/train_sequential.py --config-name demo_tiny``);
4. evaluate the final checkpoint in the simulator in simulated time (many episodes, seconds);
5. start ``sim_robot`` and ``policy_node`` as ``ros2 launch kuavo_smolvla_ros sim.launch.py`` would, cycle
   the four instructions on ``/task_instruction`` and run episodes over ROS;
6. write the report (JSON + PNG) and print success per task and the node's latency.

Everything goes under ``outputs/demo/`` (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # per-episode "Map" bars bury the demo's own lines
# lerobot's own bars ("Copy data and videos" per dataset): tqdm reads this as the default of `disable`, so only
# bars that do not set it are off; ours (recording, training epochs) set it and stay on a terminal
os.environ.setdefault("TQDM_DISABLE", "1")
# lerobot re-enables the bars per dataset it opens; the variable wins, and datasets warns each time
warnings.filterwarnings("ignore", message="Cannot enable progress bars")

from kuavo_smolvla_ros.tasks import default_catalog  # noqa: E402  (after the environment above)

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = ROOT / "training" / "train_sequential.py"
PRETRAIN_SCRIPT = ROOT / "training" / "pretrain_base.py"
PRETRAIN_CONFIG = ROOT / "training" / "configs" / "pretrain_tiny_base.yaml"
SHIPPED_BASE = ROOT / "assets" / "pretrained_base"
IMAGE = (64, 64)
STEPS = 6


def banner(number: int, text: str) -> float:
    print(f"\n=== [{number}/{STEPS}] {text}", flush=True)
    return time.perf_counter()


def done(start: float, text: str = "") -> None:
    print(f"    done in {time.perf_counter() - start:.0f} s{': ' + text if text else ''}", flush=True)


# ------------------------------------------------------------------------------------------ steps
def record_bags(out: Path, episodes: int) -> Path:
    """The expert's bags in ``out/bags``; bags of another demonstrator (an earlier version of the simulated
    expert, other settings) are moved aside with the datasets made from them, then recorded anew."""
    from kuavo_smolvla_ros.sim.record import RecordingConfig, StaleDemonstrations, record

    bags = out / "bags"
    record_all = lambda: record(bags, list(default_catalog()), episodes, "ros1",  # noqa: E731
                                config=RecordingConfig(image_size=IMAGE),
                                progress=sys.stderr.isatty())  # our bar on a terminal only
    try:
        written = record_all()
    except StaleDemonstrations:
        suffix = time.strftime("%Y%m%d-%H%M%S")
        for name in ("bags", "datasets"):
            if (out / name).exists():
                (out / name).rename(out / f"{name}_before_{suffix}")
        print(f"    {bags} held another demonstrator's bags; moved aside with the datasets "
              f"(*_before_{suffix}), recording anew", flush=True)
        written = record_all()
    print(f"    {len(written)} new bag(s), {episodes} per task, in {bags}")
    return bags


def convert_bags(out: Path, bags: Path) -> Path:
    from kuavo_smolvla_ros.data.convert import convert

    datasets = out / "datasets"
    for task in default_catalog():
        target = datasets / task.stage_dir
        result = convert([bags / task.stage_dir], target, task.name, resume=target.exists(), storage="png",
                         workers=2, progress=False)
        print(f"    {result.summary}")
    return datasets


def pretrained_base(out: Path) -> Path:
    """The tiny base pretrained on the simulator's primitives (``training/pretrain_base.py``) in
    ``out/pretrained_base``: the repository's ``assets/pretrained_base`` while the settings of
    ``training/configs/pretrain_tiny_base.yaml`` are the ones it was built with; else built once per machine and
    kept in the machine's cache (:func:`~kuavo_smolvla_ros.training.base_cache.ensure_base`)."""
    from kuavo_smolvla_ros.training.base_cache import ensure_base

    base = ensure_base(out / "pretrained_base", PRETRAIN_SCRIPT, PRETRAIN_CONFIG,
                       say=lambda line: print(f"    {line}", flush=True), shipped=SHIPPED_BASE)
    report = json.loads((base / "pretraining.json").read_text())
    probe = report["probe"]
    print(f"    base: {report['steps']} steps on {len(report['primitives'])} primitives "
          f"({report['frames_train']} frames); block located from its frozen VLM features to "
          f"{probe['pretrained']['vlm']['error_cm_mean']:.1f} cm (random weights "
          f"{probe['random_init']['vlm']['error_cm_mean']:.1f} cm)", flush=True)
    upgrade_old_checkpoints(out)
    return base


def upgrade_old_checkpoints(out: Path) -> None:
    """Give the relative checkpoints an earlier demo wrote (before relative actions were lerobot processor
    steps) those steps, so a second ``make demo`` reuses them (predictions unchanged)."""
    from kuavo_smolvla_ros.policy.checkpoint import upgrade_relative

    for config in sorted(out.glob("**/config.json")):
        if (config.parent / "kuavo_smolvla.json").is_file() and (config.parent / "policy_preprocessor.json").is_file():
            meta = json.loads((config.parent / "kuavo_smolvla.json").read_text())
            if meta.get("action_mode") == "relative" and upgrade_relative(config.parent):
                print(f"    upgraded {config.parent} (relative actions as lerobot processor steps)", flush=True)


def train(out: Path, base: Path, datasets: Path, overrides: list[str]) -> Path:
    output_root = out / "train"
    # a train/ of another recipe or other settings is moved aside (training would refuse to resume it)
    stamp = {"recipe": "demo_tiny", "pretrained_path": str(base), "overrides": list(overrides),
             "base": json.loads((base / "pretraining.json").read_text()).get("settings"),
             "base_weights": hashlib.sha256((base / "model.safetensors").read_bytes()).hexdigest()[:16],
             "demonstrations": _demonstrations_stamp(out / "bags")}
    stamp_file = output_root / "demo_recipe.json"
    if output_root.exists() and (not stamp_file.is_file() or json.loads(stamp_file.read_text()) != stamp):
        aside = out / f"train_before_{time.strftime('%Y%m%d-%H%M%S')}"
        output_root.rename(aside)
        print(f"    {output_root} was trained with another recipe or settings; moved to {aside}", flush=True)
    output_root.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(stamp) + "\n")
    final = output_root / default_catalog().tasks[-1].stage_dir / "best"
    command = [sys.executable, str(TRAIN_SCRIPT), "--config-name", "demo_tiny", f"pretrained_path={base}",
               f"data_root={datasets}", f"output_root={output_root}", *overrides]
    print("    " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return final


def _demonstrations_stamp(bags: Path) -> dict:
    """Which demonstrator recorded the bags the datasets come from (``bags/demonstrations.json``)."""
    from kuavo_smolvla_ros.sim.record import recorded_fingerprints

    return recorded_fingerprints(bags)


def evaluate_offline(checkpoint: Path, episodes: int) -> dict:
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
    from kuavo_smolvla_ros.sim.evaluate import evaluate, success_rates

    runtime = PolicyRuntime.open(checkpoint)
    results = evaluate(runtime, list(default_catalog()), episodes, progress=sys.stderr.isatty())  # bar: terminal only
    return {"success": success_rates(results), "episodes_per_task": episodes}


def run_over_ros(out: Path, checkpoint: Path, rounds: int) -> dict:
    """Start the simulator and the policy node (as sim.launch.py does) and cycle the instructions."""
    from kuavo_smolvla_ros.ros.bringup import POLICY_NODE, SIM_NODE, bringup, launch_command, params_file

    height, width = IMAGE
    policy_params = params_file(POLICY_NODE, {"checkpoint": str(checkpoint), "camera_height": height,
                                              "camera_width": width, "torch_threads": 1, "seed": 0},
                                out / "policy_params.yaml")
    sim_params = params_file(SIM_NODE, {"camera_height": height, "camera_width": width, "max_episode_s": 15.0},
                             out / "sim_params.yaml")
    print(f"    = {launch_command(policy_params, sim_params)}  (node output in {out / 'logs'})", flush=True)
    runs: dict[str, list] = {}
    with bringup(policy_params, sim_params, out / "logs") as operator:
        for round_ in range(rounds):
            for task in default_catalog():
                episode = operator.run_episode(task, timeout=90.0)
                runs.setdefault(task.name, []).append(episode)
                outcome = f"solved in {episode.success_time:.1f} s" if episode.success else "failed"
                print(f"    round {round_ + 1}: {task.name:<13} {outcome}", flush=True)
        status = operator.status
    latency = {name: {"p50_ms": 1e3 * stats.p50, "p95_ms": 1e3 * stats.p95, "count": int(stats.count)}
               for name, stats in (("inference", status.inference_latency),
                                   ("sensor_to_action", status.sensor_to_action_latency),
                                   ("control_jitter", status.control_jitter))}
    return {"runs": runs, "latency": latency, "actions_published": int(status.actions_published),
            "actions_clamped": int(status.actions_clamped)}


def write_report(out: Path, offline: dict, ros: dict) -> tuple[Path, Path]:
    from kuavo_smolvla_ros.sim.report import plot_closed_loop

    runs = ros["runs"]
    ros_success = {task: sum(e.success for e in eps) / len(eps) for task, eps in runs.items()}
    report = {
        "offline": offline,
        "ros": {"success": ros_success, "latency": ros["latency"], "actions_published": ros["actions_published"],
                "actions_clamped": ros["actions_clamped"],
                "episodes": {task: [{"seed": e.seed, "success": e.success, "success_time": e.success_time,
                                     "object_start": e.object_start, "events": e.events, "wall_s": e.wall_s}
                                    for e in eps] for task, eps in runs.items()}},
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    trajectories = {task: [{"states": e.states, "object_start": e.object_start, "success": e.success} for e in eps]
                    for task, eps in runs.items()}
    png = plot_closed_loop(trajectories, {"simulated time": offline["success"], "over ROS": ros_success},
                           out / "report.png")
    return json_path, png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo")
    parser.add_argument("--force", action="store_true", help="delete --out and redo every step")
    parser.add_argument("--episodes", type=int, default=20, help="recorded demonstrations per task")
    parser.add_argument("--eval-episodes", type=int, default=10, help="simulated-time episodes per task")
    parser.add_argument("--ros-rounds", type=int, default=1, help="rounds of the four tasks over ROS")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the training (e.g. stage_overrides.epochs=4)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()

    start = banner(1, f"recording {args.episodes} expert demonstrations per task (ROS 1 bags, Kuavo topics)")
    bags = record_bags(out, args.episodes)
    done(start)
    start = banner(2, "converting the bags into LeRobot datasets")
    datasets = convert_bags(out, bags)
    done(start)
    start = banner(3, "the tiny SmolVLA: pretrained on other tasks (primitives; the repository's base), then the "
                      "real recipe on the four tasks in sequence, with replay")
    checkpoint = train(out, pretrained_base(out), datasets, args.overrides)
    done(start, str(checkpoint))
    start = banner(4, f"closed loop in simulated time: {args.eval_episodes} episodes per task")
    offline = evaluate_offline(checkpoint, args.eval_episodes)
    done(start, ", ".join(f"{t} {100 * v:.0f}%" for t, v in offline["success"].items()))
    start = banner(5, f"sim_robot + policy_node over ROS: {args.ros_rounds} round(s) of the four instructions")
    ros = run_over_ros(out, checkpoint, args.ros_rounds)
    done(start)
    banner(6, "report")
    json_path, png = write_report(out, offline, ros)
    print("    success per task (simulated time / over ROS):")
    ros_success = {t: sum(e.success for e in eps) / len(eps) for t, eps in ros["runs"].items()}
    for task in default_catalog():
        print(f"      {task.id} {task.name:<13} {100 * offline['success'][task.name]:5.0f}%   "
              f"{100 * ros_success[task.name]:5.0f}%")
    latency = ros["latency"]
    print(f"    node latency: inference p50 {latency['inference']['p50_ms']:.0f} ms, p95 "
          f"{latency['inference']['p95_ms']:.0f} ms; sensor-to-action p50 "
          f"{latency['sensor_to_action']['p50_ms']:.0f} ms; control jitter p95 "
          f"{latency['control_jitter']['p95_ms']:.1f} ms")
    print(f"    report: {json_path}\n            {png}")
    print(f"    demo finished in {(time.perf_counter() - total) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
