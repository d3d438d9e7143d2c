"""A full four-stage sequential run of the tiny SmolVLA through the Hydra command, on small datasets
written with lerobot's writer: outputs, chaining, fixed statistics, results, logs, and loaders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lerobot_data import write_dataset
from processes import kill_when

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.tasks import default_catalog

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["task1_moving_grasp", "task2_weighing", "task3_placement", "task4_sorting"]


def train(*overrides: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "training" / "train_sequential.py"), *overrides],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def stage_one_args(root: Path, pretrained: Path, batch_size: int, epochs: int) -> list[str]:
    """Stage 1 of the curriculum on the tiny model, everything trainable, fast learning rate."""
    return ["task=tasks/task1_moving_grasp", f"pretrained_path={pretrained}", f"data_root={root / 'data'}",
            f"batch_size={batch_size}", "num_workers=0", f"stage_overrides.epochs={epochs}",
            "stage_overrides.lr=0.002", "stage_overrides.warmup_steps=0", "policy.train_expert_only=false",
            "policy.freeze_vision_encoder=false"]


@pytest.fixture(scope="module")
def curriculum(tmp_path_factory):
    """Four datasets (task k: state k, action k + 0.5) and a tiny all-trainable pretrained checkpoint."""
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

    root = tmp_path_factory.mktemp("curriculum")
    catalog = default_catalog()
    for task_id, name in enumerate(STAGES, start=1):
        write_dataset(root / "data" / name, float(task_id) / 4, episodes=3, frames=8,
                      instruction=catalog.get(task_id).instruction)
    pretrained = build_checkpoint(root / "pretrained", TinyCheckpointSpec(
        cameras=("head_cam_h",), image_shape=(8, 8), train_everything=True))
    return root, pretrained


@pytest.fixture(scope="module")
def full_run(curriculum):
    root, pretrained = curriculum
    out = root / "out"
    result = train("stages=all", f"pretrained_path={pretrained}", f"data_root={root / 'data'}",
                   f"output_root={out}", "batch_size=4", "num_workers=0", "save_every_epochs=2",
                   "stage_overrides.epochs=3", "stage_overrides.lr=0.002", "stage_overrides.warmup_steps=0",
                   "policy.train_expert_only=false", "policy.freeze_vision_encoder=false", "validation.every_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_every_stage_writes_its_outputs(full_run):
    out, stdout = full_run
    for number, name in enumerate(STAGES, start=1):
        stage = out / name
        for folder in ("best", "last", "epoch2"):
            assert (stage / folder / "model.safetensors").is_file(), f"{name}/{folder}"
            meta = json.loads((stage / folder / "kuavo_smolvla.json").read_text())
            assert meta["stage"] == number and len(meta["instructions"]) == number
        state = stage / "last" / "training_state"
        assert {"optimizer_state.safetensors", "optimizer_param_groups.json", "scheduler_state.json",
                "rng_state.safetensors", "state.json"} <= {p.name for p in state.iterdir()}
        assert not list(stage.rglob("*.pt")) and not list(stage.rglob("*.pkl")), "no pickles"
        assert (stage / "training.png").read_bytes()[:4] == b"\x89PNG"
        results = json.loads((stage / "training_results.json").read_text())
        task = default_catalog().get(number)
        assert (results["task_id"], results["task_name"], results["instruction"]) == (task.id, task.name,
                                                                                      task.instruction)
        assert results["epochs"] == 3 and results["learning_rate"] == 0.002
        assert set(results["final_validation"]) == {t.name for t in list(default_catalog())[:number]}
        assert list(results["validation_matrix"]) == STAGES[:number]
        assert set(results["forgetting"]) == {t.name for t in list(default_catalog())[:number - 1]}
        for entry in results["forgetting"].values():
            expected = "retained" if entry["loss"] < 0.7 else "slight" if entry["loss"] < 1.0 else "significant"
            assert entry["label"] == expected
            assert entry["ratio"] == pytest.approx(entry["loss"] / entry["own_stage_loss"])
        assert results["best_validation_loss"] == min(h["validation"][task.name] for h in results["history"])
    assert "stage 4 (sorting): best validation loss" in stdout and "moving_grasp:" in stdout


def test_the_loss_falls_on_a_learnable_task(full_run):
    out, _ = full_run
    history = json.loads((out / STAGES[0] / "training_results.json").read_text())["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"], history
    first = history[0]["validation"]["moving_grasp"]
    assert history[-1]["validation"]["moving_grasp"] < first


def test_statistics_are_fixed_across_stages(full_run):
    from safetensors.numpy import load_file

    out, _ = full_run
    stored = json.loads((out / "curriculum_stats.json").read_text())
    np.testing.assert_allclose(stored[robot.STATE_FEATURE]["mean"], np.full(16, (1 + 2 + 3 + 4) / 16), atol=1e-6)
    for name in STAGES:
        files = list((out / name / "best").glob("policy_preprocessor_step_*normalizer*.safetensors"))
        assert files, f"{name}: no normaliser state"
        tensors = load_file(files[0])
        np.testing.assert_allclose(tensors[f"{robot.STATE_FEATURE}.mean"], stored[robot.STATE_FEATURE]["mean"],
                                   atol=1e-6)
        np.testing.assert_allclose(tensors[f"{robot.ACTION_FEATURE}.std"], stored[robot.ACTION_FEATURE]["std"],
                                   atol=1e-6)


def test_tensorboard_logs(full_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = full_run
    events = EventAccumulator(str(out / STAGES[1] / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "validation/task1_loss", "validation/task2_loss"} <= tags
    assert len(events.Scalars("validation/task2_loss")) == 3


def test_checkpoints_open_in_lerobot_and_the_runtime(full_run):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from kuavo_smolvla_ros.policy.runtime import Observation, PolicyRuntime

    out, _ = full_run
    best = out / STAGES[-1] / "best"
    assert isinstance(SmolVLAPolicy.from_pretrained(str(best)), SmolVLAPolicy)
    runtime = PolicyRuntime.open(best)
    chunk = runtime.predict_chunk(Observation({"head_cam_h": np.zeros((8, 8, 3), np.uint8)}, np.zeros(16),
                                              default_catalog().get(4).instruction), seed=0)
    assert chunk.shape == (50, 16) and np.isfinite(chunk).all()


def test_a_stage_needs_the_previous_best(curriculum, tmp_path):
    root, pretrained = curriculum
    result = train("task=tasks/task3_placement", f"pretrained_path={pretrained}", f"data_root={root / 'data'}",
                   f"output_root={tmp_path}", "num_workers=0")
    assert result.returncode == 2
    assert "starts from stage 2's best checkpoint" in result.stderr and "train task=tasks/task2_weighing" in \
        result.stderr


def test_missing_dataset_fails_before_training(curriculum, tmp_path):
    _, pretrained = curriculum
    result = train(f"pretrained_path={pretrained}", f"data_root={tmp_path / 'nowhere'}", f"output_root={tmp_path}")
    assert result.returncode == 2 and "no LeRobot dataset at" in result.stderr and "nowhere" in result.stderr


def test_a_killed_run_resumes_with_the_same_steps_and_losses(curriculum, tmp_path):
    """Kill stage 1 after its first epoch; the resumed run ends exactly like an uninterrupted one (CPU)."""
    args = stage_one_args(*curriculum, batch_size=4, epochs=3)
    reference = train(*args, f"output_root={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-2000:]
    state = tmp_path / "killed" / STAGES[0] / "last" / "training_state" / "state.json"
    process = subprocess.Popen([sys.executable, str(ROOT / "training" / "train_sequential.py"), *args,
                                f"output_root={tmp_path / 'killed'}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    kill_when(process, lambda: state.is_file() and json.loads(state.read_text())["epoch"] >= 1, 300,
              "the first epoch's checkpoint")
    killed_at = json.loads(state.read_text())["epoch"]
    resumed = train(*args, f"output_root={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = json.loads((tmp_path / "reference" / STAGES[0] / "training_results.json").read_text())
    got = json.loads((tmp_path / "killed" / STAGES[0] / "training_results.json").read_text())
    assert 1 <= killed_at < 3, "the kill must land between epochs for the resume to be exercised"
    assert got["steps"] == expected["steps"]
    for mine, theirs in zip(got["history"], expected["history"], strict=True):
        assert mine["step"] == theirs["step"]
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5, abs=1e-7)
        assert mine["validation"] == pytest.approx(theirs["validation"], rel=1e-5, abs=1e-7)


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(curriculum, tmp_path):
    import torch

    from kuavo_smolvla_ros.training.sequential import fixed_stats
    from kuavo_smolvla_ros.training.trainer import Settings, StageTrainer, TrainingError

    root, pretrained = curriculum
    from kuavo_smolvla_ros.training.curriculum import load_curriculum

    stages = load_curriculum(ROOT / "training" / "configs", [f"tasks/{STAGES[0]}"], root / "data",
                             overrides={"epochs": 2})
    settings = Settings(output_root=tmp_path, batch_size=4, num_workers=0,
                        policy={"train_expert_only": False, "freeze_vision_encoder": False})
    trainer = StageTrainer(stages[0], stages, pretrained, fixed_stats(stages, tmp_path), settings)
    trainer.train_epoch(0)
    trainer.state["epoch"] = 1
    good = trainer.save_checkpoint("last", with_state=True)
    with torch.no_grad():
        next(p for p in trainer.policy.parameters() if p.requires_grad).fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"non-finite loss nan at step \d+ \(epoch 2\); the last good checkpoint"):
        trainer.train_epoch(1)
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(good / "model.safetensors").values())
    assert json.loads((good / "training_state" / "state.json").read_text())["epoch"] == 1


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(curriculum, tmp_path):
    """torchrun with 2 CPU processes (DDP over gloo) and batch 8 = one process with batch 8."""
    from safetensors.torch import load_file

    args = stage_one_args(*curriculum, batch_size=8, epochs=2)
    single = train(*args, f"output_root={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(ROOT / "training" / "train_sequential.py"), *args, f"output_root={tmp_path / 'two'}"],
                            capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads((tmp_path / "one" / STAGES[0] / "training_results.json").read_text())["history"]
    two = json.loads((tmp_path / "two" / STAGES[0] / "training_results.json").read_text())["history"]
    assert [h["step"] for h in one] == [h["step"] for h in two]
    for a, b in zip(one, two, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    weights = [load_file(tmp_path / name / STAGES[0] / "last" / "model.safetensors") for name in ("one", "two")]
    for key, value in weights[0].items():
        assert np.allclose(value.numpy(), weights[1][key].numpy(), rtol=1e-4, atol=1e-6), key


def test_stage_one_adapts_a_base_pretrained_on_another_robot(curriculum, tmp_path):
    """Like lerobot/smolvla_base (6-dim SO-100 features, other camera names): the datasets' features
    replace the base's, its weights load (projections are sized by the padded 32 dims)."""
    import shutil

    from kuavo_smolvla_ros.policy.checkpoint import CheckpointError, inspect_checkpoint
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime

    root, pretrained = curriculum
    base = tmp_path / "so100_base"
    shutil.copytree(pretrained, base, ignore=shutil.ignore_patterns("vlm"))
    config = json.loads((base / "config.json").read_text())
    config["input_features"] = {"observation.state": {"type": "STATE", "shape": [6]},
                                "observation.images.camera1": {"type": "VISUAL", "shape": [3, 256, 256]}}
    config["output_features"] = {"action": {"type": "ACTION", "shape": [6]}}
    (base / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit the Kuavo layout"):
        inspect_checkpoint(base)  # the node refuses it
    result = train("task=tasks/task1_moving_grasp", f"pretrained_path={base}", f"vlm_path={pretrained / 'vlm'}",
                   f"data_root={root / 'data'}", f"output_root={tmp_path / 'out'}", "batch_size=4", "num_workers=0",
                   "stage_overrides.epochs=1", "policy.train_expert_only=false")
    assert result.returncode == 0, result.stderr[-2000:]
    best = tmp_path / "out" / STAGES[0] / "best"
    info = inspect_checkpoint(best)
    assert info.cameras == ["head_cam_h"]
    assert PolicyRuntime.open(best).chunk_size == 50
