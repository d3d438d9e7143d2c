"""The curriculum's LeRobot datasets: checked before training, and their fixed normalisation statistics.

Statistics are aggregated once over every stage's dataset (lerobot's ``aggregate_stats``) and stay the
same for all four stages, so an earlier task never sees shifted normalisation; they travel in every
checkpoint. Only the 16 real dimensions have statistics: SmolVLA pads state and action to 32 after
normalising, so the padding is identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.training.curriculum import Stage, TrainingConfigError

REPO_ID = "local/kuavo"
NORMALISED = (robot.STATE_FEATURE, robot.ACTION_FEATURE)


def open_metadata(stage: Stage):
    """lerobot's metadata of a stage's dataset, or a :class:`TrainingConfigError` naming it."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    if not (stage.dataset / "meta" / "info.json").is_file():
        raise TrainingConfigError(f"stage {stage.number} ({stage.task.name}): no LeRobot dataset at {stage.dataset} "
                                  f"(meta/info.json missing; convert the bags with kuavo-rosbag-to-lerobot)")
    try:
        return LeRobotDatasetMetadata(REPO_ID, root=stage.dataset)
    except Exception as err:
        raise TrainingConfigError(f"stage {stage.number}: cannot open {stage.dataset}: {err}") from None


def _signature(meta) -> dict[str, tuple]:
    return {key: (ft["dtype"], tuple(ft["shape"])) for key, ft in meta.features.items()
            if key.startswith("observation.") or key == robot.ACTION_FEATURE}


def check_datasets(stages: Sequence[Stage]) -> list:
    """Open every stage's dataset and fail, naming them, if fps or feature shapes disagree."""
    metas = [open_metadata(stage) for stage in stages]
    first, reference = stages[0], metas[0]
    for key in NORMALISED:
        shape = tuple(reference.features.get(key, {}).get("shape", ()))
        if shape != (robot.ACTION_DIM,):
            raise TrainingConfigError(f"{first.dataset}: feature {key} has shape {shape}, expected "
                                      f"({robot.ACTION_DIM},)")
    for stage, meta in zip(stages[1:], metas[1:], strict=True):
        if meta.fps != reference.fps:
            raise TrainingConfigError(f"{stage.dataset} runs at {meta.fps} fps but {first.dataset} at "
                                      f"{reference.fps} fps")
        ours, theirs = _signature(meta), _signature(reference)
        if ours != theirs:
            diff = sorted(set(ours.items()) ^ set(theirs.items()))
            raise TrainingConfigError(f"{stage.dataset} and {first.dataset} have different features: {diff}")
    for stage, meta in zip(stages, metas, strict=True):
        if meta.total_episodes < 1:
            raise TrainingConfigError(f"{stage.dataset} has no episodes")
    return metas


def curriculum_stats(metas: Sequence) -> dict[str, dict[str, np.ndarray]]:
    """State and action statistics aggregated over every dataset of the curriculum (lerobot's way)."""
    from lerobot.datasets.compute_stats import aggregate_stats

    stats = aggregate_stats([{k: m.stats[k] for k in NORMALISED} for m in metas])
    for key in NORMALISED:
        std = np.asarray(stats[key]["std"], dtype=np.float64)
        stats[key]["std"] = np.maximum(std, 1e-6)  # a constant joint must not divide by zero
    return stats
