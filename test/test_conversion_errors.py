"""The converter's error paths as a user meets them (issue 20): each refusal is one ``error:`` line naming the
path and what is wrong, with exit status 2 and nothing written; a refused bag names its own cause, once, alone
or in a batch, quiet or not; ``--quiet`` shows no progress bar; ``--help`` lists the exit statuses. Real bags
(rosbags' writers) and real LeRobot datasets."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.data.cli import main as cli
from kuavo_smolvla_ros.data.convert import convert
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag
from kuavo_smolvla_ros.data.validate import validate

KUAVO = load_profile("kuavo4pro")
CLAW_STATE = KUAVO.end_effector.state_topic
MISSING_CLAW = f"missing topic(s) ['{CLAW_STATE}']"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _lines(text: str) -> list[str]:
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bags")
    write_synthetic_bag(folder / "good.bag", "ros1", SyntheticBag(seconds=2, seed=41))
    write_synthetic_bag(folder / "other.bag", "ros1", SyntheticBag(seconds=2, seed=42, jitter_s=0.002))
    write_synthetic_bag(folder / "no_claw.bag", "ros1", SyntheticBag(seconds=2, omit_topics=(CLAW_STATE,)))
    write_synthetic_bag(folder / "no_head.bag", "ros1",
                        SyntheticBag(seconds=2, omit_topics=(KUAVO.cameras[0].topic,)))
    return folder


@pytest.fixture(scope="module")
def dataset(bags, tmp_path_factory) -> Path:
    """A dataset of task 1 (moving_grasp) with good.bag."""
    output = tmp_path_factory.mktemp("datasets") / "task1_moving_grasp"
    result = convert([bags / "good.bag"], output, task="moving_grasp", storage="png", progress=False)
    assert [r.status for r in result.results] == ["converted"]
    return output


# ------------------------------------------------------------------------------------- 1, 5: a bag's own cause
@pytest.mark.parametrize("quiet", [True, False])
def test_a_bag_missing_a_stream_alone_fails_with_its_missing_topic(tmp_path, capsys, bags, quiet):
    """Converted alone (with or without --quiet: progress bars on), the bag fails with the missing topic, once;
    nothing is created. A bag missing a camera topic the same."""
    missing_head = f"missing topic(s) ['{KUAVO.cameras[0].topic}']"
    for name, missing in (("no_claw.bag", MISSING_CLAW), ("no_head.bag", missing_head)):
        output = tmp_path / name
        code = cli(["convert", str(bags / name), "-o", str(output), "-t", "1", *(["-q"] if quiet else [])])
        captured = capsys.readouterr()
        assert code == 1, captured.err
        failed = [line for line in _lines(captured.err) if "FAILED" in line]
        assert len(failed) == 1 and failed[0].startswith(f"FAILED {bags / name}: {missing} (the bag has ["), failed
        assert "readable frame" not in captured.err and "Traceback" not in captured.err
        summary = f"{name}: 0 episode(s) added (0 frames), 0 skipped, 1 failed, 0 in the dataset"
        assert captured.out.splitlines()[0] == summary
        assert not output.exists() and not output.with_name(f"{name}.parts").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_in_a_batch_each_failed_bag_is_printed_once(tmp_path, capsys, bags, workers):
    batch = tmp_path / "batch"
    batch.mkdir()
    for name in ("good.bag", "no_claw.bag", "no_head.bag"):
        shutil.copyfile(bags / name, batch / name)
    code = cli(["convert", str(batch), "-o", str(tmp_path / "out"), "-t", "1", "--png", "-j", workers])
    captured = capsys.readouterr()
    assert code == 1
    failed = [line for line in _lines(captured.err) if "FAILED" in line]
    names = ("no_claw.bag", "no_head.bag")
    assert [line.split(":")[0] for line in failed] == [f"FAILED {batch / name}" for name in names]
    assert MISSING_CLAW in failed[0]
    assert "out: 1 episode(s) added (14 frames), 0 skipped, 2 failed, 1 in the dataset" in captured.out


# ------------------------------------------------------------------------------ 2, 6: what --output may be
def _refused(capsys, argv: list[str], expected: str, unchanged: Path | None = None) -> None:
    before = _files(unchanged) if unchanged is not None and unchanged.is_dir() else None
    code = cli(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err == f"error: {expected}\n" and captured.out == ""
    if before is not None:
        assert _files(unchanged) == before


def test_resume_into_a_folder_that_is_not_a_dataset_is_refused_in_one_line(tmp_path, capsys, bags):
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "todo.txt").write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    good = str(bags / "good.bag")
    for folder, what in ((notes, "a folder without meta/info.json"), (empty, "an empty folder"),
                         (a_file, "a file, not a folder")):
        for resume in (["--resume"], []):
            _refused(capsys, ["convert", good, "-o", str(folder), "-t", "1", "-q", *resume],
                     f"--output {folder} exists and is not a LeRobot dataset ({what}): give a new folder (it is "
                     "created); --resume adds to a dataset this tool wrote", folder if folder.is_dir() else None)
        assert not folder.with_name(f"{folder.name}.parts").exists()
    assert a_file.read_text() == "x"
    under = a_file / "sub"  # an output under a file: refused before anything is read or made
    _refused(capsys, ["convert", good, "-o", str(under), "-t", "1", "-q"],
             f"--output {under}: {a_file} is a file, not a folder: choose a folder that can be created", None)
    assert not tmp_path.joinpath("a_file.parts").exists() and a_file.read_text() == "x"


def test_resume_with_another_task_is_refused_naming_both(tmp_path, capsys, bags, dataset):
    copy = tmp_path / "task1_moving_grasp"
    shutil.copytree(dataset, copy)
    _refused(capsys, ["convert", str(bags / "other.bag"), "-o", str(copy), "-t", "2", "-q", "--resume"],
             f"--task weighing is not the task of {copy}, which holds moving_grasp: one dataset per task; convert "
             "weighing's bags into a folder of their own (task2_weighing)", copy)
    # a new folder named after another task's training folder
    _refused(capsys, ["convert", str(bags / "other.bag"), "-o", str(tmp_path / "task3_placement"), "-t", "weighing"],
             "--output task3_placement is the training folder of task 3 (placement) but --task is 2 (weighing): "
             "training would take these episodes as placement's; name the folder task2_weighing")
    assert not (tmp_path / "task3_placement").exists()
    # the same task by another of its names is accepted
    assert cli(["convert", str(bags / "other.bag"), "-o", str(copy), "-t", "task1", "-q", "--resume", "--png"]) == 0
    assert validate(copy).episodes == 2


# ---------------------------------------------------------------------------------- 3: validate a bad path
def test_validate_on_a_mistyped_path_creates_nothing(tmp_path, capsys, dataset):
    typo = tmp_path / "datasets" / "task1_movinggrasp"
    _refused(capsys, ["validate", str(typo)], f"no dataset at {typo} (nothing there)")
    assert not typo.exists() and not typo.parent.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(capsys, ["validate", str(empty)], f"no dataset at {empty} (an empty folder)", empty)
    assert validate(typo).findings == [f"lerobot cannot open {typo}: nothing there"] and not typo.exists()
    broken = tmp_path / "broken"  # a dataset that lost a metadata file: a finding, never a Hub download
    shutil.copytree(dataset, broken)
    (broken / "meta" / "tasks.parquet").unlink()
    assert cli(["validate", str(broken)]) == 1
    captured = capsys.readouterr()
    assert captured.out == (f"1 problem(s) in {broken}:\n  - lerobot cannot open {broken}: meta/tasks.parquet is "
                            "missing: the dataset is incomplete\n")
    assert "HF_HUB_OFFLINE" not in captured.out + captured.err
    lost = tmp_path / "lost"  # a dataset that lost a data file: the finding names the file
    shutil.copytree(dataset, lost)
    (lost / "data" / "chunk-000" / "file-000.parquet").unlink()
    assert cli(["validate", str(lost)]) == 1
    assert capsys.readouterr().out == (
        f"1 problem(s) in {lost}:\n  - lerobot cannot open {lost}: data/chunk-000/file-000.parquet is missing (the "
        "episodes' index lists it): the dataset is incomplete\n")


# ------------------------------------------------------------------------------ 4: --quiet, no progress bars
def _run_in_terminal(argv: list[str], timeout: float = 240) -> tuple[int, str]:
    """The converter's CLI in a fresh process whose stdout and stderr are a terminal (120 columns)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "kuavo_smolvla_ros.data.cli", *argv], stdin=subprocess.DEVNULL,
                               stdout=terminal, stderr=terminal, env=os.environ | {"OMP_NUM_THREADS": "1"})
    os.close(terminal)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the process is done
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return code, output.decode(errors="replace")


