"""The settings the sequential and the reflow configs share, read one way from their YAML.

Both ``training/configs/smolvla_sequential_base.yaml`` and ``reflow_base.yaml`` carry the same
``optimizer:`` block (AdamW's ``betas``, ``eps``, ``weight_decay`` and the gradient clipping norm) and
``scheduler:`` block (``min_lr``, the floor of the cosine decay), and the same ``data_cache`` switch. They
are read here, into :class:`OptimConfig` and a checked ``data_cache`` value: a key left out takes the
dataclass default, a value that cannot be used raises :class:`TrainingConfigError` naming the key.
:func:`number_setting` is the one reader of numeric settings (the reflow config reads its own with it).

Imports neither torch nor lerobot, so a config is checked before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kuavo_smolvla_ros.training.common.errors import TrainingConfigError

#: ``data_cache`` values: "none" reads the LeRobot datasets as they are; "memory" trains from in-memory copies
#: cached on disk (``training/memory.py``).
DATA_CACHES = ("none", "memory")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW's settings and the floor of the learning-rate schedule; the peak learning rate and the warmup and
    decay lengths (steps) belong to a stage (its task file) or to the reflow run, not here."""

    #: AdamW's (beta1, beta2), each in [0, 1).
    betas: tuple[float, float] = (0.9, 0.999)
    #: AdamW's epsilon (>= 0).
    eps: float = 1e-8
    #: AdamW's decoupled weight decay (>= 0).
    weight_decay: float = 5e-7
    #: Gradients are clipped to this total L2 norm (> 0) before each step.
    grad_clip_norm: float = 1.0
    #: Learning rate at the end of the cosine decay and after it (>= 0).
    min_lr: float = 1e-6


def _lookup(cfg: Mapping[str, Any], key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def number_setting(cfg: Mapping[str, Any], key: str, kind: type = int, allow_zero: bool = False,
                   allow_none: bool = False, default: float | None = None) -> Any:
    """The number at the dotted ``key`` of ``cfg`` (e.g. ``"validation.every_steps"``) as ``kind``, which
    must be > 0 (>= 0 with ``allow_zero``). Missing or null: ``default`` if given, else None with
    ``allow_none``. Raises :class:`TrainingConfigError` naming ``key``, the value and what is expected for
    anything else (not a number, a fraction or true/false where an integer is expected, negative, NaN, zero
    without ``allow_zero``), e.g. ``batch_size must be an integer, got 'abc'``."""
    value = _lookup(cfg, key)
    if value is None and default is not None:
        return default
    if value is None and allow_none:
        return None
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise TrainingConfigError(f"{key} must be {what}, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise TrainingConfigError(f"{key} must be {what}, got {value!r}") from None
    if not (number > 0 or (allow_zero and number == 0)):  # NaN is neither
        raise TrainingConfigError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return number


def _betas(cfg: Mapping[str, Any], default: tuple[float, float]) -> tuple[float, float]:
    value = _lookup(cfg, "optimizer.betas")
    if value is None:
        return default
    try:
        betas = tuple(float(b) for b in value)
    except (TypeError, ValueError):
        betas = ()
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise TrainingConfigError(f"optimizer.betas must be two numbers in [0, 1), got {value!r}")
    return betas  # type: ignore[return-value]


def optim_config(cfg: Mapping[str, Any]) -> OptimConfig:
    """The :class:`OptimConfig` of a resolved run config, from its ``optimizer:`` and ``scheduler:`` blocks
    (a key or a block that is missing or null takes the default). Raises :class:`TrainingConfigError` naming
    the key (e.g. ``optimizer.eps``) for a value that is not a number or out of range, or a block that is not a
    mapping."""
    for block in ("optimizer", "scheduler"):
        if cfg.get(block) is not None and not isinstance(cfg[block], Mapping):
            raise TrainingConfigError(f"{block} must be a mapping of settings, got {cfg[block]!r}")
    default = OptimConfig()
    return OptimConfig(
        betas=_betas(cfg, default.betas),
        eps=number_setting(cfg, "optimizer.eps", float, allow_zero=True, default=default.eps),
        weight_decay=number_setting(cfg, "optimizer.weight_decay", float, allow_zero=True,
                                    default=default.weight_decay),
        grad_clip_norm=number_setting(cfg, "optimizer.grad_clip_norm", float, default=default.grad_clip_norm),
        min_lr=number_setting(cfg, "scheduler.min_lr", float, allow_zero=True, default=default.min_lr))


def check_data_cache(value: str) -> str:
    """``value`` if it is one of :data:`DATA_CACHES`, else :class:`TrainingConfigError`."""
    if value not in DATA_CACHES:
        raise TrainingConfigError(f"data_cache must be one of {DATA_CACHES}, got {value!r}")
    return value


def data_cache_setting(cfg: Mapping[str, Any]) -> str:
    """A run config's ``data_cache`` (missing or null: ``"none"``), checked (:func:`check_data_cache`)."""
    return check_data_cache(str(cfg.get("data_cache") or "none"))


def flag_setting(cfg: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """The true/false setting at the dotted ``key`` (missing or null: ``default``); anything else (``bf16=abc``,
    ``bf16=1``) raises :class:`TrainingConfigError` naming the key."""
    value = _lookup(cfg, key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise TrainingConfigError(f"{key} must be true or false, got {value!r}")
    return value


def seed_setting(cfg: Mapping[str, Any], key: str = "seed", default: int = 1000) -> int:
    """The random seed at ``key``: an integer >= 0 (numpy's generators refuse negative seeds)."""
    return number_setting(cfg, key, int, allow_zero=True, default=default)


def device_setting(cfg: Mapping[str, Any], key: str = "device") -> str:
    """The torch device at ``key`` (missing or null: ``"cpu"``): ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
    (whether this machine has it: :func:`~kuavo_smolvla_ros.training.common.loop.check_device`)."""
    import re

    value = _lookup(cfg, key)
    device = "cpu" if value is None else str(value)
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise TrainingConfigError(f"{key} must be cpu, cuda, cuda:N or mps, got {value!r}")
    return device
