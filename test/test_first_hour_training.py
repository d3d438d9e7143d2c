"""A new user's first hour with the training commands (issue 20): a wrongly typed or missing setting ends in one
``error:`` line naming the key, the value and the fix, exit code 2, no traceback and no folder; the logs show
per epoch the loss, the learning rate and the validation per seen task, and at the end every checkpoint's path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lerobot_data import write_task_datasets

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["task1_moving_grasp", "task2_weighing", "task3_placement", "task4_sorting"]


def command(script: str, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "training" / script), *overrides], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def assert_one_line(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit code 2 and exactly one stderr line, ``error: ...`` holding every ``expected``; returns it."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The four tasks' tiny datasets and a tiny relative-action checkpoint for their camera."""
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

    root = tmp_path_factory.mktemp("first_hour")
    assert write_task_datasets(root / "data") == STAGES
    checkpoint = build_checkpoint(root / "checkpoint", TinyCheckpointSpec(
        cameras=("head_cam_h",), image_shape=(8, 8), chunk_size=4, n_action_steps=4, train_everything=True,
        action_mode="relative"))
    return root, checkpoint


@pytest.mark.parametrize(("overrides", "expected"), [
    (["batch_size=abc"], ["error: batch_size must be an integer, got 'abc'"]),
    (["batch_size=1.5"], ["error: batch_size must be an integer, got 1.5"]),
    (["seed=x"], ["error: seed must be an integer, got 'x'"]),
    (["seed=-1"], ["error: seed must be >= 0, got -1"]),
    (["stage_overrides.epochs=-1"], ["error: stage_overrides.epochs must be > 0, got -1"]),
    (["stage_overrides.lr=fast"], ["error: stage_overrides.lr must be a number, got 'fast'"]),
    (["device=tpu"], ["error: device must be cpu, cuda, cuda:N or mps, got 'tpu'"]),
    (["bf16=maybe"], ["error: bf16 must be true or false, got 'maybe'"]),
    (["validation.select_best_by=best"], ["validation.select_best_by must be one of"]),
    (["stages=some"], ["error: stages must be 'one' or 'all', got 'some'"]),
    (["task=tasks/task9"], ["task='tasks/task9' is not a stage of the curriculum"]),
    (["batchsize=4"], ["error: batchsize: no such setting in smolvla_sequential_base.yaml (--help lists"]),
    (["--config-name", "demo_tiny", "task=tasks/task2_weighing"],
     ["error: task=tasks/task2_weighing with stages=all: every stage of the curriculum is trained and task is not "
      "used; add stages=one to train that stage alone"]),
    (["+newkey=1"], ["error: +newkey: no such setting in smolvla_sequential_base.yaml (--help lists"]),
    (["demo_tiny"], ["error: 'demo_tiny' is not a setting: settings are KEY=VALUE", "--config-name NAME"]),
    (["--config-name", "nope"], ["error: no config", "nope.yaml", "demo_tiny"]),
    (["policy.chunk_size=abc"], ["error: policy.chunk_size must be an integer, got 'abc'"]),
    (["policy.n_action_steps=60"], ["error: policy.n_action_steps (60) must be at most policy.chunk_size (50)"]),
    (["policy.train_expert_only=maybe"], ["error: policy.train_expert_only must be true or false, got 'maybe'"]),
    (["+policy.foo=1"], ["error: policy.foo is not a SmolVLA setting"]),
    (["device=cuda:99"], ["error: device=cuda:99: "]),
    (["vlm_path=/nonexistent/vlm"], ["error: vlm_path: no folder /nonexistent/vlm"]),
    (["camera_dropout.wrist_cam_l=1.0"], ["error: camera_dropout.wrist_cam_l must be a probability in [0, 1), "
                                          "got 1.0"]),
    (["camera_dropout.wrist_cam_l=half"], ["error: camera_dropout.wrist_cam_l must be a probability in [0, 1), "
                                           "got 'half'"]),
    ([], ["error: pretrained_path is not set: point it at a local SmolVLA checkpoint"]),
    (["pretrained_path=/nonexistent/smolvla_base"], ["error: pretrained_path: no checkpoint at "
                                                     "/nonexistent/smolvla_base"]),
])
def test_sequential_mistakes_end_in_one_line_and_create_nothing(tmp_path, overrides, expected):
    out = tmp_path / "out"
    assert_one_line(command("train_sequential.py", *overrides, f"output_root={out}"), *expected)
    assert not out.exists()


