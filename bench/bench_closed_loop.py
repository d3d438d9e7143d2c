"""Closed-loop success on the simulated Kuavo: does the real recipe learn the four tasks from a pretrained
base, does the instruction select them, and does replay prevent forgetting?

One run, everything side by side on the same evaluation episodes (object seeds 100000..., same noise):

1. the scripted expert's demonstrations recorded as Kuavo ROS 1 bags, converted with the converter
   (cached under ``.cache/bench/closed_loop``);
2. the project's tiny base pretrained on the simulator's primitives (``training/pretrain_base.py``, cached)
   and a tiny random base;
3. four sequential runs on the four tasks (``demo_tiny`` config), same seed and data:
   (a) the real recipe (frozen vision encoder and VLM; action expert + state projection; the stage learning
   rates' ratios) from the pretrained base, with replay; (b) the same without replay; (c) the real recipe from
   the random base; (d) the everything-trainable recipe (vision and VLM trained too, 1e-3 every stage) from
   the random base, with replay;
4. every stage's ``best/`` checkpoint of every run evaluated on every task in simulated time
   (``kuavo_smolvla_ros.sim.evaluate``: the node's own controller, 10 Hz, 8 of 50 actions per chunk, 10
   denoising steps, the model latency the checkpoint measures here): task-by-stage success matrices (last
   column: the final model), validation losses and the forgetting report of each run, success by the
   object's conveyor slot.

Usage: python bench/bench_closed_loop.py [--episodes 40] [--stage-episodes 20] [--demos 30] [--epochs 12]
       [--runs a,b,c,d] [--retrain]
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
#: The compared runs: (base, Hydra overrides on top of demo_tiny).
EVERYTHING = ["policy.freeze_vision_encoder=false", "policy.train_expert_only=false", "lr_scale=1",
              "stage_overrides.lr=1e-3"]
RUNS = {
    "a": ("real recipe, pretrained base, replay", "pretrained", []),
    "b": ("real recipe, pretrained base, no replay", "pretrained", ["replay=false"]),
    "c": ("real recipe, random base, replay", "random", []),
    "d": ("everything trainable, random base, replay", "random", EVERYTHING),
}
#: About one epoch of a 30-demonstration task at batch 32 (the cosine decay spans the stage).
STEPS_PER_EPOCH = 75
PRETRAIN_CONFIG = ROOT / "training" / "configs" / "pretrain_tiny_base.yaml"
SHIPPED_BASE = ROOT / "assets" / "pretrained_base"


def prepare_data(demos: int) -> Path:
    from kuavo_smolvla_ros.data.convert import convert
    from kuavo_smolvla_ros.sim.record import RecordingConfig, StaleDemonstrations, record

    bags, datasets = HERE / "bags", HERE / "datasets"
    try:
        record(bags, list(default_catalog()), demos, "ros1", config=RecordingConfig(image_size=IMAGE))
    except StaleDemonstrations:  # another version of the expert: its bags and datasets (and runs) go
        for folder in (bags, datasets, *HERE.glob("train_*")):
            shutil.rmtree(folder, ignore_errors=True)
        print(">> the cached bags came from another demonstrator: recorded anew, runs trained anew", flush=True)
        record(bags, list(default_catalog()), demos, "ros1", config=RecordingConfig(image_size=IMAGE))
    for task in default_catalog():
        target = datasets / task.stage_dir
        convert([bags / task.stage_dir], target, task.name, resume=target.exists(), storage="png", workers=2,
                progress=False)
    return datasets


def base(kind: str) -> Path:
    """The pretrained base (``training/pretrain_base.py`` with its defaults: the repository's
    ``assets/pretrained_base``, or built once) or a tiny random one with the same tokenizer and settings."""
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint
    from kuavo_smolvla_ros.sim.primitives import primitive_catalog

    folder = HERE / f"{kind}_base"
    if kind == "pretrained":
        from kuavo_smolvla_ros.training.base_cache import ensure_base

        ensure_base(folder, ROOT / "training" / "pretrain_base.py", PRETRAIN_CONFIG,
                    say=lambda line: print(f">> {line}", flush=True), shipped=SHIPPED_BASE)
    elif not (folder / "model.safetensors").is_file():
        build_checkpoint(folder, TinyCheckpointSpec(image_shape=IMAGE, action_mode="relative", train_everything=True,
                                                    tokenizer_max_length=24,
                                                    extra_texts=[t.instruction for t in primitive_catalog()]))
    return folder


def base_tag(kind: str) -> str:
    """A run folder's suffix naming the pretrained base's settings (a run from another base is another run)."""
    if kind != "pretrained":
        return ""
    import hashlib
    import json

    settings = json.loads((base(kind) / "pretraining.json").read_text())["settings"]
    return "_base" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def train(key: str, datasets: Path, epochs: int, retrain: bool) -> Path:
    _, kind, overrides = RUNS[key]
    output = HERE / f"train_{key}_e{epochs}{base_tag(kind)}"
    final = output / default_catalog().tasks[-1].stage_dir / "best"
    if retrain:
        shutil.rmtree(output, ignore_errors=True)
    if not (final / "model.safetensors").is_file():
        command = [sys.executable, str(ROOT / "training" / "train_sequential.py"), "--config-name", "demo_tiny",
                   f"pretrained_path={base(kind)}", f"data_root={datasets}", f"output_root={output}",
                   f"data_cache_dir={HERE / 'data_cache'}", f"stage_overrides.epochs={epochs}",
                   f"stage_overrides.decay_steps={epochs * STEPS_PER_EPOCH}", *overrides]
        print(">> " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
    return output


def training_report(output: Path) -> dict:
    """The last stage's validation matrix (task -> held-out loss after each stage) and forgetting report."""
    import json

    results = json.loads((output / default_catalog().tasks[-1].stage_dir / "training_results.json").read_text())
    return {"validation_matrix": results["validation_matrix"], "forgetting": results["forgetting"]}


