"""What the Hydra front ends in ``training/`` share: a resolved config in, one ``error:`` line and exit code 2
for a configuration or training problem (no traceback), the run's own result otherwise."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_or_exit(run: Callable[[dict, Path], Any], cfg, configs_dir: Path) -> Any:
    """``run(cfg as a plain dict, configs_dir)``; a known error prints ``error: ...`` and exits with 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # the datasets library's per-episode "Map"/"Generating train split" bars would bury the per-epoch lines
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import warnings

    # lerobot re-enables the bars per dataset it opens; the variable wins, and datasets warns each time
    warnings.filterwarnings("ignore", message="Cannot enable progress bars")
    from omegaconf import OmegaConf

    from kuavo_smolvla_ros.policy.checkpoint import CheckpointError
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError, TrainingError

    try:
        return run(OmegaConf.to_container(cfg, resolve=True), configs_dir)
    except (TrainingConfigError, TrainingError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _settings(config: Path) -> list[list]:
    """[dotted key, value text, comment lines] of every setting in ``config`` (Hydra's ``hydra:`` section and
    the ``defaults`` list left out; comment lines under a setting continue its text)."""
    import re

    stack, entries = [], []
    for line in config.read_text().splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            if entries and line.startswith(" " * 20):  # a comment continued under the previous setting
                entries[-1][2].append(line.strip().lstrip("#").strip())
            continue
        match = re.match(r"^( *)([A-Za-z_][\w-]*):\s*(.*?)\s*(?:#\s*(.*))?$", line)
        if not match:
            continue
        indent, key, value, comment = len(match[1]), match[2], match[3], match[4] or ""
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        if dotted.split(".")[0] in ("hydra", "defaults"):
            continue
        entries.append([dotted, value, [comment] if comment else []])
    return entries


def _config_chain(config: Path) -> list[Path]:
    """``config`` after the configs its ``defaults`` list names (the order Hydra composes them in)."""
    import yaml

    defaults = (yaml.safe_load(config.read_text()) or {}).get("defaults") or []
    bases = [config.parent / f"{d}.yaml" for d in defaults if isinstance(d, str) and d != "_self_"]
    return [p for base in bases if base.is_file() for p in _config_chain(base)] + [config]


def config_help(config: Path, usage: str, doc: str) -> str:
    """``--help`` for a Hydra training script, made from its config file(s): every setting (dotted, as it is
    overridden on the command line) with its default and the comment beside it in the YAML; a config built on
    others (``defaults``) shows theirs with its own values and comments on top."""
    import textwrap

    merged: dict[str, list] = {}
    for path in _config_chain(config):
        for dotted, value, comment in _settings(path):
            if dotted in merged:
                merged[dotted][1] = value or merged[dotted][1]
                merged[dotted][2] = comment or merged[dotted][2]
            else:
                merged[dotted] = [dotted, value, comment]
    rows = []
    for dotted, value, comment in merged.values():
        rows.append(f"  {dotted} = {value}" if value else f"  {dotted}:")
        if comment:
            rows += textwrap.wrap(" ".join(comment), 100, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return (f"usage: {usage} [KEY=VALUE ...]\n\n{doc.strip()}\n\nsettings ({config.relative_to(config.parents[2])}; "
            "set any as KEY=VALUE, nested ones as a.b=VALUE; --hydra-help: Hydra's own options):\n" + "\n".join(rows))


def help_or_run(main: Callable[[], Any], config: Path, usage: str, doc: str) -> Any:
    """Print :func:`config_help` (of the ``--config-name``/``-cn`` config when one is given) and exit 0 on
    ``--help``/``-h``; else run the Hydra ``main``."""
    args = sys.argv[1:]
    if {"--help", "-h"} & set(args):
        for flag in ("--config-name", "-cn"):
            named = [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
            named += [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]
            if named:
                config = config.parent / f"{named[-1].removesuffix('.yaml')}.yaml"
        if not config.is_file():
            print(f"error: no config {config}", file=sys.stderr)
            sys.exit(2)
        print(config_help(config, usage, doc))
        sys.exit(0)
    return main()
