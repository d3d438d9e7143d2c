"""The reflow run's settings, read from the Hydra config (``training/configs/reflow_base.yaml``) and checked
before any work: the teacher checkpoint first, then every knob, naming the key at fault.

The users' older command lines carry flags their update removed: ``load_vlm_weights`` (the VLM's weights
come from the teacher checkpoint, read once) and ``train_expert_only`` (the student always trains the action
expert and its projections). Both are accepted and handled here; a value that cannot be honoured
(``train_expert_only=false``, ``freeze_vision_encoder=false``: the VLM is the frozen teacher's) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros.policy.checkpoint import CheckpointError, CheckpointInfo, inspect_checkpoint
from kuavo_smolvla_ros.training.common.config import (
    OptimConfig,
    data_cache_setting,
    device_setting,
    flag_setting,
    number_setting,
    optim_config,
    seed_setting,
)
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
from kuavo_smolvla_ros.training.common.run_record import check_same_run


@dataclass(frozen=True)
class ReflowConfig:
    """Everything a reflow run needs (``teacher`` already checked)."""

    teacher: CheckpointInfo
    output_dir: Path
    curriculum: tuple[str, ...]
    data_root: Path
    num_steps: int = 2
    teacher_num_steps: int = 10
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 2e-5
    warmup_steps: int = 500
    decay_steps: int = 20_000
    #: AdamW and the floor of the learning-rate schedule (the ``optimizer:`` and ``scheduler:`` blocks).
    optim: OptimConfig = field(default_factory=OptimConfig)
    save_freq: int = 2000
    log_freq: int = 100
    validation_freq: int = 1000
    validation_frames: int | None = 256
    pairs_per_observation: int = 1
    pairs_max_frames: int | None = None
    pairs_batch_size: int = 64
    pairs_cache_dir: Path | None = None
    seed: int = 1000
    device: str = "cpu"
    bf16: bool = False
    num_workers: int = 2
    data_cache: str = "none"
    data_cache_dir: Path | None = None
    vlm_path: str | None = None
    #: Lines for the log: how the removed flags were handled.
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pairs_dir(self) -> Path:
        """Where the teacher's pairs are cached (``pairs.cache_dir``, default ``<output_dir>/pairs``)."""
        return self.pairs_cache_dir or self.output_dir / "pairs"

    def settings(self) -> dict[str, Any]:
        """The reflow settings recorded in the student's metadata."""
        return {"teacher": str(self.teacher.path), "teacher_num_steps": self.teacher_num_steps,
                "num_steps": self.num_steps, "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                "warmup_steps": self.warmup_steps, "decay_steps": self.decay_steps, "seed": self.seed,
                "pairs_per_observation": self.pairs_per_observation, "pairs_max_frames": self.pairs_max_frames,
                "curriculum": list(self.curriculum), "data_root": str(self.data_root),
                "trained": "action expert and projections; VLM shared with the frozen teacher"}


def teacher_setting(cfg: Mapping[str, Any]) -> tuple[str, str]:
    """(key, path): ``teacher`` or ``teacher_model_path`` (the same setting under the users' older name),
    with the key the user set, for messages."""
    short, long = cfg.get("teacher"), cfg.get("teacher_model_path")
    if short and long and str(short) != str(long):
        raise TrainingConfigError(f"teacher={short} and teacher_model_path={long} disagree: set one of them")
    if not (short or long) or (short or long) == "???":
        raise TrainingConfigError("no teacher: set teacher=PATH (or teacher_model_path=PATH) to the final "
                                  "multi-task checkpoint, e.g. outputs/train/smolvla_sequential/task4_sorting/best")
    return ("teacher", str(short)) if short else ("teacher_model_path", str(long))


def teacher_path(cfg: Mapping[str, Any]) -> str:
    """``teacher`` or ``teacher_model_path`` (the same setting under the users' older name)."""
    return teacher_setting(cfg)[1]


def open_teacher(cfg: Mapping[str, Any]) -> CheckpointInfo:
    """The teacher checkpoint, checked from its files alone (nothing is built or read beyond headers); an error
    names the key that was set (``teacher`` or ``teacher_model_path``) and the path."""
    key, path = teacher_setting(cfg)
    if not Path(path).exists():
        raise TrainingConfigError(f"{key}={path}: checkpoint {path} does not exist (set {key} to the final "
                                  "multi-task checkpoint, e.g. outputs/train/smolvla_sequential/task4_sorting/best)")
    try:
        return inspect_checkpoint(path, cfg.get("vlm_path"))
    except CheckpointError as err:
        raise TrainingConfigError(f"{key}={path}: {err}") from None


