"""The settings a training run was started with, kept in its output folder, so that running a command again
into that folder resumes the same run, and a command with other settings is refused instead of silently
resuming the old run under new names.

``run_settings.json`` holds the resolved config (Hydra's section left out) as flattened ``a.b`` keys. Keys
that do not change what is trained (the device, loader workers, caches, where logs go) may differ between
the runs of one folder; so may the stage being trained (a sequential run trains its stages one command at
a time)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros.atomic import write_json
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError

RUN_SETTINGS_FILE = "run_settings.json"
#: Settings that may differ between the commands of one run (how it runs, not what it trains).
HOW_IT_RUNS = frozenset({"device", "bf16", "num_workers", "data_cache", "data_cache_dir", "pairs.cache_dir",
                         "stages", "task", "log_freq", "save_every_epochs", "save_freq",
                         "output_root", "output_dir"})  # (a run moved or copied elsewhere resumes there)
#: Settings that name a file or folder: compared as absolute paths (``data/`` and ``./data`` are one folder).
PATHS = frozenset({"data_root", "pretrained_path", "teacher", "teacher_model_path", "vlm_path"})
#: Differences listed in the refusal at most.
SHOWN = 6


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def _unset(value: Any) -> bool:
    return value in (None, "", "???")


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` flattened (Hydra's section left out), the :data:`PATHS` made absolute and normalised."""
    import os

    flat = flatten({k: v for k, v in cfg.items() if k != "hydra"})
    for key in PATHS & flat.keys():
        if isinstance(flat[key], str) and not _unset(flat[key]):
            flat[key] = os.path.normpath(os.path.abspath(os.path.expanduser(flat[key])))
    return flat


def check_same_run(folder: Path, cfg: Mapping[str, Any], key: str, also_free: Iterable[str] = (),
                   what: str | None = None) -> None:
    """Raise :class:`TrainingConfigError` when ``folder`` (what the ``key`` setting points at, or ``what`` in
    it) is a file, or holds a run started with other settings than ``cfg`` (the differences named,
    ``before -> now``). A setting left
    unset now (e.g. ``pretrained_path`` when a later stage runs alone) is not a difference; nor are
    :data:`HOW_IT_RUNS` and ``also_free``. A folder without a record (new, or written before records were
    kept) passes."""
    from kuavo_smolvla_ros.atomic import blocking_file

    blocked = blocking_file(folder)
    if blocked is not None:
        raise TrainingConfigError(f"{key}: {blocked} is a file, not a folder: choose a folder for the run")
    record = folder / RUN_SETTINGS_FILE
    if not record.is_file():
        return
    import json

    try:
        before = json.loads(record.read_text())
    except (OSError, ValueError):
        return  # an unreadable record is no evidence of another run
    now = _settings(cfg)
    free = HOW_IT_RUNS | set(also_free)
    changed = [name for name in sorted(set(before) | set(now))
               if name not in free and not _unset(now.get(name)) and before.get(name) != now.get(name)]
    if changed:
        shown = ", ".join(f"{name} {before.get(name)!r} -> {now.get(name)!r}" for name in changed[:SHOWN])
        more = f" and {len(changed) - SHOWN} more" if len(changed) > SHOWN else ""
        raise TrainingConfigError(
            f"{what or f'{key}={folder}'} holds a run started with other settings ({shown}{more}); running again "
            f"resumes a run with its own settings: choose a new {key} (to train a run further, start the new one "
            f"from its best/ checkpoint), or repeat the run's settings (in {record})")


def record_run(folder: Path, cfg: Mapping[str, Any]) -> None:
    """Write ``cfg``'s settings to ``folder/run_settings.json`` unless a record is there (the first command's
    settings stay the run's)."""
    record = folder / RUN_SETTINGS_FILE
    if record.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_json(record, _settings(cfg), default=str)