Rates = dict[str, dict[str, float]]


def success_matrix(output: Path, episodes: int, stage_episodes: int) -> tuple[Rates, Rates]:
    """(stage folder -> task -> success rate of that stage's best checkpoint, and for the last stage's:
    task -> conveyor slot -> success rate). The final checkpoint runs ``episodes`` per task, the earlier
    stages' ``stage_episodes`` (the first ones of the same seeds)."""
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
    from kuavo_smolvla_ros.sim.evaluate import evaluate, success_rates

    tasks = list(default_catalog())
    matrix, results = {}, {}
    for task in tasks:
        runtime = PolicyRuntime.open(output / task.stage_dir / "best")
        results = evaluate(runtime, tasks, episodes if task == tasks[-1] else stage_episodes, progress=False)
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
    parser.add_argument("--episodes", type=int, default=40, help="evaluation episodes per task of the final model")
    parser.add_argument("--stage-episodes", type=int, default=20,
                        help="evaluation episodes per task of stages 1-3's checkpoints (the matrix's other columns)")
    parser.add_argument("--demos", type=int, default=30, help="recorded demonstrations per task")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per stage")
    parser.add_argument("--runs", default="a,b,c,d", help="which of the runs a, b, c, d (comma-separated)")
    parser.add_argument("--retrain", action="store_true", help="train again even if cached")
    args = parser.parse_args()
    keys = [k.strip() for k in args.runs.split(",") if k.strip()]
    unknown = [k for k in keys if k not in RUNS]
    if unknown or not keys:
        parser.error(f"--runs: unknown run(s) {unknown}; known: {', '.join(RUNS)}")
    import torch

    start = time.perf_counter()
    datasets = prepare_data(args.demos)
    matrices, slots, reports = {}, {}, {}
    for key in keys:  # each run evaluated as soon as it is trained (its figures are printed then)
        output = train(key, datasets, args.epochs, args.retrain)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        print(f">> evaluating ({key}) {RUNS[key][0]} ({args.episodes} episodes per task for the final model, "
              f"{args.stage_episodes} for the earlier stages)", flush=True)
        matrices[key], slots[key] = success_matrix(output, args.episodes, args.stage_episodes)
        reports[key] = training_report(output)
    final = {key: matrix[list(matrix)[-1]] for key, matrix in matrices.items()}
    lines = [f"machine: {machine()}", f"{args.demos} demonstrations per task, {args.epochs} epochs per stage, "
             f"{args.episodes} evaluation episodes per task for the final model, {args.stage_episodes} for stages 1-3",
             "",
             *(f"({key}) {RUNS[key][0]}" for key in keys), "",
             "final model: success (%) per task, and forgetting (own stage -> stage 4, points)",
             "| task | " + " | ".join(f"({k})" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    tasks = list(default_catalog())
    for task in tasks:
        cells = []
        for key in keys:
            own = matrices[key][task.stage_dir][task.name]
            drop = "" if task == tasks[-1] else f" ({100 * (final[key][task.name] - own):+.0f})"
            cells.append(f"{100 * final[key][task.name]:.0f}{drop}")
        lines.append(f"| {task.name} | " + " | ".join(cells) + " |")
    for key in keys:
        lines += ["", *table(f"({key}) {RUNS[key][0]}", matrices[key])]
        losses = reports[key]["validation_matrix"]
        lines += ["held-out validation loss of each task after each stage:"]
        for task in tasks:
            row = [f"{losses[s][task.name]:.3f}" if task.name in losses.get(s, {}) else "-" for s in losses]
            lines.append(f"  {task.name:<13} " + "  ".join(row))
        lines += ["forgetting report after stage 4: " + ", ".join(
            f"{name} {entry['label']}" + (f" (loss x{entry['ratio']:.2f})" if entry.get("ratio") else "")
            for name, entry in reports[key]["forgetting"].items())]
    lines += ["", "final models: success (%) by the object's conveyor slot (x, m)"]
    for key in keys:
        lines += [f"({key})", "| task | " + " | ".join(next(iter(slots[key].values()))) + " |", "|---|---|---|---|"]
        for task, row in slots[key].items():
            lines.append(f"| {task} | " + " | ".join(f"{100 * v:.0f}" for v in row.values()) + " |")
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot({f"({k})": matrices[k] for k in keys}, RESULTS / "closed_loop.png")
    path = save("closed_loop", {"machine": machine(), "demos": args.demos, "epochs": args.epochs,
                                "episodes": args.episodes,
                                "stage_episodes": args.stage_episodes, "runs": {k: RUNS[k][0] for k in keys},
                                "matrices": matrices, "final": final, "by_slot": slots, "training": reports,
                                "seconds": time.perf_counter() - start})
    print(f"results: {path}, {RESULTS / 'closed_loop.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
