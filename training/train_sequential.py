"""Sequential multi-task fine-tuning of SmolVLA on the Kuavo tasks (Hydra).

    python training/train_sequential.py pretrained_path=/models/smolvla_base data_root=/data stages=all
    python training/train_sequential.py task=tasks/task2_weighing          # one stage, from stage 1's best
    python training/train_sequential.py task=tasks/task3_placement batch_size=32 device=cuda bf16=true

Configs: training/configs/smolvla_sequential_base.yaml and training/configs/tasks/*.yaml.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONFIGS = Path(__file__).resolve().parent / "configs"


@hydra.main(config_path=str(CONFIGS), config_name="smolvla_sequential_base", version_base="1.3")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kuavo_smolvla_ros.training.curriculum import TrainingConfigError
    from kuavo_smolvla_ros.training.sequential import run
    from kuavo_smolvla_ros.training.trainer import TrainingError

    try:
        run(OmegaConf.to_container(cfg, resolve=True), CONFIGS)
    except (TrainingConfigError, TrainingError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
