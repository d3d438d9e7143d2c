"""Checkpoints that would fail later or predict wrongly are refused up front, with one line naming the file and
the key: by ``inspect_checkpoint`` (``kuavo-smolvla-inspect`` exits 1 with one ``error:`` line), by
``PolicyRuntime.open`` and by the policy node (exit 2, one ``cannot start:`` line, no traceback).

Each bad checkpoint is a real tiny one, damaged the way it happens in the field."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kuavo_smolvla_ros import robot
from kuavo_smolvla_ros.observation import Observation
from kuavo_smolvla_ros.policy.checkpoint import CheckpointError, CheckpointMetadata, inspect_checkpoint, main
from kuavo_smolvla_ros.policy.runtime import PolicyRuntime

PRE_STATS = "policy_preprocessor_step_5_normalizer_processor.safetensors"
POST_STATS = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"


# ------------------------------------------------------------------------------------------ damage
def prefixed_action_stats(folder):
    """Statistics under ``<dataset>.buffer.action.*``, as multi-dataset bases and migration scripts write them."""
    path = folder / POST_STATS
    save_file({f"kuavo_multitask.buffer.{k}": v for k, v in load_file(path).items()}, path)


def prefixed_state_stats(folder):
    path = folder / PRE_STATS
    save_file({(f"something.{k}" if k.startswith("observation.state") else k): v
               for k, v in load_file(path).items()}, path)


def nan_action_std(folder):
    tensors = load_file(folder / POST_STATS)
    tensors["action.std"][3] = float("nan")
    save_file(tensors, folder / POST_STATS)


def zero_state_std(folder):
    tensors = load_file(folder / PRE_STATS)
    tensors["observation.state.std"][5] = 0.0
    save_file(tensors, folder / PRE_STATS)


def negative_action_std(folder):
    tensors = load_file(folder / POST_STATS)
    tensors["action.std"][0] = -0.5
    save_file(tensors, folder / POST_STATS)


def short_action_stats(folder):
    tensors = load_file(folder / POST_STATS)
    save_file({k: v[:14] for k, v in tensors.items()}, folder / POST_STATS)


def edit_json(folder, name, change):
    path = folder / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=4))


def field_of_another_lerobot(folder):
    """A field lerobot 0.6.1's SmolVLAConfig does not know, from a checkpoint another lerobot wrote."""
    edit_json(folder, "config.json", lambda c: c.update(attention_implementation="eager"))
    edit_json(folder, "kuavo_smolvla.json", lambda m: m.update(lerobot_version="0.7.0"))


def unknown_fields_unrecorded_version(folder):
    edit_json(folder, "config.json", lambda c: c.update(attention_implementation="eager", vlm_revision="main"))
    (folder / "kuavo_smolvla.json").unlink()


def missing_layer_count(folder):
    edit_json(folder, "config.json", lambda c: c.pop("num_vlm_layers"))
    edit_json(folder, "kuavo_smolvla.json", lambda m: m.pop("lerobot_version"))
    (folder / "train_config.json").write_text(json.dumps({"lerobot_version": "0.3.2", "steps": 1000}))


def more_steps_than_the_chunk(folder):
    edit_json(folder, "config.json", lambda c: c.update(n_action_steps=60))