def test_a_missing_data_root_and_a_start_that_fails_later_leave_no_folder(data, tmp_path):
    root, checkpoint = data
    out = tmp_path / "out"
    assert_one_line(command("train_sequential.py", f"pretrained_path={checkpoint}", f"data_root={tmp_path / 'none'}",
                            f"output_root={out}"),
                    f"no LeRobot dataset at {tmp_path / 'none' / STAGES[0]}", "set data_root")
    assert not out.exists()
    # a pretrained_path that is not a checkpoint is found once the run has started (Hydra's folder exists then)
    assert_one_line(command("train_sequential.py", f"pretrained_path={root / 'data'}", f"data_root={root / 'data'}",
                            f"output_root={out}", "num_workers=0"), "no config.json")
    assert not out.exists()


def test_camera_dropout_of_a_camera_the_datasets_lack_names_the_cameras_they_have(data, tmp_path):
    root, checkpoint = data
    out = tmp_path / "out"
    assert_one_line(command("train_sequential.py", f"pretrained_path={checkpoint}", f"data_root={root / 'data'}",
                            f"output_root={out}", "camera_dropout.wrist_cam_l=0.5"),
                    "camera_dropout: 'wrist_cam_l' is not one of stage 1's cameras ['head_cam_h']")
    assert not out.exists()


