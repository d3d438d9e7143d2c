"""SmolVLA's lerobot processor pipelines for this project's checkpoints, relative (delta) actions included.

Relative actions are lerobot's own processor steps, in the order lerobot's pi0 and OpenPI use
(``lerobot.policies.pi0.processor_pi0``): raw -> ``RelativeActionsProcessorStep`` (every action of a
chunk minus ``observation.state``, the state cached) -> normalise -> model -> unnormalise ->
``AbsoluteActionsProcessorStep`` (the cached state added back). Both steps are saved in
``policy_preprocessor.json`` / ``policy_postprocessor.json``, so lerobot's own loader
(``make_pre_post_processors(config, pretrained_path=...)``, which re-pairs the two steps), our runtime,
the node, the trainer and reflow all run one pipeline; ``kuavo_smolvla.json``'s ``action_mode`` is
provenance only. Their statistics are lerobot's ``compute_relative_action_stats`` (every chunk that lies
inside one episode).

Checkpoints written before this (``action_mode: relative`` in ``kuavo_smolvla.json``, the state added back
by hand) are converted in place by :func:`add_relative_steps_to_files` (``kuavo-smolvla-inspect CHECKPOINT
--upgrade-relative``); until then :func:`pipeline_action_mode` and the checks refuse them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.policy.errors import CheckpointError

PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
#: lerobot's registry names of the steps (``lerobot.processor.relative_action_processor``).
RELATIVE_STEP = "relative_actions_processor"
ABSOLUTE_STEP = "absolute_actions_processor"
NORMALISER_STEP = "normalizer_processor"
UNNORMALISER_STEP = "unnormalizer_processor"
ACTION_MODES = ("absolute", "relative")


def make_processors(config, stats: Mapping[str, Mapping[str, Any]] | None, action_mode: str = "absolute",
                    action_names: Sequence[str] = robot.JOINT_NAMES):
    """SmolVLA's (preprocessor, postprocessor) for ``config`` normalised by ``stats`` (feature -> statistic ->
    array; the action's are those of the deltas when relative), with lerobot's relative/absolute action
    steps when ``action_mode == "relative"``. Raises ``ValueError`` for an unknown mode."""
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
    preprocessor, postprocessor = make_smolvla_pre_post_processors(config, stats)
    if action_mode == "relative":
        add_relative_steps(preprocessor, postprocessor, action_names)
    return preprocessor, postprocessor


def add_relative_steps(preprocessor, postprocessor, action_names: Sequence[str] = robot.JOINT_NAMES) -> None:
    """Insert lerobot's ``RelativeActionsProcessorStep`` just before the preprocessor's normaliser and its
    paired ``AbsoluteActionsProcessorStep`` just after the postprocessor's unnormaliser (in place)."""
    from lerobot.processor import AbsoluteActionsProcessorStep, RelativeActionsProcessorStep

    relative = RelativeActionsProcessorStep(enabled=True, action_names=list(action_names))
    pre = list(preprocessor.steps)
    post = list(postprocessor.steps)
    pre.insert(_index(pre, NORMALISER_STEP, PREPROCESSOR_FILE), relative)
    post.insert(_index(post, UNNORMALISER_STEP, POSTPROCESSOR_FILE) + 1,
                AbsoluteActionsProcessorStep(enabled=True, relative_step=relative))
    preprocessor.steps, postprocessor.steps = pre, post


def action_mode_of(preprocessor) -> str:
    """"relative" when the (in-memory) ``preprocessor`` has an enabled ``RelativeActionsProcessorStep``."""
    from lerobot.processor import RelativeActionsProcessorStep

    return "relative" if any(isinstance(step, RelativeActionsProcessorStep) and step.enabled
                             for step in preprocessor.steps) else "absolute"


def _index(steps: list, registry_name: str, where: str) -> int:
    from lerobot.processor.pipeline import ProcessorStepRegistry

    cls = ProcessorStepRegistry.get(registry_name)
    for index, step in enumerate(steps):
        if isinstance(step, cls):
            return index
    raise ValueError(f"{where}: the pipeline has no {registry_name} step")


# ------------------------------------------------------------------------------ saved pipelines (JSON)
def _steps(pipeline: Mapping[str, Any]) -> list[dict[str, Any]]:
    steps = pipeline.get("steps", [])
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


def _enabled(steps: list[dict[str, Any]], registry_name: str) -> list[int]:
    return [i for i, s in enumerate(steps)
            if s.get("registry_name") == registry_name and (s.get("config") or {}).get("enabled", False)]


def _position(steps: list[dict[str, Any]], registry_name: str) -> int | None:
    return next((i for i, s in enumerate(steps) if s.get("registry_name") == registry_name), None)


