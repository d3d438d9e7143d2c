"""Reflow distillation on the tiny SmolVLA: the Hydra command end to end, and the trainer in-process for
what must be looked at from inside (the frozen teacher, the one shared VLM, the trainable set, resuming)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot_data import write_task_datasets
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "training" / "configs"
STAGES = ["task1_moving_grasp", "task2_weighing", "task3_placement", "task4_sorting"]
VLM = "model.vlm_with_expert.vlm."
#: A short run: batch 8, fast learning rate, validation and checkpoints every 10 steps.
QUICK = {"batch_size": 8, "num_workers": 0, "lr": 1.0e-3, "warmup_steps": 0, "log_freq": 5, "save_freq": 10,
         "data_cache": "memory", "validation": {"every_steps": 10, "max_frames_per_task": 8}}


def distil(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "training" / "train_reflow.py"), *overrides],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def curriculum(tmp_path_factory):
    """The four tasks' datasets (task k: state k/4) and a tiny teacher for their camera."""
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

    root = tmp_path_factory.mktemp("reflow")
    assert write_task_datasets(root / "data") == STAGES
    teacher = build_checkpoint(root / "teacher", TinyCheckpointSpec(cameras=("head_cam_h",), image_shape=(8, 8)))
    return root, teacher


def config(curriculum, output: Path, **overrides) -> dict:
    """reflow_base.yaml with the test's settings, as Hydra would resolve it (without Hydra's own section)."""
    root, teacher = curriculum
    cfg = OmegaConf.merge(OmegaConf.load(CONFIGS / "reflow_base.yaml"), QUICK,
                          {"teacher": str(teacher), "data_root": str(root / "data"), "output_dir": str(output),
                           "pairs": {"cache_dir": str(root / "pairs")}, "steps": 20}, overrides)
    cfg.pop("hydra")
    return OmegaConf.to_container(cfg, resolve=True)


def trainer_for(cfg: dict):
    from kuavo_smolvla_ros.training.curriculum import load_curriculum
    from kuavo_smolvla_ros.training.reflow import ReflowTrainer
    from kuavo_smolvla_ros.training.reflow_config import reflow_config

    settings = reflow_config(cfg)
    return ReflowTrainer(settings, load_curriculum(CONFIGS, list(settings.curriculum), settings.data_root))


@pytest.fixture(scope="module")
def command_run(curriculum):
    """``train_reflow.py`` with the users' knobs, their removed flags included, for 30 steps."""
    root, teacher = curriculum
    out = root / "command"
    result = distil(f"teacher_model_path={teacher}", f"data_root={root / 'data'}", f"output_dir={out}",
                    "steps=30", "batch_size=8", "lr=1e-3", "save_freq=10", "freeze_vision_encoder=true",
                    "load_vlm_weights=false", "train_expert_only=true", "num_workers=0", "warmup_steps=0",
                    "log_freq=5", "data_cache=memory", "validation.every_steps=10",
                    "validation.max_frames_per_task=8")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout + result.stderr


def test_the_command_writes_a_student_checkpoint_and_logs_the_shared_vlm(command_run, curriculum):
    out, log = command_run
    for name in ("best", "last", "step10", "step20", "step30"):
        assert (out / name / "model.safetensors").is_file(), name
    assert (out / "last" / "training_state" / "state.json").is_file()
    assert (out / "training.png").stat().st_size > 10_000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    results = json.loads((out / "reflow_results.json").read_text())
    assert results["vlm_loads"] == 1 and results["vlm_instances"] == 1
    assert "VLM loaded 1 time(s); 1 VLM instance shared by teacher and student, frozen" in log
    assert f"total parameters: {results['total_parameters']:,}" in log
    share = 100 * results["trainable_parameters"] / results["total_parameters"]
    assert f"trainable parameters: {results['trainable_parameters']:,} ({share:.2f}%)" in log
    assert "load_vlm_weights=False ignored (a removed flag)" in log
    assert "train_expert_only=true is implied (a removed flag)" in log
    # pairs of every task's training frames (two of three episodes, 8 frames each), cached on disk
    assert results["pairs"] == {name.split("_", 1)[1]: 16 for name in STAGES}
    assert len(list((out / "pairs").glob("*.safetensors"))) == 8  # train and validation, four tasks


