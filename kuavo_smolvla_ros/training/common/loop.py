"""What both training loops need around the model: bf16 autocast and the TensorBoard writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def duration(seconds: float) -> str:
    """A time span for a log line: ``"42 s"`` under a minute, else ``"3.5 min"``."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def check_device(device: str, key: str = "device") -> str:
    """``device`` (cpu, cuda, cuda:N or mps) if this machine has it, else a :class:`TrainingConfigError` naming
    ``key`` and what there is (a CUDA device without CUDA fails here, in one line, not deep in torch)."""
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError

    if device == "mps" and not torch.backends.mps.is_available():
        raise TrainingConfigError(f"{key}=mps: this machine has no MPS device; use {key}=cpu")
    if not device.startswith("cuda"):
        return device
    if not torch.cuda.is_available():
        raise TrainingConfigError(f"{key}={device}: no CUDA device is available here (torch {torch.__version__}); "
                                  f"use {key}=cpu")
    index, count = int(device.split(":")[1]) if ":" in device else 0, torch.cuda.device_count()
    if index >= count:
        raise TrainingConfigError(f"{key}={device}: this machine has {count} CUDA device(s) "
                                  f"(cuda:0 .. cuda:{count - 1})")
    return device


def autocast(device: str, bf16: bool) -> torch.autocast:
    """The forward passes' precision: bf16 autocast on CUDA when ``bf16`` (the weights stay float32), a no-op
    on any other ``device`` ("cpu", "cuda", "cuda:N", ...)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.startswith("cuda"))


class _NoWriter:
    """TensorBoard writer stand-in for the processes other than the main one: every method does nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def tensorboard_writer(folder: Path, enabled: bool = True) -> Any:
    """A TensorBoard ``SummaryWriter`` logging to ``folder``, or (``enabled`` false: a process other than the
    main one) a writer that does nothing."""
    if not enabled:
        return _NoWriter()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder))