def pipeline_action_mode(folder: Path, preprocessor: Mapping[str, Any], postprocessor: Mapping[str, Any]) -> str:
    """"relative" when the saved pipelines (``folder``'s processor JSON files, parsed) convert actions with
    lerobot's paired relative/absolute steps, "absolute" when they have neither.

    Raises :class:`CheckpointError` (naming the file and the step) for a pipeline lerobot would run to a
    wrong result: one step without its pair (lerobot returns ``action - state``, or raises at the first
    prediction), the relative step after the normaliser (it would subtract the normalised state), the
    absolute step before the unnormaliser, a step twice, or a step in the other file."""
    pre, post = _steps(preprocessor), _steps(postprocessor)
    relative, absolute = _enabled(pre, RELATIVE_STEP), _enabled(post, ABSOLUTE_STEP)
    pre_file, post_file = folder / PREPROCESSOR_FILE, folder / POSTPROCESSOR_FILE
    for steps, where, stray in ((pre, pre_file, ABSOLUTE_STEP), (post, post_file, RELATIVE_STEP)):
        index = _position(steps, stray)
        if index is not None:  # lerobot would run it there (an absolute step without its pair raises)
            raise CheckpointError(f"{where}: step {index} {stray} does not belong in this pipeline (the "
                                  f"{RELATIVE_STEP} goes in {PREPROCESSOR_FILE}, the {ABSOLUTE_STEP} in "
                                  f"{POSTPROCESSOR_FILE}): remove it")
    if not relative and not absolute:
        return "absolute"
    if len(relative) > 1 or len(absolute) > 1:
        which = pre_file if len(relative) > 1 else post_file
        raise CheckpointError(f"{which}: more than one enabled {RELATIVE_STEP if len(relative) > 1 else ABSOLUTE_STEP} "
                              "step (the state would be subtracted or added twice)")
    if not absolute:
        raise CheckpointError(f"{post_file}: no enabled {ABSOLUTE_STEP} step, but {pre_file} converts actions to "
                              f"relative ({RELATIVE_STEP}): lerobot would return action - state")
    if not relative:
        raise CheckpointError(f"{pre_file}: no enabled {RELATIVE_STEP} step, but {post_file} adds the state back "
                              f"({ABSOLUTE_STEP}): lerobot raises at the first prediction")
    normaliser, unnormaliser = _position(pre, NORMALISER_STEP), _position(post, UNNORMALISER_STEP)
    if normaliser is not None and relative[0] > normaliser:
        raise CheckpointError(f"{pre_file}: step {relative[0]} {RELATIVE_STEP} comes after step {normaliser} "
                              f"{NORMALISER_STEP}: it would subtract the normalised state")
    if unnormaliser is not None and absolute[0] < unnormaliser:
        raise CheckpointError(f"{post_file}: step {absolute[0]} {ABSOLUTE_STEP} comes before step {unnormaliser} "
                              f"{UNNORMALISER_STEP}: it would add the state to normalised actions")
    return "relative"


def with_relative_steps(preprocessor: Mapping[str, Any], postprocessor: Mapping[str, Any],
                        action_names: Sequence[str] = robot.JOINT_NAMES) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copies of two saved pipelines (parsed JSON) with the relative/absolute steps inserted where
    :func:`add_relative_steps` puts them; the other steps and their state files unchanged.
    Raises :class:`CheckpointError` if a pipeline has no (un)normaliser or already has such a step."""
    pre, post = [dict(s) for s in _steps(preprocessor)], [dict(s) for s in _steps(postprocessor)]
    if _position(pre, RELATIVE_STEP) is not None or _position(post, ABSOLUTE_STEP) is not None:
        raise CheckpointError("the processors already have relative/absolute action steps")
    normaliser, unnormaliser = _position(pre, NORMALISER_STEP), _position(post, UNNORMALISER_STEP)
    if normaliser is None or unnormaliser is None:
        raise CheckpointError(f"the processors have no {NORMALISER_STEP} / {UNNORMALISER_STEP} step")
    pre.insert(normaliser, {"registry_name": RELATIVE_STEP,
                            "config": {"enabled": True, "exclude_joints": [], "action_names": list(action_names)}})
    post.insert(unnormaliser + 1, {"registry_name": ABSOLUTE_STEP, "config": {"enabled": True}})
    return {**preprocessor, "steps": pre}, {**postprocessor, "steps": post}


# ------------------------------------------------------------------------------------- statistics
def relative_action_stats(episodes: Sequence[tuple[np.ndarray, np.ndarray]], chunk_size: int,
                          action_names: Sequence[str] = robot.JOINT_NAMES) -> dict[str, np.ndarray]:
    """lerobot's statistics of relative actions (``compute_relative_action_stats``: ``action[t+k] -
    state[t]`` for k < ``chunk_size`` over every chunk that lies inside one episode; mean, std, min, max,
    quantiles, count) over ``episodes``: (state (N, 16), action (N, 16)) pairs, frames in order.

    Raises ``ValueError`` when no episode is as long as one chunk."""
    from lerobot.datasets.compute_stats import compute_relative_action_stats

    episodes = [(s, a) for s, a in episodes if len(s) >= chunk_size]
    if not episodes or chunk_size < 1:
        raise ValueError(f"no episode has chunk_size={chunk_size} frames to compute relative action statistics")
    columns = {
        features.OBS_STATE: np.concatenate([s for s, _ in episodes]).astype(np.float32),
        features.ACTION: np.concatenate([a for _, a in episodes]).astype(np.float32),
        "episode_index": np.concatenate([np.full(len(s), i) for i, (s, _) in enumerate(episodes)]),
    }
    names = list(action_names)
    meta = {features.ACTION: {"shape": [columns[features.ACTION].shape[1]], "names": names}}
    return compute_relative_action_stats(columns, meta, chunk_size)
