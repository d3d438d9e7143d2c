"""Every entry point tells its exit statuses in ``--help`` and keeps them (issue 20): the console scripts, the two
nodes and the three Hydra training scripts; a missing checkpoint is refused with 2 by every command that takes
one; a mistyped ``--stats`` is one line; Ctrl-C in training is one line and 130. Real processes, as a user
runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from processes import ctrl_c_when

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = os.environ | {"OMP_NUM_THREADS": "1"}

#: The installed console scripts (setup.py) and the training scripts, as a user calls each.
COMMANDS = {
    "kuavo-smolvla-tiny": [str(BIN / "kuavo-smolvla-tiny")],
    "kuavo-smolvla-inspect": [str(BIN / "kuavo-smolvla-inspect")],
    "kuavo-rosbag-to-lerobot": [str(BIN / "kuavo-rosbag-to-lerobot")],
    "kuavo-sim-record": [str(BIN / "kuavo-sim-record")],
    "kuavo-sim-eval": [str(BIN / "kuavo-sim-eval")],
    "policy_node": [sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node"],
    "sim_robot": [sys.executable, "-m", "kuavo_smolvla_ros.ros.sim_node"],
    "train_sequential": [sys.executable, str(ROOT / "training" / "train_sequential.py")],
    "train_reflow": [sys.executable, str(ROOT / "training" / "train_reflow.py")],
    "pretrain_base": [sys.executable, str(ROOT / "training" / "pretrain_base.py")],
}


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)


def test_every_entry_point_is_covered():
    text = (ROOT / "setup.py").read_text()
    scripts = {line.split("=")[0].strip().strip('"') for line in text.splitlines() if "= kuavo_smolvla_ros." in line}
    assert len(scripts) == 7, scripts
    assert scripts <= set(COMMANDS), scripts - set(COMMANDS)
    assert {p.stem for p in (ROOT / "training").glob("*.py")} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_lists_the_exit_statuses(name):
    shown = run([*COMMANDS[name], "--help"])
    assert shown.returncode == 0, shown.stderr[-2000:]
    section = shown.stdout[shown.stdout.index("exit status:"):]
    codes = [line.split()[0] for line in section.splitlines()[1:] if line[:2] == "  " and line.split()[0].isdigit()]
    assert codes[0] == "0" and "2" in codes, section
    assert codes == sorted(codes, key=int), section
    assert "Traceback" not in shown.stderr


@pytest.mark.parametrize("name", ["kuavo-smolvla-inspect", "kuavo-sim-eval"])
def test_a_missing_checkpoint_is_refused_with_2_in_one_line(tmp_path, name):
    missing = tmp_path / "no_such_checkpoint"
    result = run([*COMMANDS[name], str(missing)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "error: " in lines[0] and str(missing) in lines[0], lines
    assert not missing.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("content", "expected"), [
    (None, "No such file or directory"),
    ("{not json", "Expecting property name"),
    ('{"observation.state": {"mean": [0], "std": [1]}}', "must be 16 values"),
    ("[1, 2]", "stats must give 'mean' and 'std' for 'observation.state'"),
])
def test_tiny_refuses_bad_stats_in_one_line_and_writes_nothing(tmp_path, content, expected):
    stats = tmp_path / "stats.json"
    if content is not None:
        stats.write_text(content)
    out = tmp_path / "tiny"
    result = run([*COMMANDS["kuavo-smolvla-tiny"], str(out), "--stats", str(stats)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: --stats {stats}: ") and expected in lines[0], lines
    assert not out.exists()


def test_ctrl_c_in_training_is_one_line_and_130(tmp_path):
    """SIGINT while the first stage trains: one line saying how to go on, exit 130, no traceback; the
    checkpoint written before (``last/``, with the state to resume from) is intact. The process starts with
    SIGINT at its default (CI's background jobs inherit it ignored)."""
    from lerobot_data import write_dataset

    from kuavo_smolvla_ros.policy.checkpoint import inspect_checkpoint
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint
    from kuavo_smolvla_ros.tasks import default_catalog
    from kuavo_smolvla_ros.training.cli import RESUMABLE

    task = default_catalog().get(1)
    write_dataset(tmp_path / "data" / task.stage_dir, 0.25, episodes=3, frames=8, instruction=task.instruction)
    checkpoint = build_checkpoint(tmp_path / "checkpoint", TinyCheckpointSpec(
        cameras=("head_cam_h",), image_shape=(8, 8), chunk_size=4, n_action_steps=4, train_everything=True))
    out = tmp_path / "out"
    last = out / task.stage_dir / "last"
    command = [*COMMANDS["train_sequential"], f"pretrained_path={checkpoint}", f"data_root={tmp_path / 'data'}",
               f"output_root={out}", "curriculum=[tasks/task1_moving_grasp]", "batch_size=4", "num_workers=0",
               "save_every_epochs=1", "stage_overrides.epochs=100000", "stage_overrides.warmup_steps=0",
               "policy.chunk_size=4", "policy.n_action_steps=4", "validation.every_epochs=1000",
               "validation.max_batches=1"]
    code, _, stderr = ctrl_c_when(command, lambda _: (last / "training_state").is_dir(), 300, "an epoch's last/")
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == RESUMABLE, stderr[-3000:]
    assert inspect_checkpoint(last).path == last and (last / "training_state").is_dir()


@pytest.mark.parametrize(("args", "expected"), [
    (["--tasks", ""], "error: --tasks names no task ('')"),
    (["--tasks", "1,moving_grasp"], "error: --tasks names moving_grasp more than once"),
    (["--tasks", "9"], "error: --tasks: "),
    (["--episodes", "0"], "error: --episodes must be >= 1, got 0"),
    (["--first-seed", "-1"], "error: --first-seed must be >= 0, got -1"),
    (["--image-size", "0", "0"], "error: --image-size must be 8..2048 pixels per side, got 0 0"),
    (["--image-size", "100000", "64"], "error: --image-size must be 8..2048 pixels per side"),
    (["--camera-hz", "0"], "error: --camera-hz must be 1..120, got 0"),
    (["--camera-hz", "-30"], "error: --camera-hz must be 1..120, got -30"),
    (["--camera-hz", "nan"], "error: --camera-hz must be 1..120, got nan"),
    (["--robot", "nope"], "error: --robot: "),
    (["--tasks", "all,1"], "error: --tasks: 'all' stands alone, got 'all,1'"),
])
def test_sim_record_refuses_bad_arguments_in_one_line_and_writes_nothing(tmp_path, capsys, args, expected):
    from kuavo_smolvla_ros.sim.record import main

    output = tmp_path / "bags"
    assert main([str(output), "--episodes", "1", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), captured.err
    assert not output.exists()
    (tmp_path / "file").write_text("x")
    for under_a_file in (tmp_path / "file", tmp_path / "file" / "bags"):
        assert main([str(under_a_file), "--episodes", "1"]) == 2
        assert capsys.readouterr().err == f"error: {tmp_path / 'file'} is a file, not a folder\n"


def test_sim_record_refuses_to_add_to_another_demonstrators_bags(tmp_path, capsys):
    """Bags of another demonstrator (other settings here; another version of the simulated expert alike) are
    never mixed with new ones: refused in one line, nothing written, the old bags kept; the same settings
    again add nothing and succeed."""
    from kuavo_smolvla_ros.sim.record import STAMP_FILE, main

    output = tmp_path / "bags"
    folder = output / "task1_moving_grasp"
    assert main([str(output), "--tasks", "1", "--episodes", "1", "--image-size", "32", "32", "--quiet"]) == 0
    first = sorted(folder.iterdir())
    assert [p.name for p in first] == ["episode_00000.bag"] and (output / STAMP_FILE).is_file()
    capsys.readouterr()
    assert main([str(output), "--tasks", "1", "--episodes", "2", "--quiet"]) == 2  # 64 x 64 now
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {folder} hold(s) bags recorded by another version"), err
    assert sorted(folder.iterdir()) == first
    assert main([str(output), "--tasks", "1", "--episodes", "1", "--image-size", "32", "32", "--quiet"]) == 0
    assert "wrote 0 bag(s)" in capsys.readouterr().out
    (output / STAMP_FILE).unlink()  # bags of unknown origin (recorded before the stamp existed)
    assert main([str(output), "--tasks", "1", "--episodes", "1", "--image-size", "32", "32", "--quiet"]) == 2
    assert sorted(folder.iterdir()) == first
    # another task's folder is not this one's business
    assert main([str(output), "--tasks", "2", "--episodes", "1", "--quiet"]) == 0


@pytest.mark.parametrize("damage", ["cut", "empty", "list", "number", "folder"])
def test_sim_record_refuses_an_unreadable_stamp_in_one_line_and_keeps_the_bags(tmp_path, capsys, damage):
    """demonstrations.json says which demonstrator wrote the bags: damaged, nothing is assumed (found by a
    helper: a JSON list gave a traceback, a cut file blamed --robot, a folder a traceback)."""
    import shutil

    from kuavo_smolvla_ros.sim.record import STAMP_FILE, main

    output = tmp_path / "bags"
    assert main([str(output), "--tasks", "1", "--episodes", "1", "--image-size", "32", "32", "--quiet"]) == 0
    bags = sorted((output / "task1_moving_grasp").iterdir())
    stamp = output / STAMP_FILE
    good = stamp.read_text()
    if damage == "folder":
        stamp.unlink()
        stamp.mkdir()
    else:
        damaged = {"cut": good[:20], "empty": "", "list": "[1, 2]", "number": '{"task1_moving_grasp": 5}'}
        stamp.write_text(damaged[damage])
    capsys.readouterr()
    for tasks in ("1", "3"):  # the damaged stamp's own task, and another one
        assert main([str(output), "--tasks", tasks, "--episodes", "1", "--image-size", "32", "32", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {stamp} is "), err
        assert "Traceback" not in err[0] and "--robot" not in err[0]
    assert sorted((output / "task1_moving_grasp").iterdir()) == bags and not (output / "task3_placement").exists()
    if damage == "folder":
        shutil.rmtree(stamp)


def test_ctrl_c_in_sim_record_keeps_the_bags_written_and_says_so(tmp_path):
    output = tmp_path / "bags"
    folder = output / "task1_moving_grasp"
    code, out, err = ctrl_c_when([*COMMANDS["kuavo-sim-record"], str(output), "--tasks", "1", "--episodes", "40"],
                                 lambda _: any(folder.glob("episode_*.bag")), 240, "a bag written")
    assert code in (130, -2), (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and "Traceback" not in err, err
    bags = sorted(folder.glob("episode_*.bag"))
    assert 1 <= len(bags) < 40 and lines[0].startswith(f"interrupted: {len(bags)} bag(s) written under {output}")
    assert not list(folder.glob(".recording-*"))  # no half-written bag


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("cpu_seconds", [2, 10])
def test_ctrl_c_in_sim_eval_is_one_line_and_writes_nothing(tmp_path, cpu_seconds):
    """Interrupted while it imports and loads (after 2 CPU-s) or scores (after 10 CPU-s: imports, the checkpoint
    and the first episodes; on a loaded machine it may still be loading: the same line either way)."""
    from kuavo_smolvla_ros.policy.tiny import build_checkpoint

    checkpoint = build_checkpoint(tmp_path / "tiny")
    output = tmp_path / "eval"
    code, out, err = ctrl_c_when([*COMMANDS["kuavo-sim-eval"], str(checkpoint), "--episodes", "500",
                                  "--latency-ticks", "1", "--output", str(output)],
                                 lambda process: _cpu_seconds(process.pid) > cpu_seconds, 300,
                                 f"{cpu_seconds} CPU-s of work")
    assert code in (130, -2), (code, out, err)
    assert err.strip().splitlines() == ["kuavo-sim-eval: interrupted: nothing written"], err
    assert not output.exists()


@pytest.mark.parametrize("fps", ["0", "-5", "2000"])
def test_converter_refuses_an_out_of_range_fps_naming_the_flag(tmp_path, capsys, fps):
    from kuavo_smolvla_ros.data.cli import main

    output = tmp_path / "task1_moving_grasp"
    assert main(["convert", str(tmp_path), "-o", str(output), "-t", "1", "--fps", fps]) == 2
    assert capsys.readouterr().err == f"error: --fps must be 1..1000, got {fps}\n"
    assert not output.exists()


def test_tiny_refuses_a_camera_named_twice(tmp_path):
    result = run([*COMMANDS["kuavo-smolvla-tiny"], str(tmp_path / "tiny"), "--cameras", "a", "b", "a"])
    assert result.returncode == 2 and result.stderr == "error: --cameras names a more than once\n", result.stderr
    assert not (tmp_path / "tiny").exists()


@pytest.mark.parametrize("name", ["policy_node", "sim_robot"])
def test_a_params_file_that_is_not_there_is_one_line_and_2(tmp_path, name):
    missing = tmp_path / "nope.yaml"
    result = run([*COMMANDS[name], "--ros-args", "--params-file", str(missing)], timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].endswith(f"cannot start: --params-file {missing}: no such file"), lines


def test_inspect_refuses_bad_arguments_with_2_before_reading_the_checkpoint(tmp_path, capsys):
    from kuavo_smolvla_ros.policy.checkpoint import main

    (tmp_path / "file").write_text("x")
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [([str(tmp_path / "file")], f"error: {tmp_path / 'file'} is a file: a checkpoint is a folder"),
             ([str(folder), "--vlm-path", str(tmp_path / "nope")], f"error: --vlm-path {tmp_path / 'nope'}: no such"),
             ([str(folder), "--vlm-path", str(tmp_path / "file")],
              f"error: --vlm-path {tmp_path / 'file'}: a file, not a folder (a local SmolVLM2 folder)"),
             ([str(folder), "--vlm-hub-id", "foo/bar"], "error: --vlm-hub-id is used by --make-portable only")]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(expected) and err.count("\n") == 1, err
    assert main([str(folder)]) == 1  # a folder that is no checkpoint: refused as a checkpoint, not an argument
    assert capsys.readouterr().err.startswith("error: ")


def test_validate_refuses_a_negative_gap(tmp_path, capsys):
    from kuavo_smolvla_ros.data.cli import main

    assert main(["validate", str(tmp_path), "--max-gap-frames", "-3"]) == 2
    assert capsys.readouterr().err == "error: --max-gap-frames must be >= 0, got -3\n"


def test_help_piped_into_head_exits_0():
    shown = subprocess.run(f"{' '.join(COMMANDS['train_reflow'])} --help | head -1; exit ${{PIPESTATUS[0]}}",
                           shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120,
                           env=ENV, cwd=ROOT)
    assert shown.returncode == 0 and shown.stdout.startswith("usage: ") and "BrokenPipe" not in shown.stderr


@pytest.mark.parametrize("name", ["policy_node", "sim_robot"])
def test_an_argument_before_ros_args_is_refused(name):
    result = run([*COMMANDS[name], "--bogus"], timeout=60)
    assert result.returncode == 2 and result.stderr == (
        "error: unknown argument(s) --bogus: parameters go after --ros-args (-p NAME:=VALUE, --params-file FILE); "
        "--help lists them\n"), result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--cameras", ""], "error: --cameras: '' is not a camera name (letters, digits and _, starting with a letter)"),
    (["--cameras", "head/cam"], "error: --cameras: 'head/cam' is not a camera name"),
    (["--image-size", "100000", "100000"], "error: --image-size must be 8..2048 pixels per side, got 100000 100000"),
    (["--image-size", "0", "64"], "error: --image-size must be 8..2048 pixels per side, got 0 64"),
])
def test_tiny_refuses_what_would_make_a_checkpoint_that_fails_later(tmp_path, args, message):
    result = run([*COMMANDS["kuavo-smolvla-tiny"], str(tmp_path / "tiny"), *args])
    assert result.returncode == 2 and result.stderr.startswith(message) and result.stderr.count("\n") == 1, \
        result.stderr
    assert not (tmp_path / "tiny").exists()


def test_tiny_refuses_an_output_under_a_file(tmp_path):
    (tmp_path / "notes").write_text("x")
    result = run([*COMMANDS["kuavo-smolvla-tiny"], str(tmp_path / "notes" / "tiny")])
    assert result.returncode == 2 and result.stderr == (f"error: {tmp_path / 'notes' / 'tiny'}: {tmp_path / 'notes'} "
                                                        "is a file, not a folder\n"), result.stderr


@pytest.mark.parametrize("name", ["kuavo-smolvla-inspect", "kuavo-smolvla-tiny", "kuavo-sim-record",
                                  "train_sequential"])
def test_ctrl_c_while_a_command_starts_is_one_line_and_130(tmp_path, name):
    """Ctrl-C in the first moments, while the command's modules import: the console scripts' shim
    (``kuavo_smolvla_ros.entry``) and the training scripts' handler give one line and 130, never a traceback."""
    # inspect refuses a folder without config.json in 0.4 CPU-s, too close to the 0.3 at which the interrupt
    # comes (it failed CI once by ending first): with one, it goes on to import lerobot (~8 CPU-s) to check it.
    (tmp_path / "config.json").write_text('{"type": "smolvla"}')
    argv = {"kuavo-smolvla-inspect": [str(tmp_path)], "kuavo-smolvla-tiny": [str(tmp_path / "tiny")],
            "kuavo-sim-record": [str(tmp_path / "bags"), "--tasks", "1"],
            "train_sequential": [f"output_root={tmp_path / 'out'}"]}[name]
    code, _, err = ctrl_c_when([*COMMANDS[name], *argv], lambda process: _cpu_seconds(process.pid) > 0.3, 120,
                                 "0.3 CPU-s of start-up")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130, (code, err[-2000:])
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err, err[-2000:]


@pytest.mark.parametrize("name", ["policy_node", "sim_robot"])
def test_ctrl_c_while_a_node_imports_is_one_line_and_130(name):
    """The nodes' console scripts go through the same shim: Ctrl-C at 0.25 CPU-s, inside their imports (rclpy,
    ~0.1-0.45 CPU-s here), is one line and 130, never a traceback (once built, Ctrl-C stops them with 0)."""
    code, _, err = ctrl_c_when([str(BIN / name)], lambda process: _cpu_seconds(process.pid) > 0.25, 120,
                               "0.25 CPU-s of start-up")
    assert (code, err) == (130, f"{name}: interrupted\n"), (code, err[-2000:])
