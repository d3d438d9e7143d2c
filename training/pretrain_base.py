"""Pretrain the tiny base policy on the simulator's primitives (Hydra): the project's lerobot/smolvla_base.

    python training/pretrain_base.py output=assets/pretrained_base      # `make base`: the shipped base
    python training/pretrain_base.py output=/tmp/base steps=500 episodes=10     # a quick look

Writes a lerobot checkpoint to `output` and `output/pretraining.json` (data, steps, time, losses and the
linear probe of its frozen features), TensorBoard logs to `<output>_tensorboard/`. An existing `output` is
replaced only if this command wrote it. Config: training/configs/pretrain_tiny_base.yaml.
Exit codes: 0 done, 2 a configuration error (one line on stderr).
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"


def main() -> None:
    """Run the Hydra job (hydra imported here: Ctrl-C while it imports is the one-line interrupt too)."""
    import hydra

    @hydra.main(config_path=str(CONFIGS), config_name="pretrain_tiny_base", version_base="1.3")
    def job(cfg) -> None:
        from kuavo_smolvla_ros.training.cli import run_or_exit
        from kuavo_smolvla_ros.training.pretrain import PretrainSettings, pretrain

        run_or_exit(lambda config, _: pretrain(PretrainSettings.from_config(config)), cfg, CONFIGS)

    job()


if __name__ == "__main__":
    from kuavo_smolvla_ros.training.cli import help_or_run

    help_or_run(main, CONFIGS / "pretrain_tiny_base.yaml", "python training/pretrain_base.py", __doc__,
                "kuavo_smolvla_ros.training.pretrain:check_config",
                interrupted="interrupted (Ctrl-C): the base is written only at the end, so nothing was; run the "
                            "same command again to start over")
