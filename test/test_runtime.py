"""The policy runtime on real lerobot SmolVLA code with tiny random weights."""

import shutil

import numpy as np
import pytest
import torch

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.contract.profile import load_profile
from kuavo_smolvla_ros.policy.checkpoint import CheckpointError
from kuavo_smolvla_ros.policy.runtime import Observation, PolicyRuntime
from kuavo_smolvla_ros.policy.tiny import (
    TinyCheckpointSpec,
    build_checkpoint,
    build_vlm_folder,
    make_policy_config,
    stats_as_tensors,
)
from kuavo_smolvla_ros.tasks import default_catalog


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint):
    return PolicyRuntime.open(tiny_checkpoint)


def _observation(seed=0, instruction=None, size=(48, 64)):
    rng = np.random.default_rng(seed)
    images = {name: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for name in load_profile().camera_names}
    state = ((robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2 + rng.normal(0, 0.05, 16)).astype(np.float32)
    return Observation(images, state, instruction or default_catalog().get(1).instruction)


def test_chunk_shape_dtype_and_finiteness(runtime):
    chunk = runtime.predict_chunk(_observation(), seed=3)
    assert chunk.shape == (50, 16) and chunk.dtype == np.float32
    assert np.all(np.isfinite(chunk))


def test_same_noise_same_chunk_other_noise_other_chunk(runtime):
    obs = _observation()
    noise = runtime.make_noise(7)
    assert noise.shape == (50, 32)
    np.testing.assert_array_equal(runtime.predict_chunk(obs, noise=noise), runtime.predict_chunk(obs, noise=noise))
    np.testing.assert_array_equal(runtime.predict_chunk(obs, seed=7), runtime.predict_chunk(obs, noise=noise))
    assert np.abs(runtime.predict_chunk(obs, seed=8) - runtime.predict_chunk(obs, seed=7)).max() > 1e-3


def test_instruction_and_images_condition_the_output(runtime):
    first = runtime.predict_chunk(_observation(0), seed=1)
    other_task = runtime.predict_chunk(_observation(0, default_catalog().get(4).instruction), seed=1)
    other_images = runtime.predict_chunk(_observation(5), seed=1)
    assert np.abs(first - other_task).max() > 1e-4
    assert np.abs(first - other_images).max() > 1e-4


def test_matches_lerobots_own_path_exactly(tiny_checkpoint, runtime):
    """preprocessor -> predict_action_chunk -> postprocessor, on lerobot's own loader, same noise."""
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    policy = SmolVLAPolicy.from_pretrained(str(tiny_checkpoint))
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(tiny_checkpoint))
    obs = _observation(2)
    noise = runtime.make_noise(11)
    batch = {f"observation.images.{k}": torch.from_numpy(v).permute(2, 0, 1).float() / 255
             for k, v in obs.images.items()}
    batch |= {"observation.state": torch.from_numpy(obs.state), "task": obs.instruction}
    expected = post(policy.predict_action_chunk(pre(batch), noise=torch.from_numpy(noise)[None]))[0].numpy()
    np.testing.assert_allclose(runtime.predict_chunk(obs, noise=noise), expected, rtol=1e-5, atol=1e-6)


def test_unnormalisation_uses_the_checkpoint_stats(tmp_path):
    mean = np.linspace(-0.3, 0.3, 16)
    stats = {"observation.state": {"mean": [0.0] * 16, "std": [1.0] * 16},
             "action": {"mean": mean.tolist(), "std": [1e-6] * 16}}
    path = build_checkpoint(tmp_path / "ck", TinyCheckpointSpec(stats=stats))
    chunk = PolicyRuntime.open(path).predict_chunk(_observation(), seed=0)
    # A tiny std squeezes every action onto the mean: unnormalisation happened with these stats.
    np.testing.assert_allclose(chunk, np.broadcast_to(mean, (50, 16)), atol=1e-4)


def test_relative_actions_add_the_state_back(tmp_path):
    stats = {"observation.state": {"mean": [0.0] * 16, "std": [1.0] * 16},
             "action": {"mean": [0.0] * 16, "std": [1e-6] * 16}}
    path = build_checkpoint(tmp_path / "ck", TinyCheckpointSpec(stats=stats, action_mode="relative"))
    obs = _observation()
    chunk = PolicyRuntime.open(path).predict_chunk(obs, seed=0)
    np.testing.assert_allclose(chunk, np.broadcast_to(obs.state, (50, 16)), atol=1e-4)


