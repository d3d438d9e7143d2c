"""The curriculum: the four stages of ``training/configs/tasks/*.yaml``, checked against the task list.

A stage names its task (an id, name or alias of ``config/tasks.yaml``), its dataset, its recipe (epochs,
learning rate, warmup and decay steps), its replay mix over the tasks seen so far and its held-out
validation episodes. Every problem is reported with the file and key it comes from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from kuavo_smolvla_ros.tasks import Task, TaskCatalog, default_catalog
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError

STAGE_KEYS = {"task", "dataset", "epochs", "lr", "warmup_steps", "decay_steps", "replay", "validation_episodes"}

@dataclass(frozen=True)
class Stage:
    """One stage of the curriculum (``number`` counts from 1)."""

    number: int
    name: str  # the config name, e.g. "tasks/task2_weighing"
    task: Task
    dataset: Path
    epochs: int
    lr: float
    warmup_steps: int
    decay_steps: int
    replay: Mapping[str, float]  # task name -> share of each batch
    validation_episodes: float | tuple[int, ...]

    @property
    def output_name(self) -> str:
        """The stage's output folder name, ``task{id}_{name}``."""
        return self.task.stage_dir


def _stage_file(configs_dir: Path, name: str) -> Path:
    path = configs_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.relative_to(configs_dir).with_suffix("").as_posix() for p in configs_dir.glob("tasks/*.yaml"))
        raise TrainingConfigError(f"no stage config {path} (known: {known})")
    return path


def _number(data: Mapping[str, Any], key: str, where: Path, kind: type, minimum: float) -> Any:
    try:
        value = kind(data[key])
    except KeyError:
        raise TrainingConfigError(f"{where}: missing key '{key}'") from None
    except (TypeError, ValueError):
        raise TrainingConfigError(f"{where}: '{key}' must be a {kind.__name__}, got {data[key]!r}") from None
    if value < minimum:
        raise TrainingConfigError(f"{where}: '{key}' must be >= {minimum}, got {value}")
    return value


def load_stage(configs_dir: Path, name: str, number: int, data_root: Path, catalog: TaskCatalog,
               seen: Sequence[Task], overrides: Mapping[str, Any] | None = None) -> Stage:
    """Stage ``number`` from ``configs_dir/name.yaml`` with ``overrides`` on top; ``seen`` are the tasks of
    the stages before it."""
    path = _stage_file(configs_dir, name)
    data = (yaml.safe_load(path.read_text()) or {}) | dict(overrides or {})
    unknown = sorted(set(data) - STAGE_KEYS)
    if unknown:
        raise TrainingConfigError(f"{path}: unknown key(s) {unknown} (known: {sorted(STAGE_KEYS)})")
    try:
        task = catalog.get(data.get("task", ""))
    except KeyError as err:
        raise TrainingConfigError(f"{path}: 'task': {err.args[0]}") from None
    if "dataset" not in data:
        raise TrainingConfigError(f"{path}: missing key 'dataset'")
    replay = _replay(data.get("replay") or {task.name: 1.0}, path, catalog, [*seen, task], task)
    episodes = data.get("validation_episodes", 0.1)
    if isinstance(episodes, list):
        episodes = tuple(int(e) for e in episodes)
    elif not 0 <= float(episodes) < 1:
        raise TrainingConfigError(f"{path}: 'validation_episodes' must be a fraction in [0, 1) or a list of indices")
    return Stage(
        number=number, name=name, task=task, dataset=data_root / str(data["dataset"]),
        epochs=_number(data, "epochs", path, int, 1), lr=_number(data, "lr", path, float, 0.0),
        warmup_steps=_number(data, "warmup_steps", path, int, 0),
        decay_steps=_number(data, "decay_steps", path, int, 1), replay=replay,
        validation_episodes=episodes if isinstance(episodes, tuple) else float(episodes))


def _replay(raw: Mapping[str, Any], path: Path, catalog: TaskCatalog, allowed: list[Task], current: Task
            ) -> dict[str, float]:
    weights: dict[str, float] = {}
    for key, value in dict(raw).items():
        try:
            task = catalog.get(str(key))
        except KeyError as err:
            raise TrainingConfigError(f"{path}: 'replay': {err.args[0]}") from None
        if task not in allowed:
            raise TrainingConfigError(f"{path}: 'replay' names task {task.name}, which is not trained before or "
                                      f"in this stage")
        if float(value) <= 0:
            raise TrainingConfigError(f"{path}: 'replay' weight of {task.name} must be > 0, got {value}")
        weights[task.name] = float(value)
    if current.name not in weights:
        raise TrainingConfigError(f"{path}: 'replay' must include the stage's own task {current.name}")
    total = sum(weights.values())
    if abs(total - 1.0) > 1e-6:
        raise TrainingConfigError(f"{path}: 'replay' weights sum to {total:g}, not 1")
    return weights


def load_curriculum(configs_dir: str | Path, names: Sequence[str], data_root: str | Path,
                    catalog: TaskCatalog | None = None, overrides: Mapping[str, Any] | None = None,
                    lr_scale: float = 1.0) -> list[Stage]:
    """Every stage of the curriculum, in order (a task may appear only once); ``overrides`` (e.g.
    ``{"epochs": 2}``) apply to every stage, then every stage's learning rate is multiplied by ``lr_scale``
    (one factor keeps the recipe's ratios between stages, e.g. for a model of another size)."""
    if not (lr_scale > 0 and math.isfinite(lr_scale)):
        raise TrainingConfigError(f"lr_scale must be a finite number > 0, got {lr_scale}")
    catalog = catalog or default_catalog()
    stages: list[Stage] = []
    for number, name in enumerate(names, start=1):
        stage = load_stage(Path(configs_dir), name, number, Path(data_root), catalog, [s.task for s in stages],
                           overrides)
        stage = replace(stage, lr=stage.lr * lr_scale)
        if any(s.task == stage.task for s in stages):
            raise TrainingConfigError(f"curriculum: task {stage.task.name} appears twice")
        stages.append(stage)
    if not stages:
        raise TrainingConfigError("curriculum: no stages")
    return stages


def find_stage(stages: Sequence[Stage], name: str) -> Stage:
    """The stage whose config is ``name`` (``tasks/task2_weighing``) or whose task ``name`` names."""
    for stage in stages:
        if stage.name == name or stage.name.rsplit("/", 1)[-1] == name:
            return stage
    for stage in stages:
        if name in (stage.task.name, str(stage.task.id), *stage.task.aliases):
            return stage
    raise TrainingConfigError(f"task={name!r} is not a stage of the curriculum {[s.name for s in stages]}: choose "
                              "one of them, or add it to curriculum=[...]")


def without_replay(stages: Sequence[Stage]) -> list[Stage]:
    """The same stages with replay switched off: each trains on its own task only (the forgetting ablation)."""
    return [replace(stage, replay={stage.task.name: 1.0}) for stage in stages]