def test_quiet_shows_no_progress_bars_on_a_terminal(tmp_path, bags, dataset):
    """Resuming (lerobot aggregates: "Validate all meta data", "Copy data and videos"; datasets' "Map") on a
    terminal: without --quiet the bars show, with --quiet none, nor datasets' warning about them."""
    bars = ("%|", "Map", "Copy data and videos", "Validate all meta data", "frame/s", "bag/s")
    outputs = {}
    for quiet in (False, True):
        copy = tmp_path / ("quiet" if quiet else "loud") / dataset.name
        shutil.copytree(dataset, copy)
        code, outputs[quiet] = _run_in_terminal(["convert", str(bags / "other.bag"), "-o", str(copy), "-t", "1",
                                                 "--png", "--resume", *(["-q"] if quiet else [])])
        assert code == 0, outputs[quiet]
    assert all(bar in outputs[False] for bar in ("%|", "Copy data and videos", "bag/s")), outputs[False]
    assert not [bar for bar in bars if bar in outputs[True]], outputs[True]
    report = tmp_path / "quiet" / dataset.name / "meta" / "kuavo_conversion.json"
    assert _lines(outputs[True]) == [f"{dataset.name}: 1 episode(s) added (14 frames), 0 skipped, 0 failed, 2 in the "
                                     "dataset", f"report: {report}"]
    assert "Cannot enable progress bars" not in outputs[True]


