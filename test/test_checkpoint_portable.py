"""Self-contained checkpoints: a folder written by our training (or ``kuavo-smolvla-tiny``) opens after it is
moved or copied elsewhere, with our runtime, ``kuavo-smolvla-inspect`` and lerobot's own loader, from any working
directory; checkpoints written before record the VLM by path and open, or are fixed by one command."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.features import image_key
from kuavo_smolvla_ros.observation import Observation
from kuavo_smolvla_ros.policy.checkpoint import (
    SHIPPED_VLM_PREFIX,
    CheckpointError,
    CheckpointMetadata,
    cache_vlm,
    inspect_checkpoint,
    main,
    vlm_content_id,
)
from kuavo_smolvla_ros.policy.runtime import PolicyRuntime, load_policy
from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint, stats_as_tensors
from kuavo_smolvla_ros.training.common.checkpoints import write_checkpoint

CAMERAS = ("head_cam_h", "wrist_cam_l", "wrist_cam_r")
STATS = {"observation.state": {"mean": np.linspace(-0.2, 0.2, 16).tolist(), "std": [0.5] * 16},
         "action": {"mean": np.linspace(0.3, -0.3, 16).tolist(), "std": np.linspace(0.1, 0.4, 16).tolist()}}


def _observation(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    images = {c: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for c in CAMERAS}
    state = ((robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2 + rng.normal(0, 0.05, 16)).astype(np.float32)
    return Observation(images, state, "grasp the object on the conveyor")


def _lerobot_batch(obs: Observation) -> dict:
    batch = {image_key(k): torch.from_numpy(v).permute(2, 0, 1).float() / 255 for k, v in obs.images.items()}
    return batch | {"observation.state": torch.from_numpy(obs.state), "task": obs.instruction}


def lerobot_chunk(folder: Path, obs: Observation, noise: np.ndarray) -> np.ndarray:
    """The chunk lerobot's own loader predicts: exactly the calls lerobot's rollout makes."""
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    policy = SmolVLAPolicy.from_pretrained(str(folder))
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(folder))
    with torch.no_grad():
        actions = policy.predict_action_chunk(pre(_lerobot_batch(obs)), noise=torch.from_numpy(noise)[None])
        return post(actions)[0].numpy()


def train_like_the_stage_trainer(source: Path, target: Path, action_mode: str = "absolute") -> Path:
    """What ``StageTrainer`` does around its loop: the source's policy on its local VLM folder, processors made
    from the training statistics (with lerobot's relative/absolute action steps when relative),
    ``write_checkpoint``."""
    from kuavo_smolvla_ros.policy.processors import make_processors

    info = inspect_checkpoint(source, kuavo_layout=False)
    policy = load_policy(info)
    assert policy.config.vlm_model_name == str(info.vlm_path)  # a path of this machine while training
    pre, post = make_processors(policy.config, stats_as_tensors(STATS), action_mode)
    metadata = CheckpointMetadata(cameras=list(CAMERAS), stage=1, action_mode=action_mode)
    return write_checkpoint(target, policy, pre, post, metadata, vlm_hub_id=info.vlm_hub_id)


def test_a_trained_checkpoint_moved_elsewhere_opens_everywhere(tmp_path, monkeypatch):
    base = build_checkpoint(tmp_path / "base", TinyCheckpointSpec(seed=5, train_everything=True))
    best = train_like_the_stage_trainer(base, tmp_path / "out" / "task1" / "best")
    config = json.loads((best / "config.json").read_text())
    name = config["vlm_model_name"]
    assert name.startswith(SHIPPED_VLM_PREFIX) and name == vlm_content_id(best / "vlm")[0]
    tokenizer = next(s for s in json.loads((best / "policy_preprocessor.json").read_text())["steps"]
                     if s["registry_name"] == "tokenizer_processor")
    assert tokenizer["config"]["tokenizer_name"] == name
    assert str(tmp_path) not in (best / "config.json").read_text() + (best / "policy_preprocessor.json").read_text()
    obs, noise = _observation(3), np.random.default_rng(9).standard_normal((50, 32)).astype(np.float32)
    before = PolicyRuntime.open(best).predict_chunk(obs, noise=noise)

    robot_disk = tmp_path / "robot" / "models"
    robot_disk.mkdir(parents=True)
    moved = Path(shutil.move(str(best), str(robot_disk / "best")))
    shutil.rmtree(tmp_path / "out")
    shutil.rmtree(base)  # the VLM folder the training used is gone too
    elsewhere = tmp_path / "somewhere_else"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    runtime = PolicyRuntime.open(moved)
    assert runtime.info.vlm_path == (moved / "vlm").resolve() and runtime.info.vlm_source == "shipped"
    np.testing.assert_array_equal(runtime.predict_chunk(obs, noise=noise), before)
    np.testing.assert_allclose(lerobot_chunk(moved, obs, noise), before, rtol=1e-5, atol=1e-5)
    shown = subprocess.run([Path(sys.executable).parent / "kuavo-smolvla-inspect", str(moved)], cwd=elsewhere,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"vlm          {moved.resolve() / 'vlm'} ({name}; shipped)" in shown.stdout
    assert "note:" not in shown.stdout


ROBOT_SCRIPT = """
import sys
import numpy as np
from kuavo_smolvla_ros.policy.checkpoint import main
sys.path.insert(0, sys.argv[3])
from test_checkpoint_portable import _observation, lerobot_chunk
assert main([sys.argv[1], "--make-portable"]) == 0
np.save(sys.argv[2], lerobot_chunk(sys.argv[1], _observation(3), np.load(sys.argv[2])))
"""


def test_on_a_robot_with_an_empty_cache_one_command_serves_lerobots_loader(tiny_checkpoint, tmp_path):
    """A copied checkpoint on a machine whose Hugging Face cache lacks its VLM: our runtime runs it from vlm/;
    inspect says so; ``--make-portable`` puts vlm/ in that cache, then lerobot's own loader runs it too."""
    copied = Path(shutil.copytree(tiny_checkpoint, tmp_path / "robot" / "checkpoint"))
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "robot_hf_cache"))
    shown = subprocess.run([Path(sys.executable).parent / "kuavo-smolvla-inspect", str(copied)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    name = json.loads((copied / "config.json").read_text())["vlm_model_name"]
    assert (f"note: {name} is shipped in vlm/ but not in this machine's Hugging Face cache: for lerobot's own loader "
            f"run `kuavo-smolvla-inspect {copied.resolve()} --make-portable` once") in shown.stdout
    noise = np.random.default_rng(2).standard_normal((50, 32)).astype(np.float32)
    np.save(tmp_path / "chunk.npy", noise)
    done = subprocess.run([sys.executable, "-c", ROBOT_SCRIPT, str(copied), str(tmp_path / "chunk.npy"),
                           str(Path(__file__).parent)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "robot_hf_cache" / f"models--{name.replace('/', '--')}").is_dir()
    expected = PolicyRuntime.open(tiny_checkpoint).predict_chunk(_observation(3), noise=noise)
    np.testing.assert_allclose(np.load(tmp_path / "chunk.npy"), expected, rtol=1e-5, atol=1e-5)


def _as_written_before(folder: Path, vlm: Path | str) -> None:
    """config.json and the tokenizer step name the VLM ``vlm``: by an absolute path, as every writer did before
    (or by a hub id, as lerobot/smolvla_base does)."""
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vlm_model_name": str(vlm)}, indent=4))
    pipeline = json.loads((folder / "policy_preprocessor.json").read_text())
    for step in pipeline["steps"]:
        if step["registry_name"] == "tokenizer_processor":
            step["config"]["tokenizer_name"] = str(vlm)
    (folder / "policy_preprocessor.json").write_text(json.dumps(pipeline, indent=4))


def test_checkpoints_written_before_open_or_are_fixed_with_one_command(tiny_checkpoint, tmp_path, capsys):
    legacy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "legacy", ignore=shutil.ignore_patterns("vlm")))
    vlm = Path(shutil.copytree(tiny_checkpoint / "vlm", tmp_path / "models" / "vlm"))
    _as_written_before(legacy, vlm)
    obs = _observation(1)
    expected = PolicyRuntime.open(tiny_checkpoint).predict_chunk(obs, seed=4)

    info = inspect_checkpoint(legacy)  # opens where it was written
    assert (info.vlm_path, info.vlm_source) == (vlm.resolve(), "recorded path")
    assert info.notes == [f"config.json records the VLM by a path of the machine that wrote it: before moving the "
                          f"checkpoint run `kuavo-smolvla-inspect {legacy.resolve()} --make-portable`"]
    np.testing.assert_array_equal(PolicyRuntime.open(legacy).predict_chunk(obs, seed=4), expected)

    moved_vlm = Path(shutil.move(str(vlm), str(tmp_path / "moved_vlm")))
    message = (f"{legacy.resolve() / 'config.json'}: VLM folder '{vlm}' cannot be found locally (not shipped in vlm/, "
               f"and that folder is gone); fix the checkpoint once with `kuavo-smolvla-inspect {legacy.resolve()} "
               "--vlm-path DIR --make-portable`, or pass vlm_path pointing at a local copy of the VLM (config, "
               "processor and tokenizer files)")
    with pytest.raises(CheckpointError) as refused:
        PolicyRuntime.open(legacy)
    assert str(refused.value) == message
    assert main([str(legacy)]) == 1 and capsys.readouterr().err == f"error: {message}\n"

    assert main([str(legacy), "--vlm-path", str(moved_vlm), "--make-portable"]) == 0
    name = vlm_content_id(moved_vlm)[0]
    assert capsys.readouterr().out.startswith(f"recorded the VLM as {name}\n")
    assert json.loads((legacy / "config.json").read_text())["vlm_model_name"] == name
    assert (legacy / "vlm" / "tokenizer.json").is_file()
    shutil.rmtree(moved_vlm)
    fixed = PolicyRuntime.open(legacy)
    assert fixed.info.vlm_source == "shipped" and fixed.info.notes == []
    np.testing.assert_array_equal(fixed.predict_chunk(obs, seed=4), expected)
    np.testing.assert_allclose(lerobot_chunk(legacy, obs, fixed.make_noise(4)), expected, rtol=1e-5, atol=1e-5)


def test_a_vlm_with_weights_keeps_its_hub_id_and_is_not_shipped(tiny_checkpoint, tmp_path):
    """The real recipe: SmolVLM2 (1 GB with weights) is recorded by its hub id and found in the Hugging Face
    cache; given as a plain folder (``vlm_path``) the written checkpoint still records the hub id."""
    big = Path(shutil.copytree(tiny_checkpoint / "vlm", tmp_path / "SmolVLM2-like"))
    (big / "model.safetensors").write_bytes(b"weights that lerobot never reads: load_vlm_weights is false")
    hub_id = "someorg/SmolVLM2-like-Instruct"
    base = Path(shutil.copytree(tiny_checkpoint, tmp_path / "base", ignore=shutil.ignore_patterns("vlm")))
    _as_written_before(base, hub_id)  # as lerobot/smolvla_base records it
    with pytest.raises(CheckpointError, match=rf"'{hub_id}' cannot be found locally .*`hf download {hub_id}`"):
        inspect_checkpoint(base)

    plain = train_like_the_stage_trainer_with(base, big, tmp_path / "plain_best")
    assert json.loads((plain / "config.json").read_text())["vlm_model_name"] == hub_id
    assert not (plain / "vlm").exists()

    cached = cache_vlm(big, hub_id)  # what `hf download` leaves in the cache
    info = inspect_checkpoint(base)
    assert (info.vlm_path, info.vlm_source, info.vlm_hub_id) == (cached, "Hugging Face cache", hub_id)
    from_cache = train_like_the_stage_trainer(base, tmp_path / "cache_best")
    assert json.loads((from_cache / "config.json").read_text())["vlm_model_name"] == hub_id
    assert not (from_cache / "vlm").exists()
    obs = _observation(0)
    np.testing.assert_array_equal(PolicyRuntime.open(from_cache).predict_chunk(obs, seed=0),
                                  PolicyRuntime.open(plain, vlm_path=big).predict_chunk(obs, seed=0))


def train_like_the_stage_trainer_with(source: Path, vlm: Path, target: Path) -> Path:
    """:func:`train_like_the_stage_trainer` with the VLM given as a plain folder (the trainer's ``vlm_path``)."""
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    info = inspect_checkpoint(source, vlm, kuavo_layout=False)
    assert info.vlm_hub_id == "someorg/SmolVLM2-like-Instruct"
    policy = load_policy(info)
    pre, post = make_smolvla_pre_post_processors(policy.config, stats_as_tensors(STATS))
    return write_checkpoint(target, policy, pre, post, CheckpointMetadata(cameras=list(CAMERAS)),
                            vlm_hub_id=info.vlm_hub_id)