def test_the_loss_falls_and_the_student_beats_the_undistilled_teacher_at_its_steps(command_run):
    out, _ = command_run
    results = json.loads((out / "reflow_results.json").read_text())
    losses = [point["loss"] for point in results["train_loss"]]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0], losses
    final = results["history"][-1]["fidelity_mse"]
    baseline = results["baselines"]["2"]
    assert set(final) == set(baseline) == {name.split("_", 1)[1] for name in STAGES}
    assert np.mean(list(final.values())) < np.mean(list(baseline.values()))


def test_the_saved_student_opens_in_the_node_runtime_with_its_step_count(command_run, curriculum):
    from lerobot.configs.policies import PreTrainedConfig

    from kuavo_smolvla_ros.policy.checkpoint import CheckpointMetadata
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime

    out, _ = command_run
    _, teacher = curriculum
    assert PreTrainedConfig.from_pretrained(str(out / "best")).num_steps == 2  # lerobot reads it too
    runtime = PolicyRuntime.open(out / "best")
    assert runtime.num_steps == 2 and runtime.chunk_size == 50
    chunk = runtime.predict_chunk(runtime.dummy_observation(), seed=0)
    assert chunk.shape == (50, 16) and np.isfinite(chunk).all()
    meta = CheckpointMetadata.load(out / "best")
    reflow = meta.extra["reflow"]
    assert reflow["teacher"] == str(teacher.resolve()) and reflow["teacher_num_steps"] == 10
    assert reflow["num_steps"] == 2 and reflow["steps"] == 30 and reflow["lr"] == pytest.approx(1e-3)
    assert "2-step reflow student of" in meta.origin
    teacher_runtime = PolicyRuntime.open(teacher)
    assert teacher_runtime.num_steps == 10


def test_teacher_frozen_vlm_built_once_and_shared_and_the_trainable_set(curriculum, tmp_path, monkeypatch):
    from lerobot.policies.smolvla import smolvlm_with_expert

    built = []
    original = smolvlm_with_expert.SmolVLMWithExpertModel.__init__

    def counting(self, *args, **kwargs):
        if torch.get_default_device().type != "meta":  # inspect_checkpoint's shape check builds one on meta
            built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(smolvlm_with_expert.SmolVLMWithExpertModel, "__init__", counting)
    trainer = trainer_for(config(curriculum, tmp_path / "out", steps=12))
    assert len(built) == 1, "the VLM must be instantiated once for teacher and student"
    teacher, student = trainer.teacher, trainer.student
    assert student.model.vlm_with_expert.vlm is teacher.model.vlm_with_expert.vlm
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    trainable = {name for name, p in student.named_parameters() if p.requires_grad}
    expected = {name for name, _ in student.named_parameters() if not name.startswith(VLM) and "lm_head" not in name}
    assert trainable == expected
    assert {name.split(".")[1] for name in trainable} == {
        "vlm_with_expert", "state_proj", "action_in_proj", "action_out_proj", "action_time_mlp_in",
        "action_time_mlp_out"}
    assert all(name.startswith("model.vlm_with_expert.lm_expert.") for name in trainable
               if name.startswith("model.vlm_with_expert."))
    assert not any(p.requires_grad for p in teacher.parameters())
    trainer.run()
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the teacher's weights changed"
    changed = {k for k, v in student.state_dict().items() if not torch.equal(student_before[k], v)}
    assert changed and all(not k.startswith(VLM) for k in changed)
    assert trainer.state["step"] == 12


def test_pairs_are_reused_from_the_cache_and_remade_for_another_teacher_step_count(curriculum, tmp_path,
                                                                                   monkeypatch):
    from kuavo_smolvla_ros.training import reflow

    made = []
    original = reflow.make_pairs

    def counting(*args, **kwargs):
        made.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(reflow, "make_pairs", counting)
    cache = {"pairs": {"cache_dir": str(tmp_path / "pairs")}}
    first = trainer_for(config(curriculum, tmp_path / "a", **cache))
    assert len(made) == 8
    again = trainer_for(config(curriculum, tmp_path / "b", **cache))
    assert len(made) == 8, "the same teacher, data and seed must reuse the cached pairs"
    assert torch.equal(first.train_data.pairs.actions, again.train_data.pairs.actions)
    trainer_for(config(curriculum, tmp_path / "c", teacher_num_steps=5, **cache))
    assert len(made) == 16


