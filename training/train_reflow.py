r"""Reflow distillation of the final multi-task SmolVLA into a 1-2 step student (Hydra).

    python training/train_reflow.py teacher=outputs/train/smolvla_sequential/task4_sorting/best data_root=datasets
    python training/train_reflow.py teacher_model_path=/ckpt/best num_steps=1 steps=20000 batch_size=64 \
        lr=2e-5 save_freq=2000 output_dir=outputs/train/smolvla_reflow device=cuda

The teacher's VLM is loaded once and shared, frozen, with the student; the student trains the action expert
and its projections. Configs: training/configs/reflow_base.yaml (the curriculum comes from the sequential
task files beside it).
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"


def main() -> None:
    """Run the Hydra job (hydra imported here: Ctrl-C while it imports is the one-line interrupt too)."""
    import hydra

    @hydra.main(config_path=str(CONFIGS), config_name="reflow_base", version_base="1.3")
    def job(cfg) -> None:
        from kuavo_smolvla_ros.training.cli import run_or_exit
        from kuavo_smolvla_ros.training.reflow import run

        run_or_exit(run, cfg, CONFIGS)

    job()


if __name__ == "__main__":
    from kuavo_smolvla_ros.training.cli import help_or_run

    help_or_run(main, CONFIGS / "reflow_base.yaml", "python training/train_reflow.py", __doc__,
                "kuavo_smolvla_ros.training.reflow_config:check_config")