def test_step_and_chunk_overrides(tiny_checkpoint, runtime):
    fast = PolicyRuntime.open(tiny_checkpoint, num_steps=2, chunk_size=20, n_action_steps=4)
    assert (fast.num_steps, fast.chunk_size, fast.n_action_steps) == (2, 20, 4)
    obs = _observation()
    assert fast.predict_chunk(obs, seed=0).shape == (20, 16)
    ten = runtime.predict_chunk(obs, seed=0)
    runtime.num_steps = 2
    try:
        two = runtime.predict_chunk(obs, seed=0)
    finally:
        runtime.num_steps = 10
    assert np.abs(ten - two).max() > 1e-4
    with pytest.raises(ValueError, match=r"chunk_size must be in 1\.\.50"):
        PolicyRuntime.open(tiny_checkpoint, chunk_size=60)
    with pytest.raises(ValueError, match=r"n_action_steps \(30\) must be <= chunk_size \(20\)"):
        PolicyRuntime.open(tiny_checkpoint, chunk_size=20, n_action_steps=30)
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        PolicyRuntime.open(tiny_checkpoint, device="tpu")


def test_bad_observations_are_rejected_with_reasons(runtime):
    obs = _observation()
    with pytest.raises(ValueError, match=r"state must have shape \(16,\)"):
        runtime.predict_chunk(Observation(obs.images, obs.state[:14], obs.instruction))
    nan_state = obs.state.copy()
    nan_state[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        runtime.predict_chunk(Observation(obs.images, nan_state, obs.instruction))
    with pytest.raises(ValueError, match="missing camera images: wrist_cam_r"):
        runtime.predict_chunk(Observation({k: v for k, v in obs.images.items() if k != "wrist_cam_r"},
                                          obs.state, obs.instruction))
    gray = dict(obs.images, head_cam_h=np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError, match="camera head_cam_h: expected HxWx3 uint8"):
        runtime.predict_chunk(Observation(gray, obs.state, obs.instruction))
    with pytest.raises(ValueError, match="instruction must be a non-empty string"):
        runtime.predict_chunk(Observation(obs.images, obs.state, "  "))
    with pytest.raises(ValueError, match=r"noise must have shape \(50, 32\)"):
        runtime.predict_chunk(obs, noise=np.zeros((50, 16)))


def test_warmup_and_token_count(runtime):
    assert runtime.warmup(2) > 0
    long = default_catalog().get(3).instruction
    assert runtime.token_count(long) > runtime.token_count("pick")


def test_opens_a_checkpoint_written_by_lerobot_alone(tmp_path):
    """No metadata file, processors from lerobot's factory, saved with save_pretrained."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
    from lerobot.utils.random_utils import set_seed

    spec = TinyCheckpointSpec(cameras=("head_cam_h",), image_shape=(32, 48))
    vlm = build_vlm_folder(tmp_path / "vlm")
    config = make_policy_config(vlm, spec)
    set_seed(0)
    policy = SmolVLAPolicy(config)
    pre, post = make_smolvla_pre_post_processors(config, stats_as_tensors(
        {"observation.state": {"mean": [0.0] * 16, "std": [1.0] * 16},
         "action": {"mean": [0.1] * 16, "std": [0.5] * 16}}))
    out = tmp_path / "lerobot_ck"
    for part in (policy, pre, post):
        part.save_pretrained(out)
    runtime = PolicyRuntime.open(out)
    assert runtime.info.metadata is None and runtime.cameras == ["head_cam_h"]
    obs = _observation()
    chunk = runtime.predict_chunk(Observation({"head_cam_h": obs.images["head_cam_h"]}, obs.state, "task"), seed=0)
    assert chunk.shape == (50, 16) and np.all(np.isfinite(chunk))


def test_relocated_checkpoint_opens_with_a_vlm_override(tiny_checkpoint, runtime, tmp_path):
    moved = tmp_path / "robot_disk" / "checkpoint"
    shutil.copytree(tiny_checkpoint, moved)
    shutil.move(str(moved / "vlm"), str(tmp_path / "robot_disk" / "smolvlm"))
    # The recorded VLM path still exists (the original); simulate a machine without it.
    import json
    config = json.loads((moved / "config.json").read_text())
    config["vlm_model_name"] = "/models/that/moved/vlm"
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="cannot be found locally"):
        PolicyRuntime.open(moved)
    relocated = PolicyRuntime.open(moved, vlm_path=tmp_path / "robot_disk" / "smolvlm")
    obs = _observation()
    np.testing.assert_array_equal(relocated.predict_chunk(obs, seed=4), runtime.predict_chunk(obs, seed=4))


def test_builder_rejects_bad_stats_before_building(tmp_path):
    with pytest.raises(ValueError, match=r"stats for 'action' must be 16 values"):
        build_checkpoint(tmp_path / "ck", TinyCheckpointSpec(stats={
            "observation.state": {"mean": [0.0] * 16, "std": [1.0] * 16},
            "action": {"mean": [0.0] * 14, "std": [1.0] * 14}}))
    with pytest.raises(ValueError, match="std > 0"):
        build_checkpoint(tmp_path / "ck", TinyCheckpointSpec(stats={
            "observation.state": {"mean": [0.0] * 16, "std": [0.0] * 16},
            "action": {"mean": [0.0] * 16, "std": [1.0] * 16}}))
    assert not (tmp_path / "ck").exists()
