"""A full four-stage sequential run of the tiny SmolVLA through the Hydra command, on small datasets
written with lerobot's writer: outputs, chaining, fixed statistics, results, logs, and loaders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lerobot_data import write_dataset
from processes import kill_when

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.features import ACTION, OBS_STATE
from kuavo_smolvla_ros.tasks import default_catalog

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["task1_moving_grasp", "task2_weighing", "task3_placement", "task4_sorting"]


def train(*overrides: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "training" / "train_sequential.py"), *overrides],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def stage_one_args(root: Path, pretrained: Path, batch_size: int, epochs: int) -> list[str]:
    """Stage 1 of the curriculum on the tiny model, everything trainable, fast learning rate."""
    return ["task=tasks/task1_moving_grasp", f"pretrained_path={pretrained}", f"data_root={root / 'data'}",
            f"batch_size={batch_size}", "num_workers=0", f"stage_overrides.epochs={epochs}",
            "stage_overrides.lr=0.002", "stage_overrides.warmup_steps=0", "policy.train_expert_only=false",
            "policy.freeze_vision_encoder=false"]


@pytest.fixture(scope="module")
def curriculum(tmp_path_factory):
    """Four datasets (task k: state k, action k + 0.5) and a tiny all-trainable pretrained checkpoint."""
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

    root = tmp_path_factory.mktemp("curriculum")
    catalog = default_catalog()
    for task_id, name in enumerate(STAGES, start=1):
        write_dataset(root / "data" / name, float(task_id) / 4, episodes=3, frames=8,
                      instruction=catalog.get(task_id).instruction)
    pretrained = build_checkpoint(root / "pretrained", TinyCheckpointSpec(
        cameras=("head_cam_h",), image_shape=(8, 8), train_everything=True))
    return root, pretrained


@pytest.fixture(scope="module")
def full_run(curriculum):
    root, pretrained = curriculum
    out = root / "out"
    result = train("stages=all", f"pretrained_path={pretrained}", f"data_root={root / 'data'}",
                   f"output_root={out}", "batch_size=4", "num_workers=0", "save_every_epochs=2",
                   "stage_overrides.epochs=3", "stage_overrides.lr=0.002", "stage_overrides.warmup_steps=0",
                   "policy.train_expert_only=false", "policy.freeze_vision_encoder=false", "validation.every_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_every_stage_writes_its_outputs(full_run):
    out, stdout = full_run
    for number, name in enumerate(STAGES, start=1):
        stage = out / name
        for folder in ("best", "last", "epoch2"):
            assert (stage / folder / "model.safetensors").is_file(), f"{name}/{folder}"
            meta = json.loads((stage / folder / "kuavo_smolvla.json").read_text())
            assert meta["stage"] == number and len(meta["instructions"]) == number
        state = stage / "last" / "training_state"
        assert {"optimizer_state.safetensors", "optimizer_param_groups.json", "scheduler_state.json",
                "rng_state.safetensors", "state.json"} <= {p.name for p in state.iterdir()}
        assert not list(stage.rglob("*.pt")) and not list(stage.rglob("*.pkl")), "no pickles"
        assert (stage / "training.png").read_bytes()[:4] == b"\x89PNG"
        results = json.loads((stage / "training_results.json").read_text())
        task = default_catalog().get(number)
        assert (results["task_id"], results["task_name"], results["instruction"]) == (task.id, task.name,
                                                                                      task.instruction)
        assert results["epochs"] == 3 and results["learning_rate"] == 0.002
        assert set(results["final_validation"]) == {t.name for t in list(default_catalog())[:number]}
        assert list(results["validation_matrix"]) == STAGES[:number]
        assert set(results["forgetting"]) == {t.name for t in list(default_catalog())[:number - 1]}
        for entry in results["forgetting"].values():
            expected = "retained" if entry["loss"] < 0.7 else "slight" if entry["loss"] < 1.0 else "significant"
            assert entry["label"] == expected
            assert entry["ratio"] == pytest.approx(entry["loss"] / entry["own_stage_loss"])
        assert results["best_validation_loss"] == min(h["validation"][task.name] for h in results["history"])
    assert stdout.count("stage 4 (sorting): best validation loss") == 1 and "moving_grasp:" in stdout
    assert "task1_moving_grasp epoch 1/3: train loss " in stdout and "s/epoch, about " in stdout
    assert "task2_weighing epoch 3/3: train loss " in stdout and ", validation moving_grasp " in stdout
    assert f"stage 4 checkpoint to use: {out / STAGES[-1] / 'best'}" in stdout


def test_the_loss_falls_on_a_learnable_task(full_run):
    out, _ = full_run
    history = json.loads((out / STAGES[0] / "training_results.json").read_text())["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"], history
    first = history[0]["validation"]["moving_grasp"]
    assert history[-1]["validation"]["moving_grasp"] < first


def test_statistics_are_fixed_across_stages(full_run):
    from safetensors.numpy import load_file

    out, _ = full_run
    stored = json.loads((out / "curriculum_stats.json").read_text())
    np.testing.assert_allclose(stored[OBS_STATE]["mean"], np.full(16, (1 + 2 + 3 + 4) / 16), atol=1e-6)
    for name in STAGES:
        files = list((out / name / "best").glob("policy_preprocessor_step_*normalizer*.safetensors"))
        assert files, f"{name}: no normaliser state"
        tensors = load_file(files[0])
        np.testing.assert_allclose(tensors[f"{OBS_STATE}.mean"], stored[OBS_STATE]["mean"],
                                   atol=1e-6)
        np.testing.assert_allclose(tensors[f"{ACTION}.std"], stored[ACTION]["std"],
                                   atol=1e-6)


def test_tensorboard_logs(full_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = full_run
    events = EventAccumulator(str(out / STAGES[1] / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "validation/task1_loss", "validation/task2_loss"} <= tags
    assert len(events.Scalars("validation/task2_loss")) == 3
    # the stages follow each other on one step axis
    first = json.loads((out / STAGES[0] / "training_results.json").read_text())
    second = json.loads((out / STAGES[1] / "training_results.json").read_text())
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps[0] == first["global_step_end"] + 1 and steps[-1] == second["global_step_end"]
    assert second["global_step_end"] == first["global_step_end"] + second["steps"]


def test_checkpoints_open_in_lerobot_and_the_runtime(full_run):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from kuavo_smolvla_ros.policy.runtime import Observation, PolicyRuntime

    out, _ = full_run
    best = out / STAGES[-1] / "best"
    assert isinstance(SmolVLAPolicy.from_pretrained(str(best)), SmolVLAPolicy)
    runtime = PolicyRuntime.open(best)
    chunk = runtime.predict_chunk(Observation({"head_cam_h": np.zeros((8, 8, 3), np.uint8)}, np.zeros(16),
                                              default_catalog().get(4).instruction), seed=0)
    assert chunk.shape == (50, 16) and np.isfinite(chunk).all()


def test_a_stage_needs_the_previous_best(curriculum, tmp_path):
    root, pretrained = curriculum
    result = train("task=tasks/task3_placement", f"pretrained_path={pretrained}", f"data_root={root / 'data'}",
                   f"output_root={tmp_path}", "num_workers=0")
    assert result.returncode == 2
    assert "starts from stage 2's best checkpoint" in result.stderr and "train task=tasks/task2_weighing" in \
        result.stderr


def test_missing_dataset_fails_before_training(curriculum, tmp_path):
    _, pretrained = curriculum
    result = train(f"pretrained_path={pretrained}", f"data_root={tmp_path / 'nowhere'}", f"output_root={tmp_path}")
    assert result.returncode == 2 and "no LeRobot dataset at" in result.stderr and "nowhere" in result.stderr


def test_a_killed_run_resumes_with_the_same_steps_and_losses(curriculum, tmp_path):
    """Kill stage 1 after its first epoch; the resumed run ends exactly like an uninterrupted one (CPU)."""
    args = stage_one_args(*curriculum, batch_size=4, epochs=3)
    reference = train(*args, f"output_root={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-2000:]
    state = tmp_path / "killed" / STAGES[0] / "last" / "training_state" / "state.json"
    process = subprocess.Popen([sys.executable, str(ROOT / "training" / "train_sequential.py"), *args,
                                f"output_root={tmp_path / 'killed'}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    kill_when(process, lambda: state.is_file() and json.loads(state.read_text())["epoch"] >= 1, 300,
              "the first epoch's checkpoint")
    killed_at = json.loads(state.read_text())["epoch"]
    resumed = train(*args, f"output_root={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = json.loads((tmp_path / "reference" / STAGES[0] / "training_results.json").read_text())
    got = json.loads((tmp_path / "killed" / STAGES[0] / "training_results.json").read_text())
    assert 1 <= killed_at < 3, "the kill must land between epochs for the resume to be exercised"
    assert got["steps"] == expected["steps"]
    for mine, theirs in zip(got["history"], expected["history"], strict=True):
        assert mine["step"] == theirs["step"]
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5, abs=1e-7)
        assert mine["validation"] == pytest.approx(theirs["validation"], rel=1e-5, abs=1e-7)


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(curriculum, tmp_path):
    import torch

    from kuavo_smolvla_ros.training.common.errors import TrainingError
    from kuavo_smolvla_ros.training.sequential import fixed_stats
    from kuavo_smolvla_ros.training.sequential_config import Settings
    from kuavo_smolvla_ros.training.trainer import StageTrainer

    root, pretrained = curriculum
    from kuavo_smolvla_ros.training.curriculum import load_curriculum

    stages = load_curriculum(ROOT / "training" / "configs", [f"tasks/{STAGES[0]}"], root / "data",
                             overrides={"epochs": 2})
    settings = Settings(output_root=tmp_path, batch_size=4, num_workers=0,
                        policy={"train_expert_only": False, "freeze_vision_encoder": False})
    trainer = StageTrainer(stages[0], stages, pretrained, fixed_stats(stages, tmp_path), settings)
    trainer.train_epoch(0)
    trainer.state["epoch"] = 1
    good = trainer.save_checkpoint("last", with_state=True)
    with torch.no_grad():
        next(p for p in trainer.policy.parameters() if p.requires_grad).fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"non-finite loss nan at step \d+ \(epoch 2\); the last good checkpoint"):
        trainer.train_epoch(1)
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(good / "model.safetensors").values())
    assert json.loads((good / "training_state" / "state.json").read_text())["epoch"] == 1


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(curriculum, tmp_path):
    """torchrun with 2 CPU processes (DDP over gloo) and batch 8 = one process with batch 8."""
    from safetensors.torch import load_file

    args = stage_one_args(*curriculum, batch_size=8, epochs=2)
    single = train(*args, f"output_root={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(ROOT / "training" / "train_sequential.py"), *args, f"output_root={tmp_path / 'two'}"],
                            capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads((tmp_path / "one" / STAGES[0] / "training_results.json").read_text())["history"]
    two = json.loads((tmp_path / "two" / STAGES[0] / "training_results.json").read_text())["history"]
    assert [h["step"] for h in one] == [h["step"] for h in two]
    for a, b in zip(one, two, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    weights = [load_file(tmp_path / name / STAGES[0] / "last" / "model.safetensors") for name in ("one", "two")]
    for key, value in weights[0].items():
        assert np.allclose(value.numpy(), weights[1][key].numpy(), rtol=1e-4, atol=1e-6), key


def test_stage_one_adapts_a_base_pretrained_on_another_robot(curriculum, tmp_path):
    """Like lerobot/smolvla_base (6-dim SO-100 features, other camera names): the datasets' features
    replace the base's, its weights load (projections are sized by the padded 32 dims)."""
    import shutil

    from kuavo_smolvla_ros.policy.checkpoint import CheckpointError, inspect_checkpoint
    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime

    root, pretrained = curriculum
    base = tmp_path / "so100_base"
    shutil.copytree(pretrained, base, ignore=shutil.ignore_patterns("vlm"))
    config = json.loads((base / "config.json").read_text())
    config["input_features"] = {"observation.state": {"type": "STATE", "shape": [6]},
                                "observation.images.camera1": {"type": "VISUAL", "shape": [3, 256, 256]}}
    config["output_features"] = {"action": {"type": "ACTION", "shape": [6]}}
    (base / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit the Kuavo layout"):
        inspect_checkpoint(base)  # the node refuses it
    result = train("task=tasks/task1_moving_grasp", f"pretrained_path={base}", f"vlm_path={pretrained / 'vlm'}",
                   f"data_root={root / 'data'}", f"output_root={tmp_path / 'out'}", "batch_size=4", "num_workers=0",
                   "stage_overrides.epochs=1", "policy.train_expert_only=false")
    assert result.returncode == 0, result.stderr[-2000:]
    best = tmp_path / "out" / STAGES[0] / "best"
    info = inspect_checkpoint(best)
    assert info.cameras == ["head_cam_h"]
    assert PolicyRuntime.open(best).chunk_size == 50


# ------------------------------------------------------------------ relative actions and the data cache
CONFIGS = ROOT / "training" / "configs"


def write_varied_dataset(root: Path, seed: int, lengths: list[int], instruction: str, image_size: int = 8) -> Path:
    """Random-walk states, actions near the next state, random images; episodes of ``lengths`` frames."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from kuavo_smolvla_ros.data.dataset import REPO_ID

    rng = np.random.default_rng(seed)
    vector = {"dtype": "float32", "shape": (robot.STATE_DIM,), "names": list(robot.JOINT_NAMES)}
    features = {OBS_STATE: vector, ACTION: dict(vector),
                "observation.images.head_cam_h": {"dtype": "image", "shape": (image_size, image_size, 3),
                                                  "names": ["height", "width", "channels"]}}
    dataset = LeRobotDataset.create(REPO_ID, 10, features, root=root, robot_type=load_profile().robot_type,
                                    use_videos=False, video_backend="pyav")
    for frames in lengths:
        state = np.cumsum(rng.normal(0.0, 0.2, (frames, 16)), axis=0) + rng.normal(0.0, 1.0, 16)
        for t in range(frames):
            action = state[min(t + 1, frames - 1)] + rng.normal(0.3, 0.1, 16)
            dataset.add_frame({OBS_STATE: state[t].astype(np.float32),
                               ACTION: action.astype(np.float32),
                               "observation.images.head_cam_h": rng.integers(0, 256, (image_size, image_size, 3),
                                                                             dtype=np.uint8),
                               "task": instruction})
        dataset.save_episode()
    dataset.finalize()
    return root


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Two datasets with varying states and actions (stages 1-2) and a tiny relative-action checkpoint."""
    from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

    root = tmp_path_factory.mktemp("varied")
    catalog = default_catalog()
    for task_id, name in enumerate(STAGES[:2], start=1):
        write_varied_dataset(root / "data" / name, task_id, [7, 5, 9], catalog.get(task_id).instruction)
    relative = build_checkpoint(root / "relative", TinyCheckpointSpec(
        cameras=("head_cam_h",), image_shape=(8, 8), train_everything=True, action_mode="relative"))
    return root, relative


def two_stage_config(root: Path, pretrained: Path, output_root: Path, **changes) -> dict:
    """The base config (as Hydra composes it) for stages 1-2 on ``root``'s datasets, chunks of 4 actions."""
    import yaml

    cfg = yaml.safe_load((CONFIGS / "smolvla_sequential_base.yaml").read_text())
    cfg.pop("hydra")
    cfg.update(curriculum=[f"tasks/{name}" for name in STAGES[:2]], pretrained_path=str(pretrained),
               data_root=str(root / "data"), output_root=str(output_root), batch_size=4, num_workers=0,
               save_every_epochs=0)
    cfg["stage_overrides"].update(epochs=1, lr=0.002, warmup_steps=0)
    cfg["policy"].update(chunk_size=4, n_action_steps=4, train_expert_only=False, freeze_vision_encoder=False)
    cfg["validation"]["every_epochs"] = 1
    for key, value in changes.items():
        if isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def numpy_delta_stats(roots: list[Path], chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """mean and std of action[t+k] - state[t] over every episode, k < chunk and every t whose whole chunk lies
    in the episode (lerobot's compute_relative_action_stats), straight from the parquet files."""
    import pandas as pd

    deltas = []
    for root in roots:
        frame = pd.concat(pd.read_parquet(f) for f in sorted(root.glob("data/**/*.parquet")))
        for _, episode in frame.groupby("episode_index"):
            episode = episode.sort_values("frame_index")
            state = np.stack(episode[OBS_STATE].to_numpy()).astype(np.float64)
            action = np.stack(episode[ACTION].to_numpy()).astype(np.float64)
            deltas += [action[t + k] - state[t] for t in range(len(state) - chunk + 1) for k in range(chunk)]
    deltas = np.array(deltas)
    assert len(deltas) == sum((n - 3) * 4 for n in (7, 5, 9)) * len(roots)  # whole chunks of 4
    return deltas.mean(axis=0), deltas.std(axis=0)


def varied_observation(root: Path):
    """A frame of the varied dataset of stage 1: its image, state and instruction."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from kuavo_smolvla_ros.data.dataset import REPO_ID
    from kuavo_smolvla_ros.policy.runtime import Observation

    item = LeRobotDataset(REPO_ID, root=root / "data" / STAGES[0], video_backend="pyav")[3]
    image = (item["observation.images.head_cam_h"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Observation({"head_cam_h": image}, item[OBS_STATE].numpy(), item["task"])


def assert_lerobot_and_runtime_agree(checkpoint: Path, observation) -> None:
    """A relative checkpoint our trainer wrote: lerobot's own loader (SmolVLAPolicy.from_pretrained +
    make_pre_post_processors) and PolicyRuntime.predict_chunk give the same absolute actions, to 1e-4."""
    from test_checkpoint_portable import lerobot_chunk

    from kuavo_smolvla_ros.policy.runtime import PolicyRuntime

    runtime = PolicyRuntime.open(checkpoint)
    assert runtime.info.action_mode == "relative"
    noise = runtime.make_noise(7)
    ours = runtime.predict_chunk(observation, noise=noise)
    np.testing.assert_allclose(ours, lerobot_chunk(checkpoint, observation, noise), atol=1e-4, rtol=0)


def test_relative_actions_train_on_deltas_normalised_by_delta_statistics(varied, tmp_path):
    import torch
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
    from kuavo_smolvla_ros.training.curriculum import load_curriculum
    from kuavo_smolvla_ros.training.datasets import check_datasets, curriculum_stats
    from kuavo_smolvla_ros.training.distributed import flow_noise
    from kuavo_smolvla_ros.training.sequential import fixed_stats, run
    from kuavo_smolvla_ros.training.sequential_config import settings_from
    from kuavo_smolvla_ros.training.trainer import StageTrainer

    root, relative = varied
    out = tmp_path / "out"
    cfg = two_stage_config(root, relative, out)
    run(cfg, CONFIGS)
    for folder in ("best", "last"):  # the mode comes from the pretrained checkpoint's processors
        assert json.loads((out / STAGES[0] / folder / "kuavo_smolvla.json").read_text())["action_mode"] == "relative"
    assert_lerobot_and_runtime_agree(out / STAGES[0] / "best", varied_observation(root))
    stored = json.loads((out / "curriculum_stats.json").read_text())
    assert stored["action_mode"] == "relative" and stored["chunk_size"] == 4
    mean, std = numpy_delta_stats([root / "data" / name for name in STAGES[:2]], chunk=4)
    np.testing.assert_allclose(stored[ACTION]["mean"], mean, rtol=1e-5, atol=1e-6)  # lerobot's: float32
    np.testing.assert_allclose(stored[ACTION]["std"], std, rtol=1e-4, atol=1e-6)
    stages = load_curriculum(CONFIGS, cfg["curriculum"], root / "data",
                             overrides={k: v for k, v in cfg["stage_overrides"].items() if v is not None})
    absolute = curriculum_stats(check_datasets(stages))
    for stat in ("mean", "std"):  # the state keeps the datasets' statistics
        np.testing.assert_allclose(stored[OBS_STATE][stat], absolute[OBS_STATE][stat])
    assert not np.allclose(absolute[ACTION]["mean"], mean, atol=0.1)

    with pytest.raises(TrainingConfigError, match="holds statistics of relative actions, but this run trains "
                                                  "absolute"):
        run(two_stage_config(root, relative, out, action_mode="absolute"), CONFIGS)

    # The trainer's loss is the policy's loss on (action - state) normalised by the delta statistics.
    stats = fixed_stats(stages, out, write=False, action_mode="relative", chunk_size=4)
    trainer = StageTrainer(stages[0], stages[:1], relative, stats, settings_from(cfg))  # resumes last/ (relative)
    assert trainer.action_mode == "relative"
    trainer.policy.eval()
    batch = next(iter(trainer.loader))
    deltas = batch[ACTION] - batch[OBS_STATE][:, None, :]
    processed = trainer.preprocessor(dict(batch))  # lerobot's RelativeActionsProcessorStep subtracts the state
    np.testing.assert_allclose(processed[ACTION][..., :16].numpy(),
                               ((deltas.numpy() - mean) / std), rtol=1e-4, atol=1e-4)
    noise, time = flow_noise(0, 0, 4, 4, 4, 32)
    hand_stats = {OBS_STATE: {k: torch.tensor(v) for k, v in stored[OBS_STATE].items()},
                  ACTION: {"mean": torch.tensor(mean, dtype=torch.float32),
                                         "std": torch.tensor(std, dtype=torch.float32)}}
    by_hand, _ = make_smolvla_pre_post_processors(trainer.policy.config, hand_stats)
    with torch.no_grad():
        loss = float(trainer._loss(batch, noise, time))
        expected = float(trainer.policy(by_hand({**batch, ACTION: deltas}), noise=noise, time=time)[0])
        on_absolute = float(trainer.policy(by_hand(dict(batch)), noise=noise, time=time)[0])
    assert loss == pytest.approx(expected, rel=1e-5)
    assert abs(loss - on_absolute) > 1e-3 * loss


def test_the_action_mode_and_data_cache_settings(curriculum, tmp_path):
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
    from kuavo_smolvla_ros.training.sequential_config import settings_from
    from kuavo_smolvla_ros.training.trainer import training_action_mode

    _, pretrained = curriculum
    assert training_action_mode(pretrained) == "absolute"  # the checkpoint's, unless forced
    assert training_action_mode(pretrained, "relative") == "relative"
    cfg = two_stage_config(tmp_path, pretrained, tmp_path, action_mode="sideways")
    with pytest.raises(TrainingConfigError, match="action_mode must be null"):
        settings_from(cfg)
    with pytest.raises(TrainingConfigError, match="data_cache must be one of"):
        settings_from(cfg | {"action_mode": None, "data_cache": "disk"})


def _assert_same_item(mine: dict, theirs: dict) -> None:
    import torch

    assert list(mine) == list(theirs)
    for key, value in theirs.items():
        if isinstance(value, torch.Tensor):
            assert mine[key].dtype == value.dtype and mine[key].shape == value.shape, key
            assert torch.equal(mine[key], value), key
        else:
            assert mine[key] == value, key


def test_the_memory_cache_holds_the_datasets_items(varied, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from torch.utils.data import default_collate

    from kuavo_smolvla_ros.data.dataset import REPO_ID
    from kuavo_smolvla_ros.training.memory import cached, cached_lerobot

    root, _ = varied
    dataset = LeRobotDataset(REPO_ID, root=root / "data" / STAGES[1], episodes=[0, 2], video_backend="pyav",
                             delta_timestamps={ACTION: [i / 10 for i in range(4)]})
    memory = cached_lerobot(dataset, tmp_path, num_workers=1, batch_size=5)
    assert memory.origin == "built" and len(memory) == len(dataset) == 16
    assert memory.uint8_images == {"observation.images.head_cam_h"}  # stored as uint8, returned as float32
    for index in range(len(dataset)):
        _assert_same_item(memory[index], dataset[index])
    rows = [5, 0, 15, 7]
    _assert_same_item(memory[rows], default_collate([dataset[i] for i in rows]))  # a batch in one gather
    (file,) = tmp_path.glob("*.pt")
    written = file.stat().st_mtime_ns
    again = cached(tmp_path, dataset.root, [0, 2], dataset.delta_timestamps,
                   lambda: pytest.fail("the cache was rebuilt"))
    assert again.origin == "cache" and file.stat().st_mtime_ns == written
    _assert_same_item(again[rows], memory[rows])
    other = cached_lerobot(LeRobotDataset(REPO_ID, root=root / "data" / STAGES[1], episodes=[1], video_backend="pyav",
                                          delta_timestamps=dataset.delta_timestamps), tmp_path)
    assert other.origin == "built" and len(other) == 5 and len(list(tmp_path.glob("*.pt"))) == 2


def test_training_from_the_memory_cache_is_training_from_the_datasets(varied, tmp_path):
    """Two stages (replay, two validation sets) with data_cache none and memory: the same batches reach the
    model (the cache's items equal the datasets' bit for bit, the sampler and noise are the same, building the
    cache leaves the RNG as it was), so the losses are equal; they were bit-identical on CPU when this was
    written, the tolerance only spares the test from summation-order changes in a future torch."""
    from kuavo_smolvla_ros.training.sequential import run

    root, relative = varied
    histories = {}
    for mode in ("none", "memory", "memory"):  # the second memory run reads the cache the first one wrote
        out = tmp_path / mode
        results = run(two_stage_config(root, relative, out, stages="all", data_cache=mode,
                                       stage_overrides={"epochs": 2}), CONFIGS)
        histories.setdefault(mode, []).append([r["history"] for r in results])
        if mode == "memory":
            assert len(list((out / ".data_cache").glob("*.pt"))) == 4  # (train, validation) x 2 tasks
            (out / STAGES[0] / "last" / "training_state" / "state.json").unlink()  # train anew next time
            (out / STAGES[1] / "last" / "training_state" / "state.json").unlink()
    assert not (tmp_path / "none" / ".data_cache").exists()
    reference = histories["none"][0]
    for history in histories["memory"]:
        for stage, expected in zip(history, reference, strict=True):
            for mine, theirs in zip(stage, expected, strict=True):
                assert mine["step"] == theirs["step"]
                assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5, abs=1e-7)
                assert mine["validation"] == pytest.approx(theirs["validation"], rel=1e-5, abs=1e-7)


def test_camera_dropout_blacks_out_the_drawn_training_samples_only(varied, tmp_path):
    """``camera_dropout.head_cam_h=0.5``: in every training step exactly the samples the step's own generator
    draws (seed, stage, step, rank: a resumed run drops the same ones) reach the model black, the others
    untouched; validation batches never; the setting is checked like the others."""
    import torch

    from kuavo_smolvla_ros.features import image_key
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
    from kuavo_smolvla_ros.training.curriculum import load_curriculum
    from kuavo_smolvla_ros.training.sequential import fixed_stats
    from kuavo_smolvla_ros.training.sequential_config import camera_dropout_setting, settings_from
    from kuavo_smolvla_ros.training.trainer import StageTrainer

    root, relative = varied
    cfg = two_stage_config(root, relative, tmp_path, camera_dropout={"head_cam_h": 0.5})
    settings = settings_from(cfg)
    assert settings.camera_dropout == {"head_cam_h": 0.5}
    stages = load_curriculum(CONFIGS, cfg["curriculum"][:1], root / "data", overrides={"epochs": 1})
    stats = fixed_stats(stages, tmp_path, write=False, action_mode="relative", chunk_size=4)
    trainer = StageTrainer(stages[0], stages, relative, stats, settings)
    key = image_key("head_cam_h")
    seen: list[tuple[int, torch.Tensor]] = []
    real_loss = trainer._training_loss

    def spy(batch, noise, time):
        seen.append((trainer.state["step"], batch[key].clone()))
        return real_loss(batch, noise, time)

    trainer._training_loss = spy
    trainer.train_epoch(0)
    assert len(seen) >= 2
    black = 0
    for step, images in seen:
        drawn = np.random.default_rng([settings.seed, 1, step, 0]).random(len(images)) < 0.5
        is_black = (images.flatten(1) == 0).all(dim=1).numpy()
        assert (is_black == drawn).all(), (step, is_black, drawn)
        black += int(drawn.sum())
    assert 0 < black < sum(len(images) for _, images in seen)  # some dropped, some kept
    assert trainer.val_sets
    for dataset in trainer.val_sets.values():  # validation reads the datasets as they are
        assert all((dataset[i][key] != 0).any() for i in range(len(dataset)))
    assert camera_dropout_setting({"head_cam_h": 0.0, "wrist_cam_l": 0.25}) == {"wrist_cam_l": 0.25}
    for bad, message in (({"head_cam_h": 1}, r"camera_dropout.head_cam_h must be a probability in \[0, 1\), got 1"),
                         ([0.5], "camera_dropout: expected {camera: probability}")):
        with pytest.raises(TrainingConfigError, match=message):
            camera_dropout_setting(bad)
