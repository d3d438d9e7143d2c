"""Run the curriculum: fixed statistics, stage chaining (stage k starts from stage k-1's best), the
forgetting report and the loss/matrix plot. ``training/train_sequential.py`` is its Hydra front end."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_smolvla_ros.atomic import write_json
from kuavo_smolvla_ros.training.common.checkpoints import written_checkpoints
from kuavo_smolvla_ros.training.common.config import number_setting
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
from kuavo_smolvla_ros.training.common.plots import two_panels
from kuavo_smolvla_ros.training.common.run_record import record_run
from kuavo_smolvla_ros.training.curriculum import Stage, find_stage, load_curriculum, without_replay
from kuavo_smolvla_ros.training.datasets import check_datasets, curriculum_stats
from kuavo_smolvla_ros.training.distributed import World, close_world, init_world
from kuavo_smolvla_ros.training.sequential_config import Settings, settings_from
from kuavo_smolvla_ros.training.trainer import (
    RESULTS_FILE,
    StageTrainer,
    checkpoint_chunk_size,
    stage_source,
    training_action_mode,
)

LOG = logging.getLogger(__name__)
STATS_FILE = "curriculum_stats.json"


def fixed_stats(stages: list[Stage], output_root: Path, write: bool = True, action_mode: str = "absolute",
                chunk_size: int | None = None) -> dict:
    """The curriculum's statistics: computed on the first run (and saved when ``write``, with the
    ``action_mode`` and ``chunk_size`` they were computed for), then read back so every later stage and run
    uses the very same values. Saved statistics of the other action mode (or, relative, of another chunk
    size) are refused: normalisation would not fit the targets."""
    path = output_root / STATS_FILE
    metas = check_datasets(stages)
    if path.is_file():
        saved = json.loads(path.read_text())
        saved_mode, saved_chunk = saved.pop("action_mode", "absolute"), saved.pop("chunk_size", None)
        if saved_mode != action_mode:
            raise TrainingConfigError(
                f"{path} holds statistics of {saved_mode} actions, but this run trains {action_mode} actions "
                f"(action_mode, or the init checkpoint's processors): use a new output_root, or "
                f"action_mode={saved_mode}")
        if action_mode == "relative" and saved_chunk != chunk_size:
            raise TrainingConfigError(f"{path} holds relative-action statistics for chunk_size {saved_chunk}, "
                                      f"but policy.chunk_size is {chunk_size}: use a new output_root")
        return {k: {s: np.asarray(v) for s, v in d.items()} for k, d in saved.items()}
    stats = {k: {s: np.asarray(v).tolist() for s, v in d.items()}
             for k, d in curriculum_stats(metas, action_mode, chunk_size).items()}
    if write:
        output_root.mkdir(parents=True, exist_ok=True)
        write_json(path, {**stats, "action_mode": action_mode, "chunk_size": chunk_size})
    return {k: {s: np.asarray(v) for s, v in d.items()} for k, d in stats.items()}


def init_checkpoint(stage: Stage, stages: list[Stage], pretrained_path: str | None, output_root: Path) -> Path:
    """Where a stage starts: the pretrained model for stage 1, else the previous stage's ``best/``."""
    if stage.number == 1:
        if not pretrained_path or pretrained_path == "???":
            raise TrainingConfigError("pretrained_path is not set: point it at a local SmolVLA checkpoint "
                                      "(e.g. a download of lerobot/smolvla_base)")
        return Path(pretrained_path)
    previous = stages[stage.number - 2]
    best = output_root / previous.output_name / "best"
    if not (best / "model.safetensors").is_file():
        raise TrainingConfigError(f"stage {stage.number} starts from stage {previous.number}'s best checkpoint, "
                                  f"but {best} does not exist: train task={previous.name} first")
    return best


def forgetting_lines(results: dict) -> list[str]:
    """The stage's summary for the log: its best validation loss, and each earlier task's forgetting label."""
    lines = [f"stage {results['stage']} ({results['task_name']}): best validation loss "
             f"{results['best_validation_loss']:.4f} at epoch {results['best_epoch']}"]
    for task, entry in results["forgetting"].items():
        own = f", {entry['ratio']:.2f} x its loss after its own stage" if entry["ratio"] else ""
        lines.append(f"  {task}: validation loss {entry['loss']:.4f}{own} -> {entry['label']}")
    return lines


