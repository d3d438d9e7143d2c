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

from kuavo_smolvla_ros.policy.checkpoint import ACTION_MODES
from kuavo_smolvla_ros.training.common.config import OptimConfig, data_cache_setting, optim_config
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError


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


def settings_from(cfg: Mapping[str, Any]) -> Settings:
    """The :class:`Settings` of a resolved base config. Raises :class:`TrainingConfigError` for an
    ``action_mode`` or ``data_cache`` it does not know and for unusable ``optimizer``/``scheduler`` values, and
    ``KeyError`` for a run-wide key missing from ``cfg`` (the base config has every one)."""
    validation = cfg["validation"]
    action_mode = cfg.get("action_mode")
    if action_mode is not None and action_mode not in ACTION_MODES:
        raise TrainingConfigError(f"action_mode must be null (the checkpoint's) or one of {ACTION_MODES}, "
                                  f"got {action_mode!r}")
    data_cache = data_cache_setting(cfg)
    return Settings(
        output_root=Path(cfg["output_root"]), seed=int(cfg["seed"]), device=str(cfg["device"]), bf16=bool(cfg["bf16"]),
        batch_size=int(cfg["batch_size"]), num_workers=int(cfg["num_workers"]),
        save_every_epochs=int(cfg["save_every_epochs"]), optim=optim_config(cfg), policy=dict(cfg["policy"]),
        vlm_path=cfg.get("vlm_path"), select_best_by=str(validation["select_best_by"]),
        noise_seed=int(validation["noise_seed"]), validate_every_epochs=int(validation["every_epochs"]),
        max_val_batches=validation["max_batches"], retained=float(validation["forgetting"]["retained"]),
        slight=float(validation["forgetting"]["slight"]), action_mode=action_mode, data_cache=data_cache,
        data_cache_dir=cfg.get("data_cache_dir"))
