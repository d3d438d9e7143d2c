"""The sequential run's settings, read from the Hydra config (``training/configs/smolvla_sequential_base.yaml``).

The run-wide knobs live here (:class:`Settings`); each stage's own recipe (epochs, learning rate, warmup and
decay steps, replay, validation episodes) is in its task file (``training/curriculum.py``). The ``optimizer:``
and ``scheduler:`` blocks are read as the reflow run reads them (``training/common/config.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros.atomic import blocking_file
from kuavo_smolvla_ros.policy.checkpoint import ACTION_MODES
from kuavo_smolvla_ros.training.common.augment import camera_dropout_setting
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

#: ``validation.select_best_by`` values: the stage's own task, or the mean over every task seen so far.
SELECT_BEST_BY = ("current", "mean_seen")


@dataclass
class Settings:
    """The run-wide knobs of the base config (the stage's own recipe is in :class:`~.curriculum.Stage`)."""

    output_root: Path
    seed: int = 1000
    device: str = "cpu"
    bf16: bool = False
    batch_size: int = 64
    num_workers: int = 2
    save_every_epochs: int = 10
    #: AdamW and the floor of the learning-rate schedule (the ``optimizer:`` and ``scheduler:`` blocks).
    optim: OptimConfig = field(default_factory=OptimConfig)
    policy: dict[str, Any] = field(default_factory=dict)
    #: Local VLM folder for a pretrained base whose config names a hub id (None: the recorded path or <ckpt>/vlm).
    vlm_path: str | None = None
    select_best_by: str = "current"
    noise_seed: int = 0
    validate_every_epochs: int = 2
    max_val_batches: int | None = 20
    #: Forgetting labels: an earlier task's validation loss below this is "retained".
    retained: float = 0.7
    #: ... below this (and not retained) "slight" degradation, else "significant" forgetting.
    slight: float = 1.0
    #: "absolute" / "relative" forces the action mode; None: the init checkpoint's (absolute without metadata).
    action_mode: str | None = None
    #: "memory": train from in-memory copies of the datasets, cached under <output_root>/.data_cache/.
    data_cache: str = "none"
    #: Where the in-memory caches are kept (None: <output_root>/.data_cache); runs may share one.
    data_cache_dir: str | None = None
    #: camera -> probability that a training sample shows it black (:mod:`~.common.augment`); validation never.
    camera_dropout: dict[str, float] = field(default_factory=dict)


def settings_from(cfg: Mapping[str, Any]) -> Settings:
    """The :class:`Settings` of a resolved base config. Raises :class:`TrainingConfigError` naming the key, the
    value and what is expected for a value that cannot be used (``batch_size=abc``, ``seed=-1``,
    ``device=tpu``, ``bf16=maybe``, an ``action_mode`` or ``data_cache`` it does not know, unusable
    ``optimizer``/``scheduler`` values), and ``KeyError`` for a run-wide key missing from ``cfg`` (the base
    config has every one)."""
    validation = cfg["validation"]
    if not isinstance(validation, Mapping):
        raise TrainingConfigError(f"validation must be a mapping of settings, got {validation!r}")
    action_mode = cfg.get("action_mode")
    if action_mode is not None and action_mode not in ACTION_MODES:
        raise TrainingConfigError(f"action_mode must be null (the checkpoint's) or one of {ACTION_MODES}, "
                                  f"got {action_mode!r}")
    data_cache = data_cache_setting(cfg)
    select_best_by = str(validation["select_best_by"])
    if select_best_by not in SELECT_BEST_BY:
        raise TrainingConfigError(f"validation.select_best_by must be one of {SELECT_BEST_BY}, "
                                  f"got {validation['select_best_by']!r}")
    _check_policy(cfg["policy"])
    if not cfg.get("output_root"):
        raise TrainingConfigError("output_root is not set: the folder the stages' checkpoints go to")
    return Settings(
        output_root=Path(cfg["output_root"]), seed=seed_setting(cfg), device=device_setting(cfg),
        bf16=flag_setting(cfg, "bf16"), batch_size=number_setting(cfg, "batch_size"),
        num_workers=number_setting(cfg, "num_workers", allow_zero=True),
        save_every_epochs=number_setting(cfg, "save_every_epochs", allow_zero=True), optim=optim_config(cfg),
        policy=dict(cfg["policy"]), vlm_path=cfg.get("vlm_path"), select_best_by=select_best_by,
        noise_seed=seed_setting(cfg, "validation.noise_seed", default=0),
        validate_every_epochs=number_setting(cfg, "validation.every_epochs"),
        max_val_batches=number_setting(cfg, "validation.max_batches", allow_none=True),
        retained=number_setting(cfg, "validation.forgetting.retained", float),
        slight=number_setting(cfg, "validation.forgetting.slight", float), action_mode=action_mode,
        data_cache=data_cache, data_cache_dir=cfg.get("data_cache_dir"),
        camera_dropout=camera_dropout_setting(cfg.get("camera_dropout")))


#: The base config's ``policy:`` settings that are counts (> 0) and switches (true/false).
POLICY_COUNTS = ("chunk_size", "n_action_steps", "num_steps", "max_state_dim", "max_action_dim")
POLICY_SWITCHES = ("freeze_vision_encoder", "train_expert_only", "train_state_proj")


def _check_policy(policy: Any) -> None:
    """The ``policy:`` block: a mapping whose counts are integers > 0 (``n_action_steps`` at most
    ``chunk_size``) and whose switches are true or false."""
    if not isinstance(policy, Mapping):
        raise TrainingConfigError(f"policy must be a mapping of SmolVLA settings, got {policy!r}")
    wrapped = {"policy": policy}
    counts = {key: number_setting(wrapped, f"policy.{key}", allow_none=True) for key in POLICY_COUNTS}
    for key in POLICY_SWITCHES:
        flag_setting(wrapped, f"policy.{key}")
    if counts["chunk_size"] and counts["n_action_steps"] and counts["n_action_steps"] > counts["chunk_size"]:
        raise TrainingConfigError(f"policy.n_action_steps ({counts['n_action_steps']}) must be at most "
                                  f"policy.chunk_size ({counts['chunk_size']})")


def _check_policy_keys(policy: Mapping[str, Any]) -> None:
    """Every ``policy:`` key names a field of lerobot's ``SmolVLAConfig`` (read only for keys beyond the base
    config's)."""
    unknown = sorted(set(policy) - set(POLICY_COUNTS) - set(POLICY_SWITCHES))
    if not unknown:
        return
    import dataclasses

    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    fields = {f.name for f in dataclasses.fields(SmolVLAConfig)}
    for key in unknown:
        if key not in fields:
            raise TrainingConfigError(f"policy.{key} is not a SmolVLA setting (lerobot's SmolVLAConfig has no "
                                      f"field {key!r})")


def _stage_overrides(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The set (non-null) ``stage_overrides``, checked: each names a stage setting and has a usable value."""
    from kuavo_smolvla_ros.training.curriculum import STAGE_KEYS

    overrides = cfg.get("stage_overrides") or {}
    if not isinstance(overrides, Mapping):
        raise TrainingConfigError(f"stage_overrides must be a mapping of stage settings, got {overrides!r}")
    checks = {"epochs": {"kind": int}, "lr": {"kind": float, "allow_zero": True},
              "warmup_steps": {"kind": int, "allow_zero": True}, "decay_steps": {"kind": int}}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in STAGE_KEYS:
            raise TrainingConfigError(f"stage_overrides.{key} is not a stage setting (known: {sorted(STAGE_KEYS)})")
        if key in checks:
            number_setting({"stage_overrides": overrides}, f"stage_overrides.{key}", **checks[key])
        elif key == "validation_episodes":
            ok = (isinstance(value, list) and all(isinstance(v, int) and v >= 0 for v in value)) or (
                isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1)
            if not ok:
                raise TrainingConfigError("stage_overrides.validation_episodes must be a share in [0, 1) or a list "
                                          f"of episode indices, got {value!r}")
    return {k: v for k, v in overrides.items() if v is not None}


def check_config(cfg: Mapping[str, Any], configs_dir: Path) -> None:
    """Everything about a resolved run config that can be checked before Hydra creates a folder and anything
    heavy loads (``training/cli.py`` runs it first): the stage overrides, the curriculum and the stage to
    train, every run-wide setting (:func:`settings_from`), ``pretrained_path`` when stage 1 is trained and
    every stage's dataset under ``data_root``. Raises :class:`TrainingConfigError` naming the key."""
    from kuavo_smolvla_ros.training.curriculum import find_stage, load_curriculum

    overrides = _stage_overrides(cfg)
    curriculum = cfg.get("curriculum")
    if not isinstance(curriculum, list | tuple):
        raise TrainingConfigError(f"curriculum must be a list of task files, got {curriculum!r}")
    if not cfg.get("data_root"):
        raise TrainingConfigError("data_root is not set: point it at the folder holding the converted datasets")
    stages = load_curriculum(configs_dir, [str(c) for c in curriculum], cfg["data_root"], overrides=overrides)
    if cfg.get("stages") not in ("one", "all"):
        raise TrainingConfigError(f"stages must be 'one' or 'all', got {cfg.get('stages')!r}")
    todo = stages if cfg["stages"] == "all" else [find_stage(stages, str(cfg.get("task")))]
    settings = settings_from(cfg)
    if cfg.get("lr_scale") is not None:
        number_setting(cfg, "lr_scale", float)
    _check_policy_keys(settings.policy)
    if settings.device != "cpu":
        from kuavo_smolvla_ros.training.common.loop import check_device

        check_device(settings.device)
    if settings.vlm_path and not Path(str(settings.vlm_path)).is_dir():
        raise TrainingConfigError(f"vlm_path: no folder {settings.vlm_path} (a local SmolVLM2 folder, or null to "
                                  "use the one the checkpoint records or ships)")
    if todo[0].number == 1:
        pretrained = cfg.get("pretrained_path")
        if not pretrained or pretrained == "???":
            raise TrainingConfigError("pretrained_path is not set: point it at a local SmolVLA checkpoint "
                                      "(e.g. a download of lerobot/smolvla_base)")
        if not Path(str(pretrained)).exists():
            raise TrainingConfigError(f"pretrained_path: no checkpoint at {pretrained} (point it at a local "
                                      "SmolVLA checkpoint, e.g. a download of lerobot/smolvla_base)")
    output_root = Path(str(cfg.get("output_root")))
    blocked = blocking_file(output_root)
    if blocked is not None:
        raise TrainingConfigError(f"output_root: {blocked} is a file, not a folder: choose a folder for the run")
    for stage in todo:  # a stage trained before is resumed, with its own settings: others are refused
        check_same_run(output_root / stage.output_name, cfg, "output_root",
                       what=f"output_root={output_root}: stage {stage.number} ({stage.task.name})")
    for stage in stages:
        if not (stage.dataset / "meta" / "info.json").is_file():
            raise TrainingConfigError(
                f"stage {stage.number} ({stage.task.name}): no LeRobot dataset at {stage.dataset} (meta/info.json "
                f"missing): set data_root to the folder holding the converted datasets (now "
                f"{cfg['data_root']}), or convert the bags with kuavo-rosbag-to-lerobot")
        if settings.camera_dropout:
            from kuavo_smolvla_ros.data.dataset import image_shapes_of

            cameras = list(image_shapes_of(stage.dataset))
            missing = sorted(set(settings.camera_dropout) - set(cameras))
            if missing:
                raise TrainingConfigError(f"camera_dropout: {missing[0]!r} is not one of stage {stage.number}'s "
                                          f"cameras {cameras} (its dataset {stage.dataset})")
