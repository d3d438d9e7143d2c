"""Reflow: is the few-step student faster, as accurate, and as successful as its 10-step teacher?

Everything side by side in one run, on the same inputs:

1. the teacher: the closed-loop benchmark's final tiny checkpoint (four tasks in sequence with replay, on the
   simulated Kuavo's demonstrations; cached, shared with bench_closed_loop.py);
2. the student: ``training/train_reflow.py --config-name reflow_demo_tiny`` (2 steps; cached);
3. inference time per chunk through the node's runtime (``PolicyRuntime.predict_chunk``): teacher at 10 steps,
   student at 2 and 1, interleaved; the tiny checkpoints and the full-size architecture (450 M, random weights:
   the student is the same architecture, so its time is the runtime's at 1 or 2 steps), plus the full-size
   reflow set-up (VLM instances, total and trainable parameters);
4. fidelity on held-out frames of the four tasks (episodes neither model trained on): mean squared error
   (robot units) of each chunk against the teacher's 10-step chunk for the same observation and noise; the
   baseline is the teacher itself at 1 and 2 steps, undistilled;
5. closed-loop success per task in the simulator (the same object seeds and noise streams for every model),
   and each model's per-episode agreement with the teacher's outcomes.

Usage: python bench/bench_reflow.py [--teacher-epochs 12] [--steps 6000] [--per-observation 2] [--episodes 40]
       [--sizes tiny full]
Prints the tables, writes outputs/bench/reflow.json and reflow.png.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_closed_loop import prepare_data
from bench_closed_loop import train as train_teacher
from common import CACHE, RESULTS, ROOT, interleaved, machine, median_ms, save

from kuavo_smolvla_ros.features import camera_of
from kuavo_smolvla_ros.tasks import default_catalog

HERE = CACHE / "reflow"
#: (label, which checkpoint, denoising steps) compared everywhere.
MODELS = [("teacher 10", "teacher", 10), ("student 2", "student", 2), ("student 1", "student", 1),
          ("teacher 2", "teacher", 2), ("teacher 1", "teacher", 1)]
TIMED = MODELS[:3]
#: The control: the teacher itself with other noise (another sample of the same policy), for the scale of
#: the differences the noise alone makes (fidelity) and of the episode-to-episode spread (closed loop).
OTHER_NOISE = "teacher 10, other noise"


def distil(teacher: Path, datasets: Path, steps: int, per_observation: int, tag: str) -> Path:
    suffix = "" if per_observation == 1 else f"_p{per_observation}"
    output = HERE / f"student_{tag}_2step_s{steps}{suffix}"
    if not (output / "best" / "model.safetensors").is_file():
        command = [sys.executable, str(ROOT / "training" / "train_reflow.py"), "--config-name", "reflow_demo_tiny",
                   f"teacher={teacher}", f"data_root={datasets}", f"output_dir={output}", f"steps={steps}",
                   f"data_cache_dir={CACHE / 'closed_loop' / 'data_cache'}", f"pairs.cache_dir={HERE / 'pairs'}",
                   f"pairs.per_observation={per_observation}"]
        print(">> " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
    return output


def open_models(teacher: Path, student: Path) -> dict:
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime

    opened = {"teacher": PolicyRuntime.open(teacher), "student": PolicyRuntime.open(student)}
    assert opened["student"].num_steps == 2, "the student checkpoint's default is its distilled step count"
    return opened


def predict(runtime, steps: int, observation, noise) -> np.ndarray:
    runtime.num_steps = steps
    return runtime.predict_chunk(observation, noise=noise)


def timing_rows(runtimes: dict, observation, repeats: int, size: str) -> dict:
    noise = runtimes["teacher"].make_noise(0)
    times = interleaved({label: (lambda r=runtimes[which], s=steps: predict(r, s, observation, noise))
                         for label, which, steps in TIMED}, repeats=repeats, warmup=2)
    medians = {label: median_ms(samples) for label, samples in times.items()}
    base = medians["teacher 10"]
    # time = fixed + steps * per_step: the fixed part (processing, the VLM prefix over the cameras) bounds
    # what fewer steps can gain
    per_step = (base - medians["student 1"]) / 9
    fixed = medians["student 1"] - per_step
    return {"size": size, "repeats": repeats, "median_ms": medians,
            "speedup": {label: base / value for label, value in medians.items()},
            "per_step_ms": per_step, "fixed_ms": fixed, "speedup_bound": base / max(fixed, 1e-9)}


def full_size(repeats: int) -> tuple[dict, dict]:
    """Timing of the full-size architecture at 10/2/1 steps, and its reflow set-up (parameters, VLM count)."""
    import torch
    from bench_runtime import checkpoint_for

    from kuavo_smolvla_ros.policy.checkpoint import inspect_checkpoint
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
    from kuavo_smolvla_ros.training.reflow_models import build_reflow_models

    path = checkpoint_for("full")
    models = build_reflow_models(inspect_checkpoint(path), "cpu", 10, 2)
    setup = {"total_parameters": models.total_parameters, "trainable_parameters": models.trainable_parameters,
             "trainable_share": models.trainable_share, "vlm_instances": models.vlm_instances,
             "vlm_loads": models.vlm_loads}
    del models
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    runtime = PolicyRuntime.open(path)
    observation = runtime.dummy_observation()
    row = timing_rows({"teacher": runtime, "student": runtime}, observation, repeats, "full (random weights)")
    return row, setup


def held_out_observations(datasets: Path, frames: int) -> dict[str, list]:
    """``frames`` evenly spread held-out frames per task (the reflow run's validation episodes)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from kuavo_smolvla_ros.data.dataset import REPO_ID
    from kuavo_smolvla_ros.policy.runtime import Observation
    from kuavo_smolvla_ros.training.curriculum import load_curriculum
    from kuavo_smolvla_ros.training.datasets import stage_metadata
    from kuavo_smolvla_ros.training.pairs import evenly_spaced
    from kuavo_smolvla_ros.training.sampling import split_episodes

    stages = load_curriculum(ROOT / "training" / "configs", [f"tasks/{t.stage_dir}" for t in default_catalog()],
                             datasets)
    observations = {}
    for stage in stages:
        total = stage_metadata(stage).total_episodes
        _, held_out = split_episodes(total, stage.validation_episodes, seed=1000 + stage.task.id)
        dataset = LeRobotDataset(REPO_ID, root=stage.dataset, episodes=held_out, video_backend="pyav")
        rows = []
        for index in evenly_spaced(len(dataset), frames):
            item = dataset[index]
            images = {k.split(".")[-1]: (v.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                      for k, v in item.items() if camera_of(k)}
            rows.append(Observation(images, item["observation.state"].numpy(), item["task"]))
        observations[stage.task.name] = rows
    return observations


def fidelity(runtimes: dict, observations: dict[str, list]) -> dict[str, dict[str, float]]:
    """Model label -> task -> MSE (robot units) against the teacher's 10-step chunk, same observation and noise."""
    errors = {label: {} for label in [label for label, _, _ in MODELS[1:]] + [OTHER_NOISE]}
    for task, rows in observations.items():
        squared = {label: [] for label in errors}
        for number, observation in enumerate(rows):
            noise = runtimes["teacher"].make_noise(number)
            reference = predict(runtimes["teacher"], 10, observation, noise)
            chunks = {label: predict(runtimes[which], steps, observation, noise) for label, which, steps in MODELS[1:]}
            chunks[OTHER_NOISE] = predict(runtimes["teacher"], 10, observation,
                                          runtimes["teacher"].make_noise(number + 1_000_000))
            for label, chunk in chunks.items():
                squared[label].append(float(np.mean((chunk - reference) ** 2)))
        for label, values in squared.items():
            errors[label][task] = float(np.mean(values))
    return errors


def closed_loop(runtimes: dict, episodes: int) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Success rates per model and task, and each model's per-episode agreement with the 10-step teacher.

    Every model runs the same episodes (object seed and noise stream), so agreement is the share of
    episodes whose outcome (success or not) equals the teacher's: a paired comparison, finer than rates.
    """
    from kuavo_smolvla_ros.sim.evaluate import evaluate, success_rates

    rates, outcomes = {}, {}
    runs = [(label, which, steps, 0) for label, which, steps in MODELS[:4]] + [(OTHER_NOISE, "teacher", 10, 1)]
    for label, which, steps, noise_seed in runs:
        runtimes[which].num_steps = steps
        results = evaluate(runtimes[which], list(default_catalog()), episodes, noise_seed=noise_seed, progress=False)
        rates[label] = success_rates(results)
        outcomes[label] = {task: np.array([r.success for r in done]) for task, done in results.items()}
        print(f"   {label}: " + "  ".join(f"{t} {100 * v:.0f}%" for t, v in rates[label].items()), flush=True)
    teacher = outcomes["teacher 10"]
    agreement = {label: {task: float(np.mean(row[task] == teacher[task])) for task in row}
                 for label, row in outcomes.items() if label != "teacher 10"}
    return rates, agreement


def plot(timing: list[dict], errors: dict, rates: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t.name for t in default_catalog()]
    figure, (speed, fid, success) = plt.subplots(1, 3, figsize=(17, 4.5))
    width = 0.8 / max(len(timing), 1)
    labels = [label for label, _, _ in TIMED]
    for index, row in enumerate(timing):
        speed.bar(np.arange(len(labels)) + index * width, [row["speedup"][k] for k in labels], width, label=row["size"])
    speed.set_xticks(np.arange(len(labels)) + width * (len(timing) - 1) / 2, labels)
    speed.axhline(3, color="grey", linestyle="--", linewidth=1)
    speed.set(ylabel="speed-up vs teacher at 10 steps", title="inference time per chunk (node runtime)")
    speed.legend()
    width = 0.8 / len(errors)
    for index, (label, row) in enumerate(errors.items()):
        fid.bar(np.arange(len(tasks)) + index * width, [row[t] for t in tasks], width, label=label)
    fid.set_xticks(np.arange(len(tasks)) + width * (len(errors) - 1) / 2, tasks)
    fid.set(yscale="log", ylabel="MSE vs teacher at 10 steps (robot units)", title="held-out fidelity")
    fid.legend()
    width = 0.8 / len(rates)
    for index, (label, row) in enumerate(rates.items()):
        success.bar(np.arange(len(tasks)) + index * width, [100 * row[t] for t in tasks], width, label=label)
    success.set_xticks(np.arange(len(tasks)) + width * (len(rates) - 1) / 2, tasks)
    success.set(ylabel="success %", title="closed loop in the simulator", ylim=(0, 100))
    success.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher-epochs", type=int, default=12, help="epochs per stage of the cached teacher")
    parser.add_argument("--demos", type=int, default=30, help="recorded demonstrations per task")
    parser.add_argument("--steps", type=int, default=6000, help="reflow steps")
    parser.add_argument("--per-observation", type=int, default=2, help="reflow pairs (noises) per frame")
    parser.add_argument("--episodes", type=int, default=40, help="closed-loop episodes per task and model")
    parser.add_argument("--frames", type=int, default=32, help="held-out frames per task for fidelity")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per model (tiny 30, full 5)")
    args = parser.parse_args()
    import json

    import torch

    start = time.perf_counter()
    datasets = prepare_data(args.demos)
    teacher = train_teacher("a", datasets, args.teacher_epochs, False)  # the real recipe, pretrained base, replay
    teacher = teacher / default_catalog().tasks[-1].stage_dir / "best"
    student = distil(teacher, datasets, args.steps, args.per_observation, f"e{args.teacher_epochs}")
    reflow = json.loads((student / "reflow_results.json").read_text())
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    runtimes = open_models(teacher, student / "best")
    observations = held_out_observations(datasets, args.frames)

    print(">> inference time per chunk", flush=True)
    timing = []
    if "tiny" in args.sizes:
        observation = observations[default_catalog().tasks[0].name][0]
        timing.append(timing_rows(runtimes, observation, args.repeats or 30, "tiny (trained)"))
    setup = None
    if "full" in args.sizes:
        row, setup = full_size(args.repeats or 5)
        timing.append(row)
    print(">> fidelity on held-out frames", flush=True)
    errors = fidelity(runtimes, observations)
    print(f">> closed loop ({args.episodes} episodes per task and model)", flush=True)
    rates, agreement = closed_loop(runtimes, args.episodes)

    tasks = [t.name for t in default_catalog()]
    lines = [f"machine: {machine()}",
             f"teacher {teacher} ({args.teacher_epochs} epochs per stage); student {student / 'best'} "
             f"({reflow['steps']} reflow steps, {sum(reflow['pairs'].values())} pairs)", "",
             f"reflow set-up (tiny): VLM loaded {reflow['vlm_loads']}x, {reflow['vlm_instances']} instance; "
             f"{reflow['trainable_parameters']:,} of {reflow['total_parameters']:,} parameters trainable"]
    if setup:
        lines.append(f"reflow set-up (full size): VLM loaded {setup['vlm_loads']}x, {setup['vlm_instances']} instance; "
                     f"{setup['trainable_parameters']:,} of {setup['total_parameters']:,} parameters trainable "
                     f"({100 * setup['trainable_share']:.2f}%)")
    lines += ["", "inference time per chunk, median ms (speed-up vs teacher at 10 steps)",
              "| architecture | " + " | ".join(label for label, _, _ in TIMED)
              + " | fixed part | per step | bound (0 steps) |", "|---|---|---|---|---|---|---|"]
    for row in timing:
        lines.append(f"| {row['size']} | " + " | ".join(
            f"{row['median_ms'][k]:.1f} ({row['speedup'][k]:.2f}x)" for k, _, _ in TIMED)
            + f" | {row['fixed_ms']:.1f} | {row['per_step_ms']:.1f} | {row['speedup_bound']:.2f}x |")
    lines += ["", f"fidelity: MSE vs the teacher's 10-step chunk (robot units), {args.frames} held-out frames per task",
              "| model | " + " | ".join(tasks) + " | mean |", "|---|" + "---|" * (len(tasks) + 1)]
    for label, row in errors.items():
        mean = np.mean(list(row.values()))
        lines.append(f"| {label} | " + " | ".join(f"{row[t]:.2e}" for t in tasks) + f" | {mean:.2e} |")
    lines += ["", f"closed loop: success % per task ({args.episodes} episodes each, same seeds)",
              "| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for label, row in rates.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * row[t]:.0f}" for t in tasks) + " |")
    lines += ["", "closed loop: % of episodes with the same outcome as the teacher at 10 steps (same object and noise)",
              "| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for label, row in agreement.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * row[t]:.0f}" for t in tasks) + " |")
    speed = [row["speedup"]["student 2"] for row in timing]
    gap = max(abs(rates["student 2"][t] - rates["teacher 10"][t]) for t in tasks)
    spread = max(abs(rates[OTHER_NOISE][t] - rates["teacher 10"][t]) for t in tasks)
    closer = np.mean(list(errors["student 2"].values())) < np.mean(list(errors["teacher 2"].values()))
    lines += ["", f"goal >= 3x faster at 2 steps: {'met' if min(speed) >= 3 else 'NOT met'} "
                  f"({', '.join(f'{s:.2f}x' for s in speed)})",
              f"goal 2-step student closer to the teacher than the 2-step teacher: {'met' if closer else 'NOT met'}",
              f"goal closed loop within 5 points on every task: {'met' if gap <= 0.05 + 1e-9 else 'NOT met'} "
              f"(largest gap {100 * gap:.0f} points; the teacher with other noise: {100 * spread:.0f} points)"]
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(timing, errors, rates, RESULTS / "reflow.png")
    path = save("reflow", {"machine": machine(), "teacher": str(teacher), "student": str(student / "best"),
                           "reflow": {k: reflow[k] for k in ("steps", "pairs", "vlm_loads", "vlm_instances",
                                                              "total_parameters", "trainable_parameters")},
                           "full_size_setup": setup, "timing": timing, "fidelity": errors, "closed_loop": rates,
                           "agreement_with_teacher": agreement,
                           "episodes": args.episodes, "frames": args.frames, "seconds": time.perf_counter() - start})
    print(f"results: {path}, {RESULTS / 'reflow.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
