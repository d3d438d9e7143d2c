"""Relative (delta) actions as lerobot processor steps: a relative checkpoint means the same to lerobot's own
loader and to our runtime; broken or old pipelines are refused with their cause (and the command that
converts an old one); training statistics are lerobot's."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_checkpoint_portable import _observation, lerobot_chunk, train_like_the_stage_trainer

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.policy.checkpoint import CheckpointError, inspect_checkpoint, main, upgrade_relative
from kuavo_smolvla_ros.policy.processors import (
    ABSOLUTE_STEP,
    NORMALISER_STEP,
    RELATIVE_STEP,
    relative_action_stats,
)
from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint

PRE, POST = "policy_preprocessor.json", "policy_postprocessor.json"


@pytest.fixture(scope="module")
def relative(tmp_path_factory) -> Path:
    """A relative checkpoint written the way the stage trainer writes it (on a tiny base)."""
    root = tmp_path_factory.mktemp("relative")
    base = build_checkpoint(root / "base", TinyCheckpointSpec(seed=4, train_everything=True))
    return train_like_the_stage_trainer(base, root / "best", action_mode="relative")


@pytest.fixture()
def copy(relative, tmp_path) -> Path:
    return Path(shutil.copytree(relative, tmp_path / "checkpoint"))


def _steps(folder: Path, name: str) -> list[dict]:
    return json.loads((folder / name).read_text())["steps"]


def _write_steps(folder: Path, name: str, steps: list[dict]) -> None:
    data = json.loads((folder / name).read_text())
    (folder / name).write_text(json.dumps({**data, "steps": steps}, indent=4))


def test_lerobots_loader_and_the_runtime_give_the_same_absolute_actions(relative):
    """Exactly lerobot's calls (SmolVLAPolicy.from_pretrained + make_pre_post_processors) and
    PolicyRuntime.predict_chunk: same inputs and noise, same absolute joint targets."""
    names = [s["registry_name"] for s in _steps(relative, PRE)]
    assert names.index(RELATIVE_STEP) == names.index(NORMALISER_STEP) - 1
    post = [s["registry_name"] for s in _steps(relative, POST)]
    assert post[:2] == ["unnormalizer_processor", ABSOLUTE_STEP]
    assert json.loads((relative / "kuavo_smolvla.json").read_text())["action_mode"] == "relative"  # provenance

    runtime = PolicyRuntime.open(relative)
    assert runtime.info.action_mode == "relative"
    for seed in (0, 1):
        obs = _observation(seed)
        noise = runtime.make_noise(seed + 20)
        ours = runtime.predict_chunk(obs, noise=noise)
        theirs = lerobot_chunk(relative, obs, noise)
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_a_tiny_relative_checkpoint_with_a_collapsed_action_std_predicts_the_state(tmp_path):
    stats = {"observation.state": {"mean": [0.0] * 16, "std": [1.0] * 16},
             "action": {"mean": [0.0] * 16, "std": [1e-6] * 16}}
    path = build_checkpoint(tmp_path / "ck", TinyCheckpointSpec(stats=stats, action_mode="relative"))
    obs = _observation(1)
    noise = np.random.default_rng(0).standard_normal((50, 32)).astype(np.float32)
    np.testing.assert_allclose(lerobot_chunk(path, obs, noise), np.broadcast_to(obs.state, (50, 16)), atol=1e-4)
    np.testing.assert_allclose(PolicyRuntime.open(path).predict_chunk(obs, noise=noise),
                               np.broadcast_to(obs.state, (50, 16)), atol=1e-4)


def test_an_old_relative_checkpoint_is_refused_with_the_command_that_converts_it(relative, copy, capsys):
    obs, noise = _observation(5), np.random.default_rng(5).standard_normal((50, 32)).astype(np.float32)
    expected = PolicyRuntime.open(relative).predict_chunk(obs, noise=noise)
    # what a checkpoint written before this change holds: kuavo_smolvla.json says relative, no steps
    _write_steps(copy, PRE, [s for s in _steps(copy, PRE) if s["registry_name"] != RELATIVE_STEP])
    _write_steps(copy, POST, [s for s in _steps(copy, POST) if s["registry_name"] != ABSOLUTE_STEP])
    folder = copy.resolve()
    message = (f"{folder / 'kuavo_smolvla.json'}: action_mode 'relative', but {folder / PRE} has no {RELATIVE_STEP} "
               f"step: written before relative actions were lerobot processor steps (lerobot's loader would return "
               f"action - state); convert it with: kuavo-smolvla-inspect {folder} --upgrade-relative")
    with pytest.raises(CheckpointError) as refused:
        PolicyRuntime.open(copy)
    assert str(refused.value) == message
    assert main([str(copy)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {message}"

    assert main([str(copy), "--upgrade-relative"]) == 0
    assert "added lerobot's relative/absolute action steps" in capsys.readouterr().out
    assert inspect_checkpoint(copy).action_mode == "relative"
    np.testing.assert_allclose(PolicyRuntime.open(copy).predict_chunk(obs, noise=noise), expected, atol=1e-6)
    np.testing.assert_allclose(lerobot_chunk(copy, obs, noise), expected, atol=1e-4)
    assert upgrade_relative(copy) is False  # a second time: nothing to do


@pytest.mark.parametrize("damage, match", [
    (lambda pre, post: (pre, [s for s in post if s["registry_name"] != ABSOLUTE_STEP]),
     f"{POST}: no enabled {ABSOLUTE_STEP} step, but .*{PRE} converts actions to relative .*would return "
     "action - state"),
    (lambda pre, post: ([s for s in pre if s["registry_name"] != RELATIVE_STEP], post),
     f"{PRE}: no enabled {RELATIVE_STEP} step, but .*{POST} adds the state back"),
    (lambda pre, post: ([s for s in pre if s["registry_name"] != RELATIVE_STEP]
                        + [s for s in pre if s["registry_name"] == RELATIVE_STEP], post),
     f"{PRE}: step 6 {RELATIVE_STEP} comes after step 5 {NORMALISER_STEP}: it would subtract the normalised state"),
    (lambda pre, post: (pre, post[1:2] + post[:1] + post[2:]),
     f"{POST}: step 0 {ABSOLUTE_STEP} comes before step 1 unnormalizer_processor"),
    (lambda pre, post: (pre + [s for s in pre if s["registry_name"] == RELATIVE_STEP], post),
     f"{PRE}: more than one enabled {RELATIVE_STEP} step"),
    (lambda pre, post: (pre + [s for s in post if s["registry_name"] == ABSOLUTE_STEP], post),
     f"{PRE}: step 7 {ABSOLUTE_STEP} does not belong in this pipeline"),
    (lambda pre, post: (pre, post + [s for s in pre if s["registry_name"] == RELATIVE_STEP]),
     f"{POST}: step 3 {RELATIVE_STEP} does not belong in this pipeline"),
])
def test_pipelines_that_would_predict_wrongly_are_refused(copy, damage, match, capsys):
    pre, post = damage(_steps(copy, PRE), _steps(copy, POST))
    _write_steps(copy, PRE, pre)
    _write_steps(copy, POST, post)
    with pytest.raises(CheckpointError, match=match):
        inspect_checkpoint(copy)
    assert main([str(copy)]) == 1


def test_metadata_that_contradicts_the_processors_is_refused(copy):
    meta = json.loads((copy / "kuavo_smolvla.json").read_text())
    (copy / "kuavo_smolvla.json").write_text(json.dumps({**meta, "action_mode": "absolute"}))
    with pytest.raises(CheckpointError, match="action_mode 'absolute', but the processors convert actions as "
                                              "'relative'"):
        PolicyRuntime.open(copy)
    with pytest.raises(CheckpointError, match="not a relative-action checkpoint"):
        _write_steps(copy, PRE, [s for s in _steps(copy, PRE) if s["registry_name"] != RELATIVE_STEP])
        _write_steps(copy, POST, [s for s in _steps(copy, POST) if s["registry_name"] != ABSOLUTE_STEP])
        upgrade_relative(copy)


def test_the_inspect_command_names_the_mode(relative):
    shown = subprocess.run([Path(sys.executable).parent / "kuavo-smolvla-inspect", str(relative)],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "action_mode  relative (lerobot's relative/absolute action processor steps)" in shown.stdout


def test_relative_statistics_are_lerobots():
    """Every chunk inside one episode, as lerobot's compute_relative_action_stats counts them."""
    rng = np.random.default_rng(0)
    episodes = [(rng.normal(size=(n, 16)), rng.normal(size=(n, 16))) for n in (7, 3, 9)]
    stats = relative_action_stats(episodes, chunk_size=4)
    deltas = np.array([a[t + k] - s[t] for s, a in episodes for t in range(len(s) - 3) for k in range(4)])
    assert int(stats["count"][0]) == len(deltas) == (4 + 6) * 4  # the 3-frame episode has no whole chunk
    np.testing.assert_allclose(stats["mean"], deltas.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(stats["std"], deltas.std(axis=0), atol=1e-5)
    assert {"q01", "q99", "min", "max"} <= set(stats)
    with pytest.raises(ValueError, match="no episode has chunk_size=10 frames"):
        relative_action_stats(episodes, chunk_size=10)
    assert robot.ACTION_DIM == 16


@pytest.mark.parametrize("action_mode", ["absolute", "relative"])
def test_real_time_chunking_guides_the_new_chunk_onto_the_prefix(tmp_path, action_mode):
    """lerobot's RTC through our runtime: the prefix goes in robot units, is put in the model's action space
    (relative to the state, normalised) and the guided chunk's first actions follow it."""
    path = build_checkpoint(tmp_path / "ck", TinyCheckpointSpec(action_mode=action_mode, seed=1))
    runtime = PolicyRuntime.open(path)
    obs = _observation(1)
    noise = runtime.make_noise(3)
    plain = runtime.predict_chunk(obs, noise=noise)
    with pytest.raises(ValueError, match="a prefix needs real-time chunking"):
        runtime.predict_chunk(obs, noise=noise, prefix=plain[:10])
    runtime.enable_rtc()
    prefix = plain[:20] + 0.3
    guided = runtime.predict_chunk(obs, noise=noise, prefix=prefix, inference_delay=4)
    np.testing.assert_array_equal(runtime.predict_chunk(obs, noise=noise), plain)  # no prefix: unguided
    assert np.abs(guided[:4] - prefix[:4]).mean() < 0.05 < np.abs(plain[:4] - prefix[:4]).mean()
    with pytest.raises(ValueError, match=r"prefix must be finite \(T, 16\)"):
        runtime.predict_chunk(obs, noise=noise, prefix=np.full((5, 16), np.nan))
