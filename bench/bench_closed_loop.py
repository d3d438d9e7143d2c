"""Closed-loop success on the simulated Kuavo: does the pipeline learn the four tasks, does the instruction
select them, and does replay prevent forgetting?

One run, everything side by side on the same evaluation episodes (object seeds 100000...):

1. the scripted expert's demonstrations recorded as Kuavo ROS 1 bags, converted with the converter
   (cached under ``.cache/bench/closed_loop``);
2. the tiny SmolVLA trained on the four tasks in sequence twice, from the same base and seed: with the
   curriculum's replay (``demo_tiny`` config) and without it (``replay=false``: each stage sees only its
   own task), both cached;
3. every stage's ``best/`` checkpoint of both runs evaluated on every task in simulated time
   (``kuavo_smolvla_ros.sim.evaluate``: the node's chunking and safety filter, 10 Hz, 8 of 50 actions per
   chunk, 10 denoising steps): the task-by-stage success matrices, whose last column is the final model.

Usage: python bench/bench_closed_loop.py [--episodes 20] [--demos 30] [--epochs 12] [--retrain]
Prints the tables, writes outputs/bench/closed_loop.json and closed_loop.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import CACHE, RESULTS, ROOT, machine, save

from kuavo_smolvla_ros.tasks import default_catalog

HERE = CACHE / "closed_loop"
IMAGE = (64, 64)
RUNS = {"replay": [], "no replay": ["replay=false"]}
#: About one epoch of a 30-demonstration task at batch 32 (the cosine decay spans the stage).
STEPS_PER_EPOCH = 75


def prepare_data(demos: int) -> Path:
    from kuavo_smolvla_ros.data.convert import convert
    from kuavo_smolvla_ros.sim.record import RecordingConfig, record

    bags, datasets = HERE / "bags", HERE / "datasets"
    record(bags, list(default_catalog()), demos, "ros1", config=RecordingConfig(image_size=IMAGE))
    for task in default_catalog():
        target = datasets / task.stage_dir
        convert([bags / task.stage_dir], target, task.name, resume=target.exists(), storage="png", workers=2,
                progress=False)
    return datasets


def train(name: str, overrides: list[str], datasets: Path, epochs: int, retrain: bool) -> Path:
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

    base = HERE / "base"
    if not (base / "model.safetensors").is_file():
        build_checkpoint(base, TinyCheckpointSpec(image_shape=IMAGE, action_mode="relative", train_everything=True,
                                                  tokenizer_max_length=24))
    output = HERE / f"train_{name.replace(' ', '_')}_e{epochs}"
    final = output / default_catalog().tasks[-1].stage_dir / "best"
    if retrain:
        shutil.rmtree(output, ignore_errors=True)
    if not (final / "model.safetensors").is_file():
        command = [sys.executable, str(ROOT / "training" / "train_sequential.py"), "--config-name", "demo_tiny",
                   f"pretrained_path={base}", f"data_root={datasets}", f"output_root={output}",
                   f"data_cache_dir={HERE / 'data_cache'}", f"stage_overrides.epochs={epochs}",
                   f"stage_overrides.decay_steps={epochs * STEPS_PER_EPOCH}", *overrides]
        print(">> " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
    return output


Rates = dict[str, dict[str, float]]


def success_matrix(output: Path, episodes: int) -> tuple[Rates, Rates]:
    """(stage folder -> task -> success rate of that stage's best checkpoint, and for the last stage's:
    task -> conveyor slot -> success rate)."""
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
    from kuavo_smolvla_ros.sim.evaluate import evaluate, success_rates

    tasks = list(default_catalog())
    matrix, results = {}, {}
    for task in tasks:
        runtime = PolicyRuntime.open(output / task.stage_dir / "best")
        results = evaluate(runtime, tasks, episodes, progress=False)
        matrix[task.stage_dir] = success_rates(results)
        rates = "  ".join(f"{t} {100 * v:.0f}%" for t, v in matrix[task.stage_dir].items())
        print(f"   after {task.stage_dir}: {rates}", flush=True)
    return matrix, by_slot(results)


def by_slot(results) -> dict[str, dict[str, float]]:
    """Success per task and per conveyor slot of the object (where only the cameras say it is)."""
    from kuavo_smolvla_ros.sim.scenes import CONVEYOR_SLOTS

    table = {}
    for task, runs in results.items():
        slots = {f"{x:+.2f}": [] for x in CONVEYOR_SLOTS}
        for run in runs:
            nearest = min(CONVEYOR_SLOTS, key=lambda x: abs(x - run.object_start[0]))
            slots[f"{nearest:+.2f}"].append(run.success)
        table[task] = {slot: float(np.mean(v)) if v else float("nan") for slot, v in slots.items()}
    return table


def table(name: str, matrix: dict[str, dict[str, float]]) -> list[str]:
    stages = list(matrix)
    lines = [f"{name}: success (%) of each task (row) after each stage (column)",
             "| task | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    for task in default_catalog():
        lines.append(f"| {task.name} | " + " | ".join(f"{100 * matrix[s][task.name]:.0f}" for s in stages) + " |")
    return lines


def plot(matrices: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t.name for t in default_catalog()]
    figure, axes = plt.subplots(1, len(matrices), figsize=(5.5 * len(matrices), 4.2))
    for axis, (name, matrix) in zip(np.atleast_1d(axes), matrices.items(), strict=True):
        stages = list(matrix)
        values = np.array([[100 * matrix[s][t] for s in stages] for t in tasks])
        axis.imshow(values, cmap="RdYlGn", vmin=0, vmax=100)
        axis.set_xticks(range(len(stages)), [s.split("_", 1)[0] for s in stages])
        axis.set_yticks(range(len(tasks)), tasks)
        axis.set(title=f"{name}: success % (task after stage)", xlabel="after stage")
        for (i, j), value in np.ndenumerate(values):
            axis.text(j, i, f"{value:.0f}", ha="center", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per task and checkpoint")
    parser.add_argument("--demos", type=int, default=30, help="recorded demonstrations per task")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per stage")
    parser.add_argument("--retrain", action="store_true", help="train again even if cached")
    args = parser.parse_args()
    import torch

    start = time.perf_counter()
    datasets = prepare_data(args.demos)
    outputs = {name: train(name, overrides, datasets, args.epochs, args.retrain) for name, overrides in RUNS.items()}
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    matrices, slots = {}, {}
    for name, output in outputs.items():
        print(f">> evaluating {name} ({args.episodes} episodes per task and stage)", flush=True)
        matrices[name], slots[name] = success_matrix(output, args.episodes)
    final = {name: matrix[list(matrix)[-1]] for name, matrix in matrices.items()}
    lines = [f"machine: {machine()}", f"{args.demos} demonstrations per task, {args.epochs} epochs per stage, "
             f"{args.episodes} evaluation episodes per task and checkpoint", "",
             "final model: success (%) per task", "| task | with replay | without replay |", "|---|---|---|"]
    for task in default_catalog():
        lines.append(f"| {task.name} | {100 * final['replay'][task.name]:.0f} | "
                     f"{100 * final['no replay'][task.name]:.0f} |")
    for name, matrix in matrices.items():
        lines += ["", *table(name, matrix)]
    lines += ["", "final model with replay: success (%) by the object's conveyor slot (x, m)",
              "| task | " + " | ".join(next(iter(slots["replay"].values()))) + " |", "|---|---|---|---|"]
    for task, row in slots["replay"].items():
        lines.append(f"| {task} | " + " | ".join(f"{100 * v:.0f}" for v in row.values()) + " |")
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(matrices, RESULTS / "closed_loop.png")
    path = save("closed_loop", {"machine": machine(), "demos": args.demos, "epochs": args.epochs,
                                "episodes": args.episodes, "matrices": matrices, "final": final, "by_slot": slots,
                                "seconds": time.perf_counter() - start})
    print(f"results: {path}, {RESULTS / 'closed_loop.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
