"""What both training loops need around the model: bf16 autocast and the TensorBoard writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


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