def test_a_checkpoint_without_action_mode_says_what_is_missing(data, tmp_path):
    from kuavo_smolvla_ros.policy.checkpoint import CheckpointError, checkpoint_action_mode

    _, checkpoint = data
    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    meta = json.loads((copy / "kuavo_smolvla.json").read_text())
    del meta["action_mode"]
    (copy / "kuavo_smolvla.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as raised:
        checkpoint_action_mode(copy)
    message = str(raised.value)
    assert message == (f"{copy / 'kuavo_smolvla.json'} records no action_mode, but the processors convert actions "
                       "as 'relative' (policy_preprocessor.json, policy_postprocessor.json): add \"action_mode\": "
                       "\"relative\" to kuavo_smolvla.json")
    assert "'absolute'" not in message


@pytest.mark.parametrize(("overrides", "expected"), [
    (["teacher=/nonexistent/best"], ["error: teacher=/nonexistent/best: checkpoint /nonexistent/best does not "
                                     "exist (set teacher to"]),
    (["teacher_model_path=/nonexistent/best"], ["error: teacher_model_path=/nonexistent/best: checkpoint "
                                                "/nonexistent/best does not exist"]),
    ([], ["error: no teacher: set teacher=PATH"]),
    (["batchsize=4"], ["error: batchsize: no such setting in reflow_base.yaml"]),
])
def test_reflow_mistakes_without_a_teacher(tmp_path, overrides, expected):
    out = tmp_path / "out"
    line = assert_one_line(command("train_reflow.py", *overrides, f"output_dir={out}"), *expected)
    assert "teacher" in line or "batchsize" in line
    assert not out.exists()


@pytest.mark.parametrize(("overrides", "expected"), [
    (["batch_size=abc"], "error: batch_size must be an integer, got 'abc'"),
    (["seed=x"], "error: seed must be an integer, got 'x'"),
    (["steps=-1"], "error: steps must be > 0, got -1"),
    (["device=tpu"], "error: device must be cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["bf16=maybe"], "error: bf16 must be true or false, got 'maybe'"),
    (["lr=fast"], "error: lr must be a number, got 'fast'"),
    (["validation.every_steps=often"], "error: validation.every_steps must be an integer, got 'often'"),
])
def test_reflow_mistakes_with_a_teacher(data, tmp_path, overrides, expected):
    root, checkpoint = data
    out = tmp_path / "out"
    assert_one_line(command("train_reflow.py", f"teacher={checkpoint}", f"data_root={root / 'data'}",
                            *overrides, f"output_dir={out}"), expected)
    assert not out.exists()


def test_reflow_without_data_names_data_root(data, tmp_path):
    _, checkpoint = data
    out = tmp_path / "out"
    assert_one_line(command("train_reflow.py", f"teacher={checkpoint}", f"data_root={tmp_path / 'none'}",
                            f"output_dir={out}"), f"no LeRobot dataset at {tmp_path / 'none' / STAGES[0]}")
    assert not out.exists()


def test_help_of_both_commands(tmp_path):
    for script in ("train_sequential.py", "train_reflow.py"):
        shown = command(script, "--help")
        assert shown.returncode == 0 and shown.stdout.startswith("usage: ") and "batch_size = 64" in shown.stdout


def test_the_training_log_shows_the_learning_rate_and_every_checkpoint(data, tmp_path):
    root, checkpoint = data
    out = tmp_path / "out"
    result = command("train_sequential.py", "stages=all", "curriculum=[tasks/task1_moving_grasp,tasks/task2_weighing]",
                     f"pretrained_path={checkpoint}", f"data_root={root / 'data'}", f"output_root={out}",
                     "batch_size=4", "num_workers=0", "save_every_epochs=1", "stage_overrides.epochs=2",
                     "stage_overrides.warmup_steps=0", "stage_overrides.lr=0.001", "policy.chunk_size=4",
                     "policy.n_action_steps=4", "validation.every_epochs=1", "validation.max_batches=1")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout
    assert "task1_moving_grasp epoch 1/2: train loss " in log and ", lr " in log
    assert "task2_weighing epoch 2/2: train loss " in log and ", validation moving_grasp " in log
    epoch_lines = [line for line in log.splitlines() if " epoch " in line and "train loss" in line]
    assert len(epoch_lines) == 4 and all(", lr " in line and " elapsed, " in line and "s/epoch, about " in line
                                         and "left in this stage" in line for line in epoch_lines)
    summary = log[log.index("checkpoints written:"):]
    for stage, name in ((1, STAGES[0]), (2, STAGES[1])):
        for folder in ("best", "last", "epoch1", "epoch2"):
            assert str(out / name / folder) in summary, summary
        assert f"stage {stage} (" in summary
    written = [line for line in summary.splitlines()[1:] if " stage " in line and str(out) in line]
    assert len(written) == 8, summary
    assert any("stage 1 (moving_grasp) best (epoch " in line and line.endswith(str(out / STAGES[0] / "best"))
               for line in written), summary


def test_the_reflow_log_shows_every_checkpoint(data, tmp_path):
    root, checkpoint = data
    out = tmp_path / "reflow"
    result = command("train_reflow.py", f"teacher={checkpoint}", f"data_root={root / 'data'}", f"output_dir={out}",
                     "curriculum=[tasks/task1_moving_grasp]", "steps=4", "batch_size=4", "num_workers=0",
                     "save_freq=2", "log_freq=2", "warmup_steps=0", "validation.every_steps=2",
                     "validation.max_frames_per_task=4", "pairs.max_frames_per_task=8")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    steps = [line for line in log.splitlines() if "[reflow] step " in line and " loss " in line]
    assert [line.split("[reflow] step ")[1].split()[0] for line in steps] == ["2/4", "4/4"], log[-3000:]
    assert all(" lr " in line and " elapsed, about " in line and line.endswith(" left") for line in steps), steps
    for folder in ("best", "last", "step2", "step4"):
        assert log.count(f": {out / folder}\n") == 1, log[-3000:]  # once (not logged and printed)


def test_the_setting_readers_name_key_value_and_what_is_expected():
    from kuavo_smolvla_ros.training.common.config import flag_setting, number_setting, seed_setting
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError

    assert number_setting({"a": {"b": 3}}, "a.b") == 3 and number_setting({"a": 2.0}, "a") == 2
    for value, message in ((True, "a must be an integer, got True"), (1.5, "a must be an integer, got 1.5"),
                           ("x", "a must be an integer, got 'x'"), (0, "a must be > 0, got 0")):
        with pytest.raises(TrainingConfigError, match=message.replace("(", r"\(")):
            number_setting({"a": value}, "a")
    assert seed_setting({"seed": 0}) == 0 and seed_setting({}) == 1000
    assert flag_setting({"bf16": True}, "bf16") is True and flag_setting({}, "bf16") is False
    with pytest.raises(TrainingConfigError, match="bf16 must be true or false, got 1"):
        flag_setting({"bf16": 1}, "bf16")


def test_written_checkpoints_lists_best_last_then_the_numbered_ones(tmp_path):
    from kuavo_smolvla_ros.training.common.checkpoints import written_checkpoints

    for name in ("epoch10", "last", "epoch2", "best", ".best.tmp", "tensorboard"):
        (tmp_path / name).mkdir()
        if name != "tensorboard":
            (tmp_path / name / "model.safetensors").write_bytes(b"")
    assert [p.name for p in written_checkpoints(tmp_path)] == ["best", "last", "epoch2", "epoch10"]
    assert written_checkpoints(tmp_path / "missing") == []


def test_a_second_command_with_other_settings_is_refused_not_silently_resumed(data, tmp_path):
    """Training again into a finished stage's folder resumes it: with other settings that would silently keep
    the old run's, so it is refused naming each difference; the same settings (or only how it runs: workers,
    device) resume; an output that is a file is refused before Hydra. Reflow likewise, and it refuses a
    sequential run's folder."""
    root, checkpoint = data
    out = tmp_path / "out"
    common = [f"pretrained_path={checkpoint}", f"data_root={root / 'data'}", f"output_root={out}",
              "curriculum=[tasks/task1_moving_grasp]", "num_workers=0", "stage_overrides.epochs=1",
              "stage_overrides.warmup_steps=0", "policy.chunk_size=4", "policy.n_action_steps=4",
              "validation.max_batches=1"]
    first = command("train_sequential.py", *common, "batch_size=4")
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((out / STAGES[0] / "run_settings.json").read_text())
    assert record["batch_size"] == 4 and record["stage_overrides.epochs"] == 1
    assert_one_line(command("train_sequential.py", *common, "batch_size=8", "lr_scale=5"),
                    f"output_root={out}: stage 1 (moving_grasp) holds a run started with other settings "
                    "(batch_size 4 -> 8, lr_scale "
                    "1.0 -> 5", "choose a new output_root (to train a run further, start the new one from its best/ "
                    "checkpoint), or repeat the run's settings")
    again = command("train_sequential.py", *common, "batch_size=4", "num_workers=1")
    assert again.returncode == 0 and "resuming" in again.stdout + again.stderr, again.stderr[-3000:]
    moved = tmp_path / "moved"  # a run copied elsewhere, its datasets named another way: the same run, resumed
    shutil.copytree(out, moved)
    spelled = [f"data_root={root / 'data'}/", *[a for a in common if not a.startswith(("data_root", "output_root"))]]
    again = command("train_sequential.py", *spelled, f"output_root={moved}", "batch_size=4")
    assert again.returncode == 0 and "resuming" in again.stdout + again.stderr, again.stderr[-3000:]
    (tmp_path / "notes.txt").write_text("x")
    for output in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "sub"):
        assert_one_line(command("train_sequential.py", *common[:2], f"output_root={output}"),
                        f"output_root: {tmp_path / 'notes.txt'} is a file, not a folder")
    assert_one_line(command("train_reflow.py", f"teacher={checkpoint}", f"data_root={root / 'data'}",
                            f"output_dir={out}"), f"output_dir={out} is a sequential training's output_root")
