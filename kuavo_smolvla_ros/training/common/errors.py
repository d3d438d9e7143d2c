"""The training package's error types, raised by every module of it and turned into ``error: ...`` and exit
code 2 by the command lines (``training/cli.py``)."""

from __future__ import annotations


class TrainingConfigError(ValueError):
    """A training configuration that cannot be used; the message names the file and key."""


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss, ...); the last good checkpoint is kept."""