def test_bars_are_off_when_stderr_is_not_a_terminal(tmp_path, bags, dataset):
    """Piped into a log (no --quiet), neither lerobot's bars nor ours draw: stderr holds whole lines only."""
    copy = tmp_path / dataset.name
    shutil.copytree(dataset, copy)
    run = subprocess.run([sys.executable, "-m", "kuavo_smolvla_ros.data.cli", "convert", str(bags / "other.bag"), "-o",
                          str(copy), "-t", "1", "--png", "--resume"], capture_output=True, text=True, timeout=240,
                         env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    assert not [bar for bar in ("Map", "Copy data and videos", "Validate all meta data", "Cannot enable", "bag/s",
                                "frame/s", "%|", "\r") if bar in run.stderr], run.stderr


# ----------------------------------------------------------------------------------------- 7: exit codes
@pytest.mark.parametrize("command", [[], ["convert"], ["validate"]])
def test_help_lists_the_exit_statuses(capsys, command):
    with pytest.raises(SystemExit) as exited:
        cli([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    section = out[out.index("exit status:"):]
    assert [line.split()[0] for line in section.splitlines()[1:] if line.startswith("  ") and
            line.split()[0].isdigit()] == ["0", "1", "2", "130"]
    assert "FAILED" in section and "no dataset at the path" in section and "another task" in section
    assert "interrupted (Ctrl-C)" in section and "--resume" in section


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        cli(["convert", "x.bag"])  # no --output, no --task
    assert exited.value.code == 2
    assert "required" in capsys.readouterr().err
