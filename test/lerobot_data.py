"""Small LeRobot datasets written with lerobot's own writer, for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.features import ACTION, OBS_STATE
from kuavo_smolvla_ros.training.datasets import REPO_ID


def write_dataset(root: Path, state_value: float, episodes: int = 3, frames: int = 6, fps: int = 10,
                  instruction: str = "task", image_size: int = 8):
    """Constant state ``state_value`` and action ``state_value + 0.5`` (learnable per task), small images."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    vector = {"dtype": "float32", "shape": (robot.STATE_DIM,), "names": list(robot.JOINT_NAMES)}
    features = {OBS_STATE: vector, ACTION: dict(vector),
                "observation.images.head_cam_h": {"dtype": "image", "shape": (image_size, image_size, 3),
                                                  "names": ["height", "width", "channels"]}}
    dataset = LeRobotDataset.create(REPO_ID, fps, features, root=root, robot_type=load_profile().robot_type,
                                    use_videos=False, video_backend="pyav")
    for _ in range(episodes):
        for _ in range(frames):
            dataset.add_frame({OBS_STATE: np.full(16, state_value, np.float32),
                               ACTION: np.full(16, state_value + 0.5, np.float32),
                               "observation.images.head_cam_h": np.zeros((image_size, image_size, 3), np.uint8),
                               "task": instruction})
        dataset.save_episode()
    dataset.finalize()
    return root


def write_task_datasets(data_root: Path, episodes: int = 3, frames: int = 8) -> list[str]:
    """One tiny dataset per task of the catalogue under ``data_root/<stage dir>`` (task k: state k/4, its own
    instruction), as training finds them; the stage folder names, in order."""
    from kuavo_smolvla_ros.tasks import default_catalog

    tasks = list(default_catalog())
    for number, task in enumerate(tasks, start=1):
        write_dataset(data_root / task.stage_dir, number / 4, episodes=episodes, frames=frames,
                      instruction=task.instruction)
    return [task.stage_dir for task in tasks]