def test_an_interrupted_run_resumes_to_the_same_student(curriculum, tmp_path):
    from safetensors.torch import load_file

    straight = trainer_for(config(curriculum, tmp_path / "straight", decay_steps=20))
    straight.run()
    interrupted = trainer_for(config(curriculum, tmp_path / "resumed", steps=10, decay_steps=20))
    interrupted.run()
    resumed = trainer_for(config(curriculum, tmp_path / "resumed", decay_steps=20))
    assert resumed.state["step"] == 10
    resumed.run()
    a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "last" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_bad_teacher_fails_before_any_work_with_a_clear_message(curriculum, tmp_path):
    root, _ = curriculum
    out = tmp_path / "out"
    result = distil(f"teacher={tmp_path / 'missing'}", f"data_root={root / 'data'}", f"output_dir={out}")
    assert result.returncode == 2
    assert f"error: teacher={tmp_path / 'missing'}: checkpoint {tmp_path / 'missing'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr and "Reducing the number of VLM layers" not in result.stdout
    assert not (out / "pairs").exists() and not (out / "last").exists()
    not_a_checkpoint = distil(f"teacher={root / 'data'}", f"data_root={root / 'data'}", f"output_dir={out}")
    assert not_a_checkpoint.returncode == 2 and "no config.json" in not_a_checkpoint.stderr
    nothing = distil(f"data_root={root / 'data'}", f"output_dir={out}")
    assert nothing.returncode == 2 and "no teacher: set teacher=PATH" in nothing.stderr


@pytest.mark.parametrize(("overrides", "message"), [
    ({"train_expert_only": False}, "train_expert_only=false cannot be honoured"),
    ({"freeze_vision_encoder": False}, "freeze_vision_encoder=false cannot be honoured"),
    ({"use_reflow": False}, "use_reflow=false: this command only distils"),
    ({"num_steps": 10}, r"num_steps \(10\) must be below the teacher's 10 steps"),
    ({"teacher_model_path": "/elsewhere"}, "disagree: set one of them"),
    ({"steps": 0}, "steps must be > 0"),
    ({"data_cache": "disk"}, "data_cache must be one of"),
])
def test_settings_that_cannot_be_honoured_are_refused(curriculum, tmp_path, overrides, message):
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
    from kuavo_smolvla_ros.training.reflow_config import reflow_config

    with pytest.raises(TrainingConfigError, match=message):
        reflow_config(config(curriculum, tmp_path, **overrides))


def test_the_optimizer_blocks_are_read_as_the_sequential_run_reads_them(curriculum, tmp_path):
    from kuavo_smolvla_ros.training.common.config import OptimConfig, optim_config
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
    from kuavo_smolvla_ros.training.reflow_config import reflow_config

    cfg = config(curriculum, tmp_path, optimizer={"betas": [0.5, 0.75], "grad_clip_norm": 0.5},
                 scheduler={"min_lr": 0.0})
    assert reflow_config(cfg).optim == optim_config(cfg) == OptimConfig(betas=(0.5, 0.75), grad_clip_norm=0.5,
                                                                        min_lr=0.0)
    with pytest.raises(TrainingConfigError, match=r"optimizer\.weight_decay must be >= 0"):
        reflow_config(config(curriculum, tmp_path, optimizer={"weight_decay": -0.1}))


def test_a_damaged_pair_cache_is_made_again_not_trusted(curriculum, tmp_path, monkeypatch):
    from kuavo_smolvla_ros.training import reflow

    cache = {"pairs": {"cache_dir": str(tmp_path / "pairs")}}
    first = trainer_for(config(curriculum, tmp_path / "a", **cache))
    damaged = sorted((tmp_path / "pairs").glob("task2_weighing_train_*.safetensors"))
    assert len(damaged) == 1
    damaged[0].write_bytes(b"not a safetensors file")
    made = []
    original = reflow.make_pairs

    def counting(*args, **kwargs):
        made.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(reflow, "make_pairs", counting)
    again = trainer_for(config(curriculum, tmp_path / "b", **cache))
    assert len(made) == 1, "only the damaged file is generated again"
    assert torch.equal(first.train_data.pairs.actions, again.train_data.pairs.actions)