def legacy_notes(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """How ``use_reflow``, ``load_vlm_weights``, ``train_expert_only`` and ``freeze_vision_encoder`` are
    handled; raises for values that cannot be."""
    if cfg.get("use_reflow", True) is False:
        raise TrainingConfigError("use_reflow=false: this command only distils (use_reflow is implied); train "
                                  "with plain flow matching with training/train_sequential.py")
    if cfg.get("train_expert_only") is False:
        raise TrainingConfigError("train_expert_only=false cannot be honoured: the student shares the frozen "
                                  "teacher's VLM and trains the action expert and its projections (drop the flag)")
    if cfg.get("freeze_vision_encoder", True) is False:
        raise TrainingConfigError("freeze_vision_encoder=false cannot be honoured: the vision encoder is part of "
                                  "the VLM the student shares with the frozen teacher")
    notes = []
    if cfg.get("load_vlm_weights") is not None:
        notes.append(f"load_vlm_weights={cfg['load_vlm_weights']} ignored (a removed flag): the VLM's weights "
                     "come from the teacher checkpoint, read once")
    if cfg.get("train_expert_only") is not None:
        notes.append("train_expert_only=true is implied (a removed flag): the student trains the action expert "
                     "and its projections")
    return tuple(notes)


def reflow_config(cfg: Mapping[str, Any]) -> ReflowConfig:
    """Check the teacher, then the rest of ``cfg``; raises :class:`TrainingConfigError` naming the key."""
    teacher = open_teacher(cfg)
    notes = legacy_notes(cfg)
    teacher_steps = number_setting(cfg, "teacher_num_steps", allow_none=True) or teacher.num_steps
    num_steps = number_setting(cfg, "num_steps")
    if num_steps >= teacher_steps:
        raise TrainingConfigError(f"num_steps ({num_steps}) must be below the teacher's {teacher_steps} steps: "
                                  "the student is distilled to fewer (1 or 2)")
    steps = number_setting(cfg, "steps")
    data_cache = data_cache_setting(cfg)
    pairs, validation = cfg.get("pairs") or {}, cfg.get("validation") or {}
    for block, value in (("pairs", pairs), ("validation", validation)):
        if not isinstance(value, Mapping):
            raise TrainingConfigError(f"{block} must be a mapping of settings, got {value!r}")
    curriculum = cfg.get("curriculum")
    if not isinstance(curriculum, list | tuple) or not curriculum:
        raise TrainingConfigError(f"curriculum must be a list of task files, got {curriculum!r}")
    if not cfg.get("data_root"):
        raise TrainingConfigError("data_root is not set: point it at the folder holding the converted datasets")
    batch_size = number_setting(cfg, "batch_size")
    if not cfg.get("output_dir"):
        raise TrainingConfigError("output_dir is not set")
    return ReflowConfig(
        teacher=teacher, output_dir=Path(cfg["output_dir"]), curriculum=tuple(cfg["curriculum"]),
        data_root=Path(cfg["data_root"]), num_steps=num_steps, teacher_num_steps=teacher_steps, steps=steps,
        batch_size=batch_size, lr=number_setting(cfg, "lr", float),
        warmup_steps=number_setting(cfg, "warmup_steps", allow_zero=True),
        decay_steps=number_setting(cfg, "decay_steps", allow_none=True) or steps, optim=optim_config(cfg),
        save_freq=number_setting(cfg, "save_freq", allow_zero=True), log_freq=number_setting(cfg, "log_freq"),
        validation_freq=number_setting(cfg, "validation.every_steps", allow_zero=True),
        validation_frames=number_setting(cfg, "validation.max_frames_per_task", allow_none=True),
        pairs_per_observation=number_setting(cfg, "pairs.per_observation"),
        pairs_max_frames=number_setting(cfg, "pairs.max_frames_per_task", allow_none=True),
        pairs_batch_size=number_setting(cfg, "pairs.batch_size", allow_none=True) or batch_size,
        pairs_cache_dir=Path(pairs["cache_dir"]) if pairs.get("cache_dir") else None,
        seed=seed_setting(cfg), device=device_setting(cfg), bf16=flag_setting(cfg, "bf16"),
        num_workers=number_setting(cfg, "num_workers", allow_zero=True), data_cache=data_cache,
        data_cache_dir=Path(cfg["data_cache_dir"]) if cfg.get("data_cache_dir") else None,
        vlm_path=cfg.get("vlm_path"), notes=notes + tuple(
            [] if validation.get("every_steps") else ["validation.every_steps=0: no validation; best/ is the last"]))


def check_config(cfg: Mapping[str, Any], configs_dir: Path) -> ReflowConfig:
    """Everything about a resolved reflow config that can be checked before Hydra creates a folder and anything
    heavy loads (``training/cli.py`` runs it first): :func:`reflow_config` (the teacher first), the curriculum's
    task files and a dataset for every task under ``data_root``. Raises :class:`TrainingConfigError`."""
    from kuavo_smolvla_ros.training.curriculum import load_curriculum

    if cfg.get("vlm_path") and not Path(str(cfg["vlm_path"])).is_dir():
        raise TrainingConfigError(f"vlm_path: no folder {cfg['vlm_path']} (a local SmolVLM2 folder, or null to use "
                                  "the one the teacher records or ships)")
    config = reflow_config(cfg)
    check_same_run(config.output_dir, cfg, "output_dir")
    if (config.output_dir / "curriculum_stats.json").is_file():
        raise TrainingConfigError(f"output_dir={config.output_dir} is a sequential training's output_root: give the "
                                  "student a folder of its own (e.g. outputs/train/smolvla_reflow)")
    if config.device != "cpu":
        from kuavo_smolvla_ros.training.common.loop import check_device

        check_device(config.device)
    for stage in load_curriculum(configs_dir, list(config.curriculum), config.data_root):
        if not (stage.dataset / "meta" / "info.json").is_file():
            raise TrainingConfigError(
                f"stage {stage.number} ({stage.task.name}): no LeRobot dataset at {stage.dataset} (meta/info.json "
                f"missing): set data_root to the folder holding the converted datasets (now {config.data_root}), "
                "or convert the bags with kuavo-rosbag-to-lerobot")
    return config