def renamed_weights(prefix):
    def damage(folder):
        path = folder / "model.safetensors"
        save_file({prefix + k: v for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
    return damage


def narrower_output(folder):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    tensors["model.action_out_proj.weight"] = tensors["model.action_out_proj.weight"][:16].clone()
    save_file(tensors, path, metadata={"format": "pt"})


def unregistered_step(folder):
    edit_json(folder, "policy_preprocessor.json",
              lambda p: p["steps"][2].update(registry_name="smolvla_new_line_processor_v2"))


def no_normaliser(folder):
    edit_json(folder, "policy_postprocessor.json", lambda p: p["steps"].pop(0))


# name: (damage, expected message; <ck> stands for the checkpoint folder)
CASES = {
    "prefixed action stats": (
        prefixed_action_stats,
        f"<ck>/{POST_STATS}: no statistics 'action.mean' (found 'kuavo_multitask.buffer.action.mean' instead); "
        "lerobot's unnormalizer_processor would pass action through unnormalised"),
    "prefixed state stats": (
        prefixed_state_stats,
        f"<ck>/{PRE_STATS}: no statistics 'observation.state.mean' (found 'something.observation.state.mean' "
        "instead); lerobot's normalizer_processor would pass observation.state through unnormalised"),
    "nan std": (
        nan_action_std,
        f"<ck>/{POST_STATS}: statistics 'action.std' are not finite (nan at index 3)"),
    "zero std": (
        zero_state_std,
        f"<ck>/{PRE_STATS}: statistics 'observation.state.std' must be > 0, got 0.0 at index 5 (a feature that never "
        "varies cannot be normalised)"),
    "negative std": (
        negative_action_std,
        f"<ck>/{POST_STATS}: statistics 'action.std' must be > 0, got -0.5 at index 0 (a feature that never varies "
        "cannot be normalised)"),
    "short stats": (
        short_action_stats,
        f"<ck>/{POST_STATS}: statistics 'action.mean' have shape (14,), action has (16,)"),
    "no unnormaliser": (
        no_normaliser,
        "<ck>/policy_postprocessor.json: no unnormalizer_processor step, so action is left unnormalised (config.json's "
        "normalization_mapping gives ACTION MEAN_STD)"),
    "unknown field": (
        field_of_another_lerobot,
        "<ck>/config.json: field 'attention_implementation' is unknown to SmolVLAConfig of the installed lerobot 0.6.1 "
        "(the checkpoint was written by lerobot 0.7.0 according to kuavo_smolvla.json); use the lerobot version that "
        "wrote it, or delete the field if inference does not depend on it"),
    "unknown fields": (
        unknown_fields_unrecorded_version,
        "<ck>/config.json: fields 'attention_implementation', 'vlm_revision' are unknown to SmolVLAConfig of the "
        "installed lerobot 0.6.1 (the checkpoint was written by a lerobot version it does not record); use the lerobot "
        "version that wrote it, or delete the field if inference does not depend on it"),
    "missing field": (
        missing_layer_count,
        "<ck>/config.json: required field 'num_vlm_layers' is missing (the checkpoint was written by lerobot 0.3.2 "
        "according to train_config.json); lerobot 0.6.1 would silently use its default 16"),
    "unreadable config": (
        more_steps_than_the_chunk,
        "<ck>/config.json: lerobot 0.6.1 cannot read it: ValueError: The chunk size is the upper bound for the number "
        "of action steps per model invocation. Got 60 for `n_action_steps` and 50 for `chunk_size`. (the checkpoint "
        "was written by lerobot 0.6.1 according to kuavo_smolvla.json)"),
    "torch.compile": (
        renamed_weights("_orig_mod."),
        "<ck>/model.safetensors: tensor names start with '_orig_mod.model.' where SmolVLA expects 'model.' (saved from "
        "a torch.compile'd model); strip the prefix with: kuavo-smolvla-inspect <ck> --strip-prefix _orig_mod."),
    "DDP": (
        renamed_weights("module."),
        "<ck>/model.safetensors: tensor names start with 'module.model.' where SmolVLA expects 'model.' (saved from a "
        "DistributedDataParallel/DataParallel wrapper); strip the prefix with: kuavo-smolvla-inspect <ck> "
        "--strip-prefix module."),
    "model twice": (
        renamed_weights("model."),
        "<ck>/model.safetensors: tensor names start with 'model.model.' where SmolVLA expects 'model.' (saved from a "
        "wrapper that holds the policy as 'model'); strip the prefix with: kuavo-smolvla-inspect <ck> "
        "--strip-prefix model."),
    "tensor shape": (
        narrower_output,
        "<ck>/model.safetensors does not match the architecture in config.json: 1 tensors of another shape (e.g. "
        "model.action_out_proj.weight (16, 48), expected (32, 48))"),
    "unregistered step": (
        unregistered_step,
        "<ck>/policy_preprocessor.json: step 2 'smolvla_new_line_processor_v2' is not a processor step of lerobot "
        "0.6.1 (written by lerobot 0.6.1 according to kuavo_smolvla.json)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_inspect_and_the_runtime_refuse_with_one_line_naming_file_and_key(checkpoint_copy, case, capsys):
    damage, expected = CASES[case]
    damage(checkpoint_copy)
    message = expected.replace("<ck>", str(checkpoint_copy.resolve()))
    assert main([str(checkpoint_copy)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {message}\n" and captured.out == ""
    with pytest.raises(CheckpointError) as raised:
        PolicyRuntime.open(checkpoint_copy)
    assert str(raised.value) == message


def test_lerobot_alone_would_silently_skip_prefixed_statistics(checkpoint_copy):
    """Why the check exists: lerobot's own loader accepts the checkpoint and its unnormaliser is the identity."""
    from lerobot.policies.factory import make_pre_post_processors

    from kuavo_smolvla_ros.policy.checkpoint import read_policy_config

    config = read_policy_config(checkpoint_copy)
    _, post = make_pre_post_processors(config, pretrained_path=str(checkpoint_copy))
    prefixed_action_stats(checkpoint_copy)
    _, damaged = make_pre_post_processors(config, pretrained_path=str(checkpoint_copy))
    normalised = torch.full((1, 50, 16), 2.0)
    assert torch.equal(damaged(normalised), normalised)  # the identity, without a word
    stats = load_file(checkpoint_copy / POST_STATS)
    stats = {k.removeprefix("kuavo_multitask.buffer."): v for k, v in stats.items()}
    assert torch.allclose(post(normalised)[0], 2.0 * stats["action.std"] + stats["action.mean"])


def test_stripping_a_foreign_prefix_restores_the_checkpoint(tiny_checkpoint, checkpoint_copy, capsys):
    renamed_weights("_orig_mod.")(checkpoint_copy)
    assert main([str(checkpoint_copy), "--strip-prefix", "_orig_mod."]) == 0
    assert capsys.readouterr().out.startswith("stripped '_orig_mod.' from 124 tensor names\n")
    assert load_file(checkpoint_copy / "model.safetensors").keys() == load_file(
        tiny_checkpoint / "model.safetensors").keys()
    rng = np.random.default_rng(0)
    obs = Observation({c: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for c in ("head_cam_h", "wrist_cam_l",
                                                                                    "wrist_cam_r")},
                      ((robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2).astype(np.float32), "pick it")
    np.testing.assert_array_equal(PolicyRuntime.open(checkpoint_copy).predict_chunk(obs, seed=1),
                                  PolicyRuntime.open(tiny_checkpoint).predict_chunk(obs, seed=1))
    assert main([str(checkpoint_copy), "--strip-prefix", "_orig_mod."]) == 1
    assert capsys.readouterr().err == (f"error: {checkpoint_copy.resolve() / 'model.safetensors'}: no tensor name "
                                       "starts with '_orig_mod.'\n")


def test_the_writer_version_is_recorded(tiny_checkpoint):
    assert CheckpointMetadata.load(tiny_checkpoint).lerobot_version == "0.6.1"
    assert inspect_checkpoint(tiny_checkpoint).notes == []


def test_a_training_base_is_checked_without_its_statistics(checkpoint_copy):
    """A pretrained base (kuavo_layout=False): training replaces its statistics, so they are not checked; its
    config and weights are."""
    prefixed_action_stats(checkpoint_copy)
    assert inspect_checkpoint(checkpoint_copy, kuavo_layout=False).chunk_size == 50
    renamed_weights("_orig_mod.")(checkpoint_copy)
    with pytest.raises(CheckpointError, match=r"tensor names start with '_orig_mod\.model\.'"):
        inspect_checkpoint(checkpoint_copy, kuavo_layout=False)


@pytest.mark.parametrize("case", ["prefixed action stats", "unknown field", "torch.compile"])
def test_the_node_refuses_in_one_line_and_exits_2(checkpoint_copy, case):
    damage, expected = CASES[case]
    damage(checkpoint_copy)
    message = expected.replace("<ck>", str(checkpoint_copy.resolve()))
    result = subprocess.run([sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node", "--ros-args",
                             "-p", f"checkpoint:={checkpoint_copy}", "-p", "camera_height:=64",
                             "-p", "camera_width:=64"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "cannot start:" in line]
    assert len(lines) == 1 and lines[0].endswith(f"cannot start: {message}"), result.stderr[-2000:]
