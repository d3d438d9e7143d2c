"""What the Hydra front ends in ``training/`` share: a resolved config in, one ``error:`` line and exit code 2
for a configuration or training problem (no traceback), the run's own result otherwise."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_or_exit(run: Callable[[dict, Path], Any], cfg, configs_dir: Path) -> Any:
    """``run(cfg as a plain dict, configs_dir)``; a known error prints ``error: ...`` and exits with 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # the datasets library's per-episode "Map"/"Generating train split" bars would bury the per-epoch lines
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    from omegaconf import OmegaConf

    from kuavo_smolvla_ros.policy.checkpoint import CheckpointError
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError, TrainingError

    try:
        return run(OmegaConf.to_container(cfg, resolve=True), configs_dir)
    except (TrainingConfigError, TrainingError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
