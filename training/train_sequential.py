"""Sequential multi-task fine-tuning of SmolVLA on the Kuavo tasks (Hydra).

    python training/train_sequential.py pretrained_path=/models/smolvla_base data_root=/data stages=all
    python training/train_sequential.py task=tasks/task2_weighing          # one stage, from stage 1's best
    python training/train_sequential.py task=tasks/task3_placement batch_size=32 device=cuda bf16=true

Configs: training/configs/smolvla_sequential_base.yaml and training/configs/tasks/*.yaml.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"


def main() -> None:
    """Run the Hydra job (hydra imported here: Ctrl-C while it imports is the one-line interrupt too)."""
    import hydra

    @hydra.main(config_path=str(CONFIGS), config_name="smolvla_sequential_base", version_base="1.3")
    def job(cfg) -> None:
        from kuavo_smolvla_ros.training.cli import run_or_exit
        from kuavo_smolvla_ros.training.sequential import run

        run_or_exit(run, cfg, CONFIGS)

    job()


if __name__ == "__main__":
    from kuavo_smolvla_ros.training.cli import help_or_run

    help_or_run(main, CONFIGS / "smolvla_sequential_base.yaml", "python training/train_sequential.py", __doc__,
                "kuavo_smolvla_ros.training.sequential_config:check_config")
