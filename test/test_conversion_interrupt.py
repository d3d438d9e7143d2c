"""Ctrl-C during a conversion: one line, exit status 130, nothing half-written that looks finished, and
``--resume`` finishes the job reusing what was done."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from processes import ctrl_c_when

from kuavo_smolvla_ros.data.convert import PART_DONE, convert
from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag
from kuavo_smolvla_ros.data.validate import validate

BAGS = 12  # enough work that the interrupt lands while bags remain, however loaded the machine


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interrupt_bags")
    for i in range(BAGS):
        write_synthetic_bag(folder / f"ep{i}.bag", "ros1", SyntheticBag(seconds=4, jitter_s=0.002, seed=40 + i))
    return folder


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_prints_one_line_exits_130_and_resume_finishes(tmp_path, bags, workers):
    output = tmp_path / "out"
    parts = output.with_name("out.parts")
    command = [sys.executable, "-m", "kuavo_smolvla_ros.data.cli", "convert", str(bags), "-o", str(output),
               "-t", "2", "-q", "-j", str(workers)]
    code, out, err = ctrl_c_when(command, lambda _: any(parts.glob(f"*/{PART_DONE}")), 240, "a bag finishing")
    # 130, or killed by the SIGINT itself when the group's signal reaches the main process again while it exits:
    # a shell reports both as $? = 130
    assert code in (130, -signal.SIGINT), (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and lines[0].endswith(
        f"of {BAGS} bag(s) done, resume with --resume"), err
    assert "Traceback" not in out + err
    done = int(lines[0].split()[1])  # bags whose results had reached the main process (a part may be further)
    assert 0 <= done < BAGS
    # the output is not there or is a dataset; each part is finished (its record, a dataset lerobot opens) or
    # has no record (converted again on resume)
    assert not output.exists() or validate(output).ok
    finished = [p for p in parts.iterdir() if (p / PART_DONE).is_file()]
    assert len(finished) >= max(done, 1)  # one had finished before the interrupt was sent
    for part in finished:
        assert validate(part / "dataset").ok

    result = convert([bags], output, task="2", resume=True, workers=workers, progress=False)
    statuses = [r.status for r in result.results]
    assert statuses.count("reused") >= len(finished) and "failed" not in statuses
    check = validate(output)
    assert check.ok and check.episodes == BAGS
    assert not parts.exists()


def _forkserver_of(pid: int) -> bool:
    """Whether ``pid`` has a child running multiprocessing's fork server (read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"forkserver" in (entry / "cmdline").read_bytes():
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def test_ctrl_c_while_the_workers_start_is_one_line_too(tmp_path, bags):
    """The interrupt lands while the fork server imports its modules (seconds, before any bag is done): still
    the one line and no traceback from the server or a worker; nothing is in the output."""
    output = tmp_path / "out"
    command = [sys.executable, "-m", "kuavo_smolvla_ros.data.cli", "convert", str(bags), "-o", str(output),
               "-t", "2", "-q", "-j", "2"]
    code, out, err = ctrl_c_when(command, lambda process: _forkserver_of(process.pid), 120, "the fork server")
    assert code in (130, -signal.SIGINT), (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err
    assert "Traceback" not in out + err
    assert not output.exists()
