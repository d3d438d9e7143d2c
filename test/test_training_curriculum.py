"""Training foundations: the shipped curriculum (the recipe), config errors, held-out splits, the replay
sampler's frequencies, dataset checks and the fixed curriculum statistics (real LeRobot datasets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from lerobot_data import write_dataset

from kuavo_smolvla_ros import features
from kuavo_smolvla_ros.data.dataset import REPO_ID
from kuavo_smolvla_ros.tasks import default_catalog
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
from kuavo_smolvla_ros.training.curriculum import find_stage, load_curriculum, without_replay
from kuavo_smolvla_ros.training.datasets import check_datasets, curriculum_stats
from kuavo_smolvla_ros.training.sampling import ReplaySampler, split_episodes

CONFIGS = Path(__file__).resolve().parent.parent / "training" / "configs"
BASE = yaml.safe_load((CONFIGS / "smolvla_sequential_base.yaml").read_text())


def test_the_shipped_recipe():
    stages = load_curriculum(CONFIGS, BASE["curriculum"], "/data")
    assert [s.task.name for s in stages] == ["moving_grasp", "weighing", "placement", "sorting"]
    assert [s.epochs for s in stages] == [100, 25, 30, 35]
    assert [s.lr for s in stages] == [5e-5, 3.5e-5, 2.5e-5, 2e-5]
    assert [s.warmup_steps for s in stages] == [1500, 800, 500, 300]
    assert [s.decay_steps for s in stages] == [25000, 20000, 25000, 30000]
    assert [list(s.replay.values()) for s in stages] == [[1.0], [0.2, 0.8], [0.1, 0.2, 0.7], [0.1, 0.1, 0.2, 0.6]]
    assert stages[1].dataset == Path("/data/task2_weighing") and stages[1].output_name == "task2_weighing"
    assert find_stage(stages, "tasks/task3_placement") is stages[2] and find_stage(stages, "sort") is stages[3]
    assert BASE["optimizer"] == {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 5e-7, "grad_clip_norm": 1.0}
    assert BASE["batch_size"] == 64 and BASE["scheduler"]["min_lr"] == 1e-6
    assert BASE["policy"] | {} == {"chunk_size": 50, "n_action_steps": 8, "num_steps": 10, "max_state_dim": 32,
                                  "max_action_dim": 32, "freeze_vision_encoder": True, "train_expert_only": True,
                                  "train_state_proj": True}

    assert BASE["replay"] is True
    ablation = without_replay(stages)
    assert [dict(s.replay) for s in ablation] == [{s.task.name: 1.0} for s in stages]
    assert [(s.epochs, s.lr, s.dataset) for s in ablation] == [(s.epochs, s.lr, s.dataset) for s in stages]


def test_the_demo_recipe_is_the_real_recipes_trainable_set():
    demo = yaml.safe_load((CONFIGS / "demo_tiny.yaml").read_text())
    assert demo["defaults"] == ["smolvla_sequential_base", "_self_"]
    assert demo["policy"] == {"freeze_vision_encoder": True, "train_expert_only": True, "train_state_proj": True,
                              "tokenizer_max_length": 24}
    assert demo["data_cache"] == "memory" and demo["stages"] == "all"


def _stage_file(tmp_path, name, **fields):
    data = {"task": name, "dataset": name, "epochs": 1, "lr": 1e-4, "warmup_steps": 0, "decay_steps": 10} | fields
    path = tmp_path / "tasks" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return f"tasks/{name}"


@pytest.mark.parametrize(("fields", "message"), [
    ({"replay": {"weighing": 0.5, "moving_grasp": 0.4}}, r"weights sum to 0.9, not 1"),
    ({"replay": {"weighing": 0.5, "sorting": 0.5}}, r"names task sorting, which is not trained before"),
    ({"replay": {"moving_grasp": 1.0}}, r"must include the stage's own task weighing"),
    ({"epochs": 0}, r"'epochs' must be >= 1"),
    ({"learning_rate": 1e-3}, r"unknown key\(s\) \['learning_rate'\]"),
    ({"task": "juggling"}, r"'task': unknown task 'juggling'"),
])
def test_bad_stage_configs_name_file_and_key(tmp_path, fields, message):
    first = _stage_file(tmp_path, "moving_grasp")
    second = _stage_file(tmp_path, "weighing", **fields)
    with pytest.raises(TrainingConfigError, match=message) as err:
        load_curriculum(tmp_path, [first, second], tmp_path)
    assert "weighing.yaml" in str(err.value)
    with pytest.raises(TrainingConfigError, match="no stage config"):
        load_curriculum(tmp_path, ["tasks/missing"], tmp_path)


def test_held_out_episodes():
    train, val = split_episodes(20, 0.1, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(20)) and not set(train) & set(val)
    assert split_episodes(20, 0.1, seed=3) == (train, val)  # the same split in every run and stage
    assert split_episodes(3, 0.1, seed=0)[1] != []  # at least one held out
    assert split_episodes(5, [4, 0], seed=0) == ([1, 2, 3], [0, 4])
    with pytest.raises(ValueError, match=r"validation episodes \[7\] do not exist"):
        split_episodes(5, [7], seed=0)
    with pytest.raises(ValueError, match="nothing left to train on"):
        split_episodes(2, [0, 1], seed=0)


def test_replay_frequencies_match_the_weights():
    sizes, weights = [50, 80, 120], [0.1, 0.2, 0.7]
    sampler = ReplaySampler(sizes, weights, seed=7, num_samples=30_000)
    indices = np.array(list(sampler))
    tasks = np.searchsorted(np.cumsum(sizes), indices, side="right")
    counts = np.bincount(tasks, minlength=3)
    expected = np.array(weights) * len(indices)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.8, (counts, expected)  # chi-square, 2 degrees of freedom, p = 0.001
    within = [np.bincount(indices[tasks == t] - [0, 50, 130][t], minlength=sizes[t]) for t in range(3)]
    assert all(w.min() > 0 for w in within)  # every frame of every task is reachable
    again = list(ReplaySampler(sizes, weights, seed=7, num_samples=30_000))
    assert again == indices.tolist()  # deterministic per seed and epoch (resume draws the same)
    sampler.set_epoch(1)
    assert list(sampler) != again
    assert len(ReplaySampler(sizes, weights, seed=0)) == 120  # an epoch is one pass over the current task


def test_datasets_are_checked_and_stats_are_aggregated_once(tmp_path):
    catalog = default_catalog()
    first = _stage_file(tmp_path, "moving_grasp")
    second = _stage_file(tmp_path, "weighing", replay={"moving_grasp": 0.5, "weighing": 0.5})
    write_dataset(tmp_path / "data" / "moving_grasp", 1.0, instruction=catalog.get(1).instruction)
    stages = load_curriculum(tmp_path, [first, second], tmp_path / "data")
    with pytest.raises(TrainingConfigError, match=r"stage 2 \(weighing\): no LeRobot dataset at .*data/weighing"):
        check_datasets(stages)
    write_dataset(tmp_path / "data" / "weighing", 3.0, instruction=catalog.get(2).instruction)
    stats = curriculum_stats(check_datasets(stages))
    np.testing.assert_allclose(stats[features.OBS_STATE]["mean"], np.full(16, 2.0), atol=1e-6)
    np.testing.assert_allclose(stats[features.OBS_STATE]["std"], np.full(16, 1.0), atol=1e-6)
    np.testing.assert_allclose(stats[features.ACTION]["mean"], np.full(16, 2.5), atol=1e-6)
    write_dataset(tmp_path / "other" / "weighing", 3.0, fps=15)
    stages = load_curriculum(tmp_path, [first, second], tmp_path / "other")
    stages = [stages[0].__class__(**{**stages[0].__dict__, "dataset": tmp_path / "data" / "moving_grasp"}),
              stages[1]]
    with pytest.raises(TrainingConfigError, match=r"other/weighing runs at 15 fps but .*moving_grasp at 10 fps"):
        check_datasets(stages)
    write_dataset(tmp_path / "bigger" / "weighing", 3.0, image_size=16)
    stages[1] = stages[1].__class__(**{**stages[1].__dict__, "dataset": tmp_path / "bigger" / "weighing"})
    with pytest.raises(TrainingConfigError, match=r"bigger/weighing and .*moving_grasp have different features: .*"
                                                  r"observation.images.head_cam_h"):
        check_datasets(stages)


def test_replay_batches_keep_each_task_instruction(tmp_path):
    """Through a ConcatDataset and the sampler, every sample carries its own dataset's instruction."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    catalog = default_catalog()
    roots = [write_dataset(tmp_path / f"t{i}", float(i), instruction=catalog.get(i).instruction) for i in (1, 2)]
    datasets = [LeRobotDataset(REPO_ID, root=r, video_backend="pyav") for r in roots]
    loader = torch.utils.data.DataLoader(torch.utils.data.ConcatDataset(datasets), batch_size=16,
                                         sampler=ReplaySampler([len(d) for d in datasets], [0.3, 0.7], seed=1,
                                                               num_samples=64))
    seen = set()
    for batch in loader:
        for task, state in zip(batch["task"], batch[features.OBS_STATE][:, 0].tolist(), strict=True):
            assert task == catalog.get(int(state)).instruction
            seen.add(int(state))
    assert seen == {1, 2}


def test_learning_rate_schedule_and_forgetting_labels():
    from kuavo_smolvla_ros.training.common.optim import lr_factor
    from kuavo_smolvla_ros.training.trainer import forgetting_label

    peak, floor = 5e-5, 1e-6
    factors = [lr_factor(step, 100, 1000, peak, floor) for step in (0, 49, 99, 100, 600, 1100, 5000)]
    assert factors[:3] == pytest.approx([0.01, 0.5, 1.0])  # linear warmup
    assert factors[3] == pytest.approx(1.0) and factors[4] == pytest.approx((1 + floor / peak) / 2)
    assert factors[5] * peak == pytest.approx(floor) and factors[6] * peak == pytest.approx(floor)
    assert [forgetting_label(loss, 0.7, 1.0) for loss in (0.5, 0.7, 0.99, 1.0, 3.0)] == [
        "retained", "slight", "slight", "significant", "significant"]
