"""Every command in the README's shell blocks names something that exists: our commands with their
subcommands and options (as their ``--help`` lists them), make targets, files, launch arguments and the
Hydra keys of the training scripts. Commands of other tools (ros2 CLI, rsync, git, pip, hf, colcon) are
checked only for the files and names of ours they mention."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OURS = {"kuavo-rosbag-to-lerobot", "kuavo-smolvla-inspect", "kuavo-smolvla-tiny", "kuavo-sim-record",
        "kuavo-sim-eval", "policy_node", "sim_robot"}
OTHERS = {"ros2", "rsync", "mkdir", "cd", "git", "python3", "pip", "export", "source", ".venv/bin/hf", "tensorboard",
          "torchrun"}
HYDRA = {"training/train_sequential.py": "smolvla_sequential_base.yaml", "training/train_reflow.py": "reflow_base.yaml",
         "training/pretrain_base.py": "pretrain_tiny_base.yaml"}


def readme_commands() -> list[str]:
    """The command lines of the README's ```bash blocks (continuations joined, comments and prompts dropped)."""
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            if line and not line.startswith("#"):
                lines += [part.strip() for part in line.split("&&")]
    return lines


@cache
def help_text(command: str, subcommand: str | None) -> str:
    executable = Path(sys.executable).parent / command
    args = [str(executable), *([subcommand] if subcommand else []), "--help"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)} exits {result.returncode}: {result.stderr[-500:]}"
    return result.stdout


def hydra_keys(config: str) -> set[str]:
    return set(yaml.safe_load((ROOT / "training" / "configs" / config).read_text()))


COMMANDS = readme_commands()


def test_the_readme_has_commands():
    assert len(COMMANDS) > 20
    assert {"make test", "make demo"} <= set(COMMANDS)


@pytest.mark.parametrize("line", COMMANDS)
def test_each_readme_command_names_what_exists(line):
    words = shlex.split(line.replace("<this repository>", "URL"))
    first = words[0]
    if first in OURS:
        subcommand = words[1] if first == "kuavo-rosbag-to-lerobot" else None
        if subcommand:
            assert subcommand in help_text(first, None), f"{first} has no subcommand {subcommand}"
        shown = help_text(first, subcommand)
        for word in words[1:]:
            option = word.split("=", 1)[0]
            if option.startswith("-") and option not in ("-p", "--ros-args"):
                assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", shown), f"{first}: no option {option}"
    elif first == "make":
        targets = re.findall(r"^([A-Za-z_-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert words[1] in targets, f"no make target {words[1]}"
    elif first == "python" and words[1] in HYDRA:
        assert (ROOT / words[1]).is_file()
        rest, config = words[2:], HYDRA[words[1]]
        if rest[:1] == ["--config-name"]:  # another config beside the script's own (its defaults included)
            config, rest = f"{rest[1]}.yaml", rest[2:]
            assert (ROOT / "training" / "configs" / config).is_file(), f"no config {config}"
        keys = hydra_keys(config) | (hydra_keys(HYDRA[words[1]]) if config != HYDRA[words[1]] else set())
        for word in rest:
            key = word.split("=", 1)[0].split(".", 1)[0].lstrip("+")
            assert key in keys, f"{words[1]}: no config key {key!r} in {config}"
    elif first == "ros2" and words[1] == "launch":
        assert words[2] == "kuavo_smolvla_ros"
        launch = (ROOT / "launch" / words[3]).read_text()
        if words[3] == "sim.launch.py":  # it declares policy.launch.py's arguments too
            launch += (ROOT / "launch" / "policy.launch.py").read_text()
        for word in words[4:]:
            name = word.split(":=", 1)[0]
            assert f'"{name}"' in launch, f"{words[3]} declares no argument {name}"
    elif first == "python" and words[1:3] == ["-m", "colcon"]:
        assert (ROOT / "package.xml").is_file() and (ROOT / "CMakeLists.txt").is_file()
    elif first == "source":
        assert (words[1] == "env.sh" and (ROOT / "env.sh").is_file()) or words[1].startswith(("/", "install", "~"))
    else:
        assert first in OTHERS, f"a README command this test does not know: {line}"
