"""Checkpoints the trainers write and resume from.

A checkpoint is a lerobot policy folder (``save_pretrained`` of the policy and both processors) plus this
project's ``kuavo_smolvla.json``, self-contained: its VLM is recorded by a portable name, and a small VLM
folder (config, processor, tokenizer, no weights) travels in it as ``vlm/``
(:func:`kuavo_smolvla_ros.policy.checkpoint.make_portable`), so the folder can be moved or copied to a robot.
The one a run resumes from (``last/``) also holds ``training_state/``:
the optimizer and scheduler (lerobot's safetensors/JSON helpers, no pickles), the RNG state and the
run's progress dict (:data:`STATE_FILE`). Folders are written beside the target and swapped in by renaming,
so a killed run leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros.atomic import replace_dir, write_json
from kuavo_smolvla_ros.policy.checkpoint import (
    CheckpointMetadata,
    installed_lerobot_version,
    make_portable,
    share_files,
)
from kuavo_smolvla_ros.policy.processors import action_mode_of

#: The progress dict (epoch/step, best score, history...) inside ``training_state/``.
STATE_FILE = "state.json"
TRAINING_STATE_DIR = "training_state"


def training_state_dir(checkpoint: Path) -> Path | None:
    """``checkpoint/training_state`` if it holds a progress file (a checkpoint written to resume from), else
    None."""
    state_dir = Path(checkpoint) / TRAINING_STATE_DIR
    return state_dir if (state_dir / STATE_FILE).is_file() else None


def written_checkpoints(folder: Path) -> list[Path]:
    """The checkpoint folders (those with a ``model.safetensors``) directly under a run's or a stage's output
    ``folder``: ``best/``, ``last/``, then the numbered ones (``epoch{N}/``, ``step{N}/``) in order; for the
    end-of-run summary."""
    import re

    def order(path: Path) -> tuple[int, str, int]:
        number = re.search(r"(\d+)$", path.name)
        return ({"best": 0, "last": 1}.get(path.name, 2), re.sub(r"\d+$", "", path.name),
                int(number[1]) if number else 0)

    folder = Path(folder)
    found = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
             and (p / "model.safetensors").is_file()] if folder.is_dir() else []
    return sorted(found, key=order)


def start_progress(checkpoint: Path, fresh: dict[str, Any], seed: int) -> tuple[dict[str, Any], Path | None]:
    """(progress, training state folder) to resume from ``checkpoint`` (normally ``<out>/last``): its saved
    progress dict and ``training_state/`` when it has them; else (a fresh run) a copy of ``fresh`` and None,
    after seeding every RNG with ``seed`` (lerobot's ``set_seed``: python, numpy, torch). A resumed run
    gets its RNG state back with the optimizer (:func:`load_training_state`)."""
    state_dir = training_state_dir(checkpoint)
    if state_dir is not None:
        return json.loads((state_dir / STATE_FILE).read_text()), state_dir
    from lerobot.utils.random_utils import set_seed

    set_seed(seed)
    return dict(fresh), None


def write_checkpoint(target: Path, policy, preprocessor, postprocessor, metadata: CheckpointMetadata,
                     training_state: tuple[Any, Any, dict] | None = None, *, vlm_hub_id: str | None = None) -> Path:
    """Write a lerobot checkpoint folder (``save_pretrained`` of the policy and both processors) plus
    ``kuavo_smolvla.json`` (with the installed lerobot version and the action mode the processors apply) at
    ``target``, complete or not at all; returns
    ``target``. ``training_state`` (optimizer, scheduler, progress dict) adds ``training_state/`` (safetensors
    and JSON, no pickles) to resume from.

    ``policy.config.vlm_model_name`` is the local VLM folder the policy was built on (``load_policy``); the
    checkpoint records a portable name instead: a small VLM folder is shipped as ``vlm/`` under its content id
    (and put in the local Hugging Face cache), a VLM from the cache keeps its hub id, and a VLM with weights
    elsewhere is recorded as ``vlm_hub_id`` (the hub id its source checkpoint recorded, e.g.
    ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``), or by its path, with a warning, without one."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    policy.save_pretrained(tmp)
    preprocessor.save_pretrained(tmp)
    postprocessor.save_pretrained(tmp)
    # the record says what the saved processors do (lerobot's relative/absolute action steps or not)
    replace(metadata, lerobot_version=installed_lerobot_version(),
            action_mode=action_mode_of(preprocessor)).save(tmp)
    make_portable(tmp, policy.config.vlm_model_name, vlm_hub_id, required=False)
    if training_state is not None:
        from lerobot.optim.optimizers import save_optimizer_state
        from lerobot.optim.schedulers import save_scheduler_state
        from lerobot.utils.random_utils import save_rng_state

        optimizer, scheduler, progress = training_state
        state_dir = tmp / TRAINING_STATE_DIR
        state_dir.mkdir()
        save_optimizer_state(optimizer, state_dir)
        save_scheduler_state(scheduler, state_dir)
        save_rng_state(state_dir)
        write_json(state_dir / STATE_FILE, progress)
    share_files(tmp)  # safetensors writes 0600: readable by the robot's user after a copy
    replace_dir(tmp, target)
    return target


def load_training_state(state_dir: Path, optimizer, scheduler):
    """(optimizer, scheduler) restored from a ``training_state/`` folder, and the RNG state with them."""
    from lerobot.optim.optimizers import load_optimizer_state
    from lerobot.optim.schedulers import load_scheduler_state
    from lerobot.utils.random_utils import load_rng_state

    optimizer = load_optimizer_state(optimizer, state_dir)
    scheduler = load_scheduler_state(scheduler, state_dir)
    load_rng_state(state_dir)
    return optimizer, scheduler