def plot(results: dict, path: Path) -> None:
    """Loss curves (train, per-task validation) and the task-by-stage validation matrix, as a PNG at ``path``."""
    with two_panels(path) as (figure, curves, grid):
        history = results["history"]
        epochs = [h["epoch"] for h in history]
        curves.plot(epochs, [h["train_loss"] for h in history], label="train", color="black")
        for task in history[-1]["validation"] if history else []:
            points = [(h["epoch"], h["validation"][task]) for h in history if task in h["validation"]]
            # markers: a stage validated once (or every few epochs) still shows its points
            curves.plot(*zip(*points, strict=True), "o-", markersize=4, label=f"validation {task}")
        curves.set(xlabel="epoch", ylabel="flow-matching loss",
                   title=f"stage {results['stage']}: {results['task_name']}")
        curves.legend()
        matrix = results["validation_matrix"]
        stage_names = list(matrix)
        task_names = sorted({t for row in matrix.values() for t in row}, key=lambda t: stage_names.index(
            next((s for s in stage_names if s.endswith(t)), stage_names[-1])))
        values = np.array([[matrix[s].get(t, np.nan) for s in stage_names] for t in task_names])
        image = grid.imshow(values, cmap="viridis")
        grid.set_xticks(range(len(stage_names)), stage_names, rotation=30, ha="right")
        grid.set_yticks(range(len(task_names)), task_names)
        grid.set(title="validation loss: task (row) after stage (column)")
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                grid.text(j, i, f"{value:.3f}", ha="center", va="center", color="white")
        figure.colorbar(image, ax=grid)


def run(cfg: Mapping[str, Any], configs_dir: Path) -> list[dict]:
    """Train the configured stage (``stages: one``) or all of them (``stages: all``); returns their results."""
    stages = load_curriculum(configs_dir, list(cfg["curriculum"]), cfg["data_root"],
                             overrides={k: v for k, v in (cfg.get("stage_overrides") or {}).items()
                                        if v is not None},
                             lr_scale=number_setting(cfg, "lr_scale", float, default=1.0))
    if cfg["stages"] not in ("one", "all"):
        raise TrainingConfigError(f"stages must be 'one' or 'all', got {cfg['stages']!r}")
    if not cfg.get("replay", True):
        stages = without_replay(stages)
    todo = stages if cfg["stages"] == "all" else [find_stage(stages, str(cfg["task"]))]
    settings = settings_from(cfg)
    world = init_world(settings.device)
    try:
        check_datasets(stages)  # every dataset, before any training
        results = [_run_stage(stage, stages, cfg, settings, world) for stage in todo]
    finally:
        close_world(world)
    if world.is_main:
        for line in checkpoint_lines(todo, results, settings.output_root):
            LOG.info(line)
    return results


def checkpoint_lines(stages: list[Stage], results: list[dict], output_root: Path) -> list[str]:
    """The end-of-run summary: every checkpoint folder of the trained ``stages`` (best/, last/, epoch{N}/), one
    line each with its path."""
    lines = ["checkpoints written:"]
    for stage, result in zip(stages, results, strict=True):
        for folder in written_checkpoints(output_root / stage.output_name):
            what = {"best": f"best (epoch {result.get('best_epoch')}, the one to use)",
                    "last": "last (with the training state to resume)"}.get(folder.name, folder.name)
            lines.append(f"  stage {stage.number} ({stage.task.name}) {what}: {folder}")
    return lines


def _run_stage(stage: Stage, stages: list[Stage], cfg: Mapping[str, Any], settings: Settings, world: World) -> dict:
    init = init_checkpoint(stage, stages, cfg.get("pretrained_path"), settings.output_root)
    source = stage_source(stage, settings, init)
    mode = training_action_mode(source, settings.action_mode)
    chunk = settings.policy.get("chunk_size") or checkpoint_chunk_size(source)
    stats = fixed_stats(stages, settings.output_root, write=world.is_main, action_mode=mode, chunk_size=int(chunk))
    settings = replace(settings, action_mode=mode)
    previous = {}
    if stage.number > 1:
        previous_file = settings.output_root / stages[stage.number - 2].output_name / RESULTS_FILE
        previous = json.loads(previous_file.read_text()) if previous_file.is_file() else {}
    if world.is_main:  # the settings this stage starts with: a later command with others is refused
        record_run(settings.output_root / stage.output_name, cfg)
    trainer = StageTrainer(stage, stages[: stage.number], init, stats, settings, previous, world)
    results = trainer.run()
    if world.is_main:
        for line in forgetting_lines(results):
            LOG.info(line)
        LOG.info("stage %d checkpoint to use: %s (TensorBoard: tensorboard --logdir %s)", stage.number,
                 trainer.out / "best", settings.output_root)
        trainer.writer.add_text("forgetting", "\n".join(forgetting_lines(results)), trainer.state["step"])
        trainer.writer.close()
        plot(results, trainer.out / "training.png")
    return results
